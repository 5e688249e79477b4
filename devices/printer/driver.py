"""The ticket printer device: status before every ticket, all blocking I/O on one worker thread."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, TypeVar

from devices.base import Device, DeviceState, ProbeResult, StateCallback
from devices.printer.commands import PAPER_DOTS
from devices.printer.connection import (
    Connection,
    PrinterStatusUnsupported,
    TransportKind,
    open_connection,
    parse_printer_url,
)
from devices.printer.escpos_backend import (
    OWN_COMMANDS,
    CommandSet,
    EscposCommands,
    PrinterProfile,
)
from devices.printer.render import TicketPrint, render_test_page, render_ticket
from devices.printer.status import (
    STATUS_REPLY_TIMEOUT_S,
    PrinterStatus,
    Problem,
    read_status,
)
from devices.supervisor import DeviceSupervisor, SupervisorPolicy, describe
from qcall.errors import DeviceError, DeviceTimeout, DeviceUnavailable

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from qcall.config import Printer

_LOGGER = logging.getLogger(__name__)
_T = TypeVar("_T")

# Importing python-escpos parses its capability file: about 0.5 s cold, 0.2 s from the cache;
# 30 s only runs out on a wedged disk.
ESCPOS_LOAD_TIMEOUT_S: Final = 30.0
# A LAN printer accepts in milliseconds; 3 s covers one that is waking from power save or
# an ARP retry, and is still short enough for the kiosk to tell the resident promptly.
CONNECT_TIMEOUT_S: Final = 3.0
# A healthy printer takes a ticket (a few KB, up to ~20 KB with image lines) into its buffer
# within a second or two even while finishing the previous one; 15 s means it has stalled.
JOB_WRITE_TIMEOUT_S: Final = 15.0
# Serial jobs also need their time on the wire (10 bits per byte), doubled for flow control.
SERIAL_WIRE_FACTOR: Final = 2.0
# The worker enforces each deadline itself; this extra margin on the outer wait only catches
# a wedged call (say a hung USB stack) so that no caller waits forever.
GUARD_MARGIN_S: Final = 5.0
# Status check with one reconnect: two connects plus two rounds of four replies, worst case.
STATUS_GUARD_S: Final = 2 * (CONNECT_TIMEOUT_S + 4 * STATUS_REPLY_TIMEOUT_S) + GUARD_MARGIN_S
# Waiting behind another job or status read: one ticket ahead is at most a connect, a status
# check and a write; anything longer means the printer is stuck, so fail rather than queue.
LOCK_TIMEOUT_S: Final = STATUS_GUARD_S + JOB_WRITE_TIMEOUT_S + GUARD_MARGIN_S


class PrinterState(StrEnum):
    """What the printer itself is doing, as far as the driver knows."""

    UNKNOWN = "unknown"
    READY = "ready"
    ATTENTION = "attention"
    NOT_READY = "not_ready"
    PRINTING = "printing"
    UNAVAILABLE = "unavailable"
    STOPPED = "stopped"


class PrinterNotReady(DeviceError):
    """The printer reports a condition that stops printing; nothing was sent."""

    code = "printer_not_ready"

    def __init__(self, printer_id: str, status: PrinterStatus) -> None:
        self.printer_status = status
        self.problems = [problem for problem in status.problems() if problem.blocking]
        en = "; ".join(problem.message_en for problem in self.problems)
        zh = "；".join(problem.message_zh for problem in self.problems)
        super().__init__(
            f"printer {printer_id} cannot print — {en}",
            f"打印机 {printer_id} 无法出票——{zh}",
            details={"printer": printer_id, "problems": [p.code for p in self.problems]},
        )


@dataclass(frozen=True, slots=True)
class PrintResult:
    """A job that was sent: its size, the status read before it, what needs attention."""

    bytes_sent: int
    status: PrinterStatus | None
    warnings: tuple[Problem, ...]


@dataclass
class _Counters:
    jobs: int = 0
    bytes: int = 0
    failures: int = 0
    timeouts: int = 0
    refusals: int = 0
    status_reads: int = 0


class TicketPrinter(Device):
    """An ESC/POS ticket printer by URL; checks status before each job; one thread does its I/O."""

    def __init__(
        self,
        printer_id: str,
        url: str,
        *,
        paper: int = 80,
        chinese_mode: bool = True,
        repertoire: str = "gbk",
        print_materials: bool = True,
        on_status: Callable[[PrinterStatus], None] | None = None,
        on_state: StateCallback | None = None,
        policy: SupervisorPolicy | None = None,
        model: str | None = None,
        state_dir: Path | None = None,
    ) -> None:
        # model: a python-escpos profile name; then python-escpos makes the QR, image and cut
        # bytes (imported lazily, capability cache under state_dir). None: our own bytes.
        # on_status hears each change of the printer's own status (paper, cover, cutter);
        # on_state hears the supervised connection. Printing needs neither nor start().
        if paper not in (58, 80):
            raise ValueError(f"paper must be 58 or 80, not {paper!r}")
        if repertoire not in ("gb2312", "gbk", "gb18030"):
            raise ValueError(f"unknown repertoire {repertoire!r}")
        self.id = printer_id
        self.name = f"printer:{printer_id}"
        self.endpoint = parse_printer_url(url)
        self.paper = paper
        self.chinese_mode = chinese_mode
        self.repertoire = repertoire
        self.print_materials = print_materials
        self._on_status = on_status
        self.model = model
        self._state_dir = state_dir
        self._escpos: EscposCommands | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._lock = asyncio.Lock()
        self._conn: Connection | None = None  # touched only by the worker thread
        self._state = PrinterState.UNKNOWN
        self._last_status: PrinterStatus | None = None
        self._last_status_at: datetime | None = None
        self._last_error: str | None = None
        self._last_error_at: datetime | None = None
        self._lost = asyncio.Event()
        self._lost_error: DeviceError | None = None
        self._counters = _Counters()
        self._supervisor = DeviceSupervisor(
            self.name, _PrinterLink(self), on_state=on_state, policy=policy
        )

    @classmethod
    def from_config(
        cls,
        config: Printer,
        *,
        on_status: Callable[[PrinterStatus], None] | None = None,
        on_state: StateCallback | None = None,
        policy: SupervisorPolicy | None = None,
    ) -> TicketPrinter:
        """Build the printer from its validated configuration."""
        return cls(
            config.id,
            config.url,
            paper=config.paper,
            chinese_mode=config.chinese_mode,
            repertoire=config.repertoire,
            print_materials=config.print_materials,
            on_status=on_status,
            on_state=on_state,
            policy=policy,
        )

    @property
    def state(self) -> PrinterState:
        """Return what the printer is doing."""
        return self._state

    @property
    def connection_state(self) -> DeviceState:
        """Return the supervised connection state (DISCONNECTED until ``start()``)."""
        return self._supervisor.state

    @property
    def last_status(self) -> PrinterStatus | None:
        """Return the status read most recently."""
        return self._last_status

    @property
    def supports_status(self) -> bool:
        """Return whether the connection can read ``DLE EOT`` replies."""
        return self.endpoint.supports_status

    async def start(self) -> None:
        """Supervise the connection (reconnects, ``on_state``) and re-read the status while idle."""
        await self._supervisor.start()

    async def stop(self) -> None:
        """Stop supervising, close the connection and end the worker thread."""
        await self._supervisor.stop()
        async with self._exclusive():
            with contextlib.suppress(DeviceError):
                await self._run(self._drop_blocking, GUARD_MARGIN_S)
            executor, self._executor = self._executor, None
            if executor is not None:
                executor.shutdown(wait=False)
        self._state = PrinterState.STOPPED

    async def status(self) -> PrinterStatus:
        """Read ``DLE EOT 1..4`` now (reconnecting once if a kept connection went stale)."""
        async with self._exclusive():
            try:
                status = await self._run(self._read_status_blocking, STATUS_GUARD_S)
            except DeviceError as err:
                self._note_failure(err)
                raise
            self._record_status(status)
            return status

    async def print_ticket(self, ticket: TicketPrint) -> PrintResult:
        """Check status, then send the ticket; refuse (``PrinterNotReady``) before any byte."""

        def render() -> bytes:
            return render_ticket(
                ticket,
                self.paper,
                self.chinese_mode,
                self.repertoire,
                self.print_materials,
                self._commands_blocking(),
            )

        return await self._print(render, f"ticket {ticket.number}")

    async def load_profile(self) -> PrinterProfile | None:
        """Import python-escpos and read the model's profile now (else at the first ticket)."""
        if self.model is None:
            return None
        async with self._exclusive():
            await self._run(self._commands_blocking, ESCPOS_LOAD_TIMEOUT_S)
        assert self._escpos is not None
        return self._escpos.profile

    async def print_test(self, now: datetime | None = None) -> PrintResult:
        """Print the technician self-test page (same status check as a ticket)."""
        printed_at = now or datetime.now(UTC).astimezone()

        def render() -> bytes:
            return render_test_page(
                self.id,
                printed_at,
                self.paper,
                self.chinese_mode,
                self.repertoire,
                self._commands_blocking(),
            )

        return await self._print(render, "self-test page")

    async def probe(self) -> list[ProbeResult]:
        """Connect and read the status now; report what to check instead of raising."""
        try:
            async with self._exclusive():
                await self._run(self._open_blocking, CONNECT_TIMEOUT_S + GUARD_MARGIN_S)
        except DeviceError as err:
            self._note_failure(err)
            detail = (
                f"{describe(err)}; check power, cable and url {self.endpoint.describe()} / "
                "请检查打印机电源、连接线和配置的地址"
            )
            return [ProbeResult(self.name, False, detail)]
        if not self.supports_status:
            where = self.endpoint.describe()
            detail = f"{where} opened, write-only: no status / 设备已打开（只写，无状态）"
            return [ProbeResult(self.name, True, detail)]
        try:
            status = await self.status()
        except DeviceError as err:
            detail = f"{describe(err)}; is it an ESC/POS printer? / 请确认是 ESC/POS 打印机"
            return [ProbeResult(self.name, False, detail)]
        problems = status.problems()
        if problems:
            detail = "; ".join(str(problem) for problem in problems)
        else:
            detail = f"ready, status {status.raw.hex(' ')} / 就绪"
        return [ProbeResult(self.name, status.can_print, detail)]

    def diagnostics(self) -> dict[str, Any]:
        """Return configuration (no secrets), state, last status and error, and counters."""
        status = self._last_status
        return {
            "name": self.name,
            "kind": "printer",
            "url": self.endpoint.describe(),
            "transport": str(self.endpoint.kind),
            "paper": self.paper,
            "chinese_mode": self.chinese_mode,
            "repertoire": self.repertoire,
            "print_materials": self.print_materials,
            "escpos_model": self.model,
            "escpos_profile": self._escpos.profile.as_dict() if self._escpos else None,
            "supports_status": self.supports_status,
            "printer_state": str(self._state),
            "connected": self._conn is not None,
            "connection": self._supervisor.diagnostics(),
            "last_status": status.as_dict() if status else None,
            "last_status_at": _iso(self._last_status_at),
            "last_error": self._last_error,
            "last_error_at": _iso(self._last_error_at),
            "counters": {
                "jobs": self._counters.jobs,
                "bytes": self._counters.bytes,
                "failures": self._counters.failures,
                "timeouts": self._counters.timeouts,
                "refusals": self._counters.refusals,
                "status_reads": self._counters.status_reads,
            },
        }

    # --- event-loop side -------------------------------------------------------------------

    @asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[None]:
        """Hold the printer for one operation; fail if it stays busy too long."""
        try:
            async with asyncio.timeout(LOCK_TIMEOUT_S):
                await self._lock.acquire()
        except TimeoutError as err:
            raise DeviceTimeout(
                f"printer {self.id} stayed busy for {LOCK_TIMEOUT_S:g} s",
                f"打印机 {self.id} 忙碌超过 {LOCK_TIMEOUT_S:g} 秒",
            ) from err
        try:
            yield
        finally:
            self._lock.release()

    async def _run(self, call: Callable[[], _T], guard: float) -> _T:
        """Run ``call`` on the worker thread, giving up after ``guard`` seconds."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=f"printer-{self.id}"
            )
        executor = self._executor
        future = asyncio.get_running_loop().run_in_executor(executor, call)
        try:
            async with asyncio.timeout(guard):
                return await future
        except DeviceTimeout:
            raise
        except TimeoutError as err:
            # The worker is wedged inside a call; drop the connection once it comes back.
            executor.submit(self._drop_blocking)
            raise DeviceTimeout(
                f"printer {self.id} did not finish within {guard:g} s",
                f"打印机 {self.id} 在 {guard:g} 秒内未完成操作",
            ) from err

    async def _print(self, render: Callable[[], bytes], what: str) -> PrintResult:
        async with self._exclusive():
            try:
                return await self._print_locked(render, what)
            finally:
                if self._state is PrinterState.PRINTING:  # ended by an unexpected error
                    self._state = PrinterState.UNKNOWN

    async def _print_locked(self, render: Callable[[], bytes], what: str) -> PrintResult:
        self._state = PrinterState.PRINTING
        try:
            status, data = await self._run(
                functools.partial(self._prepare_blocking, render), STATUS_GUARD_S
            )
            if status is not None:
                self._record_status(status, printing=True)
            write_timeout = self._write_timeout(len(data))
            await self._run(
                functools.partial(self._write_blocking, data, write_timeout),
                write_timeout + CONNECT_TIMEOUT_S + GUARD_MARGIN_S,
            )
        except PrinterNotReady as err:
            self._counters.refusals += 1
            self._record_status(err.printer_status)
            self._set_error(err)
            _LOGGER.warning("printer %s refused %s: %s", self.id, what, err.message_en)
            raise
        except DeviceError as err:
            self._note_failure(err)
            _LOGGER.warning("printer %s failed to print %s: %s", self.id, what, err.message_en)
            raise
        self._counters.jobs += 1
        self._counters.bytes += len(data)
        self._state = _state_for(status)
        warnings = tuple(status.problems()) if status is not None else ()
        for problem in warnings:
            _LOGGER.warning(
                "printer %s printed %s but needs attention: %s",
                self.id,
                what,
                problem.message_en,
            )
        _LOGGER.debug("printer %s printed %s (%d bytes)", self.id, what, len(data))
        return PrintResult(len(data), status, warnings)

    def _write_timeout(self, size: int) -> float:
        if self.endpoint.kind is TransportKind.SERIAL:
            return JOB_WRITE_TIMEOUT_S + SERIAL_WIRE_FACTOR * size * 10 / self.endpoint.baudrate
        return JOB_WRITE_TIMEOUT_S

    def _record_status(self, status: PrinterStatus, *, printing: bool = False) -> None:
        self._counters.status_reads += 1
        previous = self._last_status
        self._last_status = status
        self._last_status_at = datetime.now(UTC)
        if not printing:
            self._state = _state_for(status)
        if previous is not None and previous.raw == status.raw:
            return
        problems = status.problems()
        if problems:
            _LOGGER.warning(
                "printer %s: %s", self.id, "; ".join(problem.message_en for problem in problems)
            )
        elif previous is not None:
            _LOGGER.info("printer %s is ready again", self.id)
        if self._on_status is not None:
            try:
                self._on_status(status)
            except Exception:
                _LOGGER.exception("printer %s status listener failed", self.id)

    def _note_failure(self, err: DeviceError) -> None:
        self._counters.failures += 1
        if isinstance(err, DeviceTimeout):
            self._counters.timeouts += 1
        if not isinstance(err, PrinterStatusUnsupported):
            self._state = PrinterState.UNAVAILABLE
            self._lost_error = err
            self._lost.set()
        self._set_error(err)

    def _set_error(self, err: DeviceError) -> None:
        self._last_error = f"{err.message_zh} / {err.message_en}"
        self._last_error_at = datetime.now(UTC)

    # --- worker-thread side ----------------------------------------------------------------

    def _commands_blocking(self) -> CommandSet:
        if self.model is None:
            return OWN_COMMANDS
        if self._escpos is None:
            cache = self._state_dir / "escpos" if self._state_dir is not None else None
            self._escpos = EscposCommands(self.model, PAPER_DOTS[self.paper], cache)
            _LOGGER.info("printer %s: python-escpos profile %s", self.id, self._escpos.profile)
        return self._escpos

    def _open_blocking(self) -> Connection:
        if self._conn is None:
            self._conn = open_connection(self.endpoint, CONNECT_TIMEOUT_S)
        return self._conn

    def _drop_blocking(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()

    @contextlib.contextmanager
    def _dropping_on_error(self) -> Iterator[None]:
        try:
            yield
        except PrinterStatusUnsupported:
            raise
        except DeviceError:
            self._drop_blocking()
            raise

    def _read_status_blocking(self) -> PrinterStatus:
        if not self.supports_status:
            raise PrinterStatusUnsupported(
                f"printer {self.id} ({self.endpoint.describe()}) is write-only: no status",
                f"打印机 {self.id}（{self.endpoint.describe()}）只能写入，无法读取状态",
            )
        reused = self._conn is not None
        try:
            with self._dropping_on_error():
                return read_status(self._open_blocking())
        except DeviceUnavailable:
            if not reused:
                raise
        # A kept connection went stale (printer power-cycled, idle timeout): one fresh try.
        _LOGGER.debug("printer %s: reconnecting for status", self.id)
        with self._dropping_on_error():
            return read_status(self._open_blocking())

    def _prepare_blocking(self, render: Callable[[], bytes]) -> tuple[PrinterStatus | None, bytes]:
        status: PrinterStatus | None = None
        if self.supports_status:
            try:
                status = self._read_status_blocking()
            except PrinterStatusUnsupported:  # e.g. a USB printer without an IN endpoint
                status = None
        if status is not None and not status.can_print:
            raise PrinterNotReady(self.id, status)
        return status, render()

    def _write_blocking(self, data: bytes, timeout: float) -> None:
        with self._dropping_on_error():
            self._open_blocking().write(data, timeout)


class _PrinterLink:
    """The Link the supervisor keeps open: connect and read status, re-read it while idle."""

    def __init__(self, printer: TicketPrinter) -> None:
        self._printer = printer

    async def open(self) -> None:
        printer = self._printer
        printer._lost.clear()
        printer._lost_error = None
        async with printer._exclusive():
            await printer._run(printer._open_blocking, CONNECT_TIMEOUT_S + GUARD_MARGIN_S)
        if printer.supports_status:
            await printer.status()

    async def wait_closed(self) -> None:
        printer = self._printer
        await printer._lost.wait()
        if printer._lost_error is not None:
            raise printer._lost_error

    async def check(self) -> None:
        if self._printer.supports_status:
            await self._printer.status()

    async def close(self) -> None:
        printer = self._printer
        with contextlib.suppress(DeviceError):
            async with printer._exclusive():
                await printer._run(printer._drop_blocking, GUARD_MARGIN_S)


def _state_for(status: PrinterStatus | None) -> PrinterState:
    if status is None:
        return PrinterState.READY
    if not status.can_print:
        return PrinterState.NOT_READY
    return PrinterState.ATTENTION if status.problems() else PrinterState.READY


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
