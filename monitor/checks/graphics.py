"""Graphics and corrupted-picture checks of one rendition of a channel.

Alarms, each event's detail naming the graphic (``graphic``, ``roi`` as [x, y, w, h]
fractions of the picture, so the onset JPEG can outline it) and the measured value against
its threshold:

* ``graphic_missing``: a graphic expected on air (``expect``) is not there;
* ``graphic_unexpected``: a graphic is on air when it should not be (``expect: never``, or
  outside its ``schedule``); with ``raise_after: 2m`` this is also the stuck lower third;
* ``graphic_frozen``: a region declared ``changing: true`` (clock, ticker, score bug) has not
  changed while the rest of the picture moves;
* ``graphic_changing``: a region declared ``changing: false`` keeps changing;
* ``picture_corrupt``: decode garbage on the macroblock grid (``detectors.picture_corrupt``),
  or a graphic rendered as an opaque box (detail ``kind: opaque_box``).

Pictures are analysed every ``ANALYSIS_INTERVAL_S`` of media time, not every picture: a graphic
fault lasts seconds, and five looks a second keep the cost to a few percent of a 360p decode.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np

from detectors.corruption import (
    BOX_FLAT_CV,
    CorruptionDetector,
    CorruptionMeasurement,
    CorruptionSettings,
)
from detectors.graphics import (
    GraphicDetector,
    GraphicMeasurement,
    GraphicSettings,
    PictureMotion,
    in_windows,
    parse_window,
)
from monitor.checks.base import Check, CheckContext, Gauge, MediaCheck, detail_number
from monitor.config import DetectorConfig
from monitor.decode.media_source import Picture, PictureSelection

ANALYSIS_INTERVAL_S = 0.2
"""Media time between analysed pictures: an alarm's start is this exact."""


def wall_clock() -> float:
    """Seconds since the epoch: where a schedule's time of day comes from."""
    return time.time()


class _Graphic:
    """One configured graphic: its detector and its alarm trackers."""

    def __init__(self, config: DetectorConfig[GraphicSettings], context: CheckContext) -> None:
        settings, rule = config.settings, config.rule
        self.settings = settings
        self.detector = GraphicDetector(settings)
        self.scheduled = settings.expect == "schedule"
        self.windows = [parse_window(window) for window in settings.schedule]
        track = context.tracker
        self.missing = track("graphic_missing", rule) if settings.matched else None
        self.unexpected = (
            track("graphic_unexpected", rule)
            if settings.matched
            and (settings.expect != "always" or settings.during_breaks == "absent")
            else None
        )
        self.frozen = track("graphic_frozen", rule) if settings.changing is True else None
        self.hold_s = max(rule.raise_after_s, 2 * ANALYSIS_INTERVAL_S)
        self.restless = track("graphic_changing", rule) if settings.changing is False else None
        # A graphic rendered as an opaque box is picture corruption, on the graphic's rule.
        self.box = track("picture_corrupt", rule) if settings.matched else None
        # "subject" tells apart the alarms of two graphics when a restarted pipeline takes
        # over the open ones (as it tells apart the PIDs of transport alarms).
        self.base = {"graphic": settings.name, "subject": settings.name, "roi": list(settings.roi)}
        self.last: GraphicMeasurement | None = None

    def observe(
        self,
        y: np.ndarray,
        t_s: float,
        bit_depth: int,
        moving: bool,
        flat: bool,
        expected: bool | None,
    ) -> None:
        """``expected`` None: whether the graphic is on air is not judged (an ad break)."""
        m = self.detector.update(
            y, t_s, moving=moving, expected=bool(expected), bit_depth=bit_depth
        )
        self.last = m
        if self.missing is not None:
            # A flat picture (black, a flat field) has no graphic to see: that is another
            # alarm's business, not this one's.
            missing = expected is True and m.present is False and not flat
            self.missing.observe(t_s, missing, detail=self._presence(m) if missing else None)
        if self.unexpected is not None:
            unexpected = expected is False and m.present is True
            detail = self._presence(m) if unexpected else None
            self.unexpected.observe(t_s, unexpected, detail=detail)
        if self.frozen is not None and m.changed is not None:
            # Still for a hold-off, not merely since the last tick: a clock between two ticks
            # is not frozen, and the alarm must clear once it ticks again.
            still_s = t_s - m.still_since_s
            frozen = moving and still_s >= self.hold_s
            detail = {**self.base, "unchanged_s": round(still_s, 2)} if frozen else None
            self.frozen.observe(t_s, frozen, since_s=m.still_since_s, detail=detail)
        if self.restless is not None and m.changed is not None:
            detail = {**self.base, "changed_cells": m.changed_cells} if m.changed else None
            self.restless.observe(t_s, m.changed, detail=detail)
        if self.box is not None:
            detail = None
            if m.opaque_box:
                detail = {
                    **self.base,
                    "kind": "opaque_box",
                    "stddev": round(m.box_stddev_cv, 2),
                    "threshold": BOX_FLAT_CV,
                }
            self.box.observe(t_s, m.opaque_box, detail=detail)

    def expected(self, seconds_of_day: float, in_break: bool = False) -> bool | None:
        """Whether the graphic should be on air at this local time of day (None: not judged,
        in an ad break of a graphic that may be either)."""
        if in_break and self.settings.expect != "never":
            rule = self.settings.during_breaks
            return None if rule == "any" else rule == "present"
        if self.scheduled:
            return in_windows(self.windows, seconds_of_day)
        return self.settings.expect == "always"

    def _presence(self, m: GraphicMeasurement) -> dict[str, Any]:
        detail: dict[str, Any] = {**self.base, "threshold": self.settings.match_threshold}
        if m.score is not None:
            detail["score"] = detail_number(m.score, 3)
        if not m.learned:
            detail["learned"] = False  # nothing persistent in the region to learn from
        return detail


class GraphicsCheck(MediaCheck):
    """The channel's graphics and corrupted-picture checks on one picture stream."""

    wants_audio: ClassVar[bool] = False
    # Five looks a second: a GOP apart, a running clock and the picture around it both change
    # between any two looks; decode damage mostly shows in the P pictures a keyframe tier skips.
    needs_pictures: ClassVar[PictureSelection] = "reference"
    enabled_by: ClassVar[tuple[str, ...]] = ("graphics", "picture_corrupt")

    @classmethod
    def build(cls, context: CheckContext) -> Check | None:
        channel = context.channel
        graphics = [g for g in channel.graphics if g.rule.enabled]
        corrupt = channel.picture_corrupt if channel.picture_corrupt.rule.enabled else None
        if not graphics and corrupt is None:
            return None
        return cls(context, graphics, corrupt)

    def __init__(
        self,
        context: CheckContext,
        graphics: list[DetectorConfig[GraphicSettings]],
        corrupt: DetectorConfig[CorruptionSettings] | None,
    ) -> None:
        regions = [g.settings.roi for g in graphics]
        self.graphics = [_Graphic(g, context) for g in graphics]
        self.motion = PictureMotion(regions) if graphics else None
        self.corruption = None
        self.corrupt = None
        if corrupt is not None:
            self.corruption = CorruptionDetector(corrupt.settings, ANALYSIS_INTERVAL_S, regions)
            self.corrupt = context.tracker("picture_corrupt", corrupt.rule)
        self.scheduled = any(g.scheduled for g in self.graphics)
        self.breaks = context.breaks  # the ad-break check keeps it up to date
        self._due_s = -float("inf")
        self._anchor: tuple[float, float] | None = None  # (wall clock, media time) of a picture
        self._last_corruption: CorruptionMeasurement | None = None

    def picture(self, picture: Picture) -> None:
        t = picture.pts_s
        if t < self._due_s:
            return
        self._due_s = t + ANALYSIS_INTERVAL_S - 0.02  # a picture's worth of jitter
        y = picture.luma
        depth = picture.bit_depth
        if self.motion is not None:
            moving = self.motion.update(y, depth)
            flat = self.motion.flat
            day_s = self._time_of_day(t) if self.scheduled else 0.0
            in_break = self.breaks is not None and self.breaks.in_break
            for graphic in self.graphics:
                graphic.observe(y, t, depth, moving, flat, graphic.expected(day_s, in_break))
        if self.corruption is not None and self.corrupt is not None:
            frame = picture.frame
            m = self.corruption.update(
                y,
                t,
                bit_depth=depth,
                full_range=picture.full_range,
                chroma=(lambda: _chroma(frame)) if frame is not None else None,
            )
            self._last_corruption = m
            detail: dict[str, Any] | None = None
            if m.corrupt:
                detail = {
                    "damaged_blocks": m.damaged_blocks,
                    "damaged_threshold": m.damaged_threshold,
                    "garbage_blocks": m.garbage_blocks,
                    "min_blocks": self.corruption.settings.min_blocks,
                    "blockiness": round(m.blockiness, 2),
                }
                region = self.corruption.damaged_region()
                if region is not None:
                    detail["roi"] = [round(v, 4) for v in region]
            self.corrupt.observe(t, m.corrupt, detail=detail)

    def _time_of_day(self, t_s: float) -> float:
        """Local time of day of media time ``t_s``: the wall clock at the first analysed
        picture, advanced by media time (so a file analysed faster than real time follows
        the schedule as it would have played)."""
        if self._anchor is None:
            self._anchor = (wall_clock(), t_s)
        wall, media = self._anchor
        now = wall + (t_s - media)
        local = time.localtime(now)
        return local.tm_hour * 3600.0 + local.tm_min * 60.0 + local.tm_sec + now % 1.0

    def rejoin(self) -> None:
        self._due_s = -float("inf")
        self._anchor = None
        if self.motion is not None:
            self.motion.rejoin()
        for graphic in self.graphics:
            graphic.detector.rejoin()

    def gauges(self) -> list[Gauge]:
        gauges: list[Gauge] = []
        for graphic in self.graphics:
            m = graphic.last
            if m is None:
                continue
            labels = {"graphic": graphic.settings.name}
            if m.score is not None:
                gauges.append(("graphic_presence_score", labels, m.score))
            if graphic.frozen is not None or graphic.restless is not None:
                gauges.append(("graphic_unchanged_seconds", labels, m.pts_s - m.still_since_s))
        c = self._last_corruption
        if c is not None:
            gauges.append(("picture_blockiness", {}, c.blockiness))
            gauges.append(("picture_damaged_blocks", {}, float(c.damaged_blocks)))
            gauges.append(("picture_garbage_blocks", {}, float(c.garbage_blocks)))
        return gauges


def _chroma(frame: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """The U and V planes of a planar YUV frame as read-only views (no copy); None otherwise."""
    planes = frame.planes
    if len(planes) != 3:
        return None
    dtype = np.uint8 if frame.format.components[1].bits <= 8 else np.dtype("<u2")
    views = []
    for plane in planes[1:]:
        stride = plane.line_size // np.dtype(dtype).itemsize
        view = np.frombuffer(plane, dtype, count=stride * plane.height)
        view = view.reshape(plane.height, stride)[:, : plane.width]
        view.flags.writeable = False
        views.append(view)
    return views[0], views[1]
