"""HLS VOD ladders (FFmpeg's hls muxer, clear and AES-128) and playlist errors, end to end.

The ladder is ``tests/ladderclips.py``'s scene at three sizes, 40 s, its middle rung garbled
over 22-26 s (what ``rendition_mismatch`` finds), packaged by Debian's ``ffmpeg`` into 2 s
segments with ``-hls_playlist_type vod`` and served by a real HTTP server on loopback.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pytest

from monitor.config import ChannelConfig, InputConfig
from monitor.demo.synth import Span
from monitor.pipeline.live_session import LiveSession
from tests.ingest.hlsvod import FFMPEG, StaticHlsServer, package_vod
from tests.ingest.test_udp import analyze_live, finish
from tests.ladderclips import LadderClip, ladder_files

pytestmark = pytest.mark.skipif(FFMPEG is None, reason="needs Debian's ffmpeg (.ci/setup)")

FAULT = Span(22.0, 26.0)
CLIP = LadderClip(duration_s=40.0, garbled=((1, FAULT),))
FAULTY_RUNG = CLIP.name(1)
CONFIG = """\
version: 1
site: test
channels:
  - name: vod
    inputs:
      primary: {url: "http://127.0.0.1:9/master.m3u8"}
    detectors:
      rendition_mismatch: {enabled: true}
"""
CHANNEL = ChannelConfig(name="vod")
CHANNEL = replace(
    CHANNEL,
    rendition_mismatch=replace(
        CHANNEL.rendition_mismatch, rule=replace(CHANNEL.rendition_mismatch.rule, enabled=True)
    ),
)


@functools.cache
def packaged(encrypt: bool) -> Path:
    """The VOD ladder packaged once per test run (clear or AES-128); its folder."""
    files = ladder_files(CLIP)
    folder = Path(tempfile.mkdtemp(prefix="streamqc-vod-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    package_vod([files[r.name] for r in CLIP.rungs], folder, encrypt=encrypt)
    return folder


def run_session(
    url: str, channel: ChannelConfig = CHANNEL, **options: object
) -> tuple[list[dict], LiveSession]:
    events: list[dict] = []
    session = LiveSession(url, channel, lambda e: events.append(e.to_dict()), **options)
    session.run()
    return events, session


def alarms(events: list[dict]) -> list[tuple[str, str, str | None, float]]:
    return [(e["alarm"], e["state"], e["rendition"], round(e["start"], 1)) for e in events]


def test_a_vod_ladder_is_analysed_to_its_end_and_the_fault_found_at_its_media_time(tmp_path):
    config = tmp_path / "vod.yaml"
    config.write_text(CONFIG)
    with StaticHlsServer(packaged(False)) as server:
        t0 = time.monotonic()
        code, events, err = finish(analyze_live(server.url(), "--config", str(config)))
        took_s = time.monotonic() - t0
    assert code == 0, err
    # Ending is not a fault: no input_loss, no hls_stale, nothing but the injected fault.
    assert [(e["alarm"], e["state"], e["rendition"]) for e in events] == [
        ("rendition_mismatch", "raised", FAULTY_RUNG),
        ("rendition_mismatch", "cleared", FAULTY_RUNG),
    ], events
    raised, cleared = events
    assert raised["start"] == pytest.approx(FAULT.start_s, abs=0.5)
    assert cleared["end"] == pytest.approx(FAULT.end_s, abs=0.5)
    assert "to the end" in err and "analysed 40.0 s of media" in err, err
    segments = [p for p in server.requests if p.endswith(".ts")]
    assert len(segments) == len(set(segments)) == 3 * 20, "every segment of every rung, once"
    print(f"\nVOD ladder 3 x 40 s: analysed in {took_s:.1f} s (process start included)\n{err}")


def test_an_aes128_vod_ladder_gives_the_same_result_as_the_clear_one():
    with StaticHlsServer(packaged(False)) as server:
        clear, _ = run_session(server.url())
    with StaticHlsServer(packaged(True)) as server:
        encrypted, session = run_session(server.url())
        keys = [p for p in server.requests if p.endswith("key.bin")]
    assert alarms(encrypted) == alarms(clear)
    assert [a[:3] for a in alarms(clear)] == [
        ("rendition_mismatch", "raised", FAULTY_RUNG),
        ("rendition_mismatch", "cleared", FAULTY_RUNG),
    ]
    assert session.summary.ended and session.summary.pictures == 3 * CLIP.n_frames
    assert len(keys) == 1, f"one key URI, fetched once for every rung: {keys}"


def test_a_vod_stopped_by_duration_is_cut_at_that_media_time():
    with StaticHlsServer(packaged(False)) as server:
        events, session = run_session(server.url(), duration_s=10.0)
    assert events == []
    assert not session.summary.ended
    assert session.summary.media_s == pytest.approx(10.0, abs=1.0)


def test_a_vod_origin_hanging_mid_asset_raises_input_loss_at_that_media_time():
    # Segment 10 of every rung (media 20-22 s) is answered 6 s late (within the input's
    # 10 s read timeout): the decoders starve at 20 s; input_loss waits 1.5 target durations
    # (3 s) of silence, then raises, dated at the media time where decoding stopped (the
    # clock runs on in real time meanwhile).
    hang_s, segment = 6.0, 10
    with StaticHlsServer(packaged(False)) as server:
        for i in range(len(CLIP.rungs)):
            server.delay(f"/v{i}/seg{segment}.ts", hang_s)
        source = InputConfig(url=server.url(), read_timeout_s=10.0)
        events, session = run_session(
            server.url(), channel=ChannelConfig(name="vod"), source=source
        )
    assert session.summary.ended and session.summary.pictures == 3 * CLIP.n_frames
    loss = [e for e in events if e["alarm"] == "input_loss"]
    assert sorted((e["rendition"], e["state"]) for e in loss) == sorted(
        (r.name, state) for r in CLIP.rungs for state in ("raised", "cleared")
    ), events
    for e in loss:
        assert e["start"] == pytest.approx(2.0 * segment, abs=0.3), e
    # The late segment is also a download slower than its duration, and nothing else.
    slow = [e for e in events if e["alarm"] == "hls_slow_download" and e["state"] == "raised"]
    assert sorted(e["rendition"] for e in slow) == sorted(r.name for r in CLIP.rungs)
    assert {e["detail"]["msn"] for e in slow} == {segment}
    assert {e["alarm"] for e in events} == {"input_loss", "hls_slow_download"}, events


@pytest.mark.parametrize("method", ["SAMPLE-AES", "SAMPLE-AES-CTR"])
def test_an_unsupported_encryption_is_one_line_naming_the_method(method):
    def swap(body: bytes) -> bytes:
        return body.replace(b"METHOD=AES-128", f"METHOD={method}".encode())

    with StaticHlsServer(packaged(True)) as server:
        for i in range(len(CLIP.rungs)):
            server.override(f"/v{i}/index.m3u8", swap)
        code, events, err = finish(analyze_live(server.url()))
        fetched = [p for p in server.requests if p.endswith((".ts", ".bin"))]
    assert code == 1 and events == []
    assert err.count("\n") == 1 and f"METHOD={method}" in err and "not supported" in err, err
    assert server.url() in err
    assert fetched == [], "nothing is downloaded that cannot be decoded"


def test_one_sample_aes_rendition_is_reported_once_by_name_and_the_others_analysed():
    def swap(body: bytes) -> bytes:
        return body.replace(b"METHOD=AES-128", b"METHOD=SAMPLE-AES")

    with StaticHlsServer(packaged(True)) as server:
        server.override("/v2/index.m3u8", swap)
        events, session = run_session(server.url(), channel=ChannelConfig(name="vod"))
        fetched = [p for p in server.requests if p.startswith("/v2/seg")]
    encryption = [e for e in events if e["alarm"] == "hls_encryption"]
    assert [(e["state"], e["rendition"]) for e in encryption] == [
        ("raised", CLIP.name(2)),
        ("cleared", CLIP.name(2)),  # at the end of the analysis
    ], events
    assert encryption[0]["detail"]["method"] == "SAMPLE-AES"
    assert encryption[1]["detail"]["cleared_by"] == "end_of_input"
    assert fetched == []
    assert session.summary.ended and session.summary.pictures == 2 * CLIP.n_frames
    assert {e["alarm"] for e in events} == {"hls_encryption"}, events


def test_a_malformed_tag_names_the_playlist_the_line_and_the_tag():
    def break_it(body: bytes) -> bytes:
        return body.replace(b"#EXT-X-TARGETDURATION:2", b"#EXT-X-TARGETDURATION:abc")

    with StaticHlsServer(packaged(False)) as server:
        server.override("/v0/index.m3u8", break_it)
        url = server.url("v0/index.m3u8")
        code, events, err = finish(analyze_live(url))
    assert code == 1 and events == []
    assert err.count("\n") == 1, err
    assert f"HLS {url}: line 3: malformed '#EXT-X-TARGETDURATION:abc'" in err, err


def test_a_malformed_rendition_of_a_ladder_is_an_hls_playlist_alarm_the_others_analysed():
    def break_it(body: bytes) -> bytes:
        return body.replace(b"#EXT-X-TARGETDURATION:2", b"#EXT-X-TARGETDURATION:abc")

    with StaticHlsServer(packaged(False)) as server:
        server.override("/v2/index.m3u8", break_it)
        events, session = run_session(server.url())
    playlist = [e for e in events if e["alarm"] == "hls_playlist"]
    assert [e["state"] for e in playlist] == ["raised", "cleared"], events
    detail = playlist[0]["detail"]
    assert detail["url"].endswith("/v2/index.m3u8") and detail["line"] == 3
    assert detail["error"].startswith("line 3: malformed '#EXT-X-TARGETDURATION:abc' (")
    assert session.summary.ended
    assert session.summary.pictures == 2 * CLIP.n_frames


def test_a_master_playlist_listing_itself_is_reported_at_once():
    def itself(body: bytes) -> bytes:
        return body.replace(b"v0/index.m3u8", b"master.m3u8")

    with StaticHlsServer(packaged(False)) as server:
        server.override("/master.m3u8", itself)
        url = server.url()
        code, events, err = finish(analyze_live(url, "--duration", "60s"))
    assert code == 1 and events == []
    assert err.strip() == f"streamqc: error: HLS playlist cycle: {url} -> {url}"


def test_a_cycle_of_playlists_is_reported_with_its_path():
    # v1/index.m3u8 is made a master playlist listing the top master again: A -> B -> A.
    def loop_back(body: bytes) -> bytes:
        return b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1000\n../master.m3u8\n"

    with StaticHlsServer(packaged(False)) as server:
        server.override("/v1/index.m3u8", loop_back)
        url, inner = server.url(), server.url("v1/index.m3u8")
        code, events, err = finish(analyze_live(url, "--duration", "60s"))
    assert code == 1 and events == []
    assert err.strip() == f"streamqc: error: HLS playlist cycle: {url} -> {inner} -> {url}"
