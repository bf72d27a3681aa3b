"""The openai backend against a real upstream llama-server (built by `python -m tests.llama_cpp build`,
which .ci/run runs): the demo's GGUF as the base, the demo adapter converted to a GGUF LoRA with the
sdist's convert_lora_to_gguf.py, one server, the adapter chosen per request (endpoint.variants)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jarvis_bench.commands import benchmark, check_setup
from jarvis_bench.demo import DEMO_ADAPTER

from . import llama_cpp
from .conftest import free_port, write_config

ALIAS = "jarvis-demo-q4"
TOKENS = 48  # short answers: one thread on a shared 2-core machine
LORA_ON = {"lora": [{"id": 0, "scale": 1}]}
LORA_OFF = {"lora": [{"id": 0, "scale": 0}]}


@pytest.fixture(scope="session")
def lora_gguf(demo_base, tmp_path_factory):
    if llama_cpp.server_binary() is None or llama_cpp.convert_script() is None:
        pytest.skip(f"llama-server is not built under {llama_cpp.home()}: run `uv run python -m tests.llama_cpp build` "
                    "(needs cmake and a C++ compiler, ~15 min on 2 cores)")
    out = tmp_path_factory.mktemp("gguf") / "jarvis-demo-lora.gguf"
    return llama_cpp.convert_lora(DEMO_ADAPTER, demo_base, out)


@pytest.fixture(scope="session")
def llama_server(lora_gguf, tmp_path_factory):
    """One slot, the adapter loaded at scale 0 (each request picks it), one thread."""
    from jarvis_bench import demo

    log = tmp_path_factory.mktemp("llama") / "server.log"
    args = ["-m", str(demo.gguf_path()), "--lora", str(lora_gguf), "--lora-init-without-apply",
            "--alias", ALIAS, "-c", "4096", "-np", "1", "-t", "1", "--jinja", "--no-webui"]
    try:
        proc, url = llama_cpp.start(args, log, port=free_port())
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        yield {"url": url, "log": log}
    finally:
        llama_cpp.stop(proc)


def _config(path: Path, config_data: dict, url: str, **endpoint) -> Path:
    data = json.loads(json.dumps(config_data))
    data["model"].update(
        backend="openai", base=ALIAS, base_name="HuggingFaceTB/SmolLM2-135M-Instruct", adapters=[str(DEMO_ADAPTER)],
        endpoint={"base_url": url, "base_model": ALIAS, "extra_body": LORA_OFF, "prompt_cache": False,
                  "variants": {"jarvis-demo": {"model": ALIAS, "extra_body": LORA_ON}}, **endpoint})
    return write_config(path, data)


def _run(cfg: Path, out: Path, *extra: str) -> dict:
    code = benchmark.main(["--config", str(cfg), "--output-dir", str(out), "--quiet", "--no-cache",
                           "--max-new-tokens", str(TOKENS), *extra])
    assert code == 0
    return json.loads((out / "benchmark_results.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def llama_runs(llama_server, config_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("llama-runs")
    cfg = _config(root / "c.json", config_data, llama_server["url"])
    first = _run(cfg, root / "first")
    again = _run(cfg, root / "again", "--limit", "8")
    return {"first": first, "again": again, "cfg": cfg}


def _answers(data: dict) -> dict:
    return {(r["id"], v): a["response"] for r in data["results"] for v, a in r["variants"].items()}


def test_base_and_adapter_through_one_llama_server(llama_runs, llama_server):
    data = llama_runs["first"]
    meta = data["metadata"]
    assert meta["backend"] == "openai" and meta["complete"] and meta["variants"] == ["base", "jarvis-demo"]
    assert meta["served_models"] == {"base": ALIAS, "jarvis-demo": ALIAS}  # an --alias name is honoured
    assert meta["extra_body"]["jarvis-demo"]["lora"] == LORA_ON["lora"]
    assert meta["servers"] == {llama_server["url"]: "llama.cpp, SmolLM2-135M-Instruct.Q4_1.gguf"}
    answers = [a for r in data["results"] for a in r["variants"].values()]
    assert len(answers) == 60 and not any(a["error"] for a in answers)
    assert "not_reproducible" not in meta, meta.get("not_reproducible")
    # the adapter's effect is there: it routes tools, the base (same server, LoRA at scale 0) hardly does
    tool = {"base": 0, "jarvis-demo": 0}
    for r in data["results"]:
        for name, v in r["variants"].items():
            if r["expected_tool"] and f'"name": "{r["expected_tool"]}"' in v["response"]:
                tool[name] += 1
    print(f"llama-server tool calls right: {tool}")
    assert tool["jarvis-demo"] >= 10 and tool["base"] <= 2, tool
    cmp = data["statistics"]["comparisons"]["jarvis-demo"]
    assert cmp["verdict"] != "INCOMPLETE"


def test_answers_are_reproducible_between_two_runs(llama_runs):
    first, again = _answers(llama_runs["first"]), _answers(llama_runs["again"])
    assert len(again) == 16
    assert {k: first[k] for k in again} == again


def test_check_setup_on_llama_server(llama_runs, llama_server, capsys):
    """Every name served, and the probe finds one slot without prompt cache deterministic."""
    assert check_setup.main(["--config", str(llama_runs["cfg"])]) == 0
    out = capsys.readouterr().out
    assert "OK    endpoint" in out and f"jarvis-demo = {ALIAS}" in out
    assert next(ln for ln in out.splitlines() if "determinism" in ln).startswith("OK")


def test_prompts_too_long_for_the_servers_context_are_refused(llama_server, demo_base, config_data, tmp_path, capsys):
    """llama-server renders and counts each prompt (/apply-template, /tokenize), token for token as the
    transformers backend does; with max_new_tokens set so
    that only the longest prompt overflows the 4096-token slot, that prompt alone is named, exit 2,
    before anything is generated."""
    from jarvis_bench import adapters, config
    from jarvis_bench.backends import endpoint
    from jarvis_bench.backends.base import Request
    from jarvis_bench.chat import messages

    cfg_path = _config(tmp_path / "c.json", config_data, llama_server["url"])
    cfg = config.load(cfg_path)
    b = endpoint.OpenAIBackend(cfg)
    try:
        b.prepare(adapters.discover(cfg, digest=False))
        requests = [Request(p.id, tuple(messages(cfg, p))) for p in cfg.prompts]
        route = b.routes["base"]
        counts = {r.prompt_id: b._count_tokens(route.base_url, r, route) for r in requests}
        longest = max(counts.values())
        over = b.too_long(requests, 4096 - longest + 1)
    finally:
        b.close()
    from transformers import AutoTokenizer

    from jarvis_bench import chat

    tok = AutoTokenizer.from_pretrained(demo_base)  # the transformers backend's count of the same prompts
    local = {p.id: len(chat.token_ids(tok, chat.render(tok, messages(cfg, p), tool_schemas=chat.tools(cfg),
                                                       enable_thinking=cfg.generation.enable_thinking)))
             for p in cfg.prompts}
    assert counts == local
    assert over and {o["id"] for o in over} == {k for k, n in counts.items() if n == longest}
    assert over[0]["context"] == 4096 and "n_ctx per slot" in over[0]["source"]
    code = benchmark.main(["--config", str(cfg_path), "--output-dir", str(tmp_path / "o"), "--quiet", "--no-cache",
                           "--max-new-tokens", str(4096 - longest + 1)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and over[0]["id"] in err[0] and "4096 tokens" in err[0]
    assert not (tmp_path / "o" / "generations.jsonl").exists() or not (tmp_path / "o" / "generations.jsonl").read_text()


def test_check_setup_warns_on_a_llama_server_with_its_defaults(lora_gguf, config_data, tmp_path, capsys):
    """llama-server's defaults (parallel slots, prompt cache) make greedy answers depend on what else it
    is doing: the probe (one request alone, then two at once) sees it — 5 WARN in 6 probes when measured,
    so up to five probes are asked for one WARN."""
    from jarvis_bench import demo

    try:
        proc, url = llama_cpp.start(["-m", str(demo.gguf_path()), "--alias", ALIAS, "-c", "8192", "-t", "1", "--jinja",
                                     "--no-webui"], tmp_path / "server.log", port=free_port())
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        data = json.loads(json.dumps(config_data))
        data["model"].update(backend="openai", base=ALIAS, adapters=[], endpoint={"base_url": url, "base_model": ALIAS})
        cfg = write_config(tmp_path / "c.json", data)
        lines = []
        for _ in range(5):
            assert check_setup.main(["--config", str(cfg)]) == 0  # a WARN does not fail the check
            lines.append(next(ln for ln in capsys.readouterr().out.splitlines() if "determinism" in ln))
            if lines[-1].startswith("WARN"):
                break
    finally:
        llama_cpp.stop(proc)
    assert lines[-1].startswith("WARN"), lines
    assert "--parallel 1" in lines[-1] and "prompt_cache false" in lines[-1]
