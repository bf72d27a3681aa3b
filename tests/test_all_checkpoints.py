"""--demo --all-checkpoints: every demo adapter against the base from ONE base load, ranked everywhere."""

from __future__ import annotations

import json

from jarvis_bench.commands import analyze, benchmark


def test_all_checkpoints_ranks_the_demo_adapters_from_one_load(demo_run, tmp_path, monkeypatch):
    import transformers

    loads = []
    real = transformers.AutoModelForCausalLM.from_pretrained.__func__

    def counting(cls, *args, **kwargs):
        loads.append(args[0] if args else kwargs.get("pretrained_model_name_or_path"))
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", classmethod(counting))
    assert benchmark.main(["--demo", "--all-checkpoints", "--output-dir", str(tmp_path), "--quiet"]) == 0
    assert len(loads) == 1  # base and jarvis-demo come from the session cache, the early checkpoint is generated
    data = json.loads((tmp_path / "benchmark_results.json").read_text(encoding="utf-8"))
    st = data["statistics"]
    assert data["metadata"]["variants"] == ["base", "jarvis-demo", "jarvis-demo-early"]
    assert st["ranking"] == ["jarvis-demo", "jarvis-demo-early"] and st["best_adapter"] == "jarvis-demo"
    for name in ("jarvis-demo", "jarvis-demo-early"):
        assert st["comparisons"][name]["verdict"]["level"] in ("GOOD", "MODERATE", "INSUFFICIENT")
    # two adapters tested on the same prompts: Holm-adjusted p-values, and the report says the best was chosen here
    assert st["multiple_comparisons"] == {"method": "holm", "adapters": 2, "best_chosen_on_same_data": True}
    ps = {a: st["comparisons"][a]["overall"]["relevance"] for a in ("jarvis-demo", "jarvis-demo-early")}
    lo, hi = sorted(ps.values(), key=lambda r: r["p_value"])
    assert lo["p_value_holm"] == round(min(1, 2 * lo["p_value"]), 6)
    assert hi["p_value_holm"] == round(max(lo["p_value_holm"], min(1, hi["p_value"])), 6)
    final = st["variants"]["jarvis-demo"]["overall"]["relevance"]
    early = st["variants"]["jarvis-demo-early"]["overall"]["relevance"]
    assert final > early  # the end of training beats its first epoch on this benchmark

    assert analyze.main(["--input", str(tmp_path / "benchmark_results.json"), "--quiet"]) == 0
    report = (tmp_path / "benchmark_report.txt").read_text(encoding="utf-8")
    assert "Classement des adaptateurs : jarvis-demo > jarvis-demo-early (meilleur : jarvis-demo)" in report
    assert "2 adaptateurs comparés à la base sur les mêmes prompts : p corrigées par Holm" in report
    assert report.count("jarvis-demo-early") >= 4 and (tmp_path / "benchmark_charts.png").stat().st_size > 50_000
    from jarvis_bench.reports.charts import _summary_text

    assert _summary_text(data, "en").startswith("Ranking: jarvis-demo > jarvis-demo-early")
