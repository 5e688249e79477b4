"""Scene → pixels with pygame: cached text surfaces, static panels drawn once, dirty rects."""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pygame
import pygame.freetype

from display.layout import Band, Element, Scene

_LOGGER = logging.getLogger(__name__)

# fontconfig answers from its cache in milliseconds; this only bounds a broken install.
FC_MATCH_TIMEOUT_S: Final = 5.0
# Rendered CJK lines are costly (~0.2 ms each); a lobby shows ~60 distinct ones at a time.
TEXT_CACHE_SIZE: Final = 512
# Noto Sans CJK collections hold JP, KR, SC, TC, HK faces; Simplified Chinese is face 2.
NOTO_CJK_SC_INDEX: Final = 2
FONT_FAMILIES: Final = ("WenQuanYi Micro Hei", "Noto Sans CJK SC")


class FontMissing(RuntimeError):
    """No CJK font was found; the screen cannot show Chinese."""


@dataclass(frozen=True, slots=True)
class FontChoice:
    """A font file and the face within it."""

    path: Path
    index: int


def find_cjk_font() -> FontChoice:
    """Find a CJK font through fontconfig: WenQuanYi Micro Hei, or Noto Sans CJK SC (face 2)."""
    fc_match = shutil.which("fc-match")
    if fc_match is not None:
        for family in FONT_FAMILIES:
            try:
                found = subprocess.run(  # noqa: S603 - fixed arguments, no shell
                    [fc_match, "-f", "%{family}|%{file}|%{index}", f"{family}:lang=zh-cn"],
                    capture_output=True,
                    text=True,
                    timeout=FC_MATCH_TIMEOUT_S,
                    check=True,
                ).stdout
            except (OSError, subprocess.SubprocessError):
                continue
            families, _, rest = found.partition("|")
            path, _, index = rest.partition("|")
            if family.lower() in families.lower() and Path(path).is_file():
                face = int(index or 0)
                if "Noto Sans CJK" in family and path.endswith(".ttc"):
                    face = NOTO_CJK_SC_INDEX
                return FontChoice(Path(path), face)
    path = pygame.font.match_font("wenquanyimicrohei,notosanscjksc")
    if path:
        face = NOTO_CJK_SC_INDEX if "NotoSansCJK" in path and path.endswith(".ttc") else 0
        return FontChoice(Path(path), face)
    raise FontMissing(
        "no CJK font found (install fonts-wqy-microhei or fonts-noto-cjk)；"
        "未找到中文字体，请安装 fonts-wqy-microhei"
    )


class TextCache:
    """Rendered text surfaces by (text, size, colour, background), least recently used out."""

    def __init__(self, font: FontChoice) -> None:
        if not pygame.freetype.get_init():
            pygame.freetype.init()
        self._font = pygame.freetype.Font(str(font.path), 24, font_index=font.index)
        self._font.pad = True
        self._cache: OrderedDict[tuple[str, int, tuple[int, ...], tuple[int, ...]], pygame.Surface]
        self._cache = OrderedDict()
        self._sizes: dict[tuple[str, int, int, int], int] = {}
        self.renders = 0

    def get(
        self, text: str, size: int, color: tuple[int, ...], bg: tuple[int, ...]
    ) -> pygame.Surface:
        """The surface of one line (rendered once, then reused)."""
        key = (text, size, color, bg)
        surface = self._cache.get(key)
        if surface is None:
            surface, _rect = self._font.render(text, color, bg, size=size)
            if pygame.display.get_surface() is not None:
                # The display's pixel format: blitting is then a plain copy (several times
                # faster than converting on every blit).
                surface = surface.convert()
            self.renders += 1
            self._cache[key] = surface
            if len(self._cache) > TEXT_CACHE_SIZE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return surface

    def fitted(self, element: Element) -> pygame.Surface:
        """The element's text at its size, or smaller when the real glyphs are wider.

        The glyphs are measured first (cheap), so a line is rendered once at the size that
        fits its rectangle.
        """
        size = element.size
        width, height = element.rect[2], element.rect[3]
        key = (element.text, size, width, height)
        fitted = self._sizes.get(key)
        if fitted is None:
            fitted = size
            box = self._font.get_rect(element.text, size=fitted)
            while (box.width > width or box.height > height) and fitted > 8:
                ratio = min(width / max(box.width, 1), height / max(box.height, 1))
                fitted = max(8, min(fitted - 1, int(fitted * ratio)))
                box = self._font.get_rect(element.text, size=fitted)
            self._sizes[key] = fitted
            if len(self._sizes) > TEXT_CACHE_SIZE:
                self._sizes.pop(next(iter(self._sizes)))
        return self.get(element.text, fitted, element.color, element.bg)


class Renderer:
    """Draws scenes on a display surface and reports the rectangles that changed."""

    def __init__(self, screen: pygame.Surface, font: FontChoice) -> None:
        self.screen = screen
        self.text = TextCache(font)
        self._previous: Scene | None = None
        self._band_surface: pygame.Surface | None = None
        self._band_key: Band | None = None
        self.frames = 0

    def draw(self, scene: Scene, mono: float) -> list[pygame.Rect]:
        """Draw what changed since the last scene (and the band); return the dirty rects."""
        self.frames += 1
        previous = self._previous
        if previous is None or previous.size != scene.size or previous.panels != scene.panels:
            for panel in scene.panels:
                self.screen.fill(panel.color, pygame.Rect(panel.rect))
            changed = list(scene.elements)
            dirty = [pygame.Rect(0, 0, *scene.size)]
        else:
            before = {e.label: e for e in previous.elements}
            changed = [e for e in scene.elements if before.get(e.label) != e]
            changed = _with_overlaps(scene.elements, changed)
            dirty = [pygame.Rect(e.rect) for e in changed]
        for element in changed:
            self._element(element)
        if scene.band is not None:
            dirty.append(self._band(scene.band, mono))
        self._previous = scene
        return dirty

    def _element(self, element: Element) -> None:
        rect = pygame.Rect(element.rect)
        self.screen.fill(element.bg, rect)
        if not element.text or rect.width <= 0 or rect.height <= 0:
            return
        surface = self.text.fitted(element)
        top = rect.y + (rect.height - surface.get_height()) // 2
        if element.align == "center":
            left = rect.x + (rect.width - surface.get_width()) // 2
        elif element.align == "right":
            left = rect.right - surface.get_width()
        else:
            left = rect.x
        self.screen.blit(surface, (left, top))

    def _band(self, band: Band, mono: float) -> pygame.Rect:
        rect = pygame.Rect(band.rect)
        if self._band_key != band or self._band_surface is None:
            self._band_surface = self.text.get(band.text, band.size, band.color, band.bg)
            self._band_key = band
        surface = self._band_surface
        travel = surface.get_width() + rect.width
        offset = int(mono * band.speed) % travel
        left = rect.right - offset
        top = rect.y + (rect.height - surface.get_height()) // 2
        self.screen.fill(band.bg, rect)
        self.screen.set_clip(rect)
        self.screen.blit(surface, (left, top))
        self.screen.set_clip(None)
        return rect


def _with_overlaps(elements: tuple[Element, ...], changed: list[Element]) -> list[Element]:
    """Changed elements plus the later ones drawn over them (they would be painted over)."""
    if not changed:
        return changed
    chosen = {id(e) for e in changed}
    rects = [pygame.Rect(e.rect) for e in changed]
    result: list[Element] = []
    for element in elements:
        if id(element) in chosen:
            result.append(element)
            continue
        rect = pygame.Rect(element.rect)
        if rect.collidelist(rects) != -1 and _after_any(elements, element, chosen):
            result.append(element)
            chosen.add(id(element))
            rects.append(rect)
    return result


def _after_any(elements: tuple[Element, ...], element: Element, chosen: set[int]) -> bool:
    for other in elements:
        if other is element:
            return False
        if id(other) in chosen:
            return True
    return False
