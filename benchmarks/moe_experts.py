"""One Qwen3-30B-A3B MoE layer in 4-bit: how to run the experts without dequantizing too much.

Usage:
    uv run python benchmarks/moe_experts.py                 # CPU, real layer size (128 experts, 2048 -> 768)
    uv run python benchmarks/moe_experts.py --device cuda   # on a GPU
    uv run python benchmarks/moe_experts.py --experts 32    # a smaller layer (quicker)

Builds one experts module at Qwen3-30B-A3B's size with random weights, quantizes it the way the
transformers backend does (NF4 + double quant, expert by expert: `moe_4bit.quantize_stack`), routes T
tokens to their top-8 experts with a random router, and times three ways to run it:

- routed  : `moe_4bit.experts_forward` (model.moe_forward "routed"): dequantize each routed expert's slice
            once per forward, a Python loop over the experts hit;
- grouped : `moe_4bit.grouped_forward` (model.moe_forward "grouped"): tokens sorted by expert, the hit
            experts dequantized in one call per projection, one grouped matmul per projection;
- layer   : dequantize the whole stack once per forward (a per-layer cache), then the eager loop;
- naive   : a dequantize-on-access parameter read by transformers' eager loop: the whole stack is
            dequantized for every routed expert (the trap the issue names) — timed on fewer tokens.

Prints a Markdown table (median of --repeat runs, after one warm-up) with the operator calls per layer of
routed and grouped (torch.profiler's top-level aten calls that launch work: `moe_4bit.operator_calls`, the
proxy for kernel launches on a GPU), and checks that they all give the same output.
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
    print(f"One MoE layer: {E} experts, hidden {H}, expert width {I}, top-{args.top_k}, NF4 + double quant, "
          f"compute {args.dtype}, device {args.device}, torch threads {torch.get_num_threads()}; "
          f"quantized in {quant_s:.1f} s; median of {args.repeat} runs after a warm-up.\n")
    print("| tokens | experts hit | routed (ms) | routed op calls | grouped (ms) | grouped op calls | "
          "per-layer cache (ms) | naive, whole stack per expert (ms) |")
    print("|---|---|---|---|---|---|---|---|")
    for T in (int(t) for t in args.tokens.split(",")):
        x = torch.randn(T, H, device=dev, dtype=dtype)
        probs = torch.softmax(x.float() @ router.T, dim=-1)
        w, idx = torch.topk(probs, args.top_k, dim=-1)
        w = (w / w.sum(-1, keepdim=True)).to(dtype)
        hit = idx.unique().numel()
        routed_s, a = timed(moe_4bit.experts_forward, module, x, idx, w)
        grouped_s, g = timed(moe_4bit.grouped_forward, module, x, idx, w)
        torch.testing.assert_close(g.float(), a.float(), atol=2e-3, rtol=2e-2)  # the tests' tolerance
        calls = {f: moe_4bit.operator_calls(f, module, x, idx, w) for f in (moe_4bit.experts_forward,
                                                                            moe_4bit.grouped_forward)}
        layer_s, b = timed(layer_cache, x, idx, w)
        assert torch.equal(a, b), "routed and per-layer cache disagree"
        if T <= 8:
            naive_s, c = timed(naive, x, idx, w)
            assert torch.equal(a, c)
            naive_txt = f"{naive_s * 1e3:.0f}"
        else:
            naive_txt = "(not run: minutes)"
        print(f"| {T} | {hit} | {routed_s * 1e3:.1f} | {calls[moe_4bit.experts_forward]} | {grouped_s * 1e3:.1f} | "
              f"{calls[moe_4bit.grouped_forward]} | {layer_s * 1e3:.1f} | {naive_txt} |")


if __name__ == "__main__":
    main()
