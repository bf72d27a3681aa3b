#!/usr/bin/env bash
# What only a CUDA machine can confirm, in one short run (~5 min on an H100/H200 once packages are in).
# Usage: bash benchmarks/gpu_check.sh            (from the repository root; writes to $OUT if set)
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/gpu_check}"
mkdir -p "$out"
command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet uv
uv sync --locked --compile-bytecode >"$out/sync.log" 2>&1 || { tail -20 "$out/sync.log"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
status=0
# 1. every gpu-marked test (4-bit MoE load + adapters on CUDA, CUDA backend, vLLM engine if the extra is in)
uv run pytest -m gpu -ra -q 2>&1 | tee "$out/pytest_gpu.txt" || status=1
# 2. the 4-bit MoE tests and the backend tests again on this machine (CPU paths next to a GPU)
uv run pytest -q tests/test_moe_quant.py tests/test_hf_backend.py 2>&1 | tail -5 | tee "$out/pytest_moe.txt" || status=1
# 3. one Qwen3-30B-A3B MoE layer in 4-bit on the GPU: routed experts vs per-layer dequantization
uv run python benchmarks/moe_experts.py --device cuda --repeat 10 --tokens 1,8,30,240,1024 2>&1 \
  | grep -v kernels | tee "$out/moe_experts_cuda.md" || status=1
# 4. check_setup on the GPU with the default config (memory it says the seed's model needs, bitsandbytes on CUDA)
uv run python check_setup.py 2>&1 | tee "$out/check_setup.txt"
exit $status
