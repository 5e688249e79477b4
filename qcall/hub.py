"""The composition root: builds storage, engine, event bus and workers; owns every task."""

from __future__ import annotations

import asyncio
import contextlib
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
from qcall.alerts import current_alerts
from qcall.auth import Logins
from qcall.clock import ForwardClock
from qcall.config import CenterConfig
from qcall.dblock import DatabaseLock
from qcall.engine import Engine
from qcall.errors import DatabaseCorrupt, QcallError, StorageError
from qcall.events import Event, EventBus, EventType
from qcall.lobby import FiguresCache, LobbySource, ScreenRegistry
from qcall.metrics import Metrics
from qcall.reports.worker import ReportWorker
from qcall.store import LOGIN_WINDOW, Principal, Recovery, StaffMember, Store, corrupt_error

if TYPE_CHECKING:
    from devices.printer import TicketPrinter
    from qcall.hall import Hall

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")

# The day rolls over at local midnight; checking twice a minute keeps the lag small and cheap.
DAY_TICK_INTERVAL_S: Final = 30.0
# The supervisor's alerts are re-evaluated this often (a wait crosses its target by the clock).
ALERT_CHECK_S: Final = 5.0
# Positive token look-ups are cached this long; revocation (logout) clears the entry at once.
TOKEN_CACHE_S: Final = 60.0
# Revocations and disabled accounts made by another process (the CLI) reach the token cache
# within this interval; one tiny indexed read each time.
AUTH_WATCH_INTERVAL_S: Final = 1.0
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
# A read that shows only committed state waits at most this long for the commit in flight
# (a durable commit takes milliseconds; a storage failure ends the wait at once).
COMMITTED_READ_TIMEOUT_S: Final = 5.0
# Event-loop turns stop() gives tasks started while devices stop before numbering ends.
STOP_YIELDS: Final = 3
# What a broken event log raises while it is replayed (bad JSON, unknown type, missing field,
# an event that does not fit the state before it).
_BROKEN_LOG: Final = (ValueError, KeyError, TypeError, IndexError, AttributeError)


class Hub:
    """One running center: engine, durable journal, event bus, webhooks and devices."""

    def __init__(
        self,
        config: CenterConfig,
        db_path: str | Path,
        *,
        clock: Callable[[], dt.datetime] | None = None,
        monotonic: Callable[[], float] | None = None,
        accept_data_loss: bool = False,
        config_path: str | Path | None = None,
    ) -> None:
        self.base_config = config  # the TOML file; ``config`` adds the admin's overrides
        self.db_path = Path(db_path)
        self.tz = ZoneInfo(config.center.timezone)
        self.clock = clock or (lambda: dt.datetime.now(self.tz))
        # Commands and reads take their time from here: never earlier than the log's latest.
        # A simulated clock brings its own monotonic time, so its steps are not clock jumps.
        self.now = ForwardClock(self.clock, monotonic=monotonic or time.monotonic)
        self.accept_data_loss = accept_data_loss
        self.recovered: Recovery | None = None
        self.lock = DatabaseLock(self.db_path)
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
        self._closing = False
        self._serving = False  # storage is open and the journal runs
        self._journal_task: asyncio.Task[None] | None = None
        self._critical: set[asyncio.Task[Any]] = set()
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
        # Lobby settings follow edits of the config file; screens are devices (DESIGN §6).
        self.lobby = LobbySource(config.lobby, Path(config_path) if config_path else None)
        self.screens = ScreenRegistry(self)
        self.figures = FiguresCache()

    @property
    def config(self) -> CenterConfig:
        """The effective configuration: the TOML file with the settings edited in the pages."""
        return self.engine.config

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Take the database, rebuild the state, then start the workers.

        Refuses (``DatabaseInUse``) before touching anything when another hub serves the same
        database, and (``DatabaseCorrupt``) when the database is damaged, unless the operator
        accepted the data loss.
        """
        self.lock.acquire()
        try:
            await self.write(self._open_and_load)
        except BaseException:
            await self.write(self.store.close)
            self.lock.release()
            raise
        await self.read(self.reader.open)
        await self.logins.start()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._checkpoints, self.checkpointer.open)
        self._serving = True
        self._journal_task = self.create_task(self._journal(), "journal", critical=True)
        self.create_task(self._checkpoint_loop(), "checkpoint", critical=True)
        self.create_task(self._day_ticker(), "day-ticker")
        self.create_task(self._alert_watch(), "alert-watch")
        self.create_task(self._auth_watch(), "auth-watch")
        self.create_task(self._sweep_sessions(), "session-sweep")
        self.create_task(self.logins.run(), "logins")
        recovered = self.recovered
        if recovered is not None and recovered.day is not None:
            day, numbers = recovered.day, recovered.numbers
            await self.execute(lambda now: self.engine.resume_day(now, day, numbers))
        await self.execute(self.engine.tick)
        # What the log holds and the configuration no longer has is resolved by new events.
        await self.execute(self.engine.reconcile)
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
        """Stop workers in reverse order, commit what is pending, snapshot and close storage.

        Devices and webhooks stop first (a device going offline is still committed); then no
        command is numbered any more, the journal commits what it holds (a commit in flight
        included) and ends, and the final snapshot is written before storage closes. The log
        therefore never ends below a seq the hub has announced.
        """
        for stopper in reversed(self._stoppers):
            try:
                await asyncio.wait_for(stopper(), STOP_STAGE_TIMEOUT_S)
            except Exception:
                _LOGGER.exception("stopping %r failed", stopper)
        self._stoppers.clear()
        # Tasks the stoppers just started (a device going offline) reach the journal first.
        for _ in range(STOP_YIELDS):
            await asyncio.sleep(0)
        self._closing = True
        self._wake.set()
        if self._journal_task is not None and not self._journal_task.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._journal_task), STOP_STAGE_TIMEOUT_S)
            except TimeoutError:
                _LOGGER.error("the journal did not finish within %.0f s", STOP_STAGE_TIMEOUT_S)  # noqa: TRY400
            except Exception:
                _LOGGER.debug("journal ended with an error (made fatal already)", exc_info=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._failure is None and self.committed_seq == self.engine.seq:
            snapshot = self.engine.to_snapshot()
            try:
                await self.write(self.store.save_snapshot, self.engine.seq, snapshot)
            except Exception as err:  # noqa: BLE001 - derived data: the log is complete
                self._fail(err)
        await asyncio.get_running_loop().run_in_executor(self._checkpoints, self.checkpointer.close)
        await self.logins.stop()
        await self.read(self.reader.close)
        await self.write(self.store.close)
        self._writer.shutdown(wait=True)
        self._reads.shutdown(wait=True)
        self._checkpoints.shutdown(wait=True)
        self.lock.release()
        _LOGGER.info("hub stopped at seq %d", self.committed_seq)

    def create_task(
        self, coro: Coroutine[Any, Any, T], name: str, *, critical: bool = False
    ) -> asyncio.Task[T]:
        """Start a named background task that is kept referenced and whose crash is logged.

        A ``critical`` task (the journal, the checkpointer) must never end by itself: when it
        crashes the hub takes the one fatal path (``/health`` fails, pending commands are told,
        the process exits so it is restarted and rebuilt from the log).
        """
        task = asyncio.get_running_loop().create_task(coro, name=f"qcall:{name}")
        self._tasks.add(task)
        if critical:
            self._critical.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        critical = task in self._critical
        self._critical.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            _LOGGER.error("task %s crashed", task.get_name(), exc_info=error)
            if critical:
                self._fail(error)
        elif critical and not self._closing:
            self._fail(RuntimeError(f"task {task.get_name()} ended"))

    # ----------------------------------------------------------------- storage threads

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a storage call on the single writer thread (a storage failure is fatal)."""
        return await self._storage(self._writer, fn, *args)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a storage call on the reader thread (never delays commits)."""
        return await self._storage(self._reads, fn, *args)

    async def _storage(self, thread: ThreadPoolExecutor, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(thread, fn, *args)
        except sqlite3.DatabaseError as err:
            # I/O errors, a full disk, a lock held too long, damage found while running: the one
            # fatal path, whatever the call was. A constraint violation is the caller's error.
            if not self._serving or not _storage_failure(err):
                raise
            self._fail(err)
            raise _storage_failed() from err

    def _open_and_load(self) -> None:
        try:
            self._open_and_replay()
        except DatabaseCorrupt as err:
            if not self.accept_data_loss:
                raise
            _LOGGER.error("%s", err.message_en)  # noqa: TRY400 - the message says it all
            self.store.close()
            self.recovered = self.store.recover(err.message_en)
            self.store.close()
            self.engine = Engine(self.base_config)
            self._open_and_replay()
        self.committed_seq = self.engine.seq
        self.now.start_after(self.store.last_event_at())
        self.store.save_snapshot(self.engine.seq, self.engine.to_snapshot())

    def _open_and_replay(self) -> None:
        """Open the writer and rebuild the state; only real damage counts as corruption."""
        self.store.open_writer()
        self.engine = rebuild_engine(self.base_config, self.store)

    # ----------------------------------------------------------------- commands

    async def execute(self, command: Callable[[dt.datetime], T]) -> T:
        """Run an engine command now; return only after its events are durably committed."""
        if self._failure is not None:
            raise _storage_failed()
        if self._closing:
            raise StorageError("the hub is stopping; please retry", "系统正在停止，请稍后重试")
        started = time.perf_counter()
        error: BaseException | None = None
        result: T | None = None
        try:
            result = command(self.now())
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

    def _commit(self, events: list[Event]) -> None:
        """On the writer thread: one durable transaction, then keep the WAL within bounds."""
        self.store.append(events)
        self.store.bound_wal()

    async def _journal(self) -> None:
        """Group commit: every batch of pending events is one durable transaction.

        Any storage failure (a commit, the day-open snapshot) takes the one fatal path. After
        ``stop()`` has begun, the journal commits what is pending, then ends.
        """
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending, []
                events = [event for chunk, _ in batch for event in chunk]
                started = time.perf_counter()
                try:
                    await self.write(self._commit, events)
                except Exception as err:  # noqa: BLE001 - task boundary: any failure is fatal
                    self._fail(err)
                    # Nothing after the failed batch can be committed either: tell them all.
                    self._refuse_pending(batch)
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
                    try:
                        await self.write(
                            self.store.save_snapshot, self.engine.seq, self.engine.to_snapshot()
                        )
                    except Exception as err:  # noqa: BLE001 - task boundary: any failure is fatal
                        self._fail(err)
                        self._refuse_pending([])
                        return
            if self._closing:
                return

    def _refuse_pending(self, batch: list[tuple[list[Event], asyncio.Future[None]]]) -> None:
        batch = batch + self._pending
        self._pending = []
        for _, future in batch:
            if not future.done():
                future.set_exception(
                    StorageError("could not save; please retry", "保存失败，请重试")
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
            except sqlite3.OperationalError as err:
                # Busy or locked: another connection is in the way, try again later. Anything
                # else (I/O error, damage) ends this task, which is fatal.
                _LOGGER.warning("WAL checkpoint failed (will retry): %s", err)

    async def durable_state(self) -> dict[str, Any]:
        """The public snapshot, returned once every event it reflects is on disk.

        A client must never hold a ``seq`` the log could lose: after a crash that seq would be
        reused for another event and a client resuming with ``after=`` would skip it.
        """
        return await self.committed(self.engine.state)

    async def committed(self, view: Callable[[], T]) -> T:
        """Return ``view()`` (a copy of some engine state) once everything it saw is on disk.

        Reads show only committed state: the view is taken now and handed out only after the
        events applied before it are committed, or a storage error when they never will be.
        """
        result = view()
        seq = self.engine.seq
        deadline = time.monotonic() + COMMITTED_READ_TIMEOUT_S
        while self.committed_seq < seq:
            if self._failure is not None:
                raise _storage_failed()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StorageError("storage is slow; please retry", "数据存储繁忙，请稍后重试")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._durable.wait(), remaining)
        if self._failure is not None and self.committed_seq < seq:
            raise _storage_failed()
        return result

    def _fail(self, err: BaseException) -> None:
        if self._failure is not None:
            return
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
                if not self._closing:
                    _LOGGER.exception("day rollover failed")

    async def _alert_watch(self) -> None:
        def sync(now: dt.datetime) -> None:
            current = {a.key: a.to_data() for a in current_alerts(self.engine, now)}
            self.engine.sync_alerts(now, current)

        while True:
            await asyncio.sleep(ALERT_CHECK_S)
            try:
                await self.execute(sync)
            except QcallError:
                if not self._closing:
                    _LOGGER.exception("alert check failed")

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

    async def _auth_watch(self) -> None:
        """Apply what another process (the CLI) changed: revoked tokens, disabled accounts,
        lifted login locks."""
        seen = await self.read(self.reader.auth_version)
        while True:
            await asyncio.sleep(AUTH_WATCH_INTERVAL_S)
            try:
                current = await self.read(self.reader.auth_version)
                if current != seen:
                    seen = current
                    self._revocations += 1
                    self._token_cache.clear()
                    await self._close_revoked_streams()
                if self.logins.locked_ids():
                    since = dt.datetime.now(dt.UTC) - LOGIN_WINDOW
                    rows = await self.read(self.reader.login_failures_after, since)
                    self.logins.reconcile({staff_id for staff_id, _ in rows})
            except StorageError:
                return  # the hub is stopping on its one fatal path
            except sqlite3.Error as err:
                _LOGGER.warning("cannot check for revoked tokens (will retry): %s", err)

    async def _close_revoked_streams(self) -> None:
        for token in list(self._revoke_watchers):
            if await self.read(self.reader.principal, token) is None:
                for callback in list(self._revoke_watchers.get(token, ())):
                    callback()

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

    async def auth_changed(self) -> None:
        """Apply at once a change this process made to accounts or tokens (admin pages)."""
        self._revocations += 1
        self._token_cache.clear()
        await self._close_revoked_streams()

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
            "data_loss_recovery": self.recovered.to_dict() if self.recovered else None,
            "wal_bytes": self.store.wal_bytes(),
            "clock": self.now.diagnostics(),
            "subscribers": self.bus.subscriber_count,
            "logins": dict(self.logins.diagnostics()),
            "cached_sessions": len(self._token_cache),
            "tasks": sorted(t.get_name() for t in self._tasks),
            "devices": {name: dict(info) for name, info in self.engine.devices.items()},
            "screens": self.screens.diagnostics(),
            "device_details": [provider() for provider in self._diagnostics],
            "reports": self.reports.diagnostics(),
        }

    async def events_after(self, seq: int, limit: int = 1000) -> list[Event]:
        """Committed events after ``seq`` from the log."""
        return await self.read(self.reader.events_after, seq, limit)


def rebuild_engine(config: CenterConfig, store: Store) -> Engine:
    """Rebuild the engine from the latest usable snapshot and the log after it.

    The log is applied as history, whatever the configuration says now. Only real damage
    raises ``DatabaseCorrupt``: SQLite's own errors, or a log that does not replay (bad JSON,
    an unknown event type, a gap, an event that does not fit the state before it).
    """
    origin = store.log_origin()
    engine = Engine(config)
    engine.seq = origin
    try:
        last = store.last_seq()
        # A snapshot is only derived data: when it cannot be read, the log is replayed whole.
        try:
            snapshot = store.latest_snapshot()
            if snapshot is not None and int(snapshot["seq"]) <= last:
                engine.load_snapshot(snapshot)
        except _BROKEN_LOG as err:
            _LOGGER.warning("latest snapshot unusable (%r); replaying the whole log", err)
            engine = Engine(config)
            engine.seq = origin
        count = 0
        for event in store.iter_events(engine.seq):
            engine.replay(event)
            count += 1
        if engine.seq != last:
            raise ValueError(f"replay ended at seq {engine.seq}, log ends at {last}")
    except sqlite3.OperationalError:
        raise  # locked, disk full, no permission: not damage, the file stays as it is
    except sqlite3.DatabaseError as err:
        raise corrupt_error(store.path, str(err)) from err
    except _BROKEN_LOG as err:
        raise corrupt_error(
            store.path, f"event log unreadable after seq {engine.seq}: {err!r}"
        ) from err
    _LOGGER.info("state rebuilt: %d events replayed, seq %d", count, last)
    return engine


def _storage_failure(err: sqlite3.DatabaseError) -> bool:
    """SQLite could not do its job (not a constraint the caller broke, not a misuse)."""
    return isinstance(err, sqlite3.OperationalError) or type(err) is sqlite3.DatabaseError


def _storage_failed() -> StorageError:
    return StorageError(
        "storage failed; the hub is restarting", "数据存储故障，系统正在重启，请稍候"
    )
