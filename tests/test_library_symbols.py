"""Every private library symbol the code relies on still exists, with the parameters and attributes it
uses. Each module that reaches into transformers, bitsandbytes or peft internals lists them in its
docstring, one per indented line; this test reads those lists, so a new symbol is tested as soon as it
is written down, and an upgrade that moves one fails here in a second with its name, not in a model load.

A line is `dotted.path` (must resolve), `dotted.path(a, b)` (a callable taking parameters a and b), or
`dotted.path: x, y` (its source code names x and y: attributes set at run time); `# …` is a comment.
"""

from __future__ import annotations

import importlib
import inspect
import re

import pytest

MODULES = ["jarvis_bench.backends.moe_4bit", "jarvis_bench.backends.moe_lora", "jarvis_bench.backends.decode"]
LINE = re.compile(r"^ {4}(?P<path>[A-Za-z_][\w.]*)(?:\((?P<params>[^)]*)\))?(?::\s*(?P<names>[\w., ]+))?\s*(?:#.*)?$")


def _listed(module: str) -> list[str]:
    """The indented symbol lines of a module's docstring (read as text: the module imports torch)."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin
    source = open(spec.origin, encoding="utf-8").read()
    doc = source.split('"""')[1]
    lines = [ln for ln in doc.splitlines() if LINE.match(ln) and ln.strip().split(".")[0] in
             ("transformers", "peft", "bitsandbytes", "torch", "accelerate")]
    assert lines, f"{module}'s docstring lists no private symbols"
    return lines


def _resolve(path: str):
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(path)


CASES = [(m, line) for m in MODULES for line in _listed(m)]


@pytest.mark.parametrize("module,line", CASES, ids=[f"{m.rsplit('.', 1)[-1]}:{ln.split()[0]}" for m, ln in CASES])
def test_private_symbol_still_there(module, line):
    m = LINE.match(line)
    path = m.group("path")
    try:
        obj = _resolve(path)
    except (ImportError, AttributeError) as exc:
        pytest.fail(f"{path} (used by {module}) is gone in the installed version: {exc}; "
                    "keep the version pyproject.toml caps, or port the module")
    if m.group("params"):
        wanted = [p.strip() for p in m.group("params").split(",") if p.strip()]
        params = inspect.signature(obj).parameters
        missing = [p for p in wanted if p not in params]
        assert not missing, f"{path} no longer takes {missing} (used by {module})"
    if m.group("names"):
        source = inspect.getsource(obj)
        missing = [n.split(".")[-1] for n in (x.strip() for x in m.group("names").split(",")) if n
                   and not re.search(rf"\b{re.escape(n.split('.')[-1])}\b", source)]
        assert not missing, f"{path} no longer mentions {missing} (used by {module})"


def test_every_module_that_imports_private_names_lists_them():
    """A module importing from a private-looking library path (`transformers.integrations`, `…_utils`,
    `quantizers`) must carry the list above, or this test would not guard it."""
    import pathlib

    root = pathlib.Path(importlib.util.find_spec("jarvis_bench").origin).parent
    private = re.compile(r"from (transformers\.(integrations|quantizers|cache_utils|masking_utils|core_model_loading)"
                         r"|bitsandbytes\.functional|peft\.utils)")
    listed = {m.rsplit(".", 1)[-1] for m in MODULES}
    offenders = [p.relative_to(root).as_posix() for p in root.rglob("*.py")
                 if private.search(p.read_text(encoding="utf-8")) and p.stem not in listed]
    assert not offenders, f"{offenders} import library internals: list them in the docstring and in MODULES here"
