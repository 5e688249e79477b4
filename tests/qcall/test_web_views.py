"""View models of the staff pages, from a real engine on a hand-advanced clock (no browser)."""

from __future__ import annotations

import datetime as dt

from qcall.engine import Engine
from qcall.model import Outcome
from qcall.web import views
from tests.common import Clock, make_config


def _day() -> tuple[Engine, Clock]:
    clock = Clock()
    engine = Engine(make_config())
    engine.tick(clock())
    return engine, clock


def _enabled(view: views.PanelView) -> set[str]:
    return {a.key for a in view.actions if a.enabled}


def test_buttons_follow_the_window_state() -> None:
    engine, clock = _day()
    config = engine.config
    engine.open_window(clock(), 1, "c1")
    assert _enabled(views.panel_view(engine, config, 1, "c1")) == {"pause"}
    first = engine.issue(clock(), "social")
    view = views.panel_view(engine, config, 1, "c1")
    assert _enabled(view) == {"next", "pause", "call"}
    assert view.waiting_total == 1
    assert [(w.service.id, w.waiting) for w in view.waiting] == [("social", 1)]
    engine.call_next(clock.advance(minutes=4), 1, "c1")
    view = views.panel_view(engine, config, 1, "c1")
    assert _enabled(view) == {"recall", "no_show", "transfer", "hold", "finish", "back_office"}
    assert view.current is not None
    assert view.current.number == first.number
    assert view.current.waited_s == 240
    assert view.current.notice.materials == ("身份证",)
    engine.hold(clock(), 1, "c1")
    view = views.panel_view(engine, config, 1, "c1")
    assert [t.number for t in view.held] == [first.number]
    assert view.held[0].action.body == {"ticket": first.id}
    assert _enabled(view) == {"pause", "callback"}
    engine.callback(clock(), 1, "c1", first.id)
    engine.finish(clock.advance(minutes=6), 1, "c1", Outcome.DONE)
    view = views.panel_view(engine, config, 1, "c1")
    assert view.rating_pending == first.number
    assert _enabled(view) == {"pause", "rating"}
    engine.pause(clock(), 1, "c1", "lunch")
    view = views.panel_view(engine, config, 1, "c1")
    assert _enabled(view) == {"resume", "rating"}
    assert view.pause_reason == "lunch"
    assert view.state_label == "Paused"


def test_back_office_only_for_intake_and_its_default_date_skips_weekends() -> None:
    engine, clock = _day()  # Thursday 2026-11-26; the service promises 3 working days
    engine.open_window(clock(), 4, "c4")
    engine.open_window(clock(), 1, "c1")
    engine.issue(clock(), "social")
    engine.call_next(clock(), 1, "c1")
    view = views.panel_view(engine, engine.config, 1, "c1")
    assert view.default_promised == "2026-12-01"
    case = engine.cases  # nothing yet
    assert not case
    engine.finish(clock(), 1, "c1", Outcome.BACK_OFFICE)
    (opened,) = engine.cases.values()
    assert opened.promised_date.isoformat() == view.default_promised


def test_no_shows_of_this_window_are_listed_with_back_in_line() -> None:
    engine, clock = _day()
    engine.open_window(clock(), 1, "c1")
    engine.open_window(clock(), 2, "c2")
    mine = engine.issue(clock(), "social")
    theirs = engine.issue(clock(), "medical")
    engine.call_next(clock(), 1, "c1")
    engine.no_show(clock(), 1, "c1")
    engine.call_number(clock(), 2, "c2", theirs.number)
    engine.no_show(clock(), 2, "c2")
    view = views.panel_view(engine, engine.config, 1, "c1")
    assert [t.number for t in view.no_shows] == [mine.number]
    assert view.no_shows[0].action.url == f"/web/api/v1/tickets/{mine.id}/reactivate"
    assert view.figures.no_show == 1


def test_staff_figures_count_only_that_clerks_tickets() -> None:
    engine, clock = _day()
    engine.open_window(clock(), 1, "c1")
    engine.open_window(clock(), 2, "c2")
    for _ in range(3):
        engine.issue(clock(), "social")
    engine.call_next(clock(), 1, "c1")
    engine.finish(clock.advance(minutes=2), 1, "c1", Outcome.DONE)
    engine.rate(clock(), 1, "c1", 4)
    engine.call_next(clock(), 1, "c1")
    engine.finish(clock.advance(minutes=4), 1, "c1", Outcome.BACK_OFFICE)
    engine.call_next(clock(), 2, "c2")
    engine.finish(clock.advance(minutes=9), 2, "c2", Outcome.DONE)
    mine = views.staff_figures(engine, "c1")
    assert (mine.finished, mine.done, mine.back_office) == (2, 1, 1)
    assert mine.mean_handle_s == 180
    assert (mine.rated, mine.mean_rating) == (1, 4.0)
    assert views.staff_figures(engine, "c2").mean_handle_s == 540


def test_back_office_lists_overdue_cases_first_and_searches_by_code() -> None:
    engine, clock = _day()
    engine.open_window(clock(), 1, "c1")
    numbers = []
    for promised in (dt.date(2026, 12, 20), dt.date(2026, 11, 27), dt.date(2026, 12, 1)):
        ticket = engine.issue(clock(), "social")
        numbers.append(ticket.number)
        engine.call_next(clock(), 1, "c1")
        engine.finish(clock(), 1, "c1", Outcome.BACK_OFFICE, promised)
    today = dt.date(2026, 12, 3)
    view = views.backoffice_view(engine, engine.config, today, {"c1": "张三"})
    rows = view.open_cases
    assert [r.number for r in rows] == [numbers[1], numbers[2], numbers[0]]
    assert [(r.overdue, r.days_late) for r in rows] == [(True, 6), (True, 2), (False, 0)]
    assert view.overdue_count == 2
    assert rows[0].staff_name == "张三"
    code = rows[2].pickup_code
    found = views.backoffice_view(engine, engine.config, today, {}, code)
    assert [r.number for r in found.open_cases] == [numbers[0]]
    engine.case_ready(clock(), rows[0].id, "c9")
    after = views.backoffice_view(engine, engine.config, today, {})
    assert [r.number for r in after.ready_cases] == [numbers[1]]
    assert after.ready_cases[0].ready_action is None
    assert after.overdue_count == 1


def test_lookup_finds_tickets_by_number_and_cases_by_pickup_code() -> None:
    engine, clock = _day()
    engine.open_window(clock(), 1, "c1")
    waiting = engine.issue(clock(), "social")
    engine.issue(clock(), "social")
    second = engine.issue(clock(), "social")
    result = views.lookup(engine, engine.config, f" {second.number.lower()} ")
    assert (result.kind, result.number, result.ahead) == ("ticket", second.number, 2)
    assert result.state_label == "Waiting"
    assert not result.priority
    engine.call_next(clock(), 1, "c1")
    engine.finish(clock(), 1, "c1", Outcome.BACK_OFFICE)
    (case,) = engine.cases.values()
    found = views.lookup(engine, engine.config, case.pickup_code)
    assert (found.kind, found.number, found.pickup_code_ok) == ("case", waiting.number, False)
    assert views.lookup(engine, engine.config, "Z999").kind == "none"


def test_window_choices_show_who_may_open_what() -> None:
    engine, clock = _day()
    engine.open_window(clock(), 2, "c2")
    choices = {c.number: c for c in views.window_choices(engine, engine.config, "c1")}
    assert choices[1].can_open
    assert not choices[2].can_open
    assert choices[2].state_label == "Open, idle"
    assert (choices[1].all_intake, choices[1].services) == (True, ())
    assert [s.id for s in choices[2].services] == ["medical"]
    assert (choices[3].all_intake, [s.id for s in choices[3].services]) == (False, ["housing"])
    assert [s.id for s in choices[4].services] == ["pickup"]
    assert views.window_of(engine, "c2") == 2
    assert views.window_of(engine, "c1") is None
    mine = {c.number: c for c in views.window_choices(engine, engine.config, "c2")}
    assert mine[2].mine
    assert mine[2].can_open


def test_the_desk_inquiry_keeps_its_follow_up() -> None:
    engine, clock = _day()
    event = engine.log_inquiry(
        clock(), "c5", "居住证续签", note="身份证", referred_to="7 号窗口", follow_up=" 周一回访 "
    )
    assert event.data["follow_up"] == "周一回访"
    assert "follow_up" not in engine.log_inquiry(clock(), "c5", "问路").data
