"""Noisy-speech variants: French phonemes, the generator's guarantees, the hand-labelled sample, and the
variants answered, scored and reported beside the clean prompts (never in the verdict)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from jarvis_bench import config, noisy, phonemes, robustness
from jarvis_bench.commands import analyze, benchmark
from jarvis_bench.fsutil import read_jsonl
from tests.conftest import CONFIG, write_config

LABELS = Path(__file__).resolve().parent / "data" / "noisy_labels.jsonl"


@pytest.fixture(scope="module")
def prompts():
    return config.load(CONFIG).prompts


# ------------------------------------------------------------------------------------------- phonemes


def test_french_phonemes_come_from_espeak():
    assert phonemes.ipa("verrouille l'écran") == "vɛʁujlekʁɑ̃"
    assert phonemes.ipa("Monte le son !") == phonemes.ipa("monte le son")  # case and punctuation are not heard


def test_homophones_are_at_distance_zero_and_other_commands_are_far():
    assert phonemes.distance("monte le son", "monte le sont") == 0
    assert phonemes.distance("lance un minuteur de 5 minutes", "lance un minuteur de cinq minutes") == 0
    assert phonemes.distance("verrouille l'écran", "verrouille lécran") == 0
    # a different command is never "the same sentence misheard"
    for a, b in [("ouvre chrome", "ferme chrome"), ("monte le son", "baisse le son"), ("coupe le son", "ouvre discord")]:
        assert phonemes.distance(a, b) > noisy.MAX_PHONEME_DISTANCE, (a, b)


def test_the_configs_own_misrecognitions_are_within_the_bound(prompts):
    """The threshold is documented from the hand-written corrections prompts: each is within it."""
    pairs = [(p.expected_correction, p.prompt) for p in prompts if p.expected_correction]
    assert len(pairs) == 10
    assert all(phonemes.distance(a, b) <= noisy.MAX_PHONEME_DISTANCE for a, b in pairs)


# ------------------------------------------------------------------------------------------ generator


@pytest.mark.parametrize("seed", [1234, 7, 2026])
def test_every_variant_sounds_like_its_source(prompts, seed):
    variants = noisy.generate(prompts, 6, seed)
    with_tool = [p for p in prompts if p.expected_tool]
    assert {v.source_id for v in variants} == {p.id for p in with_tool}  # every prompt with a tool, only those
    assert len(variants) >= 4 * len(with_tool)
    by_id = {p.id: p for p in prompts}
    for v in variants:
        src = by_id[v.source_id].prompt
        d = phonemes.distance(src, v.text)
        assert d <= noisy.MAX_PHONEME_DISTANCE, (src, v.text, d)
        assert v.phoneme_distance == round(d, 4)
        assert v.text != src and v.rules and set(v.rules) <= set(noisy.RULES)
        assert re.fullmatch(r"[A-Za-z0-9_.\-]+", v.id)
    keys = [(v.source_id, " ".join(v.text.lower().split())) for v in variants]
    assert len(keys) == len(set(keys))  # no two variants of one prompt are the same text


def test_the_same_seed_gives_the_same_variants_and_another_seed_others(prompts):
    a, b, c = (noisy.generate(prompts, 4, s) for s in (1234, 1234, 99))
    assert [(v.id, v.text, v.rules) for v in a] == [(v.id, v.text, v.rules) for v in b]
    assert [v.text for v in a] != [v.text for v in c]


def test_every_rule_is_used(prompts):
    used = {r for seed in (1234, 7) for v in noisy.generate(prompts, 6, seed) for r in v.rules}
    assert used == set(noisy.RULES)


def test_rules_do_what_they_say():
    import random

    rng = random.Random(0)
    assert noisy._homophones("son", rng) == ["sont"]
    assert noisy._numbers("5", rng) == ["cinq"] and noisy._numbers("vingt", rng) == ["20"]
    assert noisy._numbers("45", rng) == ["quarante-cinq"]
    assert "minute heure" in noisy._splits("minuteur", rng) and noisy._splits("mets-moi", rng) == ["mets moi"]
    assert noisy._accents("météo", rng) == ["meteo"]
    assert noisy._brand_edit(["scan", "MEXC"], rng)[0] == "scan"  # the name, in lower case, spelt by ear
    assert {"lécran", "le"} & set(noisy._elision(["verrouille", "l'écran"], rng))
    assert noisy._numbers("²", rng) == [] and noisy._accents("1²", rng) == []  # digits to str.isdigit, not to us
    assert all("²" in v.text for v in noisy.variants("p", "règle sur 1²", 3, 42))


def test_a_generated_id_never_names_another_prompt(prompts):
    frozen = prompts[0].model_copy(update={"id": f"{prompts[0].id}.noisy1", "prompt": "ouvre crom"})
    made = noisy.generate([prompts[0], frozen], 2, 1234)
    ids = [v.id for v in made if v.source_id == prompts[0].id]
    assert ids == [f"{prompts[0].id}.noisy2", f"{prompts[0].id}.noisy3"]  # .noisy1 is the frozen prompt's
    assert len({v.id for v in made}) == len(made)


def test_a_long_or_empty_prompt_is_bounded():
    assert noisy.variants("x", "", 4, 1) == []
    t0 = time.perf_counter()
    assert noisy.variants("x", "ouvre chrome " * 300_000, 4, 1) == []  # 3.9 MB: not a spoken command
    assert time.perf_counter() - t0 < 5


def test_the_listing_freezes_into_the_config(prompts, config_data, tmp_path):
    variants = noisy.generate(prompts, 2, 1234)
    listing = noisy.listing(variants, prompts)
    assert listing[0]["noise"]["source_id"] == variants[0].source_id and listing[0]["prompt"] == variants[0].text
    data = json.loads(json.dumps(config_data))
    data["prompts"] += [{k: v for k, v in e.items() if k != "noise"} for e in listing]
    cfg = config.load(write_config(tmp_path / "frozen.json", data))  # valid prompts, as the user would paste them
    frozen = {p.id: p for p in cfg.prompts}
    for v in variants:
        src = frozen[v.source_id]
        assert frozen[v.id].prompt == v.text
        assert (frozen[v.id].expected_tool, frozen[v.id].expected_args) == (src.expected_tool, src.expected_args)
        assert frozen[v.id].expected_correction == src.expected_correction


# ------------------------------------------------------------------------------------ hand-labelled sample


def test_the_hand_labelled_sample_is_plausible_and_still_what_the_generator_makes(prompts):
    """tests/data/noisy_labels.jsonl: variants labelled by a grader who had not read the generator ("a French
    recogniser could output this, and a French speaker would still understand it"). Labels are never edited;
    when the generator changes, this test fails until a fresh sample is labelled."""
    rows = read_jsonl(LABELS)
    assert len(rows) >= 60
    yes = sum(r["plausible"] for r in rows)
    assert yes / len(rows) >= 0.9, f"{yes}/{len(rows)} plausible"
    made = {}
    for seed, n in {(r["seed"], r["n_variants"]) for r in rows}:
        for v in noisy.generate(prompts, n, seed):
            made[(seed, v.id)] = v.text
    stale = [r["id"] for r in rows if made.get((r["seed"], r["id"])) != r["variant"]]
    assert not stale, f"the generator no longer makes {stale[:5]}: label a fresh sample"


# ------------------------------------------------------------------------------------------ statistics


def _rows(spec: list[tuple[bool, list[bool | None]]]) -> dict:
    """Results with one adapter: per source, its clean tool_correct and its variants' (None = failed)."""
    def ans(ok):
        return {"response": "x", "metrics": None if ok is None else {"tool_correct": ok, "relevance": float(ok),
                                                                      "args_score": None}}
    clean, noisy_rows = [], []
    for i, (c, vs) in enumerate(spec):
        clean.append({"id": f"s{i}", "category": "c", "prompt": "p", "variants": {"base": ans(False), "a": ans(c)}})
        noisy_rows += [{"id": f"s{i}.noisy{k}", "source_id": f"s{i}", "prompt": "q", "rules": ["homophone"],
                        "variants": {"base": ans(False), "a": ans(v)}} for k, v in enumerate(vs, 1)]
    return {"metadata": {"variants": ["base", "a"]}, "results": clean, "noisy_results": noisy_rows,
            "statistics": {"best_adapter": "a"}}


def test_the_drop_is_paired_and_inside_its_own_interval():
    # 10 short prompts with 1 variant each, lost under noise; 10 long ones with 4 variants, all kept
    data = _rows([(True, [False])] * 10 + [(True, [True] * 4)] * 10)
    rob = robustness.analyze(data, config.load(CONFIG))
    d = rob["per_variant"]["a"]["drop"]
    assert d["tool_accuracy"] == 0.2  # 10 of the 50 variants lost what their source had
    assert d["tool_accuracy_ci"][0] <= d["tool_accuracy"] <= d["tool_accuracy_ci"][1]
    assert robustness.gate(data, 0.1).startswith("best adapter a loses 0.20")


def test_failed_noisy_answers_are_no_failures_under_noise_and_one_source_has_no_interval():
    data = _rows([(True, [None, None]), (True, [False])])
    rob = robustness.analyze(data, config.load(CONFIG))
    assert rob["per_variant"]["a"]["noisy"]["answered"] == 1
    assert rob["per_variant"]["a"]["drop"]["tool_accuracy_ci"] is None  # one source answered: nothing to resample
    assert rob["comparisons"]["a"]["noisy"]["tool_accuracy"] is None
    from jarvis_bench.reports.txt import robustness_parts

    lines = " ".join(robustness_parts(data, "en")["lines"])
    assert "s1.noisy1" in lines and "s0.noisy1" not in lines


# ---------------------------------------------------------------------------------- through the pipeline


def _replay(tmp_path: Path, demo_results: dict, config_data: dict, n: int) -> tuple[Path, list]:
    """A replay file holding the demo's stored answers for the prompts and, for each noisy variant, its
    source's answer: the variants are then exactly as good as their sources."""
    cfg = config.parse(config_data)
    variants = noisy.generate(cfg.prompts, n, cfg.generation.seed)
    answers = {(r["id"], v): a["response"] for r in demo_results["results"] for v, a in r["variants"].items()}
    lines = [{"id": pid, "variant": v, "response": text} for (pid, v), text in answers.items()]
    lines += [{"id": x.id, "variant": v, "response": answers[(x.source_id, v)]} for x in variants
              for v in ("base", "jarvis-demo")]
    (tmp_path / "answers.jsonl").write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines),
                                            encoding="utf-8")
    data = json.loads(json.dumps(config_data))
    data["model"].update({"backend": "replay", "replay_file": "answers.jsonl", "adapters": []})
    return write_config(tmp_path / "cfg.json", data), variants


def test_noisy_variants_are_answered_scored_and_reported_beside_the_verdict(tmp_path, demo_results, config_data,
                                                                            capsys):
    cfg, variants = _replay(tmp_path, demo_results, config_data, 3)
    out = tmp_path / "res"
    assert benchmark.main(["--config", str(cfg), "--output-dir", str(out), "--noisy", "3"]) == 0
    data = json.loads((out / "benchmark_results.json").read_text(encoding="utf-8"))
    listed = json.loads((out / "noisy_prompts.json").read_text(encoding="utf-8"))
    assert [e["id"] for e in listed] == [v.id for v in variants]
    # the clean results and the verdict are those of the 30 prompts alone
    assert [r["id"] for r in data["results"]] == [p["id"] for p in config_data["prompts"]]
    assert data["metadata"]["n_prompts"] == 30
    assert {r["id"] for r in data["noisy_results"]} == {v.id for v in variants}
    rob = data["robustness"]
    assert rob["noisy_prompts"] == len(variants) and rob["sources"] == 29
    clean = {r["id"]: r for r in data["results"]}
    for name in ("base", "jarvis-demo"):
        # every variant got its source's answer: it calls the same tool (arguments can differ)
        for r in data["noisy_results"]:
            got = r["variants"][name]["metrics"]["tool_correct"]
            assert got == clean[r["source_id"]]["variants"][name]["metrics"]["tool_correct"], r["id"]
        pv = rob["per_variant"][name]
        assert abs(pv["drop"]["tool_accuracy"]) < 0.02  # sources weigh by their number of variants
        lo, hi = pv["noisy"]["tool_accuracy_ci"]
        assert lo <= pv["noisy"]["tool_accuracy"] <= hi
    cmp = rob["comparisons"]["jarvis-demo"]["noisy"]["tool_accuracy"]
    assert cmp["sources"] == 29 and cmp["ci_low"] < cmp["delta"] < cmp["ci_high"]
    stored = json.loads(json.dumps(demo_results["statistics"]["comparisons"]["jarvis-demo"]["verdict"]))
    assert data["statistics"]["comparisons"]["jarvis-demo"]["verdict"]["level"] == stored["level"]
    printed = capsys.readouterr().out
    assert "Robustesse (hors verdict" in printed

    assert analyze.main(["--input", str(out / "benchmark_results.json"), "--quiet", "--lang", "en"]) == 0
    report = (out / "benchmark_report.txt").read_text(encoding="utf-8")
    assert "9. ROBUSTNESS TO NOISY SPEECH (not in the verdict)" in report
    assert "CI clustered by source prompt, 29 sources" in report
    page = (out / "benchmark_report.html").read_text(encoding="utf-8")
    assert 'id="robustness"' in page and f'id="{variants[0].id}"' in page and 'id="n-rule"' in page
    assert page.count('class="noisy"') == len(variants)

    # --rescore scores the noisy rows again from their source prompts in the config: same figures
    assert analyze.main(["--input", str(out / "benchmark_results.json"), "--quiet", "--rescore"]) == 0
    again = json.loads((out / "benchmark_results.json").read_text(encoding="utf-8"))
    assert again["robustness"] == data["robustness"] and "training_overlap" not in again


@pytest.mark.slow
def test_the_robustness_gate(tmp_path, demo_results, config_data, capsys):
    cfg, _ = _replay(tmp_path, demo_results, config_data, 2)
    out = tmp_path / "res"
    assert benchmark.main(["--config", str(cfg), "--output-dir", str(out), "--noisy", "2",
                           "--fail-on-robustness-drop", "0.05", "--quiet"]) == 0  # no drop: passes
    # the adapter fails every variant: its tool accuracy falls to 0 under noise
    lines = [json.loads(x) for x in (tmp_path / "answers.jsonl").read_text(encoding="utf-8").splitlines()]
    for x in lines:
        if ".noisy" in x["id"]:
            x["response"] = "Je ne comprends pas."
    (tmp_path / "answers.jsonl").write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines),
                                            encoding="utf-8")
    assert benchmark.main(["--config", str(cfg), "--output-dir", str(out), "--noisy", "2",
                           "--fail-on-robustness-drop", "0.05", "--quiet", "--no-cache"]) == 4
    err = capsys.readouterr().err
    data = json.loads((out / "benchmark_results.json").read_text(encoding="utf-8"))
    lost = data["robustness"]["per_variant"]["jarvis-demo"]["drop"]["tool_accuracy"]
    assert lost > 0.7  # every variant whose source the adapter got right is now wrong
    assert (f"gate failed: best adapter jarvis-demo loses {lost:.2f} of tool accuracy under noise (paired per "
            "variant; 0.76 on the source prompts, 0.00 on their variants), more than the allowed 0.05") in err
    assert data["robustness"]["per_variant"]["jarvis-demo"]["noisy"]["tool_accuracy"] == 0
    assert robustness.gate(data, 0.8) is None


def test_the_robustness_gate_needs_noisy_variants(tmp_path, config_data, capsys):
    cfg = write_config(tmp_path / "cfg.json", config_data)
    assert benchmark.main(["--config", str(cfg), "--output-dir", str(tmp_path / "r"),
                           "--fail-on-robustness-drop", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "--fail-on-robustness-drop needs noisy-speech variants: add --noisy N" in err and "Traceback" not in err


@pytest.mark.parametrize("flag, value, why", [("--noisy", "-1", "out of range"), ("--noisy", "abc", "not a whole"),
                                              ("--fail-on-robustness-drop", "2", "out of range")])
def test_bad_noisy_flags_are_one_line(flag, value, why, capsys):
    with pytest.raises(SystemExit) as exc:
        benchmark.main([flag, value])
    assert exc.value.code == 2 and why in capsys.readouterr().err


def test_check_setup_says_whether_noisy_variants_and_training_files_will_work(config_data, tmp_path):
    from jarvis_bench import checks

    data = json.loads(json.dumps(config_data))
    data["robustness"] = {"variants_per_prompt": 2}
    data["training_data"] = [str(Path(__file__).resolve().parent.parent / "demo" / "train_data.jsonl"), "nope.jsonl"]
    got = checks.check_is_the_gain_real(config.load(write_config(tmp_path / "cfg.json", data)))
    assert [(c.status, c.name) for c in got] == [("OK", "noisy"), ("FAIL", "training data")]
    assert "noisy-speech variants (espeakng-loader" in got[0].detail and "nope.jsonl" in got[1].detail


def test_the_noisy_variants_filter_in_chromium(tmp_path, demo_results, config_data, chromium):
    """In a real browser: ?rule=brand shows only the variants a brand rule made, under their sources;
    ?noisy=broken only those the adapter fails while it gets their clean prompt right."""
    import subprocess
    from html.parser import HTMLParser

    cfg, _ = _replay(tmp_path, demo_results, config_data, 3)
    out = tmp_path / "res"
    lines = [json.loads(x) for x in (tmp_path / "answers.jsonl").read_text(encoding="utf-8").splitlines()]
    for x in lines:  # the adapter fails every variant
        if ".noisy" in x["id"] and x["variant"] == "jarvis-demo":
            x["response"] = "Pardon ?"
    (tmp_path / "answers.jsonl").write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines),
                                            encoding="utf-8")
    assert benchmark.main(["--config", str(cfg), "--output-dir", str(out), "--noisy", "3", "--quiet"]) == 0
    assert analyze.main(["--input", str(out / "benchmark_results.json"), "--quiet"]) == 0
    data = json.loads((out / "benchmark_results.json").read_text(encoding="utf-8"))
    page = (out / "benchmark_report.html").as_uri()

    class Noisy(HTMLParser):
        def __init__(self):
            super().__init__()
            self.rows: dict[str, bool] = {}

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "tr" and a.get("class") in ("noisy", "source"):
                self.rows[a.get("id") or "src:" + a["data-source"]] = "hidden" not in a

    def visible(query: str) -> set[str]:
        done = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page + query],
                              capture_output=True, text=True, timeout=120)
        parser = Noisy()
        parser.feed(done.stdout)
        assert parser.rows, done.stderr[-2000:]
        return {k for k, v in parser.rows.items() if v}

    brand = {r["id"] for r in data["noisy_results"] if "brand" in r["rules"]}
    shown = visible("?rule=brand")
    assert {k for k in shown if not k.startswith("src:")} == brand and brand
    assert {k[4:] for k in shown if k.startswith("src:")} == {r["source_id"] for r in data["noisy_results"]
                                                               if r["id"] in brand}
    clean_ok = {r["id"] for r in data["results"] if r["variants"]["jarvis-demo"]["metrics"]["tool_correct"]}
    broken = {r["id"] for r in data["noisy_results"] if r["source_id"] in clean_ok}
    assert {k for k in visible("?noisy=broken") if not k.startswith("src:")} == broken
    assert len({k for k in visible("") if not k.startswith("src:")}) == len(data["noisy_results"])
