"""MPEG-TS over UDP and RTP from a real sender on loopback, through `streamqc analyze`."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from monitor.demo.synth import MediaSpec, Span
from monitor.errors import InputError
from monitor.ingest.udp import UdpOptions, rtp_payload
from tests.ingest.udppeer import NULL_PACKET, UdpSender, free_udp_port, pcr_times

CLIP = MediaSpec(duration_s=12.0, black=(Span(3.0, 5.5),))


def analyze_live(url: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "monitor.cli", "analyze", url, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[int, list[dict], str]:
    import json

    out, err = proc.communicate(timeout=timeout)
    assert "Traceback" not in err, err
    return proc.returncode, [json.loads(line) for line in out.splitlines() if line.strip()], err


def spans(events: list[dict], alarm: str) -> list[tuple[float, float]]:
    return [
        (e["start"], e["end"]) for e in events if e["alarm"] == alarm and e["state"] == "cleared"
    ]


@pytest.mark.parametrize(
    ("scheme", "query"), [("udp", ""), ("rtp", ""), ("udp", "?batch_ms=300")], ids=str
)
def test_live_feed_is_decoded_and_its_faults_found(media, scheme, query):
    port = free_udp_port()
    proc = analyze_live(f"{scheme}://127.0.0.1:{port}{query}", "--duration", "9s")
    time.sleep(1.5)  # the receiver binds its socket at start-up
    sender = UdpSender(media(CLIP), port, CLIP.duration_s, rtp=scheme == "rtp").start()
    try:
        code, events, err = finish(proc)
    finally:
        sender.stop()
    assert code == 0, err
    black = spans(events, "black")
    assert len(black) == 1, events
    start, end = black[0]
    assert end - start == pytest.approx(2.5, abs=0.1)  # live: the timeline is the session's
    assert "monitored" in err and "0 decoder restarts" in err
    # a clean transport (sent on its PCR schedule, before the clip loops): no TR 101 290 alarm
    assert not [e for e in events if e["alarm"].startswith("tr101290")], events


def test_sender_gone_then_back_raises_and_clears_input_loss(media):
    port = free_udp_port()
    proc = analyze_live(f"udp://127.0.0.1:{port}", "--duration", "14s")
    sender = UdpSender(media(CLIP), port, CLIP.duration_s).start()
    try:
        time.sleep(5.0)
        sender.pause()  # the sender dies...
        time.sleep(3.0)
        sender.resume()  # ...and comes back
        code, events, err = finish(proc)
    finally:
        sender.stop()
    assert code == 0, err
    loss = [e for e in events if e["alarm"] == "input_loss"]
    raised = [e for e in loss if e["state"] == "raised"]
    cleared = [e for e in loss if e["state"] == "cleared" and e["detail"].get("cleared_by") is None]
    assert len(raised) >= 1 and len(cleared) >= 1, events
    # lost for about the 3 s pause, from about when it began
    assert cleared[0]["end"] - cleared[0]["start"] == pytest.approx(3.0, abs=1.0)
    assert raised[0]["severity"] == "critical"
    # decoding resumed in the same process: pictures after the gap
    assert "pictures" in err


def test_watchdog_restarts_a_decoder_whose_media_stopped_advancing(media, tmp_path):
    config = tmp_path / "watch.yaml"
    port = free_udp_port()
    config.write_text(
        "version: 1\nsite: t\nchannels:\n  - name: c\n    inputs:\n      primary:\n"
        f"        url: udp://127.0.0.1:{port}\n        watchdog: 2s\n        read_timeout: 30s\n"
    )
    proc = analyze_live(f"udp://127.0.0.1:{port}", "--config", str(config), "--duration", "10s")
    sender = UdpSender(media(CLIP), port, CLIP.duration_s).start()
    try:
        time.sleep(4.0)
        sender.nulls()  # bytes keep flowing, media does not: only the watchdog can tell
        code, events, err = finish(proc)
    finally:
        sender.stop()
    assert code == 0, err
    restarts = [line for line in err.splitlines() if "stopped advancing" in line]
    assert restarts, err
    at = float(restarts[0].split(" at ")[1].split(" s")[0])
    assert at <= 4.0 + 2.0 + 1.5  # within the 2 s bound (plus one tick and start-up slack)
    assert not [e for e in events if e["alarm"] == "input_loss"]  # bytes never stopped


def test_multicast_group_is_joined(media):
    port = free_udp_port()
    group = "239.255.42.42"
    proc = analyze_live(f"udp://{group}:{port}?localaddr=127.0.0.1", "--duration", "5s")
    time.sleep(1.5)
    sender = UdpSender(media(CLIP), port, CLIP.duration_s, host=group).start()
    try:
        code, events, err = finish(proc)
    finally:
        sender.stop()
    assert code == 0, err
    assert " 0 pictures" not in err and "pictures" in err


def test_bad_udp_urls_are_one_line_errors():
    with pytest.raises(InputError, match="a port is needed"):
        UdpOptions.from_url("udp://127.0.0.1")
    with pytest.raises(InputError, match="udp://nowhere:5000"):
        UdpOptions.from_url("udp://nowhere:5000")
    assert UdpOptions.from_url("udp://@239.1.1.1:5000").multicast
    assert UdpOptions.from_url("rtp://127.0.0.1:5004").rtp
    assert UdpOptions.from_url("udp://127.0.0.1:5000?batch_ms=200").batch_s == 0.2
    assert UdpOptions.from_url("udp://127.0.0.1:5000").batch_s == 0.04
    for bad in ("-1", "1001", "soon"):
        with pytest.raises(InputError, match=r"batch_ms must be .* 0 to 1000"):
            UdpOptions.from_url(f"udp://127.0.0.1:5000?batch_ms={bad}")


def test_rtp_header_with_csrc_extension_and_padding_is_stripped():
    payload = b"\x47" + bytes(187)
    header = bytes([0x80 | 0x10 | 0x20 | 1, 33]) + bytes(10)  # 1 CSRC, extension, padding
    csrc = bytes(4)
    extension = b"\xbe\xde\x00\x01" + bytes(4)  # one 32-bit word
    padding = bytes(3) + b"\x04"
    assert rtp_payload(header + csrc + extension + payload + padding) == payload
    assert rtp_payload(payload) is None  # plain TS, not RTP


def broken_transport(clean: bytes) -> bytes:
    """The clip with its PAT gone from 4.0 to 5.5 s and one video packet lost at ~7 s.

    Null packets take the removed packets' places, so the timing stays the mux's.
    """
    packets = np.frombuffer(clean, np.uint8).reshape(-1, 188).copy()
    times = pcr_times(clean)
    pids = ((packets[:, 1].astype(int) & 0x1F) << 8) | packets[:, 2]
    gone = (pids == 0) & (times >= 4.0) & (times < 5.5)
    video = int(np.bincount(pids[pids != 0x1FFF]).argmax())  # the busiest PID is the video
    lost = np.flatnonzero((pids == video) & (times >= 7.0) & ((packets[:, 3] & 0x30) == 0x10))[0]
    gone[lost] = True
    packets[gone] = np.frombuffer(NULL_PACKET, np.uint8)
    return packets.tobytes()


def test_cc_errors_and_a_missing_pat_on_a_live_feed_raise_tr101290_alarms(media, tmp_path):
    broken = tmp_path / "broken.ts"
    broken.write_bytes(broken_transport(media(CLIP).read_bytes()))
    port = free_udp_port()
    proc = analyze_live(f"udp://127.0.0.1:{port}", "--duration", "10s")
    time.sleep(1.0)
    sender = UdpSender(broken, port, CLIP.duration_s).start()
    try:
        code, events, err = finish(proc)
    finally:
        sender.stop()
    assert code == 0, err
    raised = {e["alarm"]: e for e in events if e["state"] == "raised"}
    assert "tr101290_pat" in raised, events
    assert "tr101290_cc" in raised, events
    pat = [e for e in events if e["alarm"] == "tr101290_pat" and e["state"] == "cleared"]
    assert pat and 0.8 <= pat[0]["end"] - pat[0]["start"] <= 1.6  # 1.5 s gap, less the 0.5 s limit
    assert raised["tr101290_cc"]["detail"]["count"] == 1


def test_datagrams_are_taken_many_per_call_and_a_larger_one_grows_the_slots():
    import socket

    from monitor.ingest.udp import Datagrams

    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with receiver, sender:
        receiver.bind(("127.0.0.1", 0))
        receiver.setblocking(False)
        datagrams = Datagrams(receiver, 256 << 10)
        assert datagrams.receive() == []
        sizes = (1316, 1316, 5000, 1316)
        for n in sizes:
            sender.sendto(bytes([n % 251]) * n, receiver.getsockname())
        time.sleep(0.1)
        got = datagrams.receive()
        # the 5000-byte datagram did not fit the first slots: counted, not passed on cut short
        assert [bytes(data) for data, _ in got] == [bytes([1316 % 251]) * 1316] * 3
        assert {sender for _, sender in got} == {socket.inet_aton("127.0.0.1")}
        assert datagrams.truncated == 1
        sender.sendto(b"x" * 5000, receiver.getsockname())
        time.sleep(0.1)
        assert [bytes(data) for data, _ in datagrams.receive()] == [b"x" * 5000]
