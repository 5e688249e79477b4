"""The qcall exception tree: one root, subclasses grouped by what the caller should do."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qcall.validation import Problem


class QcallError(Exception):
    """Root of every error qcall raises on purpose.

    ``code`` is a stable machine identifier (used in API error bodies); ``message_zh`` and
    ``message_en`` are the human texts in Chinese and English.
    """

    code = "error"
    status = 500

    def __init__(
        self,
        message_en: str,
        message_zh: str | None = None,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message_en)
        self.message_en = message_en
        self.message_zh = message_zh or message_en
        if code is not None:
            self.code = code
        self.details = details or {}

    def message(self, lang: str) -> str:
        """Return the message in ``lang`` (``zh`` or ``en``)."""
        return self.message_zh if lang == "zh" else self.message_en


class ConfigError(QcallError):
    """The configuration is invalid; the operator must fix the file."""

    code = "invalid_config"
    status = 400

    def __init__(self, path: str, problems: Sequence[Problem]) -> None:
        self.path = path
        self.items = list(problems)
        # (where, English message) pairs, for code that only needs one language.
        self.problems = [(p.where, p.en) for p in self.items]
        count = len(self.items)
        super().__init__(
            f"{path}: {count} error(s) in configuration\n"
            + "\n".join(f"{path}: {p.where}: {p.en}" for p in self.items),
            f"{path}: 配置文件有 {count} 处错误\n"
            + "\n".join(f"{path}: {p.where}: {p.zh}" for p in self.items),
        )

    def report(self) -> str:
        """What ``check-config`` prints: the whole list in Chinese, then in English."""
        return f"{self.message_zh}\n\n{self.message_en}"


class BadRequest(QcallError):
    """The request is malformed or names impossible values; nothing was changed."""

    code = "bad_request"
    status = 400


class NotFound(QcallError):
    """The named ticket, window, case or service does not exist."""

    code = "not_found"
    status = 404


class Conflict(QcallError):
    """The operation does not fit the current state; nothing was changed."""

    code = "conflict"
    status = 409


class ServiceUnavailable(Conflict):
    """A ticket cannot be issued for the service now (closed, outside hours, capped, ...)."""

    code = "service_unavailable"


class AuthError(QcallError):
    """Authentication failed or is missing."""

    code = "unauthorized"
    status = 401


class TooManyAttempts(QcallError):
    """Too many wrong PINs; the account is locked for a while."""

    code = "login_throttled"
    status = 429


class Forbidden(QcallError):
    """The caller is known but may not do this here."""

    code = "forbidden"
    status = 403


class StorageError(QcallError):
    """The durable store failed; the hub cannot acknowledge anything until it recovers."""

    code = "storage_error"
    status = 503


class DatabaseCorrupt(StorageError):
    """SQLite or the event log's own checks found the database damaged: the hub refuses to start.

    The operator restores a backup, or accepts the loss explicitly (``--accept-data-loss``).
    """

    code = "database_corrupt"


class DatabaseInUse(StorageError):
    """Another hub already serves this database file (one hub per database)."""

    code = "database_in_use"


class DeviceError(QcallError):
    """A device failed; the supervisor retries, staff are told."""

    code = "device_error"
    status = 503


class DeviceUnavailable(DeviceError, ConnectionError):
    """The device cannot be reached (unplugged, port closed, connection refused)."""

    code = "device_unavailable"


class DeviceTimeout(DeviceError, TimeoutError):
    """The device did not answer within its deadline."""

    code = "device_timeout"


class DeviceProtocolError(DeviceError):
    """The device answered with bytes that break the protocol."""

    code = "device_protocol_error"
