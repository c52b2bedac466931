"""Task image loading: multi-epoch training batches and test images decoded once per dataset."""

import torch

import bench.task as task_module
from tests.masks.conftest import make_job


def test_train_epochs_serve_exactly_the_batches_of_train_images(mask_ws, mask_suite):
    task = mask_ws.task(make_job(mask_suite, "mask_tuning", 4))
    multi = list(task.train_epochs(2, 16, scale=(0.5, 1.0), drop_last=True))
    single = [(e, *batch) for e in range(2) for batch in task.train_images(e, 16, scale=(0.5, 1.0), drop_last=True)]
    full = len(task.fewshot.train) // 16  # drop_last: only full batches
    assert [m[0] for m in multi] == [0] * full + [1] * full and len(single) == len(multi)
    for (e1, x1, y1, i1), (e2, x2, y2, i2) in zip(multi, single):
        assert e1 == e2 and torch.equal(x1, x2) and torch.equal(y1, y2) and torch.equal(i1, i2)
    assert not torch.equal(multi[0][3], multi[2][3])  # each epoch has its own order
    seen = torch.cat([m[3] for m in multi[:full]]).tolist()
    assert len(set(seen)) == 16 * full and set(seen) <= set(range(len(task.fewshot.train)))


def test_test_images_are_decoded_once_per_dataset_and_bit_identical(mask_ws, mask_suite, monkeypatch):
    first, second = (mask_ws.task(make_job(mask_suite, "mask_tuning", k)) for k in (1, 4))
    monkeypatch.setenv("BENCH_TEST_IMAGE_CACHE_MB", "0")  # budget 0: stream from disk
    task_module._DECODED.clear()
    streamed = list(first.test_images(64))
    assert not task_module._DECODED
    monkeypatch.delenv("BENCH_TEST_IMAGE_CACHE_MB")
    decoded, real = [], task_module.load_image
    monkeypatch.setattr(task_module, "load_image", lambda path: decoded.append(path) or real(path))
    cached = list(first.test_images(64))
    again = list(second.test_images(100))  # another job on the same dataset: no decoding at all
    assert len(decoded) == len(first.splits.test) and len(task_module._DECODED) == 1
    for name, index in (("images", 0), ("labels", 1), ("indices", 2)):
        want = torch.cat([b[index] for b in streamed])
        assert torch.equal(torch.cat([b[index] for b in cached]), want), name
        assert torch.equal(torch.cat([b[index] for b in again]), want), name
    assert next(iter(first.test_images(64)))[0].dtype == torch.float32
    assert task_module._DECODED[next(iter(task_module._DECODED))].pixels.dtype == torch.uint8
