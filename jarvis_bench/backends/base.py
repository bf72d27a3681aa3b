"""The backend contract: what every generation backend provides."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from ..adapters import Variant


@dataclass(frozen=True)
class Request:
    """One prompt to answer: its id and the chat messages (system + user)."""

    prompt_id: str
    messages: tuple[dict[str, str], ...]


@dataclass
class Generation:
    """One answer (or one failure: `error` set, `response` empty — never scored as text)."""

    prompt_id: str
    variant: str
    response: str = ""
    tokens: int = 0
    latency_s: float = 0.0
    truncated: bool = False
    thinking_chars: int = 0  # characters of <think>…</think> stripped from the answer (0 = none)
    batch_size: int = 1
    error: str | None = None
    cached: bool = field(default=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Generation:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


class Backend(Protocol):
    """A place that can answer prompts for the base and for each adapter."""

    name: str

    def prepare(self, variants: Sequence[Variant]) -> None:
        """Cheap setup (tokenizer, endpoint check). Heavy loading waits for the first generate()."""

    def identity(self) -> dict[str, Any]:
        """What identifies the model weights and settings (goes into every cache key)."""

    def render(self, request: Request) -> str:
        """The exact input the model sees for this request (part of the cache key)."""

    def generate(self, variant: Variant, requests: Sequence[Request]) -> Iterator[Generation]:
        """Answer `requests` with `variant`, yielding each answer as soon as it is finished."""

    def info(self) -> dict[str, Any]:
        """Device, dtype, load time, peak memory… for the results' metadata."""

    def close(self) -> None:
        """Free the model."""

    # Optional: `variant_key(variant) -> str`, what identifies a variant's answers in cache keys when the
    # variant's own key (adapter hash) is not enough (the openai backend: the route and the server's facts).
    # Optional: `recheck(variant, request, first) -> bool`, asked by the runner after a variant's answers:
    # the first request once more, a different answer is a warning (the openai backend: a server's drift).
    # Optional: `too_long(requests, max_new_tokens) -> list[dict]`, the requests whose prompt tokens plus
    # max_new_tokens exceed the model's context (see `overflow`); backends that cannot count tokens
    # (a remote server, replayed answers) leave it out.


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
