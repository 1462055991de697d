"""A real live HLS ladder for tests: pre-encoded TS segments behind a sliding-window playlist.

``build_ladder`` encodes each rendition once (``synth.make_ts``, gop = 1 segment) and cuts it at
keyframes into ~1 s MPEG-TS segments with continuous timestamps. ``LiveHlsServer`` serves them
from a ``ThreadingHTTPServer`` on 127.0.0.1: a live edge computed from a clock (no writer thread),
``TARGETDURATION`` 1, a window of ``window`` segments, ``MEDIA-SEQUENCE`` advancing one per
segment duration, plus a master playlist. Content index ``msn % n_segments`` loops, with an
``EXT-X-DISCONTINUITY`` (and ``DISCONTINUITY-SEQUENCE``) at each wrap, as RFC 8216 §6.2.2 asks.

``build_ladder(container="fmp4")`` remuxes each rendition into fragmented MP4 instead (CMAF
style: one init segment = ftyp+moov, each segment = moof+mdat), served with
``#EXT-X-MAP:URI="init.mp4"`` (RFC 8216 §3.3).

Fault controls (thread-safe, take effect on the next request): ``freeze``, ``end_list``,
``fail_segment``, ``garble_segment``, ``rewind``, ``set_extinf``, ``stall``, ``serve_html``,
``master_status``.

``LiveHlsServer(ladder, event=True)`` serves EVENT playlists instead (``PLAYLIST-TYPE:EVENT``,
every segment from MSN 0 stays listed, new ones appended at the live edge).
``LiveHlsServer(ladder, key=16 bytes)`` encrypts every segment with AES-128-CBC (PKCS7), the
IV being the segment's media sequence number (no IV attribute: RFC 8216 §5.2), the key served
at ``/key.bin``; ``key_method`` announces another METHOD (e.g. "SAMPLE-AES", segments then
served in the clear) and ``key_body`` serves other bytes as the key.

URLs: ``/master.m3u8``, ``/<name>/index.m3u8``, ``/<name>/seg<msn>.ts`` (``.m4s`` for fMP4),
``/<name>/init.mp4``, ``/key.bin``.
"""

from __future__ import annotations

import io
import math
import struct
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
from av.bitstream import BitStreamFilterContext
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from monitor.demo.synth import MediaSpec, make_ts

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
_HTML = b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>\n"


@dataclass(frozen=True)
class Rendition:
    """One ladder rung: its name in URLs, the spec it was made from and its segments."""

    name: str
    spec: MediaSpec
    segments: tuple[bytes, ...]
    durations_s: tuple[float, ...]
    init: bytes = b""  # fMP4 init segment (ftyp+moov); empty for MPEG-TS

    @property
    def extension(self) -> str:
        return "m4s" if self.init else "ts"

    @property
    def audio_only(self) -> bool:
        return not self.spec.video


def split_ts(path: Path, segment_s: float) -> tuple[list[bytes], list[float]]:
    """Cut a TS file into segments of ~segment_s, each starting at a video keyframe.

    Packets are copied (no re-encode), so timestamps stay continuous across segments; each
    segment is a standalone TS with its own PAT/PMT. Audio-only input is cut by time.
    """
    segments: list[bytes] = []
    starts: list[float] = []
    with av.open(str(path)) as src:
        streams = [s for s in src.streams if s.type in ("video", "audio")]
        has_video = any(s.type == "video" for s in streams)
        origin = src.start_time / 1e6 if src.start_time is not None else 0.0
        buf: io.BytesIO | None = None
        out = None
        omap: dict[int, av.stream.Stream] = {}

        def close() -> None:
            if out is not None:
                out.close()
                segments.append(buf.getvalue())

        for packet in src.demux(streams):
            if packet.dts is None and packet.pts is None:
                continue  # flush packets
            t = float(packet.pts * packet.time_base) - origin
            cuts = packet.stream.type == "video" and packet.is_keyframe or not has_video
            boundary = len(starts) * segment_s - 1e-6
            if out is None or (cuts and t >= boundary):
                close()
                buf = io.BytesIO()
                out = av.open(buf, "w", format="mpegts")
                omap = {s.index: out.add_stream_from_template(s) for s in streams}
                starts.append(t)
            packet.stream = omap[packet.stream.index]
            out.mux(packet)
        close()
        end = float(src.duration / 1e6) if src.duration else starts[-1] + segment_s
    durations = [b - a for a, b in zip(starts, [*starts[1:], end], strict=True)]
    return segments, durations


def top_level_boxes(data: bytes) -> list[tuple[str, bytes]]:
    """(type, bytes) of each top-level ISO BMFF box of ``data``."""
    boxes = []
    i = 0
    while i < len(data):
        size, kind = struct.unpack(">I4s", data[i : i + 8])
        if size == 1:
            size = struct.unpack(">Q", data[i + 8 : i + 16])[0]
        elif size == 0:
            size = len(data) - i
        boxes.append((kind.decode("latin-1"), data[i : i + size]))
        i += size
    return boxes


def ts_to_fmp4(path: Path, segment_s: float) -> tuple[bytes, list[bytes], list[float]]:
    """Remux a TS file to fragmented MP4: (init, segments, durations_s).

    Video fragments start at each keyframe (gop = one segment); audio-only ones every
    ``segment_s``. ``default_base_moof`` keeps each fragment self-describing (tfdt).
    """
    buf = io.BytesIO()
    with av.open(str(path)) as src:
        streams = [s for s in src.streams if s.type in ("video", "audio")]
        has_video = any(s.type == "video" for s in streams)
        options = {"movflags": "empty_moov+default_base_moof+frag_keyframe"}
        if not has_video:
            options = {
                "movflags": "empty_moov+default_base_moof",
                "frag_duration": str(round(segment_s * 1e6)),
            }
        with av.open(buf, "w", format="mp4", options=options) as out:
            omap = {s.index: out.add_stream_from_template(s) for s in streams}
            # ADTS (TS) -> AudioSpecificConfig (MP4); the filter copies the TS codec tag along.
            bsf = {
                s.index: BitStreamFilterContext("aac_adtstoasc", s, omap[s.index])
                for s in streams
                if s.type == "audio"
            }
            for o in omap.values():
                o.codec_context.codec_tag = "\0\0\0\0"
            for packet in src.demux(streams):
                if packet.dts is None:
                    continue  # flush packets
                index = packet.stream.index
                for p in bsf[index].filter(packet) if index in bsf else [packet]:
                    p.stream = omap[index]
                    out.mux(p)
    boxes = top_level_boxes(buf.getvalue())
    init = b"".join(b for kind, b in boxes if kind in ("ftyp", "moov"))
    segments: list[bytes] = []
    for kind, b in boxes:
        if kind == "moof":
            segments.append(b)
        elif kind == "mdat" and segments:
            segments[-1] += b
    durations: list[float] = []
    for seg in segments:
        with av.open(io.BytesIO(init + seg), "r", format="mp4") as c:
            stream = c.streams.video[0] if c.streams.video else c.streams.audio[0]
            ticks = [p.duration * p.time_base for p in c.demux(stream) if p.duration]
            durations.append(float(sum(ticks, 0.0)))
    return init, segments, durations


def build_ladder(
    folder: Path,
    *,
    duration_s: float = 20.0,
    segment_s: float = 1.0,
    sizes: tuple[tuple[int, int], ...] = ((320, 180), (256, 144), (160, 90)),
    audio_only: bool = True,
    container: str = "mpegts",
    muxed_audio: bool = True,
) -> list[Rendition]:
    """Encode each rendition once and cut it into segments (~0.5 s per 20 s rung).

    ``container``: "mpegts" (TS segments) or "fmp4" (init segment + moof/mdat fragments).
    ``muxed_audio``: False for video renditions without audio (the sound only in the
    alternate audio rendition, as CMAF ladders carry it).
    """
    if container not in ("mpegts", "fmp4"):
        raise ValueError(f"container {container!r}: expected 'mpegts' or 'fmp4'")
    fps = 25
    gop = round(segment_s * fps)
    specs = [
        (
            f"{w}x{h}",
            MediaSpec(
                duration_s=duration_s, width=w, height=h, fps=fps, gop=gop, audio=muxed_audio
            ),
        )
        for w, h in sizes
    ]
    if audio_only:
        specs.append(("audio-en", MediaSpec(duration_s=duration_s, video=False)))
    ladder = []
    for name, spec in specs:
        ts = make_ts(Path(folder) / f"{name}.ts", spec)
        if container == "fmp4":
            init, segs, durs = ts_to_fmp4(ts, segment_s)
            ladder.append(Rendition(name, spec, tuple(segs), tuple(durs), init))
        else:
            segs, durs = split_ts(ts, segment_s)
            ladder.append(Rendition(name, spec, tuple(segs), tuple(durs)))
    return ladder


class LiveHlsServer:
    """Serves a ladder as live HLS while open (``with LiveHlsServer(ladder) as server``)."""

    def __init__(
        self,
        ladder: list[Rendition],
        *,
        segment_s: float = 1.0,
        window: int = 5,
        event: bool = False,
        key: bytes | None = None,
        key_method: str = "AES-128",
        key_body: bytes | None = None,
    ):
        self.ladder = {r.name: r for r in ladder}
        self.event = event
        self.key = key
        self.key_method = key_method
        self.key_body = key if key_body is None else key_body
        self.segment_s = segment_s
        self.target_duration = math.ceil(segment_s)
        self.window = window
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._start_s = time.monotonic()
        self._frozen: dict[str, int] = {}
        self._ended: set[str] = set()
        self._offset: dict[str, int] = dict.fromkeys(self.ladder, 0)
        self._failing: dict[tuple[str, int], int] = {}
        self._garbled: set[tuple[str, int]] = set()
        self._extinf: dict[str, tuple[int, float]] = {}
        self._stall: list[tuple[float, str | None, str]] = []
        self._html: set[str] = set()
        self._master_status = 200
        self.requests: list[str] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> LiveHlsServer:
        server = self

        class Handler(_Handler):
            hls = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = False  # joined by server_close(): no leftover threads
        self._start_s = time.monotonic()
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="hls-server"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closing.set()  # wakes stalled handlers
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self._httpd = self._thread = None

    def __enter__(self) -> LiveHlsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/master.m3u8"

    def media_url(self, name: str) -> str:
        return f"{self.base_url}/{name}/index.m3u8"

    # ------------------------------------------------------------------ the live clock

    def _clock_edge(self) -> int:
        """MSN of the newest segment: a full window at start, one more per segment_s."""
        elapsed = time.monotonic() - self._start_s
        return self.window - 1 + math.floor(elapsed / self.segment_s)

    def edge(self, name: str) -> int:
        with self._lock:
            if name in self._frozen:
                return self._frozen[name]
            return self._clock_edge() - self._offset[name]

    # ------------------------------------------------------------------ fault controls

    def freeze(self, name: str) -> int:
        """Stop updating ``name``'s playlist (as a dead packager would); returns its last MSN."""
        edge = self.edge(name)
        with self._lock:
            self._frozen[name] = edge
        return edge

    def end_list(self, name: str) -> int:
        """Freeze ``name`` with EXT-X-ENDLIST, as FFmpeg's hls muxer leaves a live playlist
        when the encoder stops; returns its last MSN."""
        edge = self.freeze(name)
        with self._lock:
            self._ended.add(name)
        return edge

    def fail_segment(self, name: str, msn: int | None = None, status: int = 404) -> int:
        """Answer ``status`` for one segment (default: the next one to appear); returns its MSN."""
        msn = self.edge(name) + 1 if msn is None else msn
        with self._lock:
            self._failing[(name, msn)] = status
        return msn

    def garble_segment(self, name: str, msn: int | None = None) -> int:
        """Answer 200 with bytes that are no segment (default: the next one); returns its MSN."""
        msn = self.edge(name) + 1 if msn is None else msn
        with self._lock:
            self._garbled.add((name, msn))
        return msn

    def rewind(self, name: str, segments: int = 3) -> None:
        """Move ``name``'s media sequence back by ``segments`` (an illegal decrease)."""
        with self._lock:
            self._offset[name] += segments

    def set_extinf(self, name: str, extinf_s: float) -> int:
        """Announce ``extinf_s`` for every segment of ``name`` appearing from now on."""
        first = self.edge(name) + 1
        with self._lock:
            self._extinf[name] = (first, extinf_s)
        return first

    def stall(self, delay_s: float, name: str | None = None, what: str = "segment") -> None:
        """Delay responses by ``delay_s``: ``what`` is "segment", "playlist" or "all"."""
        with self._lock:
            self._stall.append((delay_s, name, what))

    def clear_stalls(self) -> None:
        """New requests are answered at once again (sleeping ones finish their delay)."""
        with self._lock:
            self._stall.clear()

    def serve_html(self, name: str) -> None:
        """Answer ``name``'s playlist ("master" for the master) with an HTML error page."""
        with self._lock:
            self._html.add(name)

    def master_status(self, status: int) -> None:
        with self._lock:
            self._master_status = status

    # ------------------------------------------------------------------ content

    def master_playlist(self) -> str:
        lines = ["#EXTM3U", "#EXT-X-VERSION:3"]
        audio = [r for r in self.ladder.values() if r.audio_only]
        for r in audio:
            lang = r.name.removeprefix("audio-")
            lines.append(
                f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="{lang}",LANGUAGE="{lang}",'
                f'DEFAULT=YES,AUTOSELECT=YES,URI="{r.name}/index.m3u8"'
            )
        for r in self.ladder.values():
            if r.audio_only:
                continue
            bandwidth = r.spec.width * r.spec.height * 8
            group = ',AUDIO="aud"' if audio else ""
            lines.append(
                f"#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},"
                f"RESOLUTION={r.spec.width}x{r.spec.height}{group}"
            )
            lines.append(f"{r.name}/index.m3u8")
        return "\n".join(lines) + "\n"

    def media_playlist(self, name: str) -> str:
        r = self.ladder[name]
        n = len(r.segments)
        last = self.edge(name)
        first = 0 if self.event else max(0, last - self.window + 1)
        with self._lock:
            ext_from, ext_s = self._extinf.get(name, (math.inf, 0.0))
        lines = [
            "#EXTM3U",
            f"#EXT-X-VERSION:{7 if r.init else 3}",
            f"#EXT-X-TARGETDURATION:{self.target_duration}",
            f"#EXT-X-MEDIA-SEQUENCE:{first}",
            f"#EXT-X-DISCONTINUITY-SEQUENCE:{max(0, first - 1) // n}",
        ]
        if self.event:
            lines.append("#EXT-X-PLAYLIST-TYPE:EVENT")
        if self.key is not None:
            lines.append(f'#EXT-X-KEY:METHOD={self.key_method},URI="/key.bin"')
        if r.init:
            lines.append('#EXT-X-MAP:URI="init.mp4"')
        for msn in range(first, last + 1):
            if msn % n == 0 and msn > 0:
                lines.append("#EXT-X-DISCONTINUITY")
            dur = ext_s if msn >= ext_from else r.durations_s[msn % n]
            lines += [f"#EXTINF:{dur:.3f},", f"seg{msn}.{r.extension}"]
        with self._lock:
            if name in self._ended:
                lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"

    def respond(self, path: str) -> tuple[int, str, bytes]:
        """(status, content type, body) for a request path; sleeps first when stalled."""
        self.requests.append(path)
        parts = path.split("?")[0].strip("/").split("/")
        kind = "segment" if parts[-1].endswith((".ts", ".m4s", ".mp4")) else "playlist"
        name = parts[0] if len(parts) == 2 else None
        with self._lock:
            delay = sum(d for d, n, w in self._stall if w in (kind, "all") and n in (None, name))
        if delay:
            self._closing.wait(delay)
        if parts == ["key.bin"] and self.key_body is not None:
            return 200, "application/octet-stream", self.key_body
        if parts == ["master.m3u8"]:
            with self._lock:
                status = self._master_status
                html = "master" in self._html
            if status != 200:
                return status, "text/plain", b"not found\n"
            if html:
                return 200, "text/html", _HTML
            return 200, PLAYLIST_TYPE, self.master_playlist().encode()
        if name not in self.ladder:
            return 404, "text/plain", b"not found\n"
        if parts[1] == "index.m3u8":
            with self._lock:
                html = name in self._html
            if html:
                return 200, "text/html", _HTML
            return 200, PLAYLIST_TYPE, self.media_playlist(name).encode()
        r = self.ladder[name]
        if parts[1] == "init.mp4" and r.init:
            return 200, "video/mp4", r.init
        suffix = f".{r.extension}"
        if parts[1].startswith("seg") and parts[1].endswith(suffix):
            try:
                msn = int(parts[1][3 : -len(suffix)])
            except ValueError:
                return 404, "text/plain", b"not found\n"
            with self._lock:
                failing = self._failing.get((name, msn))
                garbled = (name, msn) in self._garbled
            if failing:
                return failing, "text/plain", b"error\n"
            if not 0 <= msn <= self.edge(name):
                return 404, "text/plain", b"not found\n"
            ctype = "video/iso.segment" if r.init else "video/mp2t"
            if garbled:
                return 200, ctype, bytes(range(256)) * 64
            body = r.segments[msn % len(r.segments)]
            if self.key is not None and self.key_method == "AES-128":
                body = aes128_encrypt(body, self.key, msn.to_bytes(16, "big"))
            return 200, ctype, body
        return 404, "text/plain", b"not found\n"


def aes128_encrypt(body: bytes, key: bytes, iv: bytes) -> bytes:
    """What a packager does to a segment for METHOD=AES-128: PKCS7 pad, AES-128-CBC."""
    padder = padding.PKCS7(128).padder()
    padded = padder.update(body) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return encryptor.update(padded) + encryptor.finalize()


class _Handler(BaseHTTPRequestHandler):
    hls: LiveHlsServer
    protocol_version = "HTTP/1.1"
    timeout = 1.0  # idle keep-alive connections end soon, so server_close() never waits long

    def do_GET(self) -> None:
        status, ctype, body = self.hls.respond(self.path)
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (its timeout): fine

    def log_message(self, format: str, *args: object) -> None:
        pass
