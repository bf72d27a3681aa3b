"""benchmark_report.html: one offline file with the verdict, a chart and every answer side by side;
checked as HTML here, and in a real headless Chromium (Debian's package) when one is installed."""

from __future__ import annotations

import copy
import json
import re
import subprocess
from html.parser import HTMLParser

import pytest

from jarvis_bench import config
from jarvis_bench.reports import html as html_report

from .conftest import CONFIG


class Rows(HTMLParser):
    """The prompt rows of the page: id -> visible (no `hidden` attribute after the script ran)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, bool] = {}
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and a.get("class") == "prompt":
            self.rows[a["id"]] = "hidden" not in a
        for key in ("src", "href"):
            if a.get(key):
                self.links.append(a[key])


def _rows(page: str) -> Rows:
    p = Rows()
    p.feed(page)
    return p


@pytest.fixture
def written(demo_results, tmp_path):
    """benchmark_report.html as analyze_results.py writes it from the demo's results."""
    from jarvis_bench.commands import analyze

    (tmp_path / "benchmark_results.json").write_text(json.dumps(demo_results), encoding="utf-8")
    assert analyze.main(["--input", str(tmp_path / "benchmark_results.json"), "--quiet"]) == 0
    return tmp_path / "benchmark_report.html", demo_results


@pytest.fixture(scope="module")
def cfg():
    return config.load(CONFIG)


def test_analyze_writes_one_offline_page_with_every_prompt(written):
    path, data = written
    page = path.read_text(encoding="utf-8")
    rows = _rows(page)
    assert list(rows.rows) == [r["id"] for r in data["results"]] and len(rows.rows) == 30
    assert all(link.startswith("#") for link in rows.links), rows.links  # nothing to fetch: opens offline
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=\"(https?:)?//", page)
    assert "FINE-TUNING MODÉRÉ" in page and "IC 95%" in page and "Recommandations" in page
    assert '<svg role="img"' in page and "jarvis-demo · tool_routing: " in page  # the chart, values on hover
    assert 'href="#cor-06"' in page  # a link per prompt to send around


def test_english_page_and_escaping(demo_results):
    data = demo_results
    data["results"][0]["variants"]["jarvis-demo"]["response"] = '<script>alert("x")</script> <tool_call>{}</tool_call>'
    page = html_report.render(data, "en")
    assert "MODERATE FINE-TUNE" in page and "Answers" in page
    assert '<script>alert("x")</script>' not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page


def test_a_missing_metadata_value_shows_empty(demo_results):
    """An older or hand-edited results file may lack a header field: shown empty, never "None"."""
    for key in ("timestamp", "backend", "n_prompts"):
        demo_results["metadata"].pop(key)
    page = html_report.render(demo_results, "en")
    assert "<b>None</b>" not in page and "Date: <b></b>" in page


def test_incomplete_and_base_only_runs_render(demo_results, cfg):
    from jarvis_bench import analysis

    data = copy.deepcopy(demo_results)
    for r in data["results"][:3]:
        r["variants"]["jarvis-demo"].update(response="", error="read timeout", metrics=None)
    analysis.analyze(data, cfg)
    page = html_report.render(data, "fr")
    assert "PAS DE VERDICT" in page and "3 réponse(s) manquante(s)" in page and "erreur: read timeout" in page
    base_only = copy.deepcopy(demo_results)
    base_only["metadata"]["variants"] = ["base"]
    base_only["metadata"]["adapters"] = []
    for r in base_only["results"]:
        r["variants"].pop("jarvis-demo")
    base_only["statistics"]["comparisons"] = {}
    base_only["statistics"]["ranking"] = []
    base_only["statistics"]["best_adapter"] = None
    assert len(_rows(html_report.render(base_only, "fr")).rows) == 30


# ----------------------------------------------------------------------------- in a real browser


def _chromium(chromium: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           "--v=0", *args], capture_output=True, text=True, timeout=120)


def test_in_chromium_filters_search_and_screenshot(written, tmp_path, chromium):
    path, data = written
    regressed = data["statistics"]["comparisons"]["jarvis-demo"]["regressions"]
    shown = _chromium(chromium, "--dump-dom", f"{path.as_uri()}?status=regressed")
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert not re.search(r"INFO:CONSOLE|Uncaught", shown.stderr), shown.stderr  # no console message at all
    visible = [i for i, v in _rows(shown.stdout).rows.items() if v]
    assert visible == regressed and regressed
    prompt = data["results"][7]["prompt"]
    found = _rows(_chromium(chromium, "--dump-dom", f"{path.as_uri()}?q={prompt.replace(' ', '%20')}").stdout).rows
    assert found[data["results"][7]["id"]] and sum(found.values()) < 30
    everything = _rows(_chromium(chromium, "--dump-dom", path.as_uri()).stdout).rows
    assert sum(everything.values()) == 30
    shot = tmp_path / "page.png"
    _chromium(chromium, "--hide-scrollbars", "--window-size=1400,1800", f"--screenshot={shot}", path.as_uri())
    png = shot.read_bytes()
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1400, 1800) and len(png) > 50_000


def _two_adapters(demo_results, cfg):
    """The demo's results with a second adapter (an --all-checkpoints run): the first one's answers, the
    first prompt's answer broken, so the two rank and flip differently."""
    from jarvis_bench import analysis

    data = copy.deepcopy(demo_results)
    data["metadata"]["variants"].append("early")
    data["metadata"]["adapters"].append({**data["metadata"]["adapters"][0], "name": "early"})
    for r in data["results"]:
        r["variants"]["early"] = copy.deepcopy(r["variants"]["jarvis-demo"])
    data["results"][0]["variants"]["early"]["metrics"]["relevance"] = 0.0
    analysis.analyze(data, cfg)
    return data


def test_all_checkpoints_page_ranks_and_shows_one_adapter_column_at_a_time(demo_results, cfg):
    data = _two_adapters(demo_results, cfg)
    page = html_report.render(data, "fr")
    assert "Classement: jarvis-demo &gt; early" in page
    assert page.count('<th data-col="') == 3 and '<option value="early">' in page
    first = data["results"][0]["id"]
    row = re.search(rf'<tr class="prompt" id="{first}"[^>]*>', page).group(0)
    assert 'data-status-early="regressed"' in row or 'data-status-early="unchanged"' in row


def test_all_checkpoints_page_in_chromium_shows_the_chosen_adapter(demo_results, cfg, tmp_path, chromium):
    path = tmp_path / "p.html"
    path.write_text(html_report.render(_two_adapters(demo_results, cfg), "fr"), encoding="utf-8")
    dom = _chromium(chromium, "--dump-dom", f"{path.as_uri()}?adapter=early").stdout
    hidden = set(re.findall(r'<t[hd] data-col="([^"]+)" hidden', dom))
    assert hidden == {"jarvis-demo"}


@pytest.mark.timeout(120)  # a hang guard, not a speed target: a quadratic diff on these answers never ends
def test_megabyte_answers_are_shown_up_to_the_cap_and_counted(demo_results, cfg):
    """A model that loops (or a server ignoring max_tokens) returns megabytes: the page shows ANSWER_CHARS of
    each answer and says how many more there are; flips.csv caps its cells the same way; the JSON keeps all."""
    from jarvis_bench.reports import ANSWER_CHARS
    from jarvis_bench.reports.flips import flips_csv

    row = demo_results["results"][0]
    loop = "ouvre chrome </script><b>x</b> " * 40_000  # ~1.2 MB
    for name, a in row["variants"].items():
        a["response"] = f"{name} " + loop
    page = html_report.render(demo_results, "en")
    more = len(row["variants"]["base"]["response"]) - ANSWER_CHARS
    assert f"… {more} more characters" in page and len(page) < 400_000
    assert "</script><b>" not in page and "&lt;/script&gt;&lt;b&gt;" in page
    csv_text = flips_csv(demo_results, 0.1, "fr")
    assert len(csv_text) < 100_000 and f"… {more} caractères de plus" in csv_text


def test_a_page_of_megabyte_answers_renders_in_chromium(demo_results, tmp_path, chromium):
    """60 answers of 1 MB each (a looping model): the page stays small and a real browser shows every row."""
    loop = "ouvre chrome </script><b>x</b> " * 32_000
    for r in demo_results["results"]:
        for name, a in r["variants"].items():
            a["response"] = f"{name} " + loop
    path = tmp_path / "p.html"
    path.write_text(html_report.render(demo_results, "fr"), encoding="utf-8")
    assert path.stat().st_size < 2_000_000
    shown = _chromium(chromium, "--dump-dom", path.as_uri())
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert sum(_rows(shown.stdout).rows.values()) == 30 and "caractères de plus" in shown.stdout
