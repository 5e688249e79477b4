"""WAL bench: commands at full rate through an in-process hub; the WAL file must stay bounded.

Before the writer checkpointed between commits, the WAL grew without end under sustained
writes (hundreds of MB a minute). Prints the command rate, the largest WAL seen, the limit
(``qcall.store.WAL_LIMIT_BYTES``) and the database size.

    python bench/wal.py [--seconds 15] [--clients 32]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qcall.hub import Hub  # noqa: E402
from qcall.store import WAL_LIMIT_BYTES  # noqa: E402
from tests.common import make_config  # noqa: E402

NOTE = "x" * 500  # an inquiry note: about 0.6 KB per event


async def run(seconds: float, clients: int) -> None:
    """Drive the hub with ``clients`` concurrent commands for ``seconds``."""
    with tempfile.TemporaryDirectory(prefix="qcall-wal-") as folder:
        db = Path(folder) / "bench.db"
        hub = Hub(make_config(), db)
        await hub.start()
        engine = hub.engine
        done = 0
        largest = 0
        end = time.monotonic() + seconds

        async def client() -> None:
            nonlocal done, largest
            while time.monotonic() < end:
                await hub.execute(lambda now: engine.log_inquiry(now, "desk", "社保", note=NOTE))
                done += 1
                largest = max(largest, hub.store.wal_bytes())

        try:
            await asyncio.gather(*(client() for _ in range(clients)))
        finally:
            await hub.stop()
        print(f"{clients} clients for {seconds:.0f} s: {done / seconds:,.0f} commands/s")
        print(f"  largest WAL      {largest / 1e6:8.1f} MB  (limit {WAL_LIMIT_BYTES / 1e6:.1f} MB)")
        print(f"  database file    {db.stat().st_size / 1e6:8.1f} MB")


def main() -> None:
    """Parse the arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()
    asyncio.run(run(args.seconds, args.clients))


if __name__ == "__main__":
    main()
