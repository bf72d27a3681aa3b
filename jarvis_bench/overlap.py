"""Training-data overlap: is a benchmark prompt (or a near-paraphrase of it) in the adapter's training data?

A prompt the adapter was trained on is "seen": its gain measures memorisation, not skill. `read_training()`
reads the training files a LoRA trainer takes; `nearest()` finds, for each benchmark prompt, its nearest
training prompt three ways — exact (after `text.normalize`), fuzzy (rapidfuzz `fuzz.ratio`, 0-100, on the
normalised texts, the scorer `text.overlaps()` uses) and cosine (the embedder, on the normalised texts) — and
calls it seen when any one reaches its threshold.

Formats (one record = one training example)
-------------------------------------------
Files ending in ``.json`` hold one JSON document: a list of records, a single record, or an object with
exactly one list field holding the records (``{"data": [...]}``, ``{"train": [...]}``); a ``.json`` file
that is in fact JSON Lines (several objects, one per line) is read as such. Any other file is JSON Lines:
one record per line, lines split on "\\n" only, blank lines skipped, a UTF-8 BOM and CRLF endings accepted.
A record is, checked in this order:

- OpenAI chat ``{"messages": [{"role": "user", "content": ...}, ...]}``: every user message is one prompt;
  content is a string or a list of parts, whose ``{"type": "text", "text": ...}`` parts (and bare strings)
  are joined by "\\n";
- ShareGPT ``{"conversations": [{"from": "human", "value": ...}, ...]}``: every "human"/"user" turn
  (``role``/``content`` turns are read too);
- Alpaca ``{"instruction", "input", "output"}``: instruction, plus "\\n" + input when input is non-empty;
- ``{"prompt": ..., "completion"/"response": ...}``: prompt (a list of chat messages — TRL's conversational
  prompt-completion format — gives its user messages).

A prompt's line is that of its record: the JSONL line, or the line of the record's opening brace in a
``.json`` document (exact for pretty-printed and one-line lists). Several prompts of one chat share it.
Empty (whitespace-only) prompts are skipped; a file that yields none is an error.

Bounds: texts are matched on their first `MATCH_CHARS` characters (a 3 MB prompt costs what a 2,000-character
one does); nearest() reports texts clipped the same way. Exact and fuzzy matching are linear in the number of
unique training texts (a dict lookup and one `process.extractOne` per benchmark prompt: about a second for
30 prompts against 50,000 texts). Cosine embeds each unique training text once (`scoring.Embedder` caches
the vectors on disk), then one matrix product.

Thresholds (calibrated with sentence-transformers/all-MiniLM-L6-v2 on normalised text; another embedding
model needs its own COSINE_SEEN)
------------------------------------------------------------------------------------------------------------
- The project's demo training data (demo/train_data.jsonl, 317 prompts, built by demo/make_train_data.py
  to stay away from the benchmark) against the 30 prompts of benchmark_config.json: highest fuzzy 86.7
  ("statu clusteur" ~ "état du clusteur"), highest cosine 0.8369 ("la carte graphique chauffe, elle en est
  où ?" ~ "la carte graphique est occupée ?", then 0.7823). It must give 0 seen.
- 60 one-word paraphrases of benchmark prompts (a synonym, another number, city, app or crypto; a few add or
  swap two words) each added alone to the demo data: against their prompt they scored fuzzy 57.1-98.0 and
  cosine 0.47-0.96, ranges that overlap the demo's, so NO threshold separates every one-word paraphrase from
  unrelated training prompts. Prompts of one to three words ("ouvre chrome") cannot be told apart at all: the
  demo itself holds "ouvre firefox" and "ferme chrome" (cosine 0.649, fuzzy 75.0), which must stay unseen.
  With the thresholds below, 27 of the 43 paraphrases of prompts of four words or more are seen and 0 of the
  17 of shorter prompts, and no other benchmark prompt becomes seen, except "lance un minuteur de 10 minutes"
  (for "... de 5 minutes"), which also makes the misheard "lance un minutes heure de dix minutes" seen. As
  nearest() reports them (best over demo + paraphrase), seen:
  "préviens-moi dans 30 minutes pour sortir le gâteau" (fuzzy 98.0, cosine 0.952), "comment va le bitcoin en
  ce moment ?" (86.5, 0.947), "prends une capture d'écran" (84.0, 0.924), "merci jarvis, c'est tout" (87.5,
  0.895), "il fera quel temps à Lyon demain ?" (84.1, 0.863), "comment se porte l'ethereum en ce moment ?"
  (82.5, 0.855), "préviens-moi dans 20 minutes pour sortir le poulet" (90.0, 0.850: on both thresholds).
  Missed: "je pars en pause, verrouille mon poste" (84.5, 0.848), "j'entends rien, c'est trop faible" (88.5,
  0.834), "mets un minuteur de 5 minutes" (88.1, 0.716), "mets-moi un peu de rock" (82.6, 0.825), "ouvre
  firefox" (75.0, 0.649).
- FUZZY_SEEN = 90: the threshold `text.overlaps()` filters the demo data with, 3.3 above the demo's 86.7.
- COSINE_SEEN = 0.85: 0.013 above the demo's 0.8369; the nearest paraphrases on either side are 0.8507
  (seen) and 0.8477 (missed). Lower thresholds catch a few more (fuzzy 88: +2; cosine 0.845: +1) with a
  margin over the demo of 1.3 and 0.008 only, and a real training set, thousands of prompts, reaches higher
  unrelated maxima than the demo's 317.
A "not seen" is therefore no proof of absence for short prompts or paraphrases that change a key word;
read the nearest training text that nearest() reports.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError
from .fsutil import jsonl_lines
from .text import SAME_PROMPT_RATIO, normalize

#: Characters of a text used for matching (and shown in nearest()'s report): bounds the work a huge record costs.
MATCH_CHARS = 2_000

FUZZY_SEEN: float = SAME_PROMPT_RATIO
"""rapidfuzz ratio (0-100) on normalised text at or above which a prompt is seen (see the module docstring)."""

COSINE_SEEN: float = 0.85
"""Embedding cosine (all-MiniLM-L6-v2, normalised text) at or above which a prompt is seen."""

FORMATS = ('OpenAI chat {"messages": [{"role": "user", "content": ...}]}, '
           'ShareGPT {"conversations": [{"from": "human", "value": ...}]}, '
           'Alpaca {"instruction", "input", "output"}, {"prompt", "completion" or "response"}')

_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
_USERS = {"messages": {"user"}, "conversations": {"human", "user"}}


@dataclass(frozen=True)
class TrainingPrompt:
    text: str  # the user-side prompt text of one training example
    file: str  # path as given (str)
    line: int  # 1-based line in the file where that example starts

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


# ----------------------------------------------------------------------------- reading


def _short(value: Any, limit: int = 40) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


def _text(content: Any, where: str, field: str) -> str:
    """A message's content: a string, or the text of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p if isinstance(p, str) else p.get("text") for p in content
                 if isinstance(p, str) or (isinstance(p, dict) and p.get("type", "text") == "text")]
        return "\n".join(p for p in parts if isinstance(p, str))
    raise ConfigError(f"{where}: {field} is {_kind(content)}; make it a string or a list of "
                      '{"type": "text", "text": ...} parts')


def _turns(turns: Any, where: str, field: str) -> list[str]:
    """The user turns of a chat (`messages`, `conversations` or a conversational `prompt`)."""
    if not isinstance(turns, list):
        raise ConfigError(f'{where}: "{field}" is {_kind(turns)}; make it a list of messages')
    users = _USERS.get(field, {"user"})
    out = []
    for n, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise ConfigError(f'{where}: "{field}"[{n}] is {_kind(turn)}; each message must be an object '
                              'such as {"role": "user", "content": "..."}')
        role_key, text_key = ("from", "value") if "from" in turn else ("role", "content")
        role = turn.get(role_key)
        if not isinstance(role, str):
            keys = ", ".join(f'"{_short(k)}"' for k in list(turn)[:10]) or "none"
            raise ConfigError(f'{where}: "{field}"[{n}] has no "role" (or ShareGPT "from") string (keys: {keys}); '
                              'add it, e.g. "role": "user"')
        if role.lower() in users:
            out.append(_text(turn.get(text_key), where, f'"{field}"[{n}].{text_key}'))
    return out


def _record_prompts(rec: Any, where: str) -> list[str]:
    """The user-side prompts of one training record."""
    if not isinstance(rec, dict):
        raise ConfigError(f"{where}: a record is {_kind(rec)}, not a JSON object; each training example must be "
                          f"an object in one of these formats: {FORMATS}")
    for field in ("messages", "conversations"):
        if field in rec:
            return _turns(rec[field], where, field)
    if "instruction" in rec:
        instruction, extra = rec["instruction"], rec.get("input")
        if not isinstance(instruction, str) or not isinstance(extra, (str, type(None))):
            bad = "instruction" if not isinstance(instruction, str) else "input"
            raise ConfigError(f'{where}: "{bad}" is {_kind(rec[bad])}; make it a string (Alpaca format)')
        return [f"{instruction}\n{extra}" if extra else instruction]
    if "prompt" in rec:
        prompt = rec["prompt"]
        if isinstance(prompt, list):
            return _turns(prompt, where, "prompt")
        if not isinstance(prompt, str):
            raise ConfigError(f'{where}: "prompt" is {_kind(prompt)}; make it a string (or a list of chat messages)')
        return [prompt]
    keys = ", ".join(f'"{_short(k)}"' for k in list(rec)[:10]) + (", …" if len(rec) > 10 else "")
    raise ConfigError(f"{where}: a record with keys {keys or '(none)'} is in no known training format; "
                      f"convert it to one of: {FORMATS}")


def _invalid(file: str, line: int, col: int, msg: str, hint: str = "") -> ConfigError:
    return ConfigError(f"{file}:{line}:{col}: invalid JSON: {msg}; fix the syntax there{hint}")


def _jsonl(file: str, lines: Iterable[tuple[int, str]], named_json: bool = False) -> Iterator[tuple[int, Any]]:
    for n, line in lines:
        if n == 1:
            line = line.removeprefix("\ufeff")
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as exc:
            hint = (" (this looks like pretty-printed JSON: give the file a .json name)"
                    if line.strip() in ("[", "{") and not named_json else " (a JSON Lines file holds one JSON object per line)")
            raise _invalid(file, n, exc.colno, exc.msg, hint) from None


def _utf8_error(file: str, path: Path) -> ConfigError:
    """Where a file stops being UTF-8: its first undecodable line."""
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                return ConfigError(f"{file}:{n}:{exc.start + 1}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); "
                                   "save the file as UTF-8")
    return ConfigError(f"{file}: not UTF-8 text; save the file as UTF-8")


class _Lines:
    """Line numbers of increasing offsets into a text, counted incrementally (linear over a whole walk)."""

    def __init__(self, text: str) -> None:
        self.text, self.pos, self.line = text, 0, 1

    def __call__(self, idx: int) -> int:
        if idx < self.pos:
            self.pos, self.line = 0, 1
        self.line += self.text.count("\n", self.pos, idx)
        self.pos = idx
        return self.line

    def col(self, idx: int) -> int:
        return idx - (self.text.rfind("\n", 0, idx) + 1) + 1


def _decode(text: str, idx: int, file: str, lines: _Lines) -> tuple[Any, int]:
    try:
        return _DECODER.raw_decode(text, idx)
    except json.JSONDecodeError as exc:
        raise _invalid(file, lines(exc.pos), lines.col(exc.pos), exc.msg) from None


def _ws(text: str, idx: int) -> int:
    return _WS.match(text, idx).end()  # type: ignore[union-attr]  # the pattern matches the empty string


def _walk_list(text: str, idx: int, file: str, lines: _Lines) -> Iterator[tuple[int, Any]]:
    """(line, item) of each item of the JSON list starting at text[idx] == "["; returns the offset after it."""
    idx = _ws(text, idx + 1)
    if text.startswith("]", idx):
        return idx + 1
    while True:
        item, end = _decode(text, idx, file, lines)
        yield lines(idx), item
        idx = _ws(text, end)
        if text.startswith(",", idx):
            idx = _ws(text, idx + 1)
        elif text.startswith("]", idx):
            return idx + 1
        else:
            raise _invalid(file, lines(idx), lines.col(idx), "Expecting ',' delimiter or ']'")


def _list_in_object(text: str, idx: int, key: str, file: str, lines: _Lines) -> int:
    """Offset of the value of `key` in the (already validated) JSON object starting at text[idx] == "{"."""
    idx = _ws(text, idx + 1)
    found = -1
    while not text.startswith("}", idx):
        name, idx = _DECODER.raw_decode(text, idx)
        idx = _ws(text, _ws(text, idx) + 1)  # the ":"
        if name == key:
            found = idx
        idx = _ws(text, _DECODER.raw_decode(text, idx)[1])
        if text.startswith(",", idx):
            idx = _ws(text, idx + 1)
    return found  # the last one, as json.loads keeps


def _json_document(file: str, text: str) -> Iterator[tuple[int, Any]]:
    """(line, record) of a .json file: a list of records, one record, or an object with one list of records."""
    lines = _Lines(text)
    start = _ws(text, 0)
    if start == len(text):
        return
    value, end = _decode(text, start, file, lines)
    rest = _ws(text, end)
    if rest < len(text):
        if isinstance(value, dict) and "\n" not in text[start:end]:  # one object a line: JSON Lines named .json
            lines_ = ((n, line.removesuffix("\r")) for n, line in enumerate(text.split("\n"), 1))
            yield from _jsonl(file, lines_, named_json=True)
            return
        raise _invalid(file, lines(rest), lines.col(rest), "Extra data")
    if isinstance(value, list):
        del value
        yield from _walk_list(text, start, file, lines)
        return
    if isinstance(value, dict):
        if any(k in value for k in ("messages", "conversations", "instruction", "prompt")):
            yield lines(start), value
            return
        lists = [k for k, v in value.items() if isinstance(v, list)]
        if len(lists) == 1:
            del value
            yield from _walk_list(text, _list_in_object(text, start, lists[0], file, lines), file, lines)
            return
        what = (f"an object with {len(lists)} list fields ({', '.join(_short(k) for k in lists[:5])})" if lists
                else "an object with no list field and no known record keys")
    else:
        what = _kind(value)
    raise ConfigError(f"{file}:{lines(start)}: the JSON document is {what}; a .json training file must hold a "
                      'list of records, one record, or an object with one list of records such as {"data": [...]}')


def _read_file(path: Path) -> list[TrainingPrompt]:
    file = str(path)
    try:
        if not path.exists():
            raise ConfigError(f"{file}: training file not found; check the path")
        if path.is_dir():
            raise ConfigError(f"{file}: is a folder, not a training file; pass the .jsonl or .json file in it")
        records: Iterable[tuple[int, Any]]
        if path.suffix.lower() == ".json":
            records = _json_document(file, path.read_text(encoding="utf-8-sig"))
        else:
            records = _jsonl(file, jsonl_lines(path))
        out: list[TrainingPrompt] = []
        first, count = 0, 0
        for line, rec in records:
            first, count = first or line, count + 1
            out.extend(TrainingPrompt(t, file, line) for t in _record_prompts(rec, f"{file}:{line}") if t.strip())
    except UnicodeDecodeError:
        raise _utf8_error(file, path) from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read the training file ({exc.strerror or exc}); check its permissions"
                          ) from None
    if not count:
        raise ConfigError(f"{file}: the file holds no training record (empty); pass a file of training examples "
                          f"in one of these formats: {FORMATS}")
    if not out:
        raise ConfigError(f"{file}:{first}: none of its {count} records has a user prompt (no user turn, or "
                          "only empty ones); pass the training file with the user-side prompts")
    return out


def read_training(paths: Sequence[Path]) -> list[TrainingPrompt]:
    """Every training prompt of every file, in file order. Raises ConfigError (one line: file, line, what is
    wrong and the fix) on a missing or unreadable file, one not UTF-8, invalid JSON (with line:column), a record
    in no known format (its keys and the accepted formats), or a file with no training prompt."""
    out: list[TrainingPrompt] = []
    for path in paths:
        out.extend(_read_file(Path(path)))
    return out


# ----------------------------------------------------------------------------- matching


def _clip(text: str) -> str:
    return text[:MATCH_CHARS]


def nearest(prompts: Sequence[tuple[str, str]], training: Sequence[TrainingPrompt],
            embed: Callable[[Sequence[str]], np.ndarray] | None) -> list[dict]:
    """For each (prompt_id, prompt_text), in order, its nearest training prompt:

    {"id", "prompt", "exact": bool (normalised exact match exists), "fuzzy": float 0-100 (best rapidfuzz ratio,
    rounded 1), "fuzzy_text", "fuzzy_where": "file:line", "cosine": float|None (best cosine, rounded 4; None when
    embed is None), "cosine_text", "cosine_where", "seen": bool, "seen_by": ["exact", "fuzzy", "cosine"] (those
    that reached their threshold), "nearest_text", "nearest_where"}.

    The nearest is the training prompt that decided: the exact match, else the best fuzzy one if at FUZZY_SEEN,
    else the best cosine one if at COSINE_SEEN, else the best fuzzy one. Texts are clipped to MATCH_CHARS; a
    training text found several times is reported at its first place. Verdicts use the rounded scores shown.
    `embed`: list[str] -> L2-normalised rows (e.g. `scoring.Embedder`), called once for the unique training
    texts and once for the prompts; None skips cosine.
    """
    from rapidfuzz import fuzz, process

    first: dict[str, int] = {}  # normalised text -> its first training prompt
    for k, tp in enumerate(training):
        norm = normalize(_clip(tp.text))
        if norm and norm not in first:
            first[norm] = k
    keys = list(first)
    queries = [normalize(_clip(text)) for _, text in prompts]
    sims = None
    if embed is not None and keys and prompts:
        sims = np.asarray(embed(queries), dtype=np.float32) @ np.asarray(embed(keys), dtype=np.float32).T

    out = []
    for i, ((pid, text), query) in enumerate(zip(prompts, queries)):
        row: dict[str, Any] = {"id": pid, "prompt": text, "exact": False, "fuzzy": 0.0, "fuzzy_text": None,
                               "fuzzy_where": None, "cosine": None if embed is None else 0.0, "cosine_text": None,
                               "cosine_where": None}
        fuzzy_tp = cosine_tp = exact_tp = None
        if query and keys:
            if query in first:
                exact_tp = training[first[query]]
                row["exact"] = True
            _, score, j = process.extractOne(query, keys, scorer=fuzz.ratio)
            fuzzy_tp = training[first[keys[j]]]
            row.update(fuzzy=round(float(score), 1), fuzzy_text=_clip(fuzzy_tp.text), fuzzy_where=fuzzy_tp.where)
            if sims is not None:
                j = int(np.argmax(sims[i]))
                cosine_tp = training[first[keys[j]]]
                row.update(cosine=round(float(sims[i, j]), 4), cosine_text=_clip(cosine_tp.text),
                           cosine_where=cosine_tp.where)
        seen_by = [name for name, hit in (("exact", row["exact"]), ("fuzzy", row["fuzzy"] >= FUZZY_SEEN),
                                          ("cosine", (row["cosine"] or 0.0) >= COSINE_SEEN)) if hit]
        decided = (exact_tp if exact_tp is not None else fuzzy_tp if "fuzzy" in seen_by
                   else cosine_tp if "cosine" in seen_by else fuzzy_tp)
        row.update(seen=bool(seen_by), seen_by=seen_by, nearest_text=_clip(decided.text) if decided else None,
                   nearest_where=decided.where if decided else None)
        out.append(row)
    return out
