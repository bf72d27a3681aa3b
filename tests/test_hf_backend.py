"""The transformers+peft backend on the real demo model and on a tiny random Qwen3."""

from __future__ import annotations

import pytest

from jarvis_bench import adapters, chat, config, demo
from jarvis_bench.backends import Request, create
from jarvis_bench.backends.hf import TransformersBackend

from .conftest import CONFIG, FIXTURES

SUBSET = ["cmd-01", "cmd-04", "cor-01", "cor-06", "rt-02", "rt-05"]


@pytest.fixture(scope="session")
def demo_cfg(demo_base):
    cfg = demo.apply(config.load(CONFIG))
    cfg.generation.max_new_tokens = 40
    return cfg


@pytest.fixture(scope="session")
def demo_backend(demo_cfg):
    variants = adapters.discover(demo_cfg)
    backend = create(demo_cfg, device="cpu")
    backend.prepare(variants)
    return backend, variants


def _requests(cfg, ids):
    by_id = {p.id: p for p in cfg.prompts}
    return [Request(i, tuple(chat.messages(cfg, by_id[i]))) for i in ids]


def _answers(backend, variant, reqs):
    return {g.prompt_id: g for g in backend.generate(variant, reqs)}


def test_batched_equals_one_prompt_at_a_time(demo_cfg, demo_backend):
    backend, variants = demo_backend
    reqs = _requests(demo_cfg, SUBSET)
    for v in variants:
        demo_cfg.generation.batch_size = len(reqs)
        batched = _answers(backend, v, reqs)
        assert {g.batch_size for g in batched.values()} == {len(reqs)}
        demo_cfg.generation.batch_size = 1
        single = _answers(backend, v, reqs)
        demo_cfg.generation.batch_size = "auto"
        for pid in SUBSET:
            assert batched[pid].response == single[pid].response, (v.name, pid)
            assert batched[pid].tokens == single[pid].tokens


def test_base_via_disable_adapter_equals_a_model_without_adapter(demo_cfg, demo_backend):
    backend, variants = demo_backend
    reqs = _requests(demo_cfg, SUBSET)
    with_adapter_loaded = _answers(backend, variants[0], reqs)
    plain_cfg = demo_cfg.model_copy(deep=True)
    plain_cfg.model.adapters = []
    plain = create(plain_cfg, device="cpu")
    plain.prepare([adapters.BASE_VARIANT])
    without = _answers(plain, adapters.BASE_VARIANT, reqs)
    from peft import PeftModel

    assert not isinstance(plain.model, PeftModel) and isinstance(backend.model, PeftModel)
    for pid in SUBSET:
        assert with_adapter_loaded[pid].response == without[pid].response, pid
    # and the adapter really changes the answers
    tuned = _answers(backend, variants[1], reqs)
    assert sum(tuned[p].response != without[p].response for p in SUBSET) >= len(SUBSET) // 2


def test_generation_is_greedy_and_ignores_model_sampling_defaults(demo_backend):
    backend, _ = demo_backend
    backend.model.generation_config.do_sample = True
    backend.model.generation_config.temperature = 0.6
    backend.model.generation_config.top_p = 0.5
    backend.model.generation_config.repetition_penalty = 1.3
    try:
        gc = backend._generation_config()
        final, _ = backend.model._prepare_generation_config(gc)
        assert final.do_sample is False and final.num_beams == 1
        assert final.repetition_penalty == 1.0 and final.temperature == 1.0 and final.top_p == 1.0
    finally:
        backend.model.generation_config.do_sample = False
        backend.model.generation_config.temperature = None
        backend.model.generation_config.top_p = None
        backend.model.generation_config.repetition_penalty = None


def test_truncated_flag_and_token_counts(demo_cfg, demo_backend):
    backend, variants = demo_backend
    reqs = _requests(demo_cfg, ["rt-02"])
    gen = _answers(backend, variants[0], reqs)["rt-02"]
    assert gen.tokens <= demo_cfg.generation.max_new_tokens
    assert gen.truncated == (gen.tokens == demo_cfg.generation.max_new_tokens)
    assert gen.response and gen.error is None and gen.latency_s > 0


def test_oom_halves_the_batch_and_retries(demo_cfg, demo_backend, monkeypatch):
    import torch

    backend, variants = demo_backend
    reqs = _requests(demo_cfg, SUBSET[:4])
    real = backend._generate_batch
    sizes = []

    def flaky(variant, batch, gen_cfg):
        sizes.append(len(batch))
        if len(batch) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(variant, batch, gen_cfg)

    monkeypatch.setattr(backend, "_generate_batch", flaky)
    demo_cfg.generation.batch_size = 4
    try:
        out = _answers(backend, variants[1], reqs)
    finally:
        demo_cfg.generation.batch_size = "auto"
    assert sizes == [4, 2, 1, 1, 2, 1, 1]
    assert set(out) == set(SUBSET[:4])


# ----------------------------------------------------------------------------- Qwen3 path


@pytest.fixture(scope="session")
def tiny_qwen3(tmp_path_factory, demo_base):
    """A tiny random Qwen3ForCausalLM with the SmolLM2 tokenizer and the real Qwen3 chat template."""
    import torch
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    tok = AutoTokenizer.from_pretrained(demo_base)
    tok.chat_template = (FIXTURES / "qwen3_chat_template.jinja").read_text(encoding="utf-8")
    torch.manual_seed(0)
    cfg = Qwen3Config(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, max_position_embeddings=2048, tie_word_embeddings=True,
        eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"), pad_token_id=tok.pad_token_id,
    )
    model = Qwen3ForCausalLM(cfg)
    path = tmp_path_factory.mktemp("tiny-qwen3")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _qwen_cfg(path, thinking: bool):
    cfg = config.load(CONFIG)
    cfg.model.base = str(path)
    cfg.model.adapters = []
    cfg.generation.enable_thinking = thinking
    cfg.generation.max_new_tokens = 8
    return cfg


@pytest.mark.parametrize("thinking", [False, True])
def test_qwen3_enable_thinking_reaches_the_prompt(tiny_qwen3, thinking):
    cfg = _qwen_cfg(tiny_qwen3, thinking)
    backend = TransformersBackend(cfg, device="cpu")
    backend.prepare([adapters.BASE_VARIANT])
    req = _requests(cfg, ["rt-01"])[0]
    text = backend.render(req)
    assert text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n") is (not thinking)
    assert "# Tools" in text and '"name": "volume_up_tool"' in text  # the catalog reaches Qwen3's template
    gens = list(backend.generate(adapters.BASE_VARIANT, [req]))
    assert len(gens) == 1 and gens[0].tokens <= 8 and gens[0].error is None
    assert backend.info()["model_type"] == "qwen3"


def test_qwen3_think_blocks_are_stripped_and_counted(tiny_qwen3, monkeypatch):
    cfg = _qwen_cfg(tiny_qwen3, True)
    backend = TransformersBackend(cfg, device="cpu")
    backend.prepare([adapters.BASE_VARIANT])
    req = _requests(cfg, ["rt-01"])[0]
    tok = backend.tokenizer
    monkeypatch.setattr(tok, "decode", lambda ids, **kw: "<think>il veut du son</think>\n\nJe monte le son.")
    gen = next(backend.generate(adapters.BASE_VARIANT, [req]))
    assert gen.response == "Je monte le son." and gen.thinking_chars == len("<think>il veut du son</think>")


@pytest.mark.gpu
@pytest.mark.parametrize("quantization", ["4bit", "8bit", "none"])
def test_cuda_quantized_load_and_generate(tiny_qwen3, quantization):
    cfg = _qwen_cfg(tiny_qwen3, False)
    cfg.model.quantization = quantization
    backend = TransformersBackend(cfg, device="cuda")
    backend.prepare([adapters.BASE_VARIANT])
    gens = list(backend.generate(adapters.BASE_VARIANT, _requests(cfg, ["rt-01", "cmd-01"])))
    info = backend.info()
    assert len(gens) == 2 and info["quantization"] == quantization and info["dtype"] == "bfloat16"
    assert info["peak_gpu_memory_gib"] > 0 and info["gpu"]
