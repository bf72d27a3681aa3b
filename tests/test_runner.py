"""The runner's loop on a backend without a model: every prompt answered by every variant in order, answers
kept in the cache and the results folder as they come, a rerun answered from the cache, failures kept as
failures, a context overflow refused or skipped, a Ctrl+C or a timeout keeping what was finished."""

from __future__ import annotations

import json

import pytest

from jarvis_bench import config, runner
from jarvis_bench.adapters import Variant
from jarvis_bench.cache import GenerationCache
from jarvis_bench.errors import ConfigError
from tests.conftest import CONFIG, FakeBackend

VARIANTS = [Variant("base"), Variant("early", content_hash="a" * 64), Variant("late", content_hash="b" * 64)]


@pytest.fixture(scope="module")
def cfg():
    return config.load(CONFIG)


def _run(cfg, backend, tmp_path, cache, prompts=None, **kw):
    prompts = cfg.prompts[:4] if prompts is None else prompts
    return runner.run(cfg, backend, VARIANTS, prompts, out_dir=tmp_path / "out", cache=cache, progress=False, **kw)


def _lines(tmp_path):
    text = (tmp_path / "out" / runner.GENERATIONS_FILE).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.split("\n") if line]


def test_every_prompt_by_every_variant_in_order_and_on_disk(cfg, tmp_path):
    backend = FakeBackend()
    ids = [p.id for p in cfg.prompts[:4]]
    out = _run(cfg, backend, tmp_path, None)
    assert backend.calls == [(v.name, ids) for v in VARIANTS]  # one call per variant, prompts in config order
    assert out.generated == 12 and out.from_cache == 0 and out.missing == 0
    assert not out.timed_out and not out.interrupted
    assert out.generations[(ids[2], "late")].response == f"late answers {ids[2]}"
    lines = _lines(tmp_path)
    assert [(g["variant"], g["prompt_id"]) for g in lines] == [(v.name, i) for v in VARIANTS for i in ids]
    assert len({g["key"] for g in lines}) == 12  # each (prompt, variant) has its own cache key
    assert set(out.seconds_per_variant) == {"base", "early", "late"}
    assert backend.rechecked == ["base", "early", "late"]


def test_rerun_answers_from_the_cache_without_generating(cfg, tmp_path):
    cache = GenerationCache(tmp_path / "gen.sqlite3")
    first = _run(cfg, FakeBackend(), tmp_path, cache)
    again = FakeBackend()
    second = _run(cfg, again, tmp_path, cache)
    assert again.calls == [] and second.generated == 0 and second.from_cache == 12
    assert {k: g.response for k, g in second.generations.items()} == \
        {k: g.response for k, g in first.generations.items()}
    assert len(_lines(tmp_path)) == 12  # the results folder is rewritten, not appended to


def test_two_prompts_with_the_same_text_both_come_back_from_the_cache(cfg, tmp_path):
    """A noisy variant can read exactly like another prompt ("ouvre crom"): one cache entry, two answers."""
    twin = cfg.prompts[0].model_copy(update={"id": "twin"})
    prompts = [cfg.prompts[0], twin]
    cache = GenerationCache(tmp_path / "gen.sqlite3")
    _run(cfg, FakeBackend(), tmp_path, cache, prompts)
    again = _run(cfg, FakeBackend(), tmp_path, cache, prompts)
    assert again.from_cache == 6 and again.missing == 0
    assert {k[0] for k in again.generations} == {cfg.prompts[0].id, "twin"}
    assert all(g.prompt_id == pid for (pid, _), g in again.generations.items())


def test_later_prompts_come_after_every_variant_answered_the_others(cfg, tmp_path):
    """Noisy variants are `later`: a timeout spent on them never leaves the clean comparison short."""
    backend = FakeBackend()
    ids = [p.id for p in cfg.prompts[:4]]
    out = _run(cfg, backend, tmp_path, None, later=frozenset(ids[2:]))
    assert backend.calls == [(v.name, ids[:2]) for v in VARIANTS] + [(v.name, ids[2:]) for v in VARIANTS]
    assert out.generated == 12 and backend.rechecked == ["base", "early", "late"]


def test_a_changed_prompt_or_setting_is_generated_again(cfg, tmp_path):
    cache = GenerationCache(tmp_path / "gen.sqlite3")
    _run(cfg, FakeBackend(), tmp_path, cache)
    changed = cfg.model_copy(deep=True)
    changed.generation.max_new_tokens += 1
    backend = FakeBackend()
    out = _run(changed, backend, tmp_path, cache)
    assert out.generated == 12 and out.from_cache == 0


def test_failures_are_kept_as_failures_and_never_cached(cfg, tmp_path):
    cache = GenerationCache(tmp_path / "gen.sqlite3")
    bad = cfg.prompts[1].id
    out = _run(cfg, FakeBackend(fail={bad}), tmp_path, cache)
    failed = out.generations[(bad, "early")]
    assert failed.error and failed.response == ""
    assert out.missing == 0  # a failed answer is an answer that failed, not a missing one
    retry = FakeBackend()
    again = _run(cfg, retry, tmp_path, cache)
    assert retry.calls == [(v.name, [bad]) for v in VARIANTS]  # only the failures are asked again
    assert again.from_cache == 9 and not again.generations[(bad, "early")].error


def test_interrupted_run_keeps_what_was_finished_and_resumes(cfg, tmp_path):
    cache = GenerationCache(tmp_path / "gen.sqlite3")
    out = _run(cfg, FakeBackend(interrupt_after=6), tmp_path, cache)
    assert out.interrupted and len(out.generations) == 6 and out.missing == 6
    assert len(_lines(tmp_path)) == 6
    resumed = FakeBackend()
    again = _run(cfg, resumed, tmp_path, cache)
    assert again.from_cache == 6 and again.generated == 6 and again.missing == 0
    ids = [p.id for p in cfg.prompts[:4]]
    assert resumed.calls == [("early", ids[2:]), ("late", ids)]  # base and half of early were finished


def test_timeout_stops_between_answers_and_says_what_is_missing(cfg, tmp_path, caplog):
    timed = cfg.model_copy(deep=True)
    timed.generation.timeout_s = 1e-9
    out = _run(timed, FakeBackend(), tmp_path, None)
    assert out.timed_out and out.missing > 0
    assert "rerun to finish them" in caplog.text


def test_prompts_past_the_context_are_refused_or_skipped(cfg, tmp_path):
    long_id = cfg.prompts[0].id
    with pytest.raises(ConfigError, match=rf"1 prompt\(s\) do not fit.*{long_id}.*--skip-too-long"):
        _run(cfg, FakeBackend(over={long_id}), tmp_path, None)
    backend = FakeBackend(over={long_id})
    out = _run(cfg, backend, tmp_path, None, skip_too_long=True)
    assert [s["id"] for s in out.skipped] == [long_id]
    assert all(long_id not in ids for _, ids in backend.calls)
    assert out.missing == 0 and len(out.generations) == 9


def test_a_cached_prompt_is_never_checked_for_fit(cfg, tmp_path):
    """The fit check only concerns what will be generated: an answer already in the cache stands."""
    cache = GenerationCache(tmp_path / "gen.sqlite3")
    _run(cfg, FakeBackend(), tmp_path, cache)
    out = _run(cfg, FakeBackend(over={cfg.prompts[0].id}), tmp_path, cache)
    assert out.from_cache == 12 and not out.skipped
