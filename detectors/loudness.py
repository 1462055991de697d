"""Loudness, true peak and clipping of one audio stream: ITU-R BS.1770-5, EBU R128 / ATSC A/85.

``LoudnessMeter`` is an EBU Mode meter (EBU Tech 3341) that runs live: every 100 ms it gives
momentary (400 ms) and short-term (3 s) loudness, integrated loudness with BS.1770's absolute
(-70 LUFS) and relative (-10 LU) gates recomputed from the stored blocks, loudness range (EBU
Tech 3342), the true peak (4x over-sampled with the BS.1770 Annex 2 filter) and the longest
run of samples at full scale. Integration runs over a rolling window, since a daily reset, or
over the whole programme.

K-weighting is derived for the stream's sample rate from the filter's analog prototype.
Channel weights follow BS.1770 from the stream's channel names (FFmpeg's, as PyAV reports
them), or from the channel count: front channels 1.0, surrounds 1.41 (+1.5 dB), LFE left out.

The numbers and the kernels are in ``detectors.loudness_kernels``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from annotated_types import Ge, Interval

from detectors import loudness_kernels as lk

Preset = Literal["ebu_r128", "atsc_a85", "ebu_r128_s1", "custom"]
LoudnessAlarm = Literal["loudness", "true_peak", "audio_clipping"]


@dataclass(frozen=True)
class Limits:
    """What a preset asks: programme loudness target ± tolerance, and peak ceilings."""

    target_lufs: float
    tolerance_lu: float
    true_peak_max_dbtp: float
    short_term_max_lufs: float | None = None


PRESETS: dict[str, Limits] = {
    # EBU R128: -23 LUFS; ±1 LU where exact normalisation is impractical (live), -1 dBTP.
    "ebu_r128": Limits(-23.0, 1.0, -1.0),
    # ATSC A/85 (CALM Act): -24 LKFS ±2 dB, -2 dBTP.
    "atsc_a85": Limits(-24.0, 2.0, -2.0),
    # EBU R128 s1 (advertisements, promos): -23 LUFS ±0.5 LU and max short-term -18 LUFS.
    "ebu_r128_s1": Limits(-23.0, 0.5, -1.0, -18.0),
}


@dataclass(frozen=True)
class LoudnessSettings:
    """Settings of the loudness check (defaults: EBU R128 for live programmes)."""

    preset: Preset = "ebu_r128"
    """Target, tolerance and peak ceilings: ebu_r128 (-23 LUFS ±1 LU, -1 dBTP), atsc_a85
    (-24 LKFS ±2 dB, -2 dBTP), ebu_r128_s1 (short-form: -23 ±0.5, short-term at most -18 LUFS,
    -1 dBTP), or custom (give target_lufs and tolerance_lu)."""
    target_lufs: Annotated[float, Interval(ge=-70.0, le=0.0)] | None = None
    """Programme loudness target; None: the preset's."""
    tolerance_lu: Annotated[float, Interval(ge=0.0, le=30.0)] | None = None
    """Allowed deviation from the target either way; None: the preset's."""
    short_term_max_lufs: Annotated[float, Interval(ge=-70.0, le=0.0)] | None = None
    """Short-term loudness must stay at or below this (R128 s1); None: the preset's."""
    true_peak_max_dbtp: Annotated[float, Interval(ge=-30.0, le=6.0)] | None = None
    """A true peak above this raises true_peak; None: the preset's."""
    measure: Literal["integrated", "short_term", "both"] = "integrated"
    """Which loudness must stay within target ± tolerance."""
    integration: Literal["rolling", "daily", "programme"] = "rolling"
    """Integrated loudness and loudness range over the last ``window`` (rolling), since the
    last ``reset_at`` (daily), or since the input started (programme: for files)."""
    window_s: Annotated[float, Interval(ge=3.0, le=86400.0)] = 600.0
    """Length of the rolling integration window."""
    reset_at: str = "00:00"
    """Daily integration: local time of day (HH:MM) at which it starts over."""
    min_measured_s: Annotated[float, Ge(0.0)] = 10.0
    """Integrated loudness is judged once its window holds this much audio above the absolute
    gate (after joining a programme, or once a silence has emptied the window)."""
    peak_clear_after_s: Annotated[float, Ge(0.0)] = 10.0
    """true_peak and audio_clipping raise at the first over and clear after this long without
    one (loudness uses the block's raise_after / clear_after)."""
    clip_level_dbfs: Annotated[float, Interval(ge=-6.0, le=0.0)] = -0.001
    """A sample at or above this level (absolute value) is at full scale."""
    clip_run_samples: Annotated[int, Interval(ge=1, le=100_000)] = 3
    """This many samples in a row at full scale are clipping (the classic "over")."""
    alarms: tuple[LoudnessAlarm, ...] = ("loudness", "true_peak", "audio_clipping")
    """Which of the check's alarms to raise (the measurements go to the metrics anyway)."""
    streams: tuple[int | str, ...] = ()
    """Audio streams to measure: 0-based indices or language codes (e.g. eng); () = all."""

    def __post_init__(self) -> None:
        if self.preset == "custom" and (self.target_lufs is None or self.tolerance_lu is None):
            raise ValueError("preset custom needs target_lufs and tolerance_lu")
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", self.reset_at):
            raise ValueError(f"reset_at: must be a time of day as 'HH:MM', got {self.reset_at!r}")
        if self.integration == "rolling" and self.min_measured_s >= self.window_s:
            raise ValueError(
                f"min_measured: must be shorter than the rolling window ({self.window_s:g} s),"
                f" got {self.min_measured_s:g} s"
            )
        if any(isinstance(stream, int) and stream < 0 for stream in self.streams):
            raise ValueError(f"streams: stream indices start at 0, got {list(self.streams)}")

    def limits(self) -> Limits:
        """The preset's limits with this configuration's overrides."""
        base = PRESETS.get(self.preset, Limits(-23.0, 1.0, -1.0))
        return Limits(
            target_lufs=base.target_lufs if self.target_lufs is None else self.target_lufs,
            tolerance_lu=base.tolerance_lu if self.tolerance_lu is None else self.tolerance_lu,
            true_peak_max_dbtp=(
                base.true_peak_max_dbtp
                if self.true_peak_max_dbtp is None
                else self.true_peak_max_dbtp
            ),
            short_term_max_lufs=(
                base.short_term_max_lufs
                if self.short_term_max_lufs is None
                else self.short_term_max_lufs
            ),
        )

    @property
    def reset_minute(self) -> int:
        """``reset_at`` as minutes after midnight."""
        hours, minutes = self.reset_at.split(":")
        return int(hours) * 60 + int(minutes)


SURROUND = 1.41
"""BS.1770 weight of the surround channels (+1.5 dB), those at 60-120 degrees azimuth."""
_NO_LOUDNESS = {"LFE", "LFE2", "LFE3", "LOW_FREQUENCY", "LOW_FREQUENCY_2"}
_SIDE = {"SL", "SR", "SDL", "SDR"}
_BACK = {"BL", "BR"}
_BY_COUNT = {
    5: (1.0, 1.0, 1.0, SURROUND, SURROUND),  # L R C Ls Rs (EBU Tech 3341 case 6)
    6: (1.0, 1.0, 1.0, 0.0, SURROUND, SURROUND),  # L R C LFE Ls Rs (SMPTE / FFmpeg order)
}


def _is_speaker(name: str) -> bool:
    """A speaker position, not the placeholder of an unspecified layout (NONE, USR0, ...)."""
    return name not in ("NONE", "UNKNOWN", "UNUSED") and not name.startswith("USR")


def channel_weights(channels: int, names: tuple[str, ...] = ()) -> np.ndarray:
    """BS.1770 weight G_i of each channel, from the layout's channel names when they name a
    speaker each (else from the count): LFE 0, surrounds 1.41, every other channel 1.0.

    The side pair (SL/SR, ~±90°) is the surround pair; the back pair (BL/BR) is too in 5.1 and
    quad, where it is the only rear pair, but not in 7.1 (at ±135-150°, outside 60-120°).
    """
    if len(names) != channels or not all(_is_speaker(name) for name in names):
        return np.array(_BY_COUNT.get(channels, (1.0,) * channels), dtype=np.float64)
    has_side = any(name in _SIDE for name in names)
    weights = []
    for name in names:
        if name in _NO_LOUDNESS:
            weights.append(0.0)
        elif name in _SIDE or (name in _BACK and not has_side):
            weights.append(SURROUND)
        else:
            weights.append(1.0)
    return np.array(weights, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class LoudnessBlock:
    """The measurements at the end of one 100 ms step, at media time ``t_s``."""

    t_s: float
    momentary_lufs: float
    """400 ms; NaN until 400 ms of audio since the start or a discontinuity; -inf in silence."""
    short_term_lufs: float
    """3 s; NaN until 3 s of audio."""
    integrated_lufs: float
    """Gated loudness of the integration window; -inf until a block passed the gates."""
    range_lu: float
    """Loudness range (Tech 3342) of the integration window; NaN until a short-term value
    passed the gates (Tech 3342 calls it stable after 60 s)."""
    measured_s: float
    """Audio above the absolute gate in the integration window (400 ms blocks every 100 ms)."""
    true_peak_dbtp: float
    """Highest true peak of the step over all channels."""
    true_peak_channel: int
    clip_run_samples: int
    """Longest run of full-scale samples reaching into this step, over all channels."""
    clipped_channels: tuple[int, ...]
    """Channels with a run of at least ``clip_run_samples`` (the setting) in this step."""


def dbtp(linear: float) -> float:
    return 20.0 * math.log10(linear) if linear > 0.0 else -math.inf


class LoudnessMeter:
    """BS.1770 / EBU Mode meter of one stream of float32 planar audio in presentation order."""

    def __init__(
        self,
        settings: LoudnessSettings,
        sample_rate: int,
        channels: int,
        channel_names: tuple[str, ...] = (),
    ) -> None:
        self.settings = settings
        self.sample_rate = sample_rate
        self.channels = channels
        self.step = max(1, round(sample_rate / lk.STEPS_PER_SECOND))
        self.step_s = self.step / sample_rate
        self.weights = channel_weights(channels, channel_names)
        self._coefficients = lk.k_weighting(sample_rate)
        self._clip_level = 10.0 ** (settings.clip_level_dbfs / 20.0)
        self._clip_run = settings.clip_run_samples
        self._measure = np.zeros((channels, lk.N_MEASURE_STATE), dtype=np.float64)
        self._scratch = np.zeros((2, 0), dtype=np.float32)
        self._power = np.zeros(0, dtype=np.float64)
        self._peak = np.zeros((channels, 0), dtype=np.float64)
        self._run = np.zeros((channels, 0), dtype=np.float64)
        self._out = np.zeros((0, lk.N_GATE_OUT), dtype=np.float64)
        self._recent = np.zeros(lk.STEPS_SHORT_TERM, dtype=np.float64)
        self._gate = np.zeros(lk.N_GATE_STATE, dtype=np.float64)
        window = round(settings.window_s * lk.STEPS_PER_SECOND)
        slots = window if settings.integration == "rolling" else 0
        self._block_ring = np.zeros(slots, dtype=np.float32)
        self._st_ring = np.zeros(slots, dtype=np.float32)
        self._block_counts = np.zeros(lk.HIST_BINS, dtype=np.float64)
        self._block_energies = np.zeros(lk.HIST_BINS, dtype=np.float64)
        self._st_counts = np.zeros(lk.HIST_BINS, dtype=np.float64)
        self._st_energies = np.zeros(lk.HIST_BINS, dtype=np.float64)
        self._partial_start_s: float | None = None  # media time of the open step's first sample
        self._expected_s: float | None = None  # media time the next chunk should start at

    def update(self, samples: np.ndarray, pts_s: float) -> list[LoudnessBlock]:
        """Feed one chunk (channels, n) float32 starting at ``pts_s``; returns the measurements
        of every 100 ms step it completes."""
        n = samples.shape[1]
        if self._expected_s is None or abs(pts_s - self._expected_s) > self.step_s:
            # First chunk, or a gap/overlap in the timestamps: the windows start over here.
            self.restart()
            self._partial_start_s = pts_s
        self._expected_s = pts_s + n / self.sample_rate
        self._reserve(n)
        count = lk.measure_steps(
            samples,
            self._coefficients,
            self.weights,
            self.step,
            self._clip_level,
            lk.TRUE_PEAK_TAPS,
            self._measure,
            self._scratch,
            self._power,
            self._peak,
            self._run,
        )
        if count == 0:
            return []
        lk.gate_steps(
            self._power,
            count,
            self._recent,
            self._gate,
            self._block_counts,
            self._block_energies,
            self._block_ring,
            self._st_counts,
            self._st_energies,
            self._st_ring,
            self._out,
        )
        start_s = self._partial_start_s
        assert start_s is not None
        self._partial_start_s = start_s + count * self.step_s
        return self._blocks(start_s, count)

    def _reserve(self, n: int) -> None:
        capacity = n // self.step + 2
        if self._power.shape[0] < capacity:
            self._power = np.zeros(capacity, dtype=np.float64)
            self._peak = np.zeros((self.channels, capacity), dtype=np.float64)
            self._run = np.zeros((self.channels, capacity), dtype=np.float64)
            self._out = np.zeros((capacity, lk.N_GATE_OUT), dtype=np.float64)
        if self._scratch.shape[1] < n + lk.FIR_HISTORY:
            self._scratch = np.zeros((2, n + lk.FIR_HISTORY), dtype=np.float32)

    def _blocks(self, start_s: float, count: int) -> list[LoudnessBlock]:
        peaks = self._peak[:, :count]
        runs = self._run[:, :count]
        loudest = peaks.argmax(axis=0).tolist()
        peak = peaks.max(axis=0).tolist()
        run = runs.max(axis=0).tolist()
        out = self._out[:count].tolist()
        blocks = []
        for k in range(count):
            clipped: tuple[int, ...] = ()
            if run[k] >= self._clip_run:
                clipped = tuple(np.flatnonzero(runs[:, k] >= self._clip_run).tolist())
            m, s, i, lra, measured = out[k]
            blocks.append(
                LoudnessBlock(
                    t_s=start_s + (k + 1) * self.step_s,
                    momentary_lufs=m,
                    short_term_lufs=s,
                    integrated_lufs=i,
                    range_lu=lra,
                    measured_s=measured,
                    true_peak_dbtp=dbtp(peak[k]),
                    true_peak_channel=loudest[k],
                    clip_run_samples=int(run[k]),
                    clipped_channels=clipped,
                )
            )
        return blocks

    def restart(self) -> None:
        """The audio does not continue the previous chunk (a new decoder, a timestamp gap):
        filters, the open step and the momentary/short-term windows start over; integrated
        loudness and loudness range keep their blocks."""
        self._measure[:] = 0.0
        self._recent[:] = 0.0
        self._gate[lk.G_STEPS] = 0.0
        self._gate[lk.G_RECENT_AT] = 0.0
        self._expected_s = None

    def reset_integration(self) -> None:
        """Start integrated loudness and loudness range over (a daily reset)."""
        for at in (
            lk.G_BLOCKS,
            lk.G_ENERGY,
            lk.G_RING_AT,
            lk.G_RING_FILL,
            lk.G_ST_VALUES,
            lk.G_ST_ENERGY,
        ):
            self._gate[at] = 0.0
        for array in (
            self._block_counts,
            self._block_energies,
            self._st_counts,
            self._st_energies,
            self._block_ring,
            self._st_ring,
        ):
            array[:] = 0.0
