"""Synthetic H.264/AAC MPEG-TS clips with faults injected at known media times.

Used by `streamqc demo`, the test suite and the benchmarks: media is generated when needed,
never shipped (~0.4 s for 12 s at 320x180, ~2-2.5 s for 10 s at 1920x1080 on one core).

Timeline
--------
Fault spans are given in *media seconds*: ``t = 0`` is video frame 0 and audio
sample 0.  Video frame ``i`` is shown at ``i / fps``; audio sample ``n`` plays at
``n / sample_rate``.  A span ``[a, b)`` covers exactly the frames with
``a <= i / fps < b`` and the samples with ``a <= n / sample_rate < b`` (see
:func:`frame_indices`, :func:`sample_indices`); e.g. black ``[4.0, 6.5)`` at 25 fps
is frames 100..162, so the first non-black frame is at 6.52 s.

After muxing, media ``t = 0`` sits exactly at ``container.start_time``, which is
``spec.start_offset_s`` (1.4 s by default, like the FFmpeg CLI's MPEG-TS output,
so code that forgets to subtract it fails): the first video packet and the first
audio packet both carry PTS ``start_offset_s * 90000`` and every stream's
``start_time`` equals the container's.  Callers should measure
``frame.time - container.start_time / av.time_base``.  Two details make this hold:

* The AAC encoder's priming packet (PTS ``-1024`` samples) is *dropped*.  Kept,
  it makes libavformat shift all streams by +1024 samples (avoid_negative_ts):
  container start 0, audio at 0, video frame 0 at 21.3 ms.  Dropped, decoded
  audio is sample-exact (sample ``n`` decodes at PTS ``n``); the price is that the
  first AAC frame (1024 samples) decodes as a ~3 dB-quieter fade-in, as when
  joining a live stream.
* No B-frames (``bframes=0``), so there is no PTS/DTS reorder delay.

Audio is padded up to a whole number of AAC frames (:attr:`MediaSpec.n_samples`),
so it can run up to 21 ms past the last video frame; a fault span that reaches
``duration_s`` also covers that padding.

Keyframes: an IDR every ``gop`` frames, plus one forced at the first frame of
every ``freeze`` / ``static_with_moving_region`` span (see :func:`_keyframes`);
with the default ``crf=12`` a frozen picture then decodes with consecutive-frame
mean absolute luma differences < 0.1 (the drift vs the first frozen frame stays
< 0.12, half of FFmpeg ``freezedetect``'s default tolerance), also across keyframes.

Picture content
---------------
* normal: mid-grey smooth colour texture (luma ~60-175) scrolling diagonally plus a
  bouncing bright box; consecutive frames differ by 4-6 luma code values on average.
* ``black``: Y=16, U=V=128.
* ``black_with_logo``: black plus a static bright box at :data:`LOGO_REGION`
  (1.44 % of the picture, so FFmpeg's ``blackdetect`` still calls it black).
* ``dark``: a dim moving texture, luma 17-33 (``blackdetect`` calls it black) with a
  luma std-dev of ~4 and motion every frame (mean abs luma diff ~1.3).
* ``static_with_moving_region``: the normal picture of the span's first frame held,
  except a scrolling "ticker" at :data:`MOVING_REGION` (7.1 % of the picture,
  macroblock-aligned at 320x180, 1280x720 and 1920x1080); the whole-frame change
  (~1.5 code values) is too big for ``freezedetect`` to call it frozen.
* ``freeze``: the fully composed picture of the span's first frame repeated.

Precedence when spans overlap: black > black_with_logo > dark >
static_with_moving_region > normal; freeze is applied on top of everything.

Audio content: channel ``k`` carries a sine at :func:`tone_hz` ``(k)`` (60 Hz on the
5.1 LFE channel) at -20 dBFS RMS plus white noise at -50 dBFS.  ``silence`` zeroes
all channels, ``mute_channel`` one channel; the AAC decoder returns exact zeros
inside such spans, with ~5 ms of MDCT smear at the edges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

__all__ = [
    "AAC_FRAME",
    "LOGO_REGION",
    "MOVING_REGION",
    "MediaSpec",
    "Span",
    "frame_indices",
    "make_garbage",
    "make_ts",
    "region_pixels",
    "sample_indices",
    "tone_hz",
    "truncate",
]

#: Normalised (x, y, w, h) of the static logo in ``black_with_logo`` frames.
LOGO_REGION: tuple[float, float, float, float] = (0.85, 0.06, 0.10, 0.14)
#: Normalised (x, y, w, h) of the ticker that moves in ``static_with_moving_region``.
MOVING_REGION: tuple[float, float, float, float] = (0.05, 0.80, 0.40, 32 / 180)

BLACK_Y = 16
NEUTRAL_C = 128
AAC_FRAME = 1024
_TS_CLOCK = 90_000
_EPS = 1e-6
_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1"}
_TONES_HZ = (440.0, 660.0, 550.0, 60.0, 770.0, 880.0)  # index 3 is LFE in 5.1: keep it low


@dataclass(frozen=True)
class Span:
    """A fault interval ``[start_s, end_s)`` in media seconds (t=0 is frame 0 / sample 0)."""

    start_s: float
    end_s: float

    def __post_init__(self) -> None:
        if not 0 <= self.start_s < self.end_s:
            raise ValueError(f"bad span {self}")

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class MediaSpec:
    """What :func:`make_ts` generates.  All spans are in media seconds."""

    duration_s: float = 12.0
    width: int = 320
    height: int = 180
    fps: int = 25
    sample_rate: int = 48000
    channels: int = 2  # 1, 2 or 6 (5.1)
    video: bool = True
    audio: bool = True
    black: tuple[Span, ...] = ()
    black_with_logo: tuple[Span, ...] = ()
    freeze: tuple[Span, ...] = ()
    dark: tuple[Span, ...] = ()
    static_with_moving_region: tuple[Span, ...] = ()
    silence: tuple[Span, ...] = ()
    mute_channel: tuple[tuple[Span, int], ...] = ()  # (span, 0-based channel)
    gop: int = 50
    crf: int = 12  # low enough that a frozen picture stays frozen across keyframes
    start_offset_s: float = 1.4  # container.start_time after muxing
    preset: str = "ultrafast"
    seed: int = 0  # audio noise and ticker pattern
    audio_bitrate_per_channel: int = 64_000
    tune: str | None = None  # libx264 tune; "stillimage" changes nothing with ultrafast
    keyframe_at_freeze: bool = True
    bframes: int = 0
    """B pictures between anchors (x264 ``bframes``): what ``pictures: reference`` skips."""
    """False: keyframes every ``gop`` frames only, so a freeze starts mid-GOP (a live encoder
    without scene-cut detection); its keyframes then re-encode the still."""

    def __post_init__(self) -> None:
        if not (self.video or self.audio):
            raise ValueError("need video and/or audio")
        if self.width % 2 or self.height % 2 or self.width < 16 or self.height < 16:
            raise ValueError("width and height must be even and >= 16")
        if self.channels not in _LAYOUTS:
            raise ValueError(f"channels must be one of {sorted(_LAYOUTS)}")
        if self.duration_s <= 0 or self.fps <= 0 or self.start_offset_s < 0:
            raise ValueError("duration_s and fps must be > 0, start_offset_s >= 0")
        for span, ch in self.mute_channel:
            if not isinstance(span, Span):
                raise TypeError("mute_channel entries are (Span, channel)")
            if not 0 <= ch < self.channels:
                raise ValueError(f"mute channel {ch} out of range")
        spans = [
            *self.black,
            *self.black_with_logo,
            *self.freeze,
            *self.dark,
            *self.static_with_moving_region,
            *self.silence,
            *(s for s, _ in self.mute_channel),
        ]
        if any(s.end_s > self.duration_s + _EPS for s in spans):
            raise ValueError("fault spans must end by duration_s")

    @property
    def n_frames(self) -> int:
        return round(self.duration_s * self.fps)

    @property
    def n_samples(self) -> int:
        """Audio samples actually encoded (duration rounded up to whole AAC frames)."""
        n = round(self.duration_s * self.sample_rate)
        return -(-n // AAC_FRAME) * AAC_FRAME


def frame_indices(span: Span, fps: float) -> range:
    """Frame numbers ``i`` with ``span.start_s <= i / fps < span.end_s``."""
    return range(math.ceil(span.start_s * fps - _EPS), math.ceil(span.end_s * fps - _EPS))


def sample_indices(span: Span, rate: int) -> slice:
    """Sample numbers ``n`` with ``span.start_s <= n / rate < span.end_s`` as a slice."""
    return slice(math.ceil(span.start_s * rate - _EPS), math.ceil(span.end_s * rate - _EPS))


def region_pixels(
    region: tuple[float, float, float, float], width: int, height: int
) -> tuple[int, int, int, int]:
    """Pixel box ``(x0, y0, x1, y1)`` (end-exclusive, even-aligned) of a normalised region."""
    x, y, w, h = region

    def even(v: float) -> int:
        return 2 * round(v / 2)

    x0, y0 = even(x * width), even(y * height)
    x1, y1 = max(even((x + w) * width), x0 + 2), max(even((y + h) * height), y0 + 2)
    return x0, y0, min(x1, width), min(y1, height)


def tone_hz(channel: int) -> float:
    """Frequency of the test tone on ``channel`` (60 Hz on the 5.1 LFE channel)."""
    return _TONES_HZ[channel % len(_TONES_HZ)]


# --------------------------------------------------------------------------- video


class _Pictures:
    """Builds the planes (Y, U, V as uint8 arrays) of each frame of a spec."""

    def __init__(self, spec: MediaSpec) -> None:
        self.spec = spec
        w, h = spec.width, spec.height
        self.w, self.h = w, h
        # Texture periods (even, so chroma can be sliced at offset // 2) and scroll speed.
        self.px = max(16, 2 * round(w / 6))
        self.py = max(16, 2 * round(h / 4))
        self.step = max(2, 2 * round(w / 320))  # px per frame, even
        ty = np.arange(h + self.py, dtype=np.float32)[:, None] * (2 * np.pi / self.py)
        tx = np.arange(w + self.px, dtype=np.float32)[None, :] * (2 * np.pi / self.px)
        tex = 30 * np.sin(tx) * np.cos(ty) + 18 * np.sin(2 * tx + ty) + 8 * np.sin(3 * tx - 2 * ty)
        self.normal_y = np.clip(np.rint(118 + tex), 0, 255).astype(np.uint8)
        dark = 25 + 5 * np.sin(tx + ty) + 3 * np.sin(2 * tx - ty)
        self.dark_y = np.clip(np.rint(dark), 17, 33).astype(np.uint8)
        cy = np.arange((h + self.py) // 2, dtype=np.float32)[:, None] * (4 * np.pi / self.py)
        cx = np.arange((w + self.px) // 2, dtype=np.float32)[None, :] * (4 * np.pi / self.px)
        self.normal_u = np.rint(128 + 12 * np.sin(cx - cy)).astype(np.uint8)
        self.normal_v = np.rint(128 + 12 * np.cos(cx + 2 * cy)).astype(np.uint8)
        self.neutral_c = np.full((h // 2, w // 2), NEUTRAL_C, np.uint8)
        self.black_y = np.full((h, w), BLACK_Y, np.uint8)
        # Moving box (normal pictures) and ticker/logo boxes.
        self.box = max(4, 2 * round(h / 10))
        self.logo = region_pixels(LOGO_REGION, w, h)
        self.ticker = region_pixels(MOVING_REGION, w, h)
        # Ticker: a strip of random on/off "glyph" cells, scrolled sideways every frame.
        rows = self.ticker[3] - self.ticker[1]
        glyph = max(2, 2 * round(h / 45))
        cells = np.random.default_rng(spec.seed + 1).integers(0, 2, (-(-rows // glyph), 64))
        strip = np.kron(cells, np.ones((glyph, glyph), np.int64))[:rows]
        self.ticker_strip = np.where(strip > 0, 220, 40).astype(np.uint8)
        # Per-frame lookups: first frame of the freeze / static span, and picture kind.
        self._freeze_start: dict[int, int] = {}
        self._static_start: dict[int, int] = {}
        for spans, table in (
            (spec.freeze, self._freeze_start),
            (spec.static_with_moving_region, self._static_start),
        ):
            for span in spans:
                r = frame_indices(span, spec.fps)
                table.update(dict.fromkeys(r, r.start))
        self._kind: dict[int, str] = {}
        for kind in ("static_with_moving_region", "dark", "black_with_logo", "black"):
            for span in getattr(spec, kind):  # later kinds overwrite: black wins
                self._kind.update(dict.fromkeys(frame_indices(span, spec.fps), kind))

    def _scroll(self, i: int) -> tuple[int, int]:
        """Even (x, y) offsets into the periodic textures for frame ``i``."""
        off = i * self.step
        return off % self.px, ((off // 2) % self.py) // 2 * 2

    def _normal(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ox, oy = self._scroll(i)
        y = self.normal_y[oy : oy + self.h, ox : ox + self.w].copy()
        u = self.normal_u[oy // 2 : oy // 2 + self.h // 2, ox // 2 : ox // 2 + self.w // 2]
        v = self.normal_v[oy // 2 : oy // 2 + self.h // 2, ox // 2 : ox // 2 + self.w // 2]
        # Bright box bouncing horizontally across the middle.
        b = self.box
        span = max(1, self.w - b)
        pos = (i * self.step * 2) % (2 * span)
        bx = (pos if pos < span else 2 * span - pos) // 2 * 2
        by = (self.h // 2 - b // 2) // 2 * 2
        y[by : by + b, bx : bx + b] = 215
        y[by + b // 4 : by + 3 * b // 4, bx + b // 4 : bx + 3 * b // 4] = 70
        return y, np.ascontiguousarray(u), np.ascontiguousarray(v)

    def _composed(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        kind = self._kind.get(i)
        if kind == "black":
            return self.black_y, self.neutral_c, self.neutral_c
        if kind == "black_with_logo":
            y = self.black_y.copy()
            x0, y0, x1, y1 = self.logo
            y[y0:y1, x0:x1] = 230
            bw = max(2, (x1 - x0) // 6) // 2 * 2
            y[y0 + bw : y1 - bw, x0 + bw : x1 - bw] = 150
            return y, self.neutral_c, self.neutral_c
        if kind == "dark":
            ox, oy = self._scroll(2 * i)  # faster: the low-contrast texture needs it
            y = np.ascontiguousarray(self.dark_y[oy : oy + self.h, ox : ox + self.w])
            return y, self.neutral_c, self.neutral_c
        if kind == "static_with_moving_region":
            y, u, v = self._normal(self._static_start[i])
            x0, y0, x1, y1 = self.ticker
            sw = self.ticker_strip.shape[1]
            cols = (np.arange(x1 - x0) + i * self.step) % sw
            y[y0:y1, x0:x1] = self.ticker_strip[:, cols]
            return y, u, v
        return self._normal(i)

    def frame(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Y, U, V planes of frame ``i``."""
        return self._composed(self._freeze_start.get(i, i))


def _keyframes(spec: MediaSpec) -> set[int]:
    """Frames coded as IDR: every ``gop`` frames plus the first frame of each freeze.

    Starting a freeze (or ``static_with_moving_region``) on a fresh keyframe makes
    the decoded still exact from its first frame; otherwise x264 keeps refining a
    P-coded still for a few frames, drifting past FFmpeg's ``freezedetect``
    tolerance.  A regular keyframe 1-2 frames before such a forced one is dropped
    (back-to-back IDRs get a coarser quantiser and drift too), so a GOP can be up
    to ``gop + 2`` frames long.
    """
    stills = spec.freeze + spec.static_with_moving_region if spec.keyframe_at_freeze else ()
    forced = {frame_indices(span, spec.fps).start for span in stills}
    keys: set[int] = set()
    last = -spec.gop
    for i in range(spec.n_frames):
        due = i - last >= spec.gop and not {i + 1, i + 2} & forced
        if i in forced or due or i - last >= spec.gop + 2:
            keys.add(i)
            last = i
    return keys


def _yuv_frame(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> av.VideoFrame:
    h, w = y.shape
    buf = np.empty(h * w * 3 // 2, np.uint8)
    n = h * w
    buf[:n] = y.ravel()
    buf[n : n + n // 4] = u.ravel()
    buf[n + n // 4 :] = v.ravel()
    return av.VideoFrame.from_ndarray(buf.reshape(h * 3 // 2, w), format="yuv420p")


# --------------------------------------------------------------------------- audio


def _audio_signal(spec: MediaSpec) -> np.ndarray:
    """Float32 array (channels, n_samples) in [-1, 1] with faults applied."""
    n = spec.n_samples
    rng = np.random.default_rng(spec.seed)
    t = np.arange(n, dtype=np.float64) / spec.sample_rate
    amp = math.sqrt(2) * 10 ** (-20 / 20)  # -20 dBFS RMS
    out = np.empty((spec.channels, n), np.float32)
    for ch in range(spec.channels):
        tone = amp * np.sin(2 * np.pi * tone_hz(ch) * t + 0.7 * ch)
        out[ch] = tone + rng.normal(0.0, 10 ** (-50 / 20), n)
    for span in spec.silence:
        out[:, _samples(spec, span)] = 0.0
    for span, ch in spec.mute_channel:
        out[ch, _samples(spec, span)] = 0.0
    return out


def _samples(spec: MediaSpec, span: Span) -> slice:
    """Samples of ``span``; a span reaching ``duration_s`` also covers the AAC padding."""
    sl = sample_indices(span, spec.sample_rate)
    return slice(sl.start, None) if span.end_s >= spec.duration_s - _EPS else sl


# --------------------------------------------------------------------------- muxing


def _rescale_to_ts(packet: av.Packet[Any], offset: int) -> None:
    """Move a packet onto the 90 kHz MPEG-TS clock, shifted by ``offset`` ticks."""
    tb = packet.time_base
    for attr in ("pts", "dts"):
        val = getattr(packet, attr)
        if val is not None:
            setattr(packet, attr, round(val * tb * _TS_CLOCK) + offset)
    if packet.duration:
        packet.duration = round(packet.duration * tb * _TS_CLOCK)
    packet.time_base = Fraction(1, _TS_CLOCK)


def make_ts(path: Path, spec: MediaSpec) -> Path:
    """Encode ``spec`` to an MPEG-TS file at ``path`` (H.264 + AAC) and return ``path``."""
    path = Path(path)
    offset = round(spec.start_offset_s * _TS_CLOCK)
    with av.open(str(path), "w", format="mpegts") as out:
        vstream = astream = None
        if spec.video:
            vstream = out.add_stream("libx264", rate=spec.fps)
            vstream.width, vstream.height, vstream.pix_fmt = spec.width, spec.height, "yuv420p"
            vstream.codec_context.time_base = Fraction(1, spec.fps)
            opts: dict[str, object] = {
                "preset": spec.preset,
                "crf": str(spec.crf),
                # Keyframes are forced by _keyframes(); keyint is only a backstop.
                "x264-params": f"keyint={spec.gop + 2}:scenecut=0:bframes={spec.bframes}",
            }
            if spec.tune:
                opts["tune"] = spec.tune
            vstream.options = opts
        if spec.audio:
            layout = _LAYOUTS[spec.channels]
            astream = out.add_stream("aac", rate=spec.sample_rate, layout=layout)
            astream.codec_context.time_base = Fraction(1, spec.sample_rate)
            astream.bit_rate = spec.audio_bitrate_per_channel * spec.channels

        def mux(packets: list[av.Packet[Any]]) -> None:
            for p in packets:
                if p.pts is not None and p.pts < 0:  # AAC priming: see module docstring
                    continue
                _rescale_to_ts(p, offset)
                out.mux(p)

        # Interleave roughly in time: audio up to the current video time.
        signal = _audio_signal(spec) if astream is not None else None
        next_sample = 0
        pics = _Pictures(spec) if vstream is not None else None

        def push_audio(until: int) -> None:
            nonlocal next_sample
            assert astream is not None and signal is not None
            while next_sample < min(until, signal.shape[1]):
                chunk = signal[:, next_sample : next_sample + AAC_FRAME]
                frame = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(chunk), format="fltp", layout=_LAYOUTS[spec.channels]
                )
                frame.sample_rate = spec.sample_rate
                frame.pts = next_sample
                frame.time_base = Fraction(1, spec.sample_rate)
                mux(astream.encode(frame))
                next_sample += AAC_FRAME

        if vstream is not None and pics is not None:
            keyframes = _keyframes(spec)
            for i in range(spec.n_frames):
                frame = _yuv_frame(*pics.frame(i))
                if i in keyframes:
                    frame.pict_type = av.video.frame.PictureType.I
                frame.pts = i
                frame.time_base = Fraction(1, spec.fps)
                mux(vstream.encode(frame))
                if astream is not None:
                    push_audio((i + 1) * spec.sample_rate // spec.fps)
            mux(vstream.encode(None))
        if astream is not None:
            push_audio(spec.n_samples)
            mux(astream.encode(None))
    return path


def make_garbage(path: Path, size: int = 100_000, seed: int = 0) -> Path:
    """Write ``size`` random bytes (not media; no 0x47 sync pattern) to ``path``."""
    data = np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)
    data[data == 0x47] = 0x46  # make sure no TS sync byte can line up by chance
    path = Path(path)
    path.write_bytes(data.tobytes())
    return path


def truncate(src: Path, dst: Path, fraction: float) -> Path:
    """Copy the first ``fraction`` of ``src`` to ``dst``, cut mid-packet (not on 188 bytes)."""
    if not 0 < fraction < 1:
        raise ValueError("fraction must be in (0, 1)")
    data = Path(src).read_bytes()
    cut = int(len(data) * fraction)
    if cut % 188 == 0:
        cut += 97
    dst = Path(dst)
    dst.write_bytes(data[:cut])
    return dst
