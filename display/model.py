"""The lobby model: what the hall looks like, fed by the hub's event stream. Pure, no I/O.

``LobbyModel.apply`` takes one stream message (the snapshot or an event) and returns the calls
to announce; ``tick`` advances the featured call. Times are passed in (``mono`` a monotonic
second, ``wall`` an aware datetime), so tests replay a day without sleeping.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from qcall.client import LobbySettings, PublicFigures, StreamMessage

# Each call stays featured at least this long, even when calls come faster (ui.md rule 5).
FEATURE_MIN_S: Final = 7.0
# A new call flashes this long at 2 Hz, then stays steady (ui.md rule 4: ≤ 10 s, ≤ 3 flashes/s).
FLASH_S: Final = 6.0
FLASH_PERIOD_S: Final = 1.0
# Calls waiting for their turn as the featured call; beyond this the oldest waiting one is
# skipped (it stays in the list and its window's row), so the featured call never lags
# minutes behind a busy hall.
FEATURE_QUEUE_MAX: Final = 3
# Calls listed under the featured one (ui.md rule 6: at least four).
RECENT_CALLS: Final = 6

# Events after which the waiting counts must be fetched again (they carry no counts).
WAITING_EVENTS: Final = frozenset(
    {
        "ticket.issued",
        "ticket.called",
        "ticket.no_show",
        "ticket.reactivated",
        "ticket.transferred",
        "ticket.cancelled",
        "window.closed",
        "day.opened",
        "day.closed",
    }
)
_ENDS_AT_WINDOW: Final = frozenset(
    {"ticket.finished", "ticket.no_show", "ticket.held", "ticket.cancelled"}
)


@dataclass(frozen=True, slots=True)
class Call:
    """A call shown and announced: ticket number at a window."""

    number: str
    window: int
    seq: int
    recall: bool = False
    lag_s: float = 0.0  # how late it reached the screen (0 for live events)


@dataclass(frozen=True, slots=True)
class WindowStatus:
    """One window as the hall sees it."""

    number: int
    type: str = "comprehensive"
    open: bool = False
    paused: bool = False
    serving: bool = False
    current: str | None = None  # ticket number
    current_id: str | None = None

    @property
    def state(self) -> str:
        """``closed``, ``paused``, ``calling``, ``serving`` or ``idle``."""
        if not self.open:
            return "closed"
        if self.paused:
            return "paused"
        if self.current is None:
            return "idle"
        return "serving" if self.serving else "calling"


@dataclass(slots=True)
class LobbyModel:
    """The hall state a lobby screen shows; ``windows`` limits it to one zone."""

    zone: frozenset[int] | None = None
    settings: LobbySettings | None = None
    figures: PublicFigures | None = None
    windows: dict[int, WindowStatus] = field(default_factory=dict)
    waiting: dict[str, int] = field(default_factory=dict)
    recent: deque[Call] = field(default_factory=lambda: deque(maxlen=RECENT_CALLS))
    seq: int | None = None
    online: bool = False
    featured: Call | None = None
    featured_since: float = float("-inf")
    queued: deque[Call] = field(default_factory=deque)
    version: int = 0  # bumped on every visible change
    waiting_stale: bool = False
    _skew: float = float("inf")

    # ----------------------------------------------------------------- inputs

    def shows(self, window: int) -> bool:
        """Whether this screen shows (and announces) a window."""
        return self.zone is None or window in self.zone

    def set_settings(self, settings: LobbySettings) -> bool:
        """New lobby settings from the hub; return whether anything changed."""
        if self.settings is not None and self.settings["version"] == settings["version"]:
            return False
        self.settings = settings
        for raw in settings["windows"]:
            number = int(raw["number"])
            if self.shows(number):
                known = self.windows.get(number, WindowStatus(number))
                self.windows[number] = replace(known, type=str(raw["type"]))
        self.version += 1
        return True

    def set_figures(self, figures: PublicFigures) -> bool:
        """Today's public figures; return whether they changed."""
        if figures == self.figures:
            return False
        self.figures = figures
        self.version += 1
        return True

    def set_waiting(self, waiting: Mapping[str, int]) -> bool:
        """Fresh waiting counts per service; return whether they changed."""
        self.waiting_stale = False
        counts = {str(k): int(v) for k, v in waiting.items()}
        if counts == self.waiting:
            return False
        self.waiting = counts
        self.version += 1
        return True

    def set_online(self, online: bool) -> bool:
        """The event stream is up or down; return whether that changed."""
        if online == self.online:
            return False
        self.online = online
        self.version += 1
        return True

    def apply(self, message: StreamMessage, mono: float, wall: dt.datetime) -> list[Call]:
        """Apply a stream message; return the calls (and recalls) to announce, in order."""
        kind = message["type"]
        data: Mapping[str, Any] = message["data"]
        if kind == "snapshot":
            self._snapshot(data, message["seq"])
            return []
        self.seq = message["seq"]
        if kind in WAITING_EVENTS:
            self.waiting_stale = True
        lag = self._lag(message.get("at"), wall)
        window: Any = data.get("window")
        calls: list[Call] = []
        if kind in ("ticket.called", "ticket.recalled"):
            number = int(window)
            if self.shows(number):
                call = Call(
                    str(data["number"]),
                    number,
                    message["seq"],
                    recall=kind == "ticket.recalled",
                    lag_s=lag,
                )
                known = self.windows.get(number, WindowStatus(number, open=True))
                self.windows[number] = replace(
                    known, current=call.number, current_id=data.get("id"), serving=False
                )
                self.recent.appendleft(call)
                self._feature(call, mono)
                calls.append(call)
        elif kind == "ticket.started":
            self._update(int(window), serving=True)
        elif kind in _ENDS_AT_WINDOW and window is not None:
            self._clear(int(window), data.get("id"))
        elif kind == "ticket.transferred":
            if data.get("from_window") is not None:  # None: moved while waiting
                self._clear(int(data["from_window"]), data.get("id"))
        elif kind == "window.opened":
            self._update(int(window), open=True, paused=False)
        elif kind == "window.closed":
            self._update(int(window), open=False, paused=False, current=None, current_id=None)
            self._unfeature(int(window), mono)
        elif kind == "window.paused":
            self._update(int(window), paused=True)
        elif kind == "window.resumed":
            self._update(int(window), paused=False)
        elif kind == "day.opened":
            self.recent.clear()
            self.queued.clear()
            self.featured = None
            self.version += 1
        elif kind == "day.closed":
            for number in data.get("closed_windows", []):
                self._update(int(number), open=False, paused=False, current=None, current_id=None)
                self._unfeature(int(number), mono)
        return calls

    def tick(self, mono: float) -> bool:
        """Feature the next queued call once the current one had its time; return if changed.

        A queued call whose window has moved on (served, no-show, the next call) is skipped:
        the card never sends residents to a window for a number it no longer has.
        """
        if not self.queued or mono - self.featured_since < FEATURE_MIN_S:
            return False
        upcoming = self._next_live()
        if upcoming is None:
            return False
        self.featured = upcoming
        self.featured_since = mono
        self.version += 1
        return True

    def _next_live(self) -> Call | None:
        """The oldest queued call still current at its window (stale ones are dropped)."""
        while self.queued:
            call = self.queued.popleft()
            known = self.windows.get(call.window)
            if known is None or known.current == call.number:
                return call
        return None

    # ----------------------------------------------------------------- derived

    def flash_on(self, mono: float) -> bool:
        """Whether the featured call is in the bright half of its flash."""
        age = mono - self.featured_since
        if self.featured is None or age >= FLASH_S or age < 0:
            return False
        return (age % FLASH_PERIOD_S) < FLASH_PERIOD_S / 2

    def flashing(self, mono: float) -> bool:
        """Whether the featured call is still flashing."""
        return self.featured is not None and 0 <= mono - self.featured_since < FLASH_S

    def next_deadline(self, mono: float) -> float | None:
        """The next time the picture changes by itself (flash edge, queued feature)."""
        times: list[float] = []
        if self.flashing(mono):
            age = mono - self.featured_since
            times.append(mono + (FLASH_PERIOD_S / 2 - age % (FLASH_PERIOD_S / 2)))
        if self.queued:
            times.append(self.featured_since + FEATURE_MIN_S)
        return min(times) if times else None

    def shown_windows(self) -> list[WindowStatus]:
        """The windows of this screen, by number."""
        return [self.windows[n] for n in sorted(self.windows) if self.shows(n)]

    def waiting_groups(self) -> list[tuple[str, str, int]]:
        """Waiting counts per service group (department): ``(name_zh, name_en, count)``."""
        if self.settings is None:
            return []
        by_service = {s["id"]: s["department"] for s in self.settings["services"]}
        served = self._zone_services()
        counts: dict[str, int] = {}
        for service, count in self.waiting.items():
            group = by_service.get(service)
            if group is not None and (served is None or service in served):
                counts[group] = counts.get(group, 0) + count
        return [
            (d["name_zh"], d["name_en"], counts.get(d["id"], 0))
            for d in self.settings["departments"]
            if d["id"] in counts
        ]

    def _zone_services(self) -> frozenset[str] | None:
        """Services the zone's windows serve (None: the whole hall, or a hub that does not say)."""
        if self.zone is None or self.settings is None:
            return None
        windows = [w for w in self.settings["windows"] if self.shows(int(w["number"]))]
        if any("services" not in w for w in windows):
            return None
        return frozenset(str(s) for w in windows for s in w["services"])

    # ----------------------------------------------------------------- internals

    def _snapshot(self, data: Mapping[str, Any], seq: int) -> None:
        self.seq = seq
        windows: dict[int, WindowStatus] = {}
        for raw in data.get("windows", []):
            number = int(raw["number"])
            if not self.shows(number):
                continue
            current = raw.get("current")
            state = str(raw.get("state", "closed"))
            windows[number] = WindowStatus(
                number,
                type=str(raw.get("type", "comprehensive")),
                open=state != "closed",
                paused=state == "paused",
                serving=state == "serving",
                current=None if current is None else str(current["number"]),
                current_id=None if current is None else str(current["id"]),
            )
        self.windows = windows
        self.waiting = {str(k): int(v) for k, v in data.get("waiting", {}).items()}
        self.waiting_stale = False
        # recent_calls is newest first; a snapshot is history, so nothing flashes or speaks.
        recent = [
            Call(str(c["number"]), int(c["window"]), seq)
            for c in data.get("recent_calls", [])
            if self.shows(int(c["window"]))
        ]
        self.recent = deque(recent[:RECENT_CALLS], maxlen=RECENT_CALLS)
        self.queued.clear()
        # The newest call whose window still has that ticket (a closed window's call is over).
        self.featured = next(
            (c for c in recent if c.number == getattr(windows.get(c.window), "current", None)),
            None,
        )
        self.featured_since = float("-inf")
        self.version += 1

    def _feature(self, call: Call, mono: float) -> None:
        if self.featured is None or mono - self.featured_since >= FEATURE_MIN_S:
            self.featured = call
            self.featured_since = mono
        else:
            self.queued.append(call)
            while len(self.queued) > FEATURE_QUEUE_MAX:
                self.queued.popleft()
        self.version += 1

    def _update(self, number: int, **changes: Any) -> None:
        if not self.shows(number):
            return
        known = self.windows.get(number, WindowStatus(number))
        updated = replace(known, **changes)
        if updated != known:
            self.windows[number] = updated
            self.version += 1

    def _unfeature(self, number: int, mono: float) -> None:
        """A closed window's call is over: the next queued call, or the welcome text."""
        if self.featured is None or self.featured.window != number:
            return
        self.featured = self._next_live()
        self.featured_since = mono if self.featured is not None else float("-inf")
        self.version += 1

    def _clear(self, number: int, ticket_id: str | None) -> None:
        known = self.windows.get(number)
        if known is None or (ticket_id is not None and known.current_id not in (None, ticket_id)):
            return
        self._update(number, current=None, current_id=None, serving=False)

    def _lag(self, at: str | None, wall: dt.datetime) -> float:
        """How late an event arrived, robust to a constant clock difference with the hub.

        The smallest (receive − event) difference seen is taken as the clock offset plus the
        network time; a replay after a reconnect arrives late by the outage on top of it.
        """
        if at is None:
            return 0.0
        try:
            delta = (wall - dt.datetime.fromisoformat(at)).total_seconds()
        except (ValueError, TypeError):
            return 0.0
        self._skew = min(self._skew, delta)
        return max(0.0, delta - self._skew)


def parse_zone(text: str) -> frozenset[int]:
    """Parse ``--windows 1-4,8`` into window numbers; raise ValueError on bad input."""
    numbers: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            raise ValueError(f"empty item in {text!r}")
        low, dash, high = part.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise ValueError(f"{part!r} is not a window number or range like 1-4")
        first, last = int(low), int(high) if dash else int(low)
        if first < 1 or last < first or last > 999:
            raise ValueError(f"{part!r} is not a valid range (1–999, low to high)")
        numbers.update(range(first, last + 1))
    return frozenset(numbers)
