"""Find the CJK font used to rasterise text the printer cannot encode (and by the emulator)."""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from PIL import ImageFont

from qcall.errors import DeviceError

_LOGGER = logging.getLogger(__name__)

# fc-match reads a warm fontconfig cache in milliseconds; 5 s covers a cold cache on a slow
# kiosk disk without letting a wedged fontconfig hold up the printer forever.
FC_MATCH_TIMEOUT_S: Final = 5.0

FONT_ENV: Final = "QCALL_CJK_FONT"
# FreeType faces are not safe for concurrent use; the printer worker and the emulator share them.
FONT_LOCK: Final = threading.Lock()
_CANDIDATES: Final = (
    ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", 0),
    ("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", 0),
    # Noto Sans CJK: face 2 is Simplified Chinese (face 0 draws Japanese glyph forms).
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", 2),
)


@dataclass(frozen=True, slots=True)
class FontSpec:
    """A font file and the face to use inside it."""

    path: Path
    index: int


class CjkFontMissing(DeviceError):
    """No font with Chinese glyphs is installed, so text outside the repertoire can't print."""

    code = "cjk_font_missing"


def _face_for(path: Path, index: int) -> int:
    """Return the face index, preferring the Simplified Chinese face of Noto CJK collections."""
    if path.name.startswith("NotoSansCJK") and path.suffix == ".ttc":
        return 2
    return index


def _fc_match() -> FontSpec | None:
    """Ask fontconfig for the best Simplified Chinese sans font."""
    exe = shutil.which("fc-match")
    if exe is None:
        return None
    try:
        result = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [exe, "-f", "%{file}\n%{index}", "sans:lang=zh-cn"],
            capture_output=True,
            text=True,
            timeout=FC_MATCH_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        _LOGGER.warning("fc-match failed: %s", err)
        return None
    lines = result.stdout.splitlines()
    if result.returncode != 0 or not lines:
        return None
    path = Path(lines[0])
    index = int(lines[1]) if len(lines) > 1 and lines[1].isdigit() else 0
    return FontSpec(path, _face_for(path, index))


def _has_cjk(spec: FontSpec) -> bool:
    """Return whether the font draws 中 (fontconfig may fall back to a Latin-only font)."""
    try:
        font = ImageFont.truetype(str(spec.path), 24, index=spec.index)
    except OSError:
        return False
    return font.getmask("中").getbbox() is not None


@functools.cache
def find_cjk_font() -> FontSpec:
    """Return the CJK font: ``$QCALL_CJK_FONT``, fontconfig's choice, or a known path."""
    override = os.environ.get(FONT_ENV)
    candidates: list[FontSpec] = []
    if override:
        path = Path(override)
        candidates.append(FontSpec(path, _face_for(path, 0)))
    matched = _fc_match()
    if matched is not None:
        candidates.append(matched)
    candidates.extend(FontSpec(Path(path), index) for path, index in _CANDIDATES)
    for spec in candidates:
        if spec.path.is_file() and _has_cjk(spec):
            _LOGGER.debug("CJK font: %s (face %d)", spec.path, spec.index)
            return spec
    raise CjkFontMissing(
        "no CJK font found: install fonts-wqy-microhei or set QCALL_CJK_FONT",
        "找不到中文字体：请安装 fonts-wqy-microhei 或设置 QCALL_CJK_FONT",
    )


@functools.lru_cache(maxsize=32)
def cjk_font(size: int) -> ImageFont.FreeTypeFont:
    """Return the CJK font at ``size`` pixels (cached; Pillow fonts are immutable)."""
    spec = find_cjk_font()
    return ImageFont.truetype(str(spec.path), size, index=spec.index)


# A code point no font draws: what the font shows for a character it lacks (its .notdef box).
_NO_GLYPH: Final = "\U0010fffd"


def missing_glyphs(text: str, size: int = 24) -> list[str]:
    """Return the characters of ``text`` the CJK font would draw as its empty box."""
    font = cjk_font(size)
    box = bytes(font.getmask(_NO_GLYPH))
    return [ch for ch in dict.fromkeys(text) if not ch.isspace() and bytes(font.getmask(ch)) == box]
