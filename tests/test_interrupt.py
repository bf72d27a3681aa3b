"""A real run interrupted by a signal keeps every finished answer; the rerun generates only the rest."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from jarvis_bench import fsutil

from .conftest import ROOT


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_generation_then_resume(sig, tmp_path, demo_base):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "models").symlink_to(demo_base.parent, target_is_directory=True)  # no second GGUF conversion
    env = {**os.environ, fsutil.CACHE_ENV: str(cache)}
    out = tmp_path / "res"
    cmd = [sys.executable, str(ROOT / "benchmark.py"), "--demo", "--limit", "4", "--batch-size", "2",
           "--max-new-tokens", "32", "--output-dir", str(out), "--quiet"]
    # A CI job started in the background inherits SIGINT as ignored, and Python then installs no
    # KeyboardInterrupt handler: give the child the default disposition, as a terminal would.
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    jsonl = out / "generations.jsonl"
    deadline = time.monotonic() + 180
    while not (jsonl.is_file() and jsonl.read_text(encoding="utf-8").count("\n") >= 2):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no answer was finished in time"
        time.sleep(0.2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "finished answers kept" in err and "Traceback" not in err
    partial = json.loads((out / "benchmark_results.json").read_text(encoding="utf-8"))
    meta = partial["metadata"]
    kept = sum(bool(a.get("response")) for r in partial["results"] for a in r["variants"].values())
    assert meta["interrupted"] is True and meta["complete"] is False and 2 <= kept < 8
    assert meta["missing_answers"] == 8 - kept

    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    final = json.loads((out / "benchmark_results.json").read_text(encoding="utf-8"))
    timings = final["metadata"]["timings"]["per_variant"]
    assert final["metadata"]["complete"] is True
    assert sum(t["from_cache"] for t in timings.values()) == kept  # nothing finished is generated twice
    for r in partial["results"]:  # and the kept answers are the ones the final results hold
        for v, a in r["variants"].items():
            if a.get("response"):
                done = next(x for x in final["results"] if x["id"] == r["id"])["variants"][v]
                assert done["response"] == a["response"]
