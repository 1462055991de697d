"""One channel input's pipeline: decoded media → detectors → alarm trackers → events.

It holds no I/O of its own: ``process`` takes the items a MediaSource yields and the emit
callback receives AlarmEvents, so the same pipeline serves ``analyze`` and the daemon.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from detectors.ad_breaks import BreakState
from monitor.alarms.engine import Emit, Inheritance, Subject, Trackers
from monitor.checks.base import CheckContext, Gauge, Inform, MediaCheck, ignore_info
from monitor.checks.black_freeze import BlackFreezeCheck
from monitor.checks.registry import at_pictures, build_checks
from monitor.config import ChannelConfig
from monitor.decode.media_source import (
    AudioChunk,
    Picture,
    PictureSelection,
    SpliceSection,
    StreamInfo,
    SubtitlePacket,
)


class ChannelPipeline:
    """Measures one input (one rendition of it) of one channel and tracks its alarms."""

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
        inform: Inform = ignore_info,
        pictures: PictureSelection = "all",
    ) -> None:
        """``join_grace_s``: after a decoder joins a live stream, pictures begin only at the
        next keyframe (a GOP away, often 2-5 s): a kind missing that long is not missing yet.
        ``inform`` receives the checks' informational events (SCTE-35 cues). ``pictures``:
        what the decoder hands out; the checks that cannot run on it are off."""
        channel = at_pictures(channel, pictures)
        self.channel = channel
        self._inherited = inherited
        self.subject = Subject(channel.name, input_name, rendition)
        self._emit = emit
        self.trackers = Trackers(self.subject, emit, inherited)
        self.audio_streams = audio_streams
        self.media_end_s = 0.0
        self.picture_count = 0
        # Sample peak per (stream, channel) since the last take_audio_peaks(): for the metrics.
        self._peaks: dict[int, np.ndarray] = {}
        # One break state per rendition, shared by its checks through the context.
        self.breaks = BreakState() if channel.scte35.rule.enabled else None
        context = CheckContext(
            channel,
            self.subject,
            self.trackers,
            audio_streams=audio_streams,
            join_grace_s=join_grace_s,
            breaks=self.breaks,
            inform=inform,
            pictures=pictures,
        )
        self.checks = [c for c in build_checks("rendition", context) if isinstance(c, MediaCheck)]
        self._picture_checks = [c for c in self.checks if c.wants_pictures]
        self._audio_checks = [c for c in self.checks if c.wants_audio]
        self._splice_checks = [c for c in self.checks if c.wants_splices]
        self._subtitle_checks = [c for c in self.checks if c.wants_subtitles]
        self._pictures = next((c for c in self.checks if isinstance(c, BlackFreezeCheck)), None)

    def process(self, item: Picture | AudioChunk | SpliceSection | SubtitlePacket) -> None:
        if isinstance(item, Picture):
            self.picture_count += 1
            # The picture's own frame, not the GOP a sparse one stands for: the media decoded
            # so far (the live watchdog's progress) must not run ahead of the audio.
            self.media_end_s = max(self.media_end_s, item.pts_s + item.duration_s)
            for check in self._picture_checks:
                check.picture(item)
        elif isinstance(item, AudioChunk):
            self.media_end_s = max(self.media_end_s, item.pts_s + item.duration_s)
            self._keep_peaks(item)
            for check in self._audio_checks:
                check.audio(item)
        elif isinstance(item, SpliceSection):
            for splice_check in self._splice_checks:
                splice_check.splice(item)
        else:
            for subtitle_check in self._subtitle_checks:
                subtitle_check.subtitle(item)

    def rejoin(self) -> None:
        """A new decoder feeds this pipeline from its next item on (a live input reconnected)."""
        for check in self.checks:
            check.rejoin()

    def gauges(self) -> list[Gauge]:
        """The checks' latest measurements, for the metrics."""
        return [gauge for check in self.checks for gauge in check.gauges()]

    def status(self) -> dict[str, Any]:
        """The checks' facts for the channel status (``MediaCheck.status``)."""
        facts: dict[str, Any] = {}
        for check in self.checks:
            facts.update(check.status())
        return facts

    def explains_picture(self) -> bool:
        """This rendition's picture has a fault of its own right now (black, freeze)."""
        return any(check.explains_picture() for check in self._picture_checks)

    def luma_mean_cv(self) -> float | None:
        """Mean luma of the last picture in 8-bit code values (None before any, or black off)."""
        return self._pictures.luma_mean_cv() if self._pictures is not None else None

    def _keep_peaks(self, chunk: AudioChunk) -> None:
        peak = np.abs(chunk.samples).max(axis=1) if chunk.samples.shape[1] else None
        if peak is not None:
            kept = self._peaks.get(chunk.stream)
            self._peaks[chunk.stream] = (
                peak if kept is None or kept.shape != peak.shape else np.maximum(kept, peak)
            )

    def take_audio_peaks(self) -> list[tuple[int, int, float]]:
        """(stream, channel, sample peak in dBFS) since the last call, and start over."""
        peaks = [
            (stream, channel, 20.0 * math.log10(max(float(value), 1e-10)))
            for stream, values in sorted(self._peaks.items())
            for channel, value in enumerate(values)
        ]
        self._peaks.clear()
        return peaks

    def finish(self) -> None:
        """The input ended: settle every open alarm at the end of the media."""
        for check in self.checks:
            check.finish(self.media_end_s)
        self.trackers.finish(self.media_end_s)
