"""Every report format from the same fabricated records: md, csv (records + summary), json (schema),
latex (booktabs), html (parses, holds every table), and the CLI that writes them."""

import csv
import io
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.cli import app
from bench.report import build, render
from bench.report.formats import ReportJSON, json_schema, summary_csv
from tests.engine.report_records import record, suite_at

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def report(smoke_config, tmp_path):
    suite = suite_at(smoke_config, "smoke", tmp_path / "results")
    for seed in (1, 2):
        for ds, base in (("smoke_shapes", 60.0), ("smoke_textures", 40.0)):
            record(suite, "coop", ds, 1, seed, base + seed, trainable_params=8192, state_bytes=32768)
            record(suite, "mask_tuning", ds, 1, seed, base + 5, extra_metrics={"masked_pct_of_masked_tensors": 2.5})
    record(suite, "zeroshot", "smoke_shapes", 0, 0, 50.0)
    return build(suite)


def test_markdown_has_header_tables_and_footnotes(report):
    text = render(report, "md")
    assert text.startswith("- Suite: smoke")
    for title in ("### 1-shot top-1 accuracy", "### 4-shot", "### Leaderboard", "### Cost per method"):
        assert title in text
    assert "| coop " in text and "61.50 ± 0.50" in text and "Masked %" in text and "`†`" in text


def test_csv_is_the_long_form_and_the_summary_is_separate(report):
    rows = list(csv.DictReader(io.StringIO(render(report, "csv"))))
    assert len(rows) == 9 and {r["method"] for r in rows} == {"coop", "mask_tuning", "zeroshot"}
    assert {"job_id", "seed", "top1", "validation", "git_sha", "created_at"} <= set(rows[0])
    summary = list(csv.DictReader(io.StringIO(summary_csv(report))))
    coop = [r for r in summary if r["method"] == "coop" and r["dataset"] == "smoke_shapes"]
    assert len(coop) == 1 and float(coop[0]["mean"]) == 61.5 and coop[0]["n"] == "2"


def test_json_matches_its_documented_schema(report):
    doc = ReportJSON.model_validate_json(render(report, "json"))
    assert doc.schema_version == 2 and doc.suite == "smoke" and len(doc.records) == 9
    titles = [t.title for t in doc.sections[0].tables]
    assert titles[0] == "1-shot top-1 accuracy (%)" and "Leaderboard (average over datasets, %)" in titles
    zs = [c for c in doc.cells if c.method == "zeroshot"]
    assert {c.shots for c in zs} == {1, 4, 16} and all(c.expected_n == 1 for c in zs)
    committed = (REPO / "docs" / "report.schema.json").read_text()
    assert json.loads(committed) == json.loads(json_schema()), "regenerate docs/report.schema.json"


def test_latex_is_booktabs_and_escaped(report):
    text = render(report, "latex")
    assert text.count(r"\toprule") == text.count(r"\bottomrule") == len(report.sections[0].shot_tables) + 2
    assert r"61.50 $\pm$ 0.50" in text and r"mask\_tuning" in text and "\\begin{tabular}{l" in text


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables, self.cells, self.svgs, self._in_cell = 0, [], 0, False

    def handle_starttag(self, tag, attrs):
        self.tables += tag == "table"
        self.svgs += tag == "svg"
        self._in_cell = tag in ("td", "th")

    def handle_data(self, data):
        if self._in_cell and data.strip():
            self.cells.append(data.strip())


def test_html_is_one_page_with_every_table_and_the_plots(report):
    page = render(report, "html")
    parser = _Collect()
    parser.feed(page)
    expected = len(report.sections[0].shot_tables) + 2  # shot tables, leaderboard, cost
    assert parser.tables == expected and parser.svgs >= 2
    assert "61.50 ± 0.50" in parser.cells and "mask_tuning" in parser.cells
    assert "Suite: smoke" in page and "src=\"http" not in page and "href=\"http" not in page


def test_cli_writes_each_format_and_the_plots(smoke_config, tmp_path, monkeypatch):
    suite = suite_at(smoke_config, "smoke", tmp_path / "results")
    for seed in (1, 2):
        record(suite, "coop", "smoke_shapes", 1, seed, 60.0 + seed)
    runner, tasks = CliRunner(), str(REPO / "tasks.toml")
    base = ["report", "--suite", "smoke", "--tasks", tasks, "--results", str(suite.results_dir)]
    out = runner.invoke(app, base + ["--format", "csv", "--out", str(tmp_path / "r.csv"), "--plots", str(tmp_path / "p")])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "r.csv").exists() and (tmp_path / "r.summary.csv").exists()
    assert {p.name for p in (tmp_path / "p").iterdir()} >= {"accuracy_vs_shots.png", "accuracy_vs_shots.svg"}
    for fmt in ("md", "json", "latex", "html"):
        result = runner.invoke(app, base + ["--format", fmt, "--out", str(tmp_path / f"r.{fmt}")])
        assert result.exit_code == 0 and (tmp_path / f"r.{fmt}").stat().st_size > 200, result.output


@pytest.mark.parametrize("args, message", [
    (["--format", "xls"], "unknown --format 'xls'"),
    (["--compare", "paper"], "--compare takes 'published'"),
    (["--results", "/nonexistent/x"], "--results /nonexistent/x: not a folder"),
    (["--out", "."], "--out .: is a folder"),
    (["--results", str(REPO / "bench")], "no records/ folder inside"),
])
def test_cli_bad_report_options_are_one_line_and_exit_2(args, message):
    result = CliRunner().invoke(app, ["report", "--suite", "smoke", "--tasks", str(REPO / "tasks.toml"), *args])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
