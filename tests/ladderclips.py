"""A test HLS ladder: one moving scene encoded at three sizes and bitrates, faults on one rung.

Every rung is made the way a transcoder makes one: a master picture (768x432) is composed
first — two textures scrolling in different directions, a bright box bouncing across, and a
semi-transparent channel logo at :data:`LOGO_REGION` — then scaled with an area filter to the
rung's size and coded by libx264 at the rung's bitrate. The bottom rung is coded at a bitrate
low enough to be visibly blocky: it is a correct rendition that only looks worse.

All rungs share one timeline: frame ``i`` carries PTS ``i / fps`` (after the MPEG-TS muxer's
1.4 s start offset) in every rung, with a keyframe every second, so the rungs cut into aligned
1 s HLS segments. Fault spans are in media seconds from frame 0, like ``monitor/demo/synth.py``:

* ``logo_missing``: the rung is scaled from the master composed without its logo;
* ``garbled``: blocks of random values are painted over a quarter of the rung's picture
  (what a decoder shows on corrupt data), a new pattern every frame;
* ``dark``: a dark scene (luma about 16-45) on every rung, the logo still over it.

Each rung also carries a stereo AAC tone, so its audio checks stay quiet.
"""

from __future__ import annotations

import atexit
import functools
import math
import shutil
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from monitor.alarms.engine import Emit, Subject, Trackers
from monitor.checks.base import CheckContext
from monitor.checks.rendition_mismatch import RenditionMismatchCheck
from monitor.config import ChannelConfig
from monitor.decode.media_source import Picture
from monitor.demo.synth import MediaSpec, Span, frame_indices
from monitor.pipeline.channel import ChannelPipeline
from tests.ingest.hlsserver import Rendition, split_ts

LOGO_REGION: tuple[float, float, float, float] = (0.78, 0.06, 0.16, 0.18)
"""Normalised (x, y, w, h) of the semi-transparent logo."""
GARBLE_REGION: tuple[float, float, float, float] = (0.0, 0.5, 0.5, 0.5)
"""Normalised (x, y, w, h) of the blocks painted in ``garbled`` spans: the bottom-left quarter."""
MASTER = (768, 432)
LOGO_ALPHA = 0.55
SAMPLE_RATE = 48_000
AAC_FRAME = 1024


@dataclass(frozen=True)
class Rung:
    width: int
    height: int
    kbps: int

    @property
    def name(self) -> str:
        """The name our HLS client gives a variant with this RESOLUTION."""
        return f"{self.width}x{self.height}"


RUNGS = (Rung(384, 216, 600), Rung(256, 144, 250), Rung(192, 108, 60))


@dataclass(frozen=True)
class LadderClip:
    """What :func:`make_ladder` encodes. Faults are (rung index, span) pairs."""

    duration_s: float = 20.0
    fps: int = 25
    rungs: tuple[Rung, ...] = RUNGS
    logo_missing: tuple[tuple[int, Span], ...] = ()
    garbled: tuple[tuple[int, Span], ...] = ()
    dark: tuple[Span, ...] = ()
    seed: int = 0

    @property
    def n_frames(self) -> int:
        return round(self.duration_s * self.fps)

    def name(self, rung: int) -> str:
        return self.rungs[rung].name


def _periodic_noise(h: int, w: int, radius: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian-smoothed noise of about ``radius`` pixels that tiles, std-dev 1."""
    spectrum = np.fft.rfft2(rng.standard_normal((h, w)))
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    spectrum *= np.exp(-2 * (np.pi * radius) ** 2 * (fx**2 + fy**2))
    noise = np.fft.irfft2(spectrum, (h, w)).astype(np.float32)
    return noise / noise.std()


class _Master:
    """Composes the master luma picture of each frame (float32, 8-bit code values)."""

    def __init__(self, clip: LadderClip) -> None:
        self.clip = clip
        w, h = MASTER
        self.w, self.h = w, h
        rng = np.random.default_rng(clip.seed)
        self.period = (h + 256, w + 256)
        coarse = _periodic_noise(*self.period, 24, rng)
        fine = _periodic_noise(*self.period, 4, rng)
        self.a = 118 + 34 * coarse + 12 * fine
        self.b = 22 * _periodic_noise(*self.period, 10, rng)
        self.logo_box = x0, y0, x1, y1 = _box(LOGO_REGION, w, h)
        self.logo_alpha = self._logo_shape(x1 - x0, y1 - y0) * LOGO_ALPHA
        self._dark = {i for span in clip.dark for i in frame_indices(span, clip.fps)}

    @staticmethod
    def _logo_shape(w: int, h: int) -> np.ndarray:
        """Coverage 0..1 of a ring with two bars through it: edges a logo matcher can see."""
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        cx, cy = (w - 1) / 2, (h - 1) / 2
        r = np.hypot((xx - cx) / (w / 2), (yy - cy) / (h / 2))
        ring = (r > 0.62) & (r < 0.95)
        bars = (np.abs(yy - cy) < h * 0.09) | (np.abs(xx - cx) < w * 0.07)
        return ((ring | (bars & (r < 0.95))) * 1.0).astype(np.float32)

    def picture(self, i: int, logo: bool) -> np.ndarray:
        ph, pw = self.period
        ax, ay = (3 * i) % (pw - self.w), i % (ph - self.h)
        bx, by = (pw - self.w - 1) - (2 * i) % (pw - self.w), (2 * i) % (ph - self.h)
        y = self.a[ay : ay + self.h, ax : ax + self.w] + self.b[by : by + self.h, bx : bx + self.w]
        if i in self._dark:
            y = 30 + 0.12 * (y - 118)
        else:
            box = self.h // 5
            travel = self.w - box
            pos = (8 * i) % (2 * travel)
            x = pos if pos < travel else 2 * travel - pos
            top = self.h // 2 - box // 2
            y[top : top + box, x : x + box] = 220
            y[top + box // 4 : top + 3 * box // 4, x + box // 4 : x + 3 * box // 4] = 60
        if logo:
            x0, y0, x1, y1 = self.logo_box
            alpha = self.logo_alpha
            y[y0:y1, x0:x1] = (1 - alpha) * y[y0:y1, x0:x1] + alpha * 235.0
        return y


def _box(region: tuple[float, float, float, float], w: int, h: int) -> tuple[int, ...]:
    """Pixel bounds (x0, y0, x1, y1), end-exclusive, of a normalised region."""
    x, y, rw, rh = region
    return round(x * w), round(y * h), round((x + rw) * w), round((y + rh) * h)


def _garble(y: np.ndarray, rng: np.random.Generator) -> None:
    """Paint 8x8 blocks of random flat values over GARBLE_REGION (in place)."""
    x0, y0, x1, y1 = _box(GARBLE_REGION, y.shape[1], y.shape[0])
    blocks = rng.integers(16, 236, (-(-(y1 - y0) // 8), -(-(x1 - x0) // 8))).astype(np.float32)
    y[y0:y1, x0:x1] = np.kron(blocks, np.ones((8, 8), np.float32))[: y1 - y0, : x1 - x0]


def _in_spans(i: int, fps: int, spans: tuple[tuple[int, Span], ...], rung: int) -> bool:
    return any(r == rung and i in frame_indices(span, fps) for r, span in spans)


def _tone(clip: LadderClip) -> np.ndarray:
    n = math.ceil(clip.duration_s * SAMPLE_RATE / AAC_FRAME) * AAC_FRAME
    t = np.arange(n) / SAMPLE_RATE
    amp = math.sqrt(2) * 10 ** (-20 / 20)
    return np.stack([amp * np.sin(2 * np.pi * hz * t) for hz in (440.0, 660.0)]).astype(np.float32)


def make_ladder(folder: Path, clip: LadderClip) -> dict[str, Path]:
    """Encode every rung of ``clip`` into ``folder`` as MPEG-TS; rung name -> file."""
    folder = Path(folder)
    master = _Master(clip)
    rng = np.random.default_rng(clip.seed + 1)
    paths = {rung.name: folder / f"{rung.name}.ts" for rung in clip.rungs}
    outputs = [av.open(str(paths[rung.name]), "w", format="mpegts") for rung in clip.rungs]
    try:
        videos, audios = [], []
        for out, rung in zip(outputs, clip.rungs, strict=True):
            video = out.add_stream("libx264", rate=clip.fps)
            video.width, video.height, video.pix_fmt = rung.width, rung.height, "yuv420p"
            video.codec_context.time_base = Fraction(1, clip.fps)
            video.bit_rate = rung.kbps * 1000
            video.options = {
                "preset": "veryfast",
                "x264-params": (
                    f"keyint={clip.fps}:min-keyint={clip.fps}:scenecut=0:bframes=0"
                    f":vbv-maxrate={rung.kbps}:vbv-bufsize={rung.kbps}"
                ),
            }
            audio = out.add_stream("aac", rate=SAMPLE_RATE, layout="stereo")
            audio.codec_context.time_base = Fraction(1, SAMPLE_RATE)
            videos.append(video)
            audios.append(audio)
        tone = _tone(clip)
        sent = 0
        for i in range(clip.n_frames):
            with_logo = master.picture(i, logo=True)
            without_logo: np.ndarray | None = None
            for k, (out, rung) in enumerate(zip(outputs, clip.rungs, strict=True)):
                source = with_logo
                if _in_spans(i, clip.fps, clip.logo_missing, k):
                    if without_logo is None:
                        without_logo = master.picture(i, logo=False)
                    source = without_logo
                y = cv2.resize(source, (rung.width, rung.height), interpolation=cv2.INTER_AREA)
                if _in_spans(i, clip.fps, clip.garbled, k):
                    _garble(y, rng)
                out.mux(videos[k].encode(_frame(y, i, clip.fps)))
            until = min((i + 1) * SAMPLE_RATE // clip.fps, tone.shape[1])
            while sent < until:
                for out, audio in zip(outputs, audios, strict=True):
                    out.mux(audio.encode(_audio_frame(tone, sent)))
                sent += AAC_FRAME
        for out, video, audio in zip(outputs, videos, audios, strict=True):
            out.mux(video.encode(None))
            out.mux(audio.encode(None))
    finally:
        for out in outputs:
            out.close()
    return paths


def _frame(y: np.ndarray, i: int, fps: int) -> av.VideoFrame:
    h, w = y.shape
    buf = np.full((h * 3 // 2, w), 128, np.uint8)
    buf[:h] = np.clip(np.rint(y), 16, 235)
    frame = av.VideoFrame.from_ndarray(buf, format="yuv420p")
    frame.pts = i
    frame.time_base = Fraction(1, fps)
    return frame


def _audio_frame(tone: np.ndarray, start: int) -> av.AudioFrame:
    chunk = np.ascontiguousarray(tone[:, start : start + AAC_FRAME])
    frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
    frame.sample_rate = SAMPLE_RATE
    frame.pts = start
    frame.time_base = Fraction(1, SAMPLE_RATE)
    return frame


FAULTY = LadderClip(
    duration_s=20.0,
    logo_missing=((2, Span(9.0, 13.0)),),
    garbled=((1, Span(15.0, 18.0)),),
    dark=(Span(4.0, 7.0),),
)
"""The logo missing on the bottom rung over 9-13 s, the middle rung garbled over 15-18 s, and
a dark scene under the logo on every rung over 4-7 s."""
CLEAN = LadderClip(duration_s=12.0)


@functools.cache
def ladder_files(clip: LadderClip) -> dict[str, Path]:
    """``clip`` encoded once per test run (shared by the test modules), removed at exit."""
    folder = Path(tempfile.mkdtemp(prefix="streamqc-ladder-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return make_ladder(folder, clip)


def hls_ladder(clip: LadderClip, segment_s: float = 1.0) -> list[Rendition]:
    """The rungs of ``clip`` cut into HLS segments for ``LiveHlsServer``."""
    ladder = []
    for rung in clip.rungs:
        segments, durations = split_ts(ladder_files(clip)[rung.name], segment_s)
        spec = MediaSpec(
            duration_s=clip.duration_s, width=rung.width, height=rung.height, fps=clip.fps
        )
        ladder.append(Rendition(rung.name, spec, tuple(segments), tuple(durations)))
    return ladder


class Ladder:
    """A ``RenditionMismatchCheck`` as a live session owns it: trackers on the input, settled
    at the end, pictures offered after their own rendition's pipeline measured them."""

    def __init__(self, config: ChannelConfig, emit: Emit, keyframes: bool = False) -> None:
        self.trackers = Trackers(Subject(config.name, "primary", None), emit)
        context = CheckContext(config, self.trackers.subject, self.trackers)
        self.check = RenditionMismatchCheck(context, keyframes=keyframes)

    @property
    def comparisons(self) -> int:
        return self.check.comparisons

    def picture(self, name: str, picture: Picture, pipeline: ChannelPipeline) -> None:
        self.check.rendition_picture(name, picture, pipeline.explains_picture())

    def finish(self, end_s: float) -> None:
        self.check.finish(end_s)
        self.trackers.finish(end_s)
