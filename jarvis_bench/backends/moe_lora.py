"""A LoRA adapter on a mixture-of-experts model: its expert part mapped onto the fused experts, its dense
MLP part applied by forward hooks, the rest handed to peft.

- the expert part, in either layout — transformers-4 per-expert (`…mlp.experts.3.gate_proj.lora_A.weight`)
  or peft `target_parameters` (`…mlp.experts.lora_A.weight`) — becomes per-expert factors stored on each
  experts module by adapter name (`module._jarvis_lora`), which `moe_4bit.experts_forward` adds for the
  adapter `select` made active (`module._jarvis_active`). This works on 4-bit and on unquantized experts.
- LoRA on dense MLP projections (layers in `mlp_only_layers`, Qwen2-MoE's shared expert) is applied by a
  forward hook: peft 0.21 rewrites any target named like an expert projection onto the fused experts.
- the rest (attention, router) goes through peft from a copy of the adapter without the parts above.
Dropout is ignored: it does nothing at inference. A weight that finds no module is an error, never a warning.

Imported through `moe.MoE` only (torch at module level). Private library symbols this module relies on —
`tests/test_library_symbols.py` resolves every line below:

    transformers.configuration_utils.PreTrainedConfig._experts_implementation
    transformers.modeling_utils.PreTrainedModel.set_experts_implementation
    peft.utils.transformers_weight_conversion._MOE_TARGET_MODULE_MAPPING  (the targets `split_state_dict` keeps from peft)
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import AdapterError
from .moe_4bit import IMPLEMENTATION, experts_modules, register

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


def use_experts_forward(model: nn.Module, implementation: str = IMPLEMENTATION) -> None:
    """Run the model's experts with our forward (`experts_forward` or `grouped_forward`: the one place expert
    LoRA is applied); a 4-bit model already does, an unquantized one is switched from transformers' default."""
    register()
    if model.config._experts_implementation != implementation:
        model.set_experts_implementation(implementation)
    if model.config._experts_implementation != implementation:
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
    return (output + (args[0].float() @ a.T) @ b.T).to(output.dtype)  # summed in float32, rounded once: peft


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
