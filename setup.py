"""Build hook: compile the staff pages' gettext catalogs (.po → .mo) with Babel.

Everything else about the package is declared in pyproject.toml. The compiled catalogs are
build products (git-ignored); ``make catalogs`` does the same for a development checkout.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

LOCALE = Path(__file__).parent / "qcall" / "web" / "locale"


class BuildWithCatalogs(build_py):
    """``build_py`` that first compiles every ``.po`` next to it."""

    def run(self) -> None:
        from babel.messages.mofile import write_mo
        from babel.messages.pofile import read_po

        for po in sorted(LOCALE.glob("*/LC_MESSAGES/*.po")):
            with po.open("rb") as source:
                catalog = read_po(source)
            with po.with_suffix(".mo").open("wb") as target:
                write_mo(target, catalog)
        super().run()


setup(cmdclass={"build_py": BuildWithCatalogs})
