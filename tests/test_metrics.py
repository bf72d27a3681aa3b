"""Table-driven metric cases: (answer, prompt spec fields, expected metrics)."""

from __future__ import annotations

import pytest

from jarvis_bench import config
from jarvis_bench.config import PromptSpec, RelevanceWeights
from jarvis_bench.metrics import correction_scores, extract_tool_calls, keyword_match, score_answer

from .conftest import CONFIG

CATALOG = config.load(CONFIG).tools
W = RelevanceWeights()

KEYWORDS = [
    # (answer, keywords, hits)
    ("J'ouvre Chrome.", ["chrome", "ouvre"], 2),
    ("J'OUVRE CHROME", ["Chrome", "Ouvre"], 2),
    ("Voici l'état de l'écran", ["etat", "ecran"], 2),
    ("Voici l'etat de l'ecran", ["état", "écran"], 2),
    ("Je verrouille la session", ["verrouill", "session"], 2),
    ("Verrouillage effectué", ["verrouill"], 1),
    ("Les nœuds répondent", ["noeuds"], 1),
    ("Minuteur de 5 minutes lancé", ["minuteur", "5 minutes"], 2),
    ("Minuteur de 15 minutes lancé", ["5 minutes"], 0),
    ("La maison est calme", ["son"], 0),
    ("Le son, c'est fait", ["son"], 1),
    ("", ["chrome"], 0),
    ("Rien à voir", [], 0),
    ("La météo à Paris", ["météo", "paris", "demain"], 2),
]


@pytest.mark.parametrize("answer, keywords, hits", KEYWORDS)
def test_keyword_match(answer, keywords, hits):
    assert keyword_match(answer, keywords) == (hits, len(keywords))


TOOLS = [
    # (answer, expected names in order, forms)
    ('<tool_call>{"name": "volume_up_tool", "arguments": {}}</tool_call>', ["volume_up_tool"], ["tool_call"]),
    ('<tool_call>\n{"name": "open_app_tool", "arguments": {"app": "chrome"}}\n</tool_call>', ["open_app_tool"],
     ["tool_call"]),
    ('Ok.\n<tool_call>{"name": "mute_tool", "arguments": {}}</tool_call>\n<tool_call>{"name": "lock_screen_tool", '
     '"arguments": {}}</tool_call>', ["mute_tool", "lock_screen_tool"], ["tool_call", "tool_call"]),
    ('<tool_call>{"name": "timer_tool", "arguments": {"minutes": 5}}', ["timer_tool"], ["tool_call"]),  # unterminated
    ('{"name": "weather_tool", "arguments": {"city": "Paris"}}', ["weather_tool"], ["json"]),
    ('Voici: {"tool": "gpu_status_tool", "args": {}}', ["gpu_status_tool"], ["json"]),
    ('{"function": {"name": "mute_tool", "arguments": "{}"}}', ["mute_tool"], ["json"]),
    ("J'appelle volume_down_tool() tout de suite", ["volume_down_tool"], ["call"]),
    ('open_app_tool(app="spotify")', ["open_app_tool"], ["call"]),
    ("unknown_thing(x=1) et rien d'autre", [], []),
    ("Je vais monter le son pour vous", [], []),  # "monter le son" is not the alias "monte le son"
    ("D'accord, je monte le son.", ["volume_up_tool"], ["prose"]),
    ("Voici la météo, puis une capture d'écran", ["weather_tool", "screenshot_tool"], ["prose", "prose"]),
    ("Bonjour, comment allez-vous ?", [], []),
    ('<tool_call>{"name": "made_up_tool", "arguments": {}}</tool_call>', ["made_up_tool"], ["tool_call"]),
    ('<tool_call>not json</tool_call> volume_up_tool()', ["volume_up_tool"], ["call"]),
    # compact JSON is shorter than its re-serialisation: the call right after it must survive
    ('{"name":"mute_tool","arguments":{}}lock_screen_tool()', ["mute_tool", "lock_screen_tool"], ["json", "call"]),
]


@pytest.mark.parametrize("answer, names, forms", TOOLS)
def test_extract_tool_calls(answer, names, forms):
    calls = extract_tool_calls(answer, CATALOG)
    assert [c.name for c in calls] == names
    assert [c.form for c in calls] == forms


def spec(**kw):
    base = {"id": "x", "category": "c", "prompt": "p"}
    return PromptSpec(**{**base, **kw})


SCORES = [
    # (answer, spec kwargs, expected subset of metrics)
    ('Je monte le son.\n<tool_call>{"name": "volume_up_tool", "arguments": {}}</tool_call>',
     {"keywords": ["son", "monte"], "expected_tool": "volume_up_tool"},
     {"tool_correct": True, "tool_mentioned": True, "wrong_tools": [], "keyword_ratio": 1.0, "relevance": 1.0,
      "args_score": None}),
    ('<tool_call>{"name": "volume_down_tool", "arguments": {}}</tool_call>',
     {"keywords": ["son"], "expected_tool": "volume_up_tool"},
     {"tool_correct": False, "tool_mentioned": False, "wrong_tools": ["volume_down_tool"], "relevance": 0.0}),
    ('<tool_call>{"name": "mute_tool", "arguments": {}}</tool_call><tool_call>{"name": "volume_up_tool", '
     '"arguments": {}}</tool_call>', {"expected_tool": "volume_up_tool"},
     {"tool_correct": False, "tool_mentioned": True, "wrong_tools": ["mute_tool"]}),
    ("Avec plaisir, je reste à votre disposition.", {"keywords": ["plaisir"], "expected_tool": None},
     {"tool_correct": True, "tool_mentioned": None, "relevance": 1.0}),
    ('Avec plaisir <tool_call>{"name": "mute_tool", "arguments": {}}</tool_call>',
     {"keywords": ["plaisir"], "expected_tool": None},
     {"tool_correct": False, "relevance": round(0.25 / 0.65, 4)}),
    ('<tool_call>{"name": "open_app_tool", "arguments": {"app": "Chrome"}}</tool_call>',
     {"expected_tool": "open_app_tool", "expected_args": {"app": "chrome"}}, {"args_score": 1.0, "relevance": 1.0}),
    ('<tool_call>{"name": "open_app_tool", "arguments": {"app": "disk"}}</tool_call>',
     {"expected_tool": "open_app_tool", "expected_args": {"app": "discord"}},
     {"args_score": 0.0, "relevance": round(0.4 / 0.6, 4)}),
    ('<tool_call>{"name": "timer_tool", "arguments": {"minutes": "10"}}</tool_call>',
     {"expected_tool": "timer_tool", "expected_args": {"minutes": 10}}, {"args_score": 1.0}),
    ('<tool_call>{"name": "timer_tool", "arguments": {"minutes": 15}}</tool_call>',
     {"expected_tool": "timer_tool", "expected_args": {"minutes": 10}}, {"args_score": 0.0}),
    ('<tool_call>{"name": "weather_tool", "arguments": {"city": " Lyon"}}</tool_call>',
     {"expected_tool": "weather_tool", "expected_args": {"city": "Lyon", "day": "demain"}}, {"args_score": 0.5}),
    ("Ouvre chrome", {"expected_tool": "open_app_tool", "expected_args": {"app": "chrome"}},
     {"tool_correct": True, "args_score": 0.0}),
    ('Vous vouliez dire « ouvre chrome ». <tool_call>{"name": "open_app_tool", "arguments": {"app": "chrome"}}'
     "</tool_call>", {"expected_tool": "open_app_tool", "expected_correction": "ouvre chrome"},
     {"correction_score": 1.0, "cer": 0.0, "wer": 0.0, "relevance": 1.0}),
    ("Vous vouliez dire « Ouvre Chrome ! »", {"expected_correction": "ouvre chrome"}, {"correction_score": 1.0}),
    ("", {"keywords": ["x"], "expected_correction": "ouvre chrome"},
     {"correction_score": 0.0, "cer": 1.0, "keyword_hits": 0}),
]


@pytest.mark.parametrize("answer, kw, expected", SCORES)
def test_score_answer(answer, kw, expected):
    m = score_answer(answer, spec(**kw), CATALOG, W)
    for k, v in expected.items():
        assert m[k] == v, (k, m)


@pytest.mark.parametrize(
    "answer, expected, lo, hi",
    [
        ("Vous vouliez dire ouvre chrom", "ouvre chrome", 0.85, 0.99),
        ("je ferme spoti", "ferme spotify", 0.7, 0.99),
        ("rien à voir du tout", "verrouille l'écran", 0.0, 0.6),
    ],
)
def test_fuzzy_corrections(answer, expected, lo, hi):
    score, cer, wer = correction_scores(answer, expected)
    assert lo <= score <= hi
    assert 0 < cer <= 1 and 0 < wer <= 1


def test_relevance_renormalises_over_applicable_parts():
    # tool right, keywords half: (0.4*1 + 0.25*0.5) / 0.65
    m = score_answer('<tool_call>{"name": "mute_tool", "arguments": {}}</tool_call> son', spec(
        keywords=["son", "coupé"], expected_tool="mute_tool"), CATALOG, W)
    assert m["relevance"] == round((0.4 + 0.125) / 0.65, 4)
