"""The ESC/POS decoder and paper model: streaming, Kanji text, markers, PNG size."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.printer import decode as d
from devices.printer.paper import build_job, describe, render_png
from devices.printer.render import render_ticket
from tests.devices.printer.samples import SAMPLE

TICKET = render_ticket(SAMPLE)
IMAGE_TICKET = render_ticket(dataclasses.replace(SAMPLE, service_en="𠀀 image"), paper=58)


def _feed_in_chunks(data: bytes, cuts: list[int]) -> list[d.Command]:
    parser = d.EscPosParser()
    commands: list[d.Command] = []
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        commands += parser.feed(data[start:cut])
        start = cut
    return commands + parser.close()


@settings(max_examples=60, deadline=None)
@given(data=st.sampled_from([TICKET, IMAGE_TICKET]), cuts=st.lists(st.integers(0, 4000)))
def test_chunk_boundaries_do_not_matter(data: bytes, cuts: list[int]) -> None:
    paper = 80 if data is TICKET else 58
    whole = build_job(d.decode(data), paper=paper)
    chunked = build_job(_feed_in_chunks(data, [c % (len(data) + 1) for c in cuts]), paper=paper)
    assert describe(chunked) == describe(whole)
    assert chunked.images() == whole.images()


def test_describe_shows_lines_sizes_and_markers() -> None:
    text = describe(build_job(d.decode(TICKET), paper=80, byte_count=len(TICKET)), "job 0001")
    lines = text.splitlines()
    assert lines[0] == f"# job 0001 · paper 80 mm · {len(TICKET)} bytes · Chinese mode on"
    assert "[C 1x2 B] 浦东新区某某街道社区事务受理服务中心" in lines
    assert "[C 5x5 B] A012" in lines
    assert "[C 1x2] 前面还有 5 人等候" in lines
    assert "[QR model 2 · size 6 · EC M] http://127.0.0.1:8080/t/3fK9xQ2mVb" in lines
    assert "[L 1x1] □ 居民身份证原件" in lines
    assert lines[-2:] == ["[FEED 6]", "[CUT]"]


def test_image_marker_and_png_width() -> None:
    job = build_job(d.decode(IMAGE_TICKET), paper=58)
    assert "[IMAGE 384x30]" in describe(job).splitlines()
    png = render_png(job)
    assert png.width == 384
    assert png.height > 600


def test_status_request_mid_stream_is_not_text() -> None:
    commands = d.decode(b"\x1b@\x1c&\xc7\xb0\x10\x04\x02\xc3\xe6\n")
    assert commands == [
        d.Init(),
        d.KanjiOn(),
        d.Text("前", kanji=True),
        d.StatusRequest(2),
        d.Text("面", kanji=True),
        d.LineFeed(),
    ]


def test_kanji_mode_decodes_gb18030_four_byte_codes() -> None:
    commands = d.decode(b"\x1c&\x81\x39\xee\x39\x95\x32\x82\x36\x1c.\xc7")
    assert commands[1] == d.Text("㐀𠀀", kanji=True)
    assert commands[3] == d.Text("╟", kanji=False)  # CP437 outside Chinese mode


def test_wrapping_by_the_printer_is_marked() -> None:
    job = build_job(d.decode(b"\x1b@" + b"x" * 40 + b"\n"), paper=58)
    assert describe(job).splitlines()[1:] == [
        "[L 1x1] " + "x" * 32 + "  [WRAP]",
        "[L 1x1] " + "x" * 8,
    ]


def test_other_modes_set_sizes() -> None:
    job = build_job(d.decode(b"\x1b!\x38AB\x1c&\x1c!\x0c\xc7\xb0\n"), paper=80)
    assert describe(job).splitlines()[1] == "[L 2x2 B] AB前"
    job = build_job(d.decode(b"A\x1d!\x11B\x1bE\x01C\n"), paper=80)
    assert describe(job).splitlines()[1] == "[L 1x1] A{2x2}B{2x2 B}C"


@pytest.mark.parametrize(
    "data",
    [b"\x1b@\x1bZ", b"\x1d(k\x05\x00", b"\x1dv0\x00\x01\x00\x02\x00\xff", b"\x1c&\xc7", b"\x07"],
)
def test_strict_decode_rejects_unknown_or_truncated(data: bytes) -> None:
    with pytest.raises(d.EscPosDecodeError):
        d.decode(data)
    assert isinstance(d.decode(data, strict=False)[-1], d.Unknown)


def test_known_foreign_commands_are_skipped_exactly() -> None:
    commands = d.decode(b"\x1bt\x00\x1dB\x01AB\n", strict=False)
    assert commands == [
        d.Unknown(b"\x1bt\x00"),
        d.Unknown(b"\x1dB\x01"),
        d.Text("AB", kanji=False),
        d.LineFeed(),
    ]


def test_cut_variants() -> None:
    assert d.decode(b"\x1dV\x01\x1dVB\x03") == [d.Cut(partial=True, feed=None), d.Cut(True, 3)]
