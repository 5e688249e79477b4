"""The kiosk's one pending ticket request, kept on disk until it is settled."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path

from kiosk.model import IssueRequest

_LOGGER = logging.getLogger(__name__)


class PendingJournal:
    """A request is written before it is sent and removed once printed, shown or refused.

    A request still on disk after a crash or an unanswered retry is settled later with the
    same idempotency key, so the hub never keeps a ticket nobody was given.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def save(self, request: IssueRequest) -> None:
        """Write the request durably (atomic replace, fsynced)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
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
        tmp.replace(self.path)

    def load(self) -> IssueRequest | None:
        """Return the unsettled request, if any (an unreadable file is logged and dropped)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return IssueRequest(
                str(data["key"]),
                str(data["service"]),
                bool(data["priority"]),
                str(data["case_code"]) if data.get("case_code") else None,
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as err:
            _LOGGER.warning("dropping unreadable pending request %s: %s", self.path, err)
            self.clear()
            return None

    def clear(self) -> None:
        """Forget the request (it is settled)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
