"""Split files hold paths relative to the image folder: an entry that is absolute or climbs out of it
with '..' is refused with one line naming the split file and the entry; relative entries still load."""

import json

import pytest

from bench.data import DatasetCard, load_splits
from bench.data.cards import dataset_dir, image_dir
from bench.data.readers import check_inside
from bench.errors import BenchError

SPLIT = {"train": [["A/1.jpg", 0, "a"], ["B/1.jpg", 1, "b"]], "val": [["A/2.jpg", 0, "a"]],
         "test": [["B/2.jpg", 1, "b"]]}


def card(source: str = "coop_json", image_root: str = "images") -> DatasetCard:
    return DatasetCard(name="toy", dir="toy", image_root=image_root, split_source=source,
                       split_file="split.json", templates=("{}",))


@pytest.fixture
def toy(data_root, jpeg):
    for k, rel in enumerate(sorted({e[0] for rows in SPLIT.values() for e in rows})):
        jpeg(data_root / "toy" / "images" / rel, (30 * k, 0, 0))
    return data_root


def write_split(root, split: str, index: int, path: str) -> None:
    data = json.loads(json.dumps(SPLIT))
    data[split][index][0] = path
    (root / "toy" / "split.json").write_text(json.dumps(data))


@pytest.mark.parametrize("split, index, entry", [
    ("train", 1, "/etc/passwd"),
    ("train", 0, "../../outside.jpg"),
    ("val", 0, "A/../../B/../../x.jpg"),
    ("test", 0, ".."),
])
def test_an_entry_outside_the_image_folder_is_refused(toy, split, index, entry):
    write_split(toy, split, index, entry)
    with pytest.raises(BenchError) as info:
        load_splits(card(), toy, check_files=False)
    where = dataset_dir(card(), toy) / "split.json"
    assert str(info.value) == (f"{where}: {split} entry {index} '{entry}' is outside the image folder "
                               f"{image_dir(card(), toy)}; split files hold paths relative to it")


def test_relative_entries_still_load_even_with_an_inner_dotdot(toy):
    write_split(toy, "train", 0, "B/../A/1.jpg")  # stays inside the image folder
    splits = load_splits(card(), toy)
    assert [it.label for it in splits.train] == [0, 1] and len(splits.test) == 1


def test_hugging_face_copies_refuse_escapes_before_extracting_anything(toy):
    write_split(toy, "train", 1, "../../../evil.jpg")
    (toy / "toy" / "hf").mkdir()
    with pytest.raises(BenchError, match="train entry 1 '../../../evil.jpg' is outside the image folder"):
        load_splits(card("hf", "hf"), toy)
    assert not (toy.parent / "evil.jpg").exists()


def test_fgvc_image_ids_are_checked_too(make_tree, data_root):
    from bench.data import load_card

    mini = make_tree(load_card("fgvc_aircraft"))
    listing = dataset_dir(mini.card, data_root) / "images_variant_val.txt"
    listing.write_text(listing.read_text() + "../../../etc/passwd 707-320\n")
    with pytest.raises(BenchError, match=r"images_variant_val.txt: val entry \d+ '../../../etc/passwd.jpg' is "
                                         "outside the image folder"):
        load_splits(mini.card, data_root, check_files=False)


def test_the_check_is_lexical_and_needs_no_files(tmp_path):
    check_inside({"train": [("a/b.jpg", 0, "x"), ("./c.jpg", 0, "x")]}, tmp_path / "nowhere", "s.json")
    with pytest.raises(BenchError, match="s.json: train entry 1 '/abs.jpg'"):
        check_inside({"train": [("a.jpg", 0, "x"), ("/abs.jpg", 0, "x")]}, tmp_path / "nowhere", "s.json")


def test_a_fewshot_pickle_path_that_climbs_out_of_the_image_root_is_refused(tmp_path):
    from bench.data.fewshot import rebase

    root = tmp_path / "dtd" / "images"
    assert rebase("/old/machine/dtd/images/banded/a.jpg", root) == root / "banded" / "a.jpg"
    with pytest.raises(BenchError, match="climbs out of that folder"):
        rebase("/old/machine/dtd/images/../../../etc/passwd", root)
