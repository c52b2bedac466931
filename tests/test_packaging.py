"""A built wheel carries everything bench reads at run time, and works away from the source tree.

The wheel is built from a copy of the source tree (never in place: other builds may run in the
checkout) with the running environment's setuptools (`--no-build-isolation`, so no download), then
installed with `--target` into a folder and imported from there, from a working directory that is
neither the checkout nor the install folder.
"""

import json
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Top-level folders of a checkout that are no input to the build (caches, results, environments).
NOT_SOURCE = {".git", ".venv", "venv", ".bench", ".pytest_cache", "results", "build", "dist", "data"}


def _ignore(folder, names):
    top = Path(folder).resolve() == REPO
    return [n for n in names if n == "__pycache__" or n.endswith(".egg-info") or (top and n in NOT_SOURCE)]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("packaging")
    src = tmp / "src"
    shutil.copytree(REPO, src, symlinks=True, ignore=_ignore)
    out = tmp / "dist"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "--no-index", "-w", str(out), str(src)], capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    wheels = list(out.glob("bench-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def names(wheel) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


def _source_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(REPO / "bench").as_posix() for p in folder.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts)


def test_wheel_holds_every_dataset_card(names):
    cards = sorted(p.name for p in (REPO / "datasets").glob("*.toml"))
    assert len(cards) >= 13
    missing = [c for c in cards if f"bench/cards/{c}" not in names]
    assert not missing, f"cards missing from the wheel: {missing}"


def test_wheel_holds_the_tasks_file_and_published_numbers(wheel, names):
    assert "bench/report/published.toml" in names
    assert "bench/tasks.toml" in names
    with zipfile.ZipFile(wheel) as zf:
        assert zf.read("bench/tasks.toml") == (REPO / "tasks.toml").read_bytes()
        assert zf.read("bench/report/published.toml") == (REPO / "bench/report/published.toml").read_bytes()


def test_wheel_holds_everything_under_bench_assets(names):
    assets = REPO / "bench" / "assets"
    assert assets.is_dir(), "bench/assets/ (the demo backbone's files) is missing from the source tree"
    files = _source_files(assets)
    assert files, "bench/assets/ is empty"
    missing = [f for f in files if f"bench/{f}" not in names]
    assert not missing, f"bench/assets files missing from the wheel: {missing}"


def test_wheel_ships_no_stray_top_level_package(wheel, names):
    """`datasets/` must stay data (Hugging Face `datasets` stays importable), benchmarks/ is no package."""
    with zipfile.ZipFile(wheel) as zf:
        info = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
        top_level = set(zf.read(info).decode().split())
    assert top_level == {"bench", "methods"}
    assert not [n for n in names if n.split("/")[0] in ("datasets", "benchmarks", "tests", "scripts")]


def test_installed_wheel_finds_its_cards_and_tasks_file_from_any_folder(wheel, tmp_path):
    site = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index",
                              "--target", str(site), str(wheel)], capture_output=True, text=True)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    work = tmp_path / "work"
    work.mkdir()
    probe = textwrap.dedent("""
        import json, bench
        from bench.config import default_tasks_path, load
        from bench.data.cards import card_names, cards_dir
        from bench.runner import git_state
        cfg = load(default_tasks_path(), known_datasets=card_names())
        smoke = cfg.suite("smoke")
        print(json.dumps({"bench": bench.__file__, "cards": card_names(), "cards_dir": str(cards_dir()),
                          "tasks": str(cfg.path), "suites": sorted(cfg.suites),
                          "results_dir": str(smoke.results_dir), "git": git_state()}))
    """)
    env = {k: v for k, v in __import__("os").environ.items()
           if k not in ("BENCH_TASKS", "BENCH_DATASETS_DIR", "PYTHONPATH")}
    run = subprocess.run([sys.executable, "-c", probe], cwd=work, capture_output=True, text=True,
                         env={**env, "PYTHONPATH": str(site)})
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert Path(got["bench"]).is_relative_to(site), got["bench"]  # the wheel, not the checkout
    assert Path(got["cards_dir"]).is_relative_to(site) and Path(got["tasks"]).is_relative_to(site)
    assert got["cards"] == sorted(p.stem for p in (REPO / "datasets").glob("*.toml"))
    assert {"smoke", "coop11"} <= set(got["suites"])
    assert Path(got["results_dir"]) == work.resolve() / "results" / "smoke"  # never into the install
    assert got["git"] == {"sha": None, "dirty": None}
