"""Table-driven metric cases: (answer, prompt spec fields, expected metrics)."""

from __future__ import annotations

import pytest

from jarvis_bench import config
from jarvis_bench.config import PromptSpec, RelevanceWeights
from jarvis_bench.metrics import correction_scores, keyword_match, mentions, score_answer, value_matches

from .conftest import CONFIG

CATALOG = config.load(CONFIG).tools
W = RelevanceWeights()

KEYWORDS = [
    # (answer, keywords, found)
    ("J'ouvre Chrome.", ["chrome", "ouvre"], ["chrome", "ouvre"]),
    ("J'OUVRE CHROME", ["Chrome", "Ouvre"], ["Chrome", "Ouvre"]),
    ("Voici l'état de l'écran", ["etat", "ecran"], ["etat", "ecran"]),
    ("Voici l'etat de l'ecran", ["état", "écran"], ["état", "écran"]),
    ("Je verrouille la session", ["verrouill*", "session"], ["verrouill*", "session"]),
    ("Verrouillage effectué", ["verrouill*"], ["verrouill*"]),
    ("Je verrouille la session", ["verrouill"], []),  # without `*`, whole words only
    ("Je verouille l'écrant", ["verrouill*", "écran"], []),  # misheard words are not the keywords
    ("Les nœuds répondent", ["noeuds"], ["noeuds"]),
    ("Un nœud ne répond pas", ["nœuds", "nœud*"], ["nœud*"]),
    ("Minuteur de 5 minutes lancé", ["minuteur", "5 minutes"], ["minuteur", "5 minutes"]),
    ("Minuteur de cinq minutes lancé", ["5 minutes"], ["5 minutes"]),  # number words = digits
    ("Minuteur de dix minutes", ["10 minutes"], ["10 minutes"]),
    ("Minuteur de 15 minutes lancé", ["5 minutes"], []),
    ("La maison est calme", ["son"], []),
    ("Le volume sonore", ["son"], []),
    ("Le son, c'est fait", ["son"], ["son"]),
    ("mont le sont", ["son", "monte"], []),
    ("Je scanne MEXC", ["mexc", "scan"], ["mexc"]),
    ('<tool_call>{"name": "mexc_scan_tool", "arguments": {}}</tool_call>', ["mexc", "scan"], []),  # one identifier
    ("Je coupe le son", ["coupé"], ["coupé"]),  # accents ignored: "coupé" and "coupe" are one word
    ("<think>je pense à chrome</think>Voilà.", ["chrome"], []),
    ("", ["chrome"], []),
    ("Rien à voir", [], []),
]


@pytest.mark.parametrize("answer, keywords, found", KEYWORDS)
def test_keyword_match(answer, keywords, found):
    m = score_answer(answer, spec(keywords=keywords), CATALOG, W)
    assert m["keywords_found"] == found and m["keyword_hits"] == len(found) and m["keyword_total"] == len(keywords)
    if "<think>" not in answer:
        assert keyword_match(answer, keywords) == found


VALUES = [
    # (expected, got, match)
    (5, 5, True), (5, "5", True), (5, 5.0, True), (5, " 5 ", True), (5, "cinq", True), (10, "dix", True),
    (20, "vingt", True), (20, "20.0", True), (5, 15, False), (5, "5 minutes", False), (5, None, False),
    (5, True, False),
    ("Paris", "paris", True), ("Paris", " PARIS ", True), ("Paris", "Paris, France", False),
    ("Paris", "Paris 15e", False), ("chrome", "chrome.exe", False), ("chrome", "Chromé", True),
    ("Marseille", "marseille", True), ("discord", "disque corde", False), ("discord", "disk", False),
    (["chrome", "google chrome"], "Google Chrome", True), (["chrome", "google chrome"], "googlechrome", True),
    (["chrome", "google chrome"], "chromium", False), (["BTC", "BTCUSDT"], "BTC/USDT", True),
    (["BTC", "BTCUSDT"], "bitcoin", False), (["demain", "tomorrow"], "Demain", True),
    ("jazz", ["jazz"], False), ("jazz", {"genre": "jazz"}, False), (True, "oui", True), (False, True, False),
]


@pytest.mark.parametrize("expected, got, match", VALUES)
def test_value_matches(expected, got, match):
    assert value_matches(expected, got) is match


CORRECTIONS = [
    # (answer, expected, misheard, score range)
    ("Vous vouliez dire « ouvre chrome ».", "ouvre chrome", "ouvres crom", (1.0, 1.0)),
    ("Ouvre Chrome !", "ouvre chrome", "ouvres crom", (1.0, 1.0)),
    ("J'ouvre Chrome.", "ouvre chrome", "ouvres crom", (1.0, 1.0)),
    ("VERROUILLE L'ECRAN", "verrouille l'écran", "verouille l'écrant", (1.0, 1.0)),
    ("Je lance un minuteur de 10 minutes.", "lance un minuteur de dix minutes", "lance un minutes heure de dix minutes",
     (1.0, 1.0)),
    ("ouvres crom", "ouvre chrome", "ouvres crom", (0.0, 0.0)),  # the misheard input repeated
    ("Vous avez dit « mont le sont ».", "monte le son", "mont le sont", (0.0, 0.0)),
    ("ouvre chromecast", "ouvre chrome", "ouvres crom", (0.0, 0.0)),  # inside a longer word
    ("ouvre crome", "ouvre chrome", "ouvres crom", (0.5, 0.8)),  # partly fixed
    ("ferme spotifaille", "ferme spotify", "ferme spoti faille", (0.01, 0.9)),
    ("Voici l'état du cluster", "status cluster", "statu clusteur", (0.0, 0.0)),  # other words
    ("rien à voir du tout", "verrouille l'écran", "verouille l'écrant", (0.0, 0.0)),
    ("", "ouvre chrome", "ouvres crom", (0.0, 0.0)),
]


@pytest.mark.parametrize("answer, expected, misheard, bounds", CORRECTIONS)
def test_correction_scores(answer, expected, misheard, bounds):
    score, cer, wer = correction_scores(answer, expected, misheard)
    assert bounds[0] <= score <= bounds[1]
    assert (cer == 0 and wer == 0) == (score == 1.0)


def test_correction_score_grows_with_the_share_of_the_error_fixed():
    misheard, expected = "lance un minutes heure de dix minutes", "lance un minuteur de dix minutes"
    ladder = ["lance un minutes heure de dix minutes", "lance un minutesheure de dix minutes",
              "lance un minuteure de dix minutes", "lance un minuteur de dix minutes"]
    scores = [correction_scores(a, expected, misheard)[0] for a in ladder]
    assert scores == sorted(scores) and scores[0] == 0.0 and scores[-1] == 1.0 and len(set(scores)) == 4


def spec(**kw):
    base = {"id": "x", "category": "c", "prompt": "p"}
    return PromptSpec(**{**base, **kw})


MENTIONS = [
    # (answer, prompt, credited tool or None)  — what `tool_credit: calls_or_mentions` would credit
    ("D'accord, je monte le son.", "monte le son", "volume_up_tool"),
    ("Monte le son.", "monte le son", None),  # an echo of the prompt
    ("Coupe le son.\n\nCoupe le son.\n\nCoupe le son.", "coupe le son", None),
    ("Voulez-vous que je monte le son ?", "monte le son", None),  # a question
    ("Je ne vais pas couper le son, je ne coupe pas le son.", "coupe le son", None),  # a negation
    ("Désolé, je ne peux pas ouvrir Chrome.", "ouvre chrome", None),  # a refusal
    ("Outils : open_app_tool, close_app_tool, mute_tool.", "ouvre chrome", None),  # a list of tools
    ("La carte graphique chauffe, est un fichier de code.", "la carte graphique chauffe, elle en est où ?", None),
    ("Je regarde l'état du GPU.", "la carte graphique chauffe, elle en est où ?", "gpu_status_tool"),
    ("J'utilise weather_tool pour Paris.", "météo à Paris", "weather_tool"),
]


@pytest.mark.parametrize("answer, prompt, credited", MENTIONS)
def test_mentions_credit_only_affirmative_statements(answer, prompt, credited):
    found = [m.tool for m in mentions(answer, prompt, CATALOG) if m.credited]
    assert (found[0] if found else None) == credited


SCORES = [
    # (answer, spec kwargs, expected subset of metrics)
    ('Je monte le son.\n<tool_call>{"name": "volume_up_tool", "arguments": {}}</tool_call>',
     {"keywords": ["son", "monte"], "expected_tool": "volume_up_tool"},
     {"tool_correct": True, "tool_credit": "call", "tool_mentioned": True, "wrong_tools": [], "keyword_ratio": 1.0,
      "relevance": 1.0, "args_score": None, "first_call": "volume_up_tool"}),
    ('<tool_call>{"name": "volume_down_tool", "arguments": {}}</tool_call>',
     {"keywords": ["son"], "expected_tool": "volume_up_tool"},
     {"tool_correct": False, "tool_mentioned": False, "wrong_tools": ["volume_down_tool"], "unknown_tools": [],
      "relevance": 0.0}),
    ('<tool_call>{"name": "mexc_status_tool", "arguments": {}}</tool_call>', {"expected_tool": "weather_tool"},
     {"tool_correct": False, "wrong_tools": ["mexc_status_tool"], "unknown_tools": ["mexc_status_tool"]}),
    # the first call is judged, even when the right tool comes second
    ('<tool_call>{"name": "mute_tool", "arguments": {}}</tool_call><tool_call>{"name": "volume_up_tool", '
     '"arguments": {}}</tool_call>', {"expected_tool": "volume_up_tool"},
     {"tool_correct": False, "tool_mentioned": True, "wrong_tools": ["mute_tool"], "first_call": "mute_tool"}),
    # prose is not a call
    ("D'accord, je monte le son.", {"expected_tool": "volume_up_tool"},
     {"tool_correct": False, "tool_credit": None, "tool_mentioned": True, "tools_found": []}),
    ("Coupe le son.\n\nCoupe le son.", {"expected_tool": "mute_tool", "prompt": "coupe le son"},
     {"tool_correct": False, "tool_mentioned": True}),
    # a malformed first attempt is reported, never rescued
    ('<tool_call>{"name": "timer_tool", "arguments": {"minutes": 5', {"expected_tool": "timer_tool",
     "expected_args": {"minutes": 5}},
     {"tool_correct": False, "args_score": 0.0, "tools_found": [], "first_call": "timer_tool (malformed)",
      "malformed_calls": [{"name": "timer_tool", "form": "hermes", "why": "truncated JSON"}]}),
    ('<think>Peut-être mute_tool ? Non.</think><tool_call>{"name": "volume_up_tool", "arguments": {}}</tool_call>',
     {"expected_tool": "volume_up_tool"}, {"tool_correct": True, "wrong_tools": []}),
    ("Avec plaisir, je reste à votre disposition.", {"keywords": ["plaisir"], "expected_tool": None},
     {"tool_correct": True, "tool_mentioned": None, "relevance": 1.0}),
    # the no-tool prompt: everyday words that are also aliases do not matter, calls do
    ("Avec plaisir ! Je lance la musique de fin ? Non, je vous laisse en silence.", {"expected_tool": None},
     {"tool_correct": True}),
    ('Avec plaisir <tool_call>{"name": "mute_tool", "arguments": {}}</tool_call>',
     {"keywords": ["plaisir"], "expected_tool": None},
     {"tool_correct": False, "relevance": round(0.25 / 0.65, 4)}),
    ('Avec plaisir <tool_call>{"name": "mute_tool", "argu', {"expected_tool": None}, {"tool_correct": False}),
    # arguments: typed, on the first call, extra ones reported
    ('<tool_call>{"name": "open_app_tool", "arguments": {"app": "Chrome"}}</tool_call>',
     {"expected_tool": "open_app_tool", "expected_args": {"app": "chrome"}}, {"args_score": 1.0, "relevance": 1.0}),
    ('<tool_call>{"name": "open_app_tool", "arguments": {"app": "disk"}}</tool_call>',
     {"expected_tool": "open_app_tool", "expected_args": {"app": "discord"}},
     {"args_score": 0.0, "relevance": round(0.4 / 0.6, 4)}),
    ('{"tool_calls": [{"type": "function", "function": {"name": "timer_tool", "arguments": "{\\"minutes\\": \\"dix\\"}"'
     "}}]}", {"expected_tool": "timer_tool", "expected_args": {"minutes": 10}}, {"args_score": 1.0}),
    ('<tool_call>{"name": "timer_tool", "arguments": {"minutes": 15}}</tool_call>',
     {"expected_tool": "timer_tool", "expected_args": {"minutes": 10}}, {"args_score": 0.0}),
    ('<tool_call>{"name": "weather_tool", "arguments": {"city": " Lyon", "unit": "C"}}</tool_call>',
     {"expected_tool": "weather_tool", "expected_args": {"city": "Lyon", "day": "demain"}},
     {"args_score": 0.5, "extra_args": ["unit"]}),
    ('<tool_call>{"name": "weather_tool", "arguments": {"city": "Paris"}}</tool_call>'
     '<tool_call>{"name": "open_app_tool", "arguments": {"app": "chrome"}}</tool_call>',
     {"expected_tool": "open_app_tool", "expected_args": {"app": "chrome"}},
     {"tool_correct": False, "args_score": 0.0}),  # args of a later call are not judged
    ("Ouvre chrome", {"expected_tool": "open_app_tool", "expected_args": {"app": "chrome"}},
     {"tool_correct": False, "args_score": 0.0}),
    # corrections
    ('Vous vouliez dire « ouvre chrome ». <tool_call>{"name": "open_app_tool", "arguments": {"app": "chrome"}}'
     "</tool_call>", {"prompt": "ouvres crom", "expected_tool": "open_app_tool", "expected_correction": "ouvre chrome"},
     {"correction_score": 1.0, "cer": 0.0, "wer": 0.0, "relevance": 1.0}),
    ("ouvres crom", {"prompt": "ouvres crom", "expected_correction": "ouvre chrome"}, {"correction_score": 0.0}),
    ("", {"keywords": ["x"], "expected_correction": "ouvre chrome"},
     {"correction_score": 0.0, "cer": 1.0, "keyword_hits": 0}),
]


@pytest.mark.parametrize("answer, kw, expected", SCORES)
def test_score_answer(answer, kw, expected):
    m = score_answer(answer, spec(**kw), CATALOG, W)
    for k, v in expected.items():
        assert m[k] == v, (k, m)


def test_tool_credit_calls_or_mentions():
    s = spec(prompt="monte le son", expected_tool="volume_up_tool", keywords=["son"])
    for answer, credited in [("Je monte le son.", True), ("Monte le son.", False), ("Je monte le son ?", False),
                             ("Je ne monte pas le son.", False)]:
        m = score_answer(answer, s, CATALOG, W, tool_credit="calls_or_mentions")
        assert m["tool_correct"] is credited and m["tool_credit"] == ("mention" if credited else None), answer
        assert score_answer(answer, s, CATALOG, W)["tool_correct"] is False
    # a call still decides when there is one
    wrong = 'Je monte le son. <tool_call>{"name": "mute_tool", "arguments": {}}</tool_call>'
    assert score_answer(wrong, s, CATALOG, W, tool_credit="calls_or_mentions")["tool_correct"] is False


def test_extra_args_penalized_on_request():
    s = spec(expected_tool="open_app_tool", expected_args={"app": "chrome"})
    answer = '<tool_call>{"name": "open_app_tool", "arguments": {"app": "chrome", "incognito": true}}</tool_call>'
    assert score_answer(answer, s, CATALOG, W)["args_score"] == 1.0
    assert score_answer(answer, s, CATALOG, W, extra_args="penalize")["args_score"] == 0.5


def test_relevance_renormalises_over_applicable_parts():
    # tool right, keywords half: (0.4*1 + 0.25*0.5) / 0.65
    m = score_answer('<tool_call>{"name": "mute_tool", "arguments": {}}</tool_call> son', spec(
        keywords=["son", "coupé"], expected_tool="mute_tool"), CATALOG, W)
    assert m["relevance"] == round((0.4 + 0.125) / 0.65, 4)
