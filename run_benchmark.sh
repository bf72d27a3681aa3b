#!/bin/sh
# jarvis-bench launcher (Linux/macOS): check_setup -> benchmark -> analyze_results, then opens the
# HTML report in the browser. Every benchmark.py option is passed on, plus --lang en and --skip-check.
#
#   ./run_benchmark.sh --demo                 # the embedded demo (CPU, offline)
#   ./run_benchmark.sh                        # your benchmark_config.json
#   ./run_benchmark.sh --all-checkpoints      # rank every output/*/final
#
# Set JARVIS_BENCH_NO_OPEN=1 to leave the files closed.
case "$0" in */*) cd "${0%/*}" || exit 1 ;; esac

if ! command -v uv >/dev/null 2>&1; then
    echo "error: uv is not installed. Install it with one of:" >&2
    echo "    curl -LsSf https://astral.sh/uv/install.sh | sh" >&2
    echo "    pip install uv" >&2
    echo "then open a new terminal and run ./run_benchmark.sh again (see INSTALLATION.md)." >&2
    exit 127
fi

uv run jarvis-bench run --open "$@"
status=$?
if [ "$status" -ne 0 ]; then
    echo "" >&2
    echo "run_benchmark.sh: stopped with exit code $status; the message above says what to fix" >&2
    echo "(INSTALLATION.md, section Troubleshooting, lists the usual cases)." >&2
fi
exit "$status"
