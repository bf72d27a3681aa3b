"""One Qwen3-30B-A3B MoE layer in 4-bit: how to run the experts without dequantizing too much.

Usage:
    uv run python benchmarks/moe_experts.py                 # CPU, real layer size (128 experts, 2048 -> 768)
    uv run python benchmarks/moe_experts.py --device cuda   # on a GPU
    uv run python benchmarks/moe_experts.py --experts 32    # a smaller layer (quicker)

Builds one experts module at Qwen3-30B-A3B's size with random weights, quantizes it the way the
transformers backend does (NF4 + double quant, expert by expert: `moe_4bit.quantize_stack`), routes T
tokens to their top-8 experts with a random router, and times the ways to run it, without and with an
adapter's expert LoRA (rank --lora-rank on both projections):

- routed  : `moe_4bit.experts_forward` (model.moe_forward "routed"): dequantize each routed expert's slice
            once per forward, a Python loop over the experts hit;
- grouped : `moe_4bit.grouped_forward` (model.moe_forward "grouped") in its torch._grouped_mm layout: the
            pairs sorted by expert, the hit experts dequantized in one call per projection, one grouped
            matmul per projection (what the CPU and a Hopper/Blackwell GPU run);
- padded  : the same forward in its padded layout, one batched matmul per projection over each hit
            expert's tokens padded to T rows (what an RTX 3090/4090 runs for decode steps, up to
            moe_4bit.PADDED_MAX_TOKENS tokens), forced here;
- with --baselines, two ways that lost: the whole stack dequantized once per forward (a per-layer cache),
  and a dequantize-on-access parameter read by transformers' eager loop (the whole stack for every routed
  expert — timed on 8 tokens at most).

Prints a Markdown table (median of --repeat runs, after one warm-up) with the operator calls per layer
without / with the adapter (torch.profiler's top-level aten calls that launch work, in the steady state:
`moe_4bit.operator_calls`, the proxy for kernel launches on a GPU), and checks that all give routed's
output within the tests' tolerance.
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--experts", type=int, default=128)
    p.add_argument("--hidden", type=int, default=2048)
    p.add_argument("--intermediate", type=int, default=768)
    p.add_argument("--top-k", type=int, default=8)
    p.add_argument("--tokens", default="1,8,30,240", help="comma-separated token counts (decode 1-30, prefill 240)")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    p.add_argument("--lora-rank", type=int, default=16)
    p.add_argument("--baselines", action="store_true",
                   help="also time the per-layer cache and the naive dequantize-on-access (slow)")
    args = p.parse_args()

    import torch
    from torch import nn

    from jarvis_bench.backends import moe_4bit

    dtype = getattr(torch, args.dtype)
    dev = torch.device(args.device)
    E, H, I = args.experts, args.hidden, args.intermediate
    torch.manual_seed(0)

    class Experts(nn.Module):  # the layout of transformers' Qwen3MoeExperts
        def __init__(self) -> None:
            super().__init__()
            self.num_experts = E
            self.act_fn = nn.SiLU()

        def _apply_gate(self, gate_up: torch.Tensor) -> torch.Tensor:
            gate, up = gate_up.chunk(2, dim=-1)
            return self.act_fn(gate) * up

    module = Experts()
    t0 = time.perf_counter()
    for name, shape in (("gate_up_proj", (E, 2 * I, H)), ("down_proj", (E, H, I))):
        stack = (torch.randn(*shape, device=dev, dtype=dtype) * 0.02)
        q = moe_4bit.quantize_stack(stack, double_quant=True, dtype=dtype)
        setattr(module, name, nn.Parameter(moe_4bit.store(module, name, q), requires_grad=False))
        del stack
    quant_s = time.perf_counter() - t0

    def dequant_all(name: str) -> torch.Tensor:
        return torch.stack([moe_4bit.expert_weight(module, name, e) for e in range(E)])

    def layer_cache(x, idx, w):
        stacks = {n: dequant_all(n) for n in moe_4bit.EXPERT_PARAMS}
        return _eager(module, x, idx, w, lambda n, e: stacks[n][e])

    def naive(x, idx, w):
        return _eager(module, x, idx, w, lambda n, e: dequant_all(n)[e])

    def _eager(mod, x, idx, w, weight):
        final = torch.zeros_like(x)
        mask = nn.functional.one_hot(idx, num_classes=E + 1).permute(2, 1, 0)
        for e in torch.greater(mask.sum(dim=(-1, -2)), 0).nonzero().flatten().tolist():
            pos, tok = torch.where(mask[e])
            h = mod._apply_gate(nn.functional.linear(x[tok], weight("gate_up_proj", e)))
            out = nn.functional.linear(h, weight("down_proj", e)) * w[tok, pos, None]
            final.index_add_(0, tok, out.to(final.dtype))
        return final

    def timed(fn, *a) -> tuple[float, torch.Tensor]:
        fn(*a)  # warm-up
        runs = []
        for _ in range(args.repeat):
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            out = fn(*a)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            runs.append(time.perf_counter() - t)
        return statistics.median(runs), out

    router = torch.randn(E, H, device=dev, dtype=torch.float32)
    r = args.lora_rank  # an adapter's expert LoRA on both projections, float32 as it is attached
    module._jarvis_lora = {"lora": {
        "gate_up_proj": (torch.randn(E, r, H, device=dev) * 0.02, torch.randn(E, 2 * I, r, device=dev) * 0.02),
        "down_proj": (torch.randn(E, r, I, device=dev) * 0.02, torch.randn(E, H, r, device=dev) * 0.02)}}
    forwards = {"routed": moe_4bit.experts_forward, "grouped": moe_4bit.grouped_forward,
                "padded": moe_4bit.grouped_forward}
    real_layout = moe_4bit.layout

    def run_as(name: str, fn, *a):
        """Run a forward; "padded" forces grouped_forward's padded layout (what an RTX 3090/4090 runs for
        decode steps), "grouped" its torch._grouped_mm layout."""
        if name in ("grouped", "padded"):
            moe_4bit.layout = lambda device, tokens: name
        try:
            return fn(*a)
        finally:
            moe_4bit.layout = real_layout

    print(f"One MoE layer: {E} experts, hidden {H}, expert width {I}, top-{args.top_k}, NF4 + double quant, "
          f"compute {args.dtype}, device {args.device}, torch threads {torch.get_num_threads()}; "
          f"quantized in {quant_s:.1f} s; median of {args.repeat} runs after a warm-up; an adapter = expert "
          f"LoRA of rank {r} on both projections, float32.\n")
    head = " | ".join(f"{n} (ms) | {n} + adapter (ms) | {n} op calls" for n in forwards)
    extra = " per-layer cache (ms) | naive, whole stack per expert (ms) |" if args.baselines else ""
    print(f"| tokens | experts hit | {head} |{extra}")
    print("|---|---|" + "---|" * (3 * len(forwards) + (2 if args.baselines else 0)))
    for T in (int(t) for t in args.tokens.split(",")):
        x = torch.randn(T, H, device=dev, dtype=dtype)
        probs = torch.softmax(x.float() @ router.T, dim=-1)
        w, idx = torch.topk(probs, args.top_k, dim=-1)
        w = (w / w.sum(-1, keepdim=True)).to(dtype)
        hit = idx.unique().numel()
        cells, ref = [], {}
        for name, fn in forwards.items():
            if name == "padded" and T > moe_4bit.PADDED_MAX_TOKENS:
                cells += ["(prefill: grouped)"] * 3  # never run above PADDED_MAX_TOKENS (moe_4bit.layout)
                continue
            for adapter in (None, "lora"):
                module._jarvis_active = adapter
                took, out = timed(lambda *a, name=name, fn=fn: run_as(name, fn, *a), module, x, idx, w)
                if adapter in ref:  # the tests' tolerance: grouped and padded give routed's numbers
                    torch.testing.assert_close(out.float(), ref[adapter].float(), atol=2e-3, rtol=2e-2)
                ref.setdefault(adapter, out)
                cells.append(f"{took * 1e3:.1f}")
            calls = []
            for adapter in (None, "lora"):
                module._jarvis_active = adapter
                calls.append(str(moe_4bit.operator_calls(lambda *a, name=name, fn=fn: run_as(name, fn, *a),
                                                         module, x, idx, w)))
            cells.append(" / ".join(calls))
        module._jarvis_active = None
        if args.baselines:
            layer_s, b = timed(layer_cache, x, idx, w)
            assert torch.equal(ref[None], b), "routed and per-layer cache disagree"
            cells.append(f"{layer_s * 1e3:.1f}")
            if T <= 8:
                naive_s, c = timed(naive, x, idx, w)
                assert torch.equal(ref[None], c)
                cells.append(f"{naive_s * 1e3:.0f}")
            else:
                cells.append("(not run: minutes)")
        print(f"| {T} | {hit} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
