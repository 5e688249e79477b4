"""The hub's report worker: the same results as computing in place, from its own process."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
from pathlib import Path

import pytest

from qcall.reports import Scope, report_from_store, to_json
from qcall.reports.worker import Job, ReportUnavailable, ReportWorker, compute
from qcall.store import Store
from tests.month import Month, generate_month


@pytest.fixture(scope="module")
def month() -> Month:
    return generate_month(days=5)


@pytest.fixture
def db(month: Month, tmp_path: Path) -> Path:
    path = tmp_path / "month.db"
    store = Store(path)
    store.open()
    store.append(month.events)
    store.close()
    return path


def job(month: Month, **extra: object) -> Job:
    first, last = month.days[0], month.days[-1]
    return Job(**{"output": "figures", "kind": "range", "first": first, "last": last,
                  "today": last + dt.timedelta(days=1), **extra})  # type: ignore[arg-type]  # fmt: skip


async def test_worker_answers_what_compute_answers(month: Month, db: Path) -> None:
    worker = ReportWorker(month.config, db)
    try:
        data, body = await worker.run(job(month, scope=Scope(window=2)))
        assert body is None
        assert data == compute(month.config, str(db), job(month, scope=Scope(window=2)))[0]
        store = Store(db)
        store.open()
        try:
            direct = report_from_store(
                month.config, store, month.days[0], month.days[-1], scope=Scope(window=2),
                today=month.days[-1] + dt.timedelta(days=1),
            )  # fmt: skip
        finally:
            store.close()
        assert data == to_json(direct)
        _, xlsx = await worker.run(job(month, fmt="xlsx"))
        assert isinstance(xlsx, bytes)
        assert xlsx[:2] == b"PK"
        _, svg = await worker.run(job(month, output="chart", fmt="svg", chart="trend"))
        assert isinstance(svg, str)
        assert "<svg" in svg
        [process] = worker._pool._processes.values()  # type: ignore[union-attr]
        assert process.pid != os.getpid()  # computed in its own process
        seen = worker.diagnostics()
        assert (seen["worker_pids"], seen["reports_done"], seen["reports_failed"]) == (
            [process.pid],
            3,
            0,
        )
        assert seen["last_report_s"] > 0
    finally:
        await worker.close()
    assert not process.is_alive()


async def test_a_dead_worker_is_replaced(month: Month, db: Path) -> None:
    worker = ReportWorker(month.config, db)
    try:
        await worker.run(job(month))
        [process] = worker._pool._processes.values()  # type: ignore[union-attr]
        process.kill()
        process.join()
        with pytest.raises(ReportUnavailable) as refused:
            await worker.run(job(month))
        assert refused.value.status == 503
        assert "报表暂时无法生成" in refused.value.message("zh")
        data, _ = await worker.run(job(month))  # a new process
        assert data["total"]["issued"] > 0
    finally:
        await worker.close()


async def test_a_stuck_worker_fails_every_waiting_report_cleanly(
    month: Month, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the timeout the worker is ended; reports queued behind it get 503, not a hang."""
    from qcall.reports import worker as module

    worker = ReportWorker(month.config, db)
    try:
        # A fresh worker process takes far longer than this to start: every job is "stuck".
        monkeypatch.setattr(module, "REPORT_TIMEOUT_S", 0.01)
        results = await asyncio.gather(
            worker.run(job(month)), worker.run(job(month)), return_exceptions=True
        )
        assert all(isinstance(r, ReportUnavailable) for r in results), results
        assert worker.diagnostics()["reports_failed"] == 2
        assert worker.diagnostics()["worker_pids"] == []
        monkeypatch.undo()
        data, _ = await worker.run(job(month))
        assert data["total"]["issued"] > 0
    finally:
        await worker.close()


async def test_the_worker_stops_with_the_hub(month: Month, db: Path) -> None:
    from qcall.hub import Hub

    hub = Hub(month.config, db, clock=lambda: month.events[-1].at)
    await hub.start()
    try:
        data, _ = await hub.reports.run(job(month))
        assert data["total"]["issued"] > 0
        [pid] = hub.diagnostics()["reports"]["worker_pids"]
    finally:
        await hub.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # gone, not a zombie left to the system


async def test_ctrl_c_on_the_terminal_leaves_the_worker_to_the_hub(
    month: Month, db: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # A terminal's Ctrl-C reaches every process of its foreground group, the worker too: it
    # must neither die with a KeyboardInterrupt traceback nor break the pool; the hub stops it.
    worker = ReportWorker(month.config, db)
    try:
        await worker.run(job(month))
        [process] = worker._pool._processes.values()  # type: ignore[union-attr]
        os.kill(process.pid, signal.SIGINT)
        await asyncio.sleep(0.3)  # delivered while the worker waits for a job
        for _ in range(3):
            data, _ = await worker.run(job(month))
            assert data["total"]["issued"] > 0
    finally:
        await worker.close()
    assert process.exitcode == 0
    assert "KeyboardInterrupt" not in capfd.readouterr().err
