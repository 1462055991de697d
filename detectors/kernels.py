"""Numba kernels shared by more than one detector.

``luma_stats`` is the one pass over the picture that black and freeze detection share: per
analysed pixel it reads the luma value once, the reference frame once, and accumulates what
both detectors need. Inner loops run from 0 over a row slice with int32 accumulators, which is what
lets LLVM vectorise them (a strided or offset-indexed inner loop runs 4-13x slower).
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Indices into the ``out`` vector of luma_stats.
BLACK_PIXELS = 0  # pixels counted for black
BLACK_DARK = 1  # of those, pixels at or below the black level
BLACK_DARK_SUM = 2  # sum of the dark pixels' values
BLACK_DARK_SUMSQ = 3  # sum of the dark pixels' squared values
BLACK_SAD = 4  # sum of |y - ref| over the black pixels
FREEZE_PIXELS = 5  # pixels counted for freeze
FREEZE_SAD = 6  # sum of |y - ref| over the freeze pixels
BLACK_SUM = 7  # sum of all black-counted pixels' values (mean luma)
N_STATS = 8

FLAG_BLACK = 1
FLAG_FREEZE = 2


@njit(cache=True, nogil=True, fastmath=True)
def luma_stats(
    y: np.ndarray,
    ref: np.ndarray,
    bands: np.ndarray,
    segments: np.ndarray,
    row_step: int,
    black_max: int,
    out: np.ndarray,
) -> None:  # pragma: no cover - jitted
    """Accumulate black and freeze statistics of luma plane ``y`` against ``ref`` into ``out``.

    y, ref: 2-D uint8 or uint16 luma planes of the same shape (views; padding is fine).
    bands, segments: a SegmentTable. row_step: analyse every row_step-th row of the picture.
    black_max: the highest luma code value that counts as black. out: float64[N_STATS], zeroed
    here. Allocates nothing. BLACK_DARK_SUM and BLACK_DARK_SUMSQ are left to dark_stats, which
    only mostly-dark pictures need: three accumulators instead of five keep this pass lean.
    """
    for k in range(out.shape[0]):
        out[k] = 0.0
    t = np.int32(black_max)
    for b in range(bands.shape[0]):
        r0 = bands[b, 0]
        r1 = bands[b, 1]
        s0 = bands[b, 2]
        s1 = bands[b, 3]
        first = r0 + (row_step - r0 % row_step) % row_step
        for i in range(first, r1, row_step):
            for s in range(s0, s1):
                c0 = segments[s, 0]
                c1 = segments[s, 1]
                fl = segments[s, 2]
                # Slicing first and looping from 0 is what lets LLVM vectorise this loop;
                # range(c0, c1) over the whole row measured 4x slower.
                a = y[i, c0:c1]
                p = ref[i, c0:c1]
                rsum = np.int32(0)
                rdark = np.int32(0)
                rsad = np.int32(0)
                for j in range(a.shape[0]):
                    v = np.int32(a[j])
                    d = v - np.int32(p[j])
                    rsum += v
                    rdark += np.int32(v <= t)
                    rsad += max(d, -d)
                n = c1 - c0
                if fl & 1:
                    out[0] += n
                    out[1] += rdark
                    out[4] += rsad
                    out[7] += rsum
                if fl & 2:
                    out[5] += n
                    out[6] += rsad


@njit(cache=True, nogil=True, fastmath=True)
def dark_stats(
    y: np.ndarray,
    bands: np.ndarray,
    segments: np.ndarray,
    row_step: int,
    black_max: int,
    out: np.ndarray,
) -> None:  # pragma: no cover - jitted
    """Add the sum and sum of squares of the black-counted dark pixels to ``out``.

    A second pass, run only on pictures luma_stats found mostly dark, for the texture test
    that tells a dark scene from black.
    """
    t = np.int32(black_max)
    dsum = 0.0
    dsq = 0.0
    for b in range(bands.shape[0]):
        r0 = bands[b, 0]
        r1 = bands[b, 1]
        first = r0 + (row_step - r0 % row_step) % row_step
        for i in range(first, r1, row_step):
            for s in range(bands[b, 2], bands[b, 3]):
                if not segments[s, 2] & 1:
                    continue
                a = y[i, segments[s, 0] : segments[s, 1]]
                rdsum = np.int32(0)
                rdsq = np.int32(0)
                for j in range(a.shape[0]):
                    v = np.int32(a[j])
                    dark = np.int32(v <= t)
                    rdsum += v * dark
                    rdsq += v * v * dark
                dsum += rdsum
                dsq += rdsq
    out[BLACK_DARK_SUM] = dsum
    out[BLACK_DARK_SUMSQ] = dsq
