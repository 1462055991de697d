"""A bounded on-disk FIFO of outgoing MQTT messages, so no alarm is lost while the broker is away.

Every alarm event is appended here first and removed only once the broker acknowledged it, so
the queue survives broker outages and daemon restarts (same file). SQLite in WAL mode with
``synchronous=NORMAL``: a commit costs no fsync, and a crash of the process loses nothing (a
power cut may lose the last commits). When full, the oldest message is dropped and counted.

Used from one thread only (the control plane's event loop); it starts no threads.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from monitor.errors import StreamqcError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL
)
"""


class SpoolError(StreamqcError):
    """The on-disk event queue cannot be opened or set aside: the message names the file."""


@dataclass(frozen=True, slots=True)
class Spooled:
    """One queued message; ``seq`` grows with every append, also across restarts."""

    seq: int
    topic: str
    payload: bytes
    qos: int


def _ignore(message: str) -> None:
    pass


class Spool:
    """FIFO of at most ``max_messages`` messages in the SQLite file ``path``."""

    def __init__(
        self, path: Path, max_messages: int, *, warn: Callable[[str], None] = _ignore
    ) -> None:
        if max_messages < 1:
            raise ValueError(f"max_messages must be >= 1, got {max_messages}")
        self.path = Path(path)
        self.max_messages = max_messages
        self.dropped = 0
        """Messages dropped because the bound was hit, since open."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise SpoolError(f"{self.path}: cannot create its folder: {error.strerror}") from None
        try:
            self._db, self._count = self._open()
        except sqlite3.DatabaseError as error:
            if not self.path.exists():  # e.g. a directory we may not write to
                raise SpoolError(f"{self.path}: cannot open the event queue: {error}") from None
            aside = self._set_aside()
            warn(
                f"{self.path}: unreadable event queue ({error}), moved aside to {aside.name};"
                " starting with an empty queue"
            )
            try:
                self._db, self._count = self._open()
            except sqlite3.DatabaseError as again:
                raise SpoolError(f"{self.path}: cannot open the event queue: {again}") from None

    def _open(self) -> tuple[sqlite3.Connection, int]:
        db = sqlite3.connect(self.path, isolation_level=None)  # autocommit; BEGIN where needed
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            (check,) = db.execute("PRAGMA quick_check").fetchone()
            if check != "ok":
                raise sqlite3.DatabaseError(f"integrity check: {check}")
            db.execute(_SCHEMA)
            db.execute("SELECT seq, topic, payload, qos FROM queue LIMIT 1").fetchall()
            (count,) = db.execute("SELECT COUNT(*) FROM queue").fetchone()
        except BaseException:
            db.close()
            raise
        return db, count

    def _set_aside(self) -> Path:
        """Rename the unusable file (and its WAL companions) out of the way; return the new name."""
        aside = self.path.with_suffix(f".corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
        try:
            self.path.rename(aside)
            for extra in ("-wal", "-shm"):
                companion = Path(f"{self.path}{extra}")
                if companion.exists():
                    companion.rename(Path(f"{aside}{extra}"))
        except OSError as error:
            raise SpoolError(
                f"{self.path}: unreadable event queue, and cannot move it aside: {error.strerror}"
            ) from None
        return aside

    def append(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """Queue a message at the tail; when full, drop the oldest first (counted in dropped)."""
        excess = self._count + 1 - self.max_messages
        with self._db:  # one transaction: BEGIN here, COMMIT (or ROLLBACK) on leaving
            self._db.execute("BEGIN")
            if excess > 0:
                self._db.execute(
                    "DELETE FROM queue WHERE seq IN (SELECT seq FROM queue ORDER BY seq LIMIT ?)",
                    (excess,),
                )
            self._db.execute(
                "INSERT INTO queue (topic, payload, qos) VALUES (?, ?, ?)",
                (topic, bytes(payload), qos),
            )
        if excess > 0:
            self.dropped += excess
            self._count -= excess
        self._count += 1

    def head(self, limit: int = 100) -> list[Spooled]:
        """Up to ``limit`` messages, oldest first, without removing them."""
        rows = self._db.execute(
            "SELECT seq, topic, payload, qos FROM queue ORDER BY seq LIMIT ?", (limit,)
        )
        return [Spooled(seq, topic, bytes(payload), qos) for seq, topic, payload, qos in rows]

    def remove(self, seq: int) -> None:
        """Forget one message (delivered)."""
        removed = self._db.execute("DELETE FROM queue WHERE seq = ?", (seq,)).rowcount
        self._count -= removed

    def remove_through(self, seq: int) -> None:
        """Forget every message up to and including ``seq`` (all delivered)."""
        removed = self._db.execute("DELETE FROM queue WHERE seq <= ?", (seq,)).rowcount
        self._count -= removed

    def __len__(self) -> int:
        return self._count

    def close(self) -> None:
        self._db.close()
