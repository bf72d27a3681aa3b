from __future__ import annotations

import pytest

from jarvis_bench.text import fold, normalize, overlaps, strip_thinking


@pytest.mark.parametrize(
    "raw, answer, removed",
    [
        ("Je monte le son.", "Je monte le son.", 0),
        ("<think>l'utilisateur veut du son</think>Je monte le son.", "Je monte le son.", 40),
        ("<think>\n\n</think>\n\nJe monte le son.", "Je monte le son.", 17),
        ("<think>réflexion sans fin", "", 25),
        ("raisonnement ouvert par le template</think>Réponse", "Réponse", 43),
        ("A <think>x</think> B <think>y</think> C", "A  B  C", 32),
        # the other models' reasoning blocks (text.REASONING_BLOCKS)
        ("[THINK]appeler mute_tool ? [TOOL_CALLS]mute_tool{}[/THINK]Je baisse.", "Je baisse.", 58),
        ("le template a ouvert… puis[/THINK] Voilà", "Voilà", 34),
        ("[THINK]toujours en train de réfléchir", "", 37),
        ("<seed:think>monter</seed:think>OK", "OK", 31),
        ("\u25c1think\u25b7trop fort\u25c1/think\u25b7Je baisse.", "Je baisse.", 24),
        ("<|channel|>analysis<|message|>pas d'outil<|end|>Avec plaisir", "Avec plaisir", 48),
        ("Avec plaisir<|end|>", "Avec plaisir<|end|>", 0),  # <|end|> ends any gpt-oss message: not a stray close
        ("<think>a</think>[THINK]b[/THINK]c", "c", 32),
    ],
)
def test_strip_thinking(raw, answer, removed):
    assert strip_thinking(raw) == (answer, removed)


def test_fold_and_normalize_french():
    assert fold("Écran VERROUILLÉ, cœur") == "ecran verrouille, coeur"
    assert normalize("  Quelle est   la MÉTÉO à Lyon ?! ") == "quelle est la meteo a lyon"


def test_overlaps_exact_contained_and_fuzzy():
    bench = ["ouvre chrome", "monte le son"]
    assert overlaps("Ouvre Chrome !", bench)
    assert overlaps("dis jarvis, monte le son", bench)
    assert overlaps("ouvre chrom", bench)  # near-copy
    assert not overlaps("lance firefox", bench)


def test_atomic_write_leaves_an_ordinary_file(tmp_path):
    import os
    import stat

    from jarvis_bench.fsutil import atomic_write_text

    atomic_write_text(tmp_path / "r.txt", "ok")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "r.txt").stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["r.txt"]


def test_atomic_write_never_leaves_a_partial_file(tmp_path):
    """A writer that dies half-way leaves the previous file untouched and no temporary file behind."""
    import pytest

    from jarvis_bench.fsutil import atomic_path, atomic_write_text

    dest = tmp_path / "benchmark_results.json"
    atomic_write_text(dest, '{"complete": true}')
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_text('{"compl', encoding="utf-8")
            raise RuntimeError("disk full")
    assert dest.read_text(encoding="utf-8") == '{"complete": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["benchmark_results.json"]
