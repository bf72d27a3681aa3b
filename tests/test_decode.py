"""decode.greedy against transformers' own `generate`, and its parts (shared prefix, rows leaving, cache, GQA SDPA)."""

from __future__ import annotations

import contextlib

import pytest

from jarvis_bench.backends import decode

from .test_hf_backend import SUBSET, _requests


def _reference(model, ids, max_new, eos, pad):
    """What `model.generate` gives for one prompt alone (no padding, no batching)."""
    import torch

    out = model.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                         max_new_tokens=max_new, do_sample=False, num_beams=1, pad_token_id=pad,
                         eos_token_id=sorted(eos))
    row = out[0, len(ids):].tolist()
    stop = next((i for i, t in enumerate(row) if t in eos), None)
    return row if stop is None else row[:stop]


@pytest.fixture(scope="module")
def prompts(demo_cfg, demo_backend):
    backend, _ = demo_backend
    return [backend.token_ids(r) for r in _requests(demo_cfg, SUBSET)]


class Engine:
    """The demo backend's loaded model, a variant selected, and its end-of-turn / padding ids."""

    def __init__(self, backend, variants):
        if backend.model is None:
            backend._load()
        self.backend, self.variants = backend, variants
        self.eos, self.pad = backend._eos_ids(), backend.tokenizer.pad_token_id

    @contextlib.contextmanager
    def selected(self, variant_index):
        import torch

        with torch.inference_mode(), self.backend._select(self.variants[variant_index]):
            yield self.backend.model

    def greedy(self, variant_index, prompts, max_new_tokens, **kw):
        kw.setdefault("eos_ids", self.eos)
        with self.selected(variant_index) as model:
            return decode.greedy(model, prompts, max_new_tokens=max_new_tokens, pad_id=self.pad, **kw)


@pytest.fixture(scope="module")
def engine(demo_backend):
    return Engine(*demo_backend)


@pytest.mark.parametrize("variant_index", [0, 1], ids=["base", "adapter"])
def test_greedy_matches_generate_one_prompt_at_a_time(engine, prompts, variant_index):
    rows, stats = engine.greedy(variant_index, prompts, 40)
    with engine.selected(variant_index) as model:
        for ids, row in zip(prompts, rows):
            assert row.tokens == _reference(model, ids, 40, engine.eos, engine.pad)
    assert stats.shared_prefix >= decode.MIN_SHARED_PREFIX  # the system prompt is shared
    assert stats.prefill_tokens < sum(len(p) for p in prompts)


def test_shared_prefix_and_rows_leaving_change_nothing_but_the_work(engine, prompts):
    s1 = decode.Stats()
    with engine.selected(1) as model:
        streamed = list(decode.stream(model, prompts, max_new_tokens=40, eos_ids=engine.eos, pad_id=engine.pad,
                                      stats=s1))
    shared = [row for _, row in sorted(streamed, key=lambda x: x[0])]
    alone, s2 = engine.greedy(1, prompts, 40, share_prefix=False)
    assert [r.tokens for r in shared] == [r.tokens for r in alone]
    assert s1.shared_prefix > 0 and s2.shared_prefix == 0 and s1.prefill_tokens < s2.prefill_tokens
    # the adapter's answers end at different lengths: finished rows left the batch
    lengths = [len(r.tokens) + r.stopped for r in shared]
    assert len(set(lengths)) > 1
    assert s1.row_steps == sum(n - 1 for n in lengths) < s1.steps * len(prompts)
    # each answer comes out when it ends: shortest first, every prompt exactly once
    assert sorted(i for i, _ in streamed) == list(range(len(prompts)))
    ends = [len(row.tokens) + row.stopped for _, row in streamed]
    assert ends == sorted(ends)
    assert all(r.seconds > 0 for r in shared)
    first = min(range(len(prompts)), key=lambda i: lengths[i])
    assert shared[first].seconds < max(r.seconds for r in shared)  # per-answer latency, not the batch's


def test_truncation_and_eos_accounting(engine, prompts):
    rows, stats = engine.greedy(0, prompts[:2], 5, eos_ids=set())
    assert [len(r.tokens) for r in rows] == [5, 5] and not any(r.stopped for r in rows)
    assert stats.steps == 4  # the first token comes from the prefill


def test_common_prefix():
    assert decode.common_prefix([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert decode.common_prefix([[5, 1], [6, 1]]) == 0
    assert decode.common_prefix([[1, 2, 3]]) == 3


def test_preallocated_cache_layer_in_place_select_repeat_and_grow():
    import torch
    from transformers import LlamaConfig

    cfg = LlamaConfig(num_hidden_layers=1, hidden_size=8, num_attention_heads=2, num_key_value_heads=1,
                      intermediate_size=8, vocab_size=16)

    class Stub:
        config = cfg

    cache = decode._cache(Stub(), capacity=3)
    layer = cache.layers[0]
    k = torch.arange(2 * 1 * 2 * 4, dtype=torch.float32).reshape(2, 1, 2, 4)
    keys, values = layer.update(k, k + 100)
    assert torch.equal(keys, k) and cache.get_seq_length() == 2
    buffer = layer._k
    keys, _ = layer.update(k[:, :, :1] * -1, k[:, :, :1])
    assert layer._k.data_ptr() == buffer.data_ptr()  # written in place, no reallocation
    assert keys.shape == (2, 1, 3, 4) and torch.equal(keys[:, :, 2], -k[:, :, 0])
    keys, _ = layer.update(k, k)  # beyond the capacity: grows instead of failing
    assert keys.shape == (2, 1, 5, 4) and torch.equal(keys[:, :, 3:], k)
    cache.batch_select_indices(torch.tensor([1]))
    assert torch.equal(layer.keys[0, :, :2], k[1, :, :2]) and layer.keys.shape[0] == 1
    cache.batch_repeat_interleave(3)
    assert layer.keys.shape == (3, 1, 5, 4) and torch.equal(layer.keys[2], layer.keys[0])


def test_rows_leave_every_layer_on_its_own_device():
    """A model split over GPUs keeps each layer's cache (full-attention and sliding-window alike) on that
    layer's device; the row indices must reach each layer there. Here the second GPU is the meta device."""
    import torch
    from transformers import Qwen3Config
    from transformers.cache_utils import DynamicSlidingWindowLayer

    cfg = Qwen3Config(num_hidden_layers=4, hidden_size=8, num_attention_heads=2, num_key_value_heads=1,
                      intermediate_size=8, vocab_size=16, head_dim=4, use_sliding_window=True, sliding_window=4,
                      layer_types=["full_attention", "sliding_attention"] * 2)

    class Stub:
        config = cfg

    cache = decode._cache(Stub(), capacity=6)
    assert [type(layer) is DynamicSlidingWindowLayer for layer in cache.layers] == [False, True] * 2
    seen = []
    for i, layer in enumerate(cache.layers):
        device = "cpu" if i < 2 else "meta"
        k = torch.zeros(3, 1, 2, 4, device=device)
        layer.update(k, k)
        real = layer.batch_select_indices
        layer.batch_select_indices = lambda idx, real=real, layer=layer: (seen.append((idx.device, layer.device)), real(idx))
    decode.select_rows(cache, torch.tensor([0, 2]))
    assert [a == b for a, b in seen] == [True] * 4 and [b.type for _, b in seen] == ["cpu", "cpu", "meta", "meta"]
    assert all(layer.keys.shape[0] == 2 for layer in cache.layers)


@pytest.mark.parametrize("q_len", [1, 5])
def test_gqa_sdpa_is_bit_identical_to_transformers_sdpa(q_len):
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    torch.manual_seed(0)

    class Module(torch.nn.Module):
        num_key_value_groups = 3
        is_causal = True

    q = torch.randn(4, 9, q_len, 16)
    k, v = torch.randn(4, 3, 12, 16), torch.randn(4, 3, 12, 16)
    mask = torch.ones(4, 1, q_len, 12, dtype=torch.bool)
    mask[1, ..., :4] = False
    mask[3, ..., 2:6] = False
    for m in (mask, None):
        want, _ = sdpa_attention_forward(Module(), q, k, v, m, scaling=0.25)
        got, _ = decode._sdpa_gqa(Module(), q, k, v, m, scaling=0.25)
        assert torch.equal(got, want)


def test_gqa_sdpa_is_only_switched_on_for_cpu_sdpa_models(engine):
    backend = engine.backend
    assert backend.model.config._attn_implementation == decode.GQA_SDPA
    assert backend.info()["attention"] == decode.GQA_SDPA

    class Eager:
        class config:  # noqa: N801
            _attn_implementation = "eager"

    assert decode.use_gqa_sdpa(Eager()) is False


def test_tiny_qwen3_greedy_matches_generate(tiny_qwen3):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_qwen3, dtype=torch.float32).eval()
    assert decode.use_gqa_sdpa(model)
    prompts = [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 40, 41], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 50],
               [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 60, 61, 62, 63]]
    with torch.inference_mode():
        rows, stats = decode.greedy(model, prompts, max_new_tokens=12, eos_ids={0}, pad_id=0)
        for ids, row in zip(prompts, rows):
            assert row.tokens == _reference(model, ids, 12, {0}, 0)
    assert stats.shared_prefix == 11


def test_models_without_logits_to_keep_get_the_same_tokens(engine, prompts, monkeypatch):
    """Custom (remote-code) models may not take `logits_to_keep`: the last position is sliced instead."""
    want, _ = engine.greedy(0, prompts[:3], 12)
    assert decode._keeps_last_logits(engine.backend.model) == {"logits_to_keep": 1}
    monkeypatch.setattr(decode, "_keeps_last_logits", lambda model: {})
    got, _ = engine.greedy(0, prompts[:3], 12)
    assert [r.tokens for r in got] == [r.tokens for r in want]


def test_caches_with_non_attention_layers_decode_the_plain_left_padded_way(engine, prompts, monkeypatch):
    """Hybrid models (recurrent / linear-attention layers): no shared prefix, no row leaving, same tokens."""
    want, _ = engine.greedy(1, prompts, 24)
    monkeypatch.setattr(decode, "_attention_only", lambda cache: False)
    got, stats = engine.greedy(1, prompts, 24)
    assert [r.tokens for r in got] == [r.tokens for r in want]
    assert stats.shared_prefix == 0 and stats.row_steps == stats.steps * len(prompts)


def test_attention_only_recognises_the_cache_layers(tiny_qwen3):
    from transformers import AutoConfig
    from transformers.cache_utils import DynamicLayer

    class Stub:
        config = AutoConfig.from_pretrained(tiny_qwen3)

    cache = decode._cache(Stub(), capacity=8)
    assert decode._attention_only(cache)
    cache.layers.append(object.__new__(type("LinearAttentionLayer", (), {})))
    assert not decode._attention_only(cache)
    assert all(isinstance(layer, DynamicLayer) for layer in cache.layers[:-1])
