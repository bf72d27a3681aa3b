"""Hostile environments: a broken cache, a full or read-only disk, prompts longer than the
model's context, failed answers. Each ends with one line and its exit code, nothing lost, no traceback."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from jarvis_bench.backends.base import Generation
from jarvis_bench.cache import GenerationCache, SqliteStore

from .conftest import ROOT


def _gen(pid="cmd-01", text="D'accord."):
    return Generation(prompt_id=pid, variant="base", response=text, tokens=3)


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


def test_full_then_read_only_disk(tmp_path, caplog, tmpfs):
    with tmpfs(tmp_path / "small") as small:
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


# ----------------------------------------------------------------------------- writing results can fail cleanly


def _fail_writes_to(monkeypatch, name: str):
    """Every fsync of a file called `name` (or a temporary file beside it) fails as a full disk does."""
    import errno

    real = os.fsync

    def fsync(fd):
        target = os.readlink(f"/proc/self/fd/{fd}")
        if Path(target).name == name or Path(target).name.startswith(f".{name}."):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.parametrize("name", ["benchmark_results.json", "generations.jsonl", "flips.csv"])
def test_a_full_disk_while_writing_is_one_line_and_exit_3(demo_run, tmp_path, monkeypatch, capsys, name):
    from jarvis_bench.commands import benchmark

    out = tmp_path / "res"
    out.mkdir()
    (out / name).write_text("previous\n", encoding="utf-8")
    _fail_writes_to(monkeypatch, name)
    code = benchmark.main(["--demo", "--quiet", "--output-dir", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3
    assert err[-1] == (f"error: cannot write {out / name}: No space left on device (ENOSPC); free some space, fix "
                       "the folder's permissions or choose another output folder, then rerun (the previous file "
                       "is unchanged)")
    if name != "generations.jsonl":  # appended to, not replaced: it holds what was written before the failure
        assert (out / name).read_text(encoding="utf-8") == "previous\n"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left behind
    monkeypatch.undo()
    code = benchmark.main(["--demo", "--quiet", "--output-dir", str(out)])  # space freed: nothing generated
    data = json.loads((out / "benchmark_results.json").read_text(encoding="utf-8"))
    per = data["metadata"]["timings"]["per_variant"]
    assert code == 0 and sum(v["from_cache"] for v in per.values()) == 60


def test_report_and_charts_on_a_full_disk(demo_run, tmp_path, monkeypatch, capsys):
    import shutil

    from jarvis_bench.commands import analyze

    shutil.copy(demo_run["out"] / "benchmark_results.json", tmp_path / "benchmark_results.json")
    for name in ("benchmark_report.txt", "benchmark_charts.png"):
        (tmp_path / name).write_text("previous\n", encoding="utf-8")
    import matplotlib.figure

    def full(self, fname, *a, **kw):
        import errno

        raise OSError(errno.ENOSPC, "No space left on device", str(fname))

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full)
    code = analyze.main(["--input", str(tmp_path / "benchmark_results.json"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3 and len(err) == 1 and "cannot write" in err[0] and "benchmark_charts.png" in err[0]
    assert (tmp_path / "benchmark_charts.png").read_text(encoding="utf-8") == "previous\n"
    assert (tmp_path / "benchmark_report.txt").read_text(encoding="utf-8") == "previous\n"  # no mixed set
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_real_full_disk_under_the_results(demo_run, tmp_path, capsys, tmpfs):
    """The same on a real 64 KB filesystem (root only): the answers fit, the results do not."""
    from jarvis_bench.commands import benchmark

    with tmpfs(tmp_path / "small", size="48k") as small:
        code = benchmark.main(["--demo", "--quiet", "--output-dir", str(small)])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 3 and len(err) == 1 and "No space left on device (ENOSPC)" in err[0], err
        assert not [p for p in small.iterdir() if p.name.startswith(".")]


def test_answers_generated_before_a_write_failure_are_not_generated_again(demo_base, tmp_path, monkeypatch, capsys):
    """A fresh cache; the results folder fills up at the third answer: the rerun generates only the rest."""
    import errno

    from jarvis_bench.commands import benchmark

    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    (cache_dir / "models").symlink_to(Path(os.environ["JARVIS_BENCH_CACHE"]) / "models", target_is_directory=True)
    monkeypatch.setenv("JARVIS_BENCH_CACHE", str(cache_dir))
    real, appended = os.fsync, []

    def fsync(fd):
        if Path(os.readlink(f"/proc/self/fd/{fd}")).name == "generations.jsonl":
            appended.append(fd)
            if len(appended) == 3:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    argv = ["--demo", "--quiet", "--limit", "2", "--output-dir", str(tmp_path / "res")]
    assert benchmark.main(argv) == 3
    assert "generations.jsonl: No space left on device" in capsys.readouterr().err
    monkeypatch.setattr(os, "fsync", real)
    assert benchmark.main(argv) == 0
    data = json.loads((tmp_path / "res" / "benchmark_results.json").read_text(encoding="utf-8"))
    assert sum(v["from_cache"] for v in data["metadata"]["timings"]["per_variant"].values()) == 3


def test_no_room_for_the_demo_model_in_the_cache(tmp_path, monkeypatch, capsys, tmpfs):
    """The first demo run dequantizes the model into the cache (~0.6 GB): a full disk is one line."""
    from jarvis_bench.commands import benchmark

    with tmpfs(tmp_path / "small", size="1m") as small:
        monkeypatch.setenv("JARVIS_BENCH_CACHE", str(small))
        code = benchmark.main(["--demo", "--quiet", "--no-cache", "--output-dir", str(tmp_path / "res")])
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.startswith("error:")]  # (tqdm bars: imported before --quiet)
        assert code == 3 and len(lines) == 1 and "Traceback" not in err, err
        assert lines[0].startswith(f"error: cannot write the demo model into the cache {small / 'models'}: No space left")
        assert not list((small / "models").iterdir())  # the partial copy is removed


# ----------------------------------------------------------------------------- no verdict from failed answers


def _with_errors(demo_run, failed_ids):
    import copy

    data = copy.deepcopy(demo_run["data"])
    for r in data["results"]:
        if r["id"] in failed_ids:
            for a in r["variants"].values():
                a.update(response="", error="timeout after 5 s", metrics=None)
    return data


def test_failed_answers_give_no_verdict_and_fail_the_gate(demo_run, demo_cfg):
    from jarvis_bench import analysis
    from jarvis_bench.reports import txt as report
    from jarvis_bench.verdict import gate

    whole = demo_run["data"]["statistics"]["comparisons"]["jarvis-demo"]["verdict"]
    data = _with_errors(demo_run, {"cmd-01", "rt-04"})
    analysis.analyze(data, demo_cfg)
    cmp = data["statistics"]["comparisons"]["jarvis-demo"]
    v = cmp["verdict"]
    assert v["level"] == "INCOMPLETE" and v["missing_answers"] == 4 and v["complete_prompts"] == 28
    assert v["measured_level"] in {"GOOD", "MODERATE", "INSUFFICIENT"} and cmp["overall"]["relevance"]["n"] == 28
    assert whole["level"] != "INCOMPLETE"
    assert "INCOMPLETE" in gate(data["statistics"], fail_below="MODERATE", fail_on_regression=False)
    assert "rerun" in gate(data["statistics"], fail_below=None, fail_on_regression=True)
    assert gate(data["statistics"], fail_below=None, fail_on_regression=False) is None
    assert cmp["recommendations"][0]["code"] == "incomplete"
    fr, en = report.render(data, "fr"), report.render(data, "en")
    assert "PAS DE VERDICT" in fr and "4 réponse(s) manquante(s) ou en erreur" in fr
    assert "NO VERDICT" in en and "on the 28 complete prompts alone" in en and "GOOD FINE-TUNE" not in en


def test_one_surviving_pair_is_no_verdict_either(demo_run, demo_cfg, tmp_path):
    """The slow-server case: nearly every answer failed; what is left cannot make a verdict."""
    from jarvis_bench import analysis
    from jarvis_bench.reports import charts
    from jarvis_bench.reports import txt as report

    ids = [r["id"] for r in demo_run["data"]["results"]]
    for keep in (ids[:1], []):
        data = _with_errors(demo_run, set(ids) - set(keep))
        analysis.analyze(data, demo_cfg)
        v = data["statistics"]["comparisons"]["jarvis-demo"]["verdict"]
        assert v["level"] == "INCOMPLETE" and v["missing_answers"] == 2 * (30 - len(keep))
        assert "NO VERDICT" in report.render(data, "en")
        charts.write(data, tmp_path / "c.png", "fr")


def test_benchmark_with_failed_answers_exits_4_under_a_gate(demo_run, tmp_path, config_data, capsys):
    """Answers replayed from a server where 8 of 10 requests timed out: no GOOD verdict, gate exit 4."""
    from jarvis_bench.commands import benchmark

    from .conftest import write_config
    from .test_adapters import make_adapter

    make_adapter(tmp_path / "output" / "run-1" / "final")
    rows = []
    for i, r in enumerate(demo_run["data"]["results"][:10]):
        for v, name in (("base", "base"), ("jarvis-demo", "run-1")):
            ok = i < 2
            rows.append({"id": r["id"], "variant": name, **({"response": r["variants"][v]["response"]} if ok
                                                              else {"error": "read timeout after 5 s"})})
    (tmp_path / "answers.jsonl").write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in rows))
    data = json.loads(json.dumps(config_data))
    data["model"].update({"backend": "replay", "replay_file": "answers.jsonl", "adapters": "auto"})
    cfg = write_config(tmp_path / "cfg.json", data)
    out = tmp_path / "res"
    code = benchmark.main(["--config", str(cfg), "--output-dir", str(out), "--limit", "10", "--fail-below", "GOOD"])
    captured = capsys.readouterr()
    assert code == 4, captured.err
    assert "gate failed: best adapter run-1 has no verdict (INCOMPLETE: 16 answer(s) missing or failed)" in captured.err
    assert "VERDICT run-1: INCOMPLETE" in captured.out and "GOOD" not in captured.out.split("VERDICT run-1")[1]
    result = json.loads((out / "benchmark_results.json").read_text(encoding="utf-8"))
    assert result["statistics"]["comparisons"]["run-1"]["verdict"]["level"] == "INCOMPLETE"


# ----------------------------------------------------------------------------- prompts that do not fit


def _long_prompt_config(tmp_path, config_data):
    from .conftest import write_config

    data = json.loads(json.dumps(config_data))
    long = {**data["prompts"][0], "id": "cmd-99", "prompt": "ouvre chrome puis ferme la fenêtre, " * 1200}
    firsts = [next(p for p in data["prompts"] if p["category"] == c) for c in dict.fromkeys(
        p["category"] for p in data["prompts"])]  # one prompt of each category
    data["prompts"] = firsts + [long]
    return write_config(tmp_path / "long.json", data)


def test_a_prompt_longer_than_the_context_is_refused_before_generating(demo_base, tmp_path, config_data, capsys,
                                                                       monkeypatch):
    from jarvis_bench.backends.hf import TransformersBackend
    from jarvis_bench.commands import benchmark

    generated = []
    real = TransformersBackend.generate
    monkeypatch.setattr(TransformersBackend, "generate",
                        lambda self, v, reqs: (generated.append(len(reqs)), (yield from real(self, v, reqs)))[1])
    cfg = _long_prompt_config(tmp_path, config_data)
    code = benchmark.main(["--demo", "--config", str(cfg), "--output-dir", str(tmp_path / "r"), "--quiet", "--no-cache"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and not generated
    assert err[0].startswith("error: 1 prompt(s) do not fit the model's context of 8192 tokens (config.json "
                             "max_position_embeddings) with generation.max_new_tokens ")
    assert "cmd-99 (" in err[0] and "--skip-too-long" in err[0]


def test_skip_too_long_runs_the_others_and_says_so(demo_base, tmp_path, config_data):
    from jarvis_bench.commands import benchmark
    from jarvis_bench.reports import txt as report

    cfg = _long_prompt_config(tmp_path, config_data)
    out = tmp_path / "r"
    code = benchmark.main(["--demo", "--config", str(cfg), "--output-dir", str(out), "--quiet", "--skip-too-long"])
    data = json.loads((out / "benchmark_results.json").read_text(encoding="utf-8"))
    assert code == 0
    skipped = data["metadata"]["skipped_prompts"]
    assert [s["id"] for s in skipped] == ["cmd-99"] and skipped[0]["tokens"] > 8192 and skipped[0]["context"] == 8192
    assert len(data["results"]) == 3 and "cmd-99" not in {r["id"] for r in data["results"]}
    assert data["metadata"]["complete"] and data["metadata"]["n_prompts"] == 3
    assert data["statistics"]["comparisons"]["jarvis-demo"]["verdict"]["level"] != "INCOMPLETE"
    assert "Prompts écartés (--skip-too-long, plus longs que le contexte de 8192 tokens) : 1 — cmd-99" in report.render(data, "fr")
