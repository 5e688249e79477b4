"""The OpenAPI 3.1 document of API v1, generated from the route table and body models."""

from __future__ import annotations

import re
from typing import Any, Final

from qcall import __version__
from qcall.events import EventType

_PARAM = re.compile(r"\{(\w+)(?::[^}]*)?\}")
_REF: Final = "#/components/schemas/{model}"

_ERROR_SCHEMA: Final = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string", "description": "in the Accept-Language language"},
                "details": {"type": "object"},
            },
        }
    },
}
_EVENT_SCHEMA: Final = {
    "type": "object",
    "required": ["seq", "type", "at", "data"],
    "properties": {
        "seq": {"type": "integer", "minimum": 1},
        "type": {"type": "string", "enum": [str(t) for t in EventType]},
        "at": {"type": "string", "format": "date-time"},
        "data": {"type": "object"},
    },
}
_STATUS_TEXT: Final = {
    400: "Bad input; nothing changed",
    401: "No or invalid token",
    403: "Role or staff may not act here",
    404: "Unknown id",
    409: "Not allowed in the current state; nothing changed",
    413: "Body too large",
    429: "Too many attempts",
}


def openapi_document() -> dict[str, Any]:
    """Build the document (the route table is the single source of truth)."""
    from qcall.api.reports import QUERY_PARAMETERS, RESPONSE_CONTENT
    from qcall.api.routes import ROUTES

    schemas: dict[str, Any] = {"Error": _ERROR_SCHEMA, "Event": _EVENT_SCHEMA}
    paths: dict[str, Any] = {}
    for entry in ROUTES:
        path = _PARAM.sub(r"{\1}", entry.path)
        operation: dict[str, Any] = {
            "summary": entry.summary,
            "operationId": f"{entry.method.lower()}_{_slug(path)}",
            "tags": list(entry.tags),
            "responses": _responses(entry.ok, entry.errors, entry.roles is not None),
        }
        params = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "integer"} if name == "n" else {"type": "string"},
            }
            for name in _PARAM.findall(entry.path)
        ]
        params += QUERY_PARAMETERS.get(entry.path, [])
        if entry.path in RESPONSE_CONTENT:
            operation["responses"][str(entry.ok)]["content"] = RESPONSE_CONTENT[entry.path]
        if params:
            operation["parameters"] = params
        if entry.roles is not None:
            operation["security"] = [{"bearer": []}]
            operation["x-roles"] = sorted(str(r) for r in entry.roles)
        if entry.body is not None:
            schema = entry.body.model_json_schema(ref_template=_REF)
            schemas.update(schema.pop("$defs", {}))
            schemas[entry.body.__name__] = schema
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": _REF.format(model=entry.body.__name__)}}
                },
            }
        paths.setdefault(path, {})[entry.method.lower()] = operation
    paths["/api/v1/events"] = {
        "get": {
            "summary": "Event stream (WebSocket): snapshot or replay after `after`, then live",
            "operationId": "get_events",
            "tags": ["events"],
            "security": [{"bearer": []}],
            "parameters": [
                {"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                {
                    "name": "token",
                    "in": "query",
                    "schema": {"type": "string"},
                    "description": "for browsers, which cannot set headers on a WebSocket",
                },
            ],
            "responses": {
                "101": {"description": "Switching to WebSocket; messages are Event objects"},
                **_responses(None, (400,), True),
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "qcall hub API",
            "version": __version__,
            "description": "Queue calling hub of a community affairs service center (API v1).",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _responses(ok: int | None, errors: tuple[int, ...], secured: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if ok is not None:
        out[str(ok)] = (
            {"description": "Done, no content"}
            if ok == 204
            else {
                "description": "Success",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        )
    codes = set(errors) | ({401, 403} if secured else set())
    for code in sorted(codes):
        out[str(code)] = {
            "description": _STATUS_TEXT.get(code, "Error"),
            "content": {"application/json": {"schema": {"$ref": _REF.format(model="Error")}}},
        }
    return out


def _slug(path: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", path.removeprefix("/api/v1").lower()).strip("_") or "root"
