"""The rules of docs/ARCHITECTURE.md that a machine can check: which module may import which, and that
nothing outside `backends/` and the config schema tests a backend's name (it asks the backend)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "jarvis_bench"


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        out[name] = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return out


MODULES = _modules()


def _imports(name: str) -> set[str]:
    """Every jarvis_bench module `name` imports, at module level or inside a function, made absolute."""
    package = name if (PACKAGE.parent / (name.replace(".", "/") + "/__init__.py")).is_file() else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(MODULES[name]):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            if mod.startswith("jarvis_bench"):
                found.add(mod)
                found.update(f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in MODULES)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("jarvis_bench"))
    return found


def _in(mod: str, *prefixes: str) -> bool:
    return any(mod == p or mod.startswith(p + ".") for p in prefixes)


RULES = [
    # (modules the rule applies to, what they must not import, why)
    (("jarvis_bench.runner", "jarvis_bench.pipeline", "jarvis_bench.cache", "jarvis_bench.results"),
     lambda m: _in(m, "jarvis_bench.backends") and m not in ("jarvis_bench.backends", "jarvis_bench.backends.base"),
     "the generation loop knows backends only through the registry and base.Backend"),
    (("jarvis_bench.backends",),
     lambda m: _in(m, "jarvis_bench.runner", "jarvis_bench.pipeline", "jarvis_bench.analysis", "jarvis_bench.reports",
                   "jarvis_bench.commands"),
     "a backend answers prompts; it knows nothing of the loop, the statistics or the reports"),
    (("jarvis_bench.analysis", "jarvis_bench.verdict", "jarvis_bench.scoring", "jarvis_bench.metrics",
      "jarvis_bench.stats", "jarvis_bench.robustness", "jarvis_bench.overlap", "jarvis_bench.noisy"),
     lambda m: _in(m, "jarvis_bench.reports", "jarvis_bench.commands"),
     "numbers are computed apart from how they are shown"),
    (("jarvis_bench.reports",),
     lambda m: _in(m, "jarvis_bench.backends") and m not in ("jarvis_bench.backends", "jarvis_bench.backends.base"),
     "a writer reaches a backend only through the registry"),
    (("jarvis_bench.config", "jarvis_bench.errors", "jarvis_bench.fsutil", "jarvis_bench.text", "jarvis_bench.stats",
      "jarvis_bench.sizing", "jarvis_bench.gpu", "jarvis_bench.toolcalls", "jarvis_bench.phonemes"),
     lambda m: not _in(m, "jarvis_bench.errors", "jarvis_bench.fsutil"),
     "the floor imports nothing above it"),
]


@pytest.mark.parametrize("scope,forbidden,why", RULES, ids=[r[2][:40] for r in RULES])
def test_import_rules(scope, forbidden, why):
    broken = [f"{name} imports {m}" for name in MODULES if _in(name, *scope) for m in sorted(_imports(name))
              if forbidden(m) and not _in(m, name)]
    assert not broken, f"{why}: {broken}"


def test_no_backend_name_is_tested_outside_backends_and_the_config():
    from jarvis_bench.backends import names

    backend_names = set(names())
    found = []
    for name, tree in MODULES.items():
        if _in(name, "jarvis_bench.backends", "jarvis_bench.config"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                consts = [c for c in [node.left, *node.comparators] if isinstance(c, ast.Constant)]
                consts += [e for c in node.comparators if isinstance(c, (ast.Tuple, ast.List, ast.Set)) for e in c.elts
                           if isinstance(e, ast.Constant)]
                hit = [c.value for c in consts if c.value in backend_names]
                if hit and "backend" in ast.unparse(node):  # `"transformers" in sys.modules` is about a library
                    found.append(f"{name}:{node.lineno} compares with {hit}")
    assert not found, f"ask the backend (backends.backend_class(name)) instead: {found}"
