"""Hostile environments (issue 15): a broken cache, a full or read-only disk, prompts longer than the
model's context, failed answers. Each ends with one line and its exit code, nothing lost, no traceback."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from jarvis_bench.backends.base import Generation
from jarvis_bench.cache import GenerationCache, SqliteStore

from .conftest import ROOT


def _gen(pid="cmd-01", text="D'accord."):
    return Generation(prompt_id=pid, variant="base", response=text, tokens=3)


@contextlib.contextmanager
def _tmpfs(path: Path, size: str = "64k"):
    """A real small filesystem (root only): a full disk, then remounted read-only."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root and mount to make a real small filesystem")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


# ----------------------------------------------------------------------------- caches are disposable


def test_a_cache_that_is_not_a_database_is_moved_aside(tmp_path, caplog):
    path = tmp_path / "generations.sqlite3"
    path.write_bytes(os.urandom(4096))
    with caplog.at_level("WARNING"):
        cache = GenerationCache(path)
    aside = list(tmp_path.glob("generations.sqlite3.corrupt-*"))
    assert len(aside) == 1 and aside[0].stat().st_size == 4096
    warning = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warning) == 1 and "moved aside" in warning[0] and str(path) in warning[0]
    cache.put("k", _gen())
    assert cache.get("k").response == "D'accord." and cache.get("k").cached
    cache.close()


def test_a_locked_cache_is_bypassed_and_the_answers_still_flow(tmp_path, caplog, monkeypatch):
    path = tmp_path / "generations.sqlite3"
    GenerationCache(path).close()
    holder = sqlite3.connect(path)
    holder.execute("BEGIN EXCLUSIVE")  # another process in the middle of a write, for longer than we wait
    monkeypatch.setattr(SqliteStore, "timeout_s", 0.2)
    try:
        with caplog.at_level("WARNING"):
            cache = GenerationCache(path)
            cache.put("k", _gen())
            assert cache.get("k") is None and cache.get_prompt("p") is None
            cache.put_prompt("p", "text")
    finally:
        holder.rollback()
        holder.close()
    warning = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warning) == 1 and "locked" in warning[0] and "continuing without it" in warning[0]
    assert not list(tmp_path.glob("*.corrupt-*"))  # a locked cache is not broken: left as it is


def test_a_cache_damaged_mid_run_is_given_up_with_one_warning(tmp_path, caplog):
    path = tmp_path / "generations.sqlite3"
    cache = GenerationCache(path)
    cache.put("k", _gen())
    cache.db.execute("DROP TABLE generations")  # what a half-copied file looks like to a query
    with caplog.at_level("WARNING"):
        assert cache.get("k") is None
        cache.put("k2", _gen())
        assert cache.get("k2") is None
    assert len([r for r in caplog.records if r.levelname == "WARNING"]) == 1 and cache.db is None


def test_full_then_read_only_disk(tmp_path, caplog):
    with _tmpfs(tmp_path / "small") as small:
        path = small / "generations.sqlite3"
        cache = GenerationCache(path)
        with caplog.at_level("WARNING"):
            for i in range(400):  # ~200 KB of answers into 64 KB
                cache.put(f"k{i}", _gen(text="x" * 500))
        cache.close()
        warning = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert len(warning) == 1 and "full" in warning[0]
        subprocess.run(["mount", "-o", "remount,ro", str(small)], check=True)
        caplog.clear()
        with caplog.at_level("WARNING"):
            cache = GenerationCache(path)
            cache.put("again", _gen())
            cache.close()
        warning = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert len(warning) == 1 and "continuing without it" in warning[0]


def test_benchmark_with_broken_caches_gives_the_same_answers(demo_run, tmp_path):
    """Both caches garbage: the run warns twice (one line each), answers as the clean run did, exit 0."""
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    (cache_dir / "models").symlink_to(Path(os.environ["JARVIS_BENCH_CACHE"]) / "models", target_is_directory=True)
    for name in ("generations.sqlite3", "embeddings.sqlite3"):
        (cache_dir / name).write_bytes(b"SQLite format 2\0" + os.urandom(2000))
    env = {**os.environ, "JARVIS_BENCH_CACHE": str(cache_dir)}
    out = tmp_path / "res"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmark.py"), "--demo", "--quiet", "--limit", "3",
                           "--output-dir", str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "moved aside" in ln]
    assert len(lines) == 2, proc.stderr
    data = json.loads((out / "benchmark_results.json").read_text(encoding="utf-8"))
    want = {r["id"]: r["variants"] for r in demo_run["data"]["results"]}
    for r in data["results"]:
        assert {v: a["response"] for v, a in r["variants"].items()} == {
            v: a["response"] for v, a in want[r["id"]].items()}
