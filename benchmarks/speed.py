"""Speed of the jarvis-bench pipeline against a seed-style script and the bare-generate floor.

Each scenario runs in its own fresh Python process (same machine, same 30 demo prompts, same
max_new_tokens, greedy), `--repeats` times; the table reports medians and writes benchmarks/RESULTS.md.

    (a) pipeline  `benchmark.py --demo --no-cache` in-process: load once, batched, scoring, JSON
    (b) naive     the seed's approach: load the base, answer prompt by prompt; load base+LoRA again,
                  answer prompt by prompt (no scoring: it is strictly less work than (a))
    (c) floor     base+LoRA already loaded, prompts already tokenized: only the batched
                  `model.generate` calls, with the pipeline's batches (the harness cannot beat it)

    uv run python benchmarks/speed.py                 # 3 repeats of each
    uv run python benchmarks/speed.py --repeats 1 --only a c
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SCENARIOS = {"a": "pipeline (jarvis-bench, cache off)", "b": "naive seed-style (2 loads, 1 prompt at a time)",
             "c": "floor (bare batched generate)"}


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux


def _setup():
    from jarvis_bench import chat, config, demo
    from jarvis_bench.clitools import setup_logging

    setup_logging(quiet=True)
    cfg = demo.apply(config.load(ROOT / "benchmark_config.json"))
    msgs = [chat.messages(cfg, p) for p in cfg.prompts]
    return cfg, msgs, demo


def run_a(max_new_tokens: int) -> dict:
    from jarvis_bench.commands import benchmark

    with tempfile.TemporaryDirectory() as out:
        code = benchmark.main(["--demo", "--no-cache", "--quiet", "--output-dir", out,
                               "--max-new-tokens", str(max_new_tokens)])
        data = json.loads((Path(out) / "benchmark_results.json").read_text(encoding="utf-8"))
    assert code == 0, code
    tokens = sum(a["tokens"] for r in data["results"] for a in r["variants"].values())
    answers = {f"{r['id']}/{v}": a["response"] for r in data["results"] for v, a in r["variants"].items()}
    return {"tokens": tokens, "answers": answers}


def _render(tok, cfg, msgs):
    from jarvis_bench import chat

    return chat.render(tok, msgs, tool_schemas=chat.tools(cfg), enable_thinking=cfg.generation.enable_thinking)


def run_b(max_new_tokens: int) -> dict:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg, msgs, demo = _setup()
    base_dir = demo.base_dir()
    tokens = 0
    for with_adapter in (False, True):  # the seed loads the model twice
        tok = AutoTokenizer.from_pretrained(base_dir)
        model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        if with_adapter:
            model = PeftModel.from_pretrained(model, str(demo.DEMO_ADAPTER))
        model.eval()
        for m in msgs:
            ids = tok(_render(tok, cfg, m), return_tensors="pt", add_special_tokens=False)
            with torch.inference_mode():
                out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=tok.pad_token_id or tok.eos_token_id)
            tokens += out.shape[1] - ids["input_ids"].shape[1]
        del model
    return {"tokens": tokens}


def run_c(max_new_tokens: int) -> dict:
    """Only model.generate is timed: loading and tokenizing happen before the clock starts."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from jarvis_bench.backends.hf import CPU_BATCH

    cfg, msgs, demo = _setup()
    base_dir = demo.base_dir()
    tok = AutoTokenizer.from_pretrained(base_dir)
    tok.padding_side = "left"
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32),
                                      str(demo.DEMO_ADAPTER)).eval()
    texts = sorted((_render(tok, cfg, m) for m in msgs), key=lambda t: len(tok(t)["input_ids"]))
    batches = [tok(texts[i:i + CPU_BATCH], return_tensors="pt", padding=True, add_special_tokens=False)
               for i in range(0, len(texts), CPU_BATCH)]
    tokens = 0
    t0 = time.perf_counter()
    for adapter in (False, True):
        for b in batches:
            ctx = model.disable_adapter() if not adapter else torch.inference_mode()
            with ctx, torch.inference_mode():
                out = model.generate(**b, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=tok.pad_token_id or tok.eos_token_id)
            new = out[:, b["input_ids"].shape[1]:]
            tokens += int(sum((row != tok.pad_token_id).sum() for row in new))
    return {"tokens": tokens, "timed_s": time.perf_counter() - t0}


def child(name: str, max_new_tokens: int) -> None:
    t0 = time.perf_counter()
    result = {"a": run_a, "b": run_b, "c": run_c}[name](max_new_tokens)
    wall = result.pop("timed_s", None) or time.perf_counter() - t0
    result.pop("answers", None)
    print(json.dumps({"wall_s": wall, "peak_rss_gib": _peak_rss_gib(), **result}))


def measure(name: str, max_new_tokens: int) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", name, "--max-new-tokens", str(max_new_tokens)],
                          capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    if proc.returncode != 0:
        raise SystemExit(f"scenario {name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{platform.system()} {platform.release()}, {os.cpu_count()} CPU cores ({cpu}), {gpu}, "
            f"Python {platform.python_version()}, torch {torch.__version__}, torch threads {torch.get_num_threads()}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--only", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS))
    p.add_argument("--child", choices=list(SCENARIOS), help=argparse.SUPPRESS)
    p.add_argument("--no-write", action="store_true", help="print the table only")
    args = p.parse_args(argv)
    if args.child:
        child(args.child, args.max_new_tokens)
        return 0
    runs: dict[str, list[dict]] = {}
    for _ in range(args.repeats):
        for name in args.only:  # interleaved, so drift on a shared machine hits every scenario alike
            runs.setdefault(name, []).append(measure(name, args.max_new_tokens))
            print(f"  {name}: {runs[name][-1]['wall_s']:.1f} s", file=sys.stderr, flush=True)
    med = {n: {k: statistics.median(r[k] for r in rs) for k in ("wall_s", "tokens", "peak_rss_gib")}
           for n, rs in runs.items()}
    ref = med.get("b", {}).get("wall_s")
    rows = ["| scenario | wall (s, median) | generated tokens | tokens/s | peak RSS (GiB) | naive ÷ this |",
            "|---|---|---|---|---|---|"]
    for n, m in med.items():
        ratio = f"{ref / m['wall_s']:.1f}×" if ref else "-"
        rows.append(f"| ({n}) {SCENARIOS[n]} | {m['wall_s']:.1f} | {int(m['tokens'])} | "
                    f"{m['tokens'] / m['wall_s']:.1f} | {m['peak_rss_gib']:.2f} | {ratio} |")
    table = "\n".join(rows)
    print(table)
    if "a" in med and "c" in med:
        overhead = 1 - med["c"]["wall_s"] / med["a"]["wall_s"]
        print(f"harness overhead (everything in (a) that is not (c)): {overhead:.0%} of the pipeline's wall time")
    if not args.no_write:
        text = (f"# Speed results\n\nMachine: {machine()}\n\nDemo model, 30 prompts × (base + adapter), "
                f"max_new_tokens {args.max_new_tokens}, greedy, {args.repeats} repeat(s), medians; "
                f"generated by `uv run python benchmarks/speed.py` on {time.strftime('%Y-%m-%d')}.\n\n{table}\n")
        (HERE / "RESULTS.md").write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
