"""Doctor and `bench data check`: complete, missing, incomplete and corrupt trees."""

import dataclasses

import pytest
import typer
from typer.testing import CliRunner

from bench.cli_data import data_app
from bench.data import check_dataset, ensure_usable, load_card
from bench.data.cards import dataset_dir, image_dir
from bench.errors import BenchError


def test_complete_tree_is_ok(make_tree, data_root):
    for name in ("dtd", "imagenet", "fgvc_aircraft"):
        mini = make_tree(load_card(name))
        h = check_dataset(mini.card, data_root, full=True)
        assert h.status == "ok" and h.problems == [] and h.advice == [], h
        assert h.counts["train"] == mini.counts.train
        ensure_usable(mini.card, data_root)


def test_missing_dataset_says_what_to_download(data_root):
    card = load_card("eurosat")
    h = check_dataset(card, data_root)
    assert h.status == "missing"
    text = "\n".join(h.advice)
    assert "split_zhou_EuroSAT.json" in text and "drive.google.com" in text
    assert str(data_root / "eurosat" / "2750") in text and "zenodo" in text
    with pytest.raises(BenchError, match="dataset 'eurosat' is missing") as e:
        ensure_usable(card, data_root)
    assert "\n" not in str(e.value)


def test_corrupt_image_is_named(make_tree, data_root):
    mini = make_tree(load_card("caltech101"))
    victim = image_dir(mini.card, data_root) / mini.entries["val"][1][0]
    victim.write_bytes(b"not a jpeg")
    h = check_dataset(mini.card, data_root, full=True)
    assert h.status == "corrupt" and str(victim) in h.problems[0]


def test_bad_split_file_hash_and_json(make_tree, data_root):
    mini = make_tree(load_card("ucf101"))
    split = dataset_dir(mini.card, data_root) / mini.card.split_file
    split.write_text(split.read_text()[:-20])
    h = check_dataset(mini.card, data_root)
    assert h.status == "corrupt" and "sha256" in h.problems[0]
    h = check_dataset(dataclasses.replace(mini.card, split_sha256=None), data_root)
    assert h.status == "corrupt" and "not valid JSON" in h.problems[0] and h.advice


def test_incomplete_tree(make_tree, data_root):
    mini = make_tree(load_card("oxford_pets"))
    (image_dir(mini.card, data_root) / mini.entries["train"][0][0]).unlink()
    h = check_dataset(mini.card, data_root)
    assert h.status == "incomplete" and "1 of 27 listed images are missing" in h.problems[0]
    real = dataclasses.replace(load_card("oxford_pets"), split_sha256=None)
    assert "train: found 12, card expects 2,944" in "; ".join(check_dataset(real, data_root).problems)
    (dataset_dir(mini.card, data_root) / mini.card.split_file).unlink()
    h = check_dataset(mini.card, data_root)
    assert h.status == "incomplete" and "split file" in h.problems[0]


CARD = '''name = "tiny"
dir = "tiny"
image_root = "images"
split_source = "coop_json"
split_file = "split.json"
templates = ["{} texture."]

[[sources]]
what = "tiny.tar"
url = "https://example.org/tiny.tar"
place = "tiny/"
'''


def test_cli_check(tmp_path, monkeypatch, make_tree):
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "tiny.toml").write_text(CARD)
    (cards / "other.toml").write_text(CARD.replace('"tiny"', '"other"'))
    monkeypatch.setenv("BENCH_DATASETS_DIR", str(cards))
    make_tree(load_card("tiny"))
    run = CliRunner().invoke
    ok = run(data_app, ["check", "--root", str(tmp_path / "data"), "--datasets", "tiny", "--full"])
    assert ok.exit_code == 0, ok.output
    assert "tiny" in ok.output and "ok" in ok.output
    bad = run(data_app, ["check", "--root", str(tmp_path / "data")])
    assert bad.exit_code == 1 and "missing" in bad.output and "https://example.org/tiny.tar" in bad.output
    monkeypatch.setenv("BENCH_DATA", str(tmp_path / "data"))
    unknown = run(data_app, ["check", "--datasets", "tinyy"])
    assert unknown.exit_code == 2 and "did you mean 'tiny'" in unknown.output
    app = typer.Typer()
    app.add_typer(data_app, name="data")
    assert run(app, ["data", "check", "--datasets", "tiny"]).exit_code == 0
