"""Greedy batched decoding for the transformers backend, written for a benchmark's workload.

`model.generate` keeps every row of a batch until the longest one ends and prefills every prompt in
full. A benchmark's prompts share a long head (system prompt, tool schemas) and their answers end at
very different lengths, so this loop does what `generate` does not:

- **shared prefix**: the tokens every prompt of the batch starts with are run once (batch of 1) and the
  KV cache is repeated for each row; only the rest of each prompt is prefilled. The rows are laid out as
  `prefix | padding | own tokens` with the padding masked out and positions counted over real tokens,
  so each row computes the same thing as on its own.
- **finished rows leave**: a row that emits an end-of-turn token (or reaches `max_new_tokens`) is
  dropped from the batch and from the KV cache; later steps only pay for the rows still running.
- **KV cache written in place**: each layer's keys/values live in one buffer sized for the longest
  prompt plus `max_new_tokens`; `DynamicCache` concatenates (allocates and copies the whole cache) at
  every step, which cost more than the matmuls at 30 rows.
- **logits of the last position only** (`logits_to_keep=1`): the prefill never builds a
  sequence x vocabulary matrix.
- **answers stream out** as they end (`stream`), so the caller saves them while longer ones decode.

Models whose cache holds anything but attention layers (hybrid recurrent / linear-attention) get a
plain left-padded batch with every row kept to the end, as `generate` would.

Decoding is argmax over float32 logits, exactly what `generate(do_sample=False, num_beams=1)` does with
neutral processors; tests compare the tokens with `generate` one prompt at a time.

Private library symbols this module relies on — `tests/test_library_symbols.py` resolves every line
below, so an upgrade that moves one fails there in a second (`pyproject.toml` caps the versions the tests
ran on):

    transformers.cache_utils.DynamicLayer.lazy_initialization
    transformers.cache_utils.DynamicLayer.update
    transformers.cache_utils.DynamicLayer.batch_repeat_interleave
    transformers.cache_utils.DynamicLayer.batch_select_indices
    transformers.cache_utils.DynamicLayer: is_initialized, keys, values, dtype, device
    transformers.cache_utils.Cache.__init__: self.layers
    transformers.DynamicCache(config)
    transformers.integrations.sdpa_attention.sdpa_attention_forward(module, query, key, value, attention_mask)
    transformers.masking_utils.ALL_MASK_ATTENTION_FUNCTIONS.register
    transformers.masking_utils.sdpa_mask
    transformers.AttentionInterface.register
    transformers.modeling_utils.PreTrainedModel.set_attn_implementation
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

MIN_SHARED_PREFIX = 8  # below this, running the prefix apart costs more than it saves


@dataclass
class Row:
    tokens: list[int] = field(default_factory=list)  # generated ids, end-of-turn token excluded
    stopped: bool = False  # ended with an end-of-turn token (False: hit max_new_tokens)
    seconds: float = 0.0  # from the start of the batch to this row's last token


@dataclass
class Stats:
    shared_prefix: int = 0
    prefill_tokens: int = 0  # prompt tokens actually run through the model (padding included)
    steps: int = 0
    row_steps: int = 0  # sum over decode steps of the rows in the batch


def common_prefix(rows: Sequence[Sequence[int]]) -> int:
    first = rows[0]
    n = min(len(r) for r in rows)
    for i in range(n):
        t = first[i]
        if any(r[i] != t for r in rows):
            return i
    return n


def _preallocated_layer() -> type:
    from transformers.cache_utils import DynamicLayer

    class PreallocatedLayer(DynamicLayer):
        """A DynamicLayer whose keys/values are views of a buffer filled in place (grows only if it must)."""

        def __init__(self, capacity: int) -> None:
            super().__init__()
            self.capacity = capacity
            self.length = 0

        def lazy_initialization(self, key_states: Any, value_states: Any) -> None:
            self.dtype, self.device = key_states.dtype, key_states.device
            b, h, _, _ = key_states.shape
            self._k = key_states.new_empty((b, h, self.capacity, key_states.shape[-1]))
            self._v = value_states.new_empty((b, h, self.capacity, value_states.shape[-1]))
            self.is_initialized = True

        def _views(self) -> None:
            self.keys, self.values = self._k[:, :, : self.length], self._v[:, :, : self.length]

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            import torch

            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            end = self.length + key_states.shape[-2]
            if end > self._k.shape[-2]:  # never in stream() (sized for the longest prompt + max_new_tokens)
                grow = end - self._k.shape[-2]
                self._k = torch.cat([self._k, self._k.new_empty((*self._k.shape[:2], grow, self._k.shape[-1]))], -2)
                self._v = torch.cat([self._v, self._v.new_empty((*self._v.shape[:2], grow, self._v.shape[-1]))], -2)
            self._k[:, :, self.length : end] = key_states
            self._v[:, :, self.length : end] = value_states
            self.length = end
            self._views()
            return self.keys, self.values

        def batch_repeat_interleave(self, repeats: int) -> None:
            if self.is_initialized:
                self._k, self._v = self._k.repeat_interleave(repeats, 0), self._v.repeat_interleave(repeats, 0)
                self._views()

        def batch_select_indices(self, indices: Any) -> None:
            if self.is_initialized:  # select_rows() gives the indices on this layer's device
                self._k, self._v = self._k[indices], self._v[indices]
                self._views()

    return PreallocatedLayer


def _cache(model: Any, capacity: int) -> Any:
    """A DynamicCache whose full-attention layers write in place; sliding-window and other layers as is."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    cache = DynamicCache(config=model.config)
    layer_cls = _preallocated_layer()
    cache.layers = [layer_cls(capacity) if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache


def select_rows(cache: Any, indices: Any) -> None:
    """`Cache.batch_select_indices` with the indices on each layer's own device. transformers (5.20
    cache_utils.py, `Cache.batch_select_indices` / `DynamicLayer.batch_select_indices`) indexes every
    layer with the tensor it is given; a model split over GPUs (`device_map`) keeps each layer's cache
    on that layer's GPU, where indices from the first GPU raise."""
    moved: dict[Any, Any] = {}
    for layer in cache.layers:
        device = getattr(layer, "device", None) if getattr(layer, "is_initialized", False) else None
        if device is None or device == indices.device:
            layer.batch_select_indices(indices)
        else:
            if device not in moved:
                moved[device] = indices.to(device)
            layer.batch_select_indices(moved[device])


def _attention_only(cache: Any) -> bool:
    """Every layer keeps keys/values (full or sliding-window attention): only then may a row carry
    padding between the shared prefix and its own tokens, and leave the batch mid-way. Recurrent or
    linear-attention layers (hybrid models) carry a state that padding would pollute and that may not
    support row selection: those batches are left-padded whole, as `generate` does."""
    from transformers.cache_utils import DynamicLayer

    return all(isinstance(layer, DynamicLayer) for layer in cache.layers)


def _keeps_last_logits(model: Any) -> dict[str, int]:
    """`logits_to_keep=1` when the model's forward takes it (every transformers causal LM does; custom
    remote code may not, and then the last position is sliced from the full logits)."""
    import inspect

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        params = inspect.signature(inner.forward).parameters
    except (TypeError, ValueError):
        return {}
    return {"logits_to_keep": 1} if "logits_to_keep" in params else {}


def greedy(model: Any, rows: Sequence[Sequence[int]], **kwargs: Any) -> tuple[list[Row], Stats]:
    """Greedy-decode every prompt (token ids, no padding); one Row per prompt, in order."""
    stats = Stats()
    out: list[Row] = [Row() for _ in rows]
    for i, row in stream(model, rows, stats=stats, **kwargs):
        out[i] = row
    return out, stats


def stream(
    model: Any,
    rows: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    eos_ids: set[int],
    pad_id: int,
    share_prefix: bool = True,
    stats: Stats | None = None,
) -> Iterator[tuple[int, Row]]:
    """Greedy-decode every prompt; yields (index, Row) as each answer finishes, shortest first, so a
    caller can save it (and show progress) while the longer ones are still decoding."""
    import torch

    device = model.device
    n = len(rows)
    stats = stats if stats is not None else Stats()
    t0 = time.perf_counter()
    out = [Row() for _ in rows]
    cache = _cache(model, max(len(r) for r in rows) + max_new_tokens)
    flexible = _attention_only(cache)
    # Keep at least one token of every prompt for the batched prefill: it yields the first logits.
    prefix = min(common_prefix(rows), min(len(r) for r in rows) - 1) if share_prefix and n > 1 and flexible else 0
    if prefix < MIN_SHARED_PREFIX:
        prefix = 0
    stats.shared_prefix = prefix
    last = _keeps_last_logits(model)
    if prefix:
        ids = torch.tensor([list(rows[0][:prefix])], device=device)
        model(input_ids=ids, past_key_values=cache, use_cache=True, **last)
        cache.batch_repeat_interleave(n)
        stats.prefill_tokens += prefix
    tails = [list(r[prefix:]) for r in rows]
    width = max(len(t) for t in tails)
    input_ids = torch.tensor([[pad_id] * (width - len(t)) + t for t in tails], device=device)
    mask = torch.tensor([[1] * prefix + [0] * (width - len(t)) + [1] * len(t) for t in tails], device=device)
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
    stats.prefill_tokens += n * width
    logits = model(input_ids=input_ids, attention_mask=mask, position_ids=positions[:, -width:],
                   past_key_values=cache, use_cache=True, **last).logits
    next_pos = positions[:, -1:] + 1
    alive = list(range(n))  # the rows in the batch tensors
    done: set[int] = set()
    while True:
        nxt = logits[:, -1, :].float().argmax(-1)
        elapsed = time.perf_counter() - t0
        finished = []
        for i, t in zip(alive, nxt.tolist()):
            if i in done:  # a finished row kept in an inflexible batch: its output is ignored
                continue
            row = out[i]
            if t in eos_ids:
                row.stopped = True
            else:
                row.tokens.append(t)
            if row.stopped or len(row.tokens) >= max_new_tokens:
                row.seconds = elapsed
                finished.append(i)
        done.update(finished)
        running = [j for j, i in enumerate(alive) if i not in done]
        if running and flexible and len(running) < len(alive):
            idx = torch.tensor(running, device=device)
            select_rows(cache, idx)
            mask, nxt, next_pos = mask[idx], nxt[idx], next_pos[idx]
            alive = [alive[j] for j in running]
        for i in finished:
            yield i, out[i]
        if not running:
            break
        mask = torch.cat([mask, mask.new_ones((len(alive), 1))], dim=-1)
        logits = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=next_pos,
                       past_key_values=cache, use_cache=True, **last).logits
        next_pos = next_pos + 1
        stats.steps += 1
        stats.row_steps += len(alive)


GQA_SDPA = "jarvis_sdpa_gqa"


def _sdpa_gqa(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, dropout: float = 0.0,
              scaling: float | None = None, is_causal: bool | None = None, **kwargs: Any) -> tuple[Any, None]:
    """transformers' SDPA attention, minus the copy of the KV heads for grouped-query attention on CPU.

    transformers repeats K/V (`repeat_kv`) whenever a mask is given, because CUDA's fused kernels do not
    take a mask with `enable_gqa`; the CPU kernels do, bit for bit the same (tests), and the copy was a
    quarter of a decode step on the demo model."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = getattr(module, "num_key_value_groups", 1)
    if groups == 1 or query.device.type != "cpu" or kwargs.get("position_bias") is not None or kwargs.get("cache") is not None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    causal = bool(query.shape[2] > 1 and attention_mask is None and causal)
    if causal and key.shape[2] > query.shape[2]:
        key, value = key[:, :, : query.shape[2]], value[:, :, : query.shape[2]]
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling, is_causal=causal, enable_gqa=True
    )
    return out.transpose(1, 2).contiguous(), None


def use_gqa_sdpa(model: Any) -> bool:
    """Switch a CPU model that uses SDPA to `_sdpa_gqa` (same numbers, no K/V copy); False when left alone."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    config = getattr(model, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) != "sdpa" or model.device.type != "cpu":
        return False
    AttentionInterface.register(GQA_SDPA, _sdpa_gqa)
    ALL_MASK_ATTENTION_FUNCTIONS.register(GQA_SDPA, sdpa_mask)
    model.set_attn_implementation(GQA_SDPA)
    return True
