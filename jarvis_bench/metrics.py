"""Per-answer metrics: pure functions of (answer, prompt spec, tool catalog).

What each metric means is written for a grader in `tests/data/LABELLING.md`; `tests/test_agreement.py`
holds the scorer to a hand-labelled set of answers. Keys (null where a metric does not apply):
keyword_hits, keyword_total, keyword_ratio, keywords_found, tools_found, tool_forms, malformed_calls,
first_call, tool_correct, tool_credit, tool_mentioned, wrong_tools, unknown_tools, args_score, extra_args,
correction_score, cer, wer, relevance. Cosine similarities need an embedder and are added by `scoring.py`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .config import PromptSpec, RelevanceWeights, Tool
from .text import canonical, fold, strip_thinking, words
from .toolcalls import ToolCall, parse

SCORER_VERSION = 2
"""Bumped whenever a metric's definition changes; results carry it in `metadata.scorer_version`.
1: prose mentions counted as calls, substring argument matching, fuzzy corrections, keyword prefixes.
2: structured calls only (by position, malformed reported), typed arguments on the first call,
   corrections relative to the misheard input, whole-word keywords with `*` stems."""


# ----------------------------------------------------------------------------- keywords


def _contains(hay: list[str], needle: list[str], *, stem: bool = False) -> bool:
    """`needle` as contiguous whole words of `hay` (the last word a prefix when `stem`)."""
    n = len(needle)
    if not n:
        return False
    for i in range(len(hay) - n + 1):
        if hay[i:i + n - 1] == needle[:-1] and (hay[i + n - 1].startswith(needle[-1]) if stem
                                                 else hay[i + n - 1] == needle[-1]):
            return True
    return False


def keyword_found(answer_words: list[str], keyword: str) -> bool:
    stem = keyword.endswith("*")
    return _contains(answer_words, words(keyword.rstrip("*")), stem=stem)


def keyword_match(answer: str, keywords: Sequence[str]) -> list[str]:
    """The keywords the answer contains: whole words, case-, accent- and punctuation-insensitive,
    digits = French number words; a keyword ending in `*` is a stem ("verrouill*" -> "verrouillé")."""
    have = words(answer)
    return [kw for kw in keywords if keyword_found(have, kw)]


# ----------------------------------------------------------------------------- tool calls


def catalog_params(catalog: Sequence[Tool]) -> dict[str, list[str]]:
    return {t.name: list(t.parameters) for t in catalog}


@dataclass(frozen=True)
class Mention:
    tool: str
    sentence: str
    term: str
    credited: bool
    """An affirmative statement of the action (what `tool_credit: calls_or_mentions` credits)."""


_SENTENCE = re.compile(r"[^.!?…\n]+[.!?…]*")
_NEGATION = {"pas", "jamais", "rien", "aucun", "aucune", "ni", "non", "not", "no", "never", "cannot", "cant", "dont",
             "wont"}
_REFUSAL = ("desole", "impossible", "je ne peux", "je n ai pas", "pas en mesure", "sorry", "unable", "i can t",
            "i cannot", "i m not able")
_FIRST_PERSON = {"je", "j", "i", "on"}


def mentions(prose: str, prompt: str, catalog: Sequence[Tool]) -> list[Mention]:
    """Tools named in prose (by name or alias), sentence by sentence, each marked credited only when the
    sentence states the action affirmatively: not a question, a negation, a refusal, a list of several
    tools, nor an echo of the user's words (a term taken from the prompt, outside a first-person sentence)."""
    prompt_words = words(prompt)
    out: list[Mention] = []
    for m in _SENTENCE.finditer(prose):
        sentence = m.group(0).strip()
        if not sentence:
            continue
        sw = words(sentence)
        found: list[tuple[str, str]] = []
        for t in catalog:
            for term in (t.name, *t.aliases):
                tw = words(term)
                if _contains(sw, tw):
                    found.append((t.name, term))
                    break
        if not found:
            continue
        flat = " ".join(sw)
        negated = bool(_NEGATION & set(sw)) or ("ne" in sw and "plus" in sw) or any(r in flat for r in _REFUSAL)
        question = "?" in sentence
        listing = len({name for name, _ in found}) > 1
        for name, term in found:
            echo = _contains(prompt_words, words(term)) and not (_FIRST_PERSON & set(sw))
            out.append(Mention(name, sentence, term, not (negated or question or listing or echo)))
    return out


# ----------------------------------------------------------------------------- arguments


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        for s in (value.strip().replace(",", "."), canonical(value)):  # "20.0", "20,5"; "vingt", "dix"
            try:
                return float(s)
            except ValueError:
                pass
    return None


def _compact(value: Any) -> str:
    """A string value for comparison: numbers as digits, case, accents, spaces and punctuation dropped."""
    return re.sub(r"[\W_]+", "", canonical(str(value)))


def value_matches(expected: Any, got: Any) -> bool:
    """Typed comparison of one argument value; a list in `expected` gives the acceptable values."""
    if isinstance(expected, list):
        return any(value_matches(e, got) for e in expected)
    if got is None or isinstance(got, (dict, list)):
        return False
    if isinstance(expected, bool):
        truth = {"true": True, "vrai": True, "oui": True, "yes": True, "false": False, "faux": False, "non": False,
                 "no": False}
        return (got if isinstance(got, bool) else truth.get(fold(str(got)).strip())) is expected
    if isinstance(expected, (int, float)):
        n = _number(got)
        return n is not None and abs(n - float(expected)) < 1e-9
    e = _compact(expected)
    return bool(e) and _compact(got) == e


def args_judgement(expected: dict[str, Any], call: ToolCall | None) -> tuple[float, list[str]]:
    """(fraction of expected arguments the call carries with an acceptable value, extra argument names)."""
    if call is None:
        return 0.0, []
    got = {str(k).lower(): v for k, v in call.arguments.items()}
    want = {k.lower(): v for k, v in expected.items()}
    extra = sorted(k for k in got if k not in want)
    if not want:
        return 1.0, extra
    return sum(value_matches(v, got.get(k)) for k, v in want.items()) / len(want), extra


def args_detail(expected: dict[str, Any], call: ToolCall | None) -> list[dict[str, Any]]:
    """Each expected argument of the judged call: its name, the value given (None: absent), and whether
    that value is acceptable — what the report shows as `city « Lyon » ✓`."""
    if call is None:
        return []
    got = {str(k).lower(): v for k, v in call.arguments.items()}
    return [{"name": k, "got": got.get(k.lower()), "ok": bool(value_matches(v, got.get(k.lower())))}
            for k, v in expected.items()]


# ----------------------------------------------------------------------------- corrections


def correction_scores(answer: str, expected: str, misheard: str) -> tuple[float, float, float]:
    """(score, cer, wer): how much of the recognition error the answer fixed.

    Words are compared in canonical form (case, accents, punctuation ignored, number words = digits).
    The answer's span of words closest to the expected sentence (by character edits) is found;
    score = 1 - edits(span, expected) / edits(misheard, expected), clipped to [0, 1]: the expected
    sentence as whole words scores 1, the misheard input repeated scores 0. CER and WER are those of
    that span against the expected sentence."""
    from rapidfuzz.distance import Levenshtein

    e = words(expected)
    if not e:
        return 1.0, 0.0, 0.0
    a = words(answer)
    if _contains(a, e):
        return 1.0, 0.0, 0.0
    if not a:
        return 0.0, 1.0, 1.0
    es = " ".join(e)
    k = max(2, len(e) // 2)
    best: tuple[int, list[str]] | None = None
    for n in range(max(1, len(e) - k), len(e) + k + 1):
        for i in range(max(1, len(a) - n + 1)):
            span = a[i:i + n]
            d = Levenshtein.distance(" ".join(span), es)
            if best is None or d < best[0]:
                best = (d, span)
    assert best is not None
    d, span = best
    error = Levenshtein.distance(" ".join(words(misheard)), es)
    score = max(0.0, 1.0 - d / error) if error else 0.0
    cer = min(1.0, d / len(es))
    wer = min(1.0, Levenshtein.distance(span, e) / len(e))
    return round(score, 4), round(cer, 4), round(wer, 4)


# ----------------------------------------------------------------------------- one answer


def score_answer(answer: str, spec: PromptSpec, catalog: Sequence[Tool], weights: RelevanceWeights, *,
                 tool_credit: str = "calls", extra_args: str = "report") -> dict[str, Any]:
    """Every metric of one answer. `tool_credit`: "calls" (structured calls only) or "calls_or_mentions"
    (with no call, an affirmative prose statement of the expected tool's action also counts);
    `extra_args`: "report" or "penalize" (arguments the prompt does not expect lower args_score)."""
    text, _ = strip_thinking(answer)
    found_kw = keyword_match(text, spec.keywords)
    hits, total = len(found_kw), len(spec.keywords)
    calls, prose = parse(text, catalog_params(catalog))
    ok_calls = [c for c in calls if c.ok]
    first = calls[0] if calls else None
    said = mentions(prose, spec.prompt, catalog)
    credit: str | None = None
    if spec.expected_tool is None:
        tool_correct = not calls
    elif first is not None:
        tool_correct = first.ok and first.name == spec.expected_tool
        credit = "call" if tool_correct else None
    else:
        affirmed = next((m for m in said if m.credited), None) if tool_credit == "calls_or_mentions" else None
        tool_correct = affirmed is not None and affirmed.tool == spec.expected_tool
        credit = "mention" if tool_correct else None
    judged = first if tool_correct and credit == "call" else None
    a_score: float | None = None
    extras: list[str] = []
    if spec.expected_tool and spec.expected_args:
        a_score, extras = args_judgement(spec.expected_args, judged)
        if extra_args == "penalize" and extras and judged is not None:
            a_score = a_score * len(spec.expected_args) / (len(spec.expected_args) + len(extras))
    elif judged is not None:
        extras = args_judgement({}, judged)[1]
    corr = correction_scores(text, spec.expected_correction, spec.prompt) if spec.expected_correction else None
    parts: dict[str, tuple[float, float]] = {"tool": (weights.tool, 1.0 if tool_correct else 0.0)}
    if a_score is not None:
        parts["args"] = (weights.args, a_score)
    if total:
        parts["keywords"] = (weights.keywords, hits / total)
    if corr is not None:
        parts["correction"] = (weights.correction, corr[0])
    wsum = sum(w for w, _ in parts.values())
    relevance = sum(w * v for w, v in parts.values()) / wsum if wsum > 0 else None
    names = [c.name for c in ok_calls]
    return {
        "keyword_hits": hits,
        "keyword_total": total,
        "keyword_ratio": round(hits / total, 4) if total else None,
        "keywords_found": found_kw,
        "tools_found": names,
        "tool_forms": [c.form for c in ok_calls],
        "malformed_calls": [{"name": c.name, "form": c.form, "why": c.malformed} for c in calls if not c.ok],
        "first_call": (first.name if first.ok else f"{first.name or '?'} (malformed)") if first else None,
        "tool_correct": tool_correct,
        "tool_credit": credit,
        "tool_mentioned": (spec.expected_tool in names or any(m.tool == spec.expected_tool for m in said))
        if spec.expected_tool else None,
        "wrong_tools": sorted({n for n in names if n != spec.expected_tool and n}),
        "unknown_tools": sorted({n for n in names if n not in {t.name for t in catalog}}),
        "args_score": round(a_score, 4) if a_score is not None else None,
        "args_detail": args_detail(spec.expected_args, judged) if spec.expected_tool and spec.expected_args else [],
        "extra_args": extras,
        "correction_score": corr[0] if corr else None,
        "cer": corr[1] if corr else None,
        "wer": corr[2] if corr else None,
        "relevance": round(relevance, 4) if relevance is not None else None,
    }
