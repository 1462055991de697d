"""What goes into the failover policy (events) and what comes out (decisions).

Events carry ``at_s``, monotonic seconds from the caller's clock: the policy has no clock of its
own, so a test drives it through hours in microseconds and a replay decides exactly as live.
Decisions are plain data; the daemon turns them into MQTT messages (``protocol``), alarm events
and log lines. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from failover.protocol import AckStatus, AuditEvent, Command, ConfirmRequest, OperatorVerb

Severity = Literal["critical", "major", "minor", "warning", "info"]

# --- Events (inputs) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AlarmChanged:
    """An alarm of one of the channel's inputs was raised (``active``) or cleared."""

    at_s: float
    input: str
    alarm: str
    active: bool


@dataclass(frozen=True)
class Tick:
    """Time passes: hold-offs, ack timeouts, confirmation expiry and the flap window run on it.

    The daemon ticks each policy about once a second; nothing waits for more than a tick.
    """

    at_s: float


@dataclass(frozen=True)
class AckReceived:
    """The agent answered command ``command_id``."""

    at_s: float
    command_id: str
    status: AckStatus
    detail: str = ""


@dataclass(frozen=True)
class OperatorAction:
    """A NOC operator's answer or override (``protocol.OperatorRequest``)."""

    at_s: float
    action: OperatorVerb
    operator: str
    to: str | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class EncoderReported:
    """The agent's retained state says ``active_input`` is on air (e.g. learnt at start-up)."""

    at_s: float
    active_input: str


Event = AlarmChanged | Tick | AckReceived | OperatorAction | EncoderReported

# --- Decisions (outputs) -----------------------------------------------------------------------


@dataclass(frozen=True)
class SendCommand:
    """Publish a switch command. A resend (``attempt`` > 1) repeats the same ``command_id``."""

    command_id: str
    channel: str
    to: str
    reason: tuple[str, ...]
    operator: str | None
    attempt: int
    at_s: float
    issued_at: str | None
    """Wall-clock time of the first send, from the policy's ``clock_iso`` (None without one)."""

    def command(self, issued_at: str | None = None) -> Command:
        """The protocol message; ``issued_at`` is needed when the policy has no clock_iso."""
        when = self.issued_at or issued_at
        if when is None:
            raise ValueError("issued_at: unknown, give the Policy a clock_iso or pass it here")
        return Command(
            command_id=self.command_id,
            channel=self.channel,
            to=self.to,
            reason=self.reason,
            issued_at=when,
            operator=self.operator,
        )


@dataclass(frozen=True)
class RequestConfirmation:
    """Ask the NOC to confirm a switch (publish retained on the request topic)."""

    request_id: str
    channel: str
    to: str
    reason: tuple[str, ...]
    at_s: float
    expires_at_s: float | None
    """When the policy switches by itself (monotonic seconds); None: it waits for an answer."""
    expires_at: str | None
    """The same as wall-clock time, when the policy has a clock_iso and the request expires."""

    def request(self) -> ConfirmRequest:
        return ConfirmRequest(
            request_id=self.request_id,
            channel=self.channel,
            to=self.to,
            reason=self.reason,
            expires_at=self.expires_at,
        )


@dataclass(frozen=True)
class WithdrawConfirmation:
    """The open request is answered or void: clear the retained request (empty payload)."""

    request_id: str
    why: str


@dataclass(frozen=True)
class RaiseAlarm:
    """Raise a channel alarm of the policy's own (``failover_*``)."""

    name: str
    severity: Severity
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ClearAlarm:
    """Clear a ``failover_*`` alarm raised earlier."""

    name: str


@dataclass(frozen=True)
class Audit:
    """One decision and why, for the audit topic and the log."""

    channel: str
    decision: str
    why: str
    at_s: float
    at: str | None
    operator: str | None = None
    command_id: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    def event(self, at: str | None = None) -> AuditEvent:
        """The protocol message; ``at`` is needed when the policy has no clock_iso."""
        when = self.at or at
        if when is None:
            raise ValueError("at: unknown, give the Policy a clock_iso or pass it here")
        return AuditEvent(
            channel=self.channel,
            decision=self.decision,
            why=self.why,
            at=when,
            operator=self.operator,
            command_id=self.command_id,
            detail=self.detail,
        )


Decision = (
    SendCommand | RequestConfirmation | WithdrawConfirmation | RaiseAlarm | ClearAlarm | Audit
)
