"""Shared fixtures: an isolated cache (sharing the dequantized demo model), the demo run, tiny models."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from jarvis_bench.backends.base import Backend, Generation

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
CONFIG = ROOT / "benchmark_config.json"


# Test tiers, applied from the fixtures a test uses (directly or through other fixtures), so a new test is
# tiered by what it needs: `uv run pytest -m "not slow and not external"` is the two-minute loop, `uv run
# pytest` the whole suite. A fixture that loads a model, builds one, or starts a process goes in SLOW_FIXTURES;
# one that needs something outside Python (a browser, a llama-server build, root for a tmpfs) in
# EXTERNAL_FIXTURES. A test that starts a process itself takes the `script` fixture.
SLOW_FIXTURES = {
    "demo_base",  # the demo model: dequantized on a fresh machine (~20 s), tokenizer loads; every model fixture uses it
    "script",  # a subprocess: a fresh interpreter imports torch (~5 s) before doing anything
    "served_demo",  # a `transformers serve` process
    "moe_adapters", "tiny_moe",  # tiny MoE checkpoints built and loaded
}
EXTERNAL_FIXTURES = {
    "chromium",  # Debian's chromium (.ci/run installs it)
    "lora_gguf", "llama_server",  # a llama-server built from source (tests/llama_cpp.py)
    "tmpfs",  # root and mount(8), for a real full or read-only disk
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if used & SLOW_FIXTURES:
            item.add_marker(pytest.mark.slow)
        if used & EXTERNAL_FIXTURES:
            item.add_marker(pytest.mark.external)
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if not has_cuda:
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Each test session gets its own generation cache; the dequantized demo model is shared
    with the user's cache so the GGUF is converted once per machine, not once per session."""
    from jarvis_bench import fsutil

    real_root = fsutil.cache_root()
    root = tmp_path_factory.mktemp("cache")
    (real_root / "models").mkdir(parents=True, exist_ok=True)
    (root / "models").symlink_to(real_root / "models", target_is_directory=True)
    old = os.environ.get(fsutil.CACHE_ENV)
    os.environ[fsutil.CACHE_ENV] = str(root)
    yield root
    if old is None:
        os.environ.pop(fsutil.CACHE_ENV, None)
    else:
        os.environ[fsutil.CACHE_ENV] = old


@pytest.fixture(autouse=True)
def _restore_logging():
    """The entry points set the "jarvis_bench" logger's level (check_setup: ERROR); a test that runs one
    must not change what the next test's caplog sees."""
    import logging

    logger = logging.getLogger("jarvis_bench")
    level = logger.level
    yield
    logger.setLevel(level)


@pytest.fixture(scope="session")
def config_data() -> dict:
    return json.loads(CONFIG.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def demo_base(isolated_cache) -> Path:
    from jarvis_bench import demo

    return demo.base_dir()


@pytest.fixture(scope="session")
def demo_run(demo_base, tmp_path_factory):
    """One full `benchmark.py --demo` run (30 prompts x {base, demo adapter}); its exit code and JSON."""
    from jarvis_bench.commands import benchmark

    out = tmp_path_factory.mktemp("demo-results")
    code = benchmark.main(["--demo", "--output-dir", str(out), "--quiet"])
    data = json.loads((out / "benchmark_results.json").read_text(encoding="utf-8"))
    return {"code": code, "out": out, "data": data}


@pytest.fixture
def script():
    """Run a command in a subprocess (a repository script with `sys.executable` first, a launcher, a
    browser): `script(args, **subprocess_run_kwargs)` -> CompletedProcess with text output. Marks the test slow."""
    import subprocess

    def run(args, **kw):
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 600)
        return subprocess.run([str(a) for a in args], **kw)

    return run


@pytest.fixture(scope="session")
def chromium():
    """Debian's headless chromium, or a skip saying how to get it. Marks the test external."""
    import shutil

    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("no chromium: .ci/run installs Debian's package (apt-get install chromium)")
    return path


@pytest.fixture
def tmpfs():
    """`with tmpfs(path, size): ...` mounts a real small filesystem there (root only; a skip otherwise):
    a disk that fills, and can be remounted read-only. Marks the test external."""
    import contextlib
    import subprocess

    @contextlib.contextmanager
    def mount(path: Path, size: str = "64k"):
        path.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                                               capture_output=True).returncode != 0:
            pytest.skip("needs root and mount to make a real small filesystem")
        try:
            yield path
        finally:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)

    return mount


@pytest.fixture
def demo_results() -> dict:
    """The demo's results as stored in tests/data/demo_results.json (what `benchmark.py --demo` gives, checked
    by test_demo_results.py), with its run-specific fields filled in: the writers' input without running
    the demo. A fresh copy per test."""
    import hashlib

    data = json.loads((Path(__file__).resolve().parent / "data" / "demo_results.json").read_text(encoding="utf-8"))
    meta = data["metadata"]
    meta.update(timestamp="2026-12-03T06:36:23+00:00", base_model_source=str(ROOT / "demo-model"),
                config_file=str(CONFIG), config_sha256=hashlib.sha256(CONFIG.read_bytes()).hexdigest(),
                versions={}, platform={}, command=["--demo"],
                timings={"total_s": 1.0, "per_variant": {}})
    for a in meta["adapters"]:
        a["path"] = str(ROOT / "demo" / "output" / a["name"] / "final")
    return data


def write_config(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _hub_repo(hub: Path, repo: str, src: Path) -> None:
    """Expose a local model folder as `repo` in a Hugging Face cache layout (what `transformers serve` lists)."""
    import hashlib

    d = hub / f"models--{repo.replace('/', '--')}"
    rev = hashlib.sha1(repo.encode()).hexdigest()
    snap = d / "snapshots" / rev
    snap.mkdir(parents=True)
    for f in src.iterdir():
        (snap / f.name).symlink_to(f)
    (d / "refs").mkdir()
    (d / "refs" / "main").write_text(rev)


SERVED_BASE = "jarvis-bench/demo-base"
SERVED_MERGED = "jarvis-bench/demo-merged"


@pytest.fixture(scope="session")
def served_demo(demo_base, tmp_path_factory):
    """A real `transformers serve` process on a free loopback port serving the demo base and the demo
    adapter merged into it (the server loads plain HF folders, not GGUF files or bare adapters)."""
    import shutil
    import subprocess
    import sys
    import time

    import httpx
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from jarvis_bench import demo

    if shutil.which("transformers", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("transformers[serving] is not installed (dev dependency group)")
    root = tmp_path_factory.mktemp("served")
    merged = root / "merged"
    model = AutoModelForCausalLM.from_pretrained(demo_base, dtype=torch.float32)
    PeftModel.from_pretrained(model, str(demo.DEMO_ADAPTER)).merge_and_unload().save_pretrained(merged)
    AutoTokenizer.from_pretrained(demo_base).save_pretrained(merged)
    hub = root / "hub"
    _hub_repo(hub, SERVED_BASE, demo_base)
    _hub_repo(hub, SERVED_MERGED, merged)
    port = free_port()
    env = {**os.environ, "HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1"}
    log = (root / "server.log").open("w")
    exe = str(Path(sys.executable).parent / "transformers")
    args = ["serve", "--host", "127.0.0.1", "--port", str(port), "--device", "cpu", "--model-timeout", "3600",
            "--continuous-batching"]  # batches concurrent requests: ~3.5x faster than one at a time here
    proc = subprocess.Popen([exe, *args], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"transformers serve did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.3)
        yield {"url": f"{url}/v1", "base": SERVED_BASE, "merged": SERVED_MERGED, "log": root / "server.log"}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


# ----------------------------------------------------------------------------- transformers backend


def _demo_config():
    from jarvis_bench import config, demo

    return demo.apply(config.load(CONFIG))


@pytest.fixture(scope="session")
def demo_cfg(demo_base):
    cfg = _demo_config()
    cfg.generation.max_new_tokens = 40
    return cfg


@pytest.fixture(scope="session")
def demo_backend(demo_cfg):
    from jarvis_bench import adapters
    from jarvis_bench.backends import create

    variants = adapters.discover(demo_cfg)
    backend = create(demo_cfg, device="cpu")
    backend.prepare(variants)
    return backend, variants


@pytest.fixture(scope="session")
def tiny_qwen3(tmp_path_factory, demo_base):
    """A tiny random Qwen3ForCausalLM with the SmolLM2 tokenizer and the real Qwen3 chat template."""
    import torch
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    tok = AutoTokenizer.from_pretrained(demo_base)
    tok.chat_template = (FIXTURES / "qwen3_chat_template.jinja").read_text(encoding="utf-8")
    torch.manual_seed(0)
    cfg = Qwen3Config(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, max_position_embeddings=2048, tie_word_embeddings=True,
        eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"), pad_token_id=tok.pad_token_id,
    )
    model = Qwen3ForCausalLM(cfg)
    path = tmp_path_factory.mktemp("tiny-qwen3")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path




# ----------------------------------------------------------------------------- a backend without a model


class FakeBackend(Backend):
    """A backend that answers instantly and deterministically ("<variant> answers <prompt>"), so the
    runner's loop (order, cache, resume, errors, interruptions) is tested without loading a model.

    `fail`: prompt ids answered with an error; `interrupt_after`: raise KeyboardInterrupt (a Ctrl+C)
    after that many answers; `over`: prompt ids too long for the "model"'s 1000-token context."""

    name = "fake"
    loads_model = False

    def __init__(self, *, fail=(), interrupt_after=None, over=()):
        self.fail, self.interrupt_after, self.over = set(fail), interrupt_after, set(over)
        self.calls: list[tuple[str, list[str]]] = []  # (variant, prompt ids) per generate() call
        self.answered = 0
        self.rechecked: list[str] = []

    def prepare(self, variants):
        pass

    def identity(self):
        return {"model": "fake"}

    def render(self, request):
        return "\n".join(m["content"] for m in request.messages)

    def generate(self, variant, requests):
        self.calls.append((variant.name, [r.prompt_id for r in requests]))
        for r in requests:
            if self.interrupt_after is not None and self.answered >= self.interrupt_after:
                raise KeyboardInterrupt
            self.answered += 1
            if r.prompt_id in self.fail:
                yield Generation(r.prompt_id, variant.name, error="HTTP 500 from the fake server")
            else:
                yield Generation(r.prompt_id, variant.name, response=f"{variant.name} answers {r.prompt_id}",
                                 tokens=4, latency_s=0.01)

    def info(self):
        return {"device": "none"}

    def too_long(self, requests, max_new_tokens):
        from jarvis_bench.backends.base import overflow

        tokens = {r.prompt_id: (2000 if r.prompt_id in self.over else 10) for r in requests}
        return overflow(tokens, 1000, max_new_tokens, "fake")

    def recheck(self, variant, request, first):
        self.rechecked.append(variant.name)
        return True


@pytest.fixture
def fake_backend():
    return FakeBackend
