"""The docs cannot drift from the code: README's quick-start blocks are run, every documented command parses."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from .conftest import CONFIG, ROOT

DOCS = ("README.md", "INSTALLATION.md", "QUICKSTART.txt")
MARKER = "<!-- quickstart"
SCRIPTS = ("benchmark.py", "analyze_results.py", "check_setup.py", "quick_test.py")


def quickstart_commands() -> list[str]:
    """Every `uv run` line of the README blocks that follow a quickstart marker."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    cmds = []
    for block in re.findall(re.escape(MARKER) + r"[^\n]*\n```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            cmd = line.split("#", 1)[0].strip()
            if cmd.startswith("uv run "):
                cmds.append(cmd)
    return cmds


def documented_commands() -> list[tuple[str, str]]:
    """(doc, command) for every `uv run python X.py …`, `uv run jarvis-bench …` and `./run_benchmark.sh …`."""
    pat = re.compile(r"(uv run python [\w/]+\.py[^\n#`|&]*|uv run jarvis-bench[^\n#`|&]*|\./run_benchmark\.sh[^\n#`|&]*"
                     r"|run_benchmark\.bat[^\n#`|&(]*)")
    out = []
    for doc in DOCS:
        for m in pat.finditer((ROOT / doc).read_text(encoding="utf-8")):
            cmd = m.group(1).strip().rstrip(".,)")
            if "<" not in cmd and "->" not in cmd:  # placeholders and the layout listing are not commands
                out.append((doc, cmd))
    return out


def test_readme_has_the_two_fresh_machine_commands():
    cmds = quickstart_commands()
    assert "uv run python benchmark.py --demo" in cmds and "uv run pytest" in cmds
    assert {"uv run python check_setup.py --demo", "uv run python quick_test.py --demo",
            "uv run python analyze_results.py"} <= set(cmds)


def _parser_for(argv: list[str]):
    """The argparse parser behind a documented command, and the arguments it is given."""
    from jarvis_bench import cli
    from jarvis_bench.commands import analyze, benchmark, check_setup, quick_test, run_all

    by_script = {"benchmark.py": benchmark, "analyze_results.py": analyze, "check_setup.py": check_setup,
                 "quick_test.py": quick_test}
    if argv[:2] == ["uv", "run"]:
        argv = argv[2:]
    if argv[0] == "python":
        script = argv[1]
        if script not in by_script:  # demo/ and benchmarks/ scripts: not user-facing doors
            return None, []
        return by_script[script].build_parser(), argv[2:]
    if argv[0] == "jarvis-bench":
        import importlib

        return importlib.import_module(cli.COMMANDS[argv[1]][0]).build_parser(), argv[2:]
    return run_all.build_parser(), argv[1:]  # the launchers pass their arguments to `jarvis-bench run`


@pytest.mark.parametrize(("doc", "command"), documented_commands())
def test_documented_command_parses(doc, command):
    parser, args = _parser_for(shlex.split(command))
    if parser is None:
        return
    if "--help" in args:
        return
    try:
        parser.parse_args(args)
    except SystemExit as exc:
        pytest.fail(f"{doc}: `{command}` is rejected by its parser (exit {exc.code})")


def test_every_script_is_documented():
    text = "".join((ROOT / d).read_text(encoding="utf-8") for d in DOCS)
    for script in (*SCRIPTS, "run_benchmark.bat", "run_benchmark.sh"):
        assert script in text


@pytest.fixture
def workdir(tmp_path):
    """A user's folder: the four scripts and the config, nothing else (the package comes from the venv)."""
    for name in (*SCRIPTS, CONFIG.name):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def test_readme_quickstart_commands_run(workdir, demo_run):
    """Each quick-start command, as written (with this test's Python for `uv run python`), succeeds in order."""
    for cmd in quickstart_commands():
        argv = shlex.split(cmd)[2:]
        if argv[0] == "pytest":
            continue  # this is it
        if argv[0] == "python":
            argv[0] = sys.executable
        proc = subprocess.run(argv, cwd=workdir, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"`{cmd}` failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        if "check_setup" in cmd:
            assert "OK CONFIGURATION OK" in proc.stdout
        if "quick_test" in cmd:
            assert "OK QUICK TEST RÉUSSI" in proc.stdout
    for name in ("benchmark_results.json", "benchmark_report.txt", "benchmark_charts.png"):
        assert (workdir / "results" / name).is_file(), name


def test_readme_config_snippets_are_valid():
    """Every ```json block of the README that is a `"model"` or `"endpoint"` section parses into the
    config's schema (a recipe with a misspelt field would be refused by the tool)."""
    from jarvis_bench import config

    blocks = re.findall(r"```json\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), flags=re.S)
    checked = 0
    for block in blocks:
        text = " ".join(block.split())
        if not text.startswith(('"model":', '"endpoint":')):
            continue
        section = json.loads("{" + text + "}")
        if "model" in section:
            config.ModelSection(**section["model"])
        else:
            config.EndpointSection(**section["endpoint"])
        checked += 1
    assert checked >= 3
