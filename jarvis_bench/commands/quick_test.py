"""Quick test: a few prompts through the whole pipeline (load, base + adapter answers, scoring), side by side.

It checks that the model loads, that the adapter attaches and changes the answers, and that scoring
runs, in a minute or two instead of a full benchmark. Answers are always generated (the cache is not
read) and nothing is written to results/. Ends with "OK QUICK TEST RÉUSSI" (exit 0) or what failed (exit 1).

Examples:
    uv run python quick_test.py --demo            # embedded demo: 1 prompt per category, < 1 min on CPU
    uv run python quick_test.py                   # your config: base vs the newest output/*/final
    uv run python quick_test.py -n 3 --adapter output/run-7/final
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..clitools import positive
from ..errors import EXIT_FAILURE, EXIT_OK

OK_LINE = "OK QUICK TEST RÉUSSI"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="quick_test.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", type=Path, help="config file (default: ./benchmark_config.json)")
    p.add_argument("--demo", action="store_true", help="use the embedded demo model and adapter (offline, CPU)")
    p.add_argument("-n", "--per-category", type=positive, default=1, metavar="N",
                   help="prompts per category (default: 1)")
    p.add_argument("--adapter", action="append", type=Path, metavar="PATH",
                   help="adapter to test (repeatable: one column each; default: the config's newest)")
    p.add_argument("--max-new-tokens", type=positive, help="generation limit per answer (default: the config's)")
    p.add_argument("--device", choices=["auto", "cuda", "cpu"], default=None, help="where to run (default: auto)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def pick(prompts: list[Any], per_category: int) -> list[Any]:
    """The first N prompts of each category, in config order."""
    taken: dict[str, int] = {}
    out = []
    for p in prompts:
        if taken.get(p.category, 0) < per_category:
            taken[p.category] = taken.get(p.category, 0) + 1
            out.append(p)
    return out


def _mark(m: dict[str, Any] | None) -> str:
    if not m:
        return "erreur"
    from ..reports.txt import why

    parts = [why(m), f"pertinence {m['relevance']:.2f}"]
    if m.get("cosine_to_base") is not None:
        parts.append(f"cos↔base {m['cosine_to_base']:.2f}")
    return " · ".join(parts)


SHOWN_CHARS = 280


def _shown(text: str) -> str:
    """An answer as shown in the table: blank lines collapsed, long ones cut with a count."""
    from rich.markup import escape

    flat = "\n".join(line for line in text.strip().splitlines() if line.strip())
    cut = f"… (+{len(flat) - SHOWN_CHARS} car.)" if len(flat) > SHOWN_CHARS else ""
    return escape(flat[:SHOWN_CHARS]) + cut


def show(data: dict[str, Any], variants: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 140)
    table = Table(title=f"Quick test · {data['metadata']['base_model']}", title_justify="left", show_lines=True)
    table.add_column("prompt", ratio=1)
    for name in variants:
        table.add_column(name, ratio=2)
    for r in data["results"]:
        cells = []
        for name in variants:
            a = r["variants"].get(name, {})
            if a.get("error"):
                text = f"[red]ERREUR: {_shown(a['error'])}[/red]"
            else:
                text = _shown(a.get("response", "")) or "[red](vide)[/red]"
            cells.append(f"{text}\n[dim]{_mark(a.get('metrics'))}[/dim]")
        table.add_row(f"[bold]{r['id']}[/bold]\n{_shown(r['prompt'])}", *cells)
    console.print(table)


def problems(data: dict[str, Any], variants: list[str]) -> tuple[list[str], list[str]]:
    """(failures, warnings) of a quick-test run."""
    fails: list[str] = []
    warns: list[str] = []
    for r in data["results"]:
        for name in variants:
            a = r["variants"].get(name)
            if a is None:
                fails.append(f"{r['id']}/{name}: no answer")
            elif a.get("error"):
                fails.append(f"{r['id']}/{name}: {a['error']}")
            elif not a.get("response", "").strip():
                fails.append(f"{r['id']}/{name}: empty answer")
    if len(variants) == 1:
        warns.append("no adapter found: only the base model was tested (set model.adapters or pass --adapter)")
    for name in variants[1:] if not fails else []:
        if all(r["variants"][variants[0]]["response"] == r["variants"][name]["response"] for r in data["results"]):
            warns.append(f"{name} answers exactly like the base on every prompt: is the adapter trained, "
                         "and made for this base?")
    return fails, warns


def run(args: argparse.Namespace) -> int:
    from .. import adapters, analysis, config, pipeline
    from .benchmark import apply_overrides

    t0 = time.perf_counter()
    cfg = apply_overrides(config.load(args.config or config.default_config_path()), args)
    prompts = pick(list(cfg.prompts), args.per_category)
    variants = adapters.discover(cfg)[: 1 + max(1, len(args.adapter or []))]
    names = [v.name for v in variants]
    with tempfile.TemporaryDirectory(prefix="jarvis-quick-") as tmp:
        data, outcome = pipeline.generate(cfg, variants, prompts, out_dir=Path(tmp), cache=None,
                                          progress=not args.quiet, device=args.device or "auto")
    if outcome.interrupted:
        raise KeyboardInterrupt
    if outcome.generations:
        analysis.evaluate(data, cfg)
    show(data, names)
    fails, warns = problems(data, names)
    for w in warns:
        print(f"WARN {w}")
    elapsed = time.perf_counter() - t0
    if fails:
        print(f"ÉCHEC QUICK TEST ({len(fails)} problème{'s' if len(fails) > 1 else ''}, {elapsed:.0f} s):")
        for f in fails:
            print(f"  - {f}")
        return EXIT_FAILURE
    print(f"{OK_LINE} ({len(prompts)} prompts × {len(names)} variantes en {elapsed:.0f} s)")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    from ..clitools import guarded, setup_logging

    args = build_parser().parse_args(argv)
    setup_logging(quiet=args.quiet)
    return guarded(lambda: run(args), debug=args.debug)
