"""Calls are serialized: windows calling at the same instant never get the same ticket."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter
from typing import Final

import pytest

from qcall.client import QcallApiError, QcallClient
from tests.functional.conftest import CLERKS, Connect, waiting_total

TICKETS: Final = 200
WINDOWS: Final = (1, 2, 3, 4, 5, 6)
# Intake services every comprehensive window serves, each with a daily cap above its share.
SERVICES: Final = (
    "social_card",
    "flexible_employment",
    "unemployment_registration",
    "resident_medical_insurance",
    "medical_reimbursement",
    "senior_allowance",
    "union_member_service",
    "birth_registration",
)
# Every window calls once per round; with 200 tickets over 6 windows, 34 rounds empty the hall.
MAX_ROUNDS: Final = TICKETS // len(WINDOWS) + 10
# Reading back a few hundred logged events takes milliseconds; this bounds a hung stream.
STREAM_TIMEOUT_S: Final = 10.0


async def test_windows_calling_at_once_never_share_a_ticket(
    connect: Connect, kiosk: QcallClient, display: QcallClient
) -> None:
    clerks = {n: await connect(staff=CLERKS[n - 1]) for n in WINDOWS}
    await asyncio.gather(*(clerks[n].open_window(n) for n in WINDOWS))
    services = itertools.islice(itertools.cycle(SERVICES), TICKETS)
    issued = await asyncio.gather(*(kiosk.issue_ticket(s) for s in services))
    assert len({t["id"] for t in issued}) == TICKETS
    assert len({t["number"] for t in issued}) == TICKETS
    assert waiting_total(await display.state()) == TICKETS

    base = (await display.state())["seq"]
    calls: list[tuple[int, str]] = []
    for _round in range(MAX_ROUNDS):
        answers = await asyncio.gather(*(clerks[n].call_next(n) for n in WINDOWS))
        called = [(n, t["id"]) for n, t in zip(WINDOWS, answers, strict=True) if t is not None]
        calls += called
        if not called:
            break
    else:
        pytest.fail(f"the hall was not emptied in {MAX_ROUNDS} rounds")

    per_ticket = Counter(ticket_id for _n, ticket_id in calls)
    assert per_ticket.most_common(1)[0][1] == 1, "a ticket was called twice"
    assert set(per_ticket) == {t["id"] for t in issued}
    assert {n for n, _id in calls} == set(WINDOWS)  # every window took part
    state = await display.state()
    assert waiting_total(state) == 0
    assert all(w["current"] is None for w in state["windows"])
    # The event log agrees: one ticket.called per ticket, at the window that got it.
    logged = []
    async with contextlib.aclosing(display.events(after=base)) as stream:
        async with asyncio.timeout(STREAM_TIMEOUT_S):
            async for event in stream:
                if event["type"] == "ticket.called":
                    logged.append((event["data"]["window"], event["data"]["id"]))
                if event["seq"] == state["seq"]:
                    break
    assert sorted(logged) == sorted(calls)
    sample = await asyncio.gather(*(kiosk.ticket(t["id"]) for t in issued[:: TICKETS // 20]))
    assert {t["state"] for t in sample} == {"done"}
    await asyncio.gather(*(clerks[n].close_window(n) for n in WINDOWS))


async def test_two_windows_calling_the_same_number_one_wins(
    connect: Connect, kiosk: QcallClient, display: QcallClient
) -> None:
    first, second = await connect(staff="c1"), await connect(staff="c2")
    await first.open_window(1)
    await second.open_window(2)
    for _round in range(20):
        ticket = await kiosk.issue_ticket("social_card")
        results = await asyncio.gather(
            first.call_number(1, ticket["number"]),
            second.call_number(2, ticket["number"]),
            return_exceptions=True,
        )
        won = [r for r in results if isinstance(r, dict)]
        lost = [r for r in results if isinstance(r, QcallApiError)]
        assert len(won) == 1, results
        assert len(lost) == 1, results
        assert (lost[0].status, lost[0].code) == (409, "invalid_transition")
        assert (await kiosk.ticket(ticket["id"]))["window"] == won[0]["window"]
    await first.call_next(1)
    await second.call_next(2)
    assert waiting_total(await display.state()) == 0
    await first.close_window(1)
    await second.close_window(2)
