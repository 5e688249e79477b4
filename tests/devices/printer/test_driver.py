"""The TicketPrinter device against the emulator on 127.0.0.1, a pty, a file and fakes."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from PIL import Image

from devices.base import DeviceState
from devices.emulators.printer import PrinterEmulator, PrinterFault
from devices.printer import (
    PrinterNotReady,
    PrinterState,
    PrinterStatus,
    PrinterStatusUnsupported,
    TicketPrinter,
)
from devices.printer.decode import decode
from devices.printer.render import render_ticket
from devices.supervisor import SupervisorPolicy
from qcall.config import Printer
from qcall.errors import DeviceTimeout, DeviceUnavailable
from tests.devices.printer.samples import SAMPLE

# Generous bound for local round trips; only reached when something is broken.
WAIT_S = 10.0


@pytest.fixture
async def printer(emulator: PrinterEmulator) -> AsyncIterator[TicketPrinter]:
    """Return a printer connected by TCP to the emulator."""
    device = TicketPrinter("kiosk", emulator.url)
    try:
        yield device
    finally:
        await device.stop()


async def _jobs(emulator: PrinterEmulator, count: int) -> list:  # type: ignore[type-arg]
    async with asyncio.timeout(WAIT_S):
        return await emulator.wait_for_jobs(count)


async def test_prints_a_ticket_to_the_emulator(
    emulator: PrinterEmulator, printer: TicketPrinter
) -> None:
    result = await printer.print_ticket(SAMPLE)
    assert result.bytes_sent == len(render_ticket(SAMPLE))
    assert result.status is not None
    assert result.status.can_print
    assert result.warnings == ()
    (job,) = await _jobs(emulator, 1)
    assert job.printed
    assert job.raw == render_ticket(SAMPLE)
    text = job.txt_path.read_text(encoding="utf-8")
    assert job.txt_path.name == "0001.txt"
    for expected in (
        "[C 1x2 B] 浦东新区某某街道社区事务受理服务中心",
        "[C 2x2 B] 城乡居民基本医疗保险参保",
        "[C 5x5 B] A012",
        "[C 1x2] 前面还有 5 人等候",
        "[C 1x1] 5 ahead of you",
        "[QR model 2 · size 6 · EC M] http://127.0.0.1:8080/t/3fK9xQ2mVb",
        "[L 1x1] □ 一寸免冠彩色照片两张，近期拍摄，白色背景",
        "[CUT]",
    ):
        assert expected in text.splitlines()
    assert job.png_path is not None
    with Image.open(job.png_path) as png:
        assert png.width == 576
        assert png.height > 1000
    assert emulator.status_queries == 4
    counters = printer.diagnostics()["counters"]
    assert counters["jobs"] == 1
    assert counters["bytes"] == result.bytes_sent
    assert printer.state is PrinterState.READY


async def test_58mm_ticket_png_is_384_dots_wide(tmp_path: Path) -> None:
    emulator = PrinterEmulator(tmp_path, paper=58)
    await emulator.start()
    device = TicketPrinter("narrow", emulator.url, paper=58, repertoire="gb2312")
    try:
        ticket = dataclasses.replace(SAMPLE, service_en="喆 needs an image in GB2312")
        await device.print_ticket(ticket)
        (job,) = await _jobs(emulator, 1)
        assert "[IMAGE 384x30]" in job.text
        assert "[C 4x4 B] A012" in job.text
        assert job.png_path is not None
        with Image.open(job.png_path) as png:
            assert png.width == 384
    finally:
        await device.stop()
        await emulator.stop()


async def test_paper_end_is_reported_and_refused_before_any_byte(
    emulator: PrinterEmulator, printer: TicketPrinter
) -> None:
    emulator.set_fault(PrinterFault.PAPER_END)
    status = await printer.status()
    assert status.paper_end
    assert not status.online
    with pytest.raises(PrinterNotReady) as info:
        await printer.print_ticket(SAMPLE)
    assert "缺纸" in info.value.message_zh
    assert "Paper end" in info.value.message_en
    assert info.value.printer_status.paper_end
    # Another status round trip on the same connection: any job byte would have arrived first.
    await printer.status()
    assert emulator.job_bytes_received == 0
    assert emulator.jobs == []
    diagnostics = printer.diagnostics()
    assert diagnostics["counters"]["refusals"] == 1
    assert diagnostics["counters"]["jobs"] == 0
    assert diagnostics["printer_state"] == "not_ready"
    assert "缺纸" in diagnostics["last_error"]
    assert diagnostics["last_status"]["raw"] == "1a 32 12 7e"


@pytest.mark.parametrize(
    ("fault", "code", "zh"),
    [
        (PrinterFault.COVER_OPEN, "cover_open", "纸仓盖打开"),
        (PrinterFault.OFFLINE, "offline", "离线"),
        (PrinterFault.CUTTER_ERROR, "cutter_error", "切刀"),
    ],
)
async def test_other_faults_refuse_with_a_bilingual_reason(
    emulator: PrinterEmulator, printer: TicketPrinter, fault: PrinterFault, code: str, zh: str
) -> None:
    emulator.set_fault(fault)
    with pytest.raises(PrinterNotReady) as info:
        await printer.print_ticket(SAMPLE)
    assert [problem.code for problem in info.value.problems] == [code]
    assert zh in info.value.message_zh
    await printer.status()
    assert emulator.job_bytes_received == 0


async def test_near_end_prints_but_warns(emulator: PrinterEmulator) -> None:
    seen: list[PrinterStatus] = []
    printer = TicketPrinter("kiosk2", emulator.url, on_status=seen.append)
    try:
        emulator.set_fault("near-end")
        result = await printer.print_ticket(SAMPLE)
        assert [problem.code for problem in result.warnings] == ["paper_near_end"]
        (job,) = await _jobs(emulator, 1)
        assert job.printed
        assert printer.state is PrinterState.ATTENTION
        emulator.set_fault(None)
        assert (await printer.status()).problems() == []
        assert [status.paper_near_end for status in seen] == [True, False]
    finally:
        await printer.stop()


async def test_self_test_page(emulator: PrinterEmulator, printer: TicketPrinter) -> None:
    await printer.print_test(SAMPLE.issued_at)
    (job,) = await _jobs(emulator, 1)
    assert "[C 2x2 B] 打印机自检" in job.text
    assert "[L 1x1] 编号 Printer: kiosk" in job.text
    assert "[IMAGE 576x30]" in job.text


async def test_probe_reports_ready_and_faults(
    emulator: PrinterEmulator, printer: TicketPrinter
) -> None:
    (result,) = await printer.probe()
    assert result.ok
    assert result.name == "printer:kiosk"
    emulator.set_fault(PrinterFault.COVER_OPEN)
    (result,) = await printer.probe()
    assert not result.ok
    assert "纸仓盖打开" in result.detail
    assert "Cover open" in result.detail


async def test_probe_of_an_absent_printer_names_what_to_check() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    device = TicketPrinter("gone", f"tcp://127.0.0.1:{port}")
    try:
        (result,) = await device.probe()
        assert not result.ok
        assert "请检查打印机电源" in result.detail
        with pytest.raises(DeviceUnavailable):
            await device.status()
        counters = device.diagnostics()["counters"]
        assert counters["failures"] == 2
        assert device.state is PrinterState.UNAVAILABLE
    finally:
        await device.stop()


async def test_reconnects_when_the_printer_restarts(tmp_path: Path) -> None:
    first = PrinterEmulator(tmp_path, paper=80)
    await first.start()
    port = first.port
    device = TicketPrinter("kiosk", first.url)
    try:
        await device.status()
        await first.stop()
        second = PrinterEmulator(tmp_path, port=port, paper=80)
        await second.start()
        try:
            assert (await device.status()).can_print  # the stale socket is replaced once
            await device.print_ticket(SAMPLE)
            (job,) = await _jobs(second, 1)
            assert job.number == 1
        finally:
            await second.stop()
    finally:
        await device.stop()


async def test_serial_printer_on_a_pty(emulator: PrinterEmulator) -> None:
    path = emulator.open_pty()
    for count, url in enumerate((f"serial://{path}?baud=19200", path), start=1):
        device = TicketPrinter("serial", url)
        try:
            emulator.set_fault(PrinterFault.PAPER_END)
            assert (await device.status()).paper_end
            with pytest.raises(PrinterNotReady):
                await device.print_ticket(SAMPLE)
            emulator.set_fault(None)
            await device.print_ticket(SAMPLE)
            await _jobs(emulator, count)  # stored before the next fault is set
        finally:
            await device.stop()
    jobs = await _jobs(emulator, 2)
    assert [job.raw for job in jobs] == [render_ticket(SAMPLE)] * 2
    assert all(job.printed for job in jobs)


async def test_write_only_device_file(tmp_path: Path) -> None:
    spool = tmp_path / "lp0.bin"
    device = TicketPrinter("lp", f"file://{spool}", paper=58)
    try:
        assert not device.supports_status
        (result,) = await device.probe()
        assert result.ok
        assert "write-only" in result.detail
        with pytest.raises(PrinterStatusUnsupported):
            await device.status()
        printed = await device.print_ticket(SAMPLE)
        assert printed.status is None
        await device.print_ticket(SAMPLE)
        data = render_ticket(SAMPLE, paper=58)
        assert spool.read_bytes() == data + data
        decode(spool.read_bytes())  # two whole jobs, nothing else
    finally:
        await device.stop()


class _SlowPrinter:
    """A TCP printer that holds its answer to DLE EOT 1 until released."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.queried = threading.Event()
        self.release = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        peer, _ = self.server.accept()
        with peer:
            while data := peer.recv(64):
                for _ in range(data.count(b"\x10\x04")):
                    self.queried.set()
                    self.release.wait(WAIT_S)
                    peer.sendall(b"\x12")

    def close(self) -> None:
        self.release.set()
        self.server.close()
        self._thread.join(WAIT_S)


@pytest.fixture
def slow_printer() -> Iterator[_SlowPrinter]:
    """Return a printer that blocks its status reply until released."""
    fake = _SlowPrinter()
    try:
        yield fake
    finally:
        fake.close()


async def test_blocking_io_does_not_block_the_event_loop(slow_printer: _SlowPrinter) -> None:
    device = TicketPrinter("slow", f"tcp://127.0.0.1:{slow_printer.port}")
    try:
        pending = asyncio.create_task(device.status())
        async with asyncio.timeout(WAIT_S):
            await asyncio.to_thread(slow_printer.queried.wait, WAIT_S)
        ticks = 0
        for _ in range(20):  # the loop keeps running while the worker waits for the reply
            await asyncio.sleep(0)
            ticks += 1
        assert ticks == 20
        assert not pending.done()
        slow_printer.release.set()
        async with asyncio.timeout(WAIT_S):
            status = await pending
        assert status.can_print
    finally:
        await device.stop()


async def test_silent_printer_times_out() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        device = TicketPrinter("mute", f"tcp://127.0.0.1:{server.getsockname()[1]}")
        try:
            with pytest.raises(DeviceTimeout) as info:
                await device.status()
            assert "DLE EOT 1" in info.value.message_en
            assert device.diagnostics()["counters"]["timeouts"] == 1
        finally:
            await device.stop()


async def test_supervised_start_reads_status_and_reports_state(
    emulator: PrinterEmulator,
) -> None:
    states: list[tuple[str, DeviceState, str]] = []
    device = TicketPrinter(
        "kiosk",
        emulator.url,
        on_state=lambda name, state, detail: states.append((name, state, detail)),
        policy=SupervisorPolicy(probe_interval_s=0.05),
    )
    await device.start()
    try:
        async with asyncio.timeout(WAIT_S):  # the open plus two idle checks
            await emulator.wait_until(lambda: emulator.status_queries >= 12)
        assert device.connection_state is DeviceState.READY
        assert ("printer:kiosk", DeviceState.READY, "") in states
        emulator.set_fault(PrinterFault.PAPER_END)
        async with asyncio.timeout(WAIT_S):
            await emulator.wait_until(
                lambda: device.last_status is not None and device.last_status.paper_end
            )
        assert device.connection_state is DeviceState.READY  # reachable, just out of paper
        assert device.state is PrinterState.NOT_READY
    finally:
        await device.stop()
    assert states[-1][1] is DeviceState.DISCONNECTED
    assert device.diagnostics()["printer_state"] == "stopped"


async def test_from_config_and_diagnostics_hide_nothing_secret(emulator: PrinterEmulator) -> None:
    url = emulator.url.replace("tcp://", "tcp://admin:hunter2@")
    config = Printer(id="kiosk", url=url, paper=58, repertoire="gb18030", print_materials=False)
    device = TicketPrinter.from_config(config)
    try:
        diagnostics = device.diagnostics()
        assert "hunter2" not in repr(diagnostics)
        assert diagnostics["url"] == emulator.url
        assert diagnostics["paper"] == 58
        assert diagnostics["repertoire"] == "gb18030"
        assert diagnostics["print_materials"] is False
        assert diagnostics["supports_status"] is True
        assert set(diagnostics["counters"]) == {
            "jobs",
            "bytes",
            "failures",
            "timeouts",
            "refusals",
            "status_reads",
        }
    finally:
        await device.stop()


@pytest.mark.parametrize(("kwargs"), [{"paper": 76}, {"repertoire": "big5"}])
def test_bad_settings_are_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        TicketPrinter("kiosk", "tcp://127.0.0.1:9100", **kwargs)  # type: ignore[arg-type]
