"""On-disk generation cache (SQLite, one row per finished answer; errors are never cached).

The key covers everything that can change an answer: the model identity (base id + revision or
folder fingerprint, quantization, dtype), the adapter's content hash, the exact rendered prompt (so
the chat template, system prompt, tools and thinking flag), and the generation parameters.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from .backends.base import Generation
from .fsutil import cache_root, sha256_json


def generation_key(identity: dict[str, Any], adapter_hash: str | None, rendered: str, params: dict[str, Any]) -> str:
    return sha256_json({"model": identity, "adapter": adapter_hash, "input": rendered, "params": params})


class GenerationCache:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or cache_root() / "generations.sqlite3"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS generations (key TEXT PRIMARY KEY, record TEXT, created REAL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS prompts (key TEXT PRIMARY KEY, text TEXT)")
        self._db.commit()

    def get(self, key: str) -> Generation | None:
        row = self._db.execute("SELECT record FROM generations WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        gen = Generation.from_dict(json.loads(row[0]))
        gen.cached = True
        return gen

    def put(self, key: str, gen: Generation) -> None:
        if gen.error:
            return
        record = gen.to_dict()
        record.pop("cached", None)
        self._db.execute(
            "INSERT OR REPLACE INTO generations (key, record, created) VALUES (?, ?, ?)",
            (key, json.dumps(record, ensure_ascii=False), time.time()),
        )
        self._db.commit()

    def get_prompt(self, key: str) -> str | None:
        """A chat-templated prompt kept under the backend's render_key (see runner.rendered)."""
        row = self._db.execute("SELECT text FROM prompts WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def put_prompt(self, key: str, text: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO prompts (key, text) VALUES (?, ?)", (key, text))
        self._db.commit()

    def close(self) -> None:
        self._db.close()
