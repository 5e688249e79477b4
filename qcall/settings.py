"""Day-to-day settings the admin edits in the pages, layered over the TOML configuration.

The TOML file keeps the hall's topology (windows, devices, bus addresses) and the defaults.
What changes from day to day (a service's notice sheet, daily cap and issuing hours, the
calendar's dated overrides, the lobby notices) is changed by a ``settings.changed`` event in
the log, so it is durable, replayed at start-up and audited like every other fact. This module
is pure: it computes the effective configuration from the base one and the overrides.

An override naming a service the configuration no longer has is kept (the log is history) but
not applied: a config edit never costs the database.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any, Final

import tomli_w
from pydantic import ValidationError

from qcall.config import CenterConfig
from qcall.errors import BadRequest, NotFound
from qcall.events import Event, EventType
from qcall.validation import problems_of

SERVICE_PREFIX: Final = "service:"
CALENDAR_OVERRIDES: Final = "calendar.overrides"
LOBBY_NOTICES: Final = "lobby.notices"
# The fields of a service the pages may change; everything else stays in the TOML file.
SERVICE_FIELDS: Final = ("daily_cap", "hours", "notice")


def service_key(service_id: str) -> str:
    """The override key of one service's editable fields."""
    return f"{SERVICE_PREFIX}{service_id}"


def current_value(config: CenterConfig, key: str) -> Any:
    """The JSON value ``key`` has in ``config`` (what an edit of ``key`` replaces)."""
    data = config.model_dump(mode="json")
    if key.startswith(SERVICE_PREFIX):
        service_id = key.removeprefix(SERVICE_PREFIX)
        for service in data["services"]:
            if service["id"] == service_id:
                return {name: service[name] for name in SERVICE_FIELDS}
        raise NotFound(f"unknown service {service_id!r}", f"没有此事项：{service_id}")
    if key == CALENDAR_OVERRIDES:
        return data["calendar"]["overrides"]
    if key == LOBBY_NOTICES:
        return data["lobby"]["notices"]
    raise BadRequest(f"unknown setting {key!r}", f"没有此设置项：{key}", code="unknown_setting")


def _merged(data: dict[str, Any], key: str, value: Any) -> bool:
    """Put ``value`` for ``key`` into the dumped config ``data``; False when it has no place."""
    if key.startswith(SERVICE_PREFIX):
        service_id = key.removeprefix(SERVICE_PREFIX)
        for service in data["services"]:
            if service["id"] == service_id:
                if not isinstance(value, Mapping) or set(value) - set(SERVICE_FIELDS):
                    raise BadRequest(
                        f"a service setting may only change {', '.join(SERVICE_FIELDS)}",
                        "事项设置只能修改每日号源、取号时间和告知单",
                    )
                service.update(value)
                return True
        return False
    if key == CALENDAR_OVERRIDES:
        data["calendar"]["overrides"] = value
        return True
    if key == LOBBY_NOTICES:
        data["lobby"]["notices"] = value
        return True
    return False


def checked(base: CenterConfig, overrides: Mapping[str, Any], key: str, value: Any) -> Any:
    """Validate setting ``key`` to ``value`` over ``base`` and ``overrides``; return it normalised.

    Raises ``BadRequest`` (both languages, with each problem) when the value is not valid.
    """
    current_value(base, key)  # refuses unknown keys and services
    data = effective(base, overrides).model_dump(mode="json")
    _merged(data, key, value)
    try:
        config = CenterConfig.model_validate(data)
    except ValidationError as err:
        problems = problems_of(err.errors())
        raise BadRequest(
            "; ".join(f"{p.where}: {p.en}" for p in problems),
            "；".join(f"{p.where}：{p.zh}" for p in problems),
            details={"problems": [{"where": p.where, "en": p.en, "zh": p.zh} for p in problems]},
        ) from err
    return current_value(config, key)


def effective(base: CenterConfig, overrides: Mapping[str, Any]) -> CenterConfig:
    """``base`` with every applicable override (in key order) applied."""
    return _resolve(base, overrides)[0]


def stale(base: CenterConfig, overrides: Mapping[str, Any]) -> list[str]:
    """Override keys kept in the log but not applied: their service is gone from the file, or
    their value no longer validates (the rules changed since it was saved)."""
    return _resolve(base, overrides)[1]


def _resolve(base: CenterConfig, overrides: Mapping[str, Any]) -> tuple[CenterConfig, list[str]]:
    if not overrides:
        return base, []
    pending = sorted(overrides)
    data = base.model_dump(mode="json")
    # Usually everything applies at once; a value that no longer fits is found one by one.
    trial = copy.deepcopy(data)
    try:
        placed = [key for key in pending if _merged(trial, key, overrides[key])]
        config = CenterConfig.model_validate(trial) if placed else base
        return config, sorted(set(pending) - set(placed))
    except (ValidationError, BadRequest):
        pass
    config, skipped = base, []
    for key in pending:
        trial = copy.deepcopy(data)
        try:
            if not _merged(trial, key, overrides[key]):
                skipped.append(key)
                continue
            config = CenterConfig.model_validate(trial)
        except (ValidationError, BadRequest):
            skipped.append(key)
            continue
        data = trial
    return config, skipped


def overrides_of(changes: Iterable[Event]) -> dict[str, Any]:
    """The overrides a log's ``settings.changed`` events leave (what replay gives the engine)."""
    overrides: dict[str, Any] = {}
    for event in changes:
        if event.type is EventType.SETTINGS_CHANGED:
            overrides[str(event.data["key"])] = event.data["after"]
    return overrides


def export_toml(config: CenterConfig) -> str:
    """The configuration as TOML text that loads back to the same configuration."""
    data = config.model_dump(mode="json", exclude_none=True)
    header = (
        "# qcall configuration exported with `qcall config export`: the TOML file with the\n"
        "# settings edited in the admin pages applied. / 导出的有效配置（含管理页面中的修改）。\n"
    )
    return header + tomli_w.dumps(data)
