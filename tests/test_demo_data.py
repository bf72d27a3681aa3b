"""The demo adapter's training data must not contain the benchmark (no prompt, no near-copy)."""

from __future__ import annotations

import json

from rapidfuzz import fuzz

from jarvis_bench import config, demo
from jarvis_bench.text import normalize

from .conftest import CONFIG


def _train_prompts():
    path = demo.DEMO_DIR / "train_data.jsonl"
    return [json.loads(line)["prompt"] for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def test_training_data_is_disjoint_from_the_benchmark():
    bench = [normalize(p.prompt) for p in config.load(CONFIG).prompts]
    train = [normalize(p) for p in _train_prompts()]
    assert len(train) >= 200
    for t in train:
        for b in bench:
            assert b not in t, (b, t)
            assert fuzz.ratio(t, b) < 90, (b, t, fuzz.ratio(t, b))


def test_expected_corrections_are_not_training_prompts():
    corrections = [normalize(p.expected_correction) for p in config.load(CONFIG).prompts if p.expected_correction]
    train = {normalize(p) for p in _train_prompts()}
    assert not train & set(corrections)


def test_demo_adapters_are_committed_and_valid():
    from jarvis_bench.adapters import inspect_adapter

    for name in ("jarvis-demo", "jarvis-demo-early"):
        v = inspect_adapter(demo.DEMO_ADAPTERS_DIR / name / "final")
        assert v.name == name and v.base_model == demo.DEMO_BASE_NAME and v.rank >= 1
