"""Corrupted picture: decode garbage on the macroblock grid, judged against the channel's own.

A decoder that loses data fills the missing macroblocks with what it has: blocks copied from
the wrong place, flat blocks, or the green (Y = U = V = 0) or magenta of a buffer never written.
All of it sits on the 16 x 16 macroblock grid with hard edges, and that is what is measured
here, on the luma plane, per macroblock:

* **Blocking across the grid** in the spirit of FFmpeg's ``blockdetect`` (Muijs & Kirenko, "A
  no-reference blocking artifact measure for adaptive video processing", EUSIPCO 2005): the
  luma step across a block boundary against the gradients beside it. ``blockdetect``'s ratio
  alone cannot tell damage from coding: computed its way on the test clips, it reads 2.1-3.5 on
  clean pictures at CRF 18 (the graphics' own edges), 2.6-6.3 with garbage, and 4.1-4.5 on a
  dark scene coded at CRF 40 that is blocky but correct.
  So a boundary is *hard* only when its step is also large (``HARD_STEP_CV``) and at least
  ``HARD_RATIO`` times the gradients beside it, and a macroblock is *damaged* when it has hard
  boundaries across both directions: a coding block edge is a few code values, and the
  straight edge of a graphic or of a letterbox runs one way only. The ratio of boundary to
  interior steps is kept as ``blockiness``, a measurement for the metrics.
* **Garbage colour**: flat macroblocks (16 sampled pixels within ``FLAT_RANGE_CV``) of a luma no
  limited-range picture has (``SUB_BLACK_CV``), or, looked up in the chroma planes only for
  flat blocks, of a colour outside the RGB gamut by more than ``GAMUT_MARGIN``.

Damaged blocks are counted against the channel's own baseline: a running 50th/90th percentile
of the counts of clean pictures over ``baseline`` (graphics with corners on the grid, a
picture-in-picture, always count a few), so a picture is corrupt when it has ``min_blocks``
more than the baseline's 90th percentile plus its spread. Garbage colour is never normal: its
threshold is ``min_blocks`` alone.

The opaque-box test of a graphic (its box flat while the region around it differs) runs on the
graphic's own cell grid, called from ``detectors.graphics``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from annotated_types import Ge, Interval
from numba import njit

from detectors.regions import Region

MB = 16
"""Macroblock size of H.264 and MPEG-2 (an HEVC coding unit of 16 or more shares its grid)."""
HARD_STEP_CV = 20.0
"""A hard boundary steps by at least this (mean over the boundary, 8-bit code values)..."""
HARD_RATIO = 3.0
"""...and by at least this many times the gradients just beside it."""
FLAT_RANGE_CV = 2.0
"""A flat macroblock: its samples span at most this."""
SUB_BLACK_CV = 4.0
"""Flat luma at or below this is below any limited-range picture's black (16): a zeroed buffer."""
GAMUT_MARGIN = 0.5
"""A flat block whose RGB falls this far outside 0..1 is no colour a camera or graphic makes:
the green of a zeroed buffer is at R = -0.97, the magenta of U = V = 255 at B = 1.56, while
the flat blocks of a dark, saturated scene on the test clips reach 0.29 outside."""
WARMUP_SAMPLES = 10
"""Clean pictures the baseline needs before damaged blocks are judged."""

BOX_FLAT_CV = 2.5
"""A graphic's box is opaque when its luma varies less than this (std-dev, code values)..."""
BOX_CONTRAST_CV = 20.0
BOX_OUTSIDE_FRACTION = 0.3
"""...while at least this fraction of its region around it differs from it by BOX_CONTRAST_CV:
a flat box standing out from the picture, not a graphic missing over a flat background."""


@dataclass(frozen=True)
class CorruptionSettings:
    """Settings of the corrupted-picture detector."""

    min_blocks: Annotated[int, Ge(1)] = 6
    """Damaged or garbage-coloured macroblocks beyond the channel's usual count that make a
    picture corrupt."""
    baseline_s: Annotated[float, Interval(ge=10.0, le=3600.0)] = 60.0
    """How much recent clean picture the baseline of damaged blocks covers."""
    ignore: tuple[Region, ...] = ()
    """Regions left out, e.g. a picture-in-picture (graphics regions are left out anyway)."""


GARBAGE = -2.0
"""Mark of a garbage-coloured block in the ``flat`` map."""

# Layout of macroblock_scan's output vector.
S_DAMAGED = 0  # macroblocks with hard boundaries across both directions
S_SUB_BLACK = 1  # flat macroblocks below black
S_FLAT = 2  # other flat macroblocks (candidates for the chroma test)
S_BOUNDARY = 3  # sum of luma steps across sampled macroblock boundaries
S_INTERIOR = 4  # sum of luma steps at the same number of interior positions
N_SCAN = 5


@njit(cache=True, nogil=True, fastmath=True)
def macroblock_scan(
    y: np.ndarray,
    scale: float,
    limited: bool,
    skip: np.ndarray,
    left: np.ndarray,
    top: np.ndarray,
    flat: np.ndarray,
    out: np.ndarray,
) -> None:  # pragma: no cover - jitted
    """Judge every macroblock of luma ``y`` (8-bit code values = raw * ``scale``).

    skip (blocks_y, blocks_x) uint8: blocks left out. left/top: per block, whether its left /
    top boundary is hard (written here). flat: per block, its mean luma when flat, GARBAGE
    when flat below black, else -1 (written here; ``flat_colours`` marks more GARBAGE).
    A boundary is sampled on 4 lines of its 16; the gradients beside it are read only when its
    step is large enough to matter, and the flatness test stops at the first sample out of
    range, so textured content costs about 20 reads per block.
    """
    for k in range(out.shape[0]):
        out[k] = 0.0
    blocks_y, blocks_x = skip.shape
    hard = HARD_STEP_CV * 4.0 / scale  # a sum over 4 lines, in raw code values
    flat_range = FLAT_RANGE_CV / scale
    boundary = np.int64(0)
    interior = np.int64(0)
    for by in range(blocks_y):
        y0 = by * MB
        for bx in range(blocks_x):
            x0 = bx * MB
            left[by, bx] = 0
            top[by, bx] = 0
            flat[by, bx] = -1.0
            if skip[by, bx]:
                continue
            if bx > 0:
                step = np.int32(0)
                for q in range(4):
                    line = y[y0 + 2 + 4 * q]
                    step += abs(np.int32(line[x0]) - np.int32(line[x0 - 1]))
                line = y[y0 + 6]
                interior += 4 * abs(np.int32(line[x0 + 6]) - np.int32(line[x0 + 5]))
                boundary += step
                if step >= hard:
                    beside = np.int32(0)
                    for q in range(4):
                        line = y[y0 + 2 + 4 * q]
                        beside += abs(np.int32(line[x0 - 1]) - np.int32(line[x0 - 2]))
                        beside += abs(np.int32(line[x0 + 1]) - np.int32(line[x0]))
                    left[by, bx] = 2 * step >= HARD_RATIO * beside
            if by > 0:
                above = y[y0 - 1]
                below = y[y0]
                step = np.int32(0)
                for q in range(4):
                    x = x0 + 2 + 4 * q
                    step += abs(np.int32(below[x]) - np.int32(above[x]))
                interior += 4 * abs(np.int32(y[y0 + 6, x0 + 6]) - np.int32(y[y0 + 5, x0 + 6]))
                boundary += step
                if step >= hard:
                    above2 = y[y0 - 2]
                    below2 = y[y0 + 1]
                    beside = np.int32(0)
                    for q in range(4):
                        x = x0 + 2 + 4 * q
                        beside += abs(np.int32(above[x]) - np.int32(above2[x]))
                        beside += abs(np.int32(below2[x]) - np.int32(below[x]))
                    top[by, bx] = 2 * step >= HARD_RATIO * beside
            first = np.int32(y[y0 + 2, x0 + 2])
            low = first
            high = first
            total = np.int32(0)
            is_flat = True
            for r in range(2, MB, 4):
                line = y[y0 + r]
                for c in range(2, MB, 4):
                    v = np.int32(line[x0 + c])
                    low = min(low, v)
                    high = max(high, v)
                    total += v
                if high - low > flat_range:
                    is_flat = False
                    break
            if is_flat:
                mean = total * scale / 16.0
                if limited and mean <= SUB_BLACK_CV:
                    out[S_SUB_BLACK] += 1
                    flat[by, bx] = GARBAGE
                else:
                    flat[by, bx] = mean
                    out[S_FLAT] += 1
    damaged = 0
    for by in range(blocks_y):
        for bx in range(blocks_x):
            if skip[by, bx]:
                continue
            across = left[by, bx] or (bx + 1 < blocks_x and left[by, bx + 1])
            along = top[by, bx] or (by + 1 < blocks_y and top[by + 1, bx])
            if across and along:
                damaged += 1
    out[S_DAMAGED] = damaged
    out[S_BOUNDARY] = boundary * scale
    out[S_INTERIOR] = interior * scale


@njit(cache=True, nogil=True, fastmath=True)
def flat_colours(
    u: np.ndarray,
    v: np.ndarray,
    shift_x: int,
    shift_y: int,
    flat: np.ndarray,
    scale: float,
    limited: bool,
) -> int:  # pragma: no cover - jitted
    """Flat macroblocks (``flat`` >= 0: their mean luma) whose colour is outside the RGB gamut
    by more than GAMUT_MARGIN, read from the chroma planes subsampled by 2^shift; they are
    counted and marked GARBAGE in ``flat``."""
    count = 0
    blocks_y, blocks_x = flat.shape
    low = -GAMUT_MARGIN
    high = 1.0 + GAMUT_MARGIN
    for by in range(blocks_y):
        for bx in range(blocks_x):
            luma = flat[by, bx]
            if luma < 0.0:
                continue
            cy = (by * MB + MB // 2) >> shift_y
            cx = (bx * MB + MB // 2) >> shift_x
            cb = float(u[cy, cx]) * scale - 128.0
            cr = float(v[cy, cx]) * scale - 128.0
            if limited:  # BT.709 in limited range
                yn = (luma - 16.0) / 219.0
                pb = cb / 224.0
                pr = cr / 224.0
            else:
                yn = luma / 255.0
                pb = cb / 255.0
                pr = cr / 255.0
            r = yn + 1.5748 * pr
            g = yn - 0.1873 * pb - 0.4681 * pr
            b = yn + 1.8556 * pb
            if min(r, min(g, b)) < low or max(r, max(g, b)) > high:
                count += 1
                flat[by, bx] = GARBAGE
    return count


@njit(cache=True, nogil=True, fastmath=True)
def opaque_box(
    cells: np.ndarray, margin: int, rows: int, cols: int, box: np.ndarray, contrast: float
) -> tuple[float, float]:  # pragma: no cover - jitted
    """(std-dev inside ``box``, fraction of the region's other cells differing from the box's
    mean by more than ``contrast``) on a graphic's cell grid (region at ``margin``)."""
    total = 0.0
    total_sq = 0.0
    n = 0
    for i in range(box[0], box[2]):
        line = cells[margin + i]
        for j in range(box[1], box[3]):
            v = line[margin + j]
            total += v
            total_sq += v * v
            n += 1
    if n == 0:
        return -1.0, 0.0
    mean = total / n
    stddev = math.sqrt(max(total_sq / n - mean * mean, 0.0))
    differing = 0
    outside = 0
    for i in range(rows):
        line = cells[margin + i]
        for j in range(cols):
            if box[0] <= i < box[2] and box[1] <= j < box[3]:
                continue
            outside += 1
            if abs(line[margin + j] - mean) > contrast:
                differing += 1
    return stddev, differing / outside if outside else 0.0


def is_opaque_box(stddev_cv: float, outside_fraction: float) -> bool:
    """The verdict on ``opaque_box``'s measurements."""
    return stddev_cv <= BOX_FLAT_CV and outside_fraction >= BOX_OUTSIDE_FRACTION


@dataclass(frozen=True, slots=True)
class CorruptionMeasurement:
    pts_s: float
    corrupt: bool
    damaged_blocks: int  # macroblocks with hard boundaries across both directions
    garbage_blocks: int  # flat macroblocks of an impossible luma or colour
    damaged_threshold: int | None  # damaged blocks that make a picture corrupt (None: warming up)
    blockiness: float  # mean step across macroblock boundaries / inside them (about 1: no grid)


ChromaPlanes = Callable[[], "tuple[np.ndarray, np.ndarray] | None"]
"""Returns the U and V planes (views) of the picture being measured, or None without them."""


class CorruptionDetector:
    """Corrupted pictures of one rendition, measured on the pictures it is given.

    ``interval_s`` is the media time between the pictures it is given; it sizes the baseline.
    ``excluded`` adds regions (fractions x, y, w, h) to leave out, e.g. the graphics' regions,
    which have their own checks and edges that may sit on the grid.
    """

    def __init__(
        self,
        settings: CorruptionSettings,
        interval_s: float = 0.2,
        excluded: Sequence[Sequence[float]] = (),
    ) -> None:
        self.settings = settings
        self._regions = [(r.x, r.y, r.w, r.h) for r in settings.ignore]
        self._regions += [(r[0], r[1], r[2], r[3]) for r in excluded]
        self._history = np.zeros(max(WARMUP_SAMPLES, round(settings.baseline_s / interval_s)))
        self._samples = 0
        self._threshold: int | None = None
        self._shape: tuple[int, int] | None = None
        self._out = np.zeros(N_SCAN, np.float64)

    def _prepare(self, height: int, width: int) -> None:
        blocks = (height // MB, width // MB)
        skip = np.zeros(blocks, np.uint8)
        for x, y, w, h in self._regions:
            r0, r1 = math.floor(y * height / MB), math.ceil((y + h) * height / MB)
            c0, c1 = math.floor(x * width / MB), math.ceil((x + w) * width / MB)
            skip[r0:r1, c0:c1] = 1
        self._skip = skip
        self._left = np.zeros(blocks, np.uint8)
        self._top = np.zeros(blocks, np.uint8)
        self._flat = np.zeros(blocks, np.float32)
        self._shape = (height, width)
        self._samples = 0  # a new picture size is a new baseline
        self._threshold = None

    def update(
        self,
        y: np.ndarray,
        pts_s: float,
        *,
        bit_depth: int = 8,
        full_range: bool = False,
        chroma: ChromaPlanes | None = None,
    ) -> CorruptionMeasurement:
        if y.shape != self._shape:
            self._prepare(*y.shape)
        scale = 1.0 / (1 << (bit_depth - 8))
        limited = not full_range
        out = self._out
        macroblock_scan(y, scale, limited, self._skip, self._left, self._top, self._flat, out)
        garbage = int(out[S_SUB_BLACK])
        minimum = self.settings.min_blocks
        if out[S_FLAT] >= max(1, minimum - garbage) and chroma is not None:
            planes = chroma()
            if planes is not None:
                u, v = planes
                shift_x = int(round(math.log2(y.shape[1] / u.shape[1])))
                shift_y = int(round(math.log2(y.shape[0] / u.shape[0])))
                garbage += flat_colours(u, v, shift_x, shift_y, self._flat, scale, limited)
        damaged = int(out[S_DAMAGED])
        threshold = self._threshold
        corrupt = garbage >= minimum or (threshold is not None and damaged >= threshold)
        if not corrupt:
            self._learn(damaged)
        interior = float(out[S_INTERIOR])
        blockiness = float(out[S_BOUNDARY]) / interior if interior > 0 else 1.0
        return CorruptionMeasurement(pts_s, corrupt, damaged, garbage, threshold, blockiness)

    def damaged_region(self) -> tuple[float, float, float, float] | None:
        """The box [x, y, w, h] (fractions of the picture) around the damaged and garbage
        blocks of the last picture measured, or None when it had none."""
        if self._shape is None:
            return None
        left, top = self._left.astype(bool), self._top.astype(bool)
        across = left.copy()
        across[:, :-1] |= left[:, 1:]
        along = top.copy()
        along[:-1] |= top[1:]
        blocks = (across & along & ~self._skip.astype(bool)) | (self._flat == GARBAGE)
        rows, cols = np.nonzero(blocks)
        if rows.size == 0:
            return None
        height, width = self._shape
        x0, y0 = cols.min() * MB / width, rows.min() * MB / height
        x1 = min(1.0, (cols.max() + 1) * MB / width)
        y1 = min(1.0, (rows.max() + 1) * MB / height)
        return x0, y0, x1 - x0, y1 - y0

    def _learn(self, damaged: int) -> None:
        history = self._history
        history[self._samples % history.size] = damaged
        self._samples += 1
        n = min(self._samples, history.size)
        # The baseline moves slowly: its percentiles are worked out every 5th clean picture.
        if n >= WARMUP_SAMPLES and (self._threshold is None or self._samples % 5 == 0):
            p50, p90 = np.percentile(history[:n], (50, 90))
            self._threshold = math.ceil(p90 + (p90 - p50)) + self.settings.min_blocks
