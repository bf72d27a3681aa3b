"""openai backend: any OpenAI-compatible chat endpoint (vLLM `serve --enable-lora --lora-modules`,
`transformers serve`, llama.cpp server, Ollama, LM Studio…).

- the base and each adapter are model names on the endpoint (`Variant.served_as`); each variant may
  have its own route (`endpoint.variants[name]`: base_url, model, extra_body merged over the shared
  extra_body), so the base and an adapter can live on two servers, or on one llama-server that picks
  its LoRA per request (`"lora": [{"id": 0, "scale": 1}]`); two variants never send the same request
  (unless `endpoint.allow_identical`); `/v1/models` (ids and llama-server's aliases) is checked on every
  endpoint before anything is generated, and a missing name is a one-line error listing what is served
  and how to serve one more on that kind of server;
- cache keys hold each variant's route and what its server says about the model (`/v1/models` entry,
  llama-server's `/props`), plus `endpoint.revision`;
- determinism: `probe()` asks one request alone then twice at once; after each variant's answers the
  run asks its first request again; different greedy answers are one warning naming the server options
  that make them reproducible (llama-server `--parallel 1` and `cache_prompt: false`);
- greedy: `temperature=0`, `max_tokens`, `seed`; the tool catalog goes in `tools`; Qwen3's thinking
  switch goes in `chat_template_kwargs` (dropped, once, for a server that rejects the field);
- tool calls the server parsed out of the text come back as `<tool_call>{json}</tool_call>` so they
  are scored exactly like the transformers backend's raw text;
- bounded concurrency (threads), a per-request timeout, bounded jittered exponential retries on
  429/5xx/timeouts/connection errors (honouring Retry-After); an answer that still fails is recorded
  as an error naming the URL — never scored as text;
- the API key is read from the environment variable `endpoint.api_key_env` names and is sent only in
  the Authorization header: it is not in the identity, the info, the cache or any message.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..adapters import BASE, Variant
from ..chat import tools as tool_schemas
from ..config import Config
from ..errors import BackendUnavailable, ConfigError, JarvisBenchError, ModelLoadError
from ..fsutil import sha256_json
from ..text import strip_thinking
from .base import Backend, Generation, Request, overflow

if TYPE_CHECKING:
    from ..checks import Check

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 20.0


def retry_after_s(value: str, now: float | None = None) -> float | None:
    """A Retry-After header in seconds: a number of seconds, or an HTTP date (RFC 9110) from now; None
    when it is neither."""
    import email.utils

    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return when.timestamp() - (time.time() if now is None else now)


def backoff_s(attempt: int, retry_after: str | None = None, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry `attempt` (0-based): Retry-After when the server gives one (seconds or
    an HTTP date; capped), else exponential with +-50 % jitter so parallel clients do not retry in lockstep."""
    wait = retry_after_s(retry_after) if retry_after else None
    if wait is not None and wait == wait:  # not NaN
        return min(max(wait, 0.0), BACKOFF_CAP_S)
    r = (rng or random).uniform(0.5, 1.5)
    return min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt * r)


def answer_text(message: dict[str, Any]) -> str:
    """The assistant message as one text: content, then each parsed tool call as <tool_call>{json}</tool_call>."""
    parts = [message.get("content") or ""]
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        args: Any = fn.get("arguments")
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError:
                pass  # keep the raw string: scoring sees what the server sent
        payload = json.dumps({"name": fn.get("name"), "arguments": args}, ensure_ascii=False)
        parts.append(f"<tool_call>\n{payload}\n</tool_call>")
    return "\n".join(p for p in parts if p).strip()


#: A server whose answers exceed max_tokens by this factor (its usage, or ~8 characters per token of text)
#: ignores the limit: one warning names it.
OVERRUN = 1.5


def reply_message(data: Any, url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The first choice and its message of a chat-completion reply, or `_Failed` (retryable, as a 5xx)
    saying what the reply lacks: a 2xx that is not a chat completion is a failed answer, never an
    empty one. An assistant message with `content: ""` is an answer (the model said nothing)."""
    if not isinstance(data, dict):
        raise _Failed(f"reply from {url} is a JSON {type(data).__name__}, not a chat completion", True)
    if data.get("error"):  # some servers report an error inside a 200
        err = data["error"]
        detail = err.get("message") if isinstance(err, dict) else err
        raise _Failed(f"error in a 2xx reply from {url}: {str(detail)[:200]}", True)
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        what = "no choices" if choices is None else "an empty choices list" if choices == [] else "choices not a list"
        raise _Failed(f"reply from {url} has {what}: not an answer", True)
    choice = choices[0]
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise _Failed(f"reply from {url} has no message in its first choice", True)
    if message.get("content") is None and not message.get("tool_calls"):
        raise _Failed(f"reply from {url} has a message with neither content nor tool_calls", True)
    return choice, message


def _names(entry: dict[str, Any]) -> set[str]:
    """The names one `/v1/models` entry answers to: its id and its aliases (llama-server lists the names
    given with --alias under "aliases")."""
    return {str(entry.get("id"))} | {str(a) for a in entry.get("aliases") or [] if a}


def _entries(listing: dict[str, Any], names: Sequence[str | None]) -> list[dict[str, Any]]:
    """The `/v1/models` entries that answer to one of `names`."""
    wanted = {n for n in names if n}
    return [m for m in listing.get("data") or [] if isinstance(m, dict) and _names(m) & wanted]


def served_names(listing: dict[str, Any]) -> set[str]:
    """Every name `/v1/models` answers to."""
    return set().union(*(_names(m) for m in listing.get("data") or [] if isinstance(m, dict)))


STABLE_FIELDS = ("id", "owned_by", "root", "parent", "max_model_len", "aliases", "meta", "path")  # not "created", "status"


def model_facts(listing: dict[str, Any], names: Sequence[str | None]) -> list[dict[str, Any]]:
    """What `/v1/models` says about the models we use, without the fields that change between requests
    (vLLM and transformers serve stamp `created` with the time of the request)."""
    out = [{k: m[k] for k in STABLE_FIELDS if k in m} for m in _entries(listing, names)]
    return sorted(out, key=lambda m: str(m.get("id")))


def server_kind(listing: dict[str, Any]) -> str:
    """Which server answered, from `owned_by` (vllm, llamacpp, ollama/library) or llama.cpp's `meta`."""
    owners = {str(m.get("owned_by", "")).lower() for m in listing.get("data") or [] if isinstance(m, dict)}
    if "vllm" in owners:
        return "vllm"
    if "llamacpp" in owners or any(isinstance(m, dict) and "meta" in m for m in listing.get("data") or []):
        return "llama.cpp"
    if owners & {"ollama", "library"}:
        return "ollama"
    return "other"


def slot_context(listing: dict[str, Any], names: Sequence[str | None]) -> int | None:
    """The context one request gets on a llama-server: `meta.n_ctx` of the models we use (its -c divided
    among the --parallel slots); None for other servers."""
    sizes = [m["meta"].get("n_ctx") for m in _entries(listing, names) if isinstance(m.get("meta"), dict)]
    sizes = [n for n in sizes if isinstance(n, int) and n > 0]
    return min(sizes) if sizes else None


def server_root(url: str) -> str:
    """Where llama-server's own endpoints (/props, /tokenize…) are: beside its /v1."""
    return url[: -len("/v1")] if url.endswith("/v1") else url


def server_label(kind: str, facts: dict[str, Any]) -> str:
    """"llama.cpp, Qwen3-30B-A3B-Q4_K_M.gguf" for the results and the report: the kind of server and,
    when it says, the model file."""
    path = (facts.get("props") or {}).get("model_path")
    return f"{kind}, {str(path).replace(chr(92), '/').rsplit('/', 1)[-1]}" if path else kind


def load_hint(listing: dict[str, Any]) -> str:
    """How to serve one more name, written for the server that answered."""
    return {
        "vllm": "vLLM: vllm serve BASE --enable-lora --lora-modules NAME=PATH",
        "llama.cpp": "llama.cpp: llama-server --alias NAME, and --lora ADAPTER.gguf for an adapter",
        "ollama": "Ollama: ollama create NAME -f Modelfile, with FROM the base and ADAPTER the LoRA",
        "other": "vLLM: --lora-modules NAME=PATH; llama.cpp: --alias NAME; Ollama: a Modelfile with ADAPTER",
    }[server_kind(listing)]


class _Failed(Exception):
    """A request that did not give an answer. `retryable`: worth asking again; `counted`: a retry the
    run reports (False for a resend without a refused field, which is not the server failing)."""

    def __init__(self, message: str, retryable: bool, retry_after: str | None = None, counted: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.counted = counted


def reproducibility_hint(kind: str) -> str:
    """The server options that make greedy answers independent of what else the server is doing."""
    return {
        "llama.cpp": 'llama-server --parallel 1, and model.endpoint.prompt_cache false (sends "cache_prompt": false)',
        "vllm": "vllm serve --max-num-seqs 1 --no-enable-prefix-caching, or VLLM_BATCH_INVARIANT=1",
        "ollama": "OLLAMA_NUM_PARALLEL=1 on the Ollama server",
        "other": ("one request at a time on the server (llama-server --parallel 1, vLLM --max-num-seqs 1, "
                  "OLLAMA_NUM_PARALLEL=1) and no prompt cache (model.endpoint.prompt_cache false for llama.cpp)"),
    }[kind]


@dataclass(frozen=True)
class Route:
    """Where one variant's requests go and what they carry beyond the prompt."""

    base_url: str
    model: str | None
    extra_body: dict[str, Any]

    def same_request(self) -> str:
        return json.dumps([self.base_url, self.model, self.extra_body], sort_keys=True)


def routes(cfg: Config, variants: Sequence[Variant]) -> dict[str, Route]:
    """Each variant's route: its own endpoint.variants entry over the shared settings."""
    ep = cfg.model.endpoint
    out = {}
    for v in variants:
        own = ep.variants.get(v.name)
        url = (own.base_url if own and own.base_url else ep.base_url) or ""
        if not url:
            raise ConfigError(f'variant {v.name} has no endpoint: set model.endpoint.base_url, or '
                              f'model.endpoint.variants["{v.name}"].base_url')
        body = {**ep.extra_body, **(own.extra_body if own else {})}
        if not ep.prompt_cache:
            body["cache_prompt"] = False
        out[v.name] = Route(url.rstrip("/"), v.served_as, body)
    return out


class OpenAIBackend(Backend):
    name = "openai"
    loads_model = False

    @classmethod
    def check_requirements(cls) -> None:
        import importlib.util

        if importlib.util.find_spec("httpx") is None:
            raise BackendUnavailable("the openai backend needs httpx; run `uv sync`")

    @classmethod
    def discover(cls, cfg: Config, variants: list[Variant]) -> list[Variant]:
        """Every variant gets its model name on the endpoint (endpoint.variants[name].model,
        else base_model / adapter_models, else its name); adapters that live only on the server (names in
        endpoint.adapter_models or endpoint.variants with no local folder) are added."""
        ep = cfg.model.endpoint

        def served(name: str) -> str:
            own = ep.variants[name].model if name in ep.variants else None
            if own:
                return own
            if name == BASE:
                return ep.base_model or cfg.model.base_name or cfg.model.base
            return ep.adapter_models.get(name, name)

        out = [Variant(**{**v.__dict__, "served_as": served(v.name)}) for v in variants]
        known = {v.name for v in out}
        for name in [*ep.adapter_models, *ep.variants]:
            if name in known:
                continue
            own = ep.variants.get(name)
            if name not in ep.adapter_models and own is not None and not (own.model or own.base_url):
                log.warning('model.endpoint.variants["%s"] names no variant of this run (%s) and is ignored; fix the name, '
                            'or give it a "model" if it is an adapter that lives only on the server.',
                            name, ", ".join(sorted(known)))
                continue
            out.append(Variant(name=name, served_as=served(name)))
            known.add(name)
        return out

    @classmethod
    def setup_checks(cls, cfg: Config, source: Any | None) -> Iterator[Check]:
        """Each endpoint answers, knows every model name we will ask for, accepts the key;
        then the determinism probe on each server: the first prompt asked alone and twice at once, greedy;
        different answers are a WARN naming the server options that fix them."""
        from ..adapters import discover
        from ..chat import messages
        from ..checks import Check

        quick = cfg.model_copy(deep=True)
        quick.model.endpoint.max_retries = 0  # a check reports, it does not wait
        backend = None
        try:
            variants = discover(quick, digest=False)
            backend = cls(quick)
            backend.prepare(variants)
            routes = backend.routes
            one_url = len({r.base_url for r in routes.values()}) == 1
            served = ", ".join(f"{v.name} = {v.served_as}" + ("" if one_url else f" at {routes[v.name].base_url}")
                               for v in variants)
            yield Check("OK", "endpoint", (f"{routes[variants[0].name].base_url} serves " if one_url else "") + served)
            if not cfg.prompts:
                return
            p = cfg.prompts[0]
            request = Request(p.id, tuple(messages(cfg, p)))
            for url in dict.fromkeys(routes[v.name].base_url for v in variants):  # each server once
                v = next(v for v in variants if routes[v.name].base_url == url)
                answers = backend.probe(v, request)
                failed = next((a.error for a in answers if a.error), None)
                distinct = len({a.response for a in answers})
                if failed:
                    yield Check("FAIL", "determinism", f"{v.name}: {failed}", "check the server's log")
                elif distinct > 1:
                    yield Check("WARN", "determinism",
                                f"{url} gave {distinct} different answers to the same request at temperature 0 "
                                f"(prompt {p.id}, alone then twice at once): two runs may disagree",
                                reproducibility_hint(backend.kinds.get(url, "other")))
                else:
                    yield Check("OK", "determinism", f"{url}: the same answer to the same request, alone and twice at once")
        except JarvisBenchError as exc:
            yield Check("FAIL", "endpoint", str(exc))
        finally:
            if backend is not None:
                backend.close()

    @classmethod
    def where_it_ran(cls, meta: dict[str, Any], t: dict[str, str]) -> tuple[str, str]:
        """Which server answered: its URL, kind and model file (the tool knows nothing of its hardware)."""
        servers = meta.get("servers") or {meta.get("endpoint"): None}
        return t["server"], ", ".join(f"{url} ({kind})" if kind else str(url) for url, kind in servers.items())

    def __init__(self, cfg: Config, *, device: str = "auto") -> None:
        import httpx

        ep = cfg.model.endpoint
        self.cfg = cfg
        self.base_url = (ep.base_url or "").rstrip("/")  # the shared one; each variant's is in self.routes
        self.routes: dict[str, Route] = {}
        headers = {"User-Agent": "jarvis-bench"}
        if ep.api_key_env:
            key = os.environ.get(ep.api_key_env)
            if not key:
                raise ConfigError(
                    f"model.endpoint.api_key_env names the environment variable {ep.api_key_env}, which is not set; "
                    f"export {ep.api_key_env}=<your key> or remove api_key_env for a server without keys"
                )
            headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.Client(headers=headers, timeout=httpx.Timeout(ep.request_timeout_s, connect=10.0))
        self._httpx = httpx
        self._send_template_kwargs = True
        self._lock = threading.Lock()
        self._overrun: set[str] = set()  # servers already warned about ignoring max_tokens
        self._rng = random.Random(cfg.generation.seed)
        self.variants: list[Variant] = []
        self._info: dict[str, Any] = {"device": "endpoint", "retries": 0}

    # ------------------------------------------------------------------ setup

    def _get(self, root: str, path: str, where: str = "model.endpoint.base_url") -> Any:
        """GET root+path with the retry rules; `where` is the config field that gave `root`."""
        url = f"{root}{path}"
        last = ""
        for attempt in range(self.cfg.model.endpoint.max_retries + 1):
            try:
                resp = self._client.get(url)
            except self._httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if resp.status_code in (401, 403):
                    raise ConfigError(
                        f"{url} refused the request (HTTP {resp.status_code}); check the API key in the variable "
                        f"model.endpoint.api_key_env names ({self.cfg.model.endpoint.api_key_env or 'none set'})"
                    )
                if resp.status_code < 400:
                    return resp.json()
                last = f"HTTP {resp.status_code}"
                if resp.status_code not in RETRY_STATUS:
                    break
            if attempt < self.cfg.model.endpoint.max_retries:
                time.sleep(backoff_s(attempt, rng=self._rng))
        raise ModelLoadError(
            f"cannot reach the endpoint {url} ({last}); start the server or fix {where}"
        )

    def prepare(self, variants: Sequence[Variant]) -> None:
        self.variants = list(variants)
        self.routes = routes(self.cfg, self.variants)
        self._refuse_identical()
        t0 = time.perf_counter()
        self._facts: dict[str, dict[str, Any]] = {}
        self.kinds: dict[str, str] = {}
        self._contexts: dict[str, int | None] = {}
        for url in dict.fromkeys(r.base_url for r in self.routes.values()):
            mine = [v for v in self.variants if self.routes[v.name].base_url == url]
            where = "model.endpoint.base_url" if url == self.base_url else f'model.endpoint.variants["{mine[0].name}"].base_url'
            listing = self._get(url, "/models", where)
            served = served_names(listing)
            missing = [v for v in mine if v.served_as not in served]
            if missing:
                v = missing[0]
                raise ConfigError(
                    f"the endpoint {url} does not serve {v.served_as!r} (variant {v.name}); it serves: "
                    f"{', '.join(sorted(served)) or 'nothing'}; set {self._name_field(v)} to one of them or load it "
                    f"on the server ({load_hint(listing)})"
                )
            self.kinds[url] = server_kind(listing)
            self._contexts[url] = slot_context(listing, [v.served_as for v in mine])
            # llama-server: /props names the GGUF file and the build, /lora-adapters which LoRA file has which id
            props = self._llama_facts(url) if self.kinds[url] == "llama.cpp" else {}
            for v in mine:
                self._facts[v.name] = {"models": model_facts(listing, [v.served_as]), **props}
            self._info.setdefault("servers", {})[url] = server_label(self.kinds[url], props)
        self._warn_shared_prompt_cache()
        self._info["served_models"] = {v.name: v.served_as for v in self.variants}
        urls = {name: r.base_url for name, r in self.routes.items()}
        self._info["endpoint"] = next(iter(urls.values()), self.base_url)
        if len(set(urls.values())) > 1:
            self._info["endpoints"] = urls
        extra = {name: r.extra_body for name, r in self.routes.items() if r.extra_body}
        if extra:
            self._info["extra_body"] = extra
        self._info["models_check_s"] = round(time.perf_counter() - t0, 3)

    def _refuse_identical(self) -> None:
        """Two variants sending the same request compare a model with itself (a typo): refused."""
        by_request: dict[str, list[str]] = {}
        for v in self.variants:
            by_request.setdefault(self.routes[v.name].same_request(), []).append(v.name)
        same = next((names for names in by_request.values() if len(names) > 1), None)
        if same and not self.cfg.model.endpoint.allow_identical:
            r = self.routes[same[0]]
            fields = f" with the same extra fields {json.dumps(r.extra_body)}" if r.extra_body else ""
            raise ConfigError(
                f"variants {' and '.join(same)} both ask {r.base_url} for the model {r.model!r}{fields}: that "
                "compares a model with itself; give each its own name (model.endpoint.base_model, adapter_models or "
                "variants[name].model) or its own request fields (model.endpoint.variants[name].extra_body), or set "
                "model.endpoint.allow_identical (--allow-identical) if that is what you mean"
            )

    def _name_field(self, v: Variant) -> str:
        """The config field that gave variant `v` its model name."""
        ep = self.cfg.model.endpoint
        own = ep.variants.get(v.name)
        if own is not None and (own.model or (not v.is_base and not v.path and v.name not in ep.adapter_models)):
            return f'model.endpoint.variants["{v.name}"].model'
        return "model.endpoint.base_model" if v.is_base else f'model.endpoint.adapter_models["{v.name}"]'

    def _llama_facts(self, url: str) -> dict[str, Any]:
        """llama-server's /props and /lora-adapters (beside /v1), when it answers: the model file, the
        build, and each LoRA's id, file and default scale (reordered --lora flags are other answers)."""
        root = server_root(url)
        out: dict[str, Any] = {}
        for path in ("/props", "/lora-adapters"):
            try:
                resp = self._client.get(f"{root}{path}", timeout=5.0)
                data = resp.json() if resp.status_code == 200 else None
            except (self._httpx.HTTPError, ValueError):
                data = None
            if path == "/props" and isinstance(data, dict):
                props = {k: data[k] for k in ("model_path", "build_info", "model_alias") if k in data}
                if props:
                    out["props"] = props
            elif path == "/lora-adapters" and isinstance(data, list) and data:
                out["loras"] = [{k: a.get(k) for k in ("id", "path", "scale")} for a in data if isinstance(a, dict)]
        return out

    def _warn_shared_prompt_cache(self) -> None:
        """Variants on one llama-server that differ by their `lora` field, with the prompt cache on:
        llama-server's prompt cache does not record which LoRA computed a cached prefix (server-task.h
        `server_prompt` holds tokens only), so a variant may continue another one's cached state."""
        if not self.cfg.model.endpoint.prompt_cache:
            return
        by_url: dict[str, set[str]] = {}
        for r in self.routes.values():
            if self.kinds.get(r.base_url) == "llama.cpp":
                by_url.setdefault(r.base_url, set()).add(json.dumps(r.extra_body.get("lora"), sort_keys=True))
        for url, loras in by_url.items():
            if len(loras) > 1:
                log.warning("%s picks the LoRA per request while its prompt cache is on: a prefix cached under one "
                            "adapter may be reused under another; set model.endpoint.prompt_cache false.", url)

    def identity(self) -> dict[str, Any]:
        # No API key here: the identity goes into cache keys and the results. Each variant's route and
        # what its server says about its model are in variant_key(); endpoint.revision is here.
        return {"backend": self.name, "revision": self.cfg.model.endpoint.revision}

    def variant_key(self, variant: Variant) -> str:
        """What identifies this variant's answers beyond the prompt: its weights (adapter hash or served
        name), its route (endpoint, model, extra fields) and what the server reports about the model:
        another GGUF behind the same name is another model."""
        r = self.routes[variant.name]
        return sha256_json({"variant": variant.key, "url": r.base_url, "model": r.model, "extra_body": r.extra_body,
                            "server": self._facts.get(variant.name, {})})

    def _body(self, request: Request, route: Route | None = None) -> dict[str, Any]:
        g = self.cfg.generation
        body: dict[str, Any] = {
            **(route.extra_body if route else {}),
            "messages": list(request.messages),
            "temperature": 0,
            "max_tokens": g.max_new_tokens,
            "seed": g.seed,
        }
        if g.include_tools:
            body["tools"] = tool_schemas(self.cfg)
        if self._send_template_kwargs:
            body["chat_template_kwargs"] = {"enable_thinking": g.enable_thinking}
        return body

    def render(self, request: Request) -> str:
        return json.dumps(self._body(request), ensure_ascii=False, sort_keys=True)

    def too_long(self, requests: Sequence[Request], max_new_tokens: int) -> list[dict[str, Any]]:
        """Prompts that do not fit a llama-server's per-request context with max_new_tokens: the server
        renders each prompt (/apply-template: the same template, tools and switches as the chat request)
        and counts its tokens (/tokenize). Other servers cannot be asked: nothing is checked there (a
        prompt too long is then the server's error, recorded as a failed answer)."""
        over: dict[str, dict[str, Any]] = {}
        for url, ctx in self._contexts.items():
            if not ctx or self.kinds.get(url) != "llama.cpp":
                continue
            route = next(r for r in self.routes.values() if r.base_url == url)
            tokens = {}
            for r in requests:
                n = self._count_tokens(url, r, route)
                if n is None:
                    log.debug("%s cannot count tokens; the context check is skipped there.", url)
                    break
                tokens[r.prompt_id] = n
            source = f"llama-server {url}: n_ctx per slot"
            for o in overflow(tokens, ctx, max_new_tokens, source):
                over.setdefault(o["id"], o)
        return list(over.values())

    def _count_tokens(self, url: str, request: Request, route: Route) -> int | None:
        root = server_root(url)
        try:
            resp = self._client.post(f"{root}/apply-template", json={"model": route.model, **self._body(request, route)})
            prompt = resp.json().get("prompt") if resp.status_code == 200 else None
            if not isinstance(prompt, str):
                return None
            resp = self._client.post(f"{root}/tokenize", json={"content": prompt, "add_special": True})
            tokens = resp.json().get("tokens") if resp.status_code == 200 else None
        except (self._httpx.HTTPError, ValueError, AttributeError):
            return None
        return len(tokens) if isinstance(tokens, list) else None

    # ------------------------------------------------------------------ generation

    def _post(self, root: str, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{root}/chat/completions"
        try:
            resp = self._client.post(url, json=body)
        except self._httpx.TimeoutException:
            raise _Failed(f"timeout after {self.cfg.model.endpoint.request_timeout_s:g}s from {url}", True) from None
        except self._httpx.HTTPError as exc:
            raise _Failed(f"{type(exc).__name__} from {url}: {exc}", True) from None
        if resp.status_code >= 400:
            detail = resp.text[:200].replace("\n", " ")
            if resp.status_code in (400, 422) and "chat_template_kwargs" in detail and "chat_template_kwargs" in body:
                with self._lock:
                    if self._send_template_kwargs:
                        log.info("%s does not accept chat_template_kwargs; sending requests without it.", url)
                    self._send_template_kwargs = False
                raise _Failed("chat_template_kwargs rejected", True, retry_after="0", counted=False)
            raise _Failed(f"HTTP {resp.status_code} from {url}: {detail}", resp.status_code in RETRY_STATUS,
                          resp.headers.get("retry-after"))
        try:
            return resp.json()
        except ValueError:  # a proxy's error page, a body cut short
            ctype = resp.headers.get("content-type", "no Content-Type").split(";")[0]
            start = " ".join(resp.text[:80].split())
            raise _Failed(f"invalid JSON ({ctype}: {start!r}) from {url}", True) from None

    def _one(self, variant: Variant, request: Request, max_tokens: int | None = None,
             retries: int | None = None) -> Generation:
        ep = self.cfg.model.endpoint
        max_retries = ep.max_retries if retries is None else retries
        route = self.routes[variant.name]
        t0 = time.perf_counter()
        attempt = 0
        while True:
            body = {"model": route.model, **self._body(request, route)}
            if max_tokens is not None:
                body["max_tokens"] = max_tokens
            try:
                data = self._post(route.base_url, body)
                choice, message = reply_message(data, f"{route.base_url}/chat/completions")
                text, thinking = strip_thinking(answer_text(message))
                thinking += len(message.get("reasoning_content") or message.get("reasoning") or "")
                usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
                tokens = usage.get("completion_tokens")
                tokens = tokens if isinstance(tokens, int) and tokens >= 0 else 0
                self._check_overrun(route.base_url, body.get("max_tokens"), tokens, len(text) + thinking)
                return Generation(
                    prompt_id=request.prompt_id, variant=variant.name, response=text,
                    tokens=tokens, latency_s=round(time.perf_counter() - t0, 3),
                    truncated=choice.get("finish_reason") == "length", thinking_chars=thinking,
                )
            except _Failed as exc:
                if not exc.retryable or attempt >= max_retries:
                    tries = f" after {attempt + 1} attempts" if attempt else ""
                    return Generation(prompt_id=request.prompt_id, variant=variant.name,
                                      latency_s=round(time.perf_counter() - t0, 3), error=f"{exc}{tries}")
                if exc.counted:
                    with self._lock:
                        self._info["retries"] += 1
                    log.debug("retrying %s/%s: %s", request.prompt_id, variant.name, exc)
                time.sleep(backoff_s(attempt, exc.retry_after, self._rng))
                attempt += 1

    def _check_overrun(self, url: str, max_tokens: Any, tokens: int, chars: int) -> None:
        """One warning per server that answers far past max_tokens (by its own count, or by the text's
        length): it ignores the limit, so answers are longer, slower and not comparable with other runs."""
        if not isinstance(max_tokens, int) or max_tokens <= 0:
            return
        if tokens <= OVERRUN * max_tokens and chars <= 8 * OVERRUN * max_tokens:
            return
        with self._lock:
            if url in self._overrun:
                return
            self._overrun.add(url)
        seen = f"{tokens} tokens" if tokens > OVERRUN * max_tokens else f"{chars} characters"
        log.warning("%s returned %s for max_tokens %d: it ignores max_tokens (answers are longer and slower "
                    "than asked, and not comparable with other servers').", url, seen, max_tokens)

    def generate(self, variant: Variant, requests: Sequence[Request]) -> Iterator[Generation]:
        """At most `endpoint.concurrency` requests in flight; answers are yielded as they finish."""
        pool = ThreadPoolExecutor(max_workers=self.cfg.model.endpoint.concurrency, thread_name_prefix="jarvis-http")
        pending: set[Future[Generation]] = set()
        todo = iter(requests)
        try:
            for r in todo:
                pending.add(pool.submit(self._one, variant, r))
                if len(pending) >= self.cfg.model.endpoint.concurrency:
                    break
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    nxt = next(todo, None)
                    if nxt is not None:
                        pending.add(pool.submit(self._one, variant, nxt))
                    yield fut.result()
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def recheck(self, variant: Variant, request: Request, first: Generation) -> bool:
        """Called by the runner after a variant's answers: ask `request` again, alone and without retries,
        and compare with the answer the run kept; True when they match (or endpoint.recheck is off). A
        greedy answer that changes means the server's answers depend on what else it was doing (parallel
        slots, prompt cache, batching): one warning per server, `info()["not_reproducible"]` names the variant."""
        if not self.cfg.model.endpoint.recheck:
            return True
        again = self._one(variant, request, retries=0)
        if again.error or again.response == first.response:
            return True
        route = self.routes[variant.name]
        with self._lock:
            seen = self._info.setdefault("not_reproducible", [])
            told = any(self.routes[name].base_url == route.base_url for name in seen)
            seen.append(variant.name)
        if told:
            return False
        log.warning(
            "%s gave another answer to the same request at temperature 0 (variant %s, prompt %s): its answers "
            "depend on what else it is doing, so two runs may disagree; for reproducible answers use %s.",
            route.base_url, variant.name, request.prompt_id, reproducibility_hint(self.kinds.get(route.base_url, "other")),
        )
        return False

    def probe(self, variant: Variant, request: Request, max_tokens: int = 32) -> list[Generation]:
        """The same request alone, then twice at once (check_setup's determinism probe): three answers
        that a deterministic server makes identical."""
        alone = self._one(variant, request, max_tokens)
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="jarvis-probe") as pool:
            both = list(pool.map(lambda _: self._one(variant, request, max_tokens), range(2)))
        return [alone, *both]

    def info(self) -> dict[str, Any]:
        return dict(self._info)

    def close(self) -> None:
        self._client.close()
