"""Mixture-of-experts weights in 4-bit: the fused experts quantized while loading, stored NF4 expert by
expert, and the experts forward that reads them.

transformers 5 stores a MoE layer's experts as fused 3-D parameters (`gate_up_proj` [E, 2I, H],
`down_proj` [E, H, I]); bitsandbytes only quantizes `nn.Linear`, so a "4-bit" Qwen3-30B-A3B keeps 29 of
its 30.5 B parameters in bf16. This module closes the gap with the libraries' own extension points —
nothing is patched:

- `MoeBnb4BitQuantizer` (registered with transformers under `QUANT_METHOD`) is the bitsandbytes 4-bit
  quantizer plus the experts: after transformers has merged a checkpoint's per-expert tensors into the
  fused stack, each expert is quantized to NF4 (double quant optional) in the loading pass, so the
  full-precision stack of one layer at most is ever in memory. Each expert is quantized on its own, so
  one expert can be dequantized without the others.
- `grouped_forward` (registered as `GROUPED`, `model.moe_forward: "grouped"`, the default on CUDA) runs
  the same experts in at most 40 operator calls per layer whatever the experts hit: tokens sorted by expert
  once, the hit experts dequantized in one call per projection (`experts_weights`), one grouped matmul
  (torch._grouped_mm) or, for decode on a GPU, one padded batched matmul per projection and per LoRA factor
  (`layout`), one scatter back; no host synchronisation.
- `experts_forward` (registered as the experts implementation `IMPLEMENTATION`) runs the routed experts
  only, dequantizing each routed expert's slice once per forward — never a whole stack per routed expert —
  and adds the active adapter's expert LoRA there (what `moe_lora.attach` put in `module._jarvis_lora`,
  selected by `moe_lora.select` in `module._jarvis_active`). It also runs unquantized experts, bit for bit
  as transformers' eager loop, which is how expert LoRA works on a full-precision model.

Imported through `moe.MoE` only (torch at module level). Private library symbols this module relies on —
`tests/test_library_symbols.py` resolves every line below, so an upgrade that moves one fails there in a
second instead of inside a 30-minute model load (`pyproject.toml` caps the versions the tests ran on):

    transformers.integrations.bitsandbytes.Bnb4bitQuantize.convert
    transformers.integrations.moe.ALL_EXPERTS_FUNCTIONS.register
    transformers.integrations.moe.use_experts_implementation: is_concatenated, is_transposed, has_bias, has_gate
    transformers.integrations.moe._default_apply_gate
    transformers.quantizers.register_quantization_config
    transformers.quantizers.register_quantizer
    transformers.quantizers.quantizer_bnb_4bit.Bnb4BitHfQuantizer._process_model_before_weight_loading
    transformers.quantizers.quantizer_bnb_4bit.Bnb4BitHfQuantizer.param_needs_quantization
    transformers.quantizers.quantizer_bnb_4bit.Bnb4BitHfQuantizer.param_element_size
    transformers.quantizers.quantizer_bnb_4bit.Bnb4BitHfQuantizer.get_quantize_ops
    transformers.quantizers.quantizer_bnb_4bit.Bnb4BitHfQuantizer.is_serializable
    transformers.quantizers.quantizers_utils.get_module_from_name
    transformers.quantizers.quantizers_utils.should_convert_module
    transformers.core_model_loading: _is_hf_initialized
    bitsandbytes.functional.quantize_4bit(blocksize, compress_statistics, quant_type)
    bitsandbytes.functional.dequantize_4bit
    bitsandbytes.functional.QuantState(absmax, shape, code, blocksize, quant_type, dtype, offset, state2)
    bitsandbytes.functional.QuantState.__init__: self.absmax, self.code, self.offset, self.state2, self.blocksize
    torch._grouped_mm
    torch.nonzero_static
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import ModelLoadError

log = logging.getLogger(__name__)

QUANT_METHOD = "jarvis_bnb_4bit_moe"
LOAD_ERRORS: list[str] = []  # what went wrong inside our quantize op during the last load
IMPLEMENTATION = "jarvis_experts"  # experts_forward: the routed loop
GROUPED = "jarvis_experts_grouped"  # grouped_forward
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


def implementation(choice: str, device: str) -> str:
    """The experts implementation for `model.moe_forward`: "auto" = grouped on a GPU (a fixed number of
    kernels per layer, see `layout`) and routed on the CPU (faster there: benchmarks/RESULTS.md); "grouped"
    and "routed" as asked."""
    if choice == "grouped" or (choice == "auto" and device == "cuda"):
        return GROUPED
    return IMPLEMENTATION


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
        if lora is not None and "gate_up_proj" in lora:  # in float32 and rounded once after the sum, as peft does
            a, b = lora["gate_up_proj"]
            gate_up = (gate_up + (x.float() @ a[e].T) @ b[e].T).to(gate_up.dtype)
        h = self._apply_gate(gate_up)
        out = nn.functional.linear(h, expert_weight(self, "down_proj", e))
        if lora is not None and "down_proj" in lora:
            a, b = lora["down_proj"]
            out = (out + (h.float() @ a[e].T) @ b[e].T).to(out.dtype)
        out = out * top_k_weights[token_idx, top_k_pos, None]
        final.index_add_(0, token_idx, out.to(final.dtype))
    return final


def experts_weights(module: nn.Module, name: str, experts: torch.Tensor | None) -> torch.Tensor:
    """The (len(experts), out, in) weights of the listed experts (None: all of them, read in place) in the
    compute dtype, in ONE dequantization call whatever their number (a stored stack is indexed as is). Each expert was quantized on its own, with
    its own double-quant offset: the absmax of every listed expert is dequantized here first, the way
    bitsandbytes' dequantize_4bit does it for one (dequantize_blockwise, plus the offset), so one plain NF4
    call covers them all."""
    param = getattr(module, name)
    if not is_quantized(module, name):
        return param if experts is None else param.index_select(0, experts)
    import bitsandbytes.functional as bnbf

    meta = module._jarvis_nf4[name]
    out_f, in_f = meta["shape"]
    if in_f % BLOCKSIZE:  # rows narrower than a block, or a partial last block: blocks do not line up
        listed = range(len(param)) if experts is None else experts.tolist()
        return torch.stack([expert_weight(module, name, e) for e in listed])  # (tiny test models)

    def pick(t: torch.Tensor) -> torch.Tensor:
        return t if experts is None else torch.index_select(t, 0, experts)  # 3x faster than t[experts] on CPU

    n = len(param) if experts is None else len(experts)
    absmax = pick(getattr(module, f"{name}_absmax"))
    if meta["blocksize2"] is not None:
        blocks, size2 = absmax.shape[-1], meta["blocksize2"]
        if blocks % size2 == 0:  # Qwen3-30B-A3B's stacks: the experts' second-level blocks line up
            absmax = bnbf.dequantize_blockwise(absmax.reshape(-1), absmax=pick(getattr(module, f"{name}_absmax2"))
                                               .reshape(-1), code=getattr(module, f"{name}_code2"), blocksize=size2)
        else:  # each expert's last second-level block is partial: look the code up by hand
            values = getattr(module, f"{name}_code2")[absmax.long()]
            scale = pick(getattr(module, f"{name}_absmax2"))
            absmax = values * scale.repeat_interleave(size2, dim=-1)[:, :blocks]
        absmax = absmax.view(n, blocks) + pick(getattr(module, f"{name}_offset"))[:, None]
    qs = bnbf.QuantState(absmax=absmax.reshape(-1).float(), shape=torch.Size((n * out_f, in_f)),
                         code=getattr(module, f"{name}_code"), blocksize=BLOCKSIZE, quant_type="nf4", dtype=meta["dtype"])
    return bnbf.dequantize_4bit(pick(param).reshape(-1, 1), qs).view(n, out_f, in_f)


def _bounds(module: nn.Module, like: torch.Tensor) -> torch.Tensor:
    """-1, 0, ..., E on `like`'s device and in its dtype, made once per module: the expert boundaries that
    searchsorted looks up."""
    b = getattr(module, "_jarvis_bounds", None)
    if b is None or b.device != like.device or b.dtype != like.dtype:
        b = torch.arange(-1, module.num_experts + 1, device=like.device, dtype=like.dtype)
        module._jarvis_bounds = b
    return b


PADDED_MAX_TOKENS = 64  # the padded layout's (experts x tokens) rows stay small up to here: decode steps


def layout(device: torch.device, tokens: int) -> str:
    """How `grouped_forward` runs its expert matmuls, decided from shapes alone (no host synchronisation):
    "padded" for decode steps on a GPU (up to PADDED_MAX_TOKENS tokens): each hit expert's tokens padded to
    `tokens` rows, one batched matmul (bmm) per projection and per LoRA factor, on any GPU — torch's grouped
    matmul is one kernel only in bf16 on sm90/sm100 (not on an RTX 3090/4090), and never for an adapter's
    float32 LoRA: elsewhere it copies the offsets to the host and loops over the groups. "grouped" =
    torch._grouped_mm over the pairs sorted by expert for prefill on a GPU (its one copy per call is nothing
    beside a prompt's matmuls, and padding to the prompt's length would multiply them) and on the CPU (its
    loop runs on the host: nothing to copy). Whether bf16 on sm90 should take grouped for decode too is what
    benchmarks/gpu_check.sh settles (it times both)."""
    return "padded" if device.type == "cuda" and tokens <= PADDED_MAX_TOKENS else "grouped"


def grouped_forward(self: nn.Module, hidden_states: torch.Tensor, top_k_index: torch.Tensor,
                    top_k_weights: torch.Tensor) -> torch.Tensor:
    """The same experts as `experts_forward` in a number of operator calls that does not grow with the experts
    hit, and without a host synchronisation: the (token, expert) pairs sorted by expert once; the hit experts
    (at most min(E, pairs), found with nonzero_static) dequantized in one call per projection; one grouped or
    batched matmul per projection and per LoRA factor (`layout`); one scatter back with the routing weights.
    Pairs routed to no expert (index E) are dropped."""
    E = self.num_experts
    T, K = top_k_index.shape
    sorted_e, order = top_k_index.reshape(-1).sort(stable=True)
    token = order // K
    weight = top_k_weights.reshape(-1)[order]
    # ends[e] = pairs routed to experts < e (where expert e's group starts); ends[E + 1] = every pair. Not
    # bincount: on CUDA it reads the input's max back to the host
    ends = torch.searchsorted(sorted_e, _bounds(self, sorted_e), right=True, out_int32=True)
    counts = ends[1:E + 1] - ends[:E] if T * K < E else None
    # the hit experts, then padding with expert E - 1: past the last hit expert its group ends where every
    # real group does, so padded groups are empty (and any weights will do). With as many pairs as experts
    # (16 tokens of Qwen3-30B-A3B) the padding would fill the slots left: every expert instead, read in place
    # (None), no copy of its bytes
    experts = None if T * K >= E else torch.nonzero_static(counts, size=T * K, fill_value=E - 1).reshape(-1)
    lora = getattr(self, "_jarvis_lora", {}).get(getattr(self, "_jarvis_active", None))
    valid = sorted_e < E
    if layout(hidden_states.device, T) == "padded":
        out = _padded(self, hidden_states[token], sorted_e, ends, experts, valid, T, lora)
    else:
        out = _grouped(self, hidden_states[token], ends, experts, lora)
    # rows of pairs routed to no expert are undefined (past the last group, or a padded layout's spare row)
    out = torch.where(valid[:, None], out * weight[:, None], 0)
    return torch.zeros_like(hidden_states).index_add_(0, token, out.to(hidden_states.dtype))


def _grouped(self: nn.Module, x: torch.Tensor, ends: torch.Tensor, experts: torch.Tensor | None,
             lora: dict[str, tuple[torch.Tensor, torch.Tensor]] | None) -> torch.Tensor:
    """The pairs' rows `x` (sorted by expert) through the experts: torch._grouped_mm, group i = the pairs of
    experts[i]; the LoRA factors (small) grouped over all E experts, no gather."""
    E = self.num_experts
    every = ends[1:E + 1]
    offs = every if experts is None else ends[1:][experts]
    gate_up = torch._grouped_mm(x, experts_weights(self, "gate_up_proj", experts).transpose(-2, -1), offs=offs)
    if lora is not None and "gate_up_proj" in lora:
        # in float32, as peft computes LoRA; the in-place add sums in float32 and rounds once, as peft does
        a, b = lora["gate_up_proj"]
        gate_up.add_(torch._grouped_mm(torch._grouped_mm(x.float(), a.transpose(-2, -1), offs=every),
                                       b.transpose(-2, -1), offs=every))
    h = self._apply_gate(gate_up)
    out = torch._grouped_mm(h, experts_weights(self, "down_proj", experts).transpose(-2, -1), offs=offs)
    if lora is not None and "down_proj" in lora:
        a, b = lora["down_proj"]
        out.add_(torch._grouped_mm(torch._grouped_mm(h.float(), a.transpose(-2, -1), offs=every),
                                   b.transpose(-2, -1), offs=every))
    return out


def _padded(self: nn.Module, x: torch.Tensor, sorted_e: torch.Tensor, ends: torch.Tensor, experts: torch.Tensor | None,
            valid: torch.Tensor, T: int, lora: dict[str, tuple[torch.Tensor, torch.Tensor]] | None) -> torch.Tensor:
    """The pairs' rows `x` through the experts as batched matmuls: slot i holds the pairs of experts[i], padded
    to T rows (a router sends a token to an expert once, so no expert takes more than T pairs); pairs routed
    to no expert go to one spare row past the slots. Returns the pairs' rows, in `x`'s order."""
    slots = self.num_experts if experts is None else len(experts)
    n = slots * T
    slot = sorted_e if experts is None else torch.searchsorted(experts, sorted_e)  # experts is sorted, padding last
    rank = torch.arange(len(sorted_e), device=x.device) - ends[sorted_e]  # position within the expert's group
    row = torch.where(valid, torch.add(rank, slot, alpha=T), n)
    rows = x.new_zeros(n + 1, x.shape[-1])
    rows[row] = x
    xs = rows[:n].view(slots, T, -1)

    def project(inp: torch.Tensor, name: str) -> torch.Tensor:
        y = torch.bmm(inp, experts_weights(self, name, experts).transpose(-2, -1))
        if lora is not None and name in lora:  # float32, summed in place and rounded once, as peft does
            a, b = lora[name]
            if experts is not None:
                a, b = a.index_select(0, experts), b.index_select(0, experts)
            y.add_(torch.bmm(torch.bmm(inp.float(), a.transpose(-2, -1)), b.transpose(-2, -1)))
        return y

    out = project(self._apply_gate(project(xs, "gate_up_proj")), "down_proj")
    return out.view(n, -1)[row.clamp(max=n - 1)]


_VIEWS = frozenset({"aten::reshape", "aten::view", "aten::transpose", "aten::alias", "aten::unsqueeze", "aten::slice",
                    "aten::chunk", "aten::split", "aten::expand", "aten::as_strided", "aten::select", "aten::t",
                    "aten::detach", "aten::_reshape_alias"})


def operator_calls(fn: Any, *args: Any) -> int:
    """The operator calls `fn(*args)` makes that launch work (the proxy for kernel launches on a GPU, measured
    on any device with torch.profiler): top-level aten and bitsandbytes calls, minus views and casts to the
    dtype a tensor already has. Counted in the steady state, after one warm-up call (as a decode loop runs
    it: what is made once per module, the expert boundaries, is not counted). For benchmarks/moe_experts.py
    and the tests."""
    from torch.profiler import ProfilerActivity, profile

    fn(*args)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn(*args)
    ops = ("aten::", "bitsandbytes::")
    top = [e for e in prof.events() if e.name.startswith(ops)
           and (e.cpu_parent is None or not e.cpu_parent.name.startswith(ops))]
    return sum(1 for e in top if e.name not in _VIEWS
               and (e.name != "aten::to" or any(c.name == "aten::_to_copy" for c in e.cpu_children)))


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
    ALL_EXPERTS_FUNCTIONS.register(GROUPED, grouped_forward)

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
