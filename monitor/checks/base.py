"""The seam between a channel's pipeline and the checks that plug into it.

A check measures pictures and/or audio of one rendition of one channel input and drives its
own alarm trackers. ``ChannelPipeline`` builds every check named in ``BUILDERS`` from the
channel's config; a builder returns None when its check is off for that channel, so channels
that do not use a check pay nothing for it (not even its imports, if the builder imports
lazily).

Black, freeze, silence and presence are older than this seam and live in the pipeline itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from monitor.alarms.engine import AlarmTracker, Subject
from monitor.decode.media_source import AudioChunk, Picture, StreamInfo

if TYPE_CHECKING:
    from monitor.config import ChannelConfig


Gauge = tuple[str, Mapping[str, str], float]
"""A measurement for the metrics: (name, extra labels, value), e.g.
``("loudness_short_term_lufs", {"stream": "1"}, -23.1)``; exported as ``streamqc_<name>``
with the channel, input and rendition labels added."""


@dataclass(frozen=True)
class CheckContext:
    """What a check is built from."""

    channel: ChannelConfig
    subject: Subject
    audio_streams: list[StreamInfo]
    tracker: Callable[..., AlarmTracker]
    """``tracker(alarm, rule, merge=None)``: a new alarm tracker on this pipeline's subject,
    resumed from inherited state, settled when the input ends."""


class Check:
    """Base of the pluggable checks: override what the check needs; the rest do nothing."""

    wants_pictures = True
    wants_audio = True

    def picture(self, picture: Picture) -> None:
        """One decoded picture, in presentation order."""

    def audio(self, chunk: AudioChunk) -> None:
        """One block of decoded audio of one stream, in presentation order per stream."""

    def rejoin(self) -> None:
        """A new decoder feeds the pipeline from the next item on (live input reconnected):
        drop state that assumes continuity (previous picture, partial windows)."""

    def finish(self, end_s: float) -> None:
        """The input ended at media time ``end_s`` (trackers are settled by the pipeline)."""

    def gauges(self) -> list[Gauge]:
        """Latest measurements for the metrics (called about once a second)."""
        return []


Builder = Callable[[CheckContext], "Check | None"]

BUILDERS: list[Builder] = []
"""Every check's builder, in the order they see each item. Register with ``@builder``."""


def builder(make: Builder) -> Builder:
    BUILDERS.append(make)
    return make


def detail_number(value: float, digits: int = 1) -> Any:
    """A float for an event's detail, rounded; None for NaN/inf (JSON has neither)."""
    if value != value or value in (float("inf"), float("-inf")):
        return None
    return round(value, digits)
