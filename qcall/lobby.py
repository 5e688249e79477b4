"""What lobby screens need from the hub: their settings (followed live), the public figures
of the day (信息公开), and the list of connected screens with their offline events."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from qcall.config import CenterConfig, Lobby, load_config
from qcall.errors import ConfigError

if TYPE_CHECKING:
    from qcall.hub import Hub

_LOGGER = logging.getLogger(__name__)

SCREEN_DEVICE_PREFIX: Final = "screen:"
# Every screen asks for the public figures twice a minute; one computation (a pass over the
# day's log on the reader thread) serves them all for this long, or until the next event.
FIGURES_MAX_AGE_S: Final = 5.0


class LobbySource:
    """The ``[lobby]`` table, re-read from the configuration file when the file changes.

    A technician edits notices or announcement settings in the center's file and every
    screen follows within one poll, without restarting the hub. An edit that does not
    validate is logged (with every problem) and the last good settings stay in force.
    """

    def __init__(self, lobby: Lobby, path: Path | None) -> None:
        self._lobby = lobby
        self._path = path
        self._stamp = self._stat()
        self._refused: int | None = None

    def _stat(self) -> int | None:
        if self._path is None:
            return None
        try:
            return self._path.stat().st_mtime_ns
        except OSError:
            return None

    async def current(self) -> Lobby:
        """The settings now in force (re-validated when the file changed)."""
        stamp = self._stat()
        if stamp is None or stamp in (self._stamp, self._refused):
            return self._lobby
        assert self._path is not None
        try:
            config = await asyncio.to_thread(load_config, self._path)
        except ConfigError as err:
            self._refused = stamp
            _LOGGER.warning("lobby settings not reloaded, the file has errors:\n%s", err)
            return self._lobby
        self._stamp = stamp
        if config.lobby != self._lobby:
            _LOGGER.info("lobby settings reloaded from %s", self._path)
        self._lobby = config.lobby
        return self._lobby


def lobby_view(config: CenterConfig, lobby: Lobby) -> dict[str, Any]:
    """``GET /lobby``: names, windows, service groups and the lobby settings (no personal data)."""
    body: dict[str, Any] = {
        "center": {"name_zh": config.center.name_zh, "name_en": config.center.name_en},
        "timezone": config.center.timezone,
        "windows": [
            {"number": w.number, "type": str(w.type), "services": [r.id for r in w.services]}
            for w in config.windows
        ],
        "departments": [
            {"id": d.id, "name_zh": d.name_zh, "name_en": d.name_en} for d in config.departments
        ],
        "services": [
            {
                "id": s.id,
                "department": s.department,
                "prefix": s.prefix,
                "name_zh": s.name_zh,
                "name_en": s.name_en,
            }
            for s in config.services
        ],
        "lobby": lobby.model_dump(mode="json"),
    }
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    body["version"] = digest[:16]
    return body


def public_figures(report: Mapping[str, Any]) -> dict[str, Any]:
    """Today's figures for information disclosure (信息公开): counts and rates only.

    ``report`` is a daily report as the report worker returns it (``reports.to_json``); the
    satisfaction rate is the reports' own (ratings of at least
    ``[reports] satisfied_min_score``).
    """
    total = report["total"]
    mean = total["wait"]["mean_s"]
    return {
        "date": report["from"],
        "issued": int(total["issued"]),
        "served": int(total["served"]),
        "waiting_mean_s": None if mean is None else round(mean),
        "ratings": int(total["ratings"]["count"]),
        "satisfaction_pct": total["ratings"]["satisfaction_pct"],
    }


class FiguresCache:
    """The day's public figures, computed once for all screens asking at about the same time."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._key: object = None
        self._value: dict[str, Any] | None = None
        self._at = float("-inf")

    async def get(
        self, key: object, compute: Callable[[], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any]:
        """The figures for ``key`` (day and last seq), recomputed when stale."""
        async with self._lock:
            fresh = time.monotonic() - self._at < FIGURES_MAX_AGE_S
            if self._value is None or (key != self._key and not fresh):
                self._value = await compute()
                self._key = key
                self._at = time.monotonic()
            return self._value


@dataclass(slots=True, eq=False)
class ScreenSession:
    """One open event stream of a lobby screen."""

    name: str
    remote: str
    since: dt.datetime
    last_seq: int | None = None
    connected_at: float = field(default_factory=time.monotonic)


class ScreenRegistry:
    """Connected lobby screens, by token name; a screen gone too long is reported offline."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._sessions: dict[str, list[ScreenSession]] = {}
        self._gone: dict[str, asyncio.Task[None]] = {}

    def connected(self, name: str, remote: str) -> ScreenSession:
        """A screen opened its event stream."""
        session = ScreenSession(name, remote, dt.datetime.now(dt.UTC))
        self._sessions.setdefault(name, []).append(session)
        timer = self._gone.pop(name, None)
        if timer is not None:
            timer.cancel()
        # Back after being reported gone: tell supervisors the lobby TV works again.
        known = self._hub.engine.devices.get(SCREEN_DEVICE_PREFIX + name)
        if known is not None and known["state"] != "ready":
            self._hub.create_task(
                self._execute(name, "ready", "lobby screen connected again"),
                f"screen-state:{name}",
            )
        return session

    def disconnected(self, session: ScreenSession) -> None:
        """A screen's event stream ended; start its offline timer when it was the last one."""
        sessions = self._sessions.get(session.name, [])
        if session in sessions:
            sessions.remove(session)
        if sessions or session.name in self._gone:
            return
        self._sessions.pop(session.name, None)
        self._gone[session.name] = self._hub.create_task(
            self._offline_after(session.name), f"screen-gone:{session.name}"
        )

    async def _offline_after(self, name: str) -> None:
        delay = self._hub.config.hub.screen_offline_s
        await asyncio.sleep(delay)
        self._gone.pop(name, None)
        if not self._sessions.get(name):
            _LOGGER.warning("lobby screen %r has been gone for %g s", name, delay)
            await self._execute(name, "offline", f"no connection for {delay:g} s")

    async def _execute(self, name: str, state: str, detail: str) -> None:
        device = SCREEN_DEVICE_PREFIX + name
        hub = self._hub
        await hub.execute(lambda now: hub.engine.device_state(now, device, state, detail))

    def diagnostics(self) -> list[dict[str, Any]]:
        """Connected screens: token name, since when, last seq delivered, from where."""
        return [
            {
                "name": s.name,
                "since": s.since.isoformat(),
                "last_seq": s.last_seq,
                "remote": s.remote,
            }
            for sessions in self._sessions.values()
            for s in sessions
        ]
