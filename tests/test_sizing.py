"""sizing: parameter counts from config.json must equal the real models'; what bitsandbytes quantizes."""

from __future__ import annotations

import json

import pytest

from jarvis_bench import gpu, sizing

QWEN3_30B_A3B = sizing.KNOWN_CONFIGS["Qwen/Qwen3-30B-A3B"]  # the published config.json (structure fields)
TINY = {
    "llama": dict(hidden_size=96, intermediate_size=160, num_hidden_layers=3, num_attention_heads=6,
                  num_key_value_heads=2, vocab_size=500, tie_word_embeddings=True),
    "qwen2": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=300, tie_word_embeddings=False),
    "qwen3": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=32, vocab_size=300, tie_word_embeddings=True),
    "qwen3_moe": dict(hidden_size=64, intermediate_size=128, moe_intermediate_size=32, num_experts=8,
                      num_experts_per_tok=2, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                      head_dim=16, vocab_size=300, tie_word_embeddings=False, mlp_only_layers=[1]),
    "mixtral": dict(hidden_size=64, intermediate_size=96, num_local_experts=4, num_experts_per_tok=2,
                    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=300),
}


def _meta_model(model_type: str, **kw):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model(model_type, **kw)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(cfg), cfg.to_dict()


def _real_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("model_type", sorted(TINY))
def test_count_equals_transformers(model_type):
    model, cfg = _meta_model(model_type, **TINY[model_type])
    assert sizing.count_params(cfg).total == _real_count(model)


def test_count_of_qwen3_30b_a3b_matches_the_real_architecture():
    kw = {k: v for k, v in QWEN3_30B_A3B.items() if k != "model_type"}
    model, _ = _meta_model("qwen3_moe", **kw)
    p = sizing.count_params(QWEN3_30B_A3B)
    assert p.total == _real_count(model) == 30_532_122_624
    assert 3.2e9 < p.active < 3.4e9 and p.is_moe  # "A3B": ~3.3 B read per token


def test_count_of_the_demo_model(demo_base):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(demo_base))
    cfg = json.loads((demo_base / "config.json").read_text(encoding="utf-8"))
    assert sizing.count_params(cfg).total == _real_count(model)


@pytest.mark.parametrize("model_type", ["llama", "qwen3_moe"])
def test_linear_is_what_bitsandbytes_quantizes(model_type):
    """transformers' own replace_with_bnb_linear decides; fused MoE experts are not converted."""
    import bitsandbytes as bnb
    from transformers import BitsAndBytesConfig
    from transformers.integrations.bitsandbytes import replace_with_bnb_linear

    model, cfg = _meta_model(model_type, **TINY[model_type])
    model = replace_with_bnb_linear(model, modules_to_not_convert=["lm_head"],
                                    quantization_config=BitsAndBytesConfig(load_in_4bit=True))
    converted = sum(p.numel() for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)
                    for p in m.parameters(recurse=False))
    assert sizing.count_params(cfg).linear == converted


@pytest.mark.parametrize(("name", "total", "active"), [
    ("Qwen/Qwen3-30B-A3B", 30e9, 3e9),
    ("meta-llama/Llama-3.1-8B-Instruct", 8e9, 8e9),
    ("HuggingFaceTB/SmolLM2-135M-Instruct", 135e6, 135e6),
    ("Qwen/Qwen2.5-0.5B", 0.5e9, 0.5e9),
    ("mistralai/Mixtral-8x7B-v0.1", 56e9, 56e9),  # 8 experts of 7 B: an upper bound (real: 46.7 B)
])
def test_params_from_name(name, total, active):
    p = sizing.params_from_name(name)
    assert (p.total, p.active) == (int(total), int(active))
    assert p.source == "name"


def test_no_size_in_the_name():
    assert sizing.params_from_name("gpt2") is None
    assert sizing.params_from_name("./my-model") is None


def test_estimates_order_and_the_moe_trap():
    dense = sizing.params_from_name("meta-llama/Llama-3.1-8B")
    q4, q8, bf16 = (sizing.estimate(dense, quantization=q, dtype="bfloat16") for q in ("4bit", "8bit", "none"))
    assert q4.weights_gib < q8.weights_gib < bf16.weights_gib
    assert bf16.weights_gib == pytest.approx(8e9 * 2 / sizing.GIB)
    assert q4.weights_gib == pytest.approx(8e9 * 0.516 / sizing.GIB, rel=0.01)
    # Qwen3-30B-A3B in 4-bit, experts included (moe_4bit): 15.55 GiB of weights, fits a 24 GB card with
    # 30 prompts at once; only embeddings, LM head, norms and routers stay bf16.
    p = sizing.count_params(QWEN3_30B_A3B)
    moe = sizing.estimate(p, quantization="4bit", dtype="bfloat16", config=QWEN3_30B_A3B, batch=30)
    assert moe.weights_gib == pytest.approx(15.55, abs=0.01)
    assert moe.unquantized_gib < 1.2 and 17 < moe.minimum_gib < moe.comfortable_gib < 20.5
    # the grouped experts forward dequantizes one layer's gate_up stack at once: 128 x 1536 x 2048 in bf16
    assert moe.experts_work_gib == pytest.approx(128 * 1536 * 2048 * 2 / sizing.GIB)
    assert sizing.estimate(p, quantization="4bit", dtype="bfloat16", config=QWEN3_30B_A3B, cuda=False).experts_work_gib == 0
    assert moe.kv_gib_batch1 == pytest.approx(2 * 48 * 4 * 128 * 2 * sizing.CONTEXT_TOKENS / sizing.GIB)
    assert p.experts == 48 * 128 * 3 * 2048 * 768
    # 8-bit: bitsandbytes' int8 converts nn.Linear only, the experts stay bf16 (the backend refuses it)
    q8 = sizing.estimate(p, quantization="8bit", dtype="bfloat16", config=QWEN3_30B_A3B)
    assert q8.unquantized_gib > 50 and q8.minimum_gib > 24


def test_demo_adapter_fits_the_demo_base_only(demo_base):
    from jarvis_bench.demo import DEMO_ADAPTER

    shapes = sizing.safetensors_shapes(DEMO_ADAPTER / "adapter_model.safetensors")
    assert shapes and all(len(s) == 2 for s in shapes.values())
    demo_cfg = json.loads((demo_base / "config.json").read_text(encoding="utf-8"))
    assert sizing.lora_mismatch(shapes, demo_cfg) is None
    why = sizing.lora_mismatch(shapes, QWEN3_30B_A3B)
    assert why and "576" in why
    fewer_layers = {**demo_cfg, "num_hidden_layers": 4}
    assert "layer" in sizing.lora_mismatch(shapes, fewer_layers)


def test_memory_bandwidth_and_decode_bound():
    # the datasheet numbers from the device properties CUDA reports
    assert gpu.bandwidth_gbs_from(10_501_000, 384) == pytest.approx(1008, rel=0.01)  # RTX 4090
    assert gpu.bandwidth_gbs_from(2_619_000, 5120) == pytest.approx(3352, rel=0.01)  # H100 SXM
    assert gpu.bandwidth_gbs_from(0, 5120) is None  # CUDA 13: cudaDeviceProp has no memoryClockRate any more
    dense = sizing.ParamCount(total=8_000_000_000, active=8_000_000_000, embeddings=0, source="test")
    read, bound = sizing.decode_bound(dense, quantization="none", dtype="bfloat16", bandwidth_gbs=1000)
    assert read == pytest.approx(16e9 / sizing.GIB) and bound == pytest.approx(1000e9 / 16e9)
    # MoE: only the active share is read each step
    moe = sizing.ParamCount(total=30_000_000_000, active=3_000_000_000, embeddings=0, source="test")
    _, moe_bound = sizing.decode_bound(moe, quantization="none", dtype="bfloat16", bandwidth_gbs=1000)
    assert moe_bound == pytest.approx(1000e9 / 6e9)
    # 4-bit reads ~1/4 of bf16 bytes
    _, q = sizing.decode_bound(dense, quantization="4bit", dtype="bfloat16", bandwidth_gbs=1000)
    assert 3.5 < q / bound < 4.0
