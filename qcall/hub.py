"""The composition root: builds storage, engine, event bus and workers; owns every task."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar
from zoneinfo import ZoneInfo

from qcall import __version__
from qcall.auth import Logins
from qcall.config import CenterConfig
from qcall.engine import Engine
from qcall.errors import QcallError, StorageError
from qcall.events import Event, EventBus, EventType
from qcall.metrics import Metrics
from qcall.reports.worker import ReportWorker
from qcall.store import Principal, StaffMember, Store

if TYPE_CHECKING:
    from devices.printer import TicketPrinter
    from qcall.hall import Hall

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")

# The day rolls over at local midnight; checking twice a minute keeps the lag small and cheap.
DAY_TICK_INTERVAL_S: Final = 30.0
# Positive token look-ups are cached this long; revocation (logout) clears the entry at once.
TOKEN_CACHE_S: Final = 60.0
# More cached sessions than this and the oldest go first (a day's logins are a few hundred).
TOKEN_CACHE_MAX: Final = 10_000
# Expired and stale sessions leave the token cache this often.
SESSION_SWEEP_S: Final = 60.0
# WAL frames are copied back into the database file this often, off the commit path.
CHECKPOINT_INTERVAL_S: Final = 2.0
# Each stop stage gets this long before the hub moves on (a hung webhook must not block exit).
STOP_STAGE_TIMEOUT_S: Final = 10.0
# The printer (devices.printers[].id) the consultation desk's page prints tickets on.
DESK_PRINTER: Final = "desk"


class Hub:
    """One running center: engine, durable journal, event bus, webhooks and devices."""

    def __init__(
        self,
        config: CenterConfig,
        db_path: str | Path,
        *,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.config = config
        self.db_path = Path(db_path)
        self.tz = ZoneInfo(config.center.timezone)
        self.clock = clock or (lambda: dt.datetime.now(self.tz))
        self.engine = Engine(config)
        self.bus = EventBus()
        self.metrics = Metrics(self)
        self.store = Store(self.db_path)
        self.reader = Store(self.db_path)
        self.checkpointer = Store(self.db_path)
        self.fatal = asyncio.Event()
        self.started_at = time.monotonic()
        self.committed_seq = 0
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="qcall-db-writer")
        self._reads = ThreadPoolExecutor(1, thread_name_prefix="qcall-db-reader")
        self._checkpoints = ThreadPoolExecutor(1, thread_name_prefix="qcall-db-checkpoint")
        self._pending: list[tuple[list[Event], asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._durable = asyncio.Event()
        self._failure: BaseException | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._token_cache: dict[str, tuple[Principal, float]] = {}
        self._revocations = 0  # bumped around each revoke (see principal())
        self._revoke_watchers: dict[str, set[Callable[[], None]]] = {}
        self.logins = Logins(Store(self.db_path), self.write, self.store)
        self._stoppers: list[Callable[[], Awaitable[None]]] = []
        self._diagnostics: list[Callable[[], dict[str, Any]]] = []
        self.hall: Hall | None = None
        self.desk_printer: TicketPrinter | None = None
        # Reports run in their own process (started on first use): never on the loop's GIL.
        self.reports = ReportWorker(config, self.db_path)
        self._stoppers.append(self.reports.close)

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Open storage, rebuild the state, then start the workers."""
        await self.write(self._open_and_load)
        await self.read(self.reader.open)
        await self.logins.start()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._checkpoints, self.checkpointer.open)
        self.create_task(self._journal(), "journal")
        self.create_task(self._checkpoint_loop(), "checkpoint")
        self.create_task(self._day_ticker(), "day-ticker")
        self.create_task(self._sweep_sessions(), "session-sweep")
        self.create_task(self.logins.run(), "logins")
        await self.execute(self.engine.tick)
        from qcall.webhooks import WebhookDispatcher

        for hook in self.config.webhooks:
            dispatcher = WebhookDispatcher(self, hook)
            await dispatcher.start()
            self._stoppers.append(dispatcher.stop)
            self._diagnostics.append(dispatcher.diagnostics)
        if self.config.devices.bus is not None:
            from qcall.hall import Hall

            self.hall = Hall(self)
            await self.hall.start()
            self._stoppers.append(self.hall.stop)
            self._diagnostics.append(self.hall.diagnostics)
        for printer in self.config.devices.printers:
            if printer.id == DESK_PRINTER:
                from devices.printer import TicketPrinter

                self.desk_printer = TicketPrinter.from_config(printer)
                await self.desk_printer.start()
                self._stoppers.append(self.desk_printer.stop)
                self._diagnostics.append(self.desk_printer.diagnostics)
        _LOGGER.info(
            "hub started: %s, seq %d, %d windows",
            self.db_path,
            self.engine.seq,
            len(self.config.windows),
        )

    async def stop(self) -> None:
        """Stop workers in reverse order, flush the journal, snapshot and close storage."""
        for stopper in reversed(self._stoppers):
            try:
                await asyncio.wait_for(stopper(), STOP_STAGE_TIMEOUT_S)
            except Exception:
                _LOGGER.exception("stopping %r failed", stopper)
        self._stoppers.clear()
        await self._flush()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._failure is None and self.committed_seq == self.engine.seq:
            snapshot = self.engine.to_snapshot()
            await self.write(self.store.save_snapshot, self.engine.seq, snapshot)
        await asyncio.get_running_loop().run_in_executor(self._checkpoints, self.checkpointer.close)
        await self.logins.stop()
        await self.read(self.reader.close)
        await self.write(self.store.close)
        self._writer.shutdown(wait=True)
        self._reads.shutdown(wait=True)
        self._checkpoints.shutdown(wait=True)
        _LOGGER.info("hub stopped at seq %d", self.engine.seq)

    def create_task(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        """Start a named background task that is kept referenced and whose crash is logged."""
        task = asyncio.get_running_loop().create_task(coro, name=f"qcall:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _LOGGER.error("task %s crashed", task.get_name(), exc_info=task.exception())

    # ----------------------------------------------------------------- storage threads

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a storage call on the single writer thread."""
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a storage call on the reader thread (never delays commits)."""
        return await asyncio.get_running_loop().run_in_executor(self._reads, fn, *args)

    def _open_and_load(self) -> None:
        self.store.open_writer()
        try:
            self._load()
        except (ValueError, KeyError, TypeError) as err:
            self.store.quarantine(f"event log unreadable: {err!r}")
            self.store.open_writer()
            self.engine = Engine(self.config)
            self._load()
        self.committed_seq = self.engine.seq
        self.store.save_snapshot(self.engine.seq, self.engine.to_snapshot())

    def _load(self) -> None:
        last = self.store.last_seq()
        # A snapshot is only derived data: when it cannot be read, the log is replayed whole
        # (never moved aside, which would lose the day).
        try:
            snapshot = self.store.latest_snapshot()
            if snapshot is not None and int(snapshot["seq"]) <= last:
                self.engine.load_snapshot(snapshot)
        except (ValueError, KeyError, TypeError) as err:
            _LOGGER.warning("latest snapshot unusable (%r); replaying the whole log", err)
            self.engine = Engine(self.config)
        count = 0
        for event in self.store.iter_events(self.engine.seq):
            self.engine.replay(event)
            count += 1
        if self.engine.seq != last:
            raise ValueError(f"replay ended at seq {self.engine.seq}, log ends at {last}")
        _LOGGER.info("state rebuilt: %d events replayed, seq %d", count, last)

    # ----------------------------------------------------------------- commands

    async def execute(self, command: Callable[[dt.datetime], T]) -> T:
        """Run an engine command now; return only after its events are durably committed."""
        if self._failure is not None:
            raise _storage_failed()
        started = time.perf_counter()
        error: BaseException | None = None
        result: T | None = None
        try:
            result = command(self.clock())
        except Exception as err:  # noqa: BLE001 - re-raised below, after committing what was emitted
            error = err
        events = self.engine.drain()
        if events:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._pending.append((events, future))
            self._wake.set()
            await future
        self.metrics.observe_command(time.perf_counter() - started, error)
        if error is not None:
            raise error
        return result  # type: ignore[return-value]

    async def _flush(self) -> None:
        while self._pending and self._failure is None:
            self._wake.set()
            await asyncio.sleep(0)
            futures = [f for _, f in self._pending]
            if futures:
                await asyncio.gather(*futures, return_exceptions=True)

    async def _journal(self) -> None:
        """Group commit: every batch of pending events is one durable transaction."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending, []
                events = [event for chunk, _ in batch for event in chunk]
                started = time.perf_counter()
                try:
                    await self.write(self.store.append, events)
                except Exception as err:  # noqa: BLE001 - task boundary: any failure is fatal
                    self._fail(err)
                    # Nothing after the failed batch can be committed either: tell them all.
                    batch += self._pending
                    self._pending = []
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(
                                StorageError("could not save; please retry", "保存失败，请重试")
                            )
                    return
                self.committed_seq = events[-1].seq
                self._durable.set()
                self._durable = asyncio.Event()
                self.metrics.observe_commit(time.perf_counter() - started, events)
                self.bus.publish(events)
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)
                if any(e.type is EventType.DAY_OPENED for e in events) and not self._pending:
                    await self.write(
                        self.store.save_snapshot, self.engine.seq, self.engine.to_snapshot()
                    )

    async def _checkpoint_loop(self) -> None:
        loop = asyncio.get_running_loop()
        last = -1
        while True:
            await asyncio.sleep(CHECKPOINT_INTERVAL_S)
            if self.committed_seq == last:
                continue
            try:
                await loop.run_in_executor(self._checkpoints, self.checkpointer.checkpoint)
                last = self.committed_seq
            except sqlite3.Error as err:
                _LOGGER.warning("WAL checkpoint failed (will retry): %s", err)

    async def durable_state(self) -> dict[str, Any]:
        """The public snapshot, returned once every event it reflects is on disk.

        A client must never hold a ``seq`` the log could lose: after a crash that seq would be
        reused for another event and a client resuming with ``after=`` would skip it.
        """
        state = self.engine.state()
        while self.committed_seq < int(state["seq"]):
            if self._failure is not None:
                raise _storage_failed()
            await self._durable.wait()
        return state

    def _fail(self, err: BaseException) -> None:
        _LOGGER.critical(
            "the event log could not be written; stopping so state is rebuilt", exc_info=err
        )
        self._failure = err
        self.fatal.set()
        self._durable.set()

    async def _day_ticker(self) -> None:
        while True:
            await asyncio.sleep(DAY_TICK_INTERVAL_S)
            try:
                await self.execute(self.engine.tick)
            except QcallError:
                _LOGGER.exception("day rollover failed")

    # ----------------------------------------------------------------- auth

    async def principal(self, token: str) -> Principal | None:
        """Resolve a bearer token (cached briefly)."""
        cached = self._token_cache.get(token)
        now = time.monotonic()
        if cached is not None and now - cached[1] < TOKEN_CACHE_S:
            principal = cached[0]
            if principal.expires_at is None or principal.expires_at > dt.datetime.now(dt.UTC):
                return principal
        revocations = self._revocations
        found: Principal | None = await self.read(self.reader.principal, token)
        # A look-up that overlapped a revocation may have read the token before it; serve it
        # this once but do not cache it, or a logged-out token would live on.
        if found is None or revocations != self._revocations:
            self._token_cache.pop(token, None)
        else:
            self._token_cache.pop(token, None)  # re-insert: the dict stays oldest-first
            self._token_cache[token] = (found, now)
            if len(self._token_cache) > TOKEN_CACHE_MAX:
                self.sweep_sessions()
        return found

    def sweep_sessions(self, now: dt.datetime | None = None) -> int:
        """Drop cached sessions that are stale or expired (and the oldest beyond the cap)."""
        wall = now or dt.datetime.now(dt.UTC)
        horizon = time.monotonic() - TOKEN_CACHE_S
        stale = [
            token
            for token, (principal, cached_at) in self._token_cache.items()
            if cached_at <= horizon
            or (principal.expires_at is not None and principal.expires_at <= wall)
        ]
        for token in stale:
            del self._token_cache[token]
        excess = len(self._token_cache) - TOKEN_CACHE_MAX
        for token in list(self._token_cache)[: max(0, excess)]:
            del self._token_cache[token]
        return len(stale) + max(0, excess)

    def watch_revocation(self, token: str, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` when this hub revokes ``token``; return the unsubscribe."""
        watchers = self._revoke_watchers.setdefault(token, set())
        watchers.add(callback)

        def unsubscribe() -> None:
            watchers.discard(callback)
            if not watchers and self._revoke_watchers.get(token) is watchers:
                del self._revoke_watchers[token]

        return unsubscribe

    async def authenticate(
        self, staff_id: str, pin: str, address: str | None = None
    ) -> StaffMember:
        """Check a staff PIN (web login and keypad login alike), with lockout and rate limit.

        ``address`` is the client's network address (None for a keypad on the bus).
        """
        return await self.logins.authenticate(staff_id, pin, address)

    async def revoke(self, token: str) -> None:
        """Revoke a token everywhere at once (open event streams on it are closed)."""
        self._revocations += 1
        self._token_cache.pop(token, None)
        try:
            await self.write(self.store.revoke_token, token)
        finally:
            self._revocations += 1
            self._token_cache.pop(token, None)
        for callback in list(self._revoke_watchers.get(token, ())):
            callback()

    async def _sweep_sessions(self) -> None:
        while True:
            await asyncio.sleep(SESSION_SWEEP_S)
            self.sweep_sessions()

    # ----------------------------------------------------------------- reads

    def diagnostics(self) -> dict[str, Any]:
        """Hub internals for technicians (no secrets)."""
        return {
            "version": __version__,
            "db_path": str(self.db_path),
            "db_moved_aside": str(self.store.moved_aside) if self.store.moved_aside else None,
            "uptime_s": round(time.monotonic() - self.started_at, 1),
            "seq": self.engine.seq,
            "committed_seq": self.committed_seq,
            "pending_batches": len(self._pending),
            "storage_failed": self._failure is not None,
            "subscribers": self.bus.subscriber_count,
            "logins": dict(self.logins.diagnostics()),
            "cached_sessions": len(self._token_cache),
            "tasks": sorted(t.get_name() for t in self._tasks),
            "devices": {name: dict(info) for name, info in self.engine.devices.items()},
            "device_details": [provider() for provider in self._diagnostics],
            "reports": self.reports.diagnostics(),
        }

    async def events_after(self, seq: int, limit: int = 1000) -> list[Event]:
        """Committed events after ``seq`` from the log."""
        return await self.read(self.reader.events_after, seq, limit)


def _storage_failed() -> StorageError:
    return StorageError(
        "storage failed; the hub is restarting", "数据存储故障，系统正在重启，请稍候"
    )
