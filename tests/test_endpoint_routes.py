"""Per-variant routes on the openai backend (endpoint.variants: base_url, model, extra_body), the guard
against comparing a model with itself, per-variant cache keys and the determinism checks, against real
local HTTP servers whose answers follow what each request asked for."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from jarvis_bench import adapters, config
from jarvis_bench.backends import endpoint
from jarvis_bench.backends.base import Request
from jarvis_bench.commands import benchmark, check_setup

from .conftest import write_config


class EchoServer:
    """Serves `names` (llama-server-style `owned_by` when `llama`); each answer says which model and which
    LoRA selection the request carried; `drift` makes every answer differ (a non-reproducible server)."""

    def __init__(self, names: list[str], *, llama: bool = False, drift: bool = False):
        self.bodies: list[dict] = []
        self.loras = [{"id": 0, "path": "run-7.gguf", "scale": 0.0}]
        self.count = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, payload):
                raw = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self):
                if self.path == "/props":
                    return self._send({"model_path": "/models/demo.gguf", "build_info": "b11434"})
                if self.path == "/lora-adapters":
                    return self._send(outer.loras)
                owner = {"owned_by": "llamacpp"} if llama else {}
                self._send({"object": "list", "data": [{"id": n, **owner} for n in names]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    outer.bodies.append(body)
                    outer.count += 1
                    n = outer.count
                text = f"model={body['model']} lora={json.dumps(body.get('lora'))}" + (f" #{n}" if drift else "")
                self._send({"choices": [{"message": {"content": text}, "finish_reason": "stop"}],
                            "usage": {"completion_tokens": 5}})

        lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers():
    made: list[EchoServer] = []

    def make(*args, **kw):
        made.append(EchoServer(*args, **kw))
        return made[-1]

    yield make
    for s in made:
        s.close()


def _config(tmp_path, config_data, endpoint_section, **model):
    data = json.loads(json.dumps(config_data))
    data["model"].update(backend="openai", base="qwen3", adapters=[], endpoint=endpoint_section, **model)
    return write_config(tmp_path / "c.json", data)


def _answers(out):
    data = json.loads((out / "benchmark_results.json").read_text(encoding="utf-8"))
    return data, {(r["id"], v): a for r in data["results"] for v, a in r["variants"].items()}


LORA_ON = {"lora": [{"id": 0, "scale": 1}]}
LORA_OFF = {"lora": [{"id": 0, "scale": 0}]}


def test_one_llama_server_with_per_request_lora(servers, tmp_path, config_data, monkeypatch, capsys):
    """The llama-server recipe: one model name, the adapter chosen per request by extra_body; the
    shared extra_body reaches every request, the variant's own fields are merged over it. With the
    prompt cache left on, a warning: llama-server's cache does not record which LoRA computed a prefix."""
    monkeypatch.setenv("JARVIS_BENCH_CACHE", str(tmp_path / "cache"))
    srv = servers(["qwen3"], llama=True)
    cfg = _config(tmp_path, config_data, {
        "base_url": srv.url, "base_model": "qwen3", "extra_body": {"top_k": 1, **LORA_OFF},
        "variants": {"jarvis-lora": {"model": "qwen3", "extra_body": LORA_ON}}})
    out = tmp_path / "o"
    assert benchmark.main(["--config", str(cfg), "--output-dir", str(out), "--quiet", "--limit", "3"]) == 0
    data, answers = _answers(out)
    assert data["metadata"]["variants"] == ["base", "jarvis-lora"]
    assert {a["response"] for (_, v), a in answers.items() if v == "base"} == {'model=qwen3 lora=[{"id": 0, "scale": 0}]'}
    assert {a["response"] for (_, v), a in answers.items() if v == "jarvis-lora"} == {
        'model=qwen3 lora=[{"id": 0, "scale": 1}]'}
    assert all(b["top_k"] == 1 and b["temperature"] == 0 for b in srv.bodies)
    assert len(srv.bodies) == 3 * 2 + 2  # one recheck per variant
    assert "not_reproducible" not in data["metadata"]
    assert data["metadata"]["servers"] == {srv.url: "llama.cpp, demo.gguf"}  # the server's /props model_path
    from jarvis_bench.reports import txt as report

    assert f"Serveur: {srv.url} (llama.cpp, demo.gguf) · backend openai" in report.render(data)
    err = capsys.readouterr().err
    assert "picks the LoRA per request while its prompt cache is on" in err and "prompt_cache false" in err


def test_base_and_adapter_on_two_servers(servers, tmp_path, config_data, monkeypatch):
    monkeypatch.setenv("JARVIS_BENCH_CACHE", str(tmp_path / "cache"))
    base, lora = servers(["qwen3"]), servers(["jarvis"])
    cfg = _config(tmp_path, config_data, {
        "base_url": base.url, "base_model": "qwen3", "recheck": False,
        "variants": {"jarvis": {"base_url": lora.url}}})
    out = tmp_path / "o"
    assert benchmark.main(["--config", str(cfg), "--output-dir", str(out), "--quiet", "--limit", "2"]) == 0
    data, answers = _answers(out)
    assert {b["model"] for b in base.bodies} == {"qwen3"} and {b["model"] for b in lora.bodies} == {"jarvis"}
    assert len(base.bodies) == len(lora.bodies) == 2
    text = json.dumps(data["metadata"])
    assert lora.url in text and base.url in text  # each variant's endpoint is in the results


def test_a_name_missing_on_the_adapters_server_is_named(servers, tmp_path, config_data, capsys):
    base, lora = servers(["qwen3"]), servers(["other"])
    cfg = _config(tmp_path, config_data, {
        "base_url": base.url, "base_model": "qwen3",
        "variants": {"jarvis": {"base_url": lora.url, "model": "jarvis-q4"}}})
    code = benchmark.main(["--config", str(cfg), "--output-dir", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and not base.bodies and not lora.bodies
    assert f"the endpoint {lora.url} does not serve 'jarvis-q4'" in err[0]
    assert 'model.endpoint.variants["jarvis"].model' in err[0] and "other" in err[0]


def test_same_model_same_fields_is_refused_other_fields_are_not(servers, tmp_path, config_data, capsys):
    srv = servers(["qwen3"], llama=True)
    same = {"base_url": srv.url, "base_model": "qwen3", "extra_body": LORA_ON,
            "variants": {"jarvis-lora": {"model": "qwen3"}}}
    code = benchmark.main(["--config", str(_config(tmp_path, config_data, same)), "--quiet",
                           "--output-dir", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and not srv.bodies
    assert "variants base and jarvis-lora both ask" in err[0] and '"lora"' in err[0] and "extra_body" in err[0]
    same["variants"]["jarvis-lora"]["extra_body"] = {"lora": [{"id": 0, "scale": 0.5}]}
    code = benchmark.main(["--config", str(_config(tmp_path, config_data, same)), "--quiet", "--limit", "1",
                           "--output-dir", str(tmp_path / "o")])
    assert code == 0, capsys.readouterr().err


@pytest.mark.parametrize(("field", "value", "message"), [
    ("extra_body", {"temperature": 0.7}, "model.endpoint.extra_body sets temperature, which the tool sets itself"),
    ("variants", {"j": {"extra_body": {"max_tokens": 9, "model": "x"}}},
     'model.endpoint.variants["j"].extra_body sets model, max_tokens'),
    ("variants", {"j": {"base_url": "localhost:8080/v1"}}, 'variants["j"].base_url = "localhost:8080/v1" must start'),
])
def test_bad_routes_are_config_errors(tmp_path, config_data, capsys, field, value, message):
    cfg = _config(tmp_path, config_data, {"base_url": "http://127.0.0.1:9/v1", field: value})
    code = benchmark.main(["--config", str(cfg), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_cache_keys_follow_each_variants_route(servers, tmp_path, config_data):
    """A change in the adapter's route (its LoRA scale) changes its cache key and not the base's."""
    srv = servers(["qwen3"], llama=True)

    def keys(scale):
        cfg = config.load(_config(tmp_path, config_data, {
            "base_url": srv.url, "base_model": "qwen3", "extra_body": LORA_OFF,
            "variants": {"jarvis-lora": {"model": "qwen3", "extra_body": {"lora": [{"id": 0, "scale": scale}]}}}}))
        variants = adapters.discover(cfg, digest=False)
        b = endpoint.OpenAIBackend(cfg)
        try:
            b.prepare(variants)
            return {v.name: b.variant_key(v) for v in variants}
        finally:
            b.close()

    one, same, other = keys(1), keys(1), keys(0.5)
    assert one == same and one["base"] == other["base"] and one["jarvis-lora"] != other["jarvis-lora"]
    srv.loras = [{"id": 0, "path": "run-9.gguf", "scale": 0.0}]  # another LoRA file behind id 0: other answers
    assert keys(1)["jarvis-lora"] != one["jarvis-lora"]


def test_prompt_cache_switch_sends_cache_prompt_false(servers, tmp_path, config_data):
    srv = servers(["qwen3"], llama=True)
    cfg = config.load(_config(tmp_path, config_data, {"base_url": srv.url, "base_model": "qwen3",
                                                      "prompt_cache": False, "recheck": False}))
    variants = adapters.discover(cfg, digest=False)
    b = endpoint.OpenAIBackend(cfg)
    try:
        b.prepare(variants)
        list(b.generate(variants[0], [Request("p", ({"role": "user", "content": "x"},))]))
    finally:
        b.close()
    assert srv.bodies[0]["cache_prompt"] is False


def test_a_run_warns_when_the_server_is_not_reproducible(servers, tmp_path, config_data, monkeypatch, capsys):
    """Both variants drift on one server: one warning for that server, both variants in the results."""
    monkeypatch.setenv("JARVIS_BENCH_CACHE", str(tmp_path / "cache"))
    srv = servers(["qwen3", "jarvis"], llama=True, drift=True)
    cfg = _config(tmp_path, config_data, {"base_url": srv.url, "base_model": "qwen3", "adapter_models": {"jarvis": "jarvis"}})
    out = tmp_path / "o"
    assert benchmark.main(["--config", str(cfg), "--output-dir", str(out), "--quiet", "--limit", "2"]) == 0
    warned = [ln for ln in capsys.readouterr().err.splitlines() if "another answer to the same request" in ln]
    assert len(warned) == 1 and "--parallel 1" in warned[0] and "prompt_cache false" in warned[0]
    data, _ = _answers(out)
    assert data["metadata"]["not_reproducible"] == ["base", "jarvis"]
    from jarvis_bench.reports import html as html_report
    from jarvis_bench.reports import txt as report

    text = report.render(data)
    assert "le serveur a donné une autre réponse à la même requête (température 0) pour base, jarvis" in text
    assert "autre réponse à la même requête" in html_report.render(data)


@pytest.mark.parametrize("drift", [False, True])
def test_check_setup_probes_determinism(servers, tmp_path, config_data, capsys, drift):
    srv = servers(["qwen3"], llama=True, drift=drift)
    cfg = _config(tmp_path, config_data, {"base_url": srv.url, "base_model": "qwen3"})
    check_setup.main(["--config", str(cfg)])
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if "determinism" in ln)
    assert len(srv.bodies) == 3 and all(b["max_tokens"] == 32 for b in srv.bodies)
    if drift:
        assert line.startswith("WARN") and "3 different answers" in line
        assert "--parallel 1" in out and "prompt_cache false" in out
    else:
        assert line.startswith("OK")


def test_variant_settings_that_name_nothing_are_ignored_with_a_warning(tmp_path, config_data, capsys):
    from jarvis_bench.clitools import setup_logging

    setup_logging(quiet=True)
    cfg = config.load(_config(tmp_path, config_data, {"base_url": "http://127.0.0.1:9/v1",
                                                      "variants": {"jarvis-lroa": {"extra_body": LORA_ON}}}))
    assert [v.name for v in adapters.discover(cfg, digest=False)] == ["base"]
    assert 'model.endpoint.variants["jarvis-lroa"] names no variant of this run (base) and is ignored' in capsys.readouterr().err


def test_an_unreachable_adapter_server_names_its_field(servers, tmp_path, config_data, capsys):
    from .conftest import free_port

    base = servers(["qwen3"])
    cfg = _config(tmp_path, config_data, {"base_url": base.url, "base_model": "qwen3", "max_retries": 0,
                                          "variants": {"jarvis": {"base_url": f"http://127.0.0.1:{free_port()}/v1"}}})
    code = benchmark.main(["--config", str(cfg), "--output-dir", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3 and len(err) == 1 and 'fix model.endpoint.variants["jarvis"].base_url' in err[0]


def test_check_setup_probes_each_server(servers, tmp_path, config_data, capsys):
    steady, drifting = servers(["qwen3"]), servers(["jarvis"], drift=True)
    cfg = _config(tmp_path, config_data, {"base_url": steady.url, "base_model": "qwen3",
                                          "variants": {"jarvis": {"base_url": drifting.url}}})
    check_setup.main(["--config", str(cfg)])
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "determinism" in ln]
    assert len(lines) == 2 and len(steady.bodies) == len(drifting.bodies) == 3
    assert lines[0].startswith("OK") and steady.url in lines[0]
    assert lines[1].startswith("WARN") and drifting.url in lines[1]
