"""Tool-call formats, one table of cases per format: (answer, [(name, arguments, malformed?)] in order)."""

from __future__ import annotations

import json

import pytest

from jarvis_bench import config
from jarvis_bench.metrics import catalog_params
from jarvis_bench.toolcalls import FORMATS, parse

from .conftest import CONFIG

PARAMS = catalog_params(config.load(CONFIG).tools)


def call(name, args=None, malformed=False):
    return (name, args or {}, malformed)


def args_json(d):
    return json.dumps(json.dumps(d))  # arguments as a JSON string, as OpenAI endpoints send them


CASES = {
    "hermes": [
        ('J\'ouvre Chrome.\n<tool_call>{"name": "open_app_tool", "arguments": {"app": "chrome"}}</tool_call>',
         [call("open_app_tool", {"app": "chrome"})]),
        ('<tool_call>\n{"name": "mute_tool", "arguments": {}}\n</tool_call>', [call("mute_tool")]),
        ('<tool_call>{"name": "timer_tool", "arguments": {"minutes": 5}}', [call("timer_tool", {"minutes": 5})]),
        ('<tool_call>{"name": "timer_tool", "arguments": {"minutes": 5', [call("timer_tool", malformed=True)]),
        ('<tool_call>{"name": "mute_tool", "arguments": {}}}</tool_call>', [call("mute_tool", malformed=True)]),
        ("<tool_call>\n", [call(None, malformed=True)]),
        ('<tool_call>{"name": "mute_tool", "arguments": {}}</tool_call><tool_call>{"name": "lock_screen_tool", '
         '"arguments": {}}</tool_call>', [call("mute_tool"), call("lock_screen_tool")]),
        ('<tool_call>```json\n{"name": "mute_tool", "arguments": {}}\n```</tool_call>', [call("mute_tool")]),
        # the system prompt's format example echoed back is not an attempt
        ('puis appelle l\'outil adapté avec <tool_call>{"name": ..., "arguments": {...}}</tool_call>.', []),
        ('<tool_call>{"name": "made_up_tool", "arguments": {}}</tool_call>', [call("made_up_tool")]),
        # a JSON list with a stray element: the call objects count; nothing but strays is not a call
        ('<tool_call>[7, {"name": "gpu_status_tool", "arguments": {}}]</tool_call>', [call("gpu_status_tool")]),
        ('<tool_call>["rien", null]</tool_call>', [call(None, malformed=True)]),
    ],
    "mistral": [
        ('[TOOL_CALLS] [{"name": "mute_tool", "arguments": {}}]', [call("mute_tool")]),
        ('[TOOL_CALLS][{"name": "open_app_tool", "arguments": {"app": "chrome"}}, {"name": "mute_tool", '
         '"arguments": {}}]', [call("open_app_tool", {"app": "chrome"}), call("mute_tool")]),
        ('[TOOL_CALLS]open_app_tool[ARGS]{"app": "chrome"}', [call("open_app_tool", {"app": "chrome"})]),
        ('[TOOL_CALLS]mute_tool[CALL_ID]a1b2c3d4e[ARGS]{}', [call("mute_tool")]),
        ('[TOOL_CALLS]mute_tool[ARGS]{}[TOOL_CALLS]lock_screen_tool[ARGS]{}', [call("mute_tool"), call("lock_screen_tool")]),
        ('[TOOL_CALLS] [{"name": "mute_tool", "argu', [call("mute_tool", malformed=True)]),
        ("[TOOL_CALLS]", [call(None, malformed=True)]),
        # v11 once the server stripped [ARGS]: name{json}, one or several, prose with a stray brace before
        ('[TOOL_CALLS]weather_tool{"city": "Lyon"}', [call("weather_tool", {"city": "Lyon"})]),
        ('[TOOL_CALLS]mute_tool{}[TOOL_CALLS]timer_tool{"minutes": 3}', [call("mute_tool"), call("timer_tool", {"minutes": 3})]),
        ('Je regarde } puis { ça : [TOOL_CALLS]screenshot_tool{}', [call("screenshot_tool")]),
        ('[TOOL_CALLS]timer_tool{"minutes": ', [call("timer_tool", malformed=True)]),
        # a list with a stray element: the call objects count
        ('[TOOL_CALLS] [{"name": "mute_tool", "arguments": {}}, "fin"]', [call("mute_tool")]),
    ],
    "llama4": [
        ("<|python_start|>[lock_screen_tool()]<|python_end|>", [call("lock_screen_tool")]),
        ('Je lance le minuteur.<|python_start|>[timer_tool(minutes=12), mute_tool()]',
         [call("timer_tool", {"minutes": 12}), call("mute_tool")]),
        ('<|python_start|>weather_tool(city="Nice")<|python_end|>', [call("weather_tool", {"city": "Nice"})]),
        ("<|python_start|>[not_in_catalog(x=1)]<|python_end|>", [call("not_in_catalog", {"x": 1})]),  # a call block
        ("<|python_start|>[mute_tool(<|python_end|>", [call("mute_tool", malformed=True)]),
        ("<|python_start|><|python_end|>", [call(None, malformed=True)]),
    ],
    "function": [
        ('<function=weather_tool>{"city": "Paris"}</function>', [call("weather_tool", {"city": "Paris"})]),
        ("<function=mute_tool></function>", [call("mute_tool")]),
        ('<function=weather_tool>{"city": "Par', [call("weather_tool", malformed=True)]),
    ],
    "openai": [
        ('{"tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "open_app_tool", "arguments": '
         + args_json({"app": "chrome"}) + "}}]}", [call("open_app_tool", {"app": "chrome"})]),
        ('{"type": "function", "function": {"name": "weather_tool", "arguments": {"city": "Lyon"}}}',
         [call("weather_tool", {"city": "Lyon"})]),
        ('{"function": {"name": "mute_tool", "arguments": "{}"}}', [call("mute_tool")]),
        ('{"tool_calls": [{"function": {"name": "mute_tool", "arguments": "{\\"x\\": "}}]}',
         [call("mute_tool", malformed=True)]),
        # the tool list echoed (schemas), not a call
        ('{"type": "function", "function": {"name": "mute_tool", "description": "Coupe le son.", "parameters": '
         '{"type": "object", "properties": {}, "required": []}}}', []),
    ],
    "json": [
        ('{"name": "weather_tool", "arguments": {"city": "Paris"}}', [call("weather_tool", {"city": "Paris"})]),
        ('Voici : {"tool": "gpu_status_tool", "args": {}}', [call("gpu_status_tool")]),
        ('{"name": "timer_tool", "parameters": {"minutes": 20}}', [call("timer_tool", {"minutes": 20})]),
        ('```json\n{"name": "mute_tool", "arguments": {}}\n```', [call("mute_tool")]),
        ('[{"name": "mute_tool", "arguments": {}}, {"name": "lock_screen_tool", "arguments": {}}]',
         [call("mute_tool"), call("lock_screen_tool")]),
        ('{"name": "open_app_tool", "arguments": {"app": "chr', [call("open_app_tool", malformed=True)]),
        ("{'name': 'mute_tool', 'arguments': {}}", [call("mute_tool", malformed=True)]),
        ('{"name": "mute_tool", "arguments": "pas du json"}', [call("mute_tool", malformed=True)]),
        ('{"name": "Paris", "temperature": 12}', []),  # data with a "name", not a call
        ('{"name": "mute_tool", "description": "Coupe le son.", "parameters": {}}', []),  # a schema
        ('Les outils : {"name": "mute_tool", "parameters": {"type": "object", "properties": {}}}', []),
        # compact JSON right before a pythonic line: both found, in order
        ('{"name":"mute_tool","arguments":{}}\nlock_screen_tool()', [call("mute_tool"), call("lock_screen_tool")]),
    ],
    "pythonic": [
        ('open_app_tool(app="spotify")', [call("open_app_tool", {"app": "spotify"})]),
        ('Je ferme Spotify.\nclose_app_tool(app="spotify")', [call("close_app_tool", {"app": "spotify"})]),
        ('[mute_tool(), timer_tool(minutes=5)]', [call("mute_tool"), call("timer_tool", {"minutes": 5})]),
        ('`weather_tool(city="Paris")`', [call("weather_tool", {"city": "Paris"})]),
        ('Je lance `timer_tool(minutes=20)` tout de suite.', [call("timer_tool", {"minutes": 20})]),
        ('```python\nopen_app_tool("chrome")\n```', [call("open_app_tool", {"app": "chrome"})]),
        ("- mute_tool()", [call("mute_tool")]),
        ('open_app_tool(app=chrome)', [call("open_app_tool", {"app": "chrome"})]),
        ("J'appelle volume_down_tool() tout de suite", []),  # inside a sentence: prose
        ("volume_up_tool() pour monter le son", []),
        ('open_app_tool(app="chr', [call("open_app_tool", malformed=True)]),
        ("open_app_tool(app=1+1)", [call("open_app_tool", malformed=True)]),
        ("unknown_thing(x=1)", []),  # only catalog tools
        ("print(x)", []),
        # list and dict arguments (valid JSON inside: the JSON finder must not take them as data first)
        ('[play_music_tool(query="rock", extra=[1, 2])]', [call("play_music_tool", {"query": "rock", "extra": [1, 2]})]),
        ('timer_tool(minutes=8, label={"lieu": "four", "rappels": [1, 2]})',
         [call("timer_tool", {"minutes": 8, "label": {"lieu": "four", "rappels": [1, 2]}})]),
        # a bracketed list inside a sentence is a call (SGLang reads it); two lists joined by words: both
        ("Pour la session : [lock_screen_tool()] c'est fait.", [call("lock_screen_tool")]),
        ('[weather_tool(city="Brest")] Il pleut sûrement.', [call("weather_tool", {"city": "Brest"})]),
        ("[mute_tool()] puis [screenshot_tool()]", [call("mute_tool"), call("screenshot_tool")]),
        ('Je vais fermer : [close_app_tool(app="steam"', [call("close_app_tool", malformed=True)]),
        ('Le texte "[mute_tool()]" est un exemple.', []),  # quoted: a string, not a call
        ("Voir [notes(x)] et [1, 2].", []),  # not catalog tools
        ("Je peux utiliser [mute_tool] si besoin.", []),  # a name in brackets, no call
    ],
    "none": [
        ("", []),
        ("J'ouvre Chrome.", []),
        ("J'utilise open_app_tool pour ouvrir Chrome.", []),
        ("Bonjour, comment allez-vous ?", []),
        ("Utilise {app} et [x] dans ta réponse.", []),
    ],
}


@pytest.mark.parametrize("answer, expected", [c for cases in CASES.values() for c in cases],
                         ids=[f"{form}-{i}" for form, cases in CASES.items() for i in range(len(cases))])
def test_parse(answer, expected):
    calls, _ = parse(answer, PARAMS)
    assert [(c.name, c.arguments, not c.ok) for c in calls] == expected


def test_every_format_has_cases():
    assert {name for name, _ in FORMATS} | {"pythonic"} <= set(CASES)


def test_calls_are_ordered_by_position_not_by_form():
    answer = 'mute_tool()\n<tool_call>{"name": "lock_screen_tool", "arguments": {}}</tool_call>\n' \
             '{"name": "open_app_tool", "arguments": {"app": "x"}}'
    calls, _ = parse(answer, PARAMS)
    assert [c.name for c in calls] == ["mute_tool", "lock_screen_tool", "open_app_tool"]
    assert [c.form for c in calls] == ["pythonic", "hermes", "json"]


def test_prose_keeps_the_words_and_blanks_the_calls():
    answer = 'J\'ouvre Chrome. <tool_call>{"name": "open_app_tool", "arguments": {"app": "chrome"}}</tool_call> Voilà.'
    calls, prose = parse(answer, PARAMS)
    assert len(prose) == len(answer) and "open_app_tool" not in prose
    assert prose.split() == ["J'ouvre", "Chrome.", "Voilà."]
    assert answer[calls[0].start:calls[0].end].startswith("<tool_call>")


@pytest.mark.timeout(300)  # a hang guard, not a speed target: quadratic work on these took hours
@pytest.mark.parametrize("unit", ["[THINK]", "[", "{", '{"a": 1} ', "[x] ", '{"a": ', "[1, ", '{"a" x ', '["a" x\n',
                                  "[mute_tool(", "<|python_start|>", "[TOOL_CALLS]x{", "[mute_tool(x=y)] "])
def test_a_megabyte_of_a_repeated_pattern_is_parsed_in_linear_time(unit):
    """A looping model (or a server ignoring max_tokens) can send megabytes of one pattern: every finder reads
    the answer a bounded number of times (no error that counts lines from the start at every bracket, no
    rebuild of the text per call, nothing nested a thousand deep decoded again from each level)."""
    answer = unit * (1_000_000 // len(unit))
    calls, prose = parse(answer, PARAMS)
    assert len(prose) == len(answer)
    assert all(c.start < c.end for c in calls)
