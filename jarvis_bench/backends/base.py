"""The backend contract: what every generation backend provides."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ..adapters import Variant

if TYPE_CHECKING:
    from ..checks import Check
    from ..config import Config


@dataclass(frozen=True)
class Request:
    """One prompt to answer: its id and the chat messages (system + user)."""

    prompt_id: str
    messages: tuple[dict[str, str], ...]


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def valid_text(text: str) -> str:
    """`text` with each lone surrogate (half of a UTF-16 pair: a JSON "\\ud800" escape decodes to one, and
    some servers and files carry them) replaced by U+FFFD. Such a string cannot be written as UTF-8, so
    every file, cache and report would fail on it; everything else (U+2028, control characters) is kept."""
    return _LONE_SURROGATE.sub("\ufffd", text) if _LONE_SURROGATE.search(text) else text


@dataclass
class Generation:
    """One answer (or one failure: `error` set, `response` empty — never scored as text). Its texts are
    always writable as UTF-8 (`valid_text`), whatever the backend received."""

    prompt_id: str
    variant: str
    response: str = ""
    tokens: int = 0
    latency_s: float = 0.0
    truncated: bool = False
    thinking_chars: int = 0  # characters of reasoning blocks (<think>…</think>, [THINK]…) stripped from the answer (0 = none)
    batch_size: int = 1
    error: str | None = None
    cached: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.response, str):
            self.response = valid_text(self.response)
        if isinstance(self.error, str):
            self.error = valid_text(self.error)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Generation:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


class Backend(ABC):
    """A place that can answer prompts for the base and for each adapter.

    Every backend subclasses this and lives in its own module under `backends/`, registered in
    `backends/__init__.py`. The five abstract methods are the contract (a subclass missing one cannot be
    created); the hooks below them have defaults that fit a backend which loads the model on this
    machine, and a backend overrides only what it knows better. Class-level hooks
    (`check_requirements`, `discover`, `early_checks`, `setup_checks`, `where_it_ran`) are asked before
    any backend exists (check_setup, the report of a results file), so they must not import heavy
    libraries at module level. Nothing outside `backends/` (and the config schema) tests a backend's
    name: it asks the backend.
    """

    name: ClassVar[str]
    #: check_setup runs the model, hardware, disk and adapter checks (the weights load on this machine);
    #: False for a backend whose answers come from elsewhere (a server, a file).
    loads_model: ClassVar[bool] = True

    # ------------------------------------------------------------------ the contract

    @abstractmethod
    def prepare(self, variants: Sequence[Variant]) -> None:
        """Cheap setup (tokenizer, endpoint check). Heavy loading waits for the first generate()."""
        ...

    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """What identifies the model weights and settings (goes into every cache key)."""
        ...

    @abstractmethod
    def render(self, request: Request) -> str:
        """The exact input the model sees for this request (part of the cache key)."""
        ...

    @abstractmethod
    def generate(self, variant: Variant, requests: Sequence[Request]) -> Iterator[Generation]:
        """Answer `requests` with `variant`, yielding each answer as soon as it is finished."""
        ...

    @abstractmethod
    def info(self) -> dict[str, Any]:
        """Device, dtype, load time, peak memory… for the results' metadata."""
        ...

    def close(self) -> None:
        """Free the model."""

    # ------------------------------------------------------------------ hooks asked by the runner

    def render_key(self, request: Request) -> str | None:
        """A key for `render(request)` that is known without the tokenizer, or None. The runner keeps
        rendered prompts under it, so a rerun whose answers are all cached never loads the tokenizer."""
        return None

    def variant_key(self, variant: Variant) -> str:
        """What identifies a variant's answers in cache keys (the openai backend adds the route and what
        the server reports about its model)."""
        return variant.key

    def too_long(self, requests: Sequence[Request], max_new_tokens: int) -> list[dict[str, Any]]:
        """The requests whose prompt tokens plus max_new_tokens exceed the model's context (see
        `overflow`), before anything is generated; [] for a backend that cannot count tokens."""
        return []

    def recheck(self, variant: Variant, request: Request, first: Generation) -> bool:
        """Asked by the runner after a variant's answers: answer the variant's first request once more;
        False (with a warning) when the answer differs from `first`. Only a backend whose answers may
        drift (a shared server) does anything."""
        return True

    # ------------------------------------------------------------------ class-level hooks

    @classmethod
    def check_requirements(cls) -> None:
        """Raise BackendUnavailable, saying what to install, when a library this backend needs is missing.
        Called before the backend module's heavy imports."""

    @classmethod
    def discover(cls, cfg: Config, variants: list[Variant]) -> list[Variant]:
        """The variants of a run, given the base and the adapters found on disk (the openai backend adds
        the names it asks the server for; the replay backend the variants its file names)."""
        return variants

    @classmethod
    def early_checks(cls, cfg: Config) -> Iterator[Check]:
        """What check_setup asks of this backend right after the config, before the model checks: what
        the machine must have for this backend at all (the vllm backend: a CUDA GPU)."""
        return iter(())

    @classmethod
    def setup_checks(cls, cfg: Config, source: Any | None) -> Iterator[Check]:
        """What check_setup asks of this backend, after the model checks (`source`: the
        `checks.ModelSource` of the base when `loads_model`, else None)."""
        return iter(())

    @classmethod
    def where_it_ran(cls, meta: dict[str, Any], t: dict[str, str]) -> tuple[str, str]:
        """The report header's (label, value) saying where the answers were computed, from the results'
        metadata; `t` is the text report's words (`reports.messages.T[lang]`)."""
        hardware = " ".join(str(x) for x in (meta.get("device"), meta.get("gpu")) if x)
        quant = t["no_quant"] if meta.get("quantization") in (None, "none") else meta["quantization"]
        return t["device"], f"{hardware} · {meta.get('dtype')} · {t['quant']} {quant}"


def overflow(tokens: dict[str, int], context: int | None, max_new_tokens: int, source: str) -> list[dict[str, Any]]:
    """[{id, tokens, context, source}] for each prompt whose tokens + max_new_tokens exceed `context`."""
    if not context:
        return []
    return [{"id": pid, "tokens": n, "context": int(context), "source": source}
            for pid, n in tokens.items() if n + max_new_tokens > context]


def context_of(config: dict[str, Any]) -> int | None:
    """The context a model was built for (config.json `max_position_embeddings`, text part of a
    multimodal config included)."""
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
    value = text.get("max_position_embeddings") or config.get("max_position_embeddings")
    return int(value) if isinstance(value, int) and value > 0 else None
