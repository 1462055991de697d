"""Silence: ``silence`` of an audio stream, and of each of its channels on its own.

``detectors.silence.SilenceDetector`` finds, per channel of a stream, audio at or below the
threshold. Two kinds of condition come of it, both alarm ``silence``:

- **the stream is silent**: every judged channel at once (dead air). One alarm naming them
  all in ``channels``.
- **a channel is silent** while the stream is not: one alarm per channel, so a centre channel
  (the dialogue of a 5.1 mix) going silent is raised by name even while another channel
  already is, and its clear says when it came back. A channel alarm already raised stays
  raised if the whole stream then falls silent too (that raises the stream's alarm beside it).

The channels named in ``ignore_channels`` are never judged (the LFE by default: most
programmes leave it silent). Detail: ``stream``, ``channels`` (indices), ``channel_names``
(the layout's names, e.g. ``FC``, when the stream has a layout), ``channel_count``, and for a
channel's alarm ``audio_channel`` (its index).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

from detectors.silence import SilenceDetector
from monitor.alarms.engine import AlarmTracker
from monitor.checks.base import Check, CheckContext, MediaCheck
from monitor.decode.media_source import AudioChunk


class SilenceCheck(MediaCheck):
    """Silence of every judged channel of every audio stream of one rendition."""

    order: ClassVar[int] = 10
    wants_pictures: ClassVar[bool] = False

    @classmethod
    def build(cls, context: CheckContext) -> Check | None:
        return cls(context) if context.channel.silence.rule.enabled else None

    def __init__(self, context: CheckContext) -> None:
        self._context = context
        self._config = context.channel.silence
        self._ignored = frozenset(name.upper() for name in self._config.settings.ignore_channels)
        self._detectors: dict[int, SilenceDetector] = {}
        self._judged: dict[int, tuple[int, ...]] = {}
        self._trackers: dict[tuple[int, int | None], AlarmTracker] = {}
        self._names = {info.index: info.channel_names for info in context.audio_streams}
        # Silence at an SCTE-35 splice point is the splice, not a fault.
        self._breaks = context.breaks
        self._splice_tolerance_s = context.channel.scte35.settings.splice_tolerance_s

    def audio(self, chunk: AudioChunk) -> None:
        stream = chunk.stream
        channels = chunk.samples.shape[0]
        detector = self._detectors.get(stream)
        if (
            detector is None
            or detector.channels != channels
            or detector.sample_rate != chunk.sample_rate
        ):
            detector = SilenceDetector(self._config.settings, chunk.sample_rate, channels)
            self._detectors[stream] = detector
            names = chunk.channel_names or self._names.get(stream, ())
            if len(names) != channels:
                names = ()
            self._names[stream] = names
            self._judged[stream] = tuple(
                c for c in range(channels) if not names or names[c].upper() not in self._ignored
            )
        judged = self._judged[stream]
        breaks = self._breaks
        for obs in detector.update(chunk.samples, chunk.pts_s):
            if breaks is not None and breaks.near_splice(obs.t_s, self._splice_tolerance_s):
                obs = replace(obs, muted=())
            whole = bool(judged) and all(c in obs.muted for c in judged)
            detail = self._detail(stream, judged, channels) if whole else None
            self._tracker(stream, None).observe(obs.t_s, whole, detail=detail)
            for c in judged:
                tracker = self._tracker(stream, c)
                muted = c in obs.muted and (not whole or tracker.active)
                detail = self._detail(stream, (c,), channels) if muted else None
                tracker.observe(obs.t_s, muted, detail=detail)

    def _tracker(self, stream: int, channel: int | None) -> AlarmTracker:
        tracker = self._trackers.get((stream, channel))
        if tracker is None:
            tracker = self._context.tracker("silence", self._config.rule)
            self._trackers[(stream, channel)] = tracker
        return tracker

    def _detail(self, stream: int, muted: tuple[int, ...], channels: int) -> dict[str, Any]:
        detail: dict[str, Any] = {"stream": stream}
        if len(muted) == 1 and len(self._judged[stream]) > 1:
            detail["audio_channel"] = muted[0]
        detail["channels"] = list(muted)
        detail["channel_count"] = channels
        names = self._names.get(stream, ())
        if len(names) == channels:
            detail["channel_names"] = [names[c] for c in muted]
        return detail
