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
