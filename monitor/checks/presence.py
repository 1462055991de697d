"""Presence: ``video_missing`` and ``audio_missing`` (per audio stream) of one rendition.

A kind of media is missing once it lags the other kind by more than ``PRESENCE_TOLERANCE_S``
of media time. A picture of a sparse selection (``pictures: keyframes``) is present until the
next one is due (``Picture.end_s``), so sparse pictures are not missing video. After a live
decoder joins a stream, pictures begin only at the next keyframe (a GOP away, often 2-5 s): a
kind missing less than ``join_grace_s`` since the join is not missing yet. A rendition without
any audio stream raises ``audio_missing`` with ``reason: no audio stream``.
"""

from __future__ import annotations

from typing import ClassVar

from monitor.alarms.engine import AlarmTracker
from monitor.checks.base import Check, CheckContext, MediaCheck
from monitor.decode.media_source import AudioChunk, Picture

PRESENCE_TOLERANCE_S = 1.0
"""A stream counts as missing once it lags the other kind by more than this much media time;
MPEG-TS muxers interleave within 0.7 s, so less would see gaps that are only interleaving."""


class PresenceCheck(MediaCheck):
    """Video and every audio stream keep coming."""

    order: ClassVar[int] = 90  # after the others: it judges what every item changed

    @classmethod
    def build(cls, context: CheckContext) -> Check | None:
        channel = context.channel
        if not (channel.video_missing.rule.enabled or channel.audio_missing.rule.enabled):
            return None
        return cls(context)

    def __init__(self, context: CheckContext) -> None:
        channel = context.channel
        self.join_grace_s = context.join_grace_s
        self.video_end_s = 0.0
        self.audio_end_s: dict[int | None, float] = {
            s.index: 0.0 for s in context.audio_streams
        } or {None: 0.0}
        self.media_end_s = 0.0
        missing = channel.video_missing.rule
        self.video_missing = context.tracker("video_missing", missing) if missing.enabled else None
        self.audio_missing: dict[int | None, AlarmTracker] = {}
        if channel.audio_missing.rule.enabled:
            for stream in self.audio_end_s:
                self.audio_missing[stream] = context.tracker(
                    "audio_missing", channel.audio_missing.rule
                )
        self._joined_s: float | None = None  # media time the current decoder began
        self._first_join = True
        self._unseen: set[object] = set()  # kinds not yet decoded since then

    def picture(self, picture: Picture) -> None:
        self._arrived("video", picture.pts_s)
        # A picture of a sparse selection (a probe tier's keyframe) stands for its GOP: video
        # is there until the next one is due, but the media has only reached its own frame,
        # or the audio would lag a GOP behind every keyframe.
        self.video_end_s = max(self.video_end_s, picture.end_s)
        self.media_end_s = max(self.media_end_s, picture.pts_s + picture.duration_s)
        self._judge()

    def audio(self, chunk: AudioChunk) -> None:
        self._arrived(chunk.stream, chunk.pts_s)
        end = chunk.pts_s + chunk.duration_s
        self.audio_end_s[chunk.stream] = max(self.audio_end_s.get(chunk.stream, 0.0), end)
        self.media_end_s = max(self.media_end_s, end)
        self._judge()

    def rejoin(self) -> None:
        self._joined_s = None

    def finish(self, end_s: float) -> None:
        self._judge()

    def _arrived(self, kind: object, t_s: float) -> None:
        if self._joined_s is None:
            self._join(t_s)
        self._unseen.discard(kind)

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

    def _judge(self) -> None:
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
