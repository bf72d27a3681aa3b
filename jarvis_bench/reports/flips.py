"""flips.csv: one row per prompt and adapter — improved / regressed / unchanged beyond the regression
tolerance, both relevances and both answers — for a spreadsheet or a script."""

from __future__ import annotations

import csv
import io
from typing import Any

from ..analysis import flip_status, relevance_of


def flips_csv(data: dict[str, Any], tolerance: float) -> str:
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
            w.writerow([a, r["id"], r["category"], r["prompt"], status, rb, rt, (b or {}).get("response", ""),
                        (t or {}).get("response", "")])
    return buf.getvalue()
