#!/usr/bin/env bash
# What only a CUDA machine can confirm, in one command: about 10 minutes on one H100/H200 from a fresh
# checkout (installing the vllm extra from PyPI included; a machine without network access cannot
# install it, see benchmarks/RESULTS.md). Writes ONE results file to bring back:
#   $OUT/gpu_check.md   (OUT defaults to /tmp/gpu_check; the full logs lie beside it)
#
#   bash benchmarks/gpu_check.sh
#
# Steps (each with a time limit; a failed step does not stop the others; exit 1 if any failed):
#   1. environment: GPU, driver, torch/CUDA, vLLM versions; check_setup.py on the default config
#   2. every gpu-marked test: 4-bit/8-bit base + LoRA on CUDA, batched = one at a time, a real OOM
#      recovered, two GPUs (when present), the 4-bit MoE path on a tiny Qwen3-MoE with LoRAs, vLLM with
#      per-expert and fused-expert MoE LoRAs
#   3. the demo benchmark on CUDA in bf16 through the transformers and the vllm backends, answers compared
#   4. the speed table (pipeline, engine floor) on the GPU
#   5. one Qwen3-30B-A3B MoE layer in 4-bit on the GPU: the routed experts forward vs the grouped one in
#      both layouts (torch._grouped_mm, padded bmm), without and with an expert LoRA: agreement asserted, time
#      and operator calls each — which is faster settles model.moe_forward "auto"
# Without a GPU (or without nvidia-smi) it runs what a CPU can (1, 2 as skips, 3 on the transformers
# backend) and says what it skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/gpu_check}"
mkdir -p "$out"
report="$out/gpu_check.md"
failed=()
gpu=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then gpu=1; fi

command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet uv
extras=()
[ "$gpu" = 1 ] && extras=(--extra vllm)
t0=$SECONDS
if ! uv sync --locked "${extras[@]}" >"$out/sync.log" 2>&1; then
  tail -20 "$out/sync.log"
  echo "uv sync failed (this needs PyPI; see $out/sync.log)" >&2
  exit 1
fi
sync_s=$((SECONDS - t0))
if [ "$gpu" = 1 ] && ! uv run python -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
  # the locked torch is a CUDA 13 build: it needs an NVIDIA driver >= 580
  echo "nvidia-smi sees a GPU but torch does not: $(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -1) driver; the locked torch (CUDA 13) needs >= 580" >&2
  exit 1
fi

{
  echo "# gpu_check $(date -u +%Y-%m-%dT%H:%MZ) · commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo
  echo "uv sync ${extras[*]:-}: ${sync_s} s"
} >"$report"

# step NAME LIMIT_S COMMAND...: runs it, keeps its log, appends the tail to the report
step() {
  local name="$1" limit="$2"
  shift 2
  local log="$out/$name.log" t=$SECONDS rc
  echo ">> $name" >&2
  timeout "$limit" bash -c '"$@"' step "$@" >"$log" 2>&1  # bash -c: shell functions too (exported)
  rc=$?
  local took=$((SECONDS - t))
  {
    echo
    echo "## $name: $([ $rc = 0 ] && echo ok || echo "FAILED (exit $rc$([ $rc = 124 ] && echo ", over ${limit} s"))") in ${took} s"
    echo
    echo '```'
    grep -v -e '^Loading weights' -e 'it/s]$' "$log" | tail -n 60
    echo '```'
  } >>"$report"
  [ $rc = 0 ] || failed+=("$name")
  return 0
}

env_info() {
  if [ "$gpu" = 1 ]; then
    nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv
  fi
  uv run python - <<'EOF'
import importlib.metadata as md, torch
print("torch", torch.__version__, "CUDA build", torch.version.cuda, "| GPUs:", torch.cuda.device_count())
for name in ("transformers", "peft", "bitsandbytes", "vllm", "vllm-bnb-plugin", "ray"):
    try:
        print(name, md.version(name))
    except md.PackageNotFoundError:
        print(name, "not installed")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("cuda:0 memory_clock_rate", getattr(p, "memory_clock_rate", None), "bus", getattr(p, "memory_bus_width", None))
    from jarvis_bench import gpu
    print("bandwidth GB/s:", gpu.bandwidth_gbs(0))
EOF
  HF_HUB_OFFLINE=1 uv run python check_setup.py || true  # FAIL lines are information here (e.g. the 30B model is not downloaded)
}
export -f env_info
export gpu out
step environment 120 env_info

# The demo comparison runs in step 3 through the CLI; the pytest twin is left out to save a vLLM start.
gpu_tests() {
  uv run pytest -m gpu -ra -q -p no:cacheprovider \
    --deselect tests/test_vllm_backend.py::test_vllm_and_transformers_answer_alike_on_the_demo | tee "$out/pytest_gpu.txt"
  local rc=${PIPESTATUS[0]}
  # on a GPU machine a skipped gpu test is a failure (only the two-GPU one may skip on one GPU)
  if [ "$gpu" = 1 ] && grep '^SKIPPED' "$out/pytest_gpu.txt" | grep -v 'two CUDA GPUs'; then
    echo "gpu tests were skipped on a GPU machine (above)"
    return 1
  fi
  return "$rc"
}
export -f gpu_tests
step gpu_tests 420 gpu_tests

demo_compare() {
  local dtype=bfloat16
  [ "$gpu" = 1 ] || dtype=float32  # bf16 matmuls are slow on CPU
  local common=(--demo --dtype "$dtype" --quiet --no-cache)
  uv run python benchmark.py "${common[@]}" --output-dir "$out/demo-transformers" || return 1
  if [ "$gpu" = 1 ]; then
    # eager (no torch.compile, no CUDA graph capture): the answers are the same, the start a minute shorter
    uv run python -c 'import json, sys; c = json.load(open("benchmark_config.json", encoding="utf-8"))
c["model"].setdefault("vllm", {})["enforce_eager"] = True
json.dump(c, open(sys.argv[1], "w", encoding="utf-8"), ensure_ascii=False)' "$out/eager_config.json" || return 1
    uv run python benchmark.py "${common[@]}" --config "$out/eager_config.json" --backend vllm \
      --output-dir "$out/demo-vllm" || return 1
    uv run python benchmarks/compare_backends.py --min-equal 0.5 \
      "$out/demo-transformers/benchmark_results.json" "$out/demo-vllm/benchmark_results.json"
  else
    echo "no GPU: the vllm run and the comparison are skipped; the transformers run above is on CPU"
    uv run python benchmarks/compare_backends.py \
      "$out/demo-transformers/benchmark_results.json" "$out/demo-transformers/benchmark_results.json"
  fi
}
export -f demo_compare
step demo_backends 300 demo_compare

if [ "$gpu" = 1 ]; then
  step speed 240 uv run python benchmarks/speed.py --repeats 1 --only a e --no-write
  step moe_experts_cuda 180 uv run python benchmarks/moe_experts.py --device cuda --repeat 10 --tokens 1,8,30,240,1024
else
  echo -e "\n## speed, moe_experts_cuda: skipped (no GPU)" >>"$report"
fi

{
  echo
  echo "## summary: total $((SECONDS - t0)) s; $([ ${#failed[@]} = 0 ] && echo "every step ok" || echo "FAILED: ${failed[*]}")"
} >>"$report"
echo "results: $report" >&2
[ ${#failed[@]} = 0 ]
