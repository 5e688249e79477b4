"""The announcer: one queue of calls, each spliced from the clip cache and played in turn."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from display.model import Call
from display.voice import (
    SAMPLE_RATE,
    ClipLibrary,
    Samples,
    Templates,
    announcement,
    write_wav,
)

_LOGGER = logging.getLogger(__name__)

# After the computed duration, the mixer is asked this often whether the sound has ended.
PLAYBACK_POLL_S: Final = 0.02
# A mixer that claims to still play long after the sound's length is stuck; move on.
PLAYBACK_SLACK_S: Final = 2.0
MIXER_BUFFER: Final = 1024


class Player(Protocol):
    """Plays one buffer; ``play`` starts it and returns its length in seconds."""

    available: bool

    def play(self, samples: Samples, volume: float) -> float: ...

    def busy(self) -> bool: ...


class MixerPlayer:
    """pygame.mixer output; a machine without audio is logged once and stays silent."""

    def __init__(self) -> None:
        self.available = False
        self._channel: Any = None
        try:
            import pygame.mixer

            pygame.mixer.init(SAMPLE_RATE, -16, 1, MIXER_BUFFER)
            self.available = True
        except Exception as err:  # noqa: BLE001 - any SDL audio failure means "no speakers"
            _LOGGER.warning("no audio output (%s): calls are shown, not spoken", err)

    def play(self, samples: Samples, volume: float) -> float:
        """Start playing; return the length in seconds."""
        length = len(samples) / SAMPLE_RATE
        if not self.available:
            return length
        import pygame.mixer

        sound = pygame.mixer.Sound(buffer=samples.tobytes())
        sound.set_volume(volume)
        self._channel = sound.play()
        return length

    def busy(self) -> bool:
        """Whether the last sound still plays."""
        return bool(self._channel is not None and self._channel.get_busy())


@dataclass(frozen=True, slots=True)
class Spoken:
    """One announcement that was made (or dropped)."""

    index: int
    call: Call
    seconds: float
    ready_s: float  # from the call reaching the screen to the audio being ready
    path: Path | None
    dropped: bool = False


def volume_at(lobby: Mapping[str, Any], at: dt.time) -> float:
    """The announcement volume from the lobby settings at local time ``at`` (0 when quiet)."""
    for quiet in lobby.get("quiet_hours", []):
        if dt.time.fromisoformat(quiet["start"]) <= at < dt.time.fromisoformat(quiet["end"]):
            return 0.0
    for period in lobby.get("volume_schedule", []):
        if dt.time.fromisoformat(period["start"]) <= at < dt.time.fromisoformat(period["end"]):
            return float(period["level"])
    return float(lobby.get("volume", 1.0))


def templates_from(lobby: Mapping[str, Any]) -> Templates:
    """The announcement templates of the lobby settings."""
    announce = lobby.get("announce", {})
    return Templates(
        str(announce["template_zh"]),
        str(announce["template_en"]),
        english=bool(announce.get("english", True)),
        repeat=int(announce.get("repeat", 2)),
        chime=bool(announce.get("chime", True)),
    )


class Announcer:
    """Announces calls one after the other, in call order, never overlapping.

    A call that waited in the queue (plus how late it reached the screen) longer than
    ``max_delay_s`` is dropped with a log line rather than announced minutes late.
    """

    def __init__(
        self,
        library: ClipLibrary,
        templates: Templates,
        *,
        player: Player | None,
        record_dir: Path | None = None,
        max_delay_s: float = 60.0,
        volume: Callable[[], float] = lambda: 1.0,
        clock: Callable[[], float] = time.monotonic,
        on_spoken: Callable[[Spoken], None] | None = None,
    ) -> None:
        self.library = library
        self.templates = templates
        self.max_delay_s = max_delay_s
        self.volume = volume
        self._player = player
        self._record_dir = record_dir
        self._clock = clock
        self._on_spoken = on_spoken
        self._queue: asyncio.Queue[tuple[Call, float]] = asyncio.Queue()
        self.count = 0
        self.history: list[Spoken] = []
        self.playback: list[tuple[int, float, float]] = []  # (seq, started, ended), monotonic

    def submit(self, call: Call, received: float | None = None) -> None:
        """Queue a call (received at monotonic time ``received``, default now)."""
        self._queue.put_nowait((call, self._clock() if received is None else received))

    @property
    def pending(self) -> int:
        """Calls waiting to be announced."""
        return self._queue.qsize()

    async def run(self) -> None:
        """Announce queued calls until cancelled."""
        while True:
            call, received = await self._queue.get()
            await self._announce(call, received)

    async def _announce(self, call: Call, received: float) -> None:
        waited = self._clock() - received + call.lag_s
        if waited > self.max_delay_s:
            _LOGGER.warning(
                "call %s at window %d dropped: %.0f s late (limit %g s)",
                call.number,
                call.window,
                waited,
                self.max_delay_s,
            )
            self._done(Spoken(self.count, call, 0.0, 0.0, None, dropped=True))
            return
        segments = announcement(self.templates, call.number, call.window)
        missing = self.library.missing(segments)
        if missing:
            _LOGGER.warning("clips missing for %s: %s (left out)", call.number, missing)
            segments = [s for s in segments if s not in missing]
        samples = self.library.assemble(segments)
        ready = self._clock() - received
        self.count += 1
        path = None
        if self._record_dir is not None:
            path = self._record_dir / f"{self.count:06d}-{call.number}-w{call.window}.wav"
            await asyncio.to_thread(write_wav, path, samples)
        seconds = len(samples) / SAMPLE_RATE
        self._done(Spoken(self.count, call, seconds, ready, path))
        volume = self.volume()
        if self._player is None or not self._player.available or volume <= 0.0:
            return
        started = self._clock()
        seconds = self._player.play(samples, volume)
        await asyncio.sleep(seconds)
        deadline = self._clock() + PLAYBACK_SLACK_S
        while self._player.busy() and self._clock() < deadline:  # noqa: ASYNC110 - SDL has no callback
            await asyncio.sleep(PLAYBACK_POLL_S)
        self.playback.append((call.seq, started, self._clock()))
        del self.playback[:-100]

    def _done(self, spoken: Spoken) -> None:
        self.history.append(spoken)
        del self.history[:-100]
        if self._on_spoken is not None:
            self._on_spoken(spoken)
