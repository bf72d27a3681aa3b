"""benchmark.py end to end: the demo, the cache, resume after an interruption, bad flags, replay."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from jarvis_bench import config
from jarvis_bench.backends.hf import TransformersBackend
from jarvis_bench.commands import benchmark

from .conftest import CONFIG, ROOT, write_config


def test_demo_end_to_end(demo_run):
    assert demo_run["code"] == 0
    data = demo_run["data"]
    meta = data["metadata"]
    assert meta["variants"] == ["base", "jarvis-demo"] and meta["primary_variant"] == "jarvis-demo"
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert len(meta["adapters"][0]["sha256"]) == 64 and meta["adapters"][0]["rank"] >= 1
    import torch

    # --demo runs where device "auto" says: the GPU when there is one
    assert meta["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert meta["dtype"] == "float32" and meta["quantization"] == "none"
    assert meta["versions"]["transformers"] and meta["versions"]["peft"] and len(meta["config_sha256"]) == 64
    assert meta["complete"] is True and meta["missing_answers"] == 0
    per = meta["timings"]["per_variant"]
    assert per["base"]["answers"] == 30 and per["jarvis-demo"]["answers"] == 30
    assert meta["timings"]["total_s"] > 0 and "base_load_s" in meta
    assert len(data["results"]) == 30
    cats = {r["category"] for r in data["results"]}
    assert cats == {"commandes_vocales", "corrections_vocales", "tool_routing"}
    for r in data["results"]:
        assert set(r["variants"]) == {"base", "jarvis-demo"}
        for v in r["variants"].values():
            assert v["response"].strip() and v["error"] is None and v["tokens"] > 0
            assert set(v) >= {"response", "tokens", "latency_s", "truncated", "error"}
    lines = (demo_run["out"] / "generations.jsonl").read_text(encoding="utf-8").split("\n")
    assert len(lines) == 61 and lines[-1] == ""  # JSON Lines: one per answer, split on "\n" only


def test_demo_adapter_routes_tools_and_base_does_not(demo_run):
    """The demo must show a real effect: the adapter emits tool calls, the base hardly ever does."""
    tool = {"base": 0, "jarvis-demo": 0}
    for r in demo_run["data"]["results"]:
        for name, v in r["variants"].items():
            if r["expected_tool"] and f'"name": "{r["expected_tool"]}"' in v["response"]:
                tool[name] += 1
    assert tool["jarvis-demo"] >= 10 and tool["base"] <= 2, tool


def test_rerun_is_served_from_the_cache(demo_run, tmp_path, monkeypatch):
    def boom(self, variant, requests):
        raise AssertionError(f"generate() called for {variant.name} with {len(requests)} prompts")

    monkeypatch.setattr(TransformersBackend, "generate", boom)
    code = benchmark.main(["--demo", "--output-dir", str(tmp_path), "--quiet"])
    assert code == 0
    data = json.loads((tmp_path / "benchmark_results.json").read_text(encoding="utf-8"))
    per = data["metadata"]["timings"]["per_variant"]
    assert per["base"]["from_cache"] == 30 and per["jarvis-demo"]["from_cache"] == 30
    assert [r["variants"] for r in data["results"]] == [r["variants"] for r in demo_run["data"]["results"]]


def test_a_fully_cached_rerun_never_imports_transformers(demo_run, tmp_path):
    """The rendered prompts are kept beside the answers: a rerun computes every key without the tokenizer."""
    probe = ("import json, sys; from jarvis_bench.commands import benchmark; "
             f"rc = benchmark.main(['--demo', '--quiet', '--output-dir', {str(tmp_path)!r}]); "
             "print(json.dumps([rc, sorted(m for m in ('transformers', 'peft', 'sentence_transformers') "
             "if m in sys.modules)]))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rc, imported = json.loads(proc.stdout.strip().splitlines()[-1])
    assert rc == 0 and imported == []
    data = json.loads((tmp_path / "benchmark_results.json").read_text(encoding="utf-8"))
    assert [r["variants"] for r in data["results"]] == [r["variants"] for r in demo_run["data"]["results"]]
    assert data["statistics"] == demo_run["data"]["statistics"]


def test_kept_prompts_are_what_the_tokenizer_renders(demo_run):
    from jarvis_bench import adapters, chat, demo
    from jarvis_bench.backends import Request, create
    from jarvis_bench.cache import GenerationCache

    cfg = demo.apply(config.load(CONFIG))
    backend = create(cfg, device="cpu")
    backend.prepare(adapters.discover(cfg))
    cache = GenerationCache()
    try:
        for p in cfg.prompts:
            r = Request(p.id, tuple(chat.messages(cfg, p)))
            assert cache.get_prompt(backend.render_key(r)) == backend.render(r)
    finally:
        cache.close()
    # another template, another key
    other = demo.apply(config.load(CONFIG))
    other.generation.enable_thinking = not cfg.generation.enable_thinking
    b2 = create(other, device="cpu")
    b2.prepare(adapters.discover(other))
    r = Request(cfg.prompts[0].id, tuple(chat.messages(cfg, cfg.prompts[0])))
    assert b2.render_key(r) != backend.render_key(r)


def test_no_cache_regenerates(demo_run, tmp_path, monkeypatch):
    calls = []
    real = TransformersBackend.generate

    def counting(self, variant, requests):
        calls.append(len(requests))
        yield from real(self, variant, requests)

    monkeypatch.setattr(TransformersBackend, "generate", counting)
    code = benchmark.main(["--demo", "--no-cache", "--limit", "2", "--max-new-tokens", "16", "--output-dir",
                           str(tmp_path), "--quiet"])
    assert code == 0 and calls == [2, 2]


def test_interrupted_run_resumes_without_regenerating(demo_base, tmp_path, monkeypatch):
    real = TransformersBackend.generate
    args = ["--demo", "--category", "tool_routing", "--max-new-tokens", "24", "--batch-size", "2",
            "--output-dir", str(tmp_path), "--quiet"]

    def interrupted(self, variant, requests):
        for i, gen in enumerate(real(self, variant, requests)):
            if variant.name == "jarvis-demo" and i == 4:
                raise KeyboardInterrupt
            yield gen

    monkeypatch.setattr(TransformersBackend, "generate", interrupted)
    assert benchmark.main(args) == 130
    partial = json.loads((tmp_path / "benchmark_results.json").read_text(encoding="utf-8"))
    assert partial["metadata"]["complete"] is False and partial["metadata"]["interrupted"] is True
    assert partial["metadata"]["missing_answers"] == 6
    kept = {(r["id"], v): a["response"] for r in partial["results"] for v, a in r["variants"].items()}
    assert len(kept) == 14

    asked = []

    def counting(self, variant, requests):
        asked.extend((r.prompt_id, variant.name) for r in requests)
        yield from real(self, variant, requests)

    monkeypatch.setattr(TransformersBackend, "generate", counting)
    assert benchmark.main(args) == 0
    assert len(asked) == 6 and not set(asked) & set(kept)
    final = json.loads((tmp_path / "benchmark_results.json").read_text(encoding="utf-8"))
    assert final["metadata"]["complete"] is True
    done = {(r["id"], v): a["response"] for r in final["results"] for v, a in r["variants"].items()}
    assert len(done) == 20 and all(done[k] == kept[k] for k in kept)


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--category", "meteo"], "--category 'meteo' has no prompts; choose among: commandes_vocales"),
        (["--adapter", "/nonexistent/run/final"], "adapter folder not found: /nonexistent/run/final"),
        (["--backend", "transformer"], 'did you mean "transformers"'),
        (["--config", "/nonexistent/cfg.json"], "config file not found: /nonexistent/cfg.json"),
    ],
)
def test_bad_flags_give_one_line_and_exit_2(argv, fragment, tmp_path, capsys):
    code = benchmark.main([*argv, "--output-dir", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert fragment in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_limit_zero_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        benchmark.main(["--limit", "0"])
    assert info.value.code == 2 and "--limit: 0 must be at least 1" in capsys.readouterr().err


def _replay_setup(tmp_path, config_data, variants=("base",)):
    rows = []
    for p in config_data["prompts"]:
        for v in variants:
            rows.append({"id": p["id"], "variant": v, "response": f"<think>hmm</think>{v} répond à {p['prompt']}"})
    (tmp_path / "answers.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    data = json.loads(json.dumps(config_data))
    data["model"].update({"backend": "replay", "replay_file": "answers.jsonl", "adapters": "auto"})
    return write_config(tmp_path / "cfg.json", data)


def test_base_only_run_with_replay_backend(tmp_path, config_data, caplog):
    cfg = _replay_setup(tmp_path, config_data)
    out = tmp_path / "res"
    assert benchmark.main(["--config", str(cfg), "--output-dir", str(out), "--quiet"]) == 0
    data = json.loads((out / "benchmark_results.json").read_text(encoding="utf-8"))
    assert data["metadata"]["variants"] == ["base"] and data["metadata"]["lora_adapter"] is None
    first = data["results"][0]["variants"]["base"]
    assert first["response"] == "base répond à ouvre chrome" and first["thinking_chars"] == len("<think>hmm</think>")


def test_replay_missing_variant_is_a_clear_error(tmp_path, config_data, capsys):
    from .test_adapters import make_adapter

    cfg = _replay_setup(tmp_path, config_data)
    make_adapter(tmp_path / "output" / "run-1" / "final")
    assert benchmark.main(["--config", str(cfg), "--output-dir", str(tmp_path / "r"), "--quiet"]) == 2
    assert "variant 'run-1' has no answer at all" in capsys.readouterr().err


def test_root_script_help_is_a_thin_door(script):
    proc = script([sys.executable, ROOT / "benchmark.py", "--help"], timeout=60)
    assert proc.returncode == 0 and "--demo" in proc.stdout and "--all-checkpoints" in proc.stdout


def test_console_script_lists_commands():
    from jarvis_bench import cli

    assert cli.main(["nope"]) == 2
    assert cli.main(["benchmark", "--category", "x", "--config", str(CONFIG), "--quiet"]) == 2
    assert config.load(CONFIG)  # untouched


def test_demo_statistics_equal_the_per_prompt_means(demo_run):
    data = demo_run["data"]
    st = data["statistics"]
    rows = data["results"]

    def mean(variant, key):
        return round(sum(r["variants"][variant]["metrics"][key] for r in rows) / len(rows), 4)

    assert st["primary"] == "jarvis-demo"
    assert st["avg_relevance_base"] == mean("base", "relevance")
    assert st["avg_relevance_finetuned"] == mean("jarvis-demo", "relevance")
    assert st["avg_keyword_match_base"] == mean("base", "keyword_hits")
    assert st["avg_keyword_match_finetuned"] == mean("jarvis-demo", "keyword_hits")
    cos = [r["variants"]["jarvis-demo"]["metrics"]["cosine_to_base"] for r in rows]
    assert st["avg_cosine_similarity"] == round(sum(cos) / len(cos), 4) and -1 <= st["avg_cosine_similarity"] <= 1
    assert all(r["variants"]["base"]["metrics"]["cosine_to_base"] is None for r in rows)
    assert all(r["variants"]["base"]["metrics"]["cosine_to_reference"] is not None for r in rows)
    cmp = st["comparisons"]["jarvis-demo"]
    assert cmp["verdict"]["level"] in {"GOOD", "MODERATE", "INSUFFICIENT"}
    assert cmp["overall"]["relevance"]["delta"] > 0 and cmp["overall"]["relevance"]["ci_low"] > 0
    assert set(data["by_category"]) == {"commandes_vocales", "corrections_vocales", "tool_routing"}
    assert data["by_category"]["tool_routing"]["jarvis-demo"]["relevance"] == round(
        sum(r["variants"]["jarvis-demo"]["metrics"]["relevance"] for r in rows if r["category"] == "tool_routing") / 10, 4)
    import csv

    with open(demo_run["out"] / "flips.csv", encoding="utf-8", newline="") as fh:
        flips = list(csv.DictReader(fh))
    assert len(flips) == 30 and {f["status"] for f in flips} <= {"improved", "regressed", "unchanged", "error"}
    assert sum(f["status"] == "regressed" for f in flips) == len(cmp["regressions"])


def test_run_timeout_keeps_finished_answers(tmp_path, config_data, capsys):
    cfg = _replay_setup(tmp_path, config_data)
    data = json.loads(cfg.read_text(encoding="utf-8"))
    data["generation"]["timeout_s"] = 1e-9
    write_config(cfg, data)
    out = tmp_path / "res"
    assert benchmark.main(["--config", str(cfg), "--output-dir", str(out), "--quiet", "--no-cache"]) == 3
    assert "generation.timeout_s reached" in capsys.readouterr().err
    res = json.loads((out / "benchmark_results.json").read_text(encoding="utf-8"))
    assert res["metadata"]["timed_out"] is True and res["metadata"]["complete"] is False
    assert res["metadata"]["missing_answers"] == 30 and all(not r["variants"] for r in res["results"])


def test_a_model_too_big_for_the_ram_is_refused_before_loading(monkeypatch, tmp_path, capsys, demo_base):
    """CPU load of a model larger than the available RAM: one-line error, exit 3, nothing loaded."""
    from jarvis_bench import sizing
    from jarvis_bench.backends import hf

    monkeypatch.setattr(sizing, "ram_gib", lambda: (0.2, 1.0))
    loaded = []
    monkeypatch.setattr(hf.TransformersBackend, "_load_kwargs", lambda self: loaded.append(1) or {})
    code = benchmark.main(["--demo", "--no-cache", "--limit", "1", "--output-dir", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err
    assert code == 3 and not loaded
    assert "0.13 B parameters" in err and "GiB of RAM" in err and "CUDA GPU" in err and "Traceback" not in err


def test_replay_scores_answers_produced_elsewhere(tmp_path, config_data):
    """No adapter folder at all: the variants are the ones the file names; ranking and verdicts follow."""
    cfg = _replay_setup(tmp_path, config_data, variants=("base", "remote-ft", "remote-ft2"))
    rows = [json.loads(x) for x in (tmp_path / "answers.jsonl").read_text(encoding="utf-8").split("\n") if x]
    tools = {p["id"]: p.get("expected_tool") for p in config_data["prompts"]}
    for r in rows:  # remote-ft calls the expected tool: it must win
        if r["variant"] == "remote-ft" and tools[r["id"]]:
            r["response"] = f'OK. <tool_call>{{"name": "{tools[r["id"]]}", "arguments": {{}}}}</tool_call>'
    (tmp_path / "answers.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    out = tmp_path / "res"
    assert benchmark.main(["--config", str(cfg), "--output-dir", str(out), "--quiet"]) == 0
    data = json.loads((out / "benchmark_results.json").read_text(encoding="utf-8"))
    assert data["metadata"]["variants"] == ["base", "remote-ft", "remote-ft2"]
    assert data["statistics"]["best_adapter"] == "remote-ft"
    answers = {(r["id"], v): a["response"] for r in data["results"] for v, a in r["variants"].items()}
    assert answers[("cmd-01", "remote-ft2")].startswith("remote-ft2 répond")  # no cache mix-up between variants


@pytest.mark.parametrize("credit, credited", [("calls", False), ("calls_or_mentions", True)])
def test_tool_credit_setting_reaches_the_scorer(tmp_path, config_data, credit, credited):
    """An affirmative prose answer earns the tool only under scoring.tool_credit = "calls_or_mentions"."""
    data = json.loads(json.dumps(config_data))
    data["scoring"]["tool_credit"] = credit
    cfg = _replay_setup(tmp_path, data)
    rows = [json.loads(x) for x in (tmp_path / "answers.jsonl").read_text(encoding="utf-8").split("\n") if x]
    for r in rows:
        if r["id"] == "rt-01":
            r["response"] = "D'accord, je monte le son."
    (tmp_path / "answers.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    out = tmp_path / "res"
    assert benchmark.main(["--config", str(cfg), "--output-dir", str(out), "--quiet"]) == 0
    res = json.loads((out / "benchmark_results.json").read_text(encoding="utf-8"))
    m = next(r for r in res["results"] if r["id"] == "rt-01")["variants"]["base"]["metrics"]
    assert m["tool_correct"] is credited and m["tool_mentioned"] is True
    assert res["metadata"]["scoring"]["tool_credit"] == credit


def test_replay_unknown_prompt_id_is_a_clear_error(tmp_path, config_data, capsys):
    cfg = _replay_setup(tmp_path, config_data)
    with (tmp_path / "answers.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps({"id": "zz-99", "variant": "base", "response": "x"}) + "\n")
    assert benchmark.main(["--config", str(cfg), "--output-dir", str(tmp_path / "r"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "unknown prompt id 'zz-99'" in err and len(err.strip().splitlines()) == 1


def test_deploy_gates_on_the_demo(demo_run, tmp_path, capsys):
    """The demo is MODERATE with regressions: --fail-below GOOD and --fail-on-regression exit 4, results kept."""
    regressions = demo_run["data"]["statistics"]["comparisons"]["jarvis-demo"]["regressions"]
    assert regressions
    base = ["--demo", "--output-dir", str(tmp_path), "--quiet"]
    assert benchmark.main([*base, "--fail-below", "MODERATE"]) == 0
    assert benchmark.main([*base, "--fail-below", "GOOD"]) == 4
    err = capsys.readouterr().err
    assert "gate failed: best adapter jarvis-demo is MODERATE, below the required GOOD" in err
    assert benchmark.main([*base, "--fail-on-regression"]) == 4
    assert f"regresses on {len(regressions)} prompt(s)" in capsys.readouterr().err
    assert (tmp_path / "benchmark_results.json").is_file()


def test_summary_prints_the_gpu_decode_bound_next_to_the_measure(capsys, tmp_path):
    from jarvis_bench.reports.console import summary as _summary

    per = {"answers": 30, "from_cache": 0, "errors": 0, "truncated": 1, "generation_s": 2.0, "tokens_per_s": 900.0}
    meta = {"base_model": "m", "device": "cuda", "timings": {"total_s": 5.0, "per_variant": {"base": per}},
            "decode_bound_steps_per_s": 62.5, "gpu_bandwidth_gbs": 1008.0, "weights_read_per_step_gib": 15.0,
            "decode_steps_per_s": 31.2}
    _summary({"metadata": meta}, tmp_path / "r.json", "en")
    out = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert "≤ 62 steps/s" in out and "1008 GB/s" in out and "15.00 GiB" in out and "measured 31.2 steps/s" in out
    assert "answers" in out and "Results:" in out
    _summary({"metadata": meta}, tmp_path / "r.json")  # French by default, like the reports
    out = " ".join(capsys.readouterr().out.split())
    assert "≤ 62 pas/s" in out and "mesuré 31.2 pas/s" in out and "réponses" in out and "Résultats :" in out
    meta.pop("decode_bound_steps_per_s")
    _summary({"metadata": meta}, tmp_path / "r.json", "en")
    assert "decode bound" not in capsys.readouterr().out


def test_dtype_flag_overrides_the_config_and_the_demo():
    args = benchmark.build_parser().parse_args(["--demo", "--dtype", "bfloat16", "--backend", "vllm"])
    cfg = benchmark.apply_overrides(config.load(CONFIG), args)
    assert cfg.model.dtype == "bfloat16" and cfg.model.backend == "vllm" and cfg.model.quantization == "none"
    plain = benchmark.apply_overrides(config.load(CONFIG), benchmark.build_parser().parse_args(["--demo"]))
    assert plain.model.dtype == "float32"
    with pytest.raises(SystemExit):
        benchmark.build_parser().parse_args(["--dtype", "fp8"])
