"""Backend registry: backend name -> the module and class that implement it.

A backend module imports only the standard library and jarvis_bench at module level, so its class can
be asked its class-level hooks (`check_requirements`, `discover`, `early_checks`, `setup_checks`, `where_it_ran`)
without torch, vLLM or httpx; the heavy libraries are imported when a backend is constructed.
"""

from __future__ import annotations

import importlib

from ..config import Config
from ..errors import ConfigError
from .base import Backend, Generation, Request

__all__ = ["Backend", "Generation", "Request", "backend_class", "create", "names"]

# name (model.backend) -> "module:Class" under jarvis_bench.backends
REGISTRY: dict[str, str] = {
    "transformers": "hf:TransformersBackend",
    "vllm": "vllm_engine:VllmBackend",
    "openai": "endpoint:OpenAIBackend",
    "replay": "replay:ReplayBackend",
}


def names() -> list[str]:
    return list(REGISTRY)


def backend_class(name: str) -> type[Backend]:
    """The class registered under `name` (its module imports no heavy library), or a clear error
    naming the valid ones."""
    found = REGISTRY.get(name)
    if found is None:
        import difflib

        close = difflib.get_close_matches(name, names(), n=1)
        hint = f' (did you mean "{close[0]}"?)' if close else ""
        raise ConfigError(f'model.backend = "{name}" is not a backend{hint}; choose one of: {", ".join(names())}')
    module, cls = found.split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


def create(cfg: Config, *, device: str = "auto") -> Backend:
    """The configured backend: its requirements checked (BackendUnavailable says what to install),
    then constructed."""
    cls = backend_class(cfg.model.backend)
    cls.check_requirements()
    return cls(cfg, device=device)
