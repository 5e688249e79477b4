"""Incremental ESC/POS decoder for the subset qcall emits; Kanji-mode text decodes as GB18030."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

_ESC: Final = 0x1B
_GS: Final = 0x1D
_FS: Final = 0x1C
_DLE: Final = 0x10
_LF: Final = 0x0A
_QR_LEVELS: Final = "LMQH"

# Lengths of common commands outside our subset, so the decoder can step over them exactly.
_ESC_OTHER_LENGTH: Final = {
    ord(c): n for c, n in {"-": 3, "2": 2, "3": 3, "M": 3, "t": 3, "G": 3, "R": 3, "V": 3}.items()
} | {ord(c): n for c, n in {"{": 3, "J": 3, "U": 3, "p": 5, "c": 4, " ": 3}.items()}
_GS_OTHER_LENGTH: Final = {
    ord(c): n
    for c, n in {"B": 3, "H": 3, "h": 3, "w": 3, "f": 3, "L": 4, "W": 4, "a": 3, "r": 3}.items()
} | {ord("I"): 3, ord("b"): 3}
_FS_OTHER_LENGTH: Final = {ord("-"): 3, ord("W"): 3, ord("S"): 4, ord("C"): 3}


@dataclass(frozen=True, slots=True)
class Init:
    """``ESC @``: reset modes."""


@dataclass(frozen=True, slots=True)
class SetAlign:
    """``ESC a n``."""

    value: int


@dataclass(frozen=True, slots=True)
class SetPrintMode:
    """``ESC ! n`` (ANK only): bit3 bold, bit4 double height, bit5 double width."""

    value: int


@dataclass(frozen=True, slots=True)
class SetEmphasis:
    """``ESC E n``."""

    on: bool


@dataclass(frozen=True, slots=True)
class SetCharSize:
    """``GS ! n``: magnification for ANK and Kanji."""

    width: int
    height: int


@dataclass(frozen=True, slots=True)
class KanjiOn:
    """``FS &``: enter Chinese mode."""


@dataclass(frozen=True, slots=True)
class KanjiOff:
    """``FS .``: leave Chinese mode."""


@dataclass(frozen=True, slots=True)
class SetKanjiMode:
    """``FS ! n``: bit2 double width, bit3 double height, bit7 underline (Kanji only)."""

    value: int


@dataclass(frozen=True, slots=True)
class Text:
    """Printable bytes decoded to text (GB18030 in Chinese mode, CP437 outside it)."""

    text: str
    kanji: bool


@dataclass(frozen=True, slots=True)
class LineFeed:
    """``LF``: print the line buffer and feed one line."""


@dataclass(frozen=True, slots=True)
class FeedLines:
    """``ESC d n``."""

    count: int


@dataclass(frozen=True, slots=True)
class QrModel:
    """``GS ( k`` fn 65."""

    model: int


@dataclass(frozen=True, slots=True)
class QrModuleSize:
    """``GS ( k`` fn 67."""

    size: int


@dataclass(frozen=True, slots=True)
class QrErrorLevel:
    """``GS ( k`` fn 69."""

    level: str


@dataclass(frozen=True, slots=True)
class QrStore:
    """``GS ( k`` fn 80: the symbol data."""

    data: bytes


@dataclass(frozen=True, slots=True)
class QrPrint:
    """``GS ( k`` fn 81."""


@dataclass(frozen=True, slots=True)
class RasterImage:
    """``GS v 0 m``: packed 1-bit rows, bit 1 = dot."""

    mode: int
    width_bytes: int
    height: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Cut:
    """``GS V m [n]``: full (0/48/65) or partial (1/49/66) cut, ``feed`` for m = 65/66."""

    partial: bool
    feed: int | None


@dataclass(frozen=True, slots=True)
class StatusRequest:
    """``DLE EOT n``: real-time status request."""

    n: int


@dataclass(frozen=True, slots=True)
class Control:
    """A harmless control byte (CR, HT)."""

    raw: bytes


@dataclass(frozen=True, slots=True)
class Unknown:
    """Bytes outside the decoded subset."""

    raw: bytes


Command = (
    Init
    | SetAlign
    | SetPrintMode
    | SetEmphasis
    | SetCharSize
    | KanjiOn
    | KanjiOff
    | SetKanjiMode
    | Text
    | LineFeed
    | FeedLines
    | QrModel
    | QrModuleSize
    | QrErrorLevel
    | QrStore
    | QrPrint
    | RasterImage
    | Cut
    | StatusRequest
    | Control
    | Unknown
)
_Parsed = tuple[Command, int] | None


class EscPosDecodeError(ValueError):
    """The bytes contain a command outside the subset, or end inside a command."""


class EscPosParser:
    """Split a byte stream into commands; feed chunks as they arrive (split anywhere)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.kanji = False

    def feed(self, data: bytes) -> list[Command]:
        """Add ``data`` and return every command now complete."""
        return [command for command, _raw in self.feed_with_bytes(data)]

    def feed_with_bytes(self, data: bytes) -> list[tuple[Command, bytes]]:
        """Add ``data`` and return every complete command with the bytes it came from."""
        self._buffer += data
        commands: list[tuple[Command, bytes]] = []
        while self._buffer:
            parsed = self._parse_one(self._buffer)
            if parsed is None:
                break
            command, used = parsed
            raw = bytes(self._buffer[:used])
            del self._buffer[:used]
            # ESC @ does not leave Chinese mode on the printers we target; only FS . does.
            if isinstance(command, KanjiOn):
                self.kanji = True
            elif isinstance(command, KanjiOff):
                self.kanji = False
            commands.append((command, raw))
        return commands

    @property
    def pending(self) -> int:
        """Return how many bytes wait for the rest of their command."""
        return len(self._buffer)

    def close(self) -> list[Unknown]:
        """Return the incomplete tail (if any) as ``Unknown`` and reset the buffer."""
        tail = bytes(self._buffer)
        self._buffer.clear()
        return [Unknown(tail)] if tail else []

    def _parse_one(self, buf: bytearray) -> _Parsed:
        first = buf[0]
        if first >= 0x20:
            return self._parse_text(buf)
        if first == _LF:
            return LineFeed(), 1
        if first in (0x0D, 0x09):
            return Control(bytes((first,))), 1
        if len(buf) < 2:
            return None
        if first == _ESC:
            return _parse_esc(buf)
        if first == _GS:
            return _parse_gs(buf)
        if first == _FS:
            return _parse_fs(buf)
        if first == _DLE:
            if buf[1] in (0x04, 0x05):
                if len(buf) < 3:
                    return None
                if buf[1] == 0x04:
                    return StatusRequest(buf[2]), 3
                return Unknown(bytes(buf[:3])), 3
            return Unknown(bytes(buf[:2])), 2
        return Unknown(bytes((first,))), 1

    def _parse_text(self, buf: bytearray) -> _Parsed:
        end = 0
        size = len(buf)
        while end < size and buf[end] >= 0x20:
            if not self.kanji or buf[end] < 0x81 or buf[end] == 0xFF:
                end += 1
                continue
            if end + 1 >= size:
                break
            if 0x30 <= buf[end + 1] <= 0x39:  # GB18030 four-byte sequence
                if end + 3 >= size:
                    break
                end += 4
            elif buf[end + 1] >= 0x40:
                end += 2
            else:
                end += 1  # a stray lead byte; decodes as U+FFFD
        if end == 0:
            return None
        raw = bytes(buf[:end])
        codec = "gb18030" if self.kanji else "cp437"
        return Text(raw.decode(codec, errors="replace"), self.kanji), end


def _need(buf: bytearray, length: int) -> bool:
    return len(buf) >= length


def _parse_esc(buf: bytearray) -> _Parsed:
    op = buf[1]
    if op == ord("@"):
        return Init(), 2
    if op in (ord("a"), ord("!"), ord("E"), ord("d")):
        if not _need(buf, 3):
            return None
        value = buf[2]
        if op == ord("a"):
            return SetAlign(value & 0x03 if value < 48 else value - 48), 3
        if op == ord("!"):
            return SetPrintMode(value), 3
        if op == ord("E"):
            return SetEmphasis(bool(value & 1)), 3
        return FeedLines(value), 3
    length = _ESC_OTHER_LENGTH.get(op, 2)
    return (Unknown(bytes(buf[:length])), length) if _need(buf, length) else None


def _parse_gs(buf: bytearray) -> _Parsed:
    op = buf[1]
    if op == ord("!"):
        if not _need(buf, 3):
            return None
        return SetCharSize((buf[2] >> 4) + 1, (buf[2] & 0x0F) + 1), 3
    if op == ord("V"):
        if not _need(buf, 3):
            return None
        mode = buf[2]
        if mode in (65, 66):
            if not _need(buf, 4):
                return None
            return Cut(partial=mode == 66, feed=buf[3]), 4
        return Cut(partial=mode in (1, 49), feed=None), 3
    if op == ord("v"):
        if not _need(buf, 3):
            return None
        if buf[2] != ord("0"):
            return Unknown(bytes(buf[:3])), 3
        if not _need(buf, 8):
            return None
        width_bytes = int.from_bytes(buf[4:6], "little")
        height = int.from_bytes(buf[6:8], "little")
        total = 8 + width_bytes * height
        if not _need(buf, total):
            return None
        return RasterImage(buf[3], width_bytes, height, bytes(buf[8:total])), total
    if op == ord("("):
        if not _need(buf, 5):
            return None
        total = 5 + int.from_bytes(buf[3:5], "little")
        if not _need(buf, total):
            return None
        if buf[2] == ord("k"):
            return _parse_2d(bytes(buf[5:total]), bytes(buf[:total])), total
        return Unknown(bytes(buf[:total])), total
    length = _GS_OTHER_LENGTH.get(op, 2)
    return (Unknown(bytes(buf[:length])), length) if _need(buf, length) else None


def _parse_2d(body: bytes, raw: bytes) -> Command:
    """Decode one ``GS ( k`` function body (cn, fn, parameters)."""
    if len(body) < 2 or body[0] != ord("1"):
        return Unknown(raw)
    fn, params = body[1], body[2:]
    if fn == 65 and params:
        return QrModel(params[0] - 48)
    if fn == 67 and params:
        return QrModuleSize(params[0])
    if fn == 69 and params and 48 <= params[0] <= 51:
        return QrErrorLevel(_QR_LEVELS[params[0] - 48])
    if fn == 80 and params:
        return QrStore(params[1:])
    if fn == 81:
        return QrPrint()
    return Unknown(raw)


def _parse_fs(buf: bytearray) -> _Parsed:
    op = buf[1]
    if op == ord("&"):
        return KanjiOn(), 2
    if op == ord("."):
        return KanjiOff(), 2
    if op == ord("!"):
        return (SetKanjiMode(buf[2]), 3) if _need(buf, 3) else None
    length = _FS_OTHER_LENGTH.get(op, 2)
    return (Unknown(bytes(buf[:length])), length) if _need(buf, length) else None


def decode(data: bytes, *, strict: bool = True) -> list[Command]:
    """Decode a whole job; ``strict`` raises on commands outside the subset or a cut-off end."""
    parser = EscPosParser()
    commands = parser.feed(data) + parser.close()
    if strict:
        for command in commands:
            if isinstance(command, Unknown):
                raise EscPosDecodeError(
                    f"unsupported or truncated command: {command.raw[:16].hex(' ')}"
                )
    return commands
