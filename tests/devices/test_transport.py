"""Opening devices by URL: socket://, serial paths (pty), errors and timeouts."""

from __future__ import annotations

import asyncio
import os
import threading
import tty
from typing import Any

import pytest

from devices import transport
from devices.transport import Endpoint, open_connection, parse_url
from qcall.errors import DeviceTimeout, DeviceUnavailable


class Collect(asyncio.Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.got = asyncio.Event()
        self.lost = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        self.data += data
        self.got.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()


def test_parse_url() -> None:
    assert parse_url("socket://127.0.0.1:7700") == Endpoint("socket", host="127.0.0.1", port=7700)
    assert parse_url("/dev/ttyUSB0") == Endpoint("serial", path="/dev/ttyUSB0")
    assert str(parse_url("socket://bus.local:1")) == "socket://bus.local:1"
    for bad in ("socket://host", "socket://:80", "socket://h:port", "rfc2217://h:1"):
        with pytest.raises(ValueError, match="socket://"):
            parse_url(bad)


async def test_socket_round_trip() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.read(10))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport_, protocol = await open_connection(f"socket://127.0.0.1:{port}", Collect)
    transport_.write(b"ping")
    async with asyncio.timeout(5):
        await protocol.got.wait()
        await protocol.lost.wait()
    assert protocol.data == b"ping"
    transport_.close()
    server.close()
    await server.wait_closed()


async def test_refused_connection_is_device_unavailable() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(DeviceUnavailable) as info:
        await open_connection(f"socket://127.0.0.1:{port}", Collect)
    assert "无法连接" in info.value.message_zh
    assert isinstance(info.value, ConnectionError)


async def test_missing_serial_port_is_device_unavailable() -> None:
    with pytest.raises(DeviceUnavailable, match="/dev/nonexistent-qbus"):
        await open_connection("/dev/nonexistent-qbus", Collect)


async def test_serial_pty_round_trip_and_rs485_refusal() -> None:
    master_fd, slave_fd = os.openpty()
    tty.setraw(slave_fd)
    path = os.ttyname(slave_fd)
    try:
        transport_, protocol = await open_connection(path, Collect, baud=19200)
        os.write(master_fd, b"hello")
        async with asyncio.timeout(5):
            await protocol.got.wait()
        assert protocol.data == b"hello"
        transport_.close()
        async with asyncio.timeout(5):
            await protocol.lost.wait()
        with pytest.raises(DeviceUnavailable, match="RS-485"):
            await open_connection(path, Collect, rs485=True)
    finally:
        os.close(master_fd)
        os.close(slave_fd)


async def test_slow_open_times_out_and_the_late_port_is_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    closed = threading.Event()
    release = threading.Event()

    class Port:
        def close(self) -> None:
            closed.set()

    def slow_open(*args: Any) -> Port:
        release.wait(5)
        return Port()

    monkeypatch.setattr(transport, "_open_serial_port", slow_open)
    with pytest.raises(DeviceTimeout, match=r"longer than 0\.05 s"):
        await open_connection("/dev/slow", Collect, open_timeout=0.05)
    release.set()
    assert await asyncio.get_running_loop().run_in_executor(None, closed.wait, 5)
