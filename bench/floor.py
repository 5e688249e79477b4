"""The floor the hub benchmark measures against: what this machine allows without qcall.

A bare aiohttp server with two endpoints, driven by the same load generator as the hub:

- ``POST /commit``: parses the JSON body and does one durable SQLite commit (WAL,
  ``synchronous=FULL``, one writer thread), then answers 201 — the least a durable ticket costs.
- ``POST /call/{n}`` + ``GET /events``: sends one ``ticket.called``-shaped message to every
  connected WebSocket, then answers — the least a call fan-out costs (nothing stored).

    python bench/floor.py --port 8123 --db /tmp/floor.db
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sqlite3
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

from aiohttp import web

STREAMS: Final = web.AppKey("streams", set[web.WebSocketResponse])


class Durable:
    """One SQLite connection on one thread: each call is one durable commit."""

    def __init__(self, path: Path) -> None:
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="floor-writer")
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, body TEXT)")

    def _insert(self, body: str) -> int:
        cursor = self._db.execute("INSERT INTO rows (body) VALUES (?)", (body,))
        return int(cursor.lastrowid or 0)

    async def insert(self, body: str) -> int:
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._insert, body)

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        self._db.close()


def build(db: Path) -> web.Application:
    """The floor application."""
    app = web.Application()
    durable = Durable(db)
    app[STREAMS] = set()
    counter = itertools.count(1)

    async def commit(request: web.Request) -> web.Response:
        body = await request.json()
        row = await durable.insert(json.dumps(body))
        return web.json_response({"id": row}, status=201)

    async def call(request: web.Request) -> web.Response:
        ticket = f"T{next(counter)}"
        text = json.dumps(
            {"seq": 0, "type": "ticket.called", "data": {"id": ticket, "window": 0}},
            separators=(",", ":"),
        )
        for ws in list(app[STREAMS]):
            if not ws.closed:
                await ws.send_str(text)
        return web.json_response({"ticket": {"id": ticket}})

    async def events(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str('{"type":"snapshot","seq":0,"data":{}}')
        app[STREAMS].add(ws)
        try:
            async for _message in ws:
                pass
        finally:
            app[STREAMS].discard(ws)
        return ws

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def close(_app: web.Application) -> None:
        durable.close()

    app.router.add_post("/commit", commit)
    app.router.add_post("/call/{n}", call)
    app.router.add_get("/events", events)
    app.router.add_get("/health", health)
    app.on_cleanup.append(close)
    return app


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", type=Path, required=True)
    args = parser.parse_args()
    web.run_app(build(args.db), host="127.0.0.1", port=args.port, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
