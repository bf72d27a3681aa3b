"""check_setup.py through main(argv): one line per check, FAIL lines with their fix, exit codes, --json."""

from __future__ import annotations

import json
import re

import pytest

from jarvis_bench import checks
from jarvis_bench.commands import check_setup
from jarvis_bench.demo import DEMO_ADAPTER

from .conftest import write_config


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Never depend on the network: the hub is 'unreachable' by configuration."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _run(capsys, *argv):
    code = check_setup.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def _lines(out: str, status: str, name: str) -> list[str]:
    return [ln for ln in out.splitlines() if ln.startswith(status) and ln[6:].startswith(name)]


def test_demo_is_ready(capsys, demo_base):
    code, out, err = _run(capsys, "--demo")
    assert code == 0, out
    assert out.rstrip().splitlines()[-1].startswith(check_setup.OK_LINE)
    assert not [ln for ln in out.splitlines() if ln.startswith("FAIL")]
    assert _lines(out, "OK", "python") and _lines(out, "OK", "config")
    assert _lines(out, "OK", "package") and any("torch" in ln for ln in _lines(out, "OK", "package"))
    assert any("made for HuggingFaceTB/SmolLM2-135M-Instruct" in ln for ln in _lines(out, "OK", "adapter"))
    assert any("offline copy" in ln for ln in _lines(out, "OK", "embedder"))
    assert err == ""


def test_json_output(capsys, demo_base):
    code, out, _ = _run(capsys, "--demo", "--json")
    data = json.loads(out)
    assert code == 0 and data["ok"] is True and data["failures"] == 0
    assert {"status", "name", "detail", "fix"} <= set(data["checks"][0])
    assert {c["name"] for c in data["checks"]} >= {"python", "package", "config", "model", "torch", "adapter", "embedder"}


def test_the_real_config_on_this_machine_explains_what_it_needs(capsys):
    """Qwen3-30B-A3B, not cached, hub off: model FAIL with the fix, and the memory it would need."""
    code, out, _ = _run(capsys)
    assert code == 1
    assert out.rstrip().splitlines()[-1].startswith("FAIL")
    model = _lines(out, "FAIL", "model")
    assert model and "Qwen/Qwen3-30B-A3B" in model[0] and "HF_HUB_OFFLINE" in model[0]
    size = next(ln for ln in out.splitlines() if "model size" in ln)
    assert "MoE" in size and "30.53 B parameters" in size and "published config.json" in size
    vram = next(ln for ln in out.splitlines() if "vram" in ln)
    need = [float(x) for x in re.findall(r"~(\d+\.\d) GiB", vram)]
    assert "4bit" in vram and "weights 15.5" in vram  # experts quantized too: 15.5 GiB of weights, not ~57
    assert 17 <= need[0] <= 18 and 19.5 <= need[1] <= 20.5 and "30 prompts" in vram
    assert "experts forward 0.75" in vram  # one layer's gate_up stack, dequantized at once by the grouped forward
    assert not _lines(out, "WARN", "moe") and not _lines(out, "FAIL", "moe")


def test_broken_config_names_line_and_column(capsys, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"model": {"base": "x",}}', encoding="utf-8")
    code, out, _ = _run(capsys, "--config", str(bad))
    assert code == 1
    fail = _lines(out, "FAIL", "config")
    assert fail and f"{bad}:1:" in fail[0] and "invalid JSON" in fail[0]
    assert "model" not in {ln[6:17].strip() for ln in out.splitlines()}  # later checks need a config


def test_unknown_key_is_named(capsys, tmp_path, config_data):
    data = json.loads(json.dumps(config_data))
    data["generation"]["max_new_token"] = 64
    code, out, _ = _run(capsys, "--config", str(write_config(tmp_path / "c.json", data)))
    assert code == 1 and 'did you mean "max_new_tokens"' in _lines(out, "FAIL", "config")[0]


def _local_config(tmp_path, config_data, base, adapters):
    data = json.loads(json.dumps(config_data))
    data["model"].update(base=str(base), base_name=None, adapters=adapters, quantization="none")
    return write_config(tmp_path / "local.json", data)


def test_missing_adapter_fails_with_its_path(capsys, tmp_path, config_data, demo_base):
    missing = tmp_path / "output" / "run-9" / "final"
    code, out, _ = _run(capsys, "--config", str(_local_config(tmp_path, config_data, demo_base, [str(missing)])))
    assert code == 1
    fail = _lines(out, "FAIL", "adapter")
    assert fail and str(missing) in fail[0] and "not found" in fail[0]
    assert _lines(out, "OK", "model")  # the local demo folder itself is fine


def test_adapter_made_for_another_base_fails(capsys, tmp_path, config_data):
    """The demo LoRA (hidden 576) against a Qwen3-shaped base (hidden 64): caught from the headers."""
    from transformers import Qwen3Config

    base = tmp_path / "qwen3-tiny"
    base.mkdir()
    Qwen3Config(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, head_dim=16, vocab_size=300).save_pretrained(base)
    code, out, _ = _run(capsys, "--config", str(_local_config(tmp_path, config_data, base, [str(DEMO_ADAPTER)])))
    assert code == 1
    fail = _lines(out, "FAIL", "adapter")
    assert fail and "does not fit" in fail[0] and "lora_" in fail[0] and "wide" in fail[0] and "->" in fail[0]


def test_no_adapter_is_a_warning_not_a_failure(capsys, tmp_path, config_data, demo_base):
    code, out, _ = _run(capsys, "--config", str(_local_config(tmp_path, config_data, demo_base, "auto")))
    assert code == 0, out
    assert _lines(out, "WARN", "adapter") and "1 warning" in out.splitlines()[-1]


def test_missing_or_old_package_fails(capsys, monkeypatch, demo_base):
    monkeypatch.setattr(checks, "_requirements", lambda: ["surely-not-installed-pkg>=1", "torch>=999",
                                                         "numpy>=1", "bitsandbytes>=0.1 ; sys_platform == 'never'"])
    code, out, _ = _run(capsys, "--demo")
    assert code == 1
    fails = [ln for ln in out.splitlines() if ln.startswith("FAIL")]
    assert any("surely-not-installed-pkg is not installed" in ln and "uv sync" in ln for ln in fails)
    assert any("torch" in ln and ">=999" in ln for ln in fails)
    assert not any("bitsandbytes" in ln for ln in out.splitlines())  # marker excludes it
    assert "2 checks failed" in out.splitlines()[-1]


def test_model_folder_without_config(capsys, tmp_path, config_data):
    empty = tmp_path / "empty-model"
    empty.mkdir()
    code, out, _ = _run(capsys, "--config", str(_local_config(tmp_path, config_data, empty, [])))
    assert code == 1 and "has no config.json" in _lines(out, "FAIL", "model")[0]


def test_cpu_memory_verdicts():
    """The RAM line: a 30 B model cannot run on a 24 GiB CPU machine; a 135 M one can."""
    from jarvis_bench import config

    cfg = config.load(config.default_config_path())
    big = checks.ModelSource("hub", "x", params=checks.sizing.params_from_name("Qwen/Qwen3-30B-A3B"))
    small = checks.ModelSource("hub", "x", params=checks.sizing.params_from_name("SmolLM2-135M"))
    cfg.model.device = "cpu"
    avail, _ = checks.sizing.ram_gib()
    cfg.model.quantization = "none"  # float32 on the CPU: ~112 GiB
    big_lines = {c.name: c for c in checks.check_hardware(cfg, big)}
    if avail < 100:
        assert big_lines["memory"].status == "FAIL" and "CUDA GPU" in big_lines["memory"].fix
    cfg.model.quantization = "4bit"  # 4-bit works on the CPU too: it fits, but takes hours
    big_lines = {c.name: c for c in checks.check_hardware(cfg, big)}
    assert "4-bit" in big_lines["memory"].detail
    if avail > 20:
        assert big_lines["memory"].status == "WARN" and "hours" in big_lines["memory"].detail
    small_lines = {c.name: c for c in checks.check_hardware(cfg, small)}
    assert small_lines["memory"].status == "OK"


def test_unknown_backend_and_replay(capsys, tmp_path, config_data):
    data = json.loads(json.dumps(config_data))
    data["model"]["backend"] = "transformer"
    code, out, _ = _run(capsys, "--config", str(write_config(tmp_path / "b.json", data)))
    assert code == 1 and 'did you mean "transformers"' in _lines(out, "FAIL", "backend")[0]
    # --demo replaces the backend, but a misspelt one in the user's config is still said
    code, out, _ = _run(capsys, "--config", str(tmp_path / "b.json"), "--demo")
    assert code == 1 and 'did you mean "transformers"' in _lines(out, "FAIL", "backend")[0]
    data["model"].update(backend="replay", replay_file="answers.jsonl")
    code, out, _ = _run(capsys, "--config", str(write_config(tmp_path / "r.json", data)))
    assert code == 1 and str(tmp_path / "answers.jsonl") in _lines(out, "FAIL", "backend")[0]
    (tmp_path / "answers.jsonl").write_text("", encoding="utf-8")
    code, out, _ = _run(capsys, "--config", str(tmp_path / "r.json"))
    assert code == 0 and _lines(out, "OK", "backend") and not _lines(out, "OK", "torch")


def test_8bit_on_a_moe_model_fails_with_the_fix():
    from jarvis_bench import config

    cfg = config.load(config.default_config_path())
    params = checks.sizing.count_params(checks.sizing.KNOWN_CONFIGS["Qwen/Qwen3-30B-A3B"])
    src = checks.ModelSource("hub", "x", params=params)
    cfg.model.quantization = "8bit"
    lines = {c.name: c for c in checks.check_hardware(cfg, src)}
    assert lines["moe"].status == "FAIL" and "experts" in lines["moe"].detail and '"4bit"' in lines["moe"].fix
    cfg.model.quantization = "4bit"
    assert "moe" not in {c.name for c in checks.check_hardware(cfg, src)}


def test_vllm_checks_what_the_engine_would_refuse(monkeypatch):
    """The default config on the vllm backend: the bitsandbytes plugin must be there, and a 4-bit MoE
    with an adapter cannot run on vLLM (no LoRA kernel for bitsandbytes MoE); bf16 can."""
    import importlib.util

    from jarvis_bench import config

    cfg = config.load(config.default_config_path())
    cfg.model.backend = "vllm"
    cfg.model.adapters = [str(DEMO_ADAPTER)]
    moe = checks.ModelSource("hub", "x", config=checks.sizing.KNOWN_CONFIGS["Qwen/Qwen3-30B-A3B"])
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm_bnb_plugin" else real(name, *a))
    from jarvis_bench.backends.vllm_engine import VllmBackend

    monkeypatch.setattr(checks, "gpus", lambda: [("H200", 139.0, 139.0)])
    found = list(VllmBackend.setup_checks(cfg, moe))
    assert [c.status for c in found] == ["FAIL", "FAIL"]
    assert "vllm-bnb-plugin" in found[0].detail and found[0].fix == "run `uv sync --extra vllm`"
    assert "no LoRA kernel" in found[1].detail and '"none"' in found[1].fix
    cfg.model.quantization = "none"
    found = list(VllmBackend.setup_checks(cfg, moe))
    assert [c.status for c in found] == ["OK"] and "1 adapter(s) through one LoRA slot" in found[0].detail


def test_vllm_without_a_gpu_is_said_before_the_model_checks(capsys, tmp_path, config_data, monkeypatch):
    """Nothing else matters for the vllm backend without a CUDA GPU: that line comes first, as a user fixes it."""
    monkeypatch.setattr(checks, "gpus", lambda: [])
    data = json.loads(json.dumps(config_data))
    data["model"]["backend"] = "vllm"
    code, out, _ = _run(capsys, "--config", str(write_config(tmp_path / "v.json", data)))
    lines = out.splitlines()
    gpu = next(i for i, ln in enumerate(lines) if "needs a CUDA GPU" in ln)
    model = next(i for i, ln in enumerate(lines) if ln[6:].startswith("model"))
    assert code == 1 and lines[gpu].startswith("FAIL") and gpu < model
