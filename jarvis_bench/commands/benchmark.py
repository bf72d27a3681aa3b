"""Run the benchmark: generate every prompt with the base and each LoRA adapter, write the results.

Examples:
    uv run python benchmark.py --demo                       # embedded demo, offline, CPU
    uv run python benchmark.py                              # benchmark_config.json (Qwen3-30B-A3B + newest output/*/final)
    uv run python benchmark.py --adapter output/run-7/final --adapter output/run-9/final
    uv run python benchmark.py --all-checkpoints --category tool_routing --limit 5
    uv run python benchmark.py --demo --no-cache --output-dir results/demo
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

from ..clitools import positive
from ..errors import EXIT_GATE, EXIT_INTERRUPTED, EXIT_OK, EXIT_RUNTIME, ConfigError

log = logging.getLogger("jarvis_bench.benchmark")

FLIPS_FILE = "flips.csv"
NOISY_FILE = "noisy_prompts.json"


def _count(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if not 0 <= n <= 20:
        raise argparse.ArgumentTypeError(f"{n} is out of range: give 0 to 20 variants per prompt")
    return n


def _fraction(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not 0 <= x <= 1:
        raise argparse.ArgumentTypeError(f"{value} is out of range: give a fraction from 0 to 1 (0.1 = 10 points)")
    return x


def _batch(value: str) -> str | int:
    return "auto" if value == "auto" else positive(value)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="benchmark.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", type=Path, help="config file (default: ./benchmark_config.json)")
    p.add_argument("--demo", action="store_true",
                   help="use the embedded demo model and adapter (offline, CPU); keeps the config's prompts")
    p.add_argument("--model", help="base model: hub id or local folder (overrides model.base)")
    p.add_argument("--adapter", action="append", type=Path, metavar="PATH",
                   help="LoRA adapter folder to compare (repeatable; overrides model.adapters)")
    p.add_argument("--all-checkpoints", action="store_true", help="every <adapters_dir>/*/final in one run")
    p.add_argument("--backend", help="generation backend (overrides model.backend)")
    p.add_argument("--max-new-tokens", type=positive, help="generation limit per answer")
    p.add_argument("--batch-size", type=_batch, help='prompts per batch, or "auto"')
    p.add_argument("--limit", type=positive, metavar="N", help="only the first N prompts (after --category)")
    p.add_argument("--category", action="append", metavar="NAME", help="only this category (repeatable)")
    p.add_argument("--output-dir", type=Path, default=Path("results"), help="where results go (default: results/)")
    p.add_argument("--no-cache", action="store_true",
                   help="regenerate every answer; the fresh answers replace what the cache held")
    p.add_argument("--allow-identical", action="store_true",
                   help="openai backend: let two variants use the same served model name (normally refused)")
    p.add_argument("--skip-too-long", action="store_true",
                   help="leave out prompts longer than the model's context (default: refuse to run, naming them)")
    p.add_argument("--device", choices=["auto", "cuda", "cpu"], default=None, help="where to run (default: auto)")
    p.add_argument("--dtype", choices=["auto", "bfloat16", "float16", "float32"], default=None,
                   help="weights and compute dtype (overrides model.dtype; the demo runs float32)")
    p.add_argument("--fail-below", choices=["MODERATE", "GOOD"], metavar="VERDICT",
                   help="exit 4 when the best adapter's verdict is below VERDICT (MODERATE or GOOD): a CI deploy gate")
    p.add_argument("--fail-on-regression", action="store_true",
                   help="exit 4 when the best adapter answers any prompt worse than the base")
    p.add_argument("--noisy", type=_count, metavar="N",
                   help="also answer N noisy-speech variants of every prompt with an expected tool (what a French "
                   "speech recogniser could write), reported beside the clean results (overrides "
                   "robustness.variants_per_prompt; 0 = none)")
    p.add_argument("--fail-on-robustness-drop", type=_fraction, metavar="X",
                   help="exit 4 when the best adapter's tool accuracy on the noisy variants is more than X below "
                   "its accuracy on their clean prompts (X from 0 to 1: 0.1 = 10 points; needs --noisy)")
    p.add_argument("--train-data", action="append", type=Path, metavar="PATH",
                   help="the adapter's training file (JSONL/JSON; repeatable; overrides training_data): benchmark "
                   "prompts found in it are reported as seen, and the comparison is also given without them")
    p.add_argument("--lang", choices=["fr", "en"], default="fr", help="language of the summary printed at the end "
                   "(default: fr; the reports: analyze_results.py --lang)")
    p.add_argument("--quiet", action="store_true", help="warnings and errors only; no progress bar")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def apply_overrides(cfg: Any, args: argparse.Namespace) -> Any:
    """The command-line flags over the config (any flag a command lacks counts as not given)."""
    from pydantic import ValidationError

    from .. import demo

    def flag(name: str) -> Any:
        return getattr(args, name, None)

    if flag("demo"):
        cfg = demo.apply(cfg, all_checkpoints=bool(flag("all_checkpoints")))
    updates: list[tuple[str, str, Any, Any]] = []  # (flag, section, field, value)
    if flag("model"):
        updates += [("--model", "model", "base", args.model), ("--model", "model", "base_name", None)]
    if flag("adapter"):
        updates.append(("--adapter", "model", "adapters", [str(p.expanduser().resolve()) for p in args.adapter]))
    elif flag("all_checkpoints"):
        updates.append(("--all-checkpoints", "model", "adapters", "all"))
    if flag("backend"):
        updates.append(("--backend", "model", "backend", args.backend))
    if flag("device"):
        updates.append(("--device", "model", "device", args.device))
    if flag("dtype"):
        updates.append(("--dtype", "model", "dtype", args.dtype))
    if flag("allow_identical"):
        cfg.model.endpoint.allow_identical = True
    if flag("noisy") is not None:
        updates.append(("--noisy", "robustness", "variants_per_prompt", args.noisy))
    if flag("train_data"):
        cfg.training_data = [str(p.expanduser().resolve()) for p in args.train_data]
    if flag("max_new_tokens"):
        updates.append(("--max-new-tokens", "generation", "max_new_tokens", args.max_new_tokens))
    if flag("batch_size"):
        updates.append(("--batch-size", "generation", "batch_size", args.batch_size))
    for flag, section, field, value in updates:
        try:
            setattr(getattr(cfg, section), field, value)
        except ValidationError as exc:
            raise ConfigError(f"{flag} {value!r}: {exc.errors()[0]['msg']}") from None
    return cfg


def select_prompts(cfg: Any, categories: list[str] | None, limit: int | None) -> list[Any]:
    prompts = list(cfg.prompts)
    if categories:
        unknown = [c for c in categories if c not in cfg.categories]
        if unknown:
            raise ConfigError(
                f"--category {unknown[0]!r} has no prompts; choose among: {', '.join(cfg.categories)}"
            )
        prompts = [p for p in prompts if p.category in categories]
    if limit is not None:
        prompts = prompts[:limit]
    return prompts


def run(args: argparse.Namespace, argv: list[str] | None) -> int:
    import json

    from .. import adapters, analysis, backends, config, fsutil, noisy, pipeline, results
    from ..cache import GenerationCache
    from ..reports import console
    from ..reports.flips import flips_csv

    t0 = time.perf_counter()
    cfg_path = args.config or config.default_config_path()
    cfg = apply_overrides(config.load(cfg_path), args)
    prompts = select_prompts(cfg, args.category, args.limit)
    try:  # a misspelt backend is reported before anything else
        backends.backend_class(cfg.model.backend)
    except ConfigError as exc:
        raise ConfigError(f"{'--backend' if args.backend else cfg.source}: {exc}") from None
    if args.fail_on_robustness_drop is not None and not cfg.robustness.variants_per_prompt:
        raise ConfigError("--fail-on-robustness-drop needs noisy-speech variants: add --noisy N (e.g. --noisy 4) "
                          "or set robustness.variants_per_prompt")
    if cfg.training_data:  # a bad training file is named before hours of generation, not after
        from ..overlap import read_training

        read_training([cfg.resolve(p) for p in cfg.training_data])
    variants = adapters.discover(cfg)
    out_dir = args.output_dir.expanduser().resolve()
    _check_writable(out_dir)
    noisy_variants = noisy.generate(prompts, cfg.robustness.variants_per_prompt, cfg.generation.seed)
    if noisy_variants:
        fsutil.atomic_write_text(out_dir / NOISY_FILE, json.dumps(noisy.listing(noisy_variants, prompts),
                                                                  ensure_ascii=False, indent=2) + "\n")
        log.info("%d noisy-speech variants of %d prompts: %s", len(noisy_variants),
                 len({v.source_id for v in noisy_variants}), out_dir / NOISY_FILE)
    cache = GenerationCache(read=not args.no_cache)
    try:
        data, outcome = pipeline.generate(cfg, variants, prompts, out_dir=out_dir, cache=cache,
                                          progress=not args.quiet, device=args.device or "auto", argv=argv, started=t0,
                                          skip_too_long=args.skip_too_long, noisy=noisy_variants)
    finally:
        cache.close()
    path = results.write(out_dir, data)  # answers are safe on disk before scoring starts
    if outcome.generations:
        t_score = time.perf_counter()
        analysis.evaluate(data, cfg)
        data["metadata"]["timings"]["scoring_s"] = round(time.perf_counter() - t_score, 3)
        data["metadata"]["timings"]["total_s"] = round(time.perf_counter() - t0, 3)
        path = results.write(out_dir, data)
        fsutil.atomic_write_text(out_dir / FLIPS_FILE, flips_csv(data, cfg.scoring.regression_tolerance, args.lang))
    if not args.quiet:
        console.summary(data, path, args.lang)
        if "statistics" in data:
            console.verdicts(data, args.lang)
    if outcome.interrupted:
        print(f"interrupted: {len(outcome.generations)} finished answers kept ({path}); "
              "rerun the same command to generate only the missing ones.", file=sys.stderr)
        return EXIT_INTERRUPTED
    if outcome.timed_out:
        print(f"error: generation.timeout_s reached; {outcome.missing} answers missing, finished ones kept in {path}. "
              "Raise generation.timeout_s or rerun to finish.", file=sys.stderr)
        return EXIT_RUNTIME
    from ..robustness import gate as robustness_gate
    from ..verdict import gate

    why = gate(data.get("statistics") or {}, fail_below=args.fail_below, fail_on_regression=args.fail_on_regression)
    why = why or robustness_gate(data, args.fail_on_robustness_drop)
    if why:
        print(f"gate failed: {why} (results kept in {path})", file=sys.stderr)
        return EXIT_GATE
    return EXIT_OK


def _check_writable(out_dir: Path) -> None:
    import os

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--output-dir {out_dir}: cannot create it ({exc.strerror}); choose a writable folder") from None
    if not os.access(out_dir, os.W_OK):
        raise ConfigError(f"--output-dir {out_dir} is not writable; choose a writable folder")


def main(argv: list[str] | None = None) -> int:
    from ..clitools import guarded, setup_logging

    args = build_parser().parse_args(argv)
    setup_logging(quiet=args.quiet)
    return guarded(lambda: run(args, argv if argv is not None else sys.argv[1:]), debug=args.debug)
