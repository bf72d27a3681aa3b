"""Backend registry: name -> factory. Heavy libraries are imported inside each factory."""

from __future__ import annotations

from collections.abc import Callable

from ..config import Config
from ..errors import BackendUnavailable, ConfigError
from .base import Backend, Generation, Request

__all__ = ["Backend", "Generation", "Request", "create", "factory", "names"]


def _transformers(cfg: Config, device: str) -> Backend:
    import importlib.util

    missing = [m for m in ("torch", "transformers", "peft") if importlib.util.find_spec(m) is None]
    if missing:
        raise BackendUnavailable(
            f"the transformers backend needs torch, transformers and peft ({', '.join(missing)} missing); run `uv sync`"
        )
    from .hf import TransformersBackend

    return TransformersBackend(cfg, device=device)


def _openai(cfg: Config, device: str) -> Backend:
    import importlib.util

    if importlib.util.find_spec("httpx") is None:
        raise BackendUnavailable("the openai backend needs httpx; run `uv sync`")
    from .endpoint import OpenAIBackend

    return OpenAIBackend(cfg)


def _vllm(cfg: Config, device: str) -> Backend:
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        raise BackendUnavailable(
            'the vllm backend needs the `vllm` extra: run `uv sync --extra vllm` (Linux + CUDA GPU), '
            'or use model.backend "transformers"'
        )
    from .vllm_engine import VllmBackend

    return VllmBackend(cfg, device=device)


def _replay(cfg: Config, device: str) -> Backend:
    from .replay import ReplayBackend

    return ReplayBackend(cfg)


_REGISTRY: dict[str, Callable[[Config, str], Backend]] = {
    "transformers": _transformers,
    "vllm": _vllm,
    "openai": _openai,
    "replay": _replay,
}


def names() -> list[str]:
    return list(_REGISTRY)


def factory(name: str) -> Callable[[Config, str], Backend]:
    """The factory registered under `name`, or a clear error naming the valid ones (imports nothing)."""
    found = _REGISTRY.get(name)
    if found is None:
        import difflib

        close = difflib.get_close_matches(name, names(), n=1)
        hint = f' (did you mean "{close[0]}"?)' if close else ""
        raise ConfigError(f'model.backend = "{name}" is not a backend{hint}; choose one of: {", ".join(names())}')
    return found


def create(cfg: Config, *, device: str = "auto") -> Backend:
    """The configured backend, or a clear error naming the valid ones."""
    return factory(cfg.model.backend)(cfg, device)
