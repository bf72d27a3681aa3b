"""Train the demo LoRA adapters on demo/train_data.jsonl (CPU, seeded, ~5 min on 2 cores).

Writes two adapters from the same run, like a real fine-tune's checkpoints:
  demo/output/jarvis-demo-early/final/   after the first epoch
  demo/output/jarvis-demo/final/         at the end (the demo's default adapter)

The prompt is rendered exactly as the benchmark renders it (same system prompt, same chat
template), and the loss covers the answer tokens only.

    uv run python demo/train_adapter.py [--epochs 3] [--out demo/output]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=HERE / "train_data.jsonl")
    p.add_argument("--out", type=Path, default=HERE / "output")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--precision", choices=["bf16", "fp32"], default="fp32",
                   help="bf16 autocast: faster on CPUs with AMX, but the adapter it gave routed fewer tools")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave the default)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from jarvis_bench import chat, demo
    from jarvis_bench.config import PROJECT_ROOT, load

    if args.threads:
        torch.set_num_threads(args.threads)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    cfg = load(PROJECT_ROOT / "benchmark_config.json")
    base = demo.base_dir()
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    lora = LoraConfig(
        r=args.rank, lora_alpha=2 * args.rank, lora_dropout=0.0, task_type="CAUSAL_LM",
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    )
    model = get_peft_model(model, lora)
    model.print_trainable_parameters()

    rows = [json.loads(line) for line in args.data.read_text(encoding="utf-8").split("\n") if line.strip()]
    tools = chat.tools(cfg)
    examples = []
    for r in rows:
        prompt = chat.render(tok, chat.messages(cfg, r["prompt"]), tool_schemas=tools, enable_thinking=False)
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        a_ids = tok(r["response"] + "<|im_end|>", add_special_tokens=False)["input_ids"]
        examples.append((p_ids, a_ids))
    print(f"{len(examples)} examples, max length {max(len(p) + len(a) for p, a in examples)} tokens")

    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.0)
    steps_per_epoch = (len(examples) + args.batch_size - 1) // args.batch_size
    total = steps_per_epoch * args.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 10) * max(0.05, 1 - s / total))
    inner = model.get_base_model()
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    model.train()
    t0 = time.perf_counter()
    step = 0
    for epoch in range(args.epochs):
        # Length-bucketed batches (little padding), visited in a seeded random order.
        rng = random.Random(args.seed + epoch)
        order = sorted(range(len(examples)), key=lambda i: (sum(map(len, examples[i])), rng.random()))
        batches = [order[b : b + args.batch_size] for b in range(0, len(order), args.batch_size)]
        rng.shuffle(batches)
        for idx in batches:
            batch = [examples[i] for i in idx]
            width = max(len(p) + len(a) for p, a in batch)
            ids = torch.full((len(batch), width), pad)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            labels = torch.full((len(batch), width), -100)
            for i, (p, a) in enumerate(batch):
                seq = p + a
                ids[i, : len(seq)] = torch.tensor(seq)
                mask[i, : len(seq)] = 1
                labels[i, len(p) : len(seq)] = torch.tensor(a)
            # Hidden states, then the (large) vocabulary projection only where the loss is computed.
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
                hidden = inner.model(input_ids=ids, attention_mask=mask).last_hidden_state[:, :-1]
                target = labels[:, 1:]
                keep = target != -100
                logits = inner.lm_head(hidden[keep])
            loss = torch.nn.functional.cross_entropy(logits.float(), target[keep])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            if step % 10 == 0 or step == total:
                print(f"epoch {epoch + 1} step {step}/{total} loss {loss.item():.3f} ({time.perf_counter() - t0:.0f}s)")
        if epoch == 0 or epoch == args.epochs - 1:
            name = "jarvis-demo-early" if epoch == 0 and args.epochs > 1 else "jarvis-demo"
            dest = args.out / name / "final"
            model.save_pretrained(dest)
            cfg_path = dest / "adapter_config.json"
            ac = json.loads(cfg_path.read_text())
            ac["base_model_name_or_path"] = demo.DEMO_BASE_NAME
            cfg_path.write_text(json.dumps(ac, indent=2, sort_keys=True) + "\n")
            (dest / "README.md").unlink(missing_ok=True)
            print(f"saved {dest}")
    print(f"trained in {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
