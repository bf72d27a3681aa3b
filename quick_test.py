"""Quick test: one prompt per category through the whole pipeline, base and adapter side by side.

    uv run python quick_test.py --demo      # embedded demo: ends with "OK QUICK TEST RÉUSSI"
    uv run python quick_test.py             # your config
    uv run python quick_test.py --help      # every option
"""

import sys

from jarvis_bench.commands.quick_test import main

if __name__ == "__main__":
    sys.exit(main())
