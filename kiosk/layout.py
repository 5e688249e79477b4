"""layout(model, size, measure, now) → Scene: every screen for any window size (pure)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from devices.printer.linebreak import NO_LINE_END, NO_LINE_START, mend_widow, units
from kiosk import texts
from kiosk.catalog import Lang, ServiceItem
from kiosk.model import Act, Action, KioskModel, Screen
from kiosk.scene import Element, Kind, Line, Rect, Scene, Style
from kiosk.texts import t

# Line spacing of every text (MIIT: ≥1.3).
LINE_FACTOR: Final = 1.3


class Measure(Protocol):
    """Text measurement the layout needs (the renderer's FontBook provides it)."""

    def width(self, text: str, size: int, bold: bool = False) -> int:
        """Return the width of ``text`` at ``size`` pixels."""
        ...


@dataclass(frozen=True, slots=True)
class Metrics:
    """Type sizes and target sizes in pixels for one window size and text mode.

    ui.md rules 10-11: body ≥36 px, labels ≥40 px, elder mode ×1.4; targets ≥88 px (elder
    ≥120 px), the primary 取号 ≥160 px, gaps ≥16 px.
    """

    title: int
    label: int
    body: int
    number: int
    target: int
    primary: int
    gap: int
    margin: int
    header: int
    footer: int

    def lh(self, size: int) -> int:
        """Return the line height of ``size`` pixel text."""
        return math.ceil(size * LINE_FACTOR)


def metrics(size: tuple[int, int], large: bool) -> Metrics:
    """Return the metrics for a window of ``size`` in normal or large-text mode."""
    width, height = size
    number = max(160, min(300, min(width, height) // 4))
    # Short windows (1366×768) spend less on bands around the content, never less on targets.
    pad = 1 if height < 900 else 2
    if large:
        title, label, body, target, gap = 64, 58, 50, 132, 24
        primary = 176
    else:
        title, label, body, target, gap = 52, 44, 36, 100, 20
        primary = 168
    return Metrics(
        title=title,
        label=label,
        body=body,
        number=number,
        target=target,
        primary=primary,
        gap=gap,
        margin=28,
        header=math.ceil(title * LINE_FACTOR) + pad * gap,
        footer=target + pad * gap,
    )


def wrap(text: str, width: int, size: int, measure: Measure, bold: bool = False) -> list[str]:
    """Wrap ``text`` into lines at most ``width`` pixels wide (CJK by character, ASCII by word)."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        lines.extend(_wrap_paragraph(paragraph, width, size, measure, bold))
    return lines or [""]


def _wrap_paragraph(text: str, width: int, size: int, measure: Measure, bold: bool) -> list[str]:
    lines: list[str] = []
    current = ""
    for token in units(text):
        candidate = current + token
        if not current or measure.width(candidate.rstrip(), size, bold) <= width:
            current = candidate
            continue
        if token.isspace():
            lines.append(current.rstrip())
            current = ""
            continue
        if token in NO_LINE_START and len(current) > 1:
            # Carry the last character down with the punctuation.
            lines.append(current[:-1].rstrip())
            current = current[-1] + token
            continue
        if current[-1] in NO_LINE_END and len(current) > 1:
            # Carry the opening bracket down with what it opens.
            lines.append(current[:-1].rstrip())
            current = current[-1] + token
            continue
        if measure.width(token, size, bold) > width:  # a word longer than a line: split it
            for ch in token:
                if current and measure.width(current + ch, size, bold) > width:
                    lines.append(current.rstrip())
                    current = ""
                current += ch
            continue
        lines.append(current.rstrip())
        current = token.lstrip()
    if current.strip():
        lines.append(current.rstrip())
    return mend_widow(lines, lambda line: measure.width(line, size, bold) <= width)


@dataclass
class _Builder:
    """Accumulates the elements of one scene."""

    model: KioskModel
    size: tuple[int, int]
    m: Metrics
    measure: Measure
    now: float
    wall: dt.datetime

    def __post_init__(self) -> None:
        self.elements: list[Element] = []
        self.viewport: Rect | None = None
        self.scroll = 0
        self.scroll_max = 0

    @property
    def lang(self) -> Lang:
        return self.model.lang

    @property
    def width(self) -> int:
        return self.size[0]

    @property
    def height(self) -> int:
        return self.size[1]

    @property
    def landscape(self) -> bool:
        return self.width > self.height

    def add(self, element: Element) -> Element:
        self.elements.append(element)
        return element

    def text(
        self,
        rect: Rect,
        text: str,
        size: int,
        style: Style = Style.BODY,
        *,
        bold: bool = False,
        align: str = "left",
        max_lines: int = 0,
    ) -> int:
        """Add wrapped text at the top of ``rect``; return the height used."""
        lines = wrap(text, rect.w, size, self.measure, bold)
        if max_lines:
            lines = lines[:max_lines]
        height = len(lines) * self.m.lh(size)
        self.add(
            Element(
                Kind.TEXT,
                Rect(rect.x, rect.y, rect.w, height),
                tuple(Line(line, size, bold) for line in lines),
                style,
                align="center" if align == "center" else "left",
            )
        )
        return height

    def button(
        self,
        rect: Rect,
        texts_: Sequence[tuple[str, int, bool]],
        action: Action | None,
        *,
        style: Style = Style.BUTTON,
        enabled: bool = True,
        align: str = "center",
    ) -> Element:
        """Add a button whose lines are wrapped to its width."""
        pad = self.m.gap // 2
        lines: list[Line] = []
        for text, size, bold in texts_:
            lines.extend(
                Line(piece, size, bold)
                for piece in wrap(text, rect.w - 2 * pad, size, self.measure, bold)
            )
        return self.add(
            Element(
                Kind.BUTTON,
                rect,
                tuple(lines),
                style if enabled else Style.GREYED,
                enabled=enabled,
                action=action,
                align="center" if align == "center" else "left",
            )
        )

    def button_height(self, texts_: Sequence[tuple[str, int, bool]], width: int) -> int:
        """Return the height a button needs for ``texts_`` at ``width``."""
        pad = self.m.gap // 2
        total = 0
        for text, size, bold in texts_:
            total += len(wrap(text, width - 2 * pad, size, self.measure, bold)) * self.m.lh(size)
        return total + 2 * pad

    # --- shared frame -------------------------------------------------------------------------

    def header(self, title: str) -> Rect:
        """Add the title band; return the content area below it (above the footer).

        While the idle countdown runs it takes the title's place as a "touch to stay" button,
        so the content never moves.
        """
        m = self.m
        inner = Rect(m.margin, 0, self.width - 2 * m.margin, m.header)
        clock = texts.clock_line(self.wall, self.lang)
        clock_w = self.measure.width(clock, m.body) if self.width >= 1300 else 0
        if clock_w and self.measure.width(title, m.title, True) > inner.w - clock_w - m.gap:
            clock_w = 0  # the title needs the room more than the clock does
        title_w = inner.w - (clock_w + m.gap if clock_w else 0)
        size = m.title
        lines = wrap(title, title_w, size, self.measure, True)
        if len(lines) > 1:
            size = m.label
            lines = wrap(title, title_w, size, self.measure, True)[:2]
        used = len(lines) * m.lh(size)
        height = max(m.header, used + m.gap)
        idle = self.model.idle_left(self.now)
        if idle is not None:
            text = t("idle", self.lang, s=idle)
            height = max(height, m.target + m.gap // 2)
            self.button(
                Rect(inner.x, (height - m.target) // 2, inner.w, m.target),
                [(text, m.body, True)],
                Action(Act.STAY),
                style=Style.WARN,
            )
        else:
            self.add(
                Element(
                    Kind.TEXT,
                    Rect(inner.x, (height - used) // 2, title_w, used),
                    tuple(Line(line, size, True) for line in lines),
                    Style.TITLE,
                    align="left",
                )
            )
            if clock_w:
                self.add(
                    Element(
                        Kind.TEXT,
                        Rect(
                            inner.right - clock_w,
                            (height - m.lh(m.body)) // 2,
                            clock_w,
                            m.lh(m.body),
                        ),
                        (Line(clock, m.body),),
                        Style.SUBTLE,
                    )
                )
        top = max(height, self.elements[-1].rect.bottom + m.gap)
        bottom = self.footer_top() - m.gap
        return Rect(m.margin, top, self.width - 2 * m.margin, bottom - top)

    def footer_top(self) -> int:
        """Return the y of the footer's buttons."""
        m = self.m
        return self.height - m.footer + (m.footer - m.target) // 2

    def footer(self, *, back: bool = True, home: bool = True) -> None:
        """Add the navigation band: back, start, language and large text."""
        m = self.m
        y = self.footer_top()
        items: list[tuple[str, Action, Style]] = []
        if back:
            items.append((t("back", self.lang), Action(Act.BACK), Style.BUTTON))
        if home:
            items.append((t("home", self.lang), Action(Act.HOME), Style.BUTTON))
        other = "en" if self.lang == "zh" else "zh"
        toggles = [
            (t(f"lang_{other}", self.lang), Action(Act.LANG, other), Style.BUTTON),
            (
                t("large_on" if self.model.large else "large_off", self.lang),
                Action(Act.LARGE),
                Style.TOGGLE_ON if self.model.large else Style.BUTTON,
            ),
        ]
        count = len(items) + len(toggles)
        width = (self.width - 2 * m.margin - (count - 1) * m.gap) // count
        if home and any(
            self.measure.width(label, m.label) > width - 2 * m.gap for label, _a, _s in toggles
        ):
            # Large text on a narrow screen: fewer, wider buttons (Back still leads home).
            items = [item for item in items if item[1].act is not Act.HOME]
            count -= 1
            width = (self.width - 2 * m.margin - (count - 1) * m.gap) // count
        x = m.margin
        for label, action, style in [*items, *toggles]:
            self.button(Rect(x, y, width, m.target), [(label, m.label, False)], action, style=style)
            x += width + m.gap

    def banner(self, area: Rect, text: str, style: Style = Style.WARN) -> int:
        """Add a one-to-two line notice at the bottom of ``area``; return the height used."""
        m = self.m
        room = max(1, min(5, (area.h - m.gap) // m.lh(m.body)))
        lines = wrap(text, area.w - 2 * m.gap, m.body, self.measure)[:room]
        height = len(lines) * m.lh(m.body) + m.gap
        self.add(
            Element(
                Kind.TEXT,
                Rect(area.x, area.bottom - height, area.w, height),
                tuple(Line(line, m.body) for line in lines),
                style,
            )
        )
        return height + m.gap

    def status_banner(self, area: Rect) -> int:
        """Show the hub or printer notice at the bottom of ``area``; return the height used."""
        model = self.model
        if not model.hub_online:
            return self.banner(area, t("hub_down", self.lang))
        if not model.printer.can_print:
            key = "printer_show" if model.fallback == "show" else "printer_refuse"
            text = t(key, self.lang)
            if model.printer.problem is not None:
                colon = "：" if self.lang == "zh" else ": "
                text = f"{model.printer.problem.get(self.lang)}{colon}{text}"
            return self.banner(area, text)
        return 0


def grid(area: Rect, count: int, cols: int, row_h: int, gap: int) -> list[Rect]:
    """Return ``count`` cells of a ``cols``-column grid filling ``area``'s width from the top."""
    width = (area.w - (cols - 1) * gap) // cols
    return [
        Rect(
            area.x + (i % cols) * (width + gap), area.y + (i // cols) * (row_h + gap), width, row_h
        )
        for i in range(count)
    ]


def layout(
    model: KioskModel,
    size: tuple[int, int],
    measure: Measure,
    now: float,
    wall: dt.datetime,
) -> Scene:
    """Lay out the model's current screen for a window of ``size``."""
    builder = _Builder(model, size, metrics(size, model.large), measure, now, wall)
    _SCREENS[model.screen](builder)
    return Scene(
        screen=str(model.screen),
        size=size,
        lang=model.lang,
        large=model.large,
        elements=tuple(builder.elements),
        viewport=builder.viewport,
        scroll=builder.scroll,
        scroll_max=builder.scroll_max,
    )


# --- screens ----------------------------------------------------------------------------------


def _welcome(b: _Builder) -> None:
    m, model, lang = b.m, b.model, b.lang
    center = model.catalog.center if model.catalog else None
    area = Rect(m.margin, m.margin, b.width - 2 * m.margin, b.height - 2 * m.margin)
    short = b.height < 900  # 1366×768: one name line, a smaller clock, room for the button
    y = area.y
    if center is not None:
        main_name, other_name = (center.zh, center.en) if lang == "zh" else (center.en, center.zh)
        size = m.title
        if short:  # one line: the largest size at which the whole name fits, never cut
            fitting = [
                z
                for z in (m.title, m.label, m.body)
                if b.measure.width(main_name, z, True) <= area.w
            ]
            size = fitting[0] if fitting else m.body
        y += b.text(
            Rect(area.x, y, area.w, 0), main_name, size, Style.TITLE, bold=True, align="center"
        )
        if not short:
            y += b.text(
                Rect(area.x, y, area.w, 0),
                other_name,
                m.body,
                Style.SUBTLE,
                align="center",
                max_lines=2,
            )
    clock_size = m.body if short else m.label
    y += (
        b.text(
            Rect(area.x, y + m.gap // 2, area.w, 0),
            texts.clock_line(b.wall, lang),
            clock_size,
            Style.BODY,
            align="center",
        )
        + m.gap
    )
    toggles_y = area.bottom - m.target
    bottom = Rect(area.x, y, area.w, toggles_y - m.gap - y)
    used = b.status_banner(bottom)
    if not used and model.catalog is not None:
        closed = texts.closed_line(model.catalog, b.wall, lang)
        if closed:
            used = b.banner(bottom, closed)
    bottom = Rect(bottom.x, bottom.y, bottom.w, bottom.h - used)
    # The greeting as large as the button allows (its second line and padding included).
    room = (bottom.h - m.gap - m.lh(m.label)) / LINE_FACTOR
    big = int(max(m.label, min(96, bottom.h // 5, room)))
    # Nothing to start while the hub is away, or the printer is down and the kiosk refuses.
    start_enabled = model.hub_online and (model.printer.can_print or model.fallback == "show")
    b.button(
        bottom,
        [(t("touch", lang), big, True), (t("touch_sub", lang), m.label, False)],
        Action(Act.START),
        style=Style.PRIMARY,
        enabled=start_enabled,
    )
    width = (area.w - 2 * m.gap) // 3
    toggles = [
        (t("lang_zh", lang), Action(Act.LANG, "zh"), lang == "zh"),
        (t("lang_en", lang), Action(Act.LANG, "en"), lang == "en"),
        (t("large_on" if model.large else "large_off", lang), Action(Act.LARGE), model.large),
    ]
    for i, (label, action, on) in enumerate(toggles):
        b.button(
            Rect(area.x + i * (width + m.gap), toggles_y, width, m.target),
            [(label, m.label, on)],
            action,
            style=Style.TOGGLE_ON if on else Style.BUTTON,
        )


def _paged(
    b: _Builder,
    area: Rect,
    items: Sequence[tuple[list[tuple[str, int, bool]], Action, bool]],
    cols: int,
) -> None:
    """Lay ``items`` (lines, action, enabled) in a grid, paged, with a pager row if needed.

    Rows are as tall as the tallest item needs; when a row does not fit even alone, fewer
    columns (wider buttons, fewer wrapped lines) are tried before anything else.
    """
    m = b.m
    if not items:
        return
    # Try the wanted columns, then fewer; last, only each item's first two lines (a short
    # window in large text: the notice sheet repeats what is dropped).
    attempts = [(columns, items) for columns in range(cols, 0, -1)]
    attempts.append((1, [(lines[:2], action, enabled) for lines, action, enabled in items]))
    for columns, candidate in attempts:
        cell_w = (area.w - (columns - 1) * m.gap) // columns
        row_h = max(m.target, *(b.button_height(lines, cell_w) for lines, _a, _e in candidate))
        rows = (area.h + m.gap) // (row_h + m.gap)
        pager = len(candidate) > rows * columns
        if pager:
            rows = (area.h - m.target) // (row_h + m.gap)
        if rows >= 1:
            break
    items = candidate
    rows = max(rows, 1)
    per_page = rows * columns
    pages = max(1, math.ceil(len(items) / per_page))
    page = min(b.model.page, pages - 1)
    shown = items[page * per_page : (page + 1) * per_page]
    for cell, (lines, action, enabled) in zip(
        grid(area, len(shown), columns, row_h, m.gap), shown, strict=True
    ):
        b.button(cell, lines, action, enabled=enabled)
    if pager:
        y = area.bottom - m.target
        width = (area.w - 2 * m.gap) // 3
        b.button(
            Rect(area.x, y, width, m.target),
            [(t("prev", b.lang), m.label, False)],
            Action(Act.PAGE, "-1"),
            enabled=page > 0,
        )
        b.add(
            Element(
                Kind.TEXT,
                Rect(
                    area.x + width + m.gap,
                    y + (m.target - m.lh(m.label)) // 2,
                    width,
                    m.lh(m.label),
                ),
                (Line(f"{page + 1} / {pages}", m.label),),
                Style.BODY,
            )
        )
        b.button(
            Rect(area.right - width, y, width, m.target),
            [(t("next", b.lang), m.label, False)],
            Action(Act.PAGE, "+1"),
            enabled=page < pages - 1,
        )


def _columns(b: _Builder, wide: int, narrow: int) -> int:
    """Return grid columns: ``wide`` on landscape windows, ``narrow`` on portrait ones."""
    return wide if b.landscape else narrow


def _departments(b: _Builder) -> None:
    m, lang, model = b.m, b.lang, b.model
    area = b.header(t("choose_department", lang))
    items: list[tuple[list[tuple[str, int, bool]], Action, bool]] = []
    if model.catalog is not None:
        for department in model.catalog.departments:
            services = model.catalog.services_of(department.id)
            open_now = sum(1 for s in services if s.available)
            sub = f"{open_now} 项可取号" if lang == "zh" else f"{open_now} open now"
            if not model.hub_online:
                sub = t("hub_down_short", lang)
            items.append(
                (
                    [(department.name.get(lang), m.label, True), (sub, m.body, False)],
                    Action(Act.DEPARTMENT, department.id),
                    True,
                )
            )
        pickup = model.catalog.pickup_service()
        if pickup is not None:
            items.append(
                (
                    [(t("pickup", lang), m.label, True), (t("pickup_sub", lang), m.body, False)],
                    Action(Act.PICKUP),
                    True,
                )
            )
    cols = _columns(b, 3, 2) if not model.large else _columns(b, 2, 1)
    _paged(b, area, items, cols)
    b.footer()


def _service_lines(
    b: _Builder, service: ServiceItem, wall: dt.datetime
) -> tuple[list[tuple[str, int, bool]], bool]:
    m, lang = b.m, b.lang
    name = (service.name.get(lang), m.label, True)
    if not b.model.hub_online:
        return [name, (t("hub_down_short", lang), m.body, False)], False
    if not service.available:
        return [name, (texts.reason_line(service, wall, lang), m.body, False)], False
    info = texts.wait_line(service, lang)
    if not service.served_now:
        return [name, (info, m.body, False), (t("not_served", lang), m.body, False)], True
    return [name, (info, m.body, False)], True


def _services(b: _Builder) -> None:
    lang, model = b.lang, b.model
    catalog = model.catalog
    department = catalog.department(model.department or "") if catalog else None
    title = department.name.get(lang) if department else t("choose_service", lang)
    area = b.header(title)
    items: list[tuple[list[tuple[str, int, bool]], Action, bool]] = []
    if catalog is not None and department is not None:
        for service in catalog.services_of(department.id):
            lines, enabled = _service_lines(b, service, b.wall)
            items.append((lines, Action(Act.SERVICE, service.id), enabled))
    _paged(b, area, items, _columns(b, 2, 1))
    b.footer()


def _notice_lines(b: _Builder, service: ServiceItem, width: int) -> list[tuple[Line, Style]]:
    m, lang = b.m, b.lang
    notice = service.notice
    sections: list[tuple[str, list[str]]] = [
        (t("conditions", lang), [notice.conditions] if notice.conditions else []),
        (t("materials", lang), [f"□ {item}" for item in notice.materials]),
        (t("procedure", lang), [f"{i}. {s}" for i, s in enumerate(notice.procedure, 1)]),
        (t("approval_time", lang), [notice.approval_time] if notice.approval_time else []),
        (t("place", lang), [notice.place] if notice.place else []),
        (t("phone", lang), [notice.phone] if notice.phone else []),
        (
            t("cooperating", lang),
            ["、".join(notice.cooperating_departments)] if notice.cooperating_departments else [],
        ),
        (t("policy_basis", lang), [notice.policy_basis] if notice.policy_basis else []),
    ]
    out: list[tuple[Line, Style]] = []
    for heading, paragraphs in sections:
        if not paragraphs:
            continue
        out.append((Line(heading, m.label, True), Style.HEADING))
        for paragraph in paragraphs:
            out.extend(
                (Line(piece, m.body), Style.BODY)
                for piece in wrap(paragraph, width, m.body, b.measure)
            )
    return out


def _notice(b: _Builder) -> None:
    m, lang, model = b.m, b.lang, b.model
    service = model.selected_service()
    area = b.header(service.name.get(lang) if service else "")
    if service is None:
        b.footer()
        return
    take_enabled = model.can_take(service)
    buttons: list[tuple[list[tuple[str, int, bool]], Action]] = [
        ([(t("take", lang), m.title, True)], Action(Act.TAKE))
    ]
    if service.priority_lane:
        buttons.append(
            (
                [(t("priority", lang), m.label, True), (t("priority_sub", lang), m.body, False)],
                Action(Act.PRIORITY),
            )
        )
    if b.landscape:
        # The sheet on the left, the ticket buttons stacked in a column on the right.
        side_w = max(area.w * 3 // 10, m.primary * 2)
        side = Rect(area.right - side_w, area.y, side_w, area.h)
        heights = [max(m.primary, b.button_height(lines, side_w)) for lines, _a in buttons]
        y = side.bottom - sum(heights) - m.gap * (len(buttons) - 1)
        for (lines, action), height in zip(buttons, heights, strict=True):
            b.button(
                Rect(side.x, y, side_w, height),
                lines,
                action,
                style=Style.PRIMARY,
                enabled=take_enabled,
            )
            y += height + m.gap
        notes = Rect(
            side.x, side.y, side_w, side.bottom - sum(heights) - len(buttons) * m.gap - side.y
        )
        upper = Rect(area.x, area.y, area.w - side_w - m.gap, area.h)
        if notes.h < 2 * m.lh(m.body) + 2 * m.gap:  # no room beside: notes go under the sheet
            notes = upper
    else:
        width = (area.w - (len(buttons) - 1) * m.gap) // len(buttons)
        row_h = max(m.primary, *(b.button_height(lines, width) for lines, _action in buttons))
        action_y = area.bottom - row_h
        for i, (lines, action) in enumerate(buttons):
            b.button(
                Rect(area.x + i * (width + m.gap), action_y, width, row_h),
                lines,
                action,
                style=Style.PRIMARY,
                enabled=take_enabled,
            )
        upper = Rect(area.x, area.y, area.w, action_y - m.gap - area.y)
        notes = upper
    used = b.status_banner(notes)
    if not used and model.hub_online:
        if not service.available:
            used = b.banner(notes, texts.reason_line(service, b.wall, lang))
        elif not service.served_now:
            used = b.banner(notes, t("not_served", lang))
    if notes is not upper:
        used = 0
    viewport = Rect(upper.x, upper.y, upper.w, upper.h - used)
    pad = m.gap
    sheet = _notice_lines(b, service, viewport.w - 2 * pad)
    total = sum(
        m.lh(line.size) + (m.gap // 2 if style is Style.HEADING else 0) for line, style in sheet
    )
    total += 2 * pad
    if total > viewport.h:
        # Too long to show at once: say so below the sheet, which becomes draggable.
        hint_h = m.lh(m.body)
        viewport = Rect(viewport.x, viewport.y, viewport.w, viewport.h - hint_h)
        b.add(
            Element(
                Kind.TEXT,
                Rect(viewport.x, viewport.bottom, viewport.w, hint_h),
                (Line("↕ " + t("drag_hint", lang), m.body),),
                Style.SUBTLE,
                align="left",
            )
        )
    b.viewport = viewport
    b.scroll_max = max(0, total - viewport.h)
    b.scroll = min(model.scroll, b.scroll_max)
    # The sheet's background, then only the lines that show through the viewport.
    b.add(Element(Kind.TEXT, viewport, (), Style.FIELD))
    y = viewport.y + pad - b.scroll
    for line, style in sheet:
        if style is Style.HEADING:
            y += m.gap // 2
        height = m.lh(line.size)
        rect = Rect(viewport.x + pad, y, viewport.w - 2 * pad, height)
        if rect.intersects(viewport):
            b.add(Element(Kind.TEXT, rect, (line,), style, align="left", clip=viewport))
        y += height
    b.footer()


def _pickup(b: _Builder) -> None:
    m, lang, model = b.m, b.lang, b.model
    area = b.header(t("pickup", lang))
    # Landscape: code on the left, a 4×3 pad on the right; portrait: code above a 3×4 pad.
    if b.landscape:
        split = area.w * 35 // 100
        left = Rect(area.x, area.y, split - m.gap, area.h)
        pad_area = Rect(area.x + split + m.gap, area.y, area.w - split - m.gap, area.h)
        cols, rows = 4, 3
    else:
        top_h = min(area.h // 3, m.lh(m.label) + m.target + m.lh(m.title) + 4 * m.gap)
        left = Rect(area.x, area.y, area.w, top_h)
        pad_area = Rect(area.x, area.y + top_h + m.gap, area.w, area.h - top_h - m.gap)
        cols, rows = 3, 4
    y = left.y
    y += b.text(Rect(left.x, y, left.w, 0), t("enter_code", lang), m.label, bold=True) + m.gap
    shown = " ".join(model.pickup_code) if model.pickup_code else "_ _ _ _ _ _"
    field_h = max(m.target, m.lh(m.title) + m.gap)
    b.add(
        Element(
            Kind.FIELD,
            Rect(left.x, y, left.w, field_h),
            (Line(shown, m.title, True),),
            Style.FIELD,
        )
    )
    y += field_h + m.gap
    if model.error is not None:
        y += b.text(
            Rect(left.x, y, left.w, 0), model.error.get(lang), m.body, Style.ERROR, max_lines=3
        )
    b.status_banner(Rect(left.x, y, left.w, left.bottom - y))
    key_h = max(m.target, min(m.primary, (pad_area.h - (rows - 1) * m.gap) // rows))
    cells = grid(pad_area, cols * rows, cols, key_h, m.gap)
    pickup = model.catalog.pickup_service() if model.catalog else None
    keys: list[tuple[list[tuple[str, int, bool]], Action, bool, Style]] = [
        ([(digit, m.title, True)], Action(Act.DIGIT, digit), True, Style.BUTTON)
        for digit in "1234567890"
    ]
    keys.append(
        (
            [(t("erase", lang), m.label, False)],
            Action(Act.ERASE),
            bool(model.pickup_code),
            Style.BUTTON,
        )
    )
    keys.append(
        (
            [(t("confirm", lang), m.label, True)],
            Action(Act.SUBMIT),
            bool(model.pickup_code) and model.can_take(pickup),
            Style.PRIMARY,
        )
    )
    if not b.landscape:  # phone-pad order: 1-9, then Delete 0 OK
        keys = [*keys[:9], keys[10], keys[9], keys[11]]
    for cell, (lines, action, enabled, style) in zip(cells, keys, strict=True):
        b.button(cell, lines, action, enabled=enabled, style=style)
    b.footer()


def _issuing(b: _Builder) -> None:
    m = b.m
    center = b.model.catalog.center.get(b.lang) if b.model.catalog else ""
    area = b.header(center)
    b.text(
        Rect(area.x, area.y + area.h // 3, area.w, 0),
        t("issuing", b.lang),
        m.title,
        Style.TITLE,
        bold=True,
        align="center",
    )


def _result(b: _Builder) -> None:
    m, lang, model = b.m, b.lang, b.model
    result = model.result
    area = b.header(t("take_ticket" if result and result.printed else "your_number", lang))
    if result is None:
        return
    qr_side = 0
    if not result.printed and result.track_url:
        qr_side = min(area.w // 3, area.h, 480) if b.landscape else min(area.h // 3, 480)
    if qr_side and b.landscape:
        text_area = Rect(area.x, area.y, area.w - qr_side - m.gap, area.h)
        qr_rect = Rect(area.right - qr_side, area.y + (area.h - qr_side) // 2, qr_side, qr_side)
    else:
        text_area = Rect(area.x, area.y, area.w, area.h - (qr_side + m.gap if qr_side else 0))
        qr_rect = Rect(area.x + (area.w - qr_side) // 2, area.bottom - qr_side, qr_side, qr_side)
    number_size = min(m.number, text_area.h // 3)
    block: list[tuple[str, int, Style, bool]] = [
        (result.service.get(lang), m.label, Style.BODY, False),
        (result.number, number_size, Style.NUMBER, True),
        (texts.result_line(result.ahead, result.estimated_wait_s, lang), m.label, Style.BODY, True),
    ]
    if not result.printed:
        if result.problem is not None:
            block.append((result.problem.get(lang), m.body, Style.ERROR, False))
        block.append((t("photo", lang), m.body, Style.WARN, False))
    heights = [
        len(wrap(text, text_area.w, size, b.measure, bold)) * m.lh(size) + m.gap
        for text, size, _style, bold in block
    ]
    if sum(heights) > text_area.h:  # a short window: the service name goes first
        del block[0], heights[0]
    overflow = sum(heights) - text_area.h
    if overflow > 0:  # then the number gives way, staying twice the title's size
        number_size = max(2 * m.title, number_size - math.ceil(overflow / LINE_FACTOR))
        block[0] = (result.number, number_size, Style.NUMBER, True)
        heights[0] = m.lh(number_size) + m.gap
    y = text_area.y + max(0, (text_area.h - sum(heights)) // 2)
    for (text, size, style, bold), height in zip(block, heights, strict=True):
        b.text(Rect(text_area.x, y, text_area.w, 0), text, size, style, bold=bold, align="center")
        y += height
    if qr_side:
        b.add(Element(Kind.QR, qr_rect, (Line(result.track_url, m.body),), Style.BODY))
    done_y = b.height - m.footer + (m.footer - m.target) // 2
    width = (b.width - 3 * m.margin) // 2
    b.text(
        Rect(m.margin, done_y + (m.target - m.lh(m.body)) // 2, width, 0),
        t("result_timeout", lang, s=model.result_left(b.now)),
        m.body,
        Style.SUBTLE,
    )
    b.button(
        Rect(b.width - m.margin - width, done_y, width, m.target),
        [(t("done", lang), m.label, True)],
        Action(Act.DONE),
        style=Style.PRIMARY,
    )


def _message(b: _Builder) -> None:
    m, lang, model = b.m, b.lang, b.model
    area = b.header(t("error_title", lang))
    message = model.message.get(lang) if model.message else ""
    b.text(Rect(area.x, area.y + m.gap, area.w, 0), message, m.label, Style.BODY, align="center")
    b.footer()


_SCREENS: Final[dict[Screen, Callable[[_Builder], None]]] = {
    Screen.WELCOME: _welcome,
    Screen.DEPARTMENTS: _departments,
    Screen.SERVICES: _services,
    Screen.NOTICE: _notice,
    Screen.PICKUP: _pickup,
    Screen.ISSUING: _issuing,
    Screen.RESULT: _result,
    Screen.MESSAGE: _message,
}
