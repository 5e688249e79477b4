"""The printer emulator as a real endpoint: status bytes, jobs, faults, files, CLI."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from devices.emulators.printer import (
    FAULT_STATUS,
    EmulatedJob,
    PrinterEmulator,
    PrinterFault,
    build_parser,
    main,
)
from devices.printer.render import render_ticket
from devices.printer.status import PrinterStatus
from tests.devices.printer.samples import SAMPLE

# Generous bound for local round trips; only reached when something is broken.
WAIT_S = 10.0
REPO_ROOT = str(Path(__file__).resolve().parents[3])
STATUS_ALL = bytes.fromhex("10 04 01 10 04 02 10 04 03 10 04 04")


async def _open(emulator: PrinterEmulator) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", emulator.port)


async def _ask(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    data: bytes,
    replies: int | None = None,
) -> bytes:
    writer.write(data)
    async with asyncio.timeout(WAIT_S):
        return await reader.readexactly(data.count(b"\x10\x04") if replies is None else replies)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    async with asyncio.timeout(WAIT_S):
        await writer.wait_closed()


async def _jobs(emulator: PrinterEmulator, count: int) -> list[EmulatedJob]:
    async with asyncio.timeout(WAIT_S):
        return await emulator.wait_for_jobs(count)


@pytest.mark.parametrize("fault", [None, *PrinterFault])
async def test_status_bytes_for_every_fault(
    emulator: PrinterEmulator, fault: PrinterFault | None
) -> None:
    emulator.set_fault(fault)
    reader, writer = await _open(emulator)
    reply = await _ask(reader, writer, STATUS_ALL)
    await _close(writer)
    assert reply == FAULT_STATUS[fault]
    status = PrinterStatus.from_bytes(reply)
    assert status.online is (fault in (None, PrinterFault.NEAR_END))
    assert status.paper_end is (fault is PrinterFault.PAPER_END)
    assert status.cover_open is (fault is PrinterFault.COVER_OPEN)
    assert status.cutter_error is (fault is PrinterFault.CUTTER_ERROR)
    assert status.paper_near_end is (fault in (PrinterFault.NEAR_END, PrinterFault.PAPER_END))


def test_fault_table_matches_the_reference_bytes() -> None:
    assert FAULT_STATUS[None].hex(" ") == "12 12 12 12"
    assert FAULT_STATUS[PrinterFault.PAPER_END].hex(" ") == "1a 32 12 7e"
    assert FAULT_STATUS[PrinterFault.NEAR_END].hex(" ") == "12 12 12 1e"
    assert FAULT_STATUS[PrinterFault.COVER_OPEN][:2].hex(" ") == "1a 16"


async def test_status_is_answered_mid_job_and_split_across_packets(
    emulator: PrinterEmulator,
) -> None:
    job = render_ticket(SAMPLE)
    half = len(job) // 2
    reader, writer = await _open(emulator)
    assert await _ask(reader, writer, job[:half] + b"\x10\x04\x01") == b"\x12"
    emulator.set_fault(PrinterFault.NEAR_END)
    writer.write(b"\x10\x04")
    await writer.drain()
    assert await _ask(reader, writer, b"\x04", replies=1) == b"\x1e"
    assert emulator.jobs == []
    writer.write(job[half:])
    (stored,) = await _jobs(emulator, 1)
    await _close(writer)
    assert stored.raw == job
    assert stored.printed
    assert "前面还有 5 人等候" in stored.job.text_lines()


async def test_job_without_cut_ends_with_the_connection(emulator: PrinterEmulator) -> None:
    reader, writer = await _open(emulator)
    assert await _ask(reader, writer, b"\x1b@\x10\x04\x01") == b"\x12"
    writer.write(b"\x1c&\xc7\xeb\xc9\xd4\xba\xf2\nPlease wait\n")
    await writer.drain()
    await _close(writer)
    (stored,) = await _jobs(emulator, 1)
    assert stored.job.text_lines() == ["请稍候", "Please wait"]
    assert not stored.job.cut


async def test_status_only_connection_makes_no_job(emulator: PrinterEmulator) -> None:
    reader, writer = await _open(emulator)
    await _ask(reader, writer, STATUS_ALL)
    await _close(writer)
    reader, writer = await _open(emulator)  # a second connection: the first one is finished
    await _ask(reader, writer, b"\x10\x04\x01")
    await _close(writer)
    assert emulator.jobs == []
    assert emulator.job_bytes_received == 0
    assert emulator.status_queries == 5


async def test_job_during_a_fault_is_recorded_as_not_printed(emulator: PrinterEmulator) -> None:
    emulator.set_fault("paper-end")
    _reader, writer = await _open(emulator)
    writer.write(render_ticket(SAMPLE))
    (stored,) = await _jobs(emulator, 1)
    await _close(writer)
    assert not stored.printed
    assert stored.png_path is None
    assert stored.txt_path.read_text(encoding="utf-8").startswith("[NOT PRINTED: paper-end")


async def test_numbering_continues_after_existing_files(tmp_path: Path) -> None:
    (tmp_path / "0041.txt").write_text("old", encoding="utf-8")
    emulator = PrinterEmulator(tmp_path)
    await emulator.start()
    try:
        for _ in range(2):
            _reader, writer = await _open(emulator)
            writer.write(render_ticket(SAMPLE))
            await _close(writer)
        jobs = await _jobs(emulator, 2)
        assert [job.number for job in jobs] == [42, 43]
        assert (tmp_path / "0043.png").is_file()
    finally:
        await emulator.stop()


def test_cli_arguments_and_bilingual_help(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(
        ["--listen", "[::1]:9100", "--out", "var/p", "--paper", "58", "--fault", "cover-open"]
    )
    assert args.listen == ("::1", 9100)
    assert (args.paper, args.fault, args.out) == (58, "cover-open", Path("var/p"))
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    help_text = capsys.readouterr().out
    assert "打印机模拟器" in help_text
    assert "ticket printer emulator" in help_text
    for bad in (
        ["--listen", "nowhere", "--out", "x"],
        ["--listen", "h:1", "--out", "x", "--fault", "x"],
    ):
        with pytest.raises(SystemExit):
            main(bad)
    assert "HOST:PORT" in capsys.readouterr().err


async def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": REPO_ROOT}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "devices.emulators.printer",
        "--listen",
        "127.0.0.1:0",
        "--out",
        str(tmp_path),
        "--paper",
        "58",
        "--fault",
        "near-end",
        "--control",
        "127.0.0.1:0",
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        async with asyncio.timeout(WAIT_S):
            while not lines or not lines[-1].startswith("control"):
                line = await process.stdout.readline()
                assert line, "emulator exited before listening"
                lines.append(line.decode())
        # It says at start which fault is active.
        assert "故障 / fault: 纸将尽 near-end\n" in lines
        found = re.search(r"tcp://([\d.]+):(\d+)", "".join(lines))
        assert found is not None
        reader, writer = await asyncio.open_connection(found[1], int(found[2]))
        assert await _ask(reader, writer, STATUS_ALL) == FAULT_STATUS[PrinterFault.NEAR_END]
        # The fault changes at run time through the control port: open the cover, then close
        # it and refill the paper.
        host, port = lines[-1].split(": ", 1)[1].strip().rsplit(":", 1)
        control_reader, control_writer = await asyncio.open_connection(host, int(port))
        for fault, status in (("cover-open", PrinterFault.COVER_OPEN), (None, None)):
            command = json.dumps({"cmd": "fault", "fault": fault}).encode() + b"\n"
            control_writer.write(command)
            answer = json.loads(await control_reader.readline())
            assert answer["ok"] is True
            assert answer["result"]["fault"] == fault
            assert await _ask(reader, writer, STATUS_ALL) == FAULT_STATUS[status]
        control_writer.write(b'{"cmd": "fault", "fault": "jammed"}\n')
        refused = json.loads(await control_reader.readline())
        assert refused["ok"] is False
        assert "jammed" in refused["error"]
        await _close(control_writer)
        # The status query after the cut is answered only once the job was handed to storage,
        # and stopping waits for storage to finish.
        assert await _ask(reader, writer, render_ticket(SAMPLE, paper=58) + b"\x10\x04\x01")
        await _close(writer)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(WAIT_S):
                returncode = await process.wait()
        except TimeoutError:
            process.kill()  # never leave an emulator behind
            await process.wait()
            pytest.fail("the printer emulator ignored SIGTERM and was killed")
    assert returncode == 0
    assert "[C 4x4 B] A012" in (tmp_path / "0001.txt").read_text(encoding="utf-8")
    with Image.open(tmp_path / "0001.png") as png:
        assert png.width == 384
