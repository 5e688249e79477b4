"""The bus emulator speaks real QBus bytes: addressing, caching, acks, pacing, control, CLI."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from devices.emulators.bus import (
    CONTROL_HELP,
    BusEmulator,
    main,
    parse_addresses,
    parse_kinds,
)
from devices.qbus.frames import (
    BROADCAST,
    MASTER,
    Colour,
    Command,
    DeviceKind,
    Effect,
    Encoding,
    EventKind,
    Frame,
    FrameDecoder,
    PingReply,
    PollAny,
    PollEvents,
    PollReply,
    QueryText,
    SetAddress,
    SetIdleText,
    ShowCall,
    ShownText,
    ShowText,
    Status,
    wire_time,
)

WAIT_S = 5.0
D, K, R = DeviceKind.COUNTER_DISPLAY, DeviceKind.KEYPAD, DeviceKind.RATING_PAD


class Wire:
    """A raw master: writes frames, reads reply frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.decoder = FrameDecoder()
        self.frames: list[Frame] = []

    def send(self, dst: int, seq: int, cmd: int, payload: bytes = b"") -> Frame:
        frame = Frame(dst, MASTER, seq, cmd, payload)
        self.writer.write(frame.to_bytes())
        return frame

    async def reply(self) -> Frame:
        async with asyncio.timeout(WAIT_S):
            while not self.frames:
                self.frames += self.decoder.feed(await self.reader.read(256))
        return self.frames.pop(0)


@pytest.fixture
async def emulator() -> AsyncIterator[BusEmulator]:
    emu = BusEmulator({3: D, 5: K, 9: R}, baud=115200, control=("127.0.0.1", 0))
    await emu.start()
    yield emu
    await emu.stop()


@pytest.fixture
async def wire(emulator: BusEmulator) -> AsyncIterator[Wire]:
    host, port = emulator.url.removeprefix("socket://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    yield Wire(reader, writer)
    writer.close()
    await writer.wait_closed()


async def test_only_the_addressed_device_answers(wire: Wire) -> None:
    wire.send(77, 1, Command.PING)
    wire.send(BROADCAST, 2, Command.PING)
    wire.send(3, 3, Command.PING)
    answer = await wire.reply()
    assert (answer.src, answer.dst, answer.seq, answer.cmd) == (3, MASTER, 3, 0x82)
    assert PingReply.from_payload(answer.payload) == PingReply(boot=1, flags=4, pending=0)


async def test_status_codes(wire: Wire) -> None:
    wire.send(5, 1, Command.SHOW_CALL, ShowCall("A1", 1).to_payload())
    assert (await wire.reply()).payload == bytes([Status.UNKNOWN_COMMAND])
    wire.send(3, 2, Command.BRIGHTNESS, b"\x20")
    assert (await wire.reply()).payload == bytes([Status.BAD_PAYLOAD])
    wire.send(3, 3, Command.SHOW_TEXT, bytes.fromhex("FF 00 00 01 FFFF"))
    assert (await wire.reply()).payload == bytes([Status.NOT_IN_FONT])
    wire.send(3, 4, 0x66)
    assert (await wire.reply()).payload == bytes([Status.UNKNOWN_COMMAND])


async def test_query_text_reads_back_what_the_display_shows(
    emulator: BusEmulator, wire: Wire
) -> None:
    seq = 0

    async def ask(dst: int, cmd: Command, payload: bytes = b"") -> bytes:
        nonlocal seq
        seq += 1
        wire.send(dst, seq, cmd, payload)
        return (await wire.reply()).payload

    async def shown(line: int = 0xFF) -> ShownText:
        return ShownText.from_payload(
            await ask(3, Command.QUERY_TEXT, QueryText(line).to_payload())
        )

    assert await shown() == ShownText("", encoding=Encoding.ASCII)
    await ask(3, Command.SHOW_TEXT, ShowText("测试 TEST", effect=Effect.SCROLL).to_payload())
    assert await shown() == ShownText("测试 TEST", Effect.SCROLL, Colour.RED, Encoding.GB2312)
    await ask(3, Command.SHOW_TEXT, ShowText("8888", line=1, colour=Colour.GREEN).to_payload())
    assert (await shown()).text == "测试 TEST\n8888" == emulator.shown(3)["text"]
    assert await shown(1) == ShownText("8888", Effect.STATIC, Colour.GREEN, Encoding.ASCII)
    await ask(3, Command.SHOW_CALL, ShowCall("A012", 3, 3).to_payload())
    call = await shown()
    assert (call.text, call.effect) == ("请A012号\n到3号窗口", Effect.BLINK)
    assert call.text == emulator.shown(3)["text"]
    await ask(3, Command.SHOW_CALL, ShowCall("B7", 12, 0).to_payload())
    assert await shown() == ShownText("请B7号\n到12号窗口", encoding=Encoding.GB2312)
    assert (await shown(1)).text == "到12号窗口"
    await ask(3, Command.SET_IDLE_TEXT, SetIdleText("欢迎" * 59 + "光").to_payload())  # 238 B
    await ask(3, Command.CLEAR)
    idle = await shown()
    assert idle.text == "欢迎" * 59  # cut after the last whole character that fits 236 bytes
    assert await ask(3, Command.QUERY_TEXT, QueryText(2).to_payload()) == bytes(
        [Status.BAD_PAYLOAD]
    )
    assert await ask(3, Command.QUERY_TEXT) == bytes([Status.BAD_PAYLOAD])
    assert await ask(5, Command.QUERY_TEXT, QueryText().to_payload()) == bytes(
        [Status.UNKNOWN_COMMAND]
    )


async def test_duplicate_seq_gets_the_cached_reply(emulator: BusEmulator, wire: Wire) -> None:
    emulator.press(5, EventKind.NEXT)
    wire.send(5, 40, Command.POLL_EVENTS, PollEvents().to_payload())
    first = await wire.reply()
    emulator.press(5, EventKind.RECALL)
    wire.send(5, 40, Command.POLL_EVENTS, PollEvents().to_payload())
    assert await wire.reply() == first
    wire.send(5, 41, Command.POLL_EVENTS, PollEvents().to_payload())
    fresh = PollReply.from_payload((await wire.reply()).payload)
    assert [e.kind for e in fresh.events] == [EventKind.NEXT, EventKind.RECALL]


async def test_ack_removes_events_only_for_the_current_boot(
    emulator: BusEmulator, wire: Wire
) -> None:
    for _ in range(6):
        emulator.press(5, EventKind.NEXT)
    wire.send(5, 1, Command.POLL_EVENTS, PollEvents().to_payload())
    poll = PollReply.from_payload((await wire.reply()).payload)
    assert ([e.seq for e in poll.events], poll.remaining) == ([1, 2, 3, 4], 2)
    wire.send(5, 2, Command.POLL_EVENTS, PollEvents(ack_boot=9, ack_upto=4).to_payload())
    assert [e.seq for e in PollReply.from_payload((await wire.reply()).payload).events] == [
        1,
        2,
        3,
        4,
    ]
    wire.send(5, 3, Command.POLL_EVENTS, PollEvents(ack_boot=1, ack_upto=4).to_payload())
    poll = PollReply.from_payload((await wire.reply()).payload)
    assert ([e.seq for e in poll.events], poll.remaining) == ([5, 6], 0)


async def test_power_cycle_loses_volatile_state_keeps_idle_text(
    emulator: BusEmulator, wire: Wire
) -> None:
    wire.send(3, 1, Command.SET_IDLE_TEXT, SetIdleText("欢迎").to_payload())
    await wire.reply()
    wire.send(3, 2, Command.SHOW_CALL, ShowCall("A1", 2).to_payload())
    await wire.reply()
    emulator.press(5, EventKind.NEXT)
    emulator.fault(3, "power_cycle")
    emulator.fault(5, "power_cycle")
    assert emulator.shown(3)["text"] == "欢迎"
    assert emulator.shown(3)["boot"] == 2
    assert emulator.shown(5)["queued"] == 0


async def test_reset_answers_then_restarts(emulator: BusEmulator, wire: Wire) -> None:
    wire.send(3, 1, Command.RESET)
    assert (await wire.reply()).payload == b"\x00"
    assert emulator.shown(3)["boot"] == 2


async def test_broadcasts_act_on_every_device_without_reply(
    emulator: BusEmulator, wire: Wire
) -> None:
    wire.send(BROADCAST, 0, Command.RESET)
    serial = emulator.shown(5)["serial"]
    wire.send(BROADCAST, 0, Command.SET_ADDRESS, SetAddress(serial, 15).to_payload())
    wire.send(3, 1, Command.PING)
    answer = await wire.reply()
    assert (answer.src, PingReply.from_payload(answer.payload).boot) == (3, 2)
    assert emulator.shown(15)["boot"] == 2
    wire.send(15, 2, Command.SET_ADDRESS, SetAddress(serial, 16).to_payload())
    answer = await wire.reply()
    assert (answer.src, answer.payload) == (15, b"\x00")
    assert emulator.shown(16)["kind"] == "keypad"


async def test_bytes_are_paced_at_the_baud_rate() -> None:
    emulator = BusEmulator({3: D}, baud=1200)
    await emulator.start()
    received: list[float] = []
    emulator.subscribe(lambda _, at: received.append(at))
    host, port = emulator.url.removeprefix("socket://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        slow = Wire(reader, writer)
        loop = asyncio.get_running_loop()
        sent_at = loop.time()
        request = slow.send(3, 1, Command.PING)
        answer = await slow.reply()
        done_at = loop.time()
        # Lower bounds only: the emulator must never be faster than the wire.
        assert received[0] - sent_at >= wire_time(request.wire_size, 1200) - 0.001
        assert done_at - sent_at >= wire_time(request.wire_size + answer.wire_size, 1200) - 0.001
    finally:
        writer.close()
        await writer.wait_closed()
        await emulator.stop()


async def test_control_port(emulator: BusEmulator) -> None:
    assert emulator.control_address is not None
    reader, writer = await asyncio.open_connection(*emulator.control_address)

    async def ask(command: dict[str, object]) -> dict[str, object]:
        writer.write(json.dumps(command).encode() + b"\n")
        async with asyncio.timeout(WAIT_S):
            answer: dict[str, object] = json.loads(await reader.readline())
        return answer

    try:
        assert await ask({"cmd": "press", "addr": 5, "event": "skip"}) == {"ok": True, "result": 1}
        assert (await ask({"cmd": "press", "addr": 5, "event": "callback", "ticket": "A9"}))["ok"]
        assert (await ask({"cmd": "press", "addr": 5, "event": "transfer", "window": 4}))["ok"]
        assert (await ask({"cmd": "rating", "addr": 9, "score": 5}))["ok"]
        assert (await ask({"cmd": "fault", "addr": 3, "kind": "late_reply", "late_ms": 50}))["ok"]
        shown = await ask({"cmd": "shown", "addr": 5})
        assert shown["result"]["queued"] == 3  # type: ignore[index]
        state = await ask({"cmd": "state"})
        assert set(state["result"]["devices"]) == {"3", "5", "9"}  # type: ignore[index]
        assert (await ask({"cmd": "help"}))["result"] == CONTROL_HELP
        for bad in (
            {"cmd": "press", "addr": 3, "event": "next"},
            {"cmd": "press", "addr": 5, "event": "dance"},
            {"cmd": "fault", "addr": 3, "kind": "fire"},
            {"cmd": "shown", "addr": 42},
            {"cmd": "nope", "addr": 1},
        ):
            answer = await ask(bad)
            assert answer["ok"] is False
            assert answer["error"]
        writer.write(b"not json\n")
        assert json.loads(await reader.readline())["ok"] is False
    finally:
        writer.close()
        await writer.wait_closed()


async def test_state_file_follows_the_displays(tmp_path: Path) -> None:
    state = tmp_path / "bus.json"
    emulator = BusEmulator({3: D, 5: K}, baud=115200, state_file=state)
    await emulator.start()
    assert json.loads(state.read_text("utf-8"))["devices"]["3"]["mode"] == "idle"
    host, port = emulator.url.removeprefix("socket://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        Wire(reader, writer).send(3, 1, Command.SHOW_CALL, ShowCall("C020", 7).to_payload())
        await emulator.wait_until(lambda: emulator.shown(3)["ticket"] == "C020", WAIT_S)
    finally:
        writer.close()
        await writer.wait_closed()
        await emulator.stop()  # flushes the pending state write
    shown = json.loads(state.read_text("utf-8"))["devices"]["3"]
    assert (shown["ticket"], shown["window"], shown["flashing"]) == ("C020", 7, True)
    assert shown["text"] == "请C020号\n到7号窗口"


def test_address_and_kind_parsing() -> None:
    assert parse_addresses("1-3,7,9-10") == [1, 2, 3, 7, 9, 10]
    kinds = parse_kinds("1-2=display,3=keypad,4=rating", parse_addresses("1-5"))
    assert kinds == {1: D, 2: D, 3: K, 4: R, 5: D}
    for bad in ("0-3", "5-2", "x", "1-200"):
        with pytest.raises(ValueError, match="地址"):
            parse_addresses(bad)
    with pytest.raises(ValueError, match="unknown kind"):
        parse_kinds("1=printer", [1])
    with pytest.raises(ValueError, match="not in --addresses"):
        parse_kinds("9=keypad", [1])


def test_cli_help_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--listen HOST:PORT" in out
    assert "控制端口" in out
    assert '"cmd": "press"' in out
    with pytest.raises(SystemExit) as info:
        main(["--listen", "127.0.0.1:0", "--addresses", "1-2", "--kinds", "3=keypad"])
    assert info.value.code == 2
    assert "--addresses" in capsys.readouterr().err


def _ignore_sigint() -> None:
    """What a shell does to a job it starts in the background (``qcall emulate bus &``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("background", [False, True])
async def test_cli_runs_and_stops_on_sigint(background: bool) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "devices.emulators.bus",
        "--listen",
        "127.0.0.1:0",
        "--addresses",
        "1-4",
        "--kinds",
        "3-4=keypad",
        "--pty",
        "--control",
        "127.0.0.1:0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[3])},
        preexec_fn=_ignore_sigint if background else None,
    )
    assert process.stdout is not None
    try:
        lines = []
        async with asyncio.timeout(WAIT_S * 2):
            while len(lines) < 4:
                lines.append((await process.stdout.readline()).decode())
        assert lines[0].startswith("bus / 总线: socket://127.0.0.1:")
        assert lines[1].startswith("pty: /dev/")
        assert lines[2].startswith("control / 控制端口: 127.0.0.1:")
        assert "3=keypad" in lines[3]
        host, port = lines[2].split(": ", 1)[1].strip().rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b'{"cmd": "press", "addr": 3, "event": "next"}\n')
        assert json.loads(await reader.readline()) == {"ok": True, "result": 1}
        writer.close()
        await writer.wait_closed()
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        try:
            async with asyncio.timeout(WAIT_S):
                status = await process.wait()
        except TimeoutError:
            process.kill()  # never leave an emulator behind
            await process.wait()
            pytest.fail("the emulator ignored SIGINT and was killed")
    assert status == 0


async def test_poll_any_attention_bytes_in_their_slots() -> None:
    baud = 9600
    emulator = BusEmulator({3: D, 5: K, 6: K, 7: K, 9: R}, baud=baud)
    await emulator.start()
    host, port = emulator.url.removeprefix("socket://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        emulator.press(7, EventKind.NEXT)
        emulator.press(5, EventKind.NEXT)
        emulator.rating(9, 5)
        emulator.press(6, EventKind.NEXT)
        emulator.fault(6, "no_reply")  # its next reply is to be lost: it stays silent
        received: list[float] = []
        emulator.subscribe(lambda _, at: received.append(at))
        loop = asyncio.get_running_loop()
        payload = PollAny(3, (3, 9, 6, 7, 5)).to_payload()
        writer.write(Frame(BROADCAST, MASTER, 1, Command.POLL_ANY, payload).to_bytes())
        heard: list[tuple[int, float]] = []
        async with asyncio.timeout(WAIT_S):
            while len(heard) < 4:
                for byte in await reader.read(16):
                    heard.append((byte, loop.time()))
        # The display has not been asked since it powered up: it signals its restart.
        assert [byte for byte, _ in heard] == [3, 9, 7, 5]
        # Slot i starts 3 * i characters after the frame; a byte ends one character later.
        char = wire_time(1, baud)
        for (_, at), slot in zip(heard, (0, 1, 3, 4), strict=True):
            assert at - received[0] >= (3 * slot + 1) * char - 0.001
        assert heard[-1][1] - received[0] < (3 * 5 + 1) * char + 0.05
        emulator.fault(7, "unplug")
        writer.write(Frame(BROADCAST, MASTER, 2, Command.POLL_ANY, payload).to_bytes())
        async with asyncio.timeout(WAIT_S):
            again = await reader.readexactly(2)
        assert again == b"\x03\x09"
    finally:
        writer.close()
        await writer.wait_closed()
        await emulator.stop()
