"""Statistics of a day, a month or any date range, derived only from the event log.

``build_report(config, events, first, last)`` is pure: it reads events, never edits them,
and does no I/O. Events of service days outside ``first``–``last`` are ignored (an event
belongs to the day of the latest ``day.opened`` before it; the ``day.closed`` of a day comes
before the next ``day.opened``). ``daily_report`` is the one-day case.

Counting rules
--------------
A *ticket* is what the resident holds (one ``ticket.issued``). A transfer ends the current
*entry* as ``transferred`` and creates a new entry (``new_id``) with the same number in the
target line, so one ticket may have several entries. Every figure belongs to the service day
of its event (an entry never outlives its day: ``day.closed`` expires it).

- ``issued`` / ``priority_issued`` count tickets (``ticket.issued``), never transfer entries;
  they belong to the day and the service issued for (windows and staff issue nothing: 0).
- ``transferred`` counts transfers (entries that ended as transferred), attributed to the
  source entry's service and to the window / staff member who transferred.
- ``called`` / ``priority_called`` count entries called at least once in the scope (a recall
  or a callback of the same entry is not a second call; ``recalls`` counts 重呼).
- The *outcome* of an entry is its final state in the log: ``done``, ``back_office``,
  ``no_show``, ``transferred``, ``cancelled``, ``expired`` (by ``day.closed``) or
  ``in_progress`` (still waiting / called / serving / held: the day is not closed yet). A
  no-show that is reactivated and called again counts by its later outcome. Outcomes are
  attributed to the entry's service and to the window and staff member where they happened
  (``expired`` / ``in_progress`` to the window where the entry was called or held, if any).
  ``served`` = ``done`` + ``back_office``. For the total, ``issued`` = ``done`` +
  ``back_office`` + ``no_show`` + ``cancelled`` + ``expired`` + ``in_progress``; per service,
  ``issued`` + transfers in = the same sum + ``transferred``.
- **Wait** (seconds) is measured once per entry, at its first call, from the moment it joined
  its line: the issue time for an issued ticket, the transfer time for an entry created by a
  transfer. Measuring a transferred entry from the original issue time (which it keeps, for
  queue order) would count the first line's wait and the first window's handling twice and
  charge them to the target service. The sample belongs to the entry's service and to the
  window and staff member of that first call. Waits after a reactivation, a callback or a
  requeue are not new samples. Entries never called have no wait sample.
- ``over_target`` counts wait samples above the entry's service ``target_wait_min``;
  ``over_target_pct`` is their share of the wait samples (None without samples).
- **Handle** (seconds) = ``ticket.finished`` − the entry's latest ``ticket.called``, for entries
  finished ``done`` or ``back_office``, attributed where they were finished. Service before a
  transfer, a hold or a no-show is not a handle sample.
- Means, p90 and max are None without samples; p90 is the nearest-rank percentile (the
  ⌈0.9·n⌉-th smallest sample, so it is always an observed value; with n < 10 it is the max).
- Ratings (1–5) belong to the rated entry's service and the window / staff of the event.
  ``satisfied`` counts ratings of at least ``reports.satisfied_min_score`` (default 3:
  基本满意, 满意, 非常满意 — the 好差评 rule that only 不满意 and 非常不满意 are bad ratings);
  ``satisfaction_pct`` is their share.
- Cases: ``cases_opened`` (service, accepting staff, window, day opened); ``cases_ready``
  (service, the staff member who marked it ready, day made ready; a ``case.ready`` names its
  service, older ones are resolved through the case's ``case.opened``).
  Promised dates kept: ``cases_due`` counts cases whose promised date falls in the range,
  on that date, for the case's service and its first-responsible staff member (who
  accepted it); ``cases_kept`` those made ready on or before it, ``cases_broken`` those not
  ready by then once the date is over (before ``today``, or a closed day); the rest are
  still pending. ``cases_kept_pct`` = kept / (kept + broken). ``resolve_cases`` looks up
  what happened outside the range (openings and readiness of those cases).
  ``cases_picked_up``: the pickup ticket's service, window and staff.
- ``inquiries`` / ``referrals`` (首问负责: ``inquiry.logged``, with ``referred_to``): day,
  staff member, and service when the log names one.
- By hour (local clock hour of the service day): ``arrivals`` are tickets issued in that
  hour; the wait samples belong to the hour the entry joined its line.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

from qcall.config import CenterConfig
from qcall.events import Event, EventType
from qcall.model import Outcome, TicketState

MAX_SCORE: Final = 5
ReportKind = Literal["daily", "monthly", "range"]

# --------------------------------------------------------------------------- the report


@dataclass(frozen=True, slots=True)
class Durations:
    """Seconds: sample count, mean, nearest-rank p90 and max (None without samples)."""

    count: int = 0
    mean_s: float | None = None
    p90_s: float | None = None
    max_s: float | None = None


@dataclass(frozen=True, slots=True)
class Ratings:
    """Resident ratings: count, mean, the number of each score 1–5 and the satisfied share."""

    count: int = 0
    mean: float | None = None
    distribution: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)
    satisfied: int = 0
    satisfaction_pct: float | None = None


@dataclass(frozen=True, slots=True)
class Figures:
    """The figures of one scope (day, service, window or staff member); see module doc."""

    issued: int = 0
    priority_issued: int = 0
    called: int = 0
    priority_called: int = 0
    served: int = 0
    done: int = 0
    back_office: int = 0
    no_show: int = 0
    transferred: int = 0
    cancelled: int = 0
    expired: int = 0
    in_progress: int = 0
    recalls: int = 0
    wait: Durations = Durations()
    handle: Durations = Durations()
    over_target: int = 0
    over_target_pct: float | None = None
    ratings: Ratings = Ratings()
    cases_opened: int = 0
    cases_ready: int = 0
    cases_due: int = 0
    cases_kept: int = 0
    cases_broken: int = 0
    cases_kept_pct: float | None = None
    cases_picked_up: int = 0
    inquiries: int = 0
    referrals: int = 0


@dataclass(frozen=True, slots=True)
class ServiceRow:
    """One service's figures, with its names from the configuration."""

    id: str
    prefix: str
    name_zh: str
    name_en: str
    target_wait_min: int | None
    figures: Figures


@dataclass(frozen=True, slots=True)
class WindowRow:
    """One window's figures."""

    number: int
    type: str
    name_zh: str
    name_en: str
    figures: Figures


@dataclass(frozen=True, slots=True)
class StaffRow:
    """One staff member's figures: the log carries the id, the staff table the name."""

    id: str
    name: str
    figures: Figures


class DayStatus(StrEnum):
    """Where a service day stands in the log."""

    CLOSED = "closed"  # its day.closed is in the log
    OPEN = "open"  # today (or no "today" given), opened and not closed yet
    UNCLOSED = "unclosed"  # a past day with events whose day.closed never came
    NO_DATA = "no_data"  # a past or present day with no events
    FUTURE = "future"  # after today


@dataclass(frozen=True, slots=True)
class DayRow:
    """One service day of the range."""

    day: dt.date
    day_type: str
    status: DayStatus
    figures: Figures


@dataclass(frozen=True, slots=True)
class HourRow:
    """One clock hour over the range: tickets issued and waits of entries that joined then."""

    hour: int
    arrivals: int
    wait: Durations
    over_target: int


@dataclass(frozen=True, slots=True)
class Scope:
    """Whose total, days and hours a report shows (None everywhere: the whole center)."""

    service: str | None = None
    window: int | None = None
    staff: str | None = None

    @property
    def is_center(self) -> bool:
        """True for the whole center."""
        return self.service is None and self.window is None and self.staff is None


@dataclass(frozen=True, slots=True)
class Report:
    """Statistics of the service days ``first``–``last`` (one day for a daily report).

    ``total``, ``days`` and ``hours`` are the figures of ``scope`` (the whole center by
    default). ``services`` and ``windows`` list every configured one (in configuration order;
    ids met in the log but no longer configured follow), ``staff`` everyone who appears in
    the log. ``last_seq`` is the seq of the range's last event (0 when there is none).
    """

    kind: ReportKind
    first: dt.date
    last: dt.date
    center_zh: str
    center_en: str
    last_seq: int
    scope: Scope
    total: Figures
    days: tuple[DayRow, ...]
    hours: tuple[HourRow, ...]
    services: tuple[ServiceRow, ...]
    windows: tuple[WindowRow, ...]
    staff: tuple[StaffRow, ...]

    @property
    def day(self) -> dt.date:
        """The first (for a daily report: the only) day."""
        return self.first

    @property
    def day_type(self) -> str:
        """The first day's type."""
        return self.days[0].day_type

    @property
    def status(self) -> DayStatus:
        """The first day's status."""
        return self.days[0].status

    @property
    def closed(self) -> bool:
        """True when every day of the range is closed in the log."""
        return all(d.status is DayStatus.CLOSED for d in self.days)


DailyReport = Report
CENTER: Final = Scope()

# --------------------------------------------------------------------------- accumulation


def nearest_rank_p90(samples: Iterable[float]) -> float | None:
    """Return the ⌈0.9·n⌉-th smallest sample, or None for no samples."""
    ordered = sorted(samples)
    if not ordered:
        return None
    return ordered[(9 * len(ordered) + 9) // 10 - 1]


def durations(samples: list[float]) -> Durations:
    """Count, mean, nearest-rank p90 and max of ``samples``."""
    if not samples:
        return Durations()
    return Durations(
        count=len(samples),
        mean_s=math.fsum(samples) / len(samples),
        p90_s=nearest_rank_p90(samples),
        max_s=max(samples),
    )


def _pct(part: int, whole: int) -> float | None:
    return 100.0 * part / whole if whole else None


@dataclass(slots=True)
class _Acc:
    counts: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    waits: list[float] = field(default_factory=list)
    handles: list[float] = field(default_factory=list)
    scores: list[int] = field(default_factory=list)

    def freeze(self, satisfied_min: int) -> Figures:
        c = self.counts
        distribution = tuple(self.scores.count(score) for score in range(1, MAX_SCORE + 1))
        satisfied = sum(distribution[satisfied_min - 1 :])
        over = c.get("over_target", 0)
        kept, broken = c.get("cases_kept", 0), c.get("cases_broken", 0)
        return Figures(
            issued=c.get("issued", 0),
            priority_issued=c.get("priority_issued", 0),
            called=c.get("called", 0),
            priority_called=c.get("priority_called", 0),
            served=c.get("done", 0) + c.get("back_office", 0),
            done=c.get("done", 0),
            back_office=c.get("back_office", 0),
            no_show=c.get("no_show", 0),
            transferred=c.get("transferred", 0),
            cancelled=c.get("cancelled", 0),
            expired=c.get("expired", 0),
            in_progress=c.get("in_progress", 0),
            recalls=c.get("recalls", 0),
            wait=durations(self.waits),
            handle=durations(self.handles),
            over_target=over,
            over_target_pct=_pct(over, len(self.waits)),
            ratings=Ratings(
                count=len(self.scores),
                mean=sum(self.scores) / len(self.scores) if self.scores else None,
                distribution=(
                    distribution[0],
                    distribution[1],
                    distribution[2],
                    distribution[3],
                    distribution[4],
                ),
                satisfied=satisfied,
                satisfaction_pct=_pct(satisfied, len(self.scores)),
            ),
            cases_opened=c.get("cases_opened", 0),
            cases_ready=c.get("cases_ready", 0),
            cases_due=c.get("cases_due", 0),
            cases_kept=kept,
            cases_broken=broken,
            cases_kept_pct=_pct(kept, kept + broken),
            cases_picked_up=c.get("cases_picked_up", 0),
            inquiries=c.get("inquiries", 0),
            referrals=c.get("referrals", 0),
        )


@dataclass(slots=True)
class _Hour:
    arrivals: int = 0
    over_target: int = 0
    waits: list[float] = field(default_factory=list)


@dataclass(slots=True)
class _Scope:
    """One scope's accumulator; the report's own scope also keeps each day and hour."""

    tracked: bool = False
    all: _Acc = field(default_factory=_Acc)
    days: dict[dt.date, _Acc] = field(default_factory=dict)
    hours: dict[int, _Hour] = field(default_factory=dict)

    def accs(self, day: dt.date) -> tuple[_Acc, ...]:
        """Where a figure of ``day`` goes: the whole range, and the day when tracked."""
        if not self.tracked:
            return (self.all,)
        acc = self.days.get(day)
        if acc is None:
            acc = self.days[day] = _Acc()
        return (self.all, acc)

    def hour(self, hour: int) -> _Hour:
        acc = self.hours.get(hour)
        if acc is None:
            acc = self.hours[hour] = _Hour()
        return acc


@dataclass(slots=True)
class _Entry:
    """One line entry as the log tells it."""

    id: str
    day: dt.date
    service: str
    priority: bool
    joined_at: dt.datetime | None
    root: bool
    state: TicketState = TicketState.WAITING
    first_call_at: dt.datetime | None = None
    first_window: int | None = None
    first_staff: str | None = None
    last_call_at: dt.datetime | None = None
    window: int | None = None  # where it is now, or where its outcome happened
    staff: str | None = None
    called_windows: set[int] = field(default_factory=set)
    called_staff: set[str] = field(default_factory=set)
    handle_s: float | None = None


@dataclass(frozen=True, slots=True)
class _CaseInfo:
    service: str | None
    promised: dt.date | None
    staff: str | None = None


@dataclass(frozen=True, slots=True)
class _Ready:
    case: str
    day: dt.date
    staff: str | None
    service: str | None  # None in events written before case.ready named its service


_Key = tuple[str, str | int]
_TOTAL: Final[_Key] = ("total", "")
_ACTIVE: Final = frozenset(
    {TicketState.WAITING, TicketState.CALLED, TicketState.SERVING, TicketState.HELD}
)
# (case ids, first, last) → case.opened of those ids and of cases promised in first–last,
# and the case.ready of the latter.
CaseResolver = Callable[[Collection[str], dt.date, dt.date], Iterable[Event]]


class _Builder:
    def __init__(
        self,
        config: CenterConfig,
        first: dt.date,
        last: dt.date,
        resolve_cases: CaseResolver | None,
        scope: Scope,
    ) -> None:
        self.config = config
        self.tracked = _scope_key(scope)
        self.combinations: dict[tuple[str | None, int | None, str | None], tuple[_Scope, ...]] = {}
        self.first, self.last = first, last
        self.tz = ZoneInfo(config.center.timezone)
        self.targets = {s.id: s.target_wait_min * 60.0 for s in config.services}
        self.satisfied_min = config.reports.satisfied_min_score
        self.scopes_by_key: dict[_Key, _Scope] = {}
        self.scope(_TOTAL)
        for service in config.services:
            self.scope(("service", service.id))
        for window in config.windows:
            self.scope(("window", window.number))
        self.entries: dict[str, _Entry] = {}
        self.cases: dict[str, _CaseInfo] = {}
        self.ready: list[_Ready] = []
        self.ready_on: dict[str, dt.date] = {}  # case → local date first made ready
        self.resolve_cases = resolve_cases
        self.day_types: dict[dt.date, str] = {}
        self.seen: set[dt.date] = set()
        self.closed: set[dt.date] = set()
        self.last_seq = 0
        self.today: dt.date = first  # the service day of the event being fed

    # ------------------------------------------------------------------ helpers

    def scope(self, key: _Key) -> _Scope:
        found = self.scopes_by_key.get(key)
        if found is None:
            found = self.scopes_by_key[key] = _Scope(tracked=key == self.tracked)
        return found

    def scopes(
        self, service: str | None = None, window: int | None = None, staff: str | None = None
    ) -> tuple[_Scope, ...]:
        combination = (service, window, staff)
        found = self.combinations.get(combination)
        if found is None:
            keys: list[_Key] = [_TOTAL]
            if service is not None:
                keys.append(("service", service))
            if window is not None:
                keys.append(("window", window))
            if staff is not None:
                keys.append(("staff", staff))
            found = self.combinations[combination] = tuple(self.scope(key) for key in keys)
        return found

    def bump(
        self,
        name: str,
        day: dt.date,
        service: str | None = None,
        window: int | None = None,
        staff: str | None = None,
    ) -> None:
        for scope in self.scopes(service, window, staff):
            for acc in scope.accs(day):
                acc.counts[name] += 1

    def entry(self, data: Mapping[str, Any]) -> _Entry:
        """Return the entry an event names; a stream cut mid-day may not have issued it."""
        entry_id = str(data["id"])
        entry = self.entries.get(entry_id)
        if entry is None:
            entry = _Entry(
                entry_id,
                self.today,
                str(data.get("service", "")),
                bool(data.get("priority")),
                None,
                False,
            )
            self.entries[entry_id] = entry
        return entry

    def entry_service(self, entry_id: object) -> str | None:
        entry = self.entries.get(str(entry_id))
        return entry.service if entry is not None else None

    def local_hour(self, at: dt.datetime) -> int:
        return at.astimezone(self.tz).hour

    # ------------------------------------------------------------------ the pass

    def feed(self, events: Iterable[Event]) -> None:
        current: dt.date | None = None
        first, last, tz = self.first, self.last, self.tz
        handlers = _HANDLERS
        opened, case_opened, case_ready = (
            EventType.DAY_OPENED,
            EventType.CASE_OPENED,
            EventType.CASE_READY,
        )
        for event in events:
            kind = event.type
            if kind is opened:
                current = dt.date.fromisoformat(event.data["day"])
                if self.entries:
                    # The day before is closed: its entries are final. Counting them now
                    # keeps a year's report to one day of entries in memory.
                    self.settle_entries()
            owner = current if current is not None else event.at.astimezone(tz).date()
            if kind is case_opened:
                self.remember_case(event.data)
            elif kind is case_ready:
                self.remember_ready(event)
            if owner < first or owner > last:
                continue
            if owner != self.today or not self.seen:
                self.today = owner
                self.seen.add(owner)
            self.last_seq = event.seq  # the log is in seq order
            handler = handlers.get(kind)
            if handler is not None:
                handler(self, event, event.data)

    def remember_case(self, data: Mapping[str, Any]) -> None:
        promised = data.get("promised_date")
        self.cases[str(data["case"])] = _CaseInfo(
            data.get("service"),
            dt.date.fromisoformat(promised) if promised else None,
            data.get("staff"),
        )

    def remember_ready(self, event: Event) -> None:
        self.ready_on.setdefault(str(event.data["case"]), event.at.astimezone(self.tz).date())

    def on_day_opened(self, event: Event, data: Mapping[str, Any]) -> None:
        day_type = str(data.get("day_type") or "")
        if day_type:
            self.day_types[self.today] = day_type

    def on_day_closed(self, event: Event, data: Mapping[str, Any]) -> None:
        if data.get("day") == self.today.isoformat():
            self.closed.add(self.today)
        for entry_id in data.get("expired", ()):
            entry = self.entries.get(entry_id)
            if entry is not None and entry.state in _ACTIVE:
                entry.state = TicketState.EXPIRED

    def on_issued(self, event: Event, data: Mapping[str, Any]) -> None:
        entry_id = str(data["id"])
        self.entries[entry_id] = _Entry(
            entry_id, self.today, str(data["service"]), bool(data.get("priority")), event.at, True
        )

    def on_called(self, event: Event, data: Mapping[str, Any]) -> None:
        entry = self.entry(data)
        window, staff = int(data["window"]), data.get("staff")
        entry.state = TicketState.CALLED
        entry.window, entry.staff = window, staff
        entry.last_call_at = event.at
        if entry.first_call_at is None:
            entry.first_call_at, entry.first_window, entry.first_staff = event.at, window, staff
        entry.called_windows.add(window)
        if staff is not None:
            entry.called_staff.add(staff)

    def on_recalled(self, event: Event, data: Mapping[str, Any]) -> None:
        self.bump(
            "recalls",
            self.today,
            self.entry_service(data["id"]),
            data.get("window"),
            data.get("staff"),
        )

    def on_started(self, event: Event, data: Mapping[str, Any]) -> None:
        self.entry(data).state = TicketState.SERVING

    def on_no_show(self, event: Event, data: Mapping[str, Any]) -> None:
        entry = self.entry(data)
        entry.state = TicketState.NO_SHOW
        entry.window, entry.staff = data.get("window"), data.get("staff")

    def back_in_line(self, entry: _Entry) -> None:
        entry.state = TicketState.WAITING
        entry.window = entry.staff = None

    def on_reactivated(self, event: Event, data: Mapping[str, Any]) -> None:
        self.back_in_line(self.entry(data))

    def on_held(self, event: Event, data: Mapping[str, Any]) -> None:
        entry = self.entry(data)
        entry.state = TicketState.HELD
        entry.window, entry.staff = data.get("window"), data.get("staff")

    def on_window_closed(self, event: Event, data: Mapping[str, Any]) -> None:
        for entry_id in data.get("requeued", ()):
            entry = self.entries.get(entry_id)
            if entry is not None:
                self.back_in_line(entry)

    def on_transferred(self, event: Event, data: Mapping[str, Any]) -> None:
        old = self.entry(data)
        old.state = TicketState.TRANSFERRED
        old.window, old.staff = data.get("from_window"), data.get("staff")
        new_id = str(data["new_id"])
        self.entries[new_id] = _Entry(
            new_id, self.today, str(data["service"]), old.priority, event.at, False
        )

    def on_finished(self, event: Event, data: Mapping[str, Any]) -> None:
        entry = self.entry(data)
        entry.state = (
            TicketState.BACK_OFFICE
            if data.get("outcome") == Outcome.BACK_OFFICE
            else TicketState.DONE
        )
        entry.window, entry.staff = data.get("window"), data.get("staff")
        if entry.last_call_at is not None:
            entry.handle_s = (event.at - entry.last_call_at).total_seconds()

    def on_rated(self, event: Event, data: Mapping[str, Any]) -> None:
        score = int(data["score"])
        for scope in self.scopes(
            self.entry_service(data["id"]), data.get("window"), data.get("staff")
        ):
            for acc in scope.accs(self.today):
                acc.scores.append(score)

    def on_cancelled(self, event: Event, data: Mapping[str, Any]) -> None:
        entry = self.entry(data)
        entry.state = TicketState.CANCELLED
        entry.window = entry.staff = None

    def on_case_opened(self, event: Event, data: Mapping[str, Any]) -> None:
        ticket = self.entries.get(str(data.get("ticket")))
        window = ticket.window if ticket is not None else None
        self.bump("cases_opened", self.today, data.get("service"), window, data.get("staff"))

    def on_case_ready(self, event: Event, data: Mapping[str, Any]) -> None:
        # Counted at the end: an older event's service comes from the case's opening.
        service = data.get("service")
        self.ready.append(_Ready(str(data["case"]), self.today, data.get("staff"), service))

    def on_case_picked_up(self, event: Event, data: Mapping[str, Any]) -> None:
        ticket = self.entries.get(str(data.get("ticket")))
        service = ticket.service if ticket is not None else None
        staff = ticket.staff if ticket is not None else None
        self.bump("cases_picked_up", self.today, service, data.get("window"), staff)

    def on_inquiry(self, event: Event, data: Mapping[str, Any]) -> None:
        service, staff = data.get("service"), data.get("staff")
        self.bump("inquiries", self.today, service, staff=staff)
        if data.get("referred_to"):
            self.bump("referrals", self.today, service, staff=staff)

    # ------------------------------------------------------------------ per-entry figures

    def settle(self, today: dt.date | None) -> None:
        self.settle_entries()
        self.settle_cases(today)

    def settle_entries(self) -> None:
        """Count the entries seen so far and forget them (a day's entries end with it)."""
        for entry in self.entries.values():
            if entry.root:
                hour = self.local_hour(entry.joined_at) if entry.joined_at else None
                for scope in self.scopes(entry.service):
                    for acc in scope.accs(entry.day):
                        acc.counts["issued"] += 1
                        if entry.priority:
                            acc.counts["priority_issued"] += 1
                    if hour is not None and scope.tracked:
                        scope.hour(hour).arrivals += 1
            self.count_calls(entry)
            outcome = "in_progress" if entry.state in _ACTIVE else str(entry.state)
            self.bump(outcome, entry.day, entry.service, entry.window, entry.staff)
            if entry.handle_s is not None:
                for scope in self.scopes(entry.service, entry.window, entry.staff):
                    for acc in scope.accs(entry.day):
                        acc.handles.append(entry.handle_s)
        self.entries.clear()

    def count_calls(self, entry: _Entry) -> None:
        if entry.first_call_at is None:
            return
        scopes = [
            *self.scopes(entry.service),
            *(self.scope(("window", n)) for n in entry.called_windows),
            *(self.scope(("staff", s)) for s in entry.called_staff),
        ]
        for scope in scopes:
            for acc in scope.accs(entry.day):
                acc.counts["called"] += 1
                if entry.priority:
                    acc.counts["priority_called"] += 1
        if entry.joined_at is None:
            return
        wait = (entry.first_call_at - entry.joined_at).total_seconds()
        target = self.targets.get(entry.service)
        over = target is not None and wait > target
        hour = self.local_hour(entry.joined_at)
        for scope in self.scopes(entry.service, entry.first_window, entry.first_staff):
            for acc in scope.accs(entry.day):
                acc.waits.append(wait)
                if over:
                    acc.counts["over_target"] += 1
            if scope.tracked:
                bucket = scope.hour(hour)
                bucket.waits.append(wait)
                if over:
                    bucket.over_target += 1

    def settle_cases(self, today: dt.date | None) -> None:
        missing = {r.case for r in self.ready if r.service is None and r.case not in self.cases}
        if self.resolve_cases is not None:
            for event in self.resolve_cases(missing, self.first, self.last):
                if event.type is EventType.CASE_OPENED:
                    self.remember_case(event.data)
                elif event.type is EventType.CASE_READY:
                    self.remember_ready(event)
        for ready in self.ready:
            opened = self.cases.get(ready.case)
            service = ready.service or (opened.service if opened is not None else None)
            self.bump("cases_ready", ready.day, service, staff=ready.staff)
        for case_id, info in self.cases.items():
            promised = info.promised
            if promised is None or not self.first <= promised <= self.last:
                continue
            self.bump("cases_due", promised, info.service, staff=info.staff)
            made_ready = self.ready_on.get(case_id)
            if made_ready is not None and made_ready <= promised:
                self.bump("cases_kept", promised, info.service, staff=info.staff)
            elif (today is not None and promised < today) or promised in self.closed:
                self.bump("cases_broken", promised, info.service, staff=info.staff)

    # ------------------------------------------------------------------ result

    def result(
        self,
        kind: ReportKind,
        scope: Scope,
        today: dt.date | None,
        staff_names: Mapping[str, str],
    ) -> Report:
        self.settle(today)
        config, sat = self.config, self.satisfied_min
        services: list[ServiceRow] = []
        for service in config.services:
            figures = self.scopes_by_key["service", service.id].all.freeze(sat)
            services.append(
                ServiceRow(
                    service.id,
                    service.prefix,
                    service.name_zh,
                    service.name_en,
                    service.target_wait_min,
                    figures,
                )
            )
        known = {s.id for s in config.services}
        for key in sorted(
            (k for k in self.scopes_by_key if k[0] == "service" and k[1] not in known),
            key=lambda k: str(k[1]),
        ):
            sid = str(key[1])
            services.append(
                ServiceRow(sid, "", sid, sid, None, self.scopes_by_key[key].all.freeze(sat))
            )
        window_types = {w.number: w.type for w in config.windows}
        numbers = sorted(int(k[1]) for k in self.scopes_by_key if k[0] == "window")
        windows = tuple(
            WindowRow(
                number,
                str(window_types.get(number, "")),
                f"{number}号窗口",
                f"Window {number}",
                self.scopes_by_key["window", number].all.freeze(sat),
            )
            for number in numbers
        )
        staff = tuple(
            StaffRow(
                str(key[1]),
                staff_names.get(str(key[1]), ""),
                self.scopes_by_key[key].all.freeze(sat),
            )
            for key in sorted(
                (k for k in self.scopes_by_key if k[0] == "staff"), key=lambda k: str(k[1])
            )
        )
        chosen = self.scopes_by_key.get(_scope_key(scope)) or _Scope()
        days = []
        for offset in range((self.last - self.first).days + 1):
            day = self.first + dt.timedelta(days=offset)  # never past ``last`` (9999-12-31)
            acc = chosen.days.get(day)
            days.append(
                DayRow(
                    day,
                    self.day_types.get(day) or str(config.calendar.day_type(day)),
                    self.status(day, today),
                    acc.freeze(sat) if acc is not None else Figures(),
                )
            )
        hours = tuple(
            HourRow(hour, h.arrivals, durations(h.waits), h.over_target)
            for hour, h in sorted(chosen.hours.items())
        )
        return Report(
            kind=kind,
            first=self.first,
            last=self.last,
            center_zh=config.center.name_zh,
            center_en=config.center.name_en,
            last_seq=self.last_seq,
            scope=scope,
            total=chosen.all.freeze(sat),
            days=tuple(days),
            hours=hours,
            services=tuple(services),
            windows=windows,
            staff=staff,
        )

    def status(self, day: dt.date, today: dt.date | None) -> DayStatus:
        if day in self.closed:
            return DayStatus.CLOSED
        if today is not None and day > today:
            return DayStatus.FUTURE
        if day not in self.seen:
            return DayStatus.NO_DATA
        if today is not None and day < today:
            return DayStatus.UNCLOSED
        return DayStatus.OPEN


def _scope_key(scope: Scope) -> _Key:
    if scope.service is not None:
        return ("service", scope.service)
    if scope.window is not None:
        return ("window", scope.window)
    if scope.staff is not None:
        return ("staff", scope.staff)
    return _TOTAL


_Handler = Callable[[_Builder, Event, Mapping[str, Any]], None]
_HANDLERS: Final[dict[EventType, _Handler]] = {
    EventType.DAY_OPENED: _Builder.on_day_opened,
    EventType.DAY_CLOSED: _Builder.on_day_closed,
    EventType.TICKET_ISSUED: _Builder.on_issued,
    EventType.TICKET_CALLED: _Builder.on_called,
    EventType.TICKET_RECALLED: _Builder.on_recalled,
    EventType.TICKET_STARTED: _Builder.on_started,
    EventType.TICKET_NO_SHOW: _Builder.on_no_show,
    EventType.TICKET_REACTIVATED: _Builder.on_reactivated,
    EventType.TICKET_HELD: _Builder.on_held,
    EventType.TICKET_TRANSFERRED: _Builder.on_transferred,
    EventType.TICKET_FINISHED: _Builder.on_finished,
    EventType.TICKET_RATED: _Builder.on_rated,
    EventType.TICKET_CANCELLED: _Builder.on_cancelled,
    EventType.WINDOW_CLOSED: _Builder.on_window_closed,
    EventType.CASE_OPENED: _Builder.on_case_opened,
    EventType.CASE_READY: _Builder.on_case_ready,
    EventType.CASE_PICKED_UP: _Builder.on_case_picked_up,
    EventType.INQUIRY_LOGGED: _Builder.on_inquiry,
}


def build_report(
    config: CenterConfig,
    events: Iterable[Event],
    first: dt.date,
    last: dt.date,
    *,
    kind: ReportKind = "range",
    scope: Scope = CENTER,
    today: dt.date | None = None,
    staff_names: Mapping[str, str] | None = None,
    resolve_cases: CaseResolver | None = None,
) -> Report:
    """Compute the statistics of service days ``first``–``last`` from the log (pure, no I/O).

    ``events`` may be just the range's events (``Store.range_events``) or a longer stretch
    of the log in seq order; events of other days are skipped. ``today`` (the center's
    current service day) tells an open day from a past one that never closed and from a
    future one. ``resolve_cases`` returns case events from outside the range (see
    ``CaseResolver``): openings of cases made ready in the range (for ``case.ready`` events
    written before they named their service), openings of cases promised in the range and
    their ``case.ready``. With no events every
    count is 0 and every mean / p90 / max / share is None.
    """
    if last < first:
        raise ValueError(f"the range ends ({last}) before it starts ({first})")
    builder = _Builder(config, first, last, resolve_cases, scope)
    builder.feed(events)
    return builder.result(kind, scope, today, staff_names or {})


def daily_report(
    config: CenterConfig,
    events: Iterable[Event],
    day: dt.date,
    *,
    scope: Scope = CENTER,
    today: dt.date | None = None,
    staff_names: Mapping[str, str] | None = None,
    resolve_cases: CaseResolver | None = None,
) -> Report:
    """The statistics of service day ``day`` (see ``build_report``)."""
    return build_report(
        config,
        events,
        day,
        day,
        kind="daily",
        scope=scope,
        today=today,
        staff_names=staff_names,
        resolve_cases=resolve_cases,
    )


def month_bounds(month: str) -> tuple[dt.date, dt.date]:
    """First and last day of ``YYYY-MM``; ValueError when it is not one."""
    match = re.fullmatch(r"(\d{4})-(\d{2})", month.strip())
    try:
        if match is None:
            raise ValueError(month)
        first = dt.date(int(match[1]), int(match[2]), 1)
    except ValueError as err:
        raise ValueError(f"month must be YYYY-MM, not {month!r}") from err
    if first.month == 12:
        return first, first.replace(day=31)
    return first, first.replace(month=first.month + 1) - dt.timedelta(days=1)
