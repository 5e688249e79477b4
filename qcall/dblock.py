"""One hub per database: an exclusive lock on a file next to the database, held while serving."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from qcall.errors import DatabaseInUse


class DatabaseLock:
    """An advisory ``flock`` on ``<db>.lock``; the kernel drops it when the process dies."""

    def __init__(self, db_path: str | Path) -> None:
        self.db_path = Path(db_path)
        self.path = Path(f"{db_path}.lock")
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock at once or raise ``DatabaseInUse`` naming the holder's pid."""
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise DatabaseInUse(
                f"database {self.db_path} is already served by another qcall hub (pid "
                f"{holder}); one hub per database — stop the other one first",
                f"数据库 {self.db_path} 已由另一个 qcall 中心服务使用（进程 {holder}），"
                "同一数据库只能运行一个中心服务，请先停止另一个",
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd

    def release(self) -> None:
        """Give the lock up (the file stays; its content is only a hint)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)
