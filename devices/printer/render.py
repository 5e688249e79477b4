"""Render a queue ticket to ESC/POS bytes (pure: the same ticket always gives the same bytes)."""

from __future__ import annotations

import functools
import math
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal, get_args

from PIL import Image, ImageDraw

from devices.printer import commands as cmd
from devices.printer.commands import Align
from devices.printer.escpos_backend import OWN_COMMANDS, CommandSet
from devices.printer.fonts import FONT_LOCK, cjk_font
from devices.printer.linebreak import NO_LINE_START, mend_widow, units

Paper = Literal[58, 80]
Repertoire = Literal["gb2312", "gbk", "gb18030"]

# Ticket number magnification (GS !) by paper width: 5x on 80 mm, 4x on 58 mm (about 15 mm tall).
NUMBER_MAGNIFICATION: Final[dict[int, int]] = {80: 5, 58: 4}
# QR module size in dots: 0.75 mm (80 mm) / 0.6 mm (58 mm) modules scan well on phones.
QR_MODULE: Final[dict[int, int]] = {80: 6, 58: 5}
# Characters that must not start a line (Chinese line-breaking rule, 避头点).
_TIME_FORMAT: Final = "%Y-%m-%d %H:%M"
_Size = tuple[int, int]


@dataclass(frozen=True, slots=True)
class TicketPrint:
    """Everything printed on a queue ticket."""

    center_zh: str
    center_en: str
    service_zh: str
    service_en: str
    number: str
    ahead: int
    estimated_wait_s: int | None
    issued_at: datetime
    track_url: str
    materials: tuple[str, ...] = ()
    window_hint: str | None = None
    priority: bool = False
    rules: tuple[str, ...] = ()  # the center's short rules ("过号请重新取号"), printed at the foot

    def __post_init__(self) -> None:
        """Reject values that cannot be printed meaningfully."""
        if self.issued_at.tzinfo is None or self.issued_at.utcoffset() is None:
            raise ValueError("issued_at must be timezone-aware")
        if not self.number.strip():
            raise ValueError("number is empty")
        if self.ahead < 0:
            raise ValueError("ahead must not be negative")
        if self.estimated_wait_s is not None and self.estimated_wait_s < 0:
            raise ValueError("estimated_wait_s must not be negative")


def display_width(text: str) -> int:
    """Return the printed width in font-A columns: ASCII takes one, everything else two."""
    return sum(1 if ord(ch) < 0x80 else 2 for ch in text)


def clean_text(text: str) -> str:
    """Replace control, format and unassigned characters with spaces (no command injection)."""
    return "".join(" " if unicodedata.category(ch)[0] == "C" else ch for ch in text).strip()


def wrap(text: str, columns: int, indent: int = 0) -> list[str]:
    """Wrap ``text`` to ``columns`` display columns; continuation lines get ``indent`` spaces."""
    if columns < 2 or indent >= columns - 1:
        raise ValueError("too few columns to wrap into")
    lines: list[list[str]] = [[]]
    used = 0

    def new_line() -> None:
        nonlocal used
        lines.append([" " * indent] if indent else [])
        used = indent

    for token in units(text):
        width = display_width(token)
        if token.isspace():
            if lines[-1] and lines[-1][-1].strip() and used + width <= columns:
                lines[-1].append(token)
                used += width
            continue
        if used + width <= columns:
            lines[-1].append(token)
            used += width
            continue
        if width > columns - indent:  # a word longer than a line: hard split
            for ch in token:
                if used + 1 > columns:
                    new_line()
                lines[-1].append(ch)
                used += 1
            continue
        carry: list[str] = []
        if token in NO_LINE_START:
            # Pull the previous character down with the punctuation, unless it stands alone.
            previous = lines[-1]
            fits = indent + display_width(previous[-1]) + width <= columns if previous else False
            if len(previous) > 1 and not previous[-1].isspace() and fits:
                carry = [previous.pop()]
        new_line()
        for piece in [*carry, token]:
            lines[-1].append(piece)
            used += display_width(piece)
    wrapped = ["".join(parts).rstrip() for parts in lines if "".join(parts).strip()]
    return mend_widow(wrapped, lambda line: display_width(line) <= columns)


class _Writer:
    """Accumulates one print job, emitting style commands only when they change."""

    def __init__(
        self,
        paper: int,
        chinese_mode: bool,
        repertoire: str,
        commands: CommandSet = OWN_COMMANDS,
    ) -> None:
        if paper not in cmd.PAPER_DOTS:
            raise ValueError(f"paper must be 58 or 80, not {paper!r}")
        if repertoire not in get_args(Repertoire):
            raise ValueError(f"unknown repertoire {repertoire!r}")
        self.paper = paper
        self.columns = cmd.PAPER_COLUMNS[paper]
        self._dots = cmd.PAPER_DOTS[paper]
        self._chinese_mode = chinese_mode
        self._repertoire = repertoire
        self._commands = commands
        self._out = bytearray(cmd.INIT)
        if chinese_mode:
            self._out += cmd.KANJI_ON
        self._align = Align.LEFT
        self._bold = False
        self._size: _Size = (1, 1)

    def _style(self, align: Align, bold: bool, size: _Size) -> None:
        if align != self._align:
            self._out += cmd.align(align)
            self._align = align
        if bold != self._bold:
            self._out += cmd.emphasis(bold)
            self._bold = bold
        if size != self._size:
            self._out += cmd.char_size(*size)
            self._size = size

    def line(
        self,
        text: str,
        *,
        align: Align = Align.CENTER,
        bold: bool = False,
        size: _Size = (1, 1),
        indent: int = 0,
    ) -> None:
        """Print ``text`` wrapped to the paper; lines the printer can't encode go as images."""
        for piece in wrap(clean_text(text), self.columns // size[0], indent):
            encoded = _encode(piece, self._chinese_mode, self._repertoire)
            if encoded is None:
                self._out += _raster_line(piece, self._dots, align, bold, size, self._commands)
            else:
                self._style(align, bold, size)
                self._out += encoded + cmd.LF

    def rule(self) -> None:
        """Print a dashed separator across the paper."""
        self._style(Align.LEFT, False, (1, 1))
        self._out += b"-" * self.columns + cmd.LF

    def blank(self) -> None:
        """Feed one empty normal-size line."""
        self._style(self._align, self._bold, (1, 1))
        self._out += cmd.LF

    def qr(self, data: str) -> None:
        """Print a centred native QR code."""
        self._style(Align.CENTER, False, (1, 1))
        self._out += self._commands.qr_code(data.encode("utf-8"), QR_MODULE[self.paper])
        self._out += cmd.LF

    def finish(self) -> bytes:
        """End the job with the cut and return its bytes."""
        self._out += self._commands.full_cut()
        return bytes(self._out)


@functools.lru_cache(maxsize=4096)
def _encode_char(ch: str, repertoire: str) -> bytes | None:
    """Return the 2-byte (or GB18030 4-byte) code of ``ch``, or None if outside the repertoire."""
    try:
        code = ch.encode(repertoire)
    except UnicodeEncodeError:
        return None
    if len(code) == 2 or (len(code) == 4 and repertoire == "gb18030"):
        return code
    return None


def _encode(text: str, chinese_mode: bool, repertoire: str) -> bytes | None:
    """Return printer bytes for ``text``, or None if any character needs the image path."""
    out = bytearray()
    for ch in text:
        if 0x20 <= ord(ch) < 0x7F:
            out.append(ord(ch))
            continue
        code = _encode_char(ch, repertoire) if chinese_mode else None
        if code is None:
            return None
        out += code
    return bytes(out)


def _raster_line(
    text: str, dots: int, align: Align, bold: bool, size: _Size, commands: CommandSet
) -> bytes:
    """Draw one line with the CJK font at the paper width and return it as ``GS v 0``."""
    width_mag, height_mag = size
    height = cmd.KANJI_DOTS * height_mag + (cmd.LINE_DOTS - cmd.KANJI_DOTS)
    stroke = 1 if bold else 0
    font = cjk_font(cmd.KANJI_DOTS * height_mag)
    with FONT_LOCK:
        ascent, descent = font.getmetrics()
        text_width = math.ceil(font.getlength(text)) + 2 * stroke
        glyphs = Image.new("L", (max(text_width, 1), height), 0)
        baseline = (height - (ascent + descent)) // 2 + ascent
        ImageDraw.Draw(glyphs).text(
            (stroke, baseline), text, font=font, fill=255, anchor="ls", stroke_width=stroke
        )
    if width_mag != height_mag:
        glyphs = glyphs.resize((max(1, text_width * width_mag // height_mag), height))
    if glyphs.width > dots:
        glyphs = glyphs.resize((dots, height))
    canvas = Image.new("L", (dots, height), 0)
    offset = {
        Align.LEFT: 0,
        Align.CENTER: (dots - glyphs.width) // 2,
        Align.RIGHT: dots - glyphs.width,
    }[align]
    canvas.paste(glyphs, (offset, 0))
    packed = canvas.convert("1", dither=Image.Dither.NONE).tobytes()
    return commands.raster_image(dots // 8, height, packed)


def _wait_minutes(seconds: int) -> int:
    """Round an estimate up to whole minutes (a resident would rather wait less than told)."""
    return math.ceil(seconds / 60)


def render_ticket(
    ticket: TicketPrint,
    paper: int = 80,
    chinese_mode: bool = True,
    repertoire: str = "gbk",
    print_materials: bool = True,
    commands: CommandSet = OWN_COMMANDS,
) -> bytes:
    """Return the complete print job for ``ticket``, from ``ESC @`` to the cut.

    ``commands`` makes the QR, image and cut bytes (python-escpos at run time, see
    ``escpos_backend``); text, including Chinese mode, is always written here.
    """
    job = _Writer(paper, chinese_mode, repertoire, commands)
    job.line(ticket.center_zh, bold=True, size=(1, 2))
    job.line(ticket.center_en)
    job.rule()
    job.line(ticket.service_zh, bold=True, size=(2, 2))
    job.line(ticket.service_en)
    if ticket.priority:
        job.line("【绿色通道 Priority lane】", bold=True)
    job.blank()
    number = clean_text(ticket.number)
    magnification = NUMBER_MAGNIFICATION[paper]
    while magnification > 1 and display_width(number) * magnification > job.columns:
        magnification -= 1
    job.line(number, bold=True, size=(magnification, magnification))
    job.blank()
    job.line(f"前面还有 {ticket.ahead} 人等候", size=(1, 2))
    job.line(f"{ticket.ahead} ahead of you")
    if ticket.estimated_wait_s is not None:
        minutes = _wait_minutes(ticket.estimated_wait_s)
        job.line(f"预计等候约 {minutes} 分钟")
        job.line(f"Estimated wait: about {minutes} min")
    if ticket.window_hint:
        job.line(f"办理窗口 Window: {ticket.window_hint}")
    issued = ticket.issued_at.strftime(_TIME_FORMAT)
    job.line(f"取号时间 {issued}")
    job.line(f"Issued {issued}")
    if ticket.track_url:
        job.blank()
        job.qr(ticket.track_url)
        job.line("扫码查看排队进度")
        job.line("Scan to track your turn")
    if print_materials and ticket.materials:
        job.rule()
        job.line("请备好以下材料 Please bring:", align=Align.LEFT, bold=True)
        for item in ticket.materials:
            job.line(f"□ {item}", align=Align.LEFT, indent=2)
    if ticket.rules:
        job.rule()
        for rule in ticket.rules:
            job.line(rule, align=Align.LEFT, indent=2)
    job.rule()
    job.line("请留意屏幕及语音叫号")
    job.line("Watch the screen for your number")
    return job.finish()


# The test page's line that no printer encoding covers (printed as an image by the CJK font): a
# rare character outside GBK that the fallback fonts actually draw (WenQuanYi Micro Hei and Noto
# CJK both have 䶵 U+4DB5; most of CJK Extension A and every plane-2 character print as boxes
# in WenQuanYi).
IMAGE_SAMPLE: Final = "€ ✓ 䶵 ← 图像 image"


def _sample_lines(repertoire: str) -> Iterable[tuple[str, str]]:
    """Yield (label, sample) lines that exercise each encoding path of the printer."""
    yield "GB2312", "社区事务受理中心，【】□★"
    yield "GBK", "喆镕堃 (GBK)"
    if repertoire == "gb18030":
        yield "GB18030", "㐀䶮 (GB18030)"
    yield "Image 图像", IMAGE_SAMPLE


def _local_time(moment: datetime) -> str:
    """Return ``2026-03-02 09:15:00 UTC+08:00``: the wall clock with its zone, never ambiguous."""
    offset = moment.strftime("%z")
    zone = f" UTC{offset[:3]}:{offset[3:]}" if offset else ""
    return f"{moment:%Y-%m-%d %H:%M:%S}{zone}"


def render_test_page(
    printer_id: str,
    printed_at: datetime,
    paper: int = 80,
    chinese_mode: bool = True,
    repertoire: str = "gbk",
    commands: CommandSet = OWN_COMMANDS,
) -> bytes:
    """Return the technician self-test page: settings, ruler, encodings, sizes, QR, cut."""
    job = _Writer(paper, chinese_mode, repertoire, commands)
    job.line("打印机自检", bold=True, size=(2, 2))
    job.line("Printer self-test", bold=True)
    job.rule()
    job.line(f"编号 Printer: {printer_id}", align=Align.LEFT)
    columns = job.columns
    dots = cmd.PAPER_DOTS[paper]
    job.line(f"纸宽 Paper: {paper} mm, {columns} cols, {dots} dots", align=Align.LEFT)
    mode = "on 开" if chinese_mode else "off 关"
    job.line(f"中文模式 Chinese mode: {mode}", align=Align.LEFT)
    job.line(f"字符集 Repertoire: {repertoire.upper()}", align=Align.LEFT)
    job.line(f"时间 Time: {_local_time(printed_at)}", align=Align.LEFT)
    job.rule()
    job.line(("1234567890" * 8)[:columns], align=Align.LEFT)
    job.line("一二三四五六七八九十" * 3, align=Align.LEFT)
    for label, sample in _sample_lines(repertoire):
        job.line(f"{label}: {sample}", align=Align.LEFT)
    job.rule()
    for magnification in (1, 2, 3, 4):
        job.line(f"A{magnification}号", bold=True, size=(magnification, magnification))
    job.blank()
    job.qr(f"qcall selftest {printer_id}")
    job.line("二维码 QR")
    job.line("自检结束 End of self-test")
    return job.finish()
