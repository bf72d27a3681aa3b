"""Mixture-of-experts models in 4-bit: fused experts quantized while loading, our experts forward, expert LoRA.

transformers 5 stores a MoE layer's experts as fused 3-D parameters (`gate_up_proj` [E, 2I, H],
`down_proj` [E, H, I]); bitsandbytes only quantizes `nn.Linear`, so a "4-bit" Qwen3-30B-A3B keeps 29 of
its 30.5 B parameters in bf16. This module, imported only when such a model is loaded, closes the gap
with the libraries' own extension points — nothing is patched:

- `MoeBnb4BitQuantizer` (registered with transformers under `QUANT_METHOD`) is the bitsandbytes 4-bit
  quantizer plus the experts: after transformers has merged a checkpoint's per-expert tensors into the
  fused stack, each expert is quantized to NF4 (double quant optional) in the loading pass, so the
  full-precision stack of one layer at most is ever in memory. Each expert is quantized on its own, so
  one expert can be dequantized without the others.
- `experts_forward` (registered as the experts implementation `IMPLEMENTATION`) runs the routed experts
  only, dequantizing each routed expert's slice once per forward — never a whole stack per routed expert —
  and adds the active adapter's expert LoRA there.
- the expert LoRA functions read the expert part of a LoRA adapter — transformers-4 per-expert layout
  (`…mlp.experts.3.gate_proj.lora_A.weight`) or peft `target_parameters` layout
  (`…mlp.experts.lora_A.weight`) — and attaches it to the experts modules by adapter name; the rest of the
  adapter goes through peft as usual, except LoRA on dense MLP projections, which peft would move onto
  the experts: a forward hook adds it. Dropout is ignored: it does nothing at inference. An expert weight
  that finds no experts module is an error, never a warning.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import AdapterError, ModelLoadError

log = logging.getLogger(__name__)

QUANT_METHOD = "jarvis_bnb_4bit_moe"
LOAD_ERRORS: list[str] = []  # what went wrong inside our quantize op during the last load
IMPLEMENTATION = "jarvis_experts"
EXPERT_PARAMS = ("gate_up_proj", "down_proj")
BLOCKSIZE = 64  # bitsandbytes' Linear4bit default


# ----------------------------------------------------------------------------- which modules


def is_experts(module: nn.Module) -> bool:
    """A fused-experts module (one decorated with transformers' `use_experts_implementation`)."""
    return hasattr(module, "is_concatenated") and hasattr(module, "has_gate") and all(
        isinstance(getattr(module, p, None), torch.Tensor) for p in EXPERT_PARAMS)


def check_layout(module: nn.Module, name: str = "") -> None:
    """Our forward runs the layout of Qwen3-MoE, Qwen2-MoE, Mixtral, OLMoE…: [gate; up] concatenated,
    weights (E, out, in), no bias, no post-expert norm."""
    odd = [k for k, bad in (("transposed weights", getattr(module, "is_transposed", False)),
                            ("expert biases", getattr(module, "has_bias", False)),
                            ("no gate", not getattr(module, "has_gate", True)),
                            ("interleaved gate/up", not getattr(module, "is_concatenated", True)),
                            ("post-expert norm", getattr(module, "has_post_expert_norm", False))) if bad]
    if odd:
        raise ModelLoadError(
            f"the experts of {name or type(module).__name__} have a layout jarvis-bench cannot run in 4-bit "
            f"({', '.join(odd)}); set model.quantization to \"none\" or use the vllm backend")


def experts_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    for name, module in model.named_modules():
        if is_experts(module):
            yield name, module


# ----------------------------------------------------------------------------- 4-bit storage of one stack


@dataclass
class Quantized:
    """One expert stack in NF4, expert by expert: what `dequantize(e)` needs, as tensors that follow the
    module across devices (registered as buffers on it, see `store`)."""

    packed: torch.Tensor  # uint8 (E, bytes)
    absmax: torch.Tensor  # (E, blocks): uint8 with double quant, else float32
    code: torch.Tensor  # the NF4 table (16)
    offset: torch.Tensor | None  # (E,) double quant only
    absmax2: torch.Tensor | None  # (E, blocks2) double quant only
    code2: torch.Tensor | None  # (256) double quant only
    shape: tuple[int, int]
    dtype: torch.dtype
    blocksize2: int | None


def quantize_stack(stack: torch.Tensor, *, double_quant: bool, dtype: torch.dtype) -> Quantized:
    """NF4 of each expert of a (E, out, in) stack, on the stack's device (CUDA or CPU)."""
    import bitsandbytes.functional as bnbf

    packed, absmax, offsets, absmax2 = [], [], [], []
    qs = None
    for e in range(stack.shape[0]):
        q, qs = bnbf.quantize_4bit(stack[e].contiguous(), blocksize=BLOCKSIZE, compress_statistics=double_quant,
                                   quant_type="nf4")
        packed.append(q.view(-1))
        absmax.append(qs.absmax)
        if double_quant:
            offsets.append(qs.offset.reshape(()))
            absmax2.append(qs.state2.absmax)
    assert qs is not None
    return Quantized(
        packed=torch.stack(packed), absmax=torch.stack(absmax), code=qs.code,
        offset=torch.stack(offsets).float() if double_quant else None,
        absmax2=torch.stack(absmax2) if double_quant else None,
        code2=qs.state2.code if double_quant else None,
        shape=(stack.shape[1], stack.shape[2]), dtype=dtype,
        blocksize2=qs.state2.blocksize if double_quant else None,
    )


_BUFFERS = ("absmax", "code", "offset", "absmax2", "code2")


def store(module: nn.Module, name: str, q: Quantized) -> torch.Tensor:
    """Keep the quantization state on the module (buffers, so `.to()` and device maps move them);
    return the packed bytes, which replace the parameter. Persistent buffers: transformers re-creates
    every non-persistent buffer empty after loading."""
    for b in _BUFFERS:
        t = getattr(q, b)
        if t is not None:
            t = t.clone()  # the code tables are bitsandbytes' shared cache: never alias them
            t._is_hf_initialized = True
            module.register_buffer(f"{name}_{b}", t, persistent=True)
    meta = dict(getattr(module, "_jarvis_nf4", {}))
    meta[name] = {"shape": q.shape, "dtype": q.dtype, "blocksize2": q.blocksize2}
    module._jarvis_nf4 = meta
    return q.packed


def is_quantized(module: nn.Module, name: str) -> bool:
    return name in getattr(module, "_jarvis_nf4", {})


def expert_weight(module: nn.Module, name: str, e: int) -> torch.Tensor:
    """Expert e's (out, in) weight in the compute dtype: dequantized on the fly if stored in 4-bit."""
    param = getattr(module, name)
    if not is_quantized(module, name):
        return param[e]
    import bitsandbytes.functional as bnbf

    meta = module._jarvis_nf4[name]
    state2 = None
    offset = None
    if meta["blocksize2"] is not None:
        state2 = bnbf.QuantState(absmax=getattr(module, f"{name}_absmax2")[e], code=getattr(module, f"{name}_code2"),
                                 blocksize=meta["blocksize2"], dtype=torch.float32)
        offset = getattr(module, f"{name}_offset")[e]
    qs = bnbf.QuantState(absmax=getattr(module, f"{name}_absmax")[e], shape=torch.Size(meta["shape"]),
                         code=getattr(module, f"{name}_code"), blocksize=BLOCKSIZE, quant_type="nf4",
                         dtype=meta["dtype"], offset=offset, state2=state2)
    return bnbf.dequantize_4bit(param[e], qs)


# ----------------------------------------------------------------------------- the forward


def experts_forward(self: nn.Module, hidden_states: torch.Tensor, top_k_index: torch.Tensor,
                    top_k_weights: torch.Tensor) -> torch.Tensor:
    """transformers' eager experts loop (same operations, same order: bit-identical on full-precision
    weights), with each routed expert's weights dequantized once and the active adapter's LoRA added."""
    final = torch.zeros_like(hidden_states)
    lora = getattr(self, "_jarvis_lora", {}).get(getattr(self, "_jarvis_active", None))
    with torch.no_grad():
        mask = nn.functional.one_hot(top_k_index, num_classes=self.num_experts + 1).permute(2, 1, 0)
        hit = torch.greater(mask.sum(dim=(-1, -2)), 0).nonzero()
    for e in hit.flatten().tolist():
        if e == self.num_experts:
            continue
        top_k_pos, token_idx = torch.where(mask[e])
        x = hidden_states[token_idx]
        gate_up = nn.functional.linear(x, expert_weight(self, "gate_up_proj", e))
        if lora is not None and "gate_up_proj" in lora:  # in float32, as peft computes LoRA, then cast
            a, b = lora["gate_up_proj"]
            gate_up = gate_up + ((x.float() @ a[e].T) @ b[e].T).to(gate_up.dtype)
        h = self._apply_gate(gate_up)
        out = nn.functional.linear(h, expert_weight(self, "down_proj", e))
        if lora is not None and "down_proj" in lora:
            a, b = lora["down_proj"]
            out = out + ((h.float() @ a[e].T) @ b[e].T).to(out.dtype)
        out = out * top_k_weights[token_idx, top_k_pos, None]
        final.index_add_(0, token_idx, out.to(final.dtype))
    return final


# ----------------------------------------------------------------------------- the quantizer


@functools.cache
def register() -> None:
    """Make our quantizer and experts forward known to transformers (once, when a MoE model is loaded)."""
    from transformers import BitsAndBytesConfig
    from transformers.integrations.bitsandbytes import Bnb4bitQuantize
    from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS
    from transformers.quantizers import register_quantization_config, register_quantizer
    from transformers.quantizers.quantizer_bnb_4bit import Bnb4BitHfQuantizer
    from transformers.quantizers.quantizers_utils import get_module_from_name, should_convert_module

    ALL_EXPERTS_FUNCTIONS.register(IMPLEMENTATION, experts_forward)

    @register_quantization_config(QUANT_METHOD)
    class MoeBnb4BitConfig(BitsAndBytesConfig):
        """BitsAndBytesConfig (4-bit) whose quantizer also quantizes fused MoE experts."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.pop("quant_method", None)
            super().__init__(*args, **kwargs)
            self.quant_method = QUANT_METHOD

        def to_dict(self) -> dict[str, Any]:
            return {**super().to_dict(), "quant_method": QUANT_METHOD}

    class QuantizeExperts(Bnb4bitQuantize):
        def convert(self, input_dict: dict[str, Any], full_layer_name: str | None = None,
                    model: nn.Module | None = None, **kwargs: Any) -> dict[str, Any]:
            out: dict[str, Any] = {}
            rest: dict[str, Any] = {}
            for name, value in input_dict.items():
                value = value[0] if isinstance(value, list) else value
                module, pname = get_module_from_name(model, name)
                if is_experts(module) and pname in EXPERT_PARAMS:
                    cfg = self.hf_quantizer.quantization_config
                    try:
                        q = quantize_stack(value, double_quant=cfg.bnb_4bit_use_double_quant,
                                           dtype=cfg.bnb_4bit_compute_dtype or value.dtype)
                    except torch.OutOfMemoryError:
                        # transformers logs conversion errors and fails later with a generic message
                        LOAD_ERRORS.append(f"out of memory quantizing {name}")
                        raise
                    out[name] = nn.Parameter(store(module, pname, q), requires_grad=False)
                    del value
                else:
                    rest[name] = value
            if rest:
                out.update(super().convert(rest, full_layer_name=full_layer_name, model=model, **kwargs))
            return out

    @register_quantizer(QUANT_METHOD)
    class MoeBnb4BitQuantizer(Bnb4BitHfQuantizer):
        """bitsandbytes 4-bit, plus the fused experts of MoE layers (NF4, expert by expert)."""

        def param_needs_quantization(self, model: nn.Module, param_name: str, **kwargs: Any) -> bool:
            module, name = get_module_from_name(model, param_name)
            if is_experts(module) and name in EXPERT_PARAMS:
                return should_convert_module(param_name.rpartition(".")[0], self.modules_to_not_convert)
            return super().param_needs_quantization(model, param_name, **kwargs)

        def param_element_size(self, model: nn.Module, param_name: str, param: torch.Tensor) -> float:
            """What a weight will take once quantized (for device_map="auto"): 4 bits plus the block scales."""
            if self.param_needs_quantization(model, param_name):
                from ..sizing import bytes_per_param

                return bytes_per_param("4bit", "bfloat16", self.quantization_config.bnb_4bit_use_double_quant)
            return super().param_element_size(model, param_name, param)

        def _process_model_before_weight_loading(self, model: nn.Module, device_map: Any, **kwargs: Any) -> None:
            super()._process_model_before_weight_loading(model, device_map, **kwargs)
            for name, module in experts_modules(model):
                check_layout(module, name)

        def get_quantize_ops(self) -> Any:
            return QuantizeExperts(self)

        def is_serializable(self) -> bool:
            return False  # our experts' storage is not a format transformers can reload

    register.config_class = MoeBnb4BitConfig  # type: ignore[attr-defined]


def quantization_config(*, double_quant: bool, compute_dtype: torch.dtype) -> Any:
    register()
    return register.config_class(  # type: ignore[attr-defined]
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=double_quant,
        bnb_4bit_compute_dtype=compute_dtype)


def weight_bytes(model: nn.Module) -> dict[str, int]:
    """Bytes of the model's weights by kind: experts in 4-bit (packed bytes and their state), other
    4-bit layers (bitsandbytes' packed uint8), everything kept in full precision."""
    out = {"experts_4bit": 0, "linear_4bit": 0, "full_precision": 0}
    for mod in model.modules():
        quantized = tuple(getattr(mod, "_jarvis_nf4", {}))
        for name, t in [*mod.named_parameters(recurse=False), *mod.named_buffers(recurse=False)]:
            n = t.numel() * t.element_size()
            if quantized and name.startswith(quantized):
                out["experts_4bit"] += n
            elif t.dtype == torch.uint8:
                out["linear_4bit"] += n
            else:
                out["full_precision"] += n
    return out


# ----------------------------------------------------------------------------- expert LoRA

_T4 = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+\.experts)\.(?P<e>\d+)\.(?P<proj>gate_proj|up_proj|down_proj|w1|w3|w2)"
                 r"\.lora_(?P<ab>[AB])(?:\.[^.]+)?\.weight$")
_T5 = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+\.experts)(?P<nest>(?:\.base_layer)*)\.lora_(?P<ab>[AB])"
                 r"(?:\.[^.]+)?\.weight$")
_GATE, _UP, _DOWN = ("gate_proj", "w1"), ("up_proj", "w3"), ("down_proj", "w2")


def is_expert_key(key: str) -> bool:
    return bool(_T4.match(key) or _T5.match(key))


def _scaling(cfg: dict[str, Any], key: str, r: int) -> tuple[float, int]:
    """(scaling, rank) of one LoRA module, honouring rank_pattern / alpha_pattern like peft."""
    def pattern(p: dict[str, Any], default: Any) -> Any:
        for k, v in (p or {}).items():
            if re.search(rf"(^|\.){k}$", key) or re.fullmatch(k, key):
                return v
        return default

    rank = int(pattern(cfg.get("rank_pattern"), cfg.get("r", r)))
    alpha = float(pattern(cfg.get("alpha_pattern"), cfg.get("lora_alpha", rank)))
    return (alpha / rank ** 0.5 if cfg.get("use_rslora") else alpha / rank), rank


_PEFT_REMAPPED = ("gate_proj", "up_proj", "down_proj", "w1", "w2", "w3")


def _module_of(key: str) -> str:
    return key.split(".lora_")[0].removeprefix("base_model.model.")


def split_state_dict(state: dict[str, torch.Tensor]
                     ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(expert LoRA, LoRA on dense MLP projections, the rest for peft).

    peft 0.21 rewrites the targets of adapters for MoE models trained with transformers 4: any target named
    like an expert projection (`gate_proj`, `up_proj`, `down_proj`, Mixtral's `w1/w2/w3`) becomes a
    `target_parameters` entry on the fused experts. So LoRA on dense MLP layers of a MoE model (layers in
    `mlp_only_layers`, Qwen2-MoE's shared expert) cannot go through peft: we apply it ourselves too."""
    experts = {k: v for k, v in state.items() if is_expert_key(k)}
    dense = {k: v for k, v in state.items() if k not in experts and _module_of(k).rsplit(".", 1)[-1] in _PEFT_REMAPPED}
    return experts, dense, {k: v for k, v in state.items() if k not in experts and k not in dense}


def expert_lora(cfg: dict[str, Any], tensors: dict[str, torch.Tensor], model: nn.Module,
                source: str) -> dict[str, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """Per experts module: {"gate_up_proj": (A (E, R, H), B (E, 2I, R) scaled), "down_proj": (…)}.
    Raises AdapterError for an expert weight the model has no place for."""
    modules = dict(experts_modules(model))
    by_module: dict[str, dict[str, Any]] = {}
    for key, t in tensors.items():
        m = _T4.match(key) or _T5.match(key)
        assert m is not None
        mod = m.group("module")
        if mod not in modules:
            near = next(iter(modules), None)
            raise AdapterError(
                f"adapter {source}: expert weights for {mod!r}, which is not an experts module of this model"
                f"{f' (its experts are named like {near!r})' if near else ' (it has no MoE experts)'}; "
                "benchmark it with the base it was trained on")
        by_module.setdefault(mod, {})[key] = (m, t)
    out: dict[str, dict[str, tuple[torch.Tensor, torch.Tensor]]] = {}
    for mod, items in by_module.items():
        module = modules[mod]
        out[mod] = _module_lora(cfg, items, module, f"{source}: {mod}")
    return out


def _module_lora(cfg: dict[str, Any], items: dict[str, Any], module: nn.Module, where: str
                 ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    E = module.num_experts
    H = module.hidden_dim if hasattr(module, "hidden_dim") else module.config.hidden_size
    inter = module.intermediate_dim if hasattr(module, "intermediate_dim") else None
    per_expert: dict[tuple[str, int], dict[str, torch.Tensor]] = {}
    fused: dict[str, dict[str, torch.Tensor]] = {}
    for key, (m, t) in items.items():
        if m.re is _T4:
            e = int(m.group("e"))
            if e >= E:
                raise AdapterError(f"adapter {where}: expert {e} does not exist (the model has {E} experts)")
            per_expert.setdefault((m.group("proj"), e), {})[m.group("ab")] = t.float()
            per_expert[(m.group("proj"), e)]["key"] = key  # type: ignore[assignment]
        else:
            fused.setdefault(m.group("nest"), {})[m.group("ab")] = t.float()
    result: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    if per_expert:
        result.update(_from_per_expert(cfg, per_expert, E, where))
    for nest, ab in fused.items():
        if set(ab) != {"A", "B"}:
            raise AdapterError(f"adapter {where}: lora_A or lora_B missing for the fused experts")
        name, pair = _from_fused(cfg, ab["A"], ab["B"], E, H, inter, where)
        result[name] = pair
    return result


def _from_per_expert(cfg: dict[str, Any], per_expert: dict[tuple[str, int], dict[str, Any]], E: int, where: str
                     ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """transformers-4 layout: gate and up LoRA of each expert fused the way the weights are
    ([gate; up]): A stacked along the rank, B block-diagonal, scaling folded into B."""
    def factors(projs: tuple[str, ...]) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
        got = [(p, e) for (p, e) in per_expert if p in projs]
        if not got:
            return None
        mats = []
        for e in range(E):
            pe = next((per_expert[(p, e)] for p in projs if (p, e) in per_expert), None)
            if pe is None or "A" not in pe or "B" not in pe:
                raise AdapterError(f"adapter {where}: {'/'.join(projs)} LoRA of expert {e} is missing or incomplete")
            scale, _ = _scaling(cfg, pe["key"].rsplit(".lora_", 1)[0], pe["A"].shape[0])
            mats.append((pe["A"], pe["B"] * scale))
        return mats

    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    gate, up, down = factors(_GATE), factors(_UP), factors(_DOWN)
    if (gate is None) != (up is None):
        raise AdapterError(f"adapter {where}: LoRA on {'gate' if up is None else 'up'}_proj without "
                           f"{'up' if up is None else 'gate'}_proj; the experts fuse both, train or drop both")
    if gate is not None and up is not None:
        a = torch.stack([torch.cat([ga, ua]) for (ga, _), (ua, _) in zip(gate, up)])
        b = torch.stack([torch.block_diag(gb, ub) for (_, gb), (_, ub) in zip(gate, up)])
        out["gate_up_proj"] = (a, b)
    if down is not None:
        out["down_proj"] = (torch.stack([a for a, _ in down]), torch.stack([b for _, b in down]))
    return out


def _from_fused(cfg: dict[str, Any], a: torch.Tensor, b: torch.Tensor, E: int, H: int, inter: int | None, where: str
                ) -> tuple[str, tuple[torch.Tensor, torch.Tensor]]:
    """peft `target_parameters` layout (ParamWrapper): lora_A (r·E, in), lora_B (out, r·E), expert-major
    in A, expert-minor in B (peft's get_delta_factors)."""
    r = a.shape[0] // E
    if r * E != a.shape[0] or b.shape[1] != a.shape[0]:
        raise AdapterError(f"adapter {where}: fused expert LoRA of shape {tuple(a.shape)}/{tuple(b.shape)} does not "
                           f"fit {E} experts")
    fan_in, fan_out = a.shape[1], b.shape[0]
    if fan_in == H and (inter is None or fan_out == 2 * inter):
        name = "gate_up_proj"
    elif fan_out == H and (inter is None or fan_in == inter):
        name = "down_proj"
    else:
        raise AdapterError(f"adapter {where}: fused expert LoRA {fan_in}->{fan_out} matches neither gate_up_proj "
                           f"nor down_proj of this model (hidden {H})")
    scale, _ = _scaling(cfg, f"experts.{name}", r)
    a3 = a.reshape(E, r, fan_in)
    b3 = b.reshape(fan_out, r, E).permute(2, 0, 1) * scale
    return name, (a3.contiguous(), b3.contiguous())


def attach(model: nn.Module, adapter: str, lora: dict[str, dict[str, tuple[torch.Tensor, torch.Tensor]]]) -> None:
    """Give each experts module its share of `adapter`'s expert LoRA (float32, on the module's device)."""
    modules = dict(experts_modules(_unwrap(model)))
    for name, parts in lora.items():
        module = modules[name]
        device = module.down_proj.device
        store_ = dict(getattr(module, "_jarvis_lora", {}))
        store_[adapter] = {k: (a.to(device, torch.float32), b.to(device, torch.float32)) for k, (a, b) in parts.items()}
        module._jarvis_lora = store_


def use_experts_forward(model: nn.Module) -> None:
    """Run the model's experts with `experts_forward` (the one place expert LoRA is applied); a 4-bit model
    already does, an unquantized one is switched from transformers' default."""
    register()
    if model.config._experts_implementation != IMPLEMENTATION:
        model.set_experts_implementation(IMPLEMENTATION)
    if model.config._experts_implementation != IMPLEMENTATION:
        raise AdapterError(f"{type(model).__name__} cannot switch its experts implementation, so its expert LoRA "
                           "could not be applied; use an adapter without expert weights")


def dense_lora(cfg: dict[str, Any], tensors: dict[str, torch.Tensor], model: nn.Module, source: str
               ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per linear layer: (A (r, in), B (out, r) scaled), for the dense MLP projections of a MoE model."""
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for mod in sorted({_module_of(k) for k in tensors}):
        try:
            layer = model.get_submodule(mod)
        except AttributeError:
            layer = None
        if not isinstance(layer, nn.Linear):  # bitsandbytes' Linear4bit is an nn.Linear
            raise AdapterError(f"adapter {source}: LoRA for {mod!r}, which is not a linear layer of this model; "
                               "benchmark it with the base it was trained on")
        pair = {ab: tensors.get(f"base_model.model.{mod}.lora_{ab}.weight", tensors.get(f"{mod}.lora_{ab}.weight"))
                for ab in "AB"}
        if pair["A"] is None or pair["B"] is None:
            raise AdapterError(f"adapter {source}: lora_A or lora_B missing for {mod}")
        scale, _ = _scaling(cfg, mod, pair["A"].shape[0])
        a, b = pair["A"].float(), pair["B"].float() * scale
        if a.shape[1] != layer.in_features or b.shape[0] != layer.out_features:
            raise AdapterError(f"adapter {source}: LoRA for {mod} is {a.shape[1]}->{b.shape[0]}, the layer is "
                               f"{layer.in_features}->{layer.out_features}; benchmark it with its own base")
        out[mod] = (a, b)
    return out


def _dense_hook(module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
    pair = module._jarvis_lora.get(getattr(module, "_jarvis_active", None))
    if pair is None:
        return output
    a, b = pair
    return output + ((args[0].float() @ a.T) @ b.T).to(output.dtype)


def attach_dense(model: nn.Module, adapter: str, lora: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    for name, (a, b) in lora.items():
        layer = model.get_submodule(name)
        device = layer.weight.device
        if not hasattr(layer, "_jarvis_lora"):
            layer._jarvis_lora = {}
            layer.register_forward_hook(_dense_hook)
        layer._jarvis_lora[adapter] = (a.to(device), b.to(device))


def select(model: nn.Module, adapter: str | None) -> None:
    """The adapter whose LoRA our experts and dense MLP hooks add from now on (None: the base)."""
    for module in _unwrap(model).modules():
        if hasattr(module, "_jarvis_lora"):
            module._jarvis_active = adapter


def _unwrap(model: nn.Module) -> nn.Module:
    base = getattr(model, "base_model", None)
    return getattr(base, "model", model) if base is not None and base is not model else model


# ----------------------------------------------------------------------------- adapters on disk


def read_adapter(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """adapter_config.json and the weights (safetensors, or a .bin read with weights_only)."""
    cfg = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
    st = path / "adapter_model.safetensors"
    if st.is_file():
        from safetensors.torch import load_file

        return cfg, load_file(str(st))
    return cfg, torch.load(path / "adapter_model.bin", map_location="cpu", weights_only=True)


def without_experts(cfg: dict[str, Any], rest: dict[str, torch.Tensor], folder: Path) -> Path | None:
    """Write what peft applies — the adapter minus the LoRA `split_state_dict` routes to us — to `folder`
    (None when nothing is left): an explicit list of the leaf names its weights use (a string target such
    as "all-linear" would be resolved by peft onto the experts), `target_parameters` dropped, and dropout 0
    (it does nothing at inference; peft's ParamWrapper, used for the router `gate`, refuses any other value)."""
    if not rest:
        return None
    from safetensors.torch import save_file

    names = sorted({_module_of(k).rsplit(".", 1)[-1] for k in rest})
    new = {**cfg, "target_modules": names, "target_parameters": None, "lora_dropout": 0.0}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps(new), encoding="utf-8")
    save_file({k: v.contiguous() for k, v in rest.items()}, str(folder / "adapter_model.safetensors"))
    return folder
