"""The scorer against a careful human grader: tests/data/labelled_answers.jsonl (see LABELLING.md).

Every answer is scored; for each kind of judgement the scorer must agree with the labels on at least
98 % of the answers that carry one. Every disagreement is printed (run with `-s` to see them all).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jarvis_bench import config
from jarvis_bench.metrics import score_answer

from .conftest import CONFIG

LABELLED = Path(__file__).resolve().parent / "data" / "labelled_answers.jsonl"
MIN_AGREEMENT = 0.98
LABELS = ("tool_correct", "args_correct", "correction_correct", "keywords_present")


def _rows() -> list[dict]:
    return [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").split("\n") if line.strip()]


def _judgement(label: str, m: dict):
    if label == "tool_correct":
        return m["tool_correct"]
    if label == "args_correct":
        return None if m["args_score"] is None else m["args_score"] == 1.0
    if label == "correction_correct":
        return None if m["correction_score"] is None else m["correction_score"] == 1.0
    return m["keywords_found"]


@pytest.fixture(scope="module")
def scored():
    cfg = config.load(CONFIG)
    specs = {p.id: p for p in cfg.prompts}
    return [(row, score_answer(row["answer"], specs[row["id"]], cfg.tools, cfg.scoring.relevance_weights))
            for row in _rows()]


def test_the_set_is_large_and_covers_every_prompt():
    rows = _rows()
    cfg = config.load(CONFIG)
    assert len(rows) >= 150
    assert {r["id"] for r in rows} == {p.id for p in cfg.prompts}
    assert all(r["reason"].strip() for r in rows)


@pytest.mark.parametrize("label", LABELS)
def test_scorer_agrees_with_the_grader(scored, label):
    judged = [(row, m) for row, m in scored if row[label] is not None]
    misses = [(row, _judgement(label, m), m) for row, m in judged if _judgement(label, m) != row[label]]
    for row, got, m in misses:
        print(f"\n[{label}] {row['id']} ({row['shape']}): grader {row[label]!r}, scorer {got!r} — {row['reason']}\n"
              f"    answer: {row['answer'][:300]!r}\n    first_call={m['first_call']} tools={m['tools_found']} "
              f"malformed={m['malformed_calls']} args={m['args_score']} corr={m['correction_score']}")
    agreement = 1 - len(misses) / len(judged)
    print(f"\n{label}: {agreement:.1%} agreement on {len(judged)} answers ({len(misses)} disagreements)")
    assert agreement >= MIN_AGREEMENT, f"{label}: {agreement:.1%} < {MIN_AGREEMENT:.0%} ({len(misses)} disagreements)"
