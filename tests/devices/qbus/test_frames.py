"""Byte-exact tests of every QBus frame, payload and event (PROTOCOL.md)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from devices.qbus.frames import (
    ALL_LINES,
    MASTER,
    MAX_FRAME_SIZE,
    Brightness,
    BusEvent,
    Charset,
    Colour,
    Command,
    CommandRejected,
    DeviceKind,
    Effect,
    Encoding,
    EventKind,
    FinishOutcome,
    Frame,
    IdentReply,
    KeypadLcd,
    PayloadError,
    PingFlag,
    PingReply,
    PollAny,
    PollEvents,
    PollReply,
    QueryText,
    RatingStart,
    SetAddress,
    SetIdleText,
    ShowCall,
    ShownText,
    ShowText,
    Status,
    TextEncodingError,
    TransferPosition,
    TransferTarget,
    crc16,
    decode_text,
    encode_text,
    max_reply_size,
)
from qcall.errors import BadRequest, DeviceProtocolError

PROTOCOL_MD = Path(__file__).parents[3] / "devices" / "qbus" / "PROTOCOL.md"


def reference_crc(data: bytes) -> int:
    """Bit-by-bit CRC-16/CCITT-FALSE, independent of binascii."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def expected(dst: int, src: int, seq: int, cmd: int, payload_hex: str) -> bytes:
    """Build the wire bytes by hand from the PROTOCOL.md layout."""
    payload = bytes.fromhex(payload_hex)
    body = bytes([0x01, dst, src, seq, cmd, len(payload)]) + payload
    crc = reference_crc(body)
    return b"\x5a\xa5" + body + bytes([crc & 0xFF, crc >> 8])


def request(dst: int, seq: int, cmd: Command, payload: bytes = b"") -> bytes:
    return Frame(dst, MASTER, seq, cmd, payload).to_bytes()


def reply(src: int, seq: int, cmd: Command, payload: bytes) -> bytes:
    return Frame(MASTER, src, seq, cmd | 0x80, payload).to_bytes()


def test_crc_test_vector() -> None:
    assert crc16(b"123456789") == 0x29B1
    assert reference_crc(b"123456789") == 0x29B1


def test_crc_is_little_endian_over_ver_to_payload() -> None:
    data = request(3, 7, Command.IDENT)
    assert data == bytes.fromhex("5AA5 01 03 F0 07 01 00 8E8C")
    assert crc16(data[2:-2]) == 0x8C8E


# --- requests ---------------------------------------------------------------------------


def test_ident_and_ping_requests() -> None:
    assert request(3, 7, Command.IDENT) == expected(3, 0xF0, 7, 0x01, "")
    assert request(0x7F, 0xFF, Command.PING) == expected(0x7F, 0xF0, 0xFF, 0x02, "")


def test_show_text_gb2312_whole_screen() -> None:
    payload = ShowText("暂停服务").to_payload()
    assert payload == bytes.fromhex("FF 00 00 01 D4DD CDA3 B7FE CEF1")
    assert request(3, 0x11, Command.SHOW_TEXT, payload) == expected(
        3, 0xF0, 0x11, 0x10, "FF000001D4DDCDA3B7FECEF1"
    )


def test_show_text_ascii_one_line_with_effect_and_colour() -> None:
    payload = ShowText("Window 3", line=1, effect=Effect.SCROLL, colour=Colour.GREEN).to_payload()
    assert payload == bytes.fromhex("01 01 01 00") + b"Window 3"
    assert request(3, 1, Command.SHOW_TEXT, payload) == expected(
        3, 0xF0, 1, 0x10, "01010100" + b"Window 3".hex()
    )


def test_show_text_multiline_uses_0a() -> None:
    assert ShowText("请A012号\n到3号窗口").to_payload()[4:] == "请A012号\n到3号窗口".encode(
        "gb2312"
    )


def test_show_call() -> None:
    payload = ShowCall("A012", 3, 3).to_payload()
    assert payload == bytes.fromhex("0300 03 41303132")
    assert request(3, 0x10, Command.SHOW_CALL, payload) == expected(
        3, 0xF0, 0x10, 0x11, "03000341303132"
    )
    assert ShowCall("B7", 300, 0).to_payload() == bytes.fromhex("2C01 00 4237")


def test_clear_and_reset_have_no_payload() -> None:
    assert request(4, 2, Command.CLEAR) == expected(4, 0xF0, 2, 0x12, "")
    assert request(4, 3, Command.RESET) == expected(4, 0xF0, 3, 0x31, "")


def test_brightness() -> None:
    assert request(3, 9, Command.BRIGHTNESS, Brightness(15).to_payload()) == expected(
        3, 0xF0, 9, 0x13, "0F"
    )
    with pytest.raises(ValueError, match="0-15"):
        Brightness(16).to_payload()


def test_set_idle_text() -> None:
    payload = SetIdleText("欢迎").to_payload()
    assert payload == bytes.fromhex("01 BBB6 D3AD")
    assert request(3, 5, Command.SET_IDLE_TEXT, payload) == expected(3, 0xF0, 5, 0x14, "01BBB6D3AD")


def test_query_text_request() -> None:
    assert QueryText().to_payload() == b"\xff"
    assert QueryText().line == ALL_LINES
    assert request(3, 0x12, Command.QUERY_TEXT, QueryText().to_payload()) == bytes.fromhex(
        "5AA5 01 03 F0 12 15 01 FF 84CB"
    )
    assert request(3, 0x12, Command.QUERY_TEXT, QueryText().to_payload()) == expected(
        3, 0xF0, 0x12, 0x15, "FF"
    )
    assert QueryText(1).to_payload() == b"\x01"
    with pytest.raises(ValueError, match="0-255"):
        QueryText(256).to_payload()


def test_poll_events_request() -> None:
    assert PollEvents().to_payload() == b"\x00\x00"
    payload = PollEvents(ack_boot=1, ack_upto=0x2A).to_payload()
    assert request(5, 0x20, Command.POLL_EVENTS, payload) == expected(5, 0xF0, 0x20, 0x20, "012A")


def test_poll_any_broadcast() -> None:
    payload = PollAny(3, (5, 6, 7, 8, 9, 10, 11, 12)).to_payload()
    assert payload == bytes.fromhex("03 08 0506070809 0A0B0C")
    data = Frame(0, MASTER, 0x17, Command.POLL_ANY, payload).to_bytes()
    assert data == expected(0, 0xF0, 0x17, 0x23, "030805060708090A0B0C")
    assert data == bytes.fromhex("5AA5 01 00 F0 17 23 0A 03 08 05060708090A0B0C 6EC2")
    assert len(data) == 20
    assert PollAny(2, (0x5A,)).to_payload() == bytes.fromhex("02 01 5A")
    request = PollAny(3, (9, 4, 0x7F))
    assert request.window_chars == 9
    assert [request.slot_start_chars(a) for a in (9, 4, 0x7F, 1)] == [0, 3, 6, None]


@pytest.mark.parametrize(
    ("slot_chars", "addresses", "message"),
    [
        (0, (1,), "slot"),
        (256, (1,), "slot"),
        (3, (), "1-238"),
        (3, tuple(range(1, 128)) * 2, "1-238"),
        (3, (0,), "1-127"),
        (3, (0x80,), "1-127"),
        (3, (5, 5), "twice"),
    ],
)
def test_bad_poll_any_is_refused(slot_chars: int, addresses: tuple[int, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PollAny(slot_chars, addresses).to_payload()


@pytest.mark.parametrize(
    "payload", ["03", "0302 05", "0301 05 06", "0001 05", "0301 00", "0302 0505"]
)
def test_bad_poll_any_payload_is_bad_payload(payload: str) -> None:
    with pytest.raises(PayloadError) as info:
        PollAny.from_payload(bytes.fromhex(payload))
    assert info.value.status is Status.BAD_PAYLOAD


def test_keypad_lcd() -> None:
    payload = KeypadLcd("A012\n等候 5").to_payload()
    assert payload == bytes.fromhex("01 41303132 0A B5C8BAF2 20 35")
    assert request(5, 1, Command.KEYPAD_LCD, payload) == expected(
        5, 0xF0, 1, 0x21, "01413031320AB5C8BAF22035"
    )
    assert KeypadLcd("READY").to_payload() == b"\x00READY"


def test_rating_start() -> None:
    payload = RatingStart("A012", 30).to_payload()
    assert payload == bytes.fromhex("1E 41303132")
    assert request(9, 1, Command.RATING_START, payload) == expected(9, 0xF0, 1, 0x22, "1E41303132")
    assert RatingStart().to_payload() == b"\x1e"


def test_set_address_broadcast() -> None:
    payload = SetAddress(0x51420007, 0x0C).to_payload()
    assert payload == bytes.fromhex("07004251 0C")
    assert Frame(0, MASTER, 0, Command.SET_ADDRESS, payload).to_bytes() == expected(
        0, 0xF0, 0, 0x30, "070042510C"
    )
    with pytest.raises(ValueError, match="1-127"):
        SetAddress(1, 0x80).to_payload()


# --- replies ----------------------------------------------------------------------------


def test_status_replies() -> None:
    for status in Status:
        assert reply(3, 0x10, Command.SHOW_CALL, bytes([status])) == expected(
            0xF0, 3, 0x10, 0x91, f"{status:02X}"
        )
    assert reply(3, 0x10, Command.SHOW_CALL, b"\x00") == bytes.fromhex(
        "5AA5 01 F0 03 10 91 01 00 5E51"
    )


def test_ident_reply() -> None:
    ident = IdentReply(
        kind_code=DeviceKind.COUNTER_DISPLAY,
        model="QB-D16",
        firmware=(1, 2),
        columns=16,
        lines=2,
        charsets=Charset.ASCII | Charset.GB2312,
        boot=7,
        serial=0x51420003,
    )
    payload = ident.to_payload()
    assert payload == bytes.fromhex("00 01 01 02 10 02 03 07 03004251 06") + b"QB-D16"
    assert reply(3, 7, Command.IDENT, payload) == expected(0xF0, 3, 7, 0x81, payload.hex())
    assert IdentReply.from_payload(payload) == ident
    assert ident.kind is DeviceKind.COUNTER_DISPLAY
    unknown = IdentReply.from_payload(bytes.fromhex("00 09 01 00 00 00 01 00 00000000 00"))
    assert unknown.kind is None
    assert unknown.kind_code == 9


def test_ping_reply() -> None:
    ping = PingReply(boot=3, flags=PingFlag.EVENTS_PENDING, pending=2)
    assert ping.to_payload() == bytes.fromhex("00 03 01 02")
    assert reply(5, 1, Command.PING, ping.to_payload()) == expected(0xF0, 5, 1, 0x82, "00030102")
    assert PingReply.from_payload(ping.to_payload()) == ping


def test_poll_reply_with_events() -> None:
    poll = PollReply(
        boot=1,
        remaining=0,
        events=(BusEvent(1, EventKind.NEXT), BusEvent(2, EventKind.CALL_SPECIFIC, ticket="A012")),
    )
    payload = poll.to_payload()
    assert payload == bytes.fromhex("00 01 00 02  01 01 00  02 09 04 41303132")
    assert reply(5, 0x20, Command.POLL_EVENTS, payload) == expected(
        0xF0, 5, 0x20, 0xA0, payload.hex()
    )
    assert PollReply.from_payload(payload) == poll
    assert PollReply(boot=4).to_payload() == bytes.fromhex("00 04 00 00")


def test_shown_text_reply() -> None:
    call = ShownText("请A012号\n到3号窗口", Effect.BLINK, Colour.RED)
    payload = call.to_payload()
    assert payload == bytes.fromhex("00 02 00 01  C7EB 41303132 BAC5 0A B5BD 33 BAC5 B4B0 BFDA")
    assert reply(3, 0x12, Command.QUERY_TEXT, payload) == expected(
        0xF0, 3, 0x12, 0x95, payload.hex()
    )
    assert ShownText.from_payload(payload) == ShownText(
        "请A012号\n到3号窗口", Effect.BLINK, Colour.RED, Encoding.GB2312
    )
    text = ShownText("Window 3", Effect.SCROLL, Colour.GREEN)
    assert text.to_payload() == bytes.fromhex("00 01 01 00") + b"Window 3"
    assert ShownText("").to_payload() == bytes.fromhex("00 00 00 00")
    # A device may report ASCII text with encoding 01; masters accept it.
    forced = ShownText("A012", encoding=Encoding.GB2312)
    assert forced.to_payload() == bytes.fromhex("00 00 00 01 41303132")
    assert ShownText.from_payload(forced.to_payload()) == forced
    with pytest.raises(TextEncodingError):
        ShownText("请", encoding=Encoding.ASCII).to_payload()
    with pytest.raises(TextEncodingError, match="at most 236"):
        ShownText("字" * 119).to_payload()


def test_bad_shown_text_replies_are_protocol_errors() -> None:
    for bad in ("00 07 00 00", "00 00 09 00", "00 00 00 05", "00 00 00 01 FFFF", "00 00 00", "02"):
        with pytest.raises(DeviceProtocolError):
            ShownText.from_payload(bytes.fromhex(bad))


EVENT_RECORDS = [
    (BusEvent(1, EventKind.NEXT), "01 01 00"),
    (BusEvent(2, EventKind.RECALL), "02 02 00"),
    (BusEvent(3, EventKind.NO_SHOW), "03 03 00"),
    (BusEvent(4, EventKind.HOLD), "04 04 00"),
    (BusEvent(5, EventKind.CALLBACK, ticket="B003"), "05 05 04 42303033"),
    (BusEvent(6, EventKind.PAUSE), "06 06 00"),
    (BusEvent(7, EventKind.RESUME), "07 07 00"),
    (
        BusEvent(8, EventKind.TRANSFER, transfer=TransferTarget(service_prefix="B")),
        "08 08 03 01 00 42",
    ),
    (
        BusEvent(
            9,
            EventKind.TRANSFER,
            transfer=TransferTarget(window=12, position=TransferPosition.FIRST),
        ),
        "09 08 04 02 01 0C00",
    ),
    (BusEvent(10, EventKind.CALL_SPECIFIC, ticket="A012"), "0A 09 04 41303132"),
    (BusEvent(11, EventKind.LOGIN, staff="s01", pin="1234"), "0B 0A 08 03 733031 31323334"),
    (BusEvent(12, EventKind.LOGOUT), "0C 0B 00"),
    (BusEvent(13, EventKind.RATING, score=5, ticket="A012"), "0D 10 05 05 41303132"),
    (BusEvent(14, EventKind.RATING_TIMEOUT, ticket="A012"), "0E 11 04 41303132"),
    (BusEvent(15, EventKind.RATING_TIMEOUT), "0F 11 00"),
    # The examples of PROTOCOL.md §7.
    (BusEvent(3, EventKind.FINISH, outcome=FinishOutcome.BACK_OFFICE), "03 0C 01 02"),
    (BusEvent(16, EventKind.FINISH, outcome=FinishOutcome.DONE), "10 0C 01 01"),
    (
        BusEvent(4, EventKind.TRANSFER, transfer=TransferTarget(service_prefix="B", choice=2)),
        "04 08 04 03 00 02 42",
    ),
]


@pytest.mark.parametrize(
    "args",
    ["", "00", "03", "01 01", "01 02"],
)
def test_bad_finish_args_are_flagged(args: str) -> None:
    event = BusEvent.from_wire(1, EventKind.FINISH, bytes.fromhex(args.replace(" ", "")))
    assert event.error
    assert event.outcome is None


@pytest.mark.parametrize("args", ["03 00 00 42", "03 00 0A 42", "03 00 02", "03 00 02 61"])
def test_bad_transfer_choice_is_flagged(args: str) -> None:
    event = BusEvent.from_wire(1, EventKind.TRANSFER, bytes.fromhex(args.replace(" ", "")))
    assert event.error
    assert event.transfer is None


def test_a_transfer_choice_needs_a_prefix() -> None:
    with pytest.raises(ValueError, match="choice"):
        TransferTarget(window=3, choice=1).to_args()
    with pytest.raises(ValueError, match="choice"):
        TransferTarget(service_prefix="B", choice=10).to_args()


@pytest.mark.parametrize(("event", "record"), EVENT_RECORDS)
def test_event_records(event: BusEvent, record: str) -> None:
    data = bytes.fromhex(record)
    assert event.to_record() == data
    assert BusEvent.from_wire(data[0], data[1], data[3:]) == event


def test_every_event_kind_has_a_record_test() -> None:
    assert {event.kind for event, _ in EVENT_RECORDS} == set(EventKind)


def test_unknown_event_type_is_kept_raw() -> None:
    event = BusEvent.from_wire(3, 0x7E, b"\x01\x02")
    assert event.kind is None
    assert event.raw_args == b"\x01\x02"
    assert event.to_record() == bytes.fromhex("03 7E 02 0102")


def test_malformed_known_event_is_flagged_not_raised() -> None:
    event = BusEvent.from_wire(3, EventKind.RATING, b"\x09")
    assert event.kind is EventKind.RATING
    assert event.error
    assert BusEvent.from_wire(4, EventKind.NEXT, b"\x00").error


def test_truncated_poll_reply_is_a_protocol_error() -> None:
    with pytest.raises(DeviceProtocolError):
        PollReply.from_payload(bytes.fromhex("00 01 00 02 01 01 00"))
    with pytest.raises(DeviceProtocolError):
        PollReply.from_payload(bytes.fromhex("00 01 00 01 01 09 04 4130"))
    with pytest.raises(DeviceProtocolError):
        PollReply.from_payload(bytes.fromhex("02"))


# --- request parsing (device side) ----------------------------------------------------------


@pytest.mark.parametrize(
    "item",
    [
        ShowText("请A012号", line=0, effect=Effect.BLINK, colour=Colour.YELLOW),
        ShowCall("Z99", 65535, 255),
        Brightness(0),
        SetIdleText(""),
        KeypadLcd("工号 s01\n已登录"),
        PollEvents(255, 255),
        PollAny(3, (5, 6, 0x5A, 0x7F)),
        PollAny(255, (1,)),
        RatingStart("", 0),
        SetAddress(0xFFFFFFFF, 1),
        QueryText(0),
        QueryText(),
    ],
)
def test_requests_round_trip(
    item: ShowText
    | ShowCall
    | Brightness
    | SetIdleText
    | KeypadLcd
    | PollEvents
    | PollAny
    | RatingStart
    | SetAddress
    | QueryText,
) -> None:
    assert type(item).from_payload(item.to_payload()) == item


def test_bad_request_payloads_map_to_status_codes() -> None:
    with pytest.raises(PayloadError) as info:
        ShowText.from_payload(bytes.fromhex("FF 07 00 00"))
    assert info.value.status is Status.BAD_PAYLOAD
    with pytest.raises(PayloadError) as info:
        ShowText.from_payload(bytes.fromhex("FF 00 00 01 FFFF"))
    assert info.value.status is Status.NOT_IN_FONT
    with pytest.raises(PayloadError):
        ShowCall.from_payload(bytes.fromhex("0300 03 61"))
    with pytest.raises(PayloadError):
        Brightness.from_payload(b"\x10")
    with pytest.raises(PayloadError):
        QueryText.from_payload(b"")


# --- frames -------------------------------------------------------------------------------


def test_frame_round_trip_and_properties() -> None:
    frame = Frame(3, MASTER, 200, Command.SHOW_CALL, b"\x01" * 240)
    data = frame.to_bytes()
    assert len(data) == MAX_FRAME_SIZE == frame.wire_size
    assert Frame.from_bytes(data) == frame
    assert not frame.is_reply
    answer = frame.make_reply(b"\x00")
    assert (answer.dst, answer.src, answer.seq, answer.cmd) == (MASTER, 3, 200, 0x91)
    assert answer.is_reply
    assert answer.command is Command.SHOW_CALL
    assert Frame(1, 2, 3, 0x77).command is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (bytes.fromhex("5AA5 01 03 F0 07 01"), "too short"),
        (bytes.fromhex("A55A 01 03 F0 07 01 00 8E8C"), "5A A5"),
        (bytes.fromhex("5AA5 02 03 F0 07 01 00 8E8C"), "version"),
        (bytes.fromhex("5AA5 01 03 F0 07 01 01 8E8C"), "LEN"),
        (bytes.fromhex("5AA5 01 03 F0 07 01 00 8E8D"), "CRC"),
    ],
)
def test_frame_from_bytes_rejects(data: bytes, message: str) -> None:
    with pytest.raises(DeviceProtocolError, match=message):
        Frame.from_bytes(data)


def test_frame_rejects_out_of_range_fields() -> None:
    with pytest.raises(ValueError, match="at most 240"):
        Frame(1, MASTER, 0, 1, bytes(241))
    with pytest.raises(ValueError, match="dst"):
        Frame(256, MASTER, 0, 1)


def test_max_reply_sizes() -> None:
    assert max_reply_size(Command.POLL_EVENTS) == 74
    assert max_reply_size(Command.SHOW_CALL) == 12
    assert max_reply_size(Command.QUERY_TEXT) == 250


def test_command_rejected_names_status_in_both_languages() -> None:
    error = CommandRejected(3, Command.SHOW_TEXT, Status.NOT_IN_FONT)
    assert "NOT_IN_FONT" in error.message_en
    assert "字库" in error.message_zh
    assert CommandRejected(3, 0x55, 0x66).status == 0x66


# --- text -----------------------------------------------------------------------------------


def test_text_encoding_picks_ascii_or_gb2312() -> None:
    assert encode_text("A012", max_bytes=10) == (0, b"A012")
    assert encode_text("请A012", max_bytes=10) == (1, "请A012".encode("gb2312"))
    assert decode_text(1, "请A012".encode("gb2312")) == "请A012"


@pytest.mark.parametrize(("text", "char", "position"), [("张喆", "喆", 1), ("OK😀", "😀", 2)])
def test_text_outside_gb2312_is_refused_in_both_languages(
    text: str, char: str, position: int
) -> None:
    with pytest.raises(TextEncodingError) as info:
        ShowText(text).to_payload()
    error = info.value
    assert isinstance(error, ValueError)
    assert isinstance(error, BadRequest)
    assert error.code == "text_not_encodable"
    assert "GB2312" in error.message_en
    assert char in error.message_zh
    assert "字库" in error.message_zh
    assert error.details["position"] == position


def test_text_too_long_or_with_control_characters_is_refused() -> None:
    with pytest.raises(TextEncodingError, match="at most 236"):
        ShowText("字" * 119).to_payload()
    with pytest.raises(TextEncodingError, match="control"):
        ShowText("A\tB").to_payload()
    with pytest.raises(TextEncodingError, match="control"):
        ShowText("A\nB", line=0).to_payload()


def test_bad_ticket_numbers_are_refused() -> None:
    for ticket in ("", "a012", "A0123456789", "A-1"):
        with pytest.raises(TextEncodingError):
            ShowCall(ticket, 1).to_payload()


def test_protocol_md_examples_are_exact() -> None:
    text = PROTOCOL_MD.read_text(encoding="utf-8")
    examples = text[text.index("## 9. Worked examples") :]
    lines = [line for line in examples.splitlines() if re.fullmatch(r"5A A5( [0-9A-F]{2})+", line)]
    built = [
        request(3, 0x10, Command.SHOW_CALL, ShowCall("A012", 3, 3).to_payload()),
        reply(3, 0x10, Command.SHOW_CALL, b"\x00"),
        request(3, 0x11, Command.SHOW_TEXT, ShowText("暂停服务").to_payload()),
        request(5, 0x20, Command.POLL_EVENTS, PollEvents(1, 0).to_payload()),
        reply(
            5,
            0x20,
            Command.POLL_EVENTS,
            PollReply(
                1,
                0,
                (BusEvent(1, EventKind.NEXT), BusEvent(2, EventKind.CALL_SPECIFIC, ticket="A012")),
            ).to_payload(),
        ),
        Frame(
            0, MASTER, 0, Command.SET_ADDRESS, SetAddress(0x51420007, 0x0C).to_payload()
        ).to_bytes(),
        Frame(
            0, MASTER, 0x17, Command.POLL_ANY, PollAny(3, tuple(range(5, 13))).to_payload()
        ).to_bytes(),
        request(3, 0x12, Command.QUERY_TEXT, QueryText().to_payload()),
        reply(
            3,
            0x12,
            Command.QUERY_TEXT,
            ShownText("请A012号\n到3号窗口", Effect.BLINK, Colour.RED).to_payload(),
        ),
    ]
    assert [bytes.fromhex(line) for line in lines] == built
    assert "5A A5 01 03 F0 07 01 00 8E 8C" in text
