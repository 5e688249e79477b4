"""Ticket rendering: byte-exact fixtures, Chinese mode, image fallback, wrapping, escpos parity."""

from __future__ import annotations

import dataclasses
import datetime as dt
from datetime import UTC, datetime
from types import ModuleType
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from devices.printer import commands as cmd
from devices.printer import decode as d
from devices.printer.fonts import missing_glyphs
from devices.printer.paper import build_job
from devices.printer.render import (
    IMAGE_SAMPLE,
    TicketPrint,
    clean_text,
    display_width,
    render_test_page,
    render_ticket,
    wrap,
)
from tests.devices.printer.make_fixtures import load_fixture
from tests.devices.printer.samples import FIXTURES, SAMPLE, TRACK_URL

KANJI_ON = bytes.fromhex("1c 26")
CUT = bytes.fromhex("1b 64 06 1d 56 00")


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_ticket_bytes_match_reviewed_fixture(name: str) -> None:
    assert render_ticket(SAMPLE, **FIXTURES[name]) == load_fixture(name)  # type: ignore[arg-type]


@pytest.mark.parametrize(("paper", "magnification"), [(80, 5), (58, 4)])
def test_ticket_key_sequences(paper: int, magnification: int) -> None:
    data = render_ticket(SAMPLE, paper=paper)
    assert data.startswith(bytes.fromhex("1b 40") + KANJI_ON)
    assert data.count(KANJI_ON) == 1
    assert "前面还有".encode("gbk") == bytes.fromhex("c7 b0 c3 e6 bb b9 d3 d0")
    assert bytes.fromhex("c7 b0 c3 e6 bb b9 d3 d0 20 35 20") in data
    size = bytes((0x1D, 0x21, (magnification - 1) * 0x11))
    assert size + b"A012\n" in data
    url = TRACK_URL.encode()
    store = bytes.fromhex("1d 28 6b") + (len(url) + 3).to_bytes(2, "little") + b"1P0" + url
    assert store in data
    assert bytes.fromhex("1d 28 6b 03 00 31 51 30") in data  # print the symbol
    assert data.endswith(CUT)
    assert data.count(bytes.fromhex("1d 56")) == 1


def test_ticket_decodes_to_the_expected_lines() -> None:
    job = build_job(d.decode(render_ticket(SAMPLE)), paper=80)
    lines = job.text_lines()
    for expected in (
        "浦东新区某某街道社区事务受理服务中心",
        "A012",
        "前面还有 5 人等候",
        "5 ahead of you",
        "预计等候约 14 分钟",
        "Estimated wait: about 14 min",
        "取号时间 2026-11-26 09:31",
        "□ 户口簿（本人页）",
        "【绿色通道 Priority lane】",
    ):
        assert expected in lines
    assert job.qr_data() == [TRACK_URL.encode()]
    assert job.images() == []
    assert job.cut


@pytest.mark.parametrize(("paper", "dots"), [(80, 576), (58, 384)])
def test_character_outside_gbk_goes_out_as_an_image(paper: int, dots: int) -> None:
    ticket = dataclasses.replace(SAMPLE, service_zh="社会保险𠀀登记")
    data = render_ticket(ticket, paper=paper, repertoire="gbk")
    job = build_job(d.decode(data), paper=paper)
    images = job.images()
    assert len(images) == 1
    image = images[0]
    assert (image.width, image.height) == (dots, 2 * 24 + 6)  # a 2x2 line
    assert any(image.data)  # ink was drawn
    assert not any("𠀀" in line for line in job.text_lines())
    assert "前面还有 5 人等候" in job.text_lines()  # everything else is still text
    header = bytes.fromhex("1d 76 30 00") + (dots // 8).to_bytes(2, "little")
    assert header + (54).to_bytes(2, "little") in data


@pytest.mark.parametrize(
    ("text", "repertoire", "images"),
    [
        ("喆", "gb2312", 1),  # GBK only
        ("喆", "gbk", 0),
        ("㐀", "gbk", 1),  # CJK extension A: GB18030 four-byte code
        ("㐀", "gb18030", 0),
        ("😀", "gb18030", 0),  # GB18030 covers all of Unicode
        ("€", "gbk", 1),
    ],
)
def test_repertoire_decides_text_or_image(text: str, repertoire: str, images: int) -> None:
    ticket = dataclasses.replace(SAMPLE, service_en=f"X {text} Y")
    job = build_job(d.decode(render_ticket(ticket, repertoire=repertoire)))
    assert len(job.images()) == images
    assert (f"X {text} Y" in job.text_lines()) == (images == 0)


def test_gb18030_four_byte_code_is_sent_as_is() -> None:
    ticket = dataclasses.replace(SAMPLE, service_en="㐀")
    assert bytes.fromhex("81 39 ee 39 0a") in render_ticket(ticket, repertoire="gb18030")


def test_without_chinese_mode_every_cjk_line_is_an_image() -> None:
    data = render_ticket(SAMPLE, chinese_mode=False)
    assert KANJI_ON not in data
    commands = d.decode(data)
    texts = [c.text for c in commands if isinstance(c, d.Text)]
    assert "5 ahead of you" in texts
    assert all(text.isascii() for text in texts)
    images = [c for c in commands if isinstance(c, d.RasterImage)]
    assert len(images) >= 10


def test_rendering_is_deterministic_with_images() -> None:
    ticket = dataclasses.replace(SAMPLE, center_zh="社区😀中心")
    assert render_ticket(ticket, paper=58) == render_ticket(ticket, paper=58)


def test_control_characters_cannot_inject_commands() -> None:
    ticket = dataclasses.replace(SAMPLE, service_en="A\x1b@\x10\x04\x01\x1dV\x00B", number="A\n12")
    data = render_ticket(ticket)
    assert b"\x10\x04" not in data
    assert data.count(b"\x1dV") == 1
    lines = build_job(d.decode(data)).text_lines()
    assert "A @ V B" in lines
    assert "A 12" in lines


def test_print_materials_off_and_no_estimate() -> None:
    ticket = dataclasses.replace(SAMPLE, estimated_wait_s=None, window_hint=None, priority=False)
    lines = build_job(d.decode(render_ticket(ticket, print_materials=False))).text_lines()
    assert not any(line.startswith("□") for line in lines)
    assert not any("预计等候" in line or "Window" in line or "绿色通道" in line for line in lines)


def test_long_number_shrinks_to_fit() -> None:
    ticket = dataclasses.replace(SAMPLE, number="AB12345678")
    job = build_job(d.decode(render_ticket(ticket, paper=58)), paper=58)
    assert all(not getattr(block, "wrapped", False) for block in job.blocks)
    assert bytes.fromhex("1d 21 22") + b"AB12345678" in render_ticket(ticket, paper=58)


def test_wait_rounds_up_to_minutes() -> None:
    ticket = dataclasses.replace(SAMPLE, estimated_wait_s=61)
    assert "预计等候约 2 分钟" in build_job(d.decode(render_ticket(ticket))).text_lines()


@pytest.mark.parametrize(
    "change",
    [
        {"issued_at": datetime(2026, 11, 26, 9, 31)},  # naive on purpose
        {"number": "  "},
        {"ahead": -1},
        {"estimated_wait_s": -5},
    ],
)
def test_ticket_rejects_bad_values(change: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(SAMPLE, **change)  # type: ignore[arg-type]


@pytest.mark.parametrize(("kwargs"), [{"paper": 76}, {"repertoire": "big5"}])
def test_render_rejects_bad_settings(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        render_ticket(SAMPLE, **kwargs)  # type: ignore[arg-type]


def test_display_width_and_clean_text() -> None:
    assert display_width("A012") == 4
    assert display_width("前面 5") == 6
    assert clean_text("\tA\x00B\u200b ") == "A B"


def test_wrap_breaks_words_and_keeps_punctuation_off_line_starts() -> None:
    assert wrap("Urban and rural residents' basic medical", 24) == [
        "Urban and rural",
        "residents' basic medical",
    ]
    assert wrap("一寸免冠彩色照片两张，近期拍摄", 20, indent=2) == [
        "一寸免冠彩色照片两",
        "  张，近期拍摄",
    ]
    assert wrap("x" * 10, 4) == ["xxxx", "xxxx", "xx"]


def test_wrap_leaves_no_chinese_character_alone_on_the_last_line() -> None:
    # 13 characters at 12 a line: the last one takes the one before it along.
    assert wrap("社会保障卡申领及挂失补换卡", 24) == ["社会保障卡申领及挂失补", "换卡"]
    assert wrap("社会保障卡申领及挂失补换卡。", 24) == ["社会保障卡申领及挂失补", "换卡。"]
    assert wrap("一二三四五六七八九十甲乙丙", 24, indent=2) == ["一二三四五六七八九十甲", "  乙丙"]
    # An English word alone is fine, and so is a line that only had two characters.
    assert wrap("社会保障卡申领及挂失补换 card", 24) == ["社会保障卡申领及挂失补换", "card"]
    assert wrap("一二三", 4) == ["一二", "三"]


_TEXT = st.text(
    alphabet=st.sampled_from(
        list("abcXYZ019 ,.-'") + list("前面还有人等候，。（）【】社区") + ["𠀀"]
    ),
    max_size=80,
)


@given(text=_TEXT, columns=st.integers(min_value=6, max_value=48), indent=st.integers(0, 4))
def test_wrap_fits_and_keeps_every_character(text: str, columns: int, indent: int) -> None:
    lines = wrap(text, columns, indent)
    assert all(display_width(line) <= columns for line in lines)
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")


@settings(max_examples=40, deadline=None)
@given(
    center=_TEXT,
    service=_TEXT,
    material=_TEXT,
    paper=st.sampled_from([58, 80]),
    repertoire=st.sampled_from(["gb2312", "gbk", "gb18030"]),
)
def test_any_ticket_decodes_and_never_overflows_the_paper(
    center: str, service: str, material: str, paper: int, repertoire: str
) -> None:
    ticket = dataclasses.replace(
        SAMPLE, center_zh=center, service_zh=service, materials=(material,)
    )
    data = render_ticket(ticket, paper=paper, repertoire=repertoire)
    job = build_job(d.decode(data), paper=paper)  # strict: only our subset
    assert job.cut
    assert all(not getattr(block, "wrapped", False) for block in job.blocks)
    assert all(image.width == cmd.PAPER_DOTS[paper] for image in job.images())


def test_test_page_shows_settings_and_an_image_line() -> None:
    data = render_test_page("kiosk", SAMPLE.issued_at, paper=58, repertoire="gb2312")
    job = build_job(d.decode(data), paper=58)
    lines = job.text_lines()
    assert "打印机自检" in lines
    assert "字符集 Repertoire: GB2312" in lines
    assert len(job.images()) == 2  # the GBK-only sample and the out-of-repertoire sample
    assert job.qr_data() == [b"qcall selftest kiosk"]
    assert job.cut


def test_test_page_rare_character_is_one_the_fallback_font_draws() -> None:
    # It must take the image path (outside GBK) and not come out as an empty box.
    rare = [ch for ch in IMAGE_SAMPLE if ord(ch) > 0x3000 and not _in_gbk(ch)]
    assert rare == ["䶵"]
    assert missing_glyphs(IMAGE_SAMPLE) == []
    assert missing_glyphs("𠀀") == ["𠀀"]  # what the page printed before: a box


def _in_gbk(ch: str) -> bool:
    try:
        ch.encode("gbk")
    except UnicodeEncodeError:
        return False
    return True


def test_test_page_time_is_the_given_wall_clock_with_its_zone() -> None:
    shanghai = dt.datetime(2026, 3, 2, 1, 15, tzinfo=dt.UTC).astimezone(ZoneInfo("Asia/Shanghai"))
    job = build_job(d.decode(render_test_page("kiosk", shanghai, paper=80)), paper=80)
    assert "时间 Time: 2026-03-02 09:15:00 UTC+08:00" in job.text_lines()


def test_qr_and_cut_bytes_equal_python_escpos(escpos_printer: ModuleType) -> None:
    dummy = escpos_printer.Dummy()
    dummy.qr(TRACK_URL, native=True, size=6, ec=1)  # escpos QR_ECLEVEL_M == 1
    dummy.cut()
    assert dummy.output == cmd.qr_code(TRACK_URL.encode(), 6, cmd.QrLevel.M) + cmd.full_cut()


def test_raster_bytes_equal_python_escpos(
    escpos_printer: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    ticket = dataclasses.replace(SAMPLE, service_en="𠀀 image line")
    raster = next(c for c in d.decode(render_ticket(ticket)) if isinstance(c, d.RasterImage))
    # Our bits are 1 = dot; escpos takes a normal black-on-white picture.
    ink = Image.frombytes("1", (raster.width_bytes * 8, raster.height), raster.data)
    picture = ink.convert("L").point(lambda value: 255 - value)
    dummy = escpos_printer.Dummy()
    dummy.image(picture)
    capsys.readouterr()  # escpos prints a note about the unknown media width
    assert dummy.output == cmd.raster_image(raster.width_bytes, raster.height, raster.data)


def test_ticket_print_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        SAMPLE.number = "B001"  # type: ignore[misc]


def test_issue_time_prints_in_the_tickets_own_timezone() -> None:
    ticket = dataclasses.replace(SAMPLE, issued_at=SAMPLE.issued_at.astimezone(UTC))
    assert isinstance(ticket, TicketPrint)
    assert "取号时间 2026-11-26 01:31" in build_job(d.decode(render_ticket(ticket))).text_lines()
