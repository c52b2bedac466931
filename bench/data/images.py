"""Image decoding, kept free of torch so the doctor and readers import quickly."""

from __future__ import annotations

from PIL import Image, UnidentifiedImageError

from bench.errors import BenchError


def load_image(path: str) -> Image.Image:
    """Open an image as RGB; a missing or undecodable file is a BenchError naming the file."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")  # convert() forces the full decode inside the try
    except FileNotFoundError:
        raise BenchError(f"image {path} not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise BenchError(f"image {path} cannot be decoded ({e}); the file is corrupt: "
                         "re-download the dataset") from None
