"""A generated month at a center, run through the real engine (report tests, bench/reports.py).

Every day: the day opens at 08:00 (the engine's tick closes the day before), the back office
marks ready the cases due that day (some after their promised date), staff rotate over the
windows at 08:30, residents arrive with a morning peak, clerks call, serve (done, back
office, transfer to another service, no-show, some reactivated), recall now and then,
residents rate most services, a few cancel while waiting, staff log first inquiries, and the
windows stop calling at 16:20 and close at 16:30, leaving late arrivals to expire when the
next day opens.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from typing import Any, Final

from qcall.config import CenterConfig, parse_config
from qcall.engine import Engine
from qcall.events import Event, EventType
from qcall.model import Outcome, TicketState
from tests.common import SHANGHAI, small_center

MONTH: Final = "2026-11"
FIRST_DAY: Final = dt.date(2026, 11, 1)
SERVICES: Final = ("social", "medical", "housing")
BACK_OFFICE_STAFF: Final = "bo1"
SCORE_WEIGHTS: Final = (3, 5, 12, 30, 50)  # 1 … 5


def month_config(windows: int = 2) -> CenterConfig:
    """Three intake services with different targets; ``windows`` comprehensive windows."""
    raw = small_center()
    services = [s for s in raw["services"] if s["id"] in SERVICES]
    for service, target in zip(services, (30, 20, 15), strict=True):
        service["target_wait_min"] = target
        service["daily_cap"] = 2000
    raw["services"] = services
    raw["windows"] = [{"number": n, "type": "comprehensive"} for n in range(1, windows + 1)]
    return parse_config(raw, "<month>")


@dataclass
class Month:
    """The log of the month and, per day, the seq at which the day was closed."""

    config: CenterConfig
    events: list[Event]
    days: list[dt.date]
    closed_at: dict[dt.date, int] = field(default_factory=dict)
    staff: tuple[str, ...] = ()


@dataclass
class _Desk:
    ticket: str | None = None
    action: str = ""
    until: dt.datetime | None = None


def generate_month(
    *,
    days: int = 30,
    per_day: int = 30,
    windows: int = 2,
    staff: int = 3,
    seed: int = 11,
    busy_mondays: bool = True,
) -> Month:
    """Run ``days`` days from 2026-11-01 with ``per_day`` residents each.

    With ``busy_mondays`` Mondays bring half as many again: queues grow, waits pass their
    targets and late tickets expire.
    """
    config = month_config(windows)
    engine = Engine(config)
    rng = random.Random(seed)
    people = tuple(f"s{i}" for i in range(1, max(staff, windows) + 1))
    events: list[Event] = []
    month = Month(config, events, [], staff=(*people, BACK_OFFICE_STAFF))
    ready_on: dict[dt.date, list[str]] = {}
    for offset in range(days):
        day = FIRST_DAY + dt.timedelta(days=offset)
        month.days.append(day)
        busy = busy_mondays and day.weekday() == 0
        _run_day(engine, rng, day, offset, per_day * 3 // 2 if busy else per_day, windows, people,
                 ready_on)  # fmt: skip
        events += engine.drain()
    # The next morning closes the last day.
    engine.tick(_at(FIRST_DAY + dt.timedelta(days=days), 8, 0))
    events += engine.drain()
    current: dt.date | None = None
    for event in events:
        if event.type is EventType.DAY_OPENED:
            current = dt.date.fromisoformat(event.data["day"])
        if event.type is EventType.DAY_CLOSED and current is not None:
            month.closed_at[current] = event.seq
    return month


def _at(day: dt.date, hour: int, minute: int, second: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=SHANGHAI)


def _run_day(
    engine: Engine,
    rng: random.Random,
    day: dt.date,
    offset: int,
    per_day: int,
    windows: int,
    people: tuple[str, ...],
    ready_on: dict[dt.date, list[str]],
) -> None:
    clock = _Clock(_at(day, 8, 0))
    engine.tick(clock.at(_at(day, 8, 0)))
    for case_id in ready_on.pop(day, []):
        engine.case_ready(clock.at(_at(day, 8, 5)), case_id, BACK_OFFICE_STAFF)
    at_window = {n: people[(n - 1 + offset) % len(people)] for n in range(1, windows + 1)}
    for number, member in at_window.items():
        engine.open_window(clock.at(_at(day, 8, 30)), number, member)
    arrivals = sorted(
        (
            _at(day, 8, 30) + dt.timedelta(seconds=rng.randrange(0, 2 * 3600))
            if rng.random() < 0.6
            else _at(day, 10, 30) + dt.timedelta(seconds=rng.randrange(0, 5 * 3600 + 3300))
        )
        for _ in range(per_day)
    )
    cancels: list[tuple[dt.datetime, str]] = []
    inquiries = sorted(
        _at(day, 9, 0) + dt.timedelta(minutes=rng.randrange(0, 420))
        for _ in range(rng.randrange(0, 4))
    )
    desks = {n: _Desk() for n in at_window}
    minute = _at(day, 8, 30)
    closing = _at(day, 16, 30)
    last_call = _at(day, 16, 20)  # later arrivals wait in vain and expire at day close
    while minute < closing:
        horizon = minute + dt.timedelta(minutes=1)
        while arrivals and arrivals[0] < horizon:
            when = clock.at(arrivals.pop(0))
            service = rng.choice(SERVICES)
            priority = service != "housing" and rng.random() < 0.1  # housing: no priority lane
            ticket = engine.issue(when, service, priority=priority)
            if rng.random() < 0.05:
                cancels.append((when + dt.timedelta(minutes=rng.randrange(3, 20)), ticket.id))
        for due, ticket_id in [c for c in cancels if c[0] < horizon]:
            cancels.remove((due, ticket_id))
            if engine.tickets[ticket_id].state is TicketState.WAITING:
                engine.cancel(clock.at(due), ticket_id)
        while inquiries and inquiries[0] < horizon:
            when = clock.at(inquiries.pop(0))
            engine.log_inquiry(
                when,
                rng.choice(people),
                "咨询办事材料",
                service_id=rng.choice(SERVICES) if rng.random() < 0.6 else None,
                referred_to="残联" if rng.random() < 0.3 else None,
            )
        for number, desk in desks.items():
            member = at_window[number]
            if desk.ticket is not None and desk.until is not None and desk.until < horizon:
                _end(engine, rng, clock.at(desk.until), number, member, desk, ready_on)
            if desk.ticket is None and minute < last_call:
                ticket = engine.call_next(clock.at(minute), number, member)
                if ticket is not None:
                    _plan(rng, clock.now, ticket.id, ticket.service, desk)
                    if rng.random() < 0.05:
                        engine.recall(clock.at(minute + dt.timedelta(seconds=40)), number, member)
                    if desk.action == "no_show" and rng.random() < 0.3:
                        desk.action = "no_show_back"  # comes back: in line again
        minute = horizon
    for number, desk in desks.items():
        member = at_window[number]
        if desk.ticket is not None:
            engine.finish(clock.at(closing), number, member, Outcome.DONE)
            desk.ticket = None
        engine.close_window(clock.at(closing), number, member)


class _Clock:
    """Keeps the engine's clock moving forward: same-second actions get the next second."""

    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def at(self, when: dt.datetime) -> dt.datetime:
        self.now = max(when, self.now + dt.timedelta(seconds=1))
        return self.now


def _plan(rng: random.Random, now: dt.datetime, ticket_id: str, service: str, desk: _Desk) -> None:
    roll = rng.random()
    if roll < 0.05:
        desk.action, minutes = "no_show", 2.0
    elif roll < 0.13:
        desk.action, minutes = "transfer", rng.uniform(2, 5)
    elif roll < 0.3:
        desk.action, minutes = "back_office", rng.uniform(5, 15)
    else:
        desk.action, minutes = "done", rng.uniform(3, 12)
    desk.ticket = ticket_id
    desk.until = now + dt.timedelta(seconds=round(minutes * 60))


def _end(
    engine: Engine,
    rng: random.Random,
    now: dt.datetime,
    number: int,
    member: str,
    desk: _Desk,
    ready_on: dict[dt.date, list[str]],
) -> None:
    ticket = engine.tickets[desk.ticket or ""]
    if desk.action.startswith("no_show"):
        engine.no_show(now, number, member)
        if desk.action == "no_show_back":
            engine.reactivate(now, ticket.id)
    elif desk.action == "transfer":
        target = rng.choice([s for s in SERVICES if s != ticket.service])
        engine.transfer(now, number, member, service_id=target)
    else:
        before = set(engine.cases)
        outcome = Outcome.BACK_OFFICE if desk.action == "back_office" else Outcome.DONE
        engine.finish(now, number, member, outcome)
        for case_id in set(engine.cases) - before:
            opened = engine.local(now).date()
            due = opened + dt.timedelta(days=rng.randrange(1, 7))
            ready_on.setdefault(due, []).append(case_id)
        if rng.random() < 0.75:
            score = rng.choices(range(1, 6), weights=SCORE_WEIGHTS)[0]
            engine.rate(now + dt.timedelta(seconds=1), number, member, score)
    desk.ticket, desk.until, desk.action = None, None, ""


def as_dicts(events: list[Event]) -> list[dict[str, Any]]:
    """The wire form of the events (what an independent reader of the log sees)."""
    return [event.to_dict() for event in events]
