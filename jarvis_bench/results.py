"""Assemble and write results/benchmark_results.json (atomically)."""

from __future__ import annotations

import datetime as _dt
import platform
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from .adapters import Variant
from .config import Config, PromptSpec
from .fsutil import atomic_write_json
from .runner import RunOutcome

RESULTS_FILE = "benchmark_results.json"
SCHEMA_VERSION = 1
_PACKAGES = ("jarvis-bench", "torch", "transformers", "peft", "accelerate", "bitsandbytes", "sentence-transformers")


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _variant_timing(outcome: RunOutcome, name: str) -> dict[str, Any]:
    gens = [g for (pid, v), g in outcome.generations.items() if v == name]
    fresh = [g for g in gens if not g.cached and not g.error]
    seconds = outcome.seconds_per_variant.get(name)
    tokens = sum(g.tokens for g in fresh)
    return {
        "answers": len(gens),
        "from_cache": sum(g.cached for g in gens),
        "errors": sum(bool(g.error) for g in gens),
        "truncated": sum(g.truncated for g in gens),
        "thinking_stripped": sum(g.thinking_chars > 0 for g in gens),
        "generation_s": seconds,
        "generated_tokens": tokens,
        "tokens_per_s": round(tokens / seconds, 2) if seconds and tokens else None,
    }


def build(
    cfg: Config,
    variants: Sequence[Variant],
    prompts: Sequence[PromptSpec],
    outcome: RunOutcome,
    *,
    backend_info: dict[str, Any],
    timings: dict[str, float],
    argv: Sequence[str] | None = None,
    noisy: Sequence[Any] = (),
) -> dict[str, Any]:
    """The results dict. Noisy-speech variants (`noisy.Variant`s of `prompts`) go to `noisy_results`, rows
    of the same shape with their `source_id` and noise `rules`: never in `results`, never in the verdict."""
    adapters = [v for v in variants if not v.is_base]
    skipped = {s["id"] for s in outcome.skipped}
    clean_missing = sum((p.id, v.name) not in outcome.generations for p in prompts if p.id not in skipped
                        for v in variants)
    metadata_block = {
        "schema_version": SCHEMA_VERSION,
        "base_model": cfg.model.base_name or cfg.model.base,
        "base_model_source": cfg.model.base,
        "revision": cfg.model.revision,
        "lora_adapter": str(adapters[0].path) if adapters else None,  # the seed's key: the primary adapter
        "primary_variant": adapters[0].name if adapters else None,
        "adapters": [v.describe() for v in adapters],
        "variants": [v.name for v in variants],
        "backend": cfg.model.backend,
        **{k: v for k, v in backend_info.items()},
        "timestamp": _dt.datetime.now(_dt.UTC).astimezone().isoformat(timespec="seconds"),
        "config_file": str(cfg.source) if cfg.source else None,
        "config_sha256": cfg.content_hash(),
        "generation": cfg.generation.model_dump(mode="json"),
        "versions": versions(),
        "platform": {"system": platform.system(), "machine": platform.machine(), "python": sys.version.split()[0]},
        "command": list(argv) if argv is not None else None,
        "training_data": [str(cfg.resolve(p)) for p in cfg.training_data],
        "n_prompts": len(prompts) - len(skipped & {p.id for p in prompts}),
        "categories": list(dict.fromkeys(p.category for p in prompts)),
        "complete": clean_missing == 0,
        "timed_out": outcome.timed_out,
        "interrupted": outcome.interrupted,
        "missing_answers": clean_missing,  # of the prompts; the noisy variants' are in robustness
        "skipped_prompts": outcome.skipped,
        "timings": {
            **timings,
            "per_variant": {v.name: _variant_timing(outcome, v.name) for v in variants},
        },
    }
    def row(pid: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for v in variants:
            g = outcome.generations.get((pid, v.name))
            if g is not None:
                out[v.name] = {"response": g.response, "tokens": g.tokens, "latency_s": g.latency_s,
                               "truncated": g.truncated, "thinking_chars": g.thinking_chars, "error": g.error}
        return out

    results = [{"id": p.id, "category": p.category, "prompt": p.prompt, "expected_tool": p.expected_tool,
                "variants": row(p.id)}
               for p in prompts if p.id not in skipped]  # skipped: listed in metadata.skipped_prompts
    category = {p.id: p.category for p in prompts}
    noisy_rows = [{"id": v.id, "source_id": v.source_id, "category": category[v.source_id], "prompt": v.text,
                   "rules": v.rules, "phoneme_distance": v.phoneme_distance, "variants": row(v.id)}
                  for v in noisy if v.id not in skipped and v.source_id not in skipped]
    data: dict[str, Any] = {"metadata": metadata_block, "results": results}
    if noisy:
        from . import noisy as noise

        metadata_block["robustness"] = {"variants_per_prompt": cfg.robustness.variants_per_prompt,
                                        "missing_answers": sum(len(variants) - len(r["variants"]) for r in noisy_rows),
                                        "seed": cfg.generation.seed, "noisy_prompts": len(noisy_rows),
                                        "max_phoneme_distance": noise.MAX_PHONEME_DISTANCE,
                                        "phonemiser": noise.phonemes.version()}
        data["noisy_results"] = noisy_rows
    return data


def write(out_dir: Path, data: dict[str, Any]) -> Path:
    path = out_dir / RESULTS_FILE
    atomic_write_json(path, data)
    return path
