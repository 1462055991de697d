"""Silence: ``silence`` of each audio stream, naming the muted channels.

``detectors.silence.SilenceDetector`` finds, per channel of a stream, audio below the
threshold for the detector's duration. One alarm per stream: it lasts while any channel is
muted, and its ``detail`` names every channel muted while it lasted (``channels``, indices;
``channel_names`` from the stream's layout, e.g. ``FC``), with ``stream`` and
``channel_count``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from detectors.silence import SilenceDetector
from monitor.alarms.engine import AlarmTracker
from monitor.checks.base import Check, CheckContext, MediaCheck
from monitor.decode.media_source import AudioChunk


class SilenceCheck(MediaCheck):
    """Silence of every audio stream of one rendition."""

    order: ClassVar[int] = 10
    wants_pictures: ClassVar[bool] = False

    @classmethod
    def build(cls, context: CheckContext) -> Check | None:
        return cls(context) if context.channel.silence.rule.enabled else None

    def __init__(self, context: CheckContext) -> None:
        self._context = context
        self._config = context.channel.silence
        self._detectors: dict[int, SilenceDetector] = {}
        self._trackers: dict[int, AlarmTracker] = {}
        self._names = {info.index: info.channel_names for info in context.audio_streams}

    def audio(self, chunk: AudioChunk) -> None:
        channels = chunk.samples.shape[0]
        detector = self._detectors.get(chunk.stream)
        if (
            detector is None
            or detector.channels != channels
            or detector.sample_rate != chunk.sample_rate
        ):
            detector = SilenceDetector(self._config.settings, chunk.sample_rate, channels)
            self._detectors[chunk.stream] = detector
        tracker = self._trackers.get(chunk.stream)
        if tracker is None:
            tracker = self._context.tracker("silence", self._config.rule, merge=muted_union)
            self._trackers[chunk.stream] = tracker
        names = self._names.get(chunk.stream, ())
        for obs in detector.update(chunk.samples, chunk.pts_s):
            detail: dict[str, Any] = {
                "stream": chunk.stream,
                "channels": list(obs.muted),
                "channel_count": channels,
            }
            if names and len(names) == channels:
                detail["channel_names"] = [names[c] for c in obs.muted]
            tracker.observe(obs.t_s, bool(obs.muted), detail=detail)


def muted_union(kept: Mapping[str, Any], new: Mapping[str, Any]) -> Mapping[str, Any]:
    """A silence alarm names every channel that was muted while it lasted."""
    names = dict(zip(kept.get("channels", ()), kept.get("channel_names", ()), strict=False))
    names.update(zip(new.get("channels", ()), new.get("channel_names", ()), strict=False))
    merged = dict(new)
    merged["channels"] = sorted(set(kept.get("channels", ())) | set(new.get("channels", ())))
    if names:
        merged["channel_names"] = [names[c] for c in merged["channels"] if c in names]
    return merged
