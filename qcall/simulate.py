"""A simulated service day against a real hub, faster than real time.

The hub (``qcall.hub.Hub``: engine, durable journal on a real SQLite file) runs in this
process with an injected clock: the simulation is a discrete-event one, so instead of
sleeping it sets the clock to the next event's time and runs the command through
``Hub.execute``, which returns only once the events are committed. Residents arrive by hour
of day (a Shanghai center's profile: a morning peak, a lunch dip, a smaller afternoon peak)
and by service; clerks call, see no-shows, serve for each service's handle time, transfer,
hand cases to the back office and serve their pickups later; residents rate. Clerks take a
staggered half-hour lunch break (错时午休).

The hall is pooled (一窗通办): ``windows`` comprehensive windows that each serve every
service the configured comprehensive windows serve, plus the configured dedicated and reply
windows as they are. The staffing comparison runs the same arrivals (same seed) with other
counts of comprehensive windows, each on its own database.

Faults (``faults=True``): each day runs in a child process. In the morning its hub is stopped
cleanly and a new hub is started on the same database (the day, its numbering and every
window's current ticket resume); in the afternoon the child process SIGKILLs itself (no hub
stop, no final snapshot) and the parent starts a new child on the same database, which resumes
the hall from the hub's recovered state: windows' current tickets, pauses, open and ready
cases, and the residents still to come. What the simulation saw acknowledged is journaled by
the child as it happens, so the parent knows every ticket acknowledged before the kill.
Device faults (printer paper end, a lobby screen disconnect, a silent device, bus noise, a
pulled plug) happen in a few real seconds with real devices: ``qcall.simulate_faults``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import math
import multiprocessing
import os
import pickle
import random
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any, Final, TypeVar
from zoneinfo import ZoneInfo

from qcall.config import CenterConfig, Devices, Window
from qcall.engine import Case, Engine, Ticket
from qcall.errors import QcallError
from qcall.hub import Hub
from qcall.model import (
    CaseState,
    DayType,
    Outcome,
    Position,
    ServiceKind,
    WindowState,
    WindowType,
)
from qcall.reports import Report, report_from_store
from qcall.store import Store

T = TypeVar("T")

# Share of the day's arrivals in each clock hour (a Shanghai community center: the morning
# peak at 9–11, the lunch dip at 12, a second smaller peak at 14–15).
HOURLY_PROFILE: Final = {
    9: 0.19,
    10: 0.16,
    11: 0.12,
    12: 0.05,
    13: 0.11,
    14: 0.13,
    15: 0.12,
    16: 0.12,
}
# The simulated hall's day, within the services' own hours (a Shanghai center: 9:00–17:00).
HALL_OPENS: Final = dt.time(9, 0)
HALL_CLOSES: Final = dt.time(17, 0)
# A busy day: residents bring this share of what the configured windows can handle.
LOAD: Final = 0.9
# A called resident walks to the window in this long; one who does not come is marked a
# no-show after NO_SHOW_WAIT_S.
WALK_S: Final = 45.0
NO_SHOW_WAIT_S: Final = 120.0
NO_SHOW_SHARE: Final = 0.05
TRANSFER_SHARE: Final = 0.04
BACK_OFFICE_SHARE: Final = 0.12
RATING_SHARE: Final = 0.75
# Scores 1–5 and their weights (most residents are satisfied).
RATING_WEIGHTS: Final = (1, 2, 6, 21, 70)
# Handle times are lognormal around the service's handle time with this sigma.
HANDLE_SIGMA: Final = 0.45
# A clerk with nobody to call looks again after this long.
IDLE_S: Final = 60.0
LUNCH_S: Final = 30 * 60.0
LUNCH_FROM: Final = dt.time(11, 30)
# The back office prepares a case in this many hours; its resident comes back later.
CASE_READY_H: Final = (1.0, 3.0)
PICKUP_AFTER_H: Final = (0.3, 2.0)
BACK_OFFICE_STAFF: Final = "backoffice"
# However long the line, nobody is called after this (the day must close before midnight).
LAST_CALL: Final = dt.time(22, 0)
# Clerks sign in this long before the earliest service opens.
SIGN_IN_EARLY_S: Final = 10 * 60.0
# The hub restart of ``faults`` happens at this local time.
RESTART_AT: Final = dt.time(10, 40)
# The hub process is SIGKILLed at this local time in ``faults``, and a new one resumes.
KILL_AT: Final = dt.time(14, 10)
# The device fault phase (``qcall.simulate_faults``, a few real seconds) of ``faults`` runs at
# this local time, in the process that resumed after the kill.
DEVICE_FAULTS_AT: Final = dt.time(15, 30)
# A simulated half day in a child process is a few seconds; the bound catches a hang.
CHILD_TIMEOUT_S: Final = 300.0
# A hub start or stop (database open, replay, final snapshot) takes about a second.
HUB_STOP_TIMEOUT_S: Final = 30.0


class SimClock:
    """The hub's clock in a simulation: stands still until the simulation moves it."""

    def __init__(self, start: dt.datetime) -> None:
        self.now = start
        self._start = start

    def __call__(self) -> dt.datetime:
        return self.now

    def monotonic(self) -> float:
        """Simulated seconds since the start (the hub's jump detector compares against it)."""
        return (self.now - self._start).total_seconds()

    def advance_to(self, when: dt.datetime) -> None:
        """Move forward to ``when`` (never backwards)."""
        self.now = max(self.now, when)


class Kind(IntEnum):
    """Simulation events; at equal times the lower value goes first."""

    RESTART = 0
    ARRIVE = 1
    PICKUP = 2
    READY = 3
    FREE = 4
    KILL = 5
    DEVICES = 6


@dataclass(frozen=True, slots=True)
class Arrival:
    """A resident who comes in at ``at`` for ``service``."""

    at: dt.datetime
    service: str


@dataclass(frozen=True, slots=True)
class Staffing:
    """One staffing choice and its day's waits (minutes)."""

    windows: int
    issued: int
    served: int
    mean_wait_min: float | None
    p90_wait_min: float | None
    max_wait_min: float | None
    last_finish: str


@dataclass(slots=True)
class DayRun:
    """What one simulated day did (acknowledged tickets, counts) and how long it took."""

    day: dt.date
    windows: int
    issued: list[Ticket] = field(default_factory=list)
    refused: int = 0
    no_shows: int = 0
    transfers: int = 0
    back_office: int = 0
    pickups: int = 0
    ratings: int = 0
    restarts: int = 0
    kills: int = 0
    killed_at: dt.datetime | None = None
    # The Idempotency-Key of the ticket request under way when the hub process was killed.
    in_flight: str | None = None
    # The device fault phase: each fault's outcome, and whether every device was ready after.
    device_faults: list[Any] = field(default_factory=list)
    devices_ready: bool | None = None
    simulated_s: float = 0.0
    wall_s: float = 0.0
    report: Report | None = None

    @property
    def speedup(self) -> float:
        """Simulated seconds per wall-clock second."""
        return self.simulated_s / self.wall_s if self.wall_s > 0 else math.inf


# --------------------------------------------------------------------------- the hall


def pooled_hall(config: CenterConfig, windows: int) -> CenterConfig:
    """The center with ``windows`` comprehensive windows serving every pooled service.

    Dedicated and reply windows stay as configured. Devices and webhooks are left out: the
    simulation drives the hub alone.
    """
    if windows < 1:
        raise ValueError("windows must be at least 1")
    comprehensive = [w for w in config.windows if w.type is WindowType.COMPREHENSIVE]
    others = [w for w in config.windows if w.type is not WindowType.COMPREHENSIVE]
    refs: dict[str, Any] = {}
    for window in comprehensive or config.windows:
        for ref in window.services:
            refs.setdefault(ref.id, ref)
    taken = {w.number for w in others}
    numbers: list[int] = []
    candidate = 1
    while len(numbers) < windows:
        if candidate not in taken:
            numbers.append(candidate)
        candidate += 1
    pooled = [
        Window(number=n, type=WindowType.COMPREHENSIVE, services=list(refs.values()))
        for n in numbers
    ]
    plain = [w.model_copy(update={"devices": type(w.devices)()}) for w in others]
    return config.model_copy(
        update={"windows": pooled + plain, "devices": Devices(), "webhooks": []}
    )


def comprehensive_count(config: CenterConfig) -> int:
    """How many comprehensive windows the configuration has (at least 1)."""
    return max(1, sum(1 for w in config.windows if w.type is WindowType.COMPREHENSIVE))


def new_business(config: CenterConfig) -> list[str]:
    """Services residents come for unprompted (intake and consultation), served somewhere."""
    served = {ref.id for w in config.windows for ref in w.services}
    return [s.id for s in config.services if s.kind is not ServiceKind.PICKUP and s.id in served]


def arrivals(
    config: CenterConfig, day: dt.date, seed: int, hall: CenterConfig | None = None
) -> list[Arrival]:
    """The day's residents: a Poisson count per hour from the profile, services by weight.

    The day's volume is ``LOAD`` times what the configured (not the pooled) windows can
    handle between the hall's opening and closing; a service's weight is the sum of its
    window weights in the configuration. Only services ``hall`` serves are drawn, so the
    same ``seed`` gives the same residents whatever the staffing.
    """
    rng = random.Random(seed)  # noqa: S311 - a simulation, not security
    zone = ZoneInfo(config.center.timezone)
    served = set(new_business(hall or config))
    services = [s for s in new_business(config) if s in served]
    weights = [
        sum(ref.weight for w in config.windows for ref in w.services if ref.id == sid)
        for sid in services
    ]
    handle = sum(
        w * _handle_min(config, sid) for sid, w in zip(services, weights, strict=True)
    ) / max(1, sum(weights))
    staffed = sum(1 for w in config.windows if w.type is not WindowType.REPLY)
    opens, closes = hall_hours(config, day)
    minutes = (closes - opens).total_seconds() / 60.0
    total = LOAD * max(1, staffed) * minutes / max(handle, 1.0)
    out: list[Arrival] = []
    for hour, share in HOURLY_PROFILE.items():
        count = _poisson(rng, total * share)
        start = dt.datetime.combine(day, dt.time(hour), zone)
        for _ in range(count):
            at = start + dt.timedelta(seconds=rng.uniform(0, 3600))
            service = rng.choices(services, weights)[0]
            if opens <= at < closes:
                out.append(Arrival(at, service))
    out.sort(key=lambda a: a.at)
    return out


def _handle_min(config: CenterConfig, service: str) -> float:
    found = config.service(service)
    return found.handle_time_min if found else 8.0


def hall_hours(config: CenterConfig, day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """When residents come in: the services' hours, within HALL_OPENS–HALL_CLOSES."""
    zone = ZoneInfo(config.center.timezone)
    day_type = config.calendar.day_type(day)
    hours = [
        s.hours[day_type]
        for s in config.services
        if day_type is not DayType.CLOSED and day_type in s.hours
    ]
    first = max(min((h.start for h in hours), default=HALL_OPENS), HALL_OPENS)
    last = min(max((h.end for h in hours), default=HALL_CLOSES), HALL_CLOSES)
    return dt.datetime.combine(day, first, zone), dt.datetime.combine(day, last, zone)


def _poisson(rng: random.Random, mean: float) -> int:
    # Knuth's method is fine for the means here (below a few hundred): split large means.
    count = 0
    while mean > 0:
        part = min(mean, 30.0)
        mean -= part
        limit, product = math.exp(-part), rng.random()
        while product > limit:
            count += 1
            product *= rng.random()
    return count


# --------------------------------------------------------------------------- one day


class _Day:
    """The discrete-event loop of one day on one hub."""

    def __init__(
        self,
        config: CenterConfig,
        db: Path,
        day: dt.date,
        windows: int,
        seed: int,
        *,
        faults: bool,
        speed: float | None = None,
        journal: Path | None = None,
    ) -> None:
        self.config = config
        # Acknowledged results are appended here as they happen (a child process's record
        # that survives its SIGKILL); with a journal, ``faults`` also kills the process.
        self.journal = journal
        self.kill_armed = False
        self.db = db
        self.day = day
        self.rng = random.Random(seed + 1)  # noqa: S311 - a simulation, not security
        self.faults = faults
        self.speed = speed
        self._paced: tuple[dt.datetime, float] | None = None
        self.run = DayRun(day, windows)
        self.queue: list[tuple[dt.datetime, int, int, Any]] = []
        self._order = 0
        self.hub: Hub | None = None
        self.tz = ZoneInfo(config.center.timezone)
        self.clock = SimClock(dt.datetime.combine(day, dt.time(7, 0), self.tz))
        self.lunched: set[int] = set()
        self.carry: list[str] = []  # pickup codes of residents who come back another day
        self.open_cases: list[str] = []
        self.paused: set[int] = set()
        self.closed: set[int] = set()
        self.last_out: dt.datetime | None = None  # when the last clerk signed out
        self.finish_by = dt.datetime.combine(day, LAST_CALL, self.tz)

    def _note(self, record: tuple[Any, ...]) -> None:
        if self.journal is None:
            return
        with self.journal.open("ab") as out:
            pickle.dump(record, out)
            out.flush()

    def _count(self, name: str) -> None:
        setattr(self.run, name, getattr(self.run, name) + 1)
        self._note(("count", name))

    def push(self, at: dt.datetime, kind: Kind, data: Any = None) -> None:
        self._order += 1
        heapq.heappush(self.queue, (at, int(kind), self._order, data))

    async def exec(self, command: Callable[[dt.datetime], T]) -> T:
        assert self.hub is not None
        return await self.hub.execute(command)

    async def start_hub(self) -> None:
        self.hub = Hub(self.config, self.db, clock=self.clock, monotonic=self.clock.monotonic)
        await self.hub.start()

    async def stop_hub(self) -> None:
        if self.hub is not None:
            await asyncio.wait_for(self.hub.stop(), HUB_STOP_TIMEOUT_S)
            self.hub = None

    def opening(self) -> dt.datetime:
        return hall_hours(self.config, self.day)[0] - dt.timedelta(seconds=SIGN_IN_EARLY_S)

    async def simulate(
        self, residents: Sequence[Arrival], pickups: Iterable[str], open_cases: Iterable[str]
    ) -> DayRun:
        wall = time.perf_counter()
        opened = self.opening()
        self.clock.advance_to(opened)
        await self.start_hub()
        try:
            for number in self.window_numbers():
                await self._sign_in(number)
                self.push(opened, Kind.FREE, number)
            for index, arrival in enumerate(residents):
                self.push(arrival.at, Kind.ARRIVE, (arrival.service, self._key(index)))
            # Residents whose cases were ready on earlier days come back this morning.
            for code in pickups:
                self.push(
                    opened + dt.timedelta(seconds=self.rng.uniform(900, 3 * 3600)),
                    Kind.PICKUP,
                    code,
                )
            # Cases still with the back office at yesterday's close are ready this morning.
            for case_id in open_cases:
                self.push(
                    opened + dt.timedelta(seconds=self.rng.uniform(600, 2 * 3600)),
                    Kind.READY,
                    case_id,
                )
            if self.faults:
                self.push(dt.datetime.combine(self.day, RESTART_AT, self.tz), Kind.RESTART)
                if self.journal is not None:
                    self.push(dt.datetime.combine(self.day, KILL_AT, self.tz), Kind.KILL)
            await self._close_day()
        finally:
            await self.stop_hub()
        return self._ended(opened, wall)

    async def _close_day(self) -> None:
        await self._loop()
        for number in self.window_numbers():
            if number not in self.closed:
                await self._sign_out(number)
        cases = list(self.hub_engine().cases.values())
        self.open_cases = [c.id for c in cases if c.state is CaseState.OPEN]

    def _ended(self, opened: dt.datetime, wall: float) -> DayRun:
        # The hall's working day: the first sign-in to the last sign-out.
        self.run.simulated_s = ((self.last_out or self.clock.now) - opened).total_seconds()
        self.run.wall_s = time.perf_counter() - wall
        self._note(("end", self.carry, self.open_cases, self.run.simulated_s))
        return self.run

    async def resume(self, at: dt.datetime, residents: Sequence[Arrival]) -> DayRun:
        """Go on with the day from ``at`` on a hub recovered from the database alone.

        After a hub process died, the hall carries on from what the hub remembers: windows'
        current tickets, pauses, open and ready cases; residents arriving from ``at`` come.
        """
        wall = time.perf_counter()
        opened = self.opening()
        self.clock.advance_to(at)
        await self.start_hub()
        try:
            engine = self.hub_engine()
            for number in self.window_numbers():
                if self._lunch_due(number, at):
                    self.lunched.add(number)
                await self._resume_window(engine, number)
            # Residents from the kill's time on come (again): one whose ticket request was
            # under way when the hub died asks again with the same Idempotency-Key.
            for index, arrival in enumerate(residents):
                if arrival.at >= at:
                    self.push(arrival.at, Kind.ARRIVE, (arrival.service, self._key(index)))
            for case in list(engine.cases.values()):
                later = at + dt.timedelta(seconds=self.rng.uniform(600, 2 * 3600))
                if case.state is CaseState.OPEN:
                    self.push(later, Kind.READY, case.id)
                elif case.state is CaseState.READY and case.pickup_ticket is None:
                    self.push(later, Kind.PICKUP, case.pickup_code)
            if self.faults:
                self.push(dt.datetime.combine(self.day, DEVICE_FAULTS_AT, self.tz), Kind.DEVICES)
            await self._close_day()
        finally:
            await self.stop_hub()
        return self._ended(opened, wall)

    async def _device_faults(self) -> None:
        from qcall.simulate_faults import device_fault_phase

        await self.stop_hub()
        faults, ready = await device_fault_phase(
            self.config, self.db, self.clock, self.clock.monotonic
        )
        self.run.device_faults, self.run.devices_ready = faults, ready
        self._note(("devices", faults, ready))
        await self.start_hub()

    async def _resume_window(self, engine: Engine, number: int) -> None:
        now = self.clock.now
        state = engine.window_state(number)
        current = engine.windows[number].current
        if state is WindowState.CLOSED:
            await self._sign_in(number)
            self.push(now, Kind.FREE, number)
        elif state is WindowState.PAUSED:
            self.paused.add(number)
            self.push(now, Kind.FREE, number)
        elif state is WindowState.IDLE:
            self.push(now, Kind.FREE, number)
        elif state is WindowState.CALLING:
            assert current is not None
            ticket = engine.tickets[current]
            await self._later(now + dt.timedelta(seconds=WALK_S), number, "start", ticket)
        else:
            assert current is not None
            ticket = engine.tickets[current]
            handle = dt.timedelta(seconds=self._handle_s(ticket.service))
            self.push(now + handle, Kind.FREE, _Step(number, "finish", ticket))

    def closing(self) -> dt.datetime:
        return hall_hours(self.config, self.day)[1]

    async def _sign_in(self, number: int) -> None:
        await self.exec(lambda t: self.hub_engine().open_window(t, number, _staff(number)))

    async def _sign_out(self, number: int) -> None:
        await self.exec(lambda t: self.hub_engine().close_window(t, number, _staff(number)))
        self.closed.add(number)
        self.last_out = self.clock.now

    def hub_engine(self) -> Engine:
        assert self.hub is not None
        return self.hub.engine

    def window_numbers(self) -> list[int]:
        return [w.number for w in self.config.windows]

    async def _loop(self) -> None:
        while self.queue:
            at, kind, _, data = heapq.heappop(self.queue)
            await self._pace(at)
            if at > self.finish_by and kind != Kind.FREE:
                # Past the last service: a resident with a ready case comes another day.
                if kind == Kind.PICKUP:
                    self.carry.append(str(data))
                continue
            self.clock.advance_to(at)
            match Kind(kind):
                case Kind.ARRIVE:
                    await self._arrive(*data)
                case Kind.PICKUP:
                    await self._pickup(str(data))
                case Kind.READY:
                    await self._ready(str(data))
                case Kind.FREE if isinstance(data, _Step):
                    await self.step(data)
                case Kind.FREE:
                    await self._free(int(data))
                case Kind.RESTART:
                    await self.stop_hub()
                    await self.start_hub()
                    self._count("restarts")
                case Kind.DEVICES:
                    await self._device_faults()
                case Kind.KILL:
                    # The hub dies during the next resident's ticket request.
                    self.kill_armed = True

    async def _pace(self, at: dt.datetime) -> None:
        """With ``speed``: wait until ``at`` is due at that many times real time."""
        if self.speed is None:
            return
        loop = asyncio.get_running_loop()
        if self._paced is None:
            self._paced = (self.clock.now, loop.time())
        since, wall = self._paced
        due = wall + (at - since).total_seconds() / self.speed
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)

    def _key(self, index: int) -> str:
        """The Idempotency-Key of the day's ``index``-th resident's ticket request."""
        return f"sim-{self.day:%Y%m%d}-{index:05d}"

    async def _issue(
        self, service: str, case_code: str | None = None, key: str | None = None
    ) -> Ticket | None:
        if self.kill_armed and key is not None:
            # The request is under way when the process dies: the resident gets no answer.
            self._note(("kill", self.clock.now, key))
        try:
            ticket = await self.exec(
                lambda now: self.hub_engine().issue(
                    now, service, channel="kiosk", case_code=case_code, idempotency_key=key
                )
            )
        except QcallError:
            self._count("refused")
            return None
        if self.kill_armed and key is not None:
            # A real SIGKILL once the ticket is committed, before it is acknowledged: no hub
            # stop, no final snapshot.
            os.kill(os.getpid(), signal.SIGKILL)
        assert isinstance(ticket, Ticket)
        self.run.issued.append(ticket)
        self._note(("issued", ticket))
        return ticket

    async def _arrive(self, service: str, key: str) -> None:
        await self._issue(service, key=key)

    async def _pickup(self, code: str) -> None:
        pickup = next((s.id for s in self.config.services if s.kind is ServiceKind.PICKUP), None)
        # After the hall closes (or with no pickup service) the resident comes another day.
        if pickup is None or self.clock.now >= self.closing():
            self.carry.append(code)
        elif await self._issue(pickup, code) is not None:
            self._count("pickups")
        else:
            self.carry.append(code)  # refused (outside its hours): another day

    async def _ready(self, case_id: str) -> None:
        case = await self.exec(
            lambda now: self.hub_engine().case_ready(now, case_id, BACK_OFFICE_STAFF)
        )
        assert isinstance(case, Case)
        hours = self.rng.uniform(*PICKUP_AFTER_H)
        self.push(self.clock.now + dt.timedelta(hours=hours), Kind.PICKUP, case.pickup_code)

    def _handle_s(self, service: str) -> float:
        found = self.config.service(service)
        mean = (found.handle_time_min if found else 8.0) * 60.0
        # A lognormal with this mean: mu = ln(mean) - sigma²/2.
        return self.rng.lognormvariate(math.log(mean) - HANDLE_SIGMA**2 / 2, HANDLE_SIGMA)

    async def _free(self, number: int) -> None:
        """Window ``number`` is free at the clock's time: lunch, or call the next resident."""
        now = self.clock.now
        staff = _staff(number)
        engine = self.hub_engine()
        if number in self.paused:
            self.paused.discard(number)
            await self.exec(lambda t: self.hub_engine().resume(t, number, staff))
        elif number not in self.lunched and self._lunch_due(number, now):
            self.lunched.add(number)
            self.paused.add(number)
            await self.exec(lambda t: self.hub_engine().pause(t, number, staff, "lunch"))
            self.push(now + dt.timedelta(seconds=LUNCH_S), Kind.FREE, number)
            return
        if now >= self.finish_by:
            # The last clerks leave: whoever still waits has expired at the day's close.
            await self._sign_out(number)
            return
        ticket = await self.exec(lambda t: self.hub_engine().call_next(t, number, staff))
        if ticket is None:
            if self._day_over(engine):
                # Nobody waits and nobody will come: the clerk signs out.
                await self._sign_out(number)
                return
            self.push(now + dt.timedelta(seconds=IDLE_S), Kind.FREE, number)
            return
        assert isinstance(ticket, Ticket)
        if self.rng.random() < NO_SHOW_SHARE:
            await self._later(now + dt.timedelta(seconds=NO_SHOW_WAIT_S), number, "no_show")
            return
        await self._later(now + dt.timedelta(seconds=WALK_S), number, "start", ticket)

    async def _later(
        self, at: dt.datetime, number: int, step: str, ticket: Ticket | None = None
    ) -> None:
        # Steps of one window happen in its own time order; they go through the queue so
        # that other windows' and residents' events in between keep their order.
        self.push(at, Kind.FREE, _Step(number, step, ticket))

    def _lunch_due(self, number: int, now: dt.datetime) -> bool:
        index = self.window_numbers().index(number)
        start = dt.datetime.combine(self.day, LUNCH_FROM, self.tz) + dt.timedelta(
            minutes=20 * (index % 4)
        )
        return now >= start

    def _day_over(self, engine: Engine) -> bool:
        """Nobody waits, nobody will arrive: this window is done for the day."""
        closes = self.closing()
        pending = any(
            kind in (Kind.ARRIVE, Kind.PICKUP, Kind.READY) and at <= closes
            for at, kind, _, _ in self.queue
        )
        waiting = sum(engine.waiting_count(s.id) for s in self.config.services)
        return not pending and waiting == 0

    async def step(self, step: _Step) -> None:
        number, staff = step.window, _staff(step.window)
        now = self.clock.now
        if step.step == "no_show":
            await self.exec(lambda t: self.hub_engine().no_show(t, number, staff))
            self._count("no_shows")
            self.push(now, Kind.FREE, number)
        elif step.step == "start":
            assert step.ticket is not None
            await self.exec(lambda t: self.hub_engine().start(t, number, staff))
            handle = dt.timedelta(seconds=self._handle_s(step.ticket.service))
            self.push(now + handle, Kind.FREE, _Step(number, "finish", step.ticket))
        elif step.step == "finish":
            assert step.ticket is not None
            await self._finish(number, staff, step.ticket)
            self.push(now, Kind.FREE, number)

    async def _finish(self, number: int, staff: str, ticket: Ticket) -> None:
        kind = self._kind(ticket.service)
        roll = self.rng.random()
        target = self._transfer_target(ticket.service, kind)
        if target is not None and roll < TRANSFER_SHARE:
            await self.exec(
                lambda t: self.hub_engine().transfer(
                    t, number, staff, service_id=target, position=Position.FIRST
                )
            )
            self._count("transfers")
            return
        if kind is ServiceKind.INTAKE and roll < TRANSFER_SHARE + BACK_OFFICE_SHARE:
            done = await self.exec(
                lambda t: self.hub_engine().finish(t, number, staff, Outcome.BACK_OFFICE)
            )
            self._count("back_office")
            case_id = next(c.id for c in self.hub_engine().cases.values() if c.ticket == done.id)
            hours = self.rng.uniform(*CASE_READY_H)
            self.push(self.clock.now + dt.timedelta(hours=hours), Kind.READY, case_id)
        else:
            await self.exec(lambda t: self.hub_engine().finish(t, number, staff, Outcome.DONE))
        if self.rng.random() < RATING_SHARE:
            score = self.rng.choices(range(1, 6), RATING_WEIGHTS)[0]
            await self.exec(lambda t: self.hub_engine().rate(t, number, staff, score))
            self._count("ratings")

    def _kind(self, service: str) -> ServiceKind:
        found = self.config.service(service)
        return found.kind if found else ServiceKind.INTAKE

    def _transfer_target(self, service: str, kind: ServiceKind) -> str | None:
        if kind is not ServiceKind.INTAKE:
            return None
        choices = [
            s
            for s in new_business(self.config)
            if s != service and self._kind(s) is ServiceKind.INTAKE
        ]
        return self.rng.choice(choices) if choices else None


@dataclass(frozen=True, slots=True)
class _Step:
    """A window's next step for its current ticket (``no_show``, ``start``, ``finish``)."""

    window: int
    step: str
    ticket: Ticket | None


def _staff(window: int) -> str:
    return f"sim{window:02d}"


# --------------------------------------------------------------------------- whole runs


async def simulate_days(
    config: CenterConfig,
    db: Path,
    days: Sequence[dt.date],
    *,
    windows: int,
    seed: int,
    faults: bool = False,
    speed: float | None = None,
) -> list[DayRun]:
    """Simulate ``days`` one after another on one database; each run carries its report.

    Cases left with the back office, and ready cases not yet collected, go on to the next
    day. ``config`` is the center as configured: the hall is pooled to ``windows``. With
    ``speed`` the day runs at that many times real time (to watch it); without, as fast as
    the hub commits.
    """
    hall = pooled_hall(config, windows)
    runs: list[DayRun] = []
    pickups: list[str] = []
    open_cases: list[str] = []
    for index, day in enumerate(days):
        residents = arrivals(config, day, seed + index, hall)
        if faults:
            run, pickups, open_cases = await asyncio.to_thread(
                _day_with_kill, hall, db, day, windows, seed + index, residents, pickups, open_cases
            )
        else:
            one = _Day(hall, db, day, windows, seed + index, faults=faults, speed=speed)
            run = await one.simulate(residents, pickups, open_cases)
            pickups, open_cases = one.carry, one.open_cases
        run.report = read_report(hall, db, day)
        runs.append(run)
    return runs


def _day_with_kill(
    hall: CenterConfig,
    db: Path,
    day: dt.date,
    windows: int,
    seed: int,
    residents: list[Arrival],
    pickups: list[str],
    open_cases: list[str],
) -> tuple[DayRun, list[str], list[str]]:
    """One day in child processes: the first is SIGKILLed mid-day, a second one resumes.

    The parent learns what was acknowledged only from the children's journal, as a client
    of a crashed hub would only know what it was answered.
    """
    wall = time.perf_counter()
    journal = db.with_name(f"{db.name}.{day.isoformat()}.journal")
    journal.unlink(missing_ok=True)
    spawn = multiprocessing.get_context("spawn")
    first = spawn.Process(
        target=_child_day,
        args=(hall, db, day, windows, seed, residents, pickups, open_cases, journal),
    )
    first.start()
    first.join(CHILD_TIMEOUT_S)
    if first.exitcode != -signal.SIGKILL:
        first.kill()
        raise RuntimeError(f"the simulated hub process ended with {first.exitcode}, not killed")
    records = _read_journal(journal)
    _, killed_at, in_flight = [r for r in records if r[0] == "kill"][-1]
    second = spawn.Process(
        target=_child_resume,
        args=(hall, db, day, windows, seed, residents, journal, killed_at),
    )
    second.start()
    second.join(CHILD_TIMEOUT_S)
    if second.exitcode != 0:
        second.kill()
        raise RuntimeError(f"the resumed hub process ended with {second.exitcode}")
    run = DayRun(day, windows, kills=1, killed_at=killed_at, in_flight=in_flight)
    carry: list[str] = []
    still_open: list[str] = []
    acked: set[str] = set()
    for record in _read_journal(journal):
        if record[0] == "issued" and record[1].id not in acked:
            # A retried request answers the same ticket: the resident holds it once.
            acked.add(record[1].id)
            run.issued.append(record[1])
        elif record[0] == "count":
            setattr(run, record[1], getattr(run, record[1]) + 1)
        elif record[0] == "devices":
            run.device_faults, run.devices_ready = record[1], record[2]
        elif record[0] == "end":
            carry, still_open, run.simulated_s = record[1], record[2], record[3]
    run.wall_s = time.perf_counter() - wall
    journal.unlink()
    return run, carry, still_open


def _read_journal(journal: Path) -> list[tuple[Any, ...]]:
    records: list[tuple[Any, ...]] = []
    with journal.open("rb") as source:
        while True:
            try:
                records.append(pickle.load(source))  # noqa: S301 - our own child's journal
            except EOFError:
                return records


def _child_day(
    hall: CenterConfig,
    db: Path,
    day: dt.date,
    windows: int,
    seed: int,
    residents: list[Arrival],
    pickups: list[str],
    open_cases: list[str],
    journal: Path,
) -> None:
    one = _Day(hall, db, day, windows, seed, faults=True, journal=journal)
    asyncio.run(one.simulate(residents, pickups, open_cases))


def _child_resume(
    hall: CenterConfig,
    db: Path,
    day: dt.date,
    windows: int,
    seed: int,
    residents: list[Arrival],
    journal: Path,
    at: dt.datetime,
) -> None:
    # Another seed: the resumed hall does not replay the killed one's draws.
    one = _Day(hall, db, day, windows, seed + 7919, faults=True, journal=journal)
    asyncio.run(one.resume(at, residents))


def read_report(config: CenterConfig, db: Path, day: dt.date) -> Report:
    """The day's report, read from the database the way ``qcall report daily`` does."""
    store = Store(db)
    store.open_reader()
    try:
        return report_from_store(config, store, day, day, kind="daily", today=day)
    finally:
        store.close()


def staffing_row(run: DayRun) -> Staffing:
    """The waits of one simulated day, in minutes."""
    assert run.report is not None
    total = run.report.total
    last = max((t.finished_at for t in run.issued if t.finished_at), default=None)

    def minutes(value: float | None) -> float | None:
        return None if value is None else round(value / 60.0, 1)

    return Staffing(
        windows=run.windows,
        issued=total.issued,
        served=total.served,
        mean_wait_min=minutes(total.wait.mean_s),
        p90_wait_min=minutes(total.wait.p90_s),
        max_wait_min=minutes(total.wait.max_s),
        last_finish=f"{last:%H:%M}" if last else "-",
    )


def staffing_counts(base: int) -> list[int]:
    """The window counts to compare: two fewer, as configured, two more (at least 1)."""
    return sorted({max(1, base - 2), base, base + 2})


async def compare_staffing(
    config: CenterConfig, folder: Path, day: dt.date, counts: Sequence[int], *, seed: int
) -> list[Staffing]:
    """The same day's residents (same seed) served by each count of comprehensive windows."""
    rows: list[Staffing] = []
    for count in counts:
        db = _fresh(folder / f"staffing-{count}.db")
        (run,) = await simulate_days(config, db, [day], windows=count, seed=seed)
        rows.append(staffing_row(run))
    return rows


def _fresh(db: Path) -> Path:
    """``db`` with any earlier run's files removed (a comparison starts from nothing)."""
    for stale in db.parent.glob(f"{db.name}*"):
        stale.unlink()
    return db
