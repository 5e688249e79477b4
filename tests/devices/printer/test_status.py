"""DLE EOT status: bit mapping for every fault, the fixed pattern, the blocking reader."""

from __future__ import annotations

import pytest

from devices.printer.status import (
    STATUS_QUERIES,
    PrinterStatus,
    is_status_byte,
    read_status,
)
from qcall.errors import DeviceProtocolError, DeviceTimeout

FIELDS = (
    "online",
    "cover_open",
    "paper_end",
    "paper_near_end",
    "cutter_error",
    "recoverable_error",
    "unrecoverable_error",
)

# Replies to DLE EOT 1, 2, 3, 4 as devices.md §2.1 gives them, and what they must mean.
CASES = {
    "ok": ("12 12 12 12", set(), [], True),
    "paper_end": ("1a 32 12 7e", {"paper_end", "paper_near_end"}, ["paper_end"], False),
    "near_end": ("12 12 12 1e", {"online", "paper_near_end"}, ["paper_near_end"], True),
    "cover_open": ("1a 16 12 12", {"cover_open"}, ["cover_open"], False),
    "offline": ("1a 12 12 12", set(), ["offline"], False),
    "cutter": ("1a 52 1a 12", {"cutter_error"}, ["cutter_error"], False),
    "unrecoverable": ("1a 52 32 12", {"unrecoverable_error"}, ["unrecoverable_error"], False),
    "head_hot": ("12 12 52 12", {"online", "recoverable_error"}, ["recoverable_error"], True),
    "recoverable": ("12 12 16 12", {"online", "recoverable_error"}, ["recoverable_error"], True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_status_bits_map_to_fields(case: str) -> None:
    raw, true_fields, problems, can_print = CASES[case]
    if case == "ok":
        true_fields = {"online"}
    status = PrinterStatus.from_bytes(bytes.fromhex(raw))
    assert {name for name in FIELDS if getattr(status, name)} == true_fields
    assert [problem.code for problem in status.problems()] == problems
    assert status.can_print is can_print
    assert status.raw == bytes.fromhex(raw)


@pytest.mark.parametrize("case", sorted(CASES))
def test_problems_are_bilingual(case: str) -> None:
    status = PrinterStatus.from_bytes(bytes.fromhex(CASES[case][0]))
    for problem in status.problems():
        assert not problem.message_zh.isascii()
        assert problem.message_en.isascii()
        assert str(problem) == f"{problem.message_zh} / {problem.message_en}"


def test_paper_end_message_names_the_problem() -> None:
    (problem,) = PrinterStatus.from_bytes(bytes.fromhex("1a 32 12 7e")).problems()
    assert "缺纸" in problem.message_zh
    assert "Paper end" in problem.message_en
    assert problem.blocking


def test_fixed_bit_pattern() -> None:
    valid = [value for value in range(256) if is_status_byte(value)]
    assert len(valid) == 16  # four free bits
    assert all(value & 0b1001_0011 == 0b0001_0010 for value in valid)
    assert not is_status_byte(0x11)  # XON
    assert not is_status_byte(0x13)  # XOFF


@pytest.mark.parametrize("raw", ["12 12 12 13", "12 12 12", "12 92 12 12", "00 12 12 12"])
def test_bad_replies_are_protocol_errors(raw: str) -> None:
    with pytest.raises(DeviceProtocolError) as info:
        PrinterStatus.from_bytes(bytes.fromhex(raw))
    assert not info.value.message_zh.isascii()


def test_as_dict_is_json_ready() -> None:
    view = PrinterStatus.from_bytes(bytes.fromhex("12 12 12 1e")).as_dict()
    assert view["raw"] == "12 12 12 1e"
    assert view["paper_near_end"] is True
    assert view["problems"] == [
        "纸将用完：请准备新纸卷 / Paper near end: have a new paper roll ready"
    ]


class FakeChannel:
    """Answers each DLE EOT query with scripted bytes."""

    def __init__(self, replies: dict[bytes, bytes]) -> None:
        self.replies = replies
        self.written: list[bytes] = []
        self.inbox = bytearray(b"\x12\x12")  # stale bytes from an earlier exchange
        self.discarded = 0

    def discard_input(self) -> None:
        self.discarded += 1
        self.inbox.clear()

    def write(self, data: bytes, timeout: float) -> None:
        self.written.append(data)
        self.inbox += self.replies.get(data, b"")

    def read(self, size: int, timeout: float) -> bytes:
        data = bytes(self.inbox[:size])
        del self.inbox[:size]
        return data


def test_read_status_asks_one_at_a_time() -> None:
    replies = dict(zip(STATUS_QUERIES, [b"\x1a", b"\x32", b"\x12", b"\x7e"], strict=True))
    channel = FakeChannel(replies)
    status = read_status(channel)
    assert channel.discarded == 1
    assert channel.written == [bytes.fromhex(f"10 04 0{n}") for n in (1, 2, 3, 4)]
    assert status.paper_end
    assert not status.online


def test_read_status_skips_flow_control_bytes() -> None:
    replies = dict.fromkeys(STATUS_QUERIES, b"\x11\x13\x12")
    assert read_status(FakeChannel(replies)).raw == b"\x12\x12\x12\x12"


def test_read_status_times_out_on_silence() -> None:
    with pytest.raises(DeviceTimeout) as info:
        read_status(FakeChannel({}), reply_timeout=0.01)
    assert "DLE EOT 1" in info.value.message_en
    assert isinstance(info.value, TimeoutError)


def test_read_status_rejects_garbage() -> None:
    with pytest.raises(DeviceProtocolError):
        read_status(FakeChannel({STATUS_QUERIES[0]: b"\xff"}), reply_timeout=0.01)
