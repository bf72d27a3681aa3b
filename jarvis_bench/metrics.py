"""Per-answer metrics: pure functions of (answer, prompt spec, tool catalog).

Keys (null where a metric does not apply): keyword_hits, keyword_total, keyword_ratio, tools_found,
tool_correct, tool_mentioned, wrong_tools, args_score, correction_score, cer, wer, relevance.
Cosine similarities need an embedder and are added by `scoring.py`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .config import PromptSpec, RelevanceWeights, Tool
from .text import normalize


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]
    form: str  # "tool_call" | "json" | "call" | "prose"
    position: int


def _find_word(text: str, phrase: str, *, whole: bool) -> re.Match[str] | None:
    """`phrase` in normalised `text`, starting at a word boundary (and ending at one when `whole`)."""
    return re.search(r"(?<![a-z0-9])" + re.escape(phrase) + (r"(?![a-z0-9])" if whole else ""), text)


# ----------------------------------------------------------------------------- keywords


def keyword_match(answer: str, keywords: Sequence[str]) -> tuple[int, int]:
    """(hits, total): keywords found in the answer, accent- and case-insensitive, on word boundaries
    at the start only, so a stem matches its French inflections ("verrouill" -> "verrouillé", "ouvre" ->
    "j'ouvre"), and "son" also matches "sonore" but not "maison")."""
    text = normalize(answer)
    hits = sum(1 for kw in keywords if (k := normalize(kw)) and _find_word(text, k, whole=False))
    return hits, len(keywords)


# ----------------------------------------------------------------------------- tool calls

_TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
_CALL_SYNTAX = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\s*\(([^()]*)\)")


def _json_objects(text: str) -> list[tuple[int, int, Any]]:
    """Every top-level JSON object in `text`, with its start and end offsets."""
    dec = json.JSONDecoder()
    out = []
    i = text.find("{")
    while i != -1:
        try:
            obj, end = dec.raw_decode(text, i)
        except json.JSONDecodeError:
            i = text.find("{", i + 1)
            continue
        out.append((i, end, obj))
        i = text.find("{", end)
    return out


def _from_obj(obj: Any) -> tuple[str, dict[str, Any]] | None:
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("function"), dict):  # OpenAI style {"function": {"name", "arguments"}}
        obj = obj["function"]
    name = obj.get("name", obj.get("tool"))
    if not isinstance(name, str) or not name:
        return None
    args = obj.get("arguments", obj.get("args", obj.get("parameters", {})))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            args = {}
    return name, args if isinstance(args, dict) else {}


def _call_args(raw: str) -> dict[str, Any]:
    args: dict[str, Any] = {}
    for part in raw.split(","):
        if "=" in part:
            k, v = part.split("=", 1)
            args[k.strip()] = v.strip().strip("'\"")
        elif ":" in part:
            k, v = part.split(":", 1)
            args[k.strip().strip("'\"")] = v.strip().strip("'\"")
    return args


def extract_tool_calls(answer: str, catalog: Sequence[Tool]) -> list[ToolCall]:
    """Tool calls in the answer, by form priority then position: <tool_call> blocks, bare JSON
    objects, `tool_name(...)` call syntax, then catalog names and French aliases in prose."""
    calls: list[ToolCall] = []
    spans: list[tuple[int, int]] = []
    for m in _TOOL_CALL.finditer(answer):
        spans.append(m.span())
        for _, _, obj in _json_objects(m.group(1)):
            parsed = _from_obj(obj)
            if parsed:
                calls.append(ToolCall(parsed[0], parsed[1], "tool_call", m.start()))
    def blank(text: str, a: int, b: int) -> str:  # hide a consumed span, keeping offsets
        return text[:a] + " " * (b - a) + text[b:]

    rest = answer
    for a, b in spans:
        rest = blank(rest, a, b)
    for start, end, obj in _json_objects(rest):
        parsed = _from_obj(obj)
        if parsed:
            calls.append(ToolCall(parsed[0], parsed[1], "json", start))
            rest = blank(rest, start, end)
    names = {t.name for t in catalog}
    for m in _CALL_SYNTAX.finditer(rest):
        if m.group(1) in names:
            calls.append(ToolCall(m.group(1), _call_args(m.group(2)), "call", m.start()))
    if not calls:
        norm = normalize(answer)
        prose = []
        for t in catalog:
            terms = [t.name, t.name.replace("_", " ")] + list(t.aliases)
            positions = [m.start() for term in terms if (k := normalize(term)) and (m := _find_word(norm, k, whole=True))]
            if positions:
                prose.append(ToolCall(t.name, {}, "prose", min(positions)))
        calls.extend(sorted(prose, key=lambda c: c.position))
    return calls


def _arg_matches(expected: Any, got: Any) -> bool:
    if got is None:
        return False
    if isinstance(expected, bool) or isinstance(got, bool):
        return str(expected).lower() == str(got).lower()
    if isinstance(expected, (int, float)):
        try:
            return float(str(got).strip()) == float(expected)
        except ValueError:
            return normalize(str(expected)) in normalize(str(got)).split()
    e, g = normalize(str(expected)), normalize(str(got))
    return bool(e) and (e in g or (len(g) >= 3 and g in e.split()))


def args_score(expected: dict[str, Any], call: ToolCall | None) -> float:
    if not expected:
        return 1.0
    if call is None:
        return 0.0
    got = {k.lower(): v for k, v in call.arguments.items()}
    return sum(_arg_matches(v, got.get(k.lower())) for k, v in expected.items()) / len(expected)


# ----------------------------------------------------------------------------- corrections


def correction_scores(answer: str, expected: str) -> tuple[float, float, float]:
    """(score, cer, wer) of the answer's best-matching span against the expected correction.
    score = 1.0 when the normalised correction appears verbatim, else the fuzzy partial ratio (0–1)."""
    import jiwer
    from rapidfuzz import fuzz

    a, e = normalize(answer), normalize(expected)
    if not e:
        return 1.0, 0.0, 0.0
    if not a:
        return 0.0, 1.0, 1.0
    if _find_word(a, e, whole=True):
        return 1.0, 0.0, 0.0
    al = fuzz.partial_ratio_alignment(e, a)
    span = a[al.dest_start : al.dest_end] if al else ""
    # widen the span to whole words
    start = a.rfind(" ", 0, al.dest_start) + 1 if al else 0
    end = a.find(" ", al.dest_end) if al else -1
    span = a[start : end if end != -1 else len(a)].strip() or span
    cer = min(1.0, jiwer.cer(e, span)) if span else 1.0
    wer = min(1.0, jiwer.wer(e, span)) if span else 1.0
    score = (al.score / 100.0) if al else 0.0
    return round(score, 4), round(cer, 4), round(wer, 4)


# ----------------------------------------------------------------------------- one answer


def score_answer(answer: str, spec: PromptSpec, catalog: Sequence[Tool], weights: RelevanceWeights) -> dict[str, Any]:
    hits, total = keyword_match(answer, spec.keywords)
    calls = extract_tool_calls(answer, catalog)
    found = [c.name for c in calls]
    first = calls[0].name if calls else None
    tool_correct = (first == spec.expected_tool) if spec.expected_tool else (not calls)
    expected_call = next((c for c in calls if c.name == spec.expected_tool), None)
    a_score = args_score(spec.expected_args, expected_call) if spec.expected_tool and spec.expected_args else None
    corr = correction_scores(answer, spec.expected_correction) if spec.expected_correction else None
    parts: dict[str, tuple[float, float]] = {"tool": (weights.tool, 1.0 if tool_correct else 0.0)}
    if a_score is not None:
        parts["args"] = (weights.args, a_score)
    if total:
        parts["keywords"] = (weights.keywords, hits / total)
    if corr is not None:
        parts["correction"] = (weights.correction, corr[0])
    wsum = sum(w for w, _ in parts.values())
    relevance = sum(w * v for w, v in parts.values()) / wsum if wsum > 0 else None
    return {
        "keyword_hits": hits,
        "keyword_total": total,
        "keyword_ratio": round(hits / total, 4) if total else None,
        "tools_found": found,
        "tool_forms": [c.form for c in calls],
        "tool_correct": tool_correct,
        "tool_mentioned": spec.expected_tool in found if spec.expected_tool else None,
        "wrong_tools": sorted({n for n in found if n != spec.expected_tool}),
        "args_score": round(a_score, 4) if a_score is not None else None,
        "correction_score": corr[0] if corr else None,
        "cer": corr[1] if corr else None,
        "wer": corr[2] if corr else None,
        "relevance": round(relevance, 4) if relevance is not None else None,
    }
