"""The on-disk event queue: order, bound, restarts, and a corrupt file."""

from __future__ import annotations

import pytest

from monitor.sinks.spool import Spool, SpoolError


def test_messages_come_out_oldest_first_and_only_leave_when_removed(tmp_path):
    spool = Spool(tmp_path / "q.db", max_messages=100)
    for i in range(5):
        spool.append(f"t/{i}", b"%d" % i, qos=1)
    head = spool.head()
    assert [(m.topic, m.payload, m.qos) for m in head] == [
        (f"t/{i}", b"%d" % i, 1) for i in range(5)
    ]
    assert [m.seq for m in head] == sorted(m.seq for m in head)
    assert spool.head(limit=2) == head[:2]
    spool.remove(head[0].seq)
    assert len(spool) == 4
    spool.remove_through(head[2].seq)
    assert [m.payload for m in spool.head()] == [b"3", b"4"]
    assert len(spool) == 2


def test_a_full_queue_drops_the_oldest_and_counts_it(tmp_path):
    spool = Spool(tmp_path / "q.db", max_messages=3)
    for i in range(5):
        spool.append("t", b"%d" % i)
    assert [m.payload for m in spool.head()] == [b"2", b"3", b"4"]
    assert len(spool) == 3
    assert spool.dropped == 2


def test_the_queue_survives_a_restart_and_keeps_numbering_upwards(tmp_path):
    path = tmp_path / "state" / "nested" / "q.db"  # folders are created
    spool = Spool(path, max_messages=10)
    for i in range(3):
        spool.append("t", b"%d" % i)
    last = spool.head()[-1].seq
    spool.remove_through(last)
    spool.append("t", b"kept")
    spool.close()

    reopened = Spool(path, max_messages=10)
    assert len(reopened) == 1
    assert [m.payload for m in reopened.head()] == [b"kept"]
    reopened.append("t", b"after")
    seqs = [m.seq for m in reopened.head()]
    assert seqs[0] > last and seqs[1] > seqs[0]  # a delivered seq is never reused
    assert reopened.dropped == 0


def test_a_corrupt_file_is_moved_aside_with_one_warning_and_the_queue_starts_empty(tmp_path):
    path = tmp_path / "q.db"
    path.write_bytes(b"this is not an sqlite database, just garbage " * 200)
    warnings: list[str] = []
    spool = Spool(path, max_messages=10, warn=warnings.append)
    assert len(spool) == 0
    spool.append("t", b"fresh")
    assert [m.payload for m in spool.head()] == [b"fresh"]
    aside = [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not")
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert str(path) in warnings[0] and aside[0].name in warnings[0]


def test_an_unusable_folder_is_one_error_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SpoolError, match="cannot create its folder") as error:
        Spool(blocker / "q.db", max_messages=10)
    assert "\n" not in str(error.value)
