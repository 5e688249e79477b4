"""What restarting the hub on an edited configuration would change (``check-config --db``)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from qcall.config import CenterConfig
from qcall.engine import SERVICE_REMOVED, WINDOW_REMOVED
from qcall.events import EventType
from qcall.hub import rebuild_engine
from qcall.model import ACTIVE_STATES
from qcall.store import Store

# A warning lists at most this many ticket numbers, then says how many more.
NUMBERS_SHOWN = 8


@dataclass(frozen=True, slots=True)
class RestartChange:
    """One change a restart would make, in both languages."""

    zh: str
    en: str


def restart_preview(
    config: CenterConfig, db_path: Path, now: dt.datetime | None = None
) -> list[RestartChange]:
    """Replay the database (read-only) with ``config`` and describe what a start would resolve.

    The database is opened read-only: nothing is written, a running hub is not disturbed.
    Raises ``DatabaseCorrupt`` for a damaged database and ``StorageError`` when it is missing.
    """
    store = Store(db_path)
    store.open_reader(check=True)
    try:
        engine = rebuild_engine(config, store)
        floor = store.last_event_at()
    finally:
        store.close()
    wall = now or dt.datetime.now(ZoneInfo(config.center.timezone))
    moment = max(wall, floor) if floor else wall
    day = engine.day
    tickets = engine.tickets
    # Tickets of a removed service that a clerk still has: they stay until finished.
    kept = sorted(
        t.number
        for t in tickets.values()
        if config.service(t.service) is None and t.state in ACTIVE_STATES
    )
    events = engine.reconcile(moment)
    if engine.day != day:
        return []  # a new service day starts anyway: nothing of the old one is carried over
    warnings: list[RestartChange] = []
    cancelled: dict[str, list[str]] = defaultdict(list)
    for event in events:
        data = event.data
        if event.type is EventType.TICKET_CANCELLED and data.get("reason") == SERVICE_REMOVED:
            cancelled[tickets[data["id"]].service].append(data["number"])
    gone = {number for numbers in cancelled.values() for number in numbers}
    for event in events:
        data = event.data
        if event.type is EventType.WINDOW_CLOSED and data.get("reason") == WINDOW_REMOVED:
            staff = data["staff"]
            # Tickets of a removed service are told about below, with their service.
            requeued = [n for t in data["requeued"] if (n := tickets[t].number) not in gone]
            unpinned = [n for t in data["unpinned"] if (n := tickets[t].number) not in gone]
            zh = f"{data['window']} 号窗口已从配置中删除，重启时将被关闭"
            en = f"window {data['window']} is no longer configured; a restart closes it"
            if staff:
                zh += f"（{staff} 仍在该窗口登录）"
                en += f" (staff {staff} is still signed in there)"
            if requeued:
                zh += f"；{_numbers(requeued)} 回到所办业务队列的最前面"
                en += f"; {_numbers(requeued)} go back to the front of their line"
            if unpinned:
                zh += f"；转至该窗口的 {_numbers(unpinned)} 回到所办业务的队列"
                en += f"; {_numbers(unpinned)}, transferred to it, rejoin their service's line"
            warnings.append(RestartChange(zh + "。", en + "."))
    for service_id, numbers in sorted(cancelled.items()):
        warnings.append(
            RestartChange(
                f"业务 {service_id} 已从配置中删除：今日尚未办理的 {len(numbers)} 个号码"
                f"（{_numbers(numbers)}）将在重启时取消，请先安排这些群众。",
                f"service {service_id} is no longer configured: {len(numbers)} tickets not yet "
                f"served today ({_numbers(numbers)}) are cancelled at the restart; look after "
                "those residents first.",
            )
        )
    still = [n for n in kept if n not in gone]
    if still:
        warnings.append(
            RestartChange(
                f"{_numbers(still)} 属于已删除的业务，仍在窗口办理或挂起，可照常办结。",
                f"{_numbers(still)} belong to a removed service and are at a window (called, "
                "serving or held); they can be finished as usual.",
            )
        )
    return warnings


def _numbers(numbers: list[str]) -> str:
    shown = ", ".join(numbers[:NUMBERS_SHOWN])
    more = len(numbers) - NUMBERS_SHOWN
    return f"{shown} (+{more})" if more > 0 else shown
