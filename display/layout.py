"""layout(model, size, lang) → scene: what to draw where, each element labelled. Pure.

Sizes follow reference/ui.md: the called number as large as the card allows (≥ 240 px type on
1080p where it fits), window rows ≥ 90 px apart with 8 a page (paged, never scrolled), contrast
≥ 7:1 on the dark background, window state always as a word, not colour alone.
"""

from __future__ import annotations

import datetime as dt
import math
import unicodedata
from dataclasses import asdict, dataclass
from typing import Any, Final

from display.model import Call, LobbyModel, WindowStatus

RGB = tuple[int, int, int]
Rect = tuple[int, int, int, int]  # x, y, width, height

BACKGROUND: Final[RGB] = (9, 27, 51)
PANEL: Final[RGB] = (16, 42, 76)
HEADER: Final[RGB] = (6, 18, 36)
CARD: Final[RGB] = (20, 52, 94)
FLASH_BG: Final[RGB] = (255, 213, 74)
FLASH_FG: Final[RGB] = (9, 27, 51)
WHITE: Final[RGB] = (255, 255, 255)
SOFT: Final[RGB] = (205, 218, 232)
YELLOW: Final[RGB] = (255, 213, 74)
GREEN: Final[RGB] = (124, 227, 139)
ORANGE: Final[RGB] = (255, 183, 77)
GREY: Final[RGB] = (176, 190, 197)

# The hall's depth until the lobby settings arrive (the config's default).
DEFAULT_HALL_DEPTH_M: Final = 10.0
# The call card: its lines' largest type (at 1080 lines), its padding, the first line's share
# of its height; where it stands (landscape: a share of the left column, portrait: a height).
CARD_LINES_PX: Final = (250, 190, 46)
CARD_PAD_PX: Final = 24
CARD_LINE1_SHARE: Final = 0.47
LANDSCAPE_LEFT_SHARE: Final = 0.6
LANDSCAPE_CARD_SHARE: Final = 0.62
PORTRAIT_CARD_PX: Final = 500
# The popup call's largest type (at 1080 lines; the screen's width usually limits it first).
POPUP_LINE_PX: Final = 360
# Pages of windows and waiting groups turn this often (ui.md rule 2: ≥ 8 s a page).
PAGE_S: Final = 8.0
# Window rows' largest type (at 1080 lines), and the space between their columns.
ROW_TEXT_PX: Final = 60
ROW_GAP: Final = 20
# Window rows this far apart on a 1080-line screen: 8 rows a page beside the call (ui.md rule 2).
ROW_PITCH: Final = 86
# The scrolling band moves this many pixels a second on a 1080-line screen.
BAND_SPEED: Final = 120.0
WEEKDAYS_ZH: Final = ("星期一", "星期二", "星期三", "星期四", "星期五", "星期六", "星期日")
# Spelled out here, not by the locale (a lobby PC's locale is whatever it was installed with).
WEEKDAYS_EN: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS_EN: Final = (
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"
)  # fmt: skip
STATE_WORDS: Final[dict[str, tuple[str, str, RGB]]] = {
    "calling": ("呼叫中", "Calling", YELLOW),
    "serving": ("办理中", "Serving", GREEN),
    "idle": ("空闲", "Open", WHITE),
    "paused": ("暂停服务", "Paused", ORANGE),
    "closed": ("未开放", "Closed", GREY),
}


@dataclass(frozen=True, slots=True)
class Element:
    """One piece of text in its rectangle; the rectangle is filled with ``bg`` first."""

    label: str
    rect: Rect
    text: str
    size: int
    color: RGB = WHITE
    bg: RGB = BACKGROUND
    align: str = "left"  # left | center | right


@dataclass(frozen=True, slots=True)
class Panel:
    """A static coloured area, drawn once per screen size."""

    label: str
    rect: Rect
    color: RGB


@dataclass(frozen=True, slots=True)
class Band:
    """The scrolling band: one long line moving right to left."""

    rect: Rect
    text: str
    size: int
    speed: float
    color: RGB = WHITE
    bg: RGB = HEADER


@dataclass(frozen=True, slots=True)
class Scene:
    """Everything on the screen at one moment."""

    size: tuple[int, int]
    panels: tuple[Panel, ...]
    elements: tuple[Element, ...]
    band: Band | None

    def find(self, label: str) -> Element:
        """The element with that label."""
        for element in self.elements:
            if element.label == label:
                return element
        raise KeyError(label)

    def texts(self) -> dict[str, str]:
        """Label → text of every element (what a test or technician reads)."""
        return {e.label: e.text for e in self.elements}

    def dump(self) -> dict[str, Any]:
        """A JSON-able description (``--scene``)."""
        return {
            "size": list(self.size),
            "panels": [asdict(p) for p in self.panels],
            "elements": [asdict(e) for e in self.elements],
            "band": None if self.band is None else asdict(self.band),
        }


def char_em(ch: str) -> float:
    """Approximate advance of one character in em (CJK full width, Latin about half)."""
    if unicodedata.east_asian_width(ch) in ("W", "F"):
        return 1.0
    if ch == " ":
        return 0.3
    return 0.62


def text_em(text: str) -> float:
    """Approximate width of a line in em."""
    return sum(char_em(ch) for ch in text)


def fit(text: str, width: int, height: int, largest: int) -> int:
    """The largest type size ≤ ``largest`` at which ``text`` fits ``width`` × ``height``."""
    em = max(text_em(text), 0.5)
    return max(8, min(largest, int(width / em), int(height / 1.15)))


def call_lines(call: Call | None) -> tuple[str, str, str]:
    """The featured call as two Chinese lines and one English line."""
    if call is None:
        return "欢迎光临", "请取号等候叫号", "Welcome - please take a number"
    return (
        f"请 {call.number} 号",
        f"到 {call.window} 号窗口",
        f"Number {call.number}, please go to counter {call.window}",
    )


def clock_text(wall: dt.datetime, lang: str = "zh") -> str:
    """``11月30日 星期一 14:05`` (English: ``Mon 30 Nov 14:05``)."""
    if lang == "en":
        return f"{WEEKDAYS_EN[wall.weekday()]} {wall.day} {MONTHS_EN[wall.month - 1]} {wall:%H:%M}"
    return f"{wall.month}月{wall.day}日 {WEEKDAYS_ZH[wall.weekday()]} {wall:%H:%M}"


def band_text(model: LobbyModel) -> str:
    """Notices and today's public figures, as one line for the scrolling band."""
    parts: list[str] = []
    settings = model.settings
    if settings is not None:
        for notice in settings["lobby"].get("notices", []):
            parts.append(notice["zh"] + (f"  {notice['en']}" if notice.get("en") else ""))
        show = settings["lobby"].get("show_figures", True)
    else:
        show = True
    figures = model.figures
    if show and figures is not None:
        line = f"今日已服务 {figures['served']} 人"
        english = f"Served today {figures['served']}"
        if figures["waiting_mean_s"] is not None:
            minutes = max(1, round(figures["waiting_mean_s"] / 60))
            line += f" · 平均等候 {minutes} 分钟"
            english += f", mean wait {minutes} min"
        if figures["satisfaction_pct"] is not None:
            line += f" · 满意率 {figures['satisfaction_pct']:g}%"
            english += f", satisfaction {figures['satisfaction_pct']:g}%"
        parts.append(f"{line}  {english}")
    return "        ".join(parts)


def page(count: int, per_page: int, mono: float) -> tuple[int, int]:
    """``(page index, pages)`` for ``count`` items, turning every PAGE_S seconds."""
    pages = max(1, math.ceil(count / max(per_page, 1)))
    if pages == 1 or not math.isfinite(mono):
        return 0, pages
    return int(mono // PAGE_S) % pages, pages


def needed_call_px(hall_depth_m: float, size: tuple[int, int]) -> int:
    """Type size the called number needs for residents ``hall_depth_m`` away.

    ui.md rule 1 (ADA 703.5.5 on a 55-inch 1080p panel): ≥ 240 px at 10 m, ≥ 352 px at 15 m,
    about 23.5 px a metre; a panel with fewer lines has bigger pixels (a portrait panel is
    the same panel turned, so its short side counts).
    """
    return math.ceil(23.5 * hall_depth_m * min(size) / 1080)


def hall_depth(model: LobbyModel) -> float:
    """The hall's depth in metres (``[lobby] hall_depth_m``; 10 until the settings arrive)."""
    if model.settings is None:
        return DEFAULT_HALL_DEPTH_M
    return float(model.settings["lobby"].get("hall_depth_m", DEFAULT_HALL_DEPTH_M))


def layout(
    model: LobbyModel, size: tuple[int, int], lang: str, wall: dt.datetime, mono: float
) -> Scene:
    """Turn the model into a scene for a screen of ``size`` (landscape or portrait).

    While a new call flashes, and the hall is deeper than the usual layout's call can be read
    from (ui.md rule 1), the call covers everything between the header and the ticker (弹窗
    叫号) whenever that makes it larger; the windows and recent calls come back with the
    steady call.
    """
    if model.flashing(mono) and _popup_helps(model, size):
        return _popup(model, size, lang, wall, mono)
    return _regular(model, size, lang, wall, mono)


def best_call_px(model: LobbyModel, size: tuple[int, int]) -> int:
    """The largest type a call gets on this screen (the popup's, when it is larger)."""
    line1 = call_lines(model.featured)[0]
    return max(_line1_px(line1, size, popup=False), _line1_px(line1, size, popup=True))


def _popup_helps(model: LobbyModel, size: tuple[int, int]) -> bool:
    """Whether the usual call is too small for the hall and the popup's is larger."""
    line1 = call_lines(model.featured)[0]
    shown = _line1_px(line1, size, popup=False)
    if shown >= needed_call_px(hall_depth(model), size):
        return False
    return _line1_px(line1, size, popup=True) > shown


def _line1_px(line1: str, size: tuple[int, int], *, popup: bool) -> int:
    """The type size of the call's first line in the usual layout or the popup (no scene)."""
    k, (_x, _y, w, h) = _card_rect(size, popup=popup)
    pad = round(CARD_PAD_PX * k)
    largest = POPUP_LINE_PX if popup else CARD_LINES_PX[0]
    return fit(line1, w - 2 * pad, int(h * CARD_LINE1_SHARE), round(largest * k))


def _regular(
    model: LobbyModel, size: tuple[int, int], lang: str, wall: dt.datetime, mono: float
) -> Scene:
    width, height = size
    if height > width:
        return _portrait(model, size, lang, wall, mono)
    return _landscape(model, size, lang, wall, mono)


# --------------------------------------------------------------------------- builders


class _Builder:
    def __init__(self, size: tuple[int, int], scale: float) -> None:
        self.size = size
        self.k = scale
        self.panels: list[Panel] = []
        self.elements: list[Element] = []

    def px(self, value: float) -> int:
        return round(value * self.k)

    def panel(self, label: str, rect: Rect, color: RGB) -> None:
        self.panels.append(Panel(label, rect, color))

    def text(
        self,
        label: str,
        rect: Rect,
        text: str,
        largest: float,
        color: RGB = WHITE,
        bg: RGB = BACKGROUND,
        align: str = "left",
    ) -> None:
        size = fit(text, rect[2], rect[3], self.px(largest))
        self.elements.append(Element(label, rect, text, size, color, bg, align))

    def scene(self, band: Band | None) -> Scene:
        return Scene(self.size, tuple(self.panels), tuple(self.elements), band)


def _header(
    b: _Builder, model: LobbyModel, wall: dt.datetime, rect: Rect, stacked: bool, lang: str
) -> None:
    x, y, w, h = rect
    b.panel("header", rect, HEADER)
    settings = model.settings
    name = "" if settings is None else settings["center"]["name_zh"]
    if lang == "en" and settings is not None:
        name = settings["center"]["name_en"]
    pad = b.px(30)
    offline = "" if model.online else "● 网络中断 offline"
    if stacked:
        row = h // 2
        b.text("header.center", (x + pad, y, w - 2 * pad, row), name, 56, WHITE, HEADER)
        clock_w = (w - 2 * pad) * 2 // 3
        b.text(
            "header.clock",
            (x + pad, y + row, clock_w, row),
            clock_text(wall, lang),
            44,
            SOFT,
            HEADER,
        )
        b.text(
            "header.offline",
            (x + pad + clock_w, y + row, w - 2 * pad - clock_w, row),
            offline,
            30,
            ORANGE,
            HEADER,
            "right",
        )
        return
    name_w = int(w * 0.56)
    b.text("header.center", (x + pad, y, name_w - pad, h), name, 60, WHITE, HEADER)
    off_w = int(w * 0.14)
    b.text("header.offline", (x + name_w, y, off_w, h), offline, 30, ORANGE, HEADER, "center")
    b.text(
        "header.clock",
        (x + name_w + off_w, y, w - name_w - off_w - pad, h),
        clock_text(wall, lang),
        52,
        SOFT,
        HEADER,
        "right",
    )


def _call_card(
    b: _Builder,
    model: LobbyModel,
    rect: Rect,
    mono: float,
    largest: tuple[float, float, float] = CARD_LINES_PX,
) -> None:
    x, y, w, h = rect
    on = model.flash_on(mono)
    bg = FLASH_BG if on else CARD
    fg = FLASH_FG if on else YELLOW
    sub = FLASH_FG if on else SOFT
    b.panel("call", rect, CARD)
    line1, line2, english = call_lines(model.featured)
    # The whole card flashes: an empty element under the lines fills it.
    b.elements.append(Element("call.card", rect, "", 0, fg, bg))
    pad = b.px(CARD_PAD_PX)
    inner = w - 2 * pad
    h1, h2 = int(h * CARD_LINE1_SHARE), int(h * 0.41)
    h3 = h - h1 - h2
    big, window, small = largest
    b.text("call.line1", (x + pad, y, inner, h1), line1, big, fg, bg, "center")
    b.text("call.line2", (x + pad, y + h1, inner, h2), line2, window, fg, bg, "center")
    english_rect = (x + pad, y + h1 + h2, inner, h3 - pad // 2)
    b.text("call.en", english_rect, english, small, sub, bg, "center")


def _recent(b: _Builder, model: LobbyModel, rect: Rect, columns: int, rows: int, lang: str) -> None:
    x, y, w, h = rect
    b.panel("recent", rect, PANEL)
    title_h = b.px(56)
    pad = b.px(24)
    title = "最近叫号  Recent calls" if lang != "en" else "Recent calls"
    b.text("recent.title", (x + pad, y, w - 2 * pad, title_h), title, 40, SOFT, PANEL)
    calls = [c for c in model.recent if c is not model.featured][: columns * rows]
    row_h = (h - title_h) // rows
    col_w = (w - 2 * pad) // columns
    # Columns are kept apart by a rule in the hall's background colour with a pad either side,
    # so "H003 → 5号窗口" never reads into the next call.
    rule = max(2, b.px(4))
    # Only between columns that hold a call (an empty panel stays empty).
    for col in range(1, min(columns, len(calls))):
        bound = x + pad + col * col_w
        b.panel(
            f"recent.rule[{col}]",
            (bound - rule // 2, y + title_h, rule, h - title_h - pad),
            BACKGROUND,
        )
    for index in range(columns * rows):
        row, col = divmod(index, columns)  # newest first, read left to right
        left = x + pad + col * col_w + (pad if col else 0)
        right = x + pad + (col + 1) * col_w - (pad if col < columns - 1 else 0)
        cell = (left, y + title_h + row * row_h, right - left, row_h)
        text = ""
        if index < len(calls):
            call = calls[index]
            where = f"{call.window}号窗口" if lang != "en" else f"Counter {call.window}"
            text = f"{call.number}  →  {where}"
        b.text(f"recent[{index}]", cell, text, 64, WHITE, PANEL)


def _windows(b: _Builder, model: LobbyModel, rect: Rect, mono: float, lang: str) -> None:
    x, y, w, h = rect
    b.panel("windows", rect, PANEL)
    pad = b.px(24)
    title_h = b.px(56)
    shown = model.shown_windows()
    per_page = max(1, (h - title_h) // b.px(ROW_PITCH))
    index, pages = page(len(shown), per_page, mono)
    title = "窗口  Windows" if lang != "en" else "Windows"
    if pages > 1:
        title += f"  {index + 1}/{pages}"
    b.text("windows.title", (x + pad, y, w - 2 * pad, title_h), title, 40, SOFT, PANEL)
    row_h = (h - title_h) // per_page
    inner = w - 2 * pad
    gap = b.px(ROW_GAP)
    name_w, ticket_w = int(inner * 0.36), int(inner * 0.30)
    widths = (name_w - gap, ticket_w - gap, inner - name_w - ticket_w)
    visible = shown[index * per_page : (index + 1) * per_page]
    rows = [_row_texts(status, lang) for status in visible]
    # One type size for the whole page: the largest at which every cell fits its column.
    largest = b.px(ROW_TEXT_PX)
    fits = [
        fit(text, width, row_h, largest)
        for texts in rows
        for text, width in zip(texts[:3], widths, strict=True)
        if text
    ]
    size = min(fits, default=largest)
    for slot in range(per_page):
        top = y + title_h + slot * row_h
        name, ticket, state, color = rows[slot] if slot < len(rows) else ("", "", "", WHITE)
        left = x + pad
        cells = (
            ("window", (left, top, widths[0], row_h), name, WHITE, "left"),
            ("ticket", (left + name_w, top, widths[1], row_h), ticket, YELLOW, "left"),
            ("state", (left + name_w + ticket_w, top, widths[2], row_h), state, color, "right"),
        )
        for part, cell, text, colour, align in cells:
            label = f"row[{slot}].{part}"
            b.elements.append(Element(label, cell, text, size, colour, PANEL, align))


def _row_texts(status: WindowStatus, lang: str) -> tuple[str, str, str, RGB]:
    """A window's row: its name, its current number (— when idle), its state as a word."""
    name = f"{status.number}号窗口" if lang != "en" else f"Counter {status.number}"
    zh, en, color = STATE_WORDS[status.state]
    ticket = status.current or "—" if status.state not in ("closed", "paused") else ""
    return name, ticket, zh if lang != "en" else en, color


def _waiting(b: _Builder, model: LobbyModel, rect: Rect, mono: float, lang: str) -> None:
    x, y, w, h = rect
    b.panel("waiting", rect, BACKGROUND)
    pad = b.px(30)
    groups = model.waiting_groups()
    label = "等候人数" if lang != "en" else "Waiting"
    items = [
        f"{zh} {count}" if lang != "en" else f"{en} {count}" for zh, en, count in groups if count
    ]
    # As many groups a page as fit at a legible size; pages turn like the window list.
    per_page, used = 0, text_em(label) + 1
    for item in items:
        used += text_em(item) + 1.5
        if used * b.px(44) > w - 2 * pad and per_page:
            break
        per_page += 1
    index, _pages = page(len(items), per_page, mono)
    shown = items[index * max(per_page, 1) : (index + 1) * max(per_page, 1)]
    if shown:
        text = f"{label}{'：' if lang != 'en' else ': '}" + "   ".join(shown)
    else:
        text = "当前无人等候  No one waiting" if lang != "en" else "No one waiting"
    b.text("waiting", (x + pad, y, w - 2 * pad, h), text, 44, WHITE, BACKGROUND)


def _band(b: _Builder, model: LobbyModel, rect: Rect) -> Band | None:
    b.panel("band", rect, HEADER)
    text = band_text(model)
    if not text:
        return None
    return Band(rect, text, fit("国", rect[2], rect[3], b.px(54)), BAND_SPEED * b.k)


def _metrics(size: tuple[int, int]) -> tuple[float, int, int, int, int]:
    """Scale, and the heights of the header, the ticker band and the waiting line, and the gap
    between panels, for either orientation."""
    width, height = size
    portrait = height > width
    base = (1080, 1920) if portrait else (1920, 1080)
    k = min(width / base[0], height / base[1])

    def px(value: float) -> int:
        return round(value * k)

    return k, px(160 if portrait else 110), px(92), px(90 if portrait else 84), px(14)


def _card_rect(size: tuple[int, int], *, popup: bool) -> tuple[float, Rect]:
    """Scale and the call card's rectangle: in the usual layout, or over the whole body."""
    width, height = size
    k, header_h, band_h, waiting_h, gap = _metrics(size)
    top = header_h + gap
    if popup:
        return k, (gap * 2, top, width - gap * 4, height - band_h - gap - top)
    if height > width:
        return k, (gap * 2, top, width - gap * 4, round(PORTRAIT_CARD_PX * k))
    # Landscape: most of the left column's height (ui.md rule 1); recent calls below it.
    card_h = int((height - band_h - waiting_h - top) * LANDSCAPE_CARD_SHARE)
    return k, (gap * 2, top, int(width * LANDSCAPE_LEFT_SHARE) - gap * 3, card_h)


def _frame(
    model: LobbyModel, size: tuple[int, int], lang: str, wall: dt.datetime
) -> tuple[_Builder, tuple[int, int, int, int]]:
    """Background and header of either orientation; returns the heights of the header, the
    ticker band and the waiting line, and the gap between panels."""
    width, height = size
    k, header_h, band_h, waiting_h, gap = _metrics(size)
    b = _Builder(size, k)
    b.panel("background", (0, 0, width, height), BACKGROUND)
    _header(b, model, wall, (0, 0, width, header_h), height > width, lang)
    return b, (header_h, band_h, waiting_h, gap)


def _popup(
    model: LobbyModel, size: tuple[int, int], lang: str, wall: dt.datetime, mono: float
) -> Scene:
    """The call over the whole body of the screen (header and ticker stay)."""
    width, height = size
    b, (_header_h, band_h, _waiting_h, _gap) = _frame(model, size, lang, wall)
    _k, card = _card_rect(size, popup=True)
    _call_card(b, model, card, mono, largest=(POPUP_LINE_PX, POPUP_LINE_PX, 60))
    band = _band(b, model, (0, height - band_h, width, band_h))
    return b.scene(band)


def _landscape(
    model: LobbyModel, size: tuple[int, int], lang: str, wall: dt.datetime, mono: float
) -> Scene:
    width, height = size
    b, (header_h, band_h, waiting_h, gap) = _frame(model, size, lang, wall)
    body_top = header_h + gap
    body_bottom = height - band_h - waiting_h
    left_w = int(width * LANDSCAPE_LEFT_SHARE)
    _k, card = _card_rect(size, popup=False)
    _call_card(b, model, card, mono)
    card_h = card[3]
    recent_top = body_top + card_h + gap
    recent_rect = (gap * 2, recent_top, left_w - gap * 3, body_bottom - recent_top - gap)
    _recent(b, model, recent_rect, 2, 2, lang)
    _windows(
        b,
        model,
        (left_w, body_top, width - left_w - gap * 2, body_bottom - body_top - gap),
        mono,
        lang,
    )
    _waiting(b, model, (0, body_bottom, width, waiting_h), mono, lang)
    band = _band(b, model, (0, height - band_h, width, band_h))
    return b.scene(band)


def _portrait(
    model: LobbyModel, size: tuple[int, int], lang: str, wall: dt.datetime, mono: float
) -> Scene:
    width, height = size
    b, (header_h, band_h, waiting_h, gap) = _frame(model, size, lang, wall)
    px = b.px
    top = header_h + gap
    _k, card = _card_rect(size, popup=False)
    _call_card(b, model, card, mono)
    top += card[3] + gap
    recent_h = px(270)
    _recent(b, model, (gap * 2, top, width - gap * 4, recent_h), 2, 2, lang)
    top += recent_h + gap
    bottom = height - band_h - waiting_h
    _windows(b, model, (gap * 2, top, width - gap * 4, bottom - top - gap), mono, lang)
    _waiting(b, model, (0, bottom, width, waiting_h), mono, lang)
    band = _band(b, model, (0, height - band_h, width, band_h))
    return b.scene(band)
