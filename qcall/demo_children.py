"""The demo's child processes (lobby screen, kiosk): started in their own process groups,
stopped together, killed when they do not stop in time, never left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

# A child asked to stop (SIGINT, as Ctrl-C would) gets this long before SIGKILL: the lobby
# screen and kiosk close their window and event stream in well under a second.
CHILD_STOP_TIMEOUT_S: Final = 8.0


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """One child: its name in messages, its command line, its log file."""

    name: str
    argv: tuple[str, ...]
    log: Path
    env: tuple[tuple[str, str], ...] = ()


def qcall_argv(*args: str) -> tuple[str, ...]:
    """``qcall ARGS`` with this interpreter (the demo's virtualenv, PATH or not)."""
    return (sys.executable, "-m", "qcall", *args)


class Children:
    """Started children; ``stop()`` ends every one of them (and their own children)."""

    def __init__(self, stop_timeout_s: float = CHILD_STOP_TIMEOUT_S) -> None:
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.stop_timeout_s = stop_timeout_s

    async def start(self, spec: ChildSpec) -> int:
        """Start the child in a new session; return its pid."""
        spec.log.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **dict(spec.env)}
        with spec.log.open("ab") as log:
            proc = await asyncio.create_subprocess_exec(
                *spec.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                start_new_session=True,  # its own group: stopped as one, spared the tty's ^C
            )
        self.procs[spec.name] = proc
        return proc.pid

    async def wait(self, name: str) -> int:
        """Wait for the child ``name`` to end; its exit status."""
        return await self.procs[name].wait()

    def exited(self) -> dict[str, int]:
        """Children that ended on their own, with their exit status."""
        return {
            name: proc.returncode
            for name, proc in self.procs.items()
            if proc.returncode is not None
        }

    async def stop(self) -> None:
        """SIGINT to each child's group, then SIGKILL what is still there after the timeout."""
        for proc in self.procs.values():
            _signal_group(proc.pid, signal.SIGINT)
        for proc in self.procs.values():
            try:
                async with asyncio.timeout(self.stop_timeout_s):
                    await proc.wait()
            except TimeoutError:
                _signal_group(proc.pid, signal.SIGKILL)
                await proc.wait()
            # Grandchildren (a TTS worker) share the group: none may outlive the child.
            _signal_group(proc.pid, signal.SIGKILL)
        self.procs.clear()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
