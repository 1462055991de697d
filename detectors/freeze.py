"""Frozen picture detection: FFmpeg ``freezedetect`` semantics on the luma plane.

FFmpeg (libavfilter/vf_freezedetect.c) compares each picture with a *reference* picture, the
first picture of the candidate freeze, and calls it frozen when the mean absolute difference,
normalised by 2^bit_depth, is at most ``noise`` (default 0.001 = -60 dB, about 0.26 code
values at 8 bits). The reference moves on only while the picture is not frozen, so a slow
drift cannot hide a freeze. The freeze begins at the reference picture: the last picture that
changed is the first picture of the still.

Differences from FFmpeg:

- luma only (a frozen chroma plane under moving luma is not a freeze a viewer sees);
- ignore regions, so a clock or ticker running over a frozen picture does not hide the freeze;
- keyframe refresh: an encoder fed a still re-encodes it at every keyframe, and the decoded
  keyframe differs from the still by more than -60 dB (0.43 code values measured on x264).
  FFmpeg then ends the freeze at every keyframe, so with a GOP shorter than the hold-off a
  frozen feed never alarms. Here a keyframe inside a still that differs by at most
  ``keyframe_tolerance_db`` continues the freeze provisionally, confirmed only when the next
  picture matches it; otherwise the freeze ended at that keyframe. Only keyframes get this
  grace, so content that repeats pictures (animation on twos, 25p carried in 50p) cannot pass
  for a freeze.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from annotated_types import Interval

from detectors.kernels import FREEZE_PIXELS, FREEZE_SAD
from detectors.regions import Region


@dataclass(frozen=True)
class FreezeSettings:
    """Settings of the freeze detector (defaults: FFmpeg freezedetect, plus keyframe refresh)."""

    noise_db: Annotated[float, Interval(ge=-120.0, le=0.0)] = -60.0
    """Pictures differing by at most this (mean abs luma difference re full scale) are frozen."""
    keyframe_tolerance_db: Annotated[float, Interval(ge=-120.0, le=0.0)] = -40.0
    """A keyframe re-encoding a still may differ by up to this (about 2.6 code values)."""
    ignore: tuple[Region, ...] = ()
    """Regions left out of the comparison, e.g. a running clock or a ticker."""


@dataclass(frozen=True, slots=True)
class FreezeMeasurement:
    frozen: bool
    difference: float  # mean abs luma difference against the reference, re full scale
    since_s: float  # media time of the first picture of the still
    ended_s: float | None = None  # a provisional continuation failed: the still ended here


class FreezeJudge:
    """Decides, picture by picture, whether the picture is still and where the still began."""

    def __init__(self, settings: FreezeSettings) -> None:
        self.settings = settings
        self._noise = 10.0 ** (settings.noise_db / 20.0)
        self._keyframe_tolerance = 10.0 ** (settings.keyframe_tolerance_db / 20.0)
        self._since_s = 0.0
        self._in_still = False  # the previous picture was frozen
        self._refresh_s: float | None = None  # a keyframe continued the still provisionally

    def start(self, pts_s: float) -> None:
        """A new reference picture with no history (first picture, or after a reset)."""
        self._since_s = pts_s
        self._in_still = False
        self._refresh_s = None

    def judge(
        self, stats, bit_depth: int, pts_s: float, keyframe: bool
    ) -> tuple[FreezeMeasurement, bool]:
        """Verdict for the picture at ``pts_s``; the bool says: make it the new reference."""
        n = stats[FREEZE_PIXELS]
        difference = float(stats[FREEZE_SAD] / n / (1 << bit_depth)) if n > 0 else 0.0
        if difference <= self._noise:
            self._in_still = True
            self._refresh_s = None
            return FreezeMeasurement(True, difference, self._since_s), False
        if self._refresh_s is not None:
            # The keyframe was not a refresh of the still: the still ended there.
            ended = self._refresh_s
            self.start(pts_s)
            return FreezeMeasurement(False, difference, pts_s, ended_s=ended), True
        if self._in_still and keyframe and difference <= self._keyframe_tolerance:
            self._refresh_s = pts_s
            return FreezeMeasurement(True, difference, self._since_s), True
        self.start(pts_s)
        return FreezeMeasurement(False, difference, pts_s), True
