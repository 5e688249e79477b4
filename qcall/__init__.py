"""qcall: queue-number calling and lobby display hub."""

from __future__ import annotations

__version__ = "0.1.0"
