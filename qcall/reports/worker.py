"""Reports computed in a separate process, so a month's report never delays a call.

A report is pure Python work of a few hundred milliseconds; on the hub's reader thread it
would hold the interpreter lock the event loop needs for calls. The worker is one spawned
process (started on the first report, stopped with the hub) that keeps a read-only
connection to the database, computes and renders there, and hands back JSON data or file
bytes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import multiprocessing
import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from qcall.config import CenterConfig
from qcall.errors import QcallError
from qcall.reports.figures import CENTER, ReportKind, Scope
from qcall.store import Store

_LOGGER = logging.getLogger(__name__)

# A year's range is a few seconds of work on a busy 2-core box; beyond this the worker is
# considered stuck and replaced.
REPORT_TIMEOUT_S: Final = 120.0
# Stopping waits for a running report at most this long before the process is ended.
WORKER_STOP_TIMEOUT_S: Final = 5.0
# Reports are background work: on a 2-core hub box the calls' process gets the CPU first.
WORKER_NICENESS: Final = 10

Output = Literal["figures", "assessment", "chart"]


@dataclass(frozen=True, slots=True)
class Job:
    """One report to compute: what, for which days and scope, in which format."""

    output: Output
    kind: ReportKind
    first: dt.date
    last: dt.date
    today: dt.date
    fmt: str = "json"  # json, csv, xlsx (figures, assessment); svg (chart)
    lang: str = "zh"
    scope: Scope = CENTER
    chart: str = ""


Result = tuple[Any, str | bytes | None]
# One read-only connection per database, kept open between jobs in the worker process.
_READERS: dict[str, Store] = {}


class ReportUnavailable(QcallError):
    """The report worker failed or took too long; the hub itself is fine."""

    code = "report_unavailable"
    status = 503


def compute(config: CenterConfig, db_path: str, job: Job) -> Result:
    """Run ``job`` against the database (in the worker process): JSON data or file content."""
    # Imported here: the hub process itself never loads the chart and workbook libraries.
    from qcall.reports.assessment import assess, assessment_json, assessment_sections
    from qcall.reports.charts import chart_svg
    from qcall.reports.render import report_sections, sections_csv, to_json
    from qcall.reports.source import report_from_store
    from qcall.reports.xlsx import sections_xlsx

    store = _READERS.get(db_path)
    if store is None:
        store = Store(db_path)
        store.open_reader()
        _READERS[db_path] = store
    report = report_from_store(
        config, store, job.first, job.last, kind=job.kind, scope=job.scope, today=job.today
    )
    if job.output == "chart":
        return None, chart_svg(job.chart, report, job.lang)
    if job.output == "assessment":
        sheet = assess(report, config.reports.assessment)
        if job.fmt == "json":
            return assessment_json(sheet), None
        sections = assessment_sections(sheet, job.lang)
    else:
        if job.fmt == "json":
            return to_json(report), None
        sections = report_sections(report, job.lang)
    if job.fmt == "csv":
        return None, sections_csv(sections, job.lang)
    return None, sections_xlsx(sections, job.lang)


def _background() -> None:
    """Lower the worker process's CPU priority (runs once in the new process).

    A terminal's Ctrl-C reaches the whole foreground process group: the worker ignores it
    and is stopped by the hub in order (no KeyboardInterrupt traceback, no broken pool).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.nice(WORKER_NICENESS)


class ReportWorker:
    """The hub's report process: ``await worker.run(job)``; ``close()`` at hub stop."""

    def __init__(self, config: CenterConfig, db_path: Path) -> None:
        self.config = config
        self.db_path = db_path
        self._pool: ProcessPoolExecutor | None = None
        self.done = 0
        self.failed = 0
        self.last_s: float | None = None

    async def run(self, job: Job) -> Result:
        """Compute ``job`` in the worker process."""
        if self._pool is None:
            # spawn: the hub has threads (SQLite, executors); forking them is unsafe.
            self._pool = ProcessPoolExecutor(
                1, mp_context=multiprocessing.get_context("spawn"), initializer=_background
            )
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            future = loop.run_in_executor(self._pool, compute, self.config, str(self.db_path), job)
            result = await asyncio.wait_for(future, REPORT_TIMEOUT_S)
        except (TimeoutError, BrokenProcessPool) as err:
            self.failed += 1
            _LOGGER.exception("report worker failed; starting a new one next time")
            self._abandon()
            raise ReportUnavailable(
                "the report could not be computed now; please retry",
                "报表暂时无法生成，请稍后重试",
            ) from err
        self.done += 1
        self.last_s = time.perf_counter() - started
        return result

    def diagnostics(self) -> dict[str, Any]:
        """For technicians: the worker process and how its reports went."""
        processes = list(getattr(self._pool, "_processes", {}).values()) if self._pool else []
        return {
            "worker_pids": [p.pid for p in processes],
            "reports_done": self.done,
            "reports_failed": self.failed,
            "last_report_s": None if self.last_s is None else round(self.last_s, 3),
        }

    def _abandon(self) -> None:
        """End a stuck or dead worker now; reports queued behind it fail the same way."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        for process in list(getattr(pool, "_processes", {}).values()):
            process.kill()
        pool.shutdown(wait=False)

    async def close(self) -> None:
        """Stop the worker process (a running report is abandoned after a short wait)."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        processes = list(getattr(pool, "_processes", {}).values())
        try:
            await asyncio.wait_for(
                asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True),
                WORKER_STOP_TIMEOUT_S,
            )
        except TimeoutError:
            for process in processes:
                process.kill()
