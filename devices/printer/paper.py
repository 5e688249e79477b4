"""What a decoded job puts on paper: lines, QR codes, images and the cut, as text and as PNG."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

import qrcode
from PIL import Image, ImageDraw

from devices.printer import commands as cmd
from devices.printer import decode as d
from devices.printer.fonts import FONT_LOCK, cjk_font

_ALIGN_LETTER: Final = "LCR"
_TOP_MARGIN: Final = 12
_CUT_MARGIN: Final = 16
_INK_THRESHOLD: Final = 150
_QR_LEVELS: Final = {
    "L": qrcode.constants.ERROR_CORRECT_L,
    "M": qrcode.constants.ERROR_CORRECT_M,
    "Q": qrcode.constants.ERROR_CORRECT_Q,
    "H": qrcode.constants.ERROR_CORRECT_H,
}


@dataclass(frozen=True, slots=True)
class Run:
    """Characters printed with one style."""

    text: str
    bold: bool
    width: int
    height: int
    kanji: bool

    def char_dots(self, ch: str) -> int:
        """Return the width of ``ch`` in dots (12 per ANK column, 24 per Kanji, times width)."""
        base = cmd.KANJI_DOTS if self.kanji and ord(ch) >= 0x80 else cmd.ANK_DOTS
        return base * self.width

    @property
    def style(self) -> str:
        """Return ``WxH`` plus `` B`` when bold."""
        return f"{self.width}x{self.height}" + (" B" if self.bold else "")


@dataclass(frozen=True, slots=True)
class TextLine:
    """One printed text line; ``wrapped`` when the printer broke an over-long line."""

    align: int
    runs: tuple[Run, ...]
    wrapped: bool = False

    @property
    def text(self) -> str:
        """Return the characters of the line."""
        return "".join(run.text for run in self.runs)

    @property
    def height_dots(self) -> int:
        """Return the line pitch: the tallest character plus the line spacing."""
        tallest = max((run.height for run in self.runs), default=1)
        return cmd.KANJI_DOTS * tallest + cmd.LINE_DOTS - cmd.KANJI_DOTS


@dataclass(frozen=True, slots=True)
class QrBlock:
    """A native QR symbol."""

    data: bytes
    module: int
    level: str
    model: int
    align: int


@dataclass(frozen=True, slots=True)
class ImageBlock:
    """A ``GS v 0`` raster image (bit 1 = dot)."""

    width: int
    height: int
    data: bytes
    mode: int
    align: int


@dataclass(frozen=True, slots=True)
class FeedBlock:
    """Blank paper fed by ``ESC d n``."""

    lines: int


@dataclass(frozen=True, slots=True)
class CutMark:
    """Where the cutter cut."""

    partial: bool


@dataclass(frozen=True, slots=True)
class UnknownBlock:
    """Bytes the decoder did not understand."""

    raw: bytes


Block = TextLine | QrBlock | ImageBlock | FeedBlock | CutMark | UnknownBlock


@dataclass(frozen=True, slots=True)
class PrintedJob:
    """One job as it came out of the printer."""

    paper: int
    blocks: tuple[Block, ...]
    chinese_mode: bool
    byte_count: int

    def text_lines(self) -> list[str]:
        """Return the text of every printed text line."""
        return [block.text for block in self.blocks if isinstance(block, TextLine)]

    def qr_data(self) -> list[bytes]:
        """Return the data of every QR symbol."""
        return [block.data for block in self.blocks if isinstance(block, QrBlock)]

    def images(self) -> list[ImageBlock]:
        """Return every raster image."""
        return [block for block in self.blocks if isinstance(block, ImageBlock)]

    @property
    def cut(self) -> bool:
        """Return whether the job ended with a cut."""
        return bool(self.blocks) and isinstance(self.blocks[-1], CutMark)


@dataclass
class JobBuilder:
    """Applies decoded commands to a printer model, collecting what gets printed."""

    paper: int = 80
    chinese_mode: bool = False
    byte_count: int = 0
    blocks: list[Block] = field(default_factory=list)
    _align: int = 0
    _bold: bool = False
    _size: tuple[int, int] = (1, 1)
    _print_mode: int = 0
    _kanji_mode: int = 0
    _line: list[Run] = field(default_factory=list)
    _line_align: int = 0
    _line_dots: int = 0
    _qr_module: int = 3
    _qr_level: str = "L"
    _qr_model: int = 2
    _qr_data: bytes = b""

    @property
    def dots(self) -> int:
        """Return the printable width in dots."""
        return cmd.PAPER_DOTS[self.paper]

    @property
    def has_content(self) -> bool:
        """Return whether anything would come out of the printer."""
        return bool(self.blocks or self._line)

    def add(self, command: d.Command) -> bool:
        """Apply ``command``; return True when it was the cut that ends the job."""
        match command:
            case d.Init():
                self._reset_modes()
            case d.SetAlign(value):
                self._align = value
            case d.SetEmphasis(on):
                self._bold = on
            case d.SetPrintMode(value):
                self._print_mode = value
            case d.SetCharSize(width, height):
                self._size = (width, height)
            case d.KanjiOn():
                self.chinese_mode = True
            case d.KanjiOff():
                self.chinese_mode = False
            case d.SetKanjiMode(value):
                self._kanji_mode = value
            case d.Text(text, kanji):
                self._add_text(text, kanji)
            case d.LineFeed():
                self._end_line()
            case d.FeedLines(count):
                self._flush_line()
                self.blocks.append(FeedBlock(count))
            case d.QrModel(model):
                self._qr_model = model
            case d.QrModuleSize(size):
                self._qr_module = size
            case d.QrErrorLevel(level):
                self._qr_level = level
            case d.QrStore(data):
                self._qr_data = data
            case d.QrPrint():
                self._flush_line()
                self.blocks.append(
                    QrBlock(
                        self._qr_data, self._qr_module, self._qr_level, self._qr_model, self._align
                    )
                )
            case d.RasterImage(mode, width_bytes, height, data):
                self._flush_line()
                self.blocks.append(ImageBlock(width_bytes * 8, height, data, mode, self._align))
            case d.Cut(partial, _feed):
                self._flush_line()
                self.blocks.append(CutMark(partial))
                return True
            case d.Unknown(raw):
                self.blocks.append(UnknownBlock(raw))
            case d.StatusRequest() | d.Control():
                pass
        return False

    def finish(self) -> PrintedJob:
        """Return the job so far (a pending partial line is printed, as at connection close)."""
        self._flush_line()
        return PrintedJob(self.paper, tuple(self.blocks), self.chinese_mode, self.byte_count)

    def _reset_modes(self) -> None:
        self._align = 0
        self._bold = False
        self._size = (1, 1)
        self._print_mode = 0
        self._kanji_mode = 0

    def _run_for(self, kanji: bool) -> Run:
        width, height = self._size
        if (width, height) == (1, 1):
            if kanji:
                width = 2 if self._kanji_mode & 0x04 else 1
                height = 2 if self._kanji_mode & 0x08 else 1
            else:
                width = 2 if self._print_mode & 0x20 else 1
                height = 2 if self._print_mode & 0x10 else 1
        bold = self._bold or bool(self._print_mode & 0x08)
        return Run("", bold, width, height, kanji)

    def _add_text(self, text: str, kanji: bool) -> None:
        for ch in text:
            template = self._run_for(kanji and ord(ch) >= 0x80)
            dots = template.char_dots(ch)
            if self._line and self._line_dots + dots > self.dots:
                self._end_line(wrapped=True)
            if not self._line:
                self._line_align = self._align
            last = self._line[-1] if self._line else None
            if last is not None and (last.bold, last.width, last.height, last.kanji) == (
                template.bold,
                template.width,
                template.height,
                template.kanji,
            ):
                self._line[-1] = Run(last.text + ch, *_style_of(last))
            else:
                self._line.append(Run(ch, *_style_of(template)))
            self._line_dots += dots

    def _end_line(self, *, wrapped: bool = False) -> None:
        align = self._line_align if self._line else self._align
        self.blocks.append(TextLine(align, tuple(self._line), wrapped))
        self._line = []
        self._line_dots = 0

    def _flush_line(self) -> None:
        if self._line:
            self._end_line()


def _style_of(run: Run) -> tuple[bool, int, int, bool]:
    return run.bold, run.width, run.height, run.kanji


def build_job(commands: Iterable[d.Command], paper: int = 80, byte_count: int = 0) -> PrintedJob:
    """Apply ``commands`` to a fresh printer and return what it printed."""
    builder = JobBuilder(paper=paper, byte_count=byte_count)
    for command in commands:
        builder.add(command)
    return builder.finish()


def _line_text(line: TextLine) -> str:
    if not line.runs:
        return f"[{_ALIGN_LETTER[line.align % 3]} 1x1]"
    first = line.runs[0]
    parts = [f"[{_ALIGN_LETTER[line.align % 3]} {first.style}] {first.text}"]
    previous = first.style
    for run in line.runs[1:]:
        if run.style != previous:
            parts.append(f"{{{run.style}}}")
            previous = run.style
        parts.append(run.text)
    return "".join(parts) + ("  [WRAP]" if line.wrapped else "")


def describe(job: PrintedJob, title: str = "job") -> str:
    """Return the job as readable text: one line per printed line, markers for the rest."""
    kanji = "on" if job.chinese_mode else "off"
    out = [f"# {title} · paper {job.paper} mm · {job.byte_count} bytes · Chinese mode {kanji}"]
    for block in job.blocks:
        match block:
            case TextLine():
                out.append(_line_text(block))
            case QrBlock(data, module, level, model, _align):
                text = data.decode("utf-8", errors="replace")
                out.append(f"[QR model {model} · size {module} · EC {level}] {text}")
            case ImageBlock(width, height, _data, mode, _align):
                out.append(f"[IMAGE {width}x{height}]" + (f" mode {mode}" if mode else ""))
            case FeedBlock(lines):
                out.append(f"[FEED {lines}]")
            case CutMark(partial):
                out.append("[CUT partial]" if partial else "[CUT]")
            case UnknownBlock(raw):
                out.append(f"[UNKNOWN {raw[:24].hex(' ')}]")
    return "\n".join(out) + "\n"


@functools.lru_cache(maxsize=2048)
def _glyph(ch: str, cell: int, bold: bool) -> Image.Image:
    """Return ``ch`` drawn black-on-white in a ``cell`` x 24 box (unmagnified)."""
    font = cjk_font(cmd.KANJI_DOTS)
    with FONT_LOCK:
        natural = math.ceil(font.getlength(ch)) + (1 if bold else 0)
        width = max(cell, natural)
        image = Image.new("L", (width, cmd.KANJI_DOTS), 255)
        draw = ImageDraw.Draw(image)
        left = (width - natural) // 2
        for dx in (0, 1) if bold else (0,):
            draw.text((left + dx, cmd.KANJI_DOTS - 4), ch, font=font, fill=0, anchor="ls")
    if width > cell:  # font A is 12 dots wide: squeeze wide Latin glyphs (M, W) into the cell
        image = image.resize((cell, cmd.KANJI_DOTS), Image.Resampling.BILINEAR)
    # A thermal head prints dots or nothing: threshold to pure black and white.
    return image.point(lambda value: 0 if value < _INK_THRESHOLD else 255)


def _draw_line(canvas: Image.Image, top: int, line: TextLine, dots: int) -> None:
    width = sum(run.char_dots(ch) for run in line.runs for ch in run.text)
    x = {0: 0, 1: (dots - width) // 2, 2: dots - width}.get(line.align % 3, 0)
    baseline = top + line.height_dots - (cmd.LINE_DOTS - cmd.KANJI_DOTS)
    for run in line.runs:
        for ch in run.text:
            cell = run.char_dots(ch)
            glyph = _glyph(ch, cell // run.width, run.bold)
            if (run.width, run.height) != (1, 1):
                glyph = glyph.resize((cell, cmd.KANJI_DOTS * run.height), Image.Resampling.NEAREST)
            canvas.paste(glyph, (x, baseline - glyph.height))
            x += cell


def _qr_image(block: QrBlock) -> Image.Image:
    code = qrcode.QRCode(error_correction=_QR_LEVELS.get(block.level), box_size=1, border=0)
    code.add_data(block.data)
    code.make(fit=True)
    matrix: list[list[bool]] = code.get_matrix()
    size = len(matrix)
    image = Image.new("L", (size, size), 255)
    image.putdata([0 if dark else 255 for row in matrix for dark in row])
    scale = max(1, block.module)
    return image.resize((size * scale, size * scale), Image.Resampling.NEAREST)


def _raster(block: ImageBlock) -> Image.Image:
    bits = Image.frombytes("1", (block.width, block.height), block.data)
    image = bits.convert("L").point(lambda value: 255 - value)
    scale_x = 2 if block.mode & 1 else 1
    scale_y = 2 if block.mode & 2 else 1
    if (scale_x, scale_y) != (1, 1):
        size = (block.width * scale_x, block.height * scale_y)
        image = image.resize(size, Image.Resampling.NEAREST)
    return image


def _x_for(align: int, width: int, dots: int) -> int:
    return {0: 0, 1: (dots - width) // 2, 2: dots - width}.get(align % 3, 0)


def render_png(job: PrintedJob) -> Image.Image:
    """Draw the job as it would look on the paper roll (printable width, white paper)."""
    dots = cmd.PAPER_DOTS[job.paper]
    pieces: list[tuple[int, Block, Image.Image | None]] = []
    y = _TOP_MARGIN
    for block in job.blocks:
        match block:
            case TextLine():
                pieces.append((y, block, None))
                y += block.height_dots
            case QrBlock():
                image = _qr_image(block)
                pieces.append((y, block, image))
                y += image.height
            case ImageBlock():
                image = _raster(block)
                pieces.append((y, block, image))
                y += image.height
            case FeedBlock(lines):
                y += lines * cmd.LINE_DOTS
            case CutMark():
                pieces.append((y + _CUT_MARGIN // 2, block, None))
                y += _CUT_MARGIN
            case UnknownBlock():
                pass
    canvas = Image.new("L", (dots, max(y, _TOP_MARGIN) + _TOP_MARGIN), 255)
    draw = ImageDraw.Draw(canvas)
    for top, block, picture in pieces:
        if isinstance(block, TextLine):
            _draw_line(canvas, top, block, dots)
        elif isinstance(block, CutMark):
            for x in range(0, dots, 12):
                draw.line((x, top, x + 6, top), fill=128, width=2)
        elif picture is not None and isinstance(block, QrBlock | ImageBlock):
            canvas.paste(picture, (_x_for(block.align, picture.width, dots), top))
    return canvas
