"""Frozen picture detection: FFmpeg ``freezedetect`` semantics on the luma plane.

FFmpeg (libavfilter/vf_freezedetect.c) compares each picture with a *reference* picture, the
first picture of the candidate freeze, and calls it frozen when the mean absolute difference,
normalised by 2^bit_depth, is at most ``noise`` (default 0.001 = -60 dB, about 0.26 code
values at 8 bits). The reference moves on only while the picture is not frozen, so a slow
drift cannot hide a freeze. The freeze begins at the reference picture: the last picture that
changed is the first picture of the still.

Differences from FFmpeg: luma only (a frozen chroma plane under moving luma is not a freeze a
viewer sees), and ignore regions, so a clock or ticker running over a frozen picture does not
hide the freeze.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from annotated_types import Interval

from detectors.kernels import FREEZE_PIXELS, FREEZE_SAD
from detectors.regions import Region


@dataclass(frozen=True)
class FreezeSettings:
    """Settings of the freeze detector (defaults: FFmpeg freezedetect)."""

    noise_db: Annotated[float, Interval(ge=-120.0, le=0.0)] = -60.0
    """Pictures differing by at most this (mean abs luma difference re full scale) are frozen."""
    ignore: tuple[Region, ...] = ()
    """Regions left out of the comparison, e.g. a running clock or a ticker."""

    def noise_ratio(self) -> float:
        return float(10.0 ** (self.noise_db / 20.0))


@dataclass(frozen=True, slots=True)
class FreezeMeasurement:
    frozen: bool
    difference: float  # mean abs luma difference against the reference, re full scale
    since_s: float  # media time of the reference picture: where the still began


def judge_freeze(settings: FreezeSettings, stats, bit_depth: int, reference_s: float) -> FreezeMeasurement:
    """Turn luma_stats accumulators into a verdict against the reference picture's time."""
    n = stats[FREEZE_PIXELS]
    if n <= 0:
        return FreezeMeasurement(False, 0.0, reference_s)
    difference = stats[FREEZE_SAD] / n / (1 << bit_depth)
    return FreezeMeasurement(bool(difference <= settings.noise_ratio()), float(difference), reference_s)
