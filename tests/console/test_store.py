"""The console's SQLite memory: history with pictures, missed clears, pruning, acks, shelves."""

from __future__ import annotations

from pathlib import Path

from monitor.console.rules import Ack, Shelf
from monitor.console.store import AlarmQuery, Store

T0 = 1_800_000_000.0


def raised(store: Store, alarm_id: str, channel: str = "news", at_s: float = T0) -> None:
    event = {"id": alarm_id, "channel": channel, "input": "primary", "alarm": "black",
             "severity": "major", "start": 1.0, "detail": {"ratio": 1.0}}  # fmt: skip
    store.raised("paris", event, at_s)


def test_an_alarm_is_recorded_once_and_closed_by_its_clear(tmp_path: Path) -> None:
    store = Store(tmp_path / "console.db")
    raised(store, "a")
    raised(store, "a", at_s=T0 + 5)  # the same alarm from a status: no second row
    assert store.cleared("a", 5.0, T0 + 4, {"duration_s": 4.0})
    assert not store.cleared("a", 6.0, T0 + 9, {})  # a redelivered clear changes nothing
    [row] = store.alarms(AlarmQuery())
    assert (row["active"], row["duration_s"], row["end"]) == (False, 4.0, 5.0)
    assert row["detail"] == {"ratio": 1.0} and row["cleared_detail"] == {"duration_s": 4.0}
    store.add_picture("a", b"\xff\xd8jpeg")
    assert store.picture("a") == b"\xff\xd8jpeg" and store.alarm("a")["has_picture"]  # type: ignore[index]


def test_alarms_a_status_no_longer_lists_are_closed(tmp_path: Path) -> None:
    store = Store(tmp_path / "console.db")
    raised(store, "a")
    raised(store, "b")
    assert store.reconcile("paris", "news", {"b"}, T0 + 10) == ["a"]
    assert [r["id"] for r in store.alarms(AlarmQuery(active=True))] == ["b"]
    assert store.alarm("a")["cleared_detail"] == {"cleared_by": "status"}  # type: ignore[index]


def test_history_is_pruned_but_open_alarms_stay(tmp_path: Path) -> None:
    store = Store(tmp_path / "console.db")
    raised(store, "old")
    store.cleared("old", None, T0 + 1, {})
    store.ack(Ack("old", "jane", T0 + 1))
    store.add_picture("old", b"x")
    raised(store, "open")
    assert store.prune(T0 + 100) == 1
    assert [r["id"] for r in store.alarms(AlarmQuery())] == ["open"]
    assert store.picture("old") is None


def test_filters_by_channel_severity_and_time_window(tmp_path: Path) -> None:
    store = Store(tmp_path / "console.db")
    raised(store, "early", at_s=T0)
    store.cleared("early", None, T0 + 10, {})
    raised(store, "late", channel="sport", at_s=T0 + 100)
    assert [r["id"] for r in store.alarms(AlarmQuery(channel="sport"))] == ["late"]
    assert store.alarms(AlarmQuery(severity="critical")) == []
    # Overlapping the window, not only raised in it.
    assert [r["id"] for r in store.alarms(AlarmQuery(since_s=T0 + 5, until_s=T0 + 50))] == ["early"]
    assert [r["id"] for r in store.alarms(AlarmQuery(since_s=T0 + 50))] == ["late"]


def test_acks_and_shelves_outlive_the_process(tmp_path: Path) -> None:
    store = Store(tmp_path / "console.db")
    raised(store, "a")
    store.ack(Ack("a", "jane", T0))
    store.ack(Ack("a", "joe", T0 + 1))  # the first one stands
    store.shelve(Shelf("paris", "news", "jane", T0 + 600, "swap", T0))
    store.shelve(Shelf("paris", "sport", "jane", T0 + 60, "short", T0))
    store.close()
    again = Store(tmp_path / "console.db")
    assert again.acks() == [Ack("a", "jane", T0)]
    assert [s.channel for s in again.shelves(T0 + 100)] == ["news"]  # sport's ended
