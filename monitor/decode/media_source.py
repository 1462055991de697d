"""The decode path: PyAV opens a source and hands out pictures and audio chunks.

Pictures carry the luma plane as a zero-copy numpy view over the decoder's buffer (respecting
``line_size`` padding); the view keeps the frame alive, so it may be held as a reference
picture without a copy. Converting to RGB or ``to_ndarray(format='gray')`` would cost about
40 % of a 1080p decode and, for 'gray', silently expand limited-range luma to full range.
Audio arrives as float32 planar ``(channels, samples)``.

Timestamps become media seconds once, here: 33-bit MPEG wrap-around is unwrapped, a missing
PTS is extrapolated from the previous frame, and every stream shares one origin (the
container's start time), so video and audio times are directly comparable.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal, Protocol

import av
import av.error
import numpy as np

from monitor.errors import InputError

A53_CC: Any = importlib.import_module("av.sidedata.sidedata").Type.A53_CC
"""The key of caption side data: the enum (a name is looked up at every call); imported by
name because PyAV's type stubs do not declare the submodule."""
MPEG_WRAP_TICKS = 1 << 33
"""PTS/DTS of MPEG-TS/PS are 33-bit counters at 90 kHz: they wrap every 26.5 hours."""

PictureSelection = Literal["all", "reference", "keyframes"]
"""Which pictures a decoder decodes: every one, the reference pictures only (I and P: B
pictures are skipped, about a third of the cost), or keyframes only (a few percent)."""
PICTURE_TIERS: tuple[PictureSelection, ...] = ("all", "reference", "keyframes")
"""The selections from the densest to the sparsest."""


def sparser(a: PictureSelection, b: PictureSelection) -> PictureSelection:
    """The selection that decodes fewer pictures."""
    return max(a, b, key=PICTURE_TIERS.index)


def can_run(tier: PictureSelection, needs: PictureSelection) -> bool:
    """Whether pictures selected as ``tier`` include every picture ``needs`` selects."""
    return PICTURE_TIERS.index(tier) <= PICTURE_TIERS.index(needs)


SkipFrame = Literal["NONE", "DEFAULT", "NONREF", "BIDIR", "NONINTRA", "NONKEY", "ALL"]
_SKIP_FRAME: dict[str, SkipFrame] = {"all": "DEFAULT", "reference": "BIDIR", "keyframes": "NONKEY"}
FIRST_SPARSE_GAP_S = {"reference": 0.2, "keyframes": 10.0}
"""How long the first picture of a sparse selection stands for, before gaps are measured: a
keyframe as long as the longest GOPs in use (10 s: an HLS segment's), so that the wait for
the second one is not missing video."""

CONFIRM_JUMP_AHEAD_S = 1.0
"""A timestamp more than this ahead of the previous frame's end needs the next one to agree."""
STREAMS_APART_MAX_S = 10.0
"""A stream whose first timestamp is further than this from where the source's other streams
are is across a timestamp discontinuity from them (a session that opened just as the source
restarted its clock, or looped): it joins their timeline. Audio and video of one program are
within about a second of each other in a transport stream (the T-STD buffers hold no more)."""
DEMUX_RETRIES_MAX = 200
"""Demuxer errors in a row (no packet read in between) after which reading stops."""

PROBE_OPTIONS = {"probesize": "1000000", "analyzeduration": "2000000"}
LIVE_PROBE = {"probesize": "262144", "analyzeduration": "1000000"}
"""Live MPEG-TS: a small probe finds H.264/AAC parameters within a second of arrival."""


class BinaryReader(Protocol):
    def read(self, n: int = -1) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Picture:
    """A decoded picture: its luma plane (read-only view) shown from pts_s for duration_s."""

    luma: np.ndarray
    pts_s: float
    duration_s: float
    bit_depth: int
    full_range: bool
    keyframe: bool = False
    frame: av.VideoFrame | None = None
    """The decoded frame behind ``luma``: for thumbnails, never for per-picture work."""
    shown_s: float = 0.0
    """How long this decoder shows the picture for: ``duration_s``, or, when it decodes only
    some pictures (a ladder's lower rungs), until the next one it decodes is expected. Media
    presence and drop counting go by this; 0 means ``duration_s``."""
    cc_data: bytes = b""
    """The picture's ATSC A/53 Part 4 ``cc_data`` triplets (FFmpeg's ``A53_CC`` side data,
    from H.264/HEVC SEI or MPEG-2 user data): taken before any format conversion, which would
    drop the side data."""

    @property
    def end_s(self) -> float:
        """Media time until which this decoder has the picture on screen."""
        return self.pts_s + (self.shown_s or self.duration_s)


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """Decoded audio of one stream: float32 planar samples starting at pts_s."""

    stream: int  # index among the source's audio streams (0-based)
    samples: np.ndarray  # (channels, n) float32
    pts_s: float
    sample_rate: int
    channel_names: tuple[str, ...] = ()
    """The decoded layout's channel names (FL, FR, FC, LFE, ...), when it has them: a stream's
    layout may only be known from its frames (AC-3 in MPEG-TS)."""

    @property
    def duration_s(self) -> float:
        samples: int = self.samples.shape[1]
        return samples / self.sample_rate


@dataclass(frozen=True, slots=True)
class SpliceSection:
    """One section of an SCTE-35 stream (ANSI/SCTE 35: the PMT's stream_type 0x86 PID), as
    FFmpeg's MPEG-TS demuxer hands it over: one packet per section, undecoded."""

    section: bytes
    pts_s: float
    """When it arrived: the media time of the newest picture decoded before it."""
    clock: tuple[int, float] | None
    """(PTS in 90 kHz ticks, media seconds) of that picture, for placing a splice time
    (a PTS on the same program clock) on the media timeline; None before any picture."""


@dataclass(frozen=True, slots=True)
class SubtitlePacket:
    """A packet of a DVB subtitle or teletext stream (EN 300 743, EN 300 472), not decoded:
    that the PID keeps carrying packets is what is watched."""

    stream: int
    """Index among the source's subtitle streams."""
    language: str | None
    """ISO 639 language of the PMT's descriptor, as FFmpeg reads it."""
    codec: str
    pts_s: float
    """When it arrived: the media time of the newest picture decoded before it."""


DecodedItem = Picture | AudioChunk | SpliceSection | SubtitlePacket
"""What a MediaSource hands out."""


@dataclass(frozen=True)
class StreamInfo:
    kind: str  # "video" | "audio"
    index: int  # index among streams of its kind
    codec: str
    description: str
    language: str | None = None
    channel_names: tuple[str, ...] = ()


class Timeline:
    """Converts one stream's timestamps to media seconds since the source's origin.

    The result only moves forward: a 33-bit wrap is unwrapped, and a jump back of more than
    MAX_BACKWARD_S or ahead of more than MAX_FORWARD_S is a discontinuity, bridged so that
    the timeline continues where it was. A jump ahead of more than ``confirm_after_s`` (a gap
    in the media, or one damaged timestamp) is taken only when the next timestamp goes on from
    it rather than back to where it was: the frame with the jump keeps the timeline. Otherwise
    one corrupted PTS a few seconds ahead would move every later frame (and alarm) by as much.
    """

    MAX_BACKWARD_S = 1.0
    MAX_FORWARD_S = 30.0

    def __init__(
        self, time_base: Fraction, wrap_ticks: int | None, confirm_after_s: float = MAX_FORWARD_S
    ) -> None:
        self.seconds_per_tick = float(time_base)  # float, not Fraction: this runs per frame
        self.wrap_ticks = wrap_ticks
        self.confirm_after_s = confirm_after_s
        self._offset = 0
        self._last_raw: int | None = None
        self._next_s: float | None = None
        self._pending_s: float | None = None  # where the next frame is if the last jump is real
        self.discontinuities = 0
        self.suspect_timestamps = 0  # jumps ahead the next timestamp did not (yet) confirm

    @property
    def next_s(self) -> float | None:
        """Where the next frame is expected (None before the first)."""
        return self._next_s

    def seconds(
        self, pts: int | None, duration_s: float, origin_s: float, near_s: float | None = None
    ) -> float:
        """Media time of a frame with this PTS (None: right after the previous frame).

        ``near_s``: where the source's other streams are, for the first frame of this one; a
        first frame further than STREAMS_APART_MAX_S from there joins them there.
        """
        if pts is None:
            t = self._next_s if self._next_s is not None else 0.0
        else:
            if self.wrap_ticks and self._last_raw is not None:
                step = pts - self._last_raw
                if step < -self.wrap_ticks // 2:
                    self._offset += self.wrap_ticks
                elif step > self.wrap_ticks // 2:
                    self._offset -= self.wrap_ticks
            self._last_raw = pts
            t = (pts + self._offset) * self.seconds_per_tick - origin_s
            if (
                self._next_s is None
                and near_s is not None
                and abs(t - near_s) > STREAMS_APART_MAX_S
            ):
                self._offset += round((near_s - t) / self.seconds_per_tick)
                self.discontinuities += 1
                t = near_s
            expected = self._next_s
            pending, self._pending_s = self._pending_s, None
            # Confirmed when the stream goes on from the jump, not back to where it was
            # (variable frame rates continue with steps of their own).
            confirmed = (
                pending is not None and -self.MAX_BACKWARD_S <= t - pending <= self.MAX_FORWARD_S
            )
            if confirmed:
                self.suspect_timestamps -= 1
            if (
                expected is not None
                and not confirmed
                and self.confirm_after_s < t - expected <= self.MAX_FORWARD_S
            ):
                # A jump ahead: real if the next timestamp goes on from here.
                self._pending_s = t + duration_s
                self.suspect_timestamps += 1
                t = expected
            elif expected is not None and not (
                -self.MAX_BACKWARD_S <= t - expected <= self.MAX_FORWARD_S
            ):
                # A timestamp discontinuity (a source restarting its clock, an HLS rewind or
                # DISCONTINUITY): continue the timeline instead of jumping with it.
                self._offset += round((expected - t) / self.seconds_per_tick)
                self.discontinuities += 1
                t = expected
        self._next_s = t + duration_s
        return t


_U8 = np.dtype(np.uint8)
_U16 = np.dtype("<u2")


def luma_view(frame: av.VideoFrame, bits: int | None = None) -> np.ndarray:
    """The Y plane of a planar YUV/gray frame as a read-only numpy view (no copy)."""
    plane = frame.planes[0]
    if bits is None:
        bits = frame.format.components[0].bits
    dtype = _U8 if bits <= 8 else _U16
    stride = plane.line_size // dtype.itemsize
    # The planes support the buffer protocol; PyAV's type stubs do not say so.
    buffer: Any = plane
    y: np.ndarray = np.frombuffer(buffer, dtype, count=stride * frame.height)
    y = y.reshape(frame.height, stride)[:, : frame.width]
    # The buffer may be one the decoder still references: never write through the view.
    y.flags.writeable = False
    return y


def has_luma_plane(fmt: av.VideoFormat) -> bool:
    """True when plane 0 holds luma alone, one sample per pixel, little-endian."""
    first = fmt.components[0]
    return (
        fmt.is_planar
        and first.is_luma
        and first.plane == 0
        and fmt.name.startswith(("yuv", "yuvj", "nv", "gray"))
        and not fmt.name.endswith("be")
    )


@dataclass
class DecodeReport:
    """What went wrong while decoding, for the summary: nothing here stops the analysis."""

    corrupt_packets: int = 0
    decode_errors: int = 0
    demux_errors: int = 0  # the demuxer failed on damaged data and was restarted
    read_error: str | None = None
    truncated: str | None = None  # why the input looks cut short
    warnings: list[str] = field(default_factory=list)


TEXT_AS_PICTURE_FORMATS = frozenset({"tty", "bin", "xbin", "adf", "idf"})
"""FFmpeg demuxers that render text or ANSI art (any .txt file) as a picture."""


def is_still_image(format_name: str) -> bool:
    """FFmpeg's image demuxers (``png_pipe``, ``jpeg_pipe``, ``image2``...): one picture."""
    return format_name.endswith("_pipe") or format_name in ("image2", "image2pipe")


def describe_source(url: str) -> str:
    return url if "://" in url else str(Path(url))


class MediaSource:
    """An opened source: iterate it for Picture and AudioChunk items in decode order.

    Use as a context manager. Every blocking network call is bounded by ``open_timeout_s``
    (connecting, probing) and ``read_timeout_s`` (each read), through FFmpeg's interrupt
    callback. Errors while opening become InputError naming the source.
    """

    def __init__(
        self,
        url: str,
        *,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 5.0,
        threads: int = 1,
        audio_block_s: float = 0.2,
        fileobj: BinaryReader | None = None,
        format: str | None = None,
        timeline_start_s: float | None = None,
        pictures: PictureSelection = "all",
        splice_sections: bool = False,
        captions: bool = False,
        subtitles: bool = False,
    ) -> None:
        """``fileobj``: read the media from this object (a BytePipe) instead of opening ``url``,
        which then only names the source. ``timeline_start_s``: the media time the first
        decoded frame gets (a live input continuing its timeline after a reconnect); by
        default times count from the container's start. ``pictures``: decode all pictures or
        only some (the lower rungs of a ladder); a picture is then shown (``Picture.shown_s``)
        until the next one is expected, so presence and drop counting see a continuous
        picture stream. ``splice_sections``: also hand out the sections of an SCTE-35 stream
        (``SpliceSection``), when the source has one. ``captions``: take each picture's
        caption side data (``Picture.cc_data``): a few µs per picture that a channel without
        captions does not pay. ``subtitles``: hand out the packets of DVB subtitle and
        teletext streams (``SubtitlePacket``), undecoded."""
        self.url = url
        self._want_splices = splice_sections
        self._want_captions = captions
        self._want_subtitles = subtitles
        self._clock: tuple[int, float] | None = None
        self.audio_block_s = audio_block_s
        self.name = describe_source(url)
        self.report = DecodeReport()
        self._threads = threads
        self._fileobj = fileobj
        self._format = format
        self._timeline_start_s = timeline_start_s
        self.pictures = pictures
        self._sparse_last_s: float | None = None  # pts of the last picture of a sparse selection
        self._sparse_gaps: list[float] = []  # recent gaps between them, newest last
        self._container = self._open(open_timeout_s, read_timeout_s)
        try:
            self._select_streams()
        except BaseException:
            self._container.close()
            raise

    def _open(self, open_timeout_s: float, read_timeout_s: float) -> av.container.InputContainer:
        if self._fileobj is not None:
            try:
                return av.open(
                    self._fileobj, mode="r", format=self._format, options=dict(LIVE_PROBE)
                )
            except av.error.FFmpegError as exc:
                raise InputError(
                    f"{self.name}: no decodable stream: {ffmpeg_reason(exc)}"
                ) from None
        if "://" not in self.url:
            path = Path(self.url)
            if not path.exists():
                raise InputError(f"{self.name}: no such file")
            if path.is_dir():
                raise InputError(f"{self.name}: is a directory, not a media file")
        try:
            return av.open(
                self.url,
                mode="r",
                options=dict(PROBE_OPTIONS),
                timeout=(open_timeout_s, read_timeout_s),
            )
        except av.error.InvalidDataError:
            raise InputError(
                f"no decodable audio or video in {self.name}: not a media file or stream "
                "(no known format)"
            ) from None
        except av.error.ExitError:
            raise InputError(f"{self.name}: no answer within {open_timeout_s:g} s") from None
        except av.error.FFmpegError as exc:
            raise InputError(f"{self.name}: cannot open: {ffmpeg_reason(exc)}") from None
        except OSError as exc:
            raise InputError(f"{self.name}: cannot open: {exc.strerror or exc}") from None

    def _select_streams(self) -> None:
        c = self._container
        if is_still_image(c.format.name):
            kind = c.format.name.removesuffix("_pipe")
            raise InputError(
                f"no decodable audio or video in {self.name}: a still image ({kind}), not a stream"
            )
        if c.format.name in TEXT_AS_PICTURE_FORMATS:
            raise InputError(
                f"no decodable audio or video in {self.name}: a text file, not a stream"
            )
        self.video_stream = c.streams.video[0] if c.streams.video else None
        self.audio_streams = list(c.streams.audio)
        if self.video_stream is None and not self.audio_streams:
            raise InputError(
                f"no decodable audio or video in {self.name}: no video and no audio stream"
            )
        if self.video_stream is not None:
            cc = self.video_stream.codec_context
            # One decoder thread per feed scales with feeds; slice threads (PyAV's default)
            # only cost ~7 % on single-slice H.264.
            cc.thread_type = "AUTO" if self._threads != 1 else "NONE"
            cc.thread_count = self._threads if self._threads > 0 else 0
            cc.skip_frame = _SKIP_FRAME[self.pictures]
        self._audio_index = {s.index: i for i, s in enumerate(self.audio_streams)}
        self.splice_streams: list[av.stream.Stream] = []
        if self._want_splices:
            # FFmpeg names the data stream of a 0x86 PID with a 'CUEI' registration scte_35.
            self.splice_streams = [s for s in c.streams.data if s.name == "scte_35"]
        self._splice_index = {s.index for s in self.splice_streams}
        self.subtitle_streams: list[av.stream.Stream] = (
            list(c.streams.subtitles) if self._want_subtitles else []
        )
        self._subtitle_info = {
            s.index: (
                i,
                s.metadata.get("language"),
                # No decoder here for teletext (FFmpeg without libzvbi): named "undecoded".
                s.codec_context.name if s.codec_context is not None else "undecoded",
            )
            for i, s in enumerate(self.subtitle_streams)
        }
        start = c.start_time
        self.origin_s: float | None = start / av.time_base if start is not None else None
        if self._timeline_start_s is not None:
            self.origin_s = None  # set from the first frame, so that it lands at timeline_start_s
        self._timelines = {s.index: self._timeline(s) for s in self.streams}
        self._reformatter: av.video.reformatter.VideoReformatter | None = None
        self._resamplers: dict[int, av.AudioResampler] = {}
        self._batches: dict[int, AudioBatch] = {}
        self._spilled: list[AudioChunk] = []
        self._formats: dict[str, PictureLayout] = {}
        self._intervals: dict[int, float] = {}

    def _timeline(self, stream: av.stream.Stream) -> Timeline:
        wraps = stream.time_base == Fraction(1, 90000)
        # A sparse picture selection steps a GOP at a time: no jump to confirm there.
        sparse = stream.type == "video" and self.pictures != "all"
        return Timeline(
            stream.time_base or Fraction(1, 90000),
            MPEG_WRAP_TICKS if wraps else None,
            Timeline.MAX_FORWARD_S if sparse else CONFIRM_JUMP_AHEAD_S,
        )

    @property
    def streams(self) -> list[av.stream.Stream]:
        streams: list[av.stream.Stream] = [self.video_stream] if self.video_stream else []
        return streams + list(self.audio_streams)

    def stream_infos(self) -> list[StreamInfo]:
        infos = []
        if self.video_stream is not None:
            cc = self.video_stream.codec_context
            rate = self.video_stream.average_rate or self.video_stream.guessed_rate
            fps = f" {float(rate):g} fps" if rate else ""
            desc = f"{cc.name} {cc.width}x{cc.height}{fps}"
            infos.append(StreamInfo("video", 0, cc.name, desc))
        for i, s in enumerate(self.audio_streams):
            acc = s.codec_context
            names = tuple(ch.name for ch in acc.layout.channels) if acc.layout else ()
            lang = s.metadata.get("language")
            desc = f"{acc.name} {len(names) or acc.channels}ch {acc.sample_rate} Hz"
            infos.append(StreamInfo("audio", i, acc.name, desc, lang, names))
        return infos

    def __enter__(self) -> MediaSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    def __iter__(self) -> Iterator[DecodedItem]:
        demuxed = self.streams + self.splice_streams + self.subtitle_streams
        packets = self._container.demux(demuxed)
        failures = 0  # demuxer errors since the last packet read
        while True:
            try:
                packet = next(packets)
                failures = 0
            except StopIteration:
                break
            except av.error.EOFError:
                break
            except av.error.ExitError as exc:  # a read timeout or an interrupted input
                self.report.read_error = ffmpeg_reason(exc)
                break
            except Exception as exc:
                # Damaged input: FFmpeg's InvalidDataError, or PyAV's IndexError on a stream
                # that a corrupted PMT announced mid-file. The generator is dead; a new one
                # reads on from where the demuxer is (and knows every stream by then).
                failures += 1
                self.report.demux_errors += 1
                if failures > DEMUX_RETRIES_MAX:
                    self.report.read_error = _reason(exc)
                    break
                packets = self._container.demux(demuxed)
                continue
            if packet.is_corrupt:
                self.report.corrupt_packets += 1
            if self._splice_index and packet.stream.index in self._splice_index:
                if packet.size:
                    arrival_s = self._clock[1] if self._clock is not None else 0.0
                    yield SpliceSection(bytes(packet), arrival_s, self._clock)
                continue
            if self._subtitle_info and packet.stream.index in self._subtitle_info:
                if packet.size:
                    index, language, codec = self._subtitle_info[packet.stream.index]
                    arrival_s = self._clock[1] if self._clock is not None else 0.0
                    yield SubtitlePacket(index, language, codec, arrival_s)
                continue
            try:
                frames = packet.decode()
            except Exception:  # whatever the decoder makes of damaged data: count, skip
                self.report.decode_errors += 1
                continue
            stream = packet.stream
            if self.pictures == "keyframes" and packet.is_keyframe and stream.type == "video":
                frames = [*frames, *self._held_back(stream)]
            for frame in frames:
                # Plain branches, no generator per frame: this loop runs ~70 times a second.
                if type(frame) is av.VideoFrame:
                    yield self._picture(frame, stream)
                elif isinstance(frame, av.AudioFrame) and frame.samples and frame.sample_rate:
                    chunk = self._audio(frame, stream)
                    if chunk is not None:
                        yield chunk
                    if self._spilled:
                        yield self._spilled.pop()
        for batch in self._batches.values():
            chunk = batch.flush()
            if chunk is not None:
                yield chunk
        self.report.truncated = self._truncation()

    def _held_back(self, stream: av.stream.Stream) -> list[av.VideoFrame]:
        """The keyframe just decoded, which the decoder would hold back for reordering.

        An H.264 decoder with B pictures keeps ``has_b_frames`` pictures before it outputs
        one, and when it decodes keyframes only those are the next keyframes: its pictures
        came out two GOPs (4 s) late, behind the audio (video_missing) and the alarms. The
        keyframes are in presentation order among themselves, so each is drained at once,
        and the decoder reset for the next (nothing refers across it but skipped pictures).
        """
        codec: Any = stream.codec_context  # a decoder's context; the stubs give the base type
        try:
            held = [f for f in codec.decode(None) if isinstance(f, av.VideoFrame)]
        except Exception:
            self.report.decode_errors += 1
            held = []
        codec.flush_buffers()
        for frame in held:
            frame.time_base = stream.time_base  # drained frames come without one
        return held

    def _truncation(self) -> str | None:
        """Why a local MPEG-TS file looks cut short: FFmpeg drops a partial last packet silently."""
        if "://" in self.url or "mpegts" not in self._container.format.name:
            return None
        size = Path(self.url).stat().st_size
        if size % 188 and size % 192:
            return f"ends inside a transport packet (size {size} is not a multiple of 188 bytes)"
        return None

    def _origin(self, frame: av.frame.Frame) -> float:
        if self.origin_s is None:
            # No container start time (raw or live streams): the first timestamp seen is the
            # origin, placed at timeline_start_s when the caller continues a timeline.
            pts, base = frame.pts, frame.time_base
            first = float(pts * base) if pts is not None and base is not None else 0.0
            self.origin_s = first - (self._timeline_start_s or 0.0)
        return self.origin_s

    def _near(self, timeline: Timeline) -> float | None:
        """For a stream's first frame: the furthest any other stream has got (else None)."""
        if timeline.next_s is not None:
            return None
        reached = [t.next_s for t in self._timelines.values() if t.next_s is not None]
        return max(reached) if reached else None

    def _picture(self, frame: av.VideoFrame, stream: av.stream.Stream) -> Picture:
        timeline = self._timelines[stream.index]
        if frame.duration:
            duration_s = frame.duration * timeline.seconds_per_tick
        else:
            duration_s = self._frame_interval_s(stream)
        pts_s = timeline.seconds(frame.pts, duration_s, self._origin(frame), self._near(timeline))
        shown_s = duration_s if self.pictures == "all" else self._sparse_span(pts_s, duration_s)
        if frame.pts is not None and timeline.wrap_ticks:
            self._clock = (frame.pts, pts_s)  # the program clock, for SCTE-35 splice times
        # Side data supports the buffer protocol; PyAV's type stubs do not say so.
        cc_data = b""
        if self._want_captions:
            side_data: Any = frame.side_data.get(A53_CC)
            if side_data is not None:
                cc_data = bytes(side_data)
        name = frame.format.name
        layout = self._formats.get(name)
        if layout is None:
            layout = self._formats[name] = PictureLayout.of(frame.format)
            if not layout.has_luma_plane:
                self.report.warnings.append(
                    f"video format {name} has no luma plane: converting (slower)"
                )
        if not layout.has_luma_plane:
            if self._reformatter is None:
                self._reformatter = av.video.reformatter.VideoReformatter()
            frame = self._reformatter.reformat(frame, format="yuv420p")
            layout = PictureLayout.of(frame.format)
        full_range = layout.full_range or frame.color_range == 2
        return Picture(
            luma_view(frame, layout.bits),
            pts_s,
            duration_s,
            layout.bits,
            full_range,
            frame.key_frame,
            frame,
            shown_s,
            cc_data,
        )

    def _sparse_span(self, pts_s: float, interval_s: float) -> float:
        """How long a picture of a sparse selection stands for: the longest of the recent gaps
        between decoded pictures (a GOP, or an anchor distance), never less than a frame."""
        last, self._sparse_last_s = self._sparse_last_s, pts_s
        gaps = self._sparse_gaps
        if last is not None and pts_s > last:
            gaps.append(pts_s - last)
            del gaps[:-8]
        if not gaps:
            return max(interval_s, FIRST_SPARSE_GAP_S[self.pictures])
        return max(interval_s, max(gaps))

    def _frame_interval_s(self, stream: av.stream.Stream) -> float:
        interval = self._intervals.get(stream.index)
        if interval is None:
            rate = stream.average_rate or stream.guessed_rate
            interval = self._intervals[stream.index] = 1.0 / float(rate) if rate else 0.04
        return interval

    def _audio(self, frame: av.AudioFrame, stream: av.stream.Stream) -> AudioChunk | None:
        """Add a decoded frame to its stream's block; returns the block once it is full."""
        timeline = self._timelines[stream.index]
        duration_s = frame.samples / frame.sample_rate
        pts_s = timeline.seconds(frame.pts, duration_s, self._origin(frame), self._near(timeline))
        if frame.format.name == "fltp":
            # Views of the planes (no copy); AudioBatch copies them once into its block.
            n = frame.samples
            planes: list[Any] = list(frame.planes)  # buffers, as above
            samples = [np.frombuffer(plane, np.float32, count=n) for plane in planes]
        else:
            resampler = self._resamplers.get(stream.index)
            if resampler is None:
                resampler = av.AudioResampler(
                    format="fltp", layout=frame.layout, rate=frame.sample_rate
                )
                self._resamplers[stream.index] = resampler
            converted = resampler.resample(frame)
            if not converted:
                return None
            samples = list(np.concatenate([f.to_ndarray() for f in converted], axis=1))
        batch = self._batches.get(stream.index)
        if batch is None:
            batch = self._batches[stream.index] = AudioBatch(
                self._audio_index[stream.index], self.audio_block_s
            )
        if len(batch.channel_names) != len(samples):
            batch.channel_names = tuple(ch.name for ch in frame.layout.channels)
        closed = batch.close_if_discontinuous(len(samples), pts_s, frame.sample_rate)
        full = batch.add(samples, pts_s, frame.sample_rate)
        if closed is not None:
            # Two blocks at once (a discontinuity, then a full block): hand out the older first.
            if full is not None:
                self._spilled.append(full)
            return closed
        return full


@dataclass(frozen=True)
class PictureLayout:
    """What a pixel format means for the luma view, worked out once per format."""

    has_luma_plane: bool
    bits: int
    full_range: bool  # yuvj* formats are full range whatever the frame says

    @classmethod
    def of(cls, fmt: av.VideoFormat) -> PictureLayout:
        return cls(has_luma_plane(fmt), fmt.components[0].bits, fmt.name.startswith("yuvj"))


class AudioBatch:
    """Gathers consecutive decoded audio frames of one stream into blocks of about block_s.

    Detectors then run a few times a second instead of once per codec frame (47 per second
    for AAC at 48 kHz); the Python around each call cost more than the measurement itself.
    A gap or overlap in the timestamps, or a change of rate or channel count, closes a block.
    """

    TOLERANCE_S = 0.002  # rounding of audio PTS to 90 kHz ticks is far below this

    def __init__(self, stream: int, block_s: float) -> None:
        self.stream = stream
        self.block_s = block_s
        self._parts: list[list[np.ndarray]] = []
        self._start_s = 0.0
        self._next_s = 0.0
        self._samples = 0
        self._rate = 0
        self._channels = 0
        self.channel_names: tuple[str, ...] = ()

    def close_if_discontinuous(self, channels: int, pts_s: float, rate: int) -> AudioChunk | None:
        """Close the open block when the next frame does not continue it."""
        if self._parts and (
            rate != self._rate
            or channels != self._channels
            or abs(pts_s - self._next_s) > self.TOLERANCE_S
        ):
            return self.flush()
        return None

    def add(self, planes: list[np.ndarray], pts_s: float, rate: int) -> AudioChunk | None:
        """Add one decoded frame (one float32 array per channel); the block once it is full."""
        n = len(planes[0])
        if not self._parts:
            self._start_s, self._rate, self._channels = pts_s, rate, len(planes)
        self._parts.append(planes)
        self._samples += n
        self._next_s = pts_s + n / rate
        if self._samples >= self.block_s * rate:
            return self.flush()
        return None

    def flush(self) -> AudioChunk | None:
        if not self._parts:
            return None
        block = np.empty((self._channels, self._samples), dtype=np.float32)
        offset = 0
        for planes in self._parts:
            n = len(planes[0])
            for channel, plane in enumerate(planes):
                block[channel, offset : offset + n] = plane
            offset += n
        self._parts = []
        self._samples = 0
        names = self.channel_names if len(self.channel_names) == self._channels else ()
        return AudioChunk(self.stream, block, self._start_s, self._rate, names)


def _reason(exc: Exception) -> str:
    if isinstance(exc, av.error.FFmpegError):
        return ffmpeg_reason(exc)
    return f"{type(exc).__name__}: {exc}"


def ffmpeg_reason(exc: av.error.FFmpegError) -> str:
    """FFmpeg's own words for an error, without the Python exception's decoration."""
    reason = getattr(exc, "strerror", None) or str(exc)
    return reason.rstrip(".") if reason else type(exc).__name__
