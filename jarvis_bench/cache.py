"""On-disk caches (SQLite): the generation cache, one row per finished answer (errors are never cached),
and the key/value store it and the embedding cache are built on.

The generation key covers everything that can change an answer: the model identity (base id + revision
or folder fingerprint, quantization, dtype), the adapter's content hash, the exact rendered prompt (so
the chat template, system prompt, tools and thinking flag), and the generation parameters.

A cache is disposable: one that is not a database any more (a crash on a network drive, a bad copy) is
moved aside (`<name>.corrupt-<timestamp>`) and started anew; one that cannot be opened, read or written
(locked beyond the timeout, unreadable, a read-only or full disk) is bypassed. Either way one warning
line says so and where, and the run goes on with correct answers: it only loses the shortcut.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

from .backends.base import Generation
from .fsutil import cache_root, sha256_json

log = logging.getLogger(__name__)


def generation_key(identity: dict[str, Any], adapter_hash: str | None, rendered: str, params: dict[str, Any]) -> str:
    return sha256_json({"model": identity, "adapter": adapter_hash, "input": rendered, "params": params})


def _corrupt(exc: BaseException) -> bool:
    """"file is not a database", "database disk image is malformed": sqlite3.DatabaseError itself, where a
    lock, a read-only or a full disk raise its subclass OperationalError."""
    return type(exc) is sqlite3.DatabaseError or any(
        m in str(exc).lower() for m in ("not a database", "malformed", "disk image"))


class SqliteStore:
    """A SQLite file that can never fail a run (see the module docstring); `db` is None once bypassed."""

    timeout_s = 30.0  # waiting for another process's lock before giving the cache up

    def __init__(self, path: Path, schema: list[str], what: str, *, wal: bool = False) -> None:
        self.path, self.what = path, what
        self.db: sqlite3.Connection | None = None
        try:
            self.db = self._connect(schema, wal)
        except (sqlite3.Error, OSError) as exc:
            if not (isinstance(exc, sqlite3.Error) and _corrupt(exc)):
                self._bypass(exc)
                return
            aside = self._move_aside()
            if aside is None:
                self._bypass(exc)
                return
            log.warning("The %s %s is not a readable database (%s): moved aside to %s; starting a new one.",
                        what, path, exc, aside.name)
            try:
                self.db = self._connect(schema, wal)
            except (sqlite3.Error, OSError) as again:
                self._bypass(again)

    def _connect(self, schema: list[str], wal: bool) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=self.timeout_s)
        try:
            if wal:
                db.execute("PRAGMA journal_mode=WAL")
            for statement in schema:
                db.execute(statement)
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            db.commit()
        except BaseException:
            db.close()
            raise
        return db

    def _move_aside(self) -> Path | None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        try:
            self.path.replace(aside)
            for extra in ("-wal", "-shm", "-journal"):  # SQLite's companions belong to the broken file
                companion = self.path.with_name(self.path.name + extra)
                if companion.exists():
                    companion.replace(aside.with_name(aside.name + extra))
        except OSError:
            return None
        return aside

    def _bypass(self, exc: BaseException) -> None:
        if self.db is not None:
            with contextlib.suppress(sqlite3.Error):
                self.db.close()
            self.db = None
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        log.warning("The %s %s cannot be used (%s): continuing without it (nothing is read from or saved to "
                    "it in this run; deleting the file starts it anew).",
                    self.what, self.path, reason)

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        """The first row, or None (no row, or the cache is bypassed)."""
        if self.db is None:
            return None
        try:
            return self.db.execute(sql, args).fetchone()
        except sqlite3.Error as exc:
            self._bypass(exc)
            return None

    def write(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        if self.db is None or not rows:
            return
        try:
            self.db.executemany(sql, rows)
            self.db.commit()
        except sqlite3.Error as exc:
            self._bypass(exc)

    def close(self) -> None:
        if self.db is not None:
            with contextlib.suppress(sqlite3.Error):
                self.db.close()
            self.db = None


class GenerationCache(SqliteStore):
    """`read=False` (--no-cache): every answer is generated again and replaces what the cache held."""

    def __init__(self, path: Path | None = None, *, read: bool = True) -> None:
        self.read = read
        super().__init__(path or cache_root() / "generations.sqlite3", [
            "CREATE TABLE IF NOT EXISTS generations (key TEXT PRIMARY KEY, record TEXT, created REAL)",
            "CREATE TABLE IF NOT EXISTS prompts (key TEXT PRIMARY KEY, text TEXT)",
        ], "generation cache", wal=True)

    def get(self, key: str) -> Generation | None:
        if not self.read:
            return None
        row = self.query("SELECT record FROM generations WHERE key = ?", (key,))
        if row is None:
            return None
        try:
            gen = Generation.from_dict(json.loads(row[0]))
        except (TypeError, ValueError):  # a record damaged by hand: generate that answer again
            return None
        gen.cached = True
        return gen

    def put(self, key: str, gen: Generation) -> None:
        if gen.error:
            return
        record = gen.to_dict()
        record.pop("cached", None)
        self.write("INSERT OR REPLACE INTO generations (key, record, created) VALUES (?, ?, ?)",
                   [(key, json.dumps(record, ensure_ascii=False), time.time())])

    def get_prompt(self, key: str) -> str | None:
        """A chat-templated prompt kept under the backend's render_key (see runner.rendered)."""
        row = self.query("SELECT text FROM prompts WHERE key = ?", (key,))
        return None if row is None else row[0]

    def put_prompt(self, key: str, text: str) -> None:
        self.write("INSERT OR REPLACE INTO prompts (key, text) VALUES (?, ?)", [(key, text)])
