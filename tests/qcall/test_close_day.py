"""A supervisor closes the day early: waiting tickets expire, windows close, nothing more today."""

from __future__ import annotations

import pytest

from qcall.engine import Engine
from qcall.errors import Conflict, ServiceUnavailable
from qcall.model import Outcome, TicketState
from tests.common import Clock, make_config


def test_closing_the_day_expires_the_line_closes_windows_and_stops_issuing_until_tomorrow() -> None:
    config = make_config()
    engine, clock = Engine(config), Clock()
    waiting = engine.issue(clock.now, "social")
    engine.open_window(clock.now, 1, "c1")
    engine.open_window(clock.now, 2, "c2")
    called = engine.call_next(clock.now, 2, "c2")
    assert called is not None
    day = clock.now.date()
    with pytest.raises(Conflict) as busy:  # a resident is at window 2
        engine.close_day(clock.now, day, "sup1")
    assert busy.value.code == "windows_busy"
    engine.finish(clock.now, 2, "c2", Outcome.DONE)
    other = engine.issue(clock.now, "medical")
    with pytest.raises(Conflict) as stale:  # a page left open since yesterday
        engine.close_day(clock.now, day.replace(day=day.day - 1), "sup1")
    assert stale.value.code == "not_today"
    expired = engine.close_day(clock.now, day, "sup1")
    assert sorted(expired) == sorted([other.id])
    assert engine.tickets[other.id].state is TicketState.EXPIRED
    assert engine.tickets[waiting.id].state is TicketState.DONE
    assert all(w.staff is None for w in engine.windows.values())
    with pytest.raises(ServiceUnavailable):
        engine.issue(clock.now, "social")
    with pytest.raises(Conflict) as again:
        engine.open_window(clock.now, 1, "c1")
    assert again.value.code == "day_closed"
    with pytest.raises(Conflict):
        engine.close_day(clock.now, day, "sup1")
    events = engine.drain()
    closes = [e for e in events if str(e.type) == "day.closed"]
    assert len(closes) == 1
    assert closes[0].data["staff"] == "sup1"
    # A snapshot and a replay keep the day closed; tomorrow opens normally, closed once.
    snap = Engine(config)
    snap.load_snapshot(engine.to_snapshot())
    replayed = Engine(config)
    for event in events:
        replayed.replay(event)
    for copy in (engine, snap, replayed):
        assert copy.day_closed
        with pytest.raises(ServiceUnavailable):
            copy.issue(clock.now, "social")
    clock.advance(days=1)
    engine.tick(clock.now)
    assert [str(e.type) for e in engine.drain()] == ["day.opened"]
    assert engine.issue(clock.now, "social").number == "A001"
