"""Transforms: the train view is a pure function of (seed, epoch, index); test is the CLIP recipe."""

import pytest
import torch
from PIL import Image

from bench.data.transforms import (CLIP_MEAN, CLIP_STD, crop_params, load_image, test_transform,
                                   train_transform, transform_id)
from bench.errors import BenchError


@pytest.fixture(scope="module")
def image():
    # A gradient so that different crops/flips give different pixels.
    im = Image.new("RGB", (40, 30))
    im.putdata([(x * 6, y * 8, (x * y) % 256) for y in range(30) for x in range(40)])
    return im


def test_train_view_is_deterministic(image):
    tf = train_transform(16)
    state = torch.get_rng_state()
    a = tf(image, 1, 0, 5)
    assert torch.equal(a, train_transform(16)(image, 1, 0, 5))
    assert torch.equal(torch.get_rng_state(), state)  # global torch RNG untouched
    assert a.shape == (3, 16, 16) and a.dtype == torch.float32
    for other in [(2, 0, 5), (1, 1, 5), (1, 0, 6)]:
        assert not torch.equal(a, tf(image, *other)), other


def test_scale_changes_id_and_views(image):
    assert train_transform(16).transform_id != train_transform(16, scale=(0.5, 1.0)).transform_id
    assert transform_id("train", 16) == train_transform(16).transform_id
    assert transform_id("test", 16) != transform_id("test", 16, mean=(0, 0, 0))
    with pytest.raises(BenchError, match="unknown transform kind"):
        transform_id("eval", 16)


def test_test_transform(image):
    tf = test_transform(16)
    x = tf(image)
    assert x.shape == (3, 16, 16) and torch.equal(x, tf(image))
    assert tf.transform_id == transform_id("test", 16)
    flat = test_transform(8)(Image.new("RGB", (20, 10), (255, 255, 255)))
    expected = (1 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    assert torch.allclose(flat[:, 4, 4], expected, atol=1e-5)


def test_crop_params_fit_and_fallback():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        top, left, h, w = crop_params(40, 30, (0.08, 1.0), g)
        assert 0 <= top and top + h <= 30 and 0 <= left and left + w <= 40
    # A 1000x1 strip never admits a crop inside the ratio range: center fallback.
    assert crop_params(1000, 1, (0.9, 1.0), g) == (0, 499, 1, 1)


def test_load_image(tmp_path, jpeg):
    p = tmp_path / "ok.png"
    Image.new("L", (4, 4), 7).save(p)
    assert load_image(str(p)).mode == "RGB"
    bad = tmp_path / "bad.jpg"
    jpeg(bad, (1, 2, 3))
    bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(BenchError, match="bad.jpg cannot be decoded"):
        load_image(str(bad))
    with pytest.raises(BenchError, match="nope.jpg not found"):
        load_image(str(tmp_path / "nope.jpg"))
