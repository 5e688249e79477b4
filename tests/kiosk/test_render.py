"""The renderer: partial redraws touch only what changed and give the same pixels as a full one."""

from __future__ import annotations

import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

import pygame

from kiosk.fonts import FontBook
from kiosk.model import Act, Action
from kiosk.render import Renderer
from kiosk.scene import Element, Kind, Line, Rect, Scene, Style

SIZE = (800, 600)


def _scene(waiting: int, *, screen: str = "services") -> Scene:
    return Scene(
        screen=screen,
        size=SIZE,
        lang="zh",
        large=False,
        elements=(
            Element(
                Kind.TEXT,
                Rect(20, 10, 760, 70),
                (Line("人力资源和社会保障", 52, True),),
                Style.TITLE,
                align="left",
            ),
            Element(
                Kind.BUTTON,
                Rect(20, 100, 760, 150),
                (Line("社会保障卡申领", 44, True), Line(f"等候 {waiting} 人", 36)),
                Style.BUTTON,
                action=Action(Act.SERVICE, "a"),
            ),
            Element(
                Kind.BUTTON,
                Rect(20, 270, 760, 150),
                (Line("灵活就业登记", 44, True), Line("今日已满", 36)),
                Style.GREYED,
                enabled=False,
                action=Action(Act.SERVICE, "b"),
            ),
            Element(Kind.QR, Rect(20, 440, 140, 140), (Line("http://x/t/1", 36),), Style.BODY),
        ),
    )


def _pixels(surface: pygame.Surface) -> bytes:
    return pygame.image.tobytes(surface, "RGB")


def test_partial_redraw_matches_a_full_one() -> None:
    fonts = FontBook()
    partial = pygame.Surface(SIZE)
    renderer = Renderer(partial, fonts)
    first = renderer.draw(_scene(3))
    assert first == [pygame.Rect(0, 0, *SIZE)]
    assert renderer.draw(_scene(3)) == []  # nothing changed, nothing drawn
    changed = renderer.draw(_scene(4))
    assert changed == [pygame.Rect(20, 100, 760, 150)]  # only the button whose count changed
    full = pygame.Surface(SIZE)
    Renderer(full, fonts).draw(_scene(4))
    assert _pixels(partial) == _pixels(full)
    # Another screen is drawn whole.
    assert renderer.draw(_scene(4, screen="notice")) == [pygame.Rect(0, 0, *SIZE)]


def test_text_is_drawn_in_its_colour_on_its_background() -> None:
    fonts = FontBook()
    surface = pygame.Surface(SIZE)
    Renderer(surface, fonts).draw(_scene(3))
    # Inside the enabled button: white fill with dark text; the greyed one: grey fill.
    assert surface.get_at((30, 110))[:3] == (255, 255, 255)
    assert surface.get_at((30, 280))[:3] == (226, 228, 232)
    button = surface.subsurface(pygame.Rect(40, 110, 720, 130))
    colours = {button.get_at((x, y))[:3] for x in range(0, 720, 3) for y in range(0, 130, 3)}
    assert any(sum(c) < 200 for c in colours), "no dark text drawn in the button"
