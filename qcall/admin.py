"""What the admin changes day to day, each change recorded in the event log's audit trail.

Settings (notice sheets, daily caps, issuing hours, calendar overrides, lobby notices) are
engine commands: a ``settings.changed`` event carries who, what, before and after. Accounts
and tokens live in their tables; each change there is followed by an ``audit.recorded``
event. Audit entries never hold a PIN or a token, only what an account or token is.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from qcall import settings
from qcall.errors import BadRequest, NotFound
from qcall.events import AUDIT_TYPES, Event
from qcall.hub import Hub
from qcall.model import STAFF_ROLES, Role
from qcall.pin_policy import generate_pin
from qcall.store import StaffMember, TokenInfo

STAFF_ID: Final = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
MAX_NAME: Final = 40
# Roles a token created in the pages may carry (staff sign in with their PIN instead).
TOKEN_ROLES: Final = (Role.KIOSK, Role.DISPLAY, Role.INTEGRATION)
AUDIT_PAGE: Final = 200


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One line of the audit log."""

    seq: int
    at: dt.datetime
    actor: str
    action: str
    target: str
    before: Any
    after: Any


def _account(member: StaffMember) -> dict[str, Any]:
    return {"name": member.name, "role": str(member.role), "active": member.active}


def _token(info: TokenInfo) -> dict[str, Any]:
    return {"name": info.name, "role": str(info.role), "revoked": info.revoked}


async def _record(hub: Hub, actor: str, action: str, target: str, before: Any, after: Any) -> None:
    await hub.execute(lambda now: hub.engine.audit(now, actor, action, target, before, after))


def _staff_role(value: str) -> Role:
    try:
        role = Role(value)
    except ValueError:
        role = None
    if role is None or role not in STAFF_ROLES:
        raise BadRequest(f"unknown staff role {value!r}", f"没有此工作人员角色：{value}")
    return role


def _name(value: str) -> str:
    name = value.strip()
    if not name or len(name) > MAX_NAME:
        raise BadRequest(
            f"the name must have 1 to {MAX_NAME} characters", f"姓名须为 1 至 {MAX_NAME} 个字"
        )
    return name


async def _member(hub: Hub, staff_id: str) -> StaffMember:
    member = await hub.read(hub.reader.staff, staff_id)
    if member is None:
        raise NotFound(f"no staff member {staff_id!r}", f"没有此工作人员：{staff_id}")
    return member


async def add_staff(hub: Hub, actor: str, staff_id: str, name: str, role: str) -> str:
    """Create an account; returns its first PIN (shown once, never stored in clear)."""
    staff_id = staff_id.strip()
    if not STAFF_ID.match(staff_id):
        raise BadRequest(
            "the staff id must be 1 to 32 letters, digits, '-' or '_'",
            "工号须为 1 至 32 位字母、数字、“-”或“_”",
        )
    checked_name, checked_role = _name(name), _staff_role(role)
    if await hub.read(hub.reader.staff, staff_id) is not None:
        raise BadRequest(f"staff id {staff_id!r} is taken", f"工号 {staff_id} 已被使用")
    pin = generate_pin(staff_id)
    member = await hub.write(hub.store.add_staff, staff_id, checked_name, pin, checked_role)
    await _record(hub, actor, "staff.added", staff_id, None, _account(member))
    return pin


async def set_staff(hub: Hub, actor: str, staff_id: str, name: str, role: str) -> None:
    """Rename an account or change its role (its open sessions end)."""
    before = await _member(hub, staff_id)
    checked_name, checked_role = _name(name), _staff_role(role)
    if (checked_name, checked_role) == (before.name, before.role):
        return
    if staff_id == actor and checked_role != before.role:
        raise BadRequest("you cannot change your own role", "不能修改自己的角色")
    await hub.write(hub.store.set_staff_details, staff_id, checked_name, checked_role)
    await hub.auth_changed()
    after = await _member(hub, staff_id)
    await _record(hub, actor, "staff.changed", staff_id, _account(before), _account(after))


async def set_staff_active(hub: Hub, actor: str, staff_id: str, active: bool) -> None:
    """Enable or disable an account (disabling ends its sessions at once)."""
    before = await _member(hub, staff_id)
    if before.active == active:
        return
    if not active and staff_id == actor:
        raise BadRequest("you cannot disable your own account", "不能停用自己的账户")
    await hub.write(hub.store.set_staff_active, staff_id, active)
    await hub.auth_changed()
    after = await _member(hub, staff_id)
    action = "staff.enabled" if active else "staff.disabled"
    await _record(hub, actor, action, staff_id, _account(before), _account(after))


async def reset_pin(hub: Hub, actor: str, staff_id: str) -> str:
    """Give an account a new PIN (and lift its lockout); returns it, shown once."""
    member = await _member(hub, staff_id)
    pin = generate_pin(staff_id)
    await hub.write(hub.store.set_pin, staff_id, pin)
    # The audit says that the PIN changed, never what it is.
    await _record(hub, actor, "staff.pin_reset", staff_id, _account(member), _account(member))
    return pin


async def create_token(hub: Hub, actor: str, name: str, role: str) -> tuple[str, str]:
    """Create an API token; returns ``(public id, token)``: the token is shown only once."""
    checked_name = _name(name)
    try:
        checked_role = Role(role)
    except ValueError:
        checked_role = None
    if checked_role not in TOKEN_ROLES:
        raise BadRequest(f"a token may not have the role {role!r}", f"令牌不能使用此角色：{role}")
    assert checked_role is not None
    token: str = await hub.write(hub.store.create_token, checked_role, checked_name)
    info = next(t for t in await hub.read(hub.reader.list_tokens) if t.id == _public_id(token))
    await _record(hub, actor, "token.created", info.id, None, _token(info))
    return info.id, token


def _public_id(token: str) -> str:
    from qcall.store import TOKEN_ID_CHARS, token_hash

    return token_hash(token)[:TOKEN_ID_CHARS]


async def revoke_token(hub: Hub, actor: str, token_id: str) -> None:
    """Revoke a token by its public id: refused everywhere at once."""
    matches: list[TokenInfo] = await hub.write(hub.store.revoke_token_id, token_id)
    if len(matches) != 1:
        raise NotFound(f"no token {token_id!r}", f"没有此令牌：{token_id}")
    before = matches[0]
    await hub.auth_changed()
    after = {**_token(before), "revoked": True}
    await _record(hub, actor, "token.revoked", before.id, _token(before), after)


async def change_setting(hub: Hub, actor: str, key: str, value: Any) -> Any:
    """Change a day-to-day setting (applied at once, durable, audited)."""
    return await hub.execute(lambda now: hub.engine.change_setting(now, actor, key, value))


def setting(hub: Hub, key: str) -> Any:
    """The value a setting has now."""
    return settings.current_value(hub.config, key)


def audit_entry(event: Event) -> AuditEntry:
    """An audit line from its event."""
    data = event.data
    if "key" in data:  # settings.changed
        action, target = "settings.changed", str(data["key"])
    else:
        action, target = str(data["action"]), str(data["target"])
    return AuditEntry(
        event.seq, event.at, str(data["actor"]), action, target, data["before"], data["after"]
    )


async def audit_log(
    hub: Hub, *, actor: str = "", text: str = "", limit: int = AUDIT_PAGE
) -> Sequence[AuditEntry]:
    """The newest audit entries first, filtered by actor and by a word in action or target."""
    events: list[Event] = await hub.read(lambda: list(hub.reader.iter_events(0, AUDIT_TYPES)))
    entries = [audit_entry(e) for e in events if e.seq <= hub.committed_seq]
    actor, text = actor.strip(), text.strip().lower()
    found = [
        e
        for e in reversed(entries)
        if (not actor or e.actor == actor)
        and (not text or text in e.action.lower() or text in e.target.lower())
    ]
    return found[:limit]
