"""The alarm engine: measured conditions become raised and cleared alarm events.

A condition that has held for ``raise_after`` (media seconds) raises its alarm; once it has been
absent for ``clear_after`` the alarm clears. The event's ``start`` is when the condition began,
not when the hold-off expired, and ``end`` is when it stopped, not when the clear hold-off
expired. A condition shorter than ``raise_after`` never raises, and a gap shorter than
``clear_after`` inside an alarm does not split it (hysteresis, as Volicon's detection/recovery
or the AVP 4000's "time before slate / before recovery").

Hold-offs run on media time, so a file analysed at 20x real time raises exactly what the live
feed would have.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Literal

from monitor.config import AlarmRule

EVENT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Subject:
    """What an alarm is about: a channel's input, and the rendition where there are several."""

    channel: str
    input: str
    rendition: str | None = None


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """One alarm event, as printed by ``streamqc analyze`` and published to MQTT."""

    alarm: str
    state: Literal["raised", "cleared"]
    start: float  # media seconds when the condition began
    end: float | None  # media seconds when it ended (cleared events only)
    channel: str
    input: str
    rendition: str | None
    severity: str
    wallclock: str  # UTC, ISO 8601, when the event was emitted
    id: str  # the same for a raise and its clear
    detail: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": EVENT_VERSION,
            "alarm": self.alarm,
            "state": self.state,
            "start": round(self.start, 3),
            "end": None if self.end is None else round(self.end, 3),
            "channel": self.channel,
            "input": self.input,
            "rendition": self.rendition,
            "severity": self.severity,
            "wallclock": self.wallclock,
            "id": self.id,
            "detail": dict(self.detail),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False, default=str)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AlarmEvent:
        """The inverse of ``to_dict`` (events cross process boundaries as dicts)."""
        return cls(
            alarm=data["alarm"],
            state=data["state"],
            start=float(data["start"]),
            end=None if data.get("end") is None else float(data["end"]),
            channel=data["channel"],
            input=data["input"],
            rendition=data.get("rendition"),
            severity=data["severity"],
            wallclock=data["wallclock"],
            id=data["id"],
            detail=dict(data.get("detail") or {}),
        )

    @property
    def subject(self) -> Subject:
        return Subject(self.channel, self.input, self.rendition)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Phase(Enum):
    IDLE = "idle"
    PENDING = "pending"  # condition present, raise_after not yet reached
    RAISED = "raised"
    CLEARING = "clearing"  # raised, condition absent, clear_after not yet reached


Emit = Callable[[AlarmEvent], None]
Merge = Callable[[Mapping[str, Any], Mapping[str, Any]], Mapping[str, Any]]


def keep_first(kept: Mapping[str, Any], new: Mapping[str, Any]) -> Mapping[str, Any]:
    """A ``Merge`` that keeps the detail of the first observation (the cause, not the latest)."""
    return kept


InheritKey = tuple[str, Subject, Any, Any, Any, Any]


def _inherit_key(alarm: str, subject: Subject, detail: Mapping[str, Any] | None) -> InheritKey:
    # An audio stream (silence, audio_missing, loudness) and its channel (silence), a
    # transport subject (PID, rendition) or a graphic tells apart the several trackers of one
    # alarm on one subject.
    detail = detail or {}
    return (
        alarm,
        subject,
        detail.get("stream"),
        detail.get("audio_channel"),
        detail.get("subject"),
        detail.get("graphic"),
    )


class Inheritance:
    """Alarms that were active when a pipeline restarted (a crashed worker, a changed config).

    A tracker of the new pipeline whose condition is present again resumes the alarm, with its
    id and start, instead of raising it a second time. An alarm no tracker claims has gone while
    the pipeline was away; ``expire`` clears it once the new pipeline has seen enough media to
    know (an alarm clears on evidence, not because a process restarted).
    """

    def __init__(self, events: Iterable[AlarmEvent] = ()) -> None:
        self._events = {_inherit_key(e.alarm, e.subject, e.detail): e for e in events}

    def __len__(self) -> int:
        return len(self._events)

    def claim(
        self, alarm: str, subject: Subject, detail: Mapping[str, Any] | None
    ) -> AlarmEvent | None:
        return self._events.pop(_inherit_key(alarm, subject, detail), None)

    def expire(self, end_s: float, emit: Emit, reason: str = "absent_after_restart") -> None:
        """Clear every unclaimed alarm as ended at media time ``end_s``, for ``reason``."""
        for event in self._events.values():
            detail = dict(event.detail)
            detail["duration_s"] = round(max(end_s - event.start, 0.0), 3)
            detail["cleared_by"] = reason
            emit(replace(event, state="cleared", end=end_s, wallclock=utc_now(), detail=detail))
        self._events.clear()


class AlarmTracker:
    """Hysteresis for one alarm of one subject. Observations must come in media-time order."""

    def __init__(
        self,
        alarm: str,
        rule: AlarmRule,
        subject: Subject,
        emit: Emit,
        merge: Merge | None = None,
        inherited: Inheritance | None = None,
    ) -> None:
        """``merge(kept, new)`` folds the detail of each active observation into the alarm's;
        without it the latest observation's detail is kept. ``inherited`` holds the alarms a
        restarted pipeline carries over."""
        self.alarm = alarm
        self._inherited = inherited
        self._merge = merge
        self.rule = rule
        self.subject = subject
        self._emit = emit
        self.phase = Phase.IDLE
        self._start_s = 0.0
        self._end_s = 0.0
        self._id = ""
        self._detail: Mapping[str, Any] = {}

    def observe(
        self,
        t_s: float,
        active: bool,
        since_s: float | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """The condition is ``active`` at media time ``t_s``.

        ``since_s`` is when an active condition really began, when the detector knows better
        than the first active observation (a freeze begins at its reference picture).
        """
        phase = self.phase
        if phase is Phase.IDLE:
            if not active:
                return
            if self._inherited and self._resume(detail):
                return
            self._start_s = t_s if since_s is None else min(since_s, t_s)
            self.phase = phase = Phase.PENDING
        if active and detail is not None:
            self._detail = (
                self._merge(self._detail, detail) if self._merge and self._detail else detail
            )
        if phase is Phase.PENDING:
            if t_s - self._start_s >= self.rule.raise_after_s:
                self._raise()
                if not active:
                    self._begin_clearing(t_s)
            elif not active:
                self.phase = Phase.IDLE
        elif phase is Phase.RAISED:
            if not active:
                self._begin_clearing(t_s)
        elif phase is Phase.CLEARING:
            if t_s - self._end_s >= self.rule.clear_after_s:
                # Absent from _end_s until t_s, however sparse the observations in between.
                self._clear(self._end_s)
                if active:
                    self.observe(t_s, active, since_s, detail)
            elif active:
                self.phase = Phase.RAISED

    def finish(self, t_s: float, reason: str = "end_of_input") -> None:
        """The input ended at media time ``t_s``: settle whatever is open."""
        if self.phase is Phase.PENDING:
            if t_s - self._start_s >= self.rule.raise_after_s:
                self._raise()
                self._clear(t_s, reason)
            else:
                self.phase = Phase.IDLE
        elif self.phase is Phase.RAISED:
            self._clear(t_s, reason)
        elif self.phase is Phase.CLEARING:
            self._clear(self._end_s)

    def _resume(self, detail: Mapping[str, Any] | None) -> bool:
        assert self._inherited is not None
        event = self._inherited.claim(self.alarm, self.subject, detail)
        if event is None:
            return False
        self._id, self._start_s = event.id, event.start
        self._detail = detail or event.detail
        self.phase = Phase.RAISED
        return True

    @property
    def active(self) -> bool:
        return self.phase in (Phase.RAISED, Phase.CLEARING)

    def _begin_clearing(self, t_s: float) -> None:
        self._end_s = t_s
        self.phase = Phase.CLEARING
        if self.rule.clear_after_s <= 0:
            self._clear(t_s)

    def _raise(self) -> None:
        self._id = uuid.uuid4().hex
        self.phase = Phase.RAISED
        self._emit(self._event("raised", None, self._detail))

    def _clear(self, end_s: float, reason: str | None = None) -> None:
        detail = dict(self._detail)
        detail["duration_s"] = round(end_s - self._start_s, 3)
        if reason:
            detail["cleared_by"] = reason
        self.phase = Phase.IDLE
        self._emit(self._event("cleared", end_s, detail))
        self._detail = {}

    def _event(
        self, state: Literal["raised", "cleared"], end_s: float | None, detail: Mapping[str, Any]
    ) -> AlarmEvent:
        s = self.subject
        return AlarmEvent(
            alarm=self.alarm,
            state=state,
            start=self._start_s,
            end=end_s,
            channel=s.channel,
            input=s.input,
            rendition=s.rendition,
            severity=self.rule.severity,
            wallclock=utc_now(),
            id=self._id,
            detail=detail,
        )


class Trackers:
    """The alarm trackers of one owner (a pipeline, a live session, a worker's unit, a
    channel's failover link): made on its subject, resumed from what it inherited, settled
    together when its subject ends. Calling it makes one (the checks' ``TrackerFactory``)."""

    def __init__(self, subject: Subject, emit: Emit, inherited: Inheritance | None = None):
        self.subject = subject
        self._emit = emit
        self._inherited = inherited
        self.made: list[AlarmTracker] = []

    def __call__(
        self,
        alarm: str,
        rule: AlarmRule,
        merge: Merge | None = None,
        *,
        rendition: str | None = None,
    ) -> AlarmTracker:
        """A new tracker; ``rendition`` puts it on that rendition of the owner's input."""
        subject = self.subject if rendition is None else replace(self.subject, rendition=rendition)
        tracker = AlarmTracker(alarm, rule, subject, self._emit, merge, self._inherited)
        self.made.append(tracker)
        return tracker

    def finish(self, end_s: float) -> None:
        """Settle every open alarm at ``end_s``."""
        for tracker in self.made:
            tracker.finish(end_s)
