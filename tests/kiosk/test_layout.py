"""Every screen at 1080×1920, 1920×1080 and 1366×768, both languages, normal and large text.

The layout is checked against the touch and legibility rules (ui.md rules 10-11) and each scene
is rendered to ``var/artifacts/kiosk/gallery`` for people to look at.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from collections.abc import Callable
from typing import Final

import pygame
import pytest

from kiosk.catalog import KioskCatalog, Lang, Text
from kiosk.fonts import FontBook
from kiosk.layout import layout, metrics, wrap
from kiosk.model import Act, Action, IssueResult, KioskModel, PrinterView, Screen
from kiosk.render import Renderer
from kiosk.scene import Kind, Scene
from qcall.client import QcallClient
from tests.kiosk.conftest import ARTIFACTS, HubProcess

SIZES: Final = ((1080, 1920), (1920, 1080), (1366, 768))
GALLERY: Final = ARTIFACTS / "gallery"
WALL: Final = dt.datetime(2026, 11, 30, 9, 5, tzinfo=dt.timezone(dt.timedelta(hours=8)))
NOW: Final = 1000.0


@pytest.fixture(scope="module")
def fonts() -> FontBook:
    return FontBook()


@pytest.fixture
async def catalog(hub: HubProcess) -> KioskCatalog:
    """The demo center's catalog from a real hub, with a few services made unavailable."""
    async with QcallClient(hub.url, hub.token("kiosk")) as client:
        raw = await client.catalog()
    base = KioskCatalog.from_api(raw)
    tomorrow = WALL + dt.timedelta(days=1, hours=-0.5)
    reasons = {
        "flexible_employment": ("daily_cap_reached", tomorrow),
        "unemployment_registration": ("outside_hours", WALL + dt.timedelta(hours=3)),
        "retirement_review": ("closed_today", WALL + dt.timedelta(days=2)),
    }
    services = tuple(
        dataclasses.replace(
            s,
            available=False,
            served_now=False,
            reason=reasons[s.id][0],
            opens_at=reasons[s.id][1],
            message=Text("今日已满", "Full today"),
        )
        if s.id in reasons
        else s
        for s in base.services
    )
    return dataclasses.replace(base, services=services)


def _model(catalog: KioskCatalog, lang: Lang, large: bool) -> KioskModel:
    model = KioskModel(key_factory=lambda: "k")
    model.catalog_loaded(catalog)
    model.lang = lang
    model.large = large
    model.last_touch = NOW
    return model


def _states(catalog: KioskCatalog) -> dict[str, Callable[[KioskModel], None]]:
    """Named ways to put a model on each screen."""
    hr = catalog.departments[0].id

    def go(*actions: Action) -> Callable[[KioskModel], None]:
        def apply(model: KioskModel) -> None:
            lang, large = model.lang, model.large
            for action in actions:
                model.press(action, NOW)
            model.lang, model.large = lang, large

        return apply

    def result(printed: bool) -> Callable[[KioskModel], None]:
        def apply(model: KioskModel) -> None:
            go(
                Action(Act.START),
                Action(Act.DEPARTMENT, hr),
                Action(Act.SERVICE, "social_card"),
                Action(Act.TAKE),
            )(model)
            model.issued(
                IssueResult(
                    "A012",
                    Text("社会保障卡申领、补卡、换卡", "Social security card"),
                    5,
                    900,
                    "http://127.0.0.1:8080/t/abcdefghijklmnop",
                    printed,
                    None if printed else Text("缺纸", "Paper end"),
                ),
                NOW,
            )

        return apply

    def hub_down(model: KioskModel) -> None:
        go(Action(Act.START), Action(Act.DEPARTMENT, hr))(model)
        model.hub_lost()

    def printer_down(model: KioskModel) -> None:
        go(Action(Act.START), Action(Act.DEPARTMENT, hr), Action(Act.SERVICE, "social_card"))(model)
        model.printer_changed(PrinterView(False, Text("缺纸", "Paper end")))

    def pickup_error(model: KioskModel) -> None:
        go(Action(Act.START), Action(Act.PICKUP), *(Action(Act.DIGIT, d) for d in "123456"))(model)
        model.error = Text("取件码无效", "Unknown pickup code")

    def idle(model: KioskModel) -> None:
        go(Action(Act.START), Action(Act.DEPARTMENT, hr))(model)
        model.last_touch = NOW - 45

    def scrolled(model: KioskModel) -> None:
        go(Action(Act.START), Action(Act.DEPARTMENT, hr), Action(Act.SERVICE, "social_card"))(model)
        model.scroll = 10_000

    def message(model: KioskModel) -> None:
        go(Action(Act.START))(model)
        model.pending = None
        model.issue_refused(Text("“失业登记”取号时间为 08:30–16:30。", "Tickets 08:30–16:30."), NOW)

    def closed(model: KioskModel) -> None:
        assert model.catalog is not None
        evening = tuple(
            dataclasses.replace(
                s, available=False, reason="outside_hours", opens_at=WALL + dt.timedelta(hours=23)
            )
            for s in model.catalog.services
        )
        model.catalog_loaded(dataclasses.replace(model.catalog, services=evening))

    return {
        "welcome": go(),
        "welcome-closed": closed,
        "departments": go(Action(Act.START)),
        "services": go(Action(Act.START), Action(Act.DEPARTMENT, hr)),
        "services-next-page": go(
            Action(Act.START), Action(Act.DEPARTMENT, hr), Action(Act.PAGE, "+1")
        ),
        "notice": go(
            Action(Act.START), Action(Act.DEPARTMENT, hr), Action(Act.SERVICE, "social_card")
        ),
        "notice-scrolled": scrolled,
        "pickup": pickup_error,
        "issuing": go(
            Action(Act.START),
            Action(Act.DEPARTMENT, hr),
            Action(Act.SERVICE, "social_card"),
            Action(Act.TAKE),
        ),
        "result": result(True),
        "result-on-screen": result(False),
        "message": message,
        "hub-down": hub_down,
        "printer-down": printer_down,
        "idle-countdown": idle,
    }


def _check(scene: Scene, fonts: FontBook) -> list[str]:
    """Return every broken rule of the scene (empty when it is fine)."""
    width, height = scene.size
    m = metrics(scene.size, scene.large)
    problems: list[str] = []
    buttons = [e for e in scene.elements if e.kind is Kind.BUTTON]
    for element in scene.elements:
        r = element.rect
        if element.clip is None and (r.x < 0 or r.y < 0 or r.right > width or r.bottom > height):
            problems.append(f"{element.label!r} leaves the window: {r}")
        for line in element.lines:
            if element.kind is not Kind.QR and fonts.width(line.text, line.size, line.bold) > r.w:
                problems.append(f"{line.text!r} is wider than its element ({r.w} px)")
            min_size = 50 if scene.large else 36
            if line.size < min_size and element.kind is not Kind.QR:
                problems.append(f"{line.text!r} is {line.size} px (< {min_size})")
        if element.kind is Kind.BUTTON and element.lines:
            needed = sum(round(line.size * 1.3) for line in element.lines)
            if needed > r.h:
                problems.append(f"{element.label!r} needs {needed} px, has {r.h}")
    minimum = 120 if scene.large else 88
    for button in buttons:
        if button.rect.h < minimum or button.rect.w < minimum:
            problems.append(f"button {button.label!r} is {button.rect.w}x{button.rect.h}")
        primary = button.action is not None and button.action.act in (Act.TAKE, Act.PRIORITY)
        if primary and button.rect.h < 160:
            problems.append(f"primary {button.label!r} is only {button.rect.h} px tall")
    for a, b in itertools.combinations(buttons, 2):
        if a.rect.intersects(b.rect):
            problems.append(f"{a.label!r} overlaps {b.label!r}")
            continue
        gap_x = max(b.rect.x - a.rect.right, a.rect.x - b.rect.right)
        gap_y = max(b.rect.y - a.rect.bottom, a.rect.y - b.rect.bottom)
        if max(gap_x, gap_y) < 16:
            problems.append(f"{a.label!r} and {b.label!r} are {max(gap_x, gap_y)} px apart")
    assert m.gap >= 16
    return problems


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_every_screen_fits_the_rules_and_is_rendered(
    catalog: KioskCatalog, fonts: FontBook, size: tuple[int, int]
) -> None:
    GALLERY.mkdir(parents=True, exist_ok=True)
    surface = pygame.Surface(size)
    failures: dict[str, list[str]] = {}
    seen_screens: set[str] = set()
    for lang, large in itertools.product(("zh", "en"), (False, True)):
        renderer = Renderer(surface, fonts)
        for name, apply in _states(catalog).items():
            model = _model(catalog, lang, large)
            apply(model)
            scene = layout(model, size, fonts, NOW, WALL)
            seen_screens.add(scene.screen)
            problems = _check(scene, fonts)
            if problems:
                failures[f"{name} {lang} large={large}"] = problems
            renderer.draw(scene)
            mode = "large" if large else "normal"
            pygame.image.save(
                surface, str(GALLERY / f"{size[0]}x{size[1]}-{lang}-{mode}-{name}.png")
            )
    assert seen_screens == {str(s) for s in Screen}
    report = "\n".join(f"{name}: {'; '.join(found)}" for name, found in failures.items())
    assert not failures, report


def test_wrap_keeps_brackets_and_punctuation_with_their_words(fonts: FontBook) -> None:
    width = fonts.width("人力资源和社会保障", 44)
    lines = wrap("人力资源和社会保障（人保/社保）", width, 44, fonts)
    assert lines[0] == "人力资源和社会保障"
    assert lines[1].startswith("（")
    lines = wrap("本市户籍人员，持有效证件。", fonts.width("本市户籍人员", 36), 36, fonts)
    assert not any(line.startswith(("，", "。")) for line in lines)
    assert "".join(lines) == "本市户籍人员，持有效证件。"
    english = wrap(
        "Social security card application", fonts.width("Social security", 36), 36, fonts
    )
    assert english == ["Social security", "card", "application"] or all(
        fonts.width(line, 36) <= fonts.width("Social security", 36) for line in english
    )


def test_wrap_leaves_no_chinese_character_alone_on_the_last_line(fonts: FontBook) -> None:
    width = fonts.width("社会保障卡申领及挂失补换", 44)
    lines = wrap("社会保障卡申领及挂失补换卡", width, 44, fonts)
    assert lines == ["社会保障卡申领及挂失补", "换卡"]


async def test_welcome_says_when_tickets_are_issued_again(
    catalog: KioskCatalog, fonts: FontBook
) -> None:
    model = _model(catalog, "zh", False)
    assert not any(
        "现在不办理取号" in e.label for e in layout(model, SIZES[0], fonts, NOW, WALL).elements
    )
    _states(catalog)["welcome-closed"](model)
    scene = layout(model, SIZES[0], fonts, NOW, WALL)
    assert any(e.label == "现在不办理取号 · 明天 08:05 起可取号" for e in scene.elements), [
        e.label for e in scene.elements
    ]
