"""Are a llama-server's greedy answers reproducible? Starts the llama-server that `python -m tests.llama_cpp
build` made, serving the demo GGUF, in two setups — its defaults (parallel slots, prompt cache) and one
slot without the prompt cache — and for each: check_setup's determinism probe, then two benchmark runs
(30 prompts, base only, concurrency 8), counting the answers that match between the runs.

    uv run python benchmarks/server_determinism.py [--threads 2] [--tokens 48]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SETUPS = {
    "defaults (slots: auto, prompt cache on)": ([], True),
    "--parallel 1, prompt_cache false": (["-np", "1"], False),
}


def measure(name: str, args: list[str], prompt_cache: bool, threads: int, tokens: int, work: Path) -> str:
    from jarvis_bench import demo
    from jarvis_bench.commands import benchmark, check_setup
    from tests import llama_cpp
    from tests.conftest import free_port

    try:
        proc, url = llama_cpp.start(["-m", str(demo.gguf_path()), "--alias", "demo", "-c", "8192", "-t", str(threads),
                                     "--jinja", *args], work / "server.log", port=free_port())
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from None
    try:
        data = json.loads((ROOT / "benchmark_config.json").read_text(encoding="utf-8"))
        data["model"].update(backend="openai", base="demo", adapters=[],
                             endpoint={"base_url": url, "base_model": "demo", "prompt_cache": prompt_cache})
        cfg = work / "config.json"
        cfg.write_text(json.dumps(data), encoding="utf-8")
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            check_setup.main(["--config", str(cfg)])
        probe = next((ln for ln in out.getvalue().splitlines() if "determinism" in ln), "no probe line").split(" -> ")[0]
        runs, flagged = [], []
        for i in range(2):
            t0 = time.perf_counter()
            code = benchmark.main(["--config", str(cfg), "--output-dir", str(work / str(i)), "--quiet", "--no-cache",
                                   "--max-new-tokens", str(tokens)])
            secs = time.perf_counter() - t0
            if code != 0:
                raise SystemExit(f"benchmark run failed with exit code {code}")
            res = json.loads((work / str(i) / "benchmark_results.json").read_text(encoding="utf-8"))
            runs.append(({r["id"]: r["variants"]["base"]["response"] for r in res["results"]}, secs))
            flagged.append(bool(res["metadata"].get("not_reproducible")))
        same = sum(runs[0][0][k] == runs[1][0].get(k) for k in runs[0][0])
        return (f"| {name} | {same} / {len(runs[0][0])} | {' '.join(probe.split()[:1])} | "
                f"{sum(flagged)} of 2 | {runs[0][1]:.0f} s, {runs[1][1]:.0f} s |")
    finally:
        llama_cpp.stop(proc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=48)
    a = ap.parse_args()
    os.environ.setdefault("JARVIS_BENCH_CACHE", tempfile.mkdtemp(prefix="jarvis-determinism-"))
    rows = ["| llama-server setup | same answers, run 1 vs run 2 | check_setup probe | runs warning | run times |",
            "|---|---|---|---|---|"]
    for name, (args, prompt_cache) in SETUPS.items():
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(measure(name, args, prompt_cache, a.threads, a.tokens, Path(tmp)))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
