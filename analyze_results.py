"""Write benchmark_report.txt and benchmark_charts.png from results/benchmark_results.json.

    uv run python analyze_results.py              # French report (default)
    uv run python analyze_results.py --lang en    # English report
    uv run python analyze_results.py --help       # every option
"""

import sys

from jarvis_bench.commands.analyze import main

if __name__ == "__main__":
    sys.exit(main())
