"""The supervisor's alerts: what raises each kind, and their events (raised once, cleared once)."""

from __future__ import annotations

from qcall.alerts import UNSERVED_GRACE_MIN, current_alerts
from qcall.engine import Engine
from qcall.events import EventType
from tests.common import Clock, make_config


def keys(engine: Engine, clock: Clock) -> list[str]:
    return [a.key for a in current_alerts(engine, clock.now)]


def sync(engine: Engine, clock: Clock) -> list[tuple[str, str]]:
    current = {a.key: a.to_data() for a in current_alerts(engine, clock.now)}
    engine.sync_alerts(clock.now, current)
    return [(str(e.type), e.data["key"]) for e in engine.drain()]


def test_each_kind_of_alert_and_its_events() -> None:
    engine, clock = Engine(make_config()), Clock()
    ticket = engine.issue(clock.now, "social")
    engine.open_window(clock.now, 1, "c1")
    engine.drain()
    assert keys(engine, clock) == []
    assert sync(engine, clock) == []

    # The wait passes the 30-minute target.
    clock.advance(minutes=29, seconds=59)
    assert keys(engine, clock) == []
    clock.advance(seconds=1)
    assert keys(engine, clock) == ["long_wait:social"]
    assert sync(engine, clock) == [("alert.raised", "long_wait:social")]
    assert sync(engine, clock) == []  # announced once while it lasts
    alert = current_alerts(engine, clock.now)[0]
    assert alert.text("zh") == "业务social：1 人等候超过 30 分钟（最长 30 分钟，A001 号）"
    assert alert.text("en") == "Service social: 1 waiting longer than 30 min (longest 30 min, A001)"

    # A pause longer than the configured limit.
    engine.open_window(clock.now, 2, "c2")
    engine.pause(clock.now, 2, "c2", "meeting")
    engine.drain()
    limit = engine.config.hub.pause_alert_minutes
    clock.advance(minutes=limit - 1)
    assert "long_pause:2" not in keys(engine, clock)
    clock.advance(minutes=1)
    assert "long_pause:2" in keys(engine, clock)
    engine.resume(clock.now, 2, "c2")
    engine.drain()
    assert "long_pause:2" not in keys(engine, clock)

    # Devices: offline, and a printer out of paper.
    engine.device_state(clock.now, "bus:display@11", "offline", "no answer")
    engine.device_state(clock.now, "kiosk:k1/printer", "attention", "缺纸 / paper end")
    engine.device_state(clock.now, "kiosk:k2/printer", "attention", "cover open")
    engine.drain()
    assert keys(engine, clock)[-2:] == [
        "device_offline:bus:display@11",
        "paper_out:kiosk:k1/printer",
    ]

    # The clerk closes window 1: the line has nobody, after a grace period.
    engine.close_window(clock.now, 1, "c1")
    engine.close_window(clock.now, 2, "c2")
    engine.drain()
    assert "unserved:social" in keys(engine, clock)  # the ticket has waited long already
    fresh = engine.issue(clock.now, "medical")
    engine.drain()
    assert "unserved:medical" not in keys(engine, clock)
    clock.advance(minutes=UNSERVED_GRACE_MIN)
    assert "unserved:medical" in keys(engine, clock)

    # Cancelling the tickets and the device coming back clear their alerts.
    raised = sync(engine, clock)
    assert {k for t, k in raised if t == "alert.raised"} == {
        "device_offline:bus:display@11",
        "paper_out:kiosk:k1/printer",
        "unserved:social",
        "unserved:medical",
    }
    engine.cancel(clock.now, ticket.id)
    engine.cancel(clock.now, fresh.id)
    engine.device_state(clock.now, "bus:display@11", "ready")
    engine.drain()
    assert sync(engine, clock) == [
        ("alert.cleared", "device_offline:bus:display@11"),
        ("alert.cleared", "long_wait:social"),
        ("alert.cleared", "unserved:medical"),
        ("alert.cleared", "unserved:social"),
    ]
    assert list(engine.alerts) == ["paper_out:kiosk:k1/printer"]


def test_announced_alerts_survive_a_snapshot_and_a_replay() -> None:
    config = make_config()
    engine, clock = Engine(config), Clock()
    engine.device_state(clock.now, "bus:display@11", "offline")
    engine.drain()
    current = {a.key: a.to_data() for a in current_alerts(engine, clock.now)}
    engine.sync_alerts(clock.now, current)
    events = engine.drain()
    assert [e.type for e in events] == [EventType.ALERT_RAISED]
    assert events[0].data == {
        "key": "device_offline:bus:display@11",
        "kind": "device_offline",
        "message_zh": "设备离线：bus:display@11（offline）",
        "message_en": "Device offline: bus:display@11 (offline)",
    }
    restored = Engine(config)
    restored.load_snapshot(engine.to_snapshot())
    assert restored.alerts == engine.alerts
    restored.sync_alerts(clock.now, current)
    assert restored.drain() == []  # not announced a second time after a restart
