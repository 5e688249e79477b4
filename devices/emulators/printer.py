"""ESC/POS ticket printer emulator: TCP 9100 (or a pty), real status bytes, jobs as .txt/.png."""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import functools
import json
import logging
import os
import re
import signal
import sys
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Final

from devices.printer import decode as d
from devices.printer.paper import JobBuilder, PrintedJob, describe, render_png

_LOGGER = logging.getLogger(__name__)

# Closing connections and flushing pending .txt/.png writes at stop(); rendering one PNG
# takes tens of milliseconds, so 5 s only runs out if the disk is wedged.
STOP_TIMEOUT_S: Final = 5.0
# Status replies are single bytes; a client that leaves 64 KiB of them unread this long is gone.
REPLY_DRAIN_TIMEOUT_S: Final = 5.0
_READ_CHUNK: Final = 65536
_JOB_FILE: Final = re.compile(r"^(\d{4,})\.txt$")


class PrinterFault(StrEnum):
    """Conditions the emulated printer can be put in."""

    PAPER_END = "paper-end"
    NEAR_END = "near-end"
    COVER_OPEN = "cover-open"
    OFFLINE = "offline"
    CUTTER_ERROR = "cutter-error"


# Replies to DLE EOT 1, 2, 3, 4 (devices.md §2.1; every byte has the fixed 0xx1xx10 bits).
# Offline is n1 bit3; its cause is in n2 (bit2 cover, bit5 paper end, bit6 error) and n3
# (bit3 autocutter); n4 bits 2+3 are paper near end, bits 5+6 paper end.
FAULT_STATUS: Final[dict[PrinterFault | None, bytes]] = {
    None: bytes.fromhex("12 12 12 12"),
    PrinterFault.PAPER_END: bytes.fromhex("1a 32 12 7e"),
    PrinterFault.NEAR_END: bytes.fromhex("12 12 12 1e"),
    PrinterFault.COVER_OPEN: bytes.fromhex("1a 16 12 12"),
    PrinterFault.OFFLINE: bytes.fromhex("1a 12 12 12"),
    PrinterFault.CUTTER_ERROR: bytes.fromhex("1a 52 1a 12"),
}
_PRINTS_IN: Final = frozenset({None, PrinterFault.NEAR_END})
_CLI_FAULTS: Final = tuple(
    fault.value
    for fault in (
        PrinterFault.PAPER_END,
        PrinterFault.NEAR_END,
        PrinterFault.COVER_OPEN,
        PrinterFault.OFFLINE,
    )
)


@dataclass(frozen=True, slots=True)
class EmulatedJob:
    """A job the emulator received, up to its cut (or the end of the connection)."""

    number: int
    raw: bytes
    job: PrintedJob
    text: str
    printed: bool
    txt_path: Path
    png_path: Path | None


@dataclass
class _Session:
    """One connection's byte stream: status answered at once, jobs collected until the cut."""

    emulator: PrinterEmulator
    reply: Callable[[bytes], None]
    parser: d.EscPosParser = field(default_factory=d.EscPosParser)
    builder: JobBuilder | None = None
    raw: bytearray = field(default_factory=bytearray)
    kanji: bool = False

    def feed(self, data: bytes) -> None:
        for command, raw in self.parser.feed_with_bytes(data):
            if isinstance(command, d.StatusRequest):
                self.emulator.note_status_query()
                answer = self.emulator.status_reply(command.n)
                if answer:
                    self.reply(answer)
                continue
            self.emulator.job_bytes_received += len(raw)
            if self.builder is None:
                self.builder = JobBuilder(paper=self.emulator.paper, chinese_mode=self.kanji)
            self.raw += raw
            if isinstance(command, d.KanjiOn | d.KanjiOff):
                self.kanji = isinstance(command, d.KanjiOn)
            if self.builder.add(command):
                self._complete()

    def close(self) -> None:
        for tail in self.parser.close():
            self.emulator.job_bytes_received += len(tail.raw)
            self.raw += tail.raw
            if self.builder is not None:
                self.builder.add(tail)
        if self.builder is not None and self.builder.has_content:
            self._complete()

    def _complete(self) -> None:
        if self.builder is None:
            return
        self.builder.byte_count = len(self.raw)
        self.emulator.complete_job(bytes(self.raw), self.builder.finish())
        self.builder = None
        self.raw = bytearray()


class PrinterEmulator:
    """An ESC/POS printer on TCP (and optionally a pty) that writes each job as NNNN.txt/.png."""

    def __init__(
        self,
        out_dir: Path | str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        paper: int = 80,
        fault: PrinterFault | str | None = None,
        control: tuple[str, int] | None = None,
    ) -> None:
        if paper not in (58, 80):
            raise ValueError(f"paper must be 58 or 80, not {paper!r}")
        self.out_dir = Path(out_dir)
        self.host = host
        self.paper = paper
        self.jobs: list[EmulatedJob] = []
        self.status_queries = 0
        self.job_bytes_received = 0
        self._requested_port = port
        self._fault = PrinterFault(fault) if fault else None
        self._control = control
        self._control_server: asyncio.Server | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._stores: set[asyncio.Task[None]] = set()
        self._ptys: list[tuple[int, int, _Session]] = []
        self._activity = asyncio.Event()
        self._next_number = 1

    @property
    def port(self) -> int:
        """Return the TCP port actually listened on."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("emulator not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        """Return the ``tcp://`` URL a driver should use."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"

    @property
    def control_address(self) -> tuple[str, int] | None:
        """Return the (host, port) of the control port, None when there is none."""
        if self._control_server is None or not self._control_server.sockets:
            return None
        host, port = self._control_server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    def describe_fault(self) -> str:
        """Return the current fault in Chinese and English (``无故障 none`` when healthy)."""
        return _FAULT_LABELS[self._fault]

    def control(self, line: bytes | str) -> dict[str, object]:
        """Run one control command (a JSON object); return ``{"ok": …, "result"|"error": …}``."""
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise TypeError("a command is a JSON object / 命令须为 JSON 对象")
            name = request.get("cmd")
            if name == "help":
                return {"ok": True, "result": PRINTER_CONTROL_HELP}
            if name == "fault":
                fault = request.get("fault")
                if fault is not None and fault not in _CONTROL_FAULTS:
                    raise ValueError(
                        f"unknown fault {fault!r} / 未知故障 (one of {', '.join(_CONTROL_FAULTS)})"
                    )
                self.set_fault(fault)
            elif name != "state":
                raise ValueError(f'unknown command {name!r} / 未知命令 (try {{"cmd": "help"}})')
            return {"ok": True, "result": self.state()}
        except (ValueError, TypeError) as err:
            return {"ok": False, "error": str(err)}

    def state(self) -> dict[str, object]:
        """Return the fault, paper width and jobs so far (JSON-ready)."""
        return {
            "fault": None if self._fault is None else self._fault.value,
            "fault_text": self.describe_fault(),
            "paper": self.paper,
            "jobs": len(self.jobs),
        }

    @property
    def fault(self) -> PrinterFault | None:
        """Return the current fault (None when healthy)."""
        return self._fault

    def set_fault(self, fault: PrinterFault | str | None) -> None:
        """Put the printer into ``fault`` (or back to healthy with None); takes effect at once."""
        self._fault = PrinterFault(fault) if fault else None
        _LOGGER.info("printer emulator fault: %s", self._fault or "none")

    def status_reply(self, n: int) -> bytes:
        """Return the reply to ``DLE EOT n`` (nothing for n outside 1..4, like real printers)."""
        if n not in (1, 2, 3, 4):
            return b""
        return FAULT_STATUS[self._fault][n - 1 : n]

    async def start(self) -> None:
        """Create the output directory and start listening."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        existing = [int(m[1]) for p in self.out_dir.iterdir() if (m := _JOB_FILE.match(p.name))]
        self._next_number = max(existing, default=0) + 1
        self._server = await asyncio.start_server(self._handle, self.host, self._requested_port)
        if self._control is not None:
            self._control_server = await asyncio.start_server(
                self._serve_control, self._control[0], self._control[1]
            )
        _LOGGER.info(
            "printer emulator on %s, jobs in %s, fault: %s",
            self.url,
            self.out_dir,
            self.describe_fault(),
        )

    def open_pty(self) -> str:
        """Also serve on a new pseudo-terminal; return the path a serial driver opens."""
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        session = _Session(self, functools.partial(_write_fd, master))
        asyncio.get_running_loop().add_reader(master, self._read_pty, master, session)
        self._ptys.append((master, slave, session))
        return os.ttyname(slave)

    async def stop(self) -> None:
        """Stop listening, end every connection and finish writing pending jobs."""
        loop = asyncio.get_running_loop()
        for master, slave, session in self._ptys:
            loop.remove_reader(master)
            session.close()
            os.close(master)
            os.close(slave)
        self._ptys.clear()
        if self._server is not None:
            self._server.close()
        if self._control_server is not None:
            self._control_server.close()
            self._control_server = None
        for writer in list(self._writers):
            writer.close()
        pending = self._handlers | self._stores
        if pending:
            _done, late = await asyncio.wait(pending, timeout=STOP_TIMEOUT_S)
            for task in late:
                task.cancel()
        self._server = None

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds, re-checked after each status query and stored job."""
        while not predicate():
            self._activity.clear()
            await self._activity.wait()

    async def wait_for_jobs(self, count: int) -> list[EmulatedJob]:
        """Wait until ``count`` jobs are stored (callers bound it with ``asyncio.timeout``)."""
        await self.wait_until(lambda: len(self.jobs) >= count)
        return list(self.jobs)

    def note_status_query(self) -> None:
        """Count a ``DLE EOT`` query and wake waiters."""
        self.status_queries += 1
        self._activity.set()

    def complete_job(self, raw: bytes, job: PrintedJob) -> None:
        """Number the job and store its files in the background."""
        number = self._next_number
        self._next_number += 1
        printed = self._fault in _PRINTS_IN
        task = asyncio.get_running_loop().create_task(
            self._store(number, raw, job, printed, self._fault),
            name=f"printer-emulator-job-{number}",
        )
        self._stores.add(task)
        task.add_done_callback(self._stores.discard)

    async def _store(
        self, number: int, raw: bytes, job: PrintedJob, printed: bool, fault: PrinterFault | None
    ) -> None:
        try:
            stored = await asyncio.to_thread(self._write_files, number, raw, job, printed, fault)
        except Exception:
            _LOGGER.exception("printer emulator could not store job %04d", number)
            return
        bisect.insort(self.jobs, stored, key=lambda item: item.number)
        self._activity.set()

    def _write_files(
        self, number: int, raw: bytes, job: PrintedJob, printed: bool, fault: PrinterFault | None
    ) -> EmulatedJob:
        text = describe(job, title=f"job {number:04d}")
        if not printed:
            text = f"[NOT PRINTED: {fault} 打印机未就绪 printer not ready]\n{text}"
        txt_path = self.out_dir / f"{number:04d}.txt"
        txt_path.write_text(text, encoding="utf-8")
        png_path: Path | None = None
        if printed:
            png_path = self.out_dir / f"{number:04d}.png"
            render_png(job).save(png_path)
        _LOGGER.info("printer emulator job %04d: %d bytes -> %s", number, len(raw), txt_path)
        return EmulatedJob(number, raw, job, text, printed, txt_path, png_path)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        self._writers.add(writer)
        session = _Session(self, writer.write)
        try:
            # Like a real printer, wait for the host as long as it keeps the connection open.
            while data := await reader.read(_READ_CHUNK):
                session.feed(data)
                async with asyncio.timeout(REPLY_DRAIN_TIMEOUT_S):
                    await writer.drain()
        except (ConnectionError, OSError) as err:  # includes TimeoutError from the drain
            _LOGGER.debug("printer emulator connection ended: %s", err)
        finally:
            session.close()
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
            if task is not None:
                self._handlers.discard(task)

    async def _serve_control(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        self._writers.add(writer)
        try:
            while line := await reader.readline():
                answer = json.dumps(self.control(line), ensure_ascii=False)
                writer.write(answer.encode() + b"\n")
                async with asyncio.timeout(REPLY_DRAIN_TIMEOUT_S):
                    await writer.drain()
        except (ConnectionError, OSError) as err:
            _LOGGER.debug("printer emulator control connection ended: %s", err)
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
            if task is not None:
                self._handlers.discard(task)

    def _read_pty(self, master: int, session: _Session) -> None:
        try:
            data = os.read(master, _READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as err:  # EIO: no process has the serial side open right now
            _LOGGER.debug("printer emulator pty read: %s", err)
            return
        session.feed(data)


def _write_fd(fd: int, data: bytes) -> None:
    """Write a (short) status reply to the pty master."""
    os.write(fd, data)


def _parse_listen(text: str) -> tuple[str, int]:
    match = re.fullmatch(r"\[?([^\[\]]+?)\]?:(\d{1,5})", text)
    if match is None or int(match[2]) > 65535:
        raise argparse.ArgumentTypeError(
            f"expected HOST:PORT, got {text!r} / 应为 主机:端口 格式，收到 {text!r}"
        )
    return match[1], int(match[2])


def build_parser() -> argparse.ArgumentParser:
    """Return the ``qcall emulate printer`` argument parser (help in Chinese and English)."""
    parser = argparse.ArgumentParser(
        prog="qcall emulate printer",
        description=(
            "ESC/POS 小票打印机模拟器：监听 TCP（9100 方式），应答 DLE EOT 状态查询，"
            "把每张小票写成 NNNN.txt 和 NNNN.png。 / "
            "ESC/POS ticket printer emulator: listens on TCP (port 9100 style), answers "
            "DLE EOT status queries, writes each ticket as NNNN.txt and NNNN.png."
        ),
    )
    parser.add_argument(
        "--listen",
        required=True,
        type=_parse_listen,
        metavar="HOST:PORT",
        help="监听地址，如 127.0.0.1:9100 / address to listen on, e.g. 127.0.0.1:9100",
    )
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        metavar="DIR",
        help="小票输出目录 / directory for the printed tickets",
    )
    parser.add_argument(
        "--paper",
        type=int,
        choices=(58, 80),
        default=80,
        help="纸宽（毫米），默认 80 / paper width in mm (default 80)",
    )
    parser.add_argument(
        "--control",
        type=_parse_listen,
        metavar="HOST:PORT",
        help=(
            "控制端口：运行中更换故障（加纸、开盖……），每行一个 JSON 命令 / control port: change "
            'the fault at run time (refill paper, open the cover), JSON lines; {"cmd": "help"}'
        ),
    )
    parser.add_argument(
        "--fault",
        choices=_CLI_FAULTS,
        default=None,
        help="启动时的故障：缺纸、纸将尽、开盖、离线 / start with a fault: paper end, "
        "paper near end, cover open, offline",
    )
    return parser


_CONTROL_FAULTS: Final = tuple(fault.value for fault in PrinterFault)
_FAULT_LABELS: Final[dict[PrinterFault | None, str]] = {
    None: "无故障 none",
    PrinterFault.PAPER_END: "缺纸 paper-end",
    PrinterFault.NEAR_END: "纸将尽 near-end",
    PrinterFault.COVER_OPEN: "开盖 cover-open",
    PrinterFault.OFFLINE: "离线 offline",
    PrinterFault.CUTTER_ERROR: "切刀故障 cutter-error",
}
PRINTER_CONTROL_HELP: Final = """\
control port / 控制端口: one JSON object per line, one JSON answer per line
  {"cmd": "fault", "fault": "paper-end"}   fault now / 设置故障:
      paper-end near-end cover-open offline cutter-error
  {"cmd": "fault", "fault": null}          healthy again (paper refilled, cover closed) / 恢复正常
  {"cmd": "state"}                         fault, paper, jobs / 当前状态
answers: {"ok": true, "result": ...} or {"ok": false, "error": "..."}
"""


async def _serve(emulator: PrinterEmulator) -> None:
    await emulator.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    sys.stdout.write(
        f"打印机模拟器已启动 {emulator.url}，小票目录 {emulator.out_dir}\n"
        f"printer emulator listening on {emulator.url}, tickets in {emulator.out_dir}\n"
        f"故障 / fault: {emulator.describe_fault()}\n"
    )
    if emulator.control_address is not None:
        host, port = emulator.control_address
        sys.stdout.write(f"control / 控制端口: {host}:{port}\n")
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        await emulator.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the emulator until SIGINT/SIGTERM; return the exit status."""
    args = build_parser().parse_args(argv)
    host, port = args.listen
    emulator = PrinterEmulator(
        args.out,
        host=host,
        port=port,
        paper=args.paper,
        fault=args.fault,
        control=args.control,
    )
    try:
        asyncio.run(_serve(emulator))
    except OSError as err:
        sys.stderr.write(f"无法启动打印机模拟器 / cannot start the printer emulator: {err}\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
