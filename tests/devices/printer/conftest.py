"""Fixtures for the printer tests: an emulator on 127.0.0.1 and python-escpos imported safely."""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import pytest

from devices.emulators.printer import PrinterEmulator


@pytest.fixture
async def emulator(tmp_path: Path) -> AsyncIterator[PrinterEmulator]:
    """Return a started 80 mm printer emulator writing jobs under ``tmp_path/out``."""
    emu = PrinterEmulator(tmp_path / "out", paper=80)
    await emu.start()
    try:
        yield emu
    finally:
        await emu.stop()


@pytest.fixture(scope="session")
def escpos_printer(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """Import python-escpos the safe way: fixed pickle dir, root logger left untouched."""
    os.environ.setdefault("ESCPOS_CAPABILITIES_PICKLE_DIR", str(tmp_path_factory.mktemp("escpos")))
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        module = importlib.import_module("escpos.printer")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    return module
