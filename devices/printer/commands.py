"""ESC/POS command bytes for the subset qcall emits and decodes (pure, no I/O)."""

from __future__ import annotations

from enum import IntEnum
from typing import Final

ESC: Final = b"\x1b"
GS: Final = b"\x1d"
FS: Final = b"\x1c"
DLE: Final = b"\x10"
EOT: Final = b"\x04"
LF: Final = b"\n"

INIT: Final = ESC + b"@"
KANJI_ON: Final = FS + b"&"
KANJI_OFF: Final = FS + b"."

# Epson paper widths in dots at 203 dpi (printable area of 58 mm and 80 mm rolls).
PAPER_DOTS: Final[dict[int, int]] = {58: 384, 80: 576}
# Columns of font A (12 x 24 dots) per line; a Kanji character takes two columns.
PAPER_COLUMNS: Final[dict[int, int]] = {58: 32, 80: 48}
ANK_DOTS: Final = 12
KANJI_DOTS: Final = 24
LINE_DOTS: Final = 30  # default line pitch of font A (24-dot glyph + 6 dots spacing)
MAX_MAGNIFICATION: Final = 8


class Align(IntEnum):
    """``ESC a n`` justification."""

    LEFT = 0
    CENTER = 1
    RIGHT = 2


class QrLevel(IntEnum):
    """QR error-correction levels as ``GS ( k`` function 69 codes them (48 + n)."""

    L = 48
    M = 49
    Q = 50
    H = 51


def align(value: Align) -> bytes:
    """Return ``ESC a n``."""
    return ESC + b"a" + bytes((int(value),))


def emphasis(on: bool) -> bytes:
    """Return ``ESC E n`` (bold on or off)."""
    return ESC + b"E" + (b"\x01" if on else b"\x00")


def char_size(width: int, height: int) -> bytes:
    """Return ``GS ! n`` for magnifications 1..8 (applies to ANK and Kanji)."""
    if not (1 <= width <= MAX_MAGNIFICATION and 1 <= height <= MAX_MAGNIFICATION):
        raise ValueError(f"character magnification out of range: {width}x{height}")
    return GS + b"!" + bytes((((width - 1) << 4) | (height - 1),))


def feed_lines(count: int) -> bytes:
    """Return ``ESC d n`` (print and feed ``count`` lines)."""
    if not 0 <= count <= 255:
        raise ValueError(f"feed out of range: {count}")
    return ESC + b"d" + bytes((count,))


def full_cut() -> bytes:
    """Return the cut sequence: feed the ticket past the cutter, then ``GS V 0`` (full cut)."""
    return feed_lines(6) + GS + b"V\x00"


def _qr_function(fn: int, payload: bytes) -> bytes:
    """Return one ``GS ( k`` QR function (cn = 49) with its little-endian length."""
    size = len(payload) + 2
    if size > 0xFFFF:
        raise ValueError("QR payload too large")
    return GS + b"(k" + size.to_bytes(2, "little") + b"1" + bytes((fn,)) + payload


def qr_code(data: bytes, module: int, level: QrLevel = QrLevel.M) -> bytes:
    """Return the native QR sequence: model 2, module size, EC level, store, print."""
    if not 1 <= module <= 16:
        raise ValueError(f"QR module size out of range: {module}")
    if not data:
        raise ValueError("QR data is empty")
    return b"".join(
        (
            _qr_function(65, b"2\x00"),
            _qr_function(67, bytes((module,))),
            _qr_function(69, bytes((int(level),))),
            _qr_function(80, b"0" + data),
            _qr_function(81, b"0"),
        )
    )


def raster_image(width_bytes: int, height: int, data: bytes) -> bytes:
    """Return ``GS v 0`` (normal density) for packed 1-bit rows, bit 1 = a printed dot."""
    if len(data) != width_bytes * height:
        raise ValueError("raster data does not match its size")
    if not (0 < width_bytes <= 0xFFFF and 0 < height <= 0xFFFF):
        raise ValueError("raster image size out of range")
    return GS + b"v0\x00" + width_bytes.to_bytes(2, "little") + height.to_bytes(2, "little") + data


def status_request(n: int) -> bytes:
    """Return the real-time status request ``DLE EOT n`` (n = 1..4)."""
    if n not in (1, 2, 3, 4):
        raise ValueError(f"DLE EOT n must be 1..4, not {n}")
    return DLE + EOT + bytes((n,))
