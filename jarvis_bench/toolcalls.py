"""Tool calls in a model's answer: the formats real models write, in the order they stand.

`parse(answer, tool_names)` finds every call *attempt*, well-formed or not, and returns them sorted by
their position in the answer. A malformed attempt (truncated JSON, an unclosed `tool(`) is kept with
the reason it cannot be executed — never rescued from the prose around it. What is not an attempt:
a tool named in prose, the JSON schema of a tool (an echo of the tool list), the system prompt's
`{"name": ..., "arguments": {...}}` placeholder echoed back. Reasoning blocks are the caller's business
(`text.strip_thinking`).

The formats, each found by one finder of `FORMATS`, in this order (a span one finder takes is hidden
from the next ones):

| form       | what it looks like                                                       | written by          |
|------------|--------------------------------------------------------------------------|---------------------|
| `hermes`   | `<tool_call>{"name": "x", "arguments": {...}}</tool_call>` (end tag optional at the end) | Qwen2.5/Qwen3, Hermes |
| `mistral`  | `[TOOL_CALLS] [{"name": "x", "arguments": {...}}]`, `[TOOL_CALLS]x[ARGS]{...}`, `[TOOL_CALLS]x{...}` (v11, [ARGS] stripped) | Mistral |
| `function` | `<function=x>{...}</function>`                                            | Llama 3.1 (custom)  |
| `llama4`   | `<|python_start|>[x(a="b"), y()]<|python_end|>` (end tag optional at the end), any tool name | Llama 4 |
| `openai`   | `{"tool_calls": [{"type": "function", "function": {"name", "arguments": "<json>"}}]}`, `{"type": "function", "function": {...}}` | GPT-style endpoints |
| `json`     | `{"name"/"tool": "x", "arguments"/"args"/"parameters": {...}}`, bare or in a ``` fence, or a list of them | most chat models |
| `pythonic` | `x(a="b")` or `[x(), y(n=1)]` standing on its own (the whole answer, a line, a code span), or a bracketed list `[x(a=[1, 2])]` anywhere, inside a sentence too — catalog tools only, parsed with `ast`; runs before `json` | Llama 3.2, BFCL-style |

In a call block (`<tool_call>`, after `[TOOL_CALLS]`) a JSON list's stray elements (a string, a number) are
skipped and its call objects kept. Reasoning blocks of every model (`text.REASONING_BLOCKS`) are removed
before parsing.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

_NAME_KEYS = ("name", "tool", "tool_name")
_ARG_KEYS = ("arguments", "args", "parameters", "input")
_CALL_KEYS = {*_NAME_KEYS, *_ARG_KEYS, "id", "type", "call_id", "index"}
_IDENT = re.compile(r"^[A-Za-z_][\w.\-]*$")
_PLACEHOLDER = re.compile(r"""["']name["']\s*:\s*(?:\.\.\.|…)""")
_NAME_IN_TEXT = re.compile(r"""["'](?:name|tool|tool_name)["']\s*:\s*["']([A-Za-z_][\w.\-]*)["']""")
_CALL_START = re.compile(r"""\{\s*["'](?:name|tool|tool_name|function|tool_calls)["']\s*:""")


@dataclass(frozen=True)
class ToolCall:
    name: str | None
    """The tool named (None when a malformed attempt names none)."""
    arguments: dict[str, Any] = field(default_factory=dict)
    form: str = "json"
    start: int = 0
    end: int = 0
    malformed: str | None = None
    """Why the attempt cannot be executed; None for a well-formed call."""

    @property
    def ok(self) -> bool:
        return self.malformed is None


# ----------------------------------------------------------------------------- JSON values -> calls

class _NotACall(Exception):
    """The value is JSON but not shaped as a call (prose data, a tool schema)."""


def _is_schema(params: Any) -> bool:
    return isinstance(params, dict) and ("properties" in params or params.get("type") == "object")


def _arguments(raw: Any) -> tuple[dict[str, Any], str | None]:
    if raw is None:
        return {}, None
    if isinstance(raw, str):  # OpenAI: arguments is a JSON string
        if not raw.strip():
            return {}, None
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            return {}, "arguments string is not valid JSON"
    if not isinstance(raw, dict):
        return {}, f"arguments are a {type(raw).__name__}, not an object"
    return raw, None


def _from_object(obj: dict[str, Any]) -> list[tuple[str | None, dict[str, Any], str | None]]:
    """(name, arguments, why malformed) for each call the object holds; _NotACall if it holds none."""
    if isinstance(obj.get("tool_calls"), list):
        out = []
        for item in obj["tool_calls"]:
            out.extend(_from_value(item))
        if not out:
            raise _NotACall
        return out
    fn = obj.get("function")
    if isinstance(fn, dict):  # {"type": "function", "function": {...}}
        if "description" in fn or _is_schema(fn.get("parameters")):
            raise _NotACall  # a tool schema: the tool list echoed
        obj = fn
    elif isinstance(fn, str) and not any(k in obj for k in _NAME_KEYS):
        obj = {**obj, "name": fn}
    name = next((obj[k] for k in _NAME_KEYS if isinstance(obj.get(k), str)), None)
    if name is None or "description" in obj or not set(obj) <= _CALL_KEYS | {"function"}:
        raise _NotACall
    if name.strip() in ("...", "…"):
        return []  # the system prompt's format example echoed back
    raw_args = next((obj[k] for k in _ARG_KEYS if k in obj), None)
    if _is_schema(raw_args):
        raise _NotACall
    args, why = _arguments(raw_args)
    if not _IDENT.match(name):
        why = why or f"tool name {name!r} is not an identifier"
    return [(name, args, why)]


def _from_value(value: Any, *, block: bool = False) -> list[tuple[str | None, dict[str, Any], str | None]]:
    """The calls a JSON value holds. In a call block (`block`: a <tool_call> body, what follows
    [TOOL_CALLS]) a list's elements that are not objects (a stray string, a number) are skipped; bare in
    prose, such a list is data."""
    if isinstance(value, dict):
        return _from_object(value)
    if isinstance(value, list) and value:
        items = [x for x in value if isinstance(x, dict)] if block else value
        if not items:
            raise _NotACall
        out = []
        for item in items:
            if not isinstance(item, dict):
                raise _NotACall
            out.extend(_from_object(item))
        return out
    raise _NotACall


def _bracket_end(text: str, i: int, opening: str = "{[", closing: str = "}]") -> int | None:
    """End of the bracketed run starting at text[i] (quoted strings skipped), or None if it never closes."""
    depth, quote, k = 0, "", i
    while 0 <= k < len(text):
        c = text[k]
        if quote:
            if c == "\\":
                k += 1
            elif c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
        elif c in opening:
            depth += 1
        elif c in closing:
            depth -= 1
            if depth == 0:
                return k + 1
        k += 1
    return None


def _json_end(text: str, i: int) -> int:
    """End of the JSON-like value starting at text[i], or len(text) if it is cut off."""
    end = _bracket_end(text, i)
    return len(text) if end is None else end


def _strip_fence(s: str) -> str:
    s = s.strip()
    if s.startswith("```"):
        s = s.split("\n", 1)[1] if "\n" in s else ""
        s = s.rsplit("```", 1)[0]
    return s.strip()


def _calls_in_block(content: str, form: str, start: int, end: int) -> list[ToolCall]:
    """The calls of a block that must hold JSON (a <tool_call> body, what follows [TOOL_CALLS])."""
    body = _strip_fence(content)
    if _PLACEHOLDER.search(body):
        return []
    if not body:
        return [ToolCall(None, {}, form, start, end, "empty call block")]
    try:
        value = json.loads(body)
        found = _from_value(value, block=True)
    except json.JSONDecodeError:
        named = _NAME_IN_TEXT.search(body)
        why = "truncated JSON" if _json_end(body, 0) == len(body) and body[-1:] not in "}]" else "invalid JSON"
        return [ToolCall(named.group(1) if named else None, {}, form, start, end, why)]
    except _NotACall:
        return [ToolCall(None, {}, form, start, end, "not a call object")]
    return [ToolCall(n, a, form, start, end, why) for n, a, why in found]


# ----------------------------------------------------------------------------- finders

Finder = Callable[[str, Collection[str]], Iterator[tuple[int, int, list[ToolCall]]]]

#: The special tokens the formats above are written with: an answer is decoded with them kept (`chat.decoder`);
#: Mistral's and Llama 4's tokenizers mark them special, and skip_special_tokens=True would erase them.
MARKERS = ("<tool_call>", "</tool_call>", "[TOOL_CALLS]", "[ARGS]", "[CALL_ID]", "<|python_start|>", "<|python_end|>")
_HERMES = re.compile(r"<tool_call>(.*?)(?:</tool_call>|(?=<tool_call>)|\Z)", re.DOTALL)
_FUNCTION = re.compile(r"<function=([^>\s]+)>(.*?)(?:</function>|(?=<function=)|\Z)", re.DOTALL)
_MISTRAL = re.compile(r"\[TOOL_CALLS\]")
# name[ARGS]{…}, or name{…} once a server has stripped the [ARGS] special token from the text (Mistral v11)
_MISTRAL_NAMED = re.compile(r"\s*([A-Za-z_][\w.\-]*)(?:\[CALL_ID\][\w\-]*)?(?:\[ARGS\]|(?=\{))")


def _hermes(text: str, names: Collection[str]) -> Iterator[tuple[int, int, list[ToolCall]]]:
    for m in _HERMES.finditer(text):
        yield m.start(), m.end(), _calls_in_block(m.group(1), "hermes", m.start(), m.end())


def _function_tags(text: str, names: Collection[str]) -> Iterator[tuple[int, int, list[ToolCall]]]:
    for m in _FUNCTION.finditer(text):
        args, why = {}, None
        body = _strip_fence(m.group(2))
        if body:
            try:
                args, why = _arguments(json.loads(body))
            except json.JSONDecodeError:
                why = "invalid JSON arguments"
        yield m.start(), m.end(), [ToolCall(m.group(1), args, "function", m.start(), m.end(), why)]


def _mistral(text: str, names: Collection[str]) -> Iterator[tuple[int, int, list[ToolCall]]]:
    done = 0
    for m in _MISTRAL.finditer(text):
        if m.start() < done:  # a marker already read as part of the previous run of calls
            continue
        i = m.end()
        while i < len(text) and text[i].isspace():
            i += 1
        if i < len(text) and text[i] in "[{":  # [TOOL_CALLS] [{"name": …, "arguments": …}, …]
            done = _json_end(text, i)
            yield m.start(), done, _calls_in_block(text[i:done], "mistral", m.start(), done)
            continue
        calls, end = [], m.end()
        while named := _MISTRAL_NAMED.match(text, end):  # [TOOL_CALLS]name[ARGS]{…}, name{…} (several may follow)
            a = named.end()
            b = _json_end(text, a) if text[a:a + 1] in "{[" else a
            try:
                args, why = _arguments(json.loads(text[a:b])) if b > a else ({}, "no arguments after [ARGS]")
            except json.JSONDecodeError:
                args, why = {}, "truncated JSON" if b == len(text) else "invalid JSON"
            calls.append(ToolCall(named.group(1), args, "mistral", m.start() if not calls else end, b, why))
            end = b
            nxt = _MISTRAL.match(text, end)
            if nxt:
                end = nxt.end()
        if not calls:
            calls = [ToolCall(None, {}, "mistral", m.start(), m.end(), "no call after [TOOL_CALLS]")]
        done = end
        yield m.start(), end, calls


_OPENING = re.compile(r"[\[{]")
# What may follow the opening bracket of a JSON value: a key or the end of an object, any value in a list.
_JSON_START = re.compile(r"""\{\s*["'}]|\[\s*[\[{"'\d\-\]tfn]""")


def _decode_at(dec: json.JSONDecoder, text: str, i: int) -> tuple[Any, int]:
    """`dec.raw_decode(text, i)` in a window that doubles until the value ends or fails inside it: a failed
    raw_decode on the whole text costs O(i) (its error counts the lines before i), which made answers full of
    JSON-like starts quadratic. A JSON value ends where its last bracket closes: decoded in a window that
    holds it, it is the same value."""
    w = 4096
    while True:
        doc = text[i:i + w]
        try:
            value, end = dec.raw_decode(doc)
            return value, i + end
        except json.JSONDecodeError as exc:
            cut = exc.pos >= len(doc) - 8 or exc.msg.startswith("Unterminated string")
            if i + len(doc) >= len(text) or not cut:
                raise
        w *= 2


def _json(text: str, names: Collection[str]) -> Iterator[tuple[int, int, list[ToolCall]]]:
    dec = json.JSONDecoder()
    i = 0
    while True:
        m = _OPENING.search(text, i)
        if m is None:
            return
        i = m.start()
        if not _JSON_START.match(text, i):  # "[THINK]", "{x}": not JSON, and raw_decode's error would cost O(i)
            i += 1
            continue
        try:
            value, end = _decode_at(dec, text, i)
        except RecursionError:  # nested a thousand deep: data, and nothing inside it is a call
            i = _json_end(text, i)
            continue
        except json.JSONDecodeError:
            if text[i] == "{" and _CALL_START.match(text, i):
                end = _json_end(text, i)
                body = text[i:end]
                if _PLACEHOLDER.search(body):
                    yield i, end, []
                else:
                    named = _NAME_IN_TEXT.search(body)
                    why = "truncated JSON" if end == len(text) and not body.rstrip().endswith("}") else "invalid JSON"
                    yield i, end, [ToolCall(named.group(1) if named else None, {}, "json", i, end, why)]
                i = end
            else:
                i += 1
            continue
        try:
            found = _from_value(value)
        except _NotACall:
            if isinstance(value, (dict, list)) and value:
                yield i, end, []  # data or an echoed tool schema: hide it, look no further inside
                i = end
            else:
                i += 1
            continue
        form = "openai" if isinstance(value, dict) and ("tool_calls" in value or isinstance(value.get("function"), dict)) \
            else "json"
        yield i, end, [ToolCall(n, a, form, i, end, why) for n, a, why in found]
        i = end


_CODE_SPAN = re.compile(r"`([^`\n]+)`")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")


def _segments(text: str) -> Iterator[tuple[int, str]]:
    """Where a pythonic call may stand on its own: each line, and each inline code span."""
    pos = 0
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped and not stripped.startswith("```"):
            lead = len(line) - len(line.lstrip())
            body = stripped
            bullet = _BULLET.match(body)
            if bullet:
                lead += bullet.end()
                body = body[bullet.end():]
            if body.startswith("`") and body.endswith("`") and body.count("`") == 2:
                lead += 1
                body = body[1:-1]
            yield pos + lead, body.rstrip(";")
            for m in _CODE_SPAN.finditer(line):
                if m.group(0) != stripped:
                    yield pos + m.start(1), m.group(1)
        pos += len(line)


def _literal(node: ast.expr) -> Any:
    if isinstance(node, ast.Name):  # app=chrome: a bare word is the string the model meant
        return node.id
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise SyntaxError(f"{ast.unparse(node)} is not a literal") from None


def _pythonic_call(node: ast.expr, names: Collection[str] | None, params: dict[str, list[str]]
                   ) -> tuple[str, dict[str, Any]]:
    """(name, arguments) of a call node; _NotACall unless it calls a plain name (in `names`, when given)."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
        raise _NotACall
    name = node.func.id
    if names is not None and name not in names:
        raise _NotACall
    args: dict[str, Any] = {}
    order = params.get(name, [])
    if len(node.args) > len(order):
        raise SyntaxError(f"{len(node.args)} positional arguments for {len(order)} parameters")
    for k, v in zip(order, node.args):
        args[k] = _literal(v)
    for kw in node.keywords:
        if kw.arg is None:
            raise SyntaxError("**kwargs")
        args[kw.arg] = _literal(kw.value)
    return name, args


def _pythonic_calls(tree: ast.expr, names: Collection[str] | None, params: dict[str, list[str]], form: str,
                    start: int, end: int) -> list[ToolCall]:
    """The calls of a parsed call or list of calls ([] when one element is not a call: prose, data)."""
    nodes = tree.elts if isinstance(tree, (ast.List, ast.Tuple)) else [tree]
    calls = []
    for node in nodes:
        try:
            name, args = _pythonic_call(node, names, params)
            calls.append(ToolCall(name, args, form, start, end))
        except _NotACall:
            return []
        except SyntaxError as exc:
            fn = node.func.id if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) else None
            calls.append(ToolCall(fn, {}, form, start, end, f"arguments are not literals ({exc})"))
    return calls


def _parse_python(code: str) -> ast.expr | None:
    try:
        return ast.parse(code, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # ValueError: a NUL byte
        return None


def _call_head(names: Collection[str], before: str) -> re.Pattern[str]:
    """`before` then a catalog tool's name and its opening parenthesis (the longest name first)."""
    return re.compile(before + "(" + "|".join(map(re.escape, sorted(names, key=len, reverse=True))) + r")\(")


def _lists_in_prose(text: str, names: Collection[str], params: dict[str, list[str]]
                    ) -> Iterator[tuple[int, int, list[ToolCall]]]:
    """Bracketed lists of catalog calls anywhere, inside a sentence too ("Voici : [mute_tool()] ..."), as
    SGLang's and vLLM's pythonic parsers read them; not inside a quoted string (a JSON value). A list cut off
    at the end of the answer is an unclosed attempt."""
    head = _call_head(names, r"\[\s*")
    i = 0
    while m := head.search(text, i):
        k = m.start() - 1
        while k >= 0 and text[k] in " \t":
            k -= 1
        if k >= 0 and text[k] in "\"'":
            i = m.end()
            continue
        end = _bracket_end(text, m.start(), "[({", "])}")
        if end is None:  # runs to the end of the answer: cut off
            yield m.start(), len(text), [ToolCall(m.group(1), {}, "pythonic", m.start(), len(text), "unclosed call")]
            return
        tree = _parse_python(text[m.start():end])
        calls = _pythonic_calls(tree, names, params, "pythonic", m.start(), end) if tree is not None else []
        if calls:
            yield m.start(), end, calls
        i = end  # a list that is not a list of calls is data, what it nests too (and each span is read once)


def pythonic_finder(params: dict[str, list[str]]) -> Finder:
    """The pythonic finder for a catalog: `params` maps each tool to its parameter names, in order
    (for positional arguments). A call standing on its own (a line, a code span), then a bracketed list of
    calls anywhere."""

    def find(text: str, names: Collection[str]) -> Iterator[tuple[int, int, list[ToolCall]]]:
        if not names:
            return
        head = _call_head(names, r"\[?\s*")
        taken = []
        for off, seg in _segments(text):
            if not head.match(seg):
                continue
            end = off + len(seg)
            tree = _parse_python(seg)
            if tree is None:
                if _bracket_end(seg, seg.find("("), "(", ")") is None:  # never closed: cut off or broken
                    taken.append((off, end))
                    yield off, end, [ToolCall(head.match(seg).group(1), {}, "pythonic", off, end, "unclosed call")]
                continue  # closed, then more words: a call inside a sentence is prose (unless bracketed: below)
            calls = _pythonic_calls(tree, names, params, "pythonic", off, end)
            if calls:
                taken.append((off, end))
                yield off, end, calls
        yield from _lists_in_prose(_blank(text, taken), names, params)

    return find


_PYTHON_BLOCK = re.compile(r"<\|python_start\|>(.*?)(?:<\|python_end\|>|(?=<\|python_start\|>)|\Z)", re.DOTALL)


def _llama4(text: str, names: Collection[str]) -> Iterator[tuple[int, int, list[ToolCall]]]:
    """Llama 4: <|python_start|>[name(…), …]<|python_end|> (end tag optional at the end), whatever tool it
    names (it is a call block, like <tool_call>). Positional arguments are not named here (no catalog)."""
    for m in _PYTHON_BLOCK.finditer(text):
        body = _strip_fence(m.group(1))
        tree = _parse_python(body) if body else None
        calls = _pythonic_calls(tree, None, {}, "llama4", m.start(), m.end()) if tree is not None else []
        if not calls:
            named = re.match(r"\[?\s*([A-Za-z_]\w*)\(", body)
            why = "empty call block" if not body else "not a python call"
            calls = [ToolCall(named.group(1) if named else None, {}, "llama4", m.start(), m.end(), why)]
        yield m.start(), m.end(), calls


FORMATS: tuple[tuple[str, Finder], ...] = (
    ("hermes", _hermes),
    ("mistral", _mistral),
    ("function", _function_tags),
    ("llama4", _llama4),
    # ("pythonic", pythonic_finder(catalog)) runs here, before the JSON finder: a list or dict argument of a
    # pythonic call is valid JSON that the JSON finder would take as data and hide
    ("json", _json),  # also the OpenAI shapes
)


def parse(answer: str, params: dict[str, list[str]]) -> tuple[list[ToolCall], str]:
    """Every call attempt in `answer` by position, and the answer's prose (calls blanked out).

    `params` maps each catalog tool to its parameter names (pythonic calls are only recognised for
    catalog tools, and their positional arguments are named from it)."""
    text = answer
    calls: list[ToolCall] = []
    for _, finder in (*FORMATS[:-1], ("pythonic", pythonic_finder(params)), FORMATS[-1]):
        spans = []
        for start, end, found in finder(text, params.keys()):
            calls.extend(found)
            spans.append((start, end))
        text = _blank(text, spans)
    calls.sort(key=lambda c: c.start)
    return calls, text


def _blank(text: str, spans: list[tuple[int, int]]) -> str:
    """`text` with each span replaced by as many spaces, rebuilt once (linear in the text, whatever the number
    of spans)."""
    out, pos = [], 0
    for start, end in sorted(spans):
        start = max(start, pos)
        if end > start:
            out += [text[pos:start], " " * (end - start)]
            pos = end
    out.append(text[pos:])
    return "".join(out)
