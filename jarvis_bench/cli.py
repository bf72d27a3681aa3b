"""`jarvis-bench <command>`: the console script; each command is also a root script."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "benchmark": ("jarvis_bench.commands.benchmark", "generate and score base vs adapters (benchmark.py)"),
    "analyze": ("jarvis_bench.commands.analyze", "text report and charts from the results (analyze_results.py)"),
    "check": ("jarvis_bench.commands.check_setup", "is this machine ready for this config? (check_setup.py)"),
    "quick": ("jarvis_bench.commands.quick_test", "a few prompts, base and adapter side by side (quick_test.py)"),
    "run": ("jarvis_bench.commands.run_all", "check -> benchmark -> analyze, then open the report (the launchers)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        lines = [f"  {name:<12} {help_}" for name, (_, help_) in COMMANDS.items()]
        print("usage: jarvis-bench <command> [options]\n\ncommands:\n" + "\n".join(lines), file=sys.stderr)
        if argv and argv[0] not in ("-h", "--help"):
            print(f"error: unknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0 if argv else 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return module.main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
