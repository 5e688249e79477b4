"""Printer URLs and the blocking connections behind them."""

from __future__ import annotations

import importlib
import socket
from pathlib import Path
from types import ModuleType

import pytest

from devices.printer.connection import (
    FileConnection,
    PrinterEndpoint,
    PrinterStatusUnsupported,
    PrinterUrlError,
    TcpConnection,
    TransportKind,
    UsbConnection,
    parse_printer_url,
)
from qcall.errors import DeviceUnavailable

K = TransportKind


@pytest.mark.parametrize(
    ("url", "endpoint", "canonical"),
    [
        ("tcp://10.0.0.5:9100", PrinterEndpoint(K.TCP, host="10.0.0.5", port=9100), None),
        ("socket://printer.local", PrinterEndpoint(K.TCP, host="printer.local", port=9100), None),
        ("tcp://[::1]:9101", PrinterEndpoint(K.TCP, host="::1", port=9101), None),
        ("tcp://user:secret@10.0.0.5:9100", PrinterEndpoint(K.TCP, "10.0.0.5", 9100), None),
        (
            "/dev/ttyS0",
            PrinterEndpoint(K.SERIAL, path="/dev/ttyS0"),
            "serial:///dev/ttyS0?baud=9600",
        ),
        (
            "serial:///dev/ttyUSB0?baud=19200",
            PrinterEndpoint(K.SERIAL, path="/dev/ttyUSB0", baudrate=19200),
            None,
        ),
        ("/dev/usb/lp0", PrinterEndpoint(K.FILE, path="/dev/usb/lp0"), "file:///dev/usb/lp0"),
        ("/dev/lp1", PrinterEndpoint(K.FILE, path="/dev/lp1"), "file:///dev/lp1"),
        (
            "file:///tmp/ticket.bin",
            PrinterEndpoint(K.FILE, path="/tmp/ticket.bin", create=True),
            None,
        ),
        ("usb://04B8:0202", PrinterEndpoint(K.USB, vendor_id=0x04B8, product_id=0x0202), None),
    ],
)
def test_parse_printer_url(url: str, endpoint: PrinterEndpoint, canonical: str | None) -> None:
    parsed = parse_printer_url(url)
    assert parsed == endpoint
    assert parsed.supports_status is (endpoint.kind is not K.FILE)
    described = parsed.describe()
    assert "secret" not in described
    if canonical is not None:
        assert described == canonical
    assert parse_printer_url(described) == parsed


@pytest.mark.parametrize(
    "url",
    [
        "http://printer:9100",
        "tcp://:9100",
        "tcp://host:99999",
        "serial:///dev/ttyUSB0?baud=12345",
        "serial:///dev/ttyUSB0?baud=fast",
        "serial://ttyUSB0",
        "file://relative/path",
        "usb://4b8:202",
        "printer",
    ],
)
def test_bad_urls_are_config_errors(url: str) -> None:
    with pytest.raises(PrinterUrlError) as info:
        parse_printer_url(url)
    assert isinstance(info.value, ValueError)
    assert info.value.code == "invalid_config"
    assert "打印机地址" in info.value.message_zh


def test_file_connection_is_write_only(tmp_path: Path) -> None:
    target = tmp_path / "spool.bin"
    connection = FileConnection(str(target), create=True)
    connection.write(b"\x1b@AB", timeout=1.0)
    connection.write(b"CD", timeout=1.0)
    with pytest.raises(PrinterStatusUnsupported):
        connection.read(1, 0.1)
    connection.close()
    connection.close()
    assert target.read_bytes() == b"\x1b@ABCD"


def test_missing_device_file_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(DeviceUnavailable) as info:
        FileConnection(str(tmp_path / "lp9"), create=False)
    assert "无法打开打印机设备" in info.value.message_zh


def test_refused_tcp_connection_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DeviceUnavailable):
        TcpConnection("127.0.0.1", port, connect_timeout=1.0)


def test_tcp_peer_close_is_reported() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        connection = TcpConnection("127.0.0.1", server.getsockname()[1], connect_timeout=1.0)
        peer, _ = server.accept()
        peer.sendall(b"\x12")
        peer.close()
        assert connection.read(1, 1.0) == b"\x12"
        with pytest.raises(DeviceUnavailable):
            connection.read(1, 1.0)
        connection.close()


def test_usb_without_pyusb_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = importlib.import_module

    def no_usb(name: str, package: str | None = None) -> ModuleType:
        if name.startswith("usb"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, package)

    monkeypatch.setattr(importlib, "import_module", no_usb)
    with pytest.raises(DeviceUnavailable) as info:
        UsbConnection(0x04B8, 0x0202)
    assert "pyusb" in info.value.message_en
    assert "pyusb" in info.value.message_zh
    assert "qcall[usb]" in info.value.message_en
