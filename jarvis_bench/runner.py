"""Runner: prompts x variants -> Generation records, through the cache, appended to generations.jsonl."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import chat
from .adapters import Variant
from .backends.base import Backend, Generation, Request
from .cache import GenerationCache, generation_key
from .config import Config, PromptSpec
from .errors import ConfigError
from .fsutil import append_jsonl
from .progress import Progress

log = logging.getLogger(__name__)

GENERATIONS_FILE = "generations.jsonl"


@dataclass
class RunOutcome:
    generations: dict[tuple[str, str], Generation]  # (prompt id, variant) -> answer
    seconds_per_variant: dict[str, float] = field(default_factory=dict)
    generated: int = 0  # answers produced by the backend in this run
    from_cache: int = 0
    timed_out: bool = False
    interrupted: bool = False
    missing: int = 0
    skipped: list[dict[str, Any]] = field(default_factory=list)  # prompts too long for the model (--skip-too-long)


def params(cfg: Config) -> dict[str, Any]:
    """Generation parameters that belong in the cache key."""
    g = cfg.generation
    return {"max_new_tokens": g.max_new_tokens, "greedy": True, "enable_thinking": g.enable_thinking}


def rendered(backend: Backend, request: Request, cache: GenerationCache | None) -> str:
    """The backend's rendered prompt, kept in the cache under the backend's `render_key` when it has one,
    so that a rerun can compute every cache key without loading the tokenizer."""
    key = backend.render_key(request) if cache is not None else None
    if cache is None or key is None:
        return backend.render(request)
    text = cache.get_prompt(key)
    if text is None:
        text = backend.render(request)
        cache.put_prompt(key, text)
    return text


def _check_fit(backend: Backend, todos: dict[str, list[Request]], max_new_tokens: int, skip_too_long: bool,
               outcome: RunOutcome) -> set[str]:
    """Before anything is generated: the prompts to generate whose tokens + max_new_tokens exceed the
    model's context. A model fed past its context does not fail, it grinds on positions it was never
    trained for; so that is a user error (exit 2), or with --skip-too-long those prompts are left out."""
    pending = list({r.prompt_id: r for rs in todos.values() for r in rs}.values())
    if not pending:
        return set()
    over = backend.too_long(pending, max_new_tokens)
    if not over:
        return set()
    ctx, source = over[0]["context"], over[0]["source"]
    listed = ", ".join(f"{o['id']} ({o['tokens']} tokens)" for o in over[:5]) + (" …" if len(over) > 5 else "")
    if not skip_too_long:
        raise ConfigError(
            f"{len(over)} prompt(s) do not fit the model's context of {ctx} tokens ({source}) with "
            f"generation.max_new_tokens {max_new_tokens}: {listed}; shorten them or lower "
            "generation.max_new_tokens, or pass --skip-too-long to run the others"
        )
    log.warning("Skipping %d prompt(s) longer than the model's context of %d tokens with max_new_tokens %d (%s): %s.",
                len(over), ctx, max_new_tokens, source, listed)
    outcome.skipped = over
    return {o["id"] for o in over}


def _recheck(backend: Backend, variant: Variant, request: Request, outcome: RunOutcome, deadline: float | None) -> None:
    """The backend's recheck of a variant's first generated prompt (a server whose greedy answers change
    is a warning), outside the timings and never past generation.timeout_s."""
    first = outcome.generations.get((request.prompt_id, variant.name))
    if first is None or first.error or (deadline is not None and time.monotonic() >= deadline):
        return
    backend.recheck(variant, request, first)


def run(
    cfg: Config,
    backend: Backend,
    variants: Sequence[Variant],
    prompts: Sequence[PromptSpec],
    *,
    out_dir: Path,
    cache: GenerationCache | None,
    progress: bool = True,
    skip_too_long: bool = False,
    later: frozenset[str] = frozenset(),
) -> RunOutcome:
    """Answer every prompt with every variant (the prompts whose ids are in `later` after all the others). Finished answers are flushed to disk one by one,
    so an interruption (KeyboardInterrupt propagates after this returns partial state) loses nothing."""
    requests = [Request(p.id, tuple(chat.messages(cfg, p))) for p in prompts]
    identity = backend.identity()
    gen_params = params(cfg)
    texts = {r.prompt_id: rendered(backend, r, cache) for r in requests}
    vkeys = {v.name: backend.variant_key(v) for v in variants}
    keys = {(r.prompt_id, v.name): generation_key(identity, vkeys[v.name], texts[r.prompt_id], gen_params)
            for v in variants for r in requests}
    out_dir.mkdir(parents=True, exist_ok=True)
    jsonl = out_dir / GENERATIONS_FILE
    jsonl.unlink(missing_ok=True)
    outcome = RunOutcome(generations={})
    deadline = time.monotonic() + cfg.generation.timeout_s if cfg.generation.timeout_s else None
    total = len(requests) * len(variants)

    def record(gen: Generation, *, new: bool = False) -> None:
        key = keys[(gen.prompt_id, gen.variant)]
        outcome.generations[(gen.prompt_id, gen.variant)] = gen
        if new and cache is not None:  # first: an answer is kept even if the results folder cannot be written
            cache.put(key, gen)
        append_jsonl(jsonl, {**gen.to_dict(), "key": key})

    with Progress(total=total, enabled=progress, description="Génération") as bar:
        try:
            todos: dict[str, list[Request]] = {}
            for v in variants:
                todos[v.name] = []
                for r in requests:
                    hit = cache.get(keys[(r.prompt_id, v.name)]) if cache else None
                    if hit is not None:
                        hit.variant, hit.prompt_id = v.name, r.prompt_id  # two prompts may share a text
                        record(hit)
                        outcome.from_cache += 1
                        bar.advance()
                    else:
                        todos[v.name].append(r)
            skip = _check_fit(backend, todos, cfg.generation.max_new_tokens, skip_too_long, outcome)
            # `later` prompts (noisy-speech variants) only once every variant answered the others: a timeout
            # or a Ctrl+C spent on them never leaves the clean comparison without its answers
            phases = [lambda r: r.prompt_id not in later, lambda r: r.prompt_id in later] if later else [lambda r: True]
            for first, in_phase in zip((True, False), phases):
                for v in variants:
                    todo = [r for r in todos[v.name] if r.prompt_id not in skip and in_phase(r)]
                    if not todo:
                        continue
                    if deadline is not None and time.monotonic() >= deadline:
                        outcome.timed_out = True
                        break
                    bar.describe(f"Génération · {v.name}")
                    t0 = time.perf_counter()
                    for gen in backend.generate(v, todo):
                        record(gen, new=True)
                        outcome.generated += 1
                        bar.advance()
                        if deadline is not None and time.monotonic() >= deadline:
                            outcome.timed_out = True
                            break
                    outcome.seconds_per_variant[v.name] = round(outcome.seconds_per_variant.get(v.name, 0.0)
                                                                + time.perf_counter() - t0, 3)
                    if outcome.timed_out:
                        break
                    if first:
                        _recheck(backend, v, todo[0], outcome, deadline)
                if outcome.timed_out:
                    break
        except KeyboardInterrupt:
            outcome.interrupted = True
    outcome.missing = total - len(outcome.generations) - len(outcome.skipped) * len(variants)
    if outcome.timed_out:
        log.warning(
            "generation.timeout_s (%ss) reached: %d answers kept, %d missing; rerun to finish them.",
            cfg.generation.timeout_s, len(outcome.generations), outcome.missing,
        )
    return outcome
