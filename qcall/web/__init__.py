"""Server-rendered pages of the hub (the public tracking page), from Jinja2 templates."""

from __future__ import annotations

from typing import Any, Final

import jinja2

_ENV: Final = jinja2.Environment(
    loader=jinja2.PackageLoader("qcall.web", "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.StrictUndefined,
)


def render(name: str, **context: Any) -> str:
    """Render a template with HTML escaping on."""
    return _ENV.get_template(name).render(**context)
