from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from jarvis_bench import adapters, config
from jarvis_bench.errors import AdapterError

from .conftest import CONFIG


def make_adapter(folder: Path, *, base="Qwen/Qwen3-30B-A3B", peft_type="LORA", r=8, weights=True, mtime=None):
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {"peft_type": peft_type, "r": r, "target_modules": ["q_proj", "v_proj"], "base_model_name_or_path": base}
    (folder / "adapter_config.json").write_text(json.dumps(cfg))
    if weights:
        w = folder / "adapter_model.safetensors"
        w.write_bytes(b"weights-" + str(folder).encode())
        if mtime is not None:
            os.utime(w, (mtime, mtime))
    return folder


@pytest.fixture
def cfg(tmp_path):
    c = config.load(CONFIG)
    c.base_dir = tmp_path
    return c


def names(variants):
    return [v.name for v in variants]


def test_auto_takes_the_newest_final(cfg, tmp_path):
    make_adapter(tmp_path / "output" / "run-old" / "final", mtime=1_000_000)
    make_adapter(tmp_path / "output" / "run-new" / "final", mtime=2_000_000)
    make_adapter(tmp_path / "output" / "no-final" / "checkpoint-5")
    assert names(adapters.discover(cfg)) == ["base", "run-new"]


def test_all_takes_every_final_newest_first(cfg, tmp_path):
    make_adapter(tmp_path / "output" / "a" / "final", mtime=1_000_000)
    make_adapter(tmp_path / "output" / "b" / "final", mtime=3_000_000)
    make_adapter(tmp_path / "output" / "c" / "final", mtime=2_000_000)
    (tmp_path / "output" / "d" / "final").mkdir(parents=True)  # no adapter_config.json: not a candidate
    cfg.model.adapters = "all"
    assert names(adapters.discover(cfg)) == ["base", "b", "c", "a"]


def test_no_adapter_means_base_only_with_a_notice(cfg, caplog):
    with caplog.at_level(logging.WARNING):
        assert names(adapters.discover(cfg)) == ["base"]
    assert "No LoRA adapter found" in caplog.text and "base model alone" in caplog.text


def test_explicit_list_keeps_order_names_and_dedups(cfg, tmp_path):
    make_adapter(tmp_path / "x" / "final")
    make_adapter(tmp_path / "y" / "x")  # also named "x"
    make_adapter(tmp_path / "plain-folder")
    cfg.model.adapters = ["x/final", "y/x", str(tmp_path / "plain-folder")]
    vs = adapters.discover(cfg)
    assert names(vs) == ["base", "x", "x-2", "plain-folder"]
    assert vs[1].rank == 8 and vs[1].target_modules == ("q_proj", "v_proj") and len(vs[1].content_hash) == 64


def test_content_hash_changes_with_weights(tmp_path):
    a = make_adapter(tmp_path / "a")
    h1 = adapters.inspect_adapter(a).content_hash
    (a / "adapter_model.safetensors").write_bytes(b"other")
    assert adapters.inspect_adapter(a).content_hash != h1


@pytest.mark.parametrize(
    "setup, fragment",
    [
        (lambda p: None, "adapter folder not found"),
        (lambda p: p.mkdir(parents=True), "has no adapter_config.json"),
        (lambda p: make_adapter(p, peft_type="IA3"), "only LoRA adapters"),
        (lambda p: make_adapter(p, r=0), "LoRA rank"),
        (lambda p: make_adapter(p, weights=False), "has no adapter weights"),
        (lambda p: (p.mkdir(parents=True), (p / "adapter_config.json").write_text("{oops")), "unreadable adapter config"),
    ],
    ids=["missing", "no-config", "not-lora", "bad-rank", "no-weights", "corrupt-config"],
)
def test_bad_adapter_folders(tmp_path, setup, fragment):
    folder = tmp_path / "run" / "final"
    setup(folder)
    with pytest.raises(AdapterError) as info:
        adapters.inspect_adapter(folder)
    assert fragment in str(info.value) and str(folder) in str(info.value)


def test_adapter_for_another_base_warns(cfg, tmp_path, caplog):
    make_adapter(tmp_path / "output" / "r" / "final", base="meta-llama/Llama-3.1-8B")
    with caplog.at_level(logging.WARNING):
        adapters.discover(cfg)
    assert "trained on 'meta-llama/Llama-3.1-8B'" in caplog.text


def test_adapter_for_same_base_by_short_name_does_not_warn(cfg, tmp_path, caplog):
    make_adapter(tmp_path / "output" / "r" / "final", base="/models/Qwen3-30B-A3B")
    with caplog.at_level(logging.WARNING):
        adapters.discover(cfg)
    assert "trained on" not in caplog.text
