"""layout(model, size, lang) → scene, without a display; and the renderer on a dummy display."""

from __future__ import annotations

import datetime as dt
from itertools import combinations

import pygame
import pytest

from display.layout import (
    Scene,
    best_call_px,
    clock_text,
    layout,
    needed_call_px,
    text_em,
)
from display.model import Call, LobbyModel, WindowStatus
from display.render import Renderer, find_cjk_font

SIZES = [(1920, 1080), (1366, 768), (1080, 1920)]
WALL = dt.datetime(2026, 11, 30, 14, 5, tzinfo=dt.UTC)


def busy_hall(windows: int = 16) -> LobbyModel:
    model = LobbyModel()
    model.set_settings(
        {
            "version": "v1",
            "center": {"name_zh": "梧桐街道社区事务受理服务中心", "name_en": "Wutong Center"},
            "timezone": "Asia/Shanghai",
            "windows": [{"number": n, "type": "comprehensive"} for n in range(1, windows + 1)],
            "departments": [
                {"id": "hr", "name_zh": "人力资源和社会保障", "name_en": "Human Resources"},
                {"id": "md", "name_zh": "医疗保障", "name_en": "Medical Insurance"},
            ],
            "services": [
                {"id": "social", "department": "hr"},
                {"id": "medical", "department": "md"},
            ],
            "lobby": {
                "notices": [{"zh": "请保管好随身物品", "en": "Mind your belongings"}],
                "show_figures": True,
            },
        }
    )
    model.set_figures(
        {
            "date": "2026-11-30",
            "issued": 140,
            "served": 123,
            "waiting_mean_s": 480,
            "ratings": 50,
            "satisfaction_pct": 98.5,
        }
    )
    model.set_waiting({"social": 5, "medical": 3})
    for n in range(1, windows + 1):
        model.windows[n] = WindowStatus(
            n, open=n != 5, paused=n == 3, serving=n % 2 == 0, current=f"A{n:03d}"
        )
    for i in range(6):
        model.recent.appendleft(Call(f"B{10 + i:03d}", 10 + i, i))
    model.featured = Call("A012", 13, 99)
    model.featured_since = 0.0
    model.online = True
    return model


def inside(rect: tuple[int, int, int, int], size: tuple[int, int]) -> bool:
    x, y, w, h = rect
    return x >= 0 and y >= 0 and x + w <= size[0] and y + h <= size[1]


def overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


@pytest.mark.parametrize("size", SIZES)
def test_scene_fits_the_screen_without_overlaps(size: tuple[int, int]) -> None:
    scene = layout(busy_hall(), size, "zh", WALL, 100.0)
    texts = [e for e in scene.elements if e.label != "call.card"]
    assert all(inside(e.rect, size) for e in scene.elements)
    for a, b in combinations(texts, 2):
        assert not overlap(a.rect, b.rect), (a.label, b.label)
    assert scene.band is not None
    assert inside(scene.band.rect, size)
    assert not any(overlap(scene.band.rect, e.rect) for e in scene.elements)


@pytest.mark.parametrize("size", SIZES)
def test_call_is_the_largest_text_and_nothing_is_tiny(size: tuple[int, int]) -> None:
    scene = layout(busy_hall(), size, "zh", WALL, 100.0)
    line1 = scene.find("call.line1")
    assert line1.text == "请 A012 号"
    assert scene.find("call.line2").text == "到 13 号窗口"
    sizes = [e.size for e in scene.elements if e.text]
    assert line1.size == max(sizes)
    scale = min(size) / 1080
    assert line1.size >= 170 * scale  # ui.md rule 1 (the card width limits it below 240)
    assert min(sizes) >= 28 * scale


@pytest.mark.parametrize("size", SIZES)
def test_recent_calls_columns_are_kept_apart_by_a_rule(size: tuple[int, int]) -> None:
    scene = layout(busy_hall(), size, "zh", WALL, 100.0)
    [rule] = [p for p in scene.panels if p.label.startswith("recent.rule")]
    cells = [e for e in scene.elements if e.label.startswith("recent[") and e.text]
    assert len(cells) == 4
    clearance = 12 * min(size) / 1080
    left = [e for e in cells if e.rect[0] < rule.rect[0]]
    right = [e for e in cells if e.rect[0] > rule.rect[0]]
    assert len(left) == len(right) == 2
    assert all(e.rect[0] + e.rect[2] + clearance <= rule.rect[0] for e in left)
    assert all(rule.rect[0] + rule.rect[2] + clearance <= e.rect[0] for e in right)
    # Newest first, read as Chinese is: left to right, then the next row.
    order = sorted(cells, key=lambda e: (e.rect[1], e.rect[0]))
    assert [e.label for e in order] == [f"recent[{i}]" for i in range(4)]
    # An empty panel stays empty: no rule without a call on its right.
    quiet = busy_hall()
    quiet.recent.clear()
    assert not [p for p in layout(quiet, size, "zh", WALL, 100.0).panels if "rule" in p.label]
    # The rule spans the rows it separates.
    assert all(rule.rect[1] <= e.rect[1] < rule.rect[1] + rule.rect[3] for e in cells)


@pytest.mark.parametrize("size", SIZES)
def test_window_rows_share_one_size_and_keep_their_columns_apart(size: tuple[int, int]) -> None:
    scene = layout(busy_hall(16), size, "zh", WALL, 108.5)  # page 2: windows 9-16
    rows = [e for e in scene.elements if e.label.startswith("row[") and e.text]
    assert "16号窗口" in {e.text for e in rows}
    assert len({e.size for e in rows}) == 1
    gap = 12 * min(size) / 1080
    for slot in {e.label.split(".")[0] for e in rows}:
        name, ticket = scene.find(f"{slot}.window"), scene.find(f"{slot}.ticket")
        assert name.rect[0] + name.rect[2] + gap <= ticket.rect[0]
        # The two-digit window's name fits its cell at that size (it never runs into the ticket).
        assert name.size * text_em(name.text) <= name.rect[2]


def test_windows_are_paged_eight_at_a_time_at_1080p() -> None:
    model = busy_hall(16)
    # A steady call (no popup); the page turns every 8 s.
    first = layout(model, (1920, 1080), "zh", WALL, 100.0)
    second = layout(model, (1920, 1080), "zh", WALL, 108.5)
    shown = [e.text for e in first.elements if e.label.endswith(".window") and e.text]
    later = [e.text for e in second.elements if e.label.endswith(".window") and e.text]
    assert shown == [f"{n}号窗口" for n in range(1, 9)]
    assert later == [f"{n}号窗口" for n in range(9, 17)]
    assert first.find("windows.title").text.endswith("1/2")
    states = {e.label: e.text for e in first.elements}
    assert states["row[2].state"] == "暂停服务"  # window 3, as a word (not colour alone)
    assert states["row[4].state"] == "未开放"
    assert states["row[4].ticket"] == ""


def test_offline_mark_and_flash() -> None:
    model = busy_hall()
    assert layout(model, (1920, 1080), "zh", WALL, 100.0).find("header.offline").text == ""
    model.online = False
    assert "网络中断" in layout(model, (1920, 1080), "zh", WALL, 100.0).find("header.offline").text
    model.featured_since = 100.0
    bright = layout(model, (1920, 1080), "zh", WALL, 100.1).find("call.card")
    dim = layout(model, (1920, 1080), "zh", WALL, 100.6).find("call.card")
    assert bright.bg != dim.bg
    steady = layout(model, (1920, 1080), "zh", WALL, 120.0).find("call.card")
    assert steady.bg == dim.bg


def test_a_new_call_pops_up_over_the_hall_when_the_hall_is_deep() -> None:
    model = busy_hall()
    model.featured_since = 100.0
    size = (1920, 1080)
    regular = layout(model, size, "zh", WALL, 120.0)  # steady: the usual layout
    assert regular.find("call.line1").size < needed_call_px(10.0, size)
    popup = layout(model, size, "zh", WALL, 100.2)  # flashing, in a 10 m hall
    line1, line2 = popup.find("call.line1"), popup.find("call.line2")
    assert (line1.text, line2.text) == ("请 A012 号", "到 13 号窗口")
    # Number and window digit large enough for the back of a 10 m hall (ui.md rule 1).
    assert min(line1.size, line2.size) >= needed_call_px(10.0, size)
    labels = {e.label for e in popup.elements}
    assert not any(label.startswith(("row[", "recent[", "waiting")) for label in labels)
    assert {"header.center", "header.clock", "call.en"} <= labels
    assert popup.band is not None
    assert all(inside(e.rect, size) for e in popup.elements)
    assert not any(overlap(popup.band.rect, e.rect) for e in popup.elements)
    assert best_call_px(model, size) == line1.size
    # The windows come back with the steady call.
    assert any(label.startswith("row[") for label in (e.label for e in regular.elements))


def test_no_popup_where_the_usual_call_is_large_enough_or_it_would_not_grow() -> None:
    model = busy_hall()
    model.featured_since = 100.0
    assert model.settings is not None
    model.settings["lobby"]["hall_depth_m"] = 6.0  # 141 px is enough
    near = layout(model, (1920, 1080), "zh", WALL, 100.2)
    assert any(e.label.startswith("row[") for e in near.elements)
    model.settings["lobby"]["hall_depth_m"] = 10.0
    # A portrait screen's call is as wide as the screen already: nothing to gain.
    portrait = layout(model, (1080, 1920), "zh", WALL, 100.2)
    assert any(e.label.startswith("row[") for e in portrait.elements)


def test_an_english_screen_says_date_waiting_and_recent_calls_in_english() -> None:
    assert clock_text(WALL, "en") == "Mon 30 Nov 14:05"
    scene = layout(busy_hall(), (1920, 1080), "en", WALL, 112.0)  # page 1, steady
    texts = scene.texts()
    assert texts["header.clock"] == "Mon 30 Nov 14:05"
    assert texts["header.center"] == "Wutong Center"
    assert texts["waiting"].startswith("Waiting: ")
    assert texts["recent[0]"] == "B015  →  Counter 15"
    assert texts["row[0].window"] == "Counter 1"
    # Only the call itself stays Chinese first (the hall's language), with its English line.
    cjk = [
        label
        for label, text in texts.items()
        if any("\u4e00" <= ch <= "\u9fff" for ch in text) and not label.startswith("call.")
    ]
    assert cjk == []


def test_band_carries_notices_and_public_figures() -> None:
    scene = layout(busy_hall(), (1920, 1080), "zh", WALL, 0.0)
    assert scene.band is not None
    assert "请保管好随身物品" in scene.band.text
    assert "今日已服务 123 人" in scene.band.text
    assert "满意率 98.5%" in scene.band.text
    assert "平均等候 8 分钟" in scene.band.text
    assert clock_text(WALL) == "11月30日 星期一 14:05"


def test_scene_dump_is_json_ready() -> None:
    dump = layout(busy_hall(), (1366, 768), "zh", WALL, 100.0).dump()
    assert dump["size"] == [1366, 768]
    labels = {e["label"] for e in dump["elements"]}
    assert {"call.line1", "header.clock", "waiting", "row[0].window"} <= labels


def _render(scene: Scene, renderer: Renderer, mono: float) -> list[pygame.Rect]:
    return renderer.draw(scene, mono)


@pytest.mark.parametrize("size", SIZES)
def test_renderer_draws_only_what_changed(size: tuple[int, int]) -> None:
    pygame.display.init()
    try:
        surface = pygame.display.set_mode(size)
        renderer = Renderer(surface, find_cjk_font())
        model = busy_hall()
        first = layout(model, size, "zh", WALL, 100.0)
        full = _render(first, renderer, 100.0)
        assert full[0] == pygame.Rect(0, 0, *size)
        renders = renderer.text.renders
        # Same scene: only the scrolling band is redrawn, and no text is rendered again.
        again = _render(first, renderer, 100.05)
        assert first.band is not None
        assert again == [pygame.Rect(first.band.rect)]
        assert renderer.text.renders == renders
        # One window changes: its row (and the band) are redrawn, nothing else.
        model.windows[1] = WindowStatus(1, open=True, serving=True, current="C001")
        model.version += 1
        changed = layout(model, size, "zh", WALL, 100.0)
        dirty = _render(changed, renderer, 100.1)
        labels = {e.label for e in changed.elements if pygame.Rect(e.rect) in dirty}
        assert labels == {"row[0].ticket", "row[0].state"}
        # The glyphs really are there: the call card is not one flat colour.
        card = changed.find("call.line1").rect
        middle = card[1] + card[3] // 2
        colours = {
            tuple(surface.get_at((x, middle)))[:3] for x in range(card[0], card[0] + card[2])
        }
        assert len(colours) > 2
    finally:
        pygame.display.quit()


def test_after_the_popup_the_hall_is_drawn_whole_again() -> None:
    size = (1920, 1080)
    pygame.display.init()
    try:
        surface = pygame.display.set_mode(size)
        renderer = Renderer(surface, find_cjk_font())
        model = busy_hall()
        model.featured_since = 100.0
        steady = layout(model, size, "zh", WALL, 120.0)
        _render(steady, renderer, 120.0)
        expected = pygame.image.tobytes(surface, "RGB")
        popup = layout(model, size, "zh", WALL, 100.2)
        assert not any(e.label.startswith("row[") for e in popup.elements)
        assert _render(popup, renderer, 120.0)[0] == pygame.Rect(0, 0, *size)
        assert pygame.image.tobytes(surface, "RGB") != expected
        _render(steady, renderer, 120.0)
        # Pixel for pixel the steady hall (the band is at the same offset: same mono).
        assert pygame.image.tobytes(surface, "RGB") == expected
    finally:
        pygame.display.quit()


def _luminance(rgb: tuple[int, int, int]) -> float:
    def channel(c: int) -> float:
        v = c / 255
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    """WCAG contrast ratio."""
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.mark.parametrize("mono", [100.1, 100.6, 120.0])  # flash on, flash off, steady
def test_every_text_has_contrast_of_at_least_7_to_1(mono: float) -> None:
    model = busy_hall()
    model.online = False
    model.featured_since = 100.0
    scene = layout(model, (1920, 1080), "zh", WALL, mono)
    for element in scene.elements:
        if element.text:
            assert contrast(element.color, element.bg) >= 7.0, element.label  # ui.md rule 3
    assert scene.band is not None
    assert contrast(scene.band.color, scene.band.bg) >= 7.0
