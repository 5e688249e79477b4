"""The staff pages' gettext catalogs: English message ids, Chinese by default.

The ``.po`` files live in the repository; ``make catalogs`` (run by ``make test``/``demo``)
and the package build compile them with Babel. A missing compiled catalog is a setup error,
reported with the command that fixes it, never papered over with the English text.
"""

from __future__ import annotations

import functools
import gettext
from pathlib import Path
from typing import Final

from qcall.errors import ConfigError
from qcall.validation import Problem

LOCALE_DIR: Final = Path(__file__).parent / "locale"
DOMAIN: Final = "qcall"
LANGUAGES: Final = ("zh", "en")
DEFAULT_LANG: Final = "zh"


def N_(message: str) -> str:  # noqa: N802 - the conventional gettext marker name
    """Mark a message for extraction; it is translated where it is shown."""
    return message


@functools.cache
def translations(lang: str) -> gettext.NullTranslations:
    """The catalog for ``lang`` (English is the message ids themselves)."""
    if lang == "en":
        return gettext.NullTranslations()
    if lang not in LANGUAGES:
        raise ValueError(f"unsupported language {lang!r}")
    try:
        return gettext.translation(DOMAIN, localedir=LOCALE_DIR, languages=[lang])
    except FileNotFoundError as err:
        missing = Problem(
            f"{lang}/LC_MESSAGES/{DOMAIN}.mo",
            "not compiled: run `make catalogs`",
            "尚未编译：请运行 `make catalogs`",
        )
        raise ConfigError(str(LOCALE_DIR), [missing]) from err


def pick(lang: str | None) -> str:
    """A supported language, Chinese unless English was chosen."""
    return lang if lang is not None and lang in LANGUAGES else DEFAULT_LANG
