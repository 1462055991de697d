"""One pass over each picture for every luma detector (black and freeze).

``PictureAnalyzer`` owns what the luma detectors share: the reference picture (held as a
zero-copy view, which keeps the decoder's buffer alive without copying it), the segment table
for the ignore regions, the output vector of the fused kernel, and the row decimation.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from detectors import freeze as fz
from detectors.black import BlackMeasurement, BlackSettings, black_level, black_verdict
from detectors.freeze import FreezeMeasurement, FreezeSettings, freeze_start, freeze_verdict
from detectors.kernels import (
    BLACK_DARK,
    BLACK_DARK_SUM,
    BLACK_DARK_SUMSQ,
    BLACK_PIXELS,
    BLACK_SAD,
    BLACK_SUM,
    FREEZE_PIXELS,
    FREEZE_SAD,
    N_STATS,
    dark_stats,
    luma_stats,
)
from detectors.regions import SegmentTable, segment_table

ANALYSED_ROWS = 135
"""Auto row decimation analyses about this many rows: every 8th at 1080, 5th at 720, 2nd at 360.

Motion must touch an analysed row to count, so at 1080p anything 8 rows tall (0.75 % of the
picture height) is seen; tickers, faces and logos are far taller. Every 8th row halved the
kernel's in-situ cost at 1080p (5.2 -> 2.4 ms per media second) against every 4th; black
ratios over 135 x 1920 samples are exact to well under a percent. ``row_step: 1`` analyses
every row."""


def auto_row_step(height: int) -> int:
    return max(1, height // ANALYSED_ROWS)


# Layout of the work vector shared by Python and picture_step: one array, so one call per
# picture moves everything (a Python verdict around the kernel cost as much as the kernel).
STATS = 0  # luma_stats/dark_stats accumulators, N_STATS of them
P_BLACK = 8  # 1: black detection on
P_FREEZE = 9  # 1: freeze detection on
P_PICTURE_RATIO = 10
P_DARK_CHECK = 11
P_TEXTURE_MAX = 12  # raw code values
P_MOTION_MAX = 13  # raw code values
P_NOISE = 14  # re full scale
P_KEYFRAME_TOLERANCE = 15  # re full scale
P_FULL_SCALE = 16  # 2^bit_depth
S_PREVIOUS_DARK = 17
S_FREEZE = 18  # freeze state vector, fz.N_STATE long
R_BLACK = 22
R_DARK_STDDEV = 23  # raw code values
R_FROZEN = 24
R_DIFFERENCE = 25  # re full scale
R_SINCE_S = 26
R_ENDED_S = 27  # NaN unless a provisional still ended earlier
R_FREEZE_VALID = 28
P_KEYFRAMES_ONLY = 29  # 1: the pictures are a decoder's keyframes only, a GOP apart
N_WORK = 30


@njit(cache=True, nogil=True, fastmath=False)
def picture_step(
    y: np.ndarray,
    ref: np.ndarray,
    bands: np.ndarray,
    segments: np.ndarray,
    row_step: int,
    level: int,
    first: bool,
    keyframe: bool,
    pts_s: float,
    work: np.ndarray,
) -> bool:  # pragma: no cover - jitted
    """Measure one picture and judge it for black and freeze; True: make it the reference."""
    stats = work[STATS : STATS + N_STATS]
    luma_stats(y, ref, bands, segments, row_step, level, stats)
    if work[P_BLACK] > 0.0:
        pixels = stats[BLACK_PIXELS]
        dark = stats[BLACK_DARK]
        check = work[P_DARK_CHECK] > 0.0
        if check and pixels > 0 and dark >= work[P_PICTURE_RATIO] * pixels:
            dark_stats(y, bands, segments, row_step, level, stats)
        black, stddev = black_verdict(
            pixels, dark, stats[BLACK_DARK_SUM], stats[BLACK_DARK_SUMSQ], stats[BLACK_SAD],
            work[P_PICTURE_RATIO], check, work[P_TEXTURE_MAX], work[P_MOTION_MAX],
            work[S_PREVIOUS_DARK] > 0.0,
        )  # fmt: skip
        work[R_BLACK] = 1.0 if black else 0.0
        work[R_DARK_STDDEV] = stddev
        work[S_PREVIOUS_DARK] = (
            1.0 if pixels > 0 and dark >= work[P_PICTURE_RATIO] * pixels else 0.0
        )
    move = True
    work[R_FREEZE_VALID] = 0.0
    if work[P_FREEZE] > 0.0:
        state = work[S_FREEZE : S_FREEZE + fz.N_STATE]
        if first:
            freeze_start(state, pts_s)
        else:
            pixels = stats[FREEZE_PIXELS]
            difference = stats[FREEZE_SAD] / pixels / work[P_FULL_SCALE] if pixels > 0 else 0.0
            frozen, since, ended, move = freeze_verdict(
                difference,
                work[P_NOISE],
                work[P_KEYFRAME_TOLERANCE],
                keyframe,
                pts_s,
                state,
                work[P_KEYFRAMES_ONLY] > 0.0,
            )
            work[R_FROZEN] = 1.0 if frozen else 0.0
            work[R_DIFFERENCE] = difference
            work[R_SINCE_S] = since
            work[R_ENDED_S] = ended
            work[R_FREEZE_VALID] = 1.0
    return move


class PictureMeasurement:
    """The verdicts on one picture; the detailed measurements are built only when asked for."""

    __slots__ = ("pts_s", "_work", "_cv", "_black_on")

    def __init__(self, pts_s: float, work: list[float], cv_per_raw: float, black_on: bool) -> None:
        self.pts_s = pts_s
        self._work = work
        self._cv = cv_per_raw
        self._black_on = black_on

    @property
    def is_black(self) -> bool:
        return self._black_on and self._work[R_BLACK] > 0.0

    @property
    def black(self) -> BlackMeasurement | None:
        if not self._black_on:
            return None
        w, cv = self._work, self._cv
        n = w[STATS + BLACK_PIXELS]
        if n <= 0:
            return BlackMeasurement(False, 0.0, 0.0, 0.0, 0.0)
        return BlackMeasurement(
            w[R_BLACK] > 0.0,
            w[STATS + BLACK_DARK] / n,
            w[STATS + BLACK_SUM] / n * cv,
            w[R_DARK_STDDEV] * cv,
            w[STATS + BLACK_SAD] / n * cv,
        )

    @property
    def freeze(self) -> FreezeMeasurement | None:
        w = self._work
        if w[R_FREEZE_VALID] <= 0.0:
            return None
        ended = w[R_ENDED_S]
        return FreezeMeasurement(
            w[R_FROZEN] > 0.0, w[R_DIFFERENCE], w[R_SINCE_S], None if math.isnan(ended) else ended
        )


class PictureAnalyzer:
    """Measures black and freeze on a stream of luma planes in one fused call per picture.

    ``row_step`` analyses every n-th row (None: auto, about 135 rows). Pictures must arrive in
    presentation order. A change of picture size starts over, as after a cut.
    ``keyframes_only``: the pictures are a decoder's keyframes only (``freeze_verdict``).
    """

    def __init__(
        self,
        black: BlackSettings | None,
        freeze: FreezeSettings | None,
        row_step: int | None = None,
        *,
        keyframes_only: bool = False,
    ) -> None:
        self.black = black
        self.freeze = freeze
        self.row_step = row_step
        self._work = np.zeros(N_WORK, dtype=np.float64)
        self._work[P_KEYFRAMES_ONLY] = 1.0 if keyframes_only else 0.0
        self._shape: tuple[int, int] | None = None
        self._format: tuple[int, bool] | None = None
        self._table: SegmentTable | None = None
        self._step = 1
        self._level = -1
        self._cv = 1.0
        self._reference: np.ndarray | None = None

    def _prepare_size(self, height: int, width: int) -> None:
        excluded = (
            self.black.ignore if self.black else (),
            self.freeze.ignore if self.freeze else (),
        )
        self._table = segment_table(width, height, excluded)
        self._step = self.row_step or auto_row_step(height)
        self._shape = (height, width)
        self._reference = None

    def _prepare_format(self, bit_depth: int, full_range: bool) -> None:
        """Thresholds in the picture's raw code values; worked out once per format."""
        w, scale = self._work, float(1 << (bit_depth - 8))
        self._cv = 1.0 / scale
        w[P_FULL_SCALE] = float(1 << bit_depth)
        if self.black:
            self._level = black_level(self.black, bit_depth, full_range)
            w[P_BLACK] = 1.0
            w[P_PICTURE_RATIO] = self.black.picture_ratio
            w[P_DARK_CHECK] = 1.0 if self.black.dark_scene_check else 0.0
            w[P_TEXTURE_MAX] = self.black.dark_texture_cv * scale
            w[P_MOTION_MAX] = self.black.dark_motion_cv * scale
        if self.freeze:
            w[P_FREEZE] = 1.0
            w[P_NOISE] = 10.0 ** (self.freeze.noise_db / 20.0)
            w[P_KEYFRAME_TOLERANCE] = 10.0 ** (self.freeze.keyframe_tolerance_db / 20.0)
        self._format = (bit_depth, full_range)

    def update(
        self,
        y: np.ndarray,
        pts_s: float,
        *,
        bit_depth: int = 8,
        full_range: bool = False,
        keyframe: bool = False,
    ) -> PictureMeasurement:
        """Measure one luma plane (2-D uint8/uint16 view) shown at media time ``pts_s``."""
        if y.shape != self._shape:
            self._prepare_size(*y.shape)
        if (bit_depth, full_range) != self._format:
            self._prepare_format(bit_depth, full_range)
        table = self._table
        assert table is not None
        reference = self._reference
        first = reference is None
        if reference is None:
            reference = y  # no history: compared with itself, and judged as a first picture
        work = self._work
        move = picture_step(
            y,
            reference,
            table.bands,
            table.segments,
            self._step,
            self._level,
            first,
            keyframe,
            pts_s,
            work,
        )
        if move:
            self._reference = y
        return PictureMeasurement(pts_s, work.tolist(), self._cv, self.black is not None)
