"""vllm backend: the config -> engine/sampling mapping (pure, no vLLM needed) and, on CUDA, the engine."""

from __future__ import annotations

import importlib.util
import json

import pytest

from jarvis_bench import adapters, backends, chat, config
from jarvis_bench.adapters import Variant
from jarvis_bench.backends import vllm_engine as ve
from jarvis_bench.errors import AdapterError, BackendUnavailable, ConfigError

from .conftest import CONFIG, write_config
from .test_moe import E, _write_t4_adapter, moe_adapters, tiny_moe  # noqa: F401 - fixtures

HAS_VLLM = importlib.util.find_spec("vllm") is not None
HAS_BNB_PLUGIN = importlib.util.find_spec("vllm_bnb_plugin") is not None


@pytest.fixture
def cfg():
    c = config.load(CONFIG)
    c.model.backend = "vllm"
    return c


BASE = Variant(name="base")
A16 = Variant(name="run-1", path="/x/run-1/final", rank=16)
A48 = Variant(name="run-2", path="/x/run-2/final", rank=48)


def test_engine_kwargs_default_config(cfg):
    kw = ve.engine_kwargs(cfg, [BASE, A16], "org/dense-model")
    assert kw["model"] == kw["tokenizer"] == "org/dense-model"
    assert kw["enable_lora"] is True and kw["max_lora_rank"] == 16
    assert kw["tensor_parallel_size"] == 1 and kw["pipeline_parallel_size"] == 1
    assert kw["quantization"] == "bitsandbytes"  # model.quantization "4bit": the vllm-bnb-plugin's NF4
    assert kw["seed"] == cfg.generation.seed and kw["trust_remote_code"] is False
    assert "max_model_len" not in kw and "distributed_executor_backend" not in kw
    assert "enable_mixed_moe_lora_format" not in kw


def test_one_gpu_lora_slot_every_adapter_on_the_cpu_side(cfg):
    """One adapter runs at a time: one GPU slot (each reserves LoRA buffers in every layer, ~GBs for MoE
    experts), every adapter in the CPU cache (vllm 0.33 config/lora.py: max_cpu_loras >= max_loras)."""
    kw = ve.engine_kwargs(cfg, [BASE, A16, A48, Variant(name="run-3", path="/x/3", rank=8)], "m")
    assert kw["max_loras"] == 1 and kw["max_cpu_loras"] == 3


def test_4bit_moe_with_adapters_is_refused_with_what_works(cfg):
    """vLLM's bitsandbytes MoE layer has no LoRA kernel (vllm 0.33 lora/layers/fused_moe.py: "Old-style
    modular kernel not supported"): the default config (Qwen3-30B-A3B, 4bit) plus an adapter cannot start."""
    with pytest.raises(ConfigError) as err:
        ve.engine_kwargs(cfg, [BASE, A16], "Qwen/Qwen3-30B-A3B", moe=True)
    msg = str(err.value)
    assert "bitsandbytes" in msg and '"none"' in msg and "AWQ/GPTQ" in msg and '"transformers"' in msg
    assert ve.engine_kwargs(cfg, [BASE], "Qwen/Qwen3-30B-A3B", moe=True)["quantization"] == "bitsandbytes"
    cfg.model.quantization = "none"
    cfg.model.dtype = "bfloat16"
    assert "quantization" not in ve.engine_kwargs(cfg, [BASE, A16], "m", moe=True)
    cfg.model.vllm.quantization = "awq"
    assert ve.engine_kwargs(cfg, [BASE, A16], "m", moe=True)["quantization"] == "awq"


def test_engine_kwargs_parallel_and_prequantized(cfg):
    cfg.model.vllm = config.VllmSection(tensor_parallel_size=4, pipeline_parallel_size=2, gpu_memory_utilization=0.8,
                                        max_model_len=4096, distributed_executor_backend="ray", quantization="awq")
    kw = ve.engine_kwargs(cfg, [BASE, A16, A48], "org/model-AWQ")
    assert (kw["tensor_parallel_size"], kw["pipeline_parallel_size"]) == (4, 2)
    assert kw["gpu_memory_utilization"] == 0.8 and kw["max_model_len"] == 4096
    assert kw["distributed_executor_backend"] == "ray" and kw["quantization"] == "awq"
    assert kw["max_loras"] == 1 and kw["max_cpu_loras"] == 2 and kw["max_lora_rank"] == 64  # 48 rounds up


def test_ray_and_the_bitsandbytes_plugin_are_in_the_vllm_extra():
    import tomllib

    from .conftest import ROOT

    extra = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    names = {d.split(">")[0].split("=")[0].split(";")[0].strip() for d in extra["vllm"]}
    assert {"vllm", "vllm-bnb-plugin", "ray"} <= names
    lock = (ROOT / "uv.lock").read_text(encoding="utf-8")
    assert 'name = "vllm-bnb-plugin"' in lock and 'name = "ray"' in lock


def test_engine_kwargs_without_adapters_and_unquantized(cfg):
    cfg.model.quantization = "none"
    cfg.model.dtype = "bfloat16"
    kw = ve.engine_kwargs(cfg, [BASE], "m")
    assert "enable_lora" not in kw and "quantization" not in kw and kw["dtype"] == "bfloat16"


def test_8bit_has_no_vllm_mapping(cfg):
    cfg.model.quantization = "8bit"
    with pytest.raises(ConfigError, match="8bit"):
        ve.engine_kwargs(cfg, [BASE], "m")


@pytest.mark.parametrize(("ranks", "expected"), [([1], 1), ([4], 8), ([8], 8), ([9, 16], 16), ([200], 256),
                                                 ([300], 320)])
def test_lora_rank_rounds_up(ranks, expected):
    assert ve.lora_rank(ranks) == expected


def test_lora_rank_too_big():
    with pytest.raises(AdapterError, match="maximum"):
        ve.lora_rank([1024])


def test_sampling_is_greedy(cfg):
    cfg.generation.max_new_tokens = 77
    assert ve.sampling_kwargs(cfg) == {"temperature": 0.0, "max_tokens": 77, "seed": cfg.generation.seed,
                                       "skip_special_tokens": True}


def test_lora_specs_ids_start_at_one_and_flag_fused_experts():
    layouts = {"run-2": ve.AdapterLayout(48, "fused")}
    assert ve.lora_specs([BASE, A16, A48], layouts) == {
        "run-1": {"lora_name": "run-1", "lora_int_id": 1, "lora_path": "/x/run-1/final", "is_3d_lora_weight": False},
        "run-2": {"lora_name": "run-2", "lora_int_id": 2, "lora_path": "/x/run-2/final", "is_3d_lora_weight": True}}


# ----------------------------------------------------------------------------- adapters as vLLM reads them


def _layout(path, experts=E):
    from jarvis_bench.sizing import safetensors_shapes

    ac = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
    return ve.adapter_layout(ac, safetensors_shapes(path / "adapter_model.safetensors"), experts)


def test_adapter_layouts_of_real_adapter_files(moe_adapters):
    """The three kinds an MoE user has: transformers-4 per-expert LoRA (vLLM 0.33 packs them natively),
    peft target_parameters on transformers-5 fused experts (peft nests gate_up_proj as the base_layer of
    down_proj: vLLM converts them with enable_mixed_moe_lora_format), and attention-only."""
    from jarvis_bench.demo import DEMO_ADAPTER

    assert _layout(moe_adapters["t4"]) == ve.AdapterLayout(4, "per_expert")
    assert _layout(moe_adapters["t5"]) == ve.AdapterLayout(4, "fused")
    assert _layout(moe_adapters["experts_only"]) == ve.AdapterLayout(4, "fused")
    assert _layout(moe_adapters["attn"]) == ve.AdapterLayout(4)
    assert _layout(DEMO_ADAPTER, 0) == ve.AdapterLayout(16)


def test_adapters_vllm_would_fail_on_are_named(tmp_path, tiny_moe):
    import torch

    gap = _write_t4_adapter(tmp_path / "gap", tiny_moe, 5, extra_keys={})
    from safetensors.torch import load_file, save_file

    sd = load_file(gap / "adapter_model.safetensors")
    for k in [k for k in sd if ".layers.1.mlp.experts.5.up_proj." in k]:
        del sd[k]
    save_file(sd, str(gap / "adapter_model.safetensors"))
    why = _layout(gap).problem
    assert why and "layer 1" in why and "up_proj of expert 5" in why
    ranks = _write_t4_adapter(tmp_path / "ranks", tiny_moe, 6)
    sd = load_file(ranks / "adapter_model.safetensors")
    sd["base_model.model.model.layers.0.mlp.experts.2.down_proj.lora_A.weight"] = torch.zeros(8, 32)
    save_file(sd, str(ranks / "adapter_model.safetensors"))
    assert "different LoRA ranks on down_proj" in _layout(ranks).problem
    half = ve.adapter_layout({"r": 8, "target_parameters": ["mlp.experts.down_proj"]}, {}, E)
    assert half.experts == "fused" and "trains down_proj" in half.problem


def test_rank_pattern_counts_for_the_engine_rank(cfg):
    """peft's transformers-4 -> 5 conversion writes rank_pattern {gate_up_proj: 2r}; vLLM checks every
    rank against max_lora_rank (vllm 0.33 lora/peft_helper.py)."""
    layout = ve.adapter_layout({"r": 16, "rank_pattern": {".*\\.gate_up_proj": 32}}, {}, 0)
    assert layout.max_rank == 32
    kw = ve.engine_kwargs(cfg, [BASE, A16], "m", layouts={"run-1": ve.AdapterLayout(32, "fused")})
    assert kw["max_lora_rank"] == 32 and kw["enable_mixed_moe_lora_format"] is True


def test_engine_errors_keep_the_reason():
    """vLLM's config classes are pydantic dataclasses: a ValueError in __post_init__ reaches us as a
    ValidationError whose first line is "1 validation error for ModelConfig" (vllm 0.33 config/model.py)."""
    from pydantic.dataclasses import dataclass

    @dataclass
    class ModelConfig:
        quantization: str

        def __post_init__(self):
            raise ValueError(f"Unknown quantization method: {self.quantization}. Must be one of ['awq'].")

    try:
        ModelConfig(quantization="bitsandbytes")
    except Exception as exc:  # noqa: BLE001
        assert str(exc).splitlines()[0] == "1 validation error for ModelConfig"
        assert ve.engine_error(exc) == "Unknown quantization method: bitsandbytes. Must be one of ['awq']."
    core = RuntimeError("Engine core initialization failed. See root cause above. Failed core proc(s): {}")
    assert "log above" in ve.engine_error(core)
    assert ve.engine_error(RuntimeError("CUDA error: out of memory\nmore")) == "CUDA error: out of memory"


# ----------------------------------------------------------------------------- the backend, up to the engine


@pytest.fixture
def fake_cuda(monkeypatch):
    """The backend refuses to exist without CUDA; everything before the engine starts runs on CPU."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "test GPU")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def _vllm_cfg(tmp_path, base, adapter_paths, quantization="none", dtype="bfloat16"):
    data = json.loads(CONFIG.read_text(encoding="utf-8"))
    data["model"].update(base=str(base), adapters=[str(a) for a in adapter_paths], quantization=quantization,
                         dtype=dtype, backend="vllm")
    return config.load(write_config(tmp_path / "vllm.json", data))


def test_prompts_are_the_token_ids_the_transformers_backend_runs(demo_cfg, demo_backend, fake_cuda):
    from .test_hf_backend import SUBSET, _requests

    hf, _ = demo_backend
    cfg = demo_cfg.model_copy(deep=True)
    cfg.model.backend = "vllm"
    backend = ve.VllmBackend(cfg)
    backend.prepare(adapters.discover(cfg, digest=False))
    reqs = _requests(cfg, SUBSET)
    assert backend.prompts(reqs) == [{"prompt_token_ids": hf.token_ids(r)} for r in reqs]
    assert backend.layouts == {"jarvis-demo": ve.AdapterLayout(16)} and backend.moe is False


def test_no_bos_is_added_on_top_of_the_template(demo_base):
    """A Llama/Mistral-style tokenizer adds BOS to any text; the template already wrote one."""
    from tokenizers.processors import TemplateProcessing
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(demo_base)
    bos = tok.convert_tokens_to_ids("<|im_start|>")
    tok._tokenizer.post_processor = TemplateProcessing(single="<|im_start|> $A", special_tokens=[("<|im_start|>", bos)])
    text = tok.apply_chat_template([{"role": "user", "content": "Bonjour"}], add_generation_prompt=True, tokenize=False)
    assert tok(text)["input_ids"][:2] == [bos, bos]  # what vLLM's text path would run
    ids = chat.token_ids(tok, text)
    assert ids[0] == bos and ids[1] != bos


def test_prepare_refuses_a_4bit_moe_with_adapters(tmp_path, tiny_moe, moe_adapters, fake_cuda):
    cfg = _vllm_cfg(tmp_path, tiny_moe, [moe_adapters["t4"]], quantization="4bit")
    backend = ve.VllmBackend(cfg)
    with pytest.raises(ConfigError, match="no LoRA kernel"):
        backend.prepare(adapters.discover(cfg, digest=False))


def test_prepare_reads_moe_adapter_layouts(tmp_path, tiny_moe, moe_adapters, fake_cuda):
    cfg = _vllm_cfg(tmp_path, tiny_moe, [moe_adapters[k] for k in ("t4", "t5", "attn")])
    backend = ve.VllmBackend(cfg)
    variants = adapters.discover(cfg, digest=False)
    backend.prepare(variants)
    assert backend.moe is True
    assert {k: v.experts for k, v in backend.layouts.items()} == {"t4": "per_expert", "t5": "fused", "attn": "none"}
    kw = ve.engine_kwargs(cfg, variants, backend.model_path, moe=True, layouts=backend.layouts)
    assert kw["enable_mixed_moe_lora_format"] is True and kw["max_loras"] == 1 and kw["max_cpu_loras"] == 3
    assert [s["is_3d_lora_weight"] for s in ve.lora_specs(variants, backend.layouts).values()] == [False, True, False]


@pytest.mark.skipif(HAS_BNB_PLUGIN, reason="vllm-bnb-plugin is installed here")
def test_4bit_without_the_bitsandbytes_plugin_says_how_to_get_it(tmp_path, demo_base, fake_cuda):
    cfg = _vllm_cfg(tmp_path, demo_base, [], quantization="4bit")
    with pytest.raises(BackendUnavailable, match="vllm-bnb-plugin.*uv sync --extra vllm"):
        ve.VllmBackend(cfg).prepare([adapters.BASE_VARIANT])


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed here")
def test_missing_extra_says_how_to_install(cfg):
    with pytest.raises(BackendUnavailable, match="uv sync --extra vllm"):
        backends.create(cfg)


def test_registry_lists_every_backend():
    assert backends.names() == ["transformers", "vllm", "openai", "replay"]


def _answers(path):
    data = json.loads((path / "benchmark_results.json").read_text(encoding="utf-8"))
    return data, {(r["id"], v): a["response"] for r in data["results"] for v, a in r["variants"].items()}


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_VLLM, reason="needs the vllm extra")
def test_vllm_and_transformers_answer_alike_on_the_demo(tmp_path):
    """The demo (base + LoRA) in bfloat16 on CUDA through both backends, from the same token ids: vLLM's
    kernels differ, so a few greedy answers may part ways, most must not."""
    from jarvis_bench.commands import benchmark

    common = ["--demo", "--dtype", "bfloat16", "--device", "cuda", "--quiet", "--no-cache"]
    assert benchmark.main([*common, "--output-dir", str(tmp_path / "hf")]) == 0
    assert benchmark.main([*common, "--backend", "vllm", "--output-dir", str(tmp_path / "vllm")]) == 0
    hf_data, hf = _answers(tmp_path / "hf")
    data, got = _answers(tmp_path / "vllm")
    meta = data["metadata"]
    assert meta["backend"] == "vllm" and meta["complete"] and meta["dtype"] == "bfloat16"
    assert hf_data["metadata"]["device"] == "cuda" and hf_data["metadata"]["dtype"] == "bfloat16"
    assert meta["engine_gpu_memory_gib"] > 0.2  # weights + KV cache seen by the driver, not ~0
    same = sum(got[k] == hf[k] for k in hf)
    print(f"vLLM answers equal to the transformers backend's (both CUDA bf16): {same}/{len(hf)}")
    assert same >= 0.5 * len(hf)  # kernels differ (FlashAttention, punica LoRA vs SDPA, peft): greedy ties part


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_VLLM, reason="needs the vllm extra")
def test_vllm_moe_expert_loras(tmp_path, tiny_moe):
    """A tiny Qwen3-MoE in bf16 with two experts-only LoRAs through one vLLM engine: transformers-4
    per-expert and peft target_parameters (fused, through enable_mixed_moe_lora_format). Each must change
    the answers (nothing else in the adapter could), and agree with the transformers backend running the
    same adapters on the same GPU in bf16."""
    from jarvis_bench.backends import Request

    from .test_moe import _write_peft_adapter

    paths = [_write_t4_adapter(tmp_path / "t4x" / "final", tiny_moe, 7, attention=False, scale=1.0),
             _write_peft_adapter(tmp_path / "t5x" / "final", tiny_moe, 8, scale=3.0, target_modules=[],
                                 target_parameters=["mlp.experts.gate_up_proj", "mlp.experts.down_proj"])]
    answers = {}
    for backend_name in ("vllm", "transformers"):
        cfg = _vllm_cfg(tmp_path, tiny_moe, paths)
        cfg.model.backend = backend_name
        cfg.generation.max_new_tokens = 8
        cfg.model.vllm.gpu_memory_utilization = 0.3
        cfg.model.vllm.max_model_len = 2048
        cfg.model.vllm.enforce_eager = True  # no CUDA graphs or compilation: a faster start for a tiny model
        variants = adapters.discover(cfg)
        backend = backends.create(cfg, device="cuda")
        backend.prepare(variants)
        reqs = [Request(p.id, tuple(chat.messages(cfg, p))) for p in cfg.prompts[:6]]
        try:
            answers[backend_name] = {v.name: [g.response for g in backend.generate(v, reqs)] for v in variants}
            info = backend.info()
        finally:
            backend.close()
        if backend_name == "vllm":
            assert info["engine"]["enable_mixed_moe_lora_format"] is True and info["engine"]["max_loras"] == 1
    out = answers["vllm"]
    assert out["t4x"] != out["base"] and out["t5x"] != out["base"]
    same = {k: sum(a == b for a, b in zip(out[k], answers["transformers"][k])) for k in out}
    print(f"vLLM answers equal to the transformers backend's (tiny MoE, bf16, 6 prompts): {same}")
    assert all(n >= 3 for n in same.values()), same


def test_discover_keeps_the_rank_vllm_needs(cfg):
    from jarvis_bench.demo import DEMO_ADAPTER

    cfg.model.adapters = [str(DEMO_ADAPTER)]
    variants = adapters.discover(cfg, digest=False)
    assert ve.engine_kwargs(cfg, variants, "m")["max_lora_rank"] == 16


def test_a_prequantized_checkpoint_keeps_its_own_quantization(cfg, monkeypatch):
    """An AWQ/GPTQ/bnb checkpoint under the default model.quantization "4bit": vLLM follows the
    checkpoint's quantization_config; asking for bitsandbytes too would fail the engine start."""
    kw = ve.engine_kwargs(cfg, [BASE, A16], "org/model-AWQ", moe=True, prequantized=True)
    assert "quantization" not in kw and kw["enable_lora"] is True
    from jarvis_bench import checks

    cfg.model.adapters = []
    src = checks.ModelSource("local", "x", config={**checks.sizing.KNOWN_CONFIGS["Qwen/Qwen3-30B-A3B"],
                                                   "quantization_config": {"quant_method": "awq"}})
    monkeypatch.setattr(checks, "gpus", lambda: [("H200", 139.0, 139.0)])
    assert [c.status for c in ve.VllmBackend.setup_checks(cfg, src)] == ["OK"]
