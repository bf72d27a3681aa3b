"""The openai backend's retry rules against a real local HTTP server that fails on purpose."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from jarvis_bench import config
from jarvis_bench.adapters import Variant
from jarvis_bench.backends import endpoint
from jarvis_bench.backends.base import Request

from .conftest import CONFIG


class FlakyServer:
    """/v1/models lists "m"; /v1/chat/completions answers with the scripted statuses, then 200."""

    def __init__(self, script: list[int], *, reject_template_kwargs: bool = False, retry_after: str | None = None,
                 delays: list[float] | None = None, reply=None, raw: tuple[str, bytes, int] | None = None,
                 hang_up: bool = False, answers_before_dying: int | None = None, port: int = 0):
        self.script = list(script)
        self.delays = list(delays or [])
        self.bodies: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output clean
                pass

            def _send(self, status, payload, headers=()):
                raw = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self):
                self._send(200, {"object": "list", "data": [{"id": "m"}, {"id": "m-lora"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.bodies.append(body)
                if outer.delays:  # not time.sleep: the tests patch it to skip the client's backoff
                    threading.Event().wait(outer.delays.pop(0))
                if reject_template_kwargs and "chat_template_kwargs" in body:
                    return self._send(400, {"error": "Unrecognized request argument: chat_template_kwargs"})
                if outer.script:
                    status = outer.script.pop(0)
                    return self._send(status, {"error": "scripted"}, [("Retry-After", retry_after)] if retry_after else ())
                dead = answers_before_dying is not None and len(outer.bodies) > answers_before_dying
                if hang_up or dead:  # a server dying mid-request: the connection closes, no response at all
                    self.close_connection = True
                    return None
                if raw is not None:  # (Content-Type, body, declared Content-Length): a page, a cut body
                    ctype, data, length = raw
                    self.send_response(200)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(length))
                    self.end_headers()
                    self.wfile.write(data)
                    self.close_connection = True
                    return None
                if reply is not None:  # the 200's body, whatever it is
                    return self._send(200, reply)
                message = {"content": "Je monte le son.", "tool_calls": [
                    {"type": "function", "function": {"name": "volume_up_tool", "arguments": "{}"}}]}
                self._send(200, {"choices": [{"message": message, "finish_reason": "tool_calls"}],
                                 "usage": {"completion_tokens": 12}})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def no_sleep(monkeypatch):
    waits = []
    monkeypatch.setattr(endpoint.time, "sleep", waits.append)
    return waits


def _backend(url, **endpoint_kw):
    cfg = config.load(CONFIG)
    cfg.model.backend = "openai"
    endpoint_kw.setdefault("recheck", False)  # these tests count requests; the recheck has its own tests
    cfg.model.endpoint = config.EndpointSection(base_url=url, base_model="m", **endpoint_kw)
    b = endpoint.OpenAIBackend(cfg)
    base = Variant(name="base", served_as="m")
    b.prepare([base])
    return b, base, Request("rt-01", ({"role": "user", "content": "monte le son"},))


def test_5xx_and_429_are_retried_then_answered(no_sleep):
    srv = FlakyServer([503, 500, 429])
    try:
        b, base, req = _backend(srv.url, max_retries=4)
        (gen,) = list(b.generate(base, [req]))
    finally:
        srv.close()
    assert gen.error is None and gen.tokens == 12
    assert gen.response == 'Je monte le son.\n<tool_call>\n{"name": "volume_up_tool", "arguments": {}}\n</tool_call>'
    assert len(srv.bodies) == 4 and len(no_sleep) == 3 and b.info()["retries"] == 3
    assert srv.bodies[0]["temperature"] == 0 and srv.bodies[0]["model"] == "m" and srv.bodies[0]["tools"]


def test_retries_are_bounded_and_the_error_names_the_url(no_sleep):
    srv = FlakyServer([500] * 10)
    try:
        b, base, req = _backend(srv.url, max_retries=2)
        (gen,) = list(b.generate(base, [req]))
    finally:
        srv.close()
    assert gen.response == "" and "HTTP 500 from " + srv.url + "/chat/completions" in gen.error
    assert "after 3 attempts" in gen.error and len(srv.bodies) == 3


def test_a_4xx_is_not_retried(no_sleep):
    srv = FlakyServer([404])
    try:
        b, base, req = _backend(srv.url, max_retries=5)
        (gen,) = list(b.generate(base, [req]))
    finally:
        srv.close()
    assert "HTTP 404" in gen.error and len(srv.bodies) == 1 and not no_sleep


def test_retry_after_is_honoured(no_sleep):
    srv = FlakyServer([429], retry_after="3")
    try:
        b, base, req = _backend(srv.url)
        list(b.generate(base, [req]))
    finally:
        srv.close()
    assert no_sleep == [3.0]


def test_retry_after_as_an_http_date_is_honoured(no_sleep):
    """Retry-After may be an HTTP date (RFC 9110): the wait is the time until then, capped; a date past is 0."""
    import email.utils
    import time

    srv = FlakyServer([429, 503], retry_after=email.utils.formatdate(time.time() + 4, usegmt=True))
    try:
        b, base, req = _backend(srv.url)
        (gen,) = list(b.generate(base, [req]))
    finally:
        srv.close()
    assert gen.error is None and len(no_sleep) == 2 and all(2.0 < w <= 4.0 for w in no_sleep), no_sleep
    assert endpoint.backoff_s(0, "Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert endpoint.backoff_s(0, "Sun, 01 Jan 2090 00:00:00 GMT") == endpoint.BACKOFF_CAP_S


def test_server_without_chat_template_kwargs(no_sleep):
    srv = FlakyServer([], reject_template_kwargs=True)
    try:
        b, base, req = _backend(srv.url, concurrency=1)
        gens = list(b.generate(base, [req, Request("rt-02", req.messages)]))
    finally:
        srv.close()
    assert all(g.error is None for g in gens)
    assert "chat_template_kwargs" in srv.bodies[0] and "chat_template_kwargs" not in srv.bodies[-1]
    assert len(srv.bodies) == 3  # one rejection, then never sent again


def test_backoff_is_jittered_exponential_and_capped():
    import random

    rng = random.Random(0)
    waits = [endpoint.backoff_s(a, rng=rng) for a in range(8)]
    assert 0.25 <= waits[0] <= 0.75 and 1.0 <= waits[2] <= 3.0
    assert max(waits) <= endpoint.BACKOFF_CAP_S
    assert endpoint.backoff_s(0, "7") == 7.0 and endpoint.backoff_s(0, "999") == endpoint.BACKOFF_CAP_S


@pytest.mark.parametrize(("message", "text"), [
    ({"content": "ok"}, "ok"),
    ({"content": None, "tool_calls": [{"function": {"name": "open_app_tool", "arguments": '{"app": "chrome"}'}}]},
     '<tool_call>\n{"name": "open_app_tool", "arguments": {"app": "chrome"}}\n</tool_call>'),
    ({"content": "x", "tool_calls": [{"function": {"name": "t", "arguments": "not json"}}]},
     'x\n<tool_call>\n{"name": "t", "arguments": "not json"}\n</tool_call>'),
])
def test_answer_text(message, text):
    assert endpoint.answer_text(message) == text


def test_a_slow_answer_times_out_and_is_retried(no_sleep):
    srv = FlakyServer([], delays=[2.0])
    try:
        b, base, req = _backend(srv.url, request_timeout_s=0.5, max_retries=2)
        (gen,) = list(b.generate(base, [req]))
    finally:
        srv.close()
    assert gen.error is None and len(srv.bodies) == 2 and b.info()["retries"] == 1


def test_failed_answers_are_counted_not_cached_and_retried_next_run(tmp_path, config_data, capsys):
    """First run: the server refuses (HTTP 404, not retried) -> errors in the results, never scored.
    Second run against a healthy server: those answers are generated, not served from the cache."""
    from jarvis_bench.commands import benchmark

    from .conftest import write_config

    srv = FlakyServer([404, 404])
    try:
        data = json.loads(json.dumps(config_data))
        data["model"].update(backend="openai", base="m", adapters=[],
                             endpoint={"base_url": srv.url, "base_model": "m", "concurrency": 1, "recheck": False})
        cfg = write_config(tmp_path / "c.json", data)
        argv = ["--config", str(cfg), "--output-dir", str(tmp_path / "o"), "--quiet", "--limit", "2"]
        benchmark.main(argv)
        first = json.loads((tmp_path / "o" / "benchmark_results.json").read_text(encoding="utf-8"))
        answers = [r["variants"]["base"] for r in first["results"]]
        assert all(a["error"] and "HTTP 404" in a["error"] and a["metrics"] is None for a in answers)
        assert first["statistics"]["variants"]["base"]["overall"]["errors"] == 2
        assert benchmark.main(argv) == 0
        second = json.loads((tmp_path / "o" / "benchmark_results.json").read_text(encoding="utf-8"))
    finally:
        srv.close()
    timing = second["metadata"]["timings"]["per_variant"]["base"]
    assert timing["from_cache"] == 0 and timing["errors"] == 0 and len(srv.bodies) == 4
    assert all(r["variants"]["base"]["response"].startswith("Je monte le son.") for r in second["results"])
    capsys.readouterr()


# ----------------------------------------------------------------------------- replies that are not answers

NOT_ANSWERS = [
    ({"choices": []}, "an empty choices list"),
    ({"id": "x", "object": "chat.completion"}, "no choices"),
    ({"choices": [{"finish_reason": "stop"}]}, "no message"),
    ({"choices": [{"message": {"role": "assistant"}, "finish_reason": "stop"}]}, "neither content nor tool_calls"),
    ({"error": {"message": "model is overloaded"}, "choices": []}, "error in a 2xx reply"),
    (["not", "an", "object"], "is a JSON list"),
]


@pytest.mark.parametrize("reply,reason", NOT_ANSWERS, ids=[r for _, r in NOT_ANSWERS])
def test_a_2xx_that_is_not_an_answer_is_a_failed_answer_naming_url_and_reason(no_sleep, reply, reason):
    srv = FlakyServer([], reply=reply)
    try:
        b, base, req = _backend(srv.url, max_retries=2)
        (gen,) = list(b.generate(base, [req]))
    finally:
        srv.close()
    assert gen.response == "" and gen.error and reason in gen.error and srv.url + "/chat/completions" in gen.error
    assert len(srv.bodies) == 3 and "after 3 attempts" in gen.error  # retried like a 5xx


def test_an_empty_answer_is_an_answer_and_length_marks_it_truncated(no_sleep):
    srv = FlakyServer([], reply={"choices": [{"message": {"content": ""}, "finish_reason": "stop"}]})
    try:
        b, base, req = _backend(srv.url, max_retries=2)
        (gen,) = list(b.generate(base, [req]))
    finally:
        srv.close()
    assert gen.error is None and gen.response == "" and not gen.truncated and len(srv.bodies) == 1
    srv = FlakyServer([], reply={"choices": [{"message": {"content": "Je"}, "finish_reason": "length"}]})
    try:
        b, base, req = _backend(srv.url)
        (gen,) = list(b.generate(base, [req]))
    finally:
        srv.close()
    assert gen.error is None and gen.response == "Je" and gen.truncated


def test_a_server_ignoring_max_tokens_is_named_once(no_sleep, caplog):
    long = {"choices": [{"message": {"content": "bla " * 3000}, "finish_reason": "stop"}],
            "usage": {"completion_tokens": 3000}}
    srv = FlakyServer([], reply=long)
    try:
        b, base, req = _backend(srv.url)
        reqs = [Request(f"rt-0{i}", req.messages) for i in range(1, 4)]
        with caplog.at_level("WARNING"):
            gens = list(b.generate(base, reqs))
    finally:
        srv.close()
    assert all(g.error is None for g in gens)
    warned = [r.getMessage() for r in caplog.records if "ignores max_tokens" in r.getMessage()]
    assert len(warned) == 1 and srv.url in warned[0] and "3000 tokens" in warned[0]


def test_a_run_against_a_server_answering_no_choices_has_no_verdict(tmp_path, config_data, capsys, no_sleep):
    """A misconfigured proxy answering {"choices": []} must not get a verdict (it would tell the user to
    retrain a good adapter): INCOMPLETE, and the failed answers name the URL and what was missing."""
    from jarvis_bench.commands import benchmark
    from jarvis_bench.demo import DEMO_ADAPTER

    from .conftest import write_config

    srv = FlakyServer([], reply={"choices": []})
    try:
        data = json.loads(json.dumps(config_data))
        data["model"].update(backend="openai", base="m", adapters=[str(DEMO_ADAPTER)], quantization="none",
                             endpoint={"base_url": srv.url, "base_model": "m", "max_retries": 0, "recheck": False,
                                       "adapter_models": {"jarvis-demo": "m-lora"}})
        cfg = write_config(tmp_path / "c.json", data)
        benchmark.main(["--config", str(cfg), "--output-dir", str(tmp_path / "out"), "--limit", "4"])
    finally:
        srv.close()
    out = capsys.readouterr()
    results = json.loads((tmp_path / "out" / "benchmark_results.json").read_text(encoding="utf-8"))
    verdict = results["statistics"]["comparisons"]["jarvis-demo"]["verdict"]
    assert verdict["level"] == "INCOMPLETE", verdict
    errors = [a["error"] for r in results["results"] for a in r["variants"].values()]
    assert all(e and "an empty choices list" in e and srv.url in e for e in errors)
    line = " ".join(out.out[out.out.index("VERDICT"):].split())  # the verdict line, unwrapped (rich wraps)
    assert "VERDICT jarvis-demo: INCOMPLETE" in line and "GOOD" not in out.out and "INSUFFICIENT" not in out.out
    assert f"première erreur : reply from {srv.url}/chat/completions has an empty choices list" in line


FAULTS = [
    ({"raw": ("text/html", b"<html><body>502 Bad Gateway</body></html>", 41)},
     "invalid JSON (text/html: '<html><body>502 Bad Gateway</body></html>')"),
    ({"raw": ("application/json", b'{"choices": [{"message": {"content": "Je mo', 200)},
     "received 43 bytes, expected 200"),  # a body cut short
    ({"hang_up": True}, "disconnected without sending a response"),
]


@pytest.mark.parametrize("fault,reason", FAULTS, ids=["html-page", "truncated-body", "hang-up"])
def test_a_page_a_cut_body_or_a_hang_up_is_a_failed_answer_naming_the_url(no_sleep, fault, reason):
    srv = FlakyServer([], **fault)
    try:
        b, base, req = _backend(srv.url, max_retries=1)
        (gen,) = list(b.generate(base, [req]))
    finally:
        srv.close()
    assert gen.response == "" and reason in gen.error and srv.url in gen.error and "after 2 attempts" in gen.error


def test_megabytes_of_answer_are_kept_whole_and_the_server_named(no_sleep, caplog):
    huge = "Je monte le son. " * 200_000  # 3.4 MB: a server ignoring max_tokens, a model looping
    srv = FlakyServer([], reply={"choices": [{"message": {"content": huge}, "finish_reason": "stop"}]})
    try:
        b, base, req = _backend(srv.url)
        with caplog.at_level("WARNING"):
            (gen,) = list(b.generate(base, [req]))
    finally:
        srv.close()
    assert gen.error is None and gen.response == huge.strip()
    assert any("ignores max_tokens" in r.getMessage() and srv.url in r.getMessage() for r in caplog.records)


def test_a_server_dying_mid_run_keeps_what_it_answered_and_the_rerun_finishes(tmp_path, config_data, capsys, no_sleep):
    """3 answers, then every connection is dropped: the 3 are kept, the others are failed answers naming the
    server, no verdict; the same command against a live server generates only the missing ones."""
    from jarvis_bench.commands import benchmark
    from jarvis_bench.demo import DEMO_ADAPTER

    from .conftest import write_config

    def run(srv):
        data = json.loads(json.dumps(config_data))
        data["model"].update(backend="openai", base="m", adapters=[str(DEMO_ADAPTER)], quantization="none",
                             endpoint={"base_url": srv.url, "base_model": "m", "max_retries": 1, "recheck": False,
                                       "concurrency": 1, "adapter_models": {"jarvis-demo": "m-lora"}})
        cfg = write_config(tmp_path / "c.json", data)
        code = benchmark.main(["--config", str(cfg), "--output-dir", str(tmp_path / "out"), "--limit", "4", "--quiet"])
        return code, json.loads((tmp_path / "out" / "benchmark_results.json").read_text(encoding="utf-8"))

    dying = FlakyServer([], answers_before_dying=3)
    try:
        _, first = run(dying)
    finally:
        dying.close()
    answers = [a for r in first["results"] for a in r["variants"].values()]
    kept = [a for a in answers if not a["error"]]
    assert len(kept) == 3 and all(a["response"].startswith("Je monte le son.") for a in kept)
    assert all("disconnected" in a["error"] and dying.url in a["error"] for a in answers if a["error"])
    assert first["statistics"]["comparisons"]["jarvis-demo"]["verdict"]["level"] == "INCOMPLETE"
    live = FlakyServer([], port=dying.httpd.server_address[1])  # the same server, back up (same URL: same cache keys)
    try:
        code, second = run(live)
    finally:
        live.close()
    per = second["metadata"]["timings"]["per_variant"]
    assert code == 0 and second["metadata"]["complete"] and sum(t["from_cache"] for t in per.values()) == 3
    assert len(live.bodies) == 5
    capsys.readouterr()
