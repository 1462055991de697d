"""Monitoring a live input: decode threads, input loss, a watchdog, reconnects, one timeline.

Each rendition of the input is decoded on its own thread (PyAV and the Numba kernels release
the GIL) and hands its items to the control loop, which runs on the calling thread, owns the
channel pipelines and the alarm trackers, and once every tick:

- raises ``input_loss`` when nothing has arrived for the input_loss hold-off, and clears it
  when media flows again;
- restarts a rendition whose decoded media time has not advanced for ``watchdog_s``, whatever
  the cause (a hung open, a read that never returns, a decoder stuck on garbage): closing its
  BytePipe unblocks the decoder, which then ends;
- reopens an ended rendition after an exponential backoff with jitter, capped.

Times are seconds since the session started, on the monotonic clock: each (re)opened decoder
places its first frame at the current session time, so one timeline runs across reconnects
and the pipelines (and so the alarm state) live for the whole session.

An HLS VOD or EVENT input is *media-timed* instead: it is read from its first segment as fast
as it decodes, its times are media seconds from that segment (so an alarm's ``start`` is a
position in the asset), and the session clock follows the media the renditions reached (and
runs on in real time while nothing arrives, so input_loss still raises). The renditions of a
media-timed ladder are kept within :data:`STEP_LEAD_S` of each other, so that they can be
compared. A VOD rendition whose last segment has been decoded is *done*: no input_loss, no
reopening; a session whose renditions are all done ends by itself (``streamqc analyze``).
"""

from __future__ import annotations

import asyncio
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol
from urllib.parse import urlsplit

import numpy as np

from detectors.black import BlackSettings
from detectors.freeze import FreezeSettings
from detectors.picture import PictureAnalyzer
from detectors.silence import SilenceDetector, SilenceSettings
from monitor.alarms.engine import Emit, Inheritance, Subject, Trackers
from monitor.alarms.input_stats import InputStats
from monitor.checks.base import Arrival, CheckContext, Inform, InputCheck, ignore_info
from monitor.checks.registry import at_pictures, build_checks
from monitor.config import ChannelConfig, InputConfig, ThumbnailConfig
from monitor.decode.media_source import (
    AudioChunk,
    DecodedItem,
    DecodeReport,
    MediaSource,
    Picture,
    PictureSelection,
    StreamInfo,
)
from monitor.decode.thumbnails import Thumbnailer
from monitor.errors import InputError
from monitor.ingest.hls import HlsClient
from monitor.ingest.pipe import BytePipe
from monitor.ingest.reports import Report, TransportCondition
from monitor.ingest.srt import SrtOptions, SrtReader
from monitor.ingest.tr101290 import Tr101290Analyzer, Tr101290Settings
from monitor.ingest.udp import UdpOptions, UdpReader
from monitor.pipeline.channel import ChannelPipeline
from monitor.util.backoff import Backoff

TICK_S = 0.1
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0
LOSS_GAP_S = 0.25  # less than this between arrivals is ordinary burstiness, not a loss
STATS_EVERY_S = 1.0
HAND_OVER_MAX = 16  # decoded items a decoder thread keeps before handing them over anyway
LATE_AFTER_S = 1.0  # a picture analysed this long after it was decoded counts as late
JOIN_GRACE_S = 5.0
"""A decoder joining a live stream mid-GOP sees its first picture only at the next keyframe."""
CLAIM_WINDOW_S = 5.0
"""Media a restarted session decodes before inherited alarms nobody claimed are cleared."""
STEP_LEAD_S = 2.0
"""How far one rendition of a media-timed ladder may decode ahead of the slowest: well inside
the ladder comparison's ``max_skew_s`` (12 s by default), past which an instant is judged
without the renditions that have not reached it."""
STEP_STALL_S = 5.0
"""A rendition that has not advanced for this long is not waited for (its own alarms say why)."""
CLOCK_GRACE_S = 1.0
"""A media-timed clock waits this long without new media before it runs on in real time: a
pause shorter than that is decoding (a segment's first picture, the last decoder ending),
not a stall."""


class SessionObserver(Protocol):
    """What a daemon wants of a running session besides its alarm events."""

    def tick(self) -> None:
        """The control loop is alive (called every tick)."""

    def stats(self, stats: list[InputStats]) -> None:
        """Every rendition's measurements, about once a second."""

    def thumbnail(self, rendition: str | None, jpeg: bytes) -> None:
        """A periodic thumbnail of ``rendition``."""


def live_kind(url: str) -> str | None:
    """Which live input reads ``url`` ("udp", "srt", "hls"), or None: PyAV opens it."""
    parts = urlsplit(url)
    if parts.scheme in ("udp", "rtp"):
        return "udp"
    if parts.scheme == "srt":
        return "srt"
    if parts.scheme in ("http", "https") and parts.path.endswith((".m3u8", ".m3u")):
        return "hls"
    return None


def is_live_url(url: str) -> bool:
    """Inputs the live runner handles itself (the rest PyAV opens as files or streams)."""
    return live_kind(url) is not None


class Ingest(Protocol):
    """What the live runner needs of an input's network side."""

    name: str  # for messages: never holds a secret

    def start(self, report: Report) -> None: ...
    def renditions(self) -> list[str | None]: ...
    def new_pipe(self, rendition: str | None, read_timeout_s: float) -> BytePipe: ...
    def last_receive_s(self, rendition: str | None) -> float: ...
    def arrival_gap_s(self, rendition: str | None) -> float: ...
    def container(self, rendition: str | None) -> str: ...
    def bytes_in(self) -> int: ...
    def stop(self) -> None: ...
    def media_timed(self) -> bool: ...
    def media_start_s(self, rendition: str | None) -> float: ...
    def done(self, rendition: str | None) -> bool: ...
    def finished(self) -> bool: ...


class TransportChecks:
    """TR 101 290 on the bytes as they arrive, on the reader's thread.

    Driven by arrivals only: when nothing arrives that is input_loss, and PAT/PMT/PCR timers
    firing on top of it would only bury the one alarm that matters.
    """

    def __init__(self, report: Report) -> None:
        self._analyzer = Tr101290Analyzer(Tr101290Settings(), report)

    def feed(self, data: bytes) -> None:
        self._analyzer.feed(data, time.monotonic())

    def gauges(self) -> tuple[tuple[str, tuple[tuple[str, str], ...], float], ...]:
        """The error counters since the input started, per check (``cc``, ``pat``, ``pcr_
        repetition``, ...), and the PCR arrival jitter per PCR PID since the last call
        (reported, never alarmed)."""
        totals = dict(self._analyzer.counters.totals)
        out: list[tuple[str, tuple[tuple[str, str], ...], float]] = [
            ("tr101290_packets_total", (), float(totals.pop("packets", 0))),
            ("tr101290_bytes_discarded_total", (), float(totals.pop("bytes_discarded", 0))),
        ]
        out += [
            ("tr101290_errors_total", (("check", name),), float(count))
            for name, count in sorted(totals.items())
        ]
        out += [
            ("tr101290_pcr_arrival_jitter_seconds", (("pid", str(pid)),), ms / 1000)
            for pid, ms in self._analyzer.take_pcr_jitter_ms().items()
        ]
        return tuple(out)


def warm_up() -> None:
    """Load every kernel a live session calls, with the argument types it will use.

    Numba loads each cached specialisation on its first call, holding the GIL for a few
    hundred milliseconds; done mid-stream, that delays the reader threads and their arrival
    times (a false PCR gap). Read-only padded views are their own specialisation.
    """
    luma = np.zeros((16, 48), dtype=np.uint8)[:, :32]
    luma.flags.writeable = False
    analyzer = PictureAnalyzer(BlackSettings(), FreezeSettings())
    analyzer.update(luma, 0.0)
    analyzer.update(luma, 0.04, keyframe=True)
    SilenceDetector(SilenceSettings(), 48000, 2).update(np.zeros((2, 9600), np.float32), 0.0)
    Tr101290Analyzer(Tr101290Settings(), lambda condition: None).feed(
        NULL_PACKETS, time.monotonic()
    )


def warm_up_checks(channel: ChannelConfig) -> None:
    """Load the kernels of the channel's own checks (loudness, A/V sync, graphics, ...)
    before its readers start, for the same reason as ``warm_up``: a throwaway pipeline of
    the channel measures 2.2 s of blank pictures and silence (checks that work a hop at a
    time, like A/V sync, call their kernels once a second)."""
    stereo = StreamInfo("audio", 0, "pcm", "warm-up", channel_names=("FL", "FR"))
    pipeline = ChannelPipeline(channel, "warm-up", lambda event: None, audio_streams=[stereo])
    padded = np.zeros((180, 352), dtype=np.uint8)
    luma = padded[:, :320]
    luma.flags.writeable = False
    silence = np.zeros((2, 9600), dtype=np.float32)
    for i in range(55):
        pipeline.process(Picture(luma, i * 0.04, 0.04, 8, False, keyframe=i % 25 == 0))
        if i % 5 == 0:
            pipeline.process(AudioChunk(0, silence, i * 0.04, 48000))


NULL_PACKETS = (bytes([0x47, 0x1F, 0xFF, 0x10]) + bytes(184)) * 7


class TsReader(Protocol):
    """A reader thread writing MPEG-TS from the network into its current ``pipe``."""

    pipe: BytePipe
    tap: Callable[[bytes], None] | None
    last_receive_s: float
    bytes_in: int

    def start(self) -> Any: ...
    def stop(self) -> None: ...


class StreamIngest:
    """One MPEG-TS stream from a reader thread (UDP/RTP, SRT): one rendition, TR 101 290 on
    every byte, and a decoder restart simply swaps the pipe the reader writes into."""

    def __init__(self, name: str, make_reader: Callable[[Report], TsReader]) -> None:
        self.name = name  # for messages: never holds a secret
        self._make_reader = make_reader
        self.reader: TsReader | None = None
        self.transport: TransportChecks | None = None

    def start(self, report: Report) -> None:
        self.reader = self._make_reader(report)
        self.transport = TransportChecks(report)
        self.reader.tap = self.transport.feed
        self.reader.start()

    def renditions(self) -> list[str | None]:
        return [None]

    def new_pipe(self, rendition: str | None, read_timeout_s: float) -> BytePipe:
        assert self.reader is not None
        pipe = BytePipe(read_timeout_s=read_timeout_s)
        self.reader.pipe = pipe  # the reader writes each message to its current pipe
        return pipe

    def last_receive_s(self, rendition: str | None) -> float:
        return self.reader.last_receive_s if self.reader else 0.0

    def arrival_gap_s(self, rendition: str | None) -> float:
        return LOSS_GAP_S

    def container(self, rendition: str | None) -> str:
        return "mpegts"

    def bytes_in(self) -> int:
        return self.reader.bytes_in if self.reader else 0

    def gauges(self) -> tuple[tuple[str, tuple[tuple[str, str], ...], float], ...]:
        """The reader's own counters for the metrics (RTP sequence accounting), if any, and
        the transport checks' PCR arrival jitter."""
        gauges = getattr(self.reader, "gauges", None)
        own = gauges() if callable(gauges) else ()
        return own + (self.transport.gauges() if self.transport else ())

    def stop(self) -> None:
        if self.reader is not None:
            self.reader.stop()

    def media_timed(self) -> bool:
        return False  # a live stream: the session's clock is the wall clock

    def media_start_s(self, rendition: str | None) -> float:
        return 0.0

    def done(self, rendition: str | None) -> bool:
        return False  # a stream never ends by design: silence is an input loss

    def finished(self) -> bool:
        return False


def udp_ingest(url: str) -> StreamIngest:
    options = UdpOptions.from_url(url)
    return StreamIngest(url, lambda report: UdpReader(options, BytePipe(), url, report))


def srt_ingest(url: str) -> StreamIngest:
    options = SrtOptions.from_url(url)
    # options.url has the passphrase masked: that is the name messages show
    return StreamIngest(options.url, lambda report: SrtReader(options, BytePipe(), report))


class HlsIngest:
    """Our HLS client on its own thread and event loop; one rendition per variant/audio."""

    def __init__(self, url: str, source: InputConfig) -> None:
        self.name = url
        self.source = source
        self.client: HlsClient | None = None
        self.thread: threading.Thread | None = None
        self._error: str | None = None
        self._handed: set[str] = set()  # renditions whose first pipe a decoder has taken

    def start(self, report: Report) -> None:
        client = self.client = HlsClient(
            self.name,
            report,
            open_timeout_s=self.source.open_timeout_s,
            read_timeout_s=self.source.read_timeout_s,
        )
        self.thread = threading.Thread(target=self._run, name=f"hls {self.name}", daemon=True)
        self.thread.start()
        # The master playlist, then the media playlists (in parallel), each within the timeouts.
        client.ready.wait(2 * (self.source.open_timeout_s + self.source.read_timeout_s) + 1.0)
        if client.open_error is not None or not client.renditions:
            self.stop()
            error = client.open_error or self._error
            raise InputError(str(error or f"{self.name}: no rendition within the open timeout"))

    def _run(self) -> None:
        assert self.client is not None
        try:
            asyncio.run(self.client.run())
        except InputError as exc:
            self._error = str(exc)
        except Exception as exc:  # the HLS thread must end with a message, not a traceback
            self._error = f"{self.name}: {type(exc).__name__}: {exc}"
        finally:
            self.client.ready.set()

    def renditions(self) -> list[str | None]:
        """Renditions whose container is known (MPEG-TS or fMP4): a decoder can start."""
        if not self.client:
            return []
        client = self.client
        return [name for name in list(client.renditions) if client.container(name) is not None]

    def container(self, rendition: str | None) -> str:
        """The demuxer for ``rendition``'s pipe: "mpegts" or "mp4" (fMP4/CMAF segments)."""
        known = self.client.container(rendition) if self.client and rendition else None
        return known or "mpegts"

    def new_pipe(self, rendition: str | None, read_timeout_s: float) -> BytePipe:
        assert self.client is not None and rendition is not None
        timeout_s = max(read_timeout_s, 2 * self.arrival_gap_s(rendition))
        if self.media_timed() and rendition not in self._handed:
            # The first decoder of a VOD/EVENT rendition takes the pipe the client has been
            # filling since the start: it holds the first segments, which a new pipe would lose.
            self._handed.add(rendition)
            pipe = self.client.renditions[rendition]
            pipe.read_timeout_s = timeout_s
            return pipe
        pipe = BytePipe(read_timeout_s=timeout_s)
        self.client.replace_pipe(rendition, pipe)
        return pipe

    def last_receive_s(self, rendition: str | None) -> float:
        return self.client.last_write_s(rendition) if self.client and rendition else 0.0

    def arrival_gap_s(self, rendition: str | None) -> float:
        """Segments arrive once per target duration: a gap is a loss past 1.5 of them."""
        target = self.client.target_duration_s(rendition) if self.client and rendition else None
        return 1.5 * (target or 6.0)

    def bytes_in(self) -> int:
        return self.client.bytes_in() if self.client else 0

    def stop(self) -> None:
        if self.client is not None:
            self.client.stop()
        if self.thread is not None:
            self.thread.join(timeout=5.0)

    def media_timed(self) -> bool:
        """VOD and EVENT playlists: read from the first segment, timed in media seconds."""
        return self.client.media_timed() if self.client else False

    def media_start_s(self, rendition: str | None) -> float:
        """Where a new decoder of ``rendition`` starts on the media timeline."""
        return self.client.pipe_media_s(rendition) if self.client and rendition else 0.0

    def done(self, rendition: str | None) -> bool:
        return bool(self.client and rendition and self.client.done(rendition))

    def finished(self) -> bool:
        return bool(self.client and self.client.finished())


def rendition_size(name: str | None) -> int | None:
    """Pixels of an HLS rendition named ``WxH`` (or ``WxH-<bandwidth>``), None if unsized."""
    match = re.match(r"(\d+)x(\d+)(?:-|$)", name or "")
    return int(match[1]) * int(match[2]) if match else None


def open_ingest(url: str, source: InputConfig) -> Ingest:
    kind = live_kind(url)
    if kind == "udp":
        return udp_ingest(url)
    if kind == "srt":
        return srt_ingest(url)
    if kind == "hls":
        return HlsIngest(url, source)
    raise InputError(f"{url}: not a live input streamqc reads itself")


@dataclass
class LiveSummary:
    source: str
    media_s: float = 0.0
    pictures: int = 0
    restarts: int = 0
    bytes_in: int = 0
    streams: list[StreamInfo] = field(default_factory=list)
    damage: DecodeReport = field(default_factory=DecodeReport)
    """What every decoder of the session skipped (damaged packets, demuxer errors), summed."""
    ended: bool = False  # a VOD input read to its end (the session ended by itself)
    wall_s: float = 0.0


class Rendition:
    """One decoded stream of a live input, and the decoder thread currently feeding it."""

    def __init__(
        self, name: str | None, pipeline_factory: Callable[[list[StreamInfo]], ChannelPipeline]
    ):
        self.name = name
        self._make_pipeline = pipeline_factory
        self.pipeline: ChannelPipeline | None = None
        self.pipe: BytePipe | None = None
        self.thread: threading.Thread | None = None
        self.stop = threading.Event()
        self.alive = False
        self.last_item_s = 0.0  # monotonic time of the last decoded item
        self.media_end_s = 0.0  # session time the decoded media reached
        self.progress_s = 0.0  # monotonic time media time last advanced
        self.reopen_at_s: float | None = 0.0  # when to (re)open; None while running
        self.backoff = Backoff(BACKOFF_FIRST_S, BACKOFF_MAX_S)
        self.streams: list[StreamInfo] = []
        self.first_media_s: float | None = None  # session time of the first decoded media
        self.thumbnails: Thumbnailer | None = None
        # Totals for the metrics (they live as long as the session).
        self.pictures = 0
        self.dropped = 0
        self.late = 0
        self.wait_max_s = 0.0  # longest decode-to-analysed time since the last stats
        self.restarts = 0
        self.video_end_s: float | None = None  # end of the last picture, for gap counting
        self.done = False  # a VOD rendition decoded to its end: nothing more will come
        self.waited_s = 0.0  # monotonic time it last waited for slower renditions

    def active_s(self) -> float:
        """When it last advanced or waited (a rendition held back in step is not stalled)."""
        return max(self.progress_s, self.waited_s)

    def pipeline_for(self, streams: list[StreamInfo]) -> ChannelPipeline:
        if self.pipeline is None:  # created once: alarm state outlives reconnects
            self.pipeline = self._make_pipeline(streams)
        return self.pipeline


class LiveSession:
    """One live input of one channel: ``streamqc analyze`` of a live URL (until ``duration_s``
    or Ctrl-C) and, in the daemon, a channel input (until ``stop`` is set)."""

    def __init__(
        self,
        url: str,
        channel: ChannelConfig,
        emit: Emit,
        *,
        input_name: str = "primary",
        source: InputConfig | None = None,
        duration_s: float | None = None,
        stop: threading.Event | None = None,
        origin_wall_s: float | None = None,
        inherited: Inheritance | None = None,
        observer: SessionObserver | None = None,
        thumbnails: ThumbnailConfig | None = None,
        persistent: bool = False,
        inform: Inform = ignore_info,
    ) -> None:
        """``origin_wall_s`` (a time.time()) is session time 0, so a restarted session goes on
        with the same timeline; ``inherited`` alarms resume instead of raising again; when
        ``persistent``, alarms still open at the end stay open (the daemon carries them over
        to the next session) instead of clearing."""
        self.url = url
        self.channel = channel
        self.emit = emit
        self.inform = inform  # informational events of the checks (SCTE-35 cues)
        self.input_name = input_name
        self.source = source or InputConfig(url=url)
        self.duration_s = duration_s
        self.stop = stop or threading.Event()
        self.origin_wall_s = origin_wall_s
        self.inherited = inherited
        self.observer = observer
        self.thumbnail_settings = thumbnails
        self.persistent = persistent
        self.ingest = open_ingest(url, self.source)
        self.summary = LiveSummary(self.ingest.name)
        self.notice: Callable[[str], None] = lambda message: None
        self._queue: queue.Queue[tuple[str, Rendition | None, Any]] = queue.Queue(maxsize=2000)
        self._start = time.monotonic()
        self._run_start_s = 0.0  # session time this session began (later than 0 after a restart)
        self._ingest_started = False
        self._ingest_retry_s = 0.0
        self._ingest_backoff = Backoff(BACKOFF_FIRST_S, BACKOFF_MAX_S)
        self._next_stats_s = 0.0
        self.renditions: dict[str | None, Rendition] = {}
        self.media_timed = False  # known once the ingest has started
        self._clock_s = 0.0  # the media-timed clock: last value, media reached, when reached
        self._clock_media_s = 0.0
        self._clock_moved_s = 0.0
        self.trackers = Trackers(Subject(channel.name, input_name, None), emit, inherited)
        context = CheckContext(
            at_pictures(channel, self.source.pictures),
            self.trackers.subject,
            self.trackers,
            ladder=isinstance(self.ingest, HlsIngest),  # renditions of a ladder, compared
            ladder_keyframes=self.source.rung_pictures(largest=False) != "all",
        )
        self.checks = [c for c in build_checks("input", context) if isinstance(c, InputCheck)]
        self._picture_checks = [c for c in self.checks if c.wants_pictures]

    # --- time ---------------------------------------------------------------------------

    def session_s(self, monotonic_s: float | None = None) -> float:
        """Session time now (or at the monotonic instant ``monotonic_s``)."""
        if not self.media_timed:
            return (time.monotonic() if monotonic_s is None else monotonic_s) - self._start
        now = time.monotonic()
        clock_s = self._media_clock(now)
        # Reports from before the first picture (a playlist error at open) are at the start.
        return clock_s if monotonic_s is None else max(0.0, clock_s - (now - monotonic_s))

    def _media_clock(self, now: float) -> float:
        """The media the renditions reached; when none advances for CLOCK_GRACE_S it runs on
        in real time, so that hold-offs (input_loss while a VOD origin hangs) elapse. Never
        goes back."""
        reached_s = max((r.media_end_s for r in self.renditions.values()), default=0.0)
        if reached_s > self._clock_media_s or self._clock_moved_s == 0.0:
            self._clock_media_s = max(reached_s, self._clock_media_s)
            self._clock_moved_s = now
        stalled_s = max(0.0, now - self._clock_moved_s - CLOCK_GRACE_S)
        self._clock_s = max(self._clock_s, self._clock_media_s + stalled_s)
        return self._clock_s

    # --- set-up -------------------------------------------------------------------------

    def _channel_at(self, rendition: str | None) -> ChannelConfig:
        """The channel as ``rendition`` runs it: without the checks its pictures cannot feed
        (those the channel wrote itself were refused with the configuration)."""
        return at_pictures(self.channel, self._pictures(rendition))

    def _pipeline_factory(
        self, rendition: str | None
    ) -> Callable[[list[StreamInfo]], ChannelPipeline]:
        channel = self.channel
        if rendition is not None and rendition.startswith("audio-"):
            # An HLS alternate audio rendition has no pictures by design.
            off = replace(channel.video_missing.rule, enabled=False)
            channel = replace(channel, video_missing=replace(channel.video_missing, rule=off))

        def make(streams: list[StreamInfo]) -> ChannelPipeline:
            audio = [s for s in streams if s.kind == "audio"]
            config = channel
            if not audio and self._has_audio_renditions():
                # A CMAF-style ladder carries the sound once, in its own rendition, which is
                # checked there: its video renditions have none to miss.
                off = replace(channel.audio_missing.rule, enabled=False)
                config = replace(channel, audio_missing=replace(channel.audio_missing, rule=off))
            return ChannelPipeline(
                config,
                self.input_name,
                self.emit,
                audio_streams=audio,
                rendition=rendition,
                inherited=self.inherited,
                join_grace_s=JOIN_GRACE_S,
                inform=self.inform,
                # The ladder is known by now: which rung this is, and so what it decodes.
                pictures=self._pictures(rendition),
            )

        return make

    def _ladder(self) -> list[str]:
        """The names of every rendition of an HLS input (none for other inputs)."""
        client = getattr(self.ingest, "client", None)
        return list(client.renditions) if client is not None else []

    def _has_audio_renditions(self) -> bool:
        return any(name.startswith("audio-") for name in self._ladder())

    def report(self, condition: TransportCondition) -> None:
        """Readers' callback (any thread): transport conditions join the control loop."""
        self._put(("transport", None, condition))

    # --- decoding threads ---------------------------------------------------------------

    def _start_decoder(self, r: Rendition) -> None:
        # The reader keeps running; the decoder starts afresh on a new pipe.
        pipe = self.ingest.new_pipe(r.name, self.source.read_timeout_s)
        r.pipe = pipe
        r.stop = threading.Event()
        r.alive = True
        r.reopen_at_s = None
        r.progress_s = time.monotonic()
        start_s = max(self.session_s(), r.media_end_s)
        if self.media_timed:  # where its next segment sits in the asset
            start_s = self.ingest.media_start_s(r.name)
        r.thread = threading.Thread(
            target=self._decode,
            args=(r, pipe, start_s, r.stop),
            name=f"decode {self.ingest.name}",
            daemon=True,
        )
        r.thread.start()

    def _decode(self, r: Rendition, pipe: BytePipe, start_s: float, stop: threading.Event) -> None:
        try:
            with MediaSource(
                self.ingest.name if r.name is None else f"{self.ingest.name} [{r.name}]",
                fileobj=pipe,
                format=self.ingest.container(r.name),  # HLS: fMP4 renditions are "mp4"
                timeline_start_s=start_s,
                open_timeout_s=self.source.open_timeout_s,
                read_timeout_s=self.source.read_timeout_s,
                pictures=self._pictures(r.name),
                splice_sections=self.channel.scte35.rule.enabled,
                captions=self._channel_at(r.name).captions.rule.enabled,
                subtitles=self.channel.subtitles.rule.enabled,
            ) as media:
                self._put(("open", r, media.stream_infos()))
                # Items go to the control loop in batches: whatever one wake-up of the
                # decoder produced, handed over when it is about to wait for bytes again.
                pending: list[tuple[DecodedItem, float]] = []

                def hand_over() -> None:
                    if pending:
                        self._put(("items", r, pending.copy()))
                        pending.clear()

                pipe.before_wait = hand_over
                for item in media:
                    if stop.is_set():
                        break
                    if self.media_timed:
                        hand_over()  # its progress must show while it waits for the others
                        self._keep_in_step(r, item.pts_s, stop)
                    pending.append((item, time.monotonic()))
                    if len(pending) >= HAND_OVER_MAX:
                        hand_over()
                hand_over()
                reason = "stopped" if stop.is_set() else "input ended or went silent"
                if media.report.read_error:
                    reason = media.report.read_error
                self._put(("damage", r, media.report))
            self._put(("end", r, reason))
        except InputError as exc:
            self._put(("end", r, str(exc)))
        except Exception as exc:  # a decoder bug must end this thread, never the session
            self._put(("end", r, f"{type(exc).__name__}: {exc}"))

    def _keep_in_step(self, r: Rendition, t_s: float, stop: threading.Event) -> None:
        """Hold a media-timed rendition (on its decoder thread) while it is more than
        STEP_LEAD_S ahead of the slowest one still advancing: each decodes at its own speed
        (a small rung many times faster than a large one), and renditions compared for
        rendition_mismatch must arrive at about the same media time."""
        while not stop.is_set():
            now = time.monotonic()
            others = [
                o.media_end_s
                for o in list(self.renditions.values())
                if o is not r and o.alive and not o.done and now - o.progress_s < STEP_STALL_S
            ]
            if not others or t_s <= min(others) + STEP_LEAD_S:
                return
            r.waited_s = now
            time.sleep(0.01)

    def _pictures(self, rendition: str | None) -> PictureSelection:
        """The input's ``pictures`` on the ladder's largest rendition (and on anything
        unsized: a single stream), the sparser of it and ``ladder_pictures`` on the others."""
        size = rendition_size(rendition)
        if size is None:
            return self.source.pictures
        sizes = (s for name in self._ladder() if (s := rendition_size(name)) is not None)
        return self.source.rung_pictures(largest=size >= max(sizes, default=size))

    def _put(self, message: tuple[str, Rendition | None, Any]) -> None:
        while True:
            try:
                self._queue.put(message, timeout=0.5)
                return
            except queue.Full:
                r = message[1]
                if r is not None and r.stop.is_set():
                    return

    # --- control loop -------------------------------------------------------------------

    def run(self) -> LiveSummary:
        warm_up()
        warm_up_checks(at_pictures(self.channel, self.source.pictures))
        now = time.monotonic()
        self._start = (
            now if self.origin_wall_s is None else now - (time.time() - self.origin_wall_s)
        )
        self._run_start_s = self.session_s(now)
        self._next_stats_s = now + STATS_EVERY_S
        try:
            self._start_ingest(now)
            self._loop()
        except KeyboardInterrupt:
            pass  # Ctrl-C ends a live analysis like --duration does
        finally:
            self._shutdown()
        self.summary.wall_s = time.monotonic() - now
        return self.summary

    def _start_ingest(self, now: float) -> None:
        """Start the network side; a failure (an HLS origin down, say) is an input loss, retried
        with backoff, not the end of the session."""
        try:
            self.ingest.start(self.report)
            self._ingest_started = True
            if self.ingest.media_timed():
                # From here on the clock is the media's: 0 is the asset's first segment.
                self.media_timed = True
                self._run_start_s = 0.0
        except InputError as exc:
            if not self.persistent:
                raise
            wait_s = self._ingest_backoff.next_s()
            self._ingest_retry_s = time.monotonic() + wait_s
            self.notice(f"{exc}; retrying in {wait_s:.1f} s")

    def _running(self) -> bool:
        if self.stop.is_set():
            return False
        if not self.persistent and self._all_done():
            self.summary.ended = True
            return False
        return self.duration_s is None or self.session_s() - self._run_start_s < self.duration_s

    def _all_done(self) -> bool:
        """A VOD input has been decoded to its end, every rendition of it."""
        if not (self._ingest_started and self.media_timed and self.ingest.finished()):
            return False
        return all(r.done for r in self.renditions.values())

    def _loop(self) -> None:
        while self._running():
            try:
                kind, r, payload = self._queue.get(timeout=TICK_S)
                self._handle(kind, r, payload)
            except queue.Empty:
                pass
            now = time.monotonic()
            if not self._ingest_started and now >= self._ingest_retry_s:
                self._start_ingest(now)
            self._tick(now)
            if self.observer is not None:
                self.observer.tick()
                if now >= self._next_stats_s:
                    self._next_stats_s = now + STATS_EVERY_S
                    self.observer.stats(self._stats(now))

    def _item(self, r: Rendition, item: DecodedItem, decoded_s: float) -> None:
        """One decoded item through the rendition's checks, and its progress accounted."""
        pipeline = r.pipeline_for(r.streams)
        pipeline.process(item)
        now = time.monotonic()
        r.last_item_s = now
        if r.first_media_s is None:
            r.first_media_s = self.session_s(now)
        if pipeline.media_end_s > r.media_end_s:
            r.media_end_s = pipeline.media_end_s
            r.progress_s = now
            r.backoff.reset()  # flowing again: the next failure starts small
        if type(item) is Picture:
            self.summary.pictures += 1
            self._count_picture(r, item, now - decoded_s)
            if self._picture_checks:
                explained = pipeline.explains_picture()
                for check in self._picture_checks:
                    check.rendition_picture(r.name, item, explained)

    def _handle(self, kind: str, r: Rendition | None, payload: Any) -> None:
        if kind == "items":
            assert r is not None
            for item, decoded_s in payload:
                self._item(r, item, decoded_s)
        elif kind == "open":
            assert r is not None
            r.streams = payload
            if r.pipeline is not None:
                r.pipeline.rejoin()
            if not self.summary.streams:
                self.summary.streams = payload
        elif kind == "end":
            assert r is not None
            r.alive = False
            if r.pipe is not None:
                r.pipe.close()
            if self.ingest.done(r.name) and payload != "stopped":
                r.done = True  # its last segment was decoded: not a loss, nothing to reopen
                r.reopen_at_s = None
                return
            r.reopen_at_s = time.monotonic() + r.backoff.next_s()
            if payload != "stopped":
                wait_s = r.reopen_at_s - time.monotonic()
                self.notice(f"{self.ingest.name}: {payload}; reopening in {wait_s:.1f} s")
        elif kind == "transport":
            self._observe_transport(payload)
        elif kind == "damage":
            total, report = self.summary.damage, payload
            total.corrupt_packets += report.corrupt_packets
            total.decode_errors += report.decode_errors
            total.demux_errors += report.demux_errors

    def _count_picture(self, r: Rendition, picture: Picture, waited_s: float) -> None:
        r.pictures += 1
        if waited_s > LATE_AFTER_S:
            r.late += 1
        if waited_s > r.wait_max_s:
            r.wait_max_s = waited_s
        shown_s = picture.shown_s or picture.duration_s
        if r.video_end_s is not None and shown_s > 0:
            gap_s = picture.pts_s - r.video_end_s
            if gap_s > 1.5 * shown_s:
                r.dropped += round(gap_s / shown_s)
        r.video_end_s = picture.end_s
        if self.thumbnail_settings is not None and self.thumbnail_settings.enabled:
            if r.thumbnails is None:
                r.thumbnails = Thumbnailer(self.thumbnail_settings)
            jpeg = r.thumbnails.offer(picture)
            if jpeg is not None and self.observer is not None:
                self.observer.thumbnail(r.name, jpeg)

    def thumbnail_at(self, rendition: str | None, t_s: float) -> bytes | None:
        """The picture of ``rendition`` (else of any rendition) at media time ``t_s``."""
        r = self.renditions.get(rendition)
        candidates = [r] if r is not None else list(self.renditions.values())
        for c in candidates:
            if c.thumbnails is not None:
                return c.thumbnails.at(t_s)
        return None

    def _stats(self, now: float) -> list[InputStats]:
        t = self.session_s(now)
        out = []
        ingest_gauges = (
            self.ingest.gauges()
            if isinstance(self.ingest, StreamIngest) and self._ingest_started
            else ()
        )
        for r in self.renditions.values():
            pipeline = r.pipeline
            wait_max_s, r.wait_max_s = r.wait_max_s, 0.0
            out.append(
                InputStats(
                    channel=self.channel.name,
                    input=self.input_name,
                    rendition=r.name,
                    flowing=r.alive and now - r.progress_s < 2 * STATS_EVERY_S,
                    media_lag_s=max(t - r.media_end_s, 0.0),
                    pictures=r.pictures,
                    frames_dropped=r.dropped,
                    frames_late=r.late,
                    picture_wait_max_s=wait_max_s,
                    reconnects=r.restarts,
                    bytes_in=self.ingest.bytes_in() if self._ingest_started else 0,
                    luma_mean_cv=pipeline.luma_mean_cv() if pipeline else None,
                    audio_peak_dbfs=tuple(pipeline.take_audio_peaks()) if pipeline else (),
                    gauges=tuple(
                        (name, tuple(sorted(labels.items())), value)
                        for name, labels, value in (pipeline.gauges() if pipeline else ())
                    )
                    + ingest_gauges,
                    status=tuple(sorted(pipeline.status().items())) if pipeline else (),
                )
            )
        return out

    def _tick(self, now: float) -> None:
        t = self.session_s(now)
        if self._ingest_started:
            for name in self.ingest.renditions():
                if name not in self.renditions:
                    self.renditions[name] = Rendition(name, self._pipeline_factory(name))
        else:
            self._observe_unreachable(now, t)
        if self.inherited:
            flowing = [r for r in self.renditions.values() if r.first_media_s is not None]
            if any(r.media_end_s - r.first_media_s >= CLAIM_WINDOW_S for r in flowing):  # type: ignore[operator]
                self.inherited.expire(self._run_start_s, self.emit)
        for r in self.renditions.values():
            if r.done:
                continue
            if r.reopen_at_s is not None and now >= r.reopen_at_s:
                if r.thread is not None:
                    self.summary.restarts += 1
                    r.restarts += 1
                self._start_decoder(r)
            elif r.alive and now - r.active_s() > self._watchdog_s(r):
                # Media time stopped advancing: unblock the decoder; its thread then ends.
                self.notice(
                    f"{self.ingest.name}: decoded media stopped advancing for "
                    f"{self._watchdog_s(r):g} s at {t:.1f} s: restarting the decoder"
                )
                r.stop.set()
                if r.pipe is not None:
                    r.pipe.close()
                r.progress_s = now
            self._observe_loss(r, now, t)
        for check in self.checks:
            check.tick(t)

    def _watchdog_s(self, r: Rendition) -> float:
        # Never shorter than two arrival gaps: HLS media comes a segment at a time.
        return max(self.source.watchdog_s, 2 * self.ingest.arrival_gap_s(r.name))

    def _observe_unreachable(self, now: float, t: float) -> None:
        """The input could not even be started (an HLS origin down): nothing arrives."""
        begun = self._run_start_s
        arrival = Arrival(None, t, t - begun, LOSS_GAP_S, begun, reason="unreachable")
        for check in self.checks:
            check.arrival(arrival)

    def _observe_loss(self, r: Rendition, now: float, t: float) -> None:
        # Bytes arriving at the socket count as input, whatever the decoder makes of them
        # (garbage is reported by its own alarms); before any byte, the session start counts.
        received = self.ingest.last_receive_s(r.name)
        # A media-timed rendition waiting for slower ones (r.waited_s) is not starved.
        last = max(r.last_item_s, received, r.waited_s, self._start)
        if not self.media_timed:
            last = max(last, self._start + self._run_start_s)
        since_s = self.session_s(last)
        if self.media_timed:  # media stopped where this rendition's decoding stopped
            since_s = min(t, max(since_s, r.media_end_s))
        limit_s = self.ingest.arrival_gap_s(r.name)
        arrival = Arrival(r.name, t, now - last, limit_s, since_s)
        for check in self.checks:
            check.arrival(arrival)

    def _observe_transport(self, condition: TransportCondition) -> None:
        t = self.session_s(condition.at_s)
        # An HLS rendition is named even before (or without) a decoder: one whose segments
        # cannot be decrypted never gets one.
        known = condition.subject in self.renditions or condition.subject in self._ladder()
        rendition = condition.subject if known else None
        for check in self.checks:
            check.transport(condition, t, rendition)

    def _shutdown(self) -> None:
        for r in self.renditions.values():
            r.stop.set()
            if r.pipe is not None:
                r.pipe.close()
        if self._ingest_started:
            self.ingest.stop()
            self.summary.bytes_in = self.ingest.bytes_in()
        for r in self.renditions.values():
            if r.thread is not None:
                r.thread.join(timeout=2.0)
        while True:  # the decoders' last word: what they skipped
            try:
                kind, rendition, payload = self._queue.get_nowait()
            except queue.Empty:
                break
            if kind == "damage":
                self._handle(kind, rendition, payload)
        end = self.session_s()
        self.summary.media_s = end - self._run_start_s
        if self.media_timed:  # the media analysed, not the clock that may have run on past it
            self.summary.media_s = max((r.media_end_s for r in self.renditions.values()), default=0)
        if self.persistent:
            return
        for r in self.renditions.values():
            if r.pipeline is not None:
                r.pipeline.finish()
        for check in self.checks:
            check.finish(end)
        self.trackers.finish(end)
