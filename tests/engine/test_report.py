"""bench report on fabricated records with hand-computed numbers: config-exact cells, n and oracle
markers, one-run zero-shot, provenance, published Δ, merging, the cost table."""

import pytest

from bench.errors import BenchError
from bench.report import build, render
from tests.engine.report_records import record, suite_at

SMOKE = ["smoke_shapes", "smoke_textures"]


@pytest.fixture
def smoke(smoke_config, tmp_path):
    return suite_at(smoke_config, "smoke", tmp_path / "results")


def table(report, shots, index="Method"):
    return report.sections[0].shot_tables[shots].set_index(index)


def test_cells_are_mean_and_population_std_of_the_newest_ok_record_per_job(smoke):
    for seed, value in ((1, 70.0), (2, 74.0)):
        record(smoke, "clip_adapter", "smoke_shapes", 1, seed, value)
        record(smoke, "clip_adapter", "smoke_textures", 1, seed, value - 20)
    record(smoke, "clip_adapter", "smoke_shapes", 1, 2, 76.0)  # a rerun of seed 2: the newest wins
    failed = record(smoke, "clip_adapter", "smoke_shapes", 1, 1, 0.0)
    failed_path = next(smoke.results_dir.glob(f"records/*/*/{failed['job_id']}.*.json"))
    failed_path.write_text(failed_path.read_text().replace('"status": "ok"', '"status": "failed"'))  # never erases
    row = table(build(smoke), 1).loc["clip_adapter"]
    assert row["smoke_shapes"] == "73.00 ± 3.00"  # mean(70, 76), ddof=0
    assert row["smoke_textures"] == "52.00 ± 2.00"
    assert row["Average"] == "62.50" and row["Val"] == "none"


def test_other_configurations_never_mix_into_a_cell(smoke):
    """The issue's scenario: ratio changed, one cell rerun; the old config must not share the row."""
    for seed in (1, 2):
        record(smoke, "clip_adapter", "smoke_shapes", 4, seed, 80.0 + seed)
        record(smoke, "clip_adapter", "smoke_textures", 4, seed, 60.0, params={"ratio": 0.0})
    report = build(smoke)
    row = table(report, 4).loc["clip_adapter"]
    assert row["smoke_shapes"] == "81.50 ± 0.50" and row["smoke_textures"] == "–"
    assert row["Average"] == "81.50* (1/2)"
    assert any("2 records of other configurations" in n and "--all-configs" in n for n in report.footnotes)
    everything = build(smoke, all_configs=True)
    rows = table(everything, 4)
    other = [m for m in rows.index if m.startswith("clip_adapter@")]
    assert len(other) == 1 and rows.loc[other[0], "smoke_textures"] == "60.00 ± 0.00"
    assert rows.loc[other[0], "smoke_shapes"] == "–"
    assert everything.legend[other[0]] == "ratio: 0.2 → 0.0"
    assert "clip_adapter@" in render(everything) and "ratio: 0.2 → 0.0" in render(everything)


def test_a_new_method_version_is_another_configuration(smoke):
    record(smoke, "coop", "smoke_shapes", 1, 1, 50.0, version=0)
    report = build(smoke)
    assert not report.sections and any("1 records of other configurations" in n for n in report.footnotes)


def test_short_cells_show_n_and_mark_the_average(smoke):
    record(smoke, "coop", "smoke_shapes", 16, 1, 90.0)
    record(smoke, "coop", "smoke_shapes", 16, 2, 92.0)
    record(smoke, "coop", "smoke_textures", 16, 1, 70.0)  # one of two seeds
    report = build(smoke)
    row = table(report, 16).loc["coop"]
    assert row["smoke_textures"] == "70.00 ± 0.00 (n=1)" and row["smoke_shapes"] == "91.00 ± 1.00"
    assert row["Average"] == "80.50*"
    board = report.sections[0].leaderboard.set_index("Method")
    assert board.loc["coop", "16-shot"] == "80.50*"


def test_oracle_records_are_flagged_and_kept_off_the_leaderboard(smoke):
    for seed in (1, 2):
        record(smoke, "linear_probe", "smoke_shapes", 1, seed, 40.0, validation="fewshot_val")
        record(smoke, "linear_probe", "smoke_textures", 1, seed, 60.0, validation="oracle_test")
        record(smoke, "coop", "smoke_shapes", 1, seed, 45.0)
        record(smoke, "coop", "smoke_textures", 1, seed, 45.0)
    report = build(smoke)
    row = table(report, 1).loc["linear_probe"]
    assert row["smoke_textures"] == "60.00 ± 0.00†" and row["Average"] == "50.00†"
    assert row["Val"] == "fewshot_val, oracle_test†"
    board = report.sections[0].leaderboard.set_index("Method")
    assert board.loc["linear_probe", "1-shot"] == "40.00* (1/2)"  # only the honest dataset is ranked
    assert board.loc["coop", "Rank"] == 1 and board.loc["linear_probe", "Rank"] == 2
    with_oracle = build(smoke, include_oracle=True).sections[0].leaderboard.set_index("Method")
    assert with_oracle.loc["linear_probe", "1-shot"] == "50.00†" and with_oracle.loc["linear_probe", "Rank"] == 1


def test_zero_shot_runs_once_and_appears_in_every_shot_table(smoke):
    record(smoke, "zeroshot", "smoke_shapes", 1, 1, 52.5)
    record(smoke, "zeroshot", "smoke_textures", 4, 2, 40.0)
    report = build(smoke)
    assert len(report.records) == 2 and set(report.records["shots"]) == {0}
    for k in (1, 4, 16):
        row = table(report, k).loc["zeroshot"]
        assert row["smoke_shapes"] == "52.50" and row["smoke_textures"] == "40.00" and row["Average"] == "46.25"
    assert report.sections[0].leaderboard.set_index("Method").loc["zeroshot", "Mean"] == "46.25"


def test_header_states_provenance_and_warns_on_mixed_versions(smoke):
    record(smoke, "coop", "smoke_shapes", 1, 1, 50.0, sha="aaaaaaaaaaaa1", created_at="2026-11-02T10:00:00+00:00")
    record(smoke, "coop", "smoke_shapes", 1, 2, 52.0, sha="bbbbbbbbbbbb2", dirty=True, torch_version="2.9.1",
           created_at="2026-11-05T10:00:00+00:00")
    header = "\n".join(build(smoke).header)
    assert "Suite: smoke" in header and "smoke_tiny (abababab)" in header
    assert "Records: 2 in the tables" in header and "2026-11-02T10:00:00 → 2026-11-05T10:00:00" in header
    assert "aaaaaaaaaa" in header and "bbbbbbbbbb (dirty)" in header and "torch 2.14.1, 2.9.1" in header
    assert "WARNING: records come from more than one version of bench, torch" in header


def test_records_outside_the_grid_and_damaged_files_are_counted_not_fatal(smoke):
    record(smoke, "coop", "smoke_shapes", 2, 1, 50.0)  # 2 shots: not in the smoke suite
    (smoke.results_dir / "records" / "x" / "y").mkdir(parents=True)
    (smoke.results_dir / "records" / "x" / "y" / "a.json").write_text('{"hello": "world"}')
    (smoke.results_dir / "records" / "x" / "y" / "b.json").write_text("[1, 2, 3]")
    report = build(smoke)
    notes = "\n".join(report.footnotes)
    assert "1 records outside this report's methods, datasets, shots or seeds" in notes
    assert "2 files in records/ are not bench records" in notes
    assert "No finished results" in render(report)


def test_an_empty_results_folder_gives_an_empty_report(smoke, tmp_path):
    report = build(smoke, [tmp_path])
    assert not report.sections and "No finished results" in render(report)
    for fmt in ("csv", "json", "latex", "html"):
        assert render(report, fmt)


def test_cost_table_from_the_records(smoke):
    for seed, fit in ((1, 2.0), (2, 4.0)):
        for ds in SMOKE:
            record(smoke, "clip_adapter", ds, 1, seed, 50.0, trainable_params=131072, state_bytes=524288,
                   fit_s=fit if ds == "smoke_shapes" else 10.0, peak_memory_bytes=2**30 * seed)
    cost = build(smoke).sections[0].cost.set_index("Method").loc["clip_adapter"]
    assert cost["Shots"] == "1" and cost["Trainable params"] == "131.07k" and cost["Task state"] == "524.3 kB"
    assert cost["Fit s (median)"] == "7.00"  # median of the four records' 2, 4, 10, 10
    assert cost["Peak memory"] == "2.0 GiB"


# ------------------------------------------------------------------------------ published numbers
@pytest.fixture
def coop11(smoke_config, tmp_path):
    return suite_at(smoke_config, "coop11", tmp_path / "coop11")


def test_published_rows_and_delta_on_fabricated_coop11_records(coop11):
    for i, ds in enumerate(coop11.datasets):
        for seed in (1, 2, 3):  # dataset means 75.90 + i - 5 average to 80.90: CoOp 16-shot paper 79.90
            record(coop11, "coop", ds, 16, seed, 80.90 + i - 5 + (seed - 2) * 0.5)
        record(coop11, "zeroshot", ds, 1, 1, 60.0)
    report = build(coop11, compare="published")
    t = table(report, 16)
    assert t.loc["coop", "Average"] == "80.90" and t.loc["coop", "Δ paper"] == "+1.00"
    assert t.loc["zeroshot", "Δ paper"] == "-5.23"  # 60.00 − 65.23
    assert t.loc["rmt (paper)", "imagenet"] == "73.07" and t.loc["rmt (paper)", "Average"] == "83.96"
    assert t.loc["zeroshot (paper)", "eurosat"] == "47.60"
    assert t.loc["linear_probe (paper)", "Val"] == "fewshot_val (imagenet: oracle_test)†"
    assert list(t.index).index("coop") < list(t.index).index("rmt (paper)")  # paper rows after measured ones
    board = report.sections[0].leaderboard
    assert not board["Method"].str.contains("paper").any()  # never ranked with measured rows
    assert report.sections[0].published.set_index("Method").loc["tip_adapter (paper)", "16-shot"] == "81.24"
    assert "(paper)" in render(report) and "Δ paper" in render(report)


def test_no_published_comparison_for_other_backbones(smoke):
    record(smoke, "coop", "smoke_shapes", 1, 1, 50.0)
    report = build(smoke, compare="published")
    assert any("No published numbers for backbone" in n for n in report.sections[0].notes)
    assert "Δ paper" not in table(report, 1).columns and report.sections[0].published.empty
    with pytest.raises(BenchError, match="--compare takes 'published'"):
        build(smoke, compare="papers")


# ------------------------------------------------------------------------------ merging folders
def test_merging_folders_adds_a_contributors_method(smoke, tmp_path):
    import dataclasses

    theirs = dataclasses.replace(smoke, results_dir=tmp_path / "theirs")
    record(smoke, "coop", "smoke_shapes", 1, 1, 50.0)
    record(theirs, "clip_adapter", "smoke_shapes", 1, 1, 55.0)
    report = build(smoke, [smoke.results_dir, theirs.results_dir])
    assert set(table(report, 1).index) == {"coop", "clip_adapter"}
    assert any("Merged results folders" in line for line in report.header)


@pytest.mark.parametrize("field, value, reason", [
    ("split_digest", "other-split", "smoke_shapes: split digest differs"),
    ("weights", "cd" * 32, "backbone weights digest differs"),
    ("fewshot_digest", "other-draw", "smoke_shapes/1/1: few-shot draw digest differs"),
])
def test_merging_refuses_other_protocol_identities(smoke, tmp_path, field, value, reason):
    import dataclasses

    theirs = dataclasses.replace(smoke, results_dir=tmp_path / "theirs")
    record(smoke, "coop", "smoke_shapes", 1, 1, 50.0)
    record(theirs, "clip_adapter", "smoke_shapes", 1, 1, 55.0, **{field: value})
    with pytest.raises(BenchError) as err:
        build(smoke, [smoke.results_dir, theirs.results_dir])
    assert "not comparable" in str(err.value) and reason in str(err.value)


def test_within_one_folder_older_data_is_set_aside(smoke):
    record(smoke, "coop", "smoke_shapes", 1, 1, 10.0, split_digest="old")
    record(smoke, "coop", "smoke_shapes", 1, 2, 50.0, split_digest="new")
    report = build(smoke)
    assert table(report, 1).loc["coop", "smoke_shapes"] == "50.00 ± 0.00 (n=1)"
    assert any("1 records measured on older data" in n for n in report.footnotes)
