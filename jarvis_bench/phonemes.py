"""French phonemes (IPA) from eSpeak NG, and how far two sentences sound apart.

The library and its data come from the `espeakng-loader` wheel on PyPI (Linux, Windows and macOS, the same
eSpeak NG 1.52 everywhere), called through ctypes: no system package, so every user gets the same phonemes,
hence the same noisy-speech variants for the same seed. eSpeak NG is not thread-safe: calls are serialised.

    ipa("verrouille l'écran")   -> "vɛʁujlekʁɑ̃"
    distance("ouvre chrome", "ouvre crom") -> 0.1   (one phoneme of ten: o -> ɔ)
"""

from __future__ import annotations

import ctypes
import functools
import os
import re
import sys
import threading
from typing import Any

from .errors import ConfigError

_AUDIO_OUTPUT_RETRIEVAL = 1  # espeak_Initialize: no audio device is opened
_CHARS_UTF8 = 1
_PHONEMES_IPA = 0x02
_DONT_EXIT = 0x8000  # espeakINITIALIZE_DONT_EXIT: without it a failed start calls exit(1) on the whole process
#: What eSpeak writes besides phonemes: stress and length marks, word and liaison separators, and the
#: language-switch flags it adds around words it reads as English ("(en)spˈɒtɪfˌaɪ(fr)").
_NOT_PHONEMES = re.compile(r"\([a-z-]+\)|[ˈˌ\s\-‿_]")
#: Characters of a sentence given to eSpeak (a prompt is a sentence; a 3 MB one is not read whole).
MAX_CHARS = 2000

_lock = threading.Lock()


@functools.lru_cache(maxsize=1)
def _library() -> Any:
    try:
        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        folder = espeakng_loader.get_data_path()
        # eSpeak opens its data with the C library: the ANSI code page on Windows, the file-system bytes elsewhere
        data = folder.encode("mbcs") if sys.platform == "win32" else os.fsencode(folder)
    except (ImportError, OSError, RuntimeError, UnicodeError) as exc:
        raise ConfigError(f"the French phonemiser (eSpeak NG from the espeakng-loader package) cannot be loaded "
                          f"({exc}); run `uv sync` to install it") from None
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
    lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
    started = lib.espeak_Initialize(_AUDIO_OUTPUT_RETRIEVAL, 0, data, _DONT_EXIT)
    if started <= 0 or lib.espeak_SetVoiceByName(b"fr") != 0:
        raise ConfigError("eSpeak NG (espeakng-loader) did not start with its French voice; reinstall it with "
                          "`uv sync --reinstall-package espeakng-loader`")
    return lib


def version() -> str:
    """The eSpeak NG version the phonemes come from (in the results' metadata)."""
    from importlib import metadata

    try:
        return f"espeakng-loader {metadata.version('espeakng-loader')}"
    except metadata.PackageNotFoundError:
        return "espeakng-loader (not installed)"


@functools.lru_cache(maxsize=4096)
def ipa_words(text: str) -> str:
    """eSpeak's IPA for `text`, clause by clause, stress marks and word separators kept."""
    with _lock:  # eSpeak is started once, by one thread
        lib = _library()
    raw = text[:MAX_CHARS].replace("\0", " ").encode("utf-8", "replace")
    out: list[str] = []
    with _lock:
        buf = ctypes.create_string_buffer(raw)
        ptr = ctypes.c_void_p(ctypes.addressof(buf))
        while ptr.value:
            chunk = lib.espeak_TextToPhonemes(ctypes.byref(ptr), _CHARS_UTF8, _PHONEMES_IPA)
            if chunk:
                out.append(chunk.decode("utf-8", "replace"))
    return " ".join(out)


def ipa(text: str) -> str:
    """The phonemes of `text` as one string: what a listener hears, without stress, pauses or word breaks
    (a recogniser cannot hear where one written word ends)."""
    return _NOT_PHONEMES.sub("", ipa_words(text))


def _units(phonemes: str) -> list[str]:
    """Phonemes as units: a base letter with its combining marks (the nasal tilde of ɑ̃) and length mark."""
    units: list[str] = []
    for ch in phonemes:
        if units and (ch == "ː" or "\u0300" <= ch <= "\u036f"):
            units[-1] += ch
        else:
            units.append(ch)
    return units


def distance(a: str, b: str) -> float:
    """Phoneme edit distance of two sentences over the longer one's length: 0 = they sound the same,
    1 = nothing in common."""
    from rapidfuzz.distance import Levenshtein

    pa, pb = _units(ipa(a)), _units(ipa(b))
    if not pa and not pb:
        return 0.0
    return Levenshtein.distance(pa, pb) / max(len(pa), len(pb))
