"""The numbers and Numba kernels behind the loudness meter (ITU-R BS.1770-5, EBU Tech 3341/3342).

Two kernels, each called once per decoded audio block (~200 ms) with its state carried across
calls, so decoded frames of any size give the same measurements:

``measure_steps`` K-weights every channel, sums the weighted mean square over 100 ms steps,
and on the same pass takes the true peak (4x polyphase interpolation, BS.1770 Annex 2) and
the runs of samples at full scale.

``gate_steps`` turns the 100 ms step powers into momentary (4 steps, 400 ms) and short-term
(30 steps, 3 s) loudness, and feeds integrated loudness and loudness range from histograms of
block loudness in 0.01 LU bins that also hold each bin's exact energy sum: adding a block is
O(1) and the gates are recomputed from the stored blocks at every step (Tech 3341 asks live
meters to do so), whatever the length of the programme. A rolling window keeps its blocks in a
ring (float32 energies, 4 bytes per 100 ms) and takes the oldest out as the newest goes in.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

ABSOLUTE_GATE_LUFS = -70.0
"""BS.1770 absolute gate Γa (blocks must be above it; Tech 3342 uses it for LRA as well)."""
RELATIVE_GATE_LU = -10.0
"""BS.1770-2 onwards relative gate Γr for integrated loudness (Tech 3341 V2 changed -8 to -10)."""
LRA_RELATIVE_GATE_LU = -20.0
"""EBU Tech 3342 relative gate for loudness range."""
LRA_LOW_PERCENTILE = 10.0
LRA_HIGH_PERCENTILE = 95.0
LOUDNESS_OFFSET = -0.691
"""BS.1770: L = -0.691 + 10 log10(sum of G_i z_i); cancels the K-filter's gain at 997 Hz."""

STEPS_MOMENTARY = 4  # 400 ms in 100 ms steps: BS.1770 gating blocks overlap by 75 %
STEPS_SHORT_TERM = 30  # 3 s
STEPS_PER_SECOND = 10

HIST_LOW_LUFS = ABSOLUTE_GATE_LUFS
HIST_BINS_PER_LU = 100
HIST_BINS = 8000  # -70 .. +10 LUFS; louder blocks land in the top bin with their exact energy

# Analog prototype of the K-weighting pre-filter (a high shelf modelling the head) and of the
# RLB high-pass, as re-derived from BS.1770 Tables 1 and 2; at 48 kHz the bilinear transform
# below reproduces the tables' coefficients to ~1e-14.
SHELF_HZ = 1681.974450955533
SHELF_GAIN_DB = 3.999843853973347
SHELF_Q = 0.7071752369554196
SHELF_VB_EXPONENT = 0.4996667741545416
HIGHPASS_HZ = 38.13547087602444
HIGHPASS_Q = 0.5003270373238773

TRUE_PEAK_TAPS = np.array(
    [
        [
            0.0017089843750, 0.0109863281250, -0.0196533203125, 0.0332031250000,
            -0.0594482421875, 0.1373291015625, 0.9721679687500, -0.1022949218750,
            0.0476074218750, -0.0266113281250, 0.0148925781250, -0.0083007812500,
        ],
        [
            -0.0291748046875, 0.0292968750000, -0.0517578125000, 0.0891113281250,
            -0.1665039062500, 0.4650878906250, 0.7797851562500, -0.2003173828125,
            0.1015625000000, -0.0582275390625, 0.0330810546875, -0.0189208984375,
        ],
        [
            -0.0189208984375, 0.0330810546875, -0.0582275390625, 0.1015625000000,
            -0.2003173828125, 0.7797851562500, 0.4650878906250, -0.1665039062500,
            0.0891113281250, -0.0517578125000, 0.0292968750000, -0.0291748046875,
        ],
        [
            -0.0083007812500, 0.0148925781250, -0.0266113281250, 0.0476074218750,
            -0.1022949218750, 0.9721679687500, 0.1373291015625, -0.0594482421875,
            0.0332031250000, -0.0196533203125, 0.0109863281250, 0.0017089843750,
        ],
    ],
    dtype=np.float32,
)  # fmt: skip
"""BS.1770-5 Annex 2: the 48-tap interpolating FIR for 4x over-sampling, as 4 phases of 12
taps (phase p, tap k multiplies the input k samples back). Its phases sit at 1/8, 3/8, 5/8 and
7/8 of a sample period, so the kernel also keeps the samples themselves: a true peak is never
below the sample peak."""
FIR_HISTORY = TRUE_PEAK_TAPS.shape[1] - 1

# Layout of measure_steps' per-channel state rows.
M_SHELF_Z1 = 0  # transposed direct form II states of the two biquads
M_SHELF_Z2 = 1
M_HIGHPASS_Z1 = 2
M_HIGHPASS_Z2 = 3
M_SUM_SQUARES = 4  # of the open step
M_PEAK = 5  # true peak of the open step
M_RUN = 6  # samples at full scale in a row, up to the last one seen
M_LONGEST_RUN = 7  # of the open step
M_FILL = 8  # samples in the open step (the same for every channel)
M_FIR = 9  # FIR_HISTORY last input samples, oldest first
N_MEASURE_STATE = M_FIR + FIR_HISTORY

# Layout of gate_steps' state vector.
G_STEPS = 0  # steps since the windows (re)started
G_RECENT_AT = 1  # next slot of the ring of the last 30 step powers
G_BLOCKS = 2  # integrated: blocks in the histogram (above the absolute gate)
G_ENERGY = 3  # integrated: their energy sum
G_RING_AT = 4  # rolling window: next slot of the block rings
G_RING_FILL = 5  # rolling window: slots in use
G_ST_VALUES = 6  # loudness range: short-term values in the histogram
G_ST_ENERGY = 7  # loudness range: their energy sum
N_GATE_STATE = 8

# Columns of gate_steps' output, one row per step.
O_MOMENTARY = 0
O_SHORT_TERM = 1
O_INTEGRATED = 2
O_RANGE = 3
O_MEASURED_S = 4  # seconds of blocks above the absolute gate in the integration window
N_GATE_OUT = 5


def k_weighting(sample_rate: float) -> np.ndarray:
    """K-weighting biquads at ``sample_rate``: rows (b0, b1, b2, a1, a2) of the shelf and the
    high-pass, by the bilinear transform of their analog prototypes with pre-warping at the
    corner frequency (BS.1770: other rates need "the same frequency response")."""
    k = math.tan(math.pi * SHELF_HZ / sample_rate)
    vh = 10.0 ** (SHELF_GAIN_DB / 20.0)
    vb = vh**SHELF_VB_EXPONENT
    a0 = 1.0 + k / SHELF_Q + k * k
    shelf = (
        (vh + vb * k / SHELF_Q + k * k) / a0,
        2.0 * (k * k - vh) / a0,
        (vh - vb * k / SHELF_Q + k * k) / a0,
        2.0 * (k * k - 1.0) / a0,
        (1.0 - k / SHELF_Q + k * k) / a0,
    )
    k = math.tan(math.pi * HIGHPASS_HZ / sample_rate)
    a0 = 1.0 + k / HIGHPASS_Q + k * k
    # The numerator stays (1, -2, 1), not divided by a0: that is BS.1770 Table 2's response.
    highpass = (1.0, -2.0, 1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / HIGHPASS_Q + k * k) / a0)
    return np.array([shelf, highpass], dtype=np.float64)


@njit(cache=True, nogil=True)
def measure_steps(
    x: np.ndarray,
    coefficients: np.ndarray,
    weights: np.ndarray,
    step: int,
    clip_level: float,
    taps: np.ndarray,
    state: np.ndarray,
    scratch: np.ndarray,
    out_power: np.ndarray,
    out_peak: np.ndarray,
    out_run: np.ndarray,
) -> int:  # pragma: no cover - jitted
    """Measure the 100 ms steps that ``x`` (channels, n) float32 completes.

    coefficients: k_weighting(). weights: BS.1770 channel weight G_i (0: not in the loudness,
    e.g. LFE, and not filtered). step: samples per step. clip_level: linear level at or above
    which a sample is at full scale. taps: (phases, 12) float32 interpolation filter. state:
    (channels, N_MEASURE_STATE) float64, zeros to start. scratch: (2, n + 11) float32.

    For the k-th completed step writes out_power[k] (sum of G_i times the K-weighted mean
    square), out_peak[c, k] (true peak, linear) and out_run[c, k] (longest run of full-scale
    samples reaching into the step). Returns the number of completed steps.
    """
    channels, n = x.shape
    for k in range(out_power.shape[0]):
        out_power[k] = 0.0
    b0, b1, b2 = coefficients[0, 0], coefficients[0, 1], coefficients[0, 2]
    a1, a2 = coefficients[0, 3], coefficients[0, 4]
    c0, c1, c2 = coefficients[1, 0], coefficients[1, 1], coefficients[1, 2]
    d1, d2 = coefficients[1, 3], coefficients[1, 4]
    history = taps.shape[1] - 1
    window = scratch[0]
    completed = 0
    for ch in range(channels):
        row = x[ch]
        s = state[ch]
        weight = weights[ch]
        z1, z2, w1, w2 = s[M_SHELF_Z1], s[M_SHELF_Z2], s[M_HIGHPASS_Z1], s[M_HIGHPASS_Z2]
        squares = s[M_SUM_SQUARES]
        peak = s[M_PEAK]
        run = s[M_RUN]
        longest = s[M_LONGEST_RUN]
        fill = int(s[M_FILL])
        # The interpolator reads a contiguous window: the carried history, then this block.
        for j in range(history):
            window[j] = s[M_FIR + j]
        for j in range(n):
            window[history + j] = row[j]
        k = 0
        i = 0
        while i < n:
            take = min(step - fill, n - i)
            segment = row[i : i + take]
            if weight > 0.0:
                acc = 0.0
                for j in range(take):
                    v = np.float64(segment[j])
                    y = b0 * v + z1
                    z1 = b1 * v - a1 * y + z2
                    z2 = b2 * v - a2 * y
                    u = c0 * y + w1
                    w1 = c1 * y - d1 * u + w2
                    w2 = c2 * y - d2 * u
                    acc += u * u
                squares += acc
            for j in range(take):
                a = abs(segment[j])
                peak = max(peak, a)
                if a >= clip_level:
                    run += 1.0
                    longest = max(longest, run)
                else:
                    run = 0.0
            peak = max(peak, _interpolated_peak(window, i, take, taps, scratch[1]))
            fill += take
            i += take
            if fill == step:
                out_power[k] += weight * squares / step
                out_peak[ch, k] = peak
                out_run[ch, k] = longest
                k += 1
                squares = 0.0
                peak = 0.0
                longest = 0.0
                fill = 0
        for j in range(history):
            s[M_FIR + j] = window[n + j]
        s[M_SHELF_Z1], s[M_SHELF_Z2], s[M_HIGHPASS_Z1], s[M_HIGHPASS_Z2] = z1, z2, w1, w2
        s[M_SUM_SQUARES] = squares
        s[M_PEAK] = peak
        s[M_RUN] = run
        s[M_LONGEST_RUN] = longest
        s[M_FILL] = fill
        completed = k
    return completed


@njit(cache=True, nogil=True)
def _interpolated_peak(
    window: np.ndarray, start: int, n: int, taps: np.ndarray, acc: np.ndarray
) -> float:  # pragma: no cover - jitted
    """Highest |interpolated value| of every phase for inputs window[start + 11 ...][:n].

    One phase at a time, tap by tap over the whole run of samples: the inner loop has no
    reduction across iterations, so LLVM vectorises it (2.6x faster than a dot product per
    interpolated value, measured)."""
    phases, length = taps.shape
    peak = np.float32(0.0)
    for p in range(phases):
        for j in range(n):
            acc[j] = 0.0
        for q in range(length):
            t = taps[p, q]
            source = window[start + length - 1 - q : start + length - 1 - q + n]
            for j in range(n):
                acc[j] += t * source[j]
        for j in range(n):
            peak = max(peak, abs(acc[j]))
    return np.float64(peak)


@njit(cache=True, nogil=True)
def loudness_lufs(energy: float) -> float:  # pragma: no cover - jitted
    if energy <= 0.0:
        return -np.inf
    return LOUDNESS_OFFSET + 10.0 * math.log10(energy)


@njit(cache=True, nogil=True)
def _bin(lufs: float) -> int:  # pragma: no cover - jitted
    b = int(math.floor((lufs - HIST_LOW_LUFS) * HIST_BINS_PER_LU))
    return min(max(b, 0), HIST_BINS - 1)


@njit(cache=True, nogil=True)
def _histogram_add(
    energy: float, sign: float, counts: np.ndarray, energies: np.ndarray, state: np.ndarray, at: int
) -> None:  # pragma: no cover - jitted
    """Add (sign 1) or take out (sign -1) one block above the absolute gate."""
    b = _bin(loudness_lufs(energy))
    counts[b] += sign
    if counts[b] == 0.0:
        energies[b] = 0.0  # no rounding residue left behind in an empty bin
    else:
        energies[b] += sign * energy
    state[at] += sign
    state[at + 1] = state[at + 1] + sign * energy if state[at] > 0.0 else 0.0


@njit(cache=True, nogil=True)
def _gated_from(
    counts: np.ndarray, energies: np.ndarray, gate_energy: float, inclusive: bool
) -> int:  # pragma: no cover - jitted
    """First bin of the blocks above ``gate_energy`` (or at it, when ``inclusive``). The
    blocks of the bin holding the gate are judged by their mean: exact when they are equal,
    within 0.01 LU otherwise."""
    g = _bin(loudness_lufs(gate_energy))
    if counts[g] > 0.0:
        mean = energies[g] / counts[g]
        if mean < gate_energy or (mean == gate_energy and not inclusive):
            g += 1
    return g


@njit(cache=True, nogil=True)
def _integrated(
    counts: np.ndarray, energies: np.ndarray, blocks: float, energy: float
) -> float:  # pragma: no cover - jitted
    """BS.1770 gated loudness from the blocks above the absolute gate."""
    if blocks <= 0.0:
        return -np.inf
    gate = energy / blocks * 10.0 ** (RELATIVE_GATE_LU / 10.0)
    n = 0.0
    e = 0.0
    for b in range(_gated_from(counts, energies, gate, False), HIST_BINS):
        n += counts[b]
        e += energies[b]
    return loudness_lufs(e / n) if n > 0.0 else -np.inf


@njit(cache=True, nogil=True)
def _range(
    counts: np.ndarray, energies: np.ndarray, values: float, energy: float
) -> float:  # pragma: no cover - jitted
    """EBU Tech 3342 loudness range: P95 - P10 of the gated short-term values (gates
    inclusive), the percentiles taken as the reference code does: sorted values, 1-based index
    round((n - 1) p / 100 + 1)."""
    if values <= 0.0:
        return np.nan
    gate = energy / values * 10.0 ** (LRA_RELATIVE_GATE_LU / 10.0)
    first = _gated_from(counts, energies, gate, True)
    n = 0.0
    for b in range(first, HIST_BINS):
        n += counts[b]
    if n <= 0.0:
        return np.nan
    low = math.floor((n - 1.0) * LRA_LOW_PERCENTILE / 100.0 + 0.5)
    high = math.floor((n - 1.0) * LRA_HIGH_PERCENTILE / 100.0 + 0.5)
    seen = 0.0
    low_lufs = np.nan
    for b in range(first, HIST_BINS):
        c = counts[b]
        if c <= 0.0:
            continue
        if seen <= low < seen + c:
            low_lufs = loudness_lufs(energies[b] / c)
        if seen <= high < seen + c:
            return loudness_lufs(energies[b] / c) - low_lufs
        seen += c
    return np.nan


@njit(cache=True, nogil=True)
def gate_steps(
    power: np.ndarray,
    count: int,
    recent: np.ndarray,
    state: np.ndarray,
    block_counts: np.ndarray,
    block_energies: np.ndarray,
    block_ring: np.ndarray,
    st_counts: np.ndarray,
    st_energies: np.ndarray,
    st_ring: np.ndarray,
    out: np.ndarray,
) -> None:  # pragma: no cover - jitted
    """Momentary, short-term, integrated loudness and loudness range after each of the
    ``count`` new steps of ``power`` (measure_steps' out_power), into ``out`` rows.

    recent: (30,) the last step powers. state: (N_GATE_STATE,). block_* / st_*: histograms
    (HIST_BINS,) of the 400 ms blocks and of the short-term values above the absolute gate.
    block_ring / st_ring: float32 rings of the rolling window (length 0: no window, the
    integration runs until reset); a slot holds a block's energy, 0 when it was gated out.
    """
    window = block_ring.shape[0]
    gate = 10.0 ** ((ABSOLUTE_GATE_LUFS - LOUDNESS_OFFSET) / 10.0)
    for k in range(count):
        at = int(state[G_RECENT_AT])
        recent[at] = power[k]
        state[G_RECENT_AT] = (at + 1) % STEPS_SHORT_TERM
        state[G_STEPS] += 1.0
        steps = state[G_STEPS]
        momentary = np.nan
        short_term = np.nan
        block = 0.0
        st = 0.0
        if steps >= STEPS_MOMENTARY:
            e = 0.0
            for j in range(STEPS_MOMENTARY):
                e += recent[(at - j) % STEPS_SHORT_TERM]
            e /= STEPS_MOMENTARY
            momentary = loudness_lufs(e)
            block = np.float64(np.float32(e))  # as the ring keeps it
            if block <= gate:
                block = 0.0
        if steps >= STEPS_SHORT_TERM:
            e = 0.0
            for j in range(STEPS_SHORT_TERM):
                e += recent[j]
            e /= STEPS_SHORT_TERM
            short_term = loudness_lufs(e)
            st = np.float64(np.float32(e))
            if st < gate:  # Tech 3342: short-term values at the gate count
                st = 0.0
        if window > 0:
            slot = int(state[G_RING_AT])
            if state[G_RING_FILL] == window:
                old = np.float64(block_ring[slot])
                if old > 0.0:
                    _histogram_add(old, -1.0, block_counts, block_energies, state, G_BLOCKS)
                old = np.float64(st_ring[slot])
                if old > 0.0:
                    _histogram_add(old, -1.0, st_counts, st_energies, state, G_ST_VALUES)
            else:
                state[G_RING_FILL] += 1.0
            block_ring[slot] = block
            st_ring[slot] = st
            state[G_RING_AT] = (slot + 1) % window
        if block > 0.0:
            _histogram_add(block, 1.0, block_counts, block_energies, state, G_BLOCKS)
        if st > 0.0:
            _histogram_add(st, 1.0, st_counts, st_energies, state, G_ST_VALUES)
        out[k, O_MOMENTARY] = momentary
        out[k, O_SHORT_TERM] = short_term
        out[k, O_INTEGRATED] = _integrated(
            block_counts, block_energies, state[G_BLOCKS], state[G_ENERGY]
        )
        out[k, O_RANGE] = _range(st_counts, st_energies, state[G_ST_VALUES], state[G_ST_ENERGY])
        out[k, O_MEASURED_S] = state[G_BLOCKS] / STEPS_PER_SECOND
