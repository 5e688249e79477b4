"""Request bodies of API v1, validated strictly (wrong types are refused, not coerced)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from qcall.model import Outcome, Position
from qcall.validation import bilingual


class Body(BaseModel):
    """Base of every request body."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class IssueTicket(Body):
    """``POST /tickets``."""

    service: str = Field(min_length=1, max_length=40)
    priority: bool = False
    channel: Literal["kiosk", "desk", "phone", "integration"] | None = None
    case_code: str | None = Field(default=None, min_length=1, max_length=20)


class DeviceReport(Body):
    """``POST /devices/{name}/state``: a client reports the state of a device it drives."""

    state: Literal["ready", "attention", "offline"]
    detail: str = Field(default="", max_length=300)


class Login(Body):
    """``POST /login``."""

    staff: str = Field(min_length=1, max_length=40)
    pin: str = Field(min_length=4, max_length=64)


class CallNumber(Body):
    """``POST /windows/{n}/call``."""

    number: str = Field(min_length=2, max_length=8, pattern=r"^[A-Za-z]{1,2}\d{1,4}$")


class CloseDay(Body):
    """``POST /day/close``: the day to close, which must be today (a confirmation)."""

    day: dt.date


class Pause(Body):
    """``POST /windows/{n}/pause``."""

    reason: str = Field(default="", max_length=200)


class Callback(Body):
    """``POST /windows/{n}/callback``."""

    ticket: str = Field(min_length=1, max_length=40)


class Transfer(Body):
    """``POST /windows/{n}/transfer``: exactly one of service or window."""

    service: str | None = Field(default=None, min_length=1, max_length=40)
    window: int | None = Field(default=None, ge=1, le=999)
    position: Position = Position.LAST

    @model_validator(mode="after")
    def _one_target(self) -> Transfer:
        if (self.service is None) == (self.window is None):
            raise bilingual(
                "give exactly one of service or window", "service 和 window 必须且只能给出一个"
            )
        return self


class Finish(Body):
    """``POST /windows/{n}/finish``."""

    outcome: Outcome
    promised_date: dt.date | None = None


class Rating(Body):
    """``POST /windows/{n}/rating``."""

    score: int = Field(ge=1, le=5)


class Reactivate(Body):
    """``POST /tickets/{id}/reactivate``."""

    position: Position = Position.LAST


class Inquiry(Body):
    """``POST /inquiries``: a first-inquiry log entry."""

    topic: str = Field(min_length=1, max_length=200)
    service: str | None = Field(default=None, max_length=40)
    referred_to: str | None = Field(default=None, max_length=100)
    note: str = Field(default="", max_length=1000)
    follow_up: str = Field(default="", max_length=500)


class Empty(Body):
    """A body with no fields (optional)."""
