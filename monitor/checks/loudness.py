"""The loudness check: EBU R128 / ATSC A/85 compliance of every audio stream (language track).

Each audio stream gets its own BS.1770 meter (``detectors.loudness``) and its own alarms:

- ``loudness``: the integrated and/or short-term loudness (``measure``) is outside target ±
  tolerance, or the short-term loudness is above the preset's ceiling (R128 s1), for the
  block's ``raise_after``. Detail: ``integrated_lufs`` / ``short_term_lufs`` (the reading
  farthest from the target while the alarm lasted), ``target_lufs``, ``tolerance_lu``.
- ``true_peak``: a true peak above the ceiling; detail ``true_peak_dbtp`` (the highest),
  ``max_dbtp``, ``channel``.
- ``audio_clipping``: ``clip_run_samples`` samples in a row at full scale; detail
  ``channels``, ``run_samples``.

Silence is the silence check's business, not loudness: BS.1770's absolute gate (-70 LUFS)
leaves silent blocks out of integrated loudness, so a silence neither lowers it nor raises
``loudness``; a window that holds less than ``min_measured`` of audio above the gate is not
judged, and a short-term reading at or below the gate is not judged either.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, ClassVar

from detectors.loudness import LoudnessBlock, LoudnessMeter, LoudnessSettings
from detectors.loudness_kernels import ABSOLUTE_GATE_LUFS
from monitor.alarms.engine import AlarmTracker
from monitor.checks.base import Check, CheckContext, Gauge, MediaCheck, detail_number
from monitor.decode.media_source import AudioChunk, StreamInfo


class LoudnessCheck(MediaCheck):
    """Loudness, true peak and clipping of each selected audio stream."""

    wants_pictures: ClassVar[bool] = False

    @classmethod
    def build(cls, context: CheckContext) -> Check | None:
        return cls(context) if context.channel.loudness.rule.enabled else None

    def __init__(self, context: CheckContext, clock: Callable[[], float] = time.time) -> None:
        """``clock``: wall time in seconds since the epoch, for the daily reset."""
        config = context.channel.loudness
        self.settings = config.settings
        self.rule = config.rule
        self._context = context
        self._clock = clock
        self._infos = {info.index: info for info in context.audio_streams}
        self._streams: dict[int, StreamLoudness | None] = {}
        self._wall_minus_media_s: float | None = None
        self._next_reset_s = math.inf  # wall time of the next daily reset

    def audio(self, chunk: AudioChunk) -> None:
        if chunk.stream not in self._streams:
            self._streams[chunk.stream] = self._stream(chunk.stream)
        stream = self._streams[chunk.stream]
        if stream is None:
            return
        if self.settings.integration == "daily":
            self._daily_reset(chunk.pts_s)
        stream.audio(chunk)

    def _stream(self, index: int) -> StreamLoudness | None:
        """The measurement of a stream the configuration selects, None for the others."""
        info = self._infos.get(index)
        wanted = self.settings.streams
        if wanted and not (index in wanted or (info is not None and info.language in wanted)):
            return None
        return StreamLoudness(index, info, self.settings, self._tracker)

    def _tracker(self, alarm: str, peak: bool, merge: Any) -> AlarmTracker | None:
        if alarm not in self.settings.alarms:
            return None
        rule = self.rule
        if peak:  # a peak is an instant: raise at the first, clear after a quiet spell
            rule = replace(rule, raise_after_s=0.0, clear_after_s=self.settings.peak_clear_after_s)
        tracker: AlarmTracker = self._context.tracker(alarm, rule, merge=merge)
        return tracker

    def _daily_reset(self, media_s: float) -> None:
        """Integration starts over when the day's ``reset_at`` passes. Media time is mapped to
        wall time once, at the first audio, so a file analysed faster than real time resets
        where the live feed would have."""
        if self._wall_minus_media_s is None:
            wall_s = self._clock()
            self._wall_minus_media_s = wall_s - media_s
            self._next_reset_s = next_reset(wall_s, self.settings.reset_minute)
            return
        now = self._wall_minus_media_s + media_s
        if now >= self._next_reset_s:
            for stream in self._streams.values():
                if stream is not None:
                    stream.reset_integration()
            self._next_reset_s = next_reset(now, self.settings.reset_minute)

    def rejoin(self) -> None:
        for stream in self._streams.values():
            if stream is not None:
                stream.restart()

    def gauges(self) -> list[Gauge]:
        return [gauge for s in self._streams.values() if s is not None for gauge in s.gauges()]


def next_reset(after_s: float, minute_of_day: int) -> float:
    """Wall time (epoch seconds) of the first local ``minute_of_day`` strictly after ``after_s``
    (naive local datetimes, so a daylight-saving change keeps the time of day)."""
    day = datetime.fromtimestamp(after_s).replace(hour=0, minute=0, second=0, microsecond=0)
    at = day + timedelta(minutes=minute_of_day)
    if at.timestamp() <= after_s:
        at = day + timedelta(days=1, minutes=minute_of_day)
    return at.timestamp()


class StreamLoudness:
    """The meter and the three alarm trackers of one audio stream."""

    def __init__(
        self,
        index: int,
        info: StreamInfo | None,
        settings: LoudnessSettings,
        tracker: Callable[[str, bool, Any], AlarmTracker | None],
    ) -> None:
        self.index = index
        self.names = info.channel_names if info is not None else ()
        self.settings = settings
        self.limits = settings.limits()
        self.meter: LoudnessMeter | None = None
        self._base: dict[str, Any] = {"stream": index}
        if info is not None and info.language:
            self._base["language"] = info.language
        self._labels = {"stream": str(index)}
        self.loudness = tracker("loudness", False, self._farthest)
        self.true_peak = tracker("true_peak", True, _highest_peak)
        self.clipping = tracker("audio_clipping", True, _clip_union)
        self._last: LoudnessBlock | None = None
        self._peak_dbtp = -math.inf  # since the last gauges()
        self._integrated = settings.measure in ("integrated", "both")
        self._short_term = settings.measure in ("short_term", "both")

    def audio(self, chunk: AudioChunk) -> None:
        channels = chunk.samples.shape[0]
        meter = self.meter
        if meter is None or meter.channels != channels or meter.sample_rate != chunk.sample_rate:
            names = self.names if len(self.names) == channels else ()
            meter = self.meter = LoudnessMeter(self.settings, chunk.sample_rate, channels, names)
        for block in meter.update(chunk.samples, chunk.pts_s):
            self._observe(block, meter.step_s)

    def _observe(self, block: LoudnessBlock, step_s: float) -> None:
        self._last = block
        self._peak_dbtp = max(self._peak_dbtp, block.true_peak_dbtp)
        if self.loudness is not None:
            detail = self._loudness_detail(block)
            self.loudness.observe(block.t_s, detail is not None, detail=detail)
        step_start_s = block.t_s - step_s
        if self.true_peak is not None:
            limit = self.limits.true_peak_max_dbtp
            over = block.true_peak_dbtp > limit
            detail = None
            if over:
                detail = {
                    **self._base,
                    "true_peak_dbtp": detail_number(block.true_peak_dbtp, 2),
                    "max_dbtp": limit,
                    "channel": block.true_peak_channel,
                }
            self.true_peak.observe(block.t_s, over, since_s=step_start_s, detail=detail)
        if self.clipping is not None:
            clipped = bool(block.clipped_channels)
            detail = None
            if clipped:
                detail = {
                    **self._base,
                    "channels": list(block.clipped_channels),
                    "run_samples": block.clip_run_samples,
                    "level_dbfs": self.settings.clip_level_dbfs,
                }
            self.clipping.observe(block.t_s, clipped, since_s=step_start_s, detail=detail)

    def _loudness_detail(self, block: LoudnessBlock) -> dict[str, Any] | None:
        """The detail of a reading out of bounds, None when within them or not judged."""
        limits = self.limits
        target, tolerance = limits.target_lufs, limits.tolerance_lu
        integrated = block.integrated_lufs
        short_term = block.short_term_lufs
        judged_i = (
            self._integrated
            and block.measured_s >= self.settings.min_measured_s
            and integrated > ABSOLUTE_GATE_LUFS
        )
        judged_s = short_term > ABSOLUTE_GATE_LUFS  # False for NaN: not 3 s of audio yet
        out = judged_i and abs(integrated - target) > tolerance
        if judged_s:
            out = out or (self._short_term and abs(short_term - target) > tolerance)
            ceiling = limits.short_term_max_lufs
            out = out or (ceiling is not None and short_term > ceiling)
        if not out:
            return None
        detail = dict(self._base)
        if judged_i:
            detail["integrated_lufs"] = detail_number(integrated)
        if judged_s and (self._short_term or limits.short_term_max_lufs is not None):
            detail["short_term_lufs"] = detail_number(short_term)
        detail["target_lufs"] = target
        detail["tolerance_lu"] = tolerance
        if limits.short_term_max_lufs is not None:
            detail["short_term_max_lufs"] = limits.short_term_max_lufs
        return detail

    def _farthest(self, kept: Mapping[str, Any], new: Mapping[str, Any]) -> Mapping[str, Any]:
        """A loudness alarm reports the reading farthest from the target while it lasted."""
        return kept if self._distance(kept) > self._distance(new) else new

    def _distance(self, detail: Mapping[str, Any]) -> float:
        target = self.limits.target_lufs
        values = [detail.get("integrated_lufs"), detail.get("short_term_lufs")]
        return max((abs(v - target) for v in values if v is not None), default=0.0)

    def restart(self) -> None:
        if self.meter is not None:
            self.meter.restart()

    def reset_integration(self) -> None:
        if self.meter is not None:
            self.meter.reset_integration()

    def gauges(self) -> list[Gauge]:
        block = self._last
        if block is None:
            return []
        labels = self._labels
        readings = (
            ("loudness_momentary_lufs", block.momentary_lufs),
            ("loudness_short_term_lufs", block.short_term_lufs),
            ("loudness_integrated_lufs", block.integrated_lufs),
            ("loudness_range_lu", block.range_lu),
            ("true_peak_dbtp", self._peak_dbtp),
        )
        self._peak_dbtp = -math.inf
        # NaN: not measured yet (under 400 ms / 3 s of audio); -inf is digital silence.
        return [(name, labels, value) for name, value in readings if value == value]


def _highest_peak(kept: Mapping[str, Any], new: Mapping[str, Any]) -> Mapping[str, Any]:
    """A true_peak alarm reports the highest peak while it lasted (None: not finite)."""

    def level(detail: Mapping[str, Any]) -> float:
        value = detail["true_peak_dbtp"]
        return math.inf if value is None else float(value)

    return kept if level(kept) > level(new) else new


def _clip_union(kept: Mapping[str, Any], new: Mapping[str, Any]) -> Mapping[str, Any]:
    """An audio_clipping alarm names every clipped channel and the longest run."""
    merged = dict(new)
    merged["channels"] = sorted(set(kept["channels"]) | set(new["channels"]))
    merged["run_samples"] = max(kept["run_samples"], new["run_samples"])
    return merged
