"""What the kiosk shows of the hub's catalog, as typed frozen values (pure, no I/O)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from qcall.client import Catalog

Lang = Literal["zh", "en"]


@dataclass(frozen=True, slots=True)
class Text:
    """A bilingual text."""

    zh: str
    en: str

    def get(self, lang: Lang) -> str:
        """Return the text in ``lang``."""
        return self.zh if lang == "zh" else self.en


@dataclass(frozen=True, slots=True)
class NoticeSheet:
    """The notice sheet (告知单) of a service."""

    policy_basis: str = ""
    conditions: str = ""
    procedure: tuple[str, ...] = ()
    materials: tuple[str, ...] = ()
    approval_time: str = ""
    cooperating_departments: tuple[str, ...] = ()
    place: str = ""
    phone: str = ""

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> NoticeSheet:
        """Build from the catalog's ``notice`` object (unknown keys are ignored)."""
        return cls(
            policy_basis=str(raw.get("policy_basis", "")),
            conditions=str(raw.get("conditions", "")),
            procedure=tuple(str(step) for step in raw.get("procedure", ())),
            materials=tuple(str(item) for item in raw.get("materials", ())),
            approval_time=str(raw.get("approval_time", "")),
            cooperating_departments=tuple(str(d) for d in raw.get("cooperating_departments", ())),
            place=str(raw.get("place", "")),
            phone=str(raw.get("phone", "")),
        )


@dataclass(frozen=True, slots=True)
class ServiceItem:
    """One service as the kiosk offers it, with today's availability."""

    id: str
    department: str
    name: Text
    prefix: str
    kind: str
    priority_lane: bool
    waiting: int
    estimated_wait_s: int
    available: bool
    served_now: bool
    reason: str | None
    message: Text | None
    opens_at: dt.datetime | None
    notice: NoticeSheet


@dataclass(frozen=True, slots=True)
class DepartmentItem:
    """A department with at least one intake service."""

    id: str
    name: Text


@dataclass(frozen=True, slots=True)
class KioskCatalog:
    """Departments and services of the center, as of one ``GET /catalog``."""

    center: Text
    rules: tuple[str, ...]
    departments: tuple[DepartmentItem, ...]
    services: tuple[ServiceItem, ...]
    timezone: str | None = None  # the center's, for the clock on the screen

    @classmethod
    def from_api(cls, data: Catalog) -> KioskCatalog:
        """Build from the client's ``catalog()`` answer."""
        services = tuple(_service(raw) for raw in data["services"])
        offered = {s.department for s in services if s.kind != "pickup"}
        departments = tuple(
            DepartmentItem(d["id"], Text(d["name_zh"], d["name_en"]))
            for d in data["departments"]
            if d["id"] in offered
        )
        center = data["center"]
        return cls(
            Text(center["name_zh"], center["name_en"]),
            tuple(center.get("ticket_rules", ())),
            departments,
            services,
            center.get("timezone"),
        )

    def service(self, service_id: str) -> ServiceItem | None:
        """Return the service with that id."""
        return next((s for s in self.services if s.id == service_id), None)

    def department(self, department_id: str) -> DepartmentItem | None:
        """Return the department with that id."""
        return next((d for d in self.departments if d.id == department_id), None)

    def services_of(self, department_id: str) -> tuple[ServiceItem, ...]:
        """Return the department's services residents take tickets for (not pickups)."""
        return tuple(
            s for s in self.services if s.department == department_id and s.kind != "pickup"
        )

    def pickup_service(self) -> ServiceItem | None:
        """Return the service for collecting finished cases (the first pickup service)."""
        return next((s for s in self.services if s.kind == "pickup"), None)


def _service(raw: Mapping[str, Any]) -> ServiceItem:
    message = raw.get("message")
    opens = raw.get("opens_at")
    return ServiceItem(
        id=str(raw["id"]),
        department=str(raw["department"]),
        name=Text(str(raw["name_zh"]), str(raw["name_en"])),
        prefix=str(raw["prefix"]),
        kind=str(raw["kind"]),
        priority_lane=bool(raw["priority_lane"]),
        waiting=int(raw["waiting"]),
        estimated_wait_s=int(raw["estimated_wait_s"]),
        available=bool(raw["available"]),
        # Hubs from before the morning rule do not send it: then available means served.
        served_now=bool(raw.get("served_now", raw["available"])),
        reason=str(raw["unavailable_reason"]) if raw.get("unavailable_reason") else None,
        message=Text(str(message["zh"]), str(message["en"])) if message else None,
        opens_at=dt.datetime.fromisoformat(opens) if opens else None,
        notice=NoticeSheet.from_api(raw.get("notice") or {}),
    )
