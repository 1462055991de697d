"""Regions of the picture in normalised coordinates, and the segment tables the kernels walk.

A region is given as fractions of the picture (x, y, w, h in 0..1), so one configuration serves
every rendition of a ladder whatever its size. The kernels never test a mask per pixel: each
analysed row is cut into column segments that carry a bit per consumer (black, freeze, ...), so
their inner loops stay unit-stride and vectorise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from annotated_types import Interval

Fraction01 = Annotated[float, Interval(ge=0.0, le=1.0)]


@dataclass(frozen=True)
class Region:
    """A rectangle in normalised picture coordinates: left x, top y, width w, height h."""

    x: Fraction01
    y: Fraction01
    w: Fraction01
    h: Fraction01

    def __post_init__(self) -> None:
        if self.x + self.w > 1.0 + 1e-9 or self.y + self.h > 1.0 + 1e-9:
            raise ValueError(
                f"region {self} reaches outside the picture (x+w and y+h must be <= 1)"
            )

    def pixels(self, width: int, height: int) -> tuple[int, int, int, int]:
        """Pixel bounds (col0, row0, col1, row1), end-exclusive, covering every touched pixel."""
        c0 = max(0, math.floor(self.x * width))
        r0 = max(0, math.floor(self.y * height))
        c1 = min(width, math.ceil((self.x + self.w) * width))
        r1 = min(height, math.ceil((self.y + self.h) * height))
        return c0, r0, c1, r1


@dataclass(frozen=True)
class SegmentTable:
    """Rows grouped into bands of identical column segments.

    bands[k] = (row0, row1, seg0, seg1): rows row0..row1-1 use segments seg0..seg1-1.
    segments[s] = (col0, col1, flags): columns col0..col1-1, flags = which consumers count them.
    """

    bands: np.ndarray  # (n_bands, 4) int32
    segments: np.ndarray  # (n_segments, 3) int32


def segment_table(width: int, height: int, excluded: Sequence[Sequence[Region]]) -> SegmentTable:
    """Build the segment table for a picture size.

    ``excluded[b]`` lists the regions consumer ``b`` ignores; a pixel carries flag bit ``b``
    unless it lies inside one of them. Pixels no consumer wants are left out altogether.
    Built once per picture size, never per frame.
    """
    everyone = (1 << len(excluded)) - 1
    flags = np.full((height, width), everyone, dtype=np.int32)
    for bit, regions in enumerate(excluded):
        for region in regions:
            c0, r0, c1, r1 = region.pixels(width, height)
            flags[r0:r1, c0:c1] &= ~(1 << bit)

    bands: list[tuple[int, int, int, int]] = []
    segments: list[tuple[int, int, int]] = []
    previous: list[tuple[int, int, int]] | None = None
    for row in range(height):
        line = flags[row]
        edges = np.flatnonzero(np.diff(line)) + 1
        starts = np.concatenate(([0], edges))
        ends = np.concatenate((edges, [width]))
        runs = [
            (int(s), int(e), int(line[s])) for s, e in zip(starts, ends, strict=True) if line[s]
        ]
        if runs == previous:
            r0, _, s0, s1 = bands[-1]
            bands[-1] = (r0, row + 1, s0, s1)
            continue
        bands.append((row, row + 1, len(segments), len(segments) + len(runs)))
        segments.extend(runs)
        previous = runs
    return SegmentTable(
        bands=np.array(bands, dtype=np.int32).reshape(-1, 4),
        segments=np.array(segments, dtype=np.int32).reshape(-1, 3),
    )
