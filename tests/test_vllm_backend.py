"""vllm backend: the config -> engine/sampling mapping (pure, no vLLM needed) and, on CUDA, the engine."""

from __future__ import annotations

import importlib.util
import json

import pytest

from jarvis_bench import adapters, backends, config
from jarvis_bench.adapters import Variant
from jarvis_bench.backends import vllm_engine as ve
from jarvis_bench.errors import AdapterError, BackendUnavailable, ConfigError

from .conftest import CONFIG


@pytest.fixture
def cfg():
    c = config.load(CONFIG)
    c.model.backend = "vllm"
    return c


BASE = Variant(name="base")
A16 = Variant(name="run-1", path="/x/run-1/final", rank=16)
A48 = Variant(name="run-2", path="/x/run-2/final", rank=48)


def test_engine_kwargs_default_config(cfg):
    kw = ve.engine_kwargs(cfg, [BASE, A16], "Qwen/Qwen3-30B-A3B")
    assert kw["model"] == kw["tokenizer"] == "Qwen/Qwen3-30B-A3B"
    assert kw["enable_lora"] is True and kw["max_loras"] == 1 and kw["max_lora_rank"] == 16
    assert kw["tensor_parallel_size"] == 1 and kw["pipeline_parallel_size"] == 1
    assert kw["quantization"] == "bitsandbytes"  # model.quantization "4bit"
    assert kw["seed"] == cfg.generation.seed and kw["trust_remote_code"] is False
    assert "max_model_len" not in kw and "distributed_executor_backend" not in kw


def test_engine_kwargs_parallel_and_prequantized(cfg):
    cfg.model.vllm = config.VllmSection(tensor_parallel_size=4, pipeline_parallel_size=2, gpu_memory_utilization=0.8,
                                        max_model_len=4096, distributed_executor_backend="ray", quantization="awq")
    kw = ve.engine_kwargs(cfg, [BASE, A16, A48], "org/model-AWQ")
    assert (kw["tensor_parallel_size"], kw["pipeline_parallel_size"]) == (4, 2)
    assert kw["gpu_memory_utilization"] == 0.8 and kw["max_model_len"] == 4096
    assert kw["distributed_executor_backend"] == "ray" and kw["quantization"] == "awq"
    assert kw["max_loras"] == kw["max_cpu_loras"] == 2 and kw["max_lora_rank"] == 64  # 48 rounds up


def test_engine_kwargs_without_adapters_and_unquantized(cfg):
    cfg.model.quantization = "none"
    cfg.model.dtype = "bfloat16"
    kw = ve.engine_kwargs(cfg, [BASE], "m")
    assert "enable_lora" not in kw and "quantization" not in kw and kw["dtype"] == "bfloat16"


def test_8bit_has_no_vllm_mapping(cfg):
    cfg.model.quantization = "8bit"
    with pytest.raises(ConfigError, match="8bit"):
        ve.engine_kwargs(cfg, [BASE], "m")


@pytest.mark.parametrize(("ranks", "expected"), [([4], 8), ([8], 8), ([9, 16], 16), ([200], 256), ([300], 320)])
def test_lora_rank_rounds_up(ranks, expected):
    assert ve.lora_rank(ranks) == expected


def test_lora_rank_too_big():
    with pytest.raises(AdapterError, match="maximum"):
        ve.lora_rank([1024])


def test_sampling_is_greedy(cfg):
    cfg.generation.max_new_tokens = 77
    assert ve.sampling_kwargs(cfg) == {"temperature": 0.0, "max_tokens": 77, "seed": cfg.generation.seed,
                                       "skip_special_tokens": True}


def test_lora_specs_ids_start_at_one():
    assert ve.lora_specs([BASE, A16, A48]) == {"run-1": ("run-1", 1, "/x/run-1/final"),
                                               "run-2": ("run-2", 2, "/x/run-2/final")}


def test_expert_targets():
    assert ve.expert_targets({"target_parameters": ["mlp.experts.gate_up_proj"]}, []) == ["mlp.experts.gate_up_proj"]
    names = ["base_model.model.model.layers.0.mlp.experts.3.down_proj.lora_A.weight",
             "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"]
    assert ve.expert_targets({}, names) == names[:1]
    assert ve.expert_targets({"target_modules": ["q_proj"]}, names[1:]) == []


def test_demo_adapter_has_no_expert_targets():
    from jarvis_bench.demo import DEMO_ADAPTER
    from jarvis_bench.sizing import safetensors_shapes

    ac = json.loads((DEMO_ADAPTER / "adapter_config.json").read_text(encoding="utf-8"))
    assert ve.expert_targets(ac, list(safetensors_shapes(DEMO_ADAPTER / "adapter_model.safetensors"))) == []


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed here")
def test_missing_extra_says_how_to_install(cfg):
    with pytest.raises(BackendUnavailable, match="uv sync --extra vllm"):
        backends.create(cfg)


def test_registry_lists_every_backend():
    assert backends.names() == ["transformers", "vllm", "openai", "replay"]


@pytest.mark.gpu
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs the vllm extra")
def test_vllm_engine_on_the_demo(demo_run, tmp_path):
    """base + demo LoRA through vLLM from one engine; greedy answers close to the transformers backend's."""
    from jarvis_bench.commands import benchmark

    code = benchmark.main(["--demo", "--backend", "vllm", "--output-dir", str(tmp_path), "--quiet", "--no-cache"])
    assert code == 0
    data = json.loads((tmp_path / "benchmark_results.json").read_text(encoding="utf-8"))
    assert data["metadata"]["backend"] == "vllm" and data["metadata"]["complete"]
    local = {(r["id"], v): a["response"] for r in demo_run["data"]["results"] for v, a in r["variants"].items()}
    same = sum(a["response"] == local[(r["id"], v)] for r in data["results"] for v, a in r["variants"].items())
    print(f"vLLM answers equal to the transformers backend's (CPU fp32 vs CUDA): {same}/60")
    assert same >= 30


def test_discover_keeps_the_rank_vllm_needs(cfg):
    from jarvis_bench.demo import DEMO_ADAPTER

    cfg.model.adapters = [str(DEMO_ADAPTER)]
    variants = adapters.discover(cfg, digest=False)
    assert ve.engine_kwargs(cfg, variants, "m")["max_lora_rank"] == 16
