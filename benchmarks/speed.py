"""Speed of the jarvis-bench pipeline against a seed-style script and the bare-generate floor.

Each scenario runs in its own fresh Python process (same machine, same 30 demo prompts, same
max_new_tokens, greedy), `--repeats` times; the table reports medians and writes benchmarks/RESULTS.md.

    (a) pipeline  `benchmark.py --demo --no-cache` in-process: load once, batched, scoring, JSON
    (b) naive     the seed's approach: load the base, answer prompt by prompt; load base+LoRA again,
                  answer prompt by prompt (no scoring: it is strictly less work than (a))
    (c) generate  base+LoRA already loaded, prompts already tokenized: only transformers' batched
                  `model.generate`, all prompts in one left-padded batch per variant
    (e) engine    the same, but only the decoding loop the pipeline uses (`decode.greedy`: shared
                  prefix, finished rows leave, in-place KV cache, GQA SDPA): (a) minus (e) is the
                  harness overhead (imports, loading, tokenizing, scoring, writing)
    (d) lm-eval   lm-evaluation-harness's HF backend with `peft=` on the same prompts, only when
                  `lm_eval` is importable (`uv run --with lm-eval python benchmarks/speed.py`)
    (f) cached    `benchmark.py --demo` again with the generation cache on and every answer in it

Every scenario returns its 60 answers; the table says whether they are identical to (b)'s, which is
`generate` one prompt at a time. A warm-up run first fills the caches a user's second run would find
(bytecode, the dequantized demo model, the embedder); the generation cache is off in (a).

    uv run python benchmarks/speed.py                 # 3 repeats of each
    uv run python benchmarks/speed.py --repeats 1 --only a e
"""

from __future__ import annotations

import argparse
import hashlib
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
             "c": "transformers `generate`, one batch, model loaded", "e": "engine floor (`decode.greedy`, model loaded)",
             "d": "lm-eval HF backend + peft", "f": "pipeline, rerun with every answer cached"}
TIMED = {"a": "whole run", "b": "whole run", "c": "generation only", "e": "generation only", "d": "whole run",
         "f": "whole run"}
BEGIN, END = "<!-- speed.py:begin -->", "<!-- speed.py:end -->"


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux


def _digest(answers: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(answers, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:12]


def _setup():
    import torch

    from jarvis_bench import chat, config, demo
    from jarvis_bench.clitools import setup_logging

    setup_logging(quiet=True)
    cfg = demo.apply(config.load(ROOT / "benchmark_config.json"))
    msgs = [chat.messages(cfg, p) for p in cfg.prompts]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return cfg, msgs, demo, device


def _load(demo, device, adapter: bool):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(demo.base_dir())
    model = AutoModelForCausalLM.from_pretrained(demo.base_dir(), dtype=torch.float32).to(device)
    if adapter:
        model = PeftModel.from_pretrained(model, str(demo.DEMO_ADAPTER))
    return tok, model.eval()


def _eos(tok, model) -> set[int]:
    ids = {tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")}
    default = model.generation_config.eos_token_id
    ids.update(default if isinstance(default, list) else [default])
    return {i for i in ids if isinstance(i, int) and i != tok.unk_token_id}


def _text(tok, ids, eos) -> tuple[str, int]:
    from jarvis_bench.text import strip_thinking

    stop = next((i for i, t in enumerate(ids) if t in eos), None)
    ids = ids if stop is None else ids[:stop]
    return strip_thinking(tok.decode(ids, skip_special_tokens=True))[0], len(ids)


def _prompts(tok, cfg, msgs) -> list[list[int]]:
    from jarvis_bench import chat

    return [tok(chat.render(tok, m, tool_schemas=chat.tools(cfg), enable_thinking=cfg.generation.enable_thinking),
                add_special_tokens=False)["input_ids"] for m in msgs]


def run_a(max_new_tokens: int, cache: bool = False) -> dict:
    from jarvis_bench.commands import benchmark

    with tempfile.TemporaryDirectory() as out:
        code = benchmark.main(["--demo", "--quiet", "--output-dir", out, "--max-new-tokens", str(max_new_tokens),
                               *([] if cache else ["--no-cache"])])
        data = json.loads((Path(out) / "benchmark_results.json").read_text(encoding="utf-8"))
    assert code == 0, code
    tokens = sum(a["tokens"] for r in data["results"] for a in r["variants"].values())
    answers = {f"{r['id']}/{v}": a["response"] for r in data["results"] for v, a in r["variants"].items()}
    return {"tokens": tokens, "answers": answers}


def run_b(max_new_tokens: int) -> dict:
    import torch

    cfg, msgs, demo, device = _setup()
    tokens, answers = 0, {}
    for with_adapter in (False, True):  # the seed loads the model twice
        tok, model = _load(demo, device, with_adapter)
        eos = _eos(tok, model)
        for p, ids in zip(cfg.prompts, _prompts(tok, cfg, msgs)):
            with torch.inference_mode():
                out = model.generate(input_ids=torch.tensor([ids], device=device), max_new_tokens=max_new_tokens,
                                     do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=sorted(eos))
            text, n = _text(tok, out[0, len(ids):].tolist(), eos)
            answers[f"{p.id}/{'jarvis-demo' if with_adapter else 'base'}"] = text
            tokens += n
        del model
    return {"tokens": tokens, "answers": answers}


def _variants(model):
    import contextlib

    return (("base", model.disable_adapter()), ("jarvis-demo", contextlib.nullcontext()))


def run_c(max_new_tokens: int) -> dict:
    """Only model.generate is timed: loading and tokenizing happen before the clock starts."""
    import torch

    cfg, msgs, demo, device = _setup()
    tok, model = _load(demo, device, True)
    tok.padding_side = "left"
    eos = _eos(tok, model)
    prompts = _prompts(tok, cfg, msgs)
    batch = tok.pad({"input_ids": prompts}, return_tensors="pt").to(device)
    tokens, answers = 0, {}
    t0 = time.perf_counter()
    for name, ctx in _variants(model):
        with ctx, torch.inference_mode():
            out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id, eos_token_id=sorted(eos))
        for p, row in zip(cfg.prompts, out[:, batch["input_ids"].shape[1]:].tolist()):
            answers[f"{p.id}/{name}"], n = _text(tok, row, eos)
            tokens += n
    return {"tokens": tokens, "answers": answers, "timed_s": time.perf_counter() - t0}


def run_e(max_new_tokens: int) -> dict:
    """Only the pipeline's decoding loop is timed (same settings as the transformers backend)."""
    import torch

    from jarvis_bench.backends import decode

    cfg, msgs, demo, device = _setup()
    tok, model = _load(demo, device, True)
    decode.use_gqa_sdpa(model.get_base_model())
    eos = _eos(tok, model)
    prompts = _prompts(tok, cfg, msgs)
    tokens, answers, steps = 0, {}, 0
    t0 = time.perf_counter()
    for name, ctx in _variants(model):
        with ctx, torch.inference_mode():
            rows, stats = decode.greedy(model, prompts, max_new_tokens=max_new_tokens, eos_ids=eos,
                                        pad_id=tok.pad_token_id)
        steps += stats.steps + 1
        for p, row in zip(cfg.prompts, rows):
            answers[f"{p.id}/{name}"], n = _text(tok, row.tokens, eos)
            tokens += n
    return {"tokens": tokens, "answers": answers, "timed_s": time.perf_counter() - t0, "steps": steps,
            **_gpu_bound(model, steps, time.perf_counter() - t0)}


def _gpu_bound(model, steps: int, seconds: float) -> dict:
    import torch

    if not torch.cuda.is_available():
        return {}
    from jarvis_bench import gpu, sizing

    bandwidth = gpu.bandwidth_gbs(0)
    if bandwidth is None:
        return {"gpu_bound": f"{torch.cuda.get_device_name(0)}: memory bandwidth unknown (no clock rate, no NVML)"}
    params = sizing.count_params(model.config.to_dict())
    read, bound = sizing.decode_bound(params, quantization="none", dtype="float32", bandwidth_gbs=bandwidth)
    return {"gpu_bound": f"{torch.cuda.get_device_name(0)}: decode ≤ {bound:.0f} steps/s = {bandwidth:.0f} GB/s ÷ "
                         f"{read:.2f} GiB read per step; measured {steps / seconds:.0f} steps/s"}


def run_d(max_new_tokens: int) -> dict:
    """lm-evaluation-harness's HF model with peft=, generate_until on the same rendered prompts."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    cfg, msgs, demo, device = _setup()
    tokens, answers = 0, {}
    for name, peft in (("base", None), ("jarvis-demo", str(demo.DEMO_ADAPTER))):
        lm = HFLM(pretrained=str(demo.base_dir()), peft=peft, dtype="float32", device=device, batch_size=len(msgs))
        texts = [lm.tokenizer.decode(ids) for ids in _prompts(lm.tokenizer, cfg, msgs)]
        gen = {"until": ["<|im_end|>"], "max_gen_toks": max_new_tokens, "do_sample": False}
        reqs = [Instance("generate_until", None, (t, gen), i) for i, t in enumerate(texts)]
        for p, out in zip(cfg.prompts, lm.generate_until(reqs, disable_tqdm=True)):
            answers[f"{p.id}/{name}"] = out.strip()
            tokens += len(lm.tokenizer(out, add_special_tokens=False)["input_ids"])
        del lm
    return {"tokens": tokens, "answers": answers}


def child(name: str, max_new_tokens: int) -> None:
    t0 = time.perf_counter()
    run_f = lambda n: run_a(n, cache=True)  # noqa: E731
    result = {"a": run_a, "b": run_b, "c": run_c, "e": run_e, "d": run_d, "f": run_f}[name](max_new_tokens)
    wall = result.pop("timed_s", None) or time.perf_counter() - t0
    answers = result.pop("answers")
    print(json.dumps({"wall_s": wall, "peak_rss_gib": _peak_rss_gib(), "answers_sha": _digest(answers),
                      "answers": answers, **result}, ensure_ascii=False))


def measure(name: str, max_new_tokens: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # a user's machine writes .pyc
    proc = subprocess.run([sys.executable, __file__, "--child", name, "--max-new-tokens", str(max_new_tokens)],
                          capture_output=True, text=True, env={**env, "PYTHONHASHSEED": "0"})
    if proc.returncode != 0:
        raise SystemExit(f"scenario {name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{platform.system()} {platform.release()}, {os.cpu_count()} CPU cores ({cpu}), {gpu}, "
            f"Python {platform.python_version()}, torch {torch.__version__}, torch threads {torch.get_num_threads()}")


def _lm_eval_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("lm_eval") is not None


def table(runs: dict[str, list[dict]]) -> tuple[str, list[str]]:
    med = {n: {k: statistics.median(r[k] for r in rs) for k in ("wall_s", "tokens", "peak_rss_gib")}
           for n, rs in runs.items()}
    ref = med.get("b", {}).get("wall_s")
    ref_sha = runs["b"][0]["answers_sha"] if "b" in runs else None
    rows = ["| scenario | timed | wall (s, median) | runs (s) | answer tokens | tokens/s | peak RSS (GiB) "
            "| naive ÷ this | answers = (b) |", "|---|---|---|---|---|---|---|---|---|"]
    for n, m in med.items():
        ratio = f"{ref / m['wall_s']:.1f}×" if ref else "-"
        shas = {r["answers_sha"] for r in runs[n]}
        same = "-" if ref_sha is None else ("yes" if shas == {ref_sha} else f"no ({_diff(runs, n)} differ)")
        each = ", ".join(f"{r['wall_s']:.1f}" for r in runs[n])
        speed = "-" if n == "f" else f"{m['tokens'] / m['wall_s']:.1f}"  # (f) generates nothing
        rows.append(f"| ({n}) {SCENARIOS[n]} | {TIMED[n]} | {m['wall_s']:.1f} | {each} | {int(m['tokens'])} | "
                    f"{speed} | {m['peak_rss_gib']:.2f} | {ratio} | {same} |")
    notes = []
    if "a" in med and "e" in med:
        over = med["a"]["wall_s"] - med["e"]["wall_s"]
        notes.append(f"Harness overhead, (a) − (e): {over:.1f} s = {over / med['a']['wall_s']:.0%} of the pipeline's "
                     "wall time (imports, loading, tokenizing, scoring, writing).")
    if "c" in med and "e" in med:
        same = {r["answers_sha"] for r in runs["c"] + runs["e"]}
        notes.append(f"The pipeline's decoding loop (e) vs transformers' batched `generate` (c): "
                     f"{med['c']['wall_s'] / med['e']['wall_s']:.2f}× faster, "
                     f"{'same answers' if len(same) == 1 else 'DIFFERENT answers'}.")
    notes += sorted({r["gpu_bound"] for rs in runs.values() for r in rs if r.get("gpu_bound")})
    return "\n".join(rows), notes


def _diff(runs: dict[str, list[dict]], name: str) -> int:
    ref, got = runs["b"][0]["answers"], runs[name][0]["answers"]
    return sum(ref.get(k) != v for k, v in got.items())


def write_results(text: str) -> None:
    """Replace the generated block of RESULTS.md, keep the hand-written analysis around it."""
    path = HERE / "RESULTS.md"
    block = f"{BEGIN}\n{text}\n{END}"
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    if BEGIN in old and END in old:
        new = old[: old.index(BEGIN)] + block + old[old.index(END) + len(END):]
    else:
        new = f"# Speed results\n\n{block}\n"
    path.write_text(new, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--only", nargs="+", choices=list(SCENARIOS), default=None)
    p.add_argument("--child", choices=list(SCENARIOS), help=argparse.SUPPRESS)
    p.add_argument("--no-write", action="store_true", help="print the table only")
    args = p.parse_args(argv)
    if args.child:
        child(args.child, args.max_new_tokens)
        return 0
    names = args.only or [n for n in ("a", "b", "c", "e", "d", "f") if n != "d" or _lm_eval_available()]
    if "d" in names and not _lm_eval_available():
        p.error("scenario d needs lm_eval: uv run --with lm-eval python benchmarks/speed.py")
    if "d" not in names:
        print("(d) skipped: lm_eval is not importable (uv run --with lm-eval python benchmarks/speed.py)",
              file=sys.stderr)
    print("warm-up (bytecode, demo model, embedder)…", file=sys.stderr, flush=True)
    measure("a", 4)
    if "f" in names:
        measure("f", args.max_new_tokens)  # fills the generation cache (the user's, with the same answers)
    runs: dict[str, list[dict]] = {}
    for _ in range(args.repeats):
        for name in names:  # interleaved, so drift on a shared machine hits every scenario alike
            runs.setdefault(name, []).append(measure(name, args.max_new_tokens))
            print(f"  {name}: {runs[name][-1]['wall_s']:.1f} s", file=sys.stderr, flush=True)
    rows, notes = table(runs)
    print(rows)
    for n in notes:
        print(n)
    if not args.no_write:
        write_results(
            f"Machine: {machine()}\n\nDemo model, 30 prompts × (base + adapter), max_new_tokens "
            f"{args.max_new_tokens}, greedy, {args.repeats} repeat(s) interleaved, medians; each run in a fresh "
            f"process after a warm-up; generated by `uv run python benchmarks/speed.py` on "
            f"{time.strftime('%Y-%m-%d')}.\n\n{rows}\n\n" + "\n".join(f"- {n}" for n in notes)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
