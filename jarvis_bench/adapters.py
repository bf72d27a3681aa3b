"""LoRA adapter discovery and validation: config -> [Variant(base), Variant(adapter)…]."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import Config
from .errors import AdapterError
from .fsutil import sha256_file

log = logging.getLogger(__name__)

BASE = "base"
WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")


@dataclass(frozen=True)
class Variant:
    """One thing that answers the prompts: the base model, or the base with one adapter."""

    name: str
    path: Path | None = None  # adapter folder; None for the base
    content_hash: str | None = None  # sha256 over adapter config + weights
    rank: int | None = None
    target_modules: tuple[str, ...] = ()
    base_model: str | None = None  # base_model_name_or_path declared by the adapter
    served_as: str | None = None  # openai: the model name on the endpoint; replay: the variant name in the file
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def is_base(self) -> bool:
        return self.name == BASE

    @property
    def key(self) -> str | None:
        """What identifies this variant's weights in cache keys: the adapter's content hash, or for an
        adapter that only exists on a server, the model name it is served as."""
        if self.content_hash:
            return self.content_hash
        return f"served:{self.served_as}" if self.served_as and not self.is_base else None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path) if self.path else None,
            "sha256": self.content_hash,
            "rank": self.rank,
            "target_modules": list(self.target_modules),
            "base_model_name_or_path": self.base_model,
            "served_as": self.served_as,
        }


BASE_VARIANT = Variant(name=BASE)


def variant_name(path: Path) -> str:
    """`output/run-42/final` -> "run-42"; any other folder keeps its own name."""
    return path.parent.name if path.name == "final" and path.parent.name else path.name


def weights_file(path: Path) -> Path | None:
    return next((path / w for w in WEIGHT_FILES if (path / w).is_file()), None)


def inspect_adapter(path: Path, *, digest: bool = True) -> Variant:
    """Validate one adapter folder (adapter_config.json: LoRA, rank, target modules; weights present).
    `digest=False` skips hashing the weights (content_hash stays None): for checks that only look."""
    if not path.exists():
        raise AdapterError(f"adapter folder not found: {path}; check the path (model.adapters or --adapter)")
    if not path.is_dir():
        raise AdapterError(f"{path} is a file, not an adapter folder; pass the folder holding adapter_config.json")
    cfg_file = path / "adapter_config.json"
    if not cfg_file.is_file():
        raise AdapterError(
            f"{path} has no adapter_config.json; pass the LoRA folder itself (usually output/<run>/final)"
        )
    try:
        ac = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdapterError(f"{cfg_file}: unreadable adapter config ({exc}); re-save the adapter") from None
    if not isinstance(ac, dict):
        raise AdapterError(f"{cfg_file}: expected a JSON object; re-save the adapter")
    peft_type = str(ac.get("peft_type", "")).upper()
    if peft_type not in ("LORA",):
        raise AdapterError(f"{cfg_file}: peft_type is {ac.get('peft_type')!r}, only LoRA adapters are supported")
    rank = ac.get("r")
    if not isinstance(rank, int) or rank < 1:
        raise AdapterError(f"{cfg_file}: r (the LoRA rank) is {rank!r}; it must be a positive integer")
    targets = ac.get("target_modules")
    if isinstance(targets, str):
        targets = [targets]
    targets = list(targets or []) + list(ac.get("target_parameters") or [])  # parameters: fused MoE experts
    if not targets:
        raise AdapterError(f"{cfg_file}: target_modules and target_parameters are empty; the adapter modifies nothing")
    weights = weights_file(path)
    if weights is None:
        raise AdapterError(
            f"{path} has no adapter weights ({' or '.join(WEIGHT_FILES)}); the training did not save them"
        )
    return Variant(
        name=variant_name(path),
        path=path,
        content_hash=_hash_adapter(cfg_file, weights) if digest else None,
        rank=rank,
        target_modules=tuple(sorted(targets)),
        base_model=ac.get("base_model_name_or_path"),
    )


def _hash_adapter(cfg_file: Path, weights: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    h.update(cfg_file.read_bytes())
    h.update(sha256_file(weights).encode())
    return h.hexdigest()


def candidates(root: Path) -> list[Path]:
    """Every `<root>/*/final` holding an adapter_config.json, newest first (by weights mtime)."""
    if not root.is_dir():
        return []
    found = [p for p in root.glob("*/final") if (p / "adapter_config.json").is_file()]

    def mtime(p: Path) -> float:
        w = weights_file(p)
        return (w or p / "adapter_config.json").stat().st_mtime

    return sorted(found, key=lambda p: (-mtime(p), str(p)))


def same_base(declared: str | None, configured: str, configured_name: str | None) -> bool:
    if not declared:
        return True
    names = {configured.rstrip("/"), (configured_name or "").rstrip("/")}
    short = {n.split("/")[-1].lower() for n in names if n}
    return declared.rstrip("/") in names or declared.rstrip("/").split("/")[-1].lower() in short


def discover(cfg: Config, *, digest: bool = True) -> list[Variant]:
    """The variants to evaluate: base first, then adapters (primary = newest = second)."""
    spec = cfg.model.adapters
    if isinstance(spec, list):
        paths = [cfg.resolve(p) for p in spec]
    else:
        root = cfg.resolve(cfg.model.adapters_dir)
        found = candidates(root)
        paths = found[:1] if spec == "auto" else found
    variants = [BASE_VARIANT]
    used = {BASE}
    for path in paths:
        v = inspect_adapter(path, digest=digest)
        name, i = v.name, 2
        while name in used:
            name, i = f"{v.name}-{i}", i + 1
        used.add(name)
        if name != v.name:
            v = Variant(**{**v.__dict__, "name": name})
        if not same_base(v.base_model, cfg.model.base, cfg.model.base_name):
            log.warning(
                "Adapter %s was trained on %r but the base is %r; its weights may not fit (an error follows if not).",
                v.name,
                v.base_model,
                cfg.model.base,
            )
        variants.append(v)
    from .backends import backend_class

    backend = backend_class(cfg.model.backend)
    variants = backend.discover(cfg, variants)
    if len(variants) == 1 and not isinstance(spec, list) and backend.loads_model:
        root = cfg.resolve(cfg.model.adapters_dir)
        log.warning("No LoRA adapter found under %s (expected %s/<run>/final/adapter_config.json): "
                    "benchmarking the base model alone.", root, root)
    return variants
