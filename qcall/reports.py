"""Daily statistics derived only from the append-only event log (DESIGN.md §5 Statistics).

``daily_report(config, events, day)`` is pure: it reads events, never edits them, and does no
I/O, so ``daily_report(config, store.day_events(day), day)`` is all a caller needs. Events of
other service days in the iterable are ignored (an event belongs to the day of the latest
``day.opened`` before it; the ``day.closed`` of a day comes before the next ``day.opened``).

Counting rules
--------------
A *ticket* is what the resident holds (one ``ticket.issued``). A transfer ends the current
*entry* as ``transferred`` and creates a new entry (``new_id``) with the same number in the
target line, so one ticket may have several entries.

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
  ``served`` = ``done`` + ``back_office``. For the day, ``issued`` = ``done`` +
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
- Cases: ``cases_opened`` (service, accepting staff, window), ``cases_ready`` (day and the
  staff member who marked it ready; ``case.ready`` does not say the service), and
  ``cases_picked_up`` (the pickup ticket's service, window and staff).
- ``inquiries`` / ``referrals`` (首问负责: ``inquiry.logged``, with ``referred_to``): day,
  staff member, and service when the log names one.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

from qcall.config import CenterConfig
from qcall.events import Event, EventType
from qcall.model import DayType, Outcome, TicketState, WindowType

Lang = Literal["zh", "en", "both"]
LANGS: Final = ("zh", "en", "both")
MAX_SCORE: Final = 5

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
    """Resident ratings: count, mean and the number of each score 1–5."""

    count: int = 0
    mean: float | None = None
    distribution: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)


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
    """One staff member's figures (the log carries staff ids)."""

    id: str
    figures: Figures


@dataclass(frozen=True, slots=True)
class DailyReport:
    """Statistics of one service day.

    ``services`` and ``windows`` list every configured one (in configuration order; ids met in
    the log but no longer configured follow), ``staff`` everyone who appears in the log.
    ``closed`` tells whether the day's ``day.closed`` is in the log; ``last_seq`` is the seq of
    the day's last event (0 when there is none).
    """

    day: dt.date
    center_zh: str
    center_en: str
    day_type: str
    closed: bool
    last_seq: int
    total: Figures
    services: tuple[ServiceRow, ...]
    windows: tuple[WindowRow, ...]
    staff: tuple[StaffRow, ...]


# --------------------------------------------------------------------------- accumulation


def nearest_rank_p90(samples: Iterable[float]) -> float | None:
    """Return the ⌈0.9·n⌉-th smallest sample, or None for no samples."""
    ordered = sorted(samples)
    if not ordered:
        return None
    return ordered[(9 * len(ordered) + 9) // 10 - 1]


def _durations(samples: list[float]) -> Durations:
    if not samples:
        return Durations()
    return Durations(
        count=len(samples),
        mean_s=math.fsum(samples) / len(samples),
        p90_s=nearest_rank_p90(samples),
        max_s=max(samples),
    )


@dataclass(slots=True)
class _Acc:
    counts: dict[str, int] = field(default_factory=dict)
    waits: list[float] = field(default_factory=list)
    handles: list[float] = field(default_factory=list)
    scores: list[int] = field(default_factory=list)

    def bump(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    def freeze(self) -> Figures:
        c = self.counts
        distribution = tuple(self.scores.count(score) for score in range(1, MAX_SCORE + 1))
        over = c.get("over_target", 0)
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
            wait=_durations(self.waits),
            handle=_durations(self.handles),
            over_target=over,
            over_target_pct=100.0 * over / len(self.waits) if self.waits else None,
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
            ),
            cases_opened=c.get("cases_opened", 0),
            cases_ready=c.get("cases_ready", 0),
            cases_picked_up=c.get("cases_picked_up", 0),
            inquiries=c.get("inquiries", 0),
            referrals=c.get("referrals", 0),
        )


@dataclass(slots=True)
class _Entry:
    """One line entry as the log tells it."""

    id: str
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


_Key = tuple[str, str | int]
_TOTAL: Final[_Key] = ("total", "")
_ACTIVE: Final = frozenset(
    {TicketState.WAITING, TicketState.CALLED, TicketState.SERVING, TicketState.HELD}
)


class _Builder:
    def __init__(self, config: CenterConfig, day: dt.date) -> None:
        self.config = config
        self.day = day
        self.tz = ZoneInfo(config.center.timezone)
        self.targets = {s.id: s.target_wait_min * 60.0 for s in config.services}
        self.accs: dict[_Key, _Acc] = {_TOTAL: _Acc()}
        for service in config.services:
            self.accs["service", service.id] = _Acc()
        for window in config.windows:
            self.accs["window", window.number] = _Acc()
        self.entries: dict[str, _Entry] = {}
        self.day_type: str | None = None
        self.closed = False
        self.last_seq = 0

    # ------------------------------------------------------------------ helpers

    def scopes(
        self, service: str | None = None, window: int | None = None, staff: str | None = None
    ) -> list[_Acc]:
        keys: list[_Key] = [_TOTAL]
        if service is not None:
            keys.append(("service", service))
        if window is not None:
            keys.append(("window", window))
        if staff is not None:
            keys.append(("staff", staff))
        return [self.accs.setdefault(key, _Acc()) for key in keys]

    def bump(
        self,
        name: str,
        service: str | None = None,
        window: int | None = None,
        staff: str | None = None,
    ) -> None:
        for acc in self.scopes(service, window, staff):
            acc.bump(name)

    def entry(self, data: Mapping[str, Any]) -> _Entry:
        """Return the entry an event names; a stream cut mid-day may not have issued it."""
        entry_id = str(data["id"])
        entry = self.entries.get(entry_id)
        if entry is None:
            entry = _Entry(
                entry_id, str(data.get("service", "")), bool(data.get("priority")), None, False
            )
            self.entries[entry_id] = entry
        return entry

    def entry_service(self, entry_id: object) -> str | None:
        entry = self.entries.get(str(entry_id))
        return entry.service if entry is not None else None

    # ------------------------------------------------------------------ the pass

    def feed(self, events: Iterable[Event]) -> None:
        current: dt.date | None = None
        for event in events:
            if event.type == EventType.DAY_OPENED:
                current = dt.date.fromisoformat(event.data["day"])
            owner = current if current is not None else event.at.astimezone(self.tz).date()
            if owner != self.day:
                continue
            self.last_seq = max(self.last_seq, event.seq)
            handler = _HANDLERS.get(EventType(event.type))
            if handler is not None:
                handler(self, event, event.data)

    def on_day_opened(self, event: Event, data: Mapping[str, Any]) -> None:
        self.day_type = str(data.get("day_type") or "") or None

    def on_day_closed(self, event: Event, data: Mapping[str, Any]) -> None:
        if data.get("day") == self.day.isoformat():
            self.closed = True
        for entry_id in data.get("expired", ()):
            entry = self.entries.get(entry_id)
            if entry is not None and entry.state in _ACTIVE:
                entry.state = TicketState.EXPIRED

    def on_issued(self, event: Event, data: Mapping[str, Any]) -> None:
        entry_id = str(data["id"])
        self.entries[entry_id] = _Entry(
            entry_id, str(data["service"]), bool(data.get("priority")), event.at, True
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
        self.bump("recalls", self.entry_service(data["id"]), data.get("window"), data.get("staff"))

    def on_started(self, event: Event, data: Mapping[str, Any]) -> None:
        self.entry(data).state = TicketState.SERVING

    def on_no_show(self, event: Event, data: Mapping[str, Any]) -> None:
        entry = self.entry(data)
        entry.state = TicketState.NO_SHOW
        entry.window, entry.staff = data.get("window"), data.get("staff")

    def on_back_in_line(self, entry: _Entry) -> None:
        entry.state = TicketState.WAITING
        entry.window = entry.staff = None

    def on_reactivated(self, event: Event, data: Mapping[str, Any]) -> None:
        self.on_back_in_line(self.entry(data))

    def on_held(self, event: Event, data: Mapping[str, Any]) -> None:
        entry = self.entry(data)
        entry.state = TicketState.HELD
        entry.window, entry.staff = data.get("window"), data.get("staff")

    def on_window_closed(self, event: Event, data: Mapping[str, Any]) -> None:
        for entry_id in data.get("requeued", ()):
            entry = self.entries.get(entry_id)
            if entry is not None:
                self.on_back_in_line(entry)

    def on_transferred(self, event: Event, data: Mapping[str, Any]) -> None:
        old = self.entry(data)
        old.state = TicketState.TRANSFERRED
        old.window, old.staff = data.get("from_window"), data.get("staff")
        new_id = str(data["new_id"])
        self.entries[new_id] = _Entry(new_id, str(data["service"]), old.priority, event.at, False)

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
        for acc in self.scopes(
            self.entry_service(data["id"]), data.get("window"), data.get("staff")
        ):
            acc.scores.append(score)

    def on_cancelled(self, event: Event, data: Mapping[str, Any]) -> None:
        entry = self.entry(data)
        entry.state = TicketState.CANCELLED
        entry.window = entry.staff = None

    def on_case_opened(self, event: Event, data: Mapping[str, Any]) -> None:
        ticket = self.entries.get(str(data.get("ticket")))
        window = ticket.window if ticket is not None else None
        self.bump("cases_opened", data.get("service"), window, data.get("staff"))

    def on_case_ready(self, event: Event, data: Mapping[str, Any]) -> None:
        self.bump("cases_ready", staff=data.get("staff"))

    def on_case_picked_up(self, event: Event, data: Mapping[str, Any]) -> None:
        ticket = self.entries.get(str(data.get("ticket")))
        service = ticket.service if ticket is not None else None
        staff = ticket.staff if ticket is not None else None
        self.bump("cases_picked_up", service, data.get("window"), staff)

    def on_inquiry(self, event: Event, data: Mapping[str, Any]) -> None:
        service, staff = data.get("service"), data.get("staff")
        self.bump("inquiries", service, staff=staff)
        if data.get("referred_to"):
            self.bump("referrals", service, staff=staff)

    # ------------------------------------------------------------------ per-entry figures

    def settle(self) -> None:
        for entry in self.entries.values():
            if entry.root:
                self.bump("issued", entry.service)
                if entry.priority:
                    self.bump("priority_issued", entry.service)
            self.count_calls(entry)
            outcome = "in_progress" if entry.state in _ACTIVE else str(entry.state)
            self.bump(outcome, entry.service, entry.window, entry.staff)
            if entry.handle_s is not None:
                for acc in self.scopes(entry.service, entry.window, entry.staff):
                    acc.handles.append(entry.handle_s)

    def count_calls(self, entry: _Entry) -> None:
        if entry.first_call_at is None:
            return
        accs = [*self.scopes(entry.service)]
        accs += [self.accs.setdefault(("window", n), _Acc()) for n in entry.called_windows]
        accs += [self.accs.setdefault(("staff", s), _Acc()) for s in entry.called_staff]
        for acc in accs:
            acc.bump("called")
            if entry.priority:
                acc.bump("priority_called")
        if entry.joined_at is None:
            return
        wait = (entry.first_call_at - entry.joined_at).total_seconds()
        target = self.targets.get(entry.service)
        for acc in self.scopes(entry.service, entry.first_window, entry.first_staff):
            acc.waits.append(wait)
            if target is not None and wait > target:
                acc.bump("over_target")

    # ------------------------------------------------------------------ result

    def result(self) -> DailyReport:
        self.settle()
        config = self.config
        services: list[ServiceRow] = []
        for service in config.services:
            figures = self.accs["service", service.id].freeze()
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
        for key in sorted(k for k in self.accs if k[0] == "service" and k[1] not in known):
            sid = str(key[1])
            services.append(ServiceRow(sid, "", sid, sid, None, self.accs[key].freeze()))
        window_types = {w.number: w.type for w in config.windows}
        numbers = sorted(int(k[1]) for k in self.accs if k[0] == "window")
        windows = tuple(
            WindowRow(
                number,
                str(window_types.get(number, "")),
                f"{number}号窗口",
                f"Window {number}",
                self.accs["window", number].freeze(),
            )
            for number in numbers
        )
        staff = tuple(
            StaffRow(str(key[1]), self.accs[key].freeze())
            for key in sorted((k for k in self.accs if k[0] == "staff"), key=lambda k: str(k[1]))
        )
        return DailyReport(
            day=self.day,
            center_zh=config.center.name_zh,
            center_en=config.center.name_en,
            day_type=self.day_type or str(config.calendar.day_type(self.day)),
            closed=self.closed,
            last_seq=self.last_seq,
            total=self.accs[_TOTAL].freeze(),
            services=tuple(services),
            windows=windows,
            staff=staff,
        )


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


def daily_report(config: CenterConfig, events: Iterable[Event], day: dt.date) -> DailyReport:
    """Compute the statistics of service day ``day`` from the event log (pure, no I/O).

    ``events`` may be just that day's events (``Store.day_events(day)``) or a longer stretch
    of the log in seq order; events of other days are skipped. With no events every count is
    0 and every mean / p90 / max / share is None.
    """
    builder = _Builder(config, day)
    builder.feed(events)
    return builder.result()


# --------------------------------------------------------------------------- JSON


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _durations_json(d: Durations) -> dict[str, Any]:
    return {
        "count": d.count,
        "mean_s": _round(d.mean_s, 1),
        "p90_s": _round(d.p90_s, 1),
        "max_s": _round(d.max_s, 1),
    }


def figures_json(f: Figures) -> dict[str, Any]:
    """Return one scope's figures as JSON-able data (seconds and percent to 0.1)."""
    return {
        "issued": f.issued,
        "priority_issued": f.priority_issued,
        "called": f.called,
        "priority_called": f.priority_called,
        "served": f.served,
        "done": f.done,
        "back_office": f.back_office,
        "no_show": f.no_show,
        "transferred": f.transferred,
        "cancelled": f.cancelled,
        "expired": f.expired,
        "in_progress": f.in_progress,
        "recalls": f.recalls,
        "wait": _durations_json(f.wait),
        "handle": _durations_json(f.handle),
        "over_target": f.over_target,
        "over_target_pct": _round(f.over_target_pct, 1),
        "ratings": {
            "count": f.ratings.count,
            "mean": _round(f.ratings.mean, 2),
            "distribution": {str(i + 1): n for i, n in enumerate(f.ratings.distribution)},
        },
        "cases_opened": f.cases_opened,
        "cases_ready": f.cases_ready,
        "cases_picked_up": f.cases_picked_up,
        "inquiries": f.inquiries,
        "referrals": f.referrals,
    }


def to_json(report: DailyReport) -> dict[str, Any]:
    """Return the report as JSON-able data (``GET /api/v1/reports/daily``)."""
    return {
        "day": report.day.isoformat(),
        "day_type": report.day_type,
        "closed": report.closed,
        "last_seq": report.last_seq,
        "center": {"name_zh": report.center_zh, "name_en": report.center_en},
        "total": figures_json(report.total),
        "services": [
            {
                "id": row.id,
                "prefix": row.prefix,
                "name_zh": row.name_zh,
                "name_en": row.name_en,
                "target_wait_min": row.target_wait_min,
                **figures_json(row.figures),
            }
            for row in report.services
        ],
        "windows": [
            {
                "number": row.number,
                "type": row.type,
                "name_zh": row.name_zh,
                "name_en": row.name_en,
                **figures_json(row.figures),
            }
            for row in report.windows
        ],
        "staff": [{"id": row.id, **figures_json(row.figures)} for row in report.staff],
    }


# --------------------------------------------------------------------------- columns

Kind = Literal["int", "s", "pct", "avg", "text"]


@dataclass(frozen=True, slots=True)
class _Col:
    key: str
    zh: str
    en: str
    kind: Kind
    get: Callable[[Figures], int | float | str | None]

    def header(self, lang: str, *, csv_units: bool) -> str:
        zh, en = self.zh, self.en
        if csv_units and self.kind == "s":
            zh, en = f"{zh}(秒)", f"{en} (s)"
        if lang == "zh":
            return zh
        if lang == "en":
            return en
        return f"{zh} {en}"


def _int(name: str) -> Callable[[Figures], int | float | str | None]:
    return lambda f: int(getattr(f, name))


def _c(key: str, zh: str, en: str) -> _Col:
    return _Col(key, zh, en, "int", _int(key))


ISSUED = _c("issued", "取号", "Issued")
PRIORITY_ISSUED = _c("priority_issued", "绿色通道", "Priority")
CALLED = _c("called", "叫号", "Called")
PRIORITY_CALLED = _c("priority_called", "绿色叫号", "Priority called")
SERVED = _c("served", "办结", "Served")
DONE = _c("done", "即办", "Done")
BACK_OFFICE = _c("back_office", "流转", "Back office")
NO_SHOW = _c("no_show", "过号", "No-show")
TRANSFERRED = _c("transferred", "转移", "Transferred")
CANCELLED = _c("cancelled", "取消", "Cancelled")
EXPIRED = _c("expired", "过期", "Expired")
IN_PROGRESS = _c("in_progress", "未结束", "Open")
RECALLS = _c("recalls", "重呼", "Recalls")
WAIT = (
    _Col("wait_mean_s", "平均等候", "Wait mean", "s", lambda f: f.wait.mean_s),
    _Col("wait_p90_s", "等候P90", "Wait p90", "s", lambda f: f.wait.p90_s),
    _Col("wait_max_s", "最长等候", "Wait max", "s", lambda f: f.wait.max_s),
    _c("over_target", "超时数", "Over target"),
    _Col("over_target_pct", "超时率%", "Over target %", "pct", lambda f: f.over_target_pct),
)
HANDLE = (
    _Col("handle_mean_s", "平均办理", "Handle mean", "s", lambda f: f.handle.mean_s),
    _Col("handle_p90_s", "办理P90", "Handle p90", "s", lambda f: f.handle.p90_s),
    _Col("handle_max_s", "最长办理", "Handle max", "s", lambda f: f.handle.max_s),
)
RATING_COUNT = _Col("ratings", "评价数", "Ratings", "int", lambda f: f.ratings.count)
RATING_MEAN = _Col("rating_mean", "平均分", "Rating mean", "avg", lambda f: f.ratings.mean)


def _score(score: int) -> _Col:
    return _Col(
        f"rating_{score}",
        f"{score}分",
        f"Rated {score}",
        "int",
        lambda f: f.ratings.distribution[score - 1],
    )


RATING_SCORES = tuple(_score(score) for score in range(1, MAX_SCORE + 1))
RATING_SPREAD = _Col(
    "rating_spread",
    "评分1-5",
    "Scores 1-5",
    "text",
    lambda f: "/".join(str(n) for n in f.ratings.distribution),
)
CASES_OPENED = _c("cases_opened", "流转立案", "Cases opened")
CASES_READY = _c("cases_ready", "办结待取", "Cases ready")
CASES_PICKED_UP = _c("cases_picked_up", "已取件", "Picked up")
INQUIRIES = _c("inquiries", "首问登记", "Inquiries")
REFERRALS = _c("referrals", "转介", "Referrals")

_SERVICE_COUNTS: Final = (
    ISSUED,
    PRIORITY_ISSUED,
    CALLED,
    SERVED,
    DONE,
    BACK_OFFICE,
    NO_SHOW,
    TRANSFERRED,
    CANCELLED,
    EXPIRED,
    IN_PROGRESS,
    RECALLS,
)
_DESK_COUNTS: Final = (
    CALLED,
    PRIORITY_CALLED,
    SERVED,
    DONE,
    BACK_OFFICE,
    NO_SHOW,
    TRANSFERRED,
    EXPIRED,
    IN_PROGRESS,
    RECALLS,
)
_TIMES: Final = (*WAIT, *HANDLE)
_DAY_OTHER: Final = (CASES_OPENED, CASES_READY, CASES_PICKED_UP, INQUIRIES, REFERRALS)
_SERVICE_OTHER: Final = (CASES_OPENED, CASES_PICKED_UP, INQUIRIES)
_WINDOW_OTHER: Final = (CASES_OPENED, CASES_PICKED_UP)
_STAFF_OTHER: Final = _DAY_OTHER

# Column blocks per section; the table prints each block on its own, CSV joins them.
_DAY_BLOCKS: Final = (
    (*_SERVICE_COUNTS, PRIORITY_CALLED),
    (*_TIMES, RATING_COUNT, RATING_MEAN),
    _DAY_OTHER,
)
_SERVICE_BLOCKS: Final = (_SERVICE_COUNTS, (*_TIMES, RATING_COUNT, RATING_MEAN), _SERVICE_OTHER)
_WINDOW_BLOCKS: Final = (_DESK_COUNTS, (*_TIMES, RATING_COUNT, RATING_MEAN), _WINDOW_OTHER)
_STAFF_BLOCKS: Final = (_DESK_COUNTS, (*_TIMES, RATING_COUNT, RATING_MEAN), _STAFF_OTHER)

_WINDOW_TYPE_ZH: Final = {
    WindowType.COMPREHENSIVE: "综合窗口",
    WindowType.DEDICATED: "专用窗口",
    WindowType.REPLY: "回复窗口",
}
_DAY_TYPE_ZH: Final = {
    DayType.WEEKDAY: "工作日",
    DayType.WEEKEND_DUTY: "周末值班",
    DayType.CLOSED: "休息日",
}


def _pick(lang: str, zh: str, en: str) -> str:
    if lang == "zh":
        return zh
    if lang == "en":
        return en
    return f"{zh} {en}"


def _check_lang(lang: str) -> None:
    if lang not in LANGS:
        raise ValueError(f"lang must be one of {', '.join(LANGS)}, not {lang!r}")


def _window_type(value: str, lang: str) -> str:
    if lang == "en":
        return value
    try:
        return _WINDOW_TYPE_ZH[WindowType(value)]
    except ValueError:
        return value


def _day_type(value: str, lang: str) -> str:
    try:
        zh = _DAY_TYPE_ZH[DayType(value)]
    except ValueError:
        zh = value
    return _pick(lang, zh, value)


# --------------------------------------------------------------------------- CSV


def _csv_value(col: _Col, figures: Figures) -> str:
    value = col.get(figures)
    if value is None:
        return ""
    if col.kind in ("s", "pct"):
        return f"{float(value):.1f}"
    if col.kind == "avg":
        return f"{float(value):.2f}"
    return str(value)


def _csv_columns(blocks: tuple[tuple[_Col, ...], ...]) -> list[_Col]:
    out: list[_Col] = []
    for block in blocks:
        for col in block:
            if col.key not in {c.key for c in out}:
                if col is RATING_MEAN:
                    out += [col, *RATING_SCORES]
                else:
                    out.append(col)
    return out


def to_csv(report: DailyReport, lang: str = "zh", *, bom: bool = False) -> str:
    """Render the report as CSV: a title row, a header row and data rows per section.

    Sections (separated by an empty row): the report itself, the day's total, services,
    windows, staff. Seconds and percent have one decimal, rating means two; an empty cell
    means "no sample". ``lang`` picks the headers: ``zh``, ``en`` or ``both``. Set ``bom`` for
    spreadsheet programs that need a UTF-8 byte-order mark to read Chinese.
    """
    _check_lang(lang)
    buffer = io.StringIO()
    if bom:
        buffer.write("\ufeff")
    writer = csv.writer(buffer, lineterminator="\r\n")

    def section(
        title: tuple[str, str],
        labels: list[tuple[str, str]],
        blocks: tuple[tuple[_Col, ...], ...],
        rows: list[tuple[list[str], Figures]],
    ) -> None:
        cols = _csv_columns(blocks)
        writer.writerow([_pick(lang, *title)])
        writer.writerow(
            [_pick(lang, *label) for label in labels]
            + [c.header(lang, csv_units=True) for c in cols]
        )
        for label_values, figures in rows:
            writer.writerow(label_values + [_csv_value(c, figures) for c in cols])
        writer.writerow([])

    writer.writerow([_pick(lang, "日报", "Daily report")])
    writer.writerow(
        [
            _pick(lang, "日期", "Date"),
            _pick(lang, "中心", "Center"),
            _pick(lang, "中心英文名", "Center (en)"),
            _pick(lang, "日类型", "Day type"),
            _pick(lang, "已日结", "Day closed"),
            _pick(lang, "最后事件序号", "Last seq"),
        ]
    )
    writer.writerow(
        [
            report.day.isoformat(),
            report.center_zh,
            report.center_en,
            _day_type(report.day_type, lang),
            "1" if report.closed else "0",
            str(report.last_seq),
        ]
    )
    writer.writerow([])
    section(
        ("全天", "Day total"),
        [("日期", "Date")],
        _DAY_BLOCKS,
        [([report.day.isoformat()], report.total)],
    )
    section(
        ("按业务", "By service"),
        [
            ("业务编号", "Service id"),
            ("业务名称", "Service (zh)"),
            ("英文名称", "Service (en)"),
            ("号头", "Prefix"),
            ("目标等候(分)", "Target wait (min)"),
        ],
        _SERVICE_BLOCKS,
        [
            (
                [
                    row.id,
                    row.name_zh,
                    row.name_en,
                    row.prefix,
                    "" if row.target_wait_min is None else str(row.target_wait_min),
                ],
                row.figures,
            )
            for row in report.services
        ],
    )
    section(
        ("按窗口", "By window"),
        [
            ("窗口号", "Window"),
            ("窗口类型", "Type"),
            ("窗口名称", "Window (zh)"),
            ("英文名称", "Window (en)"),
        ],
        _WINDOW_BLOCKS,
        [
            (
                [str(row.number), _window_type(row.type, lang), row.name_zh, row.name_en],
                row.figures,
            )
            for row in report.windows
        ],
    )
    section(
        ("按工作人员", "By staff member"),
        [("工作人员", "Staff")],
        _STAFF_BLOCKS,
        [([row.id], row.figures) for row in report.staff],
    )
    return buffer.getvalue()


# --------------------------------------------------------------------------- table


def display_width(text: str) -> int:
    """Terminal columns of ``text``: East Asian wide / fullwidth characters take two."""
    width = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def _pad(text: str, width: int, *, right: bool) -> str:
    fill = " " * (width - display_width(text))
    return fill + text if right else text + fill


def _clock(seconds: float) -> str:
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _table_value(col: _Col, figures: Figures) -> str:
    value = col.get(figures)
    if value is None:
        return "-"
    if col.kind == "s":
        return _clock(float(value))
    if col.kind == "pct":
        return f"{float(value):.1f}"
    if col.kind == "avg":
        return f"{float(value):.2f}"
    return str(value)


def _grid(headers: list[list[str]], rows: list[list[str]], left: int, gap: str = "  ") -> list[str]:
    """Align cells by display width; the first ``left`` columns left-, the rest right-aligned."""
    count = len(headers[0])
    widths = [
        max(display_width(line[i]) for line in [*headers, *rows]) if rows or headers else 0
        for i in range(count)
    ]
    out = []
    for line in [*headers, *rows]:
        cells = [_pad(cell, widths[i], right=i >= left) for i, cell in enumerate(line)]
        out.append(gap.join(cells).rstrip())
    return out


def to_table(report: DailyReport, lang: str = "zh") -> str:
    """Render the report as aligned plain text for a terminal (CJK counts two columns).

    Durations are shown as m:ss (h:mm:ss from an hour on), "-" means no sample. With
    ``lang="both"`` every table has a Chinese and an English header line.
    """
    _check_lang(lang)
    header_langs = ["zh", "en"] if lang == "both" else [lang]
    name_lang = "en" if lang == "en" else "zh"
    status = (
        _pick(lang, "已日结", "day closed")
        if report.closed
        else _pick(lang, "营业中", "in progress")
    )
    center = report.center_en if lang == "en" else report.center_zh
    title = _pick(lang, "日报", "daily report")
    day_type = _day_type(report.day_type, lang)
    lines = [f"{center}  {title}  {report.day.isoformat()}  {day_type}  {status}"]
    if lang == "both":
        lines.append(report.center_en)

    def block(
        title: tuple[str, str],
        labels: list[tuple[str, str]],
        cols: tuple[_Col, ...],
        rows: list[tuple[list[str], Figures]],
    ) -> None:
        headers = [
            [_pick(h, *label) for label in labels] + [c.header(h, csv_units=False) for c in cols]
            for h in header_langs
        ]
        body = [names + [_table_value(c, figures) for c in cols] for names, figures in rows]
        lines.append("")
        lines.append(f"[{_pick(lang, *title)}]")
        lines.extend(_grid(headers, body, left=len(labels)))

    def service_name(row: ServiceRow) -> str:
        return row.name_en if name_lang == "en" else row.name_zh

    total_label = _pick(name_lang, "合计", "Total")
    service_rows = [([service_name(r)], r.figures) for r in report.services]
    service_rows.append(([total_label], report.total))
    window_rows = [
        (
            [r.name_en if name_lang == "en" else r.name_zh, _window_type(r.type, name_lang)],
            r.figures,
        )
        for r in report.windows
    ]
    staff_rows = [([r.id], r.figures) for r in report.staff]
    service_labels = [("业务", "Service")]
    window_labels = [("窗口", "Window"), ("类型", "Type")]
    staff_labels = [("工作人员", "Staff")]
    times = (*_TIMES, RATING_COUNT, RATING_MEAN, RATING_SPREAD)
    block(("按业务 · 件数", "By service · counts"), service_labels, _SERVICE_COUNTS, service_rows)
    block(
        ("按业务 · 时长与评价", "By service · times and ratings"),
        service_labels,
        times,
        service_rows,
    )
    block(
        ("按业务 · 流转与咨询", "By service · cases and inquiries"),
        service_labels,
        _DAY_OTHER,
        service_rows,
    )
    block(
        ("按窗口 · 件数", "By window · counts"),
        window_labels,
        (*_DESK_COUNTS, *_WINDOW_OTHER),
        window_rows,
    )
    block(
        ("按窗口 · 时长与评价", "By window · times and ratings"), window_labels, times, window_rows
    )
    if staff_rows:
        block(
            ("按工作人员 · 件数", "By staff · counts"),
            staff_labels,
            (*_DESK_COUNTS, *_STAFF_OTHER),
            staff_rows,
        )
        block(
            ("按工作人员 · 时长与评价", "By staff · times and ratings"),
            staff_labels,
            times,
            staff_rows,
        )
    return "\n".join(lines) + "\n"
