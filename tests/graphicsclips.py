"""Clips for the graphics checks: moving content under on-air graphics, faults at known times.

Every picture is a busy texture scrolling diagonally with a bright box bouncing across it,
under three graphics composited the way a playout graphics engine keys them:

* a channel logo at :data:`LOGO_ROI`, white keyed at 65 % opacity (the picture shows through),
  with anti-aliased edges: a ring around a bar letter;
* a clock at :data:`CLOCK_ROI`: white digits on an opaque dark plate, counting media seconds;
* a lower third at :data:`LOWER_THIRD_ROI` (only during ``lower_third`` spans): an opaque
  blue-grey plate with rows of white "text" blocks and a bright rule.

Faults, each over ``[start_s, end_s)`` spans of media time (frame ``i`` is shown at
``i / fps``): the logo taken off air (``logo_off``), or rendered as an opaque box
(``logo_box``); the clock stopped while the picture moves on (``clock_frozen``); decode
garbage painted on macroblocks, either flat blocks of the green a decoder shows for zeroed
buffers (``flat_garbage``) or blocks copied from the wrong place (``smeared_garbage``); and a
scene change that is not a fault: a dark, low-contrast moving scene under the logo (``dark``).

``crf`` sets the coding quality: 18 is a clean contribution-like picture, about 40 the visibly
blocky picture of a bottom-of-the-ladder rendition. Media is generated at test time, never
committed: ``clip_file`` encodes each spec once per test session, and the pictures also serve
the detector unit tests directly (``Clip.luma``) without a round trip through the encoder.
``write_logo_reference`` and ``write_lower_third_reference`` write the graphics' artwork as
PNGs, for checks that recognise them from artwork.
"""

from __future__ import annotations

import atexit
import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from monitor.demo.synth import Span, frame_indices

LOGO_ROI = (0.80, 0.04, 0.16, 0.20)
"""Normalised (x, y, w, h) of the logo's region; the logo fills its middle 80 %."""
CLOCK_ROI = (0.04, 0.05, 0.20, 0.09)
"""The clock's opaque plate, exactly."""
LOWER_THIRD_ROI = (0.06, 0.76, 0.88, 0.16)
"""The lower third's plate, exactly."""

LOGO_OPACITY = 0.65
WHITE_Y = 235
GREEN_GARBAGE = (0, 0, 0)  # Y, U, V of a zeroed buffer: a dark saturated green on screen
MB = 16
LOWER_THIRD_UV = (150, 118)  # a blue-grey plate


def region_box(
    roi: tuple[float, float, float, float], width: int, height: int
) -> tuple[int, int, int, int]:
    """Pixel box (x0, y0, x1, y1), end-exclusive, of a normalised region."""
    x, y, w, h = roi
    return (round(x * width), round(y * height), round((x + w) * width), round((y + h) * height))


@dataclass(frozen=True)
class GraphicsClip:
    width: int = 640
    height: int = 360
    duration_s: float = 12.0
    fps: int = 25
    crf: int = 18
    gop: int = 50
    logo_off: tuple[Span, ...] = ()
    logo_box: tuple[Span, ...] = ()
    clock_frozen: tuple[Span, ...] = ()
    lower_third: tuple[Span, ...] = ()
    flat_garbage: tuple[Span, ...] = ()
    smeared_garbage: tuple[Span, ...] = ()
    dark: tuple[Span, ...] = ()
    seed: int = 0

    @property
    def frames(self) -> int:
        return round(self.duration_s * self.fps)


def logo_alpha(width: int, height: int) -> np.ndarray:
    """The logo's key (0..1, float32) over a ``width`` x ``height`` box: a ring around a bar
    letter 'T', anti-aliased by 4x supersampling."""
    s = 4
    yy, xx = np.mgrid[0 : height * s, 0 : width * s].astype(np.float32)
    u = (xx + 0.5) / (width * s) * 2 - 1  # -1..1 across the region
    v = (yy + 0.5) / (height * s) * 2 - 1
    r = np.hypot(u, v)
    ring = (r > 0.62) & (r < 0.78)
    bar = (np.abs(v + 0.28) < 0.09) & (np.abs(u) < 0.42)
    stem = (np.abs(u) < 0.09) & (v > -0.28) & (v < 0.45)
    shape = (ring | bar | stem).astype(np.float32)
    return shape.reshape(height, s, width, s).mean(axis=(1, 3))


def lower_third_plate(width: int, height: int, seed: int = 5) -> np.ndarray:
    """Luma of the lower third over a ``width`` x ``height`` region (opaque)."""
    plate = np.full((height, width), 60, np.float32)
    plate[: max(1, height // 12)] = 200  # a bright rule along the top
    rng = np.random.default_rng(seed)
    rows = ((0.25, 0.50), (0.60, 0.82))  # two lines of "text", as fractions of the height
    for top, bottom in rows:
        y0, y1 = round(top * height), round(bottom * height)
        x = round(0.04 * width)
        while x < 0.9 * width:
            glyph = max(2, round(rng.uniform(0.012, 0.03) * width))
            plate[y0:y1, x : x + glyph] = 225
            x += glyph + max(1, round(rng.uniform(0.004, 0.02) * width))
    return plate


class Clip:
    """The planes of every picture of a :class:`GraphicsClip`."""

    def __init__(self, spec: GraphicsClip) -> None:
        self.spec = spec
        w, h = spec.width, spec.height
        rng = np.random.default_rng(spec.seed)
        self.pad = 2 * max(32, round(w / 8))
        self.step = max(1, round(3 * h / 360))  # px per frame
        tex = _smooth_noise(h + self.pad, w + self.pad, max(1.5, h / 180), rng)
        self.texture = np.clip(118 + 38 * tex, 20, 225).astype(np.float32)
        dark = _smooth_noise(h + self.pad, w + self.pad, max(1.5, h / 120), rng)
        self.dark_texture = np.clip(26 + 4 * dark, 17, 36).astype(np.float32)
        cu = _smooth_noise((h + self.pad) // 2, (w + self.pad) // 2, max(2.0, h / 90), rng)
        self.u = np.clip(128 + 10 * cu, 16, 240).astype(np.uint8)
        self.v = np.ascontiguousarray(self.u[::-1, ::-1])
        self.logo = region_box(LOGO_ROI, w, h)
        x0, y0, x1, y1 = self.logo
        lw, lh = x1 - x0, y1 - y0
        # The logo fills the middle 80 % of its region.
        ix0, iy0 = x0 + round(0.1 * lw), y0 + round(0.1 * lh)
        self.logo_inner = (ix0, iy0, ix0 + round(0.8 * lw), iy0 + round(0.8 * lh))
        iw, ih = self.logo_inner[2] - ix0, self.logo_inner[3] - iy0
        self.alpha = LOGO_OPACITY * logo_alpha(iw, ih)
        self.clock = region_box(CLOCK_ROI, w, h)
        self.third = region_box(LOWER_THIRD_ROI, w, h)
        tw, th = self.third[2] - self.third[0], self.third[3] - self.third[1]
        self.third_plate = lower_third_plate(tw, th)
        self._kinds: dict[str, set[int]] = {}
        for kind in (
            "logo_off", "logo_box", "clock_frozen", "lower_third",
            "flat_garbage", "smeared_garbage", "dark",
        ):  # fmt: skip
            frames: set[int] = set()
            for span in getattr(spec, kind):
                frames.update(frame_indices(span, spec.fps))
            self._kinds[kind] = frames
        self._frozen_at: dict[int, int] = {}
        for span in spec.clock_frozen:
            r = frame_indices(span, spec.fps)
            self._frozen_at.update(dict.fromkeys(r, r.start))
        self._garbage_rng_seed = spec.seed + 17

    def has(self, kind: str, i: int) -> bool:
        return i in self._kinds[kind]

    def planes(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Y, U, V (uint8) of picture ``i``."""
        spec = self.spec
        w, h = spec.width, spec.height
        off = i * self.step
        ox, oy = off % self.pad, (off // 2) % self.pad
        source = self.dark_texture if self.has("dark", i) else self.texture
        y = source[oy : oy + h, ox : ox + w].copy()
        u = self.u[oy // 2 : oy // 2 + h // 2, ox // 2 : ox // 2 + w // 2].astype(np.float32)
        v = self.v[oy // 2 : oy // 2 + h // 2, ox // 2 : ox // 2 + w // 2].astype(np.float32)
        if not self.has("dark", i):
            box = max(8, h // 8)
            span = w - box
            pos = (i * 4 * self.step) % (2 * span)
            bx = pos if pos < span else 2 * span - pos
            by = h // 2 - box // 2
            y[by : by + box, bx : bx + box] = 210
            y[by + box // 4 : by + 3 * box // 4, bx + box // 4 : bx + 3 * box // 4] = 70
        self._logo(i, y, u, v)
        self._clock(i, y, u, v)
        if self.has("lower_third", i):
            x0, y0, x1, y1 = self.third
            y[y0:y1, x0:x1] = self.third_plate
            cu, cv = LOWER_THIRD_UV
            u[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2] = cu
            v[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2] = cv
        planes = [np.clip(np.rint(p), 0, 255).astype(np.uint8) for p in (y, u, v)]
        if self.has("flat_garbage", i):
            self._flat_garbage(*planes)
        if self.has("smeared_garbage", i):
            self._smeared_garbage(i, *planes)
        return planes[0], planes[1], planes[2]

    def luma(self, i: int) -> np.ndarray:
        return self.planes(i)[0]

    def _logo(self, i: int, y: np.ndarray, u: np.ndarray, v: np.ndarray) -> None:
        if self.has("logo_off", i):
            return
        x0, y0, x1, y1 = self.logo_inner
        if self.has("logo_box", i):  # the key lost: the fill shows as an opaque box
            y[y0:y1, x0:x1] = WHITE_Y
            u[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2] = 128
            v[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2] = 128
            return
        a = self.alpha
        y[y0:y1, x0:x1] = y[y0:y1, x0:x1] * (1 - a) + WHITE_Y * a
        ca = a[::2, ::2][: (y1 // 2 - y0 // 2), : (x1 // 2 - x0 // 2)]
        for plane in (u, v):
            region = plane[y0 // 2 : y0 // 2 + ca.shape[0], x0 // 2 : x0 // 2 + ca.shape[1]]
            region[:] = region * (1 - ca) + 128 * ca

    def _clock(self, i: int, y: np.ndarray, u: np.ndarray, v: np.ndarray) -> None:
        x0, y0, x1, y1 = self.clock
        shown = self._frozen_at.get(i, i)
        seconds = int(shown / self.spec.fps)
        text = f"10:{seconds // 60:02d}:{seconds % 60:02d}"
        plate = np.full((y1 - y0, x1 - x0), 40, np.uint8)
        scale = (y1 - y0) / 32
        thickness = max(1, round(scale * 1.5))
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        origin = ((x1 - x0 - tw) // 2, (y1 - y0 + th) // 2)
        cv2.putText(plate, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, 230, thickness)
        y[y0:y1, x0:x1] = plate
        u[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2] = 128
        v[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2] = 128

    def garbage_box(self) -> tuple[int, int, int, int]:
        """Macroblock-aligned pixel box of the garbage: a patch left of the picture's middle."""
        w, h = self.spec.width, self.spec.height
        bw, bh = max(4, w // MB // 5), max(3, h // MB // 5)
        bx, by = (w // MB) // 4, (h // MB) // 3
        return bx * MB, by * MB, (bx + bw) * MB, (by + bh) * MB

    def _flat_garbage(self, y: np.ndarray, u: np.ndarray, v: np.ndarray) -> None:
        x0, y0, x1, y1 = self.garbage_box()
        gy, gu, gv = GREEN_GARBAGE
        y[y0:y1, x0:x1] = gy
        u[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2] = gu
        v[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2] = gv

    def _smeared_garbage(self, i: int, y: np.ndarray, u: np.ndarray, v: np.ndarray) -> None:
        """Each macroblock of a larger patch replaced by a block from elsewhere in the
        picture, or by a flat grey: what a decoder's concealment leaves after lost slices."""
        x0, y0, x1, y1 = self.garbage_box()
        x1 = min(self.spec.width, x0 + 2 * (x1 - x0))
        rng = np.random.default_rng(self._garbage_rng_seed + i // 5)
        h, w = y.shape
        source = y.copy()
        for by in range(y0, y1, MB):
            for bx in range(x0, x1, MB):
                if rng.random() < 0.3:
                    y[by : by + MB, bx : bx + MB] = rng.integers(40, 200)
                else:
                    sy = int(rng.integers(0, h // MB)) * MB
                    sx = int(rng.integers(0, w // MB)) * MB
                    y[by : by + MB, bx : bx + MB] = source[sy : sy + MB, sx : sx + MB]


def _smooth_noise(h: int, w: int, radius: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-std noise with detail at a few scales (blurred with OpenCV)."""
    out = np.zeros((h, w), np.float32)
    for scale, weight in ((6.0, 1.0), (2.0, 0.6), (0.7, 0.35)):
        sigma = max(0.5, radius * scale)
        layer = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), sigma)
        out += weight * layer / max(float(layer.std()), 1e-6)
    return out / max(float(out.std()), 1e-6)


def make_clip(path: Path, spec: GraphicsClip) -> Path:
    """Encode ``spec`` as H.264 in MPEG-TS at ``path`` (video only) and return the path."""
    clip = Clip(spec)
    with av.open(str(path), "w", format="mpegts") as out:
        stream = out.add_stream("libx264", rate=spec.fps)
        stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, spec.fps)
        stream.options = {
            "preset": "veryfast",
            "crf": str(spec.crf),
            "x264-params": f"keyint={spec.gop}:min-keyint={spec.gop}:scenecut=0:bframes=0",
        }
        h, w = spec.height, spec.width
        for i in range(spec.frames):
            y, u, v = clip.planes(i)
            buf = np.concatenate((y.ravel(), u.ravel(), v.ravel())).reshape(h * 3 // 2, w)
            frame = av.VideoFrame.from_ndarray(buf, format="yuv420p")
            frame.pts = i
            frame.time_base = Fraction(1, spec.fps)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return Path(path)


_made: dict[GraphicsClip, Path] = {}
_folder: Path | None = None


def clip_file(spec: GraphicsClip) -> Path:
    """The clip of ``spec``, encoded once per test session (shared by the test modules)."""
    global _folder
    if spec not in _made:
        if _folder is None:
            _folder = Path(tempfile.mkdtemp(prefix="streamqc-graphics-"))
            atexit.register(shutil.rmtree, _folder, True)
        name = hashlib.sha1(repr(spec).encode()).hexdigest()[:12]
        _made[spec] = make_clip(_folder / f"{name}.ts", spec)
    return _made[spec]


def decoded_lumas(path: Path, every: int = 1) -> list[tuple[float, np.ndarray]]:
    """(media seconds from the first picture, luma copy) of every ``every``-th decoded picture."""
    pictures: list[tuple[float, np.ndarray]] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        first: float | None = None
        for i, frame in enumerate(container.decode(stream)):
            t = float(frame.time)
            first = t if first is None else first
            if i % every:
                continue
            plane = frame.planes[0]
            y = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)
            pictures.append((t - first, y[:, : frame.width].copy()))
    return pictures


def write_logo_reference(path: Path, width: int = 400, height: int = 300) -> Path:
    """The logo's artwork as a PNG of its whole region: white, its key in the alpha channel
    (transparent around the logo), at a size of its own: it is scaled to each rendition."""
    alpha = np.zeros((height, width), np.float32)
    iw, ih = round(0.8 * width), round(0.8 * height)
    x0, y0 = round(0.1 * width), round(0.1 * height)
    alpha[y0 : y0 + ih, x0 : x0 + iw] = LOGO_OPACITY * logo_alpha(iw, ih)
    image = np.zeros((height, width, 4), np.uint8)
    image[..., :3] = 255
    image[..., 3] = np.rint(alpha * 255)
    cv2.imwrite(str(path), image)
    return Path(path)


def write_lower_third_reference(path: Path, width: int = 880, height: int = 90) -> Path:
    """The lower third's artwork (opaque, gray) as a PNG of its region."""
    luma = lower_third_plate(width, height)
    cv2.imwrite(str(path), np.clip(np.rint((luma - 16) * 255 / 219), 0, 255).astype(np.uint8))
    return Path(path)
