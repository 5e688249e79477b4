"""The touchscreen ticket kiosk (取号机): a pygame client of the hub driving its printer."""

from __future__ import annotations

import os

# pygame greets on stdout when imported; a kiosk's log is no place for it.
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
