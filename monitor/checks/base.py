"""One mechanism for every alarm: a check turns what it is shown into conditions, and its alarm
trackers (``monitor.alarms.engine``) turn conditions into raised and cleared events.

Every check has the same lifecycle: its class's ``build(context)`` makes it from the channel's
configuration (None when it is off for that channel, so an unused check costs nothing, not
even its detector's imports if it imports them lazily); it is then shown what it watches,
asked for its ``gauges()`` about once a second, and told ``finish(end_s)`` when its subject
ends (its owner settles the trackers). What a check is shown depends on its scope, which is
also who owns it:

========== ==================================== =============================================
scope      owner                                shown
========== ==================================== =============================================
rendition  ``pipeline.channel.ChannelPipeline``  decoded pictures and audio (``MediaCheck``)
input      ``pipeline.live_session.LiveSession`` arrivals, transport conditions, every
                                                rendition's pictures (``InputCheck``)
unit       ``daemon.worker.UnitThread``          the live session failing or running
                                                (``UnitCheck``)
channel    ``daemon.failover_link.FailoverLink`` the failover policy's own alarms
                                                (``ChannelCheck``)
========== ==================================== =============================================

``monitor.checks.registry`` finds the checks: a new check is one module in this package.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from monitor.alarms.engine import AlarmTracker, Merge, Subject
from monitor.decode.media_source import (
    AudioChunk,
    Picture,
    PictureSelection,
    SpliceSection,
    StreamInfo,
    SubtitlePacket,
)

if TYPE_CHECKING:
    from detectors.ad_breaks import BreakState
    from monitor.config import AlarmRule, ChannelConfig
    from monitor.ingest.reports import TransportCondition

Scope = Literal["rendition", "input", "unit", "channel"]

Gauge = tuple[str, Mapping[str, str], float]
"""A measurement for the metrics: (name, extra labels, value), e.g.
``("loudness_short_term_lufs", {"stream": "1"}, -23.1)``; exported as ``streamqc_<name>``
with the channel, input and rendition labels added."""


class TrackerFactory(Protocol):
    def __call__(
        self,
        alarm: str,
        rule: AlarmRule,
        merge: Merge | None = None,
        *,
        rendition: str | None = None,
    ) -> AlarmTracker:
        """A new alarm tracker owned by the check's owner: resumed from the alarms it
        inherited, settled when its subject ends. ``rendition`` names the rendition of an
        input-scope tracker (rendition-scope trackers are on their pipeline's rendition)."""
        ...


@dataclass(frozen=True)
class InfoEvent:
    """Something a check reports that is not an alarm (an SCTE-35 cue): published on
    ``<prefix>/<channel>/events``, versioned like the alarm events."""

    type: str
    """What it is: ``scte35``."""
    subject: Subject
    at_s: float
    """Media seconds it happened (a cue: its splice point)."""
    wallclock: str
    detail: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": INFO_EVENT_VERSION,
            "type": self.type,
            "channel": self.subject.channel,
            "input": self.subject.input,
            "rendition": self.subject.rendition,
            "at": round(self.at_s, 3),
            "wallclock": self.wallclock,
            **self.detail,
        }


INFO_EVENT_VERSION = 1
Inform = Callable[[InfoEvent], None]


def ignore_info(event: InfoEvent) -> None:
    """Where informational events go when nobody listens."""


@dataclass(frozen=True)
class CheckContext:
    """What a check is built from."""

    channel: ChannelConfig
    subject: Subject
    """What the check watches: a rendition of an input; an input (rendition None); for the
    channel scope, the channel (input ``failover``)."""
    tracker: TrackerFactory
    audio_streams: Sequence[StreamInfo] = ()
    """Rendition scope: the audio streams the decoder found."""
    join_grace_s: float = 0.0
    """Rendition scope: how long after a live decoder joins a kind of media may be missing
    (pictures begin at the next keyframe)."""
    ladder: bool = False
    """Input scope: the input is a ladder of renditions (HLS)."""
    ladder_keyframes: bool = False
    """Input scope: the ladder's smaller renditions are not decoded in full."""
    breaks: BreakState | None = None
    """Rendition scope: the programme's ad-break state (None: SCTE-35 off). The ad-break
    check (order 0) writes it from the cues before any other check sees the same picture;
    the graphics, black and silence checks read it."""
    inform: Inform = ignore_info
    """Where a check's informational events go."""
    pictures: PictureSelection = "all"
    """Rendition scope: the pictures its decoder hands out (the input's tier); a check that
    needs more than that is not built (``Check.needs_pictures``)."""


class Check:
    """Base of every check; each scope has its own subclass with the hooks it is shown."""

    scope: ClassVar[Scope]
    order: ClassVar[int] = 50
    """Checks of one scope see each thing in this order (then by module name)."""
    needs_pictures: ClassVar[PictureSelection] = "keyframes"
    """The sparsest picture selection (an input's ``pictures`` tier) the check still sees
    what it measures at: ``keyframes`` runs in every tier; ``reference`` needs I and P
    pictures; ``all`` needs every picture."""
    enabled_by: ClassVar[tuple[str, ...]] = ()
    """The ``ChannelConfig`` detector keys that turn the check on, for ``needs_pictures``
    (``monitor.checks.registry.at_pictures``): the keys an input's tier refuses or turns
    off when it cannot run the check."""

    @classmethod
    def build(cls, context: CheckContext) -> Check | None:
        """The check for this context, or None when the channel's config turns it off."""
        raise NotImplementedError

    def finish(self, end_s: float) -> None:
        """The subject ended at ``end_s`` (its owner settles the trackers afterwards)."""

    def gauges(self) -> list[Gauge]:
        """Latest measurements for the metrics (called about once a second)."""
        return []


class MediaCheck(Check):
    """Measures decoded pictures and/or audio of one rendition of one channel input."""

    scope: ClassVar[Scope] = "rendition"
    wants_pictures: ClassVar[bool] = True
    wants_audio: ClassVar[bool] = True
    wants_splices: ClassVar[bool] = False
    wants_subtitles: ClassVar[bool] = False

    def picture(self, picture: Picture) -> None:
        """One decoded picture, in presentation order."""

    def audio(self, chunk: AudioChunk) -> None:
        """One block of decoded audio of one stream, in presentation order per stream."""

    def splice(self, section: SpliceSection) -> None:
        """One SCTE-35 section of the rendition (only checks with ``wants_splices``)."""

    def subtitle(self, packet: SubtitlePacket) -> None:
        """One packet of a subtitle stream (only checks with ``wants_subtitles``)."""

    def rejoin(self) -> None:
        """A new decoder feeds the pipeline from the next item on (live input reconnected):
        drop state that assumes continuity (previous picture, partial windows)."""

    def status(self) -> Mapping[str, Any]:
        """Facts for the channel status (captions on air, the break state), as JSON values;
        called about once a second."""
        return {}

    def explains_picture(self) -> bool:
        """The rendition's picture has a fault of its own right now (pending or raised), so
        comparing it with other renditions would only repeat it."""
        return False


@dataclass(frozen=True)
class Arrival:
    """How long nothing has arrived from one rendition of a live input (or, rendition None and
    reason ``unreachable``, from an input that could not even be started)."""

    rendition: str | None
    t_s: float
    """Session media time of the observation."""
    gap_s: float
    limit_s: float
    """The longest gap that is not a loss (a segment's wait, for HLS)."""
    since_s: float
    """Session time of the last arrival."""
    reason: str | None = None


class InputCheck(Check):
    """Watches one channel input as its live session sees it."""

    scope: ClassVar[Scope] = "input"
    wants_pictures: ClassVar[bool] = False

    def arrival(self, arrival: Arrival) -> None:
        """About ten times a second per rendition, and once an input could not start."""

    def transport(self, condition: TransportCondition, t_s: float, rendition: str | None) -> None:
        """A reader reported a transport condition (TR 101 290, SRT, HLS), as it changed;
        ``rendition``: the rendition it is about, when its subject is one."""

    def tick(self, t_s: float) -> None:
        """The session's control loop ran (about ten times a second)."""

    def rendition_picture(self, rendition: str | None, picture: Picture, explained: bool) -> None:
        """A picture of one rendition after its own pipeline measured it; ``explained``: that
        rendition's picture has a fault of its own (``MediaCheck.explains_picture``)."""


class UnitCheck(Check):
    """Watches whether a channel input is being monitored at all."""

    scope: ClassVar[Scope] = "unit"

    def session_failed(self, error: str, t_s: float) -> None:
        """The live session failed and will be retried."""

    def session_running(self, ran_s: float, t_s: float) -> None:
        """The live session has been running for ``ran_s`` (about once a second)."""


class ChannelCheck(Check):
    """Watches a channel as a whole: the failover policy's own alarms."""

    scope: ClassVar[Scope] = "channel"

    def policy_alarm(
        self, name: str, active: bool, t_s: float, severity: str, detail: Mapping[str, Any]
    ) -> None:
        """The failover policy raised (``active``) or cleared its alarm ``name``."""


def detail_number(value: float, digits: int = 1) -> Any:
    """A float for an event's detail, rounded; None for NaN/inf (JSON has neither)."""
    if value != value or value in (float("inf"), float("-inf")):
        return None
    return round(value, digits)
