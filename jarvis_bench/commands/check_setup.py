"""Check that this machine can run the benchmark as configured, before spending time on it.

One line per check (OK / WARN / FAIL / INFO), each FAIL with its fix; no model weights are loaded.
Exit code 0 when nothing FAILs, 1 otherwise (2 for bad usage).

Examples:
    uv run python check_setup.py --demo      # the embedded demo: should end with "OK CONFIGURATION OK"
    uv run python check_setup.py             # benchmark_config.json (Qwen3-30B-A3B in 4-bit + newest output/*/final)
    uv run python check_setup.py --json      # machine-readable
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from ..errors import EXIT_FAILURE, EXIT_OK

OK_LINE = "OK CONFIGURATION OK"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="check_setup.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", type=Path, help="config file (default: ./benchmark_config.json)")
    p.add_argument("--demo", action="store_true", help="check the embedded demo model and adapter instead")
    p.add_argument("--json", action="store_true", help="print the checks as JSON on stdout")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def run(args: argparse.Namespace) -> int:
    from .. import checks, config

    results = checks.run_all(args.config or config.default_config_path(), demo=args.demo)
    summary = checks.as_json(results)
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
        return EXIT_OK if summary["ok"] else EXIT_FAILURE
    for c in results:
        print(c.line())
    if summary["ok"]:
        warn = f" ({summary['warnings']} warning{'s' if summary['warnings'] > 1 else ''})" if summary["warnings"] else ""
        print(OK_LINE + warn)
        return EXIT_OK
    n = summary["failures"]
    print(f"FAIL {n} check{'s' if n > 1 else ''} failed: fix the FAIL line{'s' if n > 1 else ''} above, then rerun "
          "check_setup.py")
    return EXIT_FAILURE


def main(argv: list[str] | None = None) -> int:
    from ..clitools import guarded, setup_logging

    args = build_parser().parse_args(argv)
    setup_logging(quiet=True)
    logging.getLogger("jarvis_bench").setLevel(logging.ERROR)  # every finding is a line of the report
    return guarded(lambda: run(args), debug=args.debug)
