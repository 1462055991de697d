"""Black and freeze: ``black`` and ``freeze`` alarms of one rendition, from one fused pass.

``detectors.picture.PictureAnalyzer`` measures both in one pass over the zero-copy luma view.
A black picture is reported as black, not also as a freeze. Detail: ``ratio`` and
``mean_luma`` (8-bit code values) of a black picture; ``difference`` of a frozen one.
"""

from __future__ import annotations

from typing import ClassVar

from detectors.picture import PictureAnalyzer, PictureMeasurement
from monitor.alarms.engine import Phase
from monitor.checks.base import Check, CheckContext, MediaCheck
from monitor.decode.media_source import Picture


class BlackFreezeCheck(MediaCheck):
    """Black and freeze of one rendition."""

    order: ClassVar[int] = 10
    wants_audio: ClassVar[bool] = False

    @classmethod
    def build(cls, context: CheckContext) -> Check | None:
        channel = context.channel
        if not (channel.black.rule.enabled or channel.freeze.rule.enabled):
            return None
        return cls(context)

    def __init__(self, context: CheckContext) -> None:
        black, freeze = context.channel.black, context.channel.freeze
        self.analyzer = PictureAnalyzer(
            black.settings if black.rule.enabled else None,
            freeze.settings if freeze.rule.enabled else None,
            row_step=context.channel.row_step,
            keyframes_only=context.pictures == "keyframes",
        )
        self.black = context.tracker("black", black.rule) if black.rule.enabled else None
        self.freeze = context.tracker("freeze", freeze.rule) if freeze.rule.enabled else None
        self._last: PictureMeasurement | None = None
        # Black at an SCTE-35 splice point is the splice (the ad server's slate), not a fault.
        self._breaks = context.breaks
        self._splice_tolerance_s = context.channel.scte35.settings.splice_tolerance_s

    def picture(self, picture: Picture) -> None:
        m = self.analyzer.update(
            picture.luma,
            picture.pts_s,
            bit_depth=picture.bit_depth,
            full_range=picture.full_range,
            keyframe=picture.keyframe,
        )
        self._last = m
        is_black = m.is_black
        breaks = self._breaks
        if is_black and breaks is not None:
            is_black = not breaks.near_splice(m.pts_s, self._splice_tolerance_s)
        if self.black is not None:
            detail = None  # built only when it can be kept: this runs for every picture
            if is_black:
                b = m.black
                assert b is not None
                detail = {"ratio": round(b.ratio, 4), "mean_luma": round(b.mean_cv, 1)}
            self.black.observe(m.pts_s, is_black, detail=detail)
        freeze = m.freeze if self.freeze is not None else None
        if self.freeze is not None and freeze is not None:
            frozen = freeze.frozen and not is_black
            if freeze.ended_s is not None:
                self.freeze.observe(freeze.ended_s, False)
            changed = {"difference": round(freeze.difference, 6)} if frozen else None
            self.freeze.observe(m.pts_s, frozen, since_s=freeze.since_s, detail=changed)

    def explains_picture(self) -> bool:
        return any(
            tracker is not None and tracker.phase is not Phase.IDLE
            for tracker in (self.black, self.freeze)
        )

    def luma_mean_cv(self) -> float | None:
        """Mean luma of the last picture in 8-bit code values (None before any, or black off)."""
        black = self._last.black if self._last is not None else None
        return None if black is None else black.mean_cv
