"""python-escpos at run time: the model's profile, and the QR, image and cut commands.

python-escpos is imported lazily (its import parses a large capability file, about half a
second) with its capability cache in our state directory (it otherwise leaves a new temp
directory behind on every import) and with the root logger left as it was (it calls
``logging.basicConfig()`` when imported). Chinese text and the ``DLE EOT`` status reader stay
ours (``render.py``, ``status.py``): python-escpos sends CJK as raw GB18030 without Chinese
mode and reports "paper OK" when the printer does not answer.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import qrcode
import qrcode.constants
from PIL import Image

from devices.printer import commands as cmd
from qcall.errors import DeviceError

_LOGGER = logging.getLogger(__name__)

CACHE_ENV: Final = "ESCPOS_CAPABILITIES_PICKLE_DIR"
# The profile for printers python-escpos does not list: media width set from the paper.
DEFAULT_MODEL: Final = "default"
_IMPORT_LOCK: Final = threading.Lock()
# GS ( k error correction level M, as python-escpos numbers it (QR_ECLEVEL_M).
_QR_EC_M: Final = 1


class CommandSet(Protocol):
    """The ESC/POS commands a ticket needs besides text."""

    def qr_code(self, data: bytes, module: int) -> bytes:
        """Return a QR code of ``data`` with ``module``-dot modules."""
        ...

    def raster_image(self, width_bytes: int, height: int, data: bytes) -> bytes:
        """Return a 1-bit image (bit 1 = dot), rows of ``width_bytes`` bytes."""
        ...

    def full_cut(self) -> bytes:
        """Return the feed past the cutter and the full cut."""
        ...


class OwnCommands:
    """Our own bytes for the same commands (tests, and when python-escpos is not wanted)."""

    def qr_code(self, data: bytes, module: int) -> bytes:
        """Return the native ``GS ( k`` QR sequence (model 2, level M)."""
        return cmd.qr_code(data, module, cmd.QrLevel.M)

    def raster_image(self, width_bytes: int, height: int, data: bytes) -> bytes:
        """Return ``GS v 0``."""
        return cmd.raster_image(width_bytes, height, data)

    def full_cut(self) -> bytes:
        """Return ``ESC d 6`` + ``GS V 0``."""
        return cmd.full_cut()


OWN_COMMANDS: Final = OwnCommands()


class EscposUnavailable(DeviceError):
    """python-escpos is missing or does not know the configured printer model."""

    code = "escpos_unavailable"


@dataclass(frozen=True, slots=True)
class PrinterProfile:
    """What python-escpos' capability database says about a printer model."""

    model: str
    name: str
    media_width_px: int | None
    media_width_mm: float | None
    code_pages: tuple[str, ...]
    qr_native: bool
    raster: bool

    def as_dict(self) -> dict[str, Any]:
        """Return the profile for diagnostics."""
        return {
            "model": self.model,
            "name": self.name,
            "media_width_px": self.media_width_px,
            "media_width_mm": self.media_width_mm,
            "code_pages": list(self.code_pages),
            "qr_native": self.qr_native,
            "raster": self.raster,
        }


def import_escpos(cache_dir: Path | None) -> Any:
    """Import ``escpos.printer`` once, caching capabilities in ``cache_dir``."""
    with _IMPORT_LOCK:
        if cache_dir is not None and "escpos.capabilities" not in sys.modules:
            cache_dir.mkdir(parents=True, exist_ok=True)
            os.environ[CACHE_ENV] = str(cache_dir)
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        try:
            return importlib.import_module("escpos.printer")
        except ImportError as err:
            raise EscposUnavailable(
                f"python-escpos is not installed: {err}",
                f"未安装 python-escpos：{err}",
            ) from err
        finally:
            root.handlers[:] = handlers
            root.setLevel(level)


def _feature(data: dict[str, Any], name: str) -> bool:
    return bool(data.get("features", {}).get(name, False))


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class EscposCommands:
    """QR, image and cut bytes from python-escpos for one printer model (thread-safe)."""

    def __init__(self, model: str, dots: int, cache_dir: Path | None) -> None:
        escpos = import_escpos(cache_dir)
        try:
            probe = escpos.Dummy(profile=model)
        except Exception as err:  # NotSupported and friends: the model is unknown
            raise EscposUnavailable(
                f"python-escpos does not know printer model {model!r}",
                f"python-escpos 不认识打印机型号 {model!r}",
            ) from err
        data: dict[str, Any] = probe.profile.profile_data
        width = data.get("media", {}).get("width", {})
        pixels = _number(width.get("pixels"))
        self.profile = PrinterProfile(
            model=model,
            name=str(data.get("name", model)),
            media_width_px=int(pixels) if pixels else None,
            media_width_mm=_number(width.get("mm")),
            code_pages=tuple(str(page) for page in data.get("codePages", {}).values()),
            qr_native=_feature(data, "qrCode"),
            raster=_feature(data, "bitImageRaster"),
        )
        self._escpos = escpos
        self._model = model
        # A model without a known media width gets the paper's, so centring and the image
        # width check work (and python-escpos does not print a note about it).
        self._dots = self.profile.media_width_px or dots
        self._lock = threading.Lock()

    def _printer(self) -> Any:
        printer = self._escpos.Dummy(profile=self._model)
        media = printer.profile.profile_data.setdefault("media", {}).setdefault("width", {})
        if not _number(media.get("pixels")):
            media["pixels"] = self._dots
        return printer

    def qr_code(self, data: bytes, module: int) -> bytes:
        """Return python-escpos' native QR (model 2, level M), or the QR as a centred image.

        The image path draws the code with ``qrcode`` and sends it through python-escpos'
        ``image()``; its own ``qr(native=False)`` would add a text line that switches the code
        page (``ESC t``), which Chinese mode does not want.
        """
        if self.profile.qr_native or self._model == DEFAULT_MODEL:
            with self._lock:
                printer = self._printer()
                printer.qr(data.decode("utf-8"), native=True, size=module, ec=_QR_EC_M, model=2)
                return bytes(printer.output)
        code = qrcode.QRCode(
            error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=module, border=4
        )
        code.add_data(data)
        code.make(fit=True)
        picture = code.make_image(fill_color="black", back_color="white").get_image().convert("L")
        with self._lock:
            printer = self._printer()
            printer.image(picture, impl="bitImageRaster", center=True)
            return bytes(printer.output)

    def raster_image(self, width_bytes: int, height: int, data: bytes) -> bytes:
        """Return python-escpos' ``GS v 0`` for packed bits (1 = dot)."""
        ink = Image.frombytes("1", (width_bytes * 8, height), data)
        picture = ink.convert("L").point(lambda value: 255 - value)
        with self._lock:
            printer = self._printer()
            printer.image(picture, impl="bitImageRaster")
            return bytes(printer.output)

    def full_cut(self) -> bytes:
        """Return python-escpos' cut: feed past the cutter, full cut."""
        with self._lock:
            printer = self._printer()
            printer.cut(mode="FULL", feed=True)
            return bytes(printer.output)
