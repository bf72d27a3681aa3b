"""Device memory and bandwidth figures: every GPU counted, CUDA 13's missing memory clock survived.

CPU machines have no CUDA, so torch.cuda's answers are replaced by those of two made-up GPUs; the same
code runs for real in tests/test_hf_backend.py's gpu-marked tests."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from jarvis_bench import gpu


@pytest.fixture
def two_gpus(monkeypatch):
    import torch

    allocated = [3.0 * gpu.GIB, 1.5 * gpu.GIB]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda i: allocated[i])
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i: ((80 - 10 * (i + 1)) * gpu.GIB, 80 * gpu.GIB))
    props = SimpleNamespace(memory_clock_rate=0, memory_bus_width=5120)  # what CUDA 13 builds report
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    monkeypatch.setitem(sys.modules, "pynvml", None)  # no NVML either
    return props


def test_every_device_is_summed_and_listed(two_gpus):
    assert gpu.peak_allocated() == [3.0, 1.5]
    assert gpu.memory_info(gpu.peak_allocated(), "peak_gpu_memory_gib") == {
        "peak_gpu_memory_gib": 4.5, "peak_gpu_memory_gib_per_device": [3.0, 1.5]}
    assert gpu.used() == [10.0, 20.0]
    assert gpu.memory_info([2.0], "x") == {"x": 2.0} and gpu.memory_info([], "x") == {}


def test_missing_memory_clock_gives_no_bandwidth_instead_of_zero(two_gpus):
    assert gpu.bandwidth_gbs(0) is None
    two_gpus.memory_clock_rate = 2_619_000  # CUDA 12 builds still fill it
    assert gpu.bandwidth_gbs(0) == pytest.approx(3352, rel=0.01)


def test_no_cuda_no_figures(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu.peak_allocated() == [] and gpu.used() == [] and gpu.bandwidth_gbs() is None
