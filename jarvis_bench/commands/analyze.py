"""Write the text report and the charts from results/benchmark_results.json.

Examples:
    uv run python analyze_results.py                         # results/ -> benchmark_report.txt/.html + benchmark_charts.png
    uv run python analyze_results.py --lang en               # English report
    uv run python analyze_results.py --rescore               # recompute metrics/statistics after a config change
    uv run python analyze_results.py --input other/benchmark_results.json --output-dir other/
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from ..errors import EXIT_OK, ConfigError

log = logging.getLogger(__name__)

REPORT_FILE = "benchmark_report.txt"
HTML_FILE = "benchmark_report.html"
CHARTS_FILE = "benchmark_charts.png"
ROBUSTNESS_CHART = "benchmark_robustness.png"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="analyze_results.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", type=Path, nargs="?", help="results JSON or the folder holding it (same as --input)")
    p.add_argument("--input", type=Path, default=Path("results/benchmark_results.json"), help="results JSON")
    p.add_argument("--output-dir", type=Path, help="where to write the report and charts (default: beside --input)")
    p.add_argument("--lang", choices=["fr", "en"], default="fr", help="report language (default: fr)")
    p.add_argument("--rescore", action="store_true",
                   help="recompute metrics and statistics from the stored answers with the current config")
    p.add_argument("--config", type=Path, help="config for --rescore (default: the one the run used)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def load_results(path: Path) -> dict:
    path = path.expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"results file not found: {path}; run `uv run python benchmark.py` first or pass --input")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON ({exc.msg}); rerun benchmark.py") from None
    if not isinstance(data, dict) or "metadata" not in data or "results" not in data:
        raise ConfigError(f"{path} is not a jarvis-bench results file (no metadata/results); pass the right --input")
    return data


def run(args: argparse.Namespace) -> int:
    from .. import analysis, config, fsutil, results
    from ..reports import charts, html, txt
    from ..reports.flips import flips_csv

    inp = (args.results or args.input).expanduser().resolve()
    if inp.is_dir():
        inp = inp / "benchmark_results.json"
    data = load_results(inp)
    out_dir = (args.output_dir or inp.parent).expanduser().resolve()
    from ..metrics import SCORER_VERSION

    scored_by = data["metadata"].get("scorer_version", 1)
    if not args.rescore and "statistics" in data and scored_by != SCORER_VERSION:
        log.warning("%s was scored by scorer version %s, not the current %s: its numbers are not comparable with "
                    "today's; run `uv run python analyze_results.py --rescore` to bring it to the current scorer",
                    inp, scored_by, SCORER_VERSION)
    if args.rescore or "statistics" not in data:
        cfg_path = args.config or data["metadata"].get("config_file") or config.default_config_path()
        cfg = config.load(cfg_path)
        analysis.evaluate(data, cfg)
        results.write(inp.parent, data)
        fsutil.atomic_write_text(inp.parent / "flips.csv", flips_csv(data, cfg.scoring.regression_tolerance, args.lang))
    # Everything is rendered before anything is written: an interruption (Ctrl+C, SIGTERM) or an error
    # while rendering leaves the previous reports as they were, never a new text beside an old page.
    report, page = txt.render(data, args.lang), html.render(data, args.lang)
    charts.write(data, out_dir / CHARTS_FILE, args.lang)
    robust_chart = charts.write_robustness(data, out_dir / ROBUSTNESS_CHART, args.lang)
    fsutil.atomic_write_text(out_dir / REPORT_FILE, report)
    fsutil.atomic_write_text(out_dir / HTML_FILE, page)
    if not args.quiet:
        print(report)
        print(f"Report: {out_dir / REPORT_FILE}\nHTML:   {out_dir / HTML_FILE}\nCharts: {out_dir / CHARTS_FILE}"
              + (f"\n        {robust_chart}" if robust_chart else ""))
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    from ..clitools import guarded, setup_logging

    args = build_parser().parse_args(argv)
    setup_logging(quiet=args.quiet)
    return guarded(lambda: run(args), debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
