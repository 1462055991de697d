"""Black picture detection: FFmpeg ``blackdetect`` semantics, aware of dark scenes.

Baseline (FFmpeg libavfilter/vf_blackdetect.c): a pixel is black when its luma is at or below
``16 + pixel_threshold * (235 - 16)`` in limited range (37 at 8 bits) or
``pixel_threshold * (2^depth - 1)`` in full range (25), and a picture is black when at least
``picture_ratio`` of its pixels are. The defaults are FFmpeg's (pix_th 0.10, pic_th 0.98).

That rule alone calls night scenes black. A dark picture is only black when its dark pixels are
also flat (standard deviation at most ``dark_texture_cv``) and still (mean absolute change
against the previous picture, when that was dark too, at most ``dark_motion_cv``): "dark but
textured or moving is not black". Both are in 8-bit luma code values, scaled for deeper video.

Ignore regions (normalised x, y, w, h) are left out of the count, so a channel logo burnt over
black does not hide the black.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

from annotated_types import Ge, Interval
from numba import njit

from detectors.regions import Region


@dataclass(frozen=True)
class BlackSettings:
    """Settings of the black detector (defaults: FFmpeg blackdetect, plus the dark-scene check)."""

    pixel_threshold: Annotated[float, Interval(ge=0.0, le=1.0)] = 0.10
    """Luma at or below this fraction of the nominal range is black (FFmpeg ``pix_th``)."""
    picture_ratio: Annotated[float, Interval(ge=0.0, le=1.0)] = 0.98
    """A picture is black when this fraction of its pixels is black (FFmpeg ``pic_th``)."""
    dark_texture_cv: Annotated[float, Ge(0.0)] = 3.0
    """A dark picture whose dark pixels vary more than this (std-dev, code values) is a scene."""
    dark_motion_cv: Annotated[float, Ge(0.0)] = 1.5
    """A dark picture changing more than this (mean abs difference, code values) is a scene."""
    dark_scene_check: bool = True
    """False gives plain FFmpeg semantics: every dark enough picture is black."""
    ignore: tuple[Region, ...] = ()
    """Regions left out of the measurement, e.g. a logo that stays on screen over black."""


@dataclass(frozen=True, slots=True)
class BlackMeasurement:
    black: bool
    ratio: float  # fraction of counted pixels at or below the black level
    mean_cv: float  # mean luma of the counted pixels, in 8-bit code values
    dark_stddev_cv: float  # std-dev of the dark pixels, in 8-bit code values
    motion_cv: float  # mean abs change against the reference picture, in 8-bit code values


def black_level(settings: BlackSettings, bit_depth: int, full_range: bool) -> int:
    """The highest luma code value that counts as black (FFmpeg blackdetect's threshold)."""
    scale = 1 << (bit_depth - 8)
    if full_range:
        return int(settings.pixel_threshold * ((1 << bit_depth) - 1))
    return int(16 * scale + settings.pixel_threshold * (235 - 16) * scale)


@njit(cache=True, nogil=True, fastmath=True)
def black_verdict(
    pixels: float,
    dark: float,
    dark_sum: float,
    dark_sumsq: float,
    sad: float,
    picture_ratio: float,
    dark_scene_check: bool,
    texture_max: float,
    motion_max: float,
    previous_dark: bool,
) -> tuple[bool, float]:  # pragma: no cover - jitted
    """(black, dark pixels' std-dev) from luma_stats/dark_stats sums, all in raw code values.

    Motion only tells a dark scene from black between two dark pictures: a cut from a bright
    picture to black differs a lot from its predecessor and is black from its first picture.
    """
    if pixels <= 0:
        return False, 0.0
    stddev = 0.0
    if dark > 0:
        mean = dark_sum / dark
        stddev = math.sqrt(max(dark_sumsq / dark - mean * mean, 0.0))
    black = dark >= picture_ratio * pixels
    if black and dark_scene_check:
        still = sad / pixels <= motion_max or not previous_dark
        black = stddev <= texture_max and still
    return black, stddev
