"""QBus v1 frames and payloads: pure encoding and decoding, no I/O (see PROTOCOL.md)."""

from __future__ import annotations

import binascii
import enum
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Final, Self

from qcall.errors import BadRequest, DeviceProtocolError

SOF: Final = b"\x5a\xa5"
VERSION: Final = 0x01
HEADER_SIZE: Final = 8
CRC_SIZE: Final = 2
MAX_PAYLOAD: Final = 240
MIN_FRAME_SIZE: Final = HEADER_SIZE + CRC_SIZE
MAX_FRAME_SIZE: Final = HEADER_SIZE + MAX_PAYLOAD + CRC_SIZE

BROADCAST: Final = 0x00
MASTER: Final = 0xF0
MIN_DEVICE_ADDRESS: Final = 0x01
MAX_DEVICE_ADDRESS: Final = 0x7F
FACTORY_ADDRESS: Final = 0x7F
REPLY_FLAG: Final = 0x80

ALL_LINES: Final = 0xFF
MAX_BRIGHTNESS: Final = 15
MAX_TICKET_LEN: Final = 8
MAX_EVENT_ARGS: Final = 32
# A TRANSFER can pick one of at most nine services sharing a prefix (one digit key).
MAX_TRANSFER_CHOICE: Final = 9
POLL_MAX_EVENTS: Final = 4
POLL_MAX_PAYLOAD: Final = 64
DEFAULT_RATING_TIMEOUT_S: Final = 30
MAX_MODEL_LEN: Final = 16
MAX_STAFF_LEN: Final = 16
DEFAULT_SLOT_CHARS: Final = 3
MAX_POLL_ANY_ADDRESSES: Final = MAX_PAYLOAD - 2

_TICKET_RE: Final = re.compile(r"[0-9A-Z]{1,8}")
_PREFIX_RE: Final = re.compile(r"[A-Z]{1,2}")
_STAFF_RE: Final = re.compile(r"[0-9A-Za-z_-]{1,16}")
_PIN_RE: Final = re.compile(r"[0-9]{4,8}")


def crc16(data: bytes) -> int:
    """Return the CRC-16/CCITT-FALSE of ``data`` (``b"123456789"`` → 0x29B1)."""
    return binascii.crc_hqx(data, 0xFFFF)


class WireEnum(enum.IntEnum):
    """An enum of one-byte wire codes; ``convert`` maps unknown codes to None."""

    @classmethod
    def convert(cls, value: int) -> Self | None:
        """Return the member for ``value``, or None when the code is unknown."""
        try:
            return cls(value)
        except ValueError:
            return None


class Command(WireEnum):
    """Request codes; a reply carries ``code | REPLY_FLAG``."""

    IDENT = 0x01
    PING = 0x02
    SHOW_TEXT = 0x10
    SHOW_CALL = 0x11
    CLEAR = 0x12
    BRIGHTNESS = 0x13
    SET_IDLE_TEXT = 0x14
    QUERY_TEXT = 0x15
    POLL_EVENTS = 0x20
    KEYPAD_LCD = 0x21
    RATING_START = 0x22
    POLL_ANY = 0x23
    SET_ADDRESS = 0x30
    RESET = 0x31


class Status(WireEnum):
    """The first byte of every reply payload."""

    OK = 0x00
    FAILED = 0x01
    UNKNOWN_COMMAND = 0x02
    BAD_PAYLOAD = 0x03
    BUSY = 0x04
    NOT_IN_FONT = 0x05


class DeviceKind(WireEnum):
    """What a device is; ``role`` is the glossary name used in config and state names."""

    COUNTER_DISPLAY = 0x01
    KEYPAD = 0x02
    RATING_PAD = 0x03

    @property
    def role(self) -> str:
        """Return the glossary identifier (``counter_display``, ``keypad``, ``rating_pad``)."""
        return self.name.lower()


class Encoding(WireEnum):
    """The encoding byte in front of every text field."""

    ASCII = 0x00
    GB2312 = 0x01


class Effect(WireEnum):
    """How a display shows SHOW_TEXT."""

    STATIC = 0x00
    SCROLL = 0x01
    BLINK = 0x02


class Colour(WireEnum):
    """LED colour of SHOW_TEXT."""

    RED = 0x00
    GREEN = 0x01
    YELLOW = 0x02


class EventKind(WireEnum):
    """Event types a keypad or rating pad queues."""

    NEXT = 0x01
    RECALL = 0x02
    NO_SHOW = 0x03
    HOLD = 0x04
    CALLBACK = 0x05
    PAUSE = 0x06
    RESUME = 0x07
    TRANSFER = 0x08
    CALL_SPECIFIC = 0x09
    LOGIN = 0x0A
    LOGOUT = 0x0B
    FINISH = 0x0C
    RATING = 0x10
    RATING_TIMEOUT = 0x11


class TransferTargetType(WireEnum):
    """Whether a TRANSFER names a service prefix, a window, or one service of a prefix."""

    SERVICE = 0x01
    WINDOW = 0x02
    SERVICE_CHOICE = 0x03


class FinishOutcome(WireEnum):
    """How a FINISH key ends the current ticket."""

    DONE = 0x01
    BACK_OFFICE = 0x02


class TransferPosition(WireEnum):
    """Where the transferred ticket enters the target line."""

    LAST = 0x00
    FIRST = 0x01


class PingFlag(enum.IntFlag):
    """Flags of a PING reply."""

    NONE = 0x00
    EVENTS_PENDING = 0x01
    FAULT = 0x02
    IDLE = 0x04


class Charset(enum.IntFlag):
    """Character sets a device can render (IDENT)."""

    ASCII = 0x01
    GB2312 = 0x02


class TextEncodingError(BadRequest, ValueError):
    """Text or a ticket cannot be put on the bus (outside GB2312, too long, bad characters)."""

    code = "text_not_encodable"


class PayloadError(DeviceProtocolError):
    """A payload breaks the protocol; ``status`` is what a device answers to it."""

    def __init__(self, message_en: str, message_zh: str, status: Status = Status.BAD_PAYLOAD):
        super().__init__(message_en, message_zh, details={"status": int(status)})
        self.status = status


class CommandRejected(DeviceProtocolError):
    """A device answered a request with a non-OK status."""

    code = "device_rejected"

    def __init__(self, address: int, command: int, status: int) -> None:
        known = Status.convert(status)
        name = known.name if known is not None else f"0x{status:02X}"
        cmd = Command.convert(command)
        cmd_name = cmd.name if cmd is not None else f"0x{command:02X}"
        super().__init__(
            f"device {address} rejected {cmd_name}: {name}",
            f"设备 {address} 拒绝执行 {cmd_name}：{_STATUS_ZH.get(status, '未知状态')}",
            details={"address": address, "command": command, "status": status},
        )
        self.address = address
        self.command = command
        self.status = status


_STATUS_ZH: Final[dict[int, str]] = {
    Status.FAILED: "硬件故障",
    Status.UNKNOWN_COMMAND: "不支持的命令",
    Status.BAD_PAYLOAD: "参数错误",
    Status.BUSY: "设备忙",
    Status.NOT_IN_FONT: "字库中没有该字符",
}


@dataclass(frozen=True, slots=True)
class Frame:
    """One QBus frame; ``to_bytes`` adds SOF, VER, LEN and the CRC."""

    dst: int
    src: int
    seq: int
    cmd: int
    payload: bytes = b""

    def __post_init__(self) -> None:
        for name in ("dst", "src", "seq", "cmd"):
            value = getattr(self, name)
            if not 0 <= value <= 0xFF:
                raise ValueError(f"{name} must be a byte, got {value}")
        if len(self.payload) > MAX_PAYLOAD:
            raise ValueError(f"payload is {len(self.payload)} bytes, at most {MAX_PAYLOAD}")

    @property
    def is_reply(self) -> bool:
        """Return whether this is a reply (CMD bit 7 set)."""
        return bool(self.cmd & REPLY_FLAG)

    @property
    def command(self) -> Command | None:
        """Return the request command this frame is or answers, None when unknown."""
        return Command.convert(self.cmd & ~REPLY_FLAG)

    @property
    def wire_size(self) -> int:
        """Return the number of bytes on the wire."""
        return MIN_FRAME_SIZE + len(self.payload)

    def to_bytes(self) -> bytes:
        """Return the frame as sent on the wire."""
        body = bytes((VERSION, self.dst, self.src, self.seq, self.cmd, len(self.payload)))
        body += self.payload
        return SOF + body + crc16(body).to_bytes(2, "little")

    @classmethod
    def from_bytes(cls, data: bytes) -> Frame:
        """Parse exactly one frame; raise DeviceProtocolError naming what is wrong."""
        if len(data) < MIN_FRAME_SIZE:
            raise DeviceProtocolError(
                f"frame too short ({len(data)} bytes)", f"帧太短（{len(data)} 字节）"
            )
        if data[:2] != SOF:
            raise DeviceProtocolError("frame does not start with 5A A5", "帧头不是 5A A5")
        if data[2] != VERSION:
            raise DeviceProtocolError(
                f"unsupported QBus version {data[2]}", f"不支持的 QBus 版本 {data[2]}"
            )
        length = data[7]
        if length > MAX_PAYLOAD or len(data) != MIN_FRAME_SIZE + length:
            raise DeviceProtocolError(
                f"LEN {length} does not match a {len(data)}-byte frame",
                f"长度字段 {length} 与帧长 {len(data)} 不符",
            )
        body = data[2:-CRC_SIZE]
        if crc16(body) != int.from_bytes(data[-CRC_SIZE:], "little"):
            raise DeviceProtocolError("CRC mismatch", "CRC 校验错误")
        return cls(dst=data[3], src=data[4], seq=data[5], cmd=data[6], payload=bytes(data[8:-2]))

    def make_reply(self, payload: bytes) -> Frame:
        """Return the reply a device at ``dst`` sends to this request."""
        return Frame(
            dst=self.src, src=self.dst, seq=self.seq, cmd=self.cmd | REPLY_FLAG, payload=payload
        )


def wire_time(size: int, baud: int, bits_per_char: int = 10) -> float:
    """Return how long ``size`` bytes take on the line, in seconds."""
    return size * bits_per_char / baud


# --- text -------------------------------------------------------------------------------


def encode_text(text: str, *, max_bytes: int, multiline: bool = False) -> tuple[Encoding, bytes]:
    """Encode display text as ASCII or GB2312; raise TextEncodingError before anything is sent."""
    for position, char in enumerate(text):
        if char == "\n" and multiline:
            continue
        if ord(char) < 0x20 or ord(char) == 0x7F:
            raise TextEncodingError(
                f"text contains control character U+{ord(char):04X} at position {position}",
                f"文字第 {position + 1} 个字符是控制字符 U+{ord(char):04X}，无法显示",
                details={"position": position, "char": char},
            )
        try:
            char.encode("gb2312")
        except UnicodeEncodeError:
            raise TextEncodingError(
                f"character {char!r} (U+{ord(char):04X}) at position {position} is outside "
                "GB2312 and cannot be shown on bus devices; replace it",
                f"第 {position + 1} 个字符“{char}”（U+{ord(char):04X}）不在 GB2312 字库中，"
                "总线设备无法显示，请替换",
                details={"position": position, "char": char},
            ) from None
    if text.isascii():
        encoding, data = Encoding.ASCII, text.encode("ascii")
    else:
        encoding, data = Encoding.GB2312, text.encode("gb2312")
    if len(data) > max_bytes:
        raise TextEncodingError(
            f"text is {len(data)} bytes on the wire, at most {max_bytes} fit",
            f"文字编码后 {len(data)} 字节，最多 {max_bytes} 字节",
            details={"bytes": len(data), "max": max_bytes},
        )
    return encoding, data


def decode_text(encoding: int, data: bytes) -> str:
    """Decode a text field; raise PayloadError (status 03 or 05) when a device could not."""
    if encoding == Encoding.ASCII:
        if not all(0x20 <= b < 0x7F or b == 0x0A for b in data):
            raise PayloadError(
                "ASCII text contains bytes outside 20-7E",
                "ASCII 文字含有无效字节",
                Status.NOT_IN_FONT,
            )
        return data.decode("ascii")
    if encoding == Encoding.GB2312:
        try:
            return data.decode("gb2312")
        except UnicodeDecodeError:
            raise PayloadError(
                "text is not valid GB2312", "文字不是有效的 GB2312 编码", Status.NOT_IN_FONT
            ) from None
    raise PayloadError(f"unknown text encoding {encoding}", f"未知的文字编码 {encoding}")


def encode_ticket(ticket: str, *, allow_empty: bool = False) -> bytes:
    """Return a ticket number as ASCII; raise TextEncodingError unless it is 1-8 of 0-9 A-Z."""
    if (allow_empty and ticket == "") or _TICKET_RE.fullmatch(ticket):
        return ticket.encode("ascii")
    raise TextEncodingError(
        f"ticket number {ticket!r} must be 1-{MAX_TICKET_LEN} characters 0-9 A-Z",
        f"票号 {ticket!r} 须为 1–{MAX_TICKET_LEN} 位数字或大写字母",
        details={"ticket": ticket},
    )


def decode_ticket(data: bytes, *, allow_empty: bool = False) -> str:
    """Parse a ticket field; raise PayloadError when malformed."""
    text = data.decode("ascii", errors="replace")
    if (allow_empty and text == "") or _TICKET_RE.fullmatch(text):
        return text
    raise PayloadError(f"bad ticket number {data!r}", f"票号无效 {data!r}")


def reply_status(payload: bytes) -> int:
    """Return the status byte of a reply payload; raise DeviceProtocolError when empty."""
    if not payload:
        raise DeviceProtocolError("reply without status byte", "应答缺少状态字节")
    return payload[0]


def _require_ok(payload: bytes, name: str) -> None:
    if reply_status(payload) != Status.OK:
        raise DeviceProtocolError(f"{name} reply is not OK", f"{name} 应答状态不是 OK")


def _need(payload: bytes, size: int, name: str) -> None:
    if len(payload) < size:
        raise PayloadError(
            f"{name} payload is {len(payload)} bytes, needs {size}",
            f"{name} 数据长度 {len(payload)} 字节，至少需要 {size} 字节",
        )


# --- requests ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShowText:
    """SHOW_TEXT request: text on one line or the whole screen of a display."""

    command: ClassVar[Command] = Command.SHOW_TEXT
    max_text: ClassVar[int] = MAX_PAYLOAD - 4

    text: str
    line: int = ALL_LINES
    effect: Effect = Effect.STATIC
    colour: Colour = Colour.RED

    def to_payload(self) -> bytes:
        """Return the payload bytes; raise TextEncodingError for unencodable text."""
        if not 0 <= self.line <= 0xFF:
            raise ValueError(f"line must be 0-255, got {self.line}")
        encoding, data = encode_text(
            self.text, max_bytes=self.max_text, multiline=self.line == ALL_LINES
        )
        return bytes((self.line, self.effect, self.colour, encoding)) + data

    @classmethod
    def from_payload(cls, payload: bytes) -> ShowText:
        """Parse the payload; raise PayloadError."""
        _need(payload, 4, "SHOW_TEXT")
        effect = Effect.convert(payload[1])
        colour = Colour.convert(payload[2])
        if effect is None or colour is None:
            raise PayloadError("unknown effect or colour", "未知的显示效果或颜色")
        return cls(decode_text(payload[3], payload[4:]), payload[0], effect, colour)


@dataclass(frozen=True, slots=True)
class ShowCall:
    """SHOW_CALL request: a ticket called to a window, flashing ``flash`` times."""

    command: ClassVar[Command] = Command.SHOW_CALL

    ticket: str
    window: int
    flash: int = 3

    def to_payload(self) -> bytes:
        """Return the payload bytes; raise TextEncodingError for a bad ticket number."""
        if not 0 <= self.window <= 0xFFFF or not 0 <= self.flash <= 0xFF:
            raise ValueError("window must be 0-65535 and flash 0-255")
        ticket = encode_ticket(self.ticket)
        return self.window.to_bytes(2, "little") + bytes((self.flash,)) + ticket

    @classmethod
    def from_payload(cls, payload: bytes) -> ShowCall:
        """Parse the payload; raise PayloadError."""
        _need(payload, 4, "SHOW_CALL")
        window = int.from_bytes(payload[0:2], "little")
        return cls(decode_ticket(payload[3:]), window, payload[2])


@dataclass(frozen=True, slots=True)
class Brightness:
    """BRIGHTNESS request, level 0-15."""

    command: ClassVar[Command] = Command.BRIGHTNESS

    level: int

    def to_payload(self) -> bytes:
        """Return the payload bytes."""
        if not 0 <= self.level <= MAX_BRIGHTNESS:
            raise ValueError(f"brightness must be 0-{MAX_BRIGHTNESS}, got {self.level}")
        return bytes((self.level,))

    @classmethod
    def from_payload(cls, payload: bytes) -> Brightness:
        """Parse the payload; raise PayloadError."""
        if len(payload) != 1 or payload[0] > MAX_BRIGHTNESS:
            raise PayloadError("brightness must be one byte 0-15", "亮度须为 0–15")
        return cls(payload[0])


@dataclass(frozen=True, slots=True)
class _TextPayload:
    """A payload of one encoding byte and the text (SET_IDLE_TEXT, KEYPAD_LCD)."""

    command: ClassVar[Command]
    max_text: ClassVar[int] = MAX_PAYLOAD - 1

    text: str

    def to_payload(self) -> bytes:
        """Return the payload bytes; raise TextEncodingError."""
        encoding, data = encode_text(self.text, max_bytes=self.max_text, multiline=True)
        return bytes((encoding,)) + data

    @classmethod
    def from_payload(cls, payload: bytes) -> Self:
        """Parse the payload; raise PayloadError."""
        _need(payload, 1, cls.command.name)
        return cls(decode_text(payload[0], payload[1:]))


@dataclass(frozen=True, slots=True)
class SetIdleText(_TextPayload):
    """SET_IDLE_TEXT request: the persisted text a display shows when idle."""

    command: ClassVar[Command] = Command.SET_IDLE_TEXT


@dataclass(frozen=True, slots=True)
class QueryText:
    """QUERY_TEXT request: read back one line or (``ALL_LINES``) the whole screen of a display."""

    command: ClassVar[Command] = Command.QUERY_TEXT

    line: int = ALL_LINES

    def to_payload(self) -> bytes:
        """Return the payload bytes."""
        if not 0 <= self.line <= 0xFF:
            raise ValueError(f"line must be 0-255, got {self.line}")
        return bytes((self.line,))

    @classmethod
    def from_payload(cls, payload: bytes) -> QueryText:
        """Parse the payload; raise PayloadError."""
        if len(payload) != 1:
            raise PayloadError("QUERY_TEXT payload must be 1 byte", "QUERY_TEXT 数据须为 1 字节")
        return cls(payload[0])


@dataclass(frozen=True, slots=True)
class KeypadLcd(_TextPayload):
    """KEYPAD_LCD request: the text on a keypad's LCD, lines separated by newlines."""

    command: ClassVar[Command] = Command.KEYPAD_LCD


@dataclass(frozen=True, slots=True)
class PollEvents:
    """POLL_EVENTS request: acknowledge events up to ``ack_upto`` of boot ``ack_boot``."""

    command: ClassVar[Command] = Command.POLL_EVENTS

    ack_boot: int = 0
    ack_upto: int = 0

    def to_payload(self) -> bytes:
        """Return the payload bytes."""
        return bytes((self.ack_boot, self.ack_upto))

    @classmethod
    def from_payload(cls, payload: bytes) -> PollEvents:
        """Parse the payload; raise PayloadError."""
        if len(payload) != 2:
            raise PayloadError("POLL_EVENTS payload must be 2 bytes", "POLL_EVENTS 数据须为 2 字节")
        return cls(payload[0], payload[1])


@dataclass(frozen=True, slots=True)
class PollAny:
    """POLL_ANY broadcast: devices listed with unacknowledged events answer one byte in a slot."""

    command: ClassVar[Command] = Command.POLL_ANY

    slot_chars: int = DEFAULT_SLOT_CHARS
    addresses: tuple[int, ...] = ()

    def to_payload(self) -> bytes:
        """Return the payload bytes; raise ValueError for a bad slot width or address list."""
        _check_poll_any(self.slot_chars, self.addresses, ValueError)
        return bytes((self.slot_chars, len(self.addresses))) + bytes(self.addresses)

    @classmethod
    def from_payload(cls, payload: bytes) -> PollAny:
        """Parse the payload; raise PayloadError."""
        _need(payload, 2, "POLL_ANY")
        count = payload[1]
        if len(payload) != 2 + count:
            raise PayloadError(
                f"POLL_ANY lists {count} addresses in {len(payload) - 2} bytes",
                f"POLL_ANY 地址数 {count} 与数据长度不符",
            )
        addresses = tuple(payload[2:])

        def error(message: str) -> PayloadError:
            return PayloadError(message, "POLL_ANY 参数错误")

        _check_poll_any(payload[0], addresses, error)
        return cls(payload[0], addresses)

    @property
    def window_chars(self) -> int:
        """Return how many character times the slots take after the frame's end (n × s)."""
        return self.slot_chars * len(self.addresses)

    def slot_of(self, address: int) -> int | None:
        """Return the 0-based slot of ``address``, None when it is not listed."""
        try:
            return self.addresses.index(address)
        except ValueError:
            return None

    def slot_start_chars(self, address: int) -> int | None:
        """Return when ``address`` may send its attention byte, in characters after the frame."""
        slot = self.slot_of(address)
        return None if slot is None else slot * self.slot_chars


def _check_poll_any(
    slot_chars: int, addresses: tuple[int, ...], error: Callable[[str], Exception]
) -> None:
    if not 1 <= slot_chars <= 0xFF:
        raise error(f"POLL_ANY slot must be 1-255 characters, got {slot_chars}")
    if not 1 <= len(addresses) <= MAX_POLL_ANY_ADDRESSES:
        raise error(f"POLL_ANY lists 1-{MAX_POLL_ANY_ADDRESSES} addresses, got {len(addresses)}")
    for address in addresses:
        if not MIN_DEVICE_ADDRESS <= address <= MAX_DEVICE_ADDRESS:
            raise error(f"POLL_ANY address must be 1-127, got {address}")
    if len(set(addresses)) != len(addresses):
        raise error("POLL_ANY lists an address twice")


@dataclass(frozen=True, slots=True)
class RatingStart:
    """RATING_START request: ask for a rating of ``ticket`` within ``timeout_s``."""

    command: ClassVar[Command] = Command.RATING_START

    ticket: str = ""
    timeout_s: int = DEFAULT_RATING_TIMEOUT_S

    def to_payload(self) -> bytes:
        """Return the payload bytes; raise TextEncodingError for a bad ticket."""
        if not 0 <= self.timeout_s <= 0xFF:
            raise ValueError(f"rating timeout must be 0-255 s, got {self.timeout_s}")
        return bytes((self.timeout_s,)) + encode_ticket(self.ticket, allow_empty=True)

    @classmethod
    def from_payload(cls, payload: bytes) -> RatingStart:
        """Parse the payload; raise PayloadError."""
        _need(payload, 1, "RATING_START")
        return cls(decode_ticket(payload[1:], allow_empty=True), payload[0])


@dataclass(frozen=True, slots=True)
class SetAddress:
    """SET_ADDRESS request: the device with ``serial`` takes ``address``."""

    command: ClassVar[Command] = Command.SET_ADDRESS

    serial: int
    address: int

    def to_payload(self) -> bytes:
        """Return the payload bytes."""
        if not MIN_DEVICE_ADDRESS <= self.address <= MAX_DEVICE_ADDRESS:
            raise ValueError(f"address must be 1-127, got {self.address}")
        return self.serial.to_bytes(4, "little") + bytes((self.address,))

    @classmethod
    def from_payload(cls, payload: bytes) -> SetAddress:
        """Parse the payload; raise PayloadError."""
        if len(payload) != 5 or not MIN_DEVICE_ADDRESS <= payload[4] <= MAX_DEVICE_ADDRESS:
            raise PayloadError("SET_ADDRESS needs serial + address 1-127", "SET_ADDRESS 参数错误")
        return cls(int.from_bytes(payload[0:4], "little"), payload[4])


# --- replies ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IdentReply:
    """IDENT reply: what the device is."""

    kind_code: int
    model: str
    firmware: tuple[int, int]
    columns: int
    lines: int
    charsets: Charset
    boot: int
    serial: int

    @property
    def kind(self) -> DeviceKind | None:
        """Return the device kind, None when the code is unknown."""
        return DeviceKind.convert(self.kind_code)

    def to_payload(self) -> bytes:
        """Return the payload bytes (status OK first)."""
        model = self.model.encode("ascii")[:MAX_MODEL_LEN]
        head = bytes(
            (
                Status.OK,
                self.kind_code,
                *self.firmware,
                self.columns,
                self.lines,
                self.charsets,
                self.boot,
            )
        )
        return head + self.serial.to_bytes(4, "little") + bytes((len(model),)) + model

    @classmethod
    def from_payload(cls, payload: bytes) -> IdentReply:
        """Parse an OK payload; raise DeviceProtocolError."""
        _require_ok(payload, "IDENT")
        _need(payload, 13, "IDENT reply")
        size = payload[12]
        _need(payload, 13 + size, "IDENT reply")
        return cls(
            kind_code=payload[1],
            model=payload[13 : 13 + size].decode("ascii", errors="replace"),
            firmware=(payload[2], payload[3]),
            columns=payload[4],
            lines=payload[5],
            charsets=Charset(payload[6] & (Charset.ASCII | Charset.GB2312)),
            boot=payload[7],
            serial=int.from_bytes(payload[8:12], "little"),
        )


@dataclass(frozen=True, slots=True)
class PingReply:
    """PING reply: boot counter, flags and queued event count."""

    boot: int
    flags: PingFlag = PingFlag.NONE
    pending: int = 0

    def to_payload(self) -> bytes:
        """Return the payload bytes (status OK first)."""
        return bytes((Status.OK, self.boot, self.flags, min(self.pending, 0xFF)))

    @classmethod
    def from_payload(cls, payload: bytes) -> PingReply:
        """Parse an OK payload; raise DeviceProtocolError."""
        _require_ok(payload, "PING")
        _need(payload, 4, "PING reply")
        return cls(payload[1], PingFlag(payload[2] & 0x07), payload[3])


@dataclass(frozen=True, slots=True)
class ShownText:
    """QUERY_TEXT reply: what a display shows now, lines separated by newlines.

    ``encoding`` is the encoding byte on the wire; None when building a reply means "ASCII
    when every character is ASCII, else GB2312" (the rule of PROTOCOL.md §5).
    """

    max_text: ClassVar[int] = MAX_PAYLOAD - 4

    text: str
    effect: Effect = Effect.STATIC
    colour: Colour = Colour.RED
    encoding: Encoding | None = None

    def to_payload(self) -> bytes:
        """Return the payload bytes (status OK first); raise TextEncodingError."""
        encoding, data = encode_text(self.text, max_bytes=self.max_text, multiline=True)
        if self.encoding is Encoding.GB2312:
            encoding, data = Encoding.GB2312, self.text.encode("gb2312")
        elif self.encoding is Encoding.ASCII and encoding is not Encoding.ASCII:
            raise TextEncodingError(
                "non-ASCII text cannot be sent with encoding 00", "非 ASCII 文字不能用编码 00 发送"
            )
        return bytes((Status.OK, self.effect, self.colour, encoding)) + data

    @classmethod
    def from_payload(cls, payload: bytes) -> ShownText:
        """Parse an OK payload; raise DeviceProtocolError."""
        _require_ok(payload, "QUERY_TEXT")
        _need(payload, 4, "QUERY_TEXT reply")
        effect = Effect.convert(payload[1])
        colour = Colour.convert(payload[2])
        encoding = Encoding.convert(payload[3])
        if effect is None or colour is None or encoding is None:
            raise PayloadError(
                "QUERY_TEXT reply has an unknown effect, colour or encoding",
                "QUERY_TEXT 应答含未知的显示效果、颜色或编码",
            )
        return cls(decode_text(encoding, payload[4:]), effect, colour, encoding)


@dataclass(frozen=True, slots=True)
class TransferTarget:
    """The target of a TRANSFER: a service prefix or a window, first or last in line.

    ``choice`` (1-9) picks one of several services sharing ``service_prefix``.
    """

    service_prefix: str | None = None
    window: int | None = None
    position: TransferPosition = TransferPosition.LAST
    choice: int | None = None

    def to_args(self) -> bytes:
        """Return the TRANSFER event args."""
        if (self.service_prefix is None) == (self.window is None):
            raise ValueError("a transfer names either a service prefix or a window")
        if self.service_prefix is not None:
            if not _PREFIX_RE.fullmatch(self.service_prefix):
                raise TextEncodingError(
                    f"service prefix {self.service_prefix!r} must be 1-2 letters A-Z",
                    f"业务前缀 {self.service_prefix!r} 须为 1–2 个大写字母",
                )
            value = self.service_prefix.encode("ascii")
            if self.choice is None:
                return bytes((TransferTargetType.SERVICE, self.position)) + value
            if not 1 <= self.choice <= MAX_TRANSFER_CHOICE:
                raise ValueError(f"transfer choice must be 1-{MAX_TRANSFER_CHOICE}")
            head = (TransferTargetType.SERVICE_CHOICE, self.position, self.choice)
            return bytes(head) + value
        assert self.window is not None
        if self.choice is not None:
            raise ValueError("a choice goes with a service prefix, not a window")
        return bytes((TransferTargetType.WINDOW, self.position)) + self.window.to_bytes(2, "little")

    @classmethod
    def from_args(cls, args: bytes) -> TransferTarget:
        """Parse TRANSFER args; raise PayloadError."""
        _need(args, 3, "TRANSFER")
        position = TransferPosition.convert(args[1])
        if position is None:
            raise PayloadError("unknown transfer position", "未知的转移位置")
        if args[0] == TransferTargetType.SERVICE:
            return cls(service_prefix=_prefix(args[2:]), position=position)
        if args[0] == TransferTargetType.SERVICE_CHOICE and len(args) >= 4:
            if not 1 <= args[2] <= MAX_TRANSFER_CHOICE:
                raise PayloadError("bad transfer choice", "转移序号无效")
            return cls(service_prefix=_prefix(args[3:]), position=position, choice=args[2])
        if args[0] == TransferTargetType.WINDOW and len(args) == 4:
            return cls(window=int.from_bytes(args[2:4], "little"), position=position)
        raise PayloadError("bad transfer target", "转移目标无效")


def _prefix(raw: bytes) -> str:
    prefix = raw.decode("ascii", errors="replace")
    if not _PREFIX_RE.fullmatch(prefix):
        raise PayloadError("bad service prefix", "业务前缀无效")
    return prefix


@dataclass(frozen=True, slots=True)
class BusEvent:
    """One key press or rating; ``kind`` is None for a type this code does not know."""

    seq: int
    code: int
    ticket: str = ""
    score: int = 0
    staff: str = ""
    pin: str = ""
    transfer: TransferTarget | None = None
    outcome: FinishOutcome | None = None
    raw_args: bytes = b""
    error: str = ""

    @property
    def kind(self) -> EventKind | None:
        """Return the event type, None when unknown."""
        return EventKind.convert(self.code)

    def to_args(self) -> bytes:
        """Return the arg bytes of the event record; raise ValueError for bad fields."""
        kind = self.kind
        if kind in (EventKind.CALLBACK, EventKind.CALL_SPECIFIC):
            return encode_ticket(self.ticket)
        if kind is EventKind.RATING:
            if not 1 <= self.score <= 5:
                raise ValueError(f"rating score must be 1-5, got {self.score}")
            return bytes((self.score,)) + encode_ticket(self.ticket, allow_empty=True)
        if kind is EventKind.RATING_TIMEOUT:
            return encode_ticket(self.ticket, allow_empty=True)
        if kind is EventKind.TRANSFER:
            if self.transfer is None:
                raise ValueError("a TRANSFER event needs a target")
            return self.transfer.to_args()
        if kind is EventKind.FINISH:
            if self.outcome is None:
                raise ValueError("a FINISH event needs an outcome")
            return bytes((self.outcome,))
        if kind is EventKind.LOGIN:
            if not _STAFF_RE.fullmatch(self.staff) or not _PIN_RE.fullmatch(self.pin):
                raise ValueError("LOGIN needs a staff id (1-16 of 0-9A-Za-z_-) and a 4-8 digit PIN")
            staff = self.staff.encode("ascii")
            return bytes((len(staff),)) + staff + self.pin.encode("ascii")
        if kind is None:
            return self.raw_args
        return b""

    def to_record(self) -> bytes:
        """Return the event record as it appears in a POLL_EVENTS reply."""
        args = self.to_args()
        if len(args) > MAX_EVENT_ARGS:
            raise ValueError(f"event args are {len(args)} bytes, at most {MAX_EVENT_ARGS}")
        return bytes((self.seq, self.code, len(args))) + args

    @classmethod
    def from_wire(cls, seq: int, code: int, args: bytes) -> BusEvent:
        """Decode an event record's fields; malformed args give an event with ``error`` set."""
        try:
            return cls._decode(seq, code, args)
        except DeviceProtocolError as err:
            return cls(seq, code, raw_args=args, error=err.message_en)

    @classmethod
    def _decode(cls, seq: int, code: int, args: bytes) -> BusEvent:
        kind = EventKind.convert(code)
        if kind in (EventKind.CALLBACK, EventKind.CALL_SPECIFIC):
            return cls(seq, code, ticket=decode_ticket(args))
        if kind is EventKind.RATING:
            _need(args, 1, "RATING")
            if not 1 <= args[0] <= 5:
                raise PayloadError(f"rating score {args[0]} out of 1-5", "评分超出 1–5")
            return cls(seq, code, score=args[0], ticket=decode_ticket(args[1:], allow_empty=True))
        if kind is EventKind.RATING_TIMEOUT:
            return cls(seq, code, ticket=decode_ticket(args, allow_empty=True))
        if kind is EventKind.TRANSFER:
            return cls(seq, code, transfer=TransferTarget.from_args(args))
        if kind is EventKind.FINISH:
            outcome = FinishOutcome.convert(args[0]) if len(args) == 1 else None
            if outcome is None:
                raise PayloadError("FINISH needs outcome 01 or 02", "办结结果须为 01 或 02")
            return cls(seq, code, outcome=outcome)
        if kind is EventKind.LOGIN:
            _need(args, 1, "LOGIN")
            size = args[0]
            staff = args[1 : 1 + size].decode("ascii", errors="replace")
            pin = args[1 + size :].decode("ascii", errors="replace")
            if not _STAFF_RE.fullmatch(staff) or not _PIN_RE.fullmatch(pin):
                raise PayloadError("bad LOGIN staff id or PIN", "登录工号或密码格式错误")
            return cls(seq, code, staff=staff, pin=pin)
        if kind is None:
            return cls(seq, code, raw_args=args)
        if args:
            raise PayloadError(f"{kind.name} takes no args", f"{kind.name} 不应带参数")
        return cls(seq, code)


@dataclass(frozen=True, slots=True)
class PollReply:
    """POLL_EVENTS reply: the device's boot counter and its oldest queued events."""

    boot: int
    remaining: int = 0
    events: tuple[BusEvent, ...] = ()

    def to_payload(self) -> bytes:
        """Return the payload bytes (status OK first)."""
        records = b"".join(event.to_record() for event in self.events)
        head = bytes((Status.OK, self.boot, min(self.remaining, 0xFF), len(self.events)))
        return head + records

    @classmethod
    def from_payload(cls, payload: bytes) -> PollReply:
        """Parse an OK payload; raise DeviceProtocolError when the records do not add up."""
        _require_ok(payload, "POLL_EVENTS")
        _need(payload, 4, "POLL_EVENTS reply")
        events = []
        offset = 4
        for _ in range(payload[3]):
            _need(payload, offset + 3, "POLL_EVENTS reply")
            seq, code, size = payload[offset : offset + 3]
            args = payload[offset + 3 : offset + 3 + size]
            if len(args) != size:
                raise PayloadError("event record truncated", "事件记录不完整")
            events.append(BusEvent.from_wire(seq, code, bytes(args)))
            offset += 3 + size
        if offset != len(payload):
            raise PayloadError("extra bytes after event records", "事件记录后有多余字节")
        return cls(payload[1], payload[2], tuple(events))


MAX_REPLY_PAYLOAD: Final[dict[Command, int]] = {
    Command.IDENT: 13 + MAX_MODEL_LEN,
    Command.PING: 4,
    Command.QUERY_TEXT: MAX_PAYLOAD,
    Command.POLL_EVENTS: POLL_MAX_PAYLOAD,
}
"""Largest reply payload per command; the rest answer a status and an optional detail byte."""


def max_reply_size(command: Command) -> int:
    """Return the largest reply frame a device may send to ``command``, in bytes."""
    return MIN_FRAME_SIZE + MAX_REPLY_PAYLOAD.get(command, 2)


# --- stream decoding --------------------------------------------------------------------


@dataclass(slots=True)
class DecoderStats:
    """Counters of a FrameDecoder (may be shared across reconnects)."""

    frames: int = 0
    crc_errors: int = 0
    bad_headers: int = 0
    discarded_bytes: int = 0


class FrameDecoder:
    """Incremental decoder: any bytes in, whole frames out; never raises, buffers < 250 bytes."""

    # Hunt SOF, check VER and LEN, verify the CRC; on any failure resume one byte after the
    # bad SOF. Only one incomplete frame is ever kept, which bounds the buffer.

    def __init__(self, stats: DecoderStats | None = None) -> None:
        self._buffer = bytearray()
        self.stats = stats if stats is not None else DecoderStats()

    @property
    def pending(self) -> int:
        """Return how many bytes of an incomplete frame are buffered."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame]:
        """Add received bytes; return the frames they complete."""
        self._buffer += data
        return self._scan()

    def flush(self) -> list[Frame]:
        """Give up on the incomplete frame (line went idle) and rescan what followed its SOF."""
        frames: list[Frame] = []
        while self._buffer:
            del self._buffer[0]
            self.stats.discarded_bytes += 1
            frames += self._scan()
        return frames

    def reset(self) -> None:
        """Drop everything buffered (new connection)."""
        self._buffer.clear()

    def _scan(self) -> list[Frame]:
        buf = self._buffer
        size = len(buf)
        frames: list[Frame] = []
        framed = 0
        pos = 0
        while True:
            start = buf.find(SOF, pos)
            if start < 0:
                keep = size - 1 if size > pos and buf[-1] == SOF[0] else size
                break
            if size - start < HEADER_SIZE:
                keep = start
                break
            length = buf[start + 7]
            if buf[start + 2] != VERSION or length > MAX_PAYLOAD:
                self.stats.bad_headers += 1
                pos = start + 1
                continue
            end = start + MIN_FRAME_SIZE + length
            if end > size:
                keep = start
                break
            body = bytes(buf[start + 2 : end - CRC_SIZE])
            if crc16(body) != buf[end - 2] | (buf[end - 1] << 8):
                self.stats.crc_errors += 1
                pos = start + 1
                continue
            frames.append(
                Frame(dst=body[1], src=body[2], seq=body[3], cmd=body[4], payload=body[6:])
            )
            framed += end - start
            pos = end
        self.stats.frames += len(frames)
        self.stats.discarded_bytes += keep - framed
        del buf[:keep]
        return frames
