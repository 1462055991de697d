"""``monitor_error`` (critical): a channel input cannot be monitored at all, because its live
session keeps failing. Without it the console would show a channel as ok that nobody watches.

Raised at the first failure (detail ``error``: the first one's message), cleared once a
session has run ``RECOVERED_AFTER_S``.
"""

from __future__ import annotations

from monitor.alarms.engine import keep_first
from monitor.checks.base import Check, CheckContext, UnitCheck
from monitor.config import AlarmRule

MONITOR_ERROR = "monitor_error"
RECOVERED_AFTER_S = 10.0
"""A session that has run this long clears ``monitor_error``."""
AT_ONCE = AlarmRule(raise_after_s=0.0, clear_after_s=0.0, severity="critical")


class MonitorErrorCheck(UnitCheck):
    """Whether a channel input is being monitored at all."""

    recovered_after_s = RECOVERED_AFTER_S

    @classmethod
    def build(cls, context: CheckContext) -> Check | None:
        return cls(context)

    def __init__(self, context: CheckContext) -> None:
        self._tracker = context.tracker(MONITOR_ERROR, AT_ONCE, merge=keep_first)

    def session_failed(self, error: str, t_s: float) -> None:
        self._tracker.observe(t_s, True, detail={"error": error})

    def session_running(self, ran_s: float, t_s: float) -> None:
        if ran_s > self.recovered_after_s:
            self._tracker.observe(t_s, False)
