"""--train-data through benchmark.py: the benchmark prompts found in the adapter's training file are listed as
seen, the verdict line says how many, and the comparison is also given without them."""

from __future__ import annotations

import json

import pytest

from jarvis_bench.commands import analyze, benchmark
from tests.conftest import ROOT, write_config

pytestmark = pytest.mark.slow  # loads the embedder for the training file


def _replay(tmp_path, demo_results, config_data):
    lines = [{"id": r["id"], "variant": v, "response": a["response"]}
             for r in demo_results["results"] for v, a in r["variants"].items()]
    (tmp_path / "answers.jsonl").write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines),
                                            encoding="utf-8")
    data = json.loads(json.dumps(config_data))
    data["model"].update({"backend": "replay", "replay_file": "answers.jsonl", "adapters": []})
    return write_config(tmp_path / "cfg.json", data)


def test_three_benchmark_prompts_in_the_training_file_are_exactly_the_seen_ones(tmp_path, demo_results, config_data,
                                                                                 capsys):
    cfg = _replay(tmp_path, demo_results, config_data)
    train = tmp_path / "train.jsonl"
    rows = [json.loads(x) for x in (ROOT / "demo" / "train_data.jsonl").read_text(encoding="utf-8").splitlines()[:40]]
    rows[5] = {"prompt": "fais une capture d'écran", "response": "ok"}  # cmd-06 verbatim
    rows[12] = {"prompt": "Il fera quel temps à MARSEILLE, demain ?!", "response": "ok"}  # rt-03 re-cased, re-punctuated
    rows[30] = {"prompt": "préviens-moi dans 30 minutes pour sortir le gâteau", "response": "ok"}  # rt-09, one word
    train.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "res"
    assert benchmark.main(["--config", str(cfg), "--output-dir", str(out), "--train-data", str(train)]) == 0
    data = json.loads((out / "benchmark_results.json").read_text(encoding="utf-8"))
    ov = data["training_overlap"]
    assert ov["seen"] == ["cmd-06", "rt-03", "rt-09"] and ov["training_prompts"] == 40
    where = {p["id"]: p["nearest_where"] for p in ov["prompts"] if p["seen"]}
    assert where == {"cmd-06": f"{train}:6", "rt-03": f"{train}:13", "rt-09": f"{train}:31"}
    cmp = data["statistics"]["comparisons"]["jarvis-demo"]
    assert cmp["verdict"]["seen_in_training"] == 3
    assert cmp["unseen"]["n_seen"] == 3 and cmp["unseen"]["relevance"]["n"] == 27
    printed = capsys.readouterr().out
    assert "3 prompt(s) vus à l'entraînement" in printed and "(cmd-06, rt-03, rt-09)" in printed

    # --train-data is no config field: a rescore keeps the files the run was given
    assert analyze.main(["--input", str(out / "benchmark_results.json"), "--quiet", "--rescore"]) == 0
    again = json.loads((out / "benchmark_results.json").read_text(encoding="utf-8"))
    assert again["training_overlap"]["seen"] == ov["seen"]
    assert again["statistics"]["comparisons"]["jarvis-demo"]["verdict"]["seen_in_training"] == 3
    report = (out / "benchmark_report.txt").read_text(encoding="utf-8")
    assert "10. PROMPTS VUS À L'ENTRAÎNEMENT" in report and "jarvis-demo sans les 3 prompts vus" in report
    assert "3 prompt(s) vus à l'entraînement" in report.split("7. VERDICT")[1]
    page = (out / "benchmark_report.html").read_text(encoding="utf-8")
    assert 'id="overlap"' in page and "3 prompt(s) vus à l&#39;entraînement" in page


def test_a_bad_training_file_is_named_before_anything_is_generated(tmp_path, demo_results, config_data, capsys):
    cfg = _replay(tmp_path, demo_results, config_data)
    bad = tmp_path / "train.jsonl"
    bad.write_text('{"prompt": "ouvre chrome", "response": "ok"}\n{"question": "x"}\n', encoding="utf-8")
    out = tmp_path / "res"
    assert benchmark.main(["--config", str(cfg), "--output-dir", str(out), "--train-data", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (out / "benchmark_results.json").exists()
