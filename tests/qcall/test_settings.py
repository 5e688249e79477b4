"""Settings edited in the admin pages: events in the log, replayed after a restart, applied at
once, refused with both languages when invalid, and never costing the database on a config edit."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Final

import pytest

from qcall import settings
from qcall.config import load_config, parse_config
from qcall.errors import BadRequest, ServiceUnavailable
from qcall.events import AUDIT_TYPES, EventType
from qcall.hub import Hub
from tests.common import Clock, make_config, small_center, standalone_demo_config

# One CLI call takes well under a second; the bound only catches a hung command.
CLI_TIMEOUT_S: Final = 60.0


def _qcall(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qcall", *args],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


async def _started(db_path: Path, clock: Clock, raw: dict[str, object] | None = None) -> Hub:
    config = parse_config(raw) if raw is not None else make_config()
    hub = Hub(config, db_path, clock=clock)
    await hub.start()
    return hub


def _cap_value(hub: Hub, service_id: str, cap: int) -> dict[str, object]:
    value = settings.current_value(hub.config, settings.service_key(service_id))
    return {**value, "daily_cap": cap}


async def test_a_daily_cap_edit_applies_at_once_and_survives_a_restart(
    tmp_path: Path, clock: Clock
) -> None:
    db = tmp_path / "s.db"
    hub = await _started(db, clock)
    try:
        key = settings.service_key("social")
        await hub.execute(
            lambda now: hub.engine.change_setting(now, "adm", key, _cap_value(hub, "social", 1))
        )
        assert hub.config.service("social").daily_cap == 1  # type: ignore[union-attr]
        await hub.execute(lambda now: hub.engine.issue(now, "social"))
        with pytest.raises(ServiceUnavailable):
            await hub.execute(lambda now: hub.engine.issue(now, "social"))
        notice = {**_cap_value(hub, "social", 1)}
        notice["notice"] = {**notice["notice"], "phone": "021-12345678"}  # type: ignore[dict-item]
        await hub.execute(lambda now: hub.engine.change_setting(now, "adm", key, notice))
        events = await hub.events_after(0)
    finally:
        await hub.stop()
    changes = [e for e in events if e.type is EventType.SETTINGS_CHANGED]
    assert [c.data["actor"] for c in changes] == ["adm", "adm"]
    assert changes[0].data["before"]["daily_cap"] == 500
    assert changes[0].data["after"]["daily_cap"] == 1
    assert EventType.SETTINGS_CHANGED in AUDIT_TYPES
    # A restart replays the log (from the snapshot taken at stop, then from nothing).
    again = await _started(db, clock)
    try:
        service = again.config.service("social")
        assert service is not None
        assert service.daily_cap == 1
        assert service.notice.phone == "021-12345678"
        with pytest.raises(ServiceUnavailable):
            await again.execute(lambda now: again.engine.issue(now, "social"))
    finally:
        await again.stop()
    con = sqlite3.connect(db)
    con.execute("DELETE FROM snapshots")
    con.commit()
    con.close()
    third = await _started(db, clock)
    try:
        assert third.config.service("social").daily_cap == 1  # type: ignore[union-attr]
        assert third.config.service("social").notice.phone == "021-12345678"  # type: ignore[union-attr]
    finally:
        await third.stop()


async def test_an_invalid_setting_is_refused_in_both_languages_and_changes_nothing(
    hub_db: Path, clock: Clock
) -> None:
    hub = await _started(hub_db, clock)
    try:
        seq = hub.engine.seq
        key = settings.service_key("social")
        bad = _cap_value(hub, "social", 0)
        with pytest.raises(BadRequest) as caught:
            await hub.execute(lambda now: hub.engine.change_setting(now, "adm", key, bad))
        assert "daily_cap" in caught.value.message("en")
        assert "daily_cap" in caught.value.message("zh")
        with pytest.raises(BadRequest):
            await hub.execute(
                lambda now: hub.engine.change_setting(now, "adm", key, {"prefix": "Z"})
            )
        with pytest.raises(BadRequest):
            await hub.execute(lambda now: hub.engine.change_setting(now, "adm", "windows", []))
        assert hub.engine.seq == seq
        assert hub.config.service("social").daily_cap == 500  # type: ignore[union-attr]
    finally:
        await hub.stop()


async def test_a_removed_service_keeps_its_override_in_the_log_without_costing_the_database(
    hub_db: Path, clock: Clock
) -> None:
    hub = await _started(hub_db, clock)
    try:
        key = settings.service_key("social")
        await hub.execute(
            lambda now: hub.engine.change_setting(now, "adm", key, _cap_value(hub, "social", 7))
        )
    finally:
        await hub.stop()
    raw = small_center()
    raw["services"] = [s for s in raw["services"] if s["id"] != "social"]  # type: ignore[index, union-attr]
    raw["windows"] = [
        {**w, "services": [r for r in w.get("services", []) if r.get("id") != "social"]}
        for w in raw["windows"]  # type: ignore[union-attr]
    ]
    again = await _started(hub_db, clock, raw)
    try:
        assert again.config.service("social") is None
        assert settings.stale(again.base_config, again.engine.overrides) == [key]
    finally:
        await again.stop()


async def test_calendar_overrides_and_lobby_notices_are_settings(
    hub_db: Path, clock: Clock
) -> None:
    hub = await _started(hub_db, clock)
    try:
        today = hub.engine.local(clock()).date()
        holiday = [
            {
                "date": today.isoformat(),
                "day_type": "closed",
                "note_zh": "节日",
                "note_en": "Holiday",
            }
        ]
        await hub.execute(
            lambda now: hub.engine.change_setting(now, "adm", settings.CALENDAR_OVERRIDES, holiday)
        )
        assert str(hub.config.calendar.day_type(today)) == "closed"
        service = hub.config.service("social")
        assert service is not None
        assert not hub.engine.availability(service, clock()).available
        notices = [{"zh": "今日下午停电检修", "en": "Power maintenance this afternoon"}]
        await hub.execute(
            lambda now: hub.engine.change_setting(now, "adm", settings.LOBBY_NOTICES, notices)
        )
        assert hub.config.lobby.notices[0].zh == "今日下午停电检修"
    finally:
        await hub.stop()


@pytest.fixture
def hub_db(tmp_path: Path) -> Path:
    return tmp_path / "h.db"


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def test_config_export_writes_the_effective_configuration_back_to_toml(
    tmp_path: Path, clock: Clock
) -> None:
    source = standalone_demo_config(tmp_path)
    base = load_config(source)
    db = tmp_path / "demo.db"
    hub = Hub(base, db, clock=clock)
    await hub.start()
    try:
        service = base.services[0].id
        key = settings.service_key(service)
        value = {**settings.current_value(hub.config, key), "daily_cap": 9}
        value["notice"] = {**value["notice"], "place": "二楼 3 号窗口"}
        await hub.execute(lambda now: hub.engine.change_setting(now, "adm", key, value))
        notices = [{"zh": "今日系统升级", "en": "System upgrade today"}]
        await hub.execute(
            lambda now: hub.engine.change_setting(now, "adm", settings.LOBBY_NOTICES, notices)
        )
        live = hub.config
    finally:
        await hub.stop()
    out = tmp_path / "exported.toml"
    done = await asyncio.to_thread(
        _qcall, "config", "export", "--config", str(source), "--db", str(db), "--out", str(out)
    )
    assert done.returncode == 0, done.stderr
    exported = load_config(out)
    assert exported == live
    assert exported != base
    assert exported.services[0].daily_cap == 9
    assert exported.services[0].notice.place == "二楼 3 号窗口"
    assert exported.lobby.notices[0].en == "System upgrade today"
    assert exported.windows == base.windows  # the topology is the file's
    missing = await asyncio.to_thread(
        _qcall, "config", "export", "--config", str(source), "--db", str(tmp_path / "typo.db")
    )
    assert missing.returncode != 0
    assert "找不到数据库" in missing.stderr
    assert not (tmp_path / "typo.db").exists()


async def test_a_saved_value_that_no_longer_validates_is_skipped_not_fatal(
    hub_db: Path, clock: Clock
) -> None:
    hub = await _started(hub_db, clock)
    try:
        key = settings.service_key("social")
        await hub.execute(
            lambda now: hub.engine.change_setting(now, "adm", key, _cap_value(hub, "social", 7))
        )
        notices = [{"zh": "仍然有效的公告", "en": ""}]
        await hub.execute(
            lambda now: hub.engine.change_setting(now, "adm", settings.LOBBY_NOTICES, notices)
        )
    finally:
        await hub.stop()
    # As if a later version's rules refused what was saved: a cap of 0 in the log.
    con = sqlite3.connect(hub_db)
    with con:
        row = con.execute(
            "SELECT seq, data FROM events WHERE type = 'settings.changed' ORDER BY seq LIMIT 1"
        ).fetchone()
        data = json.loads(row[1])
        data["after"]["daily_cap"] = 0
        con.execute("UPDATE events SET data = ? WHERE seq = ?", (json.dumps(data), row[0]))
        con.execute("DELETE FROM snapshots")
    con.close()
    again = await _started(hub_db, clock)
    try:
        assert again.config.service("social").daily_cap == 500  # type: ignore[union-attr]
        assert again.config.lobby.notices[0].zh == "仍然有效的公告"
        assert settings.stale(again.base_config, again.engine.overrides) == [key]
        await again.execute(lambda now: again.engine.issue(now, "social"))
    finally:
        await again.stop()
