"""flips.csv: one row per prompt and adapter — improved / regressed / unchanged beyond the regression
tolerance, both relevances and both answers (up to `ANSWER_CHARS` each, the rest counted) — for a
spreadsheet or a script."""

from __future__ import annotations

import csv
import io
from typing import Any

from ..analysis import flip_status, relevance_of
from ..text import clip
from . import ANSWER_CHARS
from .messages import T


def _cell(answer: dict[str, Any] | None, lang: str) -> str:
    text, more = clip(str((answer or {}).get("response") or ""), ANSWER_CHARS)
    return text + (" " + T[lang]["more_chars"].format(n=more) if more else "")


def flips_csv(data: dict[str, Any], tolerance: float, lang: str = "fr") -> str:
    """Per-prompt flip table: improved / regressed / unchanged, with both answers."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["adapter", "id", "category", "prompt", "status", "relevance_base", "relevance_finetuned",
                "answer_base", "answer_finetuned"])
    for a in data["metadata"]["variants"][1:]:
        for r in data["results"]:
            b, t = r["variants"].get("base"), r["variants"].get(a)
            rb, rt = relevance_of(b), relevance_of(t)
            status = flip_status(rb, rt, tolerance)
            w.writerow([a, r["id"], r["category"], r["prompt"], status, rb, rt, _cell(b, lang), _cell(t, lang)])
    return buf.getvalue()
