"""Reports read from the store: the range's events, staff names and older cases."""

from __future__ import annotations

import datetime as dt

from qcall.config import CenterConfig
from qcall.reports.figures import CENTER, Report, ReportKind, Scope, build_report
from qcall.store import Store


def report_from_store(
    config: CenterConfig,
    store: Store,
    first: dt.date,
    last: dt.date,
    *,
    kind: ReportKind = "range",
    scope: Scope = CENTER,
    today: dt.date | None = None,
) -> Report:
    """Compute a report of the service days ``first``–``last`` from the store's log."""
    return build_report(
        config,
        store.range_events(first, last),
        first,
        last,
        kind=kind,
        scope=scope,
        today=today,
        staff_names=store.staff_names(),
        resolve_cases=store.case_history,
    )
