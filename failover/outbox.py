"""Where the policy's decisions for one event are collected, stamped with time and channel.

Kept apart from the state machine so that ``policy.py`` reads as rules only. It also remembers
which ``failover_*`` alarms are raised, so a raise or clear is said once, never twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from failover.events import (
    Audit,
    ClearAlarm,
    Decision,
    RaiseAlarm,
    RequestConfirmation,
    SendCommand,
    Severity,
    WithdrawConfirmation,
)


class Outbox:
    def __init__(self, channel: str, clock_iso: Callable[[float], str] | None) -> None:
        self.channel = channel
        self._clock_iso = clock_iso
        self._decisions: list[Decision] = []
        self.raised: set[str] = set()
        self.now_s = 0.0

    def take(self) -> list[Decision]:
        """The decisions since the last take, in order."""
        decisions, self._decisions = self._decisions, []
        return decisions

    def iso(self, at_s: float) -> str | None:
        return None if self._clock_iso is None else self._clock_iso(at_s)

    def audit(
        self,
        decision: str,
        why: str,
        command_id: str | None = None,
        *,
        op: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        self._decisions.append(
            Audit(
                channel=self.channel,
                decision=decision,
                why=why,
                at_s=self.now_s,
                at=self.iso(self.now_s),
                operator=op,
                command_id=command_id,
                detail=dict(detail or {}),
            )
        )

    def raise_alarm(self, name: str, severity: Severity, detail: Mapping[str, Any]) -> None:
        if name not in self.raised:
            self.raised.add(name)
            self._decisions.append(RaiseAlarm(name, severity, dict(detail)))

    def clear_alarm(self, name: str) -> None:
        if name in self.raised:
            self.raised.discard(name)
            self._decisions.append(ClearAlarm(name))

    def command(
        self,
        command_id: str,
        to: str,
        reason: tuple[str, ...],
        operator: str | None,
        attempt: int,
        issued_at: str | None,
    ) -> None:
        self._decisions.append(
            SendCommand(
                command_id=command_id,
                channel=self.channel,
                to=to,
                reason=reason,
                operator=operator,
                attempt=attempt,
                at_s=self.now_s,
                issued_at=issued_at,
            )
        )

    def request(
        self, request_id: str, to: str, reason: tuple[str, ...], expires_s: float | None
    ) -> None:
        self._decisions.append(
            RequestConfirmation(
                request_id=request_id,
                channel=self.channel,
                to=to,
                reason=reason,
                at_s=self.now_s,
                expires_at_s=expires_s,
                expires_at=None if expires_s is None else self.iso(expires_s),
            )
        )

    def withdraw(self, request_id: str, why: str) -> None:
        self._decisions.append(WithdrawConfirmation(request_id, why))
