"""Rendition mismatch: the rendition of an ABR ladder that shows something the others do not.

Every rendition of a ladder is made from the same source picture, so at the same media time
they should show the same thing at different sizes and qualities. A fault in one transcoder
path — the logo inserted upstream of all rungs but one, a rung garbled, a wrong source on a
rung — shows as one rendition that differs from the others where they agree.

Each compared picture is reduced to a *signature*: its luma averaged over a small grid of
cells (64x36 by default; area weights, as an area-filter downscale), expressed in 8-bit
limited-range code values whatever the bit depth and range, and lightly blurred (3x3
binomial) so that scaling phase and coding noise of a rung stay well below a cell.

Two signatures are compared cell by cell (absolute difference) and the differences are pooled
into overlapping *zones* of 4x4 cells (stride 2). A zone disagrees when its difference
exceeds ``LOCAL_FACTOR`` times the pair's normal difference plus ``threshold_cv``. The normal
difference is the larger of the pair's median zone difference in this very comparison (a
fault covering less than half the picture does not move it, while busy content that a soft
low-bitrate rung renders less faithfully raises it everywhere at once) and the pair's learned
baseline: a slow average of that median over comparisons where the pair agreed. A picture
whose median difference exceeds ``PICTURE_FACTOR`` times the baseline plus ``threshold_cv``
disagrees as a whole (a different or wholly garbled picture), zone by zone against the
baseline alone.

With three or more renditions, a rendition is the outlier in a zone when it disagrees there
with a strict majority of the others while the rest, at least two and a majority, agree: it
is named, with the renditions it was compared against and the region where it deviates. A
difference that no majority explains names nobody. With two renditions nothing says which
one is right: a difference is reported without naming either (``rendition`` None).

Measured on the test ladder (384x216 at 600 kbit/s, 256x144 at 250, 192x108 at 60: visibly
blocky) the largest excess of a clean zone over the local threshold was 0.8 code values; a
missing semi-transparent logo exceeded it by 16 or more.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import combinations
from typing import Annotated

import numpy as np
from annotated_types import Interval
from numba import njit

ZONE_CELLS = 4
"""Zones are ZONE_CELLS x ZONE_CELLS cells (at 64x36: 6 % of the width, 11 % of the height)."""
ZONE_STRIDE = 2
"""Zones overlap by half, so a graphic straddling a zone border is not diluted."""
LOCAL_FACTOR = 4.0
"""A zone disagrees beyond this many times the pair's normal difference (plus threshold_cv):
clean zones of the test ladder exceeded 4x their pair's median by 0.8 code values at most."""
PICTURE_FACTOR = 3.0
"""A picture disagrees as a whole when its median zone difference exceeds this many times the
learned baseline (plus threshold_cv)."""
BASELINE_PRIOR_CV = 1.0
"""The baseline a pair starts from: about what two clean rungs differ by on busy content."""
BASELINE_WEIGHT = 0.02
"""Weight of each agreeing comparison in the baseline: a time constant of 50 comparisons."""


@dataclass(frozen=True)
class LadderSettings:
    """Settings of the rendition comparison (``rendition_mismatch``)."""

    grid_width: Annotated[int, Interval(ge=16, le=256)] = 64
    """Cells across the signature (a 1080p cell is 30x30 pixels at 64x36)."""
    grid_height: Annotated[int, Interval(ge=9, le=144)] = 36
    """Cells down the signature; renditions smaller than the grid are not compared."""
    comparisons_per_second: Annotated[float, Interval(ge=0.5, le=25.0)] = 5.0
    """Media times compared per second (rounded to a whole number of frames: 5 is every 5th
    picture at 25 fps, every 6th at 30); only their pictures are measured."""
    threshold_cv: Annotated[float, Interval(ge=1.0, le=200.0)] = 8.0
    """Sensitivity: how far a zone (mean absolute luma difference, 8-bit code values) must
    exceed its pair's normal difference to disagree. Lower finds fainter graphics."""
    max_skew_s: Annotated[float, Interval(ge=1.0, le=120.0)] = 12.0
    """How long a media time waits for late renditions (HLS segments of different renditions
    arrive up to a target duration apart) before it is compared without them."""


@dataclass(frozen=True, slots=True)
class Deviation:
    """One rendition differs from the consensus of the others (or, with two, they differ)."""

    rendition: str | None
    """The deviating rendition; None when two renditions differ and neither can be named."""
    consensus: tuple[str, ...]
    """The renditions that agree with each other where it deviates (empty with two)."""
    distance_cv: float
    """Largest zone difference to the consensus (mean over its members), 8-bit code values."""
    baseline_cv: float
    """The learned normal difference to the consensus (mean over its members)."""
    roi: tuple[float, float, float, float]
    """Where it deviates: x, y, w, h as fractions of the picture."""


@dataclass(frozen=True, slots=True)
class LadderVerdict:
    """The renditions compared at one media time, and those that deviate (none: all agree)."""

    compared: tuple[str, ...]
    deviations: tuple[Deviation, ...]


def _axis_table(n: int, cells: int) -> tuple[np.ndarray, np.ndarray]:
    """Area weights of ``n`` pixels falling into ``cells`` cells (n >= cells).

    Per cell: [first whole pixel, end of whole pixels, partial pixel before or -1, partial
    pixel after or -1] and the two partial pixels' weights.
    """
    table = np.full((cells, 4), -1, np.int32)
    weights = np.zeros((cells, 2), np.float64)
    scale = n / cells
    for c in range(cells):
        a, b = c * scale, (c + 1) * scale
        first, end = math.ceil(a - 1e-9), math.floor(b + 1e-9)
        table[c, 0], table[c, 1] = first, end
        if a < first - 1e-9:
            table[c, 2], weights[c, 0] = first - 1, first - a
        if b > end + 1e-9:
            table[c, 3], weights[c, 1] = end, b - end
    return table, weights


@njit(cache=True, nogil=True, fastmath=True)
def _add_cells(
    line: np.ndarray, cols: np.ndarray, col_w: np.ndarray, weight: float, out: np.ndarray
) -> None:  # pragma: no cover - jitted
    for j in range(out.shape[0]):
        whole = line[cols[j, 0] : cols[j, 1]]
        s = 0.0
        for k in range(whole.shape[0]):
            s += whole[k]
        if cols[j, 2] >= 0:
            s += col_w[j, 0] * line[cols[j, 2]]
        if cols[j, 3] >= 0:
            s += col_w[j, 1] * line[cols[j, 3]]
        out[j] += weight * s


@njit(cache=True, nogil=True, fastmath=True)
def area_signature(
    y: np.ndarray,
    rows: np.ndarray,
    row_w: np.ndarray,
    cols: np.ndarray,
    col_w: np.ndarray,
    gain: float,
    offset: float,
    acc: np.ndarray,
    tmp: np.ndarray,
    out: np.ndarray,
) -> None:  # pragma: no cover - jitted
    """Area-average luma plane ``y`` into ``out`` (grid_height, grid_width), scaled to
    ``mean * gain + offset``, then blurred 3x3 (binomial, edges repeated).

    rows/row_w, cols/col_w: ``_axis_table`` of each axis. acc: int32[width] scratch, tmp:
    float32 like ``out``. Whole rows of a cell are summed column-wise first (a unit-stride
    loop over the full width, which vectorises), then reduced into cells once per cell row.
    """
    gh, gw = out.shape
    width = y.shape[1]
    for i in range(gh):
        cells = tmp[i]
        for j in range(gw):
            cells[j] = 0.0
        for k in range(width):
            acc[k] = 0
        for r in range(rows[i, 0], rows[i, 1]):
            line = y[r]
            for k in range(width):
                acc[k] += np.int32(line[k])
        _add_cells(acc, cols, col_w, 1.0, cells)
        if rows[i, 2] >= 0:
            _add_cells(y[rows[i, 2]], cols, col_w, row_w[i, 0], cells)
        if rows[i, 3] >= 0:
            _add_cells(y[rows[i, 3]], cols, col_w, row_w[i, 1], cells)
    scale = gain * gh * gw / (y.shape[0] * width)
    for i in range(gh):
        up = max(i - 1, 0)
        down = min(i + 1, gh - 1)
        for j in range(gw):
            v = 0.25 * tmp[up, j] + 0.5 * tmp[i, j] + 0.25 * tmp[down, j]
            out[i, j] = v * scale + offset
    for i in range(gh):
        line = tmp[0]  # the unblurred cells are no longer needed: row 0 is scratch now
        for j in range(gw):
            line[j] = out[i, j]
        for j in range(gw):
            left = line[max(j - 1, 0)]
            right = line[min(j + 1, gw - 1)]
            out[i, j] = 0.25 * left + 0.5 * line[j] + 0.25 * right


class PictureSignature:
    """Signatures of one rendition's pictures; the area tables are built once per size."""

    def __init__(self, settings: LadderSettings) -> None:
        self.grid = (settings.grid_height, settings.grid_width)
        self._shape: tuple[int, int] | None = None
        self._tables: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._acc = np.zeros(0, np.int32)
        self._tmp = np.zeros(self.grid, np.float32)

    def __call__(self, y: np.ndarray, bit_depth: int, full_range: bool) -> np.ndarray | None:
        """The signature of luma plane ``y`` (a new float32 array), or None when the picture
        is smaller than the grid."""
        gh, gw = self.grid
        if y.shape != self._shape:
            self._shape = (y.shape[0], y.shape[1])
            if y.shape[0] < gh or y.shape[1] < gw:
                self._tables = None
            else:
                self._tables = (*_axis_table(y.shape[0], gh), *_axis_table(y.shape[1], gw))
                self._acc = np.zeros(y.shape[1], np.int32)
        if self._tables is None:
            return None
        if full_range:
            gain, offset = 219.0 / ((1 << bit_depth) - 1), 16.0
        else:
            gain, offset = 1.0 / (1 << (bit_depth - 8)), 0.0
        out = np.empty(self.grid, np.float32)
        area_signature(y, *self._tables, gain, offset, self._acc, self._tmp, out)
        return out


@njit(cache=True, nogil=True, fastmath=True)
def pair_zones(
    stack: np.ndarray, pairs: np.ndarray, zones: np.ndarray, medians: np.ndarray
) -> None:  # pragma: no cover - jitted
    """For each pair (a, b) of ``pairs``: the mean of |stack[a] - stack[b]| over every zone
    into ``zones[p]`` (ZONE_CELLS square, every ZONE_STRIDE cells) and its median into
    ``medians[p]``."""
    k, s = ZONE_CELLS, ZONE_STRIDE
    zh, zw = zones.shape[1], zones.shape[2]
    gh, gw = stack.shape[1], stack.shape[2]
    d = np.empty((gh, gw), np.float32)
    for p in range(pairs.shape[0]):
        a = stack[pairs[p, 0]]
        b = stack[pairs[p, 1]]
        for i in range(gh):
            for j in range(gw):
                d[i, j] = abs(a[i, j] - b[i, j])
        z = zones[p]
        for zi in range(zh):
            for zj in range(zw):
                total = 0.0
                for i in range(zi * s, zi * s + k):
                    for j in range(zj * s, zj * s + k):
                        total += d[i, j]
                z[zi, zj] = total / (k * k)
        medians[p] = np.median(z)


class LadderConsensus:
    """Compares signatures of several renditions at one media time; learns each pair's normal
    difference. Renditions are told apart by name; pairs are remembered across calls."""

    def __init__(self, settings: LadderSettings) -> None:
        self.settings = settings
        self.zone_grid = (
            (settings.grid_height - ZONE_CELLS) // ZONE_STRIDE + 1,
            (settings.grid_width - ZONE_CELLS) // ZONE_STRIDE + 1,
        )
        self._baselines: dict[tuple[str, str], float] = {}

    def baseline_cv(self, a: str, b: str) -> float:
        """The learned normal difference of renditions ``a`` and ``b``."""
        return self._baselines.get((a, b) if a < b else (b, a), BASELINE_PRIOR_CV)

    def compare(self, signatures: Mapping[str, np.ndarray]) -> LadderVerdict:
        """Judge signatures (same grid) of the renditions' pictures at one media time."""
        names = tuple(sorted(signatures))
        n = len(names)
        if n < 2:
            return LadderVerdict(names, ())
        pairs, members = _pairs(n)
        zones = np.empty((len(pairs), *self.zone_grid), np.float64)
        medians = np.empty(len(pairs), np.float64)
        pair_zones(np.stack([signatures[name] for name in names]), pairs, zones, medians)
        keys = [(names[a], names[b]) for a, b in pairs]
        baselines = np.array([self._baselines.get(key, BASELINE_PRIOR_CV) for key in keys])
        threshold = self.settings.threshold_cv
        whole = medians > PICTURE_FACTOR * baselines + threshold
        normal = np.where(whole, baselines, np.maximum(medians, baselines))
        limits = LOCAL_FACTOR * normal + threshold
        disagree = zones > limits[:, None, None]
        agreed = ~disagree.any(axis=(1, 2))
        for p in np.flatnonzero(agreed):
            learned = baselines[p] + BASELINE_WEIGHT * (medians[p] - baselines[p])
            self._baselines[keys[p]] = float(learned)
        if agreed.all():
            return LadderVerdict(names, ())
        if n == 2:
            mask = disagree[0]
            distance = round(float(zones[0][mask].max()), 2)
            difference = np.abs(signatures[names[0]] - signatures[names[1]])
            roi = _roi(mask, difference, float(limits[0]))
            baseline = round(float(baselines[0]), 2)
            return LadderVerdict(names, (Deviation(None, (), distance, baseline, roi),))
        # Zones where each rendition disagrees with a strict majority of the others.
        counts = np.tensordot(members, disagree.astype(np.int32), axes=1)
        outlier = 2 * counts > n - 1
        flagged = outlier.sum(axis=0)
        named = (n - flagged >= 2) & (n - flagged > flagged)
        deviations = []
        for r in range(n):
            where = outlier[r] & named
            if not where.any():
                continue
            consensus = [s for s in range(n) if s != r and not (outlier[s] & where).any()]
            index = [_pair_index(r, s, n) for s in consensus]
            distance = zones[index].mean(axis=0)[where].max()
            baseline = baselines[index].mean()
            mine = signatures[names[r]]
            difference = np.mean([np.abs(mine - signatures[names[s]]) for s in consensus], axis=0)
            deviations.append(
                Deviation(
                    names[r],
                    tuple(names[s] for s in consensus),
                    round(float(distance), 2),
                    round(float(baseline), 2),
                    _roi(where, difference, float(limits[index].mean())),
                )
            )
        return LadderVerdict(names, tuple(deviations))


@functools.cache
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Every pair (a < b) of n renditions, and the (n, pairs) incidence of renditions in pairs."""
    pairs = np.array(list(combinations(range(n), 2)), np.int64).reshape(-1, 2)
    members = np.zeros((n, len(pairs)), np.int32)
    for p, (a, b) in enumerate(pairs):
        members[a, p] = members[b, p] = 1
    return pairs, members


def _pair_index(a: int, b: int, n: int) -> int:
    """Index of the pair {a, b} in ``_pairs(n)``."""
    a, b = min(a, b), max(a, b)
    return a * n - a * (a + 1) // 2 + (b - a - 1)


def _roi(
    zones: np.ndarray, difference: np.ndarray, threshold_cv: float
) -> tuple[float, float, float, float]:
    """Where a rendition deviates: the bounding box of the cells of the marked zones whose
    ``difference`` exceeds ``threshold_cv`` (of the zones themselves when no single cell
    does), as fractions (x, y, w, h) of the picture."""
    covered = np.zeros(difference.shape, np.bool_)
    for zi, zj in np.argwhere(zones):
        top, left = zi * ZONE_STRIDE, zj * ZONE_STRIDE
        covered[top : top + ZONE_CELLS, left : left + ZONE_CELLS] = True
    cells = covered & (difference > threshold_cv)
    if not cells.any():
        cells = covered
    rows = np.flatnonzero(cells.any(axis=1))
    cols = np.flatnonzero(cells.any(axis=0))
    grid_h, grid_w = difference.shape
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    left, right = int(cols[0]), int(cols[-1]) + 1
    return (
        round(left / grid_w, 3),
        round(top / grid_h, 3),
        round((right - left) / grid_w, 3),
        round((bottom - top) / grid_h, 3),
    )
