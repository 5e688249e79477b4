"""The lobby model, fed stream messages by hand: pure, no pygame, no hub."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from display.model import FEATURE_MIN_S, FEATURE_QUEUE_MAX, FLASH_S, LobbyModel, parse_zone
from qcall.client import StreamMessage

T0 = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)


def snapshot(seq: int = 10, **extra: Any) -> StreamMessage:
    data: dict[str, Any] = {
        "seq": seq,
        "windows": [
            {"number": 1, "type": "comprehensive", "state": "idle", "current": None},
            {
                "number": 2,
                "type": "comprehensive",
                "state": "serving",
                "current": {"id": "t-a001", "number": "A001", "service": "social"},
            },
            {"number": 3, "type": "dedicated", "state": "paused", "current": None},
            {"number": 4, "type": "reply", "state": "closed", "current": None},
        ],
        "waiting": {"social": 4, "medical": 1},
        "recent_calls": [
            {"number": "A001", "window": 2, "at": T0.isoformat()},
            {"number": "B007", "window": 3, "at": T0.isoformat()},
        ],
        **extra,
    }
    return {"type": "snapshot", "seq": seq, "data": data}


def event(seq: int, kind: str, at: dt.datetime = T0, **data: Any) -> StreamMessage:
    return {"type": kind, "seq": seq, "at": at.isoformat(), "data": data}


def test_snapshot_shows_state_without_announcing_history() -> None:
    model = LobbyModel()
    assert model.apply(snapshot(), 0.0, T0) == []
    assert [w.state for w in model.shown_windows()] == ["idle", "serving", "paused", "closed"]
    assert model.windows[2].current == "A001"
    assert model.featured is not None
    assert model.featured.number == "A001"
    assert not model.flashing(0.0)  # history does not flash
    assert [c.number for c in model.recent] == ["A001", "B007"]
    assert model.seq == 10


def test_call_features_flashes_and_returns_the_call() -> None:
    model = LobbyModel()
    model.apply(snapshot(), 0.0, T0)
    calls = model.apply(
        event(11, "ticket.called", id="t-a002", number="A002", window=1, service="social"),
        100.0,
        T0,
    )
    assert [(c.number, c.window, c.seq, c.recall) for c in calls] == [("A002", 1, 11, False)]
    assert model.featured == calls[0]
    assert model.windows[1].state == "calling"
    assert model.flash_on(100.0)
    assert not model.flash_on(100.6)  # 1 Hz cycle: 2 changes a second
    assert model.flash_on(101.1)
    assert not model.flashing(100.0 + FLASH_S)
    assert model.waiting_stale


def test_calls_faster_than_the_feature_time_queue_in_order() -> None:
    model = LobbyModel()
    model.apply(snapshot(), 0.0, T0)
    model.apply(event(11, "ticket.called", id="x", number="A002", window=1), 100.0, T0)
    model.apply(event(12, "ticket.called", id="y", number="A003", window=4), 101.0, T0)
    assert model.featured is not None
    assert model.featured.number == "A002"
    assert [c.number for c in model.queued] == ["A003"]
    assert model.next_deadline(101.0) is not None
    assert not model.tick(100.0 + FEATURE_MIN_S - 0.1)
    assert model.tick(100.0 + FEATURE_MIN_S)
    assert model.featured.number == "A003"
    assert [c.number for c in model.recent][:2] == ["A003", "A002"]


def test_a_queued_call_its_window_has_moved_on_from_is_not_featured() -> None:
    model = LobbyModel()
    model.apply(snapshot(), 0.0, T0)
    model.apply(event(11, "ticket.called", id="x", number="A002", window=1), 100.0, T0)
    model.apply(event(12, "ticket.called", id="y", number="A003", window=4), 101.0, T0)
    model.apply(event(13, "ticket.no_show", id="y", number="A003", window=4), 102.0, T0)
    model.apply(event(14, "ticket.called", id="z", number="A004", window=4), 103.0, T0)
    assert [c.number for c in model.queued] == ["A003", "A004"]
    assert model.tick(100.0 + FEATURE_MIN_S)
    assert model.featured is not None
    assert model.featured.number == "A004"  # window 4 no longer has A003
    assert not model.queued
    assert [c.number for c in model.recent][:3] == ["A004", "A003", "A002"]  # history stays


def test_a_busy_hall_skips_the_oldest_waiting_feature() -> None:
    model = LobbyModel()
    model.apply(snapshot(), 0.0, T0)
    for k in range(8):
        model.apply(event(11 + k, "ticket.called", id=str(k), number=f"A{k}", window=1), 100.0, T0)
    assert model.featured is not None
    assert model.featured.number == "A0"
    assert [c.number for c in model.queued] == [f"A{k}" for k in range(8 - FEATURE_QUEUE_MAX, 8)]
    assert [c.number for c in model.recent][:3] == ["A7", "A6", "A5"]


def test_window_lifecycle_events() -> None:
    model = LobbyModel()
    model.apply(snapshot(), 0.0, T0)
    model.apply(event(11, "ticket.started", id="t-a001", number="A001", window=2), 1.0, T0)
    assert model.windows[2].state == "serving"
    model.apply(event(12, "ticket.finished", id="t-a001", number="A001", window=2), 1.0, T0)
    assert model.windows[2].state == "idle"
    assert model.windows[2].current is None
    model.apply(event(13, "window.paused", window=2, reason="break"), 1.0, T0)
    assert model.windows[2].state == "paused"
    model.apply(event(14, "window.resumed", window=2), 1.0, T0)
    model.apply(event(15, "window.opened", window=4, staff="c4"), 1.0, T0)
    assert model.windows[4].state == "idle"
    model.apply(event(16, "ticket.called", id="t-q001", number="Q001", window=4), 2.0, T0)
    model.apply(
        event(17, "ticket.transferred", id="t-q001", number="Q001", from_window=4, window=None),
        2.0,
        T0,
    )
    assert model.windows[4].current is None
    model.apply(event(18, "window.closed", window=4, staff="c4", requeued=[]), 2.0, T0)
    assert model.windows[4].state == "closed"
    recalled = model.apply(event(19, "ticket.recalled", id="q", number="A009", window=2), 3.0, T0)
    assert recalled[0].recall
    assert model.seq == 19


def test_zone_hides_other_windows_and_their_calls() -> None:
    model = LobbyModel(zone=frozenset({1, 2}))
    model.apply(snapshot(), 0.0, T0)
    assert [w.number for w in model.shown_windows()] == [1, 2]
    assert [c.number for c in model.recent] == ["A001"]
    assert model.apply(event(11, "ticket.called", id="z", number="C001", window=3), 1.0, T0) == []
    assert all(c.window in (1, 2) for c in model.recent)
    assert model.featured is not None
    assert model.featured.number == "A001"


def test_lag_is_measured_against_the_hub_clock_offset() -> None:
    model = LobbyModel()
    model.apply(snapshot(), 0.0, T0)
    skewed = T0 + dt.timedelta(minutes=3)  # the lobby PC's clock runs 3 minutes ahead
    live = model.apply(event(11, "ticket.called", T0, id="a", number="A1", window=1), 1.0, skewed)
    assert live[0].lag_s == 0.0
    later = skewed + dt.timedelta(seconds=95)  # replayed after a 95 s outage
    replayed = model.apply(
        event(12, "ticket.called", T0 + dt.timedelta(seconds=5), id="b", number="A2", window=1),
        2.0,
        later,
    )
    assert replayed[0].lag_s == pytest.approx(90.0)


def hall_settings(windows: list[dict[str, Any]]) -> Any:
    """Lobby settings of a small hall: two departments, three services."""
    return {
        "version": "v1",
        "center": {"name_zh": "中心", "name_en": "Center"},
        "timezone": "Asia/Shanghai",
        "windows": windows,
        "departments": [
            {"id": "hr", "name_zh": "人社", "name_en": "HR"},
            {"id": "md", "name_zh": "医保", "name_en": "Medical"},
        ],
        "services": [
            {"id": "social", "department": "hr"},
            {"id": "pension", "department": "hr"},
            {"id": "medical", "department": "md"},
        ],
        "lobby": {},
    }


def test_waiting_groups_by_department() -> None:
    model = LobbyModel()
    model.set_settings(hall_settings([{"number": 1, "type": "comprehensive"}]))
    model.set_waiting({"social": 4, "pension": 2, "medical": 1})
    assert model.waiting_groups() == [("人社", "HR", 6), ("医保", "Medical", 1)]
    version = model.version
    assert not model.set_waiting({"social": 4, "pension": 2, "medical": 1})
    assert model.version == version


def test_a_zone_counts_only_what_its_windows_serve() -> None:
    settings = hall_settings(
        [
            {"number": 1, "type": "comprehensive", "services": ["social", "pension"]},
            {"number": 2, "type": "comprehensive", "services": ["social"]},
            {"number": 3, "type": "dedicated", "services": ["medical"]},
        ]
    )
    waiting = {"social": 4, "pension": 2, "medical": 1}
    upstairs = LobbyModel(zone=frozenset({2}))
    upstairs.set_settings(settings)
    upstairs.set_waiting(waiting)
    assert upstairs.waiting_groups() == [("人社", "HR", 4)]
    medical = LobbyModel(zone=frozenset({3}))
    medical.set_settings(settings)
    medical.set_waiting(waiting)
    assert medical.waiting_groups() == [("医保", "Medical", 1)]
    hall = LobbyModel()
    hall.set_settings(settings)
    hall.set_waiting(waiting)
    assert hall.waiting_groups() == [("人社", "HR", 6), ("医保", "Medical", 1)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1-4,8", {1, 2, 3, 4, 8}), ("7", {7}), (" 2 , 5-6 ", {2, 5, 6})],
)
def test_parse_zone(text: str, expected: set[int]) -> None:
    assert parse_zone(text) == frozenset(expected)


@pytest.mark.parametrize("text", ["", "a", "4-1", "1,,2", "0", "1-x", "5-1000"])
def test_parse_zone_refuses_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_zone(text)


def test_a_closed_windows_call_is_not_featured() -> None:
    # After a restart: window 2 still serves A001 (featured); window 3's B007 is over.
    model = LobbyModel()
    model.apply(snapshot(), 0.0, T0)
    assert model.featured is not None
    assert model.featured.number == "A001"
    closed = snapshot(
        windows=[{"number": 2, "type": "comprehensive", "state": "closed", "current": None}]
    )
    model.apply(closed, 1.0, T0)
    assert model.featured is None  # the welcome card, not a call to a closed window
    assert [c.number for c in model.recent] == ["A001", "B007"]  # history stays
    # Live: the clerk closes the window right after calling; a queued call takes the card.
    model.apply(event(11, "window.opened", window=2, staff="c2"), 2.0, T0)
    model.apply(event(12, "ticket.called", id="a", number="A002", window=2), 3.0, T0)
    model.apply(event(13, "window.opened", window=1, staff="c1"), 3.5, T0)
    model.apply(event(14, "ticket.called", id="b", number="A003", window=1), 4.0, T0)
    assert model.featured is not None
    assert model.featured.number == "A002"
    model.apply(event(15, "window.closed", window=2, staff="c2", requeued=["a"]), 5.0, T0)
    assert model.featured is not None
    assert model.featured.number == "A003"
    assert model.featured_since == 5.0
    model.apply(event(16, "window.closed", window=1, staff="c1", requeued=["b"]), 6.0, T0)
    assert model.featured is None
