"""vllm backend (optional extra `vllm`, Linux + CUDA): one engine, every adapter as a LoRARequest.

The base is loaded once with `enable_lora=True`; the base answers are requests without a LoRA, each
adapter's answers carry its `LoRARequest`. Prompts are rendered with the model's own chat template by
the same code as the transformers backend (same tools, same thinking switch), then generated greedily
by vLLM's continuous batching. Tensor and pipeline parallelism come from `model.vllm`; several nodes
need `distributed_executor_backend: "ray"` and a running Ray cluster.

`engine_kwargs`, `sampling_kwargs`, `lora_specs` and `expert_targets` are pure functions of the config
and the adapters, unit-tested without vLLM; the engine itself is exercised by `gpu` tests.
"""

from __future__ import annotations

import gc
import json
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..adapters import Variant
from ..chat import render as render_chat
from ..chat import tools as tool_schemas
from ..config import Config
from ..errors import AdapterError, BackendUnavailable, ConfigError, ModelLoadError
from ..text import strip_thinking
from .base import Generation, Request

log = logging.getLogger(__name__)

# vLLM sizes its LoRA buffers for one of these ranks; an adapter's rank is rounded up to the next one.
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


def lora_rank(ranks: Sequence[int]) -> int:
    """The smallest rank vLLM accepts that holds every adapter's rank."""
    need = max(ranks, default=8)
    for r in VLLM_LORA_RANKS:
        if r >= need:
            return r
    raise AdapterError(f"LoRA rank {need} is above vLLM's maximum ({VLLM_LORA_RANKS[-1]}); use the transformers backend")


def engine_kwargs(cfg: Config, variants: Sequence[Variant], model_path: str) -> dict[str, Any]:
    """Arguments for `vllm.LLM(...)` from our config."""
    m, v = cfg.model, cfg.model.vllm
    adapters = [x for x in variants if not x.is_base]
    kw: dict[str, Any] = {
        "model": model_path,
        "tokenizer": model_path,
        "revision": m.revision,
        "trust_remote_code": m.trust_remote_code,
        "dtype": m.dtype if m.dtype != "auto" else "auto",
        "seed": cfg.generation.seed,
        "tensor_parallel_size": v.tensor_parallel_size,
        "pipeline_parallel_size": v.pipeline_parallel_size,
        "gpu_memory_utilization": v.gpu_memory_utilization,
        "enforce_eager": v.enforce_eager,
    }
    if v.max_model_len:
        kw["max_model_len"] = v.max_model_len
    if v.distributed_executor_backend:
        kw["distributed_executor_backend"] = v.distributed_executor_backend
    if v.quantization:
        kw["quantization"] = v.quantization
    elif m.quantization == "4bit":
        kw["quantization"] = "bitsandbytes"  # in-flight NF4, like the transformers backend
    elif m.quantization == "8bit":
        raise ConfigError(
            'model.quantization "8bit" has no vLLM equivalent; use "4bit", "none", or a pre-quantized '
            'checkpoint with model.vllm.quantization ("awq", "gptq", "fp8"…)'
        )
    if adapters:
        kw.update(
            enable_lora=True,
            max_loras=len(adapters),
            max_cpu_loras=len(adapters),
            max_lora_rank=lora_rank([a.rank or 8 for a in adapters]),
        )
    return kw


def sampling_kwargs(cfg: Config) -> dict[str, Any]:
    """Arguments for `vllm.SamplingParams(...)`: greedy, our token limit, seeded."""
    return {"temperature": 0.0, "max_tokens": cfg.generation.max_new_tokens, "seed": cfg.generation.seed,
            "skip_special_tokens": True}


def lora_specs(variants: Sequence[Variant]) -> dict[str, tuple[str, int, str]]:
    """Variant name -> (lora_name, lora_int_id, lora_path); ids start at 1 (0 means "no LoRA" in vLLM)."""
    adapters = [v for v in variants if not v.is_base]
    return {v.name: (v.name, i, str(v.path)) for i, v in enumerate(adapters, 1)}


def expert_targets(adapter_config: dict[str, Any], tensor_names: Sequence[str]) -> list[str]:
    """What in this adapter modifies MoE expert weights (vLLM cannot apply a LoRA to them)."""
    found = [str(p) for p in adapter_config.get("target_parameters") or []]
    found += [n for n in tensor_names if ".experts." in n or ".experts_" in n]
    return found


class VllmBackend:
    name = "vllm"

    def __init__(self, cfg: Config, *, device: str = "auto") -> None:
        import torch

        if device == "cpu" or cfg.model.device == "cpu":
            raise BackendUnavailable('the vllm backend runs on CUDA GPUs only; use model.backend "transformers" on CPU')
        if not torch.cuda.is_available():
            raise BackendUnavailable('the vllm backend needs a CUDA GPU and torch sees none; use model.backend '
                                     '"transformers" or the openai backend against a remote vLLM server')
        self.cfg = cfg
        local = cfg.resolve(cfg.model.base)
        self.model_path = str(local) if local.is_dir() else cfg.model.base
        self.variants: list[Variant] = []
        self.tokenizer: Any = None
        self._llm: Any = None
        self._rendered: dict[str, str] = {}
        self._info: dict[str, Any] = {"device": "cuda", "gpu": torch.cuda.get_device_name(0),
                                      "tensor_parallel_size": cfg.model.vllm.tensor_parallel_size,
                                      "pipeline_parallel_size": cfg.model.vllm.pipeline_parallel_size}

    def prepare(self, variants: Sequence[Variant]) -> None:
        from transformers import AutoTokenizer

        from ..sizing import safetensors_shapes

        self.variants = list(variants)
        for v in self.variants:
            if v.is_base or v.path is None:
                continue
            ac = json.loads((Path(v.path) / "adapter_config.json").read_text(encoding="utf-8"))
            weights = Path(v.path) / "adapter_model.safetensors"
            names = list(safetensors_shapes(weights)) if weights.is_file() else []
            experts = expert_targets(ac, names)
            if experts:
                raise AdapterError(
                    f"adapter {v.path} trains MoE expert weights ({experts[0]}…), which vLLM cannot apply as a "
                    'LoRA; use model.backend "transformers", or merge the adapter into the base and serve that'
                )
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(
                self.model_path, revision=self.cfg.model.revision, trust_remote_code=self.cfg.model.trust_remote_code
            )
        except OSError as exc:
            raise ModelLoadError(f"cannot load the tokenizer of {self.cfg.model.base!r}: {str(exc).splitlines()[0]}") from None
        import vllm

        self._info["vllm"] = vllm.__version__

    def identity(self) -> dict[str, Any]:
        m = self.cfg.model
        return {"base": m.base_name or m.base, "revision": m.revision, "backend": self.name, "dtype": m.dtype,
                "quantization": m.vllm.quantization or m.quantization}

    def render(self, request: Request) -> str:
        key = json.dumps(request.messages, sort_keys=True)  # by content, like the transformers backend
        if key not in self._rendered:
            self._rendered[key] = render_chat(
                self.tokenizer, list(request.messages), tool_schemas=tool_schemas(self.cfg),
                enable_thinking=self.cfg.generation.enable_thinking,
            )
        return self._rendered[key]

    def _engine(self) -> Any:
        if self._llm is None:
            from vllm import LLM

            kw = engine_kwargs(self.cfg, self.variants, self.model_path)
            t0 = time.perf_counter()
            try:
                self._llm = LLM(**kw)
            except Exception as exc:  # vLLM raises many types (ValueError, RuntimeError, OOM…)
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ModelLoadError(f"vLLM could not start {self.cfg.model.base!r}: {first}") from None
            self._info["base_load_s"] = round(time.perf_counter() - t0, 3)
            self._info["engine"] = {k: v for k, v in kw.items() if k not in ("model", "tokenizer")}
        return self._llm

    def generate(self, variant: Variant, requests: Sequence[Request]) -> Iterator[Generation]:
        from vllm import SamplingParams
        from vllm.lora.request import LoRARequest

        llm = self._engine()
        spec = lora_specs(self.variants).get(variant.name)
        lora = LoRARequest(*spec) if spec else None
        prompts = [self.render(r) for r in requests]
        t0 = time.perf_counter()
        outputs = llm.generate(prompts, SamplingParams(**sampling_kwargs(self.cfg)), lora_request=lora, use_tqdm=False)
        per = round((time.perf_counter() - t0) / max(len(requests), 1), 3)
        for r, out in zip(requests, outputs):
            o = out.outputs[0]
            text, thinking = strip_thinking(o.text)
            yield Generation(prompt_id=r.prompt_id, variant=variant.name, response=text, tokens=len(o.token_ids),
                             latency_s=per, truncated=o.finish_reason == "length", thinking_chars=thinking,
                             batch_size=len(requests))

    def info(self) -> dict[str, Any]:
        import torch

        info = dict(self._info)
        if torch.cuda.is_available():
            info["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 1024**3, 3)
        return info

    def close(self) -> None:
        self._llm = None
        gc.collect()
        try:
            import torch

            torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001 - freeing memory must never fail a finished run
            pass
