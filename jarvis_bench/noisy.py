"""Noisy-speech variants: what a French speech recogniser plausibly writes for a spoken prompt.

`variants(prompt_id, text, n, seed)` makes `n` deterministic variants of one prompt. Each applies one to
three noise rules to the words of the source (the rule names are kept with the variant):

- `homophone`: a word by one that sounds the same (son/sont, a/à, et/est, vers/vert/verre, pause/pose);
- `respelling`: in a name only (a brand, an acronym, a capitalised word), letters by others that sound
  the same (c/k/qu, ç/ss, y/i, ph/f, s/z, er/eur, é/è/ai, a doubled consonant written single): a
  recogniser spells by ear what it does not know, and writes everyday words as it knows them;
- `silent_letter`: a silent final letter added or dropped (écran/écrant, minutes/minute, son/sons; never
  an -s on an infinitive);
- `split`: a word cut in two where a recogniser hears two ("minuteur" -> "minute heure", "discord" ->
  "disque corde"), or a hyphenated pair written apart ("mets-moi" -> "mets moi");
- `elision`: an elision lost or glued ("l'écran" -> "le écran", "lécran"), or a liaison written out
  ("en est" -> "en n'est");
- `number`: digits as words or words as digits ("5" <-> "cinq");
- `accents`: accents or apostrophes lost ("météo" -> "meteo", "l'écran" -> "l écran");
- `brand`: a name spelt by ear ("chrome" -> "crom", "spotify" -> "spoti faille", "MEXC" -> "mex si").

Every variant must sound like its source: its eSpeak NG phonemes are within MAX_PHONEME_DISTANCE of the
source's (`phonemes.distance`); a candidate further away is dropped and another drawn. The draw is seeded by
(seed, prompt id, variant number) through SHA-256, so the same config and seed give the same variants on
every machine. A prompt may get fewer than `n` variants when its words offer too few distinct errors (a
two-word command): `variants` returns what it found, never a duplicate of the source or of another variant.
"""

from __future__ import annotations

import hashlib
import random
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from . import phonemes
from .config import PromptSpec

#: Largest phoneme edit distance (over the longer sentence's phonemes) between a variant and its source.
#: 0.34: the config's own hand-written misrecognitions reach 0.31 ("ferme spotify" / "ferme spoti faille",
#: where eSpeak reads "spotify" as English); replacing the verb of a three-word command ("ouvre chrome" ->
#: "ferme chrome") is 0.375, "monte le son" -> "baisse le son" 0.43.
MAX_PHONEME_DISTANCE = 0.34
#: Candidates drawn per variant before giving up on it.
ATTEMPTS = 60
RULES = ("homophone", "respelling", "silent_letter", "split", "elision", "number", "accents", "brand")

# ----------------------------------------------------------------------------------------------- tables

_HOMOPHONES: dict[str, tuple[str, ...]] = {
    "son": ("sont",), "sont": ("son",), "a": ("à",), "à": ("a",), "et": ("est",), "est": ("et",),
    "vers": ("vert", "verre"), "vert": ("vers", "verre"), "verre": ("vers", "vert"), "mets": ("mais", "met"),
    "met": ("mets", "mais"), "mais": ("mets",), "ces": ("ses",), "ses": ("ces",), "ou": ("où",), "où": ("ou",),
    "la": ("là",), "là": ("la",), "ce": ("se",), "se": ("ce",), "on": ("ont",), "ont": ("on",),
    "peu": ("peut",), "peut": ("peu",), "cent": ("sans", "sang"), "sans": ("cent",), "vingt": ("vin", "vint"),
    "fin": ("faim",), "temps": ("tant",), "tant": ("temps",), "ton": ("thon",), "quel": ("quelle",),
    "quelle": ("quel", "qu'elle"), "fais": ("fait",), "fait": ("fais",), "moi": ("mois",), "toi": ("toit",),
    "sur": ("sûr",), "du": ("dû",), "mes": ("mais",), "cette": ("sept",), "pause": ("pose",),
    "fort": ("for",), "pars": ("part", "par"), "part": ("pars",), "lyon": ("lion",),
    "paris": ("pari",), "coupe": ("coupes", "coupent"), "ferme": ("fermes", "ferment"), "ouvre": ("ouvres", "ouvrent"),
    "lance": ("lances", "lancent"), "monte": ("montes", "montent"), "baisse": ("baisses", "baissent"),
    "verrouille": ("verrouilles", "verrouillent"), "protège": ("protèges", "protègent"), "chauffe": ("chauffent",),
    "préviens": ("prévient",), "entends": ("entend",), "porte": ("portes",),
    "scan": ("scanne",), "capture": ("captures",), "minute": ("minutes",), "minutes": ("minute",),
    "machines": ("machine",), "rien": ("rient",), "merci": ("mercis",),
    "poste": ("postes",), "carte": ("cartes",), "tout": ("tous", "toux"), "jazz": ("jaz",),
}
_BRANDS: dict[str, tuple[str, ...]] = {
    "chrome": ("crom", "krom", "crôme", "crome"), "spotify": ("spoti faille", "spotifaille", "spotifaï", "spoti fail"),
    "discord": ("disque corde", "dis corde", "discorde"), "mexc": ("mex si", "mex c", "mexe c", "mèxe cé"),
    "cluster": ("clusteur", "cleusteur", "clustère"), "bitcoin": ("bit coin", "bitcoine", "bitcoïne"),
    "jarvis": ("jarvisse", "djarvis", "jarvice"), "youtube": ("you tube", "iou tube", "youtoube"),
    "netflix": ("nette flix", "netflixe"), "firefox": ("faillefox", "fire fox"), "whatsapp": ("ouatsape", "what's app"),
    "vscode": ("vé es code",), "status": ("statu", "statusse"), "gpu": ("gé pé u",), "jazz": ("djazz", "jaze"),
    "marseille": ("marseil",), "steam": ("stime", "stim"), "blender": ("blendeur", "blindeur"),
    "twitch": ("touitch", "twitche"), "obs": ("o b s", "obésse"), "paris": ("pari",),
}
_SPLITS: dict[str, tuple[str, ...]] = {
    "minuteur": ("minute heure", "minutes heure"), "discord": ("disque corde", "dis corde"),
    "spotify": ("spoti faille",), "bitcoin": ("bit coin",), "beaucoup": ("beau coup",), "demain": ("de main",),
    "bonjour": ("bon jour",), "toujours": ("tous jours",)
}
_NUMBERS = ("zéro", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf", "dix", "onze",
            "douze", "treize", "quatorze", "quinze", "seize", "dix-sept", "dix-huit", "dix-neuf")
_TENS = {20: "vingt", 30: "trente", 40: "quarante", 50: "cinquante", 60: "soixante"}
# Grapheme -> same-sounding graphemes (inside a word; applied once, at one position).
_RESPELL: tuple[tuple[str, tuple[str, ...]], ...] = (
    (r"c(?=[aoulr])", ("k",)), (r"qu", ("k",)), (r"ç", ("ss",)), (r"y", ("i",)), (r"ph", ("f",)),
    (r"th", ("t",)), (r"(?<=[aeiou])s(?=[aeiou])", ("z",)), (r"er$", ("eur", "ère")), (r"ei", ("è",)),
    (r"rr", ("r",)), (r"ll", ("l",)), (r"tt", ("t",)), (r"ss", ("s",)), (r"é", ("è", "ai")),
)
_SILENT_ADD = (("s", r"([aeioéèln]|[^ae]u|eur|our|re)$"), ("t", r"(an|on|ain|in)$"), ("x", r"(eau|eu)$"))
_SILENT_DROP = r"(?<=[a-zéèêû])[sx]$|(?<=r)t$"
_VOWEL_START = re.compile(r"^[aeiouyéèêàâîôûh]", re.IGNORECASE)
_ELIDED = re.compile(r"^([ldjmtsnc]|qu|jusqu|lorsqu)'(.+)$", re.IGNORECASE)
_LIAISON_N = {"on", "en", "un", "mon", "ton", "son", "bien", "rien"}
_WORD = re.compile(r"^([^\w']*)([\w'’-]+?)([^\w']*)$", re.UNICODE)


@dataclass
class Variant:
    """One noisy variant of a prompt: what the results folder lists and a user may freeze into the config."""

    id: str
    source_id: str
    text: str
    rules: list[str]
    phoneme_distance: float
    source_text: str = ""


# ------------------------------------------------------------------------------------------------ rules

_Edit = Callable[[list[str], random.Random], list[str] | None]


def _strip_accents(w: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", w) if not unicodedata.combining(c))  # NFKD: ² -> 2


def _keep_case(orig: str, new: str) -> str:
    return new.upper() if orig.isupper() and len(orig) > 1 else new[0].upper() + new[1:] if orig[:1].isupper() else new


def _split_token(tok: str) -> tuple[str, str, str]:
    m = _WORD.match(tok)
    return (m.group(1), m.group(2), m.group(3)) if m else ("", tok, "")


def _word_edit(pick: Callable[[str, random.Random], list[str]]) -> _Edit:
    """A rule that rewrites one word: `pick(word, rng)` lists its candidates (lower-case), one is drawn."""

    def edit(tokens: list[str], rng: random.Random) -> list[str] | None:
        options = []
        for i, tok in enumerate(tokens):
            pre, word, post = _split_token(tok)
            for cand in pick(word.lower(), rng):
                if cand and cand != word.lower():
                    options.append((i, pre + _keep_case(word, cand) + post))
        if not options:
            return None
        i, new = rng.choice(options)
        return tokens[:i] + new.split(" ") + tokens[i + 1:]

    return edit


def _homophones(w: str, rng: random.Random) -> list[str]:
    return list(_HOMOPHONES.get(w, ()))


def _is_name(token: str, position: int) -> bool:
    """A brand, an acronym or a capitalised name past the first word: what a recogniser spells by ear.
    Everyday words it writes as it knows them (a misspelt "comment" is no recogniser's output)."""
    word = _split_token(token)[1]
    return word.lower() in _BRANDS or (len(word) > 1 and word.isupper()) or (position > 0 and word[:1].isupper())


def _respellings(w: str, rng: random.Random) -> list[str]:
    if "'" in w or len(w) < 3:
        return []
    out = []
    for pattern, subs in _RESPELL:
        for m in re.finditer(pattern, w):
            out += [w[:m.start()] + s + w[m.end():] for s in subs]
    return out


def _silent(w: str, rng: random.Random) -> list[str]:
    if "'" in w or len(w) < 4 or not w.isalpha():
        return []
    out = [w + letter for letter, when in _SILENT_ADD if re.search(when, w)]
    if re.search(_SILENT_DROP, w) and len(w) >= 5:
        out.append(w[:-1])
    return out


def _splits(w: str, rng: random.Random) -> list[str]:
    if "-" in w and not w.startswith("-"):
        return [w.replace("-", " ")]
    return list(_SPLITS.get(w, ()))


def _brands(w: str, rng: random.Random) -> list[str]:
    return list(_BRANDS.get(w, ()))


def _respell_edit(tokens: list[str], rng: random.Random) -> list[str] | None:
    """Letters by same-sounding ones, in names only (see _is_name), written in lower case."""
    options = [(i, pre + cand + post) for i, tok in enumerate(tokens) if _is_name(tok, i)
               for pre, word, post in [_split_token(tok)] for cand in _respellings(word.lower(), rng)
               if cand != word.lower()]
    if not options:
        return None
    i, new = rng.choice(options)
    return tokens[:i] + [new] + tokens[i + 1:]


def _brand_edit(tokens: list[str], rng: random.Random) -> list[str] | None:
    """A name spelt by ear is written in lower case, whatever the source's case ("MEXC" -> "mex si")."""
    options = [(i, pre + cand + post) for i, tok in enumerate(tokens) for pre, word, post in [_split_token(tok)]
               for cand in _brands(word.lower(), rng)]
    if not options:
        return None
    i, new = rng.choice(options)
    return tokens[:i] + new.split(" ") + tokens[i + 1:]


def _accents(w: str, rng: random.Random) -> list[str]:
    out = []
    if _strip_accents(w) != w:
        out.append(_strip_accents(w))
    if "'" in w:
        out.append(w.replace("'", " "))
    return out


def _number_words(n: int) -> str | None:
    if n < 20:
        return _NUMBERS[n]
    if n < 70 and n // 10 * 10 in _TENS:
        tens, unit = _TENS[n // 10 * 10], n % 10
        return tens if unit == 0 else f"{tens} et un" if unit == 1 else f"{tens}-{_NUMBERS[unit]}"
    return None


def _numbers(w: str, rng: random.Random) -> list[str]:
    if re.fullmatch(r"[0-9]{1,2}", w):  # not str.isdigit: "²" and "③" are digits to it
        words = _number_words(int(w))
        return [words] if words else []
    if w in _NUMBERS[2:] or w in _TENS.values():
        return [str(_NUMBERS.index(w) if w in _NUMBERS else next(k for k, v in _TENS.items() if v == w))]
    return []


def _elision(tokens: list[str], rng: random.Random) -> list[str] | None:
    options: list[list[str]] = []
    for i, tok in enumerate(tokens):
        pre, word, post = _split_token(tok)
        m = _ELIDED.match(word)
        if m:
            head, rest = m.group(1), m.group(2)
            if head.lower() == "l":  # the article read as a whole word: "le écran"
                options.append(tokens[:i] + [pre + _keep_case(head, "le"), rest + post] + tokens[i + 1:])
            options.append(tokens[:i] + [pre + head + rest + post] + tokens[i + 1:])  # glued: lécran
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if word.lower() in _LIAISON_N and _VOWEL_START.match(nxt) and not post:
            options.append(tokens[:i + 1] + ["n'" + nxt] + tokens[i + 2:])
    return rng.choice(options) if options else None


_EDITS: dict[str, _Edit] = {
    "homophone": _word_edit(_homophones), "respelling": _respell_edit,
    "silent_letter": _word_edit(_silent), "split": _word_edit(_splits), "elision": _elision,
    "number": _word_edit(_numbers), "accents": _word_edit(_accents), "brand": _brand_edit,
}
#: How often each rule is drawn (brands and homophones are the errors recognisers make most).
_WEIGHTS = {"homophone": 4, "respelling": 2, "silent_letter": 3, "split": 2, "elision": 2, "number": 2,
            "accents": 1, "brand": 4}


# ------------------------------------------------------------------------------------------- generator


def _rng(seed: int, prompt_id: str, k: int, attempt: int) -> random.Random:
    digest = hashlib.sha256(f"{seed}\0{prompt_id}\0{k}\0{attempt}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _candidate(text: str, rng: random.Random) -> tuple[str, list[str]] | None:
    tokens = text.split()
    if not tokens:
        return None
    wanted = rng.choices((1, 2, 3), weights=(4, 4, 2))[0]
    wanted = min(wanted, max(1, len(tokens) // 2 + 1))
    used: list[str] = []
    for _ in range(8):
        if len(used) == wanted:
            break
        rule = rng.choices(RULES, weights=[_WEIGHTS[r] for r in RULES])[0]
        if rule in used:
            continue
        new = _EDITS[rule](tokens, rng)
        if new is not None and new != tokens:
            tokens, used = new, [*used, rule]
    if not used:
        return None
    return " ".join(tokens), used


def _key(text: str) -> str:
    return " ".join(text.lower().split())


def variants(prompt_id: str, text: str, n: int, seed: int) -> list[Variant]:
    """Up to `n` distinct noisy variants of `text`, each within MAX_PHONEME_DISTANCE of it (deterministic).
    A text longer than phonemes.MAX_CHARS is no spoken command: it gets none."""
    out: list[Variant] = []
    if not text.strip() or len(text) > phonemes.MAX_CHARS:
        return out
    seen = {_key(text)}
    attempt = 0
    while len(out) < n and attempt < ATTEMPTS * n:
        rng = _rng(seed, prompt_id, len(out), attempt)
        attempt += 1
        cand = _candidate(text, rng)
        if cand is None or _key(cand[0]) in seen:
            continue
        d = phonemes.distance(text, cand[0])
        if d > MAX_PHONEME_DISTANCE:
            continue
        seen.add(_key(cand[0]))
        out.append(Variant(id=f"{prompt_id}.noisy{len(out) + 1}", source_id=prompt_id, text=cand[0],
                           rules=sorted(set(cand[1]), key=RULES.index), phoneme_distance=round(d, 4),
                           source_text=text))
    return out


def generate(prompts: Sequence[PromptSpec], n: int, seed: int) -> list[Variant]:
    """Noisy variants of every prompt with an expected tool, in prompt order. A variant's id is
    "<source id>.noisy<k>"; where a prompt already holds that id (a variant frozen into the config), the
    next free k is taken, so a generated id never names another prompt."""
    out: list[Variant] = []
    taken = {p.id for p in prompts}
    for p in prompts:
        if p.expected_tool is not None and n > 0:
            for v in variants(p.id, p.prompt, n, seed):
                k = int(v.id.rsplit(".noisy", 1)[1])
                while v.id in taken:
                    k += 1
                    v.id = f"{p.id}.noisy{k}"
                taken.add(v.id)
                out.append(v)
    return out


def spec(text: str, variant_id: str, source: PromptSpec) -> PromptSpec:
    """The prompt a noisy variant is judged as: its source's expected tool, arguments, keywords, reference and
    expected correction, with the variant's text. A source that already carries a recognition error keeps
    its expected_correction (the clean command); the others get none, so that a variant's relevance is made
    of the same parts as its source's and the two compare."""
    return source.model_copy(update={"id": variant_id, "prompt": text})


def specs(variants_: Sequence[Variant], prompts: Sequence[PromptSpec]) -> list[PromptSpec]:
    by_id = {p.id: p for p in prompts}
    return [spec(v.text, v.id, by_id[v.source_id]) for v in variants_]


def listing(variants_: Sequence[Variant], prompts: Sequence[PromptSpec]) -> list[dict[str, Any]]:
    """The variants as the results folder lists them: each a prompt in the config's own format (ready to be
    frozen into `prompts`), plus `noise`: its source, the rules that made it and its phoneme distance."""
    out = []
    for v, p in zip(variants_, specs(variants_, prompts)):
        entry = p.model_dump(mode="json", exclude_defaults=True)
        entry["noise"] = {"source_id": v.source_id, "source": v.source_text, "rules": v.rules,
                          "phoneme_distance": v.phoneme_distance}
        out.append(entry)
    return out
