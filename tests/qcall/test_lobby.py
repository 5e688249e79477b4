"""The ``[lobby]`` table: validation, live reload from the file, the views the API serves."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from qcall.config import parse_config
from qcall.engine import Engine
from qcall.errors import ConfigError
from qcall.hub import Hub
from qcall.lobby import FiguresCache, LobbySource, lobby_view, public_figures
from qcall.model import Outcome
from qcall.reports import daily_report, to_json
from tests.common import ROOT, Clock, make_config, small_center


def problems(lobby: dict[str, object]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(small_center(lobby=lobby), "<test>")
    return str(caught.value.message_en)


def test_defaults_and_example_settings() -> None:
    lobby = make_config().lobby
    assert lobby.announce.repeat == 2
    assert lobby.volume_at(dt.time(10)) == lobby.volume
    example = tomllib.loads((ROOT / "config" / "center.example.toml").read_text("utf-8"))
    assert example["lobby"]["notices"]
    configured = parse_config(example, "example").lobby
    assert configured.volume_at(dt.time(12, 0)) == 0.0  # quiet hours
    assert configured.volume_at(dt.time(9, 0)) == 0.9


@pytest.mark.parametrize(
    ("lobby", "path"),
    [
        ({"announce": {"template_zh": "请到窗口"}}, "lobby.announce.template_zh"),
        ({"announce": {"template_en": "{number} {number} {window}"}}, "lobby.announce.template_en"),
        (
            {"announce": {"template_zh": "请 {number} 号 到 {room} 号"}},
            "lobby.announce.template_zh",
        ),
        (
            {"announce": {"template_zh": "请 {number} 号 到 {window} 号 3"}},
            "lobby.announce.template_zh",
        ),
        ({"announce": {"repeat": 0}}, "lobby.announce.repeat"),
        ({"volume": 1.5}, "lobby.volume"),
        ({"quiet_hours": [{"start": "13:00", "end": "12:00"}]}, "lobby.quiet_hours[0].end"),
        ({"notices": [{"zh": ""}]}, "lobby.notices[0].zh"),
        ({"notice": []}, "lobby.notice"),
    ],
)
def test_bad_lobby_settings_are_named_by_path(lobby: dict[str, object], path: str) -> None:
    assert path in problems(lobby)


def _write(path: Path, raw_lobby: dict[str, object], stamp: int) -> None:
    text = (ROOT / "config" / "center.example.toml").read_text("utf-8")
    raw = tomllib.loads(text)
    raw["lobby"] = raw_lobby
    path.write_text(_dumps(raw), encoding="utf-8")
    os.utime(path, ns=(stamp, stamp))  # a new mtime even within the clock's resolution


def _dumps(raw: dict[str, object]) -> str:
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_demo", ROOT / "config" / "make_demo.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.dumps(raw))


async def test_lobby_follows_the_file_and_keeps_the_last_good_settings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "center.toml"
    _write(path, {"notices": [{"zh": "甲"}]}, 1_000_000_000)
    source = LobbySource(parse_config(tomllib.loads(path.read_text("utf-8"))).lobby, path)
    assert [n.zh for n in (await source.current()).notices] == ["甲"]
    _write(path, {"notices": [{"zh": "乙"}]}, 2_000_000_000)
    assert [n.zh for n in (await source.current()).notices] == ["乙"]
    _write(path, {"notices": [{"zh": "丙"}], "volume": 7}, 3_000_000_000)
    assert [n.zh for n in (await source.current()).notices] == ["乙"]
    assert "lobby.volume" in caplog.text
    # Without a file (a hub built in code) the settings stay as started.
    fixed = LobbySource(make_config().lobby, None)
    assert await fixed.current() == make_config().lobby


def test_views_carry_no_personal_data() -> None:
    config = make_config()
    view = lobby_view(config, config.lobby)
    assert set(view) == {
        "center",
        "timezone",
        "windows",
        "departments",
        "services",
        "lobby",
        "version",
    }
    assert lobby_view(config, config.lobby)["version"] == view["version"]
    # Each window says what it serves (a zone's screen counts only its own lines).
    assert [w["services"] for w in view["windows"]] == [
        [r.id for r in w.services] for w in config.windows
    ]
    assert any(w["services"] for w in view["windows"])


def test_public_figures_from_a_real_day() -> None:
    config = make_config()
    engine = Engine(config)
    clock = Clock()
    engine.tick(clock())
    engine.open_window(clock(), 1, "s1")
    for score in (5, 2):
        engine.issue(clock(), "social")
        clock.advance(minutes=4)
        engine.call_next(clock(), 1, "s1")
        engine.start(clock(), 1, "s1")
        clock.advance(minutes=5)
        engine.finish(clock(), 1, "s1", Outcome.DONE, None)
        engine.rate(clock(), 1, "s1", score)
    engine.issue(clock(), "medical")
    day = clock().date()
    report = to_json(daily_report(config, engine.drain(), day, today=day))
    figures = public_figures(report)
    assert figures == {
        "date": day.isoformat(),
        "issued": 3,
        "served": 2,
        "waiting_mean_s": 240,
        "ratings": 2,
        "satisfaction_pct": 50.0,  # a 2 is below [reports] satisfied_min_score (3)
    }
    assert "s1" not in str(figures)


async def test_figures_are_computed_once_for_screens_asking_together() -> None:
    cache = FiguresCache()
    computed: list[int] = []

    async def compute() -> dict[str, object]:
        computed.append(1)
        await asyncio.sleep(0.01)
        return {"served": len(computed)}

    results = await asyncio.gather(*(cache.get(("day", 7), compute) for _ in range(20)))
    assert computed == [1]
    assert all(r == {"served": 1} for r in results)
    # A new event within FIGURES_MAX_AGE_S: still the cached figures (cheap for 100 screens).
    assert await cache.get(("day", 8), compute) == {"served": 1}
    assert computed == [1]


async def _until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10.0
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_a_screen_gone_too_long_is_reported_and_a_quick_return_is_not(
    tmp_path: Path,
) -> None:
    config = make_config(hub={"screen_offline_s": 0.3})
    hub = Hub(config, tmp_path / "qcall.db", clock=Clock())
    await hub.start()
    try:
        states: list[tuple[str, str]] = []
        unsubscribe = hub.bus.subscribe(
            lambda e: (
                states.append((e.data["device"], e.data["state"])) if e.data.get("device") else None
            )
        )
        first = hub.screens.connected("大厅屏", "10.0.0.5")
        first.last_seq = 7
        assert hub.screens.diagnostics() == [
            {
                "name": "大厅屏",
                "since": first.since.isoformat(),
                "last_seq": 7,
                "remote": "10.0.0.5",
            }
        ]
        # A reconnect within the limit (a hub restart, a cable re-plugged) is no event.
        hub.screens.disconnected(first)
        await asyncio.sleep(0.1)
        second = hub.screens.connected("大厅屏", "10.0.0.5")
        await asyncio.sleep(0.4)
        assert states == []
        # Gone longer than the limit: offline; back: ready.
        hub.screens.disconnected(second)
        await _until(lambda: states == [("screen:大厅屏", "offline")], "the offline event")
        assert hub.screens.diagnostics() == []
        hub.screens.connected("大厅屏", "10.0.0.6")
        await _until(lambda: len(states) == 2, "the ready event")
        assert states[1] == ("screen:大厅屏", "ready")
        assert hub.engine.devices["screen:大厅屏"]["state"] == "ready"
        unsubscribe()
    finally:
        await hub.stop()


def test_lobby_errors_read_in_chinese_too() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(small_center(lobby={"announce": {"template_zh": "请到窗口"}}), "<test>")
    assert "lobby.announce.template_zh: 模板中必须恰好出现一次 {number}" in caught.value.message_zh
