"""Input loss: ``input_loss`` when nothing has arrived from a live input for longer than its
arrival gap (per rendition of a ladder), or when the input could not even be started.

Bytes arriving at the socket count as input, whatever the decoder makes of them (garbage is
reported by its own alarms). Detail: ``gap_s``, and ``reason: unreachable`` when the input
could not be started (an HLS origin down); that alarm clears once any rendition flows.
"""

from __future__ import annotations

from monitor.alarms.engine import AlarmTracker
from monitor.checks.base import Arrival, Check, CheckContext, InputCheck


class InputLossCheck(InputCheck):
    """Nothing arriving from a live input, per rendition."""

    @classmethod
    def build(cls, context: CheckContext) -> Check | None:
        return cls(context) if context.channel.input_loss.rule.enabled else None

    def __init__(self, context: CheckContext) -> None:
        self._context = context
        self._trackers: dict[str | None, AlarmTracker] = {}

    def arrival(self, arrival: Arrival) -> None:
        tracker = self._trackers.get(arrival.rendition)
        if tracker is None:
            rule = self._context.channel.input_loss.rule
            tracker = self._context.tracker("input_loss", rule, rendition=arrival.rendition)
            self._trackers[arrival.rendition] = tracker
        detail: dict[str, object] = {"gap_s": round(arrival.gap_s, 1)}
        if arrival.reason is not None:
            detail["reason"] = arrival.reason
        lost = arrival.gap_s > arrival.limit_s
        tracker.observe(arrival.t_s, lost, since_s=arrival.since_s, detail=detail)
        unreachable = self._trackers.get(None)
        if arrival.rendition is not None and unreachable is not None:
            unreachable.observe(arrival.t_s, False)  # an unreachable origin is reachable now
