"""The only file-writing helpers: atomic writes, flushed JSONL appends, cache location, hashing."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import OutputWriteError

CACHE_ENV = "JARVIS_BENCH_CACHE"


def cache_root() -> Path:
    """Where jarvis-bench caches the demo model and generations ($JARVIS_BENCH_CACHE overrides)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser().resolve()
    import platformdirs

    return Path(platformdirs.user_cache_dir("jarvis-bench", appauthor=False))


def write_error(path: str | Path, exc: OSError) -> OutputWriteError:
    """One line for a file that could not be written: which file, why, and what to do."""
    import errno

    reason = exc.strerror or str(exc) or type(exc).__name__
    code = errno.errorcode.get(exc.errno or 0)
    return OutputWriteError(
        f"cannot write {path}: {reason}{f' ({code})' if code else ''}; free some space, fix the folder's "
        "permissions or choose another output folder, then rerun (the previous file is unchanged)"
    )


@contextlib.contextmanager
def atomic_path(dest: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `dest`; it replaces `dest` only if the block succeeds. Any OSError
    while writing (disk full, permission, path too long) becomes one OutputWriteError naming `dest`, the
    previous `dest` intact and the temporary file removed."""
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix or dest.suffix, dir=dest.parent)
    except OSError as exc:
        raise write_error(dest, exc) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; results are ordinary files
        yield tmp_path
        os.replace(tmp_path, dest)
    except OSError as exc:
        raise write_error(dest, exc) from None
    finally:
        with contextlib.suppress(OSError):
            tmp_path.unlink(missing_ok=True)


def atomic_write_text(dest: str | Path, text: str) -> None:
    with atomic_path(dest) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())


def atomic_write_json(dest: str | Path, data: Any) -> None:
    atomic_write_text(dest, json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    """Append one record and flush it to disk (an interrupted run keeps every finished line)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8", newline="\n") as fh:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise write_error(path, exc) from None


def jsonl_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line of a JSON Lines file, split on "\n" only — the format's separator.
    `str.splitlines()` also splits on U+2028, U+2029, U+0085 and other characters that `json.dumps(...,
    ensure_ascii=False)` writes raw inside strings (models emit them), which would cut a valid line in two.
    A trailing "\r" (a file saved with Windows line endings) is dropped; read lazily, line by line."""
    with open(path, encoding="utf-8", newline="\n") as fh:
        for n, line in enumerate(fh, 1):
            yield n, line.rstrip("\n").removesuffix("\r")


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSONL file, skipping a torn last line (from a killed writer)."""
    out: list[dict[str, Any]] = []
    for _, line in jsonl_lines(path):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_json(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
