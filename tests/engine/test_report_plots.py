import math

import pandas as pd
import pytest

pytest.importorskip("matplotlib", reason="the report figures need matplotlib")

from bench.report.plots import (accuracy_vs_shots, cost_view, figure_svgs,  # noqa: E402
                                masked_vs_accuracy, write_plots)

DATASETS = ["d1", "d2"]
SHOTS = [1, 2, 4]
NAN = math.nan
COLUMNS = ["backbone", "method", "dataset", "shots", "mean", "std", "n", "validation", "masked_pct",
           "trainable_params", "state_bytes", "fit_s", "peak_memory_bytes", "source"]


def row(method, dataset, shots, mean, std=0.5, masked=NAN, params=NAN, state=NAN, source="measured"):
    return ["vit_b16", method, dataset, shots, mean, std, 3 if source == "measured" else 0, "none",
            masked, params, state, 1.0, NAN, source]


def make_summary():
    """coop (measured, costs), rmt (measured, masked %, costs), rmt (paper) (published: d1 numbers
    plus its own Average row)."""
    rows = []
    for k, (c1, c2, r1, r2, p1, pavg) in zip(SHOTS, [(50, 30, 52, 33, 53, 45), (55, 40, 58, 41, 59, 51),
                                                       (60, 44, 65, 50, 66, 58)]):
        rows += [row("coop", "d1", k, c1, params=8192, state=32768),
                 row("coop", "d2", k, c2, params=8192, state=32768),
                 row("rmt", "d1", k, r1, masked=1 + k, params=1e6, state=1.25e5),
                 row("rmt", "d2", k, r2, masked=3 + k, params=1e6, state=1.25e5),
                 row("rmt (paper)", "d1", k, p1, std=NAN, source="published"),
                 row("rmt (paper)", "Average", k, pavg, std=NAN, source="published")]
    return pd.DataFrame(rows, columns=COLUMNS)


def panels(fig):
    return {ax.get_title(): ax for ax in fig.axes}


def lines_by_label(ax):
    return {line.get_label(): line for line in ax.get_lines()}


def test_write_plots_writes_valid_png_and_svg(tmp_path):
    paths = write_plots(make_summary(), DATASETS, SHOTS, tmp_path / "plots")
    names = sorted(p.name for p in paths)
    assert names == sorted(f"{n}.{ext}" for n in ("accuracy_vs_shots", "masked_vs_accuracy", "cost")
                           for ext in ("png", "svg"))
    for path in paths:
        data = path.read_bytes()
        assert path.exists() and len(data) > 1000
        if path.suffix == ".png":
            assert data.startswith(b"\x89PNG\r\n\x1a\n")
        else:
            assert b"<svg" in data and data.rstrip().endswith(b"</svg>")


def test_accuracy_figure_has_one_line_per_method_per_panel():
    fig = accuracy_vs_shots(make_summary(), DATASETS, SHOTS)
    by_title = panels(fig)
    assert set(by_title) == {"d1", "d2", "Average over 2 datasets"}  # unused grid cells removed
    d1, d2, avg = (lines_by_label(by_title[t]) for t in ["d1", "d2", "Average over 2 datasets"])
    assert len(by_title["d1"].get_lines()) == 3 and set(d1) == {"coop", "rmt", "rmt (paper)"}
    assert len(by_title["d2"].get_lines()) == 2 and set(d2) == {"coop", "rmt"}  # paper has no d2
    assert len(by_title["Average over 2 datasets"].get_lines()) == 3
    for lines in (d1, avg):
        assert lines["rmt (paper)"].get_linestyle() == "--"
        assert lines["coop"].get_linestyle() == "-" and lines["rmt"].get_linestyle() == "-"
        assert lines["rmt (paper)"].get_color() == lines["rmt"].get_color() != lines["coop"].get_color()
    assert list(d1["coop"].get_xdata()) == SHOTS and list(d1["coop"].get_ydata()) == [50, 55, 60]
    assert by_title["d1"].get_xscale() == "log"
    assert [t.get_text() for t in by_title["d1"].get_xticklabels()] == ["1", "2", "4"]
    # error bars (std over seeds) are collections, drawn for measured series only
    assert len(by_title["d1"].collections) == 2
    legends = fig.legends
    assert len(legends) == 1 and [t.get_text() for t in legends[0].get_texts()] == ["coop", "rmt", "rmt (paper)"]


def test_average_panel_is_plain_mean_of_dataset_means_and_paper_uses_its_average_row():
    avg = lines_by_label(panels(accuracy_vs_shots(make_summary(), DATASETS, SHOTS))["Average over 2 datasets"])
    assert list(avg["coop"].get_ydata()) == pytest.approx([40.0, 47.5, 52.0])
    assert list(avg["rmt"].get_ydata()) == pytest.approx([42.5, 49.5, 57.5])
    assert list(avg["rmt (paper)"].get_ydata()) == pytest.approx([45, 51, 58])  # not the d1 numbers
    assert list(avg["coop"].get_xdata()) == SHOTS


def test_incomplete_average_is_still_drawn_and_marked_with_a_star():
    summary = make_summary()
    summary = summary[~((summary["method"] == "coop") & (summary["dataset"] == "d2") & (summary["shots"] == 4))]
    fig = accuracy_vs_shots(summary, DATASETS, SHOTS)
    avg_title = "Average over 2 datasets (*)"
    assert avg_title in panels(fig)
    avg = lines_by_label(panels(fig)[avg_title])
    assert list(avg["coop"].get_ydata()) == pytest.approx([40.0, 47.5, 60.0])  # 4-shot: d1 only
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["coop*", "rmt", "rmt (paper)"]
    assert len(lines_by_label(panels(fig)["d2"])["coop"].get_xdata()) == 2


def test_masked_vs_accuracy_points_are_mean_masked_and_average_accuracy():
    fig = masked_vs_accuracy(make_summary(), DATASETS)
    (ax,) = fig.axes
    lines = lines_by_label(ax)
    assert set(lines) == {"rmt"}  # the only series with masked %
    assert list(lines["rmt"].get_xdata()) == pytest.approx([3.0, 4.0, 6.0])  # mean(1+k, 3+k) = 2+k
    assert list(lines["rmt"].get_ydata()) == pytest.approx([42.5, 49.5, 57.5])
    assert sorted(t.get_text() for t in ax.texts) == ["1", "2", "4"]


def test_cost_view_has_log_panels_and_zero_cost_becomes_a_reference_line():
    summary = make_summary()
    summary.loc[summary["method"] == "coop", ["trainable_params", "state_bytes"]] = 0.0
    fig = cost_view(summary, DATASETS)
    assert len(fig.axes) == 2 and all(ax.get_xscale() == "log" for ax in fig.axes)
    for ax in fig.axes:
        lines = lines_by_label(ax)
        assert set(lines) == {"rmt", "coop (cost 0)"}
        assert list(lines["coop (cost 0)"].get_ydata()) == pytest.approx([46.5] * 2)  # mean of 40, 47.5, 52
        assert list(lines["rmt"].get_ydata()) == pytest.approx([42.5, 49.5, 57.5])
    assert list(lines_by_label(fig.axes[1])["rmt"].get_xdata()) == [1.25e5] * 3


def test_masked_and_cost_figures_are_none_without_data(tmp_path):
    summary = make_summary()
    summary[["masked_pct", "trainable_params", "state_bytes"]] = NAN
    assert masked_vs_accuracy(summary) is None and cost_view(summary) is None
    paths = write_plots(summary, DATASETS, SHOTS, tmp_path)
    assert sorted(p.name for p in paths) == ["accuracy_vs_shots.png", "accuracy_vs_shots.svg"]
    assert write_plots(summary.iloc[0:0], DATASETS, SHOTS, tmp_path / "empty") == []


def test_figure_svgs_are_inline_ready_and_no_pyplot_figures_leak():
    from matplotlib._pylab_helpers import Gcf

    svgs = figure_svgs(make_summary(), DATASETS, SHOTS)
    assert list(svgs) == ["accuracy_vs_shots", "masked_vs_accuracy", "cost"]
    for text in svgs.values():
        assert text.startswith("<svg") and "<!DOCTYPE" not in text and "<?xml" not in text
        assert "rmt (paper)" in svgs["accuracy_vs_shots"]  # text kept as text (svg.fonttype none)
    assert figure_svgs(make_summary(), DATASETS, SHOTS) == svgs  # reproducible output
    assert Gcf.get_num_fig_managers() == 0
