"""`streamqc analyze srt://…` end to end against srt-live-transmit on loopback."""

from __future__ import annotations

import time

import pytest

from monitor.demo.synth import MediaSpec, Span
from tests.ingest.srtpeer import LossyRelay, SrtSender, free_udp_port
from tests.ingest.test_udp import analyze_live, finish, spans

CLIP = MediaSpec(duration_s=12.0, black=(Span(3.0, 5.5),))
SECRET = "correct-horse-battery"


def start_sender(media, url: str, after_s: float) -> SrtSender:
    """srt-live-transmit listening on url, feeding the clip once our caller is surely up."""
    opens_at = time.monotonic() + after_s
    return SrtSender(media(CLIP), url, CLIP.duration_s, lambda: time.monotonic() >= opens_at)


def test_srt_caller_finds_the_faults_of_a_live_feed(media):
    port = free_udp_port()
    sender = start_sender(media, f"srt://127.0.0.1:{port}?mode=listener", after_s=3.0)
    proc = analyze_live(f"srt://127.0.0.1:{port}", "--duration", "11s")
    try:
        code, events, err = finish(proc)
    finally:
        sender.stop()
    assert code == 0, err
    black = spans(events, "black")
    assert len(black) == 1, events
    assert black[0][1] - black[0][0] == pytest.approx(2.5, abs=0.1)
    assert not [e for e in events if e["alarm"].startswith("srt_")]


def test_wrong_passphrase_raises_srt_decrypt_and_never_shows_the_secret(media):
    port = free_udp_port()
    sender = start_sender(
        media, f"srt://127.0.0.1:{port}?mode=listener&passphrase=another-secret-x", after_s=0.5
    )
    proc = analyze_live(f"srt://127.0.0.1:{port}?passphrase={SECRET}", "--duration", "4s")
    try:
        code, events, err = finish(proc)
    finally:
        sender.stop()
    assert code == 0, err
    decrypt = [e for e in events if e["alarm"] == "srt_decrypt" and e["state"] == "raised"]
    assert decrypt and "passphrase" in decrypt[0]["detail"]["reason"]
    assert any(e["alarm"] == "input_loss" for e in events)  # nothing gets through
    assert SECRET not in err and all(SECRET not in str(e) for e in events)


def test_loss_that_retransmission_cannot_recover_raises_srt_loss(media):
    # On loopback a plain blackout is fully recovered (the gap is refilled within one RTT
    # of 0.1 ms); losing the retransmissions too makes packets miss their play time.
    port = free_udp_port()
    sender = start_sender(media, f"srt://127.0.0.1:{port}?mode=listener&latency=40", after_s=2.0)
    relay = LossyRelay(port)
    proc = analyze_live(f"srt://127.0.0.1:{relay.port}?latency=40", "--duration", "9s")
    try:
        time.sleep(5.0)
        relay.lossy(2.0, 0.6)
        code, events, err = finish(proc)
    finally:
        relay.stop()
        sender.stop()
    assert code == 0, err
    assert relay.dropped > 0
    loss = [e for e in events if e["alarm"] == "srt_loss" and e["state"] == "raised"]
    assert loss, events
    assert loss[0]["detail"]["dropped"] > 0
