"""Procedural smoke datasets: coloured shapes rendered with PIL and written as real JPEGs in CoOp's layout.

A card with `synthetic = "shapes"` describes its dataset in its [generator] table (seed, class names or
`colours` × `shapes` for every colour_shape pair, images per class, rendering style). `ensure_generated`
builds the dataset on first use, atomically: everything is written into a temporary sibling directory that
is renamed into place only when complete, so a reader never sees half a dataset. Every image is rendered
from its own RNG, seeded by (seed, split, class, index), so the output does not depend on generation order
and is byte-identical from run to run on the same Pillow build. The split file also records the generator
settings, so its digest (part of every feature-cache key) changes whenever the pixels may have.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from bench.errors import BenchError

log = logging.getLogger(__name__)

GENERATOR_VERSION = 3  # bump when rendering changes: existing generated copies are then rebuilt
MARKER = ".generated.json"  # written last; its presence (with matching params) means "complete"

COLOURS = {
    "red": (205, 35, 35), "green": (40, 155, 55), "blue": (40, 75, 215), "yellow": (235, 205, 35),
    "purple": (135, 55, 175), "orange": (240, 130, 25), "pink": (240, 125, 185), "cyan": (40, 200, 210),
    "brown": (125, 78, 38), "white": (245, 245, 245), "gray": (128, 128, 128), "black": (22, 22, 22),
}
SHAPES = ("circle", "square", "triangle", "star", "cross", "hexagon", "ring", "diamond")


@dataclass(frozen=True)
class Style:
    """How hard an image is: shape size (fraction of the image), background, fill, clutter, noise."""

    size: tuple = (0.45, 0.85)
    spread: float = 1.0  # how far from the centre a shape may sit: 0 = centred, 1 = anywhere it fits
    backgrounds: tuple = ("plain",)  # plain | clutter | texture, one drawn per image
    fill: str = "solid"  # solid | texture (stripes, checks or dots in two colours)
    distractors: tuple = (0, 0)  # min, max number of small other shapes behind the main one
    noise: float = 0.0  # std of additive Gaussian pixel noise (0-255 scale)
    jitter: float = 20.0  # max per-channel colour offset of the main shape
    hue_shift: float = 0.0  # degrees: rotates every hue of the finished image (like a camera's colour cast)
    channels: str = "RGB"  # a permutation such as "BGR" swaps channels: false colour, as in satellite images

    @classmethod
    def from_table(cls, table: dict, where: str) -> "Style":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(table) - known)
        if unknown:
            raise BenchError(f"{where}: unknown style key(s) {unknown} (known: {sorted(known)})")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in table.items()})


def parse_class(name: str) -> tuple[str | None, str | None]:
    """'red_circle' -> ('red', 'circle'); 'star' -> (None, 'star'): a missing part is drawn at random."""
    colour = shape = None
    for part in name.split("_"):
        if part in COLOURS:
            colour = part
        elif part in SHAPES:
            shape = part
        else:
            raise BenchError(f"synthetic class '{name}': '{part}' is neither a colour "
                             f"{sorted(COLOURS)} nor a shape {list(SHAPES)}")
    return colour, shape


# ---------------------------------------------------------------- rendering
def _jitter(rng: random.Random, rgb, amount: float) -> tuple:
    return tuple(int(min(255, max(0, c + rng.uniform(-amount, amount)))) for c in rgb)


def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    if shape == "star":  # 5 points, inner radius 0.45 r
        pts = [(r if i % 2 == 0 else 0.45 * r, i * math.pi / 5) for i in range(10)]
    elif shape == "cross":  # plus sign with arms 0.36 r thick
        t = 0.36 * r
        xy = [(t, r), (t, t), (r, t), (r, -t), (t, -t), (t, -r), (-t, -r), (-t, -t), (-r, -t), (-r, t), (-t, t), (-t, r)]
        pts = [(math.hypot(x, y), math.atan2(y, x)) for x, y in xy]
    elif shape == "diamond":  # a narrow rhombus, so it never looks like a rotated square
        pts = [(r, -math.pi / 2), (0.55 * r, 0.0), (r, math.pi / 2), (0.55 * r, math.pi)]
    else:
        n = {"triangle": 3, "square": 4, "hexagon": 6}[shape]
        pts = [(r, 2 * math.pi * i / n + (math.pi / 4 if n == 4 else -math.pi / 2)) for i in range(n)]
    return [(cx + d * math.cos(a + angle), cy + d * math.sin(a + angle)) for d, a in pts]


def _shape_mask(shape: str, canvas: int, cx: float, cy: float, r: float, angle: float) -> Image.Image:
    mask = Image.new("L", (canvas, canvas), 0)
    draw = ImageDraw.Draw(mask)
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        draw.ellipse(box, fill=255)
    elif shape == "ring":
        draw.ellipse(box, fill=255)
        inner = 0.6 * r
        draw.ellipse((cx - inner, cy - inner, cx + inner, cy + inner), fill=0)
    else:
        draw.polygon(_polygon(shape, cx, cy, r, angle), fill=255)
    return mask


def _pattern(rng: random.Random, canvas: int, c1, c2) -> Image.Image:
    """Stripes at a random angle, checks, or dots: two colours, random period."""
    yy, xx = np.mgrid[0:canvas, 0:canvas].astype(np.float32)
    period = rng.uniform(0.08, 0.2) * canvas
    kind = rng.choice(("stripes", "checks", "dots"))
    if kind == "stripes":
        a = rng.uniform(0, math.pi)
        on = ((xx * math.cos(a) + yy * math.sin(a)) // (period / 2)) % 2 == 0
    elif kind == "checks":
        on = ((xx // period) + (yy // period)) % 2 == 0
    else:
        on = ((xx % period - period / 2) ** 2 + (yy % period - period / 2) ** 2) < (period / 3) ** 2
    out = np.where(on[..., None], np.array(c1, np.uint8), np.array(c2, np.uint8))
    return Image.fromarray(out.astype(np.uint8), "RGB")


def _random_colour(rng: random.Random) -> tuple:
    return _jitter(rng, COLOURS[rng.choice(sorted(COLOURS))], 40)


def _background(rng: random.Random, canvas: int, kind: str) -> Image.Image:
    base = tuple(rng.randint(60, 230) for _ in range(3)) if rng.random() < 0.5 else (rng.randint(90, 235),) * 3
    if kind == "texture":  # a low-contrast pattern behind the shape
        other = _jitter(rng, base, 60)
        return _pattern(rng, canvas, base, other)
    img = Image.new("RGB", (canvas, canvas), base)
    if kind == "clutter":  # random strokes and blobs, so colour alone is ambiguous
        draw = ImageDraw.Draw(img)
        for _ in range(rng.randint(3, 8)):
            pts = [(rng.uniform(0, canvas), rng.uniform(0, canvas)) for _ in range(2)]
            draw.line(pts, fill=_random_colour(rng), width=max(1, int(rng.uniform(0.02, 0.07) * canvas)))
    elif kind != "plain":
        raise BenchError(f"synthetic style: unknown background '{kind}' (plain, clutter, texture)")
    return img


def _place(rng: random.Random, canvas: int, lo: float, hi: float, spread: float = 1.0) -> tuple:
    r = rng.uniform(lo, hi) * canvas / 2
    slack = spread * (canvas / 2 - r)
    return canvas / 2 + rng.uniform(-slack, slack), canvas / 2 + rng.uniform(-slack, slack), r


def _angle(rng: random.Random, shape: str) -> float:
    # squares, crosses and diamonds stay near upright: a 45-degree square is a different shape to people
    limit = math.pi / 9 if shape in ("square", "cross", "diamond") else math.pi
    return rng.uniform(-limit, limit)


def render(rng: random.Random, colour: str | None, shape: str | None, style: Style, size: int) -> Image.Image:
    """One RGB image of `size` px: a (colour, shape) on a styled background. None = random choice."""
    colour = colour or rng.choice(sorted(COLOURS))
    shape = shape or rng.choice(SHAPES)
    canvas = 2 * size  # draw at 2x and downsample: anti-aliased edges like a photo, not a bitmap
    img = _background(rng, canvas, rng.choice(style.backgrounds))
    for _ in range(rng.randint(*style.distractors)):
        other = rng.choice(SHAPES)
        cx, cy, r = _place(rng, canvas, 0.12, 0.25)
        img.paste(_random_colour(rng), (0, 0), _shape_mask(other, canvas, cx, cy, r, _angle(rng, other)))
    rgb = _jitter(rng, COLOURS[colour], style.jitter)
    cx, cy, r = _place(rng, canvas, *style.size, style.spread)
    mask = _shape_mask(shape, canvas, cx, cy, r, _angle(rng, shape))
    if style.fill == "texture":
        second = _jitter(rng, rgb, 30) if rng.random() < 0.5 else _random_colour(rng)
        img.paste(_pattern(rng, canvas, rgb, second), (0, 0), mask)
    else:
        img.paste(rgb, (0, 0), mask)
    img = img.resize((size, size), Image.Resampling.LANCZOS)
    if style.hue_shift:
        hsv = np.asarray(img.convert("HSV")).copy()
        hsv[..., 0] = (hsv[..., 0].astype(np.int16) + round(style.hue_shift * 256 / 360)) % 256
        img = Image.fromarray(hsv, "HSV").convert("RGB")
    if style.channels != "RGB":
        if sorted(style.channels) != ["B", "G", "R"]:
            raise BenchError(f"synthetic style: channels '{style.channels}' is not a permutation of RGB")
        img = Image.merge("RGB", [img.getchannel(c) for c in style.channels])
    if style.noise > 0:
        noise = np.random.default_rng(rng.getrandbits(63)).normal(0, style.noise, (size, size, 3))
        img = Image.fromarray(np.clip(np.asarray(img, np.float32) + noise, 0, 255).astype(np.uint8))
    return img


# ---------------------------------------------------------------- datasets on disk
@dataclass(frozen=True)
class ShapesSpec:
    """A card's [generator] table, validated."""

    seed: int
    classes: tuple[str, ...]
    counts: dict  # split -> images per class
    image_size: int
    style: Style


def shapes_spec(card) -> ShapesSpec:
    table, where = dict(card.generator), f"dataset card {card.name} [generator]"
    try:
        seed, classes = int(table.pop("seed")), class_names(table, where)
        counts = {s: int(table.pop(s)) for s in ("train", "val", "test")}
    except KeyError as e:
        raise BenchError(f"{where}: missing key {e}") from None
    image_size = int(table.pop("image_size", 48))
    if len(set(classes)) != len(classes) or len(classes) < 2:
        raise BenchError(f"{where}: 'classes' must list at least two distinct names")
    for name in classes:
        parse_class(name)
    return ShapesSpec(seed, classes, counts, image_size, Style.from_table(table, where))


def class_names(table: dict, where: str = "[generator]") -> tuple[str, ...]:
    """The classes of a [generator] table: `classes` as listed, or every `colours` × `shapes` pair in that
    order (colour-major: red_circle, red_square, ..., green_circle, ...). Pops the keys it reads."""
    if "classes" in table:
        if "colours" in table or "shapes" in table:
            raise BenchError(f"{where}: give either 'classes' or 'colours' + 'shapes', not both")
        return tuple(table.pop("classes"))
    if "colours" not in table or "shapes" not in table:
        raise KeyError("classes")
    colours, shapes = list(table.pop("colours")), list(table.pop("shapes"))
    return tuple(f"{c}_{s}" for c in colours for s in shapes)


def _generate_shapes(card, out: Path) -> None:
    """Render every image of the card into `out` (the dataset dir) and write the CoOp split JSON."""
    spec = shapes_spec(card)
    image_root = out / card.image_root if card.image_root else out
    split: dict[str, list] = {}
    for part, per_class in spec.counts.items():
        entries = []
        for label, name in enumerate(spec.classes):
            (image_root / name).mkdir(parents=True, exist_ok=True)
            colour, shape = parse_class(name)
            for i in range(per_class):
                rng = random.Random(f"{spec.seed}/{part}/{name}/{i}")  # str seeds hash stably (sha512)
                rel = f"{name}/{part}_{i:04d}.jpg"
                render(rng, colour, shape, spec.style, spec.image_size).save(image_root / rel, "JPEG", quality=92)
                entries.append([rel, label, name])
        split[part] = entries
    # What made the pixels, inside the split file: its sha256 is the split digest in every feature-cache key
    # and record, so a dataset regenerated from edited settings (same file names, other pixels) never
    # reuses features cached for the old images. Readers ignore the extra key.
    split["generated_by"] = _fingerprint(card)
    (out / card.split_file).write_text(json.dumps(split) + "\n", encoding="utf-8")


GENERATORS = {"shapes": _generate_shapes}


def _fingerprint(card) -> dict:
    return {"generator": card.synthetic, "version": GENERATOR_VERSION, "params": card.generator,
            "image_root": card.image_root, "split_file": card.split_file}


def is_complete(card, root: Path) -> bool:
    """True when the marker matches this card and every file the split names is present."""
    out = Path(root) / card.dir
    try:
        if json.loads((out / MARKER).read_text(encoding="utf-8")) != _fingerprint(card):
            return False
        split = json.loads((out / card.split_file).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    image_root = out / card.image_root if card.image_root else out
    return all((image_root / e[0]).is_file() for part in ("train", "val", "test") for e in split.get(part, []))


@contextmanager
def file_lock(path: Path):
    """An exclusive inter-process lock (flock) so concurrent callers generate a dataset only once."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): the rename below still never exposes a partial dataset
        yield
        return
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_generated(card, root: Path) -> None:
    """Generate `card`'s synthetic dataset under `root` unless a complete, matching copy is there."""
    if not card.synthetic:
        raise BenchError(f"dataset {card.name} is not synthetic: nothing to generate")
    if card.synthetic not in GENERATORS:
        raise BenchError(f"dataset {card.name}: unknown synthetic generator '{card.synthetic}' "
                         f"(known: {sorted(GENERATORS)})")
    root = Path(root)
    if is_complete(card, root):
        return
    root.mkdir(parents=True, exist_ok=True)
    with file_lock(root / f".{card.dir}.lock"):
        if is_complete(card, root):  # another process finished while we waited
            return
        log.info("generating synthetic dataset %s under %s", card.name, root)
        tmp = root / f".{card.dir}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir()
            GENERATORS[card.synthetic](card, tmp)
            (tmp / MARKER).write_text(json.dumps(_fingerprint(card)), encoding="utf-8")
            _swap_into_place(tmp, root / card.dir)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _swap_into_place(tmp: Path, final: Path) -> None:
    """Rename the finished dir into place; a stale or partial copy is moved aside first, then deleted."""
    if final.exists():
        trash = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, trash)
        shutil.rmtree(trash, ignore_errors=True)
    os.replace(tmp, final)
