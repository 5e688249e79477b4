"""The scene: what to draw where, each element with its label and rectangle (pure values)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from kiosk.catalog import Lang
from kiosk.model import Action


@dataclass(frozen=True, slots=True)
class Rect:
    """A rectangle in window pixels."""

    x: int
    y: int
    w: int
    h: int

    @property
    def right(self) -> int:
        """Return the x just past the rectangle."""
        return self.x + self.w

    @property
    def bottom(self) -> int:
        """Return the y just past the rectangle."""
        return self.y + self.h

    def contains(self, x: int, y: int) -> bool:
        """Return whether the point lies inside."""
        return self.x <= x < self.right and self.y <= y < self.bottom

    def intersects(self, other: Rect) -> bool:
        """Return whether the two rectangles overlap."""
        return (
            self.x < other.right
            and other.x < self.right
            and self.y < other.bottom
            and other.y < self.bottom
        )

    def inset(self, dx: int, dy: int) -> Rect:
        """Return the rectangle shrunk by ``dx``/``dy`` on each side."""
        return Rect(self.x + dx, self.y + dy, max(0, self.w - 2 * dx), max(0, self.h - 2 * dy))

    def as_list(self) -> list[int]:
        """Return ``[x, y, w, h]``."""
        return [self.x, self.y, self.w, self.h]


class Kind(StrEnum):
    """What an element is, for the accessibility tree."""

    BUTTON = "button"
    FIELD = "field"
    TEXT = "text"
    QR = "qr"


class Style(StrEnum):
    """How an element is drawn."""

    PRIMARY = "primary"
    BUTTON = "button"
    GREYED = "greyed"
    TOGGLE_ON = "toggle_on"
    TITLE = "title"
    BODY = "body"
    HEADING = "heading"
    SUBTLE = "subtle"
    WARN = "warn"
    NUMBER = "number"
    FIELD = "field"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Line:
    """One line of text inside an element."""

    text: str
    size: int
    bold: bool = False


@dataclass(frozen=True, slots=True)
class Element:
    """One thing on the screen."""

    kind: Kind
    rect: Rect
    lines: tuple[Line, ...]
    style: Style
    enabled: bool = True
    action: Action | None = None
    align: Literal["center", "left"] = "center"
    clip: Rect | None = None  # drawn only inside this rectangle (the scrolled notice sheet)

    @property
    def label(self) -> str:
        """Return the text as shown, lines joined by newlines."""
        return "\n".join(line.text for line in self.lines)

    def to_json(self) -> dict[str, Any]:
        """Return the element as the accessibility tree lists it."""
        return {
            "kind": str(self.kind),
            "label": self.label,
            "rect": self.rect.as_list(),
            "enabled": self.enabled,
        }


@dataclass(frozen=True, slots=True)
class Scene:
    """One screen, laid out for a window size, language and text size."""

    screen: str
    size: tuple[int, int]
    lang: Lang
    large: bool
    elements: tuple[Element, ...]
    viewport: Rect | None = None  # the draggable notice sheet
    scroll: int = 0
    scroll_max: int = 0
    background: tuple[int, int, int] = (246, 247, 249)

    def hit(self, x: int, y: int) -> Element | None:
        """Return the enabled button or field under the point (None elsewhere)."""
        for element in reversed(self.elements):
            if element.action is None or not element.enabled:
                continue
            if element.rect.contains(x, y) and (
                element.clip is None or element.clip.contains(x, y)
            ):
                return element
        return None

    def buttons(self) -> list[Element]:
        """Return the buttons and fields, in drawing order."""
        return [e for e in self.elements if e.kind in (Kind.BUTTON, Kind.FIELD)]

    def find(self, label_part: str) -> Element:
        """Return the first button whose label contains ``label_part`` (for tests and tools)."""
        for element in self.buttons():
            if label_part in element.label:
                return element
        raise LookupError(f"no button with {label_part!r} on {self.screen}")

    def to_json(self) -> dict[str, Any]:
        """Return the accessibility tree that ``--scene`` writes."""
        return {
            "screen": self.screen,
            "lang": self.lang,
            "large": self.large,
            "size": list(self.size),
            "scroll": self.scroll,
            "scroll_max": self.scroll_max,
            "elements": [
                e.to_json() for e in self.elements if e.clip is None or e.rect.intersects(e.clip)
            ],
        }
