"""Full-size proof: Qwen3-30B-A3B's real architecture loaded through the 4-bit path on the CPU.

Usage:
    uv run python benchmarks/moe_full_size.py --workdir /big/disk/tmp     # ~57 GiB free needed there
    uv run python benchmarks/moe_full_size.py --layers 4                  # a quick partial run

Writes random weights for the published config of Qwen/Qwen3-30B-A3B (hidden 2048, 48 layers,
128 experts of width 768, 32 heads, 4 KV heads, head_dim 128, vocab 151,936) shard by shard, one
shard per layer, in the checkpoint's own per-expert layout (`model.layers.0.mlp.experts.7.up_proj.weight`,
bf16, ~57 GiB), loads it with `quantization: "4bit"` exactly as the transformers backend does
(`moe_4bit.quantization_config`, experts quantized while the checkpoint streams in), runs one forward
on a few tokens, and prints the weight bytes by kind and the process's memory: peak resident (VmHWM),
and the anonymous part of it (RssAnon: what the model really holds; the rest of VmRSS is file pages of
the memory-mapped checkpoint, which the kernel can drop). The checkpoint is deleted afterwards unless
--keep. The values are random (a reused pool of random numbers): this measures memory and format, not
answers.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import threading
import time
from pathlib import Path

GIB = 1024**3


def _status() -> dict[str, int]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[k] = int(v.split()[0]) * 1024
    return out


class PeakAnon:
    """Samples RssAnon every 50 ms (the kernel keeps a peak for VmRSS only)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _status().get("RssAnon", 0))
            time.sleep(0.05)

    def __enter__(self) -> PeakAnon:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def write_checkpoint(folder: Path, layers: int) -> float:
    import torch
    from safetensors.torch import save_file

    from jarvis_bench.sizing import KNOWN_CONFIGS

    c = dict(KNOWN_CONFIGS["Qwen/Qwen3-30B-A3B"])
    c.update(num_hidden_layers=layers, architectures=["Qwen3MoeForCausalLM"], hidden_act="silu", rms_norm_eps=1e-6,
             rope_theta=1_000_000.0, max_position_embeddings=40960, norm_topk_prob=True, attention_bias=False,
             bos_token_id=151643, eos_token_id=151645, torch_dtype="bfloat16")
    H, I, E, V = c["hidden_size"], c["moe_intermediate_size"], c["num_experts"], c["vocab_size"]
    heads, kv, hd = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(c, indent=2), encoding="utf-8")
    g = torch.Generator().manual_seed(0)
    pool = (torch.randn(1 << 26, generator=g) * 0.02).to(torch.bfloat16)  # 64 Mi random values, reused
    offset = [0]

    def rnd(*shape: int) -> torch.Tensor:
        n = 1
        for s in shape:
            n *= s
        start = offset[0] % pool.numel()
        offset[0] += 7919
        src = pool if start + n <= pool.numel() else pool.repeat(-(-(start + n) // pool.numel()))
        return src[start:start + n].reshape(shape).clone()

    weight_map: dict[str, str] = {}
    total = 0

    def save(tensors: dict[str, torch.Tensor], name: str) -> None:
        nonlocal total
        save_file(tensors, str(folder / name), metadata={"format": "pt"})
        total += sum(t.numel() * t.element_size() for t in tensors.values())
        weight_map.update({k: name for k in tensors})

    n_shards = layers + 1
    save({"model.embed_tokens.weight": rnd(V, H), "lm_head.weight": rnd(V, H),
          "model.norm.weight": torch.ones(H, dtype=torch.bfloat16)}, f"model-00001-of-{n_shards:05d}.safetensors")
    for layer in range(layers):
        p = f"model.layers.{layer}"
        t = {f"{p}.input_layernorm.weight": torch.ones(H, dtype=torch.bfloat16),
             f"{p}.post_attention_layernorm.weight": torch.ones(H, dtype=torch.bfloat16),
             f"{p}.self_attn.q_proj.weight": rnd(heads * hd, H), f"{p}.self_attn.k_proj.weight": rnd(kv * hd, H),
             f"{p}.self_attn.v_proj.weight": rnd(kv * hd, H), f"{p}.self_attn.o_proj.weight": rnd(H, heads * hd),
             f"{p}.self_attn.q_norm.weight": torch.ones(hd, dtype=torch.bfloat16),
             f"{p}.self_attn.k_norm.weight": torch.ones(hd, dtype=torch.bfloat16),
             f"{p}.mlp.gate.weight": rnd(E, H)}
        for e in range(E):
            t[f"{p}.mlp.experts.{e}.gate_proj.weight"] = rnd(I, H)
            t[f"{p}.mlp.experts.{e}.up_proj.weight"] = rnd(I, H)
            t[f"{p}.mlp.experts.{e}.down_proj.weight"] = rnd(H, I)
        save(t, f"model-{layer + 2:05d}-of-{n_shards:05d}.safetensors")
        print(f"\rwrote layer {layer + 1}/{layers} ({total / GIB:.1f} GiB)", end="", flush=True)
    print()
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}), encoding="utf-8")
    return total / GIB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=None, help="where to write the checkpoint (default: a temp dir)")
    ap.add_argument("--layers", type=int, default=48)
    ap.add_argument("--keep", action="store_true", help="keep the checkpoint")
    ap.add_argument("--no-double-quant", action="store_true")
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM

    from jarvis_bench import sizing
    from jarvis_bench.backends import moe_4bit

    work = Path(tempfile.mkdtemp(prefix="qwen3-30b-a3b-", dir=args.workdir))
    try:
        t0 = time.perf_counter()
        on_disk = write_checkpoint(work, args.layers)
        write_s = time.perf_counter() - t0
        before = _status()
        t1 = time.perf_counter()
        with PeakAnon() as peak:
            model = AutoModelForCausalLM.from_pretrained(
                work, dtype=torch.bfloat16, device_map={"": "cpu"},
                quantization_config=moe_4bit.quantization_config(double_quant=not args.no_double_quant,
                                                                  compute_dtype=torch.bfloat16),
                experts_implementation=moe_4bit.IMPLEMENTATION)
        load_s = time.perf_counter() - t1
        after = _status()
        sizes = moe_4bit.weight_bytes(model)
        t2 = time.perf_counter()
        with torch.inference_mode():
            logits = model(torch.tensor([[151644, 872, 198, 9707, 11, 1879, 0]])).logits
        fwd_s = time.perf_counter() - t2
        cfg = dict(sizing.KNOWN_CONFIGS["Qwen/Qwen3-30B-A3B"], num_hidden_layers=args.layers)
        est = sizing.estimate(sizing.count_params(cfg), quantization="4bit", dtype="bfloat16",
                              double_quant=not args.no_double_quant)
        print(f"\nQwen3-30B-A3B architecture, {args.layers} layers, random weights, CPU, torch threads "
              f"{torch.get_num_threads()}")
        print(f"checkpoint: {on_disk:.2f} GiB bf16 in the per-expert layout, written in {write_s:.0f} s")
        print(f"load through the 4-bit path: {load_s:.0f} s")
        print("weights in memory: " + ", ".join(f"{k} {v / GIB:.2f} GiB" for k, v in sizes.items())
              + f" = {sum(sizes.values()) / GIB:.2f} GiB (sizing.estimate: {est.weights_gib:.2f} GiB)")
        print(f"process memory: peak resident (VmHWM) {after['VmHWM'] / GIB:.2f} GiB; anonymous "
              f"(RssAnon) {before['RssAnon'] / GIB:.2f} GiB before the load, peak {peak.peak / GIB:.2f} GiB "
              f"during it, {after['RssAnon'] / GIB:.2f} GiB after; file pages of the checkpoint "
              f"(RssFile) {after['RssFile'] / GIB:.2f} GiB after")
        print(f"one forward on 7 tokens: {fwd_s:.1f} s, logits finite: {bool(torch.isfinite(logits).all())}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
