"""Shared fixtures: an isolated cache (sharing the dequantized demo model), the demo run, tiny models."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
FIXTURES = SHARED / "fixtures"
CONFIG = ROOT / "benchmark_config.json"


def pytest_collection_modifyitems(config, items):
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


def write_config(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    return path
