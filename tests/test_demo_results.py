"""The demo's results do not change by accident: `benchmark.py --demo` (generated afresh: the session has
its own cache) gives the stored `tests/data/demo_results.json`, minus what differs from run to run
(dates, timings, latencies, paths, library versions, what the backend says only when it loaded the model). Answers, metrics, statistics and verdicts must be
the same; numbers are stored rounded to 4 decimals, so floats may differ by 2e-4.

A change that is meant to move the demo's results (a new metric, a scorer change, a new prompt) refreshes
the copy on purpose — `uv run python -m tests.test_demo_results results/benchmark_results.json` after a
`uv run python benchmark.py --demo` — and says why in its commit.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

STORED = Path(__file__).resolve().parent / "data" / "demo_results.json"
VOLATILE_META = (
    "timestamp", "versions", "platform", "command", "timings",
    "base_model_source", "lora_adapter", "config_file", "config_sha256",  # paths (the hash covers the config's paths)
    # what the backend reports only when it loaded the model (not when every answer came from the cache)
    "tokenizer_load_s", "base_load_s", "adapters_load_s", "decode_s", "decode_steps", "shared_prefix_tokens",
    "attention",
)
VOLATILE_ANYWHERE = ("latency_s", "path", "embedding_source")
TOLERANCE = 2e-4


def stable(data: dict[str, Any]) -> dict[str, Any]:
    """The results without what changes from one identical run to the next."""
    def strip(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in VOLATILE_ANYWHERE}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    out = strip(data)
    out["metadata"] = {k: v for k, v in out["metadata"].items() if k not in VOLATILE_META}
    return out


def differences(want: Any, got: Any, where: str = "") -> list[str]:
    if isinstance(want, dict) and isinstance(got, dict):
        out = [f"{where}.{k}: missing" for k in want if k not in got]
        out += [f"{where}.{k}: unexpected" for k in got if k not in want]
        for k in want:
            if k in got:
                out += differences(want[k], got[k], f"{where}.{k}")
        return out
    if isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            return [f"{where}: {len(got)} items instead of {len(want)}"]
        return [d for i, (a, b) in enumerate(zip(want, got)) for d in differences(a, b, f"{where}[{i}]")]
    if isinstance(want, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        return [] if math.isclose(want, got, abs_tol=TOLERANCE) else [f"{where}: {got!r} instead of {want!r}"]
    return [] if want == got else [f"{where}: {got!r:.200} instead of {want!r:.200}"]


def test_demo_results_are_the_stored_ones(demo_run):
    want = json.loads(STORED.read_text(encoding="utf-8"))
    diff = differences(want, stable(demo_run["data"]))
    assert not diff, (f"{len(diff)} difference(s) from {STORED.name} (if intended, refresh it: see this module's "
                      "docstring):\n" + "\n".join(diff[:30]))


if __name__ == "__main__":
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("results/benchmark_results.json")
    STORED.write_text(json.dumps(stable(json.loads(src.read_text(encoding="utf-8"))), ensure_ascii=False, indent=1)
                      + "\n", encoding="utf-8")
    print(f"{STORED} written from {src}")
