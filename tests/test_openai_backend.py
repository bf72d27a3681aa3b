"""openai backend against a real OpenAI-compatible server (`transformers serve`) started by the tests."""

from __future__ import annotations

import json

import pytest

from jarvis_bench.commands import benchmark
from jarvis_bench.demo import DEMO_ADAPTER

from .conftest import write_config


def _http_config(tmp_path, config_data, served, **endpoint):
    data = json.loads(json.dumps(config_data))
    data["model"].update(backend="openai", base=served["base"], base_name="HuggingFaceTB/SmolLM2-135M-Instruct",
                         adapters=[str(DEMO_ADAPTER)],
                         quantization="none",
                         endpoint={"base_url": served["url"], "base_model": served["base"],
                                   "adapter_models": {"jarvis-demo": served["merged"]}, **endpoint})
    return write_config(tmp_path / "http.json", data)


HTTP_TOKENS = 48  # a CPU server answers one request at a time: keep the suite's time reasonable


@pytest.fixture(scope="session")
def http_run(served_demo, demo_run, tmp_path_factory, config_data):
    out = tmp_path_factory.mktemp("http-results")
    cfg = _http_config(out, config_data, served_demo, concurrency=8)
    code = benchmark.main(["--config", str(cfg), "--output-dir", str(out), "--quiet", "--no-cache",
                           "--max-new-tokens", str(HTTP_TOKENS)])
    data = json.loads((out / "benchmark_results.json").read_text(encoding="utf-8"))
    return {"code": code, "data": data, "out": out}


def test_full_benchmark_through_http(http_run):
    data = http_run["data"]
    assert http_run["code"] == 0
    meta = data["metadata"]
    assert meta["backend"] == "openai" and meta["complete"] and meta["variants"] == ["base", "jarvis-demo"]
    assert meta["served_models"] == {"base": "jarvis-bench/demo-base", "jarvis-demo": "jarvis-bench/demo-merged"}
    answers = [a for r in data["results"] for a in r["variants"].values()]
    assert len(answers) == 60 and not any(a["error"] for a in answers)
    assert all(a["response"].strip() and a["tokens"] > 0 for a in answers)
    assert "verdict" in data["statistics"]["comparisons"]["jarvis-demo"]


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_http_answers_match_the_transformers_backend(http_run, demo_run):
    """Same prompts, same greedy decoding, merged adapter on the server vs base+LoRA in-process.
    The HTTP run stops at 48 tokens, the in-process one at 128: a greedy answer must be its prefix
    (or equal, when it ended before 48 tokens)."""
    local = {(r["id"], v): a for r in demo_run["data"]["results"] for v, a in r["variants"].items()}
    http = {(r["id"], v): a for r in http_run["data"]["results"] for v, a in r["variants"].items()}
    same = {}
    for variant in ("base", "jarvis-demo"):
        keys = [k for k in http if k[1] == variant]
        same[variant] = sum(
            _flat(local[k]["response"]) == _flat(http[k]["response"]) if not http[k]["truncated"]
            else _flat(local[k]["response"]).startswith(_flat(http[k]["response"])[:-12])  # a cut word may differ
            for k in keys
        )
    print(f"HTTP answers consistent with the transformers backend's: {same} of 30 each")
    assert same["base"] >= 27 and same["jarvis-demo"] >= 27, same


def test_a_model_the_server_does_not_serve_is_named(served_demo, tmp_path, config_data, capsys):
    cfg = _http_config(tmp_path, config_data, served_demo)
    data = json.loads(cfg.read_text(encoding="utf-8"))
    data["model"]["endpoint"]["adapter_models"] = {"jarvis-demo": "jarvis-bench/not-there"}
    write_config(cfg, data)
    code = benchmark.main(["--config", str(cfg), "--output-dir", str(tmp_path), "--quiet", "--limit", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "does not serve 'jarvis-bench/not-there'" in err and "jarvis-bench/demo-base" in err
    assert 'model.endpoint.adapter_models["jarvis-demo"]' in err
    assert "llama.cpp: --alias NAME" in err  # transformers serve is none of vLLM, llama.cpp, Ollama: every recipe


def test_api_key_is_sent_but_never_written(served_demo, tmp_path, config_data, monkeypatch, capsys):
    secret = "sk-jarvis-test-7f3a9c1e5b"
    monkeypatch.setenv("JARVIS_TEST_KEY", secret)
    cfg = _http_config(tmp_path, config_data, served_demo, api_key_env="JARVIS_TEST_KEY")
    code = benchmark.main(["--config", str(cfg), "--output-dir", str(tmp_path), "--limit", "2",
                           "--max-new-tokens", "8", "--category", "tool_routing"])
    out = capsys.readouterr()
    assert code == 0
    assert secret not in out.out + out.err
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "benchmark_results.json" for p in written)
    for p in written:
        assert secret.encode() not in p.read_bytes(), p
    from jarvis_bench import fsutil

    for p in fsutil.cache_root().rglob("*.sqlite3*"):
        assert secret.encode() not in p.read_bytes(), p


def test_api_key_variable_unset(tmp_path, config_data, monkeypatch, capsys):
    monkeypatch.delenv("JARVIS_UNSET_KEY", raising=False)
    served = {"url": "http://127.0.0.1:9/v1", "base": "b", "merged": "m"}
    cfg = _http_config(tmp_path, config_data, served, api_key_env="JARVIS_UNSET_KEY")
    code = benchmark.main(["--config", str(cfg), "--output-dir", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "JARVIS_UNSET_KEY, which is not set" in err and len(err.strip().splitlines()) == 1


def test_endpoint_down_is_a_runtime_error_naming_the_url(tmp_path, config_data, capsys):
    from .conftest import free_port

    served = {"url": f"http://127.0.0.1:{free_port()}/v1", "base": "b", "merged": "m"}
    cfg = _http_config(tmp_path, config_data, served, max_retries=1)
    code = benchmark.main(["--config", str(cfg), "--output-dir", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err
    assert code == 3 and served["url"] + "/models" in err and "start the server" in err


def test_openai_backend_needs_a_base_url(tmp_path, config_data, capsys):
    data = json.loads(json.dumps(config_data))
    data["model"]["backend"] = "openai"
    code = benchmark.main(["--config", str(write_config(tmp_path / "c.json", data)), "--quiet"])
    assert code == 2 and "model.endpoint.base_url is required" in capsys.readouterr().err


def test_check_setup_checks_the_endpoint(served_demo, tmp_path, config_data, capsys):
    from jarvis_bench.commands import check_setup

    cfg = _http_config(tmp_path, config_data, served_demo)
    assert check_setup.main(["--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "OK    endpoint" in out and "jarvis-demo = jarvis-bench/demo-merged" in out
    data = json.loads(cfg.read_text(encoding="utf-8"))
    data["model"]["endpoint"]["base_model"] = "nope/base"
    write_config(cfg, data)
    assert check_setup.main(["--config", str(cfg)]) == 1
    assert "does not serve 'nope/base'" in capsys.readouterr().out


def test_two_variants_asking_for_the_same_model_are_refused(tmp_path, config_data, capsys):
    """A typo in adapter_models (the adapter pointed at the base's name) would compare the base with
    itself and report "+0.0 %": refused before any request; --allow-identical lets it through."""
    from .conftest import free_port

    served = {"url": f"http://127.0.0.1:{free_port()}/v1", "base": "b", "merged": "b"}
    cfg = _http_config(tmp_path, config_data, served, max_retries=0)
    code = benchmark.main(["--config", str(cfg), "--output-dir", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "variants base and jarvis-demo both ask" in err[0] and "'b'" in err[0] and "--allow-identical" in err[0]
    code = benchmark.main(["--config", str(cfg), "--output-dir", str(tmp_path), "--quiet", "--allow-identical"])
    assert code == 3 and "cannot reach the endpoint" in capsys.readouterr().err  # past the guard, to the server


@pytest.mark.parametrize(("listing", "kind", "names"), [
    # llama-server: the GGUF file as id, its --alias names under "aliases", llama.cpp's "meta"
    ({"object": "list", "data": [{"id": "SmolLM2-135M-Instruct-Q8_0.gguf", "object": "model", "owned_by": "llamacpp",
                                  "aliases": ["jarvis-base"], "meta": {"n_ctx_train": 8192}}]},
     "llama.cpp", {"SmolLM2-135M-Instruct-Q8_0.gguf", "jarvis-base"}),
    ({"object": "list", "data": [{"id": "Qwen/Qwen3-30B-A3B", "owned_by": "vllm", "max_model_len": 40960},
                                 {"id": "run-7", "owned_by": "vllm", "parent": "Qwen/Qwen3-30B-A3B"}]},
     "vllm", {"Qwen/Qwen3-30B-A3B", "run-7"}),
    ({"object": "list", "data": [{"id": "qwen3:30b-a3b", "object": "model", "owned_by": "library"}]},
     "ollama", {"qwen3:30b-a3b"}),
    ({"object": "list", "data": [{"id": "m", "owned_by": "huggingface"}]}, "other", {"m"}),
])
def test_served_names_and_the_hint_for_the_server_that_answered(listing, kind, names):
    from jarvis_bench.backends import endpoint

    assert endpoint.served_names(listing) == names and endpoint.server_kind(listing) == kind
    hint = endpoint.load_hint(listing)
    assert {"vllm": "--lora-modules", "llama.cpp": "--alias", "ollama": "ADAPTER", "other": "--alias"}[kind] in hint


def test_cache_identity_follows_what_the_server_says(served_demo, tmp_path, config_data):
    """The same server twice: the same keys (the per-request `created` stamp left out); bumping
    endpoint.revision, or another model behind the name, gives other keys: no stale answers."""
    from jarvis_bench import adapters, config
    from jarvis_bench.backends import endpoint

    cfg = config.load(_http_config(tmp_path, config_data, served_demo))
    variants = adapters.discover(cfg, digest=False)

    def keys(c):
        b = endpoint.OpenAIBackend(c)
        b.prepare(variants)
        try:
            return b.identity(), {v.name: b.variant_key(v) for v in variants}, b._facts
        finally:
            b.close()

    first = keys(cfg)
    assert first[:2] == keys(cfg)[:2]
    facts = first[2]
    assert [m["id"] for m in facts["base"]["models"]] == [served_demo["base"]]
    assert [m["id"] for m in facts["jarvis-demo"]["models"]] == [served_demo["merged"]]
    assert all("created" not in m for f in facts.values() for m in f["models"])
    cfg.model.endpoint.revision = "q4_k_m-2026-11"
    assert keys(cfg)[0] != first[0]
    listing = {"data": [{"id": "b", "owned_by": "llamacpp", "created": 1}, {"id": "x", "created": 2}]}
    other = {"data": [{"id": "b", "owned_by": "llamacpp", "created": 3, "meta": {"n_params": 135}}]}
    assert endpoint.model_facts(listing, ["b"]) == [{"id": "b", "owned_by": "llamacpp"}]
    assert endpoint.model_facts(other, ["b"]) != endpoint.model_facts(listing, ["b"])


def test_no_cache_refreshes_the_cache(tmp_path, config_data, monkeypatch):
    """--no-cache generates every answer again and writes them over what the cache held."""
    from .test_benchmark_cli import _replay_setup

    monkeypatch.setenv("JARVIS_BENCH_CACHE", str(tmp_path / "cache"))
    cfg = _replay_setup(tmp_path, config_data)
    out = tmp_path / "r"
    assert benchmark.main(["--config", str(cfg), "--output-dir", str(out), "--quiet", "--no-cache", "--limit", "3"]) == 0
    meta = json.loads((out / "benchmark_results.json").read_text(encoding="utf-8"))["metadata"]
    assert meta["timings"]["per_variant"]["base"]["from_cache"] == 0
    assert benchmark.main(["--config", str(cfg), "--output-dir", str(out), "--quiet", "--limit", "3"]) == 0
    meta = json.loads((out / "benchmark_results.json").read_text(encoding="utf-8"))["metadata"]
    assert meta["timings"]["per_variant"]["base"]["from_cache"] == 3  # written by the --no-cache run
