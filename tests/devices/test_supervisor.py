"""DeviceSupervisor: backoff, state callbacks, log levels, liveness, stop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from devices.base import DeviceState
from devices.supervisor import DeviceSupervisor, SupervisorPolicy, describe
from qcall.errors import DeviceTimeout, DeviceUnavailable

WAIT_S = 5.0
FAST = SupervisorPolicy(
    backoff_initial_s=0.01, backoff_max_s=0.04, probe_interval_s=0.02, probe_timeout_s=0.5
)


class FakeLink:
    """A link whose failures the test scripts."""

    def __init__(self, open_failures: int = 0) -> None:
        self.open_failures = open_failures
        self.opens = 0
        self.closes = 0
        self.check_error: Exception | None = None
        self.lost: asyncio.Future[None] | None = None

    async def open(self) -> None:
        self.opens += 1
        if self.open_failures:
            self.open_failures -= 1
            raise DeviceUnavailable("port missing", "端口不存在")
        self.lost = asyncio.get_running_loop().create_future()

    async def wait_closed(self) -> None:
        assert self.lost is not None
        await self.lost

    async def check(self) -> None:
        if self.check_error is not None:
            raise self.check_error

    async def close(self) -> None:
        self.closes += 1

    def drop(self, error: Exception | None = None) -> None:
        assert self.lost is not None
        if error is None:
            self.lost.set_result(None)
        else:
            self.lost.set_exception(error)


class States:
    def __init__(self) -> None:
        self.seen: list[tuple[str, DeviceState, str]] = []
        self.changed = asyncio.Event()

    def __call__(self, name: str, state: DeviceState, detail: str) -> None:
        self.seen.append((name, state, detail))
        self.changed.set()

    @property
    def states(self) -> list[DeviceState]:
        return [state for _, state, _ in self.seen]

    async def until(self, count: int) -> None:
        async with asyncio.timeout(WAIT_S):
            while len(self.seen) < count:
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
async def started() -> AsyncIterator[list[DeviceSupervisor]]:
    supervisors: list[DeviceSupervisor] = []
    yield supervisors
    for supervisor in supervisors:
        await supervisor.stop()


async def test_retries_with_backoff_and_logs_once(
    started: list[DeviceSupervisor], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="devices.supervisor")
    link, states = FakeLink(open_failures=3), States()
    supervisor = DeviceSupervisor("printer", link, on_state=states, policy=FAST)
    started.append(supervisor)
    await supervisor.start()
    await states.until(3)
    assert states.states == [DeviceState.CONNECTING, DeviceState.FAILED, DeviceState.READY]
    assert states.seen[1][2] == "port missing / 端口不存在"
    assert link.opens == 4
    levels = [r.levelno for r in caplog.records if r.name == "devices.supervisor"]
    assert levels == [logging.WARNING, logging.DEBUG, logging.DEBUG, logging.INFO]
    assert supervisor.state is DeviceState.READY
    assert supervisor.failures == 0


async def test_lost_link_is_reopened(started: list[DeviceSupervisor]) -> None:
    link, states = FakeLink(), States()
    supervisor = DeviceSupervisor("bus", link, on_state=states, policy=FAST)
    started.append(supervisor)
    await supervisor.start()
    await states.until(2)
    link.drop(DeviceUnavailable("cable pulled", "线缆拔出"))
    await states.until(4)
    assert states.states[2:] == [DeviceState.FAILED, DeviceState.READY]
    assert "cable pulled" in states.seen[2][2]
    assert link.closes == 1
    assert supervisor.reconnects == 1
    assert supervisor.diagnostics()["reconnects"] == 1


async def test_failed_liveness_check_reopens(started: list[DeviceSupervisor]) -> None:
    link, states = FakeLink(), States()
    supervisor = DeviceSupervisor("bus", link, on_state=states, policy=FAST)
    started.append(supervisor)
    await supervisor.start()
    await states.until(2)
    link.check_error = DeviceTimeout("no answer", "无应答")
    await states.until(3)
    link.check_error = None
    await states.until(4)
    assert states.states == [
        DeviceState.CONNECTING,
        DeviceState.READY,
        DeviceState.FAILED,
        DeviceState.READY,
    ]
    assert "liveness" in states.seen[2][2]


async def test_unexpected_errors_are_logged_and_retried(
    started: list[DeviceSupervisor], caplog: pytest.LogCaptureFixture
) -> None:
    class Buggy(FakeLink):
        async def open(self) -> None:
            if self.opens == 0:
                self.opens += 1
                raise RuntimeError("bug")
            await super().open()

    states = States()
    supervisor = DeviceSupervisor("x", Buggy(), on_state=states, policy=FAST)
    started.append(supervisor)
    await supervisor.start()
    await states.until(3)
    assert states.states[-1] is DeviceState.READY
    assert any(r.levelno == logging.ERROR and r.exc_info for r in caplog.records)


async def test_stop_closes_and_reports_disconnected(started: list[DeviceSupervisor]) -> None:
    link, states = FakeLink(), States()
    supervisor = DeviceSupervisor("bus", link, on_state=states, policy=FAST)
    await supervisor.start()
    await states.until(2)
    await supervisor.stop()
    assert states.states[-1] is DeviceState.DISCONNECTED
    assert link.closes == 1
    await supervisor.stop()
    assert len(states.seen) == 3


async def test_a_failing_state_callback_does_not_stop_supervision(
    started: list[DeviceSupervisor], caplog: pytest.LogCaptureFixture
) -> None:
    link = FakeLink()
    calls: list[DeviceState] = []
    ready = asyncio.Event()

    def bad(name: str, state: DeviceState, detail: str) -> None:
        calls.append(state)
        if state is DeviceState.READY:
            ready.set()
        raise RuntimeError("subscriber bug")

    supervisor = DeviceSupervisor("bus", link, on_state=bad, policy=FAST)
    started.append(supervisor)
    await supervisor.start()
    async with asyncio.timeout(WAIT_S):
        await ready.wait()
    assert supervisor.state is DeviceState.READY
    assert calls == [DeviceState.CONNECTING, DeviceState.READY]
    assert "state callback failed" in caplog.text


def test_backoff_is_exponential_and_capped() -> None:
    policy = SupervisorPolicy(backoff_initial_s=0.5, backoff_factor=2, backoff_max_s=30)
    assert [policy.backoff(n) for n in (1, 2, 3, 4, 6, 7, 50)] == [0.5, 1, 2, 4, 16, 30, 30]


def test_describe_is_bilingual() -> None:
    assert describe(DeviceTimeout("late", "超时")) == "late / 超时"
    assert describe(ValueError("x")) == "x"
    assert describe(TimeoutError()) == "TimeoutError"
