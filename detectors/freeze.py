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
- keyframes only (an input at ``pictures: keyframes``): pictures a GOP apart, every one a
  re-encoding, are frozen when they stay within ``keyframe_tolerance_db`` of the still's first
  picture. A picture that changes less than that in a whole GOP (about 2.6 code values on
  average at -40 dB: a nearly static shot) reads as frozen there; lower the tolerance for
  such programmes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from annotated_types import Interval
from numba import njit

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


# Layout of the freeze state vector carried between pictures.
IN_STILL = 0  # 1 when the previous picture was frozen
REFRESH_PENDING = 1  # 1 when a keyframe continued the still provisionally
SINCE_S = 2  # media time of the first picture of the still
REFRESH_S = 3  # media time of that keyframe
N_STATE = 4


@njit(cache=True, nogil=True)
def freeze_start(state: np.ndarray, pts_s: float) -> None:  # pragma: no cover - jitted
    """A new reference picture with no history (first picture, or after a reset)."""
    state[IN_STILL] = 0.0
    state[REFRESH_PENDING] = 0.0
    state[SINCE_S] = pts_s
    state[REFRESH_S] = 0.0


@njit(cache=True, nogil=True)
def freeze_verdict(
    difference: float,
    noise: float,
    keyframe_tolerance: float,
    keyframe: bool,
    pts_s: float,
    state: np.ndarray,
    keyframes_only: bool = False,
) -> tuple[bool, float, float, bool]:  # pragma: no cover - jitted
    """(frozen, since_s, ended_s or NaN, move the reference here) for the picture at pts_s.

    ``difference`` is the mean abs luma difference against the reference, re full scale.
    ``keyframes_only``: the decoder hands out keyframes only (a probe tier), a GOP apart;
    each is its own re-encoding of a still, so a keyframe within ``keyframe_tolerance`` of
    the still's first picture is frozen as it is, with no later picture to confirm it, and
    the reference stays the still's first picture (a slow drift still ends the freeze).
    """
    if difference <= noise or (keyframes_only and keyframe and difference <= keyframe_tolerance):
        state[IN_STILL] = 1.0
        state[REFRESH_PENDING] = 0.0
        return True, state[SINCE_S], math.nan, False
    if state[REFRESH_PENDING] > 0.0:
        # The keyframe was not a refresh of the still: the still ended there.
        ended = state[REFRESH_S]
        freeze_start(state, pts_s)
        return False, pts_s, ended, True
    if state[IN_STILL] > 0.0 and keyframe and difference <= keyframe_tolerance:
        state[REFRESH_PENDING] = 1.0
        state[REFRESH_S] = pts_s
        return True, state[SINCE_S], math.nan, True
    freeze_start(state, pts_s)
    return False, pts_s, math.nan, True
