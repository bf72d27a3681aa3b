"""The whole flow in one command: check_setup -> benchmark -> analyze_results, then (with --open) the
HTML report opens in the default browser. What run_benchmark.bat / run_benchmark.sh call.

Every benchmark.py option is accepted and passed on; --lang picks the language of the summary and the reports.

Examples:
    uv run jarvis-bench run --demo --open
    uv run jarvis-bench run --all-checkpoints --lang en
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ..errors import EXIT_OK

log = logging.getLogger("jarvis_bench.run")

NO_OPEN_ENV = "JARVIS_BENCH_NO_OPEN"


def build_parser() -> argparse.ArgumentParser:
    from .benchmark import build_parser as benchmark_parser

    p = benchmark_parser()
    p.prog = "jarvis-bench run"
    p.description = __doc__
    g = p.add_argument_group("launcher")
    g.add_argument("--open", action="store_true", help="open the HTML report at the end")
    g.add_argument("--skip-check", action="store_true", help="do not run check_setup first")
    return p


def open_file(path: os.PathLike[str] | str) -> bool:
    """Open a file in the desktop's default program; False when there is no desktop (or it is disabled)."""
    import shutil
    import subprocess

    if os.environ.get(NO_OPEN_ENV):
        return False
    try:
        if sys.platform == "win32":
            os.startfile(path)  # type: ignore[attr-defined]  # noqa: S606 - our own output file
            return True
        opener = "open" if sys.platform == "darwin" else "xdg-open"
        if sys.platform != "darwin" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            return False
        if shutil.which(opener) is None:
            return False
        subprocess.Popen([opener, str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
        return True
    except OSError:
        return False


def run(args: argparse.Namespace, argv: list[str]) -> int:
    from ..clitools import setup_logging
    from . import analyze, benchmark, check_setup

    if not args.skip_check:
        print("== 1/3 check_setup ==", flush=True)
        code = check_setup.run(check_setup.build_parser().parse_args(
            (["--config", str(args.config)] if args.config else []) + ["--demo"] * args.demo + ["--debug"] * args.debug))
        setup_logging(quiet=args.quiet)
        if code != EXIT_OK:
            print("Stopped: fix the FAIL lines above (or pass --skip-check to try anyway).", file=sys.stderr)
            return code
    print("== 2/3 benchmark ==", flush=True)
    code = benchmark.run(args, argv)
    if code != EXIT_OK:
        return code
    print("== 3/3 analyze_results ==", flush=True)
    out = args.output_dir.expanduser().resolve()
    code = analyze.run(analyze.build_parser().parse_args(  # analyze's own defaults, whatever options it gains
        [str(out / "benchmark_results.json"), "--output-dir", str(out), "--lang", args.lang]
        + ["--quiet"] * args.quiet + ["--debug"] * args.debug))
    if code != EXIT_OK:
        return code
    files = [out / analyze.HTML_FILE]  # verdict, chart and every answer in one page (the .txt and .png beside it)
    if args.open and not os.environ.get(NO_OPEN_ENV):
        opened = [f for f in files if open_file(f)]
        if not opened:
            print("(no desktop to open the files in; they are listed above)")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    from ..clitools import guarded, setup_logging

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    setup_logging(quiet=args.quiet)
    return guarded(lambda: run(args, argv), debug=args.debug)
