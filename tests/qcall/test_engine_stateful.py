"""Stateful property test of the queue engine: random command sequences keep every invariant.

Illegal commands are attempted on purpose; they must raise a QcallError and change nothing.
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import json
from collections import Counter
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from qcall.config import CenterConfig
from qcall.engine import Engine, WindowRun
from qcall.errors import QcallError
from qcall.events import Event, EventType
from qcall.model import ACTIVE_STATES, Outcome, Position, TicketState
from tests.common import SHANGHAI, Clock, make_config

T = TypeVar("T")

STAFF = ("s1", "s2", "s3", "s4", "s5")
SERVICES = ("social", "medical", "housing", "pickup")
DAY_ROLL = (EventType.DAY_CLOSED, EventType.DAY_OPENED)
DAY_EVENTS = frozenset(DAY_ROLL)
REPLAY_EVERY = 10


def has_current(window: WindowRun) -> bool:
    """Whether a window has a called or serving ticket."""
    return window.current is not None


NEEDS_CURRENT = frozenset({"start", "finish", "transfer", "hold", "no_show", "recall"})
# Commands with their weights (how many times each is listed).
OPS = [
    *["issue"] * 8,
    *["call_next"] * 6,
    *["start"] * 4,
    *["advance"] * 4,
    *["finish"] * 3,
    *["transfer"] * 3,
    *["hold", "callback", "call_number", "rate", "case_ready"] * 2,
    *["no_show", "reactivate"] * 2,
    *["recall", "cancel", "pause", "resume"],
    *["close_window", "open_window", "next_day", "inquiry", "device"],
]


def new_engine(config: CenterConfig) -> Engine:
    tokens = itertools.count(1)
    codes = itertools.count(1)
    return Engine(
        config,
        token_factory=lambda: f"tok{next(tokens)}",
        code_factory=lambda: f"{next(codes):06d}",
    )


def frozen(engine: Engine) -> tuple[Any, ...]:
    return (copy.deepcopy(engine.state()), copy.deepcopy(engine.to_snapshot()), engine.seq)


def replayed(config: CenterConfig, log: list[Event]) -> Engine:
    engine = Engine(config)
    for event in log:
        engine.replay(event)
    return engine


def restored(config: CenterConfig, engine: Engine) -> Engine:
    copy_ = new_engine(config)
    copy_.load_snapshot(json.loads(json.dumps(engine.to_snapshot())))
    return copy_


def drain_calls(engine: Engine, now: dt.datetime) -> list[str | None]:
    """Call every open window empty, in a fixed order; return the ids called."""
    out: list[str | None] = []
    engine.tick(now)
    for number in sorted(engine.windows):
        staff = engine.windows[number].staff
        if staff is None:
            continue
        if engine.windows[number].paused:
            engine.resume(now, number, staff)
        for _ in range(200):
            ticket = engine.call_next(now, number, staff)
            out.append(ticket.id if ticket else None)
            if ticket is None:
                break
    return out


class EngineMachine(RuleBasedStateMachine):
    """Drives one engine with random commands and checks it after every step."""

    config: ClassVar[CenterConfig] = make_config()

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.engine = new_engine(self.config)
        self.log: list[Event] = []
        self.steps = 0

    # ------------------------------------------------------------------ plumbing

    def attempt(self, op: str, action: Callable[[], T]) -> T | None:
        """Run a command; an illegal one must raise QcallError and change nothing."""
        engine = self.engine
        rolls_over = engine.day != engine.local(self.clock()).date()
        first_day = engine.day is None
        before = frozen(engine)
        error: QcallError | None = None
        result: T | None = None
        try:
            result = action()
        except QcallError as err:
            error = err
        events = engine.drain()
        self.log.extend(events)
        if error is not None:
            assert error.message_zh.strip()
            assert error.message_en.strip()
            assert error.code
            if rolls_over:
                # The command closed yesterday and opened today before it was refused.
                assert events
                assert {e.type for e in events} <= DAY_EVENTS
            else:
                assert events == []
                assert frozen(engine) == before
        if rolls_over and op != "device":  # every command but device_state rolls the day
            rolled = [EventType.DAY_OPENED] if first_day else [*DAY_ROLL]
            assert [e.type for e in events[: len(rolled)]] == rolled
            self.open_the_hall([])  # the morning shift signs in
        return result

    @staticmethod
    def prefer(data: st.DataObject, likely: list[Any], others: list[Any], label: str) -> Any:
        """Draw mostly from ``likely`` (the values that make the command legal)."""
        # 0 (what hypothesis tries first and shrinks to) means the likely, legal choice.
        stray = data.draw(st.integers(0, 9), label=f"stray {label}") == 9
        return data.draw(st.sampled_from(others if stray or not likely else likely), label=label)

    def window_and_staff(
        self, data: st.DataObject, fits: Callable[[WindowRun], bool] = lambda w: True
    ) -> tuple[int, str]:
        """Draw a window, mostly an open one that ``fits``, and mostly its own staff."""
        engine = self.engine
        open_ = [n for n, w in engine.windows.items() if w.staff is not None]
        likely = [n for n in open_ if fits(engine.windows[n])] or open_
        number: int = self.prefer(data, likely, [1, 2, 3, 4, 5], "window")
        window = engine.windows.get(number)
        real = window.staff if window is not None and window.staff else f"s{number}"
        if data.draw(st.integers(0, 11), label="other staff") == 11:
            return number, data.draw(st.sampled_from(STAFF), label="staff")
        return number, real

    def has_callers(self, window: WindowRun) -> bool:
        """Whether someone waits whom this window may call."""
        served = self.engine.window_services(window.number)
        return not window.paused and any(
            t.state is TicketState.WAITING
            and t.service in served
            and t.pinned_window in (None, window.number)
            for t in self.engine.tickets.values()
        )

    def ticket_ref(self, data: st.DataObject, state: TicketState) -> str:
        tickets = self.engine.tickets.values()
        likely = sorted(t.id for t in tickets if t.state is state)
        ref: str = self.prefer(data, likely, [*sorted(t.id for t in tickets), "nope"], "ticket")
        return ref

    # ------------------------------------------------------------------ rules

    @initialize(waiting=st.lists(st.sampled_from(SERVICES[:3]), max_size=10))
    def open_the_hall(self, waiting: list[str]) -> None:
        for number in (1, 2, 3, 4):
            self.attempt(
                "open_window", lambda n=number: self.engine.open_window(self.clock(), n, f"s{n}")
            )
        for service in waiting:
            self.attempt("issue", lambda s=service: self.engine.issue(self.clock(), s))

    @rule(data=st.data(), op=st.sampled_from(OPS))
    def command(self, data: st.DataObject, op: str) -> None:
        """One command, chosen with the weights of OPS; mostly one that can succeed now.

        A single weighted rule (rather than one rule per command) keeps the hall busy: with
        equal odds, most steps would try to start or finish a ticket nobody has called.
        """
        engine = self.engine
        busy = any(w.current is not None for w in engine.windows.values())
        no_shows = any(t.state is TicketState.NO_SHOW for t in engine.tickets.values())
        if data.draw(st.integers(0, 4), label="retarget") != 4:
            if op in NEEDS_CURRENT and not busy:
                op = "call_next"
            elif op == "reactivate" and not no_shows:
                op = "no_show" if busy else "call_next"
        getattr(self, f"do_{op}")(data)

    # ------------------------------------------------------------------ time

    def do_advance(self, data: st.DataObject) -> None:
        self.clock.advance(seconds=data.draw(st.integers(0, 1200), label="seconds"))

    def do_next_day(self, data: st.DataObject) -> None:
        """Jump past midnight; half the time the staff sign in again at once."""
        hour = data.draw(st.integers(0, 23), label="hour")
        minute = data.draw(st.integers(0, 59), label="minute")
        day = self.clock().date() + dt.timedelta(days=1)
        self.clock.now = dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=SHANGHAI)
        if data.draw(st.booleans(), label="reopen"):
            engine = self.engine
            signed_in = sorted(n for n, w in engine.windows.items() if w.staff is not None)
            active = sorted(t.id for t in engine.tickets.values() if t.state in ACTIVE_STATES)
            engine.tick(self.clock())
            events = engine.drain()
            assert [e.type for e in events] == [EventType.DAY_CLOSED, EventType.DAY_OPENED]
            assert events[0].data["closed_windows"] == signed_in
            assert sorted(events[0].data["expired"]) == active
            assert engine.tickets == {}
            assert engine.counters == {}
            self.log.extend(events)
            self.open_the_hall([])

    # ------------------------------------------------------------------ issuing

    def do_issue(self, data: st.DataObject) -> None:
        service = data.draw(st.sampled_from(SERVICES), label="service")
        priority = data.draw(st.sampled_from([False, False, True]), label="priority")
        code = None
        if service == "pickup":
            cases = self.engine.cases.values()
            ready = sorted(c.pickup_code for c in cases if c.state == "ready")
            known = sorted(c.pickup_code for c in cases)
            code = self.prefer(data, ready, [*known, "000000"], "code")
        same_day = self.engine.day == self.engine.local(self.clock()).date()
        promised_ahead = self.engine.ahead_for_new(service, priority)
        ticket = self.attempt(
            "issue",
            lambda: self.engine.issue(self.clock(), service, priority=priority, case_code=code),
        )
        if ticket is not None:
            assert ticket.state is TicketState.WAITING
            assert ticket.service == service
            cfg = self.config.service(service)
            assert cfg is not None
            assert ticket.number.startswith(cfg.prefix)
            assert ticket.issued_at == self.clock()
            if same_day:  # what the kiosk shows before printing is what the ticket gets
                assert self.engine.ahead(ticket) == promised_ahead

    def do_cancel(self, data: st.DataObject) -> None:
        ref = self.ticket_ref(data, TicketState.WAITING)
        ticket = self.attempt("cancel", lambda: self.engine.cancel(self.clock(), ref))
        if ticket is not None:
            assert ticket.state is TicketState.CANCELLED

    def do_case_ready(self, data: st.DataObject) -> None:
        cases = self.engine.cases.values()
        open_ = sorted(c.id for c in cases if c.state == "open")
        case_id = self.prefer(data, open_, [*sorted(c.id for c in cases), "C0"], "case")
        case = self.attempt(
            "case_ready", lambda: self.engine.case_ready(self.clock(), case_id, "bo")
        )
        if case is not None:
            assert case.state == "ready"

    def do_inquiry(self, data: st.DataObject) -> None:
        topic = data.draw(st.sampled_from(["问路", "医保", " "]), label="topic")
        self.attempt("inquiry", lambda: self.engine.log_inquiry(self.clock(), "desk", topic))

    def do_device(self, data: st.DataObject) -> None:
        device = data.draw(st.sampled_from(["keypad:1", "printer"]), label="device")
        state = data.draw(st.sampled_from(["ok", "off"]), label="state")
        self.attempt("device", lambda: self.engine.device_state(self.clock(), device, state))

    # ------------------------------------------------------------------ windows

    def do_open_window(self, data: st.DataObject) -> None:
        closed = [n for n, w in self.engine.windows.items() if w.staff is None]
        number: int = self.prefer(data, closed, [1, 2, 3, 4, 5], "window")
        staff: str = self.prefer(data, [f"s{number}"], list(STAFF), "staff")
        if self.attempt(
            "open_window", lambda: self.engine.open_window(self.clock(), number, staff)
        ):
            assert self.engine.windows[number].staff == staff

    def do_close_window(self, data: st.DataObject) -> None:
        number, staff = self.window_and_staff(data)
        held = list(self.engine.windows[number].held) if number in self.engine.windows else []
        if self.attempt(
            "close_window", lambda: self.engine.close_window(self.clock(), number, staff)
        ):
            assert self.engine.windows[number].staff is None
            for ticket_id in held:
                ticket = self.engine.tickets.get(ticket_id)
                assert ticket is None or ticket.state is TicketState.WAITING

    def do_pause(self, data: st.DataObject) -> None:
        number, staff = self.window_and_staff(data, lambda w: not w.paused)
        if self.attempt("pause", lambda: self.engine.pause(self.clock(), number, staff, "b")):
            assert self.engine.windows[number].paused

    def do_resume(self, data: st.DataObject) -> None:
        number, staff = self.window_and_staff(data, lambda w: w.paused)
        if self.attempt("resume", lambda: self.engine.resume(self.clock(), number, staff)):
            assert not self.engine.windows[number].paused

    # ------------------------------------------------------------------ calling

    def do_call_next(self, data: st.DataObject) -> None:
        number, staff = self.window_and_staff(data, self.has_callers)
        ticket = self.attempt(
            "call_next", lambda: self.engine.call_next(self.clock(), number, staff)
        )
        if ticket is not None:
            assert ticket.state is TicketState.CALLED
            assert self.engine.windows[number].current == ticket.id
            assert ticket.service in self.engine.window_services(number)

    def do_call_number(self, data: st.DataObject) -> None:
        number, staff = self.window_and_staff(data, lambda w: not w.paused)
        engine = self.engine
        waiting = [n for n, t in engine.by_number.items() if engine.tickets[t].state == "waiting"]
        ref = self.prefer(data, sorted(waiting), [*sorted(engine.by_number), "Z999"], "number")
        ticket = self.attempt(
            "call_number", lambda: self.engine.call_number(self.clock(), number, staff, ref)
        )
        if ticket is not None:
            assert ticket.number == ref
            assert self.engine.windows[number].current == ticket.id

    def do_recall(self, data: st.DataObject) -> None:
        number, staff = self.window_and_staff(data, has_current)
        ticket = self.attempt("recall", lambda: self.engine.recall(self.clock(), number, staff))
        if ticket is not None:
            assert ticket.recalls >= 1

    def do_start(self, data: st.DataObject) -> None:
        number, staff = self.window_and_staff(data, has_current)
        ticket = self.attempt("start", lambda: self.engine.start(self.clock(), number, staff))
        if ticket is not None:
            assert ticket.state is TicketState.SERVING

    def do_no_show(self, data: st.DataObject) -> None:
        number, staff = self.window_and_staff(data, has_current)
        ticket = self.attempt("no_show", lambda: self.engine.no_show(self.clock(), number, staff))
        if ticket is not None:
            assert ticket.state is TicketState.NO_SHOW

    def do_reactivate(self, data: st.DataObject) -> None:
        ref = self.ticket_ref(data, TicketState.NO_SHOW)
        position = data.draw(st.sampled_from(Position), label="position")
        ticket = self.attempt(
            "reactivate", lambda: self.engine.reactivate(self.clock(), ref, position)
        )
        if ticket is not None:
            assert ticket.state is TicketState.WAITING
            assert ticket.front is (position is Position.FIRST)

    def do_hold(self, data: st.DataObject) -> None:
        number, staff = self.window_and_staff(data, has_current)
        ticket = self.attempt("hold", lambda: self.engine.hold(self.clock(), number, staff))
        if ticket is not None:
            assert ticket.id in self.engine.windows[number].held

    def do_callback(self, data: st.DataObject) -> None:
        number, staff = self.window_and_staff(data, lambda w: bool(w.held) and not w.paused)
        held = list(self.engine.windows[number].held) if number in self.engine.windows else []
        numbers = [self.engine.tickets[t].number for t in held]
        ref = self.prefer(data, held + numbers, [*sorted(self.engine.by_number), "Z999"], "ref")
        ticket = self.attempt(
            "callback", lambda: self.engine.callback(self.clock(), number, staff, ref)
        )
        if ticket is not None:
            assert ticket.state is TicketState.CALLED
            assert ticket.id not in self.engine.windows[number].held

    def do_transfer(self, data: st.DataObject) -> None:
        number, staff = self.window_and_staff(data, has_current)
        to_service, to_window = data.draw(
            st.sampled_from(
                [
                    *[(s, None) for s in SERVICES[:3]],
                    *[(None, w) for w in (1, 2, 1, 2, 3)],
                    ("pickup", None),
                    ("nope", None),
                    (None, 4),
                    (None, 5),
                    ("social", 2),
                    (None, None),
                ]
            ),
            label="goal",
        )
        position = data.draw(st.sampled_from(Position), label="position")
        new = self.attempt(
            "transfer",
            lambda: self.engine.transfer(
                self.clock(),
                number,
                staff,
                service_id=to_service,
                window_number=to_window,
                position=position,
            ),
        )
        if new is not None:
            assert new.origin is not None
            old = self.engine.tickets[new.origin]
            assert old.state is TicketState.TRANSFERRED
            assert new.state is TicketState.WAITING
            assert new.number == old.number
            assert new.issued_at == old.issued_at
            assert new.id.split(".")[0] == old.id.split(".")[0]
            assert new.pinned_window == to_window
            assert new.front is (position is Position.FIRST)

    def do_finish(self, data: st.DataObject) -> None:
        number, staff = self.window_and_staff(data, has_current)
        outcome = data.draw(st.sampled_from(Outcome), label="outcome")
        promise = data.draw(st.sampled_from([None, None, None, -1, 0, 3]), label="promise")
        promised = None if promise is None else self.clock().date() + dt.timedelta(days=promise)
        ticket = self.attempt(
            "finish", lambda: self.engine.finish(self.clock(), number, staff, outcome, promised)
        )
        if ticket is not None:
            assert ticket.state == str(outcome)
            assert self.engine.windows[number].last_finished == ticket.id
            if outcome is Outcome.BACK_OFFICE:
                assert ticket.case_id in self.engine.cases

    def do_rate(self, data: st.DataObject) -> None:
        number, staff_ = self.window_and_staff(data, lambda w: w.last_finished is not None)
        staff = data.draw(st.sampled_from([None, staff_]), label="pad")
        score = data.draw(st.integers(0, 6), label="score")
        ticket = self.attempt("rate", lambda: self.engine.rate(self.clock(), number, staff, score))
        if ticket is not None:
            assert 1 <= score <= 5
            assert ticket.rating == score

    # ------------------------------------------------------------------ invariants

    @invariant()
    def windows_and_current_tickets(self) -> None:
        engine = self.engine
        currents = [w.current for w in engine.windows.values() if w.current is not None]
        assert len(currents) == len(set(currents)), "a ticket is current at two windows"
        for number, window in engine.windows.items():
            if window.staff is None:
                assert window.current is None
                assert window.held == []
                assert not window.paused
            if window.current is not None:
                ticket = engine.tickets[window.current]
                assert ticket.state in (TicketState.CALLED, TicketState.SERVING)
                assert ticket.window == number
                assert not window.paused
        in_service = [
            t.id
            for t in engine.tickets.values()
            if t.state in (TicketState.CALLED, TicketState.SERVING)
        ]
        assert sorted(in_service) == sorted(currents)

    @invariant()
    def held_tickets(self) -> None:
        engine = self.engine
        held_at = Counter(t for w in engine.windows.values() for t in w.held)
        assert all(n == 1 for n in held_at.values()), "a ticket is held twice"
        held = {t.id for t in engine.tickets.values() if t.state is TicketState.HELD}
        assert set(held_at) == held
        for window in engine.windows.values():
            for ticket_id in window.held:
                assert engine.tickets[ticket_id].window == window.number

    @invariant()
    def numbers(self) -> None:
        engine = self.engine
        originals = [t for t in engine.tickets.values() if t.origin is None]
        numbers = [t.number for t in originals]
        assert len(numbers) == len(set(numbers)), "a number was issued twice today"
        for prefix in {n.rstrip("0123456789") for n in numbers}:
            seqs = sorted(
                int(n[len(prefix) :]) for n in numbers if n.rstrip("0123456789") == prefix
            )
            assert seqs == list(range(1, len(seqs) + 1)), "numbers have a gap"
            assert engine.counters[prefix] == len(seqs)
        for ticket in engine.tickets.values():
            if ticket.origin is not None:
                origin = engine.tickets[ticket.origin]
                assert ticket.number == origin.number
                assert origin.state is TicketState.TRANSFERRED
                assert origin.transferred_to == ticket.id
            if engine.day is not None:
                assert ticket.id.startswith(f"{engine.day:%Y%m%d}-{ticket.number}")
        for number, ticket_id in engine.by_number.items():
            assert engine.tickets[ticket_id].number == number
            assert engine.tickets[ticket_id].transferred_to is None

    @invariant()
    def lines(self) -> None:
        engine = self.engine
        in_lines = Counter(t.id for line in engine._lines.values() for t in line)
        in_lines.update(t.id for line in engine._pinned.values() for t in line)
        waiting = [t for t in engine.tickets.values() if t.state is TicketState.WAITING]
        assert dict(in_lines) == dict.fromkeys((t.id for t in waiting), 1)
        for service in SERVICES:
            expected = sum(1 for t in waiting if t.service == service)
            assert engine.waiting_count(service) == expected
            assert engine.state()["waiting"][service] == expected
        for ticket in waiting:
            assert 0 <= engine.ahead(ticket) < len(waiting)
            assert engine.estimated_wait_s(ticket.service, engine.ahead(ticket)) >= 0
        for ticket in engine.tickets.values():
            assert ticket.state in TicketState
            if ticket.state not in ACTIVE_STATES:
                assert ticket.finished_at is not None

    @invariant()
    def lines_keep_snapshot_order(self) -> None:
        """Each line is in (front, queued_at, order) order: what load_snapshot rebuilds."""
        engine = self.engine
        for line in [*engine._lines.values(), *engine._pinned.values()]:
            entries = list(line)
            assert entries == sorted(entries, key=lambda t: (not t.front, t.queued_at, t.order))

    @invariant()
    def log_is_gap_free(self) -> None:
        assert self.engine.drain() == []
        assert self.engine.seq == len(self.log)
        assert [e.seq for e in self.log] == list(range(1, len(self.log) + 1))

    @invariant()
    def replay_matches(self) -> None:
        self.steps += 1
        if self.steps % REPLAY_EVERY:
            return
        assert replayed(self.config, self.log).state() == self.engine.state()

    def teardown(self) -> None:
        engine = self.engine
        replica = replayed(self.config, self.log)
        assert replica.state() == engine.state()
        assert replica.to_snapshot() == engine.to_snapshot()
        copy_ = restored(self.config, engine)
        assert copy_.state() == engine.state()
        assert copy_.to_snapshot() == engine.to_snapshot()
        # Numbers and tracking links lead to the same (newest) entry after a restart.
        assert copy_.by_number == engine.by_number
        for ticket in engine.tickets.values():
            token = ticket.track_token
            assert copy_.ticket_by_token(token).id == engine.ticket_by_token(token).id
        # All three call the waiting tickets in the same order.
        now = self.clock()
        calls = drain_calls(engine, now)
        assert drain_calls(replica, now) == calls
        assert drain_calls(copy_, now) == calls
        assert replica.to_snapshot() == engine.to_snapshot()
        assert copy_.to_snapshot() == engine.to_snapshot()


class RatioMachine(EngineMachine):
    config = make_config(policy={"mode": "ratio", "ratio": 2})


class FifoMachine(EngineMachine):
    config = make_config(policy={"mode": "fifo"})


COMMON = settings(
    deadline=None,
    stateful_step_count=50,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

TestStrictEngine = EngineMachine.TestCase
TestStrictEngine.settings = settings(COMMON, max_examples=60)
TestRatioEngine = RatioMachine.TestCase
TestRatioEngine.settings = settings(COMMON, max_examples=30)
TestFifoEngine = FifoMachine.TestCase
TestFifoEngine.settings = settings(COMMON, max_examples=30)
