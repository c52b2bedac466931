"""Speed benchmark of the training engine (a script, not a test). Results go to benchmarks/RESULTS.md.

CPU mode (default): the smoke suite's grid, run twice through the real scheduler (bench.scheduler.run_inline):
once with the frozen-feature cache (a fresh, empty cache folder, so the first fill is counted) and once
with caching disabled (every job re-encodes its images). Reports the ratio and seconds per run per method.

    python benchmarks/speed.py --shots 1,4,16 --seeds 1
    python benchmarks/speed.py --methods zeroshot,linear_probe,clip_adapter,coop,mask_tuning,rmt

GPU mode: real dataset sizes on synthetic JPEGs (docs/protocol.md §1 counts: real class count, real test split,
a few-shot-sized train/val list) and a random-init ViT-B/16 (tasks.toml backbone `vit_b16_random`;
speed does not depend on weight values). Times the feature-cache fill and each job's fit and evaluation.
`--scale` shrinks class and image counts alike and `--epoch-cap` caps epochs, to smoke-test the code path:

    python benchmarks/speed.py --gpu                                     # everything, real sizes
    python benchmarks/speed.py --gpu --datasets eurosat,dtd --shots 1,16 --epoch-cap 10
    python benchmarks/speed.py --gpu --scale 0.001 --device cpu --shots 1 --epoch-cap 1 --datasets dtd
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
RESULTS = Path(__file__).with_name("RESULTS.md")
DEFAULT_METHODS = "zeroshot,linear_probe,clip_adapter,coop"
REAL = ("imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
        "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101")
# Typical image size (w, h) per dataset, approximate: decode + resize cost scales with pixels.
SIZES = {"imagenet": (500, 375), "caltech101": (300, 200), "oxford_pets": (500, 375),
         "stanford_cars": (700, 480), "oxford_flowers": (670, 500), "food101": (512, 512),
         "fgvc_aircraft": (1000, 700), "sun397": (900, 700), "dtd": (640, 480), "eurosat": (64, 64),
         "ucf101": (320, 240)}


def machine(device: str) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line)
    except (OSError, StopIteration):
        pass
    import open_clip

    gpu = f", GPU {torch.cuda.get_device_name(0)}" if device == "cuda" and torch.cuda.is_available() else ""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu}, {os.cpu_count()} logical CPUs (torch threads {torch.get_num_threads()}){gpu}; "
            f"load average {load:.1f} at start; torch {torch.__version__}, open_clip {open_clip.__version__}, "
            f"Python {platform.python_version()}")


@contextmanager
def env(name: str, value: str):
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None) if old is None else os.environ.__setitem__(name, old)


def cheap(method: str, cap: int) -> dict:
    """Default params, with epochs capped when asked (methods without epochs run in full)."""
    from bench.method import params_dict
    from bench.registry import METHODS

    params = METHODS.get(method).Params()
    if cap and "epochs" in {f.name for f in dataclasses.fields(params)}:
        params = dataclasses.replace(params, epochs=cap)
    return params_dict(params)


# ---------------------------------------------------------------- CPU mode: the smoke grid
def run_grid(suite, jobs, cached: bool, folder: Path) -> tuple[float, list[dict]]:
    """Wall seconds and records of the grid with BENCH_CACHE = folder (smoke assets linked in)."""
    from bench.features import cache_root
    from bench.scheduler import run_inline

    if not (folder / "smoke").exists():
        (folder / "smoke").symlink_to(cache_root() / "smoke", target_is_directory=True)
    with env("BENCH_CACHE", str(folder)):
        run = dataclasses.replace(suite, results_dir=folder / f"results-{time.time_ns()}")
        start = time.perf_counter()
        records = run_inline(run, jobs, device="cpu", feature_cache=cached)
        wall = time.perf_counter() - start
    failed = [r["error"] for r in records if r["status"] != "ok"]
    if failed:
        raise SystemExit(f"{len(failed)} jobs failed, first: {failed[0]}")
    return wall, records


def cpu_mode(args) -> str:
    from bench.cli import load_config
    from bench.jobs import expand
    from bench.runner import Workspace
    from bench.scheduler import preflight

    suite = load_config(args.tasks).suite(args.suite)
    jobs = expand(suite, args.methods, args.datasets or None, args.shots, args.seeds)
    if args.epoch_cap:
        jobs = [dataclasses.replace(j, params=cheap(j.base, args.epoch_cap)) for j in jobs]
    preflight(suite, jobs)
    Workspace(suite, device="cpu").backbone  # build the smoke backbone before any clock starts
    timings = {}
    with tempfile.TemporaryDirectory(prefix="bench-speed-") as tmp:
        # cold first (it pays a cold page cache, if anything), then the same grid again on the filled
        # cache (a re-run, or a new method on the same cells), then with caching off
        for mode, cached in (("cold", True), ("warm", True), ("off", False)):
            timings[mode] = run_grid(suite, jobs, cached, Path(tmp))
            print(f"cache {mode}: {timings[mode][0]:.1f} s for {len(jobs)} jobs", flush=True)
    return cpu_report(suite, jobs, timings, args)


def cpu_report(suite, jobs, timings, args) -> str:
    wall = {mode: t[0] for mode, t in timings.items()}
    lines = [f"Grid: suite `{suite.name}`, datasets {', '.join(sorted({j.dataset for j in jobs}))}; shots "
             f"{args.shots or list(suite.shots)}; seeds {args.seeds or list(suite.seeds)}; {len(jobs)} jobs; "
             f"epochs: {'capped at %d' % args.epoch_cap if args.epoch_cap else 'protocol defaults'}; device cpu.",
             "", "| | cache on, empty at start (fill included) | cache on, filled (re-run) | cache off |",
             "|---|---|---|---|",
             f"| whole grid, wall s | {wall['cold']:.1f} | {wall['warm']:.1f} | {wall['off']:.1f} |",
             f"| speed-up vs cache off | **{wall['off'] / wall['cold']:.2f}×** | **{wall['off'] / wall['warm']:.2f}×** | 1× |",
             "", "Seconds per run (record `timings.wall_s`: few-shot draw + fit + evaluation on the full test "
             "split), mean over the runs of each method:", "",
             "| method | runs | cache on, empty at start | cache on, filled | cache off | speed-up (empty / filled) |",
             "|---|---|---|---|---|---|"]
    for method in args.methods:
        mean = {mode: statistics.mean(r["timings"]["wall_s"] for r in recs if r["method"] == method)
                for mode, (_, recs) in timings.items()}
        runs = sum(r["method"] == method for r in timings["off"][1])
        lines.append(f"| {method} | {runs} | {mean['cold']:.2f} | {mean['warm']:.2f} | {mean['off']:.2f} | "
                     f"{mean['off'] / mean['cold']:.2f}× / {mean['off'] / mean['warm']:.2f}× |")
    return "\n".join(lines)


# ---------------------------------------------------------------- GPU mode: real sizes, synthetic pixels
def jpeg_pool(folder: Path, size, count: int, seed: int) -> list[Path]:
    """Distinct smooth random JPEGs (compress like photos, unlike white noise)."""
    from PIL import Image, ImageDraw, ImageFilter

    folder.mkdir(parents=True, exist_ok=True)
    rng, paths = random.Random(seed), []
    for i in range(count):
        small = Image.effect_noise((max(2, size[0] // 16), max(2, size[1] // 16)), 64).convert("RGB")
        image = small.resize(size, Image.BICUBIC)
        draw = ImageDraw.Draw(image)
        for _ in range(4):
            x, y = rng.randrange(size[0]), rng.randrange(size[1])
            r = rng.randrange(4, max(5, min(size) // 3))
            draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(rng.randrange(256) for _ in range(3)))
        paths.append(folder / f"pool_{i:04d}.jpg")
        image.filter(ImageFilter.SMOOTH).save(paths[-1], "JPEG", quality=90)
    return paths


def synthetic_splits(name: str, root: Path, scale: float, per_class_train: int):
    """DatasetSplits with the real class count and test size (scaled), every file a hard link into a pool
    of distinct JPEGs. Train holds per_class_train items per class (enough for any K-shot draw)."""
    from bench.data import DatasetSplits, Item, load_card

    counts = load_card(name).expected
    classes = max(2, round(counts.classes * scale))
    sizes = {"train": classes * per_class_train, "val": classes * 4 if counts.val else 0,
             "test": max(classes, round(counts.test * scale))}
    pool = jpeg_pool(root / "pool", SIZES[name], min(512, sum(sizes.values())), seed=len(name))
    parts, k = {}, 0
    for part, n in sizes.items():
        items = []
        for i in range(n):
            path = root / part / f"{i:06d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            os.link(pool[k % len(pool)], path)
            k += 1
            items.append(Item(str(path), i % classes, f"synthetic class {i % classes}"))
        parts[part] = items
    names = [f"synthetic class {c}" for c in range(classes)]
    return DatasetSplits(name, names, parts["train"], parts["val"], parts["test"], f"synthetic-{scale}", str(root))


def gpu_dataset(name, args, backbone, device, root: Path, out) -> list[dict]:
    """Time one dataset: the test-feature fill, then every (method, shots, seed) fit + evaluation."""
    from bench.data import load_card, sample_fewshot
    from bench.features import FeatureStore
    from bench.registry import METHODS
    from bench.runner import evaluate
    from bench.task import Task

    splits = synthetic_splits(name, root / name, args.scale, max(args.shots) + 2)
    precision = "amp" if device.type == "cuda" else "fp32"
    workers = min(16, os.cpu_count() or 1) if device.type == "cuda" else 0
    store = FeatureStore(backbone, splits, device, precision, workers, root=root / "features")
    start = time.perf_counter()
    store.test()
    rows = [{"dataset": name, "method": "(test features)", "shots": 0, "seed": 0, "fit_s": time.perf_counter() - start,
             "eval_s": 0.0, "epochs": None, "images": len(splits.test), "peak_gb": peak_gb(device)}]
    out(rows[-1])
    for shots in args.shots:
        for seed in args.seeds:
            fewshot = sample_fewshot(splits, shots, seed, draw_val=bool(splits.val))
            task = Task(card=load_card(name), splits=splits, fewshot=fewshot, shots=shots, seed=seed,
                        backbone=backbone, device=device, precision=precision, features=store, workers=workers)
            for method in args.methods:
                cls = METHODS.get(method)
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                start = time.perf_counter()
                fitted = cls().fit(task, cls.Params(**cheap(method, args.epoch_cap)))
                sync(device)
                fit_s, start = time.perf_counter() - start, time.perf_counter()
                evaluate(fitted, cls.inputs, task)
                sync(device)
                rows.append({"dataset": name, "method": method, "shots": shots, "seed": seed, "fit_s": fit_s,
                             "eval_s": time.perf_counter() - start, "epochs": fitted.config.get("epochs"),
                             "images": len(fewshot.train), "peak_gb": peak_gb(device)})
                out(rows[-1])
    return rows


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_gb(device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0


def gpu_mode(args) -> str:
    from bench.backbone import load_backbone
    from bench.cli import load_config

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    backbone = load_backbone(load_config(args.tasks).backbones["vit_b16_random"], device)
    rows = []
    log = open(args.json, "a") if args.json else None

    def out(row):
        print(json.dumps(row), flush=True)
        if log:
            log.write(json.dumps(row) + "\n")
            log.flush()

    with tempfile.TemporaryDirectory(prefix="bench-gpu-speed-", dir=args.workdir) as tmp:
        for name in args.datasets or REAL:
            rows += gpu_dataset(name, args, backbone, device, Path(tmp), out)
    return gpu_report(rows, args, device)


def gpu_report(rows, args, device) -> str:
    lines = [f"Backbone: random-init `ViT-B-16-quickgelu`; device {device}; precision "
             f"{'AMP fp16' if device.type == 'cuda' else 'fp32'}; scale {args.scale}; epochs "
             f"{'capped at %d' % args.epoch_cap if args.epoch_cap else 'protocol defaults'}; shots {args.shots}; "
             f"seeds {args.seeds}. Few-shot views and test features are filled by the first method that "
             f"needs them (so the first CoOp/CLIP-Adapter job of a cell includes encoding its views).", "",
             "| dataset | method | shots | seed | epochs | train images | fit s | eval s | peak GiB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['method']} | {r['shots'] or ''} | {r['seed'] or ''} | "
                     f"{r['epochs'] if r['epochs'] is not None else ''} | {r['images']} | {r['fit_s']:.2f} | "
                     f"{r['eval_s']:.2f} | {r['peak_gb']:.2f} |")
    return "\n".join(lines)


# ---------------------------------------------------------------- RESULTS.md
def write_section(mode: str, title: str, body: str, machine_line: str) -> None:
    """Replace this mode's section of RESULTS.md (between markers), keeping the others."""
    begin, end = f"<!-- {mode} begin -->", f"<!-- {mode} end -->"
    text = RESULTS.read_text() if RESULTS.exists() else "# Speed benchmark results\n\nWritten by `benchmarks/speed.py`.\n"
    section = (f"{begin}\n## {title}\n\nMeasured {time.strftime('%Y-%m-%d %H:%M')} on: {machine_line}\n\n"
               f"Command: `python benchmarks/speed.py {' '.join(sys.argv[1:])}`\n\n{body}\n{end}")
    if begin in text and end in text:
        text = text[:text.index(begin)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    RESULTS.write_text(text)


def parse(argv=None):
    ints = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
    names = lambda s: [x for x in s.split(",") if x]  # noqa: E731
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--gpu", action="store_true", help="real-size synthetic datasets, random ViT-B/16")
    p.add_argument("--methods", type=names, default=names(DEFAULT_METHODS))
    p.add_argument("--datasets", type=names, default=None)
    p.add_argument("--shots", type=ints, default=None)
    p.add_argument("--seeds", type=ints, default=None)
    p.add_argument("--epoch-cap", type=int, default=0, help="run methods with epochs = this (0 = defaults)")
    p.add_argument("--scale", type=float, default=1.0, help="GPU mode: shrink class/image counts")
    p.add_argument("--device", default=None, help="GPU mode: device (default cuda when available)")
    p.add_argument("--workdir", default=None, help="GPU mode: where the synthetic JPEGs go (default /tmp)")
    p.add_argument("--json", default=None, help="GPU mode: also append one JSON line per job here")
    p.add_argument("--tasks", type=Path, default=REPO / "tasks.toml")
    p.add_argument("--suite", default="smoke")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--no-write", action="store_true", help="print the tables, leave RESULTS.md alone")
    p.add_argument("--section", default=None, help="RESULTS.md section to (re)write (default: by mode)")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.gpu:
        args.shots, args.seeds = args.shots or [1, 16], args.seeds or [1]
    device = "cuda" if args.gpu and (args.device or "cuda") == "cuda" else "cpu"
    line = machine(device)
    body = gpu_mode(args) if args.gpu else cpu_mode(args)
    print(body)
    if not args.no_write:
        title = "GPU mode (real sizes)" if args.gpu and args.scale == 1.0 else (
            "GPU mode code path (dry run)" if args.gpu else "CPU mode (smoke suite)")
        section = args.section or ("gpu" if args.gpu and args.scale == 1.0 else "dryrun" if args.gpu else "cpu")
        write_section(section, title if not args.section else f"{title}: {args.section}", body, line)


if __name__ == "__main__":
    main()
