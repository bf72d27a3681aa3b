"""What benchmark.py prints when it finishes (French by default, `--lang en`): the run's table (answers,
cache, errors, speed), the GPU decode bound next to the measure, and per adapter the relevance by
category with its interval and the verdict line. Words from `messages.T[lang]["console"]`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from .messages import T
from .txt import verdict_notes


def _console() -> Any:
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 120)


def summary(data: dict[str, Any], path: Path, lang: str = "fr") -> None:
    """The run: one row per variant (answers, from the cache, errors, truncated, time, tokens/s)."""
    from rich.table import Table

    c = T[lang]["console"]
    meta = data["metadata"]
    table = Table(title=f"jarvis-bench · {meta['base_model']} · {meta.get('device')}", title_justify="left")
    for i, col in enumerate(c["columns"]):
        table.add_column(col, justify="left" if i == 0 else "right")
    for name, t in meta["timings"]["per_variant"].items():
        table.add_row(
            name, str(t["answers"]), str(t["from_cache"]), str(t["errors"]), str(t["truncated"]),
            f"{t['generation_s']:.1f}" if t["generation_s"] is not None else "-",
            f"{t['tokens_per_s']:.1f}" if t["tokens_per_s"] else "-",
        )
    console = _console()
    console.print(table)
    if meta.get("decode_bound_steps_per_s"):
        console.print(c["bound"].format(b=meta["decode_bound_steps_per_s"], bw=meta["gpu_bandwidth_gbs"],
                                        w=meta["weights_read_per_step_gib"], m=meta.get("decode_steps_per_s") or 0))
    console.print(c["results"].format(path=path, s=meta["timings"]["total_s"]))


def _first_error(data: dict[str, Any], adapter: str) -> str | None:
    """The first failed answer's error, base or adapter (it names the server or the file, and the reason)."""
    for r in data["results"]:
        for v in ("base", adapter):
            err = (r["variants"].get(v) or {}).get("error")
            if err:
                return str(err)[:300]
    return None


def verdicts(data: dict[str, Any], lang: str = "fr") -> None:
    """Per category, base vs each adapter: relevance, delta, CI; then the verdict line."""
    from rich.markup import escape
    from rich.table import Table

    c = T[lang]["console"]
    st = data["statistics"]
    conf = (data["metadata"].get("scoring") or {}).get("confidence", 0.95)
    console = _console()
    for name, cmp in st["comparisons"].items():
        if "verdict" not in cmp:
            continue
        v = cmp["verdict"]
        err = _first_error(data, name) if v["level"] == "INCOMPLETE" else None
        why = escape(c["first_error"].format(e=err)) if err else ""  # an error text is not rich markup
        if v["relevance_gain"] is None:  # no prompt that every variant answered
            console.print(c["no_answer"].format(name=name, m=v["missing_answers"]) + why)
            continue
        table = Table(title=c["table"].format(name=name), title_justify="left")
        for i, col in enumerate(c["cmp_columns"]):
            table.add_column(col.format(name=name, pct=100 * conf), justify="left" if i == 0 else "right")
        for cat, block in [*cmp["by_category"].items(), ("GLOBAL", cmp["overall"])]:
            r = block["relevance"]
            tool = block.get("tool_correct")
            table.add_row(
                cat, str(r["n"]), f"{r['mean_base']:.3f}", f"{r['mean_finetuned']:.3f}", f"{r['delta']:+.3f}",
                f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]", f"{r['p_value']:.3g}",
                f"{tool['mean_base']:.0%}→{tool['mean_finetuned']:.0%}" if tool else "-",
            )
        console.print(table)
        unit = "%" if v["relevance_gain_unit"] == "percent" else " pts"
        measured = c["measured"].format(g=v["relevance_gain"], u=unit, k=v["keyword_gain"], r=v["regressions"],
                                        sig=c["sig"] if v["significant"] else c["nosig"], p=v["p_value"])
        if v["level"] == "INCOMPLETE":
            console.print(c["incomplete"].format(name=name, m=v["missing_answers"], c=v["complete_prompts"],
                                                 measured=measured) + why)
        else:
            notes = verdict_notes(v, conf, lang)
            console.print(c["verdict"].format(name=name, level=v["level"], measured=measured)
                          + escape("".join(f" — {n}" for n in notes)))
    if len(st["ranking"]) > 1:
        console.print(c["ranking"].format(r=" > ".join(st["ranking"]), b=st["best_adapter"]))
    rob = data.get("robustness")
    if rob:
        rows = [c["robust_row"].format(v=v, c=pv["clean"]["tool_accuracy"], n=pv["noisy"]["tool_accuracy"])
                for v, pv in rob["per_variant"].items()
                if pv["clean"]["tool_accuracy"] is not None and pv["noisy"]["tool_accuracy"] is not None]
        console.print(escape(c["robust"].format(n=rob["noisy_prompts"], rows=" · ".join(rows) or c["robust_none"])))
    ov = data.get("training_overlap")
    if ov:
        seen = ov.get("seen") or []
        console.print(escape(c["seen"].format(n=len(seen), ids=", ".join(seen[:10]) + (" …" if len(seen) > 10 else ""))
                             if seen else c["unseen"].format(t=ov["training_prompts"])))
