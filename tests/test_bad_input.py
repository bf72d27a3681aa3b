"""Every bad input of the benchmark gets ONE line on stderr naming the file/field/value and the fix,
the right exit code, and no traceback (a battery of bad configs, prompts, adapters and flags, through `benchmark.main(argv)`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jarvis_bench.commands import benchmark
from jarvis_bench.demo import DEMO_ADAPTER

from .conftest import write_config


def _edit(config_data, fn):
    data = json.loads(json.dumps(config_data))
    fn(data)
    return data


def _set(path, value):
    def fn(data):
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return fn


CONFIG_CASES = [
    # (id, edit, expected fragments)
    ("unknown-key", _set(("generation", "max_new_token"), 64), ['did you mean "max_new_tokens"']),
    ("wrong-type", _set(("generation", "max_new_tokens"), "beaucoup"), ["generation.max_new_tokens", '"beaucoup"']),
    ("empty-prompts", _set(("prompts",), []), ["prompts", "at least 1"]),
    ("duplicate-id", lambda d: d["prompts"][1].update(id=d["prompts"][0]["id"]), ["duplicate id", "cmd-01"]),
    ("unknown-tool", lambda d: d["prompts"][0].update(expected_tool="open_ap_tool"),
     ['expected_tool = "open_ap_tool" is not in the tool catalog', 'did you mean "open_app_tool"']),
    ("category-without-prompts", _set(("correction_categories",), ["corrections_vocales", "meteo"]),
     ['correction_categories: "meteo" has no prompts']),
    ("unknown-backend", _set(("model", "backend"), "vlm"), ['model.backend = "vlm" is not a backend',
                                                            'did you mean "vllm"']),
    ("openai-without-url", _set(("model", "backend"), "openai"), ["model.endpoint.base_url is required"]),
    ("adapter-missing", _set(("model", "adapters"), ["output/run-404/final"]),
     ["adapter folder not found", "run-404"]),
]


def _run(capsys, argv):
    code = benchmark.main([*argv, "--quiet"])
    err = capsys.readouterr().err
    return code, err


def _one_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(("case", "edit", "fragments"), CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_config_battery(case, edit, fragments, tmp_path, config_data, capsys):
    cfg = write_config(tmp_path / "cfg.json", _edit(config_data, edit))
    code, err = _run(capsys, ["--config", str(cfg), "--output-dir", str(tmp_path / "out")])
    line = _one_line(err)
    assert code == 2
    for f in fragments:
        assert f in line, line
    assert str(cfg) in line or "adapter" in line


def test_malformed_json_names_line_and_column(tmp_path, capsys):
    cfg = tmp_path / "cfg.json"
    cfg.write_text('{\n  "model": {"base": "x",}\n}', encoding="utf-8")
    code, err = _run(capsys, ["--config", str(cfg)])
    assert code == 2 and f"{cfg}:2:" in _one_line(err) and "invalid JSON" in err


def test_adapter_folder_without_config(tmp_path, capsys):
    folder = tmp_path / "run-1" / "final"
    folder.mkdir(parents=True)
    code, err = _run(capsys, ["--demo", "--adapter", str(folder), "--output-dir", str(tmp_path / "o")])
    assert code == 2 and "has no adapter_config.json" in _one_line(err)


def _copy_adapter(dest: Path) -> Path:
    dest.mkdir(parents=True)
    (dest / "adapter_config.json").write_bytes((DEMO_ADAPTER / "adapter_config.json").read_bytes())
    return dest


def test_corrupt_adapter_weights(tmp_path, capsys, demo_base):
    bad = _copy_adapter(tmp_path / "corrupt" / "final")
    (bad / "adapter_model.safetensors").write_bytes(b"\x00garbage, not safetensors")
    code, err = _run(capsys, ["--demo", "--adapter", str(bad), "--limit", "1", "--no-cache",
                              "--output-dir", str(tmp_path / "o")])
    line = _one_line(err.replace("Running on CPU: fine for the demo, very slow for a large model.\n", ""))
    assert code == 2 and str(bad) in line and "re-save or re-train" in line


def test_adapter_made_for_another_base(tmp_path, capsys, demo_base):
    import torch
    from safetensors.torch import load_file, save_file

    other = _copy_adapter(tmp_path / "other-base" / "final")
    tensors = load_file(DEMO_ADAPTER / "adapter_model.safetensors")
    save_file({k: torch.zeros(v.shape[0], 64) if "lora_A" in k else torch.zeros(64, v.shape[1])
               for k, v in tensors.items()}, other / "adapter_model.safetensors")
    code, err = _run(capsys, ["--demo", "--adapter", str(other), "--limit", "1", "--no-cache",
                              "--output-dir", str(tmp_path / "o")])
    line = _one_line(err.replace("Running on CPU: fine for the demo, very slow for a large model.\n", ""))
    assert code == 2 and "does not fit base" in line and str(other) in line


def test_results_folder_not_writable(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, err = _run(capsys, ["--demo", "--output-dir", str(blocker / "results")])
    line = _one_line(err)
    assert code == 2 and "--output-dir" in line and "writable" in line


@pytest.mark.parametrize(("argv", "fragment"), [
    (["--limit", "0"], "--limit: 0 must be at least 1"),
    (["--category", "meteo"], "--category 'meteo' has no prompts"),
    (["--batch-size", "zero"], "--batch-size"),
    (["--fail-below", "EXCELLENT"], "--fail-below"),
])
def test_bad_flags(argv, fragment, tmp_path, capsys):
    try:
        code = benchmark.main([*argv, "--output-dir", str(tmp_path), "--quiet"])
    except SystemExit as exc:  # argparse: usage line + error line, exit 2
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and "Traceback" not in err


class _Payload:
    """A pickle that would run a command when unpickled without weights_only."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_pickled_adapter_weights_never_execute(tmp_path, capsys, demo_base):
    """adapter_model.bin is loaded with weights_only=True: a malicious pickle is refused, its code never runs."""
    import torch

    evil = _copy_adapter(tmp_path / "evil" / "final")
    marker = tmp_path / "pwned"
    torch.save({"base_model.model.x.lora_A.weight": _Payload(marker)}, evil / "adapter_model.bin")
    code, err = _run(capsys, ["--demo", "--adapter", str(evil), "--limit", "1", "--no-cache",
                              "--output-dir", str(tmp_path / "o")])
    line = _one_line(err.replace("Running on CPU: fine for the demo, very slow for a large model.\n", ""))
    assert code == 2 and str(evil) in line
    assert not marker.exists()


def test_remote_code_is_off_unless_asked(config_data):
    from jarvis_bench import config

    assert config.ModelSection().trust_remote_code is False
    assert config_data["model"].get("trust_remote_code", False) is False


def test_a_door_run_in_process_gives_sigterm_back(tmp_path, capsys):
    """A door (analyze.main here) turns SIGTERM into a clean stop while it runs, and puts the caller's handler back
    when it returns (a test runner or a launcher calling it in-process must not inherit it)."""
    import signal

    from jarvis_bench.commands import analyze

    def mine(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        assert analyze.main(["--input", str(tmp_path / "none.json"), "--quiet"]) == 2
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)
