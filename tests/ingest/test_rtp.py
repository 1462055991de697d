"""RTP sequence accounting: loss, duplicates and reordering across the 16-bit wrap, and the
``rtp_loss`` alarm from a real RTP sender on loopback through `streamqc analyze`."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from monitor.demo.synth import MediaSpec
from monitor.ingest.rtp import MAX_MISORDER, RtpSequence, parse_rtp
from tests.ingest.udppeer import UdpSender, free_udp_port

SSRC = 0x5EED


def fed(numbers: list[int], ssrc: int = SSRC, judge_every: int | None = None) -> RtpSequence:
    sequence = RtpSequence()
    for i, number in enumerate(numbers):
        sequence.packet(number % 65536, ssrc)
        if judge_every and i % judge_every == judge_every - 1:
            sequence.judge()
    sequence.judge()
    sequence.judge()
    return sequence


def test_in_order_across_the_wrap_is_clean():
    c = fed(list(range(65000, 66500))).counters
    assert (c.received, c.lost, c.duplicates, c.reordered, c.restarts) == (1500, 0, 0, 0, 0)


def test_a_gap_across_the_wrap_is_counted_lost():
    numbers = [n for n in range(65500, 65700) if not 65530 <= n < 65540]  # 10 gone at the wrap
    c = fed(numbers).counters
    assert (c.lost, c.duplicates, c.reordered) == (10, 0, 0)


def test_duplicates_are_counted_not_lost():
    numbers = list(range(0, 300))
    numbers[100:100] = [99, 99]  # 99 sent three times in all
    numbers.insert(250, 180)  # an old one again, within the misorder window
    c = fed(numbers).counters
    assert (c.lost, c.duplicates, c.reordered) == (0, 3, 0)


def test_a_swapped_pair_is_reordered_not_lost_even_at_the_wrap():
    numbers = list(range(65520, 65600))
    i = numbers.index(65536)
    numbers[i - 1], numbers[i] = numbers[i], numbers[i - 1]  # 65535 after 0
    c = fed(numbers).counters
    assert (c.lost, c.duplicates, c.reordered) == (0, 0, 1)


def test_a_packet_later_than_the_misorder_window_counts_as_lost():
    numbers = [n for n in range(0, 400) if n != 10]
    c = fed(numbers).counters
    assert c.lost == 1
    # missing ones are settled within the window, whatever the judging
    sequence = RtpSequence()
    for n in range(0, 12 + MAX_MISORDER):
        if n != 10:
            sequence.packet(n, SSRC)
    assert sequence.counters.lost == 1


def test_a_sender_restart_with_a_new_ssrc_or_numbering_is_no_loss():
    sequence = RtpSequence()
    for n in range(1000, 1100):
        sequence.packet(n, SSRC)
    for n in range(40000, 40100):  # the same SSRC restarting far away: a confirmed jump
        sequence.packet(n, SSRC)
    for n in range(7, 107):  # another sender
        sequence.packet(n, 0xBEEF)
    sequence.judge()
    sequence.judge()
    c = sequence.counters
    assert (c.received, c.lost, c.duplicates, c.reordered, c.restarts) == (300, 0, 0, 0, 2)


def test_parse_rtp_reads_sequence_and_ssrc():
    header = bytes([0x80, 33]) + (65535).to_bytes(2, "big") + bytes(4) + SSRC.to_bytes(4, "big")
    parsed = parse_rtp(header + b"\x47" + bytes(187))
    assert parsed is not None and parsed.sequence == 65535 and parsed.ssrc == SSRC
    assert parsed.payload_offset == 12 and parsed.payload_end == 200


class Faults:
    """Drops, duplicates and swaps datagrams by number (the sender's `outgoing` hook)."""

    def __init__(self, drop: set[int], duplicate: set[int], swap: set[int]) -> None:
        self.drop, self.duplicate, self.swap = drop, duplicate, swap
        self.held: bytes | None = None

    def __call__(self, number: int, datagram: bytes) -> list[bytes]:
        if number in self.drop:
            return []
        if number in self.swap:  # hold this one, send it after the next
            self.held = datagram
            return []
        out = [datagram, datagram] if number in self.duplicate else [datagram]
        if self.held is not None:
            out.append(self.held)
            self.held = None
        return out


def test_rtp_loss_alarm_names_counts_on_a_live_feed(media):
    clip = MediaSpec(duration_s=12.0)
    port = free_udp_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor.cli", "analyze", f"rtp://127.0.0.1:{port}"]
        + ["--duration", "8s"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.5)  # the receiver binds its socket at start-up
    # numbering starts near the wrap, which the feed crosses in its first second
    sender = UdpSender(media(clip), port, clip.duration_s, rtp=True, first_sequence=65400)
    n = len(sender.due)  # datagrams in the clip
    at = n // 4  # 3 s into the clip: loss, duplicates and a swap there
    sender.outgoing = Faults(
        drop={at, at + 1, at + 2, at + 9}, duplicate={at + 4, at + 5}, swap={at + 7}
    )
    sender.start()
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        sender.stop()
    assert proc.returncode == 0 and "Traceback" not in err, err
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    loss = [e for e in events if e["alarm"] == "rtp_loss"]
    assert [e["state"] for e in loss] == ["raised", "cleared"], events
    raised, cleared = (e["detail"] for e in loss)
    assert raised["lost"] == 4 or raised["lost"] + cleared["lost"] == 4, loss
    assert cleared["lost_total"] == 4
    assert cleared["duplicates_total"] == 2 and cleared["reordered_total"] == 1
    # counted lost once 100 numbers went by, or an interval later: within ~2 s
    assert 4.0 < loss[0]["start"] < 7.0, loss


class Stats:
    """A session observer keeping the last stats of the input."""

    def __init__(self) -> None:
        self.last: list = []

    def tick(self) -> None:
        pass

    def stats(self, stats: list) -> None:
        self.last = stats

    def thumbnail(self, rendition: str | None, jpeg: bytes) -> None:
        pass


def test_rtp_counters_and_pcr_jitter_reach_the_input_stats(media):
    from monitor.config import default_channel
    from monitor.pipeline.live_session import LiveSession

    clip = MediaSpec(duration_s=12.0)
    port = free_udp_port()
    observer = Stats()
    session = LiveSession(
        f"rtp://127.0.0.1:{port}",
        default_channel(),
        lambda event: None,
        duration_s=7.0,
        observer=observer,
    )
    sender = UdpSender(media(clip), port, clip.duration_s, rtp=True)
    # ~60 datagrams a second: faults from 3 s on, once the session surely listens
    sender.outgoing = Faults(drop={180, 181, 182}, duplicate={200}, swap={220})
    sender.start()
    try:
        session.run()
    finally:
        sender.stop()
    (stats,) = observer.last
    gauges = {(name, labels): value for name, labels, value in stats.gauges}
    assert gauges[("rtp_packets_lost_total", ())] == 3
    assert gauges[("rtp_packets_duplicate_total", ())] == 1
    assert gauges[("rtp_packets_reordered_total", ())] == 1
    assert gauges[("rtp_packets_received_total", ())] > 100
    assert ("tr101290_pcr_arrival_jitter_seconds", (("pid", "256"),)) in gauges
    # TR 101 290 error counters per check, every packet counted
    assert gauges[("tr101290_packets_total", ())] > 100 * 7
    assert gauges[("tr101290_errors_total", (("check", "cc"),))] >= 1  # the dropped packets
