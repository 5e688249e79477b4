"""The kiosk's CJK font (pygame.freetype): measuring for the layout, cached rendering."""

from __future__ import annotations

import functools
from collections import OrderedDict
from typing import Final

import pygame
import pygame.freetype

from devices.printer.fonts import find_cjk_font

# Rendered text surfaces kept for reuse: a screen holds ~60 strings, a session a few hundred.
SURFACE_CACHE_SIZE: Final = 1024
Color = tuple[int, int, int]


class FontBook:
    """One CJK face (face index from fontconfig: Noto CJK SC is face 2) at any pixel size."""

    def __init__(self) -> None:
        if not pygame.freetype.get_init():
            pygame.freetype.init()
        spec = find_cjk_font()
        self._font = pygame.freetype.Font(str(spec.path), 24, font_index=spec.index)
        self._font.pad = False
        self._font.origin = False
        self._surfaces: OrderedDict[tuple[str, int, bool, Color], pygame.Surface] = OrderedDict()

    @functools.lru_cache(maxsize=8192)  # noqa: B019 - one FontBook per process
    def width(self, text: str, size: int, bold: bool = False) -> int:
        """Return the advance width of ``text`` at ``size`` pixels."""
        if not text:
            return 0
        self._font.strong = bold
        rect = self._font.get_rect(text, size=size)
        return int(rect.width)

    def line_height(self, size: int) -> int:
        """Return the height one line of ``size`` pixels occupies (1.3 line spacing)."""
        return round(size * 1.3)

    def render(self, text: str, size: int, bold: bool, color: Color) -> pygame.Surface:
        """Return ``text`` drawn in ``color`` on a transparent surface (cached)."""
        key = (text, size, bold, color)
        surface = self._surfaces.get(key)
        if surface is not None:
            self._surfaces.move_to_end(key)
            return surface
        self._font.strong = bold
        surface, _rect = self._font.render(text, fgcolor=color, size=size)
        if pygame.display.get_surface() is not None:
            # In the display's pixel format, blitting takes about half the time (measured).
            surface = surface.convert_alpha()
        self._surfaces[key] = surface
        if len(self._surfaces) > SURFACE_CACHE_SIZE:
            self._surfaces.popitem(last=False)
        return surface

    def ascent(self, size: int) -> int:
        """Return the font's ascent at ``size`` pixels."""
        return int(self._font.get_sized_ascender(size))
