import re
import shutil
import subprocess
from collections import Counter
from html.parser import HTMLParser

import pandas as pd
import pytest

from bench.report.html import render_html

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
URL_ATTRS = {"src", "href", "xlink:href", "data", "action", "poster", "srcset", "background"}
INJECTED = "<script>alert(1)</script>"
FAKE_SVG = ('<?xml version="1.0" encoding="utf-8" standalone="no"?>\n<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN"'
            ' "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">\n<svg xmlns="http://www.w3.org/2000/svg"'
            ' xmlns:xlink="http://www.w3.org/1999/xlink" viewBox="0 0 10 10"><defs><path id="m1" d="M0 0L1 1"/>'
            '</defs><g id="figure_1" clip-path="url(#p1)"><use xlink:href="#m1" x="1" y="1"/></g>'
            '<clipPath id="p1"><rect width="10" height="10"/></clipPath></svg>')


class Page(HTMLParser):
    """Collects tables, tags, ids, id references and URL-valued attributes, and checks that every
    element is closed in order (html.parser itself never complains)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.tags = [], [], Counter()
        self.tables, self.ids, self.refs, self.urls = [], [], [], []
        self._cell = None

    def handle_starttag(self, tag, attrs):
        self._attrs(tag, attrs)
        if tag not in VOID:
            self.stack.append(tag)
        if tag == "table":
            self.tables.append({"head": [], "cells": []})
        if tag in ("th", "td"):
            self._cell = []

    def handle_startendtag(self, tag, attrs):  # <path ... /> inside SVG
        self._attrs(tag, attrs)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()
        if tag in ("th", "td") and self._cell is not None:
            self.tables[-1]["head" if tag == "th" else "cells"].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def _attrs(self, tag, attrs):
        self.tags[tag] += 1
        for name, value in attrs:
            value = value or ""
            if name == "id":
                self.ids.append(value)
            if name in URL_ATTRS:
                self.urls.append(value)
            if value.startswith("#"):
                self.refs.append(value[1:])
            self.refs += re.findall(r"url\(#([^)]+)\)", value)


def parse(text):
    page = Page()
    page.feed(text)
    page.close()
    assert page.errors == [] and page.stack == [], (page.errors, page.stack)
    return page


def sections():
    board = pd.DataFrame({"Rank": [1, 2], "Method": ["rmt", INJECTED], "1-shot": ["73.20", "–"],
                          "Mean": ["74.10", "70.00*"]})
    shot = pd.DataFrame({"Method": ["rmt", "coop"], "d1": ["72.10 ± 0.40 (n=2)", "70.00 ± 0.00 (n=3)"],
                         "d2": ["–", "61.30 ± 1.20 (n=3)"], "Average": ["72.10* (1/2)", "65.65"]})
    return [("Leaderboard", board), ("1-shot top-1 accuracy (%) & <b>", shot)]


def page_text(figures=None):
    return render_html("bench <report> & co", ["suite smoke", "git abc1234 (dirty) <x>"], sections(),
                       {"accuracy_vs_shots": FAKE_SVG, "cost": FAKE_SVG} if figures is None else figures,
                       ["* = missing datasets", "std <ddof=0>"])


def test_page_parses_and_has_one_table_per_section_with_all_headers_and_cells():
    text = page_text()
    page = parse(text)
    assert text.startswith("<!DOCTYPE html>") and page.tags["table"] == 2 == len(page.tables)
    for table, (_, frame) in zip(page.tables, sections()):
        assert table["head"] == [str(c) for c in frame.columns]
        assert table["cells"] == [str(v) for row in frame.itertuples(index=False) for v in row]


def test_all_text_is_escaped_and_the_only_script_is_ours():
    text = page_text()
    page = parse(text)
    assert page.tags["script"] == 1 and page.tags["b"] == 0 and page.tags["x"] == 0
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and INJECTED not in text
    assert "<title>bench &lt;report&gt; &amp; co</title>" in text
    assert "std &lt;ddof=0&gt;" in text and "git abc1234 (dirty) &lt;x&gt;" in text
    assert INJECTED in page.tables[0]["cells"]  # shown to the reader as the literal text


def test_figures_are_inlined_with_unique_ids_and_no_external_resources():
    text = page_text()
    page = parse(text)
    assert page.tags["svg"] == 2 and "<?xml" not in text and "<!DOCTYPE svg" not in text
    assert len(page.ids) == len(set(page.ids))  # two copies of one SVG, ids made distinct
    assert set(page.refs) <= set(page.ids)  # every #ref and url(#id) resolves on the page
    assert {"accuracy-vs-shots-m1", "cost-m1", "cost-figure_1"} <= set(page.ids)
    assert not any(re.match(r"(https?:)?//", url) for url in page.urls)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//|@import|<link\b|<script\s+src", text, re.I)
    assert page.tags["figure"] == 2 and "accuracy vs shots" in text


def test_headers_are_sortable_and_numeric_columns_right_aligned():
    text = page_text(figures={})
    assert text.count('<table class="sortable">') == 2 and "addEventListener" in text
    assert '<th scope="col" class="num">Mean</th>' in text and '<th scope="col">Method</th>' in text
    assert '<td class="num">–</td>' in text  # a missing cell in a numeric column
    assert page_text(figures={}).count("<svg") == 0 and "Figures" not in text


def test_page_with_real_figures_is_valid(tmp_path):
    pytest.importorskip("matplotlib")
    from bench.report.plots import figure_svgs
    from tests.engine.test_report_plots import DATASETS, SHOTS, make_summary

    text = page_text(figures=figure_svgs(make_summary(), DATASETS, SHOTS))
    page = parse(text)
    assert page.tags["svg"] == 3 and len(page.ids) == len(set(page.ids)) and set(page.refs) <= set(page.ids)
    assert not any(re.match(r"(https?:)?//", url) for url in page.urls)


PROBE = """<script>
var out = [], t = document.querySelectorAll("table")[0], th = t.tHead.rows[0].cells;
function col(c) { return Array.from(t.tBodies[0].rows).map(function (r) { return r.cells[c].textContent; }).join("|"); }
th[1].click(); out.push(col(1)); th[1].click(); out.push(col(1)); th[2].click(); out.push(col(2));
var p = document.createElement("pre"); p.id = "probe"; p.textContent = out.join("\\n"); document.body.appendChild(p);
</script></body>"""


def test_sorting_in_a_headless_browser(tmp_path):
    browser = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    if browser is None:
        pytest.skip("no headless Chromium here")
    board = pd.DataFrame({"Method": ["a", "b", "c"], "x": ["–", "9.50 ± 0.1 (n=3)", "10.25"],
                          "y": ["2", "10", "1e1x"]})
    path = tmp_path / "page.html"
    path.write_text(render_html("t", [], [("s", board)], {}, []).replace("</body>", PROBE))
    run = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", path.as_uri()],
                         capture_output=True, text=True, timeout=120)
    if run.returncode != 0 or "</html>" not in run.stdout:
        pytest.skip(f"browser did not run: {run.stderr[-300:]}")
    found = re.search(r'<pre id="probe">(.*?)</pre>', run.stdout, re.S)
    assert found, "the page rendered but the sort script failed"
    # numeric, high first, "–" last in both directions; then ascending; 10 vs 1e1x (=10) keeps order
    assert found.group(1).split("\n") == ["10.25|9.50 ± 0.1 (n=3)|–", "9.50 ± 0.1 (n=3)|10.25|–", "10|1e1x|2"]
