"""Real runs interrupted by real signals: the benchmark keeps every finished answer and the rerun generates
only the rest; analyze_results, check_setup and quick_test stop with one line and exit 130, writing nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from jarvis_bench import fsutil

from .conftest import ROOT

pytestmark = pytest.mark.slow  # every test here starts real processes and signals them


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


def _wait_for(proc: subprocess.Popen, ready, what: str, limit: float = 180) -> None:
    deadline = time.monotonic() + limit
    while not ready():
        assert proc.poll() is None, f"finished before {what}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"never {what}"
        time.sleep(0.02)


def _opened(pid: int, path) -> bool:
    """The process holds `path` open (Linux /proc)."""
    import contextlib

    with contextlib.suppress(OSError):
        return any(os.readlink(f"/proc/{pid}/fd/{fd}") == str(path) for fd in os.listdir(f"/proc/{pid}/fd"))
    return False


def _start(cmd, **kw):
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kw)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_analyze_writes_nothing_and_exits_130(sig, tmp_path, demo_results):
    """Interrupted while it reads and renders a large results file: one line, exit 130, the previous
    reports untouched, no temporary file left."""
    row = demo_results["results"][0]
    for a in row["variants"].values():
        a["response"] += " encore" * 2_000_000  # ~14 MB: reading and rendering take seconds
    inp = tmp_path / "benchmark_results.json"
    inp.write_text(json.dumps(demo_results), encoding="utf-8")
    for name in ("benchmark_report.txt", "benchmark_report.html", "benchmark_charts.png"):
        (tmp_path / name).write_text("previous\n", encoding="utf-8")
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = _start([sys.executable, str(ROOT / "analyze_results.py"), str(inp), "--quiet"])
    _wait_for(proc, lambda: _opened(proc.pid, inp), "opened the results")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and err.strip() == "interrupted.", err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert all((tmp_path / n).read_text(encoding="utf-8") == "previous\n"
               for n in ("benchmark_report.txt", "benchmark_report.html", "benchmark_charts.png"))


def test_sigterm_during_check_setup_and_quick_test_is_one_line(tmp_path, demo_base):
    """check_setup stopped while it inspects the machine, quick_test while it generates: one line, exit 130."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "models").symlink_to(demo_base.parent, target_is_directory=True)
    env = {**os.environ, fsutil.CACHE_ENV: str(cache)}

    check = _start([sys.executable, str(ROOT / "check_setup.py"), "--demo"], env=env)
    _wait_for(check, lambda: "torch" in open(f"/proc/{check.pid}/maps").read(), "imported torch")
    check.send_signal(signal.SIGTERM)
    _, err = check.communicate(timeout=120)
    assert check.returncode == 130 and err.strip() == "interrupted.", err

    quick = _start([sys.executable, str(ROOT / "quick_test.py"), "--demo"], env=env, cwd=tmp_path)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(quick.stderr.readline, "")), daemon=True)
    reader.start()
    # its first log line names the run ("… · transformers backend"), just before the model loads
    _wait_for(quick, lambda: any("transformers backend" in ln for ln in lines), "started")
    time.sleep(1.0)  # inside the model load or the first batch
    quick.send_signal(signal.SIGTERM)
    quick.wait(timeout=120)
    reader.join(timeout=10)
    assert quick.returncode == 130, lines
    assert lines[-1].strip() == "interrupted." and not any("Traceback" in ln for ln in lines), lines
