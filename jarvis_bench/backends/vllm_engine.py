"""vllm backend (optional extra `vllm`, Linux + CUDA): one engine, every adapter as a LoRARequest.

Written against vLLM 0.33 (the version in uv.lock); file references below are to its sources.

- The base is loaded once with `enable_lora=True`; base answers are requests without a LoRA, each
  adapter's answers carry its `LoRARequest`. One adapter runs at a time, so the engine gets one GPU LoRA
  slot (`max_loras=1`) and keeps every adapter on the CPU side (`max_cpu_loras`).
- Prompts are rendered and tokenized by the same code as the transformers backend (same chat template,
  tools, thinking switch, no BOS added on top of the template's) and passed as token ids, so both
  backends run the same tokens; then generated greedily by vLLM's continuous batching.
- MoE experts take LoRA natively (fused-MoE LoRA layers): transformers-4 per-expert adapters as they
  are, transformers-5 / peft `target_parameters` adapters with `enable_mixed_moe_lora_format` and
  `is_3d_lora_weight`. Not with bitsandbytes: its MoE layer (vllm-bnb-plugin) has no LoRA kernel, so a
  4-bit MoE base with adapters is refused with what works instead.
- `model.quantization "4bit"` is vLLM's in-flight bitsandbytes NF4, which since vLLM 0.33 lives in the
  `vllm-bnb-plugin` package (in our `vllm` extra).
- Tensor and pipeline parallelism come from `model.vllm`; several nodes need
  `distributed_executor_backend: "ray"` (ray is in the extra) and a running Ray cluster.

`engine_kwargs`, `sampling_kwargs`, `lora_specs`, `adapter_layout` and `engine_error` are pure functions
of the config and the adapters, unit-tested without vLLM; the engine itself is exercised by `gpu` tests.
"""

from __future__ import annotations

import gc
import importlib.metadata as md
import importlib.util
import json
import logging
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..adapters import Variant
from ..chat import decoder as answer_decoder
from ..chat import render as render_chat
from ..chat import token_ids as chat_token_ids
from ..chat import tools as tool_schemas
from ..config import Config
from ..errors import AdapterError, BackendUnavailable, ConfigError, JarvisBenchError, ModelLoadError
from ..text import strip_thinking
from .base import Backend, Generation, Request

if TYPE_CHECKING:
    from ..checks import Check

log = logging.getLogger(__name__)

# vLLM sizes its LoRA buffers for one of these ranks (vllm 0.33 config/lora.py `MaxLoRARanks`); an
# adapter's rank is rounded up to the next one.
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)

BNB_MOE_LORA_WHY = (
    "vLLM cannot run LoRA adapters on a MoE model quantized by bitsandbytes (model.quantization \"4bit\"): its "
    "bitsandbytes MoE layer has no LoRA kernel (vllm#29138)"
)
BNB_MOE_LORA = (
    f"{BNB_MOE_LORA_WHY}; on the vllm backend use model.quantization \"none\" (bf16), or a pre-quantized "
    "AWQ/GPTQ/compressed-tensors checkpoint with model.vllm.quantization; or keep 4-bit with model.backend "
    "\"transformers\""
)
BNB_PLUGIN_WHY = (
    'model.quantization "4bit" on the vllm backend needs the vllm-bnb-plugin package (vLLM moved '
    "bitsandbytes out of its core)"
)
BNB_PLUGIN = f"{BNB_PLUGIN_WHY}: run `uv sync --extra vllm`"
_PER_EXPERT = re.compile(r"\.layers\.(\d+)\.mlp\.experts\.(\d+)\.(gate_proj|up_proj|down_proj)\.lora_A\.")
_FUSED = re.compile(r"\.layers\.(\d+)\.mlp\.experts\.(base_layer\.)?lora_A\.")


def lora_rank(ranks: Sequence[int]) -> int:
    """The smallest rank vLLM accepts that holds every adapter's rank."""
    need = max(ranks, default=8)
    for r in VLLM_LORA_RANKS:
        if r >= need:
            return r
    raise AdapterError(f"LoRA rank {need} is above vLLM's maximum ({VLLM_LORA_RANKS[-1]}); use the transformers backend")


@dataclass(frozen=True)
class AdapterLayout:
    """What vLLM needs to know about one adapter's files."""

    max_rank: int  # r, or the largest rank_pattern value (vLLM checks every one against max_lora_rank)
    experts: str = "none"  # "none", "per_expert" (experts.3.gate_proj…), "fused" (peft target_parameters)
    problem: str | None = None  # why vLLM cannot apply it, or None


def adapter_layout(adapter_config: dict[str, Any], shapes: dict[str, list[int]], num_experts: int) -> AdapterLayout:
    """Read an adapter the way vLLM 0.33 will (lora/lora_weights.py `pack_moe`, lora/model_manager.py
    `_convert_3d_to_2d_moe_lora`, lora/peft_helper.py): its largest rank, its MoE expert layout, and
    what would make the engine fail when the adapter is first used."""
    ranks = [int(adapter_config.get("r") or 8)]
    ranks += [int(v) for v in (adapter_config.get("rank_pattern") or {}).values() if isinstance(v, int)]
    max_rank = max(ranks)
    per_expert: dict[int, dict[str, dict[int, int]]] = {}  # layer -> projection -> expert -> rank
    fused: dict[int, set[str]] = {}  # layer -> {"gate_up_proj", "down_proj"}
    for name, shape in shapes.items():
        if m := _PER_EXPERT.search(name):
            layer, expert, proj = int(m[1]), int(m[2]), m[3]
            per_expert.setdefault(layer, {}).setdefault(proj, {})[expert] = shape[0]
        elif m := _FUSED.search(name):  # peft nests gate_up_proj inside down_proj: it is the base_layer
            fused.setdefault(int(m[1]), set()).add("gate_up_proj" if m[2] else "down_proj")
    params = [str(p).rsplit(".", 1)[-1] for p in adapter_config.get("target_parameters") or []]
    if per_expert:
        for layer, projs in sorted(per_expert.items()):
            for proj in ("gate_proj", "up_proj", "down_proj"):
                have = projs.get(proj, {})
                missing = [e for e in range(num_experts or max(have, default=-1) + 1) if e not in have]
                if missing:
                    return AdapterLayout(max_rank, "per_expert", (
                        f"layer {layer} has no LoRA on {proj} of expert {missing[0]} ({len(missing)} missing); "
                        "vLLM needs gate_proj, up_proj and down_proj on every expert"))
                if len(set(have.values())) > 1:
                    return AdapterLayout(max_rank, "per_expert", (
                        f"the experts of layer {layer} have different LoRA ranks on {proj}, which vLLM refuses"))
        return AdapterLayout(max_rank, "per_expert")
    if fused or params:
        found = set().union(*fused.values()) if fused else set(params)
        if not {"gate_up_proj", "down_proj"} <= found:
            only = ", ".join(sorted(found)) or "neither"
            return AdapterLayout(max_rank, "fused", (
                f"its fused-expert LoRA trains {only}; vLLM applies fused-expert LoRA only when "
                "mlp.experts.gate_up_proj and mlp.experts.down_proj are both trained"))
        return AdapterLayout(max_rank, "fused")
    return AdapterLayout(max_rank)


def read_layout(folder: Path, num_experts: int) -> AdapterLayout:
    """adapter_layout() of an adapter folder (its config and its safetensors header; a .bin adapter has
    no header to read, so only its config counts)."""
    from ..sizing import safetensors_shapes

    ac = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    weights = folder / "adapter_model.safetensors"
    return adapter_layout(ac, safetensors_shapes(weights) if weights.is_file() else {}, num_experts)


def engine_kwargs(cfg: Config, variants: Sequence[Variant], model_path: str, *, moe: bool = False,
                  layouts: dict[str, AdapterLayout] | None = None, prequantized: bool = False) -> dict[str, Any]:
    """Arguments for `vllm.LLM(...)` from our config. `moe`: the base is a mixture of experts; `layouts`:
    adapter_layout() of each adapter variant, by name (default: rank r, no experts); `prequantized`: the
    checkpoint's config.json has a quantization_config, which vLLM follows (asking it for bitsandbytes
    on an AWQ checkpoint is an error: vllm 0.33 config/model.py `_verify_quantization`)."""
    m, v = cfg.model, cfg.model.vllm
    adapters = [x for x in variants if not x.is_base]
    layouts = layouts or {}
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
    elif prequantized:
        pass  # the checkpoint's own quantization, as the transformers backend does
    elif m.quantization == "4bit":
        if moe and adapters:
            raise ConfigError(BNB_MOE_LORA)
        kw["quantization"] = "bitsandbytes"  # in-flight NF4 (+ double quant, always), like the transformers backend
    elif m.quantization == "8bit":
        raise ConfigError(
            'model.quantization "8bit" has no vLLM equivalent; use "4bit", "none", or a pre-quantized '
            'checkpoint with model.vllm.quantization ("awq", "gptq", "fp8"…)'
        )
    if adapters:
        found = [layouts.get(a.name) or AdapterLayout(a.rank or 8) for a in adapters]
        kw.update(
            enable_lora=True,
            # one adapter runs at a time (one generate() per variant): one GPU slot, every adapter kept on
            # the CPU side. Each slot reserves LoRA buffers in every wrapped layer (GBs for MoE experts).
            max_loras=1,
            max_cpu_loras=len(adapters),
            max_lora_rank=lora_rank([x.max_rank for x in found]),
        )
        if any(x.experts == "fused" for x in found):  # transformers-5 / peft target_parameters adapters
            kw["enable_mixed_moe_lora_format"] = True
    return kw


def sampling_kwargs(cfg: Config) -> dict[str, Any]:
    """Arguments for `vllm.SamplingParams(...)`: greedy, our token limit, seeded."""
    return {"temperature": 0.0, "max_tokens": cfg.generation.max_new_tokens, "seed": cfg.generation.seed,
            "skip_special_tokens": True}


def lora_specs(variants: Sequence[Variant], layouts: dict[str, AdapterLayout] | None = None
               ) -> dict[str, dict[str, Any]]:
    """Variant name -> `LoRARequest` keyword arguments; ids start at 1 (0 means "no LoRA" in vLLM), fused
    expert adapters are flagged `is_3d_lora_weight` (vllm 0.33 lora/request.py)."""
    adapters = [v for v in variants if not v.is_base]
    layouts = layouts or {}
    return {v.name: {"lora_name": v.name, "lora_int_id": i, "lora_path": str(v.path),
                     "is_3d_lora_weight": getattr(layouts.get(v.name), "experts", "none") == "fused"}
            for i, v in enumerate(adapters, 1)}


def engine_error(exc: BaseException) -> str:
    """One line saying why vLLM did not start. Config errors come wrapped in pydantic's ValidationError
    ("1 validation error for ModelConfig" on the first line); failures inside the engine process only
    say "Engine core initialization failed", the cause being in vLLM's log above."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError) and exc.errors():
        msg = str(exc.errors()[0].get("msg", ""))
        return msg.removeprefix("Value error, ").strip().splitlines()[0] if msg.strip() else type(exc).__name__
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    if "Engine core initialization failed" in first:
        return "its engine process failed while starting (vLLM's log above says why)"
    return first


class VllmBackend(Backend):
    name = "vllm"

    @classmethod
    def check_requirements(cls) -> None:
        if importlib.util.find_spec("vllm") is None:
            raise BackendUnavailable(
                'the vllm backend needs the `vllm` extra: run `uv sync --extra vllm` (Linux + CUDA GPU), '
                'or use model.backend "transformers"'
            )

    @classmethod
    def early_checks(cls, cfg: Config) -> Iterator[Check]:
        """A CUDA GPU, said before the model checks (nothing else matters without one)."""
        from ..checks import Check, gpus

        if not gpus():
            yield Check("FAIL", "backend", "the vllm backend needs a CUDA GPU and torch sees none",
                        'use model.backend "transformers", or "openai" against a vLLM server elsewhere')

    @classmethod
    def setup_checks(cls, cfg: Config, source: Any | None) -> Iterator[Check]:
        """What this backend would refuse at engine start or at an adapter's first request."""
        from .. import sizing
        from ..adapters import discover
        from ..checks import Check

        src = source

        m = cfg.model
        try:
            version = md.version("vllm")
        except md.PackageNotFoundError:
            version = "?"
        bnb = m.quantization == "4bit" and not m.vllm.quantization and not (src.config or {}).get("quantization_config")
        if bnb and importlib.util.find_spec("vllm_bnb_plugin") is None:
            yield Check("FAIL", "vllm", BNB_PLUGIN_WHY, "run `uv sync --extra vllm`")
        experts = sizing.num_experts(src.config or {})
        try:
            adapters = [v for v in discover(cfg, digest=False) if not v.is_base]
        except JarvisBenchError:
            return  # check_adapters says why
        if bnb and experts and adapters:
            yield Check("FAIL", "vllm", BNB_MOE_LORA_WHY,
                        'model.quantization "none" (bf16) or a pre-quantized AWQ/GPTQ checkpoint with '
                        'model.vllm.quantization; or model.backend "transformers" for 4-bit')
            return
        for v in adapters:
            layout = read_layout(v.path, experts)
            if layout.problem:
                yield Check("FAIL", "vllm", f"{v.name}: {layout.problem}", 'use model.backend "transformers"')
                return
        quant = m.vllm.quantization or ("bitsandbytes NF4 (vllm-bnb-plugin)" if bnb else m.quantization)
        lora = f", {len(adapters)} adapter(s) through one LoRA slot" if adapters else ""
        yield Check("OK", "vllm", f"vllm {version}: {quant}{lora}")

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
        self.layouts: dict[str, AdapterLayout] = {}
        self.moe = False
        self.prequantized = False
        self._context: int | None = None
        self._devices = cfg.model.vllm.tensor_parallel_size * cfg.model.vllm.pipeline_parallel_size
        self.tokenizer: Any = None
        self._llm: Any = None
        self._token_ids: dict[str, list[int]] = {}
        self._used_before: list[float] = []
        self._info: dict[str, Any] = {"device": "cuda", "gpu": torch.cuda.get_device_name(0),
                                      "gpu_count": torch.cuda.device_count(), "dtype": cfg.model.dtype,
                                      "quantization": cfg.model.vllm.quantization or cfg.model.quantization,
                                      "tensor_parallel_size": cfg.model.vllm.tensor_parallel_size,
                                      "pipeline_parallel_size": cfg.model.vllm.pipeline_parallel_size}

    def prepare(self, variants: Sequence[Variant]) -> None:
        """Read the model's config and every adapter, and refuse here (before any answer) what vLLM would
        refuse at engine start or at an adapter's first request."""
        from transformers import AutoConfig, AutoTokenizer

        from .. import sizing

        m = self.cfg.model
        self.variants = list(variants)
        try:
            model_config = AutoConfig.from_pretrained(self.model_path, revision=m.revision,
                                                      trust_remote_code=m.trust_remote_code).to_dict()
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot read the config of {m.base!r}: {str(exc).splitlines()[0]}") from None
        from .base import context_of

        self._context = m.vllm.max_model_len or context_of(model_config)
        experts = sizing.num_experts(model_config)
        self.moe = experts > 0
        qc = model_config.get("quantization_config")
        self.prequantized = bool(qc)
        if isinstance(qc, dict):
            self._info["quantization"] = str(qc.get("quant_method") or "checkpoint")
        for v in self.variants:
            if v.is_base or v.path is None:
                continue
            layout = read_layout(Path(v.path), experts)
            if layout.problem:
                raise AdapterError(f"adapter {v.path}: {layout.problem}; use model.backend \"transformers\"")
            self.layouts[v.name] = layout
        kw = self.engine_kwargs()
        if kw.get("quantization") == "bitsandbytes":
            if importlib.util.find_spec("vllm_bnb_plugin") is None:
                raise BackendUnavailable(BNB_PLUGIN)
            if not m.double_quant:
                log.warning("vLLM's bitsandbytes always double-quantizes: model.double_quant false is ignored.")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_path, revision=m.revision,
                                                           trust_remote_code=m.trust_remote_code)
        except OSError as exc:
            raise ModelLoadError(f"cannot load the tokenizer of {m.base!r}: {str(exc).splitlines()[0]}") from None

    def engine_kwargs(self) -> dict[str, Any]:
        return engine_kwargs(self.cfg, self.variants, self.model_path, moe=self.moe, layouts=self.layouts,
                             prequantized=self.prequantized)

    def identity(self) -> dict[str, Any]:
        m = self.cfg.model
        return {"base": m.base_name or m.base, "revision": m.revision, "backend": self.name, "dtype": m.dtype,
                "quantization": m.vllm.quantization or m.quantization}

    def render(self, request: Request) -> str:
        return render_chat(self.tokenizer, list(request.messages), tool_schemas=tool_schemas(self.cfg),
                           enable_thinking=self.cfg.generation.enable_thinking)

    def token_ids(self, request: Request) -> list[int]:
        """The prompt's token ids, rendered and tokenized exactly as the transformers backend does (no BOS
        added on top of the template's), cached by content."""
        key = json.dumps(request.messages, sort_keys=True)
        if key not in self._token_ids:
            self._token_ids[key] = chat_token_ids(self.tokenizer, self.render(request))
        return self._token_ids[key]

    def too_long(self, requests: Sequence[Request], max_new_tokens: int) -> list[dict[str, Any]]:
        """vLLM refuses a prompt longer than max_model_len for the whole batch (vllm 0.33 renderers/params.py)."""
        from .base import overflow

        source = "model.vllm.max_model_len" if self.cfg.model.vllm.max_model_len else "config.json max_position_embeddings"
        return overflow({r.prompt_id: len(self.token_ids(r)) for r in requests}, self._context, max_new_tokens, source)

    def prompts(self, requests: Sequence[Request]) -> list[dict[str, Any]]:
        """vLLM `TokensPrompt`s (a TypedDict: vllm 0.33 inputs/llm.py): token ids are not re-tokenized,
        where a text prompt would be tokenized with add_special_tokens=True (renderers/base.py)."""
        return [{"prompt_token_ids": self.token_ids(r)} for r in requests]

    def _engine(self) -> Any:
        if self._llm is None:
            import vllm
            from vllm import LLM

            from .. import gpu

            kw = self.engine_kwargs()
            self._used_before = gpu.used(self._devices)
            t0 = time.perf_counter()
            try:
                self._llm = LLM(**kw)
            except Exception as exc:  # vLLM raises many types (ValidationError, RuntimeError, OOM…)
                raise ModelLoadError(f"vLLM could not start {self.cfg.model.base!r}: {engine_error(exc)}") from None
            self._info["vllm"] = vllm.__version__
            try:  # what the engine resolved ("auto" -> the checkpoint's dtype), e.g. torch.bfloat16
                self._info["dtype"] = str(self._llm.llm_engine.model_config.dtype).removeprefix("torch.")
            except AttributeError:
                pass
            self._info["base_load_s"] = round(time.perf_counter() - t0, 3)
            self._info["engine"] = {k: v for k, v in kw.items() if k not in ("model", "tokenizer")}
        return self._llm

    def generate(self, variant: Variant, requests: Sequence[Request]) -> Iterator[Generation]:
        from vllm import SamplingParams
        from vllm.lora.request import LoRARequest

        llm = self._engine()
        spec = lora_specs(self.variants, self.layouts).get(variant.name)
        lora = LoRARequest(**spec) if spec else None
        t0 = time.perf_counter()
        outputs = llm.generate(self.prompts(requests), SamplingParams(**sampling_kwargs(self.cfg)),
                               lora_request=lora, use_tqdm=False)
        per = round((time.perf_counter() - t0) / max(len(requests), 1), 3)
        text_of = answer_decoder(self.tokenizer)  # vLLM's text would have lost [TOOL_CALLS], [THINK], …
        for r, out in zip(requests, outputs):
            o = out.outputs[0]
            text, thinking = strip_thinking(text_of(o.token_ids))
            yield Generation(prompt_id=r.prompt_id, variant=variant.name, response=text, tokens=len(o.token_ids),
                             latency_s=per, truncated=o.finish_reason == "length", thinking_chars=thinking,
                             batch_size=len(requests))

    def info(self) -> dict[str, Any]:
        """The engine runs in other processes (vLLM's engine core and workers), where this process's
        allocator sees nothing: its memory is what the driver reports in use on each GPU now, less what
        was in use before it started (weights, CUDA graphs and the KV cache vLLM reserves up front)."""
        from .. import gpu

        info = dict(self._info)
        if self._llm is not None and self._used_before:
            now = gpu.used(self._devices)
            info.update(gpu.memory_info([max(a - b, 0.0) for a, b in zip(now, self._used_before)],
                                        "engine_gpu_memory_gib"))
        return info

    def close(self) -> None:
        llm, self._llm = self._llm, None
        try:  # vLLM 0.33's LLM has no shutdown(); its engine-core client has
            llm.llm_engine.engine_core.shutdown()
        except Exception:  # noqa: BLE001 - stopping the engine must never fail a finished run
            pass
        del llm
        gc.collect()
        try:
            import torch

            torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001 - freeing memory must never fail a finished run
            pass
