"""Draw a scene with pygame, redrawing only the rectangles that changed."""

from __future__ import annotations

from typing import Final

import pygame
import qrcode

from kiosk.fonts import Color, FontBook
from kiosk.scene import Element, Kind, Rect, Scene, Style

# Colours: text on its background is ≥7:1 everywhere (ui.md rule 3); greyed items stay ≥4.5:1.
INK: Final[Color] = (20, 24, 31)
SUBTLE_INK: Final[Color] = (64, 70, 82)
WHITE: Final[Color] = (255, 255, 255)
PANEL: Final[Color] = (255, 255, 255)
PRIMARY: Final[Color] = (0, 80, 160)
BUTTON_EDGE: Final[Color] = (70, 90, 120)
GREY_FILL: Final[Color] = (226, 228, 232)
GREY_INK: Final[Color] = (80, 84, 92)
TOGGLE_FILL: Final[Color] = (0, 92, 64)
WARN_FILL: Final[Color] = (255, 236, 179)
WARN_INK: Final[Color] = (60, 40, 0)
ERROR_INK: Final[Color] = (160, 0, 0)
NUMBER_INK: Final[Color] = (150, 20, 20)
_RADIUS: Final = 14

_FILL: Final[dict[Style, Color | None]] = {
    Style.PRIMARY: PRIMARY,
    Style.BUTTON: PANEL,
    Style.GREYED: GREY_FILL,
    Style.TOGGLE_ON: TOGGLE_FILL,
    Style.WARN: WARN_FILL,
    Style.FIELD: PANEL,
}
_INK: Final[dict[Style, Color]] = {
    Style.PRIMARY: WHITE,
    Style.TOGGLE_ON: WHITE,
    Style.GREYED: GREY_INK,
    Style.WARN: WARN_INK,
    Style.SUBTLE: SUBTLE_INK,
    Style.ERROR: ERROR_INK,
    Style.NUMBER: NUMBER_INK,
}


class Renderer:
    """Turns scenes into pixels on one surface; remembers the last scene to redraw less."""

    def __init__(self, surface: pygame.Surface, fonts: FontBook) -> None:
        self.surface = surface
        self.fonts = fonts
        self._last: Scene | None = None
        self._qr_cache: dict[tuple[str, int], pygame.Surface] = {}

    def draw(self, scene: Scene) -> list[pygame.Rect]:
        """Draw ``scene``; return the rectangles that changed (for ``display.update``)."""
        last = self._last
        self._last = scene
        if (
            last is None
            or last.screen != scene.screen
            or last.size != scene.size
            or (last.lang != scene.lang or last.large != scene.large)
        ):
            self.surface.fill(scene.background)
            for element in scene.elements:
                self._element(element)
            return [self.surface.get_rect()]
        before = set(last.elements)
        after = set(scene.elements)
        dirty = [e.rect for e in last.elements if e not in after]
        dirty += [e.rect for e in scene.elements if e not in before]
        if last.viewport != scene.viewport and scene.viewport is not None:
            dirty.append(scene.viewport)
        rects = _merge(dirty)
        for rect in rects:
            clip = pygame.Rect(rect.x, rect.y, rect.w, rect.h)
            self.surface.set_clip(clip)
            self.surface.fill(scene.background, clip)
            for element in scene.elements:
                if element.rect.intersects(rect):
                    self._element(element)
            self.surface.set_clip(None)
        return [pygame.Rect(r.x, r.y, r.w, r.h) for r in rects]

    def _element(self, element: Element) -> None:
        rect = pygame.Rect(element.rect.x, element.rect.y, element.rect.w, element.rect.h)
        previous_clip = self.surface.get_clip()
        if element.clip is not None:
            clip = pygame.Rect(element.clip.x, element.clip.y, element.clip.w, element.clip.h)
            self.surface.set_clip(clip.clip(previous_clip))
        fill = _FILL.get(element.style)
        if element.kind is Kind.BUTTON or element.kind is Kind.FIELD or fill is not None:
            if fill is not None:
                pygame.draw.rect(self.surface, fill, rect, border_radius=_RADIUS)
            if element.kind in (Kind.BUTTON, Kind.FIELD) and element.style is not Style.PRIMARY:
                edge = GREY_INK if element.style is Style.GREYED else BUTTON_EDGE
                pygame.draw.rect(self.surface, edge, rect, width=3, border_radius=_RADIUS)
        if element.kind is Kind.QR:
            self._qr(element)
        else:
            self._text(element, rect)
        self.surface.set_clip(previous_clip)

    def _text(self, element: Element, rect: pygame.Rect) -> None:
        if not element.lines:
            return
        ink = _INK.get(element.style, INK)
        heights = [round(line.size * 1.3) for line in element.lines]
        total = sum(heights)
        boxed = element.kind in (Kind.BUTTON, Kind.FIELD) or element.style is Style.WARN
        y = rect.y + ((rect.h - total) // 2 if boxed else 0)
        pad = 20 if element.align == "left" and boxed else 0
        for line, height in zip(element.lines, heights, strict=True):
            if line.text:
                surface = self.fonts.render(line.text, line.size, line.bold, ink)
                x = (
                    rect.x + pad
                    if element.align == "left"
                    else rect.x + (rect.w - surface.get_width()) // 2
                )
                self.surface.blit(surface, (x, y + (height - surface.get_height()) // 2))
            y += height

    def _qr(self, element: Element) -> None:
        side = min(element.rect.w, element.rect.h)
        key = (element.label, side)
        image = self._qr_cache.get(key)
        if image is None:
            code = qrcode.QRCode(border=2, error_correction=qrcode.constants.ERROR_CORRECT_M)
            code.add_data(element.label)
            code.make(fit=True)
            matrix = code.get_matrix()
            cells = len(matrix)
            small = pygame.Surface((cells, cells))
            small.fill(WHITE)
            for row, values in enumerate(matrix):
                for col, dark in enumerate(values):
                    if dark:
                        small.set_at((col, row), INK)
            scale = max(1, side // cells)
            image = pygame.transform.scale(small, (cells * scale, cells * scale))
            self._qr_cache[key] = image
        x = element.rect.x + (element.rect.w - image.get_width()) // 2
        y = element.rect.y + (element.rect.h - image.get_height()) // 2
        self.surface.blit(image, (x, y))


def _merge(rects: list[Rect]) -> list[Rect]:
    """Merge overlapping dirty rectangles so each area is drawn once."""
    merged: list[Rect] = []
    for rect in sorted(rects, key=lambda r: (r.y, r.x)):
        for i, other in enumerate(merged):
            if rect.intersects(other):
                x, y = min(rect.x, other.x), min(rect.y, other.y)
                merged[i] = Rect(
                    x, y, max(rect.right, other.right) - x, max(rect.bottom, other.bottom) - y
                )
                break
        else:
            merged.append(rect)
    return merged
