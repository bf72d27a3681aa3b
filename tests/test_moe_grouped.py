"""The grouped experts forward against the routed one on an experts module built here (any size, any routing):
same outputs in float32 and bfloat16, NF4 with and without double quant, full precision, with and without an
adapter's expert LoRA, several adapters switched; tokens routed to no expert, one token, one expert taking
every token; and a number of operator calls per layer that does not grow with the experts hit."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from jarvis_bench.backends import moe_4bit

E, H, I, K = 16, 256, 128, 4  # blocks divisible by the double-quant block (256), as at full size


def _experts(dtype: torch.dtype, *, quant: bool, double_quant: bool = True, adapters: int = 0, seed: int = 0):
    """An experts module with transformers' Qwen3MoeExperts layout, NF4-stored as the 4-bit load stores it."""
    g = torch.Generator().manual_seed(seed)

    class Experts(nn.Module):
        def __init__(self):
            super().__init__()
            self.num_experts, self.act_fn = E, nn.SiLU()

        def _apply_gate(self, gate_up):
            gate, up = gate_up.chunk(2, dim=-1)
            return self.act_fn(gate) * up

    m = Experts()
    for name, shape in (("gate_up_proj", (E, 2 * I, H)), ("down_proj", (E, H, I))):
        stack = (torch.randn(*shape, generator=g) * 0.05).to(dtype)
        if quant:
            q = moe_4bit.quantize_stack(stack, double_quant=double_quant, dtype=dtype)
            setattr(m, name, nn.Parameter(moe_4bit.store(m, name, q), requires_grad=False))
        else:
            setattr(m, name, nn.Parameter(stack, requires_grad=False))
    m._jarvis_lora = {f"a{i}": {"gate_up_proj": (torch.randn(E, 4, H, generator=g) * 0.1,
                                                 torch.randn(E, 2 * I, 4, generator=g) * 0.1),
                                "down_proj": (torch.randn(E, 4, I, generator=g) * 0.1,
                                              torch.randn(E, H, 4, generator=g) * 0.1)} for i in range(adapters)}
    return m


def _routing(T: int, dtype: torch.dtype, seed: int = 1, *, no_expert: bool = False):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(T, H, generator=g)).to(dtype)
    idx = torch.stack([torch.randperm(E + int(no_expert), generator=g)[:K] for _ in range(T)])
    w = torch.softmax(torch.randn(T, K, generator=g), -1).to(dtype)
    return x, idx, w


@pytest.fixture(params=["grouped", "padded"])
def lay(request, monkeypatch):
    """Each layout of the grouped forward, forced (on the CPU it would take torch._grouped_mm; the padded
    batched matmuls are what an RTX 3090/4090 runs for decode steps)."""
    monkeypatch.setattr(moe_4bit, "layout", lambda device, tokens: request.param)
    return request.param


def _close(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype) -> None:
    tol = {"atol": 2e-6, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 2e-3, "rtol": 2e-2}
    torch.testing.assert_close(b.float(), a.float(), **tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("quant,double_quant", [(True, True), (True, False), (False, False)],
                         ids=["nf4+dq", "nf4", "full"])
@pytest.mark.parametrize("adapter", [None, "a0"])
@pytest.mark.parametrize("T", [1, 3, 7, 30])
def test_grouped_equals_routed(dtype, quant, double_quant, adapter, T, lay):
    """T=1, 3: fewer pairs than experts, the hit ones are gathered; T=7, 30: every expert, read in place.
    T=3, 7: some pairs are routed to no expert (index E)."""
    m = _experts(dtype, quant=quant, double_quant=double_quant, adapters=1)
    m._jarvis_active = adapter
    x, idx, w = _routing(T, dtype, no_expert=T in (3, 7))
    _close(moe_4bit.experts_forward(m, x, idx, w), moe_4bit.grouped_forward(m, x, idx, w), dtype)


def test_grouped_with_several_adapters_switched_and_one_expert_taking_every_token(lay):
    m = _experts(torch.float32, quant=True, adapters=2)
    x, idx, w = _routing(12, torch.float32)
    outs = {}
    for active in ("a0", "a1", None, "a0"):
        m._jarvis_active = active
        got = moe_4bit.grouped_forward(m, x, idx, w)
        _close(moe_4bit.experts_forward(m, x, idx, w), got, torch.float32)
        outs.setdefault(active, got)
        assert torch.equal(outs[active], got)  # switching back gives the same numbers
    assert not torch.allclose(outs["a0"], outs["a1"])
    every = torch.full((9, 1), 3)
    _close(moe_4bit.experts_forward(m, x[:9], every, w[:9, :1]), moe_4bit.grouped_forward(m, x[:9], every, w[:9, :1]),
           torch.float32)


def test_one_call_dequantizes_the_listed_experts_as_each_alone():
    m = _experts(torch.float32, quant=True)
    experts = torch.tensor([5, 0, 11])
    for name in moe_4bit.EXPERT_PARAMS:
        together = moe_4bit.experts_weights(m, name, experts)
        for i, e in enumerate(experts.tolist()):
            assert torch.equal(together[i], moe_4bit.expert_weight(m, name, e))
        every = moe_4bit.experts_weights(m, name, None)  # all of them, read in place
        assert every.shape[0] == E and all(torch.equal(every[e], moe_4bit.expert_weight(m, name, e)) for e in range(E))


launches = moe_4bit.operator_calls


@pytest.mark.parametrize("adapter", [None, "a0"])
def test_grouped_runs_a_fixed_number_of_operators_whatever_the_experts_hit(adapter, lay):
    m = _experts(torch.bfloat16, quant=True, adapters=1)
    m._jarvis_active = adapter
    grouped, routed = {}, {}
    for T in (1, 2, 3, 4, 8, 30):
        x, idx, w = _routing(T, torch.bfloat16)
        grouped[T], routed[T] = launches(moe_4bit.grouped_forward, m, x, idx, w), launches(moe_4bit.experts_forward,
                                                                                             m, x, idx, w)
    # the same whether 4, 8 or 12 experts are hit (hit experts gathered), and fewer from 4 tokens on, where
    # there are as many pairs as experts and every expert is read in place
    assert grouped[1] == grouped[2] == grouped[3] > grouped[4] == grouped[8] == grouped[30], grouped
    assert routed[30] > 3 * routed[1]  # routed grows with the experts hit (4 of 16 for one token, 16 for 30)
    assert grouped[30] < routed[30] / 4
    # the target: 40, with or without an adapter (its LoRA adds 4 per projection: a cast to float32, as peft
    # computes LoRA, two grouped matmuls, an in-place add). The padded layout pays 9 more for its bookkeeping
    # (slot and row of each pair, the padded rows written and read back) and 2 per projection for the LoRA
    # factors of the hit experts (gathered: a batched matmul has no groups to share them)
    assert grouped[1] <= {"grouped": 40, "padded": 40 if adapter is None else 52}[lay], (grouped, routed)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("adapter", [None, "a0"])
def test_grouped_equals_routed_on_cuda(adapter, lay):
    """On the GPU: bf16 NF4 experts (quantized there, as the 4-bit load does), one token and a batch, in each
    layout: torch._grouped_mm (one kernel on sm90/sm100, torch's loop elsewhere) and the padded bmm."""
    m = _experts(torch.bfloat16, quant=False, adapters=1).cuda()
    for name in moe_4bit.EXPERT_PARAMS:
        stack = getattr(m, name).data
        q = moe_4bit.quantize_stack(stack, double_quant=True, dtype=torch.bfloat16)
        setattr(m, name, nn.Parameter(moe_4bit.store(m, name, q), requires_grad=False))
    m._jarvis_lora = {k: {p: tuple(t.cuda() for t in ab) for p, ab in v.items()} for k, v in m._jarvis_lora.items()}
    m._jarvis_active = adapter
    for T in (1, 30):
        x, idx, w = (t.cuda() for t in _routing(T, torch.bfloat16))
        _close(moe_4bit.experts_forward(m, x, idx, w), moe_4bit.grouped_forward(m, x, idx, w), torch.bfloat16)
