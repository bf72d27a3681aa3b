"""Do two runs answer alike? Compares two benchmark_results.json (e.g. the transformers and the vllm
backend on the same prompts): answers equal per variant, the prompts where they part, and each run's
device, dtype, timings and memory.

    uv run python benchmarks/compare_backends.py results/hf/benchmark_results.json results/vllm/benchmark_results.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

FIELDS = ("backend", "device", "dtype", "quantization", "gpu", "base_load_s", "peak_gpu_memory_gib",
          "engine_gpu_memory_gib", "vllm")


def load(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"error: cannot read {path}: {exc}") from None


def answers(data: dict) -> dict[tuple[str, str], str]:
    return {(r["id"], v): a["response"] for r in data["results"] for v, a in r["variants"].items()}


def compare(a: dict, b: dict) -> tuple[str, int, int]:
    """(markdown, equal answers, answers compared)."""
    x, y = answers(a), answers(b)
    common = sorted(set(x) & set(y))
    lines = ["| | run 1 | run 2 |", "|---|---|---|"]
    for f in FIELDS:
        va, vb = a["metadata"].get(f), b["metadata"].get(f)
        if va is not None or vb is not None:
            lines.append(f"| {f} | {va if va is not None else '-'} | {vb if vb is not None else '-'} |")
    ta, tb = a["metadata"].get("timings", {}), b["metadata"].get("timings", {})
    lines.append(f"| total_s | {ta.get('total_s', '-')} | {tb.get('total_s', '-')} |")
    same = sum(x[k] == y[k] for k in common)
    lines += ["", f"Answers equal: **{same}/{len(common)}**"]
    for variant in sorted({v for _, v in common}):
        keys = [k for k in common if k[1] == variant]
        differ = [k[0] for k in keys if x[k] != y[k]]
        lines.append(f"- {variant}: {len(keys) - len(differ)}/{len(keys)} equal"
                     + (f"; differ on {', '.join(differ)}" if differ else ""))
    return "\n".join(lines), same, len(common)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("first", type=Path)
    p.add_argument("second", type=Path)
    p.add_argument("--min-equal", type=float, default=0.0, help="exit 1 below this share of equal answers")
    args = p.parse_args(argv)
    text, same, n = compare(load(args.first), load(args.second))
    print(text)
    if n == 0:
        print("error: the two runs share no (prompt, variant) answer", file=sys.stderr)
        return 1
    return 0 if same >= args.min_equal * n else 1


if __name__ == "__main__":
    sys.exit(main())
