"""benchmarks/speed.py stays runnable (its numbers live in RESULTS.md and are never asserted here)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from .conftest import ROOT

SCRIPT = ROOT / "benchmarks" / "speed.py"


def _module():
    spec = importlib.util.spec_from_file_location("speed", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_speed_script_prints_the_table(demo_base):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--repeats", "1", "--max-new-tokens", "2", "--only", "e",
                           "--no-write"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = next(line for line in proc.stdout.splitlines() if line.startswith("| (e)"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "generation only" and float(cells[2]) > 0 and int(cells[4]) > 0


def test_table_flags_answers_that_differ_from_the_naive_run():
    speed = _module()
    run = {"wall_s": 2.0, "tokens": 10, "peak_rss_gib": 1.0}
    runs = {"b": [{**run, "wall_s": 8.0, "answers_sha": "x", "answers": {"p/base": "a", "q/base": "b"}}],
            "a": [{**run, "answers_sha": "x", "answers": {"p/base": "a", "q/base": "b"}}],
            "e": [{**run, "wall_s": 1.0, "answers_sha": "y", "answers": {"p/base": "a", "q/base": "c"}}]}
    rows, notes = speed.table(runs)
    lines = rows.splitlines()
    assert "| 4.0× | yes |" in next(line for line in lines if line.startswith("| (a)"))
    assert "no (1 differ)" in next(line for line in lines if line.startswith("| (e)"))
    assert any("1.0 s = 50%" in n for n in notes)
