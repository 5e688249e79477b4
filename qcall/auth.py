"""Staff logins that can neither be brute-forced nor used to stall the hub.

- PIN policy: :func:`qcall.pin_policy.check_pin_policy`, applied by ``Store.add_staff``.
- Attempts are *reserved* before the PIN is hashed, per staff id and per client address, so
  concurrent guesses cannot overtake the lockout (read count → await scrypt → record failure).
- PIN hashing runs on its own single worker thread with a bounded queue: a flood of logins
  waits there (or is refused at once), never on the reader or writer threads of the hub.
- Unknown, disabled and known staff ids cost the same: one scrypt each, and no write on the
  login's path (failures are saved in batches, afterwards).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Final

from qcall.errors import AuthError, TooManyAttempts
from qcall.i18n import text
from qcall.store import LOGIN_MAX_FAILURES, LOGIN_WINDOW, StaffMember, Store, dummy_pin_hash

_LOGGER = logging.getLogger(__name__)

# Failed logins from one client address (any staff ids, known or not) before it must wait (the
# message says 10 minutes): a clerk mistypes now and then; a script trying ids does not get far.
ADDRESS_MAX_FAILURES: Final = 20
ADDRESS_WINDOW_S: Final = 600.0
# PIN checks queued or running at once; more are refused at once (429 login_busy). Enough for
# every clerk of a large center logging in at opening time; a flood then costs one core at most
# and a clerk's login waits at most this many scrypt runs (~30 ms each, ~1 s) instead of forever.
PIN_QUEUE_MAX: Final = 32
# Stale lockout entries (memory) and login_failures rows (disk) are dropped this often.
PRUNE_INTERVAL_S: Final = 60.0
# Failed logins are written to disk in one transaction this often, off the login's path: a flood
# costs the commit path one small transaction per interval, and no login waits for a commit
# (so a known id cannot be told from an unknown one by a write). The limits themselves are kept
# in memory; the rows only restore them after a restart.
LOGIN_FLUSH_S: Final = 2.0
# The PIN worker thread runs at this nice value (Linux, per thread): scrypt yields the CPU to
# the event loop and the commit thread, so a login flood slows logins, not calls and tickets.
PIN_WORKER_NICE: Final = 10


def _throttled(key: str) -> TooManyAttempts:
    return TooManyAttempts(text(key, "en"), text(key, "zh"), code=key)


def _busy() -> TooManyAttempts:
    return TooManyAttempts(text("login_busy", "en"), text("login_busy", "zh"), code="login_busy")


@dataclass(slots=True)
class _Tally:
    failures: deque[float] = field(default_factory=deque)
    in_flight: int = 0


class AttemptLimiter:
    """At most ``limit`` failures per key in a sliding window, attempts in flight included.

    Everything runs on the event loop without awaiting, so checking and reserving is atomic:
    two hundred concurrent guesses get ``limit`` reservations, not two hundred.
    """

    def __init__(
        self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._tallies: dict[str, _Tally] = {}

    def __len__(self) -> int:
        return len(self._tallies)

    def _tally(self, key: str) -> _Tally:
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tallies[key] = _Tally()
        horizon = self.clock() - self.window_s
        while tally.failures and tally.failures[0] <= horizon:
            tally.failures.popleft()
        return tally

    def available(self, key: str) -> bool:
        """Whether one more attempt for ``key`` may be evaluated now."""
        if key not in self._tallies:
            return self.limit > 0  # no entry made: refused floods leave nothing behind
        tally = self._tally(key)
        return len(tally.failures) + tally.in_flight < self.limit

    def reserve(self, key: str) -> None:
        """Hold one attempt for ``key`` (call :meth:`available` first)."""
        self._tally(key).in_flight += 1

    def settle(self, key: str, *, failed: bool) -> None:
        """End a reserved attempt: a failure stays counted, a success clears the key."""
        tally = self._tally(key)
        tally.in_flight = max(0, tally.in_flight - 1)
        if failed:
            tally.failures.append(self.clock())
        else:
            tally.failures.clear()

    def release(self, key: str) -> None:
        """End a reserved attempt that was never evaluated (cancelled, refused as busy)."""
        tally = self._tally(key)
        tally.in_flight = max(0, tally.in_flight - 1)

    def seed(self, key: str, age_s: float) -> None:
        """Count a failure that happened ``age_s`` ago (from the database, after a restart)."""
        if 0 <= age_s < self.window_s:
            tally = self._tally(key)
            tally.failures.append(self.clock() - age_s)
            tally.failures = deque(sorted(tally.failures))

    def failing(self) -> list[str]:
        """Keys with failures counted in the window and no attempt in flight."""
        return [
            key
            for key in list(self._tallies)
            if self._tally(key).failures and self._tallies[key].in_flight == 0
        ]

    def forget(self, key: str) -> None:
        """Drop a key's failures (its lock was lifted elsewhere)."""
        tally = self._tallies.get(key)
        if tally is not None:
            tally.failures.clear()

    def prune(self) -> int:
        """Forget keys with no recent failure and nothing in flight; return how many."""
        stale = [
            key
            for key in list(self._tallies)
            if not self._tally(key).failures and self._tallies[key].in_flight == 0
        ]
        for key in stale:
            del self._tallies[key]
        return len(stale)


Writer = Callable[..., Awaitable[object]]


class Logins:
    """Checks staff PINs for the web login and the keypads, with lockout and rate limits."""

    def __init__(
        self,
        pin_store: Store,
        write: Writer,
        store: Store,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pin_store = pin_store  # its own connection, used only by the PIN worker
        self._write = write  # runs a call on the hub's writer thread
        self._store = store  # the writer's Store (login_failures rows)
        self._worker = ThreadPoolExecutor(
            1, thread_name_prefix="qcall-pin", initializer=_lower_thread_priority
        )
        self.by_staff = AttemptLimiter(LOGIN_MAX_FAILURES, LOGIN_WINDOW.total_seconds(), clock)
        self.by_address = AttemptLimiter(ADDRESS_MAX_FAILURES, ADDRESS_WINDOW_S, clock)
        self.queued = 0
        self.evaluated = 0  # PIN checks run (for tests and diagnostics)
        self.refused = 0  # attempts refused before hashing (locked, rate-limited, busy)
        self._rows_on_disk = True  # login_failures rows that may still need pruning
        self._unsaved: list[tuple[str, dt.datetime | None]] = []  # (id, failed at | None=clear)

    async def start(self) -> None:
        """Open the PIN worker's connection and restore the lockouts still running."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._worker, self._pin_store.open)
        # Hash the stand-in for unknown ids now, not in the first stranger's login.
        await loop.run_in_executor(self._worker, dummy_pin_hash)
        now = dt.datetime.now(dt.UTC)
        recent = await loop.run_in_executor(
            self._worker, self._pin_store.login_failures_after, now - LOGIN_WINDOW
        )
        for staff_id, at in recent:
            self.by_staff.seed(staff_id, (now - at).total_seconds())

    async def run(self) -> None:
        """Save failed logins every LOGIN_FLUSH_S and prune every PRUNE_INTERVAL_S (a task)."""
        pruned_at = time.monotonic()
        while True:
            await asyncio.sleep(LOGIN_FLUSH_S)
            try:
                if time.monotonic() - pruned_at >= PRUNE_INTERVAL_S:
                    pruned_at = time.monotonic()
                    await self.prune()
                else:
                    await self.flush()
            except Exception as err:  # noqa: BLE001 - task boundary: the limits stay in memory
                _LOGGER.warning("saving failed logins failed (will retry): %s", err)

    async def flush(self) -> None:
        """Write the failed and cleared logins noted since the last flush."""
        if self._unsaved:
            changes, self._unsaved = self._unsaved, []
            try:
                await self._write(self._store.save_login_changes, changes)
            except Exception:
                self._unsaved[:0] = changes  # retried at the next flush
                raise

    async def stop(self) -> None:
        """Save what is unsaved, close the worker's connection and stop the worker."""
        try:
            await self.flush()
        except Exception as err:  # noqa: BLE001 - a stop goes on: the rows only restore limits
            _LOGGER.warning("could not save the last failed logins: %s", err)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._worker, self._pin_store.close)
        self._worker.shutdown(wait=True)

    async def authenticate(self, staff_id: str, pin: str, address: str | None) -> StaffMember:
        """Return the staff member whose PIN this is; raise AuthError or TooManyAttempts."""
        address_key = address or ""
        if not self.by_staff.available(staff_id):
            self.refused += 1
            raise _throttled("login_throttled")
        if address is not None and not self.by_address.available(address_key):
            self.refused += 1
            raise _throttled("login_address_throttled")
        if self.queued >= PIN_QUEUE_MAX:
            self.refused += 1
            raise _busy()
        self.by_staff.reserve(staff_id)
        if address is not None:
            self.by_address.reserve(address_key)
        self.queued += 1
        try:
            member = await asyncio.get_running_loop().run_in_executor(
                self._worker, self._check, staff_id, pin
            )
        except BaseException:
            self.by_staff.release(staff_id)
            if address is not None:
                self.by_address.release(address_key)
            raise
        finally:
            self.queued -= 1
        failed = member is None
        self.by_staff.settle(staff_id, failed=failed)
        if address is not None:
            self.by_address.settle(address_key, failed=failed)
        if member is None:
            # Known and unknown ids alike, and saved later: timing tells nothing.
            self._rows_on_disk = True
            self._unsaved.append((staff_id, dt.datetime.now(dt.UTC)))
            _LOGGER.warning("failed login for staff id %r from %s", staff_id, address or "keypad")
            raise AuthError(
                text("login_failed", "en"), text("login_failed", "zh"), code="login_failed"
            )
        self._unsaved.append((staff_id, None))
        return member

    def locked_ids(self) -> list[str]:
        """Staff ids whose failures are counted here (to compare with the database)."""
        return self.by_staff.failing()

    def reconcile(self, on_disk: set[str]) -> list[str]:
        """Lift, here too, the locks lifted in the database by another process.

        ``qcall staff unlock`` and ``reset-pin`` delete an id's failed logins; an id counted
        here with every failure already saved but none left on disk was unlocked. Ids with
        failures not yet saved are left alone. Returns the ids unlocked.
        """
        unsaved = {staff_id for staff_id, _ in self._unsaved}
        lifted = [
            staff_id
            for staff_id in self.by_staff.failing()
            if staff_id not in on_disk and staff_id not in unsaved
        ]
        for staff_id in lifted:
            self.by_staff.forget(staff_id)
            _LOGGER.info("login lock of staff id %r lifted from outside the hub", staff_id)
        return lifted

    def _check(self, staff_id: str, pin: str) -> StaffMember | None:
        self.evaluated += 1
        return self._pin_store.check_pin(staff_id, pin)

    async def prune(self, now: dt.datetime | None = None) -> None:
        """Drop expired lockout entries, and expired login_failures rows while there are any."""
        await self.flush()
        self.by_staff.prune()
        self.by_address.prune()
        if self._rows_on_disk:
            now = now or dt.datetime.now(dt.UTC)
            await self._write(self._store.prune_login_failures, now - LOGIN_WINDOW)
            # Failures still counting in memory are still on disk: prune again next time.
            self._rows_on_disk = len(self.by_staff) > 0

    def diagnostics(self) -> Mapping[str, int]:
        """Counters for technicians (no ids, no PINs)."""
        return {
            "pin_checks": self.evaluated,
            "refused_before_check": self.refused,
            "queued": self.queued,
            "tracked_ids": len(self.by_staff),
            "tracked_addresses": len(self.by_address),
        }


def _lower_thread_priority() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), PIN_WORKER_NICE)
    except (AttributeError, OSError) as err:  # not Linux, or not permitted: run at normal speed
        _LOGGER.debug("PIN worker keeps normal priority: %s", err)


def client_address(
    peer: str | None, headers: Mapping[str, str], trusted_proxies: Iterable[str]
) -> str | None:
    """The client's address, seen through declared reverse proxies; None when unknowable.

    A request relayed by a proxy that is not declared in ``trusted_proxies`` carries forwarding
    headers; its real origin is then unknown (``None``), so a proxy on the hub's own machine
    cannot make every outside caller look like 127.0.0.1.
    """
    if not peer:
        return None
    networks = [ipaddress.ip_network(net, strict=False) for net in trusted_proxies]

    def trusted(address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in networks)

    forwarded = _forwarded_chain(headers)
    if not trusted(peer):
        relayed = forwarded or any(h in headers for h in _RELAY_HEADERS)
        return None if relayed else peer
    # From a declared proxy: the nearest address it was not told by another declared proxy.
    for hop in reversed(forwarded):
        if not trusted(hop):
            return hop
    return forwarded[0] if forwarded else peer


_RELAY_HEADERS: Final = ("Forwarded", "X-Forwarded-For", "X-Real-IP", "X-Forwarded-Host", "Via")


def _forwarded_chain(headers: Mapping[str, str]) -> list[str]:
    """Addresses a proxy listed, nearest last: ``X-Forwarded-For``, else ``Forwarded: for=``,
    else ``X-Real-IP`` (one proxy writes one of them; mixing their orders would be guessing)."""
    raw = headers.get("X-Forwarded-For")
    if raw:
        return [part.strip() for part in raw.split(",") if part.strip()]
    raw = headers.get("Forwarded")
    if raw:
        hops = []
        for element in raw.split(","):
            for pair in element.split(";"):
                key, _, value = pair.strip().partition("=")
                if key.lower() == "for" and value:
                    hops.append(_strip_forwarded(value))
        return hops
    raw = headers.get("X-Real-IP")
    return [raw.strip()] if raw and raw.strip() else []


def _strip_forwarded(value: str) -> str:
    """``"[2001:db8::1]:4711"`` → ``2001:db8::1``; ``192.0.2.1:80`` → ``192.0.2.1``."""
    value = value.strip().strip('"')
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    host, _, port = value.partition(":")
    return host if port.isdigit() else value
