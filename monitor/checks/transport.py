"""Transport: every alarm a live input's readers report — ``tr101290_*``, ``srt_*``,
``hls_*``, ``rendition_missing`` — under the one ``transport`` rule.

Readers report a condition when it changes (``monitor.ingest.reports``); it holds until the
next report, so on every tick the check observes it again and the hold-offs run (and a cleared
condition clears) without waiting for another report. A condition of a named rendition is on
that rendition; any other subject (a PID, a key URI) is named in ``detail.subject``.
"""

from __future__ import annotations

from monitor.alarms.engine import AlarmTracker
from monitor.checks.base import Check, CheckContext, InputCheck
from monitor.ingest.reports import TransportCondition


class TransportCheck(InputCheck):
    """The readers' transport conditions, each its own alarm per subject."""

    @classmethod
    def build(cls, context: CheckContext) -> Check | None:
        return cls(context) if context.channel.transport.rule.enabled else None

    def __init__(self, context: CheckContext) -> None:
        self._context = context
        self._trackers: dict[tuple[str, str | None], AlarmTracker] = {}
        self._seen: dict[tuple[str, str | None], tuple[float, bool]] = {}

    def transport(self, condition: TransportCondition, t_s: float, rendition: str | None) -> None:
        key = (condition.alarm, condition.subject)
        tracker = self._trackers.get(key)
        if tracker is None:
            rule = self._context.channel.transport.rule
            tracker = self._context.tracker(condition.alarm, rule, rendition=rendition)
            self._trackers[key] = tracker
        detail = dict(condition.detail)
        if condition.subject is not None and tracker.subject.rendition is None:
            detail.setdefault("subject", condition.subject)
        t_s = max(t_s, self._seen.get(key, (0.0, False))[0])
        self._seen[key] = (t_s, condition.active)
        tracker.observe(t_s, condition.active, detail=detail)

    def tick(self, t_s: float) -> None:
        for key, tracker in self._trackers.items():
            seen_s, active = self._seen[key]
            if t_s > seen_s:
                self._seen[key] = (t_s, active)
                tracker.observe(t_s, active)
