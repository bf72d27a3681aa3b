"""The transformers+peft backend on the real demo model and on a tiny random Qwen3."""

from __future__ import annotations

import pytest

from jarvis_bench import adapters, chat, config
from jarvis_bench.backends import Request, create
from jarvis_bench.backends.hf import TransformersBackend

from .conftest import CONFIG

SUBSET = ["cmd-01", "cmd-04", "cor-01", "cor-06", "rt-02", "rt-05"]


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


def test_generation_is_greedy_and_ignores_model_sampling_defaults(demo_cfg, demo_backend):
    backend, variants = demo_backend
    reqs = _requests(demo_cfg, SUBSET[:3])
    before = _answers(backend, variants[0], reqs)
    gc = backend.model.generation_config
    gc.do_sample, gc.temperature, gc.top_p, gc.repetition_penalty = True, 0.6, 0.5, 1.3
    try:
        after = _answers(backend, variants[0], reqs)
    finally:
        gc.do_sample, gc.temperature, gc.top_p, gc.repetition_penalty = False, None, None, None
    assert {p: g.response for p, g in after.items()} == {p: g.response for p, g in before.items()}


def test_truncated_flag_and_token_counts(demo_cfg, demo_backend):
    backend, variants = demo_backend
    reqs = _requests(demo_cfg, ["rt-02"])
    gen = _answers(backend, variants[0], reqs)["rt-02"]
    assert gen.tokens <= demo_cfg.generation.max_new_tokens
    assert gen.truncated == (gen.tokens == demo_cfg.generation.max_new_tokens)
    assert gen.response and gen.error is None and gen.latency_s > 0


OOM = "CUDA out of memory. Tried to allocate 2.00 GiB"


def _with_batches(demo_cfg, demo_backend, monkeypatch, flaky):
    """The adapter's answers to 4 prompts in one batch of 4, each batch going through `flaky(real, batch)`;
    returns (the answers in the order they came, the sizes of the batches tried)."""
    backend, variants = demo_backend
    real, sizes = backend._generate_batch, []

    def wrapped(variant, batch, eos):
        sizes.append(len(batch))
        return flaky(lambda: real(variant, batch, eos), batch)

    monkeypatch.setattr(backend, "_generate_batch", wrapped)
    demo_cfg.generation.batch_size = 4
    try:
        out = list(backend.generate(variants[1], _requests(demo_cfg, SUBSET[:4])))
    finally:
        demo_cfg.generation.batch_size = "auto"
    return out, sizes


def test_oom_halves_the_batch_and_retries(demo_cfg, demo_backend, monkeypatch):
    import torch

    def flaky(real, batch):
        if len(batch) > 1:
            raise torch.OutOfMemoryError(OOM)
        return real()

    out, sizes = _with_batches(demo_cfg, demo_backend, monkeypatch, flaky)
    assert sizes == [4, 2, 1, 1, 2, 1, 1]
    assert {g.prompt_id for g in out} == set(SUBSET[:4])


def test_oom_after_some_answers_retries_only_the_rest(demo_cfg, demo_backend, monkeypatch):
    import torch

    def flaky(real, batch):
        gens = real()
        if len(batch) > 2:  # one answer gets out, then the GPU runs out of memory
            yield next(gens)
            gens.close()
            raise torch.OutOfMemoryError(OOM)
        yield from gens

    out, sizes = _with_batches(demo_cfg, demo_backend, monkeypatch, flaky)
    assert sizes == [4, 1, 2]  # 3 left after the first answer: halves of 1 and 2
    assert sorted(g.prompt_id for g in out) == sorted(SUBSET[:4])  # each exactly once
    backend, variants = demo_backend
    whole = _answers(backend, variants[1], _requests(demo_cfg, SUBSET[:4]))
    assert {g.prompt_id: g.response for g in out} == {p: g.response for p, g in whole.items()}


def test_oom_retry_starts_after_the_failed_batch_is_freed(demo_cfg, demo_backend, monkeypatch):
    """The retry must not run while the exception's traceback still holds the failed batch's frames
    (its KV cache): on a GPU, empty_cache() would free nothing and each retry would pin more."""
    import gc
    import weakref

    import torch

    from jarvis_bench.backends import decode

    backend, variants = demo_backend
    if backend.model is None:
        backend._load()
    caches, alive_at_retry = [], []
    real_cache, real_batch = decode._cache, backend._generate_batch

    def tracked_cache(model, capacity):
        cache = real_cache(model, capacity)
        caches.append(weakref.ref(cache))
        return cache

    def raise_on_batches(module, args, kwargs):
        if kwargs["input_ids"].shape[0] > 1:  # the batched prefill, after the shared prefix is cached
            raise torch.OutOfMemoryError(OOM)

    def watched(variant, batch, eos):
        alive_at_retry.append(sum(ref() is not None for ref in caches))
        return real_batch(variant, batch, eos)

    monkeypatch.setattr(decode, "_cache", tracked_cache)
    monkeypatch.setattr(backend, "_generate_batch", watched)
    hook = backend.model.register_forward_pre_hook(raise_on_batches, with_kwargs=True)
    demo_cfg.generation.batch_size = 4
    try:
        out = list(backend.generate(variants[1], _requests(demo_cfg, SUBSET[:4])))
    finally:
        demo_cfg.generation.batch_size = "auto"
        hook.remove()
    gc.collect()
    assert sorted(g.prompt_id for g in out) == sorted(SUBSET[:4])
    assert len(alive_at_retry) == 7  # 4, 2, 1, 1, 2, 1, 1
    assert alive_at_retry == [0] * 7  # no failed batch's cache is alive when the next try starts


# ----------------------------------------------------------------------------- Qwen3 path


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


@pytest.fixture(scope="module")
def tiny_qwen3_adapter(tiny_qwen3, tmp_path_factory):
    """A random LoRA (non-zero B) on attention and MLP projections of the tiny Qwen3: it changes answers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen3, dtype=torch.float32)
    lora = LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj", "gate_proj", "down_proj"],
                      init_lora_weights=False)
    path = tmp_path_factory.mktemp("tiny-qwen3-lora") / "final"
    get_peft_model(model, lora).save_pretrained(path)
    return path


def _bnb_layers(model) -> dict[str, int]:
    import bitsandbytes as bnb

    kinds = {"4bit": bnb.nn.Linear4bit, "8bit": bnb.nn.Linear8bitLt}
    return {k: sum(isinstance(m, cls) for m in model.modules()) for k, cls in kinds.items()}


@pytest.mark.gpu
@pytest.mark.parametrize("quantization", ["4bit", "8bit", "none"])
def test_cuda_quantized_base_with_an_adapter(tiny_qwen3, tiny_qwen3_adapter, quantization):
    """The production path: a LoRA on a bitsandbytes-quantized base on CUDA. The linear layers really are
    bitsandbytes ones (4-bit weights packed in uint8), the adapter's LoRA wraps them and changes answers."""
    import torch

    cfg = _qwen_cfg(tiny_qwen3, False)
    cfg.model.quantization = quantization
    cfg.model.adapters = [str(tiny_qwen3_adapter)]
    variants = adapters.discover(cfg, digest=False)
    backend = TransformersBackend(cfg, device="cuda")
    backend.prepare(variants)
    reqs = _requests(cfg, ["rt-01", "cmd-01", "cor-01"])
    base = _answers(backend, variants[0], reqs)
    tuned = _answers(backend, variants[1], reqs)
    layers = _bnb_layers(backend.model)
    expected = {"4bit": (14, 0), "8bit": (0, 14), "none": (0, 0)}[quantization]  # 7 linears x 2 layers
    assert (layers["4bit"], layers["8bit"]) == expected, layers
    if quantization == "4bit":
        q = backend.model.get_base_model().model.layers[0].self_attn.q_proj
        assert q.base_layer.weight.dtype == torch.uint8 and q.base_layer.weight.quant_state is not None
    assert {p.device.type for p in backend.model.parameters()} == {"cuda"}
    assert any(base[p].response != tuned[p].response for p in base)
    info = backend.info()
    assert info["quantization"] == quantization and info["dtype"] == "bfloat16"
    assert info["peak_gpu_memory_gib"] > 0 and info["gpu"]


@pytest.mark.gpu
def test_cuda_batched_equals_one_prompt_at_a_time(demo_cfg):
    """Batching (shared prefix, padding, rows leaving) changes nothing on CUDA either (float32, no TF32)."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    variants = adapters.discover(demo_cfg)
    backend = create(demo_cfg, device="cuda")
    backend.prepare(variants)
    reqs = _requests(demo_cfg, SUBSET)
    for v in variants:
        demo_cfg.generation.batch_size = len(reqs)
        batched = _answers(backend, v, reqs)
        demo_cfg.generation.batch_size = 1
        single = _answers(backend, v, reqs)
        demo_cfg.generation.batch_size = "auto"
        differ = [p for p in SUBSET if batched[p].response != single[p].response]
        assert not differ, (v.name, differ)
    backend.close()


@pytest.mark.gpu
def test_cuda_real_out_of_memory_is_recovered(demo_cfg, caplog):
    """A real CUDA OOM: the allocator is capped just above what one answer needs, a batch of 16 runs out
    of memory, the halves are retried until they fit, and every answer equals the uncapped run's."""
    import torch

    variants = adapters.discover(demo_cfg)
    backend = create(demo_cfg, device="cuda")
    backend.prepare(variants)
    ids = [p.id for p in demo_cfg.prompts][:16]
    reqs = _requests(demo_cfg, ids)
    demo_cfg.generation.batch_size = 1
    list(backend.generate(variants[1], reqs[:1]))  # load, warm up the kernels
    # The cap limits what the caching allocator reserves (segments), not what tensors hold: calibrate on
    # reserved bytes, from an emptied cache.
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    baseline = torch.cuda.memory_reserved()
    torch.cuda.reset_peak_memory_stats()
    want = _answers(backend, variants[1], reqs)
    one_row = torch.cuda.max_memory_reserved() - baseline
    demo_cfg.generation.batch_size = 16
    list(backend.generate(variants[1], reqs))  # uncapped: what a batch of 16 reserves
    sixteen = torch.cuda.max_memory_reserved() - baseline
    assert sixteen > 6 * one_row, (sixteen, one_row)  # the cap below really stops the batch of 16
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction((torch.cuda.memory_reserved() + 4 * one_row) / total)
    try:
        with caplog.at_level("WARNING"):
            got = _answers(backend, variants[1], reqs)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        demo_cfg.generation.batch_size = "auto"
        backend.close()
    assert "Out of memory with a batch of 16" in caplog.text
    assert {p: g.response for p, g in got.items()} == {p: g.response for p, g in want.items()}
    assert max(g.batch_size for g in got.values()) < 16


@pytest.mark.gpu
def test_two_gpus_rows_leave_sliding_window_layers(demo_base, tmp_path):
    """A model split over two GPUs with full and sliding-window attention layers: batched greedy decoding,
    rows leaving mid-way, gives the tokens of the same model on one GPU."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen3Config, Qwen3ForCausalLM

    from jarvis_bench.backends import decode

    if torch.cuda.device_count() < 2:
        pytest.skip("needs two CUDA GPUs")
    torch.manual_seed(0)
    cfg = Qwen3Config(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16, use_sliding_window=True,
                      sliding_window=8, layer_types=["full_attention", "sliding_attention"] * 2)
    Qwen3ForCausalLM(cfg).save_pretrained(tmp_path / "m")
    split = {"model.embed_tokens": 0, "model.layers.0": 0, "model.layers.1": 0, "model.layers.2": 1,
             "model.layers.3": 1, "model.norm": 1, "model.rotary_emb": 0, "lm_head": 1}
    one = AutoModelForCausalLM.from_pretrained(tmp_path / "m", dtype=torch.float32, device_map={"": 0}).eval()
    two = AutoModelForCausalLM.from_pretrained(tmp_path / "m", dtype=torch.float32, device_map=split).eval()
    prompts = [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 40 + i] for i in range(4)]
    with torch.inference_mode():
        free, _ = decode.greedy(one, prompts, max_new_tokens=16, eos_ids=set(), pad_id=0)
        eos = {free[0].tokens[2], free[2].tokens[5]}  # two rows end early, the others go on
        want, _ = decode.greedy(one, prompts, max_new_tokens=16, eos_ids=eos, pad_id=0)
        got, stats = decode.greedy(two, prompts, max_new_tokens=16, eos_ids=eos, pad_id=0)
    assert stats.row_steps < stats.steps * len(prompts)  # rows did leave
    assert [r.tokens for r in got] == [r.tokens for r in want]


def test_answers_keep_the_special_tokens_calls_and_reasoning_are_written_with(demo_base):
    """Mistral's [TOOL_CALLS]/[THINK] and Llama 4's <|python_start|> are special tokens: decoding with
    skip_special_tokens=True erases them, leaving a call's bare arguments or the reasoning in the answer.
    The backends decode with those markers kept and every other special token (end of turn, control
    tokens) dropped."""
    from transformers import AutoTokenizer

    from jarvis_bench import toolcalls
    from jarvis_bench.text import strip_thinking

    tok = AutoTokenizer.from_pretrained(demo_base)
    tok.add_special_tokens({"additional_special_tokens": [
        "[TOOL_CALLS]", "[ARGS]", "[THINK]", "[/THINK]", "<|python_start|>", "<|python_end|>", "<SPECIAL_42>"]})
    said = ('[THINK]Il veut couper le son.[/THINK]Son coupé.[TOOL_CALLS]mute_tool[ARGS]{}<SPECIAL_42>'
            '<|python_start|>[lock_screen_tool()]<|python_end|><|im_end|>')
    ids = tok(said, add_special_tokens=False)["input_ids"]
    erased = tok.decode(ids, skip_special_tokens=True)
    assert "[TOOL_CALLS]" not in erased and "Il veut couper" in erased  # what the backends decoded before
    text = chat.decoder(tok)(ids)
    assert text == ('[THINK]Il veut couper le son.[/THINK]Son coupé.[TOOL_CALLS]mute_tool[ARGS]{}'
                    '<|python_start|>[lock_screen_tool()]<|python_end|>')
    answer, removed = strip_thinking(text)
    calls, _ = toolcalls.parse(answer, {"mute_tool": [], "lock_screen_tool": []})
    assert removed and [(c.name, c.form) for c in calls] == [("mute_tool", "mistral"), ("lock_screen_tool", "llama4")]
