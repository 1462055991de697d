"""Ad breaks: SCTE-35 cues of the rendition, its break state, ``ad_break_overrun`` and
``scte35_missing``.

Off unless the channel writes an ``scte35`` block. The cues are the sections of the PMT's
SCTE-35 stream (stream_type 0x86 with the 'CUEI' registration), demuxed with the pictures
(``MediaSource(splice_sections=True)``), so their splice times land on the pictures' own
timeline whether the input is a file or live. Each is decoded (``monitor.decode.scte35``),
published as an informational ``scte35`` event, and given to the break state
(``detectors.ad_breaks.BreakState``) that this check owns for the pipeline: it runs first
(order 0), so the graphics, black and silence checks read an up-to-date state through
``CheckContext.breaks``.

* ``ad_break_overrun``: a break whose cue-out gave a break_duration had no return (cue-in)
  by its planned end + ``tolerance``. Starts at the planned end; clears at the return.
* ``scte35_missing``: no cue (splice_insert or time_signal) for ``max_interval``. Starts at
  the last cue (or the start of the input); clears at the next cue.
"""

from __future__ import annotations

from typing import Any, ClassVar

from detectors.ad_breaks import AdBreakSettings, BreakState
from monitor.alarms.engine import utc_now
from monitor.checks.base import Check, CheckContext, Gauge, InfoEvent, MediaCheck
from monitor.decode.media_source import AudioChunk, Picture, SpliceSection
from monitor.decode.scte35 import BadSection, cue_detail, decode_section, splice_seconds


class AdBreaksCheck(MediaCheck):
    """The SCTE-35 cues and ad-break alarms of one rendition."""

    order: ClassVar[int] = 0
    wants_splices: ClassVar[bool] = True

    @classmethod
    def build(cls, context: CheckContext) -> Check | None:
        if context.breaks is None or not context.channel.scte35.rule.enabled:
            return None
        return cls(context, context.breaks)

    def __init__(self, context: CheckContext, breaks: BreakState) -> None:
        config = context.channel.scte35
        self.settings: AdBreakSettings = config.settings
        self.breaks = breaks
        self._context = context
        self.overrun = context.tracker("ad_break_overrun", config.rule)
        self.missing = (
            context.tracker("scte35_missing", config.rule)
            if self.settings.max_interval_s is not None
            else None
        )
        self._first_s: float | None = None
        self._now_s = 0.0
        self.cues = 0
        self.malformed = 0
        self.breaks_started = 0

    def splice(self, section: SpliceSection) -> None:
        received_s = max(section.pts_s, self._now_s)
        splice = decode_section(section.section)
        if isinstance(splice, BadSection):
            self.malformed += 1
            self._inform(received_s, {"error": splice.reason, "section": section.section.hex()})
            return
        at_s = splice_seconds(splice, section.clock, received_s)
        if splice.is_cue:
            self.cues += 1
        self.breaks.cue(splice, at_s, received_s)
        self._inform(at_s, cue_detail(splice, at_s))

    def picture(self, picture: Picture) -> None:
        self._advance(picture.pts_s)

    def audio(self, chunk: AudioChunk) -> None:
        self._advance(chunk.pts_s)

    def _advance(self, t_s: float) -> None:
        if t_s < self._now_s:
            return  # audio and video interleave: the state only moves forward
        self._now_s = t_s
        if self._first_s is None:
            self._first_s = t_s
        for change in self.breaks.advance(t_s):
            if change.in_break:
                self.breaks_started += 1
            else:
                # The return ends an overrun, at the return.
                self.overrun.observe(change.at_s, False)
        since_s = self.breaks.overrun_since_s(t_s, self.settings.tolerance_s)
        detail = None
        if since_s is not None:
            detail = {
                "event_id": self.breaks.event_id,
                "break_start": _seconds(self.breaks.started_s),
                "planned_end": _seconds(self.breaks.ends_at_s),
                "tolerance_s": self.settings.tolerance_s,
            }
        self.overrun.observe(t_s, since_s is not None, since_s=since_s, detail=detail)
        if self.missing is not None and self.settings.max_interval_s is not None:
            last_s = self.breaks.last_cue_s
            last_s = self._first_s if last_s is None else last_s
            silent = t_s - last_s >= self.settings.max_interval_s
            missing_detail = {"max_interval_s": self.settings.max_interval_s} if silent else None
            self.missing.observe(t_s, silent, since_s=last_s, detail=missing_detail)

    def _inform(self, at_s: float, detail: dict[str, Any]) -> None:
        context = self._context
        context.inform(InfoEvent("scte35", context.subject, at_s, utc_now(), detail))

    def status(self) -> dict[str, Any]:
        """The break state for the channel status: ``in_break``, and the planned end of the
        break in media seconds (None when open-ended or not in a break; the daemon makes it
        a UTC ``break_ends_at``)."""
        ends_s = self.breaks.ends_at_s if self.breaks.in_break else None
        return {"in_break": self.breaks.in_break, "break_ends_at_media_s": _seconds(ends_s)}

    def gauges(self) -> list[Gauge]:
        return [
            ("scte35_in_break", {}, 1.0 if self.breaks.in_break else 0.0),
            ("scte35_cues", {}, float(self.cues)),
            ("scte35_breaks", {}, float(self.breaks_started)),
            ("scte35_sections_malformed", {}, float(self.malformed)),
        ]


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
