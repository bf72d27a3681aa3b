"""Check that this machine can run the benchmark as configured (no model weights are loaded).

    uv run python check_setup.py --demo     # embedded demo: ends with "OK CONFIGURATION OK"
    uv run python check_setup.py            # your config (benchmark_config.json)
    uv run python check_setup.py --help     # every option
"""

import sys

from jarvis_bench.commands.check_setup import main

if __name__ == "__main__":
    sys.exit(main())
