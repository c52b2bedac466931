from bench.report import leaderboard, load_frame, render, shot_table, summarize
from bench.results import write_record

BACKBONE = {"builtin": "smoke"}


def put(results, method, dataset, seed, top1, created, status="ok", masked=None, job=None):
    metrics = {"top1": top1}
    if masked is not None:
        metrics["masked_pct_of_masked_tensors"] = masked
    write_record(results, {"job_id": job or f"{method}-{dataset}-{seed}-{created}", "method": method,
                           "dataset": dataset, "shots": 1, "seed": seed, "backbone": BACKBONE,
                           "created_at": f"2026-01-0{created}T00:00:00.000000+00:00",
                           "status": status, "metrics": metrics})


def fill(results):
    for seed, value in zip((1, 2, 3), (70, 72, 74)):
        put(results, "a", "d1", seed, value, 2)
    for seed, value in zip((1, 2, 3), (50, 50, 56)):
        put(results, "a", "d2", seed, value, 2)
    put(results, "a", "d1", 2, 0.0, 5, status="failed")  # a failed rerun does not erase the ok number
    put(results, "b", "d1", 1, 10.0, 1)  # older record of the same cell: superseded below
    for seed in (1, 2, 3):
        put(results, "b", "d1", seed, 80.0, 3, masked=3.0 if seed == 1 else 5.0)
    put(results, "b", "d2", 1, 40.0, 3, masked=4.0)


def test_cells_are_mean_and_population_std_of_the_latest_ok_records(tmp_path):
    fill(tmp_path)
    frame = load_frame(tmp_path)
    assert len(frame) == 10  # 6 for a + 4 for b; the superseded and failed records are gone
    table = shot_table(summarize(frame), 1, ["d1", "d2"]).set_index("Method")
    assert table.loc["a", "d1"] == "72.00 ± 1.63"  # std of 70,72,74 with ddof=0 = 1.633
    assert table.loc["a", "d2"] == "52.00 ± 2.83"  # sqrt(8)
    assert table.loc["a", "Average"] == "62.00"
    assert table.loc["b", "d1"] == "80.00 ± 0.00" and table.loc["b", "Average"] == "60.00"
    # masked %: mean over datasets of the per-dataset means: (mean(3,5,5) + 4) / 2 = 4.1667
    assert table.loc["b", "Masked %"] == "4.17" and table.loc["a", "Masked %"] == ""
    assert list(table.index) == ["a", "b"]  # sorted by average


def test_leaderboard_ranks_and_flags_incomplete(tmp_path):
    fill(tmp_path)
    board = leaderboard(summarize(load_frame(tmp_path)), ["d1", "d2", "d3"], [1]).set_index("Method")
    assert board.loc["a", "1-shot"] == "62.00*" and board.loc["a", "Rank"] == 1
    board = leaderboard(summarize(load_frame(tmp_path)), ["d1", "d2"], [1]).set_index("Method")
    assert board.loc["a", "Mean"] == "62.00" and board.loc["b", "Rank"] == 2


def test_render_markdown_and_csv(tmp_path):
    fill(tmp_path)
    text = render(tmp_path, ["d1", "d2"], [1])
    assert "### 1-shot" in text and "| a " in text and "Leaderboard" in text
    csv = render(tmp_path, ["d1", "d2"], [1], fmt="csv")
    assert csv.splitlines()[0].startswith("backbone,method,dataset,shots,mean,std")
    assert "No finished results" in render(tmp_path / "empty", ["d1"], [1])
