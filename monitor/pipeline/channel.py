"""One channel input's pipeline: decoded media → detectors → alarm trackers → events.

It holds no I/O of its own: ``process`` takes the items a MediaSource yields and the emit
callback receives AlarmEvents, so the same pipeline serves ``analyze`` and the daemon.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from detectors.picture import PictureAnalyzer, PictureMeasurement
from detectors.silence import SilenceDetector
from monitor.alarms.engine import AlarmTracker, Emit, Inheritance, Merge, Subject
from monitor.checks.base import CheckContext, Gauge
from monitor.checks.registry import build_checks
from monitor.config import ChannelConfig
from monitor.decode.media_source import AudioChunk, Picture, StreamInfo

PRESENCE_TOLERANCE_S = 1.0
"""A stream counts as missing once it lags the other kind by more than this much media time;
MPEG-TS muxers interleave within 0.7 s, so less would see gaps that are only interleaving."""


class ChannelPipeline:
    """Measures one input of one channel and tracks its alarms."""

    def __init__(
        self,
        channel: ChannelConfig,
        input_name: str,
        emit: Emit,
        *,
        audio_streams: list[StreamInfo],
        rendition: str | None = None,
        inherited: Inheritance | None = None,
        join_grace_s: float = 0.0,
    ) -> None:
        """``join_grace_s``: after a decoder joins a live stream, pictures begin only at the
        next keyframe (a GOP away, often 2-5 s): a kind missing that long is not missing yet."""
        self.channel = channel
        self._inherited = inherited
        self.subject = Subject(channel.name, input_name, rendition)
        self._emit = emit
        self.trackers: list[AlarmTracker] = []

        black, freeze = channel.black, channel.freeze
        self.pictures = PictureAnalyzer(
            black.settings if black.rule.enabled else None,
            freeze.settings if freeze.rule.enabled else None,
            row_step=channel.row_step,
        )
        self.black = self._tracker("black", black.rule) if black.rule.enabled else None
        self.freeze = self._tracker("freeze", freeze.rule) if freeze.rule.enabled else None

        self.audio_streams = audio_streams
        self._silence: dict[int, SilenceDetector] = {}
        self._silence_trackers: dict[int, AlarmTracker] = {}

        # Presence: when each kind last delivered media (end of its last frame).
        self.video_end_s = 0.0
        self.audio_end_s: dict[int | None, float] = {s.index: 0.0 for s in audio_streams} or {
            None: 0.0
        }
        self.media_end_s = 0.0
        missing = channel.video_missing.rule
        self.video_missing = self._tracker("video_missing", missing) if missing.enabled else None
        self.audio_missing: dict[int | None, AlarmTracker] = {}
        if channel.audio_missing.rule.enabled:
            for stream in self.audio_end_s:
                self.audio_missing[stream] = self._tracker(
                    "audio_missing", channel.audio_missing.rule
                )
        self.picture_count = 0
        self.join_grace_s = join_grace_s
        self._joined_s: float | None = None  # media time the current decoder began
        self._first_join = True
        self._unseen: set[object] = set()  # kinds not yet decoded since then
        self._last_measurement: PictureMeasurement | None = None
        # Sample peak per (stream, channel) since the last take_audio_peaks(): for the metrics.
        self._peaks: dict[int, np.ndarray] = {}
        self.checks = build_checks(
            CheckContext(channel, self.subject, audio_streams, self._tracker)
        )
        self._picture_checks = [c for c in self.checks if c.wants_pictures]
        self._audio_checks = [c for c in self.checks if c.wants_audio]

    def _tracker(self, alarm: str, rule: Any, merge: Merge | None = None) -> AlarmTracker:
        tracker = AlarmTracker(alarm, rule, self.subject, self._emit, merge, self._inherited)
        self.trackers.append(tracker)
        return tracker

    def process(self, item: Picture | AudioChunk) -> None:
        if self._joined_s is None:
            self._join(item.pts_s)
        if type(item) is Picture:
            self.picture_count += 1
            self._picture(item)
            for check in self._picture_checks:
                check.picture(item)
        else:
            self._audio(item)
            for check in self._audio_checks:
                check.audio(item)
        self._presence()

    def rejoin(self) -> None:
        """A new decoder feeds this pipeline from its next item on (a live input reconnected)."""
        self._joined_s = None
        for check in self.checks:
            check.rejoin()

    def gauges(self) -> list[Gauge]:
        """The pluggable checks' latest measurements, for the metrics."""
        return [gauge for check in self.checks for gauge in check.gauges()]

    def _join(self, t_s: float) -> None:
        self._joined_s = t_s
        if self._first_join:  # presence is measured from the first media, wherever it starts
            self._first_join = False
            self.video_end_s = self.media_end_s = t_s
            for stream in self.audio_end_s:
                self.audio_end_s[stream] = t_s
        self._unseen = {"video", *self.audio_end_s}

    def _last_seen(self, kind: object, end_s: float) -> float:
        if kind in self._unseen and self._joined_s is not None:
            return max(end_s, self._joined_s + self.join_grace_s)
        return end_s

    def _picture(self, picture: Picture) -> None:
        self._unseen.discard("video")
        m = self.pictures.update(
            picture.luma,
            picture.pts_s,
            bit_depth=picture.bit_depth,
            full_range=picture.full_range,
            keyframe=picture.keyframe,
        )
        end = picture.end_s
        self._last_measurement = m
        self.video_end_s = max(self.video_end_s, end)
        self.media_end_s = max(self.media_end_s, end)
        is_black = m.is_black
        if self.black is not None:
            detail = None  # built only when it can be kept: this runs for every picture
            if is_black:
                b = m.black
                assert b is not None
                detail = {"ratio": round(b.ratio, 4), "mean_luma": round(b.mean_cv, 1)}
            self.black.observe(m.pts_s, is_black, detail=detail)
        freeze = m.freeze if self.freeze is not None else None
        if self.freeze is not None and freeze is not None:
            # A black picture is reported as black, not also as a freeze.
            frozen = freeze.frozen and not is_black
            if freeze.ended_s is not None:
                self.freeze.observe(freeze.ended_s, False)
            detail = {"difference": round(freeze.difference, 6)} if frozen else None
            self.freeze.observe(m.pts_s, frozen, since_s=freeze.since_s, detail=detail)

    def _audio(self, chunk: AudioChunk) -> None:
        self._unseen.discard(chunk.stream)
        end = chunk.pts_s + chunk.duration_s
        self.audio_end_s[chunk.stream] = max(self.audio_end_s.get(chunk.stream, 0.0), end)
        self.media_end_s = max(self.media_end_s, end)
        peak = np.abs(chunk.samples).max(axis=1) if chunk.samples.shape[1] else None
        if peak is not None:
            kept = self._peaks.get(chunk.stream)
            self._peaks[chunk.stream] = (
                peak if kept is None or kept.shape != peak.shape else np.maximum(kept, peak)
            )
        rule = self.channel.silence.rule
        if not rule.enabled:
            return
        channels = chunk.samples.shape[0]
        detector = self._silence.get(chunk.stream)
        if (
            detector is None
            or detector.channels != channels
            or detector.sample_rate != chunk.sample_rate
        ):
            detector = SilenceDetector(self.channel.silence.settings, chunk.sample_rate, channels)
            self._silence[chunk.stream] = detector
        tracker = self._silence_trackers.get(chunk.stream)
        if tracker is None:
            tracker = self._tracker("silence", rule, merge=muted_union)
            self._silence_trackers[chunk.stream] = tracker
        names = self._channel_names(chunk.stream)
        for obs in detector.update(chunk.samples, chunk.pts_s):
            detail: dict[str, Any] = {
                "stream": chunk.stream,
                "channels": list(obs.muted),
                "channel_count": channels,
            }
            if names and len(names) == channels:
                detail["channel_names"] = [names[c] for c in obs.muted]
            tracker.observe(obs.t_s, bool(obs.muted), detail=detail)

    def luma_mean_cv(self) -> float | None:
        """Mean luma of the last picture in 8-bit code values (None before any, or black off)."""
        m = self._last_measurement
        black = m.black if m is not None else None
        return None if black is None else black.mean_cv

    def take_audio_peaks(self) -> list[tuple[int, int, float]]:
        """(stream, channel, sample peak in dBFS) since the last call, and start over."""
        peaks = [
            (stream, channel, 20.0 * math.log10(max(float(value), 1e-10)))
            for stream, values in sorted(self._peaks.items())
            for channel, value in enumerate(values)
        ]
        self._peaks.clear()
        return peaks

    def _channel_names(self, stream: int) -> tuple[str, ...]:
        for info in self.audio_streams:
            if info.index == stream:
                return info.channel_names
        return ()

    def _presence(self) -> None:
        now = self.media_end_s
        if self.video_missing is not None:
            last = self._last_seen("video", self.video_end_s)
            self.video_missing.observe(now, now - last > PRESENCE_TOLERANCE_S, since_s=last)
        for stream, tracker in self.audio_missing.items():
            last = self._last_seen(stream, self.audio_end_s[stream])
            detail = (
                {"stream": stream}
                if stream is not None
                else {"stream": None, "reason": "no audio stream"}
            )
            tracker.observe(now, now - last > PRESENCE_TOLERANCE_S, since_s=last, detail=detail)

    def finish(self) -> None:
        """The input ended: settle every open alarm at the end of the media."""
        self._presence()
        for check in self.checks:
            check.finish(self.media_end_s)
        for tracker in self.trackers:
            tracker.finish(self.media_end_s)


def muted_union(kept: Mapping[str, Any], new: Mapping[str, Any]) -> Mapping[str, Any]:
    """A silence alarm names every channel that was muted while it lasted."""
    names = dict(zip(kept.get("channels", ()), kept.get("channel_names", ()), strict=False))
    names.update(zip(new.get("channels", ()), new.get("channel_names", ()), strict=False))
    merged = dict(new)
    merged["channels"] = sorted(set(kept.get("channels", ())) | set(new.get("channels", ())))
    if names:
        merged["channel_names"] = [names[c] for c in merged["channels"] if c in names]
    return merged
