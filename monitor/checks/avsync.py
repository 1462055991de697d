"""The A/V sync check: alarm ``av_sync`` when the measured offset leaves the preset's window.

``detectors.avsync`` reads the offset (+ = audio leads) every ``hop`` of media; the offset in
force is the latest confident one, so silence, a static picture or a steady tone holds the
last trusted value instead of guessing. The alarm is raised when the offset in force stays
outside ``[-max_audio_lag_ms, +max_audio_lead_ms]`` for ``raise_after``, and cleared once it
has been back inside for ``clear_after``. Readings, hence the alarm's start and end, are dated
at the middle of the window they measured.

Detail: ``offset_ms``, ``confidence`` and ``method`` of the offset in force, ``held`` (true
when this window was not confident and an earlier offset is in force), the window in force
(``preset``, ``max_audio_lead_ms``, ``max_audio_lag_ms``), ``spread_ms`` for a test signal,
and the timestamp measurements ``timestamp_offset_ms`` and ``clock_drift_ppm``. Gauges: the
offset in force and this window's, the confidence, the timestamp offset, the clock drift and
the timestamp jumps of each stream since the decoder started.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

from monitor.alarms.engine import AlarmTracker
from monitor.checks.base import Check, CheckContext, Gauge, MediaCheck, detail_number
from monitor.decode.media_source import AudioChunk, Picture, PictureSelection

if TYPE_CHECKING:
    from detectors.avsync import AvSyncSettings, SyncReading


class AvSyncCheck(MediaCheck):
    """The A/V offset of one input against its tolerance window."""

    # Events are timed at the pictures that show them: without every picture they are
    # 80-160 ms apart (reference) or a GOP (keyframes), coarser than the presets' windows,
    # and every skipped picture would read as a video timestamp jump.
    needs_pictures: ClassVar[PictureSelection] = "all"
    enabled_by: ClassVar[tuple[str, ...]] = ("av_sync",)

    @classmethod
    def build(cls, context: CheckContext) -> Check | None:
        config = context.channel.av_sync
        if not config.rule.enabled:
            return None
        if not any(info.index == config.settings.audio_stream for info in context.audio_streams):
            return None  # nothing to measure: audio_missing says so
        return cls(config.settings, context.tracker("av_sync", config.rule))

    def __init__(self, settings: AvSyncSettings, tracker: AlarmTracker) -> None:
        from detectors.avsync import AvSyncDetector

        self.settings = settings
        self.tracker = tracker
        self.detector = AvSyncDetector(settings)
        self.last: SyncReading | None = None
        lead, lag = settings.limits_ms
        self._window = {
            "preset": settings.preset,
            "max_audio_lead_ms": lead,
            "max_audio_lag_ms": lag,
        }

    def picture(self, picture: Picture) -> None:
        detector = self.detector
        detector.picture(picture.luma, picture.pts_s, picture.duration_s, picture.bit_depth)
        if detector.readings:
            self._judge(detector.take())

    def audio(self, chunk: AudioChunk) -> None:
        if chunk.stream != self.settings.audio_stream:
            return
        detector = self.detector
        detector.audio(chunk.samples, chunk.pts_s, chunk.sample_rate)
        if detector.readings:
            self._judge(detector.take())

    def rejoin(self) -> None:
        # A new decoder may bring another A/V relation: measure afresh, hold the last offset.
        self.detector.reset()

    def finish(self, end_s: float) -> None:
        self.detector.finish()
        self._judge(self.detector.take())

    def _judge(self, readings: list[SyncReading]) -> None:
        for reading in readings:
            self.last = reading
            force = reading.in_force
            outside = force is not None and self.settings.outside(force.offset_ms)
            self.tracker.observe(
                reading.t_s, outside, detail=self._detail(reading) if outside else None
            )

    def _detail(self, reading: SyncReading) -> dict[str, Any]:
        force = reading.in_force
        assert force is not None
        detail: dict[str, Any] = {
            "offset_ms": detail_number(force.offset_ms),
            "confidence": detail_number(force.confidence, 2),
            "method": force.method,
            "held": reading.held,
            **self._window,
        }
        if force.spread_ms is not None:
            detail["spread_ms"] = detail_number(force.spread_ms)
        detail["timestamp_offset_ms"] = detail_number(reading.timestamp_offset_ms)
        if reading.clock_drift_ppm is not None:
            detail["clock_drift_ppm"] = detail_number(reading.clock_drift_ppm)
        return detail

    def gauges(self) -> list[Gauge]:
        reading = self.last
        if reading is None:
            return []
        # Metrics in base units (seconds), counts as counters (_total).
        gauges: list[Gauge] = [
            ("av_sync_confidence", {}, reading.measured.confidence),
            ("av_sync_timestamp_offset_seconds", {}, reading.timestamp_offset_ms / 1000),
        ]
        if reading.in_force is not None:
            gauges.append(("av_sync_offset_seconds", {}, reading.in_force.offset_ms / 1000))
        if not math.isnan(reading.measured.offset_ms):
            measured_s = reading.measured.offset_ms / 1000
            gauges.append(("av_sync_measured_offset_seconds", {}, measured_s))
        if reading.clock_drift_ppm is not None:
            gauges.append(("av_sync_clock_drift_ppm", {}, reading.clock_drift_ppm))
        timestamps = self.detector.timestamps
        for kind, clock in (("audio", timestamps.audio), ("video", timestamps.video)):
            gauges.append(("av_sync_timestamp_jumps_total", {"kind": kind}, clock.jumps))
        return gauges
