"""Report benchmark: a month at a center with 400 residents a day (12,000 tickets).

Generates the month through the real engine (``tests/month.py``: transfers, no-shows,
back-office cases, ratings, inquiries) into a real SQLite store, then times:

- the floor: a bare scan of the month's events from SQLite, decoded (``Store.range_events``),
  the least any report computed from the log must do;
- the month's report computed from the log (scan + figures by day, hour, service, window,
  staff), against the target of 1 s, and its ratio to the floor;
- rendering that report as CSV, XLSX, the assessment and the three SVG charts;
- a clerk's call at a hub holding that month (durable ``call_next``), idle and while month
  reports are computed back to back by the hub's report worker process: reports must not
  delay calls.

Each time figure is the median of ``--repeat`` runs.

    python bench/reports.py [--per-day 400] [--days 30] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qcall.hub import Hub  # noqa: E402
from qcall.reports import (  # noqa: E402
    CHARTS,
    assess,
    assessment_sections,
    report_from_store,
    report_sections,
    sections_csv,
)
from qcall.reports.charts import chart_svg  # noqa: E402
from qcall.reports.worker import Job  # noqa: E402
from qcall.reports.xlsx import sections_xlsx  # noqa: E402
from qcall.store import Store  # noqa: E402
from tests.common import SHANGHAI  # noqa: E402
from tests.month import Month, generate_month  # noqa: E402

TARGET_MONTH_S = 1.0
CALLS = 200
CALL_GAP_S = 0.01  # a busy hall is a few calls a second; 100/s here leaves room to measure


def median_s(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median wall time of ``repeat`` calls and the last result."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--per-day", type=int, default=400)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--windows", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    start = time.perf_counter()
    month = generate_month(
        days=args.days, per_day=args.per_day, windows=args.windows, staff=args.windows + 2,
        busy_mondays=False,
    )  # fmt: skip
    tickets = sum(1 for e in month.events if e.type == "ticket.issued")
    print(f"generated {tickets} tickets, {len(month.events)} events over {args.days} days "
          f"in {time.perf_counter() - start:.1f} s (not part of the figures)")  # fmt: skip
    first, last = month.days[0], month.days[-1]
    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder) / "bench.db")
        store.open()
        try:
            store.append(month.events)

            def scan() -> list[Any]:
                return list(store.range_events(first, last))

            def compute() -> Any:
                return report_from_store(
                    month.config, store, first, last, kind="monthly",
                    today=last + dt.timedelta(days=1),
                )  # fmt: skip

            # Interleaved, so that both see the same load on a shared machine.
            floors, reports = [], []
            for _ in range(args.repeat):
                took, events = median_s(scan, 1)
                floors.append(took)
                took, report = median_s(compute, 1)
                reports.append(took)
            floor_s, report_s = statistics.median(floors), statistics.median(reports)
            assert len(events) == len(month.events) - 1  # all but the next day's day.opened
        finally:
            store.close()
    assert report.total.issued == tickets
    sections = report_sections(report, "zh")
    csv_s, _ = median_s(lambda: sections_csv(sections), args.repeat)
    xlsx_s, xlsx = median_s(lambda: sections_xlsx(sections), args.repeat)
    weights = month.config.reports.assessment
    sheet_s, _ = median_s(
        lambda: sections_xlsx(assessment_sections(assess(report, weights))), args.repeat
    )
    chart_s, _ = median_s(lambda: [chart_svg(n, report) for n in CHARTS], args.repeat)

    ratio = report_s / TARGET_MONTH_S
    print(f"floor: bare scan of the month's events from SQLite     {floor_s * 1000:7.0f} ms")
    print(f"month report from the log (scan + figures)             {report_s * 1000:7.0f} ms"
          f"   target <= {TARGET_MONTH_S * 1000:.0f} ms  ratio to target {ratio:.2f}"
          f"   ratio to floor {report_s / floor_s:.2f}")  # fmt: skip
    print(f"  render CSV                                           {csv_s * 1000:7.0f} ms")
    print(f"  render XLSX ({len(xlsx) // 1024} KiB)                             "
          f"{xlsx_s * 1000:7.0f} ms")  # fmt: skip
    print(f"  assessment sheet (XLSX)                              {sheet_s * 1000:7.0f} ms")
    print(f"  three SVG charts                                     {chart_s * 1000:7.0f} ms")
    idle, busy, reports_done = asyncio.run(calls_while_reporting(month))
    print(f"clerk's call (durable), idle              "
          f"p50 {idle[0]:6.1f} ms   p99 {idle[1]:6.1f} ms")  # fmt: skip
    print(f"clerk's call while {reports_done} month reports ran     "
          f"p50 {busy[0]:6.1f} ms   p99 {busy[1]:6.1f} ms")  # fmt: skip
    verdict = "meets" if report_s <= TARGET_MONTH_S else "MISSES"
    print(f"the month's report {verdict} its {TARGET_MONTH_S:.0f} s target; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")  # fmt: skip
    return 0


def _quantiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[int(0.99 * (len(ordered) - 1))] * 1000


async def calls_while_reporting(
    month: Month,
) -> tuple[tuple[float, float], tuple[float, float], int]:
    """Call latency at a hub holding the month, idle and under back-to-back month reports."""
    first, last = month.days[0], month.days[-1]
    morning = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(9), tzinfo=SHANGHAI)
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "hub.db"
        store = Store(db)
        store.open()
        store.append(month.events)
        store.close()
        hub = Hub(month.config, db, clock=lambda: morning)
        await hub.start()
        try:
            engine = hub.engine
            await hub.execute(lambda now: engine.open_window(now, 1, "s1"))
            for _ in range(2 * CALLS + 2):
                await hub.execute(lambda now: engine.issue(now, "social"))

            async def calls() -> list[float]:
                took = []
                for _ in range(CALLS):
                    start = time.perf_counter()
                    await hub.execute(lambda now: engine.call_next(now, 1, "s1"))
                    took.append(time.perf_counter() - start)
                    await asyncio.sleep(CALL_GAP_S)
                return took

            idle = await calls()
            stop, done = asyncio.Event(), 0
            await hub.reports.run(Job("figures", "daily", first, first, morning.date()))

            async def reports() -> None:
                nonlocal done
                while not stop.is_set():
                    await hub.read(lambda: report_from_store(month.config, hub.reader, first, last))
                    done += 1

            worker = asyncio.create_task(reports())
            busy = await calls()
            stop.set()
            await worker
        finally:
            await hub.stop()
    return _quantiles(idle), _quantiles(busy), done


if __name__ == "__main__":
    sys.exit(main())
