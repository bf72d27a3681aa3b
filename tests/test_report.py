"""analyze_results.py on the demo's results (as stored: tests/data/demo_results.json): report sections in fr and
en with the JSON's numbers, the 4-panel PNG, rescoring."""

from __future__ import annotations

import json

import pytest

from jarvis_bench.commands import analyze

SECTIONS = {
    "fr": ["1. STATISTIQUES GLOBALES", "2. COMPARAISON PAR CATÉGORIE", "3. TOP 5 AMÉLIORATIONS", "4. TOP 5 FAIBLESSES",
           "5. RÉGRESSIONS", "6. SIGNIFICATIVITÉ", "7. VERDICT", "8. RECOMMANDATIONS"],
    "en": ["1. GLOBAL STATISTICS", "2. PER-CATEGORY COMPARISON", "3. TOP 5 IMPROVEMENTS", "4. TOP 5 WEAKNESSES",
           "5. REGRESSIONS", "6. SIGNIFICANCE", "7. VERDICT", "8. RECOMMENDATIONS"],
}


def _write(data, folder):
    inp = folder / "benchmark_results.json"
    inp.write_text(json.dumps(data), encoding="utf-8")
    return inp


@pytest.mark.parametrize("lang", ["fr", "en"])
def test_report_sections_and_numbers(demo_results, tmp_path, lang):
    inp = _write(demo_results, tmp_path)
    assert analyze.main(["--input", str(inp), "--lang", lang, "--quiet"]) == 0
    text = (tmp_path / "benchmark_report.txt").read_text(encoding="utf-8")
    for s in SECTIONS[lang]:
        assert s in text
    assert {"fr": "quantification aucune", "en": "quantization none"}[lang] in text  # the header in one language
    data = json.loads(inp.read_text(encoding="utf-8"))
    st = data["statistics"]
    assert f"{st['avg_relevance_base']:.4f}" in text and f"{st['avg_relevance_finetuned']:.4f}" in text
    assert f"{st['avg_keyword_match_finetuned']:.4f}" in text and f"{st['avg_cosine_similarity']:.4f}" in text
    cmp = st["comparisons"]["jarvis-demo"]
    for cat, c in cmp["by_category"].items():
        r = c["relevance"]
        assert f"{r['mean_base']:.4f}" in text and f"{r['delta']:+.4f}" in text
        assert f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]" in text
    assert cmp["verdict"]["level"] in text or {"GOOD": "BON", "MODERATE": "MODÉRÉ", "INSUFFICIENT": "INSUFFISANT"}[
        cmp["verdict"]["level"]] in text
    for pid in cmp["regressions"]:
        assert pid in text
    png = (tmp_path / "benchmark_charts.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_charts_have_four_panels(demo_results, tmp_path, monkeypatch):
    import matplotlib.figure

    from jarvis_bench.reports import charts

    seen = {}
    real = matplotlib.figure.Figure.savefig

    def spy(self, *a, **kw):
        seen["titles"] = [ax.get_title() for ax in self.axes]
        return real(self, *a, **kw)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    charts.write(demo_results, tmp_path / "c.png", "fr")
    assert seen["titles"] == ["Pertinence JARVIS par catégorie", "Mots-clés trouvés par catégorie (moyenne)",
                              "Distribution des scores de pertinence", "Résumé statistique"]


def test_rescore_after_a_config_change(demo_results, tmp_path, config_data):
    from .conftest import write_config

    inp = _write(demo_results, tmp_path)
    data = json.loads(json.dumps(config_data))
    data["scoring"]["relevance_weights"] = {"tool": 1.0, "args": 0.0, "keywords": 0.0, "correction": 0.0}
    cfg = write_config(tmp_path / "cfg.json", data)
    assert analyze.main(["--input", str(inp), "--rescore", "--config", str(cfg), "--quiet"]) == 0
    new = json.loads(inp.read_text(encoding="utf-8"))
    tc = new["statistics"]["variants"]["jarvis-demo"]["overall"]["tool_correct"]
    assert new["statistics"]["avg_relevance_finetuned"] == tc
    assert [r["variants"]["jarvis-demo"]["response"] for r in new["results"]] == [
        r["variants"]["jarvis-demo"]["response"] for r in demo_results["results"]]


def test_missing_results_file_is_one_line(tmp_path, capsys):
    assert analyze.main(["--input", str(tmp_path / "nope.json"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "results file not found" in err and "benchmark.py" in err and len(err.strip().splitlines()) == 1


def test_results_of_an_older_scorer_are_flagged_and_rescored(demo_results, tmp_path, capsys):
    """A results file scored by scorer v1 (prose counted as a call: the base's "Coupe le son." repeated earned
    mute_tool) is flagged by analyze, and --rescore brings it to the current scorer."""
    from jarvis_bench.metrics import SCORER_VERSION

    old = demo_results
    del old["metadata"]["scorer_version"]
    echo = next(r for r in old["results"] if r["id"] == "cmd-04")["variants"]["base"]
    assert echo["response"].lower().startswith("coupe le son")
    echo["metrics"].update(tool_correct=True, tools_found=["mute_tool"], relevance=1.0)
    inp = tmp_path / "benchmark_results.json"
    inp.write_text(json.dumps(old), encoding="utf-8")

    assert analyze.main(["--input", str(inp)]) == 0
    err = capsys.readouterr().err
    assert f"scored by scorer version 1, not the current {SCORER_VERSION}" in err and "--rescore" in err
    assert json.loads(inp.read_text(encoding="utf-8"))["metadata"].get("scorer_version") is None  # not touched

    assert analyze.main(["--input", str(inp), "--rescore", "--quiet"]) == 0
    new = json.loads(inp.read_text(encoding="utf-8"))
    assert new["metadata"]["scorer_version"] == SCORER_VERSION
    m = next(r for r in new["results"] if r["id"] == "cmd-04")["variants"]["base"]["metrics"]
    assert m["tool_correct"] is False and m["tools_found"] == [] and m["tool_mentioned"] is True
    assert "scorer version" not in capsys.readouterr().err
    assert f"v{SCORER_VERSION}" in (tmp_path / "benchmark_report.txt").read_text(encoding="utf-8")


@pytest.mark.parametrize("lang, expected", [
    ("fr", "appel timer_tool (mal formé) ✗ · arguments 0.00 (+en plus : label) · mots-clés 1/2 (minuteur) · "
           "correction 0.50 (CER 0.20)"),
    ("en", "call timer_tool (malformed) ✗ · arguments 0.00 (+extra: label) · keywords 1/2 (minuteur) · "
           "correction 0.50 (CER 0.20)"),
])
def test_why_line_names_the_call_judged_and_each_part(lang, expected):
    from jarvis_bench.reports.txt import why

    m = {"tool_correct": False, "first_call": "timer_tool (malformed)", "args_score": 0.0, "extra_args": ["label"],
         "keyword_total": 2, "keyword_hits": 1, "keywords_found": ["minuteur"], "correction_score": 0.5, "cer": 0.2}
    assert why(m, lang) == expected
    assert why({"tool_correct": True, "first_call": None, "tool_credit": None}, lang).endswith("✓")
    assert "(mention)" in why({"tool_correct": True, "first_call": None, "tool_credit": "mention"}, lang)
    made_up = why({"tool_correct": False, "first_call": "mexc_status_tool", "unknown_tools": ["mexc_status_tool"]}, lang)
    assert made_up.startswith(("appel mexc_status_tool (hors catalogue) ✗", "call mexc_status_tool (not in the catalog) ✗"))


def test_why_line_shows_each_argument_judged():
    """The value given for each expected argument, ✓ when acceptable (lists of accepted values included)."""
    from jarvis_bench import config
    from jarvis_bench.metrics import score_answer
    from jarvis_bench.reports.txt import why

    from .conftest import CONFIG

    demo_cfg = config.load(CONFIG)
    spec = next(p for p in demo_cfg.prompts if p.expected_args and len(p.expected_args) == 1)
    name, want = next(iter(spec.expected_args.items()))
    good = want[0] if isinstance(want, list) else want
    call = '<tool_call>{"name": "%s", "arguments": {"%s": "%s"}}</tool_call>'
    w = demo_cfg.scoring.relevance_weights
    m = score_answer(call % (spec.expected_tool, name, good), spec, demo_cfg.tools, w)
    assert m["args_detail"] == [{"name": name, "got": good, "ok": True}]
    assert f"arguments 1.00 ({name} « {good} » ✓)" in why(m, "fr")
    m = score_answer(call % (spec.expected_tool, name, "zzz"), spec, demo_cfg.tools, w)
    assert f"({name} « zzz » ✗)" in why(m, "en")
    m = score_answer('<tool_call>{"name": "%s", "arguments": {}}</tool_call>' % spec.expected_tool, spec, demo_cfg.tools, w)
    assert f"({name} missing ✗)" in why(m, "en") and f"({name} absent ✗)" in why(m, "fr")


def test_analyze_takes_the_results_file_or_its_folder_as_an_argument(demo_results, tmp_path):
    """`analyze_results.py results/run-7` (what people type) works like --input results/run-7/benchmark_results.json."""
    _write(demo_results, tmp_path)
    assert analyze.main([str(tmp_path), "--quiet"]) == 0
    assert (tmp_path / "benchmark_report.txt").is_file()
    (tmp_path / "benchmark_report.txt").unlink()
    assert analyze.main([str(tmp_path / "benchmark_results.json"), "--quiet"]) == 0
    assert (tmp_path / "benchmark_report.txt").is_file()


def test_console_summary_speaks_the_report_language(demo_results, capsys):
    from jarvis_bench.reports import console

    console.verdicts(demo_results, "en")
    out = " ".join(capsys.readouterr().out.split())
    assert "JARVIS relevance · base vs jarvis-demo" in out and "category" in out and "95% CI" in out
    assert "VERDICT jarvis-demo: MODERATE · relevance +" in out and "keywords +0.87/answer" in out
    console.verdicts(demo_results, "fr")
    out = " ".join(capsys.readouterr().out.split())
    assert "Pertinence JARVIS · base vs jarvis-demo" in out and "catégorie" in out and "IC 95 %" in out
    assert "VERDICT jarvis-demo: MODERATE · pertinence +" in out and "mots-clés +0.87/réponse" in out


def test_every_message_exists_in_both_languages_with_the_same_fields():
    """One table for every writer: a wording added in French only, or with a placeholder the other language
    lacks, would fail at the first English run."""
    import string

    from jarvis_bench.reports.messages import T

    def fields(x):
        if isinstance(x, str):
            return {f for _, f, _, _ in string.Formatter().parse(x) if f}
        if isinstance(x, (tuple, list)):
            return set().union(*(fields(v) for v in x))
        return None

    def walk(fr, en, where=""):
        assert type(fr) is type(en), where
        if isinstance(fr, dict):
            assert set(fr) == set(en), f"{where}: {set(fr) ^ set(en)}"
            for k in fr:
                walk(fr[k], en[k], f"{where}.{k}")
        else:
            assert fields(fr) == fields(en), f"{where}: {fields(fr)} vs {fields(en)}"

    walk(T["fr"], T["en"])
