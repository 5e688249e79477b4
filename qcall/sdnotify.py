"""systemd's notify protocol with the standard library: readiness, status, watchdog pings.

systemd hands a ``Type=notify`` service a datagram socket in ``NOTIFY_SOCKET`` (a path, or an
abstract name starting with ``@``) and, with ``WatchdogSec=``, the ping interval it expects in
``WATCHDOG_USEC``. The hub says ``READY=1`` only once it answers its own health check, then
pings from a task on its event loop while it is healthy: a blocked loop sends nothing, a failed
hub stops pinging, and systemd restarts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

_LOGGER = logging.getLogger(__name__)

# Ping this many times per watchdog interval: one late ping is not yet a restart.
PINGS_PER_INTERVAL: Final = 2
# A datagram to systemd never waits: if the manager is busy the message is dropped, not queued.
SEND_TIMEOUT_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class Notifier:
    """Where to send notifications and how often the watchdog wants a ping (None: off)."""

    address: str | bytes | None
    watchdog_s: float | None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Notifier:
        """Read ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` (systemd's names)."""
        env = os.environ if env is None else env
        raw = env.get("NOTIFY_SOCKET", "")
        address: str | bytes | None
        if not raw:
            address = None
        elif raw.startswith("@"):
            address = b"\0" + raw[1:].encode()  # Linux abstract namespace
        elif raw.startswith("/"):
            address = raw
        else:
            _LOGGER.warning("NOTIFY_SOCKET %r is neither a path nor @name: ignored", raw)
            address = None
        watchdog_s: float | None = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        # WATCHDOG_PID names the process meant to ping; a child that inherited it must not.
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            watchdog_s = int(usec) / 1_000_000
        return cls(address, watchdog_s)

    @property
    def enabled(self) -> bool:
        """Whether a manager listens at all."""
        return self.address is not None

    @property
    def ping_interval_s(self) -> float | None:
        """Seconds between watchdog pings, or None when the watchdog is off."""
        if self.address is None or self.watchdog_s is None:
            return None
        return self.watchdog_s / PINGS_PER_INTERVAL

    def send(self, *fields: str) -> bool:
        """Send ``KEY=value`` lines as one datagram; return whether it was delivered."""
        if self.address is None:
            return False
        message = "\n".join(fields).encode()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(SEND_TIMEOUT_S)
            try:
                sock.sendto(message, self.address)
            except OSError as err:
                _LOGGER.warning("systemd notification failed: %s", err)
                return False
        return True

    def ready(self, status: str) -> bool:
        """Tell systemd the service is up (it then starts what waits for it)."""
        return self.send("READY=1", f"MAINPID={os.getpid()}", f"STATUS={status}")

    def stopping(self, status: str) -> bool:
        """Tell systemd the service is shutting down."""
        return self.send("STOPPING=1", f"STATUS={status}")

    async def watchdog(self, healthy: Callable[[], bool]) -> None:
        """Ping while ``healthy()``; runs on the event loop, so a blocked loop pings nothing.

        Once unhealthy it stops pinging for good and tells systemd why: the watchdog then
        restarts the service (a hub whose journal failed must not be kept alive).
        """
        interval = self.ping_interval_s
        if interval is None:
            return
        while healthy():
            self.send("WATCHDOG=1")
            await asyncio.sleep(interval)
        with contextlib.suppress(OSError):
            self.send("STATUS=unhealthy: watchdog pings stopped")
