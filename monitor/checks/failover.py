"""The failover policy's own alarms — ``failover_blocked``, ``failover_flapping``,
``failover_no_ack``, ``failover_failed`` — on the channel (``input: failover``).

The policy (``failover.policy``) decides when each is raised and cleared; this check turns its
decisions into alarm events like every other alarm (no hold-offs: the policy has its own).
Detail: the policy's, from the raise; ``duration_s`` on the clear.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from monitor.alarms.engine import AlarmTracker, keep_first
from monitor.checks.base import ChannelCheck, Check, CheckContext
from monitor.config import AlarmRule, Severity


class FailoverAlarmsCheck(ChannelCheck):
    """The failover policy's alarms of one channel."""

    @classmethod
    def build(cls, context: CheckContext) -> Check | None:
        return cls(context)

    def __init__(self, context: CheckContext) -> None:
        self._context = context
        self._trackers: dict[str, AlarmTracker] = {}

    def policy_alarm(
        self, name: str, active: bool, t_s: float, severity: str, detail: Mapping[str, Any]
    ) -> None:
        tracker = self._trackers.get(name)
        if tracker is None and not active:
            return
        rule = AlarmRule(raise_after_s=0.0, clear_after_s=0.0, severity=cast(Severity, severity))
        if tracker is None:
            tracker = self._trackers[name] = self._context.tracker(name, rule, merge=keep_first)
        elif active and not tracker.active:
            tracker.rule = rule  # raised again, maybe at another severity
        tracker.observe(t_s, active, detail=dict(detail) if active else None)

    def finish(self, end_s: float) -> None:
        """The channel's failover ends (removed or changed): its alarms clear now."""
        for tracker in self._trackers.values():
            tracker.observe(end_s, False)
