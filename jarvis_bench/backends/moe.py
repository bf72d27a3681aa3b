"""The one door between the transformers backend and mixture-of-experts models.

`hf.py` asks `MoE.of(model_config, …)` once; for a MoE base (Qwen3-30B-A3B and its kind) it gets an
object that answers the four questions a load raises, and for a dense model None:

- `load_kwargs()`: what `from_pretrained` needs (4-bit: our quantizer, which quantizes the fused experts
  too, and our experts forward; 8-bit is refused: bitsandbytes' int8 leaves the experts in full precision);
- `loaded(model, info)` / `load_failed_for_memory()`: after the load, the weights' sizes by kind; on a
  failed load, whether our quantize op ran out of memory (transformers reports it generically);
- `attach(model, variant, attach_peft)`: an adapter's expert LoRA to our experts, its dense MLP LoRA to
  hooks, the rest through peft;
- `select(model, variant)`: the LoRA our experts and hooks add for the next batch.

Behind the door: `moe_4bit` (4-bit storage, the quantizer, the experts forward) and `moe_lora` (an
adapter's expert and dense-MLP parts). Both import torch at module level, so they are imported here
lazily: `hf.py` (and check_setup, which imports it) stays light until a MoE model is loaded.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..adapters import Variant
from ..errors import ConfigError

log = logging.getLogger(__name__)


class MoE:
    """A mixture-of-experts base model as the transformers backend loads and runs it."""

    def __init__(self, *, quantization: str, dtype_name: str, double_quant: bool, forward: str = "auto",
                 device: str = "cpu") -> None:
        self.quantization, self.dtype_name, self.double_quant = quantization, dtype_name, double_quant
        self.forward, self.device = forward, device  # model.moe_forward and where the model runs
        self.own_lora = False  # some adapter carries LoRA that our experts or hooks apply
        self.quantizing = False  # the last load_kwargs() asked for our quantizer

    @classmethod
    def of(cls, model_config: dict[str, Any], *, quantization: str, dtype_name: str,
           double_quant: bool, forward: str = "auto", device: str = "cpu") -> MoE | None:
        """The door for a MoE config (config.json as a dict), None for a dense model."""
        from ..sizing import num_experts

        if num_experts(model_config) <= 0:
            return None
        return cls(quantization=quantization, dtype_name=dtype_name, double_quant=double_quant, forward=forward,
                   device=device)

    @property
    def implementation(self) -> str:
        """The experts forward this model runs (`model.moe_forward`, resolved for the device)."""
        import torch  # noqa: F401  (moe_4bit needs it; imported here so the door stays light until a load)

        from . import moe_4bit

        return moe_4bit.implementation(self.forward, self.device)

    # ------------------------------------------------------------------ loading

    def load_kwargs(self) -> dict[str, Any]:
        """`from_pretrained` arguments that quantize this model (the dense path's BitsAndBytesConfig would
        leave the fused experts, nearly all of the weights, in full precision)."""
        if self.quantization == "8bit":
            raise ConfigError(
                'model.quantization "8bit" on a MoE model: bitsandbytes\' int8 only converts nn.Linear layers, '
                "so the fused experts (nearly all of the weights) would stay in "
                f'{self.dtype_name}; set model.quantization to "4bit", which quantizes the experts too'
            )
        self.quantizing = self.quantization == "4bit"
        if not self.quantizing:
            return {}
        import torch

        from . import moe_4bit

        moe_4bit.LOAD_ERRORS.clear()
        return {
            "quantization_config": moe_4bit.quantization_config(
                double_quant=self.double_quant, compute_dtype=getattr(torch, self.dtype_name)),
            "experts_implementation": self.implementation,  # a forward that reads 4-bit experts
        }

    def load_failed_for_memory(self) -> bool:
        """Our quantize op ran out of memory during the last load (transformers reports it generically)."""
        if not self.quantizing:
            return False
        from . import moe_4bit

        return any("out of memory" in e for e in moe_4bit.LOAD_ERRORS)

    def loaded(self, model: Any, info: dict[str, Any]) -> None:
        """After the load: the weights' bytes by kind (experts in 4-bit, other 4-bit layers, full precision)."""
        from . import moe_4bit

        sizes = moe_4bit.weight_bytes(model)
        info["weight_bytes"] = sizes
        info["experts"] = "4bit" if sizes["experts_4bit"] else self.dtype_name
        info["moe_forward"] = getattr(model.config, "_experts_implementation", None)
        log.info("Weights in memory: %s", ", ".join(f"{k} {v / 2**30:.2f} GiB" for k, v in sizes.items()))

    # ------------------------------------------------------------------ adapters

    def attach(self, model: Any, variant: Variant, attach_peft: Callable[[Any, str, Path], Any]) -> Any:
        """An adapter on the MoE model: its expert part to our experts (any layout; they are switched to our
        forward, the one place expert LoRA is applied, even unquantized), its dense MLP projections to
        our hooks (peft would move them onto the experts), the rest (attention, router) through
        `attach_peft(model, name, folder)`. A weight with no layer to go to is an AdapterError."""
        from . import moe_lora

        assert variant.path is not None
        cfg, state = moe_lora.read_adapter(variant.path)
        experts, dense, rest = moe_lora.split_state_dict(state)
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        if experts:
            moe_lora.attach(base, variant.name, moe_lora.expert_lora(cfg, experts, base, str(variant.path)))
            moe_lora.use_experts_forward(base, self.implementation)
            self.own_lora = True
        if dense:
            moe_lora.attach_dense(base, variant.name, moe_lora.dense_lora(cfg, dense, base, str(variant.path)))
            self.own_lora = True
        if rest:
            with tempfile.TemporaryDirectory(prefix="jarvis-adapter-") as tmp:
                folder = moe_lora.without_experts(cfg, rest, Path(tmp) / variant.name)
                model = attach_peft(model, variant.name, folder)
        return model

    def select(self, model: Any, variant: Variant) -> None:
        """The LoRA our experts and dense hooks add from now on: the variant's, none for the base."""
        if self.own_lora:
            from . import moe_lora

            moe_lora.select(model, None if variant.is_base else variant.name)
