"""A supervisor moves a waiting ticket to another line (a transfer without a window)."""

from __future__ import annotations

import pytest

from qcall.engine import Engine
from qcall.errors import BadRequest, Conflict
from qcall.model import Position, TicketState
from tests.common import Clock, make_config


def test_a_waiting_ticket_moves_to_another_service_or_window_and_keeps_its_number() -> None:
    engine, clock = Engine(make_config()), Clock()
    first = engine.issue(clock.now, "social")
    engine.issue(clock.now, "medical")
    moved = engine.move(clock.now, first.id, "sup1", service_id="medical", position=Position.FIRST)
    assert (moved.number, moved.service, moved.id) == (first.number, "medical", f"{first.id}.1")
    assert engine.tickets[first.id].state is TicketState.TRANSFERRED
    assert engine.waiting_count("social") == 0
    assert engine.waiting_count("medical") == 2
    # At the front of its new line: window 2 (medical first) calls it next.
    engine.open_window(clock.now, 2, "c2")
    assert engine.call_next(clock.now, 2, "c2") is not None
    assert engine.windows[2].current == moved.id
    # Pinned to a window: only that window calls it.
    again = engine.issue(clock.now, "housing")
    pinned = engine.move(clock.now, again.id, "sup1", window_number=3)
    assert pinned.pinned_window == 3
    assert engine.callable_count(3) == 1
    events = engine.drain()
    moves = [e.data for e in events if str(e.type) == "ticket.transferred"]
    assert [m["from_window"] for m in moves] == [None, None]
    assert moves[0]["staff"] == "sup1"
    # The log replays to the same state.
    replayed = Engine(make_config())
    for event in events:
        replayed.replay(event)
    assert replayed.waiting_count("medical") == engine.waiting_count("medical")
    assert replayed.callable_count(3) == 1


def test_a_move_that_cannot_be_is_refused_and_changes_nothing() -> None:
    engine, clock = Engine(make_config()), Clock()
    ticket = engine.issue(clock.now, "social")
    engine.drain()
    with pytest.raises(Conflict) as kind:
        engine.move(clock.now, ticket.id, "sup1", service_id="pickup")
    assert kind.value.code == "kind_mismatch"
    with pytest.raises(Conflict) as where:
        engine.move(clock.now, ticket.id, "sup1", window_number=3)  # housing only
    assert where.value.code == "not_served_here"
    with pytest.raises(BadRequest):
        engine.move(clock.now, ticket.id, "sup1")
    engine.open_window(clock.now, 1, "c1")
    engine.call_next(clock.now, 1, "c1")
    engine.drain()
    with pytest.raises(Conflict):  # called already: the clerk transfers it, not the supervisor
        engine.move(clock.now, ticket.id, "sup1", service_id="medical")
    assert engine.drain() == []
    assert engine.tickets[ticket.id].state is TicketState.CALLED
