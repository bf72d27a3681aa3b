"""MoE models (backends/moe.py, the 4-bit experts in moe_4bit.py, adapters in moe_lora.py) on tiny random Qwen3-MoE checkpoints.

The checkpoints are written as transformers writes them (sharded safetensors, per-expert layout
`mlp.experts.3.gate_proj.weight`, as Qwen/Qwen3-30B-A3B ships), so loading goes through transformers'
merge of per-expert tensors into the fused stacks, then our quantizer. References are built from the
same weights, dequantized, in a plain full-precision model running transformers' eager experts; adapters
on the reference go through peft itself.

Tolerances: our experts forward runs transformers' eager loop on dequantized expert slices, so experts
are compared exactly. bitsandbytes' CPU kernel for 4-bit nn.Linear layers (attention) repacks the weights
with bf16 block scales and computes in bf16 on CPUs with AVX512-BF16; the exact tests switch that
kernel off (`support_avx512bf16_for_cpu = False`, then bitsandbytes dequantizes to fp32) and one test
keeps it on with a tolerance of 2e-2 on the logits.
"""

from __future__ import annotations

import copy as copy_module
import json
import shutil
from pathlib import Path

import pytest

from .conftest import CONFIG, FIXTURES, write_config

E, H, I, R, ALPHA = 8, 64, 32, 4, 8
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


# ----------------------------------------------------------------------------- checkpoints and adapters


@pytest.fixture(scope="session")
def tiny_moe(tmp_path_factory, demo_base) -> Path:
    """A tiny random Qwen3-MoE (2 layers, 8 experts, top-2) with the SmolLM2 tokenizer and the Qwen3
    chat template, saved sharded in the transformers-4 per-expert layout."""
    import torch
    from transformers import AutoTokenizer, Qwen3MoeConfig, Qwen3MoeForCausalLM

    tok = AutoTokenizer.from_pretrained(demo_base)
    tok.chat_template = (FIXTURES / "qwen3_chat_template.jinja").read_text(encoding="utf-8")
    torch.manual_seed(0)
    cfg = Qwen3MoeConfig(
        vocab_size=len(tok), hidden_size=H, intermediate_size=128, moe_intermediate_size=I, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_experts=E, num_experts_per_tok=2,
        max_position_embeddings=2048, tie_word_embeddings=True, norm_topk_prob=True,
        eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"), pad_token_id=tok.pad_token_id,
    )
    path = tmp_path_factory.mktemp("tiny-qwen3-moe")
    Qwen3MoeForCausalLM(cfg).save_pretrained(path, max_shard_size="2MB")
    tok.save_pretrained(path)
    return path


def _write_t4_adapter(folder: Path, base: Path, seed: int, *, experts: bool = True, dropout: float = 0.05,
                      extra_keys: dict | None = None, attention: bool = True, scale: float = 0.1) -> Path:
    """A LoRA saved the way transformers 4 + peft saved one on Qwen3-MoE: every projection targeted,
    one LoRA per expert (`mlp.experts.3.gate_proj.lora_A.weight`), dropout 0.05."""
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=g) * scale

    sd = {}
    for layer in range(2):
        p = f"base_model.model.model.layers.{layer}"
        attn = {"q_proj": (H, 64), "k_proj": (H, 32), "v_proj": (H, 32), "o_proj": (64, H)} if attention else {}
        for proj, (fan_in, fan_out) in attn.items():
            sd[f"{p}.self_attn.{proj}.lora_A.weight"] = rnd(R, fan_in)
            sd[f"{p}.self_attn.{proj}.lora_B.weight"] = rnd(fan_out, R)
        for e in range(E if experts else 0):
            for proj, (fan_in, fan_out) in {"gate_proj": (H, I), "up_proj": (H, I), "down_proj": (I, H)}.items():
                sd[f"{p}.mlp.experts.{e}.{proj}.lora_A.weight"] = rnd(R, fan_in)
                sd[f"{p}.mlp.experts.{e}.{proj}.lora_B.weight"] = rnd(fan_out, R)
    sd.update(extra_keys or {})
    folder.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(folder / "adapter_model.safetensors"))
    targets = (["q_proj", "k_proj", "v_proj", "o_proj"] if attention else []) + (
        ["gate_proj", "up_proj", "down_proj"] if experts else [])
    (folder / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": R, "lora_alpha": ALPHA, "lora_dropout": dropout,
        "target_modules": targets, "bias": "none", "base_model_name_or_path": str(base)}), encoding="utf-8")
    return folder


def _write_peft_adapter(folder: Path, base: Path, seed: int, scale: float = 0.3, **lora_kw) -> Path:
    """An adapter made by peft itself on the unquantized model (random B, so it changes the answers)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=R, lora_alpha=ALPHA, init_lora_weights=False, **lora_kw))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.mul_(scale)
    peft_model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def moe_adapters(tiny_moe, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("moe-adapters")
    return {
        "t4": _write_t4_adapter(root / "t4" / "final", tiny_moe, 1),
        "t5": _write_peft_adapter(root / "t5" / "final", tiny_moe, 2, target_modules=["q_proj", "v_proj"],
                                  target_parameters=["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]),
        "attn": _write_peft_adapter(root / "attn" / "final", tiny_moe, 3, lora_dropout=0.1,
                                    target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]),
        "experts_only": _write_peft_adapter(root / "experts_only" / "final", tiny_moe, 4, target_modules=[],
                                            target_parameters=["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]),
    }


# ----------------------------------------------------------------------------- loading through the backend


def _config(tmp: Path, base: Path, adapters: list[Path], quantization: str, device: str, **gen) -> Path:
    data = json.loads(CONFIG.read_text(encoding="utf-8"))
    data["model"].update(base=str(base), adapters=[str(a) for a in adapters], quantization=quantization,
                         dtype="float32", device=device)
    data["generation"].update(gen)
    return write_config(tmp / f"cfg-{quantization}-{device}.json", data)


def _backend(tmp: Path, base: Path, adapters: list[Path], quantization: str, device: str = "cpu"):
    from jarvis_bench import adapters as adapters_mod
    from jarvis_bench import config
    from jarvis_bench.backends import create

    cfg = config.load(_config(tmp, base, adapters, quantization, device))
    variants = adapters_mod.discover(cfg)
    backend = create(cfg, device=device)
    backend.prepare(variants)
    backend._load()
    return backend, {v.name: v for v in variants}


def _exact(model) -> None:
    """Switch off bitsandbytes' bf16 CPU kernel: 4-bit layers then dequantize to fp32 (exact comparisons)."""
    import bitsandbytes as bnb

    for m in model.modules():
        if isinstance(m, bnb.nn.Linear4bit):
            m.support_avx512bf16_for_cpu = False


def _dequantized_reference(model, base: Path, device: str):
    """A full-precision copy of `model`: same architecture, the 4-bit weights dequantized, eager experts."""
    import bitsandbytes as bnb
    import bitsandbytes.functional as bnbf
    import torch
    from transformers import AutoModelForCausalLM

    from jarvis_bench.backends import moe_4bit

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    state = {}
    for name, m in inner.named_modules():
        clean = name.replace(".base_layer", "")
        if moe_4bit.is_experts(m):
            for p in moe_4bit.EXPERT_PARAMS:
                state[f"{clean}.{p}"] = torch.stack([moe_4bit.expert_weight(m, p, e) for e in range(m.num_experts)])
        elif isinstance(m, bnb.nn.Linear4bit):
            state[f"{clean}.weight"] = bnbf.dequantize_4bit(m.weight.data, m.weight.quant_state).float()
    ref = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, experts_implementation="eager").to(device)
    result = ref.load_state_dict({k: v.to(device) for k, v in state.items()}, strict=False)
    assert not result.unexpected_keys
    return ref.eval()


def _with_peft(ref, adapter: Path, tmp: Path):
    """peft's own application of `adapter` on the reference (dropout set to 0: it is off at inference,
    and peft's ParamWrapper refuses any other value)."""
    from peft import PeftModel

    copy = tmp / f"nodrop-{adapter.parent.name}"
    shutil.copytree(adapter, copy, dirs_exist_ok=True)
    cfg = json.loads((copy / "adapter_config.json").read_text(encoding="utf-8"))
    (copy / "adapter_config.json").write_text(json.dumps({**cfg, "lora_dropout": 0.0}), encoding="utf-8")
    return PeftModel.from_pretrained(copy_module.deepcopy(ref), str(copy)).eval()  # peft edits what it wraps


IDS = [[1, 5, 9, 200, 3000, 7, 12, 45, 46, 47]]


def _logits(model, backend=None, variant=None):
    import contextlib

    import torch

    ids = torch.tensor(IDS, device=next(model.parameters()).device)
    ctx = backend._select(variant) if backend is not None else contextlib.nullcontext()
    with torch.inference_mode(), ctx:
        return model(ids).logits.float().cpu()


# ----------------------------------------------------------------------------- the tests


@pytest.fixture(scope="module")
def loaded(tiny_moe, moe_adapters, tmp_path_factory):
    """The tiny MoE in 4-bit on CPU with three adapters attached at once (t4, t5, attention-only)."""
    tmp = tmp_path_factory.mktemp("moe-loaded")
    backend, variants = _backend(tmp, tiny_moe, [moe_adapters[k] for k in ("t4", "t5", "attn")], "4bit")
    _exact(backend.model)
    return backend, variants, _dequantized_reference(backend.model, tiny_moe, "cpu"), tmp


def test_experts_are_stored_in_4bit_while_loading(loaded, caplog):
    import torch

    from jarvis_bench.backends import moe_4bit

    backend, _, _, _ = loaded
    model = backend.model.get_base_model()
    experts = [m for _, m in moe_4bit.experts_modules(model)]
    assert len(experts) == 2
    for m in experts:
        for p in moe_4bit.EXPERT_PARAMS:
            packed = getattr(m, p)
            rows, cols = moe_4bit.expert_weight(m, p, 0).shape
            assert packed.dtype == torch.uint8 and packed.shape == (E, rows * cols // 2)  # 4 bits per weight
            assert getattr(m, f"{p}_absmax").dtype == torch.uint8  # double quantization
    sizes = backend.info()["weight_bytes"]
    expert_weights = 2 * E * 3 * H * I
    # 4 bits + an 8-bit block scale per 64 weights, + per stack the NF4 and scale tables, per expert an offset
    # and the second-level scales
    low = expert_weights * (0.5 + 1 / 64)
    assert low <= sizes["experts_4bit"] <= low + 4 * ((16 + 256) * 4 + E * 8)
    assert backend.info()["experts"] == "4bit"


def test_experts_are_quantized_one_stack_at_a_time_while_the_checkpoint_streams(tiny_moe, tmp_path, monkeypatch,
                                                                                 caplog):
    """Each fused stack is quantized as soon as transformers has merged it: whenever a stack arrives, the
    model holds no other expert stack in full precision (earlier ones are packed, later ones not loaded)."""
    import logging

    import torch
    from transformers.modeling_utils import PreTrainedModel

    from jarvis_bench.backends import moe_4bit

    state: dict = {"model": None, "calls": []}
    real_load, real_quantize = PreTrainedModel._load_pretrained_model, moe_4bit.quantize_stack

    def load(model, *a, **kw):  # transformers builds the model on meta, then streams the weights into it
        state["model"] = model
        return real_load(model, *a, **kw)

    def quantize(stack, **kw):
        params = [getattr(m, p) for _, m in moe_4bit.experts_modules(state["model"]) for p in moe_4bit.EXPERT_PARAMS]
        packed = sum(t.dtype == torch.uint8 for t in params)
        full = sum(t.device.type != "meta" and t.is_floating_point() for t in params)
        state["calls"].append((tuple(stack.shape), packed, full))
        return real_quantize(stack, **kw)

    monkeypatch.setattr(PreTrainedModel, "_load_pretrained_model", staticmethod(load))
    monkeypatch.setattr(moe_4bit, "quantize_stack", quantize)
    with caplog.at_level(logging.INFO, logger="jarvis_bench"):
        _backend(tmp_path, tiny_moe, [], "4bit")
    calls = state["calls"]
    assert sorted(shape for shape, _, _ in calls) == sorted([(E, 2 * I, H), (E, H, I)] * 2)
    assert [packed for _, packed, _ in calls] == [0, 1, 2, 3] and all(full == 0 for _, _, full in calls)
    assert "Weights in memory: experts_4bit" in caplog.text


def test_quantized_experts_equal_bitsandbytes_on_each_expert(tiny_moe, loaded):
    """The packed bytes are what bitsandbytes' quantize_4bit gives each expert of the checkpoint."""
    import bitsandbytes.functional as bnbf
    import torch
    from transformers import AutoModelForCausalLM

    from jarvis_bench.backends import moe_4bit

    full = AutoModelForCausalLM.from_pretrained(tiny_moe, dtype=torch.float32)
    stack = full.model.layers[1].mlp.experts.gate_up_proj.detach()
    mine = loaded[0].model.get_base_model().model.layers[1].mlp.experts
    for e in (0, E - 1):
        q, _ = bnbf.quantize_4bit(stack[e].contiguous(), blocksize=moe_4bit.BLOCKSIZE, compress_statistics=True,
                                  quant_type="nf4")
        assert torch.equal(q.view(-1), mine.gate_up_proj[e])


def test_base_logits_equal_the_dequantized_reference(loaded):
    backend, variants, ref, _ = loaded
    assert _logits(backend.model, backend, variants["base"]).sub(_logits(ref)).abs().max().item() < 1e-4


@pytest.mark.parametrize("kind", ["t4", "t5", "attn"])
def test_each_adapter_kind_equals_peft_on_the_reference(loaded, moe_adapters, kind):
    backend, variants, ref, tmp = loaded
    mine = _logits(backend.model, backend, variants[kind])
    theirs = _logits(_with_peft(ref, moe_adapters[kind], tmp))
    assert (mine - theirs).abs().max().item() < 1e-4
    assert (mine - _logits(ref)).abs().max().item() > 1e-2  # the adapter does change the answers


def test_switching_adapters_and_back_to_the_base(loaded):
    backend, variants, ref, _ = loaded
    base = _logits(ref)
    first = {k: _logits(backend.model, backend, variants[k]) for k in ("t4", "attn", "t5")}
    for k in ("t5", "t4", "attn"):
        assert (_logits(backend.model, backend, variants[k]) - first[k]).abs().max().item() == 0
    assert (_logits(backend.model, backend, variants["base"]) - base).abs().max().item() < 1e-4


def test_greedy_tokens_equal_the_reference(loaded, moe_adapters):
    import torch

    from jarvis_bench.backends import decode

    backend, variants, ref, tmp = loaded
    eos, pad = backend._eos_ids(), backend.tokenizer.pad_token_id
    rows = [[1, 5, 9, 200, 3000, 7], [11, 12, 13, 14, 15, 16, 17, 18]]
    for name, model in (("base", ref), ("t4", _with_peft(ref, moe_adapters["t4"], tmp))):
        with torch.inference_mode():
            with backend._select(variants[name]):
                mine, _ = decode.greedy(backend.model, rows, max_new_tokens=12, eos_ids=eos, pad_id=pad)
            theirs, _ = decode.greedy(model, rows, max_new_tokens=12, eos_ids=eos, pad_id=pad)
        assert [r.tokens for r in mine] == [r.tokens for r in theirs]


def test_bitsandbytes_cpu_kernel_within_tolerance(tiny_moe, tmp_path):
    """The default CPU path (bf16 block scales and activations in 4-bit nn.Linear layers where the CPU has
    AVX512-BF16) stays within 2e-2 of the reference on the logits."""
    backend, variants = _backend(tmp_path, tiny_moe, [], "4bit")
    ref = _dequantized_reference(backend.model, tiny_moe, "cpu")  # before the first forward repacks
    assert (_logits(backend.model) - _logits(ref)).abs().max().item() < 2e-2


@pytest.mark.parametrize("weights", ["safetensors", "bin"])
def test_unquantized_moe_with_a_transformers4_adapter(tiny_moe, moe_adapters, tmp_path, weights):
    """Without quantization too, a transformers-4 adapter with dropout 0.05 loads (peft alone refuses it),
    saved as safetensors or as the seed's adapter_model.bin; its expert LoRA is applied."""
    import torch
    from safetensors.torch import load_file

    adapter = moe_adapters["t4"]
    if weights == "bin":
        adapter = tmp_path / "t4" / "final"
        adapter.mkdir(parents=True)
        shutil.copy(moe_adapters["t4"] / "adapter_config.json", adapter)
        torch.save(load_file(str(moe_adapters["t4"] / "adapter_model.safetensors")), adapter / "adapter_model.bin")
    backend, variants = _backend(tmp_path, tiny_moe, [adapter], "none")
    ref = _dequantized_reference(backend.model, tiny_moe, "cpu")
    mine = _logits(backend.model, backend, variants["t4"])
    assert (mine - _logits(_with_peft(ref, moe_adapters["t4"], tmp_path))).abs().max().item() < 1e-4
    assert backend.info()["experts"] == "float32"


def test_an_experts_only_adapter_needs_no_peft(tiny_moe, moe_adapters, tmp_path):
    backend, variants = _backend(tmp_path, tiny_moe, [moe_adapters["experts_only"]], "4bit")
    _exact(backend.model)
    ref = _dequantized_reference(backend.model, tiny_moe, "cpu")
    mine = _logits(backend.model, backend, variants["experts_only"])
    assert (mine - _logits(_with_peft(ref, moe_adapters["experts_only"], tmp_path))).abs().max().item() < 1e-4
    assert (_logits(backend.model, backend, variants["base"]) - _logits(ref)).abs().max().item() < 1e-4


@pytest.mark.parametrize("bad, fragment", [
    ({"base_model.model.model.layers.0.mlp.experts.9.gate_proj.lora_A.weight": (R, H),
      "base_model.model.model.layers.0.mlp.experts.9.gate_proj.lora_B.weight": (I, R)}, "expert 9 does not exist"),
    ({"base_model.model.model.layers.5.mlp.experts.0.gate_proj.lora_A.weight": (R, H),
      "base_model.model.model.layers.5.mlp.experts.0.gate_proj.lora_B.weight": (I, R)},
     "'model.layers.5.mlp.experts', which is not an experts module"),
])
def test_expert_weights_with_nowhere_to_go_are_an_error(tiny_moe, tmp_path, bad, fragment):
    import torch

    from jarvis_bench.errors import AdapterError

    extra = {k: torch.zeros(*shape) for k, shape in bad.items()}
    adapter = _write_t4_adapter(tmp_path / "bad" / "final", tiny_moe, 5, extra_keys=extra)
    with pytest.raises(AdapterError, match=fragment):
        _backend(tmp_path, tiny_moe, [adapter], "4bit")


def test_8bit_on_a_moe_model_is_refused_with_the_fix(tiny_moe, tmp_path):
    from jarvis_bench import adapters as adapters_mod
    from jarvis_bench import config
    from jarvis_bench.backends import create
    from jarvis_bench.errors import ConfigError

    cfg = config.load(_config(tmp_path, tiny_moe, [], "8bit", "cuda"))
    backend = create(cfg, device="cpu")
    backend.quantization = "8bit"  # as on CUDA, where 8-bit is not dropped
    backend.prepare(adapters_mod.discover(cfg))
    with pytest.raises(ConfigError, match='set model.quantization to "4bit"'):
        backend._load_kwargs()


def test_benchmark_runs_a_4bit_moe_with_a_transformers4_lora(tiny_moe, moe_adapters, tmp_path):
    """The issue's end to end: benchmark.py, quantization 4bit, a transformers-4 LoRA, on the CPU."""
    from jarvis_bench.commands import benchmark

    cfg = _config(tmp_path, tiny_moe, [moe_adapters["t4"]], "4bit", "cpu", max_new_tokens=8)
    out = tmp_path / "res"
    assert benchmark.main(["--config", str(cfg), "--output-dir", str(out), "--limit", "2", "--quiet"]) == 0
    data = json.loads((out / "benchmark_results.json").read_text(encoding="utf-8"))
    meta = data["metadata"]
    assert meta["quantization"] == "4bit" and meta["experts"] == "4bit" and meta["variants"] == ["base", "t4"]
    answers = [(r["variants"]["base"]["response"], r["variants"]["t4"]["response"]) for r in data["results"]]
    assert len(answers) == 2 and any(b != f for b, f in answers)


@pytest.mark.gpu
@pytest.mark.parametrize("device", ["cuda"])
def test_cuda_4bit_moe_with_adapters_equals_the_reference(tiny_moe, moe_adapters, tmp_path, device):
    """The same checks on CUDA: experts quantized on the GPU while loading, adapters, base through
    disable_adapter (tolerance 1e-3: CUDA kernels accumulate in another order)."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    backend, variants = _backend(tmp_path, tiny_moe, [moe_adapters[k] for k in ("t4", "t5", "attn")], "4bit", device)
    ref = _dequantized_reference(backend.model, tiny_moe, device)
    assert backend.model.get_base_model().model.layers[0].mlp.experts.gate_up_proj.device.type == "cuda"
    assert (_logits(backend.model, backend, variants["base"]) - _logits(ref)).abs().max().item() < 1e-3
    for kind in ("t4", "t5", "attn"):
        theirs = _logits(_with_peft(ref, moe_adapters[kind], tmp_path))
        assert (_logits(backend.model, backend, variants[kind]) - theirs).abs().max().item() < 1e-3


def test_adapter_with_string_targets_and_router_lora(tiny_moe, tmp_path):
    """A transformers-4 adapter saved with target_modules "all-linear" (a string) and LoRA on the router
    (`mlp.gate`), dropout 0.05: peft gets an explicit list without the expert names and dropout 0."""
    import torch

    g = torch.Generator().manual_seed(7)
    extra = {}
    for layer in range(2):
        extra[f"base_model.model.model.layers.{layer}.mlp.gate.lora_A.weight"] = torch.randn(R, H, generator=g) * 0.1
        extra[f"base_model.model.model.layers.{layer}.mlp.gate.lora_B.weight"] = torch.randn(E, R, generator=g) * 0.1
    adapter = _write_t4_adapter(tmp_path / "alllinear" / "final", tiny_moe, 6, extra_keys=extra)
    cfg = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    (adapter / "adapter_config.json").write_text(json.dumps({**cfg, "target_modules": "all-linear"}), encoding="utf-8")
    backend, variants = _backend(tmp_path, tiny_moe, [adapter], "4bit")
    _exact(backend.model)
    ref = _dequantized_reference(backend.model, tiny_moe, "cpu")
    mine = _logits(backend.model, backend, variants["alllinear"])
    assert (mine - _logits(_with_peft(ref, adapter, tmp_path))).abs().max().item() < 1e-4
    assert (mine - _logits(backend.model, backend, variants["base"])).abs().max().item() > 1e-2


def _merged_reference(ref, adapter: Path):
    """`ref` with every LoRA of a transformers-4 style adapter merged into its weights by hand (W + s·B·A):
    the reference where peft cannot serve (it moves dense MLP targets of MoE models onto the experts)."""
    import torch
    from safetensors.torch import load_file

    model = copy_module.deepcopy(ref)
    cfg = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    scale = cfg["lora_alpha"] / cfg["r"]
    lora = load_file(str(adapter / "adapter_model.safetensors"))
    with torch.no_grad():
        for key, a in lora.items():
            if ".lora_A." not in key:
                continue
            delta = scale * lora[key.replace("lora_A", "lora_B")] @ a
            mod = key.removeprefix("base_model.model.").split(".lora_")[0]
            if ".experts." in mod:
                experts, _, rest = mod.partition(".experts.")
                e, proj = rest.split(".")
                m = model.get_submodule(experts + ".experts")
                rows = {"gate_proj": slice(0, I), "up_proj": slice(I, 2 * I)}
                if proj == "down_proj":
                    m.down_proj[int(e)] += delta
                else:
                    m.gate_up_proj[int(e)][rows[proj]] += delta
            else:
                model.get_submodule(mod).weight += delta
    return model


def test_lora_on_the_dense_mlp_of_a_moe_model(demo_base, tmp_path):
    """A MoE whose first layer is dense (`mlp_only_layers`): the dense gate/up/down LoRA is applied by our
    hook (peft 0.21 would move those targets onto the experts), the expert and attention LoRA as usual."""
    import torch
    from transformers import AutoTokenizer, Qwen3MoeConfig, Qwen3MoeForCausalLM

    tok = AutoTokenizer.from_pretrained(demo_base)
    torch.manual_seed(1)
    cfg = Qwen3MoeConfig(vocab_size=len(tok), hidden_size=H, intermediate_size=I, moe_intermediate_size=I,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                         num_experts=E, num_experts_per_tok=2, mlp_only_layers=[0], tie_word_embeddings=True,
                         pad_token_id=tok.pad_token_id)
    base = tmp_path / "dense-first"
    Qwen3MoeForCausalLM(cfg).save_pretrained(base)
    tok.save_pretrained(base)
    g = torch.Generator().manual_seed(9)
    dense = {}
    for proj, (fan_in, fan_out) in {"gate_proj": (H, I), "up_proj": (H, I), "down_proj": (I, H)}.items():
        dense[f"base_model.model.model.layers.0.mlp.{proj}.lora_A.weight"] = torch.randn(R, fan_in, generator=g) * 0.1
        dense[f"base_model.model.model.layers.0.mlp.{proj}.lora_B.weight"] = torch.randn(fan_out, R, generator=g) * 0.1
    adapter = _write_t4_adapter(tmp_path / "mixed" / "final", base, 10, extra_keys=dense)
    from safetensors.torch import load_file, save_file  # layer 0 has no experts: drop its expert LoRA
    kept = {k: v for k, v in load_file(str(adapter / "adapter_model.safetensors")).items()
            if not k.startswith("base_model.model.model.layers.0.mlp.experts.")}
    save_file(kept, str(adapter / "adapter_model.safetensors"))
    backend, variants = _backend(tmp_path, base, [adapter], "4bit")
    _exact(backend.model)
    ref = _dequantized_reference(backend.model, base, "cpu")
    mine = _logits(backend.model, backend, variants["mixed"])
    assert (mine - _logits(_merged_reference(ref, adapter))).abs().max().item() < 1e-4
    assert (_logits(backend.model, backend, variants["base"]) - _logits(ref)).abs().max().item() < 1e-4
    without_dense = tmp_path / "nodense" / "final"
    shutil.copytree(adapter, without_dense)
    save_file({k: v for k, v in kept.items() if k not in dense}, str(without_dense / "adapter_model.safetensors"))
    assert (mine - _logits(_merged_reference(ref, without_dense))).abs().max().item() > 1e-3  # the dense LoRA counts


# ----------------------------------------------------------------------------- the grouped experts forward


def test_grouped_forward_equals_routed_on_the_tiny_moe_with_every_adapter_kind(loaded):
    """model.moe_forward "grouped" on the real tiny checkpoint: the base and each adapter (transformers-4
    per-expert, transformers-5 fused, attention-only) switched in one model give the routed forward's logits."""
    from jarvis_bench.backends import moe_4bit

    backend, variants, _, _ = loaded
    model = backend.model.get_base_model() if hasattr(backend.model, "get_base_model") else backend.model
    routed = {k: _logits(backend.model, backend, variants[k]) for k in ("base", "t4", "t5", "attn")}
    model.set_experts_implementation(moe_4bit.GROUPED)
    try:
        assert model.config._experts_implementation == moe_4bit.GROUPED
        for k in ("t5", "base", "t4", "attn", "base"):
            assert (_logits(backend.model, backend, variants[k]) - routed[k]).abs().max().item() < 1e-4, k
    finally:
        model.set_experts_implementation(moe_4bit.IMPLEMENTATION)


def test_moe_forward_setting_picks_the_implementation():
    from jarvis_bench.backends import moe_4bit
    from jarvis_bench.backends.moe import MoE

    pick = {(c, d): MoE(quantization="4bit", dtype_name="bfloat16", double_quant=True, forward=c, device=d).implementation
            for c in ("auto", "routed", "grouped") for d in ("cpu", "cuda")}
    assert pick == {("auto", "cpu"): moe_4bit.IMPLEMENTATION, ("auto", "cuda"): moe_4bit.GROUPED,
                    ("routed", "cpu"): moe_4bit.IMPLEMENTATION, ("routed", "cuda"): moe_4bit.IMPLEMENTATION,
                    ("grouped", "cpu"): moe_4bit.GROUPED, ("grouped", "cuda"): moe_4bit.GROUPED}
