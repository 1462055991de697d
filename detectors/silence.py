"""Silence and muted-channel detection over short audio blocks, per channel.

Each channel is measured on its own over blocks of ``block_ms`` (default 10 ms), so one dead
channel of a stereo pair or of a 5.1 bed is caught; FFmpeg's silencedetect needs ``mono=1`` for
that and otherwise waits for all channels to fall silent. A block is silent when its level is
at or below ``threshold_db`` dBFS, measured as the sample peak (``measure: peak``, FFmpeg's
rule, the default) or as RMS (``measure: rms``, for lines with hiss or dither).

The Numba kernel carries partial blocks across calls, so decoded frames of any size (AAC 1024,
AC-3 1536, ...) give the same blocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from annotated_types import Interval
from numba import njit


@dataclass(frozen=True)
class SilenceSettings:
    """Settings of the silence detector (threshold: FFmpeg silencedetect's -60 dB)."""

    threshold_db: Annotated[float, Interval(ge=-150.0, le=0.0)] = -60.0
    """A block at or below this level (dBFS) is silent."""
    measure: Literal["peak", "rms"] = "peak"
    """Level of a block: its sample peak (FFmpeg's rule) or its RMS."""
    block_ms: Annotated[float, Interval(ge=1.0, le=1000.0)] = 10.0
    """Length of the measured blocks: the time resolution of onsets and ends."""
    ignore_channels: tuple[str, ...] = ("LFE",)
    """Channels never judged, by the layout's names (FFmpeg's: FL, FR, FC, LFE, BL, BR, SL,
    SR, ...). The LFE of most programmes is silent by design; ``[]`` judges every channel."""


@dataclass(frozen=True, slots=True)
class SilenceObservation:
    """From ``t_s`` on (media seconds), these channels (0-based) are silent."""

    t_s: float
    muted: tuple[int, ...]
    levels_db: tuple[float, ...]  # level of every channel in the block at t_s


@njit(cache=True, nogil=True, fastmath=True)
def block_levels(
    x: np.ndarray, block: int, carry: np.ndarray, out_sq: np.ndarray, out_peak: np.ndarray
) -> int:  # pragma: no cover - jitted
    """Mean square and peak of every complete block of ``x`` (channels, samples), per channel.

    carry (channels, 3) float64 holds the partial block between calls: sum of squares, peak,
    sample count. Returns the number of blocks written to out_sq/out_peak (channels, >= that).
    """
    channels, n = x.shape
    written = 0
    for ch in range(channels):
        row = x[ch]
        sq = carry[ch, 0]
        peak = carry[ch, 1]
        m = int(carry[ch, 2])
        k = 0
        i = 0
        while i < n:
            take = min(block - m, n - i)
            seg = row[i : i + take]
            s = np.float32(0.0)
            p = np.float32(0.0)
            for j in range(take):
                v = seg[j]
                s += v * v
                p = max(p, abs(v))
            sq += s
            peak = max(peak, p)
            m += take
            i += take
            if m == block:
                out_sq[ch, k] = sq / block
                out_peak[ch, k] = peak
                k += 1
                sq = 0.0
                peak = 0.0
                m = 0
        carry[ch, 0] = sq
        carry[ch, 1] = peak
        carry[ch, 2] = m
        written = k
    return written


def to_db(level: float) -> float:
    return 20.0 * math.log10(level) if level > 0.0 else -math.inf


class SilenceDetector:
    """Per-channel silence on a stream of float32 planar audio chunks in presentation order."""

    def __init__(self, settings: SilenceSettings, sample_rate: int, channels: int) -> None:
        self.settings = settings
        self.sample_rate = sample_rate
        self.channels = channels
        self.block = max(1, round(settings.block_ms * sample_rate / 1000.0))
        self.block_s = self.block / sample_rate
        self._threshold = 10.0 ** (settings.threshold_db / 20.0)
        self._carry = np.zeros((channels, 3), dtype=np.float64)
        self._out_sq = np.zeros((channels, 64), dtype=np.float64)
        self._out_peak = np.zeros((channels, 64), dtype=np.float64)
        self._partial_start_s: float | None = None  # media time of the partial block's first sample
        self._expected_s: float | None = None  # media time the next chunk should start at
        self._muted: tuple[int, ...] | None = None

    def update(self, samples: np.ndarray, pts_s: float) -> list[SilenceObservation]:
        """Feed one chunk (channels, n) float32 starting at ``pts_s``.

        Returns an observation at every block where the set of silent channels changes, and
        one for the chunk's last complete block, so an alarm engine sees time advance.
        """
        n = samples.shape[1]
        if self._expected_s is None or abs(pts_s - self._expected_s) > self.block_s:
            # First chunk, or a gap/overlap in the timestamps: restart the block grid here.
            self._carry[:] = 0.0
            self._partial_start_s = pts_s
        self._expected_s = pts_s + n / self.sample_rate
        capacity = n // self.block + 2
        if capacity > self._out_sq.shape[1]:
            self._out_sq = np.zeros((self.channels, capacity), dtype=np.float64)
            self._out_peak = np.zeros((self.channels, capacity), dtype=np.float64)
        count = block_levels(samples, self.block, self._carry, self._out_sq, self._out_peak)
        if count == 0:
            return []
        start_s = self._partial_start_s
        assert start_s is not None
        self._partial_start_s = start_s + count * self.block_s

        if self.settings.measure == "peak":
            levels = self._out_peak[:, :count]
        else:
            levels = np.sqrt(self._out_sq[:, :count])
        silent = levels <= self._threshold
        if self._muted is None:
            before = ~silent[:, :1]  # the very first block is always reported
        else:
            before = np.zeros((self.channels, 1), dtype=bool)
            before[list(self._muted), 0] = True
        columns = np.concatenate((before, silent), axis=1)
        changes = np.flatnonzero(np.any(columns[:, 1:] != columns[:, :-1], axis=0))
        observations = [self._observe(start_s, int(k), silent, levels) for k in changes]
        observations.append(self._observe(start_s, count - 1, silent, levels, at_end=True))
        return observations

    def _observe(
        self, start_s: float, k: int, silent: np.ndarray, levels: np.ndarray, at_end: bool = False
    ) -> SilenceObservation:
        muted = tuple(int(c) for c in np.flatnonzero(silent[:, k]))
        self._muted = muted
        t = start_s + (k + (1 if at_end else 0)) * self.block_s
        return SilenceObservation(t, muted, tuple(to_db(float(v)) for v in levels[:, k]))
