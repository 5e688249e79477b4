"""The tracking page: its view (what it says in each state) and the HTML (escaped, laid out)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from html.parser import HTMLParser
from typing import Any, Final

import pytest

from qcall.engine import Case, Ticket
from qcall.model import CaseState, TicketState
from qcall.web import render
from qcall.web.pages import REFRESH_S, TrackView, track_view

AT: Final = dt.datetime(2026, 11, 26, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=8)))


def _ticket(state: TicketState, **extra: Any) -> Ticket:
    return Ticket(
        id="t1", number="A001", service="social_card", priority=False, channel="kiosk",
        issued_at=AT, queued_at=AT, order=1, track_token="abc", state=state, window=4, **extra,
    )  # fmt: skip


def _case(state: CaseState) -> Case:
    return Case(
        id="c1", ticket="t1", number="A001", service="social_card", staff="c1", opened_at=AT,
        promised_date=dt.date(2026, 12, 3), pickup_code="482913", state=state,
    )  # fmt: skip


def _view(ticket: Ticket | None, *, case: Case | None = None, **extra: Any) -> TrackView:
    return track_view(
        lang="zh", center_zh="中心", center_en="Center", ticket=ticket, service_zh="业务",
        service_en="Service", ahead=3, wait_s=540, case=case, issued=AT, token="abc", **extra,
    )  # fmt: skip


def _said(view: TrackView) -> str:
    return " | ".join(f"{line.zh} / {line.en}" for line in view.lines)


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.parts.append(data.strip())


@pytest.mark.parametrize(
    ("state", "zh", "en", "refresh"),
    [
        (TicketState.WAITING, "前面还有 3 人等候", "3 ahead of you", True),
        (TicketState.CALLED, "请到 4 号窗口办理", "Please go to window 4 now", True),
        (TicketState.SERVING, "正在 4 号窗口办理", "Being served at window 4", True),
        (TicketState.HELD, "已挂起", "On hold", True),
        (TicketState.NO_SHOW, "已过号", "please ask at the desk", False),
        (TicketState.DONE, "已办结", "Finished", False),
        (TicketState.CANCELLED, "已取消", "Cancelled", False),
        (TicketState.EXPIRED, "号码已失效", "no longer valid", False),
    ],
)
def test_each_state_reads_in_both_languages(
    state: TicketState, zh: str, en: str, refresh: bool
) -> None:
    view = _view(_ticket(state))
    assert zh in _said(view)
    assert en in _said(view)
    assert view.refresh == (REFRESH_S if refresh else 0)
    assert (view.cancel_path == "/t/abc/cancel") is (state is TicketState.WAITING)


@pytest.mark.parametrize("case_state", [CaseState.OPEN, CaseState.READY])
def test_a_ticket_sent_to_the_back_office_shows_its_case(case_state: CaseState) -> None:
    view = _view(_ticket(TicketState.BACK_OFFICE, case_id="c1"), case=_case(case_state))
    said = _said(view)
    assert "已办结" not in said
    assert "Finished" not in said
    assert "取件码：482913 / Pickup code: 482913" in said
    assert "取号机" in said
    assert "kiosk" in said
    assert "reply window" in said
    if case_state is CaseState.OPEN:
        assert "已受理" in said
        assert "Accepted" in said
        assert "承诺办结日期：2026-12-03 / Promised by 2026-12-03" in said
    else:
        assert "已办好，可以领取 / Ready to collect" in said
    assert view.refresh == 0
    assert view.cancel_path is None


def test_a_collected_case_says_so() -> None:
    view = _view(_ticket(TicketState.BACK_OFFICE, case_id="c1"), case=_case(CaseState.PICKED_UP))
    assert _said(view) == "已领取 / Collected"


def test_cancelling_asks_first_and_stops_refreshing() -> None:
    view = _view(_ticket(TicketState.WAITING), confirming=True)
    assert view.confirming
    assert "确定不再排队了吗？ / Cancel your ticket?" in _said(view)
    assert view.refresh == 0  # the question must not vanish under the resident's thumb
    html = render("track.html", view=view)
    assert 'name="confirm" value="yes"' in html
    assert 'href="/t/abc"' in html
    # Once the ticket is called there is nothing left to cancel: no question.
    called = _view(_ticket(TicketState.CALLED), confirming=True)
    assert not called.confirming
    assert "请到 4 号窗口办理" in _said(called)


def test_everything_from_data_is_escaped() -> None:
    view = dataclasses.replace(
        _view(_ticket(TicketState.WAITING)),
        center_zh="<b>中心</b>",
        center_en="Center & Co",
        service_zh="业务<script>x()</script>",
    )
    html = render("track.html", view=view)
    assert "&lt;b&gt;中心&lt;/b&gt;" in html
    assert "Center &amp; Co" in html
    assert "<script>" not in html
    assert "&lt;script&gt;x()&lt;/script&gt;" in html


def test_the_page_shows_every_line_of_the_view() -> None:
    view = _view(_ticket(TicketState.BACK_OFFICE, case_id="c1"), case=_case(CaseState.OPEN))
    parser = _Text()
    parser.feed(render("track.html", view=view))
    for line in view.lines:
        assert line.zh in parser.parts
        assert line.en in parser.parts


def test_an_unknown_link() -> None:
    view = _view(None)
    assert not view.found
    html = render("track.html", view=view)
    assert "查询链接无效或已过期" in html
    assert "unknown or has expired" in html
