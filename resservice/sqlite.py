"""A store on SQLite (the standard library's sqlite3): resources that survive a restart.

Each store is a table of (id, JSON value). Queries select IDs with SQL over
the JSON (``json_extract(value, '$.author') = ?``).
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from typing import Any, Iterator

from resservice.store import ChangeNotifier, apply_changes
from resservice.values import to_plain

_NAME = "^[A-Za-z_][A-Za-z0-9_]*$"


class SQLiteStore(ChangeNotifier):
    """A store in table ``table`` of the SQLite database at ``path`` (``":memory:"`` for a private one)."""

    def __init__(self, path: str, table: str = "resources") -> None:
        super().__init__()
        if not re.match(_NAME, table):
            raise ValueError(f"invalid table name {table!r}")
        self.table = table
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._db.execute(f"CREATE TABLE IF NOT EXISTS {table} (id TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def close(self) -> None:
        self._db.close()

    def read(self, id: str) -> dict[str, Any]:
        row = self._db.execute(f"SELECT value FROM {self.table} WHERE id = ?", (id,)).fetchone()
        if row is None:
            raise KeyError(id)
        return json.loads(row[0])

    def items(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for id, value in self._db.execute(f"SELECT id, value FROM {self.table} ORDER BY id").fetchall():
            yield id, json.loads(value)

    def select(self, where: str = "1", params: tuple[Any, ...] = ()) -> list[str]:
        """The IDs of rows matching an SQL condition over ``id`` and ``value`` (JSON text).

        ``where`` may end with ``ORDER BY`` and ``LIMIT``; values go in ``params``, never in the text.
        """
        return [row[0] for row in self._db.execute(f"SELECT id FROM {self.table} WHERE {where}", params)]

    def create(self, id: str, value: dict[str, Any]) -> None:
        """Add ``id``; ``ValueError`` when it exists."""
        plain = to_plain(value)
        with self._lock:
            try:
                self._db.execute(f"INSERT INTO {self.table} (id, value) VALUES (?, ?)", (id, json.dumps(plain)))
            except sqlite3.IntegrityError:
                raise ValueError(f"{id!r} exists") from None
        self._changed(id, None, plain)

    def update(self, id: str, changes: dict[str, Any]) -> None:
        """Change properties of ``id`` (``DELETE`` removes one), in one transaction."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                before = self.read(id)
                after = apply_changes(before, changes)
                if after != before:
                    self._db.execute(f"UPDATE {self.table} SET value = ? WHERE id = ?", (json.dumps(after), id))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        if after != before:
            self._changed(id, before, after)

    def delete(self, id: str) -> None:
        """Remove ``id``; ``KeyError`` when it does not exist."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                before = self.read(id)
                self._db.execute(f"DELETE FROM {self.table} WHERE id = ?", (id,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        self._changed(id, before, None)
