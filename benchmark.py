"""Benchmark base vs LoRA fine-tune(s) on the JARVIS prompts.

    uv run python benchmark.py --demo        # embedded demo (offline, CPU)
    uv run python benchmark.py --help        # every option
"""

import sys

from jarvis_bench.commands.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
