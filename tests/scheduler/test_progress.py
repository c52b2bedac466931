"""Progress of slow steps: bench.progress (the hook library code reports to), its way from a worker
subprocess to the driver's listener, the inline executor, and how the live view shows it, with and
without a terminal; and the table a run ends with."""

import io
import threading

from rich.console import Console

from bench import progress
from bench.executors import make_executor
from bench.executors.base import Listener
from bench.scheduler import execute
from bench.status import LiveView, run_table
from tests.scheduler.fake_runner import FakeJob
from tests.scheduler.helpers import record_counts

RUNNER = "tests.scheduler.progress_runner"


class Recorder(Listener):
    def __init__(self):
        self.events, self.finished_ids, self._mutex = [], [], threading.Lock()

    def progress(self, job, stage, done, total):
        with self._mutex:
            self.events.append((job.id, stage, done, total))

    def finished(self, job, summary):
        with self._mutex:
            self.finished_ids.append(job.id)
            self.events.append((job.id, "finished", summary["status"], None))


# ---------------------------------------------------------------- bench.progress
def test_report_without_a_sink_does_nothing_and_a_sink_is_restored_after_its_block():
    progress.report("nobody listens", 1, 2)  # no error, no output
    outer, inner = [], []
    with progress.reporting_to(lambda *a: outer.append(a)):
        progress.report("a", 0, 2)
        with progress.reporting_to(lambda *a: inner.append(a)):
            with progress.step("b"):
                pass
        progress.report("a", 2, 2)
    progress.report("after", 1, 1)
    assert outer == [("a", 0, 2), ("a", 2, 2)]
    assert inner == [("b", 0, 1), ("b", 1, 1)]


def test_a_failing_sink_never_fails_the_caller_and_a_failing_step_is_not_reported_done():
    def broken(*args):
        raise RuntimeError("view bug")

    with progress.reporting_to(broken):
        progress.report("x", 1, 2)
    seen = []
    with progress.reporting_to(lambda *a: seen.append(a)):
        try:
            with progress.step("doomed"):
                raise ValueError("no")
        except ValueError:
            pass
    assert seen == [("doomed", 0, 1)]


def test_a_forked_child_does_not_report_through_its_parents_sink(monkeypatch):
    seen = []
    with progress.reporting_to(lambda *a: seen.append(a)):
        real = progress.os.getpid()
        monkeypatch.setattr(progress.os, "getpid", lambda: real + 1)  # as in a DataLoader worker
        progress.report("from the child", 1, 2)
        monkeypatch.setattr(progress.os, "getpid", lambda: real)
        progress.report("from the parent", 1, 2)
    assert seen == [("from the parent", 1, 2)]


def test_throttle_passes_the_first_and_last_report_of_a_stage_and_thins_the_rest(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    seen = []
    throttle = progress.Throttle(lambda *a: seen.append(a), interval=1.0)
    for done in range(5):
        throttle("enc", done, 10)  # same instant: only the first passes
    clock[0] += 1.5
    throttle("enc", 5, 10)  # an interval later: passes
    throttle("enc", 6, 10)
    throttle("enc", 10, 10)  # the end always passes
    throttle("other", 0, None)  # a new stage always passes
    assert seen == [("enc", 0, 10), ("enc", 5, 10), ("enc", 10, 10), ("other", 0, None)]


# ---------------------------------------------------------------- executors deliver it
def test_local_worker_progress_reaches_the_listener_before_the_job_finishes(suite):
    jobs = [FakeJob("d0", 0), FakeJob("d0", 1)]
    listener = Recorder()
    result = execute(suite, jobs, make_executor("local", gpus=["0"], runner=RUNNER), listener)
    assert len(result.ok) == 2 and set(record_counts(suite.results_dir).values()) == {1}
    starting = "starting a worker process (imports torch)"  # the driver's own step, before the first job
    for n, job in enumerate(jobs):
        mine = [e[1:] for e in listener.events if e[0] == job.id]
        if n == 0:
            assert mine[:2] == [(starting, 0, 1), (starting, 1, 1)]
            mine = mine[2:]
        # the worker throttles: first and last report of each stage arrive, the finish comes after them
        assert mine[:2] == [("loading fake backbone for d0", 0, 1), ("loading fake backbone for d0", 1, 1)]
        assert mine[2] == ("encoding d0/test", 0, 5) and mine[-2] == ("encoding d0/test", 5, 5)
        assert mine[-1] == ("finished", "ok", None)


def test_a_worker_that_dies_after_reporting_progress_still_leaves_a_failed_record(suite):
    jobs = [FakeJob("d0", 0, {"progress_crash": True}), FakeJob("d0", 1)]
    listener = Recorder()
    result = execute(suite, jobs, make_executor("local", gpus=["0"], runner=RUNNER), listener)
    assert [r["seed"] for r in result.failed] == [0] and [r["seed"] for r in result.ok] == [1]
    assert "exited with code 9" in result.failed[0]["error"]
    assert ("encoding d0/test", 5, 5) in [e[1:] for e in listener.events if e[0] == jobs[0].id]


def test_inline_executor_hands_every_report_to_the_listener(suite):
    listener = Recorder()
    execute(suite, [FakeJob("d0", 0)], make_executor("inline", runner=RUNNER), listener)
    encoding = [e[2] for e in listener.events if e[1] == "encoding d0/test"]
    assert encoding == [0, 1, 2, 3, 4, 5]  # no throttle in-process
    progress.report("after the run", 1, 1)  # the executor's sink is gone again: no error, nothing recorded
    assert not any(e[1] == "after the run" for e in listener.events)


# ---------------------------------------------------------------- the live view
def plain_view(**kw):
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=120)
    return LiveView(console, total=2, **kw), out


def test_plain_view_logs_steps_and_slow_encodings_but_not_quick_ones(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr("bench.status.time.monotonic", lambda: clock[0])
    view, out = plain_view(log_every_s=10.0, quiet_below_s=1.0)
    job = FakeJob("d0", 0)
    with view:
        view.progress(None, "generating dataset smoke_shapes", 0, 1)
        clock[0] = 1.7
        view.progress(None, "generating dataset smoke_shapes", 1, 1)
        view.started(job, "cpu#0")
        view.progress(job, "encoding d0/fewshot_train", 0, 48)  # quick: nothing logged
        view.progress(job, "encoding d0/fewshot_train", 48, 48)
        view.progress(job, "encoding d0/test", 0, 1000)  # slow: a line every 10 s and one at the end
        clock[0] = 13.0
        view.progress(job, "encoding d0/test", 400, 1000)
        clock[0] = 20.0
        view.progress(job, "encoding d0/test", 1000, 1000)
        view.finished(job, {"status": "ok", "top1": 51.25, "where": "cpu#0"})
    assert out.getvalue().splitlines() == [
        "  driver: generating dataset smoke_shapes ...",
        "  driver: generating dataset smoke_shapes: done in 1.7s",
        "  cpu#0: encoding d0/test 400/1000 (40%)",
        "  cpu#0: encoding d0/test: 1000/1000 done in 18.3s",
        "[1/2] ok fake/d0/1shot/seed0 on cpu#0 top1 51.25",
    ]


def test_terminal_view_shows_each_running_job_with_its_step_and_the_drivers_own_step():
    view = LiveView(Console(file=io.StringIO(), force_terminal=True, width=140), total=3)
    job, other = FakeJob("d0", 0), FakeJob("d1", 0)
    view.progress(None, "generating dataset smoke_textures", 0, 1)
    view.started(job, "cpu#0")
    view.started(other, "cpu#1")
    view.progress(job, "encoding d0/test", 256, 1024)
    screen = Console(file=io.StringIO(), width=140, record=True)
    screen.print(view)
    text = screen.export_text()
    assert "generating dataset smoke_textures ..." in text and "preparing" in text
    assert "fake/d0/1shot/seed0" in text and "encoding d0/test 256/1024 (25%)" in text
    assert "fake/d1/1shot/seed0" in text
    view.progress(job, "encoding d0/test", 1024, 1024)  # a finished step leaves the row
    view.finished(other, {"status": "ok", "where": "cpu#1"})
    screen = Console(file=io.StringIO(), width=140, record=True)
    screen.print(view)
    text = screen.export_text()
    assert "encoding" not in text and "fake/d1" not in text and "fake/d0/1shot/seed0" in text


def test_run_table_lists_each_cell_that_ran_with_its_mean_over_the_seeds_that_ran():
    def record(method, dataset, shots, seed, status="ok", top1=None):
        return {"method": method, "dataset": dataset, "shots": shots, "seed": seed, "status": status,
                "metrics": {"top1": top1} if top1 is not None else {}}

    records = [record("coop", "dtd", 1, 1, top1=40.0), record("coop", "dtd", 1, 2, top1=50.0),
               record("coop", "dtd", 1, 3, "failed"), record("zeroshot", "dtd", 0, 0, top1=44.444),
               record("coop", "eurosat", 16, 1, "failed")]
    console = Console(file=io.StringIO(), width=100, record=True)
    console.print(run_table(records))
    rows = [line.split() for line in console.export_text().splitlines() if line.strip()]
    assert ["coop", "dtd", "1", "45.00", "1,2", "1"] in rows
    assert ["coop", "eurosat", "16", "-", "-", "1"] in rows
    assert ["zeroshot", "dtd", "any", "44.44", "-", "0"] in rows
