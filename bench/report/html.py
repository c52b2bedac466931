"""One self-contained static HTML page for `bench report`: inline CSS, a few lines of inline JS
for sortable tables, inline SVG figures. No external CSS/JS/fonts, no network, no server: the file
can be mailed, archived next to the records, or opened from disk years later.

Every text that comes from data (title, header lines, headings, column names, cells, footnotes,
figure names) is HTML-escaped; the figures are SVG text we generated ourselves and are inlined
(minus the XML prolog, ids made unique per figure)."""

from __future__ import annotations

import re
from html import escape

import pandas as pd

MISSING = "–"
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)")  # the sort script's key, exponent aside

CSS = """
:root { --fg:#1f2328; --muted:#59636e; --line:#d1d9e0; --zebra:#f6f8fa; --head:#eef1f4; --accent:#0969da; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1400px; padding: 24px 32px 48px; color: var(--fg); background: #fff;
  font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
h1 { font-size: 24px; margin: 0 0 8px; }
h2 { font-size: 18px; margin: 32px 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
.provenance { color: var(--muted); font-size: 13px; margin: 0 0 12px; padding: 0; list-style: none; }
.provenance li { margin: 1px 0; }
nav { font-size: 13px; margin: 8px 0 0; }
nav a { color: var(--accent); text-decoration: none; margin-right: 14px; white-space: nowrap; }
nav a:hover { text-decoration: underline; }
.table-wrap { overflow-x: auto; max-width: 100%; width: fit-content;
  border: 1px solid var(--line); border-radius: 6px; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 12px; border-bottom: 1px solid var(--line); white-space: nowrap; text-align: left; }
th.num, td.num { text-align: right; }
thead th { background: var(--head); font-weight: 600; cursor: pointer; user-select: none; }
thead th:hover { background: #e1e6eb; }
/* the row label stays in view when a wide (11-dataset) table scrolls sideways */
td:first-child { position: sticky; left: 0; background: inherit; }
thead th:first-child { position: sticky; left: 0; z-index: 1; }
thead th::after { content: " \\2195"; color: #b0b8c1; font-size: 11px; }
thead th[aria-sort="ascending"]::after { content: " \\25B2"; color: var(--fg); }
thead th[aria-sort="descending"]::after { content: " \\25BC"; color: var(--fg); }
tbody tr { background: #fff; }
tbody tr:nth-child(even) { background: var(--zebra); }
tbody tr:hover { background: #fff8c5; }
tbody tr:last-child td { border-bottom: none; }
.hint { color: var(--muted); font-size: 12px; margin: 4px 0 0; }
figure { margin: 16px 0 24px; }
figure svg { max-width: 100%; height: auto; display: block; }
figcaption { color: var(--muted); font-size: 13px; margin-bottom: 4px; }
.footnotes { color: var(--muted); font-size: 13px; margin-top: 32px; border-top: 1px solid var(--line);
  padding-top: 8px; }
"""

# Numeric sort on the leading number of a cell ("72.10 ± 0.40 (n=2)" → 72.10, "61.3*" → 61.3);
# cells without a number ("–", "") go last in both directions; text columns sort as text.
JS = """
(function () {
  function key(text) {
    var m = text.trim().match(/^[-+]?(\\d+\\.?\\d*|\\.\\d+)([eE][-+]?\\d+)?/);
    return m ? parseFloat(m[0]) : null;
  }
  function sortBy(th) {
    var table = th.closest("table"), body = table.tBodies[0];
    var col = Array.prototype.indexOf.call(th.parentNode.children, th);
    var rows = Array.prototype.slice.call(body.rows);
    var texts = rows.map(function (r) { return r.cells[col] ? r.cells[col].textContent : ""; });
    var numeric = texts.some(function (t) { return key(t) !== null; }) &&
      texts.every(function (t) { return key(t) !== null || !/[A-Za-z0-9]/.test(t); });
    // first click: numbers high → low (best first), text A → Z; a second click reverses
    var cur = th.getAttribute("aria-sort");
    var dir = cur ? (cur === "descending" ? 1 : -1) : (numeric ? -1 : 1);
    var order = rows.map(function (r, i) { return i; });
    order.sort(function (a, b) {
      var x = numeric ? key(texts[a]) : texts[a].trim(), y = numeric ? key(texts[b]) : texts[b].trim();
      var xm = x === null || x === "" || x === "\\u2013", ym = y === null || y === "" || y === "\\u2013";
      if (xm || ym) { return xm === ym ? a - b : (xm ? 1 : -1); }
      var c = numeric ? x - y : x.localeCompare(y, undefined, {numeric: true});
      return c === 0 ? a - b : dir * c;
    });
    order.forEach(function (i) { body.appendChild(rows[i]); });
    Array.prototype.forEach.call(th.parentNode.children, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
  }
  document.querySelectorAll("table.sortable thead th").forEach(function (th) {
    th.addEventListener("click", function () { sortBy(th); });
  });
})();
"""


def render_html(title: str, header_lines: list[str], sections: list[tuple[str, pd.DataFrame]],
                figures: dict[str, str], footnotes: list[str]) -> str:
    """The whole report as one HTML document (a string; the caller writes it)."""
    ids = _unique_ids([heading for heading, _ in sections] + list(figures))
    names = [h for h, _ in sections] + [name.replace("_", " ") for name in figures]
    nav = " ".join(f'<a href="#{i}">{escape(name)}</a>' for i, name in zip(ids, names))
    body = [f"<h1>{escape(title)}</h1>"]
    if header_lines:
        body.append('<ul class="provenance">' +
                    "".join(f"<li>{escape(line)}</li>" for line in header_lines) + "</ul>")
    if nav:
        body.append(f"<nav>{nav}</nav>")
    if sections:
        body.append('<p class="hint">Click a column header to sort by it (again to reverse).</p>')
    for anchor, (heading, table) in zip(ids, sections):
        body.append(f'<section><h2 id="{anchor}">{escape(heading)}</h2>{_table(table)}</section>')
    if figures:
        body.append('<section><h2 id="figures">Figures</h2>')
        for anchor, (name, svg) in zip(ids[len(sections):], figures.items()):
            body.append(f'<figure id="{anchor}"><figcaption>{escape(name.replace("_", " "))}</figcaption>'
                        f"{_inline_svg(svg, anchor)}</figure>")
        body.append("</section>")
    if footnotes:
        body.append('<div class="footnotes"><ul>' +
                    "".join(f"<li>{escape(note)}</li>" for note in footnotes) + "</ul></div>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + f"\n<script>{JS}</script>\n</body>\n</html>\n")


def _table(frame: pd.DataFrame) -> str:
    if frame.empty and not len(frame.columns):
        return '<p class="hint">No rows.</p>'
    texts = [[_text(v) for v in row] for row in frame.itertuples(index=False, name=None)]
    numeric = [_numeric([row[j] for row in texts]) for j in range(len(frame.columns))]
    cls = [' class="num"' if num else "" for num in numeric]
    head = "".join(f'<th scope="col"{c}>{escape(str(col))}</th>' for col, c in zip(frame.columns, cls))
    rows = ["<tr>" + "".join(f"<td{c}>{escape(t)}</td>" for t, c in zip(row, cls)) + "</tr>"
            for row in texts]
    return (f'<div class="table-wrap"><table class="sortable"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def _text(value) -> str:
    """Cells arrive formatted; a stray None/NaN still renders as the report's missing mark."""
    if value is None or (isinstance(value, float) and value != value):
        return MISSING
    return str(value)


def _numeric(texts: list[str]) -> bool:
    """Right-align a column when every cell starts with a number or is a missing mark (the same
    rule the sort script uses to pick numeric order)."""
    marks = [t.strip() for t in texts]
    return any(_NUMBER.match(t) for t in marks) and all(_NUMBER.match(t) or t in ("", MISSING) for t in marks)


def _inline_svg(svg: str, prefix: str) -> str:
    """Drops the XML prolog/DOCTYPE (invalid in HTML; the DOCTYPE names an external DTD) and
    prefixes every id and #reference: matplotlib reuses ids such as "figure_1" in every SVG, and
    one page holds several SVGs whose ids must neither collide nor resolve into another figure."""
    start = svg.find("<svg")
    if start < 0:
        return f"<pre>{escape(svg)}</pre>"
    svg = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}-{m.group(1)}"', svg[start:])
    return re.sub(r'(href="#|url\(#)([^")]+)', lambda m: f"{m.group(1)}{prefix}-{m.group(2)}", svg)


def _unique_ids(names: list[str]) -> list[str]:
    """Anchor ids from headings: lowercase slugs, de-duplicated, never the reserved "figures"."""
    seen, out = {"figures"}, []
    for name in names:
        base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "section"
        slug, n = base, 2
        while slug in seen:
            slug, n = f"{base}-{n}", n + 1
        seen.add(slug)
        out.append(slug)
    return out
