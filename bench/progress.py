"""Progress of slow preparation steps (building or loading a backbone, generating a dataset, encoding
features), reported by library code that knows nothing about executors or terminals:

    from bench import progress

    progress.report("encoding dtd/test", done, total)   # counts, e.g. images encoded so far
    with progress.step("loading backbone vit_b16"):     # a step without a natural count: 0/1, then 1/1
        ...

A report goes to the sink installed in this process: a `bench run` worker forwards it to its driver
(bench.worker), the driver and the inline executor hand it to the live view (Listener.progress). With no
sink installed (tests, notebooks, scripts) a report does nothing. Library code never prints progress.
A failing sink never fails the caller."""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import contextmanager
from typing import Callable, Optional

log = logging.getLogger(__name__)

Sink = Callable[[str, int, Optional[int]], None]  # (stage, done, total or None)
_sink: tuple[int, Sink] | None = None  # (pid that installed it, sink)


def report(stage: str, done: int, total: int | None = None) -> None:
    """`done` of `total` units of `stage` are finished (total None: unknown). Cheap when nobody listens."""
    installed = _sink
    if installed is None or installed[0] != os.getpid():  # a forked child (DataLoader worker) stays silent
        return
    try:
        installed[1](stage, int(done), None if total is None else int(total))
    except Exception:  # progress is a courtesy: it must never break a job
        log.debug("progress sink failed", exc_info=True)


@contextmanager
def step(stage: str):
    """A step reported as 0/1 when it starts and 1/1 when it ends (not when it raises)."""
    report(stage, 0, 1)
    yield
    report(stage, 1, 1)


@contextmanager
def reporting_to(sink: Sink):
    """Install `sink` for this process while the block runs (the previous one is restored after)."""
    global _sink
    previous, _sink = _sink, (os.getpid(), sink)
    try:
        yield
    finally:
        _sink = previous


class Throttle:
    """Wraps a sink so it passes on the first report of a stage, its last (done == total) and at most
    one report per `interval` seconds in between: a pipe to the driver is not flooded per batch."""

    def __init__(self, sink: Sink, interval: float = 0.25):
        self.sink, self.interval = sink, interval
        self._last: tuple[str, float] | None = None
        self._mutex = threading.Lock()

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        with self._mutex:
            new = self._last is None or self._last[0] != stage
            final = total is not None and done >= total
            if not (new or final or now - self._last[1] >= self.interval):
                return
            self._last = (stage, now)
            self.sink(stage, done, total)
