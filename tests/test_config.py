from __future__ import annotations

import copy
import json

import pytest

from jarvis_bench import config
from jarvis_bench.errors import ConfigError

from .conftest import CONFIG, write_config


def test_shipped_config_is_valid_and_covers_the_seed():
    cfg = config.load(CONFIG)
    assert len(cfg.prompts) == 30
    assert cfg.categories == ["commandes_vocales", "corrections_vocales", "tool_routing"]
    assert all(sum(p.category == c for p in cfg.prompts) == 10 for c in cfg.categories)
    assert len(cfg.tools) >= 12
    by_prompt = {p.prompt: p for p in cfg.prompts}
    assert "ouvre chrome" in by_prompt and "status cluster" in by_prompt and "scan MEXC" in by_prompt
    assert by_prompt["ouvres crom"].expected_correction == "ouvre chrome"
    assert by_prompt["monte le son"].expected_tool == "volume_up_tool"
    assert cfg.model.base == "Qwen/Qwen3-30B-A3B" and cfg.model.quantization == "4bit"
    assert cfg.generation.max_new_tokens == 128 and cfg.generation.enable_thinking is False
    assert all(p.reference for p in cfg.prompts)
    assert {"open_app_tool", "cluster_status_tool", "mexc_scan_tool", "volume_up_tool", "volume_down_tool",
            "mute_tool"} <= {t.name for t in cfg.tools}


def _mutate(data, path, value):
    node = data
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data


_DELETE = object()

BAD = [
    # (id, mutation path, value, fragments the one-line message must contain)
    ("unknown-top-key", ("modle",), {}, ['unknown key modle', 'did you mean "model"']),
    ("unknown-nested-key", ("generation", "max_new_token"), 64, ["generation.max_new_token", '"max_new_tokens"']),
    ("wrong-type", ("generation", "max_new_tokens"), "lots", ["generation.max_new_tokens", '"lots"', "integer"]),
    ("out-of-range", ("generation", "max_new_tokens"), 0, ["generation.max_new_tokens", "greater than or equal to 1"]),
    ("bad-quantization", ("model", "quantization"), "3bit", ["model.quantization", "3bit", "4bit"]),
    ("bad-batch-size", ("generation", "batch_size"), "big", ["generation.batch_size", "big"]),
    ("empty-prompts", ("prompts",), [], ["prompts", "at least 1"]),
    ("empty-tools", ("tools",), [], ["tools", "at least 1"]),
    ("missing-prompt-text", ("prompts", 2, "prompt"), _DELETE, ['prompts[2] (id "cmd-03").prompt', "missing"]),
    ("unknown-prompt-key", ("prompts", 0, "keyword"), ["x"], ['prompts[0] (id "cmd-01").keyword', '"keywords"']),
    ("duplicate-id", ("prompts", 1, "id"), "cmd-01", ['prompts[1] (id "cmd-01")', "duplicate id", "prompts[0]"]),
    ("unknown-tool", ("prompts", 20, "expected_tool"), "volume_up", ['"volume_up"', "not in the tool catalog",
                                                                     'did you mean "volume_up_tool"']),
    ("bad-arg-name", ("prompts", 0, "expected_args"), {"application": "chrome"}, ["application", "open_app_tool"]),
    ("correction-missing", ("prompts", 10, "expected_correction"), _DELETE, ["expected_correction", "corrections_vocales"]),
    ("blank-keyword", ("prompts", 0, "keywords"), ["chrome", " "], ["keywords", "empty"]),
    ("star-inside-keyword", ("prompts", 7, "keywords"), ["verr*ouille"], ["keywords", '"verr*ouille"', "stem"]),
    ("bare-star-keyword", ("prompts", 7, "keywords"), ["*"], ["keywords", "stem"]),
    ("bad-tool-credit", ("scoring", "tool_credit"), "mentions", ["scoring.tool_credit", "calls_or_mentions"]),
    ("bad-extra-args", ("scoring", "extra_args"), "ignore", ["scoring.extra_args", "penalize"]),
    ("bad-tool-name", ("tools", 0, "name"), "open app", ['tools[0]', "open app", "pattern"]),
    ("bad-weights", ("scoring", "relevance_weights"), {"tool": 0, "args": 0, "keywords": 0, "correction": 0},
     ["scoring.relevance_weights", "at least one relevance weight"]),
    ("thresholds-order", ("thresholds", "moderate_relevance_gain_pct"), 20, ["moderate_relevance_gain_pct"]),
    ("replay-without-file", ("model", "backend"), "replay", ["model.replay_file"]),
    ("correction-category-empty", ("correction_categories",), ["corrections"], ['"corrections" has no prompts']),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_config_is_one_clear_line(tmp_path, config_data, case):
    _, path, value, fragments = case
    data = _mutate(copy.deepcopy(config_data), path, value)
    f = write_config(tmp_path / "cfg.json", data)
    with pytest.raises(ConfigError) as info:
        config.load(f)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(str(f))
    for frag in fragments:
        assert frag in msg, (frag, msg)


def test_invalid_json_reports_line_and_column(tmp_path):
    f = tmp_path / "cfg.json"
    f.write_text('{\n  "model": {\n    "base": "x",\n  }\n}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"cfg\.json:4:3: invalid JSON"):
        config.load(f)


def test_missing_file_is_reported_by_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        config.load("nope.json")
    assert str(tmp_path / "nope.json") in str(info.value) and "--config" in str(info.value)


def test_top_level_must_be_an_object(tmp_path):
    f = tmp_path / "cfg.json"
    f.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ConfigError, match="top level must be a JSON object"):
        config.load(f)


def test_code_does_not_assume_three_categories(tmp_path, config_data):
    data = copy.deepcopy(config_data)
    data["prompts"] = data["prompts"][:4]
    data["prompts"][3]["category"] = "domotique"
    data["correction_categories"] = []
    cfg = config.load(write_config(tmp_path / "c.json", data))
    assert cfg.categories == ["commandes_vocales", "domotique"]


def test_paths_resolve_relative_to_the_config_file(tmp_path, config_data):
    sub = tmp_path / "conf"
    sub.mkdir()
    cfg = config.load(write_config(sub / "c.json", config_data))
    assert cfg.resolve("output") == sub / "output"
    assert cfg.resolve(str(tmp_path / "abs")) == tmp_path / "abs"


def test_tools_render_as_openai_functions():
    cfg = config.load(CONFIG)
    schema = cfg.tool("timer_tool").to_openai()
    assert schema["function"]["parameters"]["properties"]["minutes"]["type"] == "integer"
    assert schema["function"]["parameters"]["required"] == ["minutes"]
    json.dumps(schema)
