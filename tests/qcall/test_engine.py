"""Unit tests of the pure queue engine (qcall/engine.py): every command and policy."""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import json
from collections.abc import Callable
from typing import Any

import pytest

from qcall.config import CenterConfig, parse_config
from qcall.engine import COLLECTED_CASE_DAYS, Engine, Ticket
from qcall.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    QcallError,
    ServiceUnavailable,
)
from qcall.events import Event, EventType
from qcall.model import (
    CaseState,
    Outcome,
    Position,
    TicketState,
    UnavailableReason,
    WindowState,
)
from tests.common import OFFICE, SHANGHAI, Clock, make_config, small_center

DAY = dt.date(2026, 11, 26)  # a Thursday, the Clock's default start
PREFIX = "20261126-"


# ----------------------------------------------------------------------------- helpers


def new_engine(config: CenterConfig | None = None) -> Engine:
    """An engine with deterministic tracking tokens and pickup codes."""
    tokens = itertools.count(1)
    codes = itertools.count(1)
    return Engine(
        config or make_config(),
        token_factory=lambda: f"tok{next(tokens)}",
        code_factory=lambda: f"{next(codes):06d}",
    )


def at(day: dt.date, hh: int, mm: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hh, mm, tzinfo=SHANGHAI)


def types(events: list[Event]) -> list[str]:
    return [str(e.type) for e in events]


def frozen(engine: Engine) -> tuple[Any, ...]:
    return (copy.deepcopy(engine.state()), copy.deepcopy(engine.to_snapshot()), engine.seq)


def refused(
    engine: Engine,
    exc: type[QcallError],
    action: Callable[[], object],
    code: str | None = None,
) -> QcallError:
    """Run an illegal command: it raises ``exc`` with both texts and changes nothing."""
    engine.drain()  # events of earlier commands are not under test here
    before = frozen(engine)
    with pytest.raises(exc) as info:
        action()
    err = info.value
    assert isinstance(err, QcallError)
    assert err.message_zh.strip()
    assert err.message_en.strip()
    if code is not None:
        assert err.code == code
    assert engine.drain() == []
    assert frozen(engine) == before
    return err


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def eng(clock: Clock) -> Engine:
    engine = new_engine()
    engine.open_window(clock(), 1, "s1")
    engine.drain()
    return engine


def issue_many(engine: Engine, clock: Clock, service: str, n: int, **kw: Any) -> list[Ticket]:
    return [engine.issue(clock.advance(seconds=10), service, **kw) for _ in range(n)]


def office_config(**policy: Any) -> CenterConfig:
    """Office hours: weekdays 08:30-16:30, weekend duty 08:30-11:30, a holiday and a make-up day.

    Fri 2026-11-27 is a holiday (closed); Sat 2026-11-28 is a make-up working day.
    Housing is not offered on weekend duty days.
    """
    raw = small_center()
    duty = {"start": "08:30", "end": "11:30"}
    raw["calendar"] = {
        "day_types": {"weekday": OFFICE, "weekend_duty": duty},
        "overrides": [
            {"date": "2026-11-27", "day_type": "closed", "note_zh": "节假日"},
            {"date": "2026-11-28", "day_type": "weekday", "note_zh": "调休上班"},
        ],
    }
    for service in raw["services"]:
        service["hours"] = {"weekday": OFFICE, "weekend_duty": duty}
        if service["id"] == "housing":
            service["hours"] = {"weekday": OFFICE}
    if policy:
        raw["policy"] = policy
    return parse_config(raw, "<office>")


# ----------------------------------------------------------------------------- issuing


def test_numbers_run_per_prefix(clock: Clock) -> None:
    engine = new_engine()
    engine.open_window(clock(), 1, "s1")
    opened = engine.drain()
    assert types(opened) == ["day.opened", "window.opened"]
    assert opened[0].data == {
        "day": "2026-11-26",
        "day_type": "weekday",
        "opens": "00:00",
        "closes": "24:00",
    }
    a1 = engine.issue(clock.advance(seconds=1), "social")
    a2 = engine.issue(clock.advance(seconds=1), "social", channel="desk")
    b1 = engine.issue(clock.advance(seconds=1), "medical")
    a3 = engine.issue(clock.advance(seconds=1), "social", priority=True)
    c1 = engine.issue(clock.advance(seconds=1), "housing")
    assert [t.number for t in (a1, a2, b1, a3, c1)] == ["A001", "A002", "B001", "A003", "C001"]
    assert a1.id == PREFIX + "A001"
    assert a1.state is TicketState.WAITING
    assert a2.channel == "desk"
    assert a3.priority is True
    assert a1.track_token == "tok1"
    assert engine.ticket_by_token("tok2") is a2
    events = engine.drain()
    assert types(events) == ["ticket.issued"] * 5
    assert events[0].data == {
        "id": PREFIX + "A001",
        "number": "A001",
        "service": "social",
        "prefix": "A",
        "priority": False,
        "channel": "kiosk",
        "track_token": "tok1",
        "case_id": None,
    }
    assert [e.seq for e in events] == [3, 4, 5, 6, 7]
    assert engine.state()["waiting"] == {"social": 3, "medical": 1, "housing": 1, "pickup": 0}


def test_services_sharing_a_prefix_share_one_sequence(clock: Clock) -> None:
    raw = small_center()
    extra = copy.deepcopy(raw["services"][0])
    extra.update(id="pension", name_zh="养老", name_en="Pension")
    raw["services"].append(extra)
    engine = new_engine(parse_config(raw))
    engine.open_window(clock(), 1, "s1")
    numbers = [
        engine.issue(clock.advance(seconds=1), sid).number
        for sid in ("social", "pension", "social", "pension")
    ]
    assert numbers == ["A001", "A002", "A003", "A004"]


def test_new_day_resets_numbers_expires_tickets_and_closes_windows(
    eng: Engine, clock: Clock
) -> None:
    eng.open_window(clock(), 2, "s2")
    a1, a2, a3, _ = issue_many(eng, clock, "social", 4)
    assert eng.call_next(clock(), 1, "s1") is a1
    eng.hold(clock(), 1, "s1")
    assert eng.call_next(clock(), 1, "s1") is a2
    assert eng.call_next(clock(), 2, "s2") is a3
    eng.start(clock(), 2, "s2")
    eng.drain()
    # The next command after midnight closes the old day first.
    next_day = at(DAY + dt.timedelta(days=1), 0, 5)
    eng.tick(next_day)
    events = eng.drain()
    assert types(events) == ["day.closed", "day.opened"]
    assert events[0].data == {
        "day": "2026-11-26",
        # a1 held, a2 called, a3 serving, a4 waiting
        "expired": [PREFIX + "A001", PREFIX + "A002", PREFIX + "A003", PREFIX + "A004"],
        "closed_windows": [1, 2],
    }
    assert events[1].data["day"] == "2026-11-27"
    assert all(t.state is TicketState.EXPIRED for t in (a1, a2, a3))
    state = eng.state()
    assert state["day"] == "2026-11-27"
    assert all(w["state"] == "closed" and w["held"] == [] for w in state["windows"])
    assert state["waiting"]["social"] == 0
    assert state["recent_calls"] == []
    refused(eng, NotFound, lambda: eng.ticket(a1.id), "no_ticket")
    eng.open_window(next_day, 1, "s1")
    fresh = eng.issue(next_day, "social")
    assert fresh.number == "A001"
    assert fresh.id == "20261127-A001"
    # A second tick on the same day does nothing.
    eng.drain()
    eng.tick(next_day + dt.timedelta(hours=5))
    assert eng.drain() == []


def test_day_rolls_over_inside_any_command(eng: Engine, clock: Clock) -> None:
    issue_many(eng, clock, "social", 2)
    eng.drain()
    eng.open_window(at(DAY + dt.timedelta(days=1), 8), 1, "s1")
    assert types(eng.drain()) == ["day.closed", "day.opened", "window.opened"]


def test_daily_cap(clock: Clock) -> None:
    raw = small_center()
    raw["services"][0]["daily_cap"] = 2
    engine = new_engine(parse_config(raw))
    engine.open_window(clock(), 1, "s1")
    issue_many(engine, clock, "social", 2)
    social = engine.config.service("social")
    assert social is not None
    avail = engine.availability(social, clock())
    assert not avail.available
    assert avail.reason is UnavailableReason.DAILY_CAP_REACHED
    assert avail.opens_at == at(DAY + dt.timedelta(days=1), 0)
    assert avail.message_zh
    assert avail.message_en
    err = refused(engine, ServiceUnavailable, lambda: engine.issue(clock(), "social"))
    assert err.code == "service_unavailable"
    assert err.details == {"reason": "daily_cap_reached"}
    assert isinstance(err, Conflict)
    # A cancelled ticket still counts against the cap.
    engine.cancel(clock(), PREFIX + "A001")
    refused(engine, ServiceUnavailable, lambda: engine.issue(clock(), "social"))
    # Other services are not affected; the cap resets the next day.
    assert engine.issue(clock(), "medical").number == "B001"
    tomorrow = at(DAY + dt.timedelta(days=1), 9)
    engine.open_window(tomorrow, 1, "s1")
    assert engine.availability(social, tomorrow).available
    assert engine.issue(tomorrow, "social").number == "A001"


def refusing(config: CenterConfig) -> CenterConfig:
    """The same center with the morning rule off: no open window refuses tickets."""
    center = config.center.model_copy(update={"no_window_open": "refuse"})
    return config.model_copy(update={"center": center})


def test_outside_hours_closed_today_and_calendar_overrides() -> None:
    engine = new_engine(refusing(office_config()))
    social = engine.config.service("social")
    housing = engine.config.service("housing")
    assert social is not None
    assert housing is not None
    thu, fri, sat, sun, mon = (DAY + dt.timedelta(days=i) for i in range(5))

    early = engine.availability(social, at(thu, 8, 0))
    assert (early.available, early.reason) == (False, UnavailableReason.OUTSIDE_HOURS)
    assert early.opens_at == at(thu, 8, 30)
    assert "08:30" in early.message_zh
    assert "08:30" in early.message_en
    assert engine.availability(social, at(thu, 8, 30)).reason is UnavailableReason.NO_WINDOW_OPEN
    # After closing: Friday is a holiday, Saturday a make-up working day.
    late = engine.availability(social, at(thu, 16, 30))
    assert late.reason is UnavailableReason.OUTSIDE_HOURS
    assert late.opens_at == at(sat, 8, 30)

    holiday = engine.availability(social, at(fri, 10))
    assert holiday.reason is UnavailableReason.CLOSED_TODAY
    assert holiday.opens_at == at(sat, 8, 30)
    assert holiday.message_zh
    assert holiday.message_en

    engine.open_window(at(fri, 10), 1, "s1")
    assert engine.state()["day_type"] == "closed"
    assert engine.drain()[0].data == {
        "day": "2026-11-27",
        "day_type": "closed",
        "opens": None,
        "closes": None,
    }
    err = refused(engine, ServiceUnavailable, lambda: engine.issue(at(fri, 10), "social"))
    assert err.details == {"reason": "closed_today"}

    # The make-up Saturday follows weekday hours: open after 11:30, housing offered.
    engine.open_window(at(sat, 12), 1, "s1")
    assert engine.state()["day_type"] == "weekday"
    assert engine.issue(at(sat, 12), "social").number == "A001"
    assert engine.issue(at(sat, 12), "housing").number == "C001"
    err = refused(engine, ServiceUnavailable, lambda: engine.issue(at(sat, 16, 45), "social"))
    assert err.details == {"reason": "outside_hours"}

    # A normal Sunday is weekend duty: 08:30-11:30, and housing is not offered.
    assert engine.availability(social, at(sun, 11)).reason is UnavailableReason.NO_WINDOW_OPEN
    assert engine.availability(social, at(sun, 12)).reason is UnavailableReason.OUTSIDE_HOURS
    assert engine.availability(social, at(sun, 12)).opens_at == at(mon, 8, 30)
    closed = engine.availability(housing, at(sun, 9))
    assert closed.reason is UnavailableReason.CLOSED_TODAY
    assert closed.opens_at == at(mon, 8, 30)


def test_availability_answers_for_the_day_asked(clock: Clock) -> None:
    """Before any command rolls the day over, yesterday's cap and windows do not count."""
    raw = small_center()
    raw["services"][0]["daily_cap"] = 1
    engine = new_engine(refusing(parse_config(raw)))
    engine.open_window(clock(), 1, "s1")
    engine.issue(clock(), "social")
    social = engine.config.service("social")
    assert social is not None
    assert engine.availability(social, clock()).reason is UnavailableReason.DAILY_CAP_REACHED
    tomorrow = at(DAY + dt.timedelta(days=1), 9)
    before = frozen(engine)
    # Windows close when the day rolls over, and the cap starts again.
    assert engine.availability(social, tomorrow).reason is UnavailableReason.NO_WINDOW_OPEN
    assert frozen(engine) == before  # a query changes nothing
    engine.open_window(tomorrow, 1, "s1")
    assert engine.availability(social, tomorrow).available


def test_no_window_open_when_refusing(clock: Clock) -> None:
    engine = new_engine(refusing(make_config()))
    engine.tick(clock())
    engine.drain()
    social = engine.config.service("social")
    assert social is not None
    avail = engine.availability(social, clock())
    assert avail.reason is UnavailableReason.NO_WINDOW_OPEN
    assert avail.opens_at is None
    err = refused(engine, ServiceUnavailable, lambda: engine.issue(clock(), "social"))
    assert err.details == {"reason": "no_window_open"}
    # Window 3 serves only housing; window 4 only pickups.
    engine.open_window(clock(), 3, "s3")
    assert engine.availability(social, clock()).reason is UnavailableReason.NO_WINDOW_OPEN
    housing = engine.config.service("housing")
    assert housing is not None
    assert engine.availability(housing, clock()).available


def test_morning_rule_issues_before_any_window_opens(clock: Clock) -> None:
    """By default (``no_window_open = "issue"``) residents queue before the clerks arrive."""
    engine = new_engine()
    social = engine.config.service("social")
    assert social is not None
    assert engine.config.center.no_window_open == "issue"
    assert engine.availability(social, clock()).available
    assert not engine.served_now(social, clock())
    first = engine.issue(clock(), "social")
    assert (first.number, first.state) == ("A001", "waiting")
    engine.open_window(clock(), 3, "s3")  # serves housing only
    assert not engine.served_now(social, clock())
    engine.open_window(clock(), 1, "s1")
    assert engine.served_now(social, clock())
    assert engine.call_next(clock(), 1, "s1") is first
    # Tomorrow the windows are closed again: tickets yes, served no (until a window opens).
    tomorrow = at(DAY + dt.timedelta(days=1), 9)
    assert engine.availability(social, tomorrow).available
    assert not engine.served_now(social, tomorrow)


def test_idempotency_key_answers_the_same_ticket(clock: Clock) -> None:
    engine = new_engine()
    first = engine.issue(clock(), "social", idempotency_key="kiosk1-0001")
    issued = engine.drain()
    assert [e.data.get("idempotency_key") for e in issued if e.type == "ticket.issued"] == [
        "kiosk1-0001"
    ]
    before = frozen(engine)
    again = engine.issue(clock.advance(seconds=30), "social", idempotency_key="kiosk1-0001")
    assert again is first
    assert engine.drain() == []
    assert frozen(engine) == before
    # Another key, or none, is another ticket.
    assert engine.issue(clock(), "social", idempotency_key="kiosk1-0002").number == "A002"
    assert engine.issue(clock(), "social").number == "A003"
    # The same key for a different request is refused, changing nothing.
    refused(
        engine,
        Conflict,
        lambda: engine.issue(clock(), "medical", idempotency_key="kiosk1-0001"),
        "idempotency_key_reused",
    )
    refused(
        engine,
        Conflict,
        lambda: engine.issue(clock(), "social", priority=True, idempotency_key="kiosk1-0001"),
        "idempotency_key_reused",
    )


def test_idempotency_keys_survive_replay_and_snapshots_and_end_with_the_day(
    clock: Clock,
) -> None:
    engine = new_engine()
    first = engine.issue(clock(), "social", idempotency_key="k-1")
    events = engine.drain()
    replica = Engine(make_config())
    for event in events:
        replica.replay(event)
    assert replica.issue(clock(), "social", idempotency_key="k-1").id == first.id
    restored = Engine(make_config())
    restored.load_snapshot(engine.to_snapshot())
    assert restored.issue(clock(), "social", idempotency_key="k-1").id == first.id
    assert restored.drain() == []
    # Keys are kept for the service day: tomorrow the same key is a new ticket.
    tomorrow = at(DAY + dt.timedelta(days=1), 9)
    assert engine.issue(tomorrow, "social", idempotency_key="k-1").number == "A001"
    assert engine.tickets[engine.by_key["k-1"]].issued_at == tomorrow


def test_issue_refusals(eng: Engine, clock: Clock) -> None:
    err = refused(
        eng, BadRequest, lambda: eng.issue(clock(), "housing", priority=True), "no_priority_lane"
    )
    assert "priority" in err.message_en
    refused(eng, NotFound, lambda: eng.issue(clock(), "nope"), "no_service")
    eng.open_window(clock(), 4, "s4")
    refused(eng, BadRequest, lambda: eng.issue(clock(), "pickup"), "case_code_required")
    refused(eng, NotFound, lambda: eng.issue(clock(), "pickup", case_code="999999"), "no_case")
    refused(eng, BadRequest, lambda: eng.issue(clock(), "social", case_code="000001"))


# ----------------------------------------------------------------------------- call next


def test_strict_policy_priority_then_weight_then_time(clock: Clock) -> None:
    def scenario() -> tuple[Engine, dict[str, Ticket]]:
        c = clock
        engine = new_engine()
        engine.open_window(c(), 1, "s1")
        engine.open_window(c(), 2, "s2")
        tickets = {
            "A001": engine.issue(c.advance(seconds=10), "social"),
            "B001": engine.issue(c.advance(seconds=10), "medical"),
            "A002": engine.issue(c.advance(seconds=10), "social", priority=True),
            "C001": engine.issue(c.advance(seconds=10), "housing"),
            "B002": engine.issue(c.advance(seconds=10), "medical", priority=True),
        }
        return engine, tickets

    engine, _ = scenario()
    # Window 2 weights medical 3: priority first (medical outranks social), then medical.
    order2 = [engine.call_next(clock(), 2, "s2") for _ in range(6)]
    assert [t.number if t else None for t in order2] == [
        "B002",
        "A002",
        "B001",
        "A001",
        "C001",
        None,
    ]
    engine, _ = scenario()
    # Window 1 weights everything 1: priority by issue time, then issue time.
    order1 = [engine.call_next(clock(), 1, "s1") for _ in range(6)]
    assert [t.number if t else None for t in order1] == [
        "A002",
        "B002",
        "A001",
        "B001",
        "C001",
        None,
    ]
    called = [e for e in engine.drain() if e.type is EventType.TICKET_CALLED]
    assert called[0].data == {
        "id": PREFIX + "A002",
        "number": "A002",
        "service": "social",
        "window": 1,
        "staff": "s1",
        "how": "next",
        "priority": True,
        "promoted": False,
    }


def test_dedicated_and_reply_windows_call_only_their_services(clock: Clock) -> None:
    engine = new_engine()
    engine.open_window(clock(), 3, "s3")
    engine.open_window(clock(), 1, "s1")
    engine.issue(clock.advance(seconds=1), "social")
    c1 = engine.issue(clock.advance(seconds=1), "housing")
    assert engine.call_next(clock(), 3, "s3") is c1
    assert engine.call_next(clock(), 3, "s3") is None
    engine.open_window(clock(), 4, "s4")
    assert engine.call_next(clock(), 4, "s4") is None
    assert engine.window_services(3) == {"housing": 1}
    assert engine.window_services(2) == {"social": 1, "medical": 3, "housing": 1}
    assert engine.window_services(4) == {"pickup": 1}


def test_ratio_policy(clock: Clock) -> None:
    engine = new_engine(make_config(policy={"mode": "ratio", "ratio": 2}))
    engine.open_window(clock(), 1, "s1")
    engine.issue(clock.advance(seconds=10), "social", priority=True)  # A001
    engine.issue(clock.advance(seconds=10), "medical", priority=True)  # B001
    for _ in range(4):
        engine.issue(clock.advance(seconds=10), "social")  # A002..A005
    engine.issue(clock.advance(seconds=10), "medical")  # B002
    calls = []
    while (t := engine.call_next(clock(), 1, "s1")) is not None:
        calls.append(t.number)
    assert calls == ["A002", "A003", "A001", "A004", "A005", "B001", "B002"]


def test_ratio_policy_calls_priority_when_no_normal_waits(clock: Clock) -> None:
    engine = new_engine(make_config(policy={"mode": "ratio", "ratio": 3}))
    engine.open_window(clock(), 1, "s1")
    p = engine.issue(clock.advance(seconds=10), "social", priority=True)
    assert engine.call_next(clock(), 1, "s1") is p


def test_fifo_policy_ignores_lane_and_weight(clock: Clock) -> None:
    engine = new_engine(make_config(policy={"mode": "fifo"}))
    engine.open_window(clock(), 2, "s2")
    t1 = engine.issue(clock.advance(seconds=10), "social")
    t2 = engine.issue(clock.advance(seconds=10), "medical")
    t3 = engine.issue(clock.advance(seconds=10), "social", priority=True)
    t4 = engine.issue(clock.advance(seconds=10), "medical", priority=True)
    assert [engine.call_next(clock(), 2, "s2") for _ in range(5)] == [t1, t2, t3, t4, None]


def test_overdue_ticket_is_promoted(clock: Clock) -> None:
    engine = new_engine()
    engine.open_window(clock(), 1, "s1")
    c1 = engine.issue(clock(), "housing")  # target wait 30 min
    p = engine.issue(clock.advance(minutes=10), "social", priority=True)
    p2 = engine.issue(clock(), "social", priority=True)
    # At exactly 30 min waited, not yet overdue: the priority lane goes first.
    assert engine.call_next(clock.advance(minutes=20), 1, "s1") is p
    engine.drain()
    assert engine.call_next(clock.advance(seconds=1), 1, "s1") is c1
    called = engine.drain()[-1]
    assert called.type is EventType.TICKET_CALLED
    assert called.data["promoted"] is True
    assert engine.call_next(clock(), 1, "s1") is p2


def test_promotion_can_be_switched_off(clock: Clock) -> None:
    engine = new_engine(make_config(policy={"mode": "strict", "promote_overdue": False}))
    engine.open_window(clock(), 1, "s1")
    engine.issue(clock(), "housing")
    p = engine.issue(clock.advance(minutes=40), "social", priority=True)
    assert engine.call_next(clock(), 1, "s1") is p


def test_transfer_to_window_is_served_first_there_only(clock: Clock) -> None:
    engine = new_engine()
    engine.open_window(clock(), 1, "s1")
    engine.open_window(clock(), 2, "s2")
    a1, a2, a3 = issue_many(engine, clock, "social", 3)
    assert engine.call_number(clock(), 1, "s1", "A003") is a3
    engine.start(clock(), 1, "s1")
    copy3 = engine.transfer(clock.advance(minutes=1), 1, "s1", window_number=2)
    assert copy3.id == a3.id + ".1"
    assert copy3.pinned_window == 2
    # Window 1 does not see it; window 2 calls it before older tickets.
    assert engine.call_next(clock(), 1, "s1") is a1
    assert engine.call_next(clock(), 2, "s2") is copy3
    assert engine.call_next(clock(), 2, "s2") is a2


def test_transfers_to_a_window_respect_first_and_last(clock: Clock) -> None:
    engine = new_engine()
    engine.open_window(clock(), 1, "s1")
    engine.open_window(clock(), 2, "s2")
    a1, a2, a3 = issue_many(engine, clock, "social", 3)
    engine.call_next(clock(), 1, "s1")
    x1 = engine.transfer(clock.advance(seconds=1), 1, "s1", window_number=2)
    engine.call_next(clock(), 1, "s1")
    x2 = engine.transfer(clock.advance(seconds=1), 1, "s1", window_number=2)
    engine.call_next(clock(), 1, "s1")
    x3 = engine.transfer(
        clock.advance(seconds=1), 1, "s1", window_number=2, position=Position.FIRST
    )
    assert [engine.ahead(t) for t in (x3, x1, x2)] == [0, 1, 2]
    assert [engine.call_next(clock(), 2, "s2") for _ in range(4)] == [x3, x1, x2, None]
    assert (x1.number, x2.number, x3.number) == (a1.number, a2.number, a3.number)


def test_call_number(eng: Engine, clock: Clock) -> None:
    eng.open_window(clock(), 3, "s3")
    eng.open_window(clock(), 2, "s2")
    a1, a2 = issue_many(eng, clock, "social", 2)
    c1 = eng.issue(clock(), "housing")
    eng.drain()
    assert eng.call_number(clock(), 1, "s1", " a002 ") is a2
    called = eng.drain()
    assert called[0].data["how"] == "call"
    assert a2.state is TicketState.CALLED
    assert a2.window == 1
    refused(eng, Conflict, lambda: eng.call_number(clock(), 3, "s3", "A001"), "not_served_here")
    refused(eng, NotFound, lambda: eng.call_number(clock(), 3, "s3", "A099"), "no_ticket")
    refused(eng, Conflict, lambda: eng.call_number(clock(), 2, "s2", "A002"), "invalid_transition")
    assert eng.call_number(clock(), 3, "s3", "C001") is c1
    # A ticket transferred to window 2 cannot be called at window 1.
    eng.start(clock(), 3, "s3")
    eng.transfer(clock(), 3, "s3", window_number=2)
    refused(eng, Conflict, lambda: eng.call_number(clock(), 1, "s1", "C001"), "pinned_elsewhere")
    assert eng.call_number(clock(), 2, "s2", "C001").id == c1.id + ".1"
    # Calling a number at a window that is serving someone finishes that one first.
    eng.drain()
    assert eng.call_number(clock(), 1, "s1", "A001") is a1
    assert types(eng.drain()) == ["ticket.finished", "ticket.called"]
    assert a2.state is TicketState.DONE


def test_recall(eng: Engine, clock: Clock) -> None:
    a1 = eng.issue(clock(), "social")
    refused(eng, Conflict, lambda: eng.recall(clock(), 1, "s1"), "no_current_ticket")
    eng.call_next(clock(), 1, "s1")
    eng.drain()
    assert eng.recall(clock.advance(seconds=30), 1, "s1") is a1
    (event,) = eng.drain()
    assert event.type is EventType.TICKET_RECALLED
    assert event.data == {"id": a1.id, "number": "A001", "window": 1, "staff": "s1"}
    assert a1.recalls == 1
    assert eng.state()["recent_calls"][0] == {
        "number": "A001",
        "window": 1,
        "at": clock().isoformat(),
    }
    assert len(eng.state()["recent_calls"]) == 2
    eng.start(clock(), 1, "s1")
    refused(eng, Conflict, lambda: eng.recall(clock(), 1, "s1"), "invalid_transition")


def test_start(eng: Engine, clock: Clock) -> None:
    a1 = eng.issue(clock(), "social")
    refused(eng, Conflict, lambda: eng.start(clock(), 1, "s1"), "no_current_ticket")
    assert eng.window_state(1) is WindowState.IDLE
    eng.call_next(clock(), 1, "s1")
    assert eng.window_state(1) is WindowState.CALLING
    assert eng.start(clock.advance(seconds=20), 1, "s1") is a1
    assert a1.state is TicketState.SERVING
    assert a1.started_at == clock()
    assert eng.window_state(1) is WindowState.SERVING
    assert eng.state()["windows"][0]["state"] == "serving"
    refused(eng, Conflict, lambda: eng.start(clock(), 1, "s1"), "invalid_transition")


def test_no_show_and_reactivate(eng: Engine, clock: Clock) -> None:
    a1, a2, a3 = issue_many(eng, clock, "social", 3)
    eng.call_next(clock(), 1, "s1")
    assert eng.no_show(clock.advance(seconds=60), 1, "s1") is a1
    assert a1.state is TicketState.NO_SHOW
    assert eng.windows[1].current is None
    assert eng.window_state(1) is WindowState.IDLE
    assert eng.state()["waiting"]["social"] == 2
    refused(eng, Conflict, lambda: eng.no_show(clock(), 1, "s1"), "no_current_ticket")
    refused(eng, Conflict, lambda: eng.reactivate(clock(), a2.id), "invalid_transition")
    refused(eng, NotFound, lambda: eng.reactivate(clock(), "nope"), "no_ticket")
    eng.drain()
    assert eng.reactivate(clock(), a1.id, Position.FIRST) is a1
    assert eng.drain()[0].data == {"id": a1.id, "number": "A001", "position": "first"}
    assert a1.state is TicketState.WAITING
    assert eng.ahead(a1) == 0
    assert eng.call_next(clock(), 1, "s1") is a1
    eng.no_show(clock(), 1, "s1")
    eng.reactivate(clock.advance(seconds=1), a1.id)  # last by default
    assert [eng.ahead(t) for t in (a2, a3, a1)] == [0, 1, 2]
    assert [eng.call_next(clock(), 1, "s1") for _ in range(3)] == [a2, a3, a1]
    eng.start(clock(), 1, "s1")
    refused(eng, Conflict, lambda: eng.no_show(clock(), 1, "s1"), "invalid_transition")


def test_hold_and_callback(eng: Engine, clock: Clock) -> None:
    eng.open_window(clock(), 2, "s2")
    a1, a2, a3 = issue_many(eng, clock, "social", 3)
    eng.call_next(clock(), 1, "s1")
    eng.start(clock(), 1, "s1")
    eng.drain()
    assert eng.hold(clock(), 1, "s1") is a1
    assert eng.drain()[0].data == {"id": a1.id, "number": "A001", "window": 1, "staff": "s1"}
    assert a1.state is TicketState.HELD
    assert eng.windows[1].held == [a1.id]
    assert eng.state()["windows"][0]["held"] == ["A001"]
    assert eng.window_state(1) is WindowState.IDLE
    # Held tickets are not in any line and stay held while others are called.
    assert eng.state()["waiting"]["social"] == 2
    assert eng.call_next(clock(), 1, "s1") is a2
    assert a1.state is TicketState.HELD
    refused(eng, Conflict, lambda: eng.callback(clock(), 1, "s1", "A003"), "not_held_here")
    refused(eng, Conflict, lambda: eng.callback(clock(), 2, "s2", "A001"), "not_held_here")
    refused(eng, NotFound, lambda: eng.callback(clock(), 1, "s1", "A042"), "no_ticket")
    eng.drain()
    assert eng.callback(clock(), 1, "s1", "a001") is a1
    events = eng.drain()
    assert types(events) == ["ticket.finished", "ticket.called"]
    assert events[0].data["id"] == a2.id
    assert events[0].data["outcome"] == "done"
    assert events[1].data["how"] == "callback"
    assert a1.state is TicketState.CALLED
    assert eng.windows[1].held == []
    # A called (not started) ticket can be held too, and called back by id.
    eng.hold(clock(), 1, "s1")
    assert eng.callback(clock(), 1, "s1", a1.id) is a1
    assert a3.state is TicketState.WAITING
    refused(eng, Conflict, lambda: eng.hold(clock(), 2, "s2"), "no_current_ticket")


def test_transfer_to_service(eng: Engine, clock: Clock) -> None:
    eng.open_window(clock(), 2, "s2")
    a1 = eng.issue(clock(), "social")
    b1 = eng.issue(clock.advance(seconds=5), "medical")
    eng.call_next(clock.advance(minutes=1), 1, "s1")
    eng.start(clock(), 1, "s1")
    eng.drain()
    moved = eng.transfer(clock.advance(minutes=2), 1, "s1", service_id="medical")
    (event,) = eng.drain()
    assert event.type is EventType.TICKET_TRANSFERRED
    assert event.data == {
        "id": a1.id,
        "number": "A001",
        "new_id": a1.id + ".1",
        "from_window": 1,
        "service": "medical",
        "window": None,
        "position": "last",
        "staff": "s1",
    }
    assert a1.state is TicketState.TRANSFERRED
    assert a1.transferred_to == moved.id
    assert a1.finished_at == clock()
    assert moved.id == PREFIX + "A001.1"
    assert (moved.number, moved.service, moved.origin) == ("A001", "medical", a1.id)
    assert moved.issued_at == a1.issued_at
    assert moved.queued_at == clock()
    assert moved.track_token == a1.track_token
    assert eng.ticket_by_token(a1.track_token) is moved
    assert moved.state is TicketState.WAITING
    assert eng.windows[1].current is None
    assert eng.state()["waiting"] == {"social": 0, "medical": 2, "housing": 0, "pickup": 0}
    # Last in line: behind b1.
    assert eng.ahead(moved) == 1
    assert eng.call_next(clock(), 2, "s2") is b1
    assert eng.call_next(clock(), 2, "s2") is moved
    eng.start(clock(), 2, "s2")
    # A second transfer gets the next suffix, keeping number and issue time.
    again = eng.transfer(clock(), 2, "s2", service_id="housing", position=Position.FIRST)
    assert again.id == PREFIX + "A001.2"
    assert again.origin == moved.id
    assert again.issued_at == a1.issued_at
    assert eng.by_number["A001"] == again.id


def test_transfer_first_in_line(eng: Engine, clock: Clock) -> None:
    b1 = eng.issue(clock(), "medical")
    b2 = eng.issue(clock.advance(seconds=1), "medical")
    a1 = eng.issue(clock.advance(seconds=1), "social")
    eng.call_number(clock(), 1, "s1", "A001")
    moved = eng.transfer(clock(), 1, "s1", service_id="medical", position=Position.FIRST)
    assert moved.front is True
    assert [eng.ahead(t) for t in (moved, b1, b2)] == [0, 1, 2]
    assert [eng.call_next(clock(), 1, "s1") for _ in range(3)] == [moved, b1, b2]
    assert a1.state is TicketState.TRANSFERRED


def test_transfer_refusals(eng: Engine, clock: Clock) -> None:
    eng.issue(clock(), "social")
    refused(
        eng,
        Conflict,
        lambda: eng.transfer(clock(), 1, "s1", service_id="medical"),
        "no_current_ticket",
    )
    eng.call_next(clock(), 1, "s1")
    refused(eng, BadRequest, lambda: eng.transfer(clock(), 1, "s1"))
    refused(
        eng, BadRequest, lambda: eng.transfer(clock(), 1, "s1", service_id="x", window_number=2)
    )
    refused(
        eng, Conflict, lambda: eng.transfer(clock(), 1, "s1", service_id="pickup"), "kind_mismatch"
    )
    refused(eng, NotFound, lambda: eng.transfer(clock(), 1, "s1", service_id="x"), "no_service")
    refused(eng, NotFound, lambda: eng.transfer(clock(), 1, "s1", window_number=9), "no_window")
    refused(eng, Conflict, lambda: eng.transfer(clock(), 1, "s1", window_number=1), "same_window")
    refused(
        eng,
        Conflict,
        lambda: eng.transfer(clock(), 1, "s1", window_number=3),
        "not_served_here",
    )
    refused(
        eng,
        Conflict,
        lambda: eng.transfer(clock(), 1, "s1", window_number=4),
        "not_served_here",
    )


def test_pause_and_resume(eng: Engine, clock: Clock) -> None:
    eng.open_window(clock(), 2, "s2")
    a1 = eng.issue(clock(), "social")
    eng.drain()
    assert eng.estimated_wait_s("social", 0) == 75  # 0.5 * 300 s / 2 windows
    eng.pause(clock(), 1, "s1", "午休")
    assert eng.drain()[0].data == {"window": 1, "reason": "午休"}
    assert eng.window_state(1) is WindowState.PAUSED
    assert eng.state()["windows"][0]["pause_reason"] == "午休"
    assert eng.estimated_wait_s("social", 0) == 150  # paused windows do not count
    refused(eng, Conflict, lambda: eng.call_next(clock(), 1, "s1"), "paused")
    refused(eng, Conflict, lambda: eng.call_number(clock(), 1, "s1", "A001"), "paused")
    refused(eng, Conflict, lambda: eng.pause(clock(), 1, "s1"), "paused")
    eng.resume(clock(), 1, "s1")
    assert eng.window_state(1) is WindowState.IDLE
    assert eng.state()["windows"][0]["pause_reason"] is None
    refused(eng, Conflict, lambda: eng.resume(clock(), 1, "s1"), "not_paused")
    assert eng.call_next(clock(), 1, "s1") is a1
    refused(eng, Conflict, lambda: eng.pause(clock(), 1, "s1"), "window_busy")
    # A paused window with held tickets cannot call them back until it resumes.
    eng.hold(clock(), 1, "s1")
    eng.pause(clock(), 1, "s1")
    refused(eng, Conflict, lambda: eng.callback(clock(), 1, "s1", "A001"), "paused")


def test_call_next_finishes_current_first_and_keeps_held(eng: Engine, clock: Clock) -> None:
    a1, a2, a3 = issue_many(eng, clock, "social", 3)
    eng.call_next(clock(), 1, "s1")
    eng.hold(clock(), 1, "s1")
    eng.call_next(clock(), 1, "s1")
    eng.start(clock(), 1, "s1")
    eng.drain()
    assert eng.call_next(clock.advance(minutes=2), 1, "s1") is a3
    events = eng.drain()
    assert types(events) == ["ticket.finished", "ticket.called"]
    assert events[0].data == {
        "id": a2.id,
        "number": "A002",
        "service": "social",
        "window": 1,
        "staff": "s1",
        "outcome": "done",
        "case": None,
    }
    assert a2.state is TicketState.DONE
    assert a1.state is TicketState.HELD
    assert eng.windows[1].held == [a1.id]
    # Nobody waits: the current ticket is still finished, None is returned.
    assert eng.call_next(clock(), 1, "s1") is None
    assert a3.state is TicketState.DONE
    assert a1.state is TicketState.HELD
    assert eng.windows[1].last_finished == a3.id


def test_finish_done_updates_handle_time(eng: Engine, clock: Clock) -> None:
    a1 = eng.issue(clock(), "social")
    refused(eng, Conflict, lambda: eng.finish(clock(), 1, "s1", Outcome.DONE), "no_current_ticket")
    eng.call_next(clock(), 1, "s1")
    eng.start(clock.advance(seconds=30), 1, "s1")
    refused(
        eng,
        BadRequest,
        lambda: eng.finish(clock(), 1, "s1", Outcome.DONE, promised_date=DAY),
    )
    assert eng.finish(clock.advance(seconds=60), 1, "s1", Outcome.DONE) is a1
    assert a1.state is TicketState.DONE
    assert a1.finished_at == clock()
    assert eng.handle_s["social"] == pytest.approx(300 + 0.2 * (60 - 300))
    assert eng.window_state(1) is WindowState.IDLE


def test_finish_back_office_opens_a_case(eng: Engine, clock: Clock) -> None:
    a1 = eng.issue(clock(), "social")
    eng.call_next(clock(), 1, "s1")
    eng.start(clock(), 1, "s1")
    eng.drain()
    assert eng.finish(clock(), 1, "s1", Outcome.BACK_OFFICE) is a1
    finished, opened = eng.drain()
    assert finished.data["outcome"] == "back_office"
    assert finished.data["case"] == "C20261126-0001"
    assert opened.type is EventType.CASE_OPENED
    # Thu + 3 working days = Tue (Fri, Mon, Tue).
    assert opened.data == {
        "case": "C20261126-0001",
        "ticket": a1.id,
        "number": "A001",
        "service": "social",
        "staff": "s1",
        "promised_date": "2026-12-01",
        "pickup_code": "000001",
    }
    assert a1.state is TicketState.BACK_OFFICE
    assert a1.case_id == "C20261126-0001"
    case = eng.cases["C20261126-0001"]
    assert case.state is CaseState.OPEN
    assert case.promised_date == dt.date(2026, 12, 1)
    assert case.staff == "s1"
    # An explicit promised date is kept; a past one is refused.
    eng.issue(clock(), "social")
    eng.call_next(clock(), 1, "s1")
    refused(
        eng,
        BadRequest,
        lambda: eng.finish(
            clock(), 1, "s1", Outcome.BACK_OFFICE, promised_date=DAY - dt.timedelta(days=1)
        ),
    )
    eng.finish(clock(), 1, "s1", Outcome.BACK_OFFICE, promised_date=dt.date(2026, 12, 24))
    assert eng.cases["C20261126-0002"].promised_date == dt.date(2026, 12, 24)
    assert eng.cases["C20261126-0002"].pickup_code == "000002"


@pytest.mark.parametrize(
    ("overrides", "promised"),
    [
        ([], dt.date(2026, 12, 1)),
        ([{"date": "2026-11-27", "day_type": "closed"}], dt.date(2026, 12, 2)),
        (
            [
                {"date": "2026-11-27", "day_type": "closed"},
                {"date": "2026-11-28", "day_type": "weekday"},
            ],
            dt.date(2026, 12, 1),
        ),
        ([{"date": "2026-11-30", "day_type": "weekend_duty"}], dt.date(2026, 12, 2)),
    ],
)
def test_promised_date_counts_working_days(
    clock: Clock, overrides: list[dict[str, str]], promised: dt.date
) -> None:
    raw = small_center()
    raw["calendar"]["overrides"] = overrides
    engine = new_engine(parse_config(raw))
    engine.open_window(clock(), 1, "s1")
    engine.issue(clock(), "social")
    engine.call_next(clock(), 1, "s1")
    engine.finish(clock(), 1, "s1", Outcome.BACK_OFFICE)
    (case,) = engine.cases.values()
    assert case.promised_date == promised


def test_case_ready_pickup_and_collection(eng: Engine, clock: Clock) -> None:
    eng.open_window(clock(), 4, "s4")
    eng.issue(clock(), "social")
    eng.call_next(clock(), 1, "s1")
    eng.finish(clock(), 1, "s1", Outcome.BACK_OFFICE)
    (case,) = eng.cases.values()
    code = case.pickup_code
    refused(eng, Conflict, lambda: eng.issue(clock(), "pickup", case_code=code), "case_not_ready")
    refused(eng, NotFound, lambda: eng.case_ready(clock(), "C0", "bo1"), "no_case")
    eng.drain()
    assert eng.case_ready(clock.advance(hours=2), case.id, "bo1") is case
    assert eng.drain()[0].data == {
        "case": case.id,
        "service": "social",  # reports count cases made ready per service
        "promised_date": case.promised_date.isoformat(),
        "staff": "bo1",
    }
    assert case.state is CaseState.READY
    assert case.ready_at == clock()
    refused(eng, Conflict, lambda: eng.case_ready(clock(), case.id, "bo1"), "case_state")
    pickup = eng.issue(clock(), "pickup", case_code=f" {code} ")
    assert pickup.number == "Q001"
    assert pickup.case_id == case.id
    assert case.pickup_ticket == pickup.id
    refused(eng, Conflict, lambda: eng.issue(clock(), "pickup", case_code=code), "case_state")
    # Pickup tickets are called only at the reply window and cannot go to the back office.
    assert eng.call_next(clock(), 1, "s1") is None
    assert eng.call_next(clock(), 4, "s4") is pickup
    refused(
        eng,
        Conflict,
        lambda: eng.finish(clock(), 4, "s4", Outcome.BACK_OFFICE),
        "kind_mismatch",
    )
    refused(
        eng, Conflict, lambda: eng.transfer(clock(), 4, "s4", service_id="social"), "kind_mismatch"
    )
    eng.drain()
    eng.finish(clock(), 4, "s4", Outcome.DONE)
    finished, picked = eng.drain()
    assert finished.type is EventType.TICKET_FINISHED
    assert picked.type is EventType.CASE_PICKED_UP
    assert picked.data == {"case": case.id, "ticket": pickup.id, "window": 4}
    assert eng.cases[case.id].state is CaseState.PICKED_UP
    refused(eng, Conflict, lambda: eng.issue(clock(), "pickup", case_code=code), "case_state")
    # A month later the collected case is only in the log.
    clock.advance(days=COLLECTED_CASE_DAYS + 1)
    eng.open_window(clock(), 4, "s4")
    assert case.id not in eng.cases
    refused(eng, NotFound, lambda: eng.issue(clock(), "pickup", case_code=code), "no_case")


def test_pickup_ticket_can_be_taken_again_after_a_cancelled_one(eng: Engine, clock: Clock) -> None:
    eng.open_window(clock(), 4, "s4")
    eng.issue(clock(), "social")
    eng.call_next(clock(), 1, "s1")
    eng.finish(clock(), 1, "s1", Outcome.BACK_OFFICE)
    (case,) = eng.cases.values()
    eng.case_ready(clock(), case.id, "bo")
    first = eng.issue(clock(), "pickup", case_code=case.pickup_code)
    eng.cancel(clock(), first.id)
    second = eng.issue(clock(), "pickup", case_code=case.pickup_code)
    assert second.number == "Q002"
    assert case.pickup_ticket == second.id


def test_a_new_case_never_gets_the_code_of_a_remembered_collected_one(clock: Clock) -> None:
    codes = iter(["111111", "111111", "222222"])  # the generator repeats itself once
    eng = Engine(make_config(), code_factory=lambda: next(codes))
    eng.open_window(clock(), 1, "s1")
    eng.open_window(clock(), 4, "s4")
    eng.issue(clock(), "social")
    eng.call_next(clock(), 1, "s1")
    eng.finish(clock(), 1, "s1", Outcome.BACK_OFFICE)
    (first,) = eng.cases.values()
    eng.case_ready(clock(), first.id, "bo")
    eng.issue(clock(), "pickup", case_code="111111")
    eng.call_next(clock(), 4, "s4")
    eng.finish(clock(), 4, "s4", Outcome.DONE)
    assert first.state is CaseState.PICKED_UP  # collected, still remembered
    eng.issue(clock(), "social")
    eng.call_next(clock(), 1, "s1")
    eng.finish(clock(), 1, "s1", Outcome.BACK_OFFICE)
    second = next(c for c in eng.cases.values() if c.id != first.id)
    assert second.pickup_code == "222222"
    # Its resident is served, not told the case was already collected.
    eng.case_ready(clock(), second.id, "bo")
    assert eng.issue(clock(), "pickup", case_code="222222").case_id == second.id


def test_rating(eng: Engine, clock: Clock) -> None:
    eng.open_window(clock(), 2, "s2")
    a1 = eng.issue(clock(), "social")
    refused(eng, Conflict, lambda: eng.rate(clock(), 1, None, 5), "nothing_to_rate")
    eng.call_next(clock(), 1, "s1")
    refused(eng, Conflict, lambda: eng.rate(clock(), 1, None, 5), "nothing_to_rate")
    eng.finish(clock(), 1, "s1", Outcome.DONE)
    refused(eng, BadRequest, lambda: eng.rate(clock(), 1, None, 0), "bad_score")
    refused(eng, BadRequest, lambda: eng.rate(clock(), 1, "s1", 6), "bad_score")
    refused(eng, Forbidden, lambda: eng.rate(clock(), 1, "s2", 4), "not_your_window")
    refused(eng, NotFound, lambda: eng.rate(clock(), 9, None, 4), "no_window")
    eng.drain()
    assert eng.rate(clock(), 1, None, 4) is a1
    assert eng.drain()[0].data == {
        "id": a1.id,
        "number": "A001",
        "window": 1,
        "staff": "s1",
        "score": 4,
    }
    assert a1.rating == 4
    refused(eng, Conflict, lambda: eng.rate(clock(), 1, "s1", 5), "nothing_to_rate")
    # The clerk's panel (with staff) and each score of 1..5 work for later tickets.
    for score in (1, 5):
        ticket = eng.issue(clock(), "social")
        eng.call_next(clock(), 1, "s1")
        eng.finish(clock(), 1, "s1", Outcome.DONE)
        assert eng.rate(clock(), 1, "s1", score).rating == score
        assert ticket.rating == score


def test_cancel(eng: Engine, clock: Clock) -> None:
    a1, a2 = issue_many(eng, clock, "social", 2)
    eng.drain()
    assert eng.cancel(clock(), a2.id) is a2
    assert eng.drain()[0].data == {"id": a2.id, "number": "A002"}
    assert a2.state is TicketState.CANCELLED
    assert eng.waiting_count("social") == 1
    refused(eng, Conflict, lambda: eng.cancel(clock(), a2.id), "invalid_transition")
    refused(eng, NotFound, lambda: eng.cancel(clock(), "nope"), "no_ticket")
    eng.call_next(clock(), 1, "s1")
    refused(eng, Conflict, lambda: eng.cancel(clock(), a1.id), "invalid_transition")
    assert eng.call_next(clock(), 1, "s1") is None


def test_close_window_requeues_held_tickets_at_the_front(eng: Engine, clock: Clock) -> None:
    a1, a2, a3 = issue_many(eng, clock, "social", 3)
    eng.call_next(clock(), 1, "s1")
    eng.hold(clock(), 1, "s1")
    eng.call_next(clock(), 1, "s1")
    refused(eng, Conflict, lambda: eng.close_window(clock(), 1, "s1"), "window_busy")
    eng.hold(clock(), 1, "s1")
    eng.drain()
    eng.close_window(clock.advance(seconds=5), 1, "s1")
    (event,) = eng.drain()
    assert event.type is EventType.WINDOW_CLOSED
    assert event.data == {"window": 1, "staff": "s1", "requeued": [a1.id, a2.id]}
    assert eng.window_state(1) is WindowState.CLOSED
    assert eng.windows[1].held == []
    assert a1.state is TicketState.WAITING
    assert a1.window is None
    assert a1.front
    assert eng.waiting_count("social") == 3
    refused(eng, Conflict, lambda: eng.close_window(clock(), 1, "s1"), "window_closed")
    eng.open_window(clock(), 2, "s2")
    assert [eng.call_next(clock(), 2, "s2") for _ in range(4)] == [a1, a2, a3, None]


def test_close_paused_window(eng: Engine, clock: Clock) -> None:
    eng.pause(clock(), 1, "s1")
    eng.close_window(clock(), 1, "s1")
    eng.open_window(clock(), 1, "s9")
    assert eng.window_state(1) is WindowState.IDLE


def test_staff_and_windows(eng: Engine, clock: Clock) -> None:
    # Same staff again at the same window: idempotent, nothing emitted.
    eng.open_window(clock(), 1, "s1")
    assert eng.drain() == []
    refused(eng, Forbidden, lambda: eng.open_window(clock(), 1, "s2"), "window_taken")
    refused(eng, Conflict, lambda: eng.open_window(clock(), 2, "s1"), "staff_busy")
    refused(eng, NotFound, lambda: eng.open_window(clock(), 9, "s9"), "no_window")
    refused(eng, Forbidden, lambda: eng.call_next(clock(), 1, "s2"), "not_your_window")
    refused(eng, Forbidden, lambda: eng.close_window(clock(), 1, "s2"), "not_your_window")
    refused(eng, Conflict, lambda: eng.call_next(clock(), 2, "s2"), "window_closed")
    refused(eng, NotFound, lambda: eng.call_next(clock(), 9, "s2"), "no_window")
    eng.open_window(clock(), 2, "s2")
    assert eng.drain()[0].data == {"window": 2, "staff": "s2"}
    # After closing, the same staff may move to another window.
    eng.close_window(clock(), 1, "s1")
    eng.close_window(clock(), 2, "s2")
    eng.open_window(clock(), 2, "s1")
    assert eng.windows[2].staff == "s1"
    assert eng.state()["windows"][1]["staff"] == "s1"


def test_inquiry_log(eng: Engine, clock: Clock) -> None:
    event = eng.log_inquiry(
        clock(), "desk1", "  医保转移  ", service_id="medical", referred_to="window 2", note="n"
    )
    assert event.type is EventType.INQUIRY_LOGGED
    assert event.data == {
        "staff": "desk1",
        "topic": "医保转移",
        "service": "medical",
        "referred_to": "window 2",
        "note": "n",
    }
    assert eng.drain() == [event]
    long = eng.log_inquiry(clock(), "desk1", "x" * 300, note="y" * 2000)
    assert len(long.data["topic"]) == 200
    assert len(long.data["note"]) == 1000
    assert long.data["service"] is None
    refused(eng, BadRequest, lambda: eng.log_inquiry(clock(), "desk1", "   "))
    refused(
        eng, NotFound, lambda: eng.log_inquiry(clock(), "desk1", "t", service_id="x"), "no_service"
    )


def test_device_state_emits_only_on_change(eng: Engine, clock: Clock) -> None:
    eng.device_state(clock(), "counter_display:1", "online")
    eng.device_state(clock.advance(seconds=1), "counter_display:1", "online")
    assert len(eng.drain()) == 1
    eng.device_state(clock.advance(seconds=1), "counter_display:1", "online", "slow")
    eng.device_state(clock.advance(seconds=1), "counter_display:1", "offline", "slow")
    eng.device_state(clock.advance(seconds=1), "keypad:1", "offline")
    events = eng.drain()
    assert [e.data for e in events] == [
        {"device": "counter_display:1", "state": "online", "detail": "slow"},
        {"device": "counter_display:1", "state": "offline", "detail": "slow"},
        {"device": "keypad:1", "state": "offline", "detail": ""},
    ]
    assert eng.state()["devices"]["counter_display:1"] == {
        "state": "offline",
        "detail": "slow",
        "since": events[1].at.isoformat(),
    }


# ----------------------------------------------------------------------------- estimates


def test_ahead_and_wait_strict(eng: Engine, clock: Clock) -> None:
    a1, a2, a3 = issue_many(eng, clock, "social", 3)
    p1 = eng.issue(clock.advance(seconds=10), "social", priority=True)
    assert [eng.ahead(t) for t in (p1, a1, a2, a3)] == [0, 1, 2, 3]
    assert [eng.estimated_wait_s("social", eng.ahead(t)) for t in (p1, a3)] == [150, 1050]
    eng.open_window(clock(), 2, "s2")
    assert eng.estimated_wait_s("social", 3) == 525
    assert eng.estimated_wait_s("housing", 0) == 75  # windows 1 and 2 open, 3 closed
    eng.call_next(clock(), 1, "s1")
    assert eng.ahead(p1) == 0  # not waiting any more
    assert [eng.ahead(t) for t in (a1, a2, a3)] == [0, 1, 2]


def test_ahead_ratio(clock: Clock) -> None:
    engine = new_engine(make_config(policy={"mode": "ratio", "ratio": 2}))
    engine.open_window(clock(), 1, "s1")
    n1, n2, n3, n4 = issue_many(engine, clock, "social", 4)
    p1 = engine.issue(clock.advance(seconds=10), "social", priority=True)
    # Calls will be n1 n2 p1 n3 n4.
    assert [engine.ahead(t) for t in (n1, n2, p1, n3, n4)] == [0, 1, 2, 3, 4]
    order = [engine.call_next(clock(), 1, "s1") for _ in range(5)]
    assert order == [n1, n2, p1, n3, n4]


def test_ahead_fifo(clock: Clock) -> None:
    engine = new_engine(make_config(policy={"mode": "fifo"}))
    engine.open_window(clock(), 1, "s1")
    t1 = engine.issue(clock.advance(seconds=10), "social")
    t2 = engine.issue(clock.advance(seconds=10), "medical", priority=True)
    t3 = engine.issue(clock.advance(seconds=10), "housing")
    assert [engine.ahead(t) for t in (t1, t2, t3)] == [0, 1, 2]
    assert engine.estimated_wait_s("medical", engine.ahead(t2)) == 450


@pytest.mark.parametrize("mode", ["strict", "ratio", "fifo"])
def test_ahead_for_new_is_the_new_tickets_ahead(clock: Clock, mode: str) -> None:
    engine = new_engine(make_config(policy={"mode": mode, "ratio": 2}))
    engine.open_window(clock(), 1, "s1")
    engine.open_window(clock(), 2, "s2")
    plan = [
        ("social", False),
        ("medical", True),
        ("housing", False),
        ("medical", False),
        ("social", True),
        ("social", False),
        ("housing", False),
        ("medical", False),
    ]
    for service, priority in plan:
        expected = engine.ahead_for_new(service, priority)
        ticket = engine.issue(clock.advance(seconds=5), service, priority=priority)
        assert engine.ahead(ticket) == expected
    engine.call_next(clock(), 1, "s1")
    engine.hold(clock(), 1, "s1")
    engine.close_window(clock(), 1, "s1")  # a requeued ticket at the front
    assert engine.ahead_for_new("social") == engine.ahead(
        engine.issue(clock.advance(seconds=5), "social")
    )


def test_ahead_for_new_simple_values(eng: Engine, clock: Clock) -> None:
    assert eng.ahead_for_new("social") == 0
    issue_many(eng, clock, "social", 3)
    eng.issue(clock(), "social", priority=True)
    assert eng.ahead_for_new("social") == 4
    assert eng.ahead_for_new("social", priority=True) == 1
    # Medical is weighted 3 at window 2, so under strict it goes before social.
    assert eng.ahead_for_new("medical") == 1


def test_estimated_wait_learns_handle_times(eng: Engine, clock: Clock) -> None:
    assert eng.estimated_wait_s("social", 1) == 450
    eng.issue(clock(), "social")
    eng.call_next(clock(), 1, "s1")
    eng.finish(clock.advance(seconds=100), 1, "s1", Outcome.DONE)  # from call: 100 s
    assert eng.handle_s["social"] == pytest.approx(260.0)
    assert eng.estimated_wait_s("social", 1) == 390


# ----------------------------------------------------------------------------- replay and snapshots


def busy_day(engine: Engine, clock: Clock) -> None:
    """Drive an engine through most commands, across a day boundary."""
    e = engine
    e.open_window(clock(), 1, "s1")
    e.open_window(clock(), 2, "s2")
    e.open_window(clock(), 3, "s3")
    e.open_window(clock(), 4, "s4")
    e.device_state(clock(), "keypad:1", "online")
    for i in range(12):
        e.issue(clock.advance(seconds=20), ["social", "medical", "housing"][i % 3], priority=i == 4)
    e.call_next(clock.advance(seconds=5), 1, "s1")
    e.start(clock.advance(seconds=5), 1, "s1")
    e.finish(clock.advance(minutes=4), 1, "s1", Outcome.BACK_OFFICE)
    e.rate(clock(), 1, None, 5)
    case = next(iter(e.cases.values()))
    e.call_next(clock(), 2, "s2")
    e.hold(clock(), 2, "s2")
    e.call_next(clock(), 2, "s2")
    e.recall(clock.advance(seconds=30), 2, "s2")
    e.no_show(clock.advance(seconds=30), 2, "s2")
    e.call_next(clock(), 2, "s2")
    e.start(clock(), 2, "s2")
    e.transfer(clock(), 2, "s2", window_number=1, position=Position.FIRST)
    e.call_next(clock(), 3, "s3")
    e.start(clock(), 3, "s3")
    e.transfer(clock(), 3, "s3", service_id="social")
    e.call_next(clock(), 1, "s1")
    e.hold(clock(), 1, "s1")
    e.call_next(clock(), 1, "s1")
    e.hold(clock(), 1, "s1")
    e.pause(clock(), 1, "s1", "break")
    e.log_inquiry(clock(), "desk", "问路")
    e.case_ready(clock.advance(hours=1), case.id, "bo")
    e.issue(clock(), "pickup", case_code=case.pickup_code)
    e.cancel(clock(), PREFIX + "A004")
    e.close_window(clock(), 1, "s1")
    e.call_next(clock(), 2, "s2")
    e.call_next(clock(), 4, "s4")
    e.device_state(clock(), "keypad:1", "offline", "timeout")


def test_replay_rebuilds_the_same_state(clock: Clock) -> None:
    engine = new_engine()
    busy_day(engine, clock)
    events = engine.drain()
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert engine.seq == len(events)
    replica = Engine(make_config())
    for event in events:
        replica.replay(event)
    assert replica.state() == engine.state()
    assert replica.to_snapshot() == engine.to_snapshot()
    # The replica keeps going exactly like the original, through the next day too.
    for e in (engine, replica):
        e.reactivate(clock(), next(t.id for t in e.tickets.values() if t.state == "no_show"))
        e.call_next(clock(), 2, "s2")
        e.tick(at(DAY + dt.timedelta(days=1), 7))
    assert types(engine.drain()) == types(replica.drain())
    assert replica.to_snapshot() == engine.to_snapshot()


def test_replay_through_events_wire_form(clock: Clock) -> None:
    engine = new_engine()
    busy_day(engine, clock)
    events = [Event.from_dict(json.loads(e.to_json())) for e in engine.drain()]
    replica = Engine(make_config())
    for event in events:
        replica.replay(event)
    assert replica.to_snapshot() == engine.to_snapshot()


def test_replay_refuses_a_gap(clock: Clock) -> None:
    engine = new_engine()
    busy_day(engine, clock)
    events = engine.drain()
    replica = Engine(make_config())
    replica.replay(events[0])
    with pytest.raises(ValueError, match="gap"):
        replica.replay(events[2])
    with pytest.raises(ValueError, match="gap"):
        replica.replay(events[0])
    assert replica.seq == 1


def test_snapshot_round_trips_through_json(clock: Clock) -> None:
    engine = new_engine()
    busy_day(engine, clock)
    engine.drain()
    snap = json.loads(json.dumps(engine.to_snapshot()))
    restored = new_engine()
    restored.load_snapshot(snap)
    assert restored.state() == engine.state()
    assert restored.to_snapshot() == engine.to_snapshot()
    # Lookups and the call order survive the restart.
    for ticket in engine.tickets.values():
        assert (
            restored.ticket_by_token(ticket.track_token).id
            == engine.ticket_by_token(ticket.track_token).id
        )
    for number, ticket_id in engine.by_number.items():
        assert restored.by_number[number] == ticket_id
    for e in (engine, restored):
        e.open_window(clock(), 1, "s1")
    for window, staff in ((1, "s1"), (2, "s2"), (3, "s3"), (1, "s1"), (2, "s2"), (1, "s1")):
        a = engine.call_next(clock(), window, staff)
        b = restored.call_next(clock(), window, staff)
        assert (a.id if a else None) == (b.id if b else None)
    assert restored.to_snapshot() == engine.to_snapshot()


def test_snapshot_keeps_the_call_order_of_requeued_tickets(clock: Clock) -> None:
    """Held tickets requeued in hold order, and transfers first to a window, survive a restart."""
    engine = new_engine()
    engine.open_window(clock(), 1, "s1")
    engine.open_window(clock(), 2, "s2")
    issue_many(engine, clock, "social", 4)
    engine.call_number(clock(), 1, "s1", "A002")
    engine.hold(clock(), 1, "s1")
    engine.call_number(clock(), 1, "s1", "A001")
    engine.hold(clock(), 1, "s1")
    engine.close_window(clock(), 1, "s1")
    engine.open_window(clock(), 1, "s1")
    engine.call_number(clock(), 1, "s1", "A003")
    engine.transfer(clock(), 1, "s1", window_number=2)
    engine.call_number(clock(), 1, "s1", "A004")
    engine.transfer(clock(), 1, "s1", window_number=2, position=Position.FIRST)
    restored = new_engine()
    restored.load_snapshot(json.loads(json.dumps(engine.to_snapshot())))
    live = [engine.call_next(clock(), w, f"s{w}") for w in (2, 2, 1, 1)]
    again = [restored.call_next(clock(), w, f"s{w}") for w in (2, 2, 1, 1)]
    assert [t.number if t else None for t in live] == ["A004", "A003", "A002", "A001"]
    assert [t.number if t else None for t in again] == ["A004", "A003", "A002", "A001"]
