"""A generated month checked against an independent reading of the event log.

The oracle below does not use qcall.reports: it rebuilds each line entry's timeline from the
wire form of the events (``Event.to_dict``) and derives every figure from those timelines,
then the month's report — by day, service, window and staff — must say the same. The same
month read from a real SQLite store, its CSV and its XLSX must agree with it and with each
other, and every day's figures must equal what that day's own report said when it closed.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl
import pytest

from qcall.events import Event, EventType
from qcall.model import Role
from qcall.reports import (
    DayStatus,
    Figures,
    Report,
    Scope,
    build_report,
    daily_report,
    report_from_store,
    report_sections,
    sections_csv,
)
from qcall.reports.xlsx import sections_xlsx
from qcall.store import Store
from tests.month import BACK_OFFICE_STAFF, Month, as_dicts, generate_month

TZ = ZoneInfo("Asia/Shanghai")
SATISFIED_MIN = 3  # the default of [reports] satisfied_min_score
NAMES = {"s1": "张伟", "s2": "王芳", "s3": "李娜", BACK_OFFICE_STAFF: "赵敏"}
ACTIVE = {"waiting", "called", "serving", "held"}


@pytest.fixture(scope="module")
def month() -> Month:
    return generate_month()


@pytest.fixture(scope="module")
def report(month: Month) -> Report:
    return build_report(
        month.config, month.events, month.days[0], month.days[-1], kind="monthly",
        staff_names=NAMES,
    )  # fmt: skip


# ----------------------------------------------------------------------------- the oracle


@dataclass
class Line:
    """One line entry's timeline, as read from the log."""

    service: str
    day: str
    root: bool
    priority: bool
    joined: dt.datetime
    steps: list[dict[str, Any]] = field(default_factory=list)  # the entry's own events


def _time(raw: str) -> dt.datetime:
    return dt.datetime.fromisoformat(raw)


def timelines(log: list[dict[str, Any]]) -> tuple[dict[str, Line], list[dict[str, Any]]]:
    """Group the log by line entry; also return the events that are not about one entry."""
    lines: dict[str, Line] = {}
    other: list[dict[str, Any]] = []
    day = ""
    for raw in log:
        kind, data = raw["type"], raw["data"]
        if kind == "day.opened":
            day = data["day"]
        event = {**raw, "day": day}
        if kind == "ticket.issued":
            lines[data["id"]] = Line(
                data["service"], day, True, data["priority"], _time(event["at"])
            )
        if kind.startswith("ticket.") and kind != "ticket.rated":
            lines[data["id"]].steps.append(event)
        if kind == "ticket.transferred":
            source = lines[data["id"]]
            lines[data["new_id"]] = Line(
                data["service"], day, False, source.priority, _time(event["at"])
            )
        if kind == "day.closed":
            for entry in data["expired"]:
                lines[entry].steps.append(event)
        if kind == "window.closed":
            for entry in data["requeued"]:
                lines[entry].steps.append(event)
        if not kind.startswith("ticket.") or kind == "ticket.rated":
            other.append(event)
    return lines, other


STATE_AFTER = {
    "ticket.issued": "waiting",
    "ticket.called": "called",
    "ticket.started": "serving",
    "ticket.no_show": "no_show",
    "ticket.reactivated": "waiting",
    "ticket.held": "held",
    "ticket.transferred": "transferred",
    "ticket.cancelled": "cancelled",
    "window.closed": "waiting",
}


@dataclass
class Tally:
    """What the oracle counts for one scope."""

    counts: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    waits: list[float] = field(default_factory=list)
    handles: list[float] = field(default_factory=list)
    scores: list[int] = field(default_factory=list)


class Oracle:
    """Every scope's tally: ("total", ""), ("service", id), ("window", n), ("staff", id), and
    the same keyed by day as (kind, key, day)."""

    def __init__(self, month: Month) -> None:
        self.targets = {s.id: s.target_wait_min * 60 for s in month.config.services}
        self.tallies: defaultdict[tuple[Any, ...], Tally] = defaultdict(Tally)
        self.closed_days = set(month.closed_at)
        lines, other = timelines(as_dicts(month.events))
        for line in lines.values():
            self.line(line)
        self.rest(other, lines)

    def add(self, day: str, scopes: list[tuple[str, Any]], fn: Any) -> None:
        for scope in [("total", ""), *scopes]:
            if scope[1] is None:
                continue
            fn(self.tallies[scope])
            fn(self.tallies[(*scope, day)])

    def count(self, day: str, name: str, scopes: list[tuple[str, Any]]) -> None:
        def bump(t: Tally) -> None:
            t.counts[name] += 1

        self.add(day, scopes, bump)

    def line(self, line: Line) -> None:
        day, service = line.day, ("service", line.service)
        if line.root:
            self.count(day, "issued", [service])
            if line.priority:
                self.count(day, "priority_issued", [service])
        calls = [s for s in line.steps if s["type"] == "ticket.called"]
        if calls:
            windows = {c["data"]["window"] for c in calls}
            people = {c["data"]["staff"] for c in calls}
            scopes = [service, *(("window", w) for w in windows), *(("staff", p) for p in people)]
            self.count(day, "called", scopes)
            if line.priority:
                self.count(day, "priority_called", scopes)
            first = calls[0]
            wait = (_time(first["at"]) - line.joined).total_seconds()
            over = wait > self.targets[line.service]
            first_scopes = [service, ("window", first["data"]["window"]),
                            ("staff", first["data"]["staff"])]  # fmt: skip
            self.add(day, first_scopes, lambda t: t.waits.append(wait))
            if over:
                self.count(day, "over_target", first_scopes)
        # the final state and where it happened
        state, where = "waiting", (None, None)
        for step in line.steps:
            kind, data = step["type"], step["data"]
            if kind == "day.closed":
                state = "expired"  # listed only while active; keeps where it was
                continue
            if kind == "ticket.finished":
                state = data["outcome"]
            elif kind == "ticket.started":
                state = "serving"
                continue  # the same window as the call
            elif kind == "ticket.recalled":
                self.count(day, "recalls", [service, ("window", data["window"]),
                                            ("staff", data["staff"])])  # fmt: skip
                continue
            else:
                state = STATE_AFTER[kind]
            if kind == "ticket.transferred":
                where = (data["from_window"], data["staff"])
            elif kind in ("ticket.called", "ticket.no_show", "ticket.held", "ticket.finished"):
                where = (data["window"], data["staff"])
            else:
                where = (None, None)
        name = "in_progress" if state in ACTIVE else state
        here = [service, ("window", where[0]), ("staff", where[1])]
        self.count(day, name, here)
        if state in ("done", "back_office"):
            finished = next(s for s in reversed(line.steps) if s["type"] == "ticket.finished")
            called = [c for c in calls if c["seq"] < finished["seq"]][-1]
            handle = (_time(finished["at"]) - _time(called["at"])).total_seconds()
            self.add(day, here, lambda t: t.handles.append(handle))

    def rest(self, other: list[dict[str, Any]], lines: dict[str, Line]) -> None:
        opened = {e["data"]["case"]: e for e in other if e["type"] == "case.opened"}
        ready_on: dict[str, dt.date] = {}
        for e in other:
            if e["type"] == "case.ready":
                ready_on.setdefault(e["data"]["case"], _time(e["at"]).astimezone(TZ).date())
        for case_id, e in opened.items():
            promised = dt.date.fromisoformat(e["data"]["promised_date"])
            if promised not in self.closed_days:
                continue  # not due within the (fully closed) month
            scopes = [("service", e["data"]["service"]), ("staff", e["data"]["staff"])]
            self.count(promised.isoformat(), "cases_due", scopes)
            kept = case_id in ready_on and ready_on[case_id] <= promised
            self.count(promised.isoformat(), "cases_kept" if kept else "cases_broken", scopes)
        finished_at = {
            s["data"]["id"]: s["data"]["window"]
            for line in lines.values()
            for s in line.steps
            if s["type"] == "ticket.finished"
        }
        for event in other:
            kind, data, day = event["type"], event["data"], event["day"]
            if kind == "ticket.rated":
                scopes = [("service", lines[data["id"]].service), ("window", data["window"]),
                          ("staff", data["staff"])]  # fmt: skip
                self.add(day, scopes, lambda t, s=data["score"]: t.scores.append(s))
            elif kind == "case.opened":
                window, member = finished_at[data["ticket"]], data["staff"]
                scopes = [("service", data["service"]), ("window", window), ("staff", member)]
                self.count(day, "cases_opened", scopes)
            elif kind == "case.ready":
                case = opened[data["case"]]["data"]
                scopes = [("service", case["service"]), ("staff", data["staff"])]
                self.count(day, "cases_ready", scopes)
            elif kind == "inquiry.logged":
                scopes = [("service", data["service"]), ("staff", data["staff"])]
                self.count(day, "inquiries", scopes)
                if data["referred_to"]:
                    self.count(day, "referrals", scopes)


def p90(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[math.ceil(0.9 * len(ordered)) - 1]


def expect(figures: Figures, tally: Tally) -> None:
    """The report's figures equal the oracle's tally."""
    c = tally.counts
    for name in ("issued", "priority_issued", "called", "priority_called", "done", "back_office",
                 "no_show", "transferred", "cancelled", "expired", "in_progress", "recalls",
                 "over_target", "cases_opened", "cases_ready", "cases_due", "cases_kept",
                 "cases_broken",
                 "inquiries", "referrals"):  # fmt: skip
        assert getattr(figures, name) == c[name], name
    assert figures.served == c["done"] + c["back_office"]
    for got, samples in ((figures.wait, tally.waits), (figures.handle, tally.handles)):
        assert got.count == len(samples)
        if samples:
            assert got.mean_s == pytest.approx(sum(samples) / len(samples))
            assert (got.p90_s, got.max_s) == (p90(samples), max(samples))
        else:
            assert (got.mean_s, got.p90_s, got.max_s) == (None, None, None)
    scores = tally.scores
    assert figures.ratings.count == len(scores)
    assert figures.ratings.distribution == tuple(scores.count(n) for n in range(1, 6))
    assert figures.ratings.satisfied == sum(1 for s in scores if s >= SATISFIED_MIN)
    if scores:
        assert figures.ratings.mean == pytest.approx(sum(scores) / len(scores))


# ----------------------------------------------------------------------------- the checks


@pytest.fixture(scope="module")
def oracle(month: Month) -> Oracle:
    return Oracle(month)


def test_the_month_has_what_it_should(month: Month) -> None:
    kinds = {str(e.type) for e in month.events}
    assert {"ticket.transferred", "case.opened", "case.ready", "ticket.rated", "ticket.no_show",
            "ticket.reactivated", "ticket.cancelled", "ticket.recalled",
            "inquiry.logged"} <= kinds  # fmt: skip
    assert len(month.config.windows) == 2
    assert [s.id for s in month.config.services] == ["social", "medical", "housing"]
    assert len(month.closed_at) == 30


def test_month_matches_the_oracle(oracle: Oracle, report: Report) -> None:
    tallies = oracle.tallies
    expect(report.total, tallies["total", ""])
    for service in report.services:
        expect(service.figures, tallies["service", service.id])
    for window in report.windows:
        expect(window.figures, tallies["window", window.number])
    assert [(s.id, s.name) for s in report.staff] == sorted(NAMES.items())
    for member in report.staff:
        expect(member.figures, tallies["staff", member.id])
    assert len(report.days) == 30
    for row in report.days:
        assert row.status is DayStatus.CLOSED
        expect(row.figures, tallies["total", "", row.day.isoformat()])
    # the month shows every kind of figure, so the comparison above means something
    total = report.total
    assert min(total.transferred, total.no_show, total.expired, total.cancelled, total.recalls,
               total.over_target, total.cases_kept, total.cases_broken,
               total.inquiries, total.referrals) > 0  # fmt: skip
    assert 0 < total.ratings.satisfied < total.ratings.count


def test_scopes_narrow_the_days_and_hours(month: Month, oracle: Oracle, report: Report) -> None:
    for scope, key in ((Scope(staff="s2"), ("staff", "s2")), (Scope(window=2), ("window", 2)),
                       (Scope(service="housing"), ("service", "housing"))):  # fmt: skip
        narrowed = build_report(
            month.config, month.events, month.days[0], month.days[-1], scope=scope
        )
        expect(narrowed.total, oracle.tallies[key])
        for row in narrowed.days:
            expect(row.figures, oracle.tallies[(*key, row.day.isoformat())])
    hours = report.hours
    assert sum(h.arrivals for h in hours) == report.total.issued
    assert sum(h.wait.count for h in hours) == report.total.wait.count
    assert {h.hour for h in hours} <= set(range(8, 17))


def test_each_day_equals_its_own_report_at_close(month: Month, report: Report) -> None:
    """A past range computed from the log says what each day's report said when it closed."""
    for row in report.days:
        seq = month.closed_at[row.day]
        at_close = daily_report(month.config, month.events[:seq], row.day)
        assert at_close.status is DayStatus.CLOSED
        assert at_close.total == row.figures
    summed = {name: sum(getattr(r.figures, name) for r in report.days)
              for name in ("issued", "served", "no_show", "cases_ready", "inquiries")}  # fmt: skip
    assert summed == {name: getattr(report.total, name) for name in summed}


def store_of(month: Month, path: Path, events: list[Event] | None = None) -> Store:
    store = Store(path)
    store.open()
    store.append(events if events is not None else month.events)
    for staff_id, name in NAMES.items():
        store.add_staff(staff_id, name, "246810", Role.CLERK)
    return store


def test_store_csv_and_xlsx_agree(
    month: Month, oracle: Oracle, report: Report, tmp_path: Path
) -> None:
    store = store_of(month, tmp_path / "month.db")
    try:
        from_store = report_from_store(
            month.config, store, month.days[0], month.days[-1], kind="monthly",
            today=month.days[-1] + dt.timedelta(days=3),
        )  # fmt: skip
    finally:
        store.close()
    assert from_store == report
    for lang in ("zh", "en"):
        sections = report_sections(from_store, lang)
        text = sections_csv(sections, lang)
        assert text.startswith("\ufeff")
        csv_blocks = [b for b in text.removeprefix("\ufeff").split("\r\n\r\n") if b.strip()]
        path = tmp_path / f"month-{lang}.xlsx"
        path.write_bytes(sections_xlsx(sections, lang))
        book = openpyxl.load_workbook(path, read_only=True)
        assert len(book.sheetnames) == len(sections) == len(csv_blocks)
        for sheet_name, block, section in zip(book.sheetnames, csv_blocks, sections, strict=True):
            csv_rows = list(csv.reader(io.StringIO(block)))
            sheet_rows = [list(r) for r in book[sheet_name].iter_rows(values_only=True)]
            assert csv_rows[0] == [section.title(lang)] == [sheet_rows[0][0]]
            assert len(csv_rows) == len(sheet_rows) == len(section.rows) + 2
            for csv_row, sheet_row in zip(csv_rows[1:], sheet_rows[1:], strict=True):
                assert len(sheet_row) == len(csv_row)
                for value, text in zip(sheet_row, csv_row, strict=True):
                    assert same_cell(value, text), (section.key, value, text)
        book.close()
    # spot values against the oracle in the CSV a director opens
    sections = {s.key: s for s in report_sections(from_store, "zh")}
    services = sections["services"]
    issued = [c.key for c in services.columns].index("issued")
    for row in services.rows:
        assert row[issued] == oracle.tallies["service", row[0]].counts["issued"]
    staff = sections["staff"]
    assert [(r[0], r[1]) for r in staff.rows] == sorted(NAMES.items())  # names beside ids


def same_cell(value: Any, text: str) -> bool:
    """An XLSX cell holds what the CSV says: empty, the same text, or the same number."""
    if value is None:
        return text == ""
    if isinstance(value, str):
        return value == text
    if isinstance(value, int) and str(value) == text:
        return True
    # a rounded number (the reader turns 417.0 into 417): the CSV shows it to 0.1 or 0.01
    return float(text) == value and len(text.split(".")[1]) in (1, 2)


def test_old_case_ready_events_resolve_their_service(month: Month, tmp_path: Path) -> None:
    """case.ready written before it named its service counts through the case's opening."""
    old = [
        Event(e.seq, e.type, e.at, {"case": e.data["case"], "staff": e.data["staff"]})
        if e.type is EventType.CASE_READY
        else e
        for e in month.events
    ]
    store = store_of(month, tmp_path / "old.db", old)
    try:
        first, last = month.days[20], month.days[-1]  # many cases opened before the range
        resolved = report_from_store(month.config, store, first, last)
    finally:
        store.close()
    current = build_report(month.config, month.events, first, last, staff_names=NAMES)
    assert resolved == current
    total = resolved.total
    assert total.cases_ready == sum(s.figures.cases_ready for s in resolved.services) > 0
    # cases promised in the range but opened (and some made ready) before it count too
    assert total.cases_kept + total.cases_broken == total.cases_due > 0
