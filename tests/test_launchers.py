"""run_benchmark.sh end to end with --demo (through uv, as a user runs it); run_benchmark.bat's structure."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from jarvis_bench import cli

from .conftest import ROOT

UV = shutil.which("uv")


@pytest.mark.skipif(UV is None, reason="uv is not on PATH (the README's install step)")
def test_sh_launcher_runs_the_whole_flow_on_the_demo(demo_run, tmp_path):
    """demo_run first: the launcher's generations then come from the session's cache (same keys)."""
    env = {**os.environ, "JARVIS_BENCH_NO_OPEN": "1"}
    proc = subprocess.run([str(ROOT / "run_benchmark.sh"), "--demo", "--output-dir", str(tmp_path), "--quiet"],
                          capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "OK CONFIGURATION OK" in proc.stdout
    assert proc.stdout.index("1/3 check_setup") < proc.stdout.index("2/3 benchmark") < proc.stdout.index("3/3 analyze")
    for name in ("benchmark_results.json", "benchmark_report.txt", "benchmark_report.html", "benchmark_charts.png",
                 "flips.csv"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert "VERDICT" in (tmp_path / "benchmark_report.txt").read_text(encoding="utf-8")


def test_sh_launcher_without_uv_says_how_to_install_it(tmp_path, script):
    empty = tmp_path / "bin"
    empty.mkdir()
    proc = script(["/bin/sh", ROOT / "run_benchmark.sh", "--demo"], env={"PATH": str(empty), "HOME": str(tmp_path)},
                  timeout=60)
    assert proc.returncode == 127
    assert "uv is not installed" in proc.stderr and "pip install uv" in proc.stderr


def test_sh_launcher_stops_on_a_failed_check(tmp_path, script):
    """A broken config: check_setup fails, nothing else runs, the exit code is not 0."""
    if UV is None:
        pytest.skip("uv is not on PATH")
    bad = tmp_path / "bad.json"
    bad.write_text("{", encoding="utf-8")
    env = {**os.environ, "JARVIS_BENCH_NO_OPEN": "1"}
    proc = script([ROOT / "run_benchmark.sh", "--config", bad, "--output-dir", tmp_path], env=env, timeout=300)
    assert proc.returncode == 1
    assert "FAIL  config" in proc.stdout and "2/3 benchmark" not in proc.stdout
    assert "stopped with exit code 1" in proc.stderr
    assert not (tmp_path / "benchmark_results.json").exists()


def test_bat_launcher_structure():
    """Can't run cmd.exe here: check what a double-click depends on."""
    raw = (ROOT / "run_benchmark.bat").read_bytes()
    assert raw.count(b"\r\n") == raw.count(b"\n"), "a .bat needs CRLF line endings"
    text = raw.decode("ascii")
    assert 'cd /d "%~dp0"' in text  # double-click starts in another folder
    assert "where uv" in text and "install.ps1" in text and "pip install uv" in text
    assert "uv run jarvis-bench run --open %*" in text  # arguments passed on
    assert text.count("pause") >= 2  # the window stays open on errors
    assert "exit /b %STATUS%" in text
    assert "run" in cli.COMMANDS


def test_run_command_exists_and_knows_benchmark_options(capsys):
    from jarvis_bench.commands import run_all

    args = run_all.build_parser().parse_args(["--demo", "--all-checkpoints", "--lang", "en", "--limit", "3"])
    assert args.demo and args.all_checkpoints and args.lang == "en" and args.limit == 3
