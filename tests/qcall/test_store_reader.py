"""Store.open_reader: the read-only connection reports use beside a running hub."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from qcall.errors import StorageError
from qcall.store import Store
from tests.month import generate_month


def test_reader_reads_and_cannot_write(tmp_path: Path) -> None:
    month = generate_month(days=1, per_day=5)
    writer = Store(tmp_path / "q.db")
    writer.open_writer()
    writer.append(month.events[:10])
    reader = Store(tmp_path / "q.db")
    reader.open_reader()
    try:
        assert reader.last_seq() == 10
        writer.append(month.events[10:])  # the hub goes on committing
        assert reader.last_seq() == len(month.events)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.db.execute("DELETE FROM events")
    finally:
        reader.close()
        writer.close()


def test_reader_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="no database"):
        Store(tmp_path / "missing.db").open_reader()
    assert not (tmp_path / "missing.db").exists()
    newer = tmp_path / "newer.db"
    with sqlite3.connect(newer) as db:
        db.execute("PRAGMA user_version=99")
    with pytest.raises(StorageError, match="v99"):
        Store(newer).open_reader()
