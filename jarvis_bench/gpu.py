"""What the CUDA devices say about memory and bandwidth, every visible GPU counted.

- `peak_allocated`: torch's caching allocator peak, per device (`max_memory_allocated(i)`); valid for
  what runs in this process (the transformers backend, a model split with `device_map` included).
- `used`: what the driver reports in use per device (`mem_get_info(i)`: total - free), whatever process
  holds it. vLLM's engine runs in worker processes, where this process's allocator sees nothing; the
  difference of `used` before and after its start is the honest figure there.
- `bandwidth_gbs`: peak memory bandwidth of one device from its properties, or NVML when CUDA 13 no
  longer fills `memoryClockRate` (torch then reports 0); None when neither knows.
"""

from __future__ import annotations

from typing import Any

GIB = 1024**3


def _cuda() -> Any:
    import torch

    return torch.cuda if torch.cuda.is_available() else None


def reset_peaks() -> None:
    cuda = _cuda()
    if cuda is not None:
        for i in range(cuda.device_count()):
            cuda.reset_peak_memory_stats(i)


def peak_allocated() -> list[float]:
    """GiB at the allocator's peak, one figure per visible device; [] without CUDA."""
    cuda = _cuda()
    return [] if cuda is None else [cuda.max_memory_allocated(i) / GIB for i in range(cuda.device_count())]


def used(devices: int | None = None) -> list[float]:
    """GiB in use on each of the first `devices` visible devices (default: all) by every process (driver
    view); [] without CUDA. Reading a device opens a CUDA context on it (~0.5 GB): ask only for those used."""
    cuda = _cuda()
    if cuda is None:
        return []
    out = []
    for i in range(min(devices or cuda.device_count(), cuda.device_count())):
        free, total = cuda.mem_get_info(i)
        out.append((total - free) / GIB)
    return out


def memory_info(per_device: list[float], key: str) -> dict[str, Any]:
    """{key: total GiB, key_per_device: [GiB, ...]} (the list only with more than one device)."""
    if not per_device:
        return {}
    out: dict[str, Any] = {key: round(sum(per_device), 3)}
    if len(per_device) > 1:
        out[f"{key}_per_device"] = [round(x, 3) for x in per_device]
    return out


def _nvml_bandwidth(index: int) -> float | None:
    try:
        import pynvml  # nvidia-ml-py, present with vLLM; optional otherwise
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            mhz = pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_MEM)
            bits = pynvml.nvmlDeviceGetMemoryBusWidth(handle)
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - NVML missing or too old: no bound rather than a failed run
        return None
    return bandwidth_gbs_from(mhz * 1000, bits)


def bandwidth_gbs_from(memory_clock_khz: float, bus_width_bits: int) -> float | None:
    """Peak bandwidth from the memory clock and bus width: two transfers per clock (GDDR and HBM report
    it that way) x bus width. RTX 4090: 10,501 MHz x 384 bit -> 1,008 GB/s; H100 SXM: 2,619 MHz x 5,120
    bit -> 3,352 GB/s. None when either figure is missing (0)."""
    if not memory_clock_khz or not bus_width_bits:
        return None
    return 2 * memory_clock_khz * 1e3 * bus_width_bits / 8 / 1e9


def bandwidth_gbs(index: int = 0) -> float | None:
    cuda = _cuda()
    if cuda is None:
        return None
    props = cuda.get_device_properties(index)
    found = bandwidth_gbs_from(getattr(props, "memory_clock_rate", 0), getattr(props, "memory_bus_width", 0))
    return found if found is not None else _nvml_bandwidth(index)
