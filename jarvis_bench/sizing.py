"""How big a model is and how much memory it needs, from its config.json alone (no weights, no torch).

`count_params` covers the decoder families this tool meets (Llama/Mistral/Qwen2/Qwen3, their MoE
variants, Mixtral): embeddings, attention, dense or expert MLPs, norms, an untied LM head. It is
checked against real models in the tests. `params_from_name` is the fallback when no config.json is
reachable ("Qwen3-30B-A3B" -> 30e9 total, 3e9 active). `estimate` turns a count into GiB for a
quantization: bitsandbytes NF4 stores 4 bits + one absmax per 64 weights (8-bit absmax + a second
level with double quantization). bitsandbytes only converts `nn.Linear` layers (`ParamCount.linear`,
checked in the tests against transformers' own `replace_with_bnb_linear`); transformers 5 stores MoE
experts as fused 3-D parameters (`ParamCount.experts`), which bitsandbytes skips (bitsandbytes#1849)
and jarvis-bench's 4-bit path quantizes too (`backends/moe_4bit.py`). Embeddings, the LM head, norms
and routers stay in the compute dtype.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GIB = 1024**3
CUDA_CONTEXT_GIB = 1.0  # CUDA context + allocator slack, measured ~0.6-1 GiB on recent drivers
CONTEXT_TOKENS = 1024  # prompt (system + 15-tool catalog + request) + answer, rounded up

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "fp32": 4, "fp16": 2, "bf16": 2}


KNOWN_CONFIGS: dict[str, dict[str, Any]] = {
    # The structure fields of the published config.json of the seed's model, for a size estimate when
    # neither the model cache nor the hub can be read (check_setup.py offline).
    "Qwen/Qwen3-30B-A3B": dict(
        model_type="qwen3_moe", hidden_size=2048, num_hidden_layers=48, num_attention_heads=32,
        num_key_value_heads=4, head_dim=128, intermediate_size=6144, moe_intermediate_size=768, num_experts=128,
        num_experts_per_tok=8, vocab_size=151936, tie_word_embeddings=False, decoder_sparse_step=1,
        mlp_only_layers=[], torch_dtype="bfloat16",
    ),
}


@dataclass(frozen=True)
class ParamCount:
    total: int
    active: int  # parameters read per token (MoE: only the routed experts)
    embeddings: int  # input embeddings + untied LM head (never quantized)
    source: str  # "config.json" or "name"
    linear: int | None = None  # weights in nn.Linear layers (what bitsandbytes quantizes); None = unknown
    experts: int = 0  # fused MoE expert weights (3-D parameters: quantized by our 4-bit path, not by 8-bit)

    @property
    def is_moe(self) -> bool:
        return self.active < self.total


def _text_config(cfg: dict[str, Any]) -> dict[str, Any]:
    inner = cfg.get("text_config")
    return {**cfg, **inner} if isinstance(inner, dict) else cfg


def num_experts(config: dict[str, Any]) -> int:
    """Routed experts per MoE layer (0 for a dense model), whatever the family calls them."""
    c = _text_config(config)
    return int(c.get("num_experts") or c.get("num_local_experts") or c.get("n_routed_experts") or 0)


def count_params(config: dict[str, Any]) -> ParamCount:
    """Parameter count of a decoder-only transformer from its config.json dict."""
    c = _text_config(config)
    h = int(c["hidden_size"])
    layers = int(c["num_hidden_layers"])
    vocab = int(c["vocab_size"])
    heads = int(c["num_attention_heads"])
    kv = int(c.get("num_key_value_heads") or heads)
    hd = int(c.get("head_dim") or h // heads)
    inter = int(c.get("intermediate_size") or 0)
    experts = num_experts(c)
    moe_inter = int(c.get("moe_intermediate_size") or inter)
    per_tok = int(c.get("num_experts_per_tok") or c.get("num_selected_experts") or 0)
    shared_inter = int(c.get("shared_expert_intermediate_size") or 0)
    sparse_step = int(c.get("decoder_sparse_step") or 1)
    dense_layers = set(c.get("mlp_only_layers") or [])
    first_dense = int(c.get("first_k_dense_replace") or 0)
    bias = bool(c.get("attention_bias") or c.get("qkv_bias") or c.get("model_type") in ("qwen2", "qwen2_moe"))

    attn = h * heads * hd + 2 * h * kv * hd + heads * hd * h
    if bias:
        attn += heads * hd + 2 * kv * hd
    if c.get("model_type", "").startswith("qwen3"):
        attn += 2 * hd  # q_norm, k_norm
    attn_linear = h * heads * hd + 2 * h * kv * hd + heads * hd * h + (heads * hd + 2 * kv * hd if bias else 0)
    norms = 2 * h
    dense_mlp = 3 * h * inter
    total = active = linear = fused = 0
    for i in range(layers):
        moe = experts > 0 and i not in dense_layers and i >= first_dense and (i + 1) % sparse_step == 0
        if moe:
            expert = 3 * h * moe_inter
            shared = 3 * h * shared_inter + (h if shared_inter else 0)
            router = h * experts
            total += attn + norms + experts * expert + shared + router
            active += attn + norms + max(per_tok, 1) * expert + shared + router
            linear += attn_linear + 3 * h * shared_inter + (h if shared_inter else 0)
            fused += experts * expert
        else:
            total += attn + norms + dense_mlp
            active += attn + norms + dense_mlp
            linear += attn_linear + dense_mlp
    tied = bool(c.get("tie_word_embeddings", False))
    embeddings = vocab * h * (1 if tied else 2)
    total += embeddings + h
    active += embeddings + h
    return ParamCount(total=total, active=active, embeddings=embeddings, source="config.json", linear=linear,
                      experts=fused)


_SIZE = re.compile(r"(?<![A-Za-z0-9.])(\d+(?:\.\d+)?)\s*([BbMm])(?![A-Za-z])")
_EXPERTS = re.compile(r"(?<![A-Za-z0-9.])(\d+)x(\d+(?:\.\d+)?)([BbMm])(?![A-Za-z])")
_ACTIVE = re.compile(r"[-_]A(\d+(?:\.\d+)?)([BbMm])(?![A-Za-z])")


def params_from_name(name: str) -> ParamCount | None:
    """'Qwen/Qwen3-30B-A3B' -> 30e9 total / 3e9 active; None when the name carries no size."""
    tail = name.rstrip("/").split("/")[-1]
    experts = _EXPERTS.search(tail)
    if experts:  # "Mixtral-8x7B": 8 experts of ~7 B (shared attention makes the real total smaller)
        n, num, unit = experts.groups()
        total = int(int(n) * float(num) * (1e9 if unit.lower() == "b" else 1e6))
        return ParamCount(total=total, active=total, embeddings=0, source="name", linear=0)
    active_m = _ACTIVE.search(tail)
    sizes = [m for m in _SIZE.finditer(tail) if not (active_m and m.start() == active_m.start() + 2)]
    if not sizes:
        return None

    def value(num: str, unit: str) -> int:
        return int(float(num) * (1e9 if unit.lower() == "b" else 1e6))

    total = value(*sizes[0].groups())
    active = value(*active_m.groups()) if active_m else total
    # Unknown layout: a dense model is nearly all Linear; an MoE is nearly all experts.
    return ParamCount(total=total, active=active, embeddings=0, source="name",
                      linear=0 if active_m else total, experts=total if active_m else 0)


def bytes_per_param(quantization: str, dtype: str, double_quant: bool = True) -> float:
    """Storage of one quantized weight: NF4 = 4 bits + absmax per 64 (fp32, or 8-bit + 2nd level with DQ)."""
    if quantization == "4bit":
        return 0.5 + (1 / 64 + 4 / (64 * 256) if double_quant else 4 / 64)
    if quantization == "8bit":
        return 1.0 + 4 / 4096  # int8 weights + one fp32 scale per row (rows ~4k wide)
    return DTYPE_BYTES.get(dtype, 2)


def kv_bytes_per_token(config: dict[str, Any] | None, dtype_bytes: int = 2) -> int | None:
    if not config:
        return None
    c = _text_config(config)
    heads = int(c["num_attention_heads"])
    kv = int(c.get("num_key_value_heads") or heads)
    hd = int(c.get("head_dim") or int(c["hidden_size"]) // heads)
    return 2 * int(c["num_hidden_layers"]) * kv * hd * dtype_bytes


def quantized_params(params: ParamCount, quantization: str) -> int:
    """Weights stored quantized: the nn.Linear layers, plus the fused MoE experts in 4-bit."""
    if quantization == "none":
        return 0
    linear = params.linear if params.linear is not None else params.total - params.embeddings
    return linear + (params.experts if quantization == "4bit" else 0)


@dataclass(frozen=True)
class MemoryEstimate:
    weights_gib: float
    unquantized_gib: float  # part of weights_gib that bitsandbytes leaves in the compute dtype
    kv_gib_batch1: float
    kv_gib_full: float
    overhead_gib: float
    batch: int
    experts_work_gib: float = 0.0  # a 4-bit MoE layer's experts dequantized at once by the grouped forward

    @property
    def minimum_gib(self) -> float:
        """Enough to run with batch 1 (the batch halves down to 1 on out-of-memory)."""
        return self.weights_gib + self.kv_gib_batch1 + self.overhead_gib + self.experts_work_gib

    @property
    def comfortable_gib(self) -> float:
        """Enough to run the whole batch at once."""
        return self.weights_gib + self.kv_gib_full + self.overhead_gib + self.experts_work_gib


def estimate(
    params: ParamCount,
    *,
    quantization: str,
    dtype: str,
    double_quant: bool = True,
    config: dict[str, Any] | None = None,
    batch: int = 1,
    cuda: bool = True,
) -> MemoryEstimate:
    """Memory to load and run the model: weights (+ never-quantized embeddings) + KV cache + overhead."""
    compute_bytes = DTYPE_BYTES.get(dtype, 2)
    quantized = quantized_params(params, quantization)
    weights = quantized * bytes_per_param(quantization, dtype, double_quant) + (params.total - quantized) * compute_bytes
    per_token = kv_bytes_per_token(config, compute_bytes)
    if per_token is None:  # no config: ~30 KB per billion active parameters (GQA models; errs high)
        per_token = max(int(params.active * 3e-5), 32 * 1024)
    kv1 = per_token * CONTEXT_TOKENS / GIB
    overhead = CUDA_CONTEXT_GIB if cuda else 0.5
    # the grouped experts forward (the default on CUDA) dequantizes one layer's gate_up stack (2/3 of its
    # expert weights) in the compute dtype at once: from 16 decoding prompts on, every expert of the layer
    layers = int(_text_config(config or {}).get("num_hidden_layers") or 0)
    work = params.experts * 2 / 3 / layers * compute_bytes if quantization == "4bit" and cuda and layers else 0.0
    return MemoryEstimate(
        experts_work_gib=work / GIB,
        weights_gib=weights / GIB,
        unquantized_gib=0.0 if quantization == "none" else (params.total - quantized) * compute_bytes / GIB,
        kv_gib_batch1=kv1,
        kv_gib_full=kv1 * max(batch, 1),
        overhead_gib=overhead,
        batch=max(batch, 1),
    )


def decode_bound(params: ParamCount, *, quantization: str, dtype: str, bandwidth_gbs: float,
                 double_quant: bool = True) -> tuple[float, float]:
    """(GiB of weights read per decode step, upper bound on decode steps per second).

    Decoding is memory-bound: each step reads every active weight once (MoE: the routed experts only,
    approximated as the active share of the stored weights), whatever the batch, so
    steps/s <= bandwidth / bytes read, and tokens/s <= rows in the batch x that."""
    est = estimate(params, quantization=quantization, dtype=dtype, double_quant=double_quant)
    read = est.weights_gib * GIB * params.active / max(params.total, 1)
    return read / GIB, bandwidth_gbs * 1e9 / read


def ram_gib() -> tuple[float, float]:
    """(available, total) system memory in GiB."""
    import psutil

    vm = psutil.virtual_memory()
    return vm.available / GIB, vm.total / GIB


def safetensors_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor name -> shape from a .safetensors header (reads a few KB, never the weights)."""
    with path.open("rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > 100 * 1024 * 1024:
            raise ValueError("header too large")
        header = json.loads(f.read(n))
    return {k: v["shape"] for k, v in header.items() if k != "__metadata__"}


def model_dims(config: dict[str, Any]) -> set[int]:
    """Every input/output width a linear layer of this model can have (what a LoRA must match)."""
    c = _text_config(config)
    h = int(c["hidden_size"])
    heads = int(c["num_attention_heads"])
    kv = int(c.get("num_key_value_heads") or heads)
    hd = int(c.get("head_dim") or h // heads)
    dims = {h, heads * hd, kv * hd, int(c["vocab_size"])}
    for key in ("intermediate_size", "moe_intermediate_size", "shared_expert_intermediate_size"):
        if c.get(key):
            dims.update({int(c[key]), 2 * int(c[key])})  # 2x: fused gate_up_proj
    experts = c.get("num_experts") or c.get("num_local_experts")
    if experts:
        dims.add(int(experts))
    return dims


_LAYER = re.compile(r"\.layers\.(\d+)\.")


def lora_mismatch(shapes: dict[str, list[int]], config: dict[str, Any]) -> str | None:
    """Why these LoRA tensors cannot fit this base model, or None when they can."""
    dims = model_dims(config)
    layers = int(_text_config(config)["num_hidden_layers"])
    for name, shape in sorted(shapes.items()):
        if "lora_A" in name and len(shape) == 2 and shape[1] not in dims:
            return f"{name} reads width {shape[1]}, but the base's layers are {sorted(dims)} wide"
        if "lora_B" in name and len(shape) == 2 and shape[0] not in dims:
            return f"{name} writes width {shape[0]}, but the base's layers are {sorted(dims)} wide"
        m = _LAYER.search(name)
        if m and int(m.group(1)) >= layers:
            return f"{name} targets layer {m.group(1)}, but the base has {layers} layers"
    return None
