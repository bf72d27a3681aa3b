"""replay backend: answers produced elsewhere, read from a JSONL file.

Each line: {"id": <prompt id>, "variant": <"base" or adapter name>, "response": <text>}
(optional: "tokens", "latency_s", "truncated", "error"). Deterministic: tests use it too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..adapters import BASE, Variant
from ..config import Config
from ..errors import ConfigError
from ..fsutil import jsonl_lines, sha256_file
from ..text import strip_thinking
from .base import Backend, Generation, Request

if TYPE_CHECKING:
    from ..checks import Check


class ReplayBackend(Backend):
    name = "replay"
    loads_model = False

    @classmethod
    def discover(cls, cfg: Config, variants: list[Variant]) -> list[Variant]:
        """Every variant named in the answers file is compared, adapter folder or not."""
        path = cfg.resolve(cfg.model.replay_file or "")
        if not path.is_file():
            return variants  # the backend reports the missing file
        names: dict[str, None] = {}
        try:
            for _, line in jsonl_lines(path):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # the backend reports the bad line with its number
                if isinstance(row, dict) and isinstance(row.get("variant"), str):
                    names.setdefault(row["variant"])
        except UnicodeDecodeError:
            return variants  # the backend reports the encoding
        known = {v.name for v in variants}
        return variants + [Variant(name=n, served_as=n) for n in names if n not in known and n != BASE]

    @classmethod
    def setup_checks(cls, cfg: Config, source: Any | None) -> Iterator[Check]:
        from ..checks import Check

        replay = cfg.resolve(cfg.model.replay_file or "")
        yield (Check("OK", "backend", f"replay: answers read from {replay}") if replay.is_file() else
               Check("FAIL", "backend", f"model.replay_file {replay} does not exist",
                     "point it at the JSONL of answers to score"))

    def __init__(self, cfg: Config, *, device: str = "auto") -> None:
        if not cfg.model.replay_file:
            raise ConfigError('model.replay_file is required when model.backend is "replay"; set it to a JSONL file')
        self.cfg = cfg
        self.path: Path = cfg.resolve(cfg.model.replay_file)
        self.answers: dict[tuple[str, str], dict[str, Any]] = {}

    def prepare(self, variants: Sequence[Variant]) -> None:
        if not self.path.is_file():
            raise ConfigError(f"model.replay_file: {self.path} not found; point it to the JSONL of answers")
        try:
            self._read()
        except UnicodeDecodeError as exc:
            raise ConfigError(f"model.replay_file: {self.path} is not UTF-8 text ({exc.reason}); save it as UTF-8"
                              ) from None
        ids = {p.id for p in self.cfg.prompts}
        # a noisy-speech variant's answer ("cmd-01.noisy2", see noisy.py) belongs to its source prompt
        unknown = sorted(i for i in {i for i, _ in self.answers} - ids if re.sub(r"\.noisy\d+$", "", i) not in ids)
        if unknown:
            raise ConfigError(f"{self.path}: unknown prompt id {unknown[0]!r} (not in the config's prompts); fix the id")
        for v in variants:  # a variant the file never mentions is a mistake; a few gaps are failed answers
            if not any(name == v.name for _, name in self.answers):
                raise ConfigError(
                    f"{self.path}: variant {v.name!r} has no answer at all; add its answers (\"variant\": "
                    f"{json.dumps(v.name)}) or remove that adapter from the run"
                )

    def _read(self) -> None:
        for n, line in jsonl_lines(self.path):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                key = (str(row["id"]), str(row["variant"]))
                if "response" not in row and "error" not in row:
                    raise KeyError("response")
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ConfigError(
                    f'{self.path}:{n}: each line must be a JSON object with "id", "variant" and "response" ({exc})'
                ) from None
            self.answers[key] = row

    def identity(self) -> dict[str, Any]:
        return {"backend": self.name, "file": str(self.path), "sha256": sha256_file(self.path)}

    def render(self, request: Request) -> str:
        return json.dumps(list(request.messages), ensure_ascii=False)

    def generate(self, variant: Variant, requests: Sequence[Request]) -> Iterator[Generation]:
        for r in requests:
            row = self.answers.get((r.prompt_id, variant.name))
            if row is None:  # recorded as a failed answer: not scored, and the verdict waits for it
                yield Generation(prompt_id=r.prompt_id, variant=variant.name,
                                 error=f"no answer for {r.prompt_id!r} / {variant.name!r} in {self.path}")
                continue
            text, thinking = strip_thinking(str(row.get("response") or ""))
            yield Generation(
                prompt_id=r.prompt_id,
                variant=variant.name,
                response=text,
                tokens=int(row.get("tokens") or len(text.split())),
                latency_s=float(row.get("latency_s") or 0.0),
                truncated=bool(row.get("truncated", False)),
                thinking_chars=thinking,
                error=row.get("error"),
            )

    def info(self) -> dict[str, Any]:
        return {"device": "none", "replay_file": str(self.path)}

    def close(self) -> None:
        pass
