"""Open a device connection by URL: a serial path (pyserial-asyncio-fast) or socket://host:port."""

from __future__ import annotations

import asyncio
import functools
import logging
import termios
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

import serial
import serial.rs485
import serial_asyncio_fast

from qcall.errors import DeviceTimeout, DeviceUnavailable

_LOGGER = logging.getLogger(__name__)

# Opening a local serial port or a TCP connection to a gateway on the hall's LAN takes
# milliseconds; 5 s tolerates a slow USB re-enumeration or a busy switch while keeping a dead
# host from stalling the supervisor's retry loop.
OPEN_TIMEOUT_S: Final = 5.0

_P = TypeVar("_P", bound=asyncio.Protocol)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a device is: a serial path, or a TCP host and port."""

    kind: Literal["serial", "socket"]
    path: str = ""
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        return f"socket://{self.host}:{self.port}" if self.kind == "socket" else self.path


def parse_url(url: str) -> Endpoint:
    """Parse ``socket://host:port`` or a serial path; raise ValueError (bilingual) otherwise."""
    if url.startswith("socket://"):
        parts = urllib.parse.urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None:
            raise ValueError(f"{url!r}: expected socket://HOST:PORT / 应为 socket://主机:端口 格式")
        return Endpoint("socket", host=parts.hostname, port=port)
    if "://" in url:
        raise ValueError(
            f"{url!r}: only serial paths and socket://HOST:PORT are supported / "
            "只支持串口路径和 socket://主机:端口"
        )
    return Endpoint("serial", path=url)


async def open_connection(
    url: str,
    protocol_factory: Callable[[], _P],
    *,
    baud: int = 9600,
    parity: Literal["N", "E", "O"] = "N",
    rs485: bool = False,
    open_timeout: float = OPEN_TIMEOUT_S,
) -> tuple[asyncio.Transport, _P]:
    """Open ``url`` and connect ``protocol_factory``; raise DeviceUnavailable or DeviceTimeout."""
    endpoint = parse_url(url)
    try:
        async with asyncio.timeout(open_timeout):
            if endpoint.kind == "socket":
                return await _open_socket(endpoint, protocol_factory)
            return await _open_serial(endpoint.path, protocol_factory, baud, parity, rs485)
    except TimeoutError:
        raise DeviceTimeout(
            f"opening {endpoint} took longer than {open_timeout:g} s",
            f"打开 {endpoint} 超过 {open_timeout:g} 秒未完成",
        ) from None


async def _open_socket(
    endpoint: Endpoint, protocol_factory: Callable[[], _P]
) -> tuple[asyncio.Transport, _P]:
    loop = asyncio.get_running_loop()
    try:
        return await loop.create_connection(protocol_factory, endpoint.host, endpoint.port)
    except OSError as err:
        raise DeviceUnavailable(
            f"cannot connect to {endpoint}: {err.strerror or err}",
            f"无法连接 {endpoint}：{err.strerror or err}",
        ) from err


async def _open_serial(
    path: str,
    protocol_factory: Callable[[], _P],
    baud: int,
    parity: str,
    rs485: bool,
) -> tuple[asyncio.Transport, _P]:
    loop = asyncio.get_running_loop()
    opening = loop.run_in_executor(
        None, functools.partial(_open_serial_port, path, baud, parity, rs485)
    )
    try:
        port = await asyncio.shield(opening)
    except asyncio.CancelledError:
        # The executor thread cannot be interrupted: close the port if it opens after all.
        opening.add_done_callback(_close_late_port)
        raise
    except ValueError as err:
        raise DeviceUnavailable(
            f"cannot configure {path}: {err}"
            + (" (rs485 = true needs a UART driver with RS-485 support)" if rs485 else ""),
            f"无法设置串口 {path}：{err}"
            + ("（rs485 = true 需要支持 RS-485 的串口驱动）" if rs485 else ""),
        ) from err
    except (OSError, termios.error) as err:
        raise DeviceUnavailable(
            f"cannot open serial port {path}: {err}", f"无法打开串口 {path}：{err}"
        ) from err
    transport, protocol = await serial_asyncio_fast.connection_for_serial(
        loop, protocol_factory, port
    )
    return transport, protocol  # type: ignore[return-value]


def _open_serial_port(path: str, baud: int, parity: str, rs485: bool) -> Any:
    port = serial.serial_for_url(
        path,
        do_not_open=True,
        baudrate=baud,
        parity=parity,
        bytesize=serial.EIGHTBITS,
        stopbits=serial.STOPBITS_ONE,
        exclusive=True,
    )
    if rs485:
        port.rs485_mode = serial.rs485.RS485Settings()
    port.open()
    return port


def _close_late_port(opening: asyncio.Future[Any]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        _LOGGER.debug("closing serial port that opened after its timeout")
        opening.result().close()
