"""Daily statistics from the event log (qcall/reports.py), driven by a real engine and store."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pytest

from qcall.config import CenterConfig
from qcall.engine import Engine
from qcall.events import Event, EventType
from qcall.model import Outcome
from qcall.reports import (
    DailyReport,
    Durations,
    Figures,
    Ratings,
    build_report,
    daily_report,
    month_bounds,
    nearest_rank_p90,
    to_csv,
    to_json,
    to_table,
)
from qcall.store import Store
from tests.common import SHANGHAI, Clock, make_config

DAY = dt.date(2026, 11, 26)  # a Thursday, the Clock's default start
NEXT_DAY = DAY + dt.timedelta(days=1)
CODE = "123456"


# ----------------------------------------------------------------------------- the scripted day


@dataclass
class Day:
    config: CenterConfig
    engine: Engine
    clock: Clock
    events: list[Event]  # the whole day, closed by the next morning's tick
    midday: list[Event]  # the same day before it was closed


def at(hour: int, minute: int) -> dt.datetime:
    return dt.datetime(2026, 11, 26, hour, minute, tzinfo=SHANGHAI)


def scripted_day() -> Day:
    """Run a day through the engine; the comments give the figures the tests expect.

    Waits (first call − joined line), handles (finish − call), in seconds:
    A002 (social, priority) wait 240 @w1, handle 300, rated 5
    B001 (medical)          wait 240 @w2, handle 360 back office, rated 4, opens a case
    A001 (social)           wait 660 @w1, transferred by s1 at 09:15 to medical
    A003 (social)           wait 600 @w2, no-show, reactivated, recalled... served at w1: 300
    A001.1 (medical)        wait  60 @w2 (09:15 → 09:16), handle 240, rated 2
    C001 (housing)          wait 2820 @w1 (over the 30 min target), recalled, handle 420, rated 5
    A004 (social)           cancelled
    C002 (housing)          wait  60 @w1, no-show (final)
    Q001 (pickup)           wait  60 @w4, handle 120, picks the case up
    A005 (social)           still waiting at close → expired
    B002 (medical)          wait 300 @w2, held at close → expired (window 2, s2)
    """
    config = make_config()
    clock = Clock()
    engine = Engine(config, code_factory=lambda: CODE)
    events: list[Event] = []

    def step(when: dt.datetime) -> dt.datetime:
        clock.now = when
        return when

    def next_at(when: dt.datetime, window: int, staff: str, expected: str) -> None:
        ticket = engine.call_next(step(when), window, staff)
        assert ticket is not None
        assert ticket.number == expected

    engine.open_window(step(at(9, 0)), 1, "s1")
    engine.open_window(clock.now, 2, "s2")
    engine.issue(clock.now, "social")  # A001
    engine.issue(step(at(9, 1)), "social", priority=True)  # A002
    engine.issue(step(at(9, 2)), "medical")  # B001
    engine.issue(step(at(9, 3)), "social")  # A003
    engine.issue(step(at(9, 4)), "housing")  # C001
    next_at(at(9, 5), 1, "s1", "A002")  # priority first
    next_at(at(9, 6), 2, "s2", "B001")  # medical weighs 3 at window 2
    engine.finish(step(at(9, 10)), 1, "s1", Outcome.DONE)
    engine.rate(clock.now, 1, "s1", 5)
    next_at(at(9, 11), 1, "s1", "A001")
    engine.finish(step(at(9, 12)), 2, "s2", Outcome.BACK_OFFICE)
    engine.rate(clock.now, 2, "s2", 4)
    next_at(at(9, 13), 2, "s2", "A003")
    engine.no_show(step(at(9, 14)), 2, "s2")
    moved = engine.transfer(step(at(9, 15)), 1, "s1", service_id="medical")
    assert moved.id == "20261126-A001.1"
    next_at(at(9, 16), 2, "s2", "A001")  # the transferred entry, medical weighs 3
    engine.finish(step(at(9, 20)), 2, "s2", Outcome.DONE)
    engine.rate(clock.now, 2, "s2", 2)
    engine.reactivate(step(at(9, 21)), "20261126-A003")
    engine.issue(step(at(9, 30)), "social")  # A004
    engine.log_inquiry(clock.now, "s1", "低保政策", service_id="social")
    engine.log_inquiry(clock.now, "s2", "残疾人补贴", referred_to="残联")
    engine.cancel(step(at(9, 40)), "20261126-A004")
    next_at(at(9, 45), 1, "s1", "A003")  # overdue: promoted before C001
    engine.finish(step(at(9, 50)), 1, "s1", Outcome.DONE)
    next_at(at(9, 51), 1, "s1", "C001")
    engine.recall(step(at(9, 52)), 1, "s1")
    engine.finish(step(at(9, 58)), 1, "s1", Outcome.DONE)
    engine.rate(clock.now, 1, "s1", 5)
    engine.issue(step(at(10, 0)), "housing")  # C002
    next_at(at(10, 1), 1, "s1", "C002")
    engine.no_show(step(at(10, 3)), 1, "s1")
    (case_id,) = engine.cases
    engine.case_ready(step(at(10, 30)), case_id, "bo1")
    engine.open_window(step(at(10, 40)), 4, "s4")
    engine.issue(clock.now, "pickup", case_code=CODE)  # Q001
    next_at(at(10, 41), 4, "s4", "Q001")
    engine.finish(step(at(10, 43)), 4, "s4", Outcome.DONE)
    engine.issue(step(at(11, 0)), "social")  # A005
    engine.issue(clock.now, "medical")  # B002
    next_at(at(11, 5), 2, "s2", "B002")
    engine.hold(step(at(11, 6)), 2, "s2")
    events += engine.drain()
    midday = list(events)
    engine.tick(step(dt.datetime(2026, 11, 27, 8, 0, tzinfo=SHANGHAI)))
    events += engine.drain()
    assert [e.type for e in events[-2:]] == [EventType.DAY_CLOSED, EventType.DAY_OPENED]
    return Day(config, engine, clock, events, midday)


@pytest.fixture(scope="module")
def day() -> Day:
    return scripted_day()


@pytest.fixture(scope="module")
def report(day: Day) -> DailyReport:
    return daily_report(day.config, day.events, DAY)


def durations(*samples: float) -> Durations:
    """Expected figures computed by hand: mean, nearest-rank p90, max."""
    ordered = sorted(samples)
    rank = -(-9 * len(ordered) // 10)  # ⌈0.9·n⌉
    return Durations(len(ordered), sum(ordered) / len(ordered), ordered[rank - 1], ordered[-1])


def service(report: DailyReport, sid: str) -> Figures:
    return next(row.figures for row in report.services if row.id == sid)


def window(report: DailyReport, number: int) -> Figures:
    return next(row.figures for row in report.windows if row.number == number)


def staff(report: DailyReport, sid: str) -> Figures:
    return next(row.figures for row in report.staff if row.id == sid)


# ----------------------------------------------------------------------------- figures


def test_day_total(report: DailyReport) -> None:
    assert report.day == DAY
    assert report.day_type == "weekday"
    assert report.closed
    assert report.center_zh == "测试街道社区事务受理服务中心"
    assert report.total == Figures(
        issued=10,
        priority_issued=1,
        called=9,  # entries: the transferred A001 was called in both lines
        priority_called=1,
        served=6,
        done=5,
        back_office=1,
        no_show=1,  # C002; A003's no-show was reactivated and served
        transferred=1,
        cancelled=1,
        expired=2,
        in_progress=0,
        recalls=1,
        wait=durations(240, 240, 660, 600, 60, 2820, 60, 60, 300),
        handle=durations(300, 360, 240, 300, 420, 120),
        over_target=1,
        over_target_pct=report.total.over_target_pct,  # checked below
        ratings=Ratings(4, 4.0, (0, 1, 0, 1, 2), satisfied=3, satisfaction_pct=75.0),
        cases_opened=1,
        cases_ready=1,
        cases_picked_up=1,
        inquiries=2,
        referrals=1,
    )
    total = report.total
    assert total.over_target_pct == pytest.approx(100 / 9)
    assert total.wait == Durations(9, 560.0, 2820.0, 2820.0)
    assert total.handle == Durations(6, 290.0, 420.0, 420.0)
    # every ticket ends exactly one way
    assert total.issued == (
        total.done
        + total.back_office
        + total.no_show
        + total.cancelled
        + total.expired
        + total.in_progress
    )


def test_per_service(report: DailyReport) -> None:
    assert [(r.id, r.prefix, r.name_zh, r.name_en) for r in report.services] == [
        ("social", "A", "业务social", "Service social"),
        ("medical", "B", "业务medical", "Service medical"),
        ("housing", "C", "业务housing", "Service housing"),
        ("pickup", "Q", "业务pickup", "Service pickup"),
    ]
    social = service(report, "social")
    assert (social.issued, social.priority_issued, social.called, social.served) == (5, 1, 3, 2)
    assert (social.transferred, social.cancelled, social.expired, social.no_show) == (1, 1, 1, 0)
    assert social.wait == Durations(3, 500.0, 660.0, 660.0)
    assert (social.over_target, social.over_target_pct) == (0, 0.0)
    assert social.handle == Durations(2, 300.0, 300.0, 300.0)
    assert social.ratings == Ratings(1, 5.0, (0, 0, 0, 0, 1), 1, 100.0)
    assert social.inquiries == 1

    medical = service(report, "medical")
    # B001, B002 issued; A001 joined by transfer: waited 60 s in this line, not 16 min
    assert (medical.issued, medical.called, medical.done, medical.back_office) == (2, 3, 1, 1)
    assert (medical.transferred, medical.expired) == (0, 1)
    assert medical.wait == durations(240, 60, 300)
    assert medical.wait == Durations(3, 200.0, 300.0, 300.0)
    assert medical.handle == Durations(2, 300.0, 360.0, 360.0)
    assert medical.ratings == Ratings(2, 3.0, (0, 1, 0, 1, 0), 1, 50.0)
    assert medical.cases_opened == 1
    # case.ready names its service: the per-service counts add up to the total
    assert medical.cases_ready == 1
    assert sum(r.figures.cases_ready for r in report.services) == report.total.cases_ready

    housing = service(report, "housing")
    assert (housing.issued, housing.called, housing.done, housing.no_show) == (2, 2, 1, 1)
    assert housing.wait == Durations(2, 1440.0, 2820.0, 2820.0)
    assert (housing.over_target, housing.over_target_pct) == (1, 50.0)
    assert housing.handle == Durations(1, 420.0, 420.0, 420.0)
    assert housing.recalls == 1
    assert housing.ratings == Ratings(1, 5.0, (0, 0, 0, 0, 1), 1, 100.0)

    pickup = service(report, "pickup")
    assert (pickup.issued, pickup.called, pickup.done, pickup.cases_picked_up) == (1, 1, 1, 1)
    assert pickup.wait == Durations(1, 60.0, 60.0, 60.0)
    assert pickup.handle == Durations(1, 120.0, 120.0, 120.0)

    # per service: issued + transfers in = outcomes incl. transfers out
    transfers_in = {"medical": 1}
    for row in report.services:
        f = row.figures
        assert f.issued + transfers_in.get(row.id, 0) == (
            f.done + f.back_office + f.no_show + f.transferred + f.cancelled + f.expired
        )
    assert sum(r.figures.issued for r in report.services) == report.total.issued
    assert sum(r.figures.wait.count for r in report.services) == report.total.wait.count


def test_per_window(report: DailyReport) -> None:
    assert [(r.number, r.type, r.name_zh, r.name_en) for r in report.windows] == [
        (1, "comprehensive", "1号窗口", "Window 1"),
        (2, "comprehensive", "2号窗口", "Window 2"),
        (3, "dedicated", "3号窗口", "Window 3"),
        (4, "reply", "4号窗口", "Window 4"),
    ]
    w1 = window(report, 1)
    # A002, A001, A003 (after its no-show at window 2), C001, C002
    assert (w1.called, w1.priority_called, w1.done, w1.no_show, w1.transferred) == (5, 1, 3, 1, 1)
    assert w1.issued == 0
    assert w1.wait == durations(240, 660, 2820, 60)
    assert w1.wait == Durations(4, 945.0, 2820.0, 2820.0)
    assert (w1.over_target, w1.over_target_pct) == (1, 25.0)
    assert w1.handle == Durations(3, 340.0, 420.0, 420.0)
    assert w1.ratings == Ratings(2, 5.0, (0, 0, 0, 0, 2), 2, 100.0)
    assert w1.recalls == 1

    w2 = window(report, 2)
    assert (w2.called, w2.done, w2.back_office, w2.no_show, w2.expired) == (4, 1, 1, 0, 1)
    assert w2.wait == Durations(4, 300.0, 600.0, 600.0)
    assert w2.over_target_pct == 0.0
    assert w2.handle == Durations(2, 300.0, 360.0, 360.0)
    assert w2.ratings == Ratings(2, 3.0, (0, 1, 0, 1, 0), 1, 50.0)
    assert w2.cases_opened == 1

    assert window(report, 3) == Figures()  # configured, unused: zeros and Nones

    w4 = window(report, 4)
    assert (w4.called, w4.served, w4.cases_picked_up) == (1, 1, 1)


def test_per_staff(report: DailyReport) -> None:
    assert [r.id for r in report.staff] == ["bo1", "s1", "s2", "s4"]
    assert staff(report, "bo1") == Figures(cases_ready=1)
    s1 = staff(report, "s1")
    w1 = window(report, 1)
    assert (s1.called, s1.done, s1.no_show, s1.transferred, s1.recalls) == (5, 3, 1, 1, 1)
    assert (s1.wait, s1.handle, s1.ratings) == (w1.wait, w1.handle, w1.ratings)
    assert (s1.inquiries, s1.referrals) == (1, 0)
    s2 = staff(report, "s2")
    assert (s2.called, s2.served, s2.expired, s2.cases_opened) == (4, 2, 1, 1)
    assert s2.ratings == Ratings(2, 3.0, (0, 1, 0, 1, 0), 1, 50.0)
    assert (s2.inquiries, s2.referrals) == (1, 1)
    s4 = staff(report, "s4")
    assert (s4.served, s4.cases_picked_up) == (1, 1)


def test_midday_report_counts_open_tickets(day: Day) -> None:
    report = daily_report(day.config, day.midday, DAY)
    assert not report.closed
    assert (report.total.expired, report.total.in_progress) == (0, 2)  # A005 waiting, B002 held
    assert (window(report, 2).in_progress, staff(report, "s2").in_progress) == (1, 1)
    assert report.last_seq == day.midday[-1].seq


def test_store_gives_the_same_report(day: Day, report: DailyReport, tmp_path: Path) -> None:
    store = Store(tmp_path / "qcall.db")
    store.open()
    try:
        store.append(day.events)
        from_store = daily_report(day.config, store.day_events(DAY), DAY)
        assert from_store == report
        assert from_store.last_seq == day.events[-2].seq  # the day.closed
        # the whole log in one pass: other days are skipped
        assert daily_report(day.config, store.iter_events(), DAY) == report
        assert store.last_seq() == day.events[-1].seq  # nothing was edited or removed
    finally:
        store.close()


def test_empty_day_and_other_days() -> None:
    config = make_config()
    empty = daily_report(config, [], DAY)
    assert empty.total == Figures()
    assert empty.total.wait == Durations(0, None, None, None)
    assert empty.total.over_target_pct is None
    assert empty.total.ratings == Ratings(0, None, (0, 0, 0, 0, 0))
    assert (empty.closed, empty.last_seq, empty.staff) == (False, 0, ())
    assert [r.id for r in empty.services] == ["social", "medical", "housing", "pickup"]
    assert all(r.figures == Figures() for r in empty.services)
    assert all(r.figures == Figures() for r in empty.windows)
    assert empty.day_type == "weekday"  # from the calendar
    json.dumps(to_json(empty))
    assert to_csv(empty)
    assert "-" in to_table(empty)


def test_events_of_another_day_are_ignored(day: Day) -> None:
    nxt = daily_report(day.config, day.events, NEXT_DAY)
    assert nxt.total == Figures()
    assert nxt.last_seq == day.events[-1].seq  # only its day.opened
    assert daily_report(day.config, day.events, DAY - dt.timedelta(days=1)).last_seq == 0


def test_nearest_rank_p90_on_ten_waits() -> None:
    config = make_config()
    clock = Clock()
    engine = Engine(config)
    engine.open_window(clock.now, 3, "s3")
    for _ in range(10):
        engine.issue(clock.now, "housing")
    for _ in range(10):
        clock.advance(minutes=1)
        assert engine.call_next(clock.now, 3, "s3") is not None  # finishes the previous one
    clock.advance(minutes=1)
    engine.finish(clock.now, 3, "s3", Outcome.DONE)
    report = daily_report(config, engine.drain(), DAY)
    assert report.total.wait == Durations(10, 330.0, 540.0, 600.0)
    assert report.total.handle == Durations(10, 60.0, 60.0, 60.0)
    assert nearest_rank_p90([]) is None
    assert nearest_rank_p90(range(1, 21)) == 18
    assert nearest_rank_p90([7.0]) == 7.0


def call_next(engine: Engine, now: dt.datetime) -> str:
    ticket = engine.call_next(now, 1, "s1")
    assert ticket is not None
    return ticket.number


def test_hold_callback_and_requeue() -> None:
    """Handle time runs from the latest call; a requeued held ticket expires at no window."""
    config = make_config()
    clock = Clock()
    engine = Engine(config)
    engine.open_window(clock.now, 1, "s1")
    engine.issue(clock.now, "social")  # A001
    engine.issue(clock.now, "social")  # A002
    assert call_next(engine, clock.advance(minutes=1)) == "A001"
    engine.hold(clock.advance(minutes=2), 1, "s1")
    assert call_next(engine, clock.advance(minutes=1)) == "A002"
    engine.callback(clock.advance(minutes=2), 1, "s1", "A001")  # finishes A002 after 120 s
    engine.finish(clock.advance(minutes=4), 1, "s1", Outcome.DONE)  # A001: 240 s since callback
    engine.issue(clock.advance(minutes=1), "social")  # A003
    assert call_next(engine, clock.advance(minutes=1)) == "A003"
    engine.hold(clock.advance(minutes=1), 1, "s1")
    engine.close_window(clock.advance(minutes=1), 1, "s1")  # A003 back in line
    engine.tick(dt.datetime(2026, 11, 27, 8, 0, tzinfo=SHANGHAI))
    report = daily_report(config, engine.drain(), DAY)
    total, w1 = report.total, window(report, 1)
    assert (total.issued, total.called, total.done, total.expired) == (3, 3, 2, 1)
    assert (w1.called, w1.done, w1.expired) == (3, 2, 0)
    assert total.wait == durations(60, 240, 60)
    assert total.handle == durations(120, 240)
    assert w1.handle == total.handle


# ----------------------------------------------------------------------------- renderers


def test_json_is_serialisable_and_rounded(report: DailyReport) -> None:
    data = json.loads(json.dumps(to_json(report), ensure_ascii=False))
    assert data["day"] == "2026-11-26"
    assert data["closed"] is True
    total = data["total"]
    assert total["issued"] == 10
    assert total["wait"] == {"count": 9, "mean_s": 560.0, "p90_s": 2820.0, "max_s": 2820.0}
    assert total["over_target_pct"] == 11.1
    assert total["ratings"] == {
        "count": 4,
        "mean": 4.0,
        "distribution": {"1": 0, "2": 1, "3": 0, "4": 1, "5": 2},
        "satisfied": 3,
        "satisfaction_pct": 75.0,
    }
    medical = next(s for s in data["services"] if s["id"] == "medical")
    assert (medical["name_zh"], medical["target_wait_min"], medical["called"]) == (
        "业务medical",
        30,
        3,
    )
    assert data["windows"][2]["wait"]["mean_s"] is None
    assert [s["id"] for s in data["staff"]] == ["bo1", "s1", "s2", "s4"]


def csv_sections(text: str) -> dict[str, list[list[str]]]:
    """Split the CSV into {title: [header, *rows]} at empty rows."""
    sections: dict[str, list[list[str]]] = {}
    current: list[list[str]] = []
    for row in csv.reader(io.StringIO(text.removeprefix("\ufeff"))):
        if not row:
            current = []
            continue
        if not current and len(row) == 1 and row[0] not in sections:
            sections[row[0]] = current
            continue
        current.append(row)
    return sections


def test_csv_parses_back(report: DailyReport) -> None:
    sections = csv_sections(to_csv(report))
    assert list(sections) == ["日报", "合计", "按时段", "按业务", "按窗口", "按工作人员"]
    (meta_header, meta) = sections["日报"]
    assert dict(zip(meta_header, meta, strict=True)) == {
        "期间": "2026-11-26",
        "起始日期": "2026-11-26",
        "截止日期": "2026-11-26",
        "中心": "测试街道社区事务受理服务中心",
        "中心英文名": "Test Street Center",
        "日类型": "工作日",
        "状态": "已日结",
        "最后事件序号": str(report.last_seq),
    }

    header, *rows = sections["按业务"]
    assert header[:5] == ["业务编号", "业务名称", "英文名称", "号头", "目标等候(分)"]
    assert {"取号", "叫号", "办结", "过号", "转移", "平均等候(秒)", "超时率%", "5分"} <= set(header)
    assert all(len(row) == len(header) for row in rows)
    by_id = {row[0]: dict(zip(header, row, strict=True)) for row in rows}
    assert list(by_id) == ["social", "medical", "housing", "pickup"]
    assert by_id["medical"]["业务名称"] == "业务medical"
    assert by_id["medical"]["叫号"] == "3"
    assert by_id["medical"]["平均等候(秒)"] == "200.0"
    assert by_id["housing"]["超时率%"] == "50.0"
    assert by_id["medical"]["平均分"] == "3.00"
    assert (by_id["medical"]["2分"], by_id["medical"]["4分"]) == ("1", "1")

    day_header, day_row = sections["合计"]
    total = dict(zip(day_header, day_row, strict=True))
    assert (total["取号"], total["最长等候(秒)"], total["超时率%"]) == ("10", "2820.0", "11.1")

    w_header, *w_rows = sections["按窗口"]
    windows = {row[0]: dict(zip(w_header, row, strict=True)) for row in w_rows}
    assert windows["1"]["窗口类型"] == "综合窗口"
    assert windows["3"]["平均等候(秒)"] == ""  # no sample
    assert "取号" not in w_header  # windows issue nothing

    s_header, *s_rows = sections["按工作人员"]
    people = {row[0]: dict(zip(s_header, row, strict=True)) for row in s_rows}
    assert people["s2"]["转介"] == "1"
    assert s_header[:2] == ["工作人员编号", "姓名"]
    assert people["bo1"]["办结待取"] == "1"


def test_csv_languages(report: DailyReport) -> None:
    english = csv_sections(to_csv(report, lang="en"))
    assert list(english) == ["Daily report", "Total", "By hour", "By service", "By window",
                             "By staff member"]  # fmt: skip
    header = english["By service"][0]
    assert {"Issued", "Wait mean (s)", "Over target %", "Rated 5"} <= set(header)
    both = csv_sections(to_csv(report, lang="both"))
    assert "取号 Issued" in both["按业务 By service"][0]
    assert to_csv(report).startswith("\ufeff")  # Excel on a Chinese Windows reads UTF-8
    assert not to_csv(report, bom=False).startswith("\ufeff")
    with pytest.raises(ValueError, match="lang"):
        to_csv(report, lang="fr")


def width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def cell_ends(line: str) -> list[int]:
    """Display columns where each cell (runs separated by 2+ spaces) ends."""
    return [width(line[: m.end()]) for m in re.finditer(r"\S+(?: \S+)*", line)]


def table_blocks(text: str) -> dict[str, list[str]]:
    blocks: dict[str, list[str]] = {}
    for chunk in text.split("\n\n")[1:]:
        title, *lines = chunk.strip("\n").split("\n")
        blocks[title] = lines
    return blocks


@pytest.mark.parametrize("lang", ["zh", "en", "both"])
def test_table_aligns_by_display_width(report: DailyReport, lang: str) -> None:
    text = to_table(report, lang=lang)
    blocks = table_blocks(text)
    assert len(blocks) == 8  # hours, then services, windows and staff
    for title, lines in blocks.items():
        assert title.startswith("[")
        ends = [cell_ends(line) for line in lines]
        # every right-aligned column ends at the same display column in every line
        assert len({len(e) for e in ends}) == 1, title
        assert len({tuple(e[-1:]) for e in ends}) == 1, title
        for column in range(1, len(ends[0])):
            left = title.startswith(("[按窗口", "[By window", "[按工作人员", "[By staff"))
            if left and column == 1:
                continue  # the window type and staff name columns are left-aligned
            assert len({e[column] for e in ends}) == 1, (title, column)


def test_table_content(report: DailyReport) -> None:
    text = to_table(report)
    assert text.splitlines()[0] == (
        "测试街道社区事务受理服务中心  日报  2026-11-26  工作日  已日结"
    )
    blocks = table_blocks(text)
    counts = blocks["[按业务 · 件数]"]
    assert counts[0].split()[:4] == ["业务", "取号", "绿色通道", "叫号"]
    assert counts[2].split()[:4] == ["业务medical", "2", "0", "3"]
    assert counts[-1].split()[:2] == ["合计", "10"]
    times = blocks["[按业务 · 时长与评价]"]
    assert times[0].split()[:2] == ["业务", "平均等候(分)"]  # units on times
    assert times[3].split()[:4] == ["业务housing", "24.0", "47.0", "47.0"]
    assert times[-1].split()[-1] == "0/1/0/1/2"
    windows = blocks["[按窗口 · 时长与评价]"]
    assert windows[3].split()[:4] == ["3号窗口", "专用窗口", "-", "-"]
    english = to_table(report, lang="en")
    assert "Service medical" in english
    assert "Test Street Center  daily report  2026-11-26  weekday  day closed" in english


def test_promised_dates_kept_and_broken() -> None:
    """Cases promised for the day: kept when ready by then, broken once the day is over."""
    config = make_config()
    clock = Clock()
    engine = Engine(config)
    engine.open_window(clock.now, 1, "s1")
    for _ in range(3):
        engine.issue(clock.now, "social")
    cases = []
    for promised in (DAY, DAY, NEXT_DAY):
        assert engine.call_next(clock.advance(minutes=1), 1, "s1") is not None
        before = set(engine.cases)
        engine.finish(clock.advance(minutes=5), 1, "s1", Outcome.BACK_OFFICE, promised)
        [case] = set(engine.cases) - before
        cases.append(case)
    engine.case_ready(clock.advance(hours=2), cases[0], "bo1")  # kept
    midday = list(engine.drain())
    during = daily_report(config, midday, DAY, today=DAY)
    assert (during.total.cases_due, during.total.cases_kept, during.total.cases_broken) == (2, 1, 0)
    engine.tick(dt.datetime(2026, 11, 27, 8, 0, tzinfo=SHANGHAI))
    engine.case_ready(dt.datetime(2026, 11, 27, 9, 0, tzinfo=SHANGHAI), cases[1], "bo1")  # late
    events = midday + engine.drain()
    closed = daily_report(config, events, DAY)
    s1 = staff(closed, "s1")  # the accepting clerk answers for the promise, not the back office
    assert (s1.cases_due, s1.cases_kept, s1.cases_broken, s1.cases_kept_pct) == (2, 1, 1, 50.0)
    assert (staff(closed, "bo1").cases_due, staff(closed, "bo1").cases_ready) == (0, 1)
    assert service(closed, "social").cases_kept_pct == 50.0
    nxt = daily_report(config, events, NEXT_DAY, today=NEXT_DAY)
    assert (nxt.total.cases_due, nxt.total.cases_kept, nxt.total.cases_ready) == (1, 0, 1)
    assert nxt.total.cases_broken == 0  # promised today, still time


def test_month_bounds_and_the_edges_of_the_calendar() -> None:
    assert month_bounds("2024-02") == (dt.date(2024, 2, 1), dt.date(2024, 2, 29))
    assert month_bounds("2026-12") == (dt.date(2026, 12, 1), dt.date(2026, 12, 31))
    assert month_bounds("9999-12") == (dt.date(9999, 12, 1), dt.date(9999, 12, 31))
    for bad in ("2026-13", "2026-1", "26-11", "0000-01", "", "2026-11-01"):
        with pytest.raises(ValueError, match="YYYY-MM"):
            month_bounds(bad)
    last = build_report(make_config(), [], dt.date(9999, 12, 30), dt.date(9999, 12, 31))
    assert [d.day for d in last.days] == [dt.date(9999, 12, 30), dt.date(9999, 12, 31)]
    with pytest.raises(ValueError, match="before"):
        build_report(make_config(), [], NEXT_DAY, DAY)
