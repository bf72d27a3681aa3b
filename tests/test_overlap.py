"""Training-data overlap (jarvis_bench/overlap.py): the training formats read with their line numbers, bad
files reported by file and line, and the seen verdict on the demo data and on injected benchmark prompts."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from jarvis_bench.config import load
from jarvis_bench.errors import ConfigError
from jarvis_bench.overlap import COSINE_SEEN, FUZZY_SEEN, MATCH_CHARS, TrainingPrompt, nearest, read_training

ROOT = Path(__file__).resolve().parent.parent
DEMO_TRAIN = ROOT / "demo" / "train_data.jsonl"


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


def jsonl(*records) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def got(prompts: list[TrainingPrompt]) -> list[tuple[str, int]]:
    return [(p.text, p.line) for p in prompts]


@pytest.fixture(scope="module")
def bench() -> list[tuple[str, str]]:
    return [(p.id, p.prompt) for p in load(ROOT / "benchmark_config.json").prompts]


@pytest.fixture(scope="module")
def embedder():
    from jarvis_bench.scoring import DEFAULT_EMBEDDER, Embedder

    emb = Embedder(DEFAULT_EMBEDDER)
    yield emb
    emb.close()


# ----------------------------------------------------------------------------- formats


def test_jsonl_prompt_completion_with_bom_crlf_and_blank_lines(tmp_path):
    text = ("\ufeff" + json.dumps({"prompt": "ouvre blender", "response": "J'ouvre Blender."}) + "\r\n\r\n"
            + json.dumps({"prompt": "ferme vs code", "completion": "Je ferme VS Code."}) + "\r\n"
            + "   \n" + json.dumps({"prompt": "ligne\u2028séparée", "completion": "ok"}, ensure_ascii=False))
    path = write(tmp_path / "train.jsonl", text)
    prompts = read_training([path])
    assert got(prompts) == [("ouvre blender", 1), ("ferme vs code", 3), ("ligne\u2028séparée", 5)]
    assert {p.file for p in prompts} == {str(path)}
    assert prompts[0].where == f"{path}:1"


def test_alpaca_instruction_and_input(tmp_path):
    path = write(tmp_path / "alpaca.jsonl", jsonl(
        {"instruction": "Traduis en anglais", "input": "bonjour", "output": "hello"},
        {"instruction": "Ouvre Chrome", "input": "", "output": "J'ouvre Chrome."},
        {"instruction": "Coupe le son", "output": "Je coupe le son."},
    ))
    assert got(read_training([path])) == [("Traduis en anglais\nbonjour", 1), ("Ouvre Chrome", 2), ("Coupe le son", 3)]


def test_openai_chat_every_user_turn_and_content_parts(tmp_path):
    chat = {"messages": [
        {"role": "system", "content": "Tu es JARVIS."},
        {"role": "user", "content": "ouvre chrome"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]},
        {"role": "user", "content": [{"type": "text", "text": "et monte"}, {"type": "image_url", "image_url": {}},
                                     {"type": "text", "text": "le son"}]},
        {"role": "assistant", "content": "C'est fait."},
    ]}
    path = write(tmp_path / "chat.jsonl", jsonl({"messages": [{"role": "user", "content": "salut"}]}, chat))
    assert got(read_training([path])) == [("salut", 1), ("ouvre chrome", 2), ("et monte\nle son", 2)]


def test_sharegpt_human_and_user_turns(tmp_path):
    path = write(tmp_path / "sharegpt.jsonl", jsonl(
        {"conversations": [{"from": "system", "value": "Tu es JARVIS."}, {"from": "human", "value": "météo à Brest"},
                           {"from": "gpt", "value": "Voici."}, {"from": "user", "value": "et demain ?"}]},
        {"conversations": [{"role": "user", "content": "verrouille le pc"}]},
    ))
    assert got(read_training([path])) == [("météo à Brest", 1), ("et demain ?", 1), ("verrouille le pc", 2)]


def test_conversational_prompt_list(tmp_path):
    path = write(tmp_path / "trl.jsonl", jsonl(
        {"prompt": [{"role": "system", "content": "x"}, {"role": "user", "content": "scan mexc"}],
         "completion": [{"role": "assistant", "content": "ok"}]}))
    assert got(read_training([path])) == [("scan mexc", 1)]


def test_json_pretty_printed_list_lines_are_the_opening_braces(tmp_path):
    records = [{"prompt": "un", "response": "1"}, {"instruction": "deux", "input": "", "output": "2"},
               {"messages": [{"role": "user", "content": "trois"}, {"role": "user", "content": "quatre"}]}]
    path = write(tmp_path / "train.json", "\ufeff" + json.dumps(records, indent=2, ensure_ascii=False).replace("\n", "\r\n"))
    lines = path.read_bytes().decode("utf-8-sig").split("\r\n")
    braces = [n for n, line in enumerate(lines, 1) if line == "  {"]
    assert got(read_training([path])) == [("un", braces[0]), ("deux", braces[1]), ("trois", braces[2]),
                                          ("quatre", braces[2])]
    assert braces == [2, 6, 11]


def test_json_one_line_list_and_wrappers(tmp_path):
    records = [{"prompt": "un"}, {"prompt": "deux"}]
    one_line = write(tmp_path / "one.json", json.dumps(records))
    assert got(read_training([one_line])) == [("un", 1), ("deux", 1)]
    wrapped = write(tmp_path / "wrapped.json", json.dumps({"version": 2, "name": "jarvis", "data": records}, indent=1))
    assert got(read_training([wrapped])) == [("un", 5), ("deux", 8)]
    single = write(tmp_path / "single.json", '\n\n{"messages": [{"role": "user", "content": "seul"}]}\n')
    assert got(read_training([single])) == [("seul", 3)]
    lines_named_json = write(tmp_path / "lines.json", jsonl(*records))
    assert got(read_training([lines_named_json])) == [("un", 1), ("deux", 2)]
    empty_list_then_file = write(tmp_path / "b.jsonl", jsonl({"prompt": "trois"}))
    assert [p.file for p in read_training([one_line, empty_list_then_file])] == [str(one_line)] * 2 + [
        str(empty_list_then_file)]


def test_empty_prompts_are_skipped(tmp_path):
    path = write(tmp_path / "t.jsonl", jsonl({"prompt": "  "}, {"messages": [{"role": "user", "content": ""}]},
                                             {"prompt": "ouvre steam"}))
    assert got(read_training([path])) == [("ouvre steam", 3)]


# ----------------------------------------------------------------------------- bad files


def error(paths) -> str:
    with pytest.raises(ConfigError) as exc:
        read_training(paths)
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_missing_file_and_folder(tmp_path):
    missing = tmp_path / "nope.jsonl"
    assert error([missing]).startswith(f"{missing}: training file not found")
    assert error([tmp_path]).startswith(f"{tmp_path}: is a folder")


def test_invalid_json_line_names_line_and_column(tmp_path):
    path = write(tmp_path / "t.jsonl", jsonl({"prompt": "a"}) + '{"prompt": "b",}\n')
    message = error([path])
    assert message.startswith(f"{path}:2:16: invalid JSON")
    pretty = write(tmp_path / "pretty.jsonl", json.dumps([{"prompt": "a"}], indent=2))
    assert error([pretty]).startswith(f"{pretty}:1:2: invalid JSON") and "give the file a .json name" in error([pretty])
    broken = write(tmp_path / "broken.json", '[\n  {"prompt": "a"},\n  {"prompt": "b"}\n  {"prompt": "c"}\n]')
    assert error([broken]).startswith(f"{broken}:4:3: invalid JSON: Expecting ',' delimiter;")
    inner = write(tmp_path / "inner.json", '[\n  {"prompt": "a"},\n  {"prompt": "b" "x"}\n]')
    assert error([inner]).startswith(f"{inner}:3:18: invalid JSON")
    objects = write(tmp_path / "objects.json", '{\n "prompt": "a"\n}\n{\n "prompt": "b"\n}\n')
    assert error([objects]).startswith(f"{objects}:4:1: invalid JSON: Extra data")


def test_unknown_record_names_keys_and_formats(tmp_path):
    path = write(tmp_path / "t.jsonl", jsonl({"prompt": "ok"}, {"text": "<s>[INST] x [/INST]", "x" * 1_000_000: 1}))
    message = error([path])
    assert message.startswith(f'{path}:2: a record with keys "text", "xxxx')
    assert "no known training format" in message and '"messages"' in message and '"conversations"' in message
    assert "instruction" in message and "completion" in message
    assert len(message) < 600


def test_record_not_an_object_and_bad_fields(tmp_path):
    path = write(tmp_path / "t.jsonl", jsonl({"prompt": "ok"}, ["a", "b"]))
    assert error([path]).startswith(f"{path}:2: a record is a list, not a JSON object")
    path = write(tmp_path / "u.jsonl", jsonl({"prompt": 3}))
    assert error([path]).startswith(f'{path}:1: "prompt" is a number; make it a string')
    path = write(tmp_path / "v.jsonl", "\n" + jsonl({"messages": [{"role": "user", "content": 5}]}))
    assert error([path]).startswith(f'{path}:2: "messages"[0].content is a number')
    path = write(tmp_path / "w.jsonl", jsonl({"conversations": [{"value": "hi"}]}))
    assert error([path]).startswith(f'{path}:1: "conversations"[0] has no "role"')


def test_empty_file_and_file_without_prompt(tmp_path):
    empty = write(tmp_path / "empty.jsonl", "\n  \n")
    assert error([empty]).startswith(f"{empty}: the file holds no training record")
    empty_json = write(tmp_path / "empty.json", "")
    assert error([empty_json]).startswith(f"{empty_json}: the file holds no training record")
    empty_list = write(tmp_path / "list.json", "[]")
    assert error([empty_list]).startswith(f"{empty_list}: the file holds no training record")
    no_user = write(tmp_path / "nouser.jsonl", "\n" + jsonl({"messages": [{"role": "assistant", "content": "x"}]}))
    assert error([no_user]).startswith(f"{no_user}:2: none of its 1 records has a user prompt")


@pytest.mark.parametrize("document, what", [
    ('"juste du texte"', "a string"),
    ("\n42", "a number"),
    ('{"train": [], "test": []}', "an object with 2 list fields (train, test)"),
    ('{"name": "x"}', "an object with no list field and no known record keys"),
])
def test_wrong_top_level_type(tmp_path, document, what):
    path = write(tmp_path / "t.json", document)
    line = 2 if document.startswith("\n") else 1
    assert error([path]).startswith(f"{path}:{line}: the JSON document is {what}; a .json training file must hold")


def test_not_utf8_names_the_line(tmp_path):
    path = write(tmp_path / "t.jsonl", jsonl({"prompt": "ok"}).encode() + '{"prompt": "caf\xe9"}\n'.encode("latin-1"))
    assert error([path]).startswith(f"{path}:2:16: not UTF-8 text (byte 0xe9); save the file as UTF-8")
    path = write(tmp_path / "t.json", b'[\n{"prompt": "\xff"}]')
    assert error([path]).startswith(f"{path}:2:")


# ----------------------------------------------------------------------------- matching


def test_nearest_without_embedder(tmp_path):
    path = write(tmp_path / "t.jsonl", jsonl({"prompt": "ferme chrome"}, {"prompt": "Ouvre Chrome !"},
                                             {"prompt": "ouvre chrome"}, {"prompt": "lance un minuteur de 10 minutes"}))
    training = read_training([path])
    rows = nearest([("a", "ouvre chrome"), ("b", "lance un minuteur de 5 minutes"), ("c", "météo à Paris"),
                    ("d", "?!")], training, None)
    assert [r["id"] for r in rows] == ["a", "b", "c", "d"]
    a, b, c, d = rows
    assert a["exact"] and a["seen_by"] == ["exact", "fuzzy"] and a["fuzzy"] == 100.0
    assert a["nearest_where"] == a["fuzzy_where"] == f"{path}:2" and a["nearest_text"] == "Ouvre Chrome !"
    assert a["cosine"] is None and a["cosine_text"] is None and a["cosine_where"] is None
    assert not b["exact"] and b["seen_by"] == ["fuzzy"] and b["fuzzy"] >= FUZZY_SEEN
    assert b["nearest_where"] == f"{path}:4" and b["nearest_text"] == "lance un minuteur de 10 minutes"
    assert not c["seen"] and c["seen_by"] == [] and c["fuzzy"] < FUZZY_SEEN
    assert c["nearest_text"] == c["fuzzy_text"] and c["nearest_where"] == c["fuzzy_where"]
    assert d == {**d, "exact": False, "fuzzy": 0.0, "seen": False, "nearest_text": None}


@pytest.mark.slow  # the embedder: torch and the model load (~9 s)
def test_demo_training_data_leaves_every_benchmark_prompt_unseen(bench, embedder):
    rows = nearest(bench, read_training([DEMO_TRAIN]), embedder)
    assert len(rows) == 30 and [r["id"] for r in rows] == [i for i, _ in bench]
    assert [r["id"] for r in rows if r["seen"]] == []
    # the calibration numbers of the module docstring
    assert max(r["fuzzy"] for r in rows) == 86.7 < FUZZY_SEEN
    assert max(r["cosine"] for r in rows) == pytest.approx(0.8369, abs=0.002)
    assert max(r["cosine"] for r in rows) < COSINE_SEEN - 0.01
    worst = max(rows, key=lambda r: r["cosine"])
    assert worst["id"] == "rt-10" and worst["cosine_text"] == "la carte graphique est occupée ?"


@pytest.mark.slow
@pytest.mark.parametrize("paraphrase, target, seen_by", [
    ("préviens-moi dans 30 minutes pour sortir le gâteau", "rt-09", ["fuzzy", "cosine"]),  # a number
    ("comment se porte le dogecoin en ce moment ?", "rt-05", ["fuzzy"]),  # another crypto
    ("prends une capture d'écran", "cmd-06", ["cosine"]),  # a synonym, in a four-word prompt
])
def test_injected_benchmark_prompts_are_exactly_the_seen_ones(tmp_path, bench, embedder, paraphrase, target, seen_by):
    injected = write(tmp_path / "injected.jsonl", jsonl(
        {"prompt": "ouvre la calculatrice", "response": "..."},
        {"messages": [{"role": "user", "content": "est-ce que toutes les machines du cluster répondent ?"},
                      {"role": "assistant", "content": "..."}]},  # verbatim (rt-04)
        {"instruction": "MERCI Jarvis... Ce sera tout !", "input": "", "output": "..."},  # re-cased (cmd-10)
        {"conversations": [{"from": "human", "value": paraphrase}, {"from": "gpt", "value": "..."}]},
        {"prompt": "est-ce que toutes les machines du cluster répondent ?"},  # a duplicate: the first place counts
    ))
    rows = {r["id"]: r for r in nearest(bench, read_training([DEMO_TRAIN, injected]), embedder)}
    assert sorted(i for i, r in rows.items() if r["seen"]) == sorted(["rt-04", "cmd-10", target])
    verbatim, recased, para = rows["rt-04"], rows["cmd-10"], rows[target]
    assert verbatim["exact"] and verbatim["nearest_where"] == f"{injected}:2"
    assert verbatim["seen_by"] == ["exact", "fuzzy", "cosine"] and verbatim["cosine"] == pytest.approx(1.0)
    assert recased["exact"] and recased["nearest_where"] == f"{injected}:3"
    assert recased["nearest_text"] == "MERCI Jarvis... Ce sera tout !"
    assert not para["exact"] and para["seen_by"] == seen_by
    assert para["nearest_where"] == f"{injected}:4" and para["nearest_text"] == paraphrase


def test_large_training_set_is_linear(tmp_path):
    """50,000 prompts, a few of them megabytes long, read and matched without the embedder in seconds."""
    huge = "monte le son " * 80_000  # ~1 MB
    rows = [{"prompt": f"ouvre l'application numéro {i}", "completion": "ok"} for i in range(50_000)]
    for i in range(0, 50_000, 10_000):
        rows[i] = {"prompt": huge + str(i), "completion": "x" * 1_000_000}
    rows[-1] = {"messages": [{"role": "user", "content": "x" * 3_000_000}]}
    path = write(tmp_path / "big.jsonl", jsonl(*rows))
    start = time.monotonic()
    training = read_training([path])
    prompts = [(f"p{i}", f"ouvre l'application numéro {i} stp") for i in range(30)] + [("son", huge)]
    result = nearest(prompts, training, None)
    elapsed = time.monotonic() - start
    assert len(training) == 50_000 and training[10_000].line == 10_001
    assert [r["seen"] for r in result] == [True] * 31
    assert len(result[-1]["nearest_text"]) == MATCH_CHARS and result[-1]["exact"]
    assert elapsed < 20, f"took {elapsed:.1f} s"
