"""The kiosk's unsettled ticket requests, kept on disk (one file per key) until settled."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Final

from kiosk.model import IssueRequest

_LOGGER = logging.getLogger(__name__)
_SAFE_KEY: Final = re.compile(r"[A-Za-z0-9_-]{1,100}")


class PendingJournal:
    """A request is written before it is sent and removed once printed, shown or refused.

    A request still on disk after a crash or an unanswered retry is settled later with the
    same idempotency key, so the hub never keeps a ticket nobody was given.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, key: str) -> Path:
        if not _SAFE_KEY.fullmatch(key):
            raise ValueError(f"unsafe idempotency key {key!r}")
        return self.folder / f"{key}.json"

    def save(self, request: IssueRequest) -> None:
        """Write the request durably (atomic replace, fsynced)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(request.key)
        tmp = path.with_suffix(".tmp")
        data = {
            "key": request.key,
            "service": request.service,
            "priority": request.priority,
            "case_code": request.case_code,
        }
        with tmp.open("w", encoding="utf-8") as out:
            json.dump(data, out)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(path)

    def pending(self) -> list[IssueRequest]:
        """Return the unsettled requests (unreadable files are logged and dropped)."""
        found: list[IssueRequest] = []
        if not self.folder.is_dir():
            return found
        for path in sorted(self.folder.glob("*.json")):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                found.append(
                    IssueRequest(
                        str(data["key"]),
                        str(data["service"]),
                        bool(data["priority"]),
                        str(data["case_code"]) if data.get("case_code") else None,
                    )
                )
            except FileNotFoundError:
                continue
            except (OSError, ValueError, KeyError, TypeError) as err:
                _LOGGER.warning("dropping unreadable pending request %s: %s", path, err)
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        return found

    def clear(self, key: str) -> None:
        """Forget the request with ``key`` (it is settled)."""
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()
