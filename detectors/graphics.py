"""Graphics on air: is each configured graphic there when it should be, and is it stuck.

A graphic is watched in a region of interest given as fractions of the picture (x, y, w, h),
so one configuration serves every rendition of a ladder. The region is read from the luma
plane as a grid of cell averages of at most ``MAX_CELLS`` cells (k x k pixels each, k chosen
from the region's size in that rendition), which keeps the cost per graphic to a few tens of
µs and keeps the grids of a ladder's renditions alike (a 0.16 x 0.20 logo region: 51 x 35
cells at 360p, 68 x 47 at 720p, 61 x 43 at 1080p).

**Presence.** Each cell's luma gradient becomes a doubled-angle orientation vector
(gx² - gy², 2·gx·gy) / |g|: it keeps an edge's orientation and strength but not its sign, so a
logo edge matches whether the picture behind it is darker or brighter than the logo. The
graphic is a template of such vectors with a mask around its edges, and the presence score is
their normalised correlation (cosine) with the picture's, best over a small shift search. A
semi-transparent logo keeps its edges over any background that shows through it, busy or
dark; where it is missing, the background's orientations are unrelated to the template and the
score stays near 0. Measured on the test clips (180p to 1080p, CRF 18 to 45, busy and dark
backgrounds, learned or from artwork): present 0.35-0.99, absent at most 0.20.

The template comes from ``reference`` (a PNG of the region, its alpha channel marking the
graphic; scaled to the region's grid in each rendition) or is learned from the feed with
``learn``: orientation vectors are averaged over pictures while the picture moves, and the
cells whose average keeps at least ``CONSISTENT`` of its strength are the graphic (edges that
persist while everything else moves: Wang et al., "A Robust Method for TV Logo Tracking in
Video Streams", ICME 2006, use this multi-frame gradient for semi-transparent logos).

**Stuck graphics.** A region declared ``changing`` (a clock, a ticker, a score bug) that has
not changed for ``raise_after`` while the rest of the picture moves is frozen; a region
declared static that keeps changing is the reverse fault. A change is a visible one: cells
differing from the picture at the last change by a third of the region's contrast, which the
coding noise of a still graphic, even at low bitrates, does not reach.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from annotated_types import Interval
from numba import njit

from detectors.corruption import BOX_CONTRAST_CV, is_opaque_box, opaque_box

MAX_CELLS = 4096
"""Cells of a region's grid at most (cells are 2 x 2 pixels at least, more as it needs)."""
EDGE_CV = 6.0
"""A learned edge is at least this strong (8-bit code values across two cells)."""
CONSISTENT = 0.5
"""A cell is part of a learned graphic when its average orientation vector keeps at least this
fraction of its average strength, and more over few pictures: n unrelated orientations average
to a consistency c with a chance of about exp(-n·c²) (Rayleigh), so the threshold is raised to
keep that under ``CHANCE`` (0.68 over 20 pictures, 0.5 from 37 on)."""
CHANCE = 1e-4
MIN_CORE_CELLS = 12
"""Fewer persistent edge cells than this: nothing to learn (the graphic was not on air)."""
LEARN_MIN_SAMPLES = 20
"""Moving pictures a learned template needs at least, however short ``learn`` is."""
MASK_DILATION = 2
"""The mask compares the graphic's edges and this many cells around them, where the picture
must not have the graphic's edges: that is what tells a logo from busy content."""
SEARCH_LEARNED = 1
SEARCH_REFERENCE = 2
"""Shift search in cells: a learned template sits where it was learned; artwork may be off by
a few pixels (2 cells is 4 pixels at 360p, 10 at 1080p). Artwork is searched coarse to fine
(every other shift, then around the best) until found, then one cell around where it was."""
HYSTERESIS = 0.05
"""Present from ``match_threshold`` up, missing below it minus this: a score wandering around
the threshold does not flip the verdict at every picture."""
CHANGE_RELATIVE = 0.33
"""A cell changed when it differs from the last change by more than this fraction of the
region's own contrast (its brightest cell minus its darkest)..."""
CHANGE_MIN_CV = 16.0
"""...and by at least this (8-bit code values). Coding noise scales with contrast too: on a
clock plate coded at CRF 42 it reaches 24 code values in up to 7 % of the cells between two
looks, 64 (a third of the plate's contrast) in 0.2 %; a tick changes 2 % of them by more."""
CHANGE_FRACTION = 0.005
"""A region changed when this fraction of its cells (at least 3) changed: one digit of a clock
is a few percent of its plate."""

_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_WINDOW = re.compile(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})")

Expect = Literal["always", "never", "schedule"]
DuringBreaks = Literal["absent", "present", "any"]


@dataclass(frozen=True)
class GraphicSettings:
    """One graphic to watch: where it is, how to recognise it, when it should be on air."""

    name: str
    """Names the graphic in alarms and metrics."""
    roi: tuple[float, ...]
    """Its region [x, y, w, h], fractions of the picture."""
    learn_s: Annotated[float, Interval(ge=1.0, le=3600.0)] | None = None
    """Learn the graphic from this much moving picture at the start (no artwork needed)."""
    reference: str | None = None
    """Or recognise it from a PNG of the region (alpha marks the graphic's pixels)."""
    expect: Expect = "always"
    """When it should be on air: always, never, or during the ``schedule`` windows."""
    schedule: tuple[str, ...] = ()
    """Time-of-day windows 'HH:MM-HH:MM' (local time) of ``expect: schedule``."""
    during_breaks: DuringBreaks = "any"
    """In an SCTE-35 ad break (a channel with ``scte35``): any, not judged (no
    graphic_missing while the ads play); absent, must be off air (graphic_unexpected);
    present, must stay on air. ``expect: never`` holds in breaks too."""
    changing: bool | None = None
    """True: the region must keep changing (clock, ticker); False: it must hold still."""
    match_threshold: Annotated[float, Interval(ge=0.05, le=0.95)] = 0.3
    """Presence score (0..1) from which the graphic is on air."""

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(
                f"name: must be letters, digits, '_', '.' or '-' (it goes into metrics), "
                f"got {self.name!r}"
            )
        roi = self.roi
        if len(roi) != 4:
            raise ValueError(
                f"roi: must be [x, y, w, h], fractions of the picture, got {list(roi)}"
            )
        x, y, w, h = roi
        if not (0 <= x < 1 and 0 <= y < 1 and 0 < w <= 1 and 0 < h <= 1):
            raise ValueError(f"roi: x and y must be in 0..1, w and h in (0, 1], got {list(roi)}")
        if x + w > 1 + 1e-9 or y + h > 1 + 1e-9:
            raise ValueError(
                f"roi: reaches outside the picture (x+w and y+h must be <= 1), got {list(roi)}"
            )
        if self.learn_s is not None and self.reference is not None:
            raise ValueError("reference: give learn or reference, not both")
        if self.expect == "never" and self.learn_s is not None:
            raise ValueError(
                "learn: a graphic never expected on air cannot be learned from the feed; "
                "give a reference"
            )
        if self.expect == "schedule" and not self.schedule:
            raise ValueError("expect: schedule needs schedule windows, e.g. ['06:00-09:00']")
        if self.schedule and self.expect != "schedule":
            raise ValueError("schedule: windows need expect: schedule")
        for window in self.schedule:
            parse_window(window)
        if self.learn_s is None and self.reference is None and self.changing is None:
            raise ValueError(
                "nothing to check: give learn or reference (is it on air?) and/or changing "
                "(is it stuck?)"
            )

    @property
    def matched(self) -> bool:
        """Whether presence is checked (the graphic has a template)."""
        return self.learn_s is not None or self.reference is not None


def parse_window(window: str) -> tuple[float, float]:
    """``'06:00-09:30'`` → (21600.0, 34200.0) seconds of the day; a window may wrap midnight."""
    match = _WINDOW.fullmatch(window.strip())
    if match:
        h0, m0, h1, m1 = (int(g) for g in match.groups())
        if h0 < 24 and m0 < 60 and (h1 < 24 or (h1, m1) == (24, 0)) and m1 < 60:
            start, end = 3600.0 * h0 + 60.0 * m0, 3600.0 * h1 + 60.0 * m1
            if start != end:
                return start, end
    raise ValueError(f"schedule: {window!r} is not a time window 'HH:MM-HH:MM'")


def in_windows(windows: Sequence[tuple[float, float]], seconds_of_day: float) -> bool:
    for start, end in windows:
        if start < end:
            if start <= seconds_of_day < end:
                return True
        elif seconds_of_day >= start or seconds_of_day < end:  # wraps midnight
            return True
    return False


# --- Geometry ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Geometry:
    """Where a region falls in pictures of one size, and its grid of k x k pixel cells."""

    width: int
    height: int
    k: int  # cell size in pixels
    rows: int  # grid size over the region
    cols: int
    margin: int  # cells read around the region, for the gradient and the shift search
    row0: int  # pixel of the first cell read (may be outside the picture: clamped)
    col0: int


def geometry(roi: Sequence[float], width: int, height: int, margin: int) -> Geometry:
    x, y, w, h = roi
    # Pixels wholly inside the region: a region drawn tight around a clock's plate must not
    # take in a column of the moving picture beside it.
    c0, r0 = math.ceil(x * width - 1e-6), math.ceil(y * height - 1e-6)
    c1 = max(c0 + 1, min(width, math.floor((x + w) * width + 1e-6)))
    r1 = max(r0 + 1, min(height, math.floor((y + h) * height + 1e-6)))
    pixels = max(1, (c1 - c0) * (r1 - r0))
    # Cells of 2 x 2 pixels at least: averaging tames the coding noise of low bitrates.
    k = max(2 if min(c1 - c0, r1 - r0) >= 12 else 1, math.ceil(math.sqrt(pixels / MAX_CELLS)))
    k = min(k, max(1, (c1 - c0) // 3), max(1, (r1 - r0) // 3), width, height)
    rows, cols = max(3, (r1 - r0) // k), max(3, (c1 - c0) // k)
    return Geometry(width, height, k, rows, cols, margin, r0 - margin * k, c0 - margin * k)


# --- Kernels ----------------------------------------------------------------------------------

# Layout of graphic_step's output vector.
O_SCORE = 0  # best presence score (NaN without a template)
O_SHIFT_ROW = 1  # shift of the best match, cells
O_SHIFT_COL = 2
O_CHANGED = 3  # cells changed since the reference grid (-1: no reference)
O_BOX_STDDEV = 4  # luma std-dev inside the graphic's box, code values (-1: no box)
O_BOX_OUTSIDE = 5  # fraction of the region outside the box that differs from it
N_OUT = 6


@njit(cache=True, nogil=True, fastmath=True)
def region_cells(
    y: np.ndarray,
    row0: int,
    col0: int,
    k: int,
    scale: float,
    cells: np.ndarray,
    line_sums: np.ndarray,
) -> None:  # pragma: no cover - jitted
    """Average k x k pixel cells of luma ``y`` from (row0, col0) into ``cells``, in 8-bit code
    values. Cells outside the picture repeat its edge. Cells of 4 pixels or more average every
    other line: the cell stays a low-pass of the picture at half the reads.

    scale: 1 / (pixels summed per cell · 2^(bit_depth-8)). line_sums: int32 work row at least
    cols · k long.
    """
    h, w = y.shape
    rows, cols = cells.shape
    first = max(col0, 0)
    last = min(col0 + cols * k, w)
    span = last - first
    stride = 2 if k >= 4 else 1
    for i in range(rows):
        r = min(max(row0 + i * k, 0), h - k)
        acc = line_sums[:span]
        for x in range(span):
            acc[x] = 0
        for q in range(0, k, stride):
            line = y[r + q, first:last]
            for x in range(span):  # unit stride from 0: vectorised
                acc[x] += np.int32(line[x])
        out = cells[i]
        for j in range(cols):
            c = min(max(col0 + j * k, first), last - k) - first
            s = np.int32(0)
            for p in range(k):
                s += acc[c + p]
            out[j] = s * scale


def cell_scale(k: int, bit_depth: int) -> float:
    """``region_cells``' scale for k x k cells of a picture of this bit depth."""
    lines = (k + 1) // 2 if k >= 4 else k
    return 1.0 / (lines * k * (1 << (bit_depth - 8)))


@njit(cache=True, nogil=True, fastmath=True)
def orientations(
    cells: np.ndarray, fa: np.ndarray, fb: np.ndarray, fe: np.ndarray
) -> None:  # pragma: no cover - jitted
    """Doubled-angle gradient vectors (fa, fb) of ``cells`` and their squared strength fe
    (central differences; 0 on the border). fa² + fb² = gx² + gy², so fe is that too."""
    rows, cols = cells.shape
    fa[0] = 0.0
    fb[0] = 0.0
    fe[0] = 0.0
    fa[rows - 1] = 0.0
    fb[rows - 1] = 0.0
    fe[rows - 1] = 0.0
    for i in range(1, rows - 1):
        up = cells[i - 1, 1 : cols - 1]
        left = cells[i, 0 : cols - 2]
        right = cells[i, 2:cols]
        down = cells[i + 1, 1 : cols - 1]
        a = fa[i, 1 : cols - 1]
        b = fb[i, 1 : cols - 1]
        e = fe[i, 1 : cols - 1]
        for j in range(cols - 2):  # branch-free from 0: vectorised
            gx = right[j] - left[j]
            gy = down[j] - up[j]
            sq = gx * gx + gy * gy
            inv = 1.0 / math.sqrt(max(sq, np.float32(1e-12)))
            a[j] = (gx * gx - gy * gy) * inv
            b[j] = 2.0 * gx * gy * inv
            e[j] = sq
        fa[i, 0] = fb[i, 0] = fe[i, 0] = 0.0
        fa[i, cols - 1] = fb[i, cols - 1] = fe[i, cols - 1] = 0.0


@njit(cache=True, nogil=True, fastmath=True)
def shift_score(
    fa: np.ndarray,
    fb: np.ndarray,
    fe: np.ndarray,
    ta: np.ndarray,
    tb: np.ndarray,
    mask: np.ndarray,
    template_norm: float,
    row: int,
    col: int,
) -> float:  # pragma: no cover - jitted
    """The score of the template laid on the field with its corner at (row, col): the cosine
    of the template's vectors and the field's over the mask."""
    rows, cols = ta.shape
    num = 0.0
    energy = 0.0
    for i in range(rows):
        a = fa[row + i, col : col + cols]
        b = fb[row + i, col : col + cols]
        e = fe[row + i, col : col + cols]
        t1 = ta[i]
        t2 = tb[i]
        m = mask[i]
        row_num = np.float32(0.0)  # float32 rows vectorise; the sums are float64
        row_energy = np.float32(0.0)
        for j in range(cols):
            row_num += t1[j] * a[j] + t2[j] * b[j]
            row_energy += m[j] * e[j]
        num += float(row_num)
        energy += float(row_energy)
    return num / math.sqrt(template_norm * energy) if energy > 1e-6 else 0.0


@njit(cache=True, nogil=True, fastmath=True)
def graphic_step(
    y: np.ndarray,
    row0: int,
    col0: int,
    k: int,
    scale: float,
    margin: int,
    cells: np.ndarray,
    line_sums: np.ndarray,
    fa: np.ndarray,
    fb: np.ndarray,
    fe: np.ndarray,
    ta: np.ndarray,
    tb: np.ndarray,
    mask: np.ndarray,
    template_norm: float,
    search: int,
    centre_row: int,
    centre_col: int,
    refine_from: float,
    reference: np.ndarray,
    compare: bool,
    box: np.ndarray,
    out: np.ndarray,
) -> None:  # pragma: no cover - jitted
    """Everything one graphic needs from one picture, in one call.

    Reads the region (with ``margin`` cells around it) into ``cells``; with a template
    (``search`` >= 0) scores its match at shifts up to ``search`` cells around the centre
    shift (the sum of both within margin - 1): every shift for a search of 1, else every
    other shift and then the shifts around the best of them if it scores ``refine_from`` or
    more; with ``compare`` counts the region's cells that differ from ``reference`` by more
    than CHANGE_RELATIVE of its contrast (at least CHANGE_MIN_CV); with a box (box[2] >
    box[0]) measures the graphic's box for the opaque-box test.
    """
    region_cells(y, row0, col0, k, scale, cells, line_sums)
    rows, cols = ta.shape
    out[O_SCORE] = np.nan
    out[O_SHIFT_ROW] = 0.0
    out[O_SHIFT_COL] = 0.0
    if search >= 0:
        orientations(cells, fa, fb, fe)
        step = 1 if search <= 1 else 2
        best = -2.0
        best_row = centre_row
        best_col = centre_col
        for dy in range(centre_row - search, centre_row + search + 1, step):
            for dx in range(centre_col - search, centre_col + search + 1, step):
                score = shift_score(
                    fa, fb, fe, ta, tb, mask, template_norm, margin + dy, margin + dx
                )
                if score > best:
                    best, best_row, best_col = score, dy, dx
        if step == 2 and best >= refine_from:
            coarse_row = best_row
            coarse_col = best_col
            for dy in range(coarse_row - 1, coarse_row + 2):
                for dx in range(coarse_col - 1, coarse_col + 2):
                    if (dy - coarse_row) % 2 == 0 and (dx - coarse_col) % 2 == 0:
                        continue  # scored already
                    if abs(dy - centre_row) > search or abs(dx - centre_col) > search:
                        continue
                    score = shift_score(
                        fa, fb, fe, ta, tb, mask, template_norm, margin + dy, margin + dx
                    )
                    if score > best:
                        best, best_row, best_col = score, dy, dx
        out[O_SCORE] = best
        out[O_SHIFT_ROW] = best_row
        out[O_SHIFT_COL] = best_col
    out[O_CHANGED] = -1.0
    if compare:
        low = 1e9
        high = -1e9
        for i in range(1, rows - 1):  # the border cells may straddle the region's edge
            now = cells[margin + i, margin + 1 : margin + cols - 1]
            for j in range(cols - 2):
                low = min(low, now[j])
                high = max(high, now[j])
        threshold = max(CHANGE_MIN_CV, CHANGE_RELATIVE * (high - low))
        changed = 0
        for i in range(1, rows - 1):
            now = cells[margin + i, margin : margin + cols]
            then = reference[i]
            for j in range(1, cols - 1):
                if abs(now[j] - then[j]) > threshold:
                    changed += 1
        out[O_CHANGED] = changed
    out[O_BOX_STDDEV] = -1.0
    out[O_BOX_OUTSIDE] = 0.0
    if box[2] > box[0]:
        stddev, outside = opaque_box(cells, margin, rows, cols, box, BOX_CONTRAST_CV)
        out[O_BOX_STDDEV] = stddev
        out[O_BOX_OUTSIDE] = outside


@njit(cache=True, nogil=True, fastmath=True)
def lattice_step(
    y: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    keep: np.ndarray,
    scale: float,
    previous: np.ndarray,
    first: bool,
    out: np.ndarray,
) -> None:  # pragma: no cover - jitted
    """Motion and flatness of a picture from a sparse lattice of luma samples.

    out[0]: mean absolute difference against ``previous`` (the lattice of the last call),
    out[1]: standard deviation of the samples, both in 8-bit code values; ``previous`` is
    updated. ``keep`` masks out the samples inside graphic regions.
    """
    diff = 0.0
    total = 0.0
    total_sq = 0.0
    n = 0
    for i in range(rows.shape[0]):
        line = y[rows[i]]
        for j in range(cols.shape[0]):
            if keep[i, j]:
                v = line[cols[j]] * scale
                diff += abs(v - previous[i, j])
                total += v
                total_sq += v * v
                previous[i, j] = v
                n += 1
    if n == 0:
        out[0] = 0.0
        out[1] = 0.0
        return
    mean = total / n
    out[0] = 0.0 if first else diff / n
    out[1] = math.sqrt(max(total_sq / n - mean * mean, 0.0))


# --- Templates --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """A graphic as orientation vectors on its region's grid, and where to compare them."""

    ta: np.ndarray  # float32 (rows, cols), 0 outside the graphic's edges
    tb: np.ndarray
    mask: np.ndarray  # float32 0/1: the edges and MASK_DILATION cells around them
    norm: float  # sum of ta² + tb²
    box: np.ndarray  # int64 [row0, col0, row1, col1): the graphic's box on the grid, or zeros
    search: int


def _dilate(core: np.ndarray, radius: int) -> np.ndarray:
    out = core.copy()
    rows, cols = core.shape
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            shifted = np.zeros_like(core)
            shifted[max(dy, 0) : rows + min(dy, 0), max(dx, 0) : cols + min(dx, 0)] = core[
                max(-dy, 0) : rows + min(-dy, 0), max(-dx, 0) : cols + min(-dx, 0)
            ]
            out |= shifted
    return out


def _neighbours(core: np.ndarray) -> np.ndarray:
    """How many of each cell's 8 neighbours are set."""
    padded = np.pad(core.astype(np.int32), 1)
    rows, cols = core.shape
    total = np.zeros((rows, cols), np.int32)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            if (dy, dx) != (1, 1):
                total += padded[dy : dy + rows, dx : dx + cols]
    return total


def _box_of(cells: np.ndarray, shrink: int) -> np.ndarray:
    """The box holding 98 % of the true cells along each axis (so stray cells do not stretch
    it), shrunk by ``shrink`` cells; zeros if nothing or too small is left."""
    rows, cols = np.nonzero(cells)
    if rows.size == 0:
        return np.zeros(4, np.int64)
    r0, r1 = np.percentile(rows, (1, 99))
    c0, c1 = np.percentile(cols, (1, 99))
    box = np.array(
        [
            math.floor(r0) + shrink,
            math.floor(c0) + shrink,
            math.ceil(r1) + 1 - shrink,
            math.ceil(c1) + 1 - shrink,
        ],
        np.int64,
    )
    if box[2] - box[0] < 2 or box[3] - box[1] < 2:
        return np.zeros(4, np.int64)
    return box


def make_template(
    ta: np.ndarray, tb: np.ndarray, core: np.ndarray, box: np.ndarray, search: int
) -> Template:
    """A template of the orientation vectors (ta, tb) at the ``core`` cells."""
    ta = np.where(core, ta, 0.0).astype(np.float32)
    tb = np.where(core, tb, 0.0).astype(np.float32)
    mask = _dilate(core, MASK_DILATION).astype(np.float32)
    norm = float(np.sum(ta.astype(np.float64) ** 2 + tb.astype(np.float64) ** 2))
    return Template(ta, tb, mask, norm, box, search)


@dataclass(frozen=True)
class Reference:
    """Artwork of a graphic's region: luma in 8-bit code values, alpha 0..1 (None: opaque)."""

    luma: np.ndarray  # float32 (h, w)
    alpha: np.ndarray | None


def load_reference(path: str) -> Reference:
    """Read a PNG (or any image OpenCV reads), gray or colour, with or without alpha."""
    import cv2

    try:
        with open(path, "rb") as file:
            data = np.frombuffer(file.read(), np.uint8)
    except OSError as error:
        raise ValueError(f"reference: cannot read {path!r}: {error.strerror}") from None
    logging = cv2.utils.logging
    level = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_SILENT)  # our one-line error says it all
    try:
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    finally:
        logging.setLogLevel(level)
    if image is None or image.size == 0:
        raise ValueError(f"reference: {path!r} is not an image OpenCV can read")
    full = 65535.0 if image.dtype == np.uint16 else 255.0
    pixels = image.astype(np.float32) / full
    alpha = None
    if pixels.ndim == 3 and pixels.shape[2] in (2, 4):
        alpha = pixels[:, :, -1].copy()
        pixels = pixels[:, :, :-1]
    if pixels.ndim == 3 and pixels.shape[2] == 3:  # OpenCV reads BGR; BT.709 luma weights
        b, g, r = pixels[:, :, 0], pixels[:, :, 1], pixels[:, :, 2]
        gray = 0.0722 * b + 0.7152 * g + 0.2126 * r
    else:
        gray = pixels.reshape(pixels.shape[0], pixels.shape[1])
    if alpha is not None and float(alpha.max()) <= 0.0:
        raise ValueError(f"reference: {path!r} is transparent everywhere")
    return Reference(16.0 + 219.0 * gray.astype(np.float32), alpha)


def reference_template(reference: Reference, rows: int, cols: int) -> Template:
    """The template of artwork scaled to a region's grid.

    Where the artwork is translucent the picture behind it shows through, so its edges are
    taken from the artwork keyed over black and over white: an edge visible over either is
    part of the graphic.
    """
    import cv2

    luma = cv2.resize(reference.luma, (cols, rows), interpolation=cv2.INTER_AREA)
    alpha: np.ndarray = np.ones((rows, cols), np.float32)
    if reference.alpha is not None:
        alpha = cv2.resize(reference.alpha, (cols, rows), interpolation=cv2.INTER_AREA)
    ta = np.zeros((rows, cols), np.float32)
    tb = np.zeros((rows, cols), np.float32)
    fa = np.zeros((rows, cols), np.float32)
    fb = np.zeros((rows, cols), np.float32)
    fe = np.zeros((rows, cols), np.float32)
    for background in (16.0, 235.0):
        keyed = (luma * alpha + background * (1.0 - alpha)).astype(np.float32)
        orientations(keyed, fa, fb, fe)
        ta += fa
        tb += fb
    strength = np.hypot(ta, tb)
    peak = float(np.percentile(strength[strength > 0], 95)) if np.any(strength > 0) else 0.0
    core = strength >= max(2.0, 0.2 * peak)
    box = _box_of(alpha >= 0.5, 1) if reference.alpha is not None else np.zeros(4, np.int64)
    return make_template(ta, tb, core, box, SEARCH_REFERENCE)


class Learner:
    """Averages a region's orientation vectors over moving pictures into a template."""

    def __init__(self, rows: int, cols: int) -> None:
        self.sum_a = np.zeros((rows, cols), np.float64)
        self.sum_b = np.zeros((rows, cols), np.float64)
        self.sum_strength = np.zeros((rows, cols), np.float64)
        self.samples = 0
        self.since_s: float | None = None

    def add(self, fa: np.ndarray, fb: np.ndarray, t_s: float) -> None:
        if self.since_s is None:
            self.since_s = t_s
        self.sum_a += fa
        self.sum_b += fb
        self.sum_strength += np.hypot(fa, fb)
        self.samples += 1

    def template(self) -> Template | None:
        """The learned template, or None when nothing persisted (the graphic was off air)."""
        n = max(self.samples, 1)
        ta, tb = self.sum_a / n, self.sum_b / n
        strength = np.hypot(ta, tb)
        consistency = strength / np.maximum(self.sum_strength / n, 1e-9)
        needed = max(CONSISTENT, math.sqrt(-math.log(CHANCE) / n))
        core = (consistency >= needed) & (strength >= EDGE_CV)
        core[0, :] = core[-1, :] = core[:, 0] = core[:, -1] = False
        core &= _neighbours(core) >= 2  # a graphic's edges are lines, not stray cells
        if np.count_nonzero(core) < MIN_CORE_CELLS:
            return None
        return make_template(ta, tb, core, _box_of(core, 1), SEARCH_LEARNED)


# --- The detector -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GraphicMeasurement:
    pts_s: float
    score: float | None  # presence score, None while learning / without a template
    present: bool | None  # None: not judged (learning, no template)
    learning: bool
    learned: bool  # False once a learning window found nothing persistent
    changed: bool | None  # the region changed since the last change (None: first picture)
    still_since_s: float  # media time of the region's last change
    opaque_box: bool  # the graphic is rendered as an opaque box
    box_stddev_cv: float
    changed_cells: int


class GraphicDetector:
    """One graphic on one rendition: presence, stuck or restless region, opaque box.

    ``update`` takes the luma plane of an analysed picture with what the caller knows of the
    whole picture: whether it moved since the last analysed one, and whether the graphic is
    expected now (learning only runs while it is). A change of picture size starts over:
    artwork is scaled to the new grid, a learned graphic is learned again.
    """

    def __init__(self, settings: GraphicSettings, reference: Reference | None = None) -> None:
        if settings.reference is not None and reference is None:
            reference = load_reference(settings.reference)
        self.settings = settings
        self.reference = reference
        self._geometry: Geometry | None = None
        self._template: Template | None = None
        self._learner: Learner | None = None
        self._learned = True
        self._present = False
        self._previous: np.ndarray | None = None
        self._still_since_s = 0.0
        self._out = np.zeros(N_OUT, np.float64)
        self._no_box = np.zeros(4, np.int64)
        self._empty = np.zeros((1, 1), np.float32)

    @property
    def template(self) -> Template | None:
        return self._template

    def _prepare(self, height: int, width: int) -> Geometry:
        margin = SEARCH_REFERENCE + 1
        g = geometry(self.settings.roi, width, height, margin)
        self._geometry = g
        shape = (g.rows + 2 * margin, g.cols + 2 * margin)
        self._cells = np.zeros(shape, np.float32)
        self._line_sums = np.zeros(shape[1] * g.k, np.int32)
        self._fa = np.zeros(shape, np.float32)
        self._fb = np.zeros(shape, np.float32)
        self._fe = np.zeros(shape, np.float32)
        self._centre = (0, 0)
        self._locked = False
        self._template = None
        self._learner = None
        if self.reference is not None:
            self._template = reference_template(self.reference, g.rows, g.cols)
        elif self.settings.learn_s is not None:
            self._learner = Learner(g.rows, g.cols)
        self._blank = np.zeros((g.rows, g.cols), np.float32)
        self._previous = None
        return g

    def rejoin(self) -> None:
        """The stream restarted: forget the last picture (templates are kept)."""
        self._previous = None

    def update(
        self,
        y: np.ndarray,
        pts_s: float,
        *,
        moving: bool,
        expected: bool = True,
        bit_depth: int = 8,
    ) -> GraphicMeasurement:
        g = self._geometry
        if g is None or (g.height, g.width) != y.shape:
            g = self._prepare(*y.shape)
        template = self._template
        learner = self._learner
        learning = learner is not None
        # While learning, a search of 0 against a blank template computes the orientation
        # field the learner averages.
        search = template.search if template is not None else (0 if learning else -1)
        centre = self._centre
        if self._locked and search > 1:
            search = 1  # found before: one cell around where it was
        out = self._out
        graphic_step(
            y, g.row0, g.col0, g.k, cell_scale(g.k, bit_depth), g.margin, self._cells,
            self._line_sums, self._fa, self._fb, self._fe,
            template.ta if template is not None else self._blank,
            template.tb if template is not None else self._blank,
            template.mask if template is not None else self._blank,
            template.norm if template is not None else 1.0,
            search, centre[0], centre[1], 0.5 * self.settings.match_threshold,
            self._previous if self._previous is not None else self._empty,
            self._previous is not None,
            template.box if template is not None else self._no_box,
            out,
        )  # fmt: skip
        m = g.margin
        inner = self._cells[m : m + g.rows, m : m + g.cols]
        if learner is not None and moving and expected:
            learner.add(
                self._fa[m : m + g.rows, m : m + g.cols],
                self._fb[m : m + g.rows, m : m + g.cols],
                pts_s,
            )
            assert self.settings.learn_s is not None
            assert learner.since_s is not None
            if (
                pts_s - learner.since_s >= self.settings.learn_s
                and learner.samples >= LEARN_MIN_SAMPLES
            ):
                self._template = learned = learner.template()
                self._learned = learned is not None
                self._learner = None if learned is not None else Learner(g.rows, g.cols)
        score: float | None = None
        present: bool | None = None
        if template is not None:
            score = float(out[O_SCORE])
            threshold = self.settings.match_threshold
            if score >= threshold:
                self._present = True
                if template.search > 1:  # artwork: keep searching around where it is
                    reach = template.search - 1
                    row, col = int(out[O_SHIFT_ROW]), int(out[O_SHIFT_COL])
                    self._centre = (max(-reach, min(reach, row)), max(-reach, min(reach, col)))
                    self._locked = True
            elif score < threshold - HYSTERESIS:
                self._present = False
            present = self._present
        elif not self._learned:
            present = False
        changed: bool | None = None
        changed_cells = int(out[O_CHANGED])
        if self._previous is None:
            self._previous = inner.copy()
            self._still_since_s = pts_s
        elif changed_cells >= max(3, CHANGE_FRACTION * (g.rows - 2) * (g.cols - 2)):
            changed = True
            self._previous[:] = inner
            self._still_since_s = pts_s
        else:
            changed = False
        stddev = float(out[O_BOX_STDDEV])
        box = stddev >= 0.0 and is_opaque_box(stddev, float(out[O_BOX_OUTSIDE]))
        return GraphicMeasurement(
            pts_s, score, present, learning, self._learned, changed, self._still_since_s,
            box, stddev, max(changed_cells, 0),
        )  # fmt: skip


class PictureMotion:
    """Whether the picture outside the graphics moves, and whether it is flat, from a sparse
    lattice of luma samples (about 36 x 64) compared between analysed pictures."""

    MOVING_CV = 1.5
    """Mean absolute change (8-bit code values) between analysed pictures that counts as motion;
    coding noise on a still picture stays well under 1."""
    FLAT_CV = 2.0
    """A picture whose samples vary less than this (std-dev) is flat: black, a flat field."""

    def __init__(self, excluded: Sequence[Sequence[float]] = ()) -> None:
        self.excluded = [tuple(r) for r in excluded]
        self._shape: tuple[int, int] | None = None
        self._out = np.zeros(2, np.float64)
        self._first = True
        self.difference_cv = 0.0
        self.stddev_cv = 0.0

    def _prepare(self, height: int, width: int) -> None:
        rows = np.unique(np.linspace(0, height - 1, 38)[1:-1].astype(np.int64))
        cols = np.unique(np.linspace(0, width - 1, 66)[1:-1].astype(np.int64))
        keep = np.ones((rows.size, cols.size), np.bool_)
        for x, y, w, h in self.excluded:
            inside_r = (rows >= y * height) & (rows < (y + h) * height)
            inside_c = (cols >= x * width) & (cols < (x + w) * width)
            keep[np.ix_(inside_r, inside_c)] = False
        self._rows, self._cols, self._keep = rows, cols, keep
        self._previous = np.zeros(keep.shape, np.float32)
        self._shape = (height, width)
        self._first = True

    def rejoin(self) -> None:
        self._first = True

    def update(self, y: np.ndarray, bit_depth: int = 8) -> bool:
        """Measure one analysed picture; True when it moved since the previous one."""
        if y.shape != self._shape:
            self._prepare(*y.shape)
        scale = 1.0 / (1 << (bit_depth - 8))
        lattice_step(
            y, self._rows, self._cols, self._keep, scale, self._previous, self._first, self._out
        )
        self._first = False
        self.difference_cv = float(self._out[0])
        self.stddev_cv = float(self._out[1])
        return self.difference_cv >= self.MOVING_CV

    @property
    def flat(self) -> bool:
        return self.stddev_cv < self.FLAT_CV
