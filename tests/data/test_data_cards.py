"""Cards: the 11 real datasets match the protocol; parsing is strict; `datasets` stays HF's."""

import hashlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

import bench
from bench.data import card_names, load_card, prompt_classname
from bench.data.cards import cards_dir, parse_card
from bench.errors import BenchError
from tests.conftest import CONFORMANCE  # $BENCH_CONFORMANCE: CoOp's published split files

REPO = Path(__file__).resolve().parents[2]

# docs/protocol.md §1 table and §4 templates.
REAL = {
    "imagenet": (1000, 1281167, 0, 50000, "a photo of a {}."),
    "caltech101": (100, 4128, 1649, 2465, "a photo of a {}."),
    "oxford_pets": (37, 2944, 736, 3669, "a photo of a {}, a type of pet."),
    "stanford_cars": (196, 6509, 1635, 8041, "a photo of a {}."),
    "oxford_flowers": (102, 4093, 1633, 2463, "a photo of a {}, a type of flower."),
    "food101": (101, 50500, 20200, 30300, "a photo of {}, a type of food."),
    "fgvc_aircraft": (100, 3334, 3333, 3333, "a photo of a {}, a type of aircraft."),
    "sun397": (397, 15880, 3970, 19850, "a photo of a {}."),
    "dtd": (47, 2820, 1128, 1692, "{} texture."),
    "eurosat": (10, 13500, 5400, 8100, "a centered satellite photo of {}."),
    "ucf101": (101, 7639, 1898, 3783, "a photo of a person doing {}."),
}
GOOD = """name = "{name}"
dir = "x"
image_root = "images"
split_source = "coop_json"
split_file = "s.json"
templates = ["a photo of a {{}}."]
"""


def write_card(d: Path, name: str = "toy", extra: str = "") -> Path:
    p = d / f"{name}.toml"
    p.write_text(GOOD.format(name=name) + extra)
    return p


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_card_matches_protocol(name):
    card = load_card(name)
    classes, train, val, test, template = REAL[name]
    assert (card.expected.classes, card.expected.train, card.expected.val, card.expected.test) == \
        (classes, train, val, test)
    assert card.templates == (template,)
    assert card.synthetic is None
    assert card.sources and all(s.url.startswith("http") for s in card.sources)


def test_split_hashes_known_or_omitted():
    assert load_card("food101").split_sha256 is None and load_card("sun397").split_sha256 is None
    if not CONFORMANCE.is_dir():
        pytest.skip("no conformance folder: set BENCH_CONFORMANCE to a folder of CoOp's published draws")
    for name in REAL:
        card = load_card(name)
        path = CONFORMANCE / "splits" / card.split_file
        if path.is_file():
            assert hashlib.sha256(path.read_bytes()).hexdigest() == card.split_sha256, name


def test_cards_dir_is_data_not_a_package():
    assert cards_dir() == Path(bench.__file__).parent / "cards"  # package data: found the same way installed
    assert cards_dir().resolve() == (REPO / "datasets").resolve()  # a link to the top-level datasets/
    assert set(REAL) <= set(card_names())
    assert not (REPO / "datasets" / "__init__.py").exists()


def test_import_datasets_is_hugging_face():
    # From the repo root (where a `datasets/` folder sits) the name must still resolve to HF's.
    code = "import importlib.util as u; print(u.find_spec('datasets').origin)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    origin = out.stdout.strip()
    assert origin.endswith("__init__.py") and Path(origin).parent != REPO / "datasets", origin
    if importlib.util.find_spec("datasets") is None:
        pytest.skip("Hugging Face datasets not installed")
    import datasets

    assert hasattr(datasets, "load_dataset")


def test_env_override_and_did_you_mean(tmp_path, monkeypatch):
    write_card(tmp_path, "toy")
    monkeypatch.setenv("BENCH_DATASETS_DIR", str(tmp_path))
    assert card_names() == ["toy"]
    assert load_card("toy").templates == ("a photo of a {}.",)
    with pytest.raises(BenchError, match="did you mean 'toy'"):
        load_card("tyo")


def test_synthetic_card_with_free_form_generator(tmp_path):
    p = write_card(tmp_path, extra='synthetic = "shapes"\n[generator]\nclasses = 3\nsize = [8, 8]\n')
    card = parse_card(p)
    assert card.synthetic == "shapes" and card.generator == {"classes": 3, "size": [8, 8]}
    assert card.expected is None


@pytest.mark.parametrize("extra, match", [
    ("colour = 1\n", "unknown key 'colour'"),
    ("notes = 3\n", "key 'notes' must be a string"),
    ("[expected]\nclasses = 1\ntrain = 1\nval = 1\n", "missing required key 'expected.test'"),
    ("[expected]\nclasses = true\ntrain = 1\nval = 1\ntest = 1\n", "'expected.classes' must be an integer"),
    ('split_sha256 = "abc"\n', "64 lowercase hex"),
    ('[[sources]]\nwhat = "a"\nurl = "u"\nwhere = "b"\n', "unknown key 'sources\\[0\\].where'"),
])
def test_strict_parsing_names_file_and_key(tmp_path, extra, match):
    p = write_card(tmp_path, extra=extra)
    with pytest.raises(BenchError, match=match) as e:
        parse_card(p)
    assert str(p) in str(e.value)


def test_bad_values(tmp_path):
    p = tmp_path / "toy.toml"
    p.write_text(GOOD.format(name="other"))
    with pytest.raises(BenchError, match="must equal the file name"):
        parse_card(p)
    p.write_text(GOOD.format(name="toy").replace("coop_json", "coop_jsn"))
    with pytest.raises(BenchError, match="did you mean 'coop_json'"):
        parse_card(p)
    p.write_text(GOOD.format(name="toy").replace("a photo of a {}.", "a photo"))
    with pytest.raises(BenchError, match="exactly one"):
        parse_card(p)
    p.write_text("name = ")
    with pytest.raises(BenchError, match="not valid TOML"):
        parse_card(p)


def test_prompt_classname():
    assert prompt_classname("american_pit_bull_terrier") == "american pit bull terrier"
