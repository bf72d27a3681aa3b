"""quick_test.py: the demo end to end, and its pass/fail rules."""

from __future__ import annotations

from types import SimpleNamespace

from jarvis_bench.commands import quick_test


def test_demo_quick_test_passes(capsys, demo_base, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written to ./results
    code = quick_test.main(["--demo", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.rstrip().splitlines()[-1].startswith(quick_test.OK_LINE)
    for pid in ("cmd-01", "cor-01", "rt-01"):  # first prompt of each category
        assert pid in out
    assert "jarvis-demo" in out and "pertinence" in out
    assert not (tmp_path / "results").exists()


def test_pick_takes_n_per_category():
    P = lambda i, c: SimpleNamespace(id=i, category=c)  # noqa: E731
    prompts = [P("a1", "a"), P("b1", "b"), P("a2", "a"), P("a3", "a"), P("b2", "b")]
    assert [p.id for p in quick_test.pick(prompts, 1)] == ["a1", "b1"]
    assert [p.id for p in quick_test.pick(prompts, 2)] == ["a1", "b1", "a2", "b2"]


def _data(**answers):
    return {"results": [{"id": "p1", "variants": answers}]}


def test_problems_errors_and_empty_answers_fail():
    fails, _ = quick_test.problems(_data(base={"response": "ok"}, ft={"response": "", "error": "CUDA OOM"}), ["base", "ft"])
    assert fails == ["p1/ft: CUDA OOM"]
    fails, _ = quick_test.problems(_data(base={"response": "  \n"}, ft={"response": "x"}), ["base", "ft"])
    assert fails == ["p1/base: empty answer"]


def test_problems_warns_when_the_adapter_changes_nothing():
    fails, warns = quick_test.problems(_data(base={"response": "same"}, ft={"response": "same"}), ["base", "ft"])
    assert not fails and "exactly like the base" in warns[0]
    fails, warns = quick_test.problems(_data(base={"response": "x"}), ["base"])
    assert not fails and "no adapter" in warns[0]
