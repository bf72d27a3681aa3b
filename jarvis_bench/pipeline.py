"""The generation stage every entry point shares: backend -> prepare -> runner -> results dict."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import backends, results, runner
from .adapters import Variant
from .cache import GenerationCache
from .config import Config, PromptSpec

log = logging.getLogger(__name__)


def generate(
    cfg: Config,
    variants: Sequence[Variant],
    prompts: Sequence[PromptSpec],
    *,
    out_dir: Path,
    cache: GenerationCache | None,
    progress: bool = True,
    device: str = "auto",
    argv: Sequence[str] | None = None,
    started: float | None = None,
    skip_too_long: bool = False,
    noisy: Sequence[Any] = (),
) -> tuple[dict[str, Any], runner.RunOutcome]:
    """Answer `prompts` (and their `noisy` variants, `noisy.Variant`s) with every variant from one model load;
    the results dict (unscored) + outcome."""
    from .noisy import specs

    asked = [*prompts, *specs(noisy, prompts)]
    later = frozenset(v.id for v in noisy)
    t0 = started if started is not None else time.perf_counter()
    backend = backends.create(cfg, device=device)
    log.info(
        "Base: %s · variants: %s · %d prompts · %s backend",
        cfg.model.base_name or cfg.model.base, ", ".join(v.name for v in variants), len(prompts), cfg.model.backend,
    )
    try:
        t_prep = time.perf_counter()
        backend.prepare(variants)
        prepare_s = time.perf_counter() - t_prep
        outcome = runner.run(cfg, backend, variants, asked, out_dir=out_dir, cache=cache, progress=progress,
                             skip_too_long=skip_too_long, later=later)
        info = backend.info()
    finally:
        backend.close()
    timings = {"prepare_s": round(prepare_s, 3), "total_s": round(time.perf_counter() - t0, 3)}
    data = results.build(cfg, variants, prompts, outcome, backend_info=info, timings=timings, argv=argv, noisy=noisy)
    return data, outcome
