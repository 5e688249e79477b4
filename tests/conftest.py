"""Session-wide settings: pygame headless everywhere, and one clip cache for the voice tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Before anything imports pygame: no window, no sound card (CI has neither).
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")


@pytest.fixture(scope="session")
def voice_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clip cache rendered once with real espeak-ng (through the pyttsx3 worker)."""
    from display.voice import DEFAULT_TEMPLATES, build_cache

    folder = tmp_path_factory.mktemp("voice")
    report = build_cache(folder, DEFAULT_TEMPLATES)
    assert not report.failed, f"clips failed to render: {report.failed}"
    return folder
