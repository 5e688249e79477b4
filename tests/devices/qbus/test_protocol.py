"""QBusProtocol: request/reply matching, echoes, strays, idle-gap resync, connection loss."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from devices.qbus.frames import BROADCAST, MASTER, Command, Frame, PollAny
from devices.qbus.protocol import QBusProtocol, char_time
from qcall.errors import DeviceTimeout, DeviceUnavailable

WAIT_S = 5.0


class RecordingTransport(asyncio.Transport):
    """A transport that keeps what was written."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True


def connected() -> tuple[QBusProtocol, RecordingTransport]:
    protocol = QBusProtocol(char_time_s=char_time(115200))
    transport = RecordingTransport()
    protocol.connection_made(transport)
    return protocol, transport


async def test_reply_is_matched_by_source_seq_and_command() -> None:
    protocol, transport = connected()
    request = Frame(3, MASTER, 9, Command.PING)
    pending = asyncio.ensure_future(protocol.request(request, 1.0))
    await asyncio.sleep(0)
    assert transport.written == [request.to_bytes()]
    protocol.data_received(request.to_bytes())  # adapter echo
    protocol.data_received(Frame(MASTER, 4, 9, 0x82, b"\x00").to_bytes())  # wrong device
    protocol.data_received(Frame(MASTER, 3, 8, 0x82, b"\x00").to_bytes())  # old seq
    answer = request.make_reply(b"\x00\x01\x00\x00")
    protocol.data_received(answer.to_bytes()[:5])
    protocol.data_received(answer.to_bytes()[5:])
    async with asyncio.timeout(WAIT_S):
        assert await pending == answer
    assert (protocol.stats.echo_frames, protocol.stats.stray_frames) == (1, 2)
    assert (protocol.stats.frames_tx, protocol.stats.frames_rx) == (1, 4)


async def test_timeout_is_a_device_timeout() -> None:
    protocol, _ = connected()
    with pytest.raises(DeviceTimeout) as info:
        await protocol.request(Frame(3, MASTER, 1, Command.PING), 0.01)
    assert isinstance(info.value, TimeoutError)
    assert "无应答" in info.value.message_zh


async def test_connection_lost_fails_the_pending_request() -> None:
    protocol, _ = connected()
    pending = asyncio.ensure_future(protocol.request(Frame(3, MASTER, 1, Command.PING), 10))
    await asyncio.sleep(0)
    protocol.connection_lost(ConnectionResetError("gone"))
    with pytest.raises(DeviceUnavailable, match="gone"):
        await pending
    assert not protocol.is_open
    async with asyncio.timeout(WAIT_S):
        await protocol.wait_closed()
    with pytest.raises(DeviceUnavailable):
        await protocol.request(Frame(3, MASTER, 2, Command.PING), 1)


async def test_idle_gap_abandons_a_truncated_frame() -> None:
    protocol, _ = connected()
    request = Frame(3, MASTER, 5, Command.PING)
    pending = asyncio.ensure_future(protocol.request(request, WAIT_S))
    await asyncio.sleep(0)
    # A header claiming 200 bytes hides the real reply until the line has been idle.
    protocol.data_received(bytes.fromhex("5AA5 01 F0 03 05 82 C8"))
    protocol.data_received(request.make_reply(b"\x00\x01\x00\x00").to_bytes())
    async with asyncio.timeout(WAIT_S):
        reply = await pending
    assert reply.src == 3


async def test_one_request_at_a_time() -> None:
    protocol, _ = connected()
    first = asyncio.ensure_future(protocol.request(Frame(3, MASTER, 1, Command.PING), 1))
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError):
        await protocol.request(Frame(4, MASTER, 1, Command.PING), 1)
    first.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await first


def poll_any_frame(*addresses: int) -> Frame:
    return Frame(BROADCAST, MASTER, 1, Command.POLL_ANY, PollAny(3, addresses).to_payload())


async def test_poll_any_collects_attention_bytes_and_decodes_frames() -> None:
    protocol, transport = connected()
    frame = poll_any_frame(5, 0x5A, 7, 9)
    window = asyncio.ensure_future(protocol.poll_any(frame, 0.05))
    await asyncio.sleep(0)
    assert transport.written == [frame.to_bytes()]
    protocol.data_received(frame.to_bytes())  # adapter echo, in the window
    protocol.data_received(b"\x05")
    protocol.data_received(b"\x5a")  # address 5A: not the start of a frame
    protocol.data_received(b"\x07\xff")  # FF is noise, not an address
    # A late reply from an earlier request is still decoded, split where 5A could mislead.
    late = Frame(MASTER, 3, 4, 0x82, b"\x00\x01\x00\x00").to_bytes()
    protocol.data_received(late[:1])
    protocol.data_received(late[1:])
    protocol.data_received(b"\x5a")  # held back until the window closes
    async with asyncio.timeout(WAIT_S):
        heard = await window
    assert heard == [5, 0x5A, 7, 0x5A]
    assert protocol.stats.attention_bytes == 4
    assert (protocol.stats.echo_frames, protocol.stats.stray_frames) == (1, 1)
    # Outside the window, bytes are noise again and a request works as before.
    protocol.data_received(b"\x06")
    request = Frame(9, MASTER, 2, Command.PING)
    pending = asyncio.ensure_future(protocol.request(request, WAIT_S))
    await asyncio.sleep(0.01)
    protocol.data_received(request.make_reply(b"\x00\x01\x00\x00").to_bytes())
    async with asyncio.timeout(WAIT_S):
        assert (await pending).src == 9
    assert protocol.stats.attention_bytes == 4


async def test_poll_any_window_lasts_from_the_frame_end() -> None:
    protocol, _ = connected()
    loop = asyncio.get_running_loop()
    frame = poll_any_frame(*range(1, 9))
    start = loop.time()
    assert await protocol.poll_any(frame, 0.03) == []
    assert loop.time() - start >= protocol.wire_time(frame.wire_size) + 0.03 - 0.002


async def test_poll_any_on_a_lost_connection_raises() -> None:
    protocol, _ = connected()
    window = asyncio.ensure_future(protocol.poll_any(poll_any_frame(5), 0.05))
    await asyncio.sleep(0)
    protocol.connection_lost(None)
    with pytest.raises(DeviceUnavailable):
        await window
