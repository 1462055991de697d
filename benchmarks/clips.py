"""Benchmark media: broadcast-like H.264/AAC MPEG-TS clips, generated once and cached.

``monitor/demo/synth.py`` makes clips for correctness tests: a smooth scrolling texture at CRF 12,
preset ultrafast, no B-frames. That is cheap and unusual to decode, and decode cost is the
yardstick every overhead here is divided by. These clips are closer to a contribution feed:
two film-like noise textures moving in different directions plus light grain, coded by
libx264 (preset veryfast, High profile, GOP 50 without scene cuts, 3 B-frames with b-pyramid)
at a constant bitrate (6 Mbit/s at 1080p25, 0.8 Mbit/s at 360p25, as in perf.md §1), with
AAC-LC stereo 48 kHz at 128 kbit/s: a tone plus noise, digitally silent over the clip's third
quarter (6-9 s of the 12 s clips), so one silence alarm is raised and cleared.

Clips are cached under ``$STREAMQC_BENCH_CACHE`` (default: ``<tmp>/streamqc-bench``), keyed by
everything that shapes them, so reruns skip the encode (about 25 s for 12 s of 1080p on 2 vCPU).
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

GENERATOR_VERSION = 1
"""Bump when the content or the coding below changes, so cached clips are regenerated."""

SAMPLE_RATE = 48_000
AAC_FRAME = 1024


@dataclass(frozen=True)
class ClipSpec:
    width: int
    height: int
    video_kbps: int
    duration_s: float
    fps: int = 25
    silence_s: tuple[float, float] | None = None  # media seconds, inside the clip

    @property
    def name(self) -> str:
        silence = (
            "" if self.silence_s is None else f"_sil{self.silence_s[0]:g}-{self.silence_s[1]:g}"
        )
        return (
            f"noise_{self.width}x{self.height}p{self.fps}_{self.video_kbps}k"
            f"_{self.duration_s:g}s{silence}_v{GENERATOR_VERSION}.ts"
        )

    @property
    def label(self) -> str:
        return f"{self.height}p"


def broadcast_clip(height: int, duration_s: float) -> ClipSpec:
    """The benchmark clip at 1080p (6 Mbit/s), 720p (3 Mbit/s) or 360p (0.8 Mbit/s), silent in
    its third quarter."""
    silence_s = (duration_s / 2, duration_s * 3 / 4)
    if height == 1080:
        return ClipSpec(1920, 1080, 6000, duration_s, silence_s=silence_s)
    if height == 720:
        return ClipSpec(1280, 720, 3000, duration_s, silence_s=silence_s)
    if height == 360:
        return ClipSpec(640, 360, 800, duration_s, silence_s=silence_s)
    raise ValueError(f"no benchmark clip at {height}p")


def cache_dir() -> Path:
    default = Path(tempfile.gettempdir()) / "streamqc-bench"
    path = Path(os.environ.get("STREAMQC_BENCH_CACHE", default))
    path.mkdir(parents=True, exist_ok=True)
    return path


def clip_path(spec: ClipSpec) -> Path:
    """The cached clip for ``spec``, encoding it first if needed."""
    path = cache_dir() / spec.name
    if not path.exists():
        partial = path.with_suffix(f".{os.getpid()}.partial")
        try:
            _encode(partial, spec)
            partial.replace(path)  # atomic: a concurrent run never sees half a file
        finally:
            partial.unlink(missing_ok=True)
    return path


def looped_clip_path(spec: ClipSpec, copies: int) -> Path:
    """The cached clip for ``spec`` played ``copies`` times in a row, one continuous timeline
    (stream copy, no re-encode): a long clip without a long encode, so that what a run costs
    once (opening, probing, building the pipeline) weighs as little as it does on a live
    feed."""
    source = clip_path(spec)
    path = source.with_name(f"{source.stem}_x{copies}.ts")
    if path.exists():
        return path
    partial = path.with_suffix(f".{os.getpid()}.partial")
    try:
        with av.open(str(source)) as src, av.open(str(partial), "w", format="mpegts") as out:
            outputs = {s.index: out.add_stream_from_template(s) for s in src.streams}
            last_dts: dict[int, int] = {}
            for copy in range(copies):
                src.seek(0)
                for packet in src.demux():
                    if packet.pts is None or packet.dts is None or packet.time_base is None:
                        continue
                    index = packet.stream.index
                    shift = round(copy * spec.duration_s / packet.time_base)
                    # The AAC runs ~30 ms past the video: its overlap with the next copy goes.
                    if packet.dts + shift <= last_dts.get(index, -1):
                        continue
                    packet.pts += shift
                    packet.dts += shift
                    last_dts[index] = packet.dts
                    packet.stream = outputs[index]
                    out.mux(packet)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def _box_blur(a: np.ndarray, radius: int) -> np.ndarray:
    """Periodic separable box blur, so the texture tiles without seams."""
    for axis in (0, 1):
        n = a.shape[axis]
        padded = np.concatenate(
            (a.take(range(-radius, 0), axis=axis), a, a.take(range(radius + 1), axis=axis)),
            axis=axis,
        )
        c = np.cumsum(padded, axis=axis, dtype=np.float64)
        width = 2 * radius + 1
        a = c.take(range(width, width + n), axis=axis) - c.take(range(n), axis=axis)
        a /= width
    return a


def _texture(h: int, w: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    """Noise with coarse, medium and fine detail: std-dev ~1, float32."""
    t = np.zeros((h, w), np.float64)
    for radius, weight in ((24, 1.0), (6, 0.55), (1, 0.25)):
        b = _box_blur(rng.standard_normal((h, w)), max(1, round(radius * scale)))
        t += weight * b / b.std()
    return (t / t.std()).astype(np.float32)


class _Pictures:
    def __init__(self, spec: ClipSpec) -> None:
        w, h = spec.width, spec.height
        scale = h / 1080
        self.w, self.h = w, h
        self.pad = 2 * round(256 * scale)
        self.step = max(1, round(3 * scale))  # px per frame: 75 px/s at 1080p
        rng = np.random.default_rng(2026)
        ph, pw = h + self.pad, w + self.pad
        self.a = np.rint(30 * _texture(ph, pw, scale, rng)).astype(np.int16)
        self.b = np.rint(20 * _texture(ph, pw, scale, rng)).astype(np.int16)
        self.grain = rng.integers(-1, 2, size=(h + 64, w + 64), dtype=np.int16)
        chroma = 128 + 12 * _texture(ph // 2, pw // 2, scale, rng)
        self.u = np.clip(np.rint(chroma), 16, 240).astype(np.uint8)
        self.v = np.ascontiguousarray(self.u[::-1, ::-1])
        self.rng = rng

    def frame(self, i: int) -> av.VideoFrame:
        h, w, pad, s = self.h, self.w, self.pad, self.step
        ax, ay = (2 * i * s) % pad, (i * s) % pad
        bx, by = pad - 1 - (i * s) % pad, (2 * i * s) % pad
        gx, gy = self.rng.integers(0, 64, size=2)
        y = 120 + self.a[ay : ay + h, ax : ax + w] + self.b[by : by + h, bx : bx + w]
        y += self.grain[gy : gy + h, gx : gx + w]
        buf = np.empty((h * 3 // 2, w), np.uint8)
        buf[:h] = np.clip(y, 16, 235)
        cx, cy = ax // 2, ay // 2
        buf[h:].reshape(-1)[: h * w // 4] = self.u[cy : cy + h // 2, cx : cx + w // 2].ravel()
        buf[h:].reshape(-1)[h * w // 4 :] = self.v[cy : cy + h // 2, cx : cx + w // 2].ravel()
        frame = av.VideoFrame.from_ndarray(buf, format="yuv420p")
        frame.pts = i
        frame.time_base = Fraction(1, 25)
        return frame


def _audio(spec: ClipSpec) -> np.ndarray:
    n = math.ceil(spec.duration_s * SAMPLE_RATE / AAC_FRAME) * AAC_FRAME
    rng = np.random.default_rng(7)
    t = np.arange(n) / SAMPLE_RATE
    amp = math.sqrt(2) * 10 ** (-20 / 20)  # -20 dBFS RMS tone
    out = np.empty((2, n), np.float32)
    for ch, hz in enumerate((440.0, 660.0)):
        out[ch] = amp * np.sin(2 * np.pi * hz * t) + rng.normal(0.0, 10 ** (-50 / 20), n)
    if spec.silence_s is not None:
        a, b = (round(x * SAMPLE_RATE) for x in spec.silence_s)
        out[:, a:b] = 0.0
    return out


def _encode(path: Path, spec: ClipSpec) -> None:
    kbps = spec.video_kbps
    with av.open(str(path), "w", format="mpegts") as out:
        video = out.add_stream("libx264", rate=spec.fps)
        video.width, video.height, video.pix_fmt = spec.width, spec.height, "yuv420p"
        video.codec_context.time_base = Fraction(1, spec.fps)
        video.bit_rate = kbps * 1000
        video.options = {
            "preset": "veryfast",
            "profile": "high",
            "x264-params": (
                f"keyint=50:min-keyint=50:scenecut=0:bframes=3:b-pyramid=normal"
                f":vbv-maxrate={kbps}:vbv-bufsize={kbps}:nal-hrd=cbr"
            ),
        }
        audio = out.add_stream("aac", rate=SAMPLE_RATE, layout="stereo")
        audio.codec_context.time_base = Fraction(1, SAMPLE_RATE)
        audio.bit_rate = 128_000

        signal = _audio(spec)
        pictures = _Pictures(spec)
        next_sample = 0
        for i in range(round(spec.duration_s * spec.fps)):
            out.mux(video.encode(pictures.frame(i)))
            until = (i + 1) * SAMPLE_RATE // spec.fps
            while next_sample < min(until, signal.shape[1]):
                chunk = np.ascontiguousarray(signal[:, next_sample : next_sample + AAC_FRAME])
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
                frame.sample_rate = SAMPLE_RATE
                frame.pts = next_sample
                frame.time_base = Fraction(1, SAMPLE_RATE)
                out.mux(audio.encode(frame))
                next_sample += AAC_FRAME
        out.mux(video.encode(None))
        out.mux(audio.encode(None))


def decoded_lumas(path: Path, count: int = 10, skip: int = 5) -> list[np.ndarray]:
    """``count`` consecutive decoded luma planes as zero-copy views (each keeps its frame)."""
    from monitor.decode.media_source import luma_view

    lumas: list[np.ndarray] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_type = "NONE"
        for i, frame in enumerate(container.decode(stream)):
            if i >= skip:
                lumas.append(luma_view(frame))
            if len(lumas) == count:
                break
    if len(lumas) < count:
        raise RuntimeError(f"{path}: only {len(lumas)} pictures after skipping {skip}")
    return lumas
