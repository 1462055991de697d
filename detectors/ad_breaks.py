"""Ad breaks from SCTE-35 cues: the break state of one programme, as pure decision logic.

It never reads a clock, does no I/O and knows no parser: it is given decoded cues (``Splice``)
placed on media time, and media time as it advances, and says whether the programme is in a
break, when the break should end, whether it overran, and where the splice points were.

A break begins at a cue-out's splice time: a ``splice_insert`` with out_of_network_indicator
1 (ANSI/SCTE 35 9.7.3), or a ``time_signal`` whose segmentation descriptor starts a break or
an ad (segmentation_type_id 0x22, 0x30, 0x32, 0x34, 0x36, 0x44, 0x46; table 22). It ends at
the matching cue-in (out_of_network_indicator 0, or the ending segmentation type), or by
itself at the end of its break_duration when auto_return is set (9.8.2). A cancelled event
(splice_event_cancel_indicator) never happens.

============ ============================ ============================================
state        cue-out (at its splice time) cue-in / planned end
============ ============================ ============================================
on air       in break from the splice      in: ignored (nothing to return from)
in break     a new break replaces it       in: on air; planned end with auto_return:
                                          on air; planned end + tolerance without a
                                          return: overrun (until a cue-in)
============ ============================ ============================================
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Literal

BREAK_STARTS = frozenset({0x22, 0x30, 0x32, 0x34, 0x36, 0x44, 0x46})
"""segmentation_type_id values that begin a break or an ad (ANSI/SCTE 35 table 22)."""
BREAK_ENDS = frozenset({t + 1 for t in BREAK_STARTS})

Direction = Literal["out", "in"]


@dataclass(frozen=True)
class AdBreakSettings:
    """How a channel's ad breaks are judged (ANSI/SCTE 35 cues in its MPEG-TS)."""

    max_interval_s: float | None = None
    """scte35_missing when no cue (splice_insert or time_signal) came for this long; None:
    cues are not required (e.g. 1h on a channel with hourly breaks)."""
    tolerance_s: float = 5.0
    """ad_break_overrun when no return came this long after the break's planned end."""
    splice_tolerance_s: float = 1.0
    """Black and silence within this long of a splice point are the splice, not a fault."""

    def __post_init__(self) -> None:
        if self.max_interval_s is not None and self.max_interval_s <= 0:
            raise ValueError("max_interval: must be a positive duration (or null: off)")


@dataclass(frozen=True)
class Splice:
    """One decoded cue, as the break state needs it (and as the cue event reports it)."""

    command: str
    """splice_insert, time_signal, splice_null, bandwidth_reservation, private_command, ..."""
    event_id: int | None = None
    """splice_event_id, or the segmentation_event_id of a time_signal."""
    direction: Direction | None = None
    """out: a break begins; in: the programme returns; None: neither (heartbeats, ...)."""
    pts_ticks: int | None = None
    """Splice time in 90 kHz ticks, pts_adjustment applied, mod 2^33; None: immediate."""
    duration_s: float | None = None
    """break_duration, or the segmentation_duration."""
    auto_return: bool = False
    cancel: bool = False
    segmentation_type: int | None = None
    upid: str | None = None

    @property
    def is_cue(self) -> bool:
        """A cue that says something about the schedule (not a heartbeat)."""
        return self.command in ("splice_insert", "time_signal")


@dataclass(frozen=True)
class BreakChange:
    """The programme went into a break (``in_break``) or came back, at media time ``at_s``."""

    at_s: float
    in_break: bool
    event_id: int | None
    reason: str
    """cue_out, cue_in, auto_return, replaced."""


class BreakState:
    """The break state of one programme, on media time."""

    def __init__(self) -> None:
        self._pending: list[tuple[float, int, Splice]] = []
        self._order = 0
        self.in_break = False
        self.event_id: int | None = None
        self.started_s: float | None = None
        self.ends_at_s: float | None = None
        """Planned end of the current break (None: open-ended)."""
        self.auto_return = False
        self.splice_points_s: list[float] = []
        """Recent splice points (break starts and ends), oldest first."""
        self.last_cue_s: float | None = None

    def cue(self, splice: Splice, at_s: float, received_s: float) -> None:
        """A cue arrived at ``received_s``, its splice point at ``at_s`` (media times)."""
        if splice.is_cue:
            self.last_cue_s = received_s
        if splice.cancel:
            self._pending = [p for p in self._pending if p[2].event_id != splice.event_id]
            return
        if splice.direction is None:
            return
        self._order += 1
        bisect.insort(self._pending, (max(at_s, received_s), self._order, splice))

    def advance(self, t_s: float) -> list[BreakChange]:
        """Apply what happens up to media time ``t_s``; the changes, in order."""
        changes: list[BreakChange] = []
        while True:
            due = self._pending[0][0] if self._pending else None
            end = self.ends_at_s if self.in_break and self.auto_return else None
            if end is not None and end <= t_s and (due is None or end <= due):
                changes.append(self._leave(end, "auto_return"))
                continue
            if due is None or due > t_s:
                return changes
            at_s, _, splice = self._pending.pop(0)
            if splice.direction == "out":
                if self.in_break:
                    changes.append(self._leave(at_s, "replaced"))
                self.in_break = True
                self.event_id = splice.event_id
                self.started_s = at_s
                self.ends_at_s = at_s + splice.duration_s if splice.duration_s else None
                self.auto_return = splice.auto_return
                self._mark(at_s)
                changes.append(BreakChange(at_s, True, splice.event_id, "cue_out"))
            elif self.in_break:
                changes.append(self._leave(at_s, "cue_in"))

    def overrun_since_s(self, t_s: float, tolerance_s: float) -> float | None:
        """The planned end of a break with no return yet by ``t_s``, once ``tolerance_s`` has
        passed since it; None otherwise."""
        end = self.ends_at_s
        if self.in_break and end is not None and not self.auto_return and t_s - end >= tolerance_s:
            return end
        return None

    def near_splice(self, t_s: float, tolerance_s: float) -> bool:
        """Media time ``t_s`` is within ``tolerance_s`` of a splice point."""
        for point in reversed(self.splice_points_s):
            if abs(t_s - point) <= tolerance_s:
                return True
            if point < t_s - tolerance_s:
                break
        for at_s, _, splice in self._pending[:2]:  # a scheduled splice just ahead
            if splice.direction is not None and abs(at_s - t_s) <= tolerance_s:
                return True
        return False

    def _leave(self, at_s: float, reason: str) -> BreakChange:
        change = BreakChange(at_s, False, self.event_id, reason)
        self.in_break = False
        self.ends_at_s = None
        self.auto_return = False
        self._mark(at_s)
        return change

    def _mark(self, at_s: float) -> None:
        self.splice_points_s.append(at_s)
        del self.splice_points_s[:-8]
