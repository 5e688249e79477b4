"""Printer URLs and the blocking byte connections behind them (used from one worker thread)."""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import re
import select
import socket
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Protocol
from urllib.parse import parse_qs, urlsplit

import serial

from qcall.errors import DeviceError, DeviceTimeout, DeviceUnavailable, QcallError

_LOGGER = logging.getLogger(__name__)

DEFAULT_TCP_PORT: Final = 9100
DEFAULT_BAUDRATE: Final = 9600
_BAUDRATES: Final = frozenset(
    {1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600}
)
_LP_DEVICE: Final = re.compile(r"^/dev/(usb/)?lp\d+$")
_USB_IDS: Final = re.compile(r"^([0-9a-fA-F]{4}):([0-9a-fA-F]{4})$")
# Polling step while waiting to drain stale USB input: one full-speed frame is 1 ms, 20 ms
# catches any queued packet without slowing the pre-ticket status check noticeably.
USB_DRAIN_TIMEOUT_S: Final = 0.02


class PrinterUrlError(QcallError, ValueError):
    """The printer URL is malformed or names an unknown transport; fix the configuration."""

    code = "invalid_config"
    status = 400


class PrinterStatusUnsupported(DeviceError):
    """The connection is write-only (device file), so no status can be read."""

    code = "printer_status_unsupported"


class TransportKind(StrEnum):
    """How the printer is reached."""

    TCP = "tcp"
    SERIAL = "serial"
    FILE = "file"
    USB = "usb"


@dataclass(frozen=True, slots=True)
class PrinterEndpoint:
    """A parsed printer URL."""

    kind: TransportKind
    host: str = ""
    port: int = 0
    path: str = ""
    baudrate: int = DEFAULT_BAUDRATE
    vendor_id: int = 0
    product_id: int = 0
    create: bool = False

    @property
    def supports_status(self) -> bool:
        """Return whether ``DLE EOT`` replies can be read back."""
        return self.kind is not TransportKind.FILE

    def describe(self) -> str:
        """Return a canonical URL without credentials or unknown parameters."""
        match self.kind:
            case TransportKind.TCP:
                host = f"[{self.host}]" if ":" in self.host else self.host
                return f"tcp://{host}:{self.port}"
            case TransportKind.SERIAL:
                return f"serial://{self.path}?baud={self.baudrate}"
            case TransportKind.FILE:
                return f"file://{self.path}"
            case TransportKind.USB:
                return f"usb://{self.vendor_id:04x}:{self.product_id:04x}"


def _bad(url: str, why_en: str, why_zh: str) -> PrinterUrlError:
    return PrinterUrlError(
        f"printer url {url!r}: {why_en}",
        f"打印机地址 {url!r} 无效：{why_zh}",
        details={"url": url},
    )


def parse_printer_url(url: str) -> PrinterEndpoint:
    """Parse ``tcp://``/``socket://``, ``serial://`` or a tty path, ``file://``/lp path, ``usb://``."""
    url = url.strip()
    if url.startswith("/"):
        if _LP_DEVICE.match(url):
            return PrinterEndpoint(TransportKind.FILE, path=url)
        return PrinterEndpoint(TransportKind.SERIAL, path=url)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("tcp", "socket"):
        try:
            host, port = parts.hostname, parts.port
        except ValueError as err:
            raise _bad(url, "bad port", "端口号错误") from err
        if not host:
            raise _bad(url, "missing host", "缺少主机名")
        return PrinterEndpoint(TransportKind.TCP, host=host, port=port or DEFAULT_TCP_PORT)
    if scheme == "serial":
        if not parts.path.startswith("/"):
            raise _bad(url, "expected serial:///dev/ttyX", "应为 serial:///dev/ttyX 格式")
        query = parse_qs(parts.query)
        baud_text = query.get("baud", [str(DEFAULT_BAUDRATE)])[-1]
        if not baud_text.isdigit() or int(baud_text) not in _BAUDRATES:
            raise _bad(url, f"unsupported baud rate {baud_text}", f"不支持的波特率 {baud_text}")
        return PrinterEndpoint(TransportKind.SERIAL, path=parts.path, baudrate=int(baud_text))
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise _bad(url, "expected file:///absolute/path", "应为 file:///绝对路径 格式")
        # A spool file may be created; a missing device node must fail, not become a file.
        create = not parts.path.startswith("/dev/")
        return PrinterEndpoint(TransportKind.FILE, path=parts.path, create=create)
    if scheme == "usb":
        match = _USB_IDS.match(parts.netloc)
        if match is None:
            raise _bad(url, "expected usb://VID:PID in hex", "应为 usb://VID:PID（十六进制）格式")
        return PrinterEndpoint(
            TransportKind.USB, vendor_id=int(match[1], 16), product_id=int(match[2], 16)
        )
    raise _bad(url, "unknown scheme (tcp, socket, serial, file, usb)", "未知的连接方式")


class Connection(Protocol):
    """A blocking byte connection to a printer; only its owner thread touches it."""

    supports_status: bool

    def write(self, data: bytes, timeout: float) -> None:
        """Send all of ``data`` within ``timeout`` seconds."""

    def read(self, size: int, timeout: float) -> bytes:
        """Return up to ``size`` bytes, or ``b""`` when ``timeout`` passes."""

    def discard_input(self) -> None:
        """Drop bytes already received."""

    def close(self) -> None:
        """Release the connection (idempotent)."""


def _closed(what: str) -> DeviceUnavailable:
    return DeviceUnavailable(
        f"printer closed the connection ({what})", f"打印机断开了连接（{what}）"
    )


class TcpConnection:
    """Raw TCP (port 9100, JetDirect style)."""

    supports_status = True

    def __init__(self, host: str, port: int, connect_timeout: float) -> None:
        self._where = f"{host}:{port}"
        try:
            self._sock = socket.create_connection((host, port), timeout=connect_timeout)
        except TimeoutError as err:
            raise DeviceTimeout(
                f"printer {self._where} did not accept a connection within {connect_timeout:g} s",
                f"打印机 {self._where} 在 {connect_timeout:g} 秒内未接受连接",
            ) from err
        except OSError as err:
            raise DeviceUnavailable(
                f"cannot connect to printer {self._where}: {err}",
                f"无法连接打印机 {self._where}：{err}",
            ) from err
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)

    def write(self, data: bytes, timeout: float) -> None:
        """Send all of ``data`` (the socket timeout bounds the whole ``sendall``)."""
        try:
            self._sock.settimeout(timeout)
            self._sock.sendall(data)
        except TimeoutError as err:
            raise DeviceTimeout(
                f"printer {self._where} did not take {len(data)} bytes within {timeout:g} s",
                f"打印机 {self._where} 在 {timeout:g} 秒内未能接收数据",
            ) from err
        except OSError as err:
            raise DeviceUnavailable(
                f"sending to printer {self._where} failed: {err}",
                f"向打印机 {self._where} 发送数据失败：{err}",
            ) from err

    def read(self, size: int, timeout: float) -> bytes:
        """Return up to ``size`` bytes or ``b""`` after ``timeout``."""
        try:
            self._sock.settimeout(timeout)
            data = self._sock.recv(size)
        except TimeoutError:
            return b""
        except OSError as err:
            raise DeviceUnavailable(
                f"reading from printer {self._where} failed: {err}",
                f"读取打印机 {self._where} 失败：{err}",
            ) from err
        if not data:
            raise _closed(self._where)
        return data

    def discard_input(self) -> None:
        """Drop whatever already arrived, without waiting."""
        self._sock.setblocking(False)
        try:
            while True:
                if not self._sock.recv(4096):
                    raise _closed(self._where)
        except BlockingIOError:
            pass
        except OSError as err:
            raise DeviceUnavailable(
                f"reading from printer {self._where} failed: {err}",
                f"读取打印机 {self._where} 失败：{err}",
            ) from err

    def close(self) -> None:
        """Close the socket."""
        self._sock.close()


class SerialConnection:
    """RS-232 or USB-serial through pyserial (a pty works the same)."""

    supports_status = True

    def __init__(self, path: str, baudrate: int, timeout: float) -> None:
        self._path = path
        try:
            self._port: Any = serial.serial_for_url(
                path,
                baudrate=baudrate,
                timeout=timeout,
                write_timeout=timeout,
                exclusive=True,
            )
        except (serial.SerialException, OSError, ValueError) as err:
            raise DeviceUnavailable(
                f"cannot open printer port {path}: {err}", f"无法打开打印机串口 {path}：{err}"
            ) from err

    def write(self, data: bytes, timeout: float) -> None:
        """Send all of ``data`` within ``timeout`` (serial write timeout)."""
        try:
            self._port.write_timeout = timeout
            self._port.write(data)
        except serial.SerialTimeoutException as err:
            raise DeviceTimeout(
                f"printer port {self._path} did not take {len(data)} bytes within {timeout:g} s",
                f"打印机串口 {self._path} 在 {timeout:g} 秒内未能发送完数据",
            ) from err
        except (serial.SerialException, OSError) as err:
            raise DeviceUnavailable(
                f"writing to printer port {self._path} failed: {err}",
                f"写入打印机串口 {self._path} 失败：{err}",
            ) from err

    def read(self, size: int, timeout: float) -> bytes:
        """Return up to ``size`` bytes or ``b""`` after ``timeout``."""
        try:
            self._port.timeout = timeout
            return bytes(self._port.read(size))
        except (serial.SerialException, OSError) as err:
            raise DeviceUnavailable(
                f"reading printer port {self._path} failed: {err}",
                f"读取打印机串口 {self._path} 失败：{err}",
            ) from err

    def discard_input(self) -> None:
        """Drop bytes in the OS input buffer."""
        try:
            self._port.reset_input_buffer()
        except (serial.SerialException, OSError) as err:
            raise DeviceUnavailable(
                f"printer port {self._path} failed: {err}", f"打印机串口 {self._path} 故障：{err}"
            ) from err

    def close(self) -> None:
        """Close the port."""
        self._port.close()


class FileConnection:
    """A write-only device file (``/dev/usb/lp0``) or a spool file: no status."""

    supports_status = False

    def __init__(self, path: str, create: bool) -> None:
        self._path = path
        flags = os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY
        if create:
            flags |= os.O_CREAT | os.O_APPEND
        try:
            self._fd = os.open(path, flags, 0o644)
        except OSError as err:
            raise DeviceUnavailable(
                f"cannot open printer device {path}: {err}", f"无法打开打印机设备 {path}：{err}"
            ) from err

    def write(self, data: bytes, timeout: float) -> None:
        """Write all of ``data``; a printer that stops taking bytes fails at the deadline."""
        deadline = time.monotonic() + timeout
        view = memoryview(data)
        try:
            while view:
                remaining = deadline - time.monotonic()
                _, ready, _ = select.select([], [self._fd], [], max(remaining, 0.0))
                if not ready:
                    raise DeviceTimeout(
                        f"printer device {self._path} did not take data within {timeout:g} s",
                        f"打印机设备 {self._path} 在 {timeout:g} 秒内未能接收数据",
                    )
                with contextlib.suppress(BlockingIOError):
                    view = view[os.write(self._fd, view) :]
        except OSError as err:
            raise DeviceUnavailable(
                f"writing to printer device {self._path} failed: {err}",
                f"写入打印机设备 {self._path} 失败：{err}",
            ) from err

    def read(self, size: int, timeout: float) -> bytes:
        """Device files are write-only here."""
        raise PrinterStatusUnsupported(
            f"{self._path} is write-only: no printer status",
            f"{self._path} 只能写入，无法读取打印机状态",
        )

    def discard_input(self) -> None:
        """Nothing to drop on a write-only file."""

    def close(self) -> None:
        """Close the file descriptor (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class UsbConnection:
    """A USB printer-class device through pyusb (optional extra ``qcall[usb]``)."""

    supports_status = True

    def __init__(self, vendor_id: int, product_id: int) -> None:
        self._name = f"{vendor_id:04x}:{product_id:04x}"
        try:
            self._core: Any = importlib.import_module("usb.core")
            util: Any = importlib.import_module("usb.util")
        except ModuleNotFoundError as err:
            raise DeviceUnavailable(
                "USB printers need pyusb: pip install 'qcall[usb]' (and libusb-1.0)",
                "USB 打印机需要 pyusb：请执行 pip install 'qcall[usb]'（并安装 libusb-1.0）",
            ) from err
        self._util = util
        self._pending = bytearray()
        try:
            device = self._core.find(idVendor=vendor_id, idProduct=product_id)
            if device is None:
                raise DeviceUnavailable(
                    f"USB printer {self._name} not found", f"找不到 USB 打印机 {self._name}"
                )
            with contextlib.suppress(NotImplementedError, self._core.USBError):
                if device.is_kernel_driver_active(0):
                    device.detach_kernel_driver(0)
            with contextlib.suppress(self._core.USBError):
                device.set_configuration()
            interface = device.get_active_configuration()[(0, 0)]
            self._out = util.find_descriptor(
                interface, custom_match=self._direction(util.ENDPOINT_OUT)
            )
            self._in = util.find_descriptor(
                interface, custom_match=self._direction(util.ENDPOINT_IN)
            )
        except (self._core.USBError, self._core.NoBackendError) as err:
            raise DeviceUnavailable(
                f"cannot open USB printer {self._name}: {err}",
                f"无法打开 USB 打印机 {self._name}：{err}",
            ) from err
        if self._out is None:
            raise DeviceUnavailable(
                f"USB device {self._name} has no bulk OUT endpoint",
                f"USB 设备 {self._name} 没有输出端点",
            )
        self._device = device
        self.supports_status = self._in is not None

    def _direction(self, direction: int) -> Any:
        util = self._util
        return lambda endpoint: util.endpoint_direction(endpoint.bEndpointAddress) == direction

    def write(self, data: bytes, timeout: float) -> None:
        """Send ``data`` on the bulk OUT endpoint."""
        try:
            self._out.write(data, timeout=max(1, int(timeout * 1000)))
        except self._core.USBTimeoutError as err:
            raise DeviceTimeout(
                f"USB printer {self._name} did not take data within {timeout:g} s",
                f"USB 打印机 {self._name} 在 {timeout:g} 秒内未能接收数据",
            ) from err
        except self._core.USBError as err:
            raise DeviceUnavailable(
                f"writing to USB printer {self._name} failed: {err}",
                f"写入 USB 打印机 {self._name} 失败：{err}",
            ) from err

    def read(self, size: int, timeout: float) -> bytes:
        """Return up to ``size`` bytes from the bulk IN endpoint (packets are buffered)."""
        if not self._pending:
            if self._in is None:
                raise PrinterStatusUnsupported(
                    f"USB printer {self._name} has no IN endpoint: no status",
                    f"USB 打印机 {self._name} 无输入端点，无法读取状态",
                )
            try:
                packet = self._in.read(self._in.wMaxPacketSize, timeout=max(1, int(timeout * 1000)))
            except self._core.USBTimeoutError:
                return b""
            except self._core.USBError as err:
                raise DeviceUnavailable(
                    f"reading USB printer {self._name} failed: {err}",
                    f"读取 USB 打印机 {self._name} 失败：{err}",
                ) from err
            self._pending += bytes(packet)
        data = bytes(self._pending[:size])
        del self._pending[:size]
        return data

    def discard_input(self) -> None:
        """Drop buffered and queued packets."""
        self._pending.clear()
        if self._in is None:
            return
        while self.read(64, USB_DRAIN_TIMEOUT_S):
            self._pending.clear()

    def close(self) -> None:
        """Release the interface."""
        with contextlib.suppress(self._core.USBError):
            self._util.dispose_resources(self._device)


def open_connection(endpoint: PrinterEndpoint, timeout: float) -> Connection:
    """Open the connection for ``endpoint`` (blocking; call from the printer's worker thread)."""
    _LOGGER.debug("opening printer connection %s", endpoint.describe())
    match endpoint.kind:
        case TransportKind.TCP:
            return TcpConnection(endpoint.host, endpoint.port, timeout)
        case TransportKind.SERIAL:
            return SerialConnection(endpoint.path, endpoint.baudrate, timeout)
        case TransportKind.FILE:
            return FileConnection(endpoint.path, endpoint.create)
        case TransportKind.USB:
            return UsbConnection(endpoint.vendor_id, endpoint.product_id)
