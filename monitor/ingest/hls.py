"""Our own live HLS client: follows every rendition of a ladder and reports what goes wrong.

FFmpeg's hls demuxer hides faults (it skips, retries and stalls silently); this client reloads
each media playlist itself, checks it against RFC 8216 and writes each new segment once, in
order, into that rendition's :class:`BytePipe`, which a decoder thread reads.

Segments are MPEG-TS, or fragmented MP4 / CMAF (RFC 8216 §3.3) when the playlist has an
``EXT-X-MAP``: the init segment (ftyp+moov) is fetched once per URI and written into the pipe
before the first media segment, again after the URI changes and again into a replaced pipe (a
restarted decoder needs it). :meth:`HlsClient.container` tells the decoder which demuxer to use.

Playlist kinds (RFC 8216 §4.3.3.5, §6.2.1): a sliding-window *live* playlist is joined at its
newest segment. A playlist with ``EXT-X-ENDLIST`` or ``EXT-X-PLAYLIST-TYPE:VOD`` is read from
its first segment to its last, as fast as the decoder takes it (the client waits while the
rendition's pipe holds more than :data:`MEDIA_TIMED_BUFFER_BYTES`), is never reloaded and is
never stale; when its last segment is in the pipe, the pipe is closed and the rendition is
*done*. An ``EXT-X-PLAYLIST-TYPE:EVENT`` playlist is read from its first segment, then followed
at its live edge like a live one. VOD and EVENT renditions are *media-timed*
(:meth:`HlsClient.media_timed`): their times are media seconds from the first segment, the sum
of the EXTINF before a segment (:meth:`HlsClient.next_media_s`).

Encryption (RFC 8216 §4.3.2.4, §5.2): ``METHOD=AES-128`` segments are decrypted (AES-128-CBC,
PKCS7 padding) with the 16-byte key from the key URI, fetched once per URI and cached, the IV
from the tag or else the media sequence number as a 128-bit big-endian integer. ``SAMPLE-AES``
and DRM methods cannot be decoded here: the rendition is reported once (``hls_encryption``,
naming the method) and its segments are not fetched.

Playlist errors are one line naming the playlist URL, the line and the tag (parsing lives in
``monitor/ingest/hls_playlist.py``, decryption in ``hls_aes.py``); a master playlist that
lists itself or a cycle of master playlists is an :class:`InputError` at the start ("playlist
cycle: A -> B -> A").

Conditions (``subject`` = rendition name, ``at_s`` = ``time.monotonic()``), each cleared when it
no longer holds:

* ``hls_playlist``: a media playlist cannot be loaded or is not a playlist (HTML, no #EXTM3U).
* ``hls_stale``: no new segment for more than 1.5 x TARGETDURATION (RFC 8216 §6.2.1: a server
  MUST add one within 1.5 TD), checked by a reload *begun* after that deadline, or by the clock
  alone (1.5 TD + a half-TD reload interval) while loads fail or hang.
* ``rendition_missing``: raised *in addition to* ``hls_stale`` for a stale rendition while
  another rendition keeps updating (showed a new segment at least one TD after this one's last):
  one packager output died, not the whole channel.
* ``hls_sequence``: EXT-X-MEDIA-SEQUENCE or EXT-X-DISCONTINUITY-SEQUENCE went backwards
  (RFC 8216 §6.2.2: MUST NOT decrease), or segments left the window before we could fetch them.
* ``hls_segment_error``: a segment failed (HTTP status, timeout, empty, not MPEG-TS, not an MP4
  box, or its init segment failed) after the bounded retries; the client moves on to the next
  segment.
* ``hls_segment_duration``: round(EXTINF) > TARGETDURATION (RFC 8216 §4.3.3.1).
* ``hls_slow_download``: a segment took >= 0.8 x its EXTINF to download (the link cannot keep up).
* ``hls_encryption``: the rendition's segments use an encryption method streamqc cannot decrypt
  (SAMPLE-AES, DRM: ``method`` in the detail), or an AES-128 key cannot be fetched, is not 16
  bytes, or does not decrypt a segment (wrong key or IV); cleared when a segment decrypts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from monitor.errors import InputError
from monitor.ingest.hls_aes import AES_BLOCK_BYTES, aes128_decrypt, aes128_iv
from monitor.ingest.hls_playlist import (
    PlaylistError,
    PlaylistKind,
    parse_playlist,
    playlist_kind,
    unsupported_method,
)
from monitor.ingest.pipe import BytePipe
from monitor.ingest.reports import Report, TransportCondition

TS_SYNC = 0x47
TS_PACKET = 188
STALE_TD = 1.5  # RFC 8216 §6.2.1 / 8216bis 6.2.1-M22
SLOW_DOWNLOAD_FRACTION = 0.8
MEDIA_TIMED_BUFFER_BYTES = 4 << 20
"""How far the downloads of a VOD/EVENT rendition run ahead of its decoder: enough for a few
segments of any ladder rung, far below BytePipe's overflow limit (which would drop bytes)."""
_STALE_CONNECTION = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


@dataclass(frozen=True, slots=True)
class _Segment:
    """A queued segment: where to get it, how to decrypt it, where it sits on the timeline."""

    msn: int
    url: str
    extinf_s: float
    init_url: str | None  # EXT-X-MAP URL
    key_url: str | None  # AES-128 key URI; None for clear segments
    iv: bytes | None
    media_s: float  # media seconds from the playlist's first segment (VOD/EVENT)


def _describe(exc: BaseException, after_s: float) -> str:
    """One line for a failed request: httpx timeouts often carry no message at all."""
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return f"timed out after {after_s:.1f} s ({type(exc).__name__})"
    return f"{type(exc).__name__}: {exc}".rstrip(": ")


@dataclass
class _Rendition:
    """What the client knows about one rendition's media playlist."""

    name: str
    url: str
    pipe: BytePipe
    queue: asyncio.Queue[_Segment] = field(default_factory=asyncio.Queue)
    kind: PlaylistKind | None = None  # from the first load
    ended: bool = False  # EXT-X-ENDLIST seen (or VOD): every segment is queued
    done: bool = False  # ended, and its last segment is in the pipe (then closed)
    disabled: str | None = None  # why its segments are not fetched (unsupported encryption)
    first_msn: int | None = None  # MSN of the first segment of the first load (VOD/EVENT)
    media_s: list[float] = field(default_factory=list)  # media start of first_msn + i
    next_media_s: float = 0.0  # media start of the segment after the last one written
    pipe_media_s: float | None = None  # media start of the first segment in the current pipe
    target_duration_s: float | None = None
    media_sequence: int | None = None
    discontinuity_sequence: int | None = None
    next_msn: int | None = None  # first MSN not yet queued for download
    newest_msn: int | None = None
    playlist_hash: bytes = b""
    new_segment_s: float = 0.0  # when a load (its response) last showed a new segment
    verified_stale: bool = False  # a load begun after the 1.5 TD deadline showed nothing new
    written_msns: deque[int] = field(default_factory=lambda: deque(maxlen=1000))
    last_write_s: float = 0.0  # monotonic time the last segment went into the pipe
    bytes_in: int = 0
    container: str | None = None  # "mpegts" | "mp4", None until known
    init_url: str | None = None  # EXT-X-MAP URL of ``init``
    init: bytes | None = None
    init_written: tuple[BytePipe, str] | None = None  # (pipe, init URL) it went into last


def _box_error(body: bytes) -> str | None:
    """Why ``body`` does not start with a sane ISO BMFF box header (None if it does)."""
    if len(body) < 8:
        return f"not an MP4 box ({len(body)} bytes)"
    size = int.from_bytes(body[:4], "big")
    kind = body[4:8]
    if not all(0x20 <= b < 0x7F for b in kind) or not kind[:1].isalnum():
        return f"not an MP4 box (type {kind!r})"
    if size == 1 and len(body) >= 16:  # 64-bit largesize follows the type
        size = int.from_bytes(body[8:16], "big")
        if size < 16:
            return f"not an MP4 box ({kind.decode()} largesize {size})"
    elif size < 8:
        return f"not an MP4 box ({kind.decode()} size {size})"
    if size > len(body):
        return f"truncated MP4 box ({kind.decode()} size {size} > {len(body)} bytes)"
    return None


def _ts_error(body: bytes) -> str | None:
    if body[0] != TS_SYNC or (len(body) > TS_PACKET and body[TS_PACKET] != TS_SYNC):
        return "not MPEG-TS (no 0x47 sync byte)"
    return None


def _nonempty(body: bytes) -> str | None:
    """Encrypted segments and keys: what they hold is only known after decryption."""
    return None


def _init_error(body: bytes) -> str | None:
    """An EXT-X-MAP init segment: MPEG-TS (PAT/PMT) or an MP4 ftyp/moov."""
    return _ts_error(body) if body[0] == TS_SYNC else _box_error(body)


class HlsClient:
    """Follows a master (or a single media) playlist and feeds one BytePipe per rendition.

    ``renditions`` is filled when :meth:`run` has parsed the master playlist: names are
    ``"<W>x<H>"`` for variants with a RESOLUTION (``"<W>x<H>-<bandwidth>"`` when two share one),
    ``"v<i>"`` without, ``"audio-<language or name>"`` for alternate audio (EXT-X-MEDIA with a
    URI) and ``"main"`` for a media playlist URL. :meth:`run` closes every pipe when it returns.
    """

    def __init__(
        self,
        url: str,
        report: Report,
        *,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 5.0,
        segment_attempts: int = 2,
        pipe_factory: Callable[[], BytePipe] = BytePipe,
        max_connections: int = 16,
    ) -> None:
        self.url = url
        self.report = report
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self.segment_attempts = max(1, segment_attempts)
        self.pipe_factory = pipe_factory
        self.max_connections = max_connections
        self.renditions: dict[str, BytePipe] = {}
        self.ready = threading.Event()  # set once ``renditions`` is filled (or open failed)
        self.open_error: InputError | None = None  # why the start was unusable
        self._states: dict[str, _Rendition] = {}
        self._active: dict[tuple[str, str], TransportCondition] = {}
        self._stop_requested = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._http: httpx.AsyncClient | None = None
        self._keys: dict[str, bytes] = {}  # AES-128 key URI -> key, fetched once
        self._key_locks: dict[str, asyncio.Lock] = {}

    # ------------------------------------------------------------------ public API

    async def run(self) -> None:
        """Follow the stream until :meth:`stop`; raise InputError only if the start is unusable."""
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        if self._stop_requested:
            self._stop_event.set()
        timeout = httpx.Timeout(
            connect=self.open_timeout_s,
            read=self.read_timeout_s,
            write=self.read_timeout_s,
            pool=self.open_timeout_s,
        )
        limits = httpx.Limits(
            max_connections=self.max_connections, max_keepalive_connections=self.max_connections
        )
        tasks: list[asyncio.Task[None]] = []
        try:
            async with httpx.AsyncClient(
                timeout=timeout, limits=limits, follow_redirects=True
            ) as http:
                self._http = http
                try:
                    await self._open()
                except InputError as exc:
                    self.open_error = exc  # before ``ready`` is set (finally, below)
                    raise
                for state in self._states.values():
                    tasks.append(asyncio.create_task(self._follow_playlist(state)))
                    tasks.append(asyncio.create_task(self._fetch_segments(state)))
                tasks.append(asyncio.create_task(self._watch_staleness()))
                await self._stop_event.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for pipe in self.renditions.values():
                pipe.close()
            self.ready.set()

    def replace_pipe(self, name: str, pipe: BytePipe) -> None:
        """Send the rendition's next segments to ``pipe`` (a decoder restarting); any thread."""
        state = self._states[name]
        state.pipe, state.pipe_media_s = pipe, None
        self.renditions[name] = pipe

    def last_write_s(self, name: str) -> float:
        state = self._states.get(name)
        return state.last_write_s if state else 0.0

    def target_duration_s(self, name: str) -> float | None:
        state = self._states.get(name)
        return state.target_duration_s if state else None

    def bytes_in(self) -> int:
        return sum(state.bytes_in for state in self._states.values())

    def container(self, name: str) -> str | None:
        """The rendition's container for the demuxer: "mpegts" | "mp4", None until known."""
        state = self._states.get(name)
        return state.container if state else None

    def media_timed(self) -> bool:
        """Whether the renditions are VOD or EVENT playlists, read from their first segment and
        timed in media seconds from it (False for live playlists and until loaded)."""
        kinds = {r.kind for r in self._states.values() if r.kind is not None}
        return bool(kinds) and kinds <= {"vod", "event"}

    def pipe_media_s(self, name: str) -> float:
        """Media seconds from the first segment (the sum of the EXTINF before it) at which the
        bytes of the rendition's current pipe begin: where its decoder's timeline begins."""
        state = self._states.get(name)
        if state is None:
            return 0.0
        return state.next_media_s if state.pipe_media_s is None else state.pipe_media_s

    def done(self, name: str) -> bool:
        """The rendition ended (EXT-X-ENDLIST) and its last segment is in the pipe, or it has
        nothing that can be decoded (an unsupported encryption)."""
        state = self._states.get(name)
        return state is not None and (state.done or state.disabled is not None)

    def finished(self) -> bool:
        """Nothing more will be written into any pipe: every rendition is done, except those
        whose playlist never loaded (reported as hls_playlist), which are not waited for once
        the others are done."""
        states = list(self._states.values())
        if not any(r.done for r in states):
            return False
        return all(r.done or r.disabled is not None or r.kind is None for r in states)

    def stop(self) -> None:
        """End :meth:`run` soon; callable from any thread, before or during run."""
        self._stop_requested = True
        loop, event = self._loop, self._stop_event
        if loop is not None and event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(event.set)

    def written_msns(self, name: str) -> list[int]:
        """Media sequence numbers written into ``name``'s pipe, oldest first (last 1000)."""
        return list(self._states[name].written_msns)

    @property
    def active_conditions(self) -> list[TransportCondition]:
        return list(self._active.values())

    # ------------------------------------------------------------------ start

    async def _open(self) -> None:
        """Load the master (or media) playlist, then every media playlist once: their kind
        (live, EVENT, VOD) and encryption are known, and cycles found, before any decoding."""
        limit_s = self.open_timeout_s + self.read_timeout_s
        try:
            text, _ = await self._get_playlist(self.url, limit_s)
            playlist = parse_playlist(text, self.url)
        except PlaylistError as exc:
            raise InputError(f"HLS {self.url}: {exc}") from None
        now = time.monotonic()
        if not playlist.is_variant:
            self._add("main", self.url, now)
            first: dict[str, str] = {"main": text}
        else:
            for media in playlist.media:
                if media.type == "AUDIO" and media.uri:
                    label = media.language or media.name or media.group_id or "a"
                    self._add(f"audio-{label}", media.absolute_uri, now)
            for i, variant in enumerate(playlist.playlists):
                res = variant.stream_info.resolution
                name = f"{res[0]}x{res[1]}" if res else f"v{i}"
                if name in self._states:
                    name = f"{name}-{variant.stream_info.bandwidth}"
                self._add(name, variant.absolute_uri, now)
            if not self._states:
                raise InputError(f"HLS {self.url}: master playlist lists no media playlists")
            for r in self._states.values():
                if r.url == self.url:
                    raise InputError(f"HLS playlist cycle: {self.url} -> {self.url}")
            first = await self._load_media_playlists(limit_s)
        failures: dict[str, str] = {}
        for name, r in self._states.items():
            if name not in first:
                continue  # not loaded (timeout, HTTP error): the follow loop reports it
            try:
                self._on_playlist(r, first[name], now)
                self._set("hls_playlist", r.name, False)
            except PlaylistError as exc:
                failures[name] = str(exc)
                self._set("hls_playlist", r.name, True, {"url": r.url, **exc.detail})
            if r.disabled is not None:
                failures[name] = r.disabled
        if failures and len(failures) == len(self._states):
            # Nothing can ever be decoded: say why now rather than run to an empty summary.
            name, why = next(iter(failures.items()))
            more = f" (and {len(failures) - 1} more renditions)" if len(failures) > 1 else ""
            where = "" if name == "main" else f" rendition {name} ({self._states[name].url}):"
            raise InputError(f"HLS {self.url}:{where} {why}{more}")
        self.ready.set()

    async def _load_media_playlists(self, limit_s: float) -> dict[str, str]:
        """Each rendition's first playlist text; a master playlist where a media playlist was
        expected is a cycle (it lists a playlist already on the path) or a nesting error."""

        async def load(r: _Rendition) -> tuple[str, str | None]:
            try:
                text, _ = await self._get_playlist(r.url, limit_s)
            except PlaylistError as exc:
                self._set("hls_playlist", r.name, True, {"url": r.url, **exc.detail})
                return r.name, None
            return r.name, text

        loaded = await asyncio.gather(*(load(r) for r in self._states.values()))
        texts = {name: text for name, text in loaded if text is not None}
        for name, text in texts.items():
            r = self._states[name]
            try:
                nested = parse_playlist(text, r.url)
            except PlaylistError:
                continue  # reported with the rendition's other playlist errors
            if nested.is_variant:
                path = [self.url, r.url]
                listed = {v.absolute_uri for v in nested.playlists} | {
                    m.absolute_uri for m in nested.media if m.uri
                }
                back = next((url for url in path if url in listed), None)
                if back is not None:
                    raise InputError(f"HLS playlist cycle: {' -> '.join([*path, back])}")
                raise InputError(
                    f"HLS {self.url}: rendition {name} ({r.url}) is a master playlist, "
                    "expected a media playlist (RFC 8216 §4.3.4.2)"
                )
        return texts

    def _add(self, name: str, url: str, now: float) -> None:
        base, n = name, 2
        while name in self._states:
            name, n = f"{base}-{n}", n + 1
        pipe = self.pipe_factory()
        self._states[name] = _Rendition(name=name, url=url, pipe=pipe, new_segment_s=now)
        self.renditions[name] = pipe

    # ------------------------------------------------------------------ playlists

    async def _get_playlist(self, url: str, limit_s: float) -> tuple[str, float]:
        """(text, seconds taken) of a playlist; PlaylistError for anything unusable."""
        assert self._http is not None
        t0 = time.monotonic()
        try:
            async with asyncio.timeout(limit_s):
                try:
                    response = await self._http.get(url)
                except _STALE_CONNECTION:
                    # The server closed an idle keep-alive connection as we reused it (a race
                    # every HTTP/1.1 client meets); httpx does not retry, a GET is idempotent.
                    response = await self._http.get(url)
        except (TimeoutError, httpx.HTTPError) as exc:
            raise PlaylistError(_describe(exc, time.monotonic() - t0)) from None
        if response.status_code != 200:
            raise PlaylistError(f"HTTP {response.status_code}", status=response.status_code)
        text = response.text
        if not text.lstrip("\ufeff").startswith("#EXTM3U"):
            ctype = response.headers.get("content-type", "")
            raise PlaylistError(
                f"not an HLS playlist (no #EXTM3U; Content-Type {ctype or 'none'})",
                content_type=ctype,
            )
        return text, time.monotonic() - t0

    async def _follow_playlist(self, r: _Rendition) -> None:
        """Reload at RFC 8216 §6.3.4 cadence: 1 TD after a change, TD/2 when unchanged; never
        once the playlist has ended (a VOD playlist MUST NOT change, RFC 8216 §6.2.1)."""
        if r.kind is not None:  # loaded by _open: wait a target duration before reloading
            await asyncio.sleep(r.target_duration_s or 1.0)
        while not (r.ended or r.disabled):
            start_s = time.monotonic()
            changed = False
            try:
                limit_s = self.open_timeout_s + self.read_timeout_s
                text, _ = await self._get_playlist(r.url, limit_s)
                self._set("hls_playlist", r.name, False)
                changed = self._on_playlist(r, text, start_s)
            except PlaylistError as exc:
                self._set("hls_playlist", r.name, True, {"url": r.url, **exc.detail})
            except Exception as exc:  # a parser surprise must not end the rendition
                detail = {"url": r.url, "error": f"{type(exc).__name__}: {exc}"}
                self._set("hls_playlist", r.name, True, detail)
            td = r.target_duration_s or 1.0
            wait_s = start_s + (td if changed else td / 2) - time.monotonic()
            await asyncio.sleep(max(0.0, wait_s))

    def _on_playlist(self, r: _Rendition, text: str, start_s: float) -> bool:
        """Check a freshly loaded playlist and queue its new segments; True if it changed."""
        now = time.monotonic()
        digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
        changed = digest != r.playlist_hash
        r.playlist_hash = digest
        playlist = parse_playlist(text, r.url)
        if playlist.is_variant:
            raise PlaylistError("expected a media playlist, got a master playlist")
        if playlist.target_duration is None:
            raise PlaylistError("no #EXT-X-TARGETDURATION")
        td = float(playlist.target_duration)
        r.target_duration_s = td
        msn0 = playlist.media_sequence or 0
        kind = playlist_kind(playlist)
        if r.kind is None:
            r.kind = kind
            if kind != "live":
                r.next_msn = msn0  # VOD and EVENT: from the first segment, not the live edge
                r.first_msn = msn0
        if r.disabled is None and (method := unsupported_method(playlist)) is not None:
            r.disabled = (
                f"segments encrypted with METHOD={method}: not supported "
                "(streamqc decrypts METHOD=AES-128 only)"
            )
            self._set("hls_encryption", r.name, True, {"method": method, "error": r.disabled})
            r.ended = True
            return changed
        dsn = playlist.discontinuity_sequence or 0
        segments = playlist.segments
        newest = msn0 + len(segments) - 1
        problems: dict[str, Any] = {}
        if r.media_sequence is not None and (
            msn0 < r.media_sequence or (r.newest_msn is not None and newest < r.newest_msn)
        ):
            problems["media_sequence"] = {"was": r.media_sequence, "now": msn0}
            r.next_msn = None  # the packager restarted: resynchronise at the live edge
        if r.discontinuity_sequence is not None and dsn < r.discontinuity_sequence:
            problems["discontinuity_sequence"] = {"was": r.discontinuity_sequence, "now": dsn}
        if r.next_msn is not None and msn0 > r.next_msn:
            problems["skipped"] = msn0 - r.next_msn
            r.next_msn = msn0
        r.media_sequence, r.discontinuity_sequence = msn0, dsn

        new_segment = bool(segments) and (
            r.newest_msn is None or newest > r.newest_msn or bool(problems)
        )
        if r.next_msn is None and segments:
            r.next_msn = newest  # join at the newest segment: lowest latency for a monitor
        if segments and r.container is None and segments[-1].init_section is None:
            r.container = "mpegts"  # with an EXT-X-MAP, the init segment tells (_get_init)
        if r.first_msn is not None:  # media start of each segment: the EXTINF before it
            for msn in range(r.first_msn + len(r.media_s), newest + 1):
                if not r.media_s:
                    r.media_s.append(0.0)
                    continue
                previous = msn - 1 - msn0
                # An EVENT playlist MUST NOT remove segments (RFC 8216 §4.3.3.5); if one did,
                # its EXTINF is gone and a target duration stands in for it.
                step_s = float(segments[previous].duration or 0.0) if previous >= 0 else td
                r.media_s.append(r.media_s[-1] + step_s)
        for msn in range(r.next_msn if r.next_msn is not None else newest + 1, newest + 1):
            seg = segments[msn - msn0]
            init = seg.init_section
            extinf_s = float(seg.duration or 0.0)
            too_long = math.floor(extinf_s + 0.5) > td
            self._set(
                "hls_segment_duration",
                r.name,
                too_long,
                {"msn": msn, "extinf_s": extinf_s, "target_duration_s": td},
            )
            init_url = init.absolute_uri if init is not None and init.uri else None
            key_url, iv = None, None
            if seg.key is not None and seg.key.method == "AES-128":
                key_url = seg.key.absolute_uri
                try:
                    iv = aes128_iv(seg.key.iv, msn)
                except ValueError as exc:
                    raise PlaylistError(f"{r.url}: #EXT-X-KEY: {exc}") from None
            index = msn - (r.first_msn or 0)
            media_s = r.media_s[index] if 0 <= index < len(r.media_s) else 0.0
            r.queue.put_nowait(
                _Segment(msn, seg.absolute_uri, extinf_s, init_url, key_url, iv, media_s)
            )
        if segments:
            r.next_msn = max(r.next_msn or 0, newest + 1)
            r.newest_msn = newest
        if kind == "vod" and r.kind != "live":
            r.ended = True  # every segment is queued; nothing will be added
        # A live playlist that gains EXT-X-ENDLIST is a channel whose packager stopped (FFmpeg's
        # hls muxer writes it on exit): still followed, so that hls_stale and input_loss say so.

        if problems:
            self._set("hls_sequence", r.name, True, problems)
        elif new_segment:
            self._set("hls_sequence", r.name, False)
        if new_segment:
            r.new_segment_s = now
            r.verified_stale = False
        elif start_s - r.new_segment_s > STALE_TD * td:
            r.verified_stale = True
        self._update_staleness()
        return changed

    # ------------------------------------------------------------------ segments

    async def _room_in_pipe(self, r: _Rendition) -> None:
        """A VOD/EVENT rendition is read as fast as its decoder takes it, no faster."""
        if r.kind in ("vod", "event"):
            while r.pipe.buffered_bytes > MEDIA_TIMED_BUFFER_BYTES and not r.pipe.closed:
                await asyncio.sleep(0.02)

    def _finish_if_done(self, r: _Rendition) -> None:
        """After an ended playlist's last segment: close the pipe, so its decoder ends."""
        if r.ended and r.queue.empty() and not r.done:
            r.done = True
            r.pipe.close()

    async def _fetch_segments(self, r: _Rendition) -> None:
        """Download queued segments one at a time, in order, into the rendition's pipe."""
        while True:
            self._finish_if_done(r)
            seg = await r.queue.get()
            msn, url, extinf_s, init_url = seg.msn, seg.url, seg.extinf_s, seg.init_url
            await self._room_in_pipe(r)
            if r.kind == "live" and r.media_sequence is not None and msn < r.media_sequence:
                # We fell behind (slow link): the segment left the window; stay live instead.
                detail = {"msn": msn, "url": url, "error": "left the playlist before download"}
                self._set("hls_segment_error", r.name, True, detail)
                continue
            if init_url is not None and not await self._get_init(r, msn, init_url):
                continue
            check = _box_error if init_url is not None and r.container == "mp4" else _ts_error
            if seg.key_url is not None:
                body, error, took_s = await self._download(url, _nonempty)
                if body is not None:
                    body = await self._decrypt(r, seg, body)
                    if body is None:
                        continue  # reported as hls_encryption
                    if (problem := check(body)) is not None:
                        body, error = None, {"error": f"decrypted: {problem}", "attempts": 1}
            else:
                body, error, took_s = await self._download(url, check)
            if error is not None:
                self._set("hls_segment_error", r.name, True, {"msn": msn, "url": url, **error})
                continue
            assert body is not None
            pipe = r.pipe  # once: replace_pipe() may run on another thread meanwhile
            if init_url is not None and r.init is not None and r.init_written != (pipe, init_url):
                pipe.write(r.init)  # first segment, a new init URI, or a restarted decoder
                r.init_written = (pipe, init_url)
                r.bytes_in += len(r.init)
            pipe.write(body)
            if r.pipe_media_s is None and pipe is r.pipe:
                r.pipe_media_s = seg.media_s
            r.next_media_s = seg.media_s + extinf_s
            r.last_write_s = time.monotonic()
            r.bytes_in += len(body)
            r.written_msns.append(msn)
            self._set("hls_segment_error", r.name, False)
            slow = extinf_s > 0 and took_s >= SLOW_DOWNLOAD_FRACTION * extinf_s
            detail = {"msn": msn, "download_s": round(took_s, 3), "extinf_s": extinf_s}
            self._set("hls_slow_download", r.name, slow, detail)

    async def _decrypt(self, r: _Rendition, seg: _Segment, body: bytes) -> bytes | None:
        """The clear segment, or None after reporting why it cannot be decrypted."""
        assert seg.key_url is not None and seg.iv is not None
        key = await self._key(r, seg)
        if key is None:
            return None
        try:
            clear = aes128_decrypt(body, key, seg.iv)
        except ValueError as exc:
            reason = str(exc) or "bad PKCS7 padding"
            detail = {
                "msn": seg.msn,
                "url": seg.url,
                "key_url": seg.key_url,
                "error": f"AES-128 decryption failed: {reason} (wrong key or IV?)",
            }
            self._set("hls_encryption", r.name, True, detail)
            return None
        self._set("hls_encryption", r.name, False)
        return clear

    async def _key(self, r: _Rendition, seg: _Segment) -> bytes | None:
        """The AES-128 key at ``seg.key_url``, fetched once per URI (renditions share keys)."""
        assert seg.key_url is not None
        url = seg.key_url
        lock = self._key_locks.setdefault(url, asyncio.Lock())
        async with lock:  # one fetch per URI even when renditions ask at once
            if url in self._keys:
                return self._keys[url]
            body, error, _ = await self._download(url, _nonempty)
            if body is not None and len(body) != AES_BLOCK_BYTES:
                error = {"error": f"key is {len(body)} bytes, expected {AES_BLOCK_BYTES}"}
            if error is not None or body is None:
                why = (error or {}).get("error", "no key")
                detail = {"msn": seg.msn, "key_url": url, "error": f"AES-128 key {url}: {why}"}
                self._set("hls_encryption", r.name, True, detail)
                return None
            self._keys[url] = body
            return body

    async def _get_init(self, r: _Rendition, msn: int, init_url: str) -> bool:
        """Have the EXT-X-MAP init segment ``init_url`` in ``r.init``; False if it failed."""
        if r.init is not None and r.init_url == init_url:
            return True
        body, error, _ = await self._download(init_url, _init_error)
        if error is not None:
            detail = {"msn": msn, "url": init_url, "init": True, **error}
            self._set("hls_segment_error", r.name, True, detail)
            return False
        assert body is not None
        r.init, r.init_url = body, init_url
        r.container = "mpegts" if body[0] == TS_SYNC else "mp4"
        return True

    async def _download(
        self, url: str, check: Callable[[bytes], str | None] = _ts_error
    ) -> tuple[bytes | None, dict[str, Any] | None, float]:
        """(body, None, seconds) or (None, error detail, seconds), after bounded retries."""
        assert self._http is not None
        t0 = time.monotonic()
        limit_s = self.open_timeout_s + self.read_timeout_s
        error: dict[str, Any] = {}
        for attempt in range(self.segment_attempts):
            if attempt:
                await asyncio.sleep(0.1)
            try:
                async with asyncio.timeout(limit_s):
                    try:
                        response = await self._http.get(url)
                    except _STALE_CONNECTION:  # see _get_playlist
                        response = await self._http.get(url)
            except (TimeoutError, httpx.HTTPError) as exc:
                error = {"error": _describe(exc, time.monotonic() - t0)}
                continue
            if response.status_code != 200:
                status = response.status_code
                error = {"error": f"HTTP {status}", "status": status}
                continue
            body = response.content
            if not body:
                error = {"error": "empty segment"}
                continue
            problem = check(body)
            if problem is not None:
                # Not retried: the server gave a definite, wrong answer.
                error = {"error": problem, "bytes": len(body)}
                break
            return body, None, time.monotonic() - t0
        return None, {**error, "attempts": attempt + 1}, time.monotonic() - t0

    # ------------------------------------------------------------------ staleness

    async def _watch_staleness(self) -> None:
        """Re-evaluate staleness by the clock, for renditions whose loads fail or hang."""
        while True:
            await asyncio.sleep(0.1)
            self._update_staleness()

    def _is_stale(self, r: _Rendition, now: float) -> bool:
        if r.ended or r.disabled:  # a VOD playlist never changes: it cannot be late
            return False
        if r.target_duration_s is None:  # never loaded: give it the open timeout
            return now - r.new_segment_s > self.open_timeout_s + self.read_timeout_s
        # A load every TD/2 sees a new segment at most TD/2 after it appeared.
        return r.verified_stale or now - r.new_segment_s > (STALE_TD + 0.5) * r.target_duration_s

    def _update_staleness(self) -> None:
        now = time.monotonic()
        stale = {name: self._is_stale(r, now) for name, r in self._states.items()}
        newest_s = max(r.new_segment_s for r in self._states.values())
        for name, r in self._states.items():
            # "Others keep updating": one of them showed a new segment at least a TD after this
            # one's last. Renditions stopping together differ by less (reload phases, < TD/2).
            others_moved = newest_s - r.new_segment_s > (r.target_duration_s or 1.0)
            td = r.target_duration_s
            detail = {
                "since_new_segment_s": round(now - r.new_segment_s, 3),
                "target_duration_s": td,
                "newest_msn": r.newest_msn,
            }
            self._set("hls_stale", name, stale[name], detail)
            self._set("rendition_missing", name, stale[name] and others_moved, detail)

    # ------------------------------------------------------------------ reporting

    def _set(
        self, alarm: str, subject: str, active: bool, detail: dict[str, Any] | None = None
    ) -> None:
        """Report a condition when it changes state (raised or cleared), never repeatedly."""
        key = (alarm, subject)
        if active == (key in self._active):
            return
        cond = TransportCondition(alarm, active, time.monotonic(), subject, detail or {})
        if active:
            self._active[key] = cond
        else:
            del self._active[key]
        self.report(cond)
