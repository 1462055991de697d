"""DVB subtitles and teletext: ``subtitles_missing`` per language when its PID stops.

Off unless the channel writes a ``subtitles`` block. The PMT announces the subtitle and
teletext streams with their language (descriptors 0x59 and 0x56, EN 300 468); FFmpeg's
demuxer hands their packets over undecoded (``MediaSource(subtitles=True)``). A language
that had packets and has none for ``raise_after`` raises ``subtitles_missing``, starting at
its last packet; a language in ``languages`` never seen raises it from the start of the
input. Detail: ``language``, ``codec``.
"""

from __future__ import annotations

from typing import ClassVar

from detectors.subtitles import SubtitlePresence
from monitor.alarms.engine import AlarmTracker
from monitor.checks.base import Check, CheckContext, Gauge, MediaCheck
from monitor.decode.media_source import Picture, SubtitlePacket


class SubtitlesCheck(MediaCheck):
    """The subtitle languages of one rendition."""

    wants_audio: ClassVar[bool] = False
    wants_subtitles: ClassVar[bool] = True

    @classmethod
    def build(cls, context: CheckContext) -> Check | None:
        return cls(context) if context.channel.subtitles.rule.enabled else None

    def __init__(self, context: CheckContext) -> None:
        config = context.channel.subtitles
        self._context = context
        self._rule = config.rule
        # raise_after is the window: the condition begins at the last packet.
        self.presence = SubtitlePresence(config.settings.languages, config.rule.raise_after_s)
        self._trackers: dict[str, AlarmTracker] = {}
        self._codecs: dict[str, str] = {}
        self.packets = 0

    def subtitle(self, packet: SubtitlePacket) -> None:
        language = packet.language or f"stream{packet.stream}"
        self._codecs[language] = packet.codec
        self.presence.packet(language, packet.pts_s)
        self.packets += 1

    def picture(self, picture: Picture) -> None:
        t_s = picture.pts_s
        silent = self.presence.silent(t_s)
        for language in self.presence.languages():
            since_s = silent.get(language)
            tracker = self._trackers.get(language)
            if tracker is None:
                if since_s is None:
                    continue
                tracker = self._context.tracker(
                    "subtitles_missing", self._context.channel.subtitles.rule
                )
                self._trackers[language] = tracker
            detail = None
            if since_s is not None:
                detail = {
                    "language": language,
                    "subject": language,
                    "codec": self._codecs.get(language),
                }
            tracker.observe(t_s, since_s is not None, since_s=since_s, detail=detail)

    def gauges(self) -> list[Gauge]:
        return [("subtitle_packets", {}, float(self.packets))]
