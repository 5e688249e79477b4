"""The hub's time: the wall clock, never earlier than what the log already holds; jumps noted."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

_LOGGER = logging.getLogger(__name__)

# A step this large between two readings (against the monotonic clock) is a clock jump, not
# NTP's slewing, which moves the clock by at most half a millisecond per second.
CLOCK_JUMP_S: Final = 60.0
# Diagnostics keep the latest jumps only.
CLOCK_JUMPS_KEPT: Final = 20


@dataclass(frozen=True, slots=True)
class ClockJump:
    """The wall clock moved ``seconds`` (negative: backwards) more than the time that passed."""

    seen_at: dt.datetime
    expected: dt.datetime
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """Return the diagnostics form."""
        return {
            "seen_at": self.seen_at.isoformat(),
            "expected": self.expected.isoformat(),
            "seconds": round(self.seconds, 1),
        }


class ForwardClock:
    """Wall-clock readings that only move forward.

    While the wall clock is behind the latest time handed out (or the latest event in the log),
    the time stands still at that moment: a service day never reopens, event times never go
    backwards and durations are never negative. Jumps either way are logged and kept.
    """

    def __init__(
        self,
        wall: Callable[[], dt.datetime],
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._wall = wall
        self._monotonic = monotonic
        self._floor: dt.datetime | None = None
        self._last: tuple[dt.datetime, float] | None = None
        self._behind_s = 0.0
        self.jumps: deque[ClockJump] = deque(maxlen=CLOCK_JUMPS_KEPT)

    def start_after(self, floor: dt.datetime | None) -> None:
        """Never hand out a time before ``floor`` (the latest event already in the log)."""
        if floor is None:
            return
        if self._floor is None or floor > self._floor:
            self._floor = floor
        wall = self._wall()
        behind = (floor - wall).total_seconds()
        if behind > CLOCK_JUMP_S:
            self._note(ClockJump(wall, floor, -behind), "behind the event log")

    def __call__(self) -> dt.datetime:
        wall = self._wall()
        mono = self._monotonic()
        if self._last is not None:
            last_wall, last_mono = self._last
            expected = last_wall + dt.timedelta(seconds=mono - last_mono)
            drift = (wall - expected).total_seconds()
            if abs(drift) > CLOCK_JUMP_S:
                self._note(ClockJump(wall, expected, drift), "jumped")
        self._last = (wall, mono)
        if self._floor is not None and wall < self._floor:
            self._behind_s = (self._floor - wall).total_seconds()
            return self._floor
        self._behind_s = 0.0
        self._floor = wall
        return wall

    def _note(self, jump: ClockJump, what: str) -> None:
        self.jumps.append(jump)
        _LOGGER.warning(
            "the system clock %s by %+.0f s (now %s, expected %s); the hub's time does not go "
            "backwards, so a closed service day never reopens",
            what,
            jump.seconds,
            jump.seen_at.isoformat(),
            jump.expected.isoformat(),
        )

    def diagnostics(self) -> dict[str, Any]:
        """Clock state for technicians: how far behind the wall clock is, the latest jumps."""
        return {
            "now": self._floor.isoformat() if self._floor else None,
            "wall_behind_s": round(self._behind_s, 1),
            "jumps": [jump.to_dict() for jump in self.jumps],
        }
