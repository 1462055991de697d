"""The console's memory in SQLite (``state_dir/console.db``): alarm history with the onset
pictures, acknowledgements, shelves, the failover audit trail and the operators' actions.

It survives restarts and covers what happened while nobody was looking. One connection, used
from the event loop: every statement here is a few rows on a local file in WAL mode (well under
a millisecond), fewer than the alarm events; the console never writes per status or thumbnail.
History older than the configured ``history`` is pruned hourly.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitor.console.rules import Ack, Shelf, iso

SCHEMA = """
CREATE TABLE IF NOT EXISTS alarms (
    id TEXT PRIMARY KEY, site TEXT NOT NULL, channel TEXT NOT NULL, input TEXT NOT NULL,
    rendition TEXT, alarm TEXT NOT NULL, severity TEXT NOT NULL,
    start REAL, "end" REAL, raised_s REAL NOT NULL, cleared_s REAL,
    detail TEXT NOT NULL DEFAULT '{}', cleared_detail TEXT
);
CREATE INDEX IF NOT EXISTS alarms_raised ON alarms (raised_s);
CREATE INDEX IF NOT EXISTS alarms_channel ON alarms (site, channel, raised_s);
CREATE TABLE IF NOT EXISTS alarm_pictures (id TEXT PRIMARY KEY, jpeg BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS acks (alarm_id TEXT PRIMARY KEY, user TEXT NOT NULL, at_s REAL NOT NULL);
CREATE TABLE IF NOT EXISTS shelves (
    site TEXT NOT NULL, channel TEXT NOT NULL, user TEXT NOT NULL, until_s REAL NOT NULL,
    reason TEXT NOT NULL, at_s REAL NOT NULL, PRIMARY KEY (site, channel)
);
CREATE TABLE IF NOT EXISTS failover_audit (
    site TEXT NOT NULL, channel TEXT NOT NULL, at_s REAL NOT NULL, payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_channel ON failover_audit (site, channel, at_s);
CREATE TABLE IF NOT EXISTS actions (
    at_s REAL NOT NULL, user TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL,
    detail TEXT NOT NULL
);
"""

SEVERITIES = ("critical", "major", "minor", "warning", "info")


@dataclass(frozen=True)
class AlarmQuery:
    """Filters of ``GET /api/alarms``; None means any."""

    site: str | None = None
    channel: str | None = None
    alarm: str | None = None
    severity: str | None = None
    since_s: float | None = None
    until_s: float | None = None
    active: bool | None = None
    limit: int = 500


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, timeout=5.0, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    # --- alarms -------------------------------------------------------------------------------

    def raised(self, site: str, event: dict[str, Any], at_s: float) -> bool:
        """Record a raised alarm (from its event or from a status that lists it); False when
        it was known already."""
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO alarms (id, site, channel, input, rendition, alarm, severity,"
            " start, raised_s, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                event["id"],
                site,
                event["channel"],
                event["input"],
                event.get("rendition"),
                event["alarm"],
                event["severity"],
                event.get("start"),
                at_s,
                json.dumps(event.get("detail") or {}),
            ),
        )
        return cursor.rowcount == 1

    def cleared(
        self, alarm_id: str, end: float | None, at_s: float, detail: dict[str, Any]
    ) -> bool:
        cursor = self.db.execute(
            'UPDATE alarms SET cleared_s = ?, "end" = ?, cleared_detail = ? '
            "WHERE id = ? AND cleared_s IS NULL",
            (at_s, end, json.dumps(detail), alarm_id),
        )
        return cursor.rowcount == 1

    def reconcile(self, site: str, channel: str, active_ids: set[str], at_s: float) -> list[str]:
        """Close the alarms the store holds open that the channel's status no longer lists
        (their cleared event was missed, e.g. while the console was stopped)."""
        rows = self.db.execute(
            "SELECT id FROM alarms WHERE site = ? AND channel = ? AND cleared_s IS NULL",
            (site, channel),
        ).fetchall()
        gone = [row["id"] for row in rows if row["id"] not in active_ids]
        for alarm_id in gone:
            self.cleared(alarm_id, None, at_s, {"cleared_by": "status"})
        return gone

    def add_picture(self, alarm_id: str, jpeg: bytes) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO alarm_pictures (id, jpeg) VALUES (?, ?)", (alarm_id, jpeg)
        )

    def picture(self, alarm_id: str) -> bytes | None:
        row = self.db.execute(
            "SELECT jpeg FROM alarm_pictures WHERE id = ?", (alarm_id,)
        ).fetchone()
        return None if row is None else bytes(row["jpeg"])

    def alarm(self, alarm_id: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT a.*, k.user AS ack_user, k.at_s AS ack_s, p.id IS NOT NULL AS has_picture "
            "FROM alarms a LEFT JOIN acks k ON k.alarm_id = a.id "
            "LEFT JOIN alarm_pictures p ON p.id = a.id WHERE a.id = ?",
            (alarm_id,),
        ).fetchone()
        return None if row is None else _alarm_row(row)

    def alarms(self, query: AlarmQuery) -> list[dict[str, Any]]:
        where: list[str] = []
        args: list[object] = []
        for column, value in (
            ("site", query.site),
            ("channel", query.channel),
            ("alarm", query.alarm),
            ("severity", query.severity),
        ):
            if value is not None:
                where.append(f"a.{column} = ?")
                args.append(value)
        if query.since_s is not None:  # overlapping the window, not only raised in it
            where.append("(a.cleared_s IS NULL OR a.cleared_s >= ?)")
            args.append(query.since_s)
        if query.until_s is not None:
            where.append("a.raised_s <= ?")
            args.append(query.until_s)
        if query.active is not None:
            where.append("a.cleared_s IS NULL" if query.active else "a.cleared_s IS NOT NULL")
        sql = (
            "SELECT a.*, k.user AS ack_user, k.at_s AS ack_s, p.id IS NOT NULL AS has_picture "
            "FROM alarms a LEFT JOIN acks k ON k.alarm_id = a.id "
            "LEFT JOIN alarm_pictures p ON p.id = a.id"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY a.raised_s DESC LIMIT ?"
        )
        rows = self.db.execute(sql, (*args, query.limit)).fetchall()
        return [_alarm_row(row) for row in rows]

    def prune(self, before_s: float) -> int:
        old = "SELECT id FROM alarms WHERE cleared_s IS NOT NULL AND cleared_s < ?"
        self.db.execute(f"DELETE FROM alarm_pictures WHERE id IN ({old})", (before_s,))
        self.db.execute(f"DELETE FROM acks WHERE alarm_id IN ({old})", (before_s,))
        count = self.db.execute(
            "DELETE FROM alarms WHERE cleared_s IS NOT NULL AND cleared_s < ?", (before_s,)
        ).rowcount
        self.db.execute("DELETE FROM failover_audit WHERE at_s < ?", (before_s,))
        self.db.execute("DELETE FROM actions WHERE at_s < ?", (before_s,))
        return int(count)

    # --- acknowledgements and shelves ---------------------------------------------------------

    def ack(self, ack: Ack) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO acks (alarm_id, user, at_s) VALUES (?, ?, ?)",
            (ack.alarm_id, ack.user, ack.at_s),
        )

    def acks(self) -> list[Ack]:
        """The acknowledgements of alarms still open (the ones a tile can show)."""
        rows = self.db.execute(
            "SELECT k.* FROM acks k JOIN alarms a ON a.id = k.alarm_id WHERE a.cleared_s IS NULL"
        ).fetchall()
        return [Ack(row["alarm_id"], row["user"], row["at_s"]) for row in rows]

    def shelve(self, shelf: Shelf) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO shelves VALUES (?, ?, ?, ?, ?, ?)",
            (shelf.site, shelf.channel, shelf.user, shelf.until_s, shelf.reason, shelf.at_s),
        )

    def unshelve(self, site: str, channel: str) -> None:
        self.db.execute("DELETE FROM shelves WHERE site = ? AND channel = ?", (site, channel))

    def shelves(self, now_s: float) -> list[Shelf]:
        self.db.execute("DELETE FROM shelves WHERE until_s <= ?", (now_s,))
        rows = self.db.execute("SELECT * FROM shelves").fetchall()
        return [
            Shelf(r["site"], r["channel"], r["user"], r["until_s"], r["reason"], r["at_s"])
            for r in rows
        ]

    # --- failover audit and operator actions --------------------------------------------------

    def add_audit(self, site: str, channel: str, payload: dict[str, Any], at_s: float) -> None:
        self.db.execute(
            "INSERT INTO failover_audit VALUES (?, ?, ?, ?)",
            (site, channel, at_s, json.dumps(payload)),
        )

    def audit(self, site: str, channel: str, limit: int = 50) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT payload FROM failover_audit WHERE site = ? AND channel = ? "
            "ORDER BY at_s DESC LIMIT ?",
            (site, channel, limit),
        ).fetchall()
        return [json.loads(row["payload"]) for row in rows]

    def log_action(
        self, user: str, action: str, target: str, detail: dict[str, Any], at_s: float
    ) -> None:
        self.db.execute(
            "INSERT INTO actions VALUES (?, ?, ?, ?, ?)",
            (at_s, user, action, target, json.dumps(detail)),
        )

    def actions(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT * FROM actions ORDER BY at_s DESC LIMIT ?", (limit,)
        ).fetchall()
        return [
            {"at": iso(r["at_s"]), "user": r["user"], "action": r["action"], "target": r["target"],
             "detail": json.loads(r["detail"])}
            for r in rows
        ]  # fmt: skip


def _alarm_row(row: sqlite3.Row) -> dict[str, Any]:
    raised_s, cleared_s = row["raised_s"], row["cleared_s"]
    return {
        "id": row["id"],
        "site": row["site"],
        "channel": row["channel"],
        "input": row["input"],
        "rendition": row["rendition"],
        "alarm": row["alarm"],
        "severity": row["severity"],
        "start": row["start"],
        "end": row["end"],
        "since": iso(raised_s),
        "since_s": raised_s,
        "raised_at": iso(raised_s),
        "cleared_at": None if cleared_s is None else iso(cleared_s),
        "cleared_s": cleared_s,
        "duration_s": None if cleared_s is None else round(cleared_s - raised_s, 1),
        "active": cleared_s is None,
        "detail": json.loads(row["detail"]),
        "cleared_detail": json.loads(row["cleared_detail"]) if row["cleared_detail"] else None,
        "acked_by": row["ack_user"],
        "acked_at": None if row["ack_s"] is None else iso(row["ack_s"]),
        "has_picture": bool(row["has_picture"]),
    }
