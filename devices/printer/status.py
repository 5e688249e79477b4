"""Our own ``DLE EOT`` real-time status reader: queries, bit mapping, bilingual problems."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Final, Protocol

from devices.printer import commands as cmd
from qcall.errors import DeviceProtocolError, DeviceTimeout

_LOGGER = logging.getLogger(__name__)

# Real-time commands are answered within milliseconds even mid-job; 0.5 s leaves room for a
# USB-serial or LAN adapter that buffers, and keeps the pre-ticket check of a dead printer short.
STATUS_REPLY_TIMEOUT_S: Final = 0.5

STATUS_QUERIES: Final = tuple(cmd.status_request(n) for n in (1, 2, 3, 4))

# Every DLE EOT reply has the fixed pattern 0xx1xx10: bits 0, 1, 4 and 7 are fixed.
_FIXED_MASK: Final = 0b1001_0011
_FIXED_VALUE: Final = 0b0001_0010

# n = 1 (printer)
_N1_OFFLINE: Final = 0x08
# n = 2 (offline cause)
_N2_COVER_OPEN: Final = 0x04
_N2_PAPER_END_STOP: Final = 0x20
# n = 3 (error cause)
_N3_RECOVERABLE: Final = 0x04
_N3_CUTTER: Final = 0x08
_N3_UNRECOVERABLE: Final = 0x20
_N3_AUTO_RECOVERABLE: Final = 0x40
# n = 4 (roll paper sensor)
_N4_NEAR_END: Final = 0x0C
_N4_PAPER_END: Final = 0x60


def is_status_byte(value: int) -> bool:
    """Return whether ``value`` has the fixed ``DLE EOT`` reply pattern ``0xx1xx10``."""
    return value & _FIXED_MASK == _FIXED_VALUE


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing a person must check, in Chinese and English; ``blocking`` stops printing."""

    code: str
    blocking: bool
    message_zh: str
    message_en: str

    def __str__(self) -> str:
        """Return ``中文 / English``."""
        return f"{self.message_zh} / {self.message_en}"


_OFFLINE = Problem(
    "offline", True, "打印机离线：请检查电源和联机状态", "Printer offline: check power and status"
)
_COVER = Problem(
    "cover_open", True, "纸仓盖打开：请合上打印机盖", "Cover open: close the printer cover"
)
_PAPER_END = Problem("paper_end", True, "缺纸：请装入新纸卷", "Paper end: load a new paper roll")
_CUTTER = Problem(
    "cutter_error",
    True,
    "切刀故障：请关机，清除切刀处卡纸后重新开机",
    "Cutter error: switch off, clear the jam at the cutter, switch on",
)
_UNRECOVERABLE = Problem(
    "unrecoverable_error",
    True,
    "打印机严重故障：请重新开机，仍不能打印请联系维修",
    "Unrecoverable error: power-cycle the printer, call service if it persists",
)
_RECOVERABLE = Problem(
    "recoverable_error",
    False,
    "打印机暂时故障（如打印头过热）：请稍候，会自动恢复",
    "Recoverable error (e.g. print head too hot): wait, it recovers by itself",
)
_NEAR_END = Problem(
    "paper_near_end",
    False,
    "纸将用完：请准备新纸卷",
    "Paper near end: have a new paper roll ready",
)


@dataclass(frozen=True, slots=True)
class PrinterStatus:
    """What the printer reported through ``DLE EOT 1..4``."""

    online: bool
    cover_open: bool
    paper_end: bool
    paper_near_end: bool
    cutter_error: bool
    recoverable_error: bool
    unrecoverable_error: bool
    raw: bytes = b"\x12\x12\x12\x12"

    @classmethod
    def from_bytes(cls, raw: bytes) -> PrinterStatus:
        """Map the four reply bytes (n = 1, 2, 3, 4) to a status; raise on a bad pattern."""
        if len(raw) != 4:
            raise DeviceProtocolError(
                f"expected 4 status bytes, got {len(raw)}",
                f"打印机状态应为 4 个字节，收到 {len(raw)} 个",
            )
        bad = [f"{value:02X}" for value in raw if not is_status_byte(value)]
        if bad:
            raise DeviceProtocolError(
                f"printer status bytes break the 0xx1xx10 pattern: {' '.join(bad)}",
                f"打印机状态字节格式错误：{' '.join(bad)}",
            )
        n1, n2, n3, n4 = raw
        return cls(
            online=not (n1 & _N1_OFFLINE),
            cover_open=bool(n2 & _N2_COVER_OPEN),
            paper_end=bool(n2 & _N2_PAPER_END_STOP or n4 & _N4_PAPER_END),
            paper_near_end=bool(n4 & _N4_NEAR_END),
            cutter_error=bool(n3 & _N3_CUTTER),
            recoverable_error=bool(n3 & (_N3_RECOVERABLE | _N3_AUTO_RECOVERABLE)),
            unrecoverable_error=bool(n3 & _N3_UNRECOVERABLE),
            raw=bytes(raw),
        )

    @property
    def can_print(self) -> bool:
        """Return whether a ticket may be sent (near end and recoverable errors still print)."""
        return not any(problem.blocking for problem in self.problems())

    def problems(self) -> list[Problem]:
        """Return what to check, most specific first; empty when the printer is fine."""
        found: list[Problem] = []
        if self.paper_end:
            found.append(_PAPER_END)
        if self.cover_open:
            found.append(_COVER)
        if self.cutter_error:
            found.append(_CUTTER)
        if self.unrecoverable_error:
            found.append(_UNRECOVERABLE)
        if not self.online and not found:
            found.append(_OFFLINE)
        if self.recoverable_error:
            found.append(_RECOVERABLE)
        if self.paper_near_end and not self.paper_end:
            found.append(_NEAR_END)
        return found

    def as_dict(self) -> dict[str, object]:
        """Return a JSON-friendly view for diagnostics."""
        return {
            "online": self.online,
            "cover_open": self.cover_open,
            "paper_end": self.paper_end,
            "paper_near_end": self.paper_near_end,
            "cutter_error": self.cutter_error,
            "recoverable_error": self.recoverable_error,
            "unrecoverable_error": self.unrecoverable_error,
            "raw": self.raw.hex(" "),
            "problems": [str(problem) for problem in self.problems()],
        }


class StatusChannel(Protocol):
    """The blocking byte channel the status reader talks through (one owner thread)."""

    def discard_input(self) -> None:
        """Drop bytes already received (stale replies, XON/XOFF)."""

    def write(self, data: bytes, timeout: float) -> None:
        """Send ``data`` within ``timeout`` seconds or raise ``DeviceTimeout``."""

    def read(self, size: int, timeout: float) -> bytes:
        """Return up to ``size`` bytes, ``b""`` when ``timeout`` passes; raise when closed."""


def _read_reply(channel: StatusChannel, n: int, timeout: float) -> int:
    """Return the first byte with the status pattern, skipping anything else until the deadline."""
    deadline = time.monotonic() + timeout
    skipped = bytearray()
    while (remaining := deadline - time.monotonic()) > 0:
        for value in channel.read(1, remaining):
            if is_status_byte(value):
                if skipped:
                    _LOGGER.debug("skipped %s before DLE EOT %d reply", skipped.hex(" "), n)
                return value
            skipped.append(value)
    if skipped:
        raise DeviceProtocolError(
            f"printer answered DLE EOT {n} with {skipped.hex(' ')}, not a status byte",
            f"打印机对状态查询 {n} 的应答无效：{skipped.hex(' ')}",
        )
    raise DeviceTimeout(
        f"printer did not answer status query DLE EOT {n} within {timeout:g} s",
        f"打印机在 {timeout:g} 秒内未应答状态查询（DLE EOT {n}）",
    )


def read_status(
    channel: StatusChannel, reply_timeout: float = STATUS_REPLY_TIMEOUT_S
) -> PrinterStatus:
    """Ask ``DLE EOT 1..4`` one at a time and return the mapped status (blocking)."""
    channel.discard_input()
    replies = bytearray()
    for n, query in enumerate(STATUS_QUERIES, start=1):
        channel.write(query, reply_timeout)
        replies.append(_read_reply(channel, n, reply_timeout))
    return PrinterStatus.from_bytes(bytes(replies))
