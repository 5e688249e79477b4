"""The supervisor's alerts: a pure function of the engine's state and the time.

The supervisor page shows :func:`current_alerts` as it is at each refresh; the hub's alert
watch (``Hub._alert_watch``) compares it with the alerts the log last announced and records
the difference as ``alert.raised`` / ``alert.cleared`` events, so event streams and webhooks
carry them too.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Final

from qcall.engine import Engine
from qcall.model import TicketState

# A device in one of these states cannot do its work.
DOWN_STATES: Final = frozenset({"offline", "failed", "disconnected"})
# A printer reporting one of these words in its detail is out of paper.
PAPER_WORDS: Final = ("paper", "纸")
# Tickets may wait this long for a service no open window serves before it is an alert (a
# clerk closing and reopening a window, the first tickets before the windows open).
UNSERVED_GRACE_MIN: Final = 5
KINDS: Final = ("long_wait", "long_pause", "unserved", "device_offline", "paper_out")


@dataclass(frozen=True, slots=True)
class Alert:
    """Something the supervisor should act on; ``key`` identifies it while it lasts."""

    key: str
    kind: str  # one of KINDS
    zh: str
    en: str

    def text(self, lang: str) -> str:
        """The alert in ``lang``."""
        return self.zh if lang == "zh" else self.en

    def to_data(self) -> dict[str, Any]:
        """The data of its ``alert.raised`` event."""
        return {"key": self.key, "kind": self.kind, "message_zh": self.zh, "message_en": self.en}


def _minutes(seconds: float) -> int:
    return max(0, int(seconds // 60))


def current_alerts(engine: Engine, now: dt.datetime) -> tuple[Alert, ...]:
    """Every alert that holds at ``now``, in a stable order."""
    config = engine.config
    limit = config.hub.pause_alert_minutes
    alerts: list[Alert] = []
    for number, run in sorted(engine.windows.items()):
        if not (run.paused and run.paused_since):
            continue
        paused_min = _minutes((now - dt.datetime.fromisoformat(run.paused_since)).total_seconds())
        if paused_min >= limit:
            alerts.append(
                Alert(
                    f"long_pause:{number}",
                    "long_pause",
                    f"{number} 号窗口已暂停 {paused_min} 分钟（上限 {limit} 分钟）",
                    f"Window {number} has been paused for {paused_min} min (limit {limit} min)",
                )
            )
    waiting: dict[str, list[tuple[dt.datetime, str]]] = {}
    for ticket in engine.tickets.values():
        if ticket.state is TicketState.WAITING:
            waiting.setdefault(ticket.service, []).append((ticket.issued_at, ticket.number))
    for service in config.services:
        line = sorted(waiting.get(service.id, []))
        if not line:
            continue
        first_at, first_number = line[0]
        longest = _minutes((now - first_at).total_seconds())
        target = service.target_wait_min
        target_at = now - dt.timedelta(minutes=target)
        over = sum(1 for at, _ in line if at <= target_at)
        if over:
            alerts.append(
                Alert(
                    f"long_wait:{service.id}",
                    "long_wait",
                    f"{service.name_zh}：{over} 人等候超过 {target} 分钟"
                    f"（最长 {longest} 分钟，{first_number} 号）",
                    f"{service.name_en}: {over} waiting longer than {target} min "
                    f"(longest {longest} min, {first_number})",
                )
            )
        if longest >= UNSERVED_GRACE_MIN and not engine.served_now(service, now):
            alerts.append(
                Alert(
                    f"unserved:{service.id}",
                    "unserved",
                    f"{service.name_zh}：{len(line)} 人等候，但没有开放的窗口办理",
                    f"{service.name_en}: {len(line)} waiting but no open window serves it",
                )
            )
    for name, known in sorted(engine.devices.items()):
        state, detail = str(known["state"]), str(known.get("detail", ""))
        if state in DOWN_STATES:
            alerts.append(
                Alert(
                    f"device_offline:{name}",
                    "device_offline",
                    f"设备离线：{name}（{state}）{detail}".rstrip(),
                    f"Device offline: {name} ({state}) {detail}".rstrip(),
                )
            )
        elif "printer" in name and any(word in detail.lower() for word in PAPER_WORDS):
            alerts.append(
                Alert(
                    f"paper_out:{name}",
                    "paper_out",
                    f"打印机缺纸：{name}：{detail}",
                    f"Printer out of paper: {name}: {detail}",
                )
            )
    return tuple(alerts)
