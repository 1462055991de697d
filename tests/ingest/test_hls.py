"""HlsClient against a real live HLS server (tests/ingest/hlsserver.py): one test per alarm."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import av
import numpy as np
import pytest

from monitor.errors import InputError
from monitor.ingest.hls import HlsClient
from monitor.ingest.pipe import BytePipe
from monitor.ingest.reports import TransportCondition
from tests.ingest.hlsserver import LiveHlsServer, build_ladder

VIDEO = ("320x180", "256x144", "160x90")
ALL = (*VIDEO, "audio-en")
TD_S = 1.0


@pytest.fixture(scope="session")
def ladder(tmp_path_factory):
    return build_ladder(tmp_path_factory.mktemp("hls"))


@pytest.fixture(scope="session")
def fmp4_ladder(tmp_path_factory):
    """fMP4/CMAF renditions (EXT-X-MAP init + moof/mdat segments), 10 s of content."""
    return build_ladder(
        tmp_path_factory.mktemp("hls-fmp4"),
        duration_s=10.0,
        sizes=((256, 144), (160, 90)),
        container="fmp4",
    )


def _serve(ladder):
    before = set(threading.enumerate())
    with LiveHlsServer(ladder) as live:
        yield live
    deadline = time.monotonic() + 3
    while set(threading.enumerate()) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not set(threading.enumerate()) - before, "server left threads behind"


@pytest.fixture
def server(ladder):
    yield from _serve(ladder)


@pytest.fixture
def fmp4_server(fmp4_ladder):
    yield from _serve(fmp4_ladder)


@dataclass
class Run:
    client: HlsClient
    t0: float
    events: list[TransportCondition] = field(default_factory=list)
    data: dict[str, bytes] = field(default_factory=dict)
    stop_took_s: float = 0.0

    def raised(self, alarm: str, subject: str | None = None) -> list[TransportCondition]:
        return [
            e for e in self.events if e.alarm == alarm and e.active and subject in (None, e.subject)
        ]

    def cleared(self, alarm: str, subject: str) -> list[TransportCondition]:
        return [
            e for e in self.events if e.alarm == alarm and not e.active and e.subject == subject
        ]

    def subjects(self, alarm: str) -> set[str | None]:
        return {e.subject for e in self.raised(alarm)}


def follow(
    url: str,
    seconds: float,
    actions: list[tuple[float, Callable[[], object]]] = (),
    **options: float,
) -> Run:
    """Run an HlsClient for ``seconds``, doing ``actions`` at their times, then drain its pipes."""
    events: list[TransportCondition] = []
    client = HlsClient(url, events.append, **options)
    run = Run(client, time.monotonic(), events)

    async def main() -> None:
        task = asyncio.create_task(client.run())
        for at_s, action in sorted(actions, key=lambda a: a[0]):
            await asyncio.sleep(max(0.0, run.t0 + at_s - time.monotonic()))
            action()
        await asyncio.sleep(max(0.0, run.t0 + seconds - time.monotonic()))
        stopped_s = time.monotonic()
        client.stop()
        await asyncio.wait_for(task, 5)
        run.stop_took_s = time.monotonic() - stopped_s

    asyncio.run(main())
    for name, pipe in client.renditions.items():
        assert pipe.closed, "run() must close the pipes it hands out"
        run.data[name] = drain(pipe)
    return run


def drain(pipe: BytePipe) -> bytes:
    out = bytearray()
    while chunk := pipe.read(1 << 20):
        out += chunk
    return bytes(out)


def pts_of(data: bytes, kind: str) -> np.ndarray:
    with av.open(io.BytesIO(data), format="mpegts") as container:
        stream = container.streams.video[0] if kind == "video" else container.streams.audio[0]
        return np.array([p.pts for p in container.demux(stream) if p.pts is not None])


# ---------------------------------------------------------------------------- clean ladder


def test_clean_ladder_feeds_every_rendition_consecutive_decodable_segments(server):
    run = follow(server.url, 4.2)

    assert set(run.client.renditions) == set(ALL)
    assert run.events == [], f"a clean live ladder must raise no condition: {run.events}"
    assert {run.client.container(name) for name in ALL} == {"mpegts"}
    for name in ALL:
        msns = run.client.written_msns(name)
        assert len(msns) >= 4, (name, msns)
        assert msns == list(range(msns[0], msns[0] + len(msns))), (name, msns)
    for name in VIDEO:
        pts = pts_of(run.data[name], "video")
        with av.open(io.BytesIO(run.data[name]), format="mpegts") as c:
            frames = list(c.decode(video=0))
        assert len(frames) == len(pts) >= 4 * 25
        assert (frames[0].width, frames[0].height) == tuple(map(int, name.split("x")))
        assert set(np.diff(pts)) == {3600}, f"{name}: PTS must rise one frame at a time"
    audio = pts_of(run.data["audio-en"], "audio")
    assert len(audio) > 100 and (np.diff(audio) > 0).all()
    assert run.stop_took_s < 1.0


def test_media_playlist_url_is_followed_as_one_rendition(server):
    run = follow(server.media_url("256x144"), 2.5)

    assert list(run.client.renditions) == ["main"]
    assert run.events == []
    assert len(run.client.written_msns("main")) >= 2
    assert set(np.diff(pts_of(run.data["main"], "video"))) == {3600}


def test_stop_from_another_thread_ends_run_and_closes_pipes(server):
    client = HlsClient(server.url, lambda c: None)
    thread = threading.Thread(target=asyncio.run, args=(client.run(),))
    thread.start()
    assert client.ready.wait(5)
    pipe = client.renditions["320x180"]
    assert pipe.read(188)[:1] == b"\x47"  # bytes flow while running
    client.stop()
    thread.join(2)
    assert not thread.is_alive()
    assert pipe.closed


# ---------------------------------------------------------------------------- one per alarm


def test_frozen_rendition_raises_stale_and_rendition_missing_for_it_only(server):
    frozen_at: list[float] = []

    def freeze() -> None:
        server.freeze("256x144")
        frozen_at.append(time.monotonic())

    run = follow(server.url, 4.5, [(1.2, freeze)])

    assert run.subjects("hls_stale") == {"256x144"}
    assert run.subjects("rendition_missing") == {"256x144"}
    # The last segment appeared <= frozen_at; 1.5 TD later a reload (every TD/2) must notice.
    latency_s = run.raised("hls_stale")[0].at_s - frozen_at[0]
    assert latency_s < 1.5 * TD_S + 0.5 * TD_S + 0.4, latency_s
    missing = run.raised("rendition_missing")[0]
    assert missing.at_s - frozen_at[0] < 2.4
    assert missing.detail["target_duration_s"] == TD_S


def test_whole_ladder_stale_is_hls_stale_without_rendition_missing(server):
    def freeze_all() -> None:
        for name in ALL:
            server.freeze(name)

    run = follow(server.url, 4.0, [(1.0, freeze_all)])

    assert run.subjects("hls_stale") == set(ALL)
    assert run.raised("rendition_missing") == []


def test_segment_404_is_reported_and_the_next_segment_follows(server):
    failed: list[int] = []
    run = follow(server.url, 4.0, [(1.2, lambda: failed.append(server.fail_segment("320x180")))])

    (error,) = run.raised("hls_segment_error")
    assert error.subject == "320x180"
    assert error.detail["status"] == 404 and error.detail["msn"] == failed[0]
    assert run.cleared("hls_segment_error", "320x180"), "must clear on the next good segment"
    msns = run.client.written_msns("320x180")
    assert failed[0] not in msns
    assert {failed[0] - 1, failed[0] + 1} <= set(msns)
    pts = pts_of(run.data["320x180"], "video")
    assert sorted(set(np.diff(pts))) == [3600, 3600 * 26], "one 1 s gap, then on as before"


def test_media_sequence_going_backwards_raises_hls_sequence(server):
    run = follow(server.url, 3.5, [(1.2, lambda: server.rewind("160x90", 3))])

    (seq,) = run.raised("hls_sequence")
    assert seq.subject == "160x90"
    was, now = seq.detail["media_sequence"]["was"], seq.detail["media_sequence"]["now"]
    assert now < was
    assert run.cleared("hls_sequence", "160x90"), "clears once the sequence advances again"
    assert run.raised("hls_stale") == []


def test_segments_leaving_the_window_unfetched_raise_hls_sequence(ladder):
    with LiveHlsServer(ladder, window=2) as live:
        run = follow(
            live.url,
            5.5,
            [(0.7, lambda: live.stall(2.8, "160x90", "playlist")), (1.8, live.clear_stalls)],
        )

    (seq,) = run.raised("hls_sequence")
    assert seq.subject == "160x90" and seq.detail["skipped"] >= 1
    assert run.cleared("hls_sequence", "160x90")


def test_extinf_above_target_duration_raises_segment_duration(server):
    run = follow(server.url, 3.0, [(0.8, lambda: server.set_extinf("audio-en", 2.0))])

    (dur,) = run.raised("hls_segment_duration")
    assert dur.subject == "audio-en"
    assert dur.detail["extinf_s"] == 2.0 and dur.detail["target_duration_s"] == TD_S


def test_slow_segment_downloads_raise_slow_download_without_stalling(server):
    server.stall(0.85, "256x144", "segment")
    run = follow(server.url, 3.5)

    (slow,) = run.raised("hls_slow_download")
    assert slow.subject == "256x144" and slow.detail["download_s"] >= 0.8
    assert run.raised("hls_stale") == []
    assert len(run.client.written_msns("256x144")) >= 2


def test_hung_rendition_is_bounded_by_timeouts_and_stop_does_not_hang(server):
    server.stall(60, "320x180", "all")
    run = follow(server.url, 3.0, open_timeout_s=0.5, read_timeout_s=0.5)

    playlist = run.raised("hls_playlist")
    assert {e.subject for e in playlist} == {"320x180"}
    assert "timed out" in playlist[0].detail["error"]
    assert run.subjects("hls_stale") == {"320x180"}
    assert run.subjects("rendition_missing") == {"320x180"}
    assert run.stop_took_s < 1.0
    assert len(run.client.written_msns("160x90")) >= 2


def test_hung_segment_downloads_are_segment_errors(server):
    run = follow(
        server.url,
        3.5,
        [(0.5, lambda: server.stall(60, "160x90", "segment"))],
        open_timeout_s=0.3,
        read_timeout_s=0.3,
    )

    (error,) = run.raised("hls_segment_error")
    assert error.subject == "160x90" and "timed out" in error.detail["error"]
    assert run.raised("hls_stale") == [], "the playlist itself keeps updating"
    assert run.stop_took_s < 1.0


def test_html_instead_of_media_playlist_raises_hls_playlist(server):
    run = follow(server.url, 3.5, [(0.8, lambda: server.serve_html("160x90"))])

    assert len(run.raised("hls_playlist")) == 1, run.events
    (bad,) = run.raised("hls_playlist")
    assert bad.subject == "160x90"
    assert "no #EXTM3U" in bad.detail["error"] and bad.detail["content_type"] == "text/html"
    assert run.subjects("rendition_missing") == {"160x90"}


# ---------------------------------------------------------------------------- fMP4 / CMAF

FMP4 = ("256x144", "160x90", "audio-en")


class _ReadOnly:
    """A non-seekable file object, as the decoder's BytePipe is."""

    def __init__(self, data: bytes) -> None:
        self._file = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._file.read(n)


def decode_fmp4(data: bytes, kind: str) -> list:
    """Decode init + fragments sequentially, as the live decoder reads its pipe."""
    with av.open(_ReadOnly(data), "r", format="mp4") as container:
        stream = container.streams.video[0] if kind == "video" else container.streams.audio[0]
        return list(container.decode(stream))


def test_fmp4_ladder_feeds_init_then_fragments_that_decode_in_order(fmp4_server):
    ladder = fmp4_server.ladder
    run = follow(fmp4_server.url, 3.2)

    assert set(run.client.renditions) == set(FMP4)
    assert run.events == [], f"a clean fMP4 ladder must raise no condition: {run.events}"
    requests = fmp4_server.requests
    for name in FMP4:
        assert run.client.container(name) == "mp4"
        assert requests.count(f"/{name}/init.mp4") == 1, "the init segment is fetched once"
        msns = run.client.written_msns(name)
        assert len(msns) >= 3 and msns == list(range(msns[0], msns[0] + len(msns))), msns
        data, init = run.data[name], ladder[name].init
        assert data.startswith(init) and data.count(b"moov") == 1, "init once, first"
        assert data[len(init) + 4 : len(init) + 8] == b"moof"
    for name in ("256x144", "160x90"):
        frames = decode_fmp4(run.data[name], "video")
        assert len(frames) >= 3 * 25
        assert (frames[0].width, frames[0].height) == tuple(map(int, name.split("x")))
        pts = np.array([f.pts for f in frames])
        assert len(set(np.diff(pts))) == 1 and pts[1] > pts[0], "PTS rise one frame at a time"
    audio = np.array([f.pts for f in decode_fmp4(run.data["audio-en"], "audio")])
    assert len(audio) > 100 and (np.diff(audio) > 0).all()


def test_fmp4_replaced_pipe_gets_the_init_segment_again(fmp4_server):
    events: list[TransportCondition] = []
    client = HlsClient(fmp4_server.url, events.append)
    fresh = BytePipe()

    async def main() -> None:
        task = asyncio.create_task(client.run())
        await asyncio.sleep(1.3)
        client.replace_pipe("160x90", fresh)  # as a restarting decoder does
        await asyncio.sleep(1.5)
        client.stop()
        await asyncio.wait_for(task, 5)

    asyncio.run(main())
    data = drain(fresh)

    assert events == []
    assert data.startswith(fmp4_server.ladder["160x90"].init), "a new pipe starts with the init"
    assert data.count(b"moov") == 1
    assert len(decode_fmp4(data, "video")) >= 25


def test_broken_fmp4_fragment_is_a_segment_error_and_the_next_one_follows(fmp4_server):
    garbled: list[int] = []
    run = follow(
        fmp4_server.url, 3.5, [(1.2, lambda: garbled.append(fmp4_server.garble_segment("160x90")))]
    )

    (error,) = run.raised("hls_segment_error")
    assert error.subject == "160x90" and error.detail["msn"] == garbled[0]
    assert "not an MP4 box" in error.detail["error"], error.detail
    assert run.cleared("hls_segment_error", "160x90"), "must clear on the next good fragment"
    msns = run.client.written_msns("160x90")
    assert garbled[0] not in msns and garbled[0] + 1 in msns
    pts = np.array([f.pts for f in decode_fmp4(run.data["160x90"], "video")])
    assert (np.diff(pts) > 0).all(), "the fragments around the broken one still decode in order"


# ---------------------------------------------------------------------------- unusable start


@pytest.mark.parametrize("fault", ["404", "html"])
def test_unusable_master_is_one_line_input_error_naming_the_url(server, fault):
    if fault == "404":
        server.master_status(404)
    else:
        server.serve_html("master")
    client = HlsClient(server.url, lambda c: None)

    t0 = time.monotonic()
    with pytest.raises(InputError) as caught:
        asyncio.run(client.run())

    message = str(caught.value)
    assert server.url in message and "\n" not in message
    assert ("HTTP 404" if fault == "404" else "no #EXTM3U") in message
    assert time.monotonic() - t0 < 1.0


# ---------------------------------------------------------------------------- EVENT, AES-128

KEY = bytes(range(0xA0, 0xB0))


@pytest.fixture
def event_server(ladder):
    yield from _serve_with(ladder, event=True)


@pytest.fixture
def aes_server(ladder):
    yield from _serve_with(ladder, key=KEY)


def _serve_with(ladder, **options):
    with LiveHlsServer(ladder, **options) as live:
        yield live


def test_event_playlist_is_read_from_its_first_segment_then_followed(event_server):
    run = follow(event_server.url, 3.2)

    assert run.events == [], run.events
    assert run.client.media_timed()
    first_edge = event_server.window - 1  # the newest segment when the client joined
    for name in ALL:
        msns = run.client.written_msns(name)
        assert msns[0] == 0, f"{name}: an EVENT playlist is read from its first segment"
        assert msns == list(range(len(msns))) and msns[-1] > first_edge, (name, msns)
    pts = pts_of(run.data["320x180"], "video")
    assert set(np.diff(pts)) == {3600}
    assert not run.client.finished(), "an EVENT playlist without ENDLIST goes on"


def test_live_playlist_is_not_media_timed(server):
    run = follow(server.url, 1.5)
    assert not run.client.media_timed()
    assert run.client.written_msns("320x180")[0] == server.window - 1  # joined at the edge


def test_aes128_segments_are_decrypted_with_the_sequence_number_as_iv(aes_server):
    run = follow(aes_server.url, 3.2)

    assert run.events == [], run.events
    for name in VIDEO:
        pts = pts_of(run.data[name], "video")
        assert len(pts) >= 2 * 25 and set(np.diff(pts)) == {3600}, name
    keys = [path for path in aes_server.requests if path.endswith("key.bin")]
    assert keys == ["/key.bin"], "one key URI is fetched once, for every rendition"


@pytest.mark.parametrize(
    ("key_body", "expected"),
    [(None, "HTTP 404"), (b"0123456789", "key is 10 bytes, expected 16")],
)
def test_an_unusable_aes128_key_raises_hls_encryption_naming_the_key(ladder, key_body, expected):
    with LiveHlsServer(ladder, key=KEY, key_body=key_body) as live:
        if key_body is None:
            live.key_body = None  # the key URI answers 404
        run = follow(live.url, 2.2)
        key_url = f"{live.base_url}/key.bin"

    assert run.subjects("hls_encryption") == set(ALL)
    for condition in run.raised("hls_encryption"):
        assert condition.detail["key_url"] == key_url
        assert condition.detail["error"] == f"AES-128 key {key_url}: {expected}"
    assert all(not data for data in run.data.values()), "nothing undecryptable is passed on"


def test_a_wrong_aes128_key_raises_hls_encryption_and_passes_nothing_on(ladder):
    wrong = bytes(reversed(KEY))
    with LiveHlsServer(ladder, key=KEY, key_body=wrong) as live:
        run = follow(live.url, 2.2)

    assert run.subjects("hls_encryption") == set(ALL)
    for condition in run.raised("hls_encryption"):
        assert condition.detail["error"].startswith("AES-128 decryption failed: ")
        assert condition.detail["error"].endswith("(wrong key or IV?)")
    assert all(not data for data in run.data.values()), "garbage is not passed on as media"


def test_sample_aes_on_every_rendition_is_an_input_error_naming_the_method(ladder):
    with LiveHlsServer(ladder, key=KEY, key_method="SAMPLE-AES") as live:
        client = HlsClient(live.url, lambda c: None)
        with pytest.raises(InputError) as caught:
            asyncio.run(client.run())
        fetched = [p for p in live.requests if p.endswith((".ts", ".bin"))]
    assert "METHOD=SAMPLE-AES: not supported" in str(caught.value)
    assert fetched == []


def test_aes128_iv_is_the_tag_or_the_media_sequence_number():
    from monitor.ingest.hls_aes import aes128_decrypt, aes128_iv
    from tests.ingest.hlsserver import aes128_encrypt

    # RFC 8216 §5.2: the sequence number, big-endian, left-padded with zeros to 16 octets.
    assert aes128_iv(None, 123456) == bytes.fromhex("0001e240").rjust(16, b"\0")
    assert aes128_iv("0x0000000000000000000000000000002A", 7) == (42).to_bytes(16, "big")
    with pytest.raises(ValueError):
        aes128_iv("0x" + "00" * 17, 7)
    body = bytes(range(256)) * 3 + b"tail"
    iv = aes128_iv(None, 99)
    assert aes128_decrypt(aes128_encrypt(body, KEY, iv), KEY, iv) == body


def test_a_live_playlist_ending_with_endlist_still_raises_hls_stale(server):
    # FFmpeg's hls muxer appends EXT-X-ENDLIST when the encoder stops: for a live channel that
    # is an outage, not the end of an asset.
    actions = [(1.0, lambda: [server.end_list(name) for name in ALL])]
    run = follow(server.url, 4.5, actions)

    assert run.subjects("hls_stale") == set(ALL)
    assert not run.client.media_timed() and not run.client.finished()
