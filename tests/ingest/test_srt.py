"""SRT input against a real peer: srt-live-transmit on loopback, started and stopped per test."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import av
import pytest

from monitor.demo.synth import MediaSpec
from monitor.errors import InputError
from monitor.ingest.pipe import BytePipe
from monitor.ingest.reports import TransportCondition
from monitor.ingest.srt import SrtOptions, SrtReader, judge, libsrt
from tests.ingest.srtpeer import SRT_LIVE_TRANSMIT, SrtSender, free_udp_port

SPEC = MediaSpec(duration_s=6.0, gop=25)  # a keyframe every second: decoding starts quickly
PASSPHRASE = "correct horse battery"


def _libsrt_missing() -> bool:
    try:
        libsrt()
    except InputError:
        return True
    return False


pytestmark = pytest.mark.skipif(
    SRT_LIVE_TRANSMIT is None or _libsrt_missing(), reason="needs srt-tools and libsrt1.5"
)


class Conditions(list[TransportCondition]):
    def of(self, alarm: str) -> list[TransportCondition]:
        return [c for c in self if c.alarm == alarm]


@pytest.fixture
def conditions() -> Conditions:
    return Conditions()


@pytest.fixture
def sender(media) -> Iterator[Callable[..., SrtSender]]:
    """sender(url, ready) -> srt-live-transmit sending SPEC's TS to url once ready() is true."""
    started: list[SrtSender] = []

    def start(url: str, ready: Callable[[], bool] = lambda: True) -> SrtSender:
        peer = SrtSender(media(SPEC), url, SPEC.duration_s, ready)
        started.append(peer)
        return peer

    yield start
    for peer in started:
        peer.stop()


@pytest.fixture
def reader(conditions) -> Iterator[Callable[..., SrtReader]]:
    """reader(url, **kw) -> a started SrtReader writing into a fresh BytePipe."""
    started: list[SrtReader] = []

    def start(url: str, **kw) -> SrtReader:
        pipe = BytePipe(read_timeout_s=4.0)
        r = SrtReader(SrtOptions.from_url(url), pipe, conditions.append, **kw).start()
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop()


def wait_for(predicate: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def decode_pictures(pipe: BytePipe, n: int) -> list[float]:
    """PTS (seconds) of the first n pictures PyAV decodes from the pipe."""
    times: list[float] = []
    options = {"probesize": "65536", "analyzeduration": "500000"}
    with av.open(pipe, format="mpegts", options=options) as container:
        for frame in container.decode(video=0):
            times.append(frame.time)
            if len(times) >= n:
                break
    return times


def assert_decodes(r: SrtReader, n: int = 25) -> None:
    times = decode_pictures(r.pipe, n)
    assert len(times) == n, r.error
    assert all(b > a for a, b in zip(times, times[1:], strict=False)), times


def test_caller_receives_from_a_listening_sender_and_pyav_decodes(sender, reader, conditions):
    port = free_udp_port()
    box: list[SrtReader] = []
    peer = sender(f"srt://127.0.0.1:{port}?mode=listener", lambda: bool(box) and box[0].connected)
    r = reader(f"srt://127.0.0.1:{port}?mode=caller&latency=120")
    box.append(r)
    assert wait_for(lambda: r.connected, 5), (r.error, peer.stderr())
    assert_decodes(r)
    assert wait_for(lambda: r.stats.get("pkt_recv_total", 0) > 0, 2)
    stats = r.stats
    # srt_bstats layout check: one 1316-byte message per packet, latency as configured.
    assert stats["pkt_recv_total"] * 1316 <= r.pipe.bytes_in + 1316 * 20
    assert stats["latency_ms"] == 120
    assert 0 <= stats["rtt_ms"] < 40 and stats["pkt_dropped_total"] == 0
    assert not conditions.of("srt_loss") and not conditions.of("srt_rtt")
    # The same statistics as metrics, in base units: seconds, bits per second, _total counts.
    gauges = {name: value for name, labels, value in r.gauges() if labels == ()}
    assert gauges["srt_latency_seconds"] == 0.120
    assert gauges["srt_packets_received_total"] >= stats["pkt_recv_total"]
    assert 0 <= gauges["srt_rtt_seconds"] < 0.040
    assert gauges["srt_packets_dropped_total"] == 0 and "srt_bandwidth_bits_per_second" in gauges


def test_latency_below_three_rtts_reports_srt_rtt(sender, reader, conditions):
    # Loopback RTT is ~0.05 ms: only latency=0 on both sides (SRT uses the larger) is below it.
    port = free_udp_port()
    box: list[SrtReader] = []
    sender(
        f"srt://127.0.0.1:{port}?mode=listener&latency=0", lambda: bool(box) and box[0].connected
    )
    r = reader(f"srt://127.0.0.1:{port}?latency=0")
    box.append(r)
    assert wait_for(lambda: bool(conditions.of("srt_rtt")), 4), r.error
    report = conditions.of("srt_rtt")[0]
    assert report.active and report.detail["latency_ms"] == 0 and report.detail["rtt_ms"] > 0


def test_listener_accepts_a_caller_and_reads_its_streamid(sender, reader):
    port = free_udp_port()
    r = reader(f"srt://127.0.0.1:{port}?mode=listener")
    assert wait_for(lambda: r.state == "listening", 2)
    sender(f"srt://127.0.0.1:{port}?mode=caller&streamid=feed1", lambda: r.connected)
    assert wait_for(lambda: r.connected, 5), r.error
    assert r.peer_streamid == "feed1"
    assert_decodes(r)


def test_same_passphrase_on_both_sides_decodes(sender, reader, conditions):
    port = free_udp_port()
    box: list[SrtReader] = []
    sender(
        f"srt://127.0.0.1:{port}?mode=listener&passphrase={PASSPHRASE}&pbkeylen=32",
        lambda: bool(box) and box[0].connected,
    )
    r = reader(f"srt://127.0.0.1:{port}?passphrase={PASSPHRASE}")
    box.append(r)
    assert wait_for(lambda: r.connected, 5), r.error
    assert_decodes(r)
    assert not [c for c in conditions.of("srt_decrypt") if c.active]


@pytest.mark.parametrize(
    ("theirs", "ours", "reason"),
    [
        (f"&passphrase={PASSPHRASE}", "&passphrase=not the right one", "passphrase mismatch"),
        ("", f"&passphrase={PASSPHRASE}", "only one side has a passphrase"),
    ],
)
def test_passphrase_mismatch_reports_srt_decrypt_and_retries(
    sender, reader, conditions, theirs, ours, reason
):
    port = free_udp_port()
    sender(f"srt://127.0.0.1:{port}?mode=listener{theirs}")
    r = reader(f"srt://127.0.0.1:{port}?conntimeo=1000{ours}")
    assert wait_for(lambda: len(conditions.of("srt_decrypt")) >= 2, 5)  # retried, not stuck
    first = conditions.of("srt_decrypt")[0]
    assert first.active and reason in first.detail["reason"]
    assert not r.connected and r.pipe.bytes_in == 0
    assert "cannot connect: " in (r.error or "") and "not the right one" not in (r.error or "")
    started_s = time.monotonic()
    r.stop()
    assert time.monotonic() - started_s < 1.0
    assert r.state == "stopped" and r.pipe.closed


def test_a_busy_listening_port_is_an_input_error_at_start(reader):
    port = free_udp_port()
    reader(f"srt://127.0.0.1:{port}?mode=listener")
    with pytest.raises(InputError, match=f"cannot listen on 127.0.0.1:{port}: .*already listening"):
        reader(f"srt://127.0.0.1:{port}?mode=listener")


def test_streamid_set_by_our_caller_reaches_the_listener(reader):
    port = free_udp_port()
    listener = reader(f"srt://127.0.0.1:{port}?mode=listener")
    assert wait_for(lambda: listener.state == "listening", 2)
    streamid = "#!::r=live/feed1,m=request"
    caller = reader(f"srt://127.0.0.1:{port}?streamid={streamid}")
    assert wait_for(lambda: caller.connected and listener.connected, 5), caller.error
    assert listener.peer_streamid == streamid


def test_sender_killed_is_noticed_and_a_restarted_sender_is_reconnected(sender, reader):
    port = free_udp_port()
    box: list[SrtReader] = []
    url = f"srt://127.0.0.1:{port}?mode=listener"
    peer = sender(url, lambda: bool(box) and box[0].connected)
    r = reader(f"srt://127.0.0.1:{port}?peeridletimeo=1500&conntimeo=1000")
    box.append(r)
    assert wait_for(lambda: r.connected and r.pipe.bytes_in > 20_000, 5), r.error
    peer.kill()
    killed_s = time.monotonic()
    assert wait_for(lambda: not r.connected, 4)
    assert time.monotonic() - killed_s < 3.0
    assert "connection lost" in (r.error or "")
    assert not r.pipe.closed  # reconnecting: the input goes on
    before = r.pipe.bytes_in
    sender(url, lambda: r.connected)
    assert wait_for(lambda: r.connected and r.connections == 2, 8), r.error
    assert wait_for(lambda: r.pipe.bytes_in > before + 20_000, 5)


def test_without_reconnect_a_lost_peer_closes_the_pipe(sender, reader):
    port = free_udp_port()
    box: list[SrtReader] = []
    peer = sender(f"srt://127.0.0.1:{port}?mode=listener", lambda: bool(box) and box[0].connected)
    r = reader(f"srt://127.0.0.1:{port}?peeridletimeo=1000", reconnect=False)
    box.append(r)
    assert wait_for(lambda: r.pipe.bytes_in > 0, 5), r.error
    peer.kill()
    assert wait_for(lambda: r.state == "stopped", 3)
    assert r.pipe.closed and "connection lost" in (r.error or "")


def test_stop_is_prompt_while_a_caller_waits_for_an_absent_listener(reader):
    r = reader(f"srt://127.0.0.1:{free_udp_port()}?conntimeo=10000")
    assert wait_for(lambda: r.state == "connecting", 1)
    time.sleep(0.3)
    started_s = time.monotonic()
    r.stop()
    assert time.monotonic() - started_s < 1.0 and r.state == "stopped"


def test_url_options_and_their_units():
    o = SrtOptions.from_url(
        f"srt://127.0.0.1:9000?mode=listener&latency=200&passphrase={PASSPHRASE}&pbkeylen=24"
        "&streamid=abc&rcvtimeo=300"
    )
    assert (o.mode, o.latency_ms, o.pbkeylen, o.streamid, o.rcvtimeo_ms) == (
        "listener",
        200,
        24,
        "abc",
        300,
    )
    assert o.passphrase == PASSPHRASE
    assert PASSPHRASE not in repr(o) and PASSPHRASE not in str(o) and PASSPHRASE not in o.url
    assert SrtOptions.from_url("srt://:9000?mode=listener").host == "0.0.0.0"
    assert SrtOptions.from_url("srt://h:1").mode == "caller"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("udp://127.0.0.1:9000", "not an srt:// URL"),
        ("srt://127.0.0.1", "a port is needed"),
        ("srt://127.0.0.1:70000", "port must be"),
        ("srt://127.0.0.1:9000?mode=rendezvous", "mode must be caller or listener"),
        ("srt://:9000", "a caller needs a host"),
        ("srt://h:9000?latency=120000", "FFmpeg URLs use microseconds"),
        ("srt://h:9000?latency=abc", "latency must be a whole number"),
        ("srt://h:9000?passphrase=short", "passphrase must be 10 to 80 characters"),
        (f"srt://h:9000?passphrase={'x' * 81}", "passphrase must be 10 to 80 characters"),
        (f"srt://h:9000?passphrase={PASSPHRASE}&pbkeylen=20", "pbkeylen must be 0, 16, 24 or 32"),
        (f"srt://h:9000?streamid={'s' * 513}", "streamid must be at most 512"),
        (f"srt://h:9000?passphrase={PASSPHRASE}&pkt_size=1316", "unknown option 'pkt_size'"),
        ("srt://h:9000?rcvtimeo=5000", "rcvtimeo must be between"),
    ],
)
def test_bad_urls_are_one_line_input_errors_without_the_passphrase(url, message):
    with pytest.raises(InputError) as caught:
        SrtOptions.from_url(url)
    text = str(caught.value)
    assert message in text and "\n" not in text
    assert text.startswith(url.split("?")[0])
    assert "short" not in text and PASSPHRASE not in text and "x" * 81 not in text


def _stats(**kw) -> dict:
    base = {
        "pkt_recv_total": 100,
        "pkt_dropped_total": 0,
        "pkt_lost_total": 0,
        "pkt_retransmitted_total": 0,
        "pkt_undecrypted_total": 0,
        "rtt_ms": 1.0,
        "latency_ms": 120,
    }
    return base | kw


def test_judge_flags_drops_not_recovered_losses():
    before = _stats(pkt_lost_total=10, pkt_retransmitted_total=10)
    recovered = judge(before, _stats(pkt_lost_total=30, pkt_retransmitted_total=30))
    assert recovered["srt_loss"][0] is False
    dropped = judge(
        before, _stats(pkt_lost_total=30, pkt_retransmitted_total=20, pkt_dropped_total=7)
    )
    active, detail = dropped["srt_loss"]
    assert active and detail == {"dropped": 7, "lost": 20, "retransmitted": 10, "dropped_total": 7}
    assert judge(None, _stats(pkt_undecrypted_total=3))["srt_decrypt"] == (True, {"undecrypted": 3})


def test_judge_flags_rtt_above_a_third_of_the_latency():
    before = _stats(pkt_recv_total=50)  # data already flowed in the interval before
    assert judge(before, _stats(rtt_ms=39.0))["srt_rtt"][0] is False
    assert judge(before, _stats(rtt_ms=41.0))["srt_rtt"] == (
        True,
        {"rtt_ms": 41.0, "latency_ms": 120.0},
    )


def test_judge_ignores_the_rtt_guess_of_the_first_interval_with_data():
    # The first data after connecting can still carry libsrt's 100 ms initial guess.
    assert judge(None, _stats(rtt_ms=100.0))["srt_rtt"][0] is False
    assert judge(_stats(pkt_recv_total=0), _stats(rtt_ms=100.0))["srt_rtt"][0] is False
    assert judge(_stats(pkt_recv_total=50), _stats(rtt_ms=100.0))["srt_rtt"][0] is True


def test_judge_ignores_the_rtt_guess_of_an_interval_without_data():
    idle = judge(_stats(), _stats(rtt_ms=100.0))  # libsrt's initial RTT, nothing received
    assert idle["srt_rtt"] == (False, {"rtt_ms": 100.0, "latency_ms": 120.0})
