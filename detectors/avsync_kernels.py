"""The array work of the A/V sync detector (``detectors.avsync``).

Numba kernels, one call per picture, per audio block and per window: ``picture_change`` reads
the analysed rows of the luma plane once for the picture's mean luma and its mean absolute
change against the previous picture; ``audio_onsets`` turns a block of audio into onset
strength and level on a grid of short frames (a three-band energy-difference onset function)
and keeps the mono mix for timing beeps; ``lag_correlation`` scores every candidate offset of
a window. Then the steps around them: video events, peak picking, beep onsets to the sample,
the line fit of a stream's timestamps against its media, and the row store the envelopes
live in.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# Columns of the per-picture rows written by picture_change.
PIC_PTS = 0  # media seconds
PIC_DURATION = 1  # seconds
PIC_MEAN = 2  # mean luma, 8-bit code values
PIC_CHANGE = 3  # mean absolute change against the previous picture, 8-bit code values
PIC_COLUMNS = 4

# Layout of the audio kernel's state vector (carried across blocks).
A_LOW = 0  # one-pole low-pass at LOW_SPLIT_HZ
A_HIGH = 1  # one-pole low-pass at HIGH_SPLIT_HZ
A_SUM = 2  # 3 band energies of the partial frame
A_COUNT = 5  # samples in the partial frame
A_LEVEL = 6  # 3 band levels (dB) of the last complete frame
A_PRIMED = 9  # 1 once a complete frame gave A_LEVEL
A_STATE = 10

LOW_SPLIT_HZ = 300.0
HIGH_SPLIT_HZ = 3000.0
FLOOR_POWER = 1e-8
"""Band powers are floored at -80 dBFS: changes below that are not events."""


@njit(cache=True, nogil=True, fastmath=True)
def picture_change(
    y: np.ndarray,
    previous: np.ndarray,
    r0: int,
    r1: int,
    c0: int,
    c1: int,
    row_step: int,
    scale: float,
    out: np.ndarray,
) -> None:  # pragma: no cover - jitted
    """Mean luma of ``y`` and mean |y - previous| over rows r0, r0+row_step, ... < r1 and
    columns c0..c1-1, times ``scale`` (8-bit code values), into out[PIC_MEAN], out[PIC_CHANGE].

    Unit-stride inner loops over a row slice with int32 accumulators, so LLVM vectorises them.
    """
    total = 0.0
    change = 0.0
    n = 0
    for i in range(r0, r1, row_step):
        a = y[i, c0:c1]
        p = previous[i, c0:c1]
        rsum = np.int32(0)
        rsad = np.int32(0)
        for j in range(a.shape[0]):
            v = np.int32(a[j])
            d = v - np.int32(p[j])
            rsum += v
            rsad += max(d, -d)
        total += rsum
        change += rsad
        n += a.shape[0]
    if n > 0:
        out[PIC_MEAN] = total / n * scale
        out[PIC_CHANGE] = change / n * scale


@njit(cache=True, nogil=True, fastmath=True)
def audio_onsets(
    x: np.ndarray,
    frame: int,
    low_coef: float,
    high_coef: float,
    state: np.ndarray,
    onset_out: np.ndarray,
    level_out: np.ndarray,
    mono_out: np.ndarray,
) -> int:  # pragma: no cover - jitted
    """Onset strength and level of every frame of ``frame`` samples completed by block ``x``.

    x: (channels, n) float32, mixed to mono. The mono signal is split into three bands by two
    one-pole low-passes (below 300 Hz, 300 Hz - 3 kHz, above 3 kHz); per frame, each band's
    power becomes a level in dB, and the onset strength is the sum over bands of the level's
    rise since the previous frame (rises only: an onset, not a decay). level_out gets the
    frame's total power in dBFS. mono_out gets the n mono samples. Returns the number of
    frames written; the partial frame is carried in ``state`` (A_STATE floats).
    """
    channels, n = x.shape
    gain = np.float32(1.0 / channels)
    low = state[A_LOW]
    high = state[A_HIGH]
    e0 = state[A_SUM]
    e1 = state[A_SUM + 1]
    e2 = state[A_SUM + 2]
    count = int(state[A_COUNT])
    written = 0
    for i in range(n):
        m = np.float32(0.0)
        for c in range(channels):
            m += x[c, i]
        m *= gain
        mono_out[i] = m
        low += low_coef * (m - low)
        high += high_coef * (m - high)
        b0 = low
        b1 = high - low
        b2 = m - high
        e0 += b0 * b0
        e1 += b1 * b1
        e2 += b2 * b2
        count += 1
        if count == frame:
            onset = 0.0
            sums = (e0, e1, e2)
            for b in range(3):
                level = 10.0 * math.log10(sums[b] / frame + FLOOR_POWER)
                if state[A_PRIMED] > 0.0:
                    onset += max(level - state[A_LEVEL + b], 0.0)
                state[A_LEVEL + b] = level
            state[A_PRIMED] = 1.0
            onset_out[written] = onset
            level_out[written] = 10.0 * math.log10((e0 + e1 + e2) / frame + FLOOR_POWER)
            written += 1
            e0 = 0.0
            e1 = 0.0
            e2 = 0.0
            count = 0
    state[A_LOW] = low
    state[A_HIGH] = high
    state[A_SUM] = e0
    state[A_SUM + 1] = e1
    state[A_SUM + 2] = e2
    state[A_COUNT] = count
    return written


@njit(cache=True, nogil=True)
def lag_correlation(
    video_t: np.ndarray,
    video_e: np.ndarray,
    audio_t0: float,
    audio_step_s: float,
    audio_e: np.ndarray,
    lags_s: np.ndarray,
    min_pairs: int,
    out: np.ndarray,
) -> None:  # pragma: no cover - jitted
    """Pearson correlation of the video events with the audio envelope shifted by each lag.

    For lag L (seconds, + = audio leads) the video event at t pairs with the audio envelope at
    t - L, read by linear interpolation on its grid (sample k at audio_t0 + k * audio_step_s).
    Pictures whose partner falls outside the envelope are left out of that lag; a lag with
    fewer than ``min_pairs`` pairs, or with no variation on either side, scores NaN.
    """
    last = audio_e.shape[0] - 1
    for m in range(lags_s.shape[0]):
        lag = lags_s[m]
        n = 0
        sv = 0.0
        sa = 0.0
        svv = 0.0
        saa = 0.0
        sva = 0.0
        for i in range(video_t.shape[0]):
            pos = (video_t[i] - lag - audio_t0) / audio_step_s
            if pos < 0.0 or pos > last:
                continue
            k = min(int(pos), last - 1) if last > 0 else 0
            f = pos - k
            a = audio_e[k] * (1.0 - f) + audio_e[k + 1] * f if last > 0 else audio_e[0]
            v = video_e[i]
            n += 1
            sv += v
            sa += a
            svv += v * v
            saa += a * a
            sva += v * a
        if n < min_pairs:
            out[m] = np.nan
            continue
        cov = sva - sv * sa / n
        var_v = svv - sv * sv / n
        var_a = saa - sa * sa / n
        if var_v <= 1e-12 * max(svv, 1e-300) or var_a <= 1e-12 * max(saa, 1e-300):
            out[m] = np.nan
        else:
            out[m] = cov / math.sqrt(var_v * var_a)


def video_events(change: np.ndarray) -> np.ndarray:
    """Event strength per picture from its mean absolute change ``change`` (8-bit cv).

    An event is the picture starting to change (a cut, a flash, motion starting: the change
    rises above both previous pictures') or stopping after changing for three pictures
    (motion stopping). A one-picture flash or cut counts once, not again when it ends.
    The first three values only serve as history (their events are zero).
    """
    e = np.zeros_like(change)
    if change.size < 4:
        return e
    c, p1, p2, p3 = change[3:], change[2:-1], change[1:-2], change[:-3]
    rise = np.maximum(c - np.maximum(p1, p2), 0.0)
    stop = np.maximum(np.minimum(np.minimum(p1, p2), p3) - c, 0.0)
    e[3:] = rise + stop
    return e


def audio_event_count(onsets: np.ndarray, frame_s: float, threshold_db: float) -> int:
    """Onsets of at least ``threshold_db``, counted once per 50 ms."""
    hits = np.flatnonzero(onsets >= threshold_db)
    if hits.size == 0:
        return 0
    return 1 + int(np.count_nonzero(np.diff(hits) * frame_s >= 0.05))


def peak_of(scores: np.ndarray, lags_s: np.ndarray, exclusion_s: float) -> tuple[float, float]:
    """(lag at the best score refined by a parabola, confidence) of a lag score curve.

    Confidence: the best correlation minus the best one at least ``exclusion_s`` away (0 when
    another lag explains the audio about as well: periodic events, or no events at all).
    """
    valid = np.isfinite(scores)
    if not valid.any():
        return math.nan, 0.0
    filled = np.where(valid, scores, -np.inf)
    best = int(np.argmax(filled))
    r1 = float(filled[best])
    far = np.abs(lags_s - lags_s[best]) >= exclusion_s
    r2 = float(filled[far].max()) if far.any() else -np.inf
    lag = float(lags_s[best])
    if 0 < best < len(scores) - 1 and valid[best - 1] and valid[best + 1]:
        a, b, c = filled[best - 1], r1, filled[best + 1]
        curvature = a - 2 * b + c
        if curvature < 0:
            lag += 0.5 * (a - c) / curvature * float(lags_s[1] - lags_s[0])
    confidence = max(0.0, r1 - max(r2, 0.0))
    return lag, min(confidence, 1.0)


def burst_onset(x: np.ndarray, half: int) -> float | None:
    """Where a burst in ``x`` begins, in samples from x[0] (fractional), or None.

    The power over 2*half samples, centred on each sample, is compared with half the highest
    such power: for a burst that starts abruptly at sample n0 that centred power crosses one
    half exactly at n0, whatever the window; the last crossing before the peak is taken, so a
    codec's pre-echo ahead of the onset does not count.
    """
    if x.size < 4 * half:
        return None
    c = np.concatenate(([0.0], np.cumsum(x.astype(np.float64) ** 2)))
    # power[i] covers samples i .. i + 2*half - 1: centred at sample i + half.
    power = (c[2 * half :] - c[: -2 * half]) / (2 * half)
    peak = int(np.argmax(power))
    level = power[peak] / 2
    below = np.flatnonzero(power[:peak] < level)
    if below.size == 0:
        return None
    i = int(below[-1])
    fraction = float((level - power[i]) / (power[i + 1] - power[i]))
    return i + half + fraction


class StreamClock:
    """One stream's timestamps against the media it carries.

    ``error_s`` is the timestamp minus where back-to-back presentation from the first item
    would put it: constant for a clean stream, a step at a gap or a jump (``jumps``), a slope
    when the stream's sample or frame clock runs at another rate than its timestamps. The slope
    is a least-squares line fit within each run between jumps, pooled over the runs.
    """

    MIN_SPAN_S = 10.0

    def __init__(self, tolerance_s: float) -> None:
        self.tolerance_s = tolerance_s
        self.origin_s: float | None = None
        self.content_s = 0.0
        self.error_s = 0.0
        self.jumps = 0
        self._run = [0.0] * 6  # this run: n, mean t, mean error, Sxx, Sxy, first t
        self._pooled = [0.0] * 3  # finished runs: Sxx, Sxy, span
        self._last_s = 0.0  # the latest timestamp

    def add(self, pts_s: float, duration_s: float) -> None:
        """One item (a picture, an audio block) in presentation order."""
        if self.origin_s is None:
            self.origin_s = pts_s
        error = pts_s - self.origin_s - self.content_s
        self.content_s += duration_s
        if abs(error - self.error_s) > self.tolerance_s:
            self.jumps += 1
            self._end_run()
        self.error_s = error
        run = self._run
        if run[0] == 0:
            run[5] = pts_s
        run[0] += 1
        dx = pts_s - run[1]
        run[1] += dx / run[0]
        run[2] += (error - run[2]) / run[0]
        run[3] += dx * (pts_s - run[1])
        run[4] += dx * (error - run[2])
        self._last_s = pts_s

    def _end_run(self) -> None:
        run = self._run
        if run[0] > 1:
            self._pooled[0] += run[3]
            self._pooled[1] += run[4]
            self._pooled[2] += self._last_s - run[5]
        self._run = [0.0] * 6

    @property
    def slope(self) -> float | None:
        """d(error)/d(timestamp) pooled over the runs between jumps; None below 10 s of runs."""
        sxx, sxy, span = self._pooled
        run = self._run
        if run[0] > 1:
            sxx, sxy, span = sxx + run[3], sxy + run[4], span + self._last_s - run[5]
        if span < self.MIN_SPAN_S or sxx <= 0.0:
            return None
        return sxy / sxx


class Rows:
    """Rows appended at the end and dropped from the front, in one numpy array.

    Rows keep an absolute index; the array is compacted or grown only when full.
    """

    def __init__(self, columns: int, capacity: int = 1024) -> None:
        self.data = np.zeros((capacity, columns))
        self.first = 0  # absolute index of the oldest row held
        self.end = 0  # absolute index after the newest row
        self._offset = 0  # where the oldest row sits in data

    def reserve(self, rows: int) -> np.ndarray:
        """A writable block of ``rows`` rows after the newest; ``commit`` what was written."""
        held = self.end - self.first
        if self._offset + held + rows > self.data.shape[0]:
            if held + rows > self.data.shape[0] // 2:
                grown = np.zeros((2 * (held + rows), self.data.shape[1]))
                grown[:held] = self.data[self._offset : self._offset + held]
                self.data = grown
            else:
                self.data[:held] = self.data[self._offset : self._offset + held]
            self._offset = 0
        at = self._offset + held
        return self.data[at : at + rows]

    def commit(self, rows: int) -> None:
        self.end += rows

    def drop_before(self, index: int) -> None:
        index = min(max(index, self.first), self.end)
        self._offset += index - self.first
        self.first = index

    def view(self, start: int, stop: int) -> np.ndarray:
        start, stop = max(start, self.first), min(stop, self.end)
        base = self._offset - self.first
        return self.data[base + start : base + max(start, stop)]
