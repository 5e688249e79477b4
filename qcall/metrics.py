"""Prometheus metrics of the hub (prometheus-client, one registry per hub)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from qcall.errors import QcallError
from qcall.events import Event

if TYPE_CHECKING:
    from qcall.hub import Hub

_FAST_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)


class _LiveState(Collector):
    """Gauges read from the engine at scrape time (no bookkeeping on the call path)."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub

    def collect(self) -> Iterable[GaugeMetricFamily]:
        engine = self._hub.engine
        waiting = GaugeMetricFamily(
            "qcall_waiting_tickets", "Tickets waiting per service", labels=["service"]
        )
        for service in self._hub.config.services:
            waiting.add_metric([service.id], engine.waiting_count(service.id))
        yield waiting
        windows = GaugeMetricFamily("qcall_windows", "Windows per state", labels=["state"])
        counts: dict[str, int] = {}
        for number in engine.windows:
            state = str(engine.window_state(number))
            counts[state] = counts.get(state, 0) + 1
        for state, count in sorted(counts.items()):
            windows.add_metric([state], count)
        yield windows
        yield GaugeMetricFamily(
            "qcall_event_seq", "Last committed event seq", value=self._hub.committed_seq
        )
        yield GaugeMetricFamily(
            "qcall_event_subscribers", "Event bus subscribers", value=self._hub.bus.subscriber_count
        )
        offline = GaugeMetricFamily(
            "qcall_device_up", "1 when a device is ready", labels=["device"]
        )
        for name, info in engine.devices.items():
            offline.add_metric([name], 1.0 if info["state"] in ("ready", "online") else 0.0)
        yield offline


class Metrics:
    """Counters and histograms updated by the hub and API."""

    def __init__(self, hub: Hub) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "qcall_events_total", "Events committed", ["type"], registry=self.registry
        )
        self.commands = Histogram(
            "qcall_command_seconds",
            "Engine command until durable",
            ["outcome"],
            buckets=_FAST_BUCKETS,
            registry=self.registry,
        )
        self.commits = Histogram(
            "qcall_commit_seconds",
            "One group commit",
            buckets=_FAST_BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter(
            "qcall_http_requests_total",
            "HTTP requests",
            ["route", "status"],
            registry=self.registry,
        )
        self.webhook_failures = Counter(
            "qcall_webhook_failures_total",
            "Failed webhook deliveries",
            ["hook"],
            registry=self.registry,
        )
        self.ws_dropped = Counter(
            "qcall_ws_dropped_total",
            "Event-stream clients dropped for lagging",
            registry=self.registry,
        )
        self.registry.register(_LiveState(hub))

    def observe_command(self, seconds: float, error: BaseException | None) -> None:
        """Record one command's time until durable."""
        outcome = (
            "ok" if error is None else ("refused" if isinstance(error, QcallError) else "error")
        )
        self.commands.labels(outcome).observe(seconds)

    def observe_commit(self, seconds: float, events: list[Event]) -> None:
        """Record one group commit."""
        self.commits.observe(seconds)
        for event in events:
            self.events.labels(str(event.type)).inc()

    def render(self) -> bytes:
        """Return the Prometheus text exposition."""
        return generate_latest(self.registry)
