"""One channel's failover policy, wired to its alarms and to MQTT (the control plane's side).

The policy (``failover.policy``) is pure: this link feeds it the channel inputs' alarm events,
the agent's acks and encoder state, the NOC's operator actions and a clock, and carries out its
decisions: commands to the agent (QoS 1, not queued on disk: a switch delivered minutes late
would do harm, and the policy escalates a missing ack itself), confirmation requests
(retained), its own alarms (``failover_*``, channel-level, ``input: "failover"``) and an audit
event for every decision (queued on disk like alarms: the trail must be complete).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from failover.events import (
    AckReceived,
    AlarmChanged,
    Audit,
    ClearAlarm,
    Decision,
    EncoderReported,
    OperatorAction,
    RaiseAlarm,
    RequestConfirmation,
    SendCommand,
    Tick,
    WithdrawConfirmation,
)
from failover.policy import Policy
from failover.protocol import (
    Ack,
    EncoderState,
    OperatorRequest,
    ProtocolError,
    ack_topic,
    audit_topic,
    command_topic,
    operator_topic,
    request_topic,
    state_topic,
)
from monitor.alarms.engine import AlarmEvent, Subject, Trackers
from monitor.checks.base import ChannelCheck, CheckContext
from monitor.checks.registry import build_checks
from monitor.config import ChannelConfig
from monitor.sinks.mqtt import MqttSink

FAILOVER_INPUT = "failover"
"""The ``input`` of the policy's own alarms: they are about the channel, not one input."""


def _iso_at(monotonic_s: float) -> str:
    """The wall-clock time (UTC, ISO 8601) of a monotonic instant."""
    wall = datetime.now(UTC) + timedelta(seconds=monotonic_s - time.monotonic())
    return wall.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class FailoverLink:
    def __init__(
        self,
        channel: ChannelConfig,
        prefix: str,
        sink: MqttSink,
        *,
        origin_wall_s: float,
        on_alarm: Callable[[AlarmEvent], None],
        log: Any,
    ) -> None:
        self.config = channel
        self.channel = channel.name
        self.prefix = prefix
        self.sink = sink
        self.origin_wall_s = origin_wall_s
        self.on_alarm = on_alarm
        self.log = log
        self.policy = Policy(channel.failover, channel.name, clock_iso=_iso_at)
        self.alarms: dict[str, AlarmEvent] = {}  # the policy's own, active, by name
        self._raised: dict[tuple[str, str], set[str]] = {}  # (input, alarm) → active ids
        self.trackers = Trackers(Subject(channel.name, FAILOVER_INPUT, None), self._emitted)
        context = CheckContext(channel, self.trackers.subject, self.trackers)
        self.checks = [c for c in build_checks("channel", context) if isinstance(c, ChannelCheck)]
        self._filters = {
            ack_topic(prefix, channel.name): self._on_ack,
            state_topic(prefix, channel.name): self._on_state,
            operator_topic(prefix, channel.name): self._on_operator,
        }
        for topic, handler in self._filters.items():
            sink.subscribe(topic, handler)

    @property
    def active_input(self) -> str:
        return self.policy.active_input

    def close(self) -> None:
        for topic in self._filters:
            self.sink.unsubscribe(topic)
        self.sink.set_retained(request_topic(self.prefix, self.channel), None)

    # --- events in --------------------------------------------------------------------------

    def alarm(self, event: AlarmEvent) -> None:
        """An input's alarm changed. The policy knows alarms by name per input; several
        alarms of one name (one per audio channel, stream or rendition) are one to it: raised
        with the first, cleared with the last."""
        if event.input == FAILOVER_INPUT:
            return
        ids = self._raised.setdefault((event.input, event.alarm), set())
        was = bool(ids)
        if event.state == "raised":
            ids.add(event.id)
        else:
            ids.discard(event.id)
        if bool(ids) != was:
            self._apply(AlarmChanged(time.monotonic(), event.input, event.alarm, bool(ids)))

    def tick(self) -> None:
        self._apply(Tick(time.monotonic()))

    def _on_ack(self, topic: str, payload: bytes) -> None:
        ack = self._parse(Ack.from_json, topic, payload)
        if ack is not None:
            self._apply(AckReceived(time.monotonic(), ack.command_id, ack.status, ack.detail))

    def _on_state(self, topic: str, payload: bytes) -> None:
        if not payload:
            return
        state = self._parse(EncoderState.from_json, topic, payload)
        if state is not None and state.online and state.active_input:
            self._apply(EncoderReported(time.monotonic(), state.active_input))

    def _on_operator(self, topic: str, payload: bytes) -> None:
        request = self._parse(OperatorRequest.from_json, topic, payload)
        if request is not None:
            self._apply(
                OperatorAction(
                    time.monotonic(),
                    request.action,
                    request.operator,
                    to=request.to,
                    request_id=request.request_id,
                )
            )

    def _parse(self, parse: Callable[[bytes], Any], topic: str, payload: bytes) -> Any:
        try:
            return parse(payload)
        except ProtocolError as error:
            self.log.warning("failover: ignoring a bad message", topic=topic, reason=str(error))
            return None

    # --- decisions out ----------------------------------------------------------------------

    def _apply(self, event: Any) -> None:
        for decision in self.policy.handle(event):
            self._carry_out(decision)

    def _carry_out(self, decision: Decision) -> None:
        prefix, channel = self.prefix, self.channel
        if isinstance(decision, SendCommand):
            self.sink.publish_now(command_topic(prefix, channel), decision.command().to_json())
        elif isinstance(decision, RequestConfirmation):
            self.sink.set_retained(request_topic(prefix, channel), decision.request().to_json())
        elif isinstance(decision, WithdrawConfirmation):
            self.sink.set_retained(request_topic(prefix, channel), None)
        elif isinstance(decision, RaiseAlarm):
            for check in self.checks:
                check.policy_alarm(
                    decision.name, True, self._media_s(), decision.severity, decision.detail
                )
        elif isinstance(decision, ClearAlarm):
            for check in self.checks:
                check.policy_alarm(decision.name, False, self._media_s(), "major", {})
        elif isinstance(decision, Audit):
            self.sink.publish_event(audit_topic(prefix, channel), decision.event().to_json())
            self.log.info(
                "failover",
                channel=channel,
                decision=decision.decision,
                why=decision.why,
                operator=decision.operator,
                command_id=decision.command_id,
            )

    def _media_s(self) -> float:
        return time.time() - self.origin_wall_s

    def _emitted(self, event: AlarmEvent) -> None:
        if event.state == "raised":
            self.alarms[event.alarm] = event
        else:
            self.alarms.pop(event.alarm, None)
        self.on_alarm(event)

    def clear_all(self) -> None:
        """The channel's failover ends (removed or changed): its alarms clear now."""
        end_s = self._media_s()
        for check in self.checks:
            check.finish(end_s)
        self.trackers.finish(end_s)
