"""French text helpers shared by scoring and the training-data leakage check."""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable

_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)
_SPACES = re.compile(r"\s+")

#: Reasoning blocks, removed before anything is scored: (opening, closing, whether a closing tag alone ends a
#: block the chat template opened in the prompt). What vLLM's and SGLang's reasoning parsers split off.
REASONING_BLOCKS: tuple[tuple[str, str, bool], ...] = (
    ("<think>", "</think>", True),  # Qwen3, DeepSeek R1/V3, GLM-4.5, MiniMax-M2
    ("[THINK]", "[/THINK]", True),  # Magistral (Mistral)
    ("<seed:think>", "</seed:think>", True),  # Seed-OSS
    ("\u25c1think\u25b7", "\u25c1/think\u25b7", True),  # Kimi: ◁think▷ … ◁/think▷
    ("<|channel|>analysis<|message|>", "<|end|>", False),  # gpt-oss (harmony): <|end|> closes any message
)
_BLOCKS = tuple((re.compile(re.escape(o) + r".*?(?:" + re.escape(c) + r"|$)", re.DOTALL), o, c, stray)
                for o, c, stray in REASONING_BLOCKS)


def clip(text: str, limit: int) -> tuple[str, int]:
    """The first `limit` characters of `text` and how many were left out (0 when it fits)."""
    return (text, 0) if len(text) <= limit else (text[:limit], len(text) - limit)


def fold(text: str) -> str:
    """Lower-case and strip accents ("Écran" -> "ecran"); œ/æ are expanded."""
    text = text.lower().replace("œ", "oe").replace("æ", "ae").replace("’", "'")
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def normalize(text: str) -> str:
    """fold(), punctuation to spaces, whitespace collapsed: for matching words, not for display."""
    return _SPACES.sub(" ", _PUNCT.sub(" ", fold(text))).strip()


@functools.lru_cache(maxsize=8192)
def canonical(text: str) -> str:
    """normalize() with French number words written as digits ("dix minutes" -> "10 minutes",
    "vingt-cinq" -> "25", "une" -> "1"): the form in which answers and expectations are compared.
    Both sides of a comparison go through it, so an article read as "1" matches on both sides. Cached:
    the catalog's names and aliases and the prompts' keywords come back for every answer."""
    from text_to_num import alpha2digit

    return normalize(alpha2digit(text.lower().replace("’", "'"), "fr", threshold=0))


def words(text: str) -> list[str]:
    """canonical() split into words: apostrophes split ("l'écran" -> "l", "ecran"); an identifier such
    as `mexc_scan_tool` stays one word."""
    return canonical(text).split()


def strip_thinking(text: str) -> tuple[str, int]:
    """Remove reasoning blocks (`REASONING_BLOCKS`: <think>…</think>, [THINK]…[/THINK], …), an unterminated
    trailing one included.

    Returns the answer without them and the number of characters removed (0 = none).
    A stray closing tag (the template opened the block in the prompt) drops what precedes it.
    """
    removed = 0

    def _drop(m: re.Match[str]) -> str:
        nonlocal removed
        removed += len(m.group(0))
        return ""

    for block, opening, closing, stray in _BLOCKS:
        if stray and closing in text and opening not in text.split(closing, 1)[0]:
            head, text = text.split(closing, 1)
            removed += len(head) + len(closing)
        if opening in text:
            text = block.sub(_drop, text)
    return text.strip(), removed


#: rapidfuzz ratio (0-100, on normalize()d text) from which two prompts count as the same: what keeps the demo's
#: training data away from the benchmark prompts, and what `overlap` calls "seen in training".
SAME_PROMPT_RATIO = 90.0


def overlaps(candidate: str, protected: Iterable[str], threshold: float = SAME_PROMPT_RATIO) -> bool:
    """True when `candidate` contains a protected prompt (normalised) or is a fuzzy near-copy of one."""
    from rapidfuzz import fuzz

    cand = normalize(candidate)
    for p in protected:
        norm = normalize(p)
        if norm and (norm in cand or fuzz.ratio(cand, norm) >= threshold):
            return True
    return False
