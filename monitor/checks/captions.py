"""Closed captions in the video: ``captions_missing`` and ``captions_empty`` per service.

Off unless the channel writes a ``captions`` block (a channel without captions must not
alarm). Each configured service (CEA-608 CC1-CC4, CTA-708 services 1-63) has both alarms:

* ``captions_missing``: no caption data at all for the service's carrier (the 608 field of
  CC1/CC2 or CC3/CC4, the DTVCC packets of a 708 service) for ``raise_after``: the caption
  inserter is bypassed or the encoder drops the side data. Starts at the first picture
  without data.
* ``captions_empty``: the carrier keeps coming but carries no text for the service (padding
  only) for ``raise_after``: the inserter is alive but fed nothing. Starts at the first
  picture after the last text.

As Videotek's "CC Not Detected" and "CC Not Updating", or Tektronix's "no activity for 30
seconds". Detail: ``service`` (``cc1``, ``708:1``). The decoded 608 text (``last_caption``)
is for the channel status, never an alarm; the metrics get counters without labels.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from detectors.captions import (
    EMPTY_GAP_S,
    NOTHING_HOLDS,
    CaptionDecoder,
    CaptionSettings,
    ServicePresence,
    parse_service,
)
from detectors.graphics import in_windows, parse_window
from monitor.alarms.engine import AlarmTracker, Phase
from monitor.checks.base import Check, CheckContext, Gauge, MediaCheck
from monitor.decode.media_source import Picture, PictureSelection

BATCH_S = 0.2
"""Pictures are judged in batches this long: the Python runs hot five times a second instead
of cold after every decode (as audio blocks do). Each picture keeps its own time, so alarm
starts are as exact; an alarm is raised at most this much later."""


class _Service:
    """One watched caption service: its carrier, its presence logic and its two alarms."""

    def __init__(self, name: str, context: CheckContext, empty_gap_s: float) -> None:
        self.name = name
        self.standard, self.number = parse_service(name)
        if self.standard == 608:
            self.field_bit = 1 if self.number <= 2 else 2
        else:
            self.field_bit = 4
        self.text_bit = 1 << (self.number - 1 if self.standard == 608 else self.number)
        self.presence = ServicePresence(empty_gap_s)
        rule = context.channel.captions.rule
        self.missing = context.tracker("captions_missing", rule)
        self.empty = context.tracker("captions_empty", rule)
        # "subject" tells the services' alarms apart when a restarted pipeline takes them over.
        self.detail = {"service": name, "subject": name}


class CaptionsCheck(MediaCheck):
    """The configured caption services of one rendition."""

    order: ClassVar[int] = 30
    wants_audio: ClassVar[bool] = False
    # Every picture carries its own cc_data (A/53 Part 4, in its SEI): a skipped picture
    # is a gap in the caption byte stream.
    needs_pictures: ClassVar[PictureSelection] = "all"
    enabled_by: ClassVar[tuple[str, ...]] = ("captions",)

    @classmethod
    def build(cls, context: CheckContext) -> Check | None:
        return cls(context) if context.channel.captions.rule.enabled else None

    def __init__(self, context: CheckContext) -> None:
        config = context.channel.captions
        self.settings: CaptionSettings = config.settings
        gap_s = min(EMPTY_GAP_S, config.rule.raise_after_s) or EMPTY_GAP_S
        self.decoder = CaptionDecoder()
        self.services = [_Service(name, context, gap_s) for name in self.settings.services]
        self.windows = [parse_window(w) for w in self.settings.schedule]
        self.scheduled = self.settings.expect == "schedule"
        self._anchor: tuple[float, float] | None = None  # (wall clock, media time)
        self.on_air = False
        """A configured service carried text within the last empty gap."""
        self._batch: list[tuple[float, bytes]] = []

    def picture(self, picture: Picture) -> None:
        batch = self._batch
        batch.append((picture.pts_s, picture.cc_data))
        if picture.pts_s - batch[0][0] >= BATCH_S:
            self._run()

    def finish(self, end_s: float) -> None:
        self._run()

    def _run(self) -> None:
        """Decode and judge the pictures gathered so far, each at its own time."""
        batch, self._batch = self._batch, []
        for t_s, cc_data in batch:
            self._judge(t_s, cc_data)

    def _judge(self, t_s: float, cc_data: bytes) -> None:
        frame = self.decoder.update(cc_data)
        expected = self._expected(t_s)
        on_air = False
        for service in self.services:
            data = bool(frame.fields & service.field_bit)
            texts = frame.text_608 if service.standard == 608 else frame.services_708
            verdict = service.presence.observe(t_s, data, bool(texts & service.text_bit), expected)
            if verdict is not NOTHING_HOLDS or service.missing.phase is not Phase.IDLE:
                self._observe(service.missing, t_s, verdict.missing_since_s, service.detail)
            if verdict is not NOTHING_HOLDS or service.empty.phase is not Phase.IDLE:
                self._observe(service.empty, t_s, verdict.empty_since_s, service.detail)
            last = service.presence.last_text_s
            on_air = on_air or (last is not None and t_s - last < service.presence.empty_gap_s)
        self.on_air = on_air

    @staticmethod
    def _observe(
        tracker: AlarmTracker, t_s: float, since_s: float | None, detail: dict[str, Any]
    ) -> None:
        active = since_s is not None
        tracker.observe(t_s, active, since_s=since_s, detail=detail if active else None)

    def _expected(self, t_s: float) -> bool:
        if not self.scheduled:
            return True
        # Local time of day of media time t_s: the wall clock at the first picture advanced
        # by media time, so a file analysed faster than real time follows the schedule as it
        # would have played (as the graphics checks do).
        if self._anchor is None:
            self._anchor = (time.time(), t_s)
        wall, media = self._anchor
        now = wall + (t_s - media)
        local = time.localtime(now)
        day_s = local.tm_hour * 3600.0 + local.tm_min * 60.0 + local.tm_sec + now % 1.0
        return in_windows(self.windows, day_s)

    def rejoin(self) -> None:
        self._run()
        self._anchor = None

    def last_caption(self) -> str:
        """The newest 608 caption line of the first configured 608 service ('' when none)."""
        for service in self.services:
            if service.standard == 608:
                return self.decoder.channels[service.number - 1].last_line
        return ""

    def status(self) -> dict[str, Any]:
        """``captions``: whether a configured service carried text lately (``on_air``) and
        the last 608 caption line, for the console."""
        return {"captions": {"on_air": self.on_air, "last_line": self.last_caption()}}

    def gauges(self) -> list[Gauge]:
        decoder = self.decoder
        chars = sum(channel.characters for channel in decoder.channels)
        captions = sum(channel.captions for channel in decoder.channels)
        return [
            ("captions_on_air", {}, 1.0 if self.on_air else 0.0),
            ("captions_pictures_with_data", {}, float(decoder.pictures_with_data)),
            ("captions_608_characters", {}, float(chars)),
            ("captions_608_captions", {}, float(captions)),
            ("captions_parity_errors", {}, float(decoder.parity_errors)),
        ]
