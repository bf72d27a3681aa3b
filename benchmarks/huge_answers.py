"""Every step after generation stays linear in the size of the answers: analyze_results.py on a results file
whose answers are megabytes long (a model that loops, a server that ignores max_tokens).

Builds a results file from the demo's stored results (tests/data/demo_results.json) with every answer
(30 prompts x base and adapter = 60) grown to `--mb` megabytes — the original answer followed by a loop of
French text and tool calls — then times, each in a fresh process:

    analyze    `analyze_results.py` on it: text report, HTML page, charts, as a user runs it
    rescore    `analyze_results.py --rescore`: scoring (tool calls, keywords, embeddings) and statistics
               again, then the reports

and prints the wall time, the peak memory and the size of each file written.

    uv run python benchmarks/huge_answers.py            # 60 answers of 3 MB
    uv run python benchmarks/huge_answers.py --mb 1 --only analyze
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STORED = ROOT / "tests" / "data" / "demo_results.json"
LOOP = ("Je répète : ouvre chrome, mets le volume à 5, <tool_call>{\"name\": \"open_app_tool\", "
        "\"arguments\": {\"app\": \"chrome\"}}</tool_call> </script><b>gras</b> {\"name\": … ")


def build(folder: Path, mb: float) -> Path:
    data = json.loads(STORED.read_text(encoding="utf-8"))
    meta = data["metadata"]
    meta.update(timestamp="2026-12-03T00:00:00+00:00", config_file=str(ROOT / "benchmark_config.json"),
                config_sha256="0" * 64, timings={"total_s": 0.0, "per_variant": {}})
    for a in meta["adapters"]:
        a["path"] = str(ROOT / "demo" / "output" / a["name"] / "final")
    size = int(mb * 1_000_000)
    for r in data["results"]:
        for v in r["variants"].values():
            text = v["response"] + " "
            v["response"] = text + LOOP * ((size - len(text)) // len(LOOP) + 1)
    path = folder / "benchmark_results.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def timed(argv: list[str]) -> tuple[float, float]:
    t0 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    peak = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 2**20  # KiB -> GiB
    return wall, peak


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mb", type=float, default=3.0, help="size of each answer in MB (default: 3)")
    p.add_argument("--only", nargs="+", choices=["analyze", "rescore"], default=["analyze", "rescore"])
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="jarvis-huge-") as tmp:
        results = build(Path(tmp), args.mb)
        print(f"60 answers of {args.mb:g} MB: {results.stat().st_size / 1e6:.0f} MB of results JSON")
        print("| step | wall (s) | peak RSS (GiB) |\n|---|---|---|")
        for step in args.only:
            argv = [sys.executable, "analyze_results.py", str(results), "--quiet",
                    *(["--rescore", "--config", str(ROOT / "benchmark_config.json")] if step == "rescore" else [])]
            wall, peak = timed(argv)
            print(f"| {step} | {wall:.1f} | {peak:.2f} |", flush=True)
        for f in sorted(Path(tmp).iterdir()):
            print(f"  {f.name}: {f.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
