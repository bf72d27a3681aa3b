"""JSON Lines are split on "\\n" only: a model answer carrying U+2028, U+2029 or U+0085 (which
`json.dumps(..., ensure_ascii=False)` writes raw) stays one line, in a replay file and in generations.jsonl;
a lone surrogate (a JSON "\\ud800" escape) becomes U+FFFD instead of breaking every file written after it."""

from __future__ import annotations

import json

from jarvis_bench import fsutil
from jarvis_bench.commands import analyze, benchmark

from .conftest import write_config

HOSTILE = {
    "sep": "Voilà\u2028ligne\u2029paragraphe\u0085fin",  # raw in the file: str.splitlines() would cut here
    "ctl": "tab\tvt\x0bff\x0cfs\x1cgs\x1drs\x1efin",  # escaped by json.dumps; splitlines() splits on them too
}


def test_lines_are_split_on_newline_only(tmp_path):
    path = tmp_path / "a.jsonl"
    rows = [{"t": HOSTILE["sep"]}, {"t": HOSTILE["ctl"]}, {"t": "é"}]
    path.write_bytes("".join(json.dumps(r, ensure_ascii=False) + "\r\n" for r in rows).encode("utf-8"))  # Windows
    assert [n for n, _ in fsutil.jsonl_lines(path)] == [1, 2, 3]
    assert fsutil.read_jsonl(path) == rows


def test_a_replay_file_with_separators_and_lone_surrogates_is_scored_and_reported(tmp_path, config_data):
    prompts = config_data["prompts"]
    texts = {prompts[0]["id"]: HOSTILE["sep"], prompts[1]["id"]: HOSTILE["ctl"]}
    lines = []
    for p in prompts:
        line = json.dumps({"id": p["id"], "variant": "base", "response": texts.get(p["id"], "D'accord.")},
                          ensure_ascii=False)
        if p["id"] == prompts[2]["id"]:  # written escaped, as a server or another tool would
            line = json.dumps({"id": p["id"], "variant": "base", "response": "avant X après"}).replace("X", "\\ud800")
        lines.append(line)
    (tmp_path / "answers.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = json.loads(json.dumps(config_data))
    data["model"].update({"backend": "replay", "replay_file": "answers.jsonl", "adapters": []})
    cfg = write_config(tmp_path / "cfg.json", data)
    out = tmp_path / "res"
    assert benchmark.main(["--config", str(cfg), "--output-dir", str(out), "--quiet"]) == 0

    results = json.loads((out / "benchmark_results.json").read_text(encoding="utf-8"))
    got = {r["id"]: r["variants"]["base"] for r in results["results"]}
    assert got[prompts[0]["id"]]["response"] == HOSTILE["sep"]
    assert got[prompts[1]["id"]]["response"] == HOSTILE["ctl"]
    assert got[prompts[2]["id"]]["response"] == "avant \ufffd après"
    assert all(a["metrics"] is not None and a["error"] is None for a in got.values())  # scored, none failed
    kept = {r["prompt_id"]: r["response"] for r in fsutil.read_jsonl(out / "generations.jsonl")}
    assert len(kept) == len(prompts) and kept[prompts[0]["id"]] == HOSTILE["sep"]

    assert analyze.main(["--input", str(out / "benchmark_results.json"), "--quiet"]) == 0
    page = (out / "benchmark_report.html").read_text(encoding="utf-8")
    assert HOSTILE["sep"] in page and "avant \ufffd après" in page


def test_a_replay_file_that_is_not_utf8_is_one_line(tmp_path, config_data, capsys):
    (tmp_path / "answers.jsonl").write_bytes(b'{"id": "cmd-01", "variant": "base", "response": "caf\xe9"}\n')
    data = json.loads(json.dumps(config_data))
    data["model"].update({"backend": "replay", "replay_file": "answers.jsonl", "adapters": []})
    cfg = write_config(tmp_path / "cfg.json", data)
    assert benchmark.main(["--config", str(cfg), "--output-dir", str(tmp_path / "res"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not UTF-8 text" in err[0] and "answers.jsonl" in err[0] and "save it as UTF-8" in err[0]
