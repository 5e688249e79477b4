"""One reconnect policy for every device: state, capped backoff, liveness probe, state callbacks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Final

from devices.base import DeviceState, Link, StateCallback
from qcall.errors import DeviceError, QcallError

_LOGGER = logging.getLogger(__name__)

# Most failures are an unplugged cable or a rebooting gateway: try again soon.
BACKOFF_INITIAL_S: Final = 0.5
BACKOFF_FACTOR: Final = 2.0
# A device that stays dead is retried twice a minute: it comes back unattended within 30 s
# of being fixed, and the log (retries are at DEBUG) stays quiet overnight.
BACKOFF_MAX_S: Final = 30.0
# Liveness of an open link (port still open, owner task alive). Drivers check their devices
# more often themselves; this catches a link that died without telling anyone.
PROBE_INTERVAL_S: Final = 10.0
# A liveness check is local and quick; 5 s means it is stuck, not slow.
PROBE_TIMEOUT_S: Final = 5.0
# Closing flushes a serial port in an executor; a wedged USB adapter must not hang shutdown.
CLOSE_TIMEOUT_S: Final = 5.0

_EXPECTED_ERRORS: Final = (DeviceError, OSError, TimeoutError)


@dataclass(frozen=True, slots=True)
class SupervisorPolicy:
    """Timing of a DeviceSupervisor (defaults are the module constants)."""

    backoff_initial_s: float = BACKOFF_INITIAL_S
    backoff_factor: float = BACKOFF_FACTOR
    backoff_max_s: float = BACKOFF_MAX_S
    probe_interval_s: float = PROBE_INTERVAL_S
    probe_timeout_s: float = PROBE_TIMEOUT_S

    def backoff(self, failures: int) -> float:
        """Return the delay before the next attempt after ``failures`` consecutive failures."""
        exponent = max(failures - 1, 0)
        return min(self.backoff_max_s, self.backoff_initial_s * self.backoff_factor**exponent)


def describe(err: BaseException) -> str:
    """Return a one-line, bilingual where available, description of an error."""
    if isinstance(err, QcallError) and err.message_zh != err.message_en:
        return f"{err.message_en} / {err.message_zh}"
    return str(err) or type(err).__name__


class DeviceSupervisor:
    """Keep a Link open with capped backoff; call ``on_state`` on every state change."""

    # First failure at WARNING, further attempts at DEBUG, recovery at INFO. A link that keeps
    # failing stays FAILED between attempts, so the hub's event log is not flooded overnight.

    def __init__(
        self,
        name: str,
        link: Link,
        *,
        on_state: StateCallback | None = None,
        policy: SupervisorPolicy | None = None,
    ) -> None:
        self.name = name
        self._link = link
        self._on_state = on_state
        self._policy = policy or SupervisorPolicy()
        self._state = DeviceState.DISCONNECTED
        self._detail = ""
        self._task: asyncio.Task[None] | None = None
        self.last_error = ""
        self.failures = 0
        self.reconnects = 0

    @property
    def state(self) -> DeviceState:
        """Return the current state."""
        return self._state

    async def start(self) -> None:
        """Start supervising in a background task (returns at once)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"supervisor:{self.name}")

    async def stop(self) -> None:
        """Stop supervising and close the link."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._close_link()
        self._set_state(DeviceState.DISCONNECTED, "stopped / 已停止")

    def diagnostics(self) -> dict[str, Any]:
        """Return state, detail, last error and counters."""
        return {
            "state": str(self._state),
            "detail": self._detail,
            "last_error": self.last_error,
            "failures": self.failures,
            "reconnects": self.reconnects,
        }

    async def _run(self) -> None:
        while True:
            if self._state is not DeviceState.FAILED:
                self._set_state(DeviceState.CONNECTING, "")
            try:
                await self._link.open()
            except _EXPECTED_ERRORS as err:
                self._failed(err)
            except Exception as err:
                _LOGGER.exception("%s: unexpected error while connecting", self.name)
                self._failed(err)
            else:
                if self.failures:
                    _LOGGER.info("%s recovered after %d failed attempts", self.name, self.failures)
                self.failures = 0
                self._set_state(DeviceState.READY, "")
                reason = await self._watch()
                await self._close_link()
                self.reconnects += 1
                self._failed_with(reason)
            await asyncio.sleep(self._policy.backoff(self.failures))

    async def _watch(self) -> str:
        closed = asyncio.create_task(self._link.wait_closed(), name=f"watch:{self.name}")
        try:
            while True:
                done, _ = await asyncio.wait({closed}, timeout=self._policy.probe_interval_s)
                if done:
                    error = closed.exception()
                    return describe(error) if error else "connection closed / 连接已关闭"
                try:
                    async with asyncio.timeout(self._policy.probe_timeout_s):
                        await self._link.check()
                except _EXPECTED_ERRORS as err:
                    return f"liveness check failed / 连接检测失败: {describe(err)}"
        finally:
            if not closed.done():
                closed.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await closed

    async def _close_link(self) -> None:
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self._link.close()
        except TimeoutError:
            _LOGGER.warning("%s: closing took longer than %.0f s", self.name, CLOSE_TIMEOUT_S)

    def _failed(self, err: BaseException) -> None:
        self._failed_with(describe(err))

    def _failed_with(self, detail: str) -> None:
        self.failures += 1
        self.last_error = detail
        if self.failures == 1:
            _LOGGER.warning("%s failed: %s", self.name, detail)
        else:
            _LOGGER.debug(
                "%s still failing (attempt %d, next in %.1f s): %s",
                self.name,
                self.failures,
                self._policy.backoff(self.failures),
                detail,
            )
        self._set_state(DeviceState.FAILED, detail)

    def _set_state(self, state: DeviceState, detail: str) -> None:
        if state is self._state:
            self._detail = detail
            return
        self._state = state
        self._detail = detail
        if self._on_state is None:
            return
        try:
            self._on_state(self.name, state, detail)
        except Exception:
            _LOGGER.exception("%s: state callback failed", self.name)
