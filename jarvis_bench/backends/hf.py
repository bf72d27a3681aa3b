"""transformers + peft backend: the base is loaded ONCE, every adapter is attached to it.

- adapters: `PeftModel.from_pretrained` for the first, `load_adapter` for the others, each under its
  variant name; `set_adapter(name)` selects one, base answers come from `disable_adapter()`.
- batches: each prompt rendered and tokenized once, prompts sorted by token length, the same batches for
  every variant; decoding by `decode.stream` (shared prompt prefix run once, finished rows leave the
  batch and are yielded at once, KV cache written in place), token for token what `generate` gives one
  prompt at a time.
- CUDA: bf16, device_map, optional 4-bit NF4 (+ double quant) or 8-bit through bitsandbytes (imported
  only then); the batch halves and retries on out-of-memory. CPU: float32, SDPA without the K/V copy of
  grouped-query attention (`decode.use_gqa_sdpa`); 4-bit works there too (for tests and small models).
- MoE models (Qwen3-30B-A3B): everything MoE goes through one object, `moe.MoE` (load arguments, after
  the load, attaching an adapter, selecting one); in 4-bit the fused experts are quantized while loading
  and run by our experts forward, and an adapter's expert LoRA is applied there.
- Qwen3: `enable_thinking` reaches the chat template; any <think>…</think> left is stripped and counted.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .. import gpu
from ..adapters import Variant
from ..chat import decoder as answer_decoder
from ..chat import render as render_chat
from ..chat import token_ids as chat_token_ids
from ..chat import tools as tool_schemas
from ..config import Config
from ..errors import AdapterError, BackendUnavailable, ModelLoadError
from ..fsutil import sha256_json
from ..text import strip_thinking
from . import decode
from .base import Backend, Generation, Request
from .moe import MoE

log = logging.getLogger(__name__)

# CPU: one step costs ~1/3 per row of what it costs alone at 8 rows (2-core measurement in
# benchmarks/RESULTS.md): batch as wide as the prompt set allows. CUDA: bounded by memory (OOM halves).
CPU_BATCH = 64
CUDA_MAX_BATCH = 64


def _quiet_bitsandbytes() -> None:
    # peft imports bitsandbytes whenever it is installed; on CPU it logs a kernel warning we don't need.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)


def _is_oom(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _read_json(path: Path) -> dict[str, Any]:
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@functools.cache
def _renderer_identity() -> str:
    """Our rendering code and the transformers release that runs the template (read without importing it)."""
    from importlib.metadata import PackageNotFoundError, version

    from .. import chat

    try:
        tf = version("transformers")
    except PackageNotFoundError:
        tf = None
    return sha256_json({"chat.py": Path(chat.__file__).read_text(encoding="utf-8"), "transformers": tf})


def local_fingerprint(path: Path) -> dict[str, Any]:
    """Identity of a local model folder without hashing gigabytes: config + weight names, sizes, mtimes."""
    files = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".bin", ".json", ".gguf", ".jinja"))
    listing = [(p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in files]
    cfg = (path / "config.json").read_text(encoding="utf-8") if (path / "config.json").is_file() else ""
    return {"files": sha256_json(listing), "config": sha256_json(cfg)}


class TransformersBackend(Backend):
    name = "transformers"

    @classmethod
    def check_requirements(cls) -> None:
        import importlib.util

        missing = [m for m in ("torch", "transformers", "peft") if importlib.util.find_spec(m) is None]
        if missing:
            raise BackendUnavailable(
                f"the transformers backend needs torch, transformers and peft ({', '.join(missing)} missing); "
                "run `uv sync`")

    def __init__(self, cfg: Config, *, device: str = "auto") -> None:
        _quiet_bitsandbytes()
        import torch

        self.cfg = cfg
        want = device if device != "auto" else cfg.model.device
        if want == "auto":
            want = "cuda" if torch.cuda.is_available() else "cpu"
        if want == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailable("--device cuda was asked but torch sees no CUDA GPU; use --device cpu or auto")
        self.device = want
        self.dtype_name = self._dtype_name()
        # 4-bit works on the CPU too (bitsandbytes >= 0.45: for testing and small models); 8-bit needs CUDA.
        q = cfg.model.quantization
        self.quantization = q if self.device == "cuda" or q == "4bit" else "none"
        if self.quantization != q:
            log.info("Quantization %s needs CUDA; loading %s on CPU instead.", q, self.dtype_name)
        base = cfg.model.base
        local = cfg.resolve(base)
        self.base_path: str = str(local) if local.is_dir() else base
        self.is_local = local.is_dir()
        self._tokenizer: Any = None  # loaded on first use (see prepare)
        self._model_config: Any = None
        self.model: Any = None
        self.variants: list[Variant] = []
        self._identity: dict[str, Any] | None = None
        self._info: dict[str, Any] = {"device": self.device, "dtype": self.dtype_name, "quantization": self.quantization}
        self._token_ids: dict[str, list[int]] = {}
        self._rendered: dict[tuple[str, ...], str] = {}
        self._peft_adapters: set[str] = set()  # adapters peft holds (an experts-only LoRA has no peft part)

    # ------------------------------------------------------------------ setup

    def _dtype_name(self) -> str:
        d = self.cfg.model.dtype
        if d != "auto":
            return d
        return "bfloat16" if self.device == "cuda" else "float32"

    def _common_kwargs(self) -> dict[str, Any]:
        return {"revision": self.cfg.model.revision, "trust_remote_code": self.cfg.model.trust_remote_code}

    def prepare(self, variants: Sequence[Variant]) -> None:
        """The model's identity for the cache keys. A local folder is fingerprinted without importing
        transformers (a rerun whose answers are all cached never loads it); a hub id is resolved to
        its commit by loading its config and tokenizer."""
        self.variants = list(variants)
        base_id: dict[str, Any] = {"base": self.cfg.model.base_name or self.cfg.model.base}
        if self.is_local:
            base_id["fingerprint"] = local_fingerprint(Path(self.base_path))
            self._info["model_type"] = _read_json(Path(self.base_path) / "config.json").get("model_type")
        else:
            self._load_tokenizer()
            base_id["revision"] = getattr(self._model_config, "_commit_hash", None) or self.cfg.model.revision
        self._identity = {
            **base_id,
            "backend": self.name,
            "dtype": self.dtype_name,
            "quantization": self.quantization,
            "double_quant": self.cfg.model.double_quant if self.quantization == "4bit" else None,
        }

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            self._load_tokenizer()
        return self._tokenizer

    @property
    def model_config(self) -> Any:
        if self._model_config is None:
            self._load_tokenizer()
        return self._model_config

    def _load_tokenizer(self) -> None:
        from transformers import AutoConfig, AutoTokenizer

        t0 = time.perf_counter()
        try:
            model_cfg = AutoConfig.from_pretrained(self.base_path, **self._common_kwargs())
            tok = AutoTokenizer.from_pretrained(self.base_path, **self._common_kwargs())
        except OSError as exc:
            raise ModelLoadError(
                f"cannot load the base model {self.cfg.model.base!r}: {str(exc).splitlines()[0]}; "
                "check model.base (hub id or folder), your network or HF_HUB_OFFLINE, and the HF token"
            ) from None
        except ValueError as exc:
            if "trust_remote_code" in str(exc):
                raise ModelLoadError(
                    f"{self.cfg.model.base} needs custom code from its repository; set model.trust_remote_code "
                    "to true only if you trust it"
                ) from None
            raise ModelLoadError(f"cannot load the base model {self.cfg.model.base!r}: {exc}") from None
        tok.padding_side = "left"
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        self._tokenizer, self._model_config = tok, model_cfg
        self._info["tokenizer_load_s"] = round(time.perf_counter() - t0, 3)
        self._info["model_type"] = getattr(model_cfg, "model_type", None)

    def render_key(self, request: Request) -> str | None:
        """What the rendered prompt depends on, when it can be named without the tokenizer (local
        folders: the fingerprint covers the tokenizer files and the chat template). The runner keeps
        rendered prompts under this key, so a fully cached rerun never loads transformers."""
        if self._identity is None or "fingerprint" not in self._identity:
            return None
        return sha256_json({"fingerprint": self._identity["fingerprint"], "renderer": _renderer_identity(),
                            "messages": list(request.messages), "tools": tool_schemas(self.cfg),
                            "thinking": self.cfg.generation.enable_thinking})

    def identity(self) -> dict[str, Any]:
        assert self._identity is not None, "prepare() first"
        return dict(self._identity)

    def render(self, request: Request) -> str:
        """The chat-templated prompt, rendered once per request (cache keys, batching and generation reuse it)."""
        key = tuple(f"{m['role']}\0{m['content']}" for m in request.messages)
        if key not in self._rendered:
            self._rendered[key] = render_chat(
                self.tokenizer, list(request.messages), tool_schemas=tool_schemas(self.cfg),
                enable_thinking=self.cfg.generation.enable_thinking,
            )
        return self._rendered[key]

    @functools.cached_property
    def moe(self) -> MoE | None:
        """The door to everything MoE (None for a dense model): see `moe.py`."""
        return MoE.of(self.model_config.to_dict(), quantization=self.quantization, dtype_name=self.dtype_name,
                      double_quant=self.cfg.model.double_quant, forward=self.cfg.model.moe_forward, device=self.device)

    def _load_kwargs(self) -> dict[str, Any]:
        import torch

        kw: dict[str, Any] = {**self._common_kwargs(), "dtype": getattr(torch, self.dtype_name)}
        if self.device == "cuda":
            kw["device_map"] = self.cfg.model.device_map
        if self.quantization != "none" and getattr(self.model_config, "quantization_config", None):
            log.info("%s is already quantized (%s): its own quantization is used.", self.cfg.model.base,
                     self.model_config.quantization_config.get("quant_method", "?")
                     if isinstance(self.model_config.quantization_config, dict) else "?")
        elif self.quantization != "none":
            try:
                import bitsandbytes  # noqa: F401
                from transformers import BitsAndBytesConfig
            except ImportError:
                raise BackendUnavailable(
                    f"quantization {self.quantization} needs bitsandbytes; install it (`uv sync`) "
                    'or set model.quantization to "none"'
                ) from None
            if self.device == "cpu":
                kw["device_map"] = {"": "cpu"}
            if self.moe is not None:
                kw.update(self.moe.load_kwargs())
            elif self.quantization == "4bit":
                kw["quantization_config"] = BitsAndBytesConfig(
                    load_in_4bit=True,
                    bnb_4bit_quant_type="nf4",
                    bnb_4bit_use_double_quant=self.cfg.model.double_quant,
                    bnb_4bit_compute_dtype=getattr(torch, self.dtype_name),
                )
            else:
                kw["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
        return kw

    def _memory_guard(self) -> None:
        """Refuse a CPU load that cannot fit in RAM (the OS would swap or kill us); warn on a tight GPU."""
        from .. import sizing

        try:
            params = sizing.count_params(self.model_config.to_dict())
        except (KeyError, TypeError, ValueError):
            return
        est = sizing.estimate(params, quantization=self.quantization, dtype=self.dtype_name,
                              double_quant=self.cfg.model.double_quant, config=self.model_config.to_dict(),
                              cuda=self.device == "cuda")
        size = f"{self.cfg.model.base_name or self.cfg.model.base} ({params.total / 1e9:.2f} B parameters)"
        if self.device == "cpu":
            avail, _ = sizing.ram_gib()
            if est.weights_gib > 0.95 * avail:
                raise ModelLoadError(
                    f"{size} needs ~{est.weights_gib:.1f} GiB of RAM in {self.dtype_name} on the CPU, "
                    f"{avail:.1f} GiB are available; run it on a CUDA GPU "
                    "(`uv run python check_setup.py` says how much memory it needs)"
                )
            return
        import torch

        free = sum(torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count())) / sizing.GIB
        if est.minimum_gib > free:
            log.warning("%s needs ~%.1f GiB of GPU memory in %s, %.1f GiB are free: loading may fail "
                        "(`uv run python check_setup.py` explains).", size, est.minimum_gib, self.quantization, free)

    def _load(self) -> None:
        """Load the base once and attach every adapter to it (on the first generate())."""
        import torch
        from transformers import AutoModelForCausalLM

        self._memory_guard()
        if self.device == "cpu":
            log.warning("Running on CPU: fine for the demo, very slow for a large model.")
        t0 = time.perf_counter()
        torch.manual_seed(self.cfg.generation.seed)
        if self.device == "cuda":
            gpu.reset_peaks()
        kwargs = self._load_kwargs()
        try:
            model = AutoModelForCausalLM.from_pretrained(self.base_path, **kwargs)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot load the base model {self.cfg.model.base!r}: {str(exc).splitlines()[0]}") from None
        except Exception as exc:
            if _is_oom(exc) or (self.moe is not None and self.moe.load_failed_for_memory()):
                raise ModelLoadError(
                    f"out of GPU memory while loading {self.cfg.model.base}; use model.quantization \"4bit\", "
                    "close other GPU programs, or a smaller model"
                ) from None
            raise
        if self.device == "cpu":
            if self.quantization == "none":
                model = model.to("cpu")
            if decode.use_gqa_sdpa(model):
                self._info["attention"] = decode.GQA_SDPA
        self._info["base_load_s"] = round(time.perf_counter() - t0, 3)
        if self.moe is not None:
            self.moe.loaded(model, self._info)
        adapters = [v for v in self.variants if not v.is_base]
        t1 = time.perf_counter()
        for v in adapters:
            try:
                model = (self.moe.attach(model, v, self._attach_peft) if self.moe is not None
                         else self._attach_peft(model, v.name, v.path))
            except AdapterError:
                raise
            except Exception as exc:  # peft/safetensors/torch raise many types for a bad adapter file
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                if "size mismatch" in str(exc) or "shape" in str(exc).lower():
                    raise AdapterError(
                        f"adapter {v.path} does not fit base {self.cfg.model.base} (weight shapes differ: it was "
                        f"trained on {v.base_model or 'another model'}); benchmark it with its own base"
                    ) from None
                raise AdapterError(f"cannot load adapter {v.path}: {first}; re-save or re-train it") from None
        model.eval()
        self._info["adapters_load_s"] = round(time.perf_counter() - t1, 3)
        self.model = model

    def _attach_peft(self, model: Any, name: str, path: Path | None) -> Any:
        from peft import PeftModel

        if isinstance(model, PeftModel):
            model.load_adapter(str(path), adapter_name=name)
        else:
            model = PeftModel.from_pretrained(model, str(path), adapter_name=name)
        self._peft_adapters.add(name)
        return model

    def _eos_ids(self) -> set[int]:
        """Every id that ends an answer: the model's generation_config, the tokenizer's, and <|im_end|>."""
        tok = self.tokenizer
        eos: set[int] = set()
        defaults = getattr(self.model, "generation_config", None)
        for src in (getattr(defaults, "eos_token_id", None), tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")):
            if isinstance(src, int):
                eos.add(src)
            elif isinstance(src, (list, tuple)):
                eos.update(x for x in src if isinstance(x, int))
        eos.discard(tok.unk_token_id)  # "<|im_end|>" maps to unk on tokenizers that lack it
        return eos

    # ------------------------------------------------------------------ generation

    def batch_size(self, n: int) -> int:
        bs = self.cfg.generation.batch_size
        if bs != "auto":
            return int(bs)
        return max(1, min(n, CUDA_MAX_BATCH if self.device == "cuda" else CPU_BATCH))

    def token_ids(self, request: Request) -> list[int]:
        """The rendered prompt's token ids, tokenized once per prompt for every variant and batch."""
        text = self.render(request)
        if text not in self._token_ids:
            self._token_ids[text] = chat_token_ids(self.tokenizer, text)
        return self._token_ids[text]

    def too_long(self, requests: Sequence[Request], max_new_tokens: int) -> list[dict[str, Any]]:
        from .base import context_of, overflow

        return overflow({r.prompt_id: len(self.token_ids(r)) for r in requests},
                        context_of(self.model_config.to_dict()), max_new_tokens, "config.json max_position_embeddings")

    def plan(self, requests: Sequence[Request]) -> list[list[Request]]:
        """Length-sorted batches; the same prompts give the same batches for every variant."""
        lengths = [(len(self.token_ids(r)), r.prompt_id) for r in requests]
        order = [r for _, r in sorted(zip(lengths, requests), key=lambda x: x[0])]
        bs = self.batch_size(len(order))
        return [order[i : i + bs] for i in range(0, len(order), bs)]

    @contextlib.contextmanager
    def _select(self, variant: Variant) -> Iterator[None]:
        """The variant's weights: its adapter through peft (set_adapter) and, on a MoE model, its expert
        LoRA in our experts; the base through peft's disable_adapter and no expert LoRA."""
        from peft import PeftModel

        if self.moe is not None:
            self.moe.select(self.model, variant)
        if variant.is_base or variant.name not in self._peft_adapters:
            if isinstance(self.model, PeftModel):
                with self.model.disable_adapter():
                    yield
            else:
                yield
        else:
            self.model.set_adapter(variant.name)
            yield

    def generate(self, variant: Variant, requests: Sequence[Request]) -> Iterator[Generation]:
        if not requests:
            return
        if self.model is None:
            self._load()
        eos = self._eos_ids()
        for batch in self.plan(requests):
            yield from self._run_batch(variant, batch, eos)

    def _run_batch(self, variant: Variant, batch: list[Request], eos: set[int]) -> Iterator[Generation]:
        """Generate one batch, answers yielded as they finish; on out-of-memory, halve what is left
        and retry the halves (answers already yielded are kept, never generated twice)."""
        done: set[str] = set()
        oom = False
        try:
            for gen in self._generate_batch(variant, batch, eos):
                done.add(gen.prompt_id)
                yield gen
        except Exception as exc:
            if not _is_oom(exc):
                raise
            oom = True
        # Out of the `except` block: the exception and its traceback are gone, and with them the frames of
        # the failed batch (its KV cache, its activations); only now can the memory they held be freed.
        if oom:
            self._free_memory()
            rest = [r for r in batch if r.prompt_id not in done]
            if len(rest) == 1:
                raise ModelLoadError(
                    f"out of GPU memory generating one answer ({rest[0].prompt_id}); lower "
                    "generation.max_new_tokens or use model.quantization \"4bit\""
                ) from None
            half = len(rest) // 2
            log.warning("Out of memory with a batch of %d: retrying with %d.", len(rest), half)
            yield from self._run_batch(variant, rest[:half], eos)
            yield from self._run_batch(variant, rest[half:], eos)

    def _free_memory(self) -> None:
        """Collect what a failed batch left (reference cycles through frames included) and hand the
        freed blocks back to the GPU."""
        gc.collect()
        if self.device == "cuda":
            import torch

            torch.cuda.empty_cache()

    def _generate_batch(self, variant: Variant, batch: list[Request], eos: set[int]) -> Iterator[Generation]:
        import torch

        tok = self.tokenizer
        text_of = answer_decoder(tok)
        max_new = self.cfg.generation.max_new_tokens
        stats = decode.Stats()
        t0 = time.perf_counter()
        with torch.inference_mode(), self._select(variant):
            for i, row in decode.stream(self.model, [self.token_ids(r) for r in batch], max_new_tokens=max_new,
                                        eos_ids=eos, pad_id=tok.pad_token_id, stats=stats):
                text, thinking = strip_thinking(text_of(row.tokens))
                yield Generation(
                    prompt_id=batch[i].prompt_id,
                    variant=variant.name,
                    response=text,
                    tokens=len(row.tokens),
                    latency_s=round(row.seconds, 4),  # until this answer's last token, in its batch
                    truncated=not row.stopped and len(row.tokens) >= max_new,
                    thinking_chars=thinking,
                    batch_size=len(batch),
                )
        self._info["shared_prefix_tokens"] = stats.shared_prefix
        self._info["decode_steps"] = self._info.get("decode_steps", 0) + stats.steps + 1  # + the prefill's token
        self._info["decode_s"] = round(self._info.get("decode_s", 0.0) + time.perf_counter() - t0, 3)
        if self.device == "cuda":  # every device the model is split over (device_map), summed and listed
            self._info.update(gpu.memory_info(gpu.peak_allocated(), "peak_gpu_memory_gib"))

    def info(self) -> dict[str, Any]:
        info = dict(self._info)
        if self.device == "cuda":
            import torch

            info["gpu"] = torch.cuda.get_device_name(0)
            info["gpu_count"] = torch.cuda.device_count()
            info.update(self._bandwidth_bound())
        return info

    def _bandwidth_bound(self) -> dict[str, Any]:
        """The memory-bandwidth ceiling of decoding next to what was measured (sizing.decode_bound)."""
        from .. import sizing

        bandwidth = gpu.bandwidth_gbs(0)
        if bandwidth is None:  # CUDA 13 dropped memoryClockRate and NVML is not there: no bound
            return {}
        try:
            params = sizing.count_params(self.model_config.to_dict())
        except (AttributeError, KeyError, TypeError, ValueError):
            return {}
        read_gib, bound = sizing.decode_bound(params, quantization=self.quantization, dtype=self.dtype_name,
                                              bandwidth_gbs=bandwidth, double_quant=self.cfg.model.double_quant)
        out = {"gpu_bandwidth_gbs": round(bandwidth, 1), "weights_read_per_step_gib": round(read_gib, 3),
               "decode_bound_steps_per_s": round(bound, 1)}
        if self._info.get("decode_s"):
            out["decode_steps_per_s"] = round(self._info["decode_steps"] / self._info["decode_s"], 1)
        return out

    def close(self) -> None:
        self.model = None
        if self.device == "cuda":
            import torch

            torch.cuda.empty_cache()
