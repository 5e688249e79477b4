"""ESC/POS ticket printer: ticket rendering, DLE EOT status, the device driver, a decoder."""

from __future__ import annotations

from devices.printer.connection import (
    PrinterEndpoint,
    PrinterStatusUnsupported,
    PrinterUrlError,
    TransportKind,
    parse_printer_url,
)
from devices.printer.driver import PrinterNotReady, PrinterState, PrintResult, TicketPrinter
from devices.printer.render import TicketPrint, render_test_page, render_ticket
from devices.printer.status import PrinterStatus, Problem, read_status

__all__ = [
    "PrintResult",
    "PrinterEndpoint",
    "PrinterNotReady",
    "PrinterState",
    "PrinterStatus",
    "PrinterStatusUnsupported",
    "PrinterUrlError",
    "Problem",
    "TicketPrint",
    "TicketPrinter",
    "TransportKind",
    "parse_printer_url",
    "read_status",
    "render_test_page",
    "render_ticket",
]
