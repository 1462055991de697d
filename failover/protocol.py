"""The failover protocol between the daemon, the encoder-side agent and NOC consoles.

This module is an API for anyone writing their own agent or console. All payloads are UTF-8
JSON objects carrying ``"version": 1``; unknown keys are ignored (so version 1 can grow), a
missing or mistyped key is an error naming the key. Times are UTC ISO 8601 strings.

Topics, for a prefix (default ``streamqc/<site>``) and a channel name::

    <prefix>/<channel>/failover/command   daemon → agent    Command          QoS 1
    <prefix>/<channel>/failover/ack       agent → daemon    Ack              QoS 1
    <prefix>/<channel>/failover/state     agent → all       EncoderState     QoS 1, retained
    <prefix>/<channel>/failover/operator  console → daemon  OperatorRequest  QoS 1
    <prefix>/<channel>/failover/request   daemon → console  ConfirmRequest   QoS 1, retained
    <prefix>/<channel>/failover/audit     daemon → all      AuditEvent       QoS 1

Rules for an agent:

- A ``Command`` may arrive more than once (QoS 1 redelivery, or the daemon resending it after
  ``ack_timeout``): commands are idempotent by ``command_id``. On a duplicate, do not switch
  again; send the ack of that command's current outcome again.
- Answer every command with ``accepted`` (soon: the daemon resends after its ack timeout),
  then ``done`` or ``failed`` when the switch is over; ``rejected`` when it will not try
  (unknown input, locked locally, ...). ``detail`` says why, in words for the NOC.
- Keep ``EncoderState`` retained and current: which input is on air, since when, and the last
  command applied. The daemon believes it over its own bookkeeping (e.g. after a restart).
  ``active_input`` may be null when unknown (e.g. in a last-will message with ``online``
  false).

Rules for a console: the ``request`` topic holds the open confirmation request of a channel
(retained); an empty retained payload means there is none. Answer with an ``OperatorRequest``
naming yourself in ``operator`` (it goes into the audit trail). A request the daemon cannot
read is answered with an audit event saying which key was wrong.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, get_args

VERSION = 1

AckStatus = Literal["accepted", "rejected", "done", "failed"]
OperatorVerb = Literal["confirm", "reject", "switch", "lock", "unlock"]


class ProtocolError(ValueError):
    """A payload that is not a valid message; the message is one line naming the bad key."""


# --- Topics ----------------------------------------------------------------------------------


def _topic(prefix: str, channel: str, leaf: str) -> str:
    return f"{prefix.rstrip('/')}/{channel}/failover/{leaf}"


def command_topic(prefix: str, channel: str) -> str:
    """Where the daemon publishes ``Command``s for the channel's agent."""
    return _topic(prefix, channel, "command")


def ack_topic(prefix: str, channel: str) -> str:
    """Where the agent publishes ``Ack``s."""
    return _topic(prefix, channel, "ack")


def state_topic(prefix: str, channel: str) -> str:
    """Where the agent keeps its retained ``EncoderState``."""
    return _topic(prefix, channel, "state")


def operator_topic(prefix: str, channel: str) -> str:
    """Where NOC consoles publish ``OperatorRequest``s."""
    return _topic(prefix, channel, "operator")


def request_topic(prefix: str, channel: str) -> str:
    """Where the daemon keeps the open ``ConfirmRequest`` (retained; empty when none)."""
    return _topic(prefix, channel, "request")


def audit_topic(prefix: str, channel: str) -> str:
    """Where the daemon publishes an ``AuditEvent`` for every decision."""
    return _topic(prefix, channel, "audit")


# --- Decoding helpers --------------------------------------------------------------------------

L = TypeVar("L", bound=str)


class _Reader:
    """Typed access to one decoded payload; every failure is a one-line ProtocolError."""

    def __init__(self, kind: str, payload: bytes | str) -> None:
        self.kind = kind
        try:
            text = payload.decode() if isinstance(payload, bytes) else payload
            data = json.loads(text)
        except UnicodeDecodeError:
            raise self.error("payload is not UTF-8") from None
        except json.JSONDecodeError as error:
            where = f"line {error.lineno} column {error.colno}"
            raise self.error(f"not JSON ({error.msg} at {where})") from None
        if not isinstance(data, dict):
            raise self.error(f"must be a JSON object, got {type(data).__name__}")
        self.data: dict[str, Any] = data
        version = data.get("version")
        if "version" not in data:
            raise self.error("version: missing (this daemon speaks version 1)")
        if type(version) is not int or version != VERSION:
            raise self.error(f"version: unsupported {version!r} (this daemon speaks version 1)")

    def error(self, message: str) -> ProtocolError:
        return ProtocolError(f"{self.kind}: {message}")

    def _get(self, key: str, optional: bool) -> Any:
        if key not in self.data:
            if optional:
                return None
            raise self.error(f"{key}: missing")
        return self.data[key]

    def _type_error(self, key: str, wanted: str, value: Any) -> ProtocolError:
        shown = json.dumps(value)
        if len(shown) > 40:
            shown = shown[:37] + "..."
        return self.error(f"{key}: must be {wanted}, got {shown}")

    def string(self, key: str) -> str:
        value = self._get(key, optional=False)
        if not isinstance(value, str) or not value:
            raise self._type_error(key, "a non-empty string", value)
        return value

    def text(self, key: str) -> str:
        """A string that may be empty (``detail``); missing reads as empty."""
        value = self._get(key, optional=True)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self._type_error(key, "a string", value)
        return value

    def opt_string(self, key: str) -> str | None:
        value = self._get(key, optional=True)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise self._type_error(key, "a non-empty string or null", value)
        return value

    def boolean(self, key: str) -> bool:
        value = self._get(key, optional=False)
        if not isinstance(value, bool):
            raise self._type_error(key, "true or false", value)
        return value

    def choice(self, key: str, choices: tuple[L, ...]) -> L:
        value = self._get(key, optional=False)
        for choice in choices:
            if value == choice:
                return choice
        raise self._type_error(key, f"one of {', '.join(choices)}", value)

    def strings(self, key: str) -> tuple[str, ...]:
        value = self._get(key, optional=False)
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self._type_error(key, "a list of non-empty strings", value)
        return tuple(value)

    def mapping(self, key: str) -> dict[str, Any]:
        value = self._get(key, optional=True)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self._type_error(key, "an object", value)
        return value


def _dump(body: Mapping[str, Any]) -> bytes:
    return json.dumps(
        {"version": VERSION, **body}, separators=(",", ":"), allow_nan=False, default=str
    ).encode()


# --- Messages ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """Daemon → agent: put ``to`` on air. ``reason`` lists the alarms that triggered it."""

    command_id: str
    channel: str
    to: str
    reason: tuple[str, ...]
    issued_at: str
    operator: str | None = None
    action: Literal["switch"] = "switch"

    def to_json(self) -> bytes:
        return _dump(
            {
                "command_id": self.command_id,
                "channel": self.channel,
                "action": self.action,
                "to": self.to,
                "reason": list(self.reason),
                "issued_at": self.issued_at,
                "operator": self.operator,
            },
        )

    @classmethod
    def from_json(cls, payload: bytes | str) -> Command:
        r = _Reader("command", payload)
        return cls(
            command_id=r.string("command_id"),
            channel=r.string("channel"),
            action=r.choice("action", ("switch",)),
            to=r.string("to"),
            reason=r.strings("reason"),
            issued_at=r.string("issued_at"),
            operator=r.opt_string("operator"),
        )


@dataclass(frozen=True)
class Ack:
    """Agent → daemon: what became of command ``command_id``."""

    command_id: str
    channel: str
    status: AckStatus
    at: str
    detail: str = ""

    def to_json(self) -> bytes:
        return _dump(
            {
                "command_id": self.command_id,
                "channel": self.channel,
                "status": self.status,
                "detail": self.detail,
                "at": self.at,
            },
        )

    @classmethod
    def from_json(cls, payload: bytes | str) -> Ack:
        r = _Reader("ack", payload)
        return cls(
            command_id=r.string("command_id"),
            channel=r.string("channel"),
            status=r.choice("status", get_args(AckStatus)),
            detail=r.text("detail"),
            at=r.string("at"),
        )


@dataclass(frozen=True)
class EncoderState:
    """Agent → all, retained: which input the encoder has on air."""

    channel: str
    active_input: str | None
    since: str | None
    last_command_id: str | None
    online: bool

    def to_json(self) -> bytes:
        return _dump(
            {
                "channel": self.channel,
                "active_input": self.active_input,
                "since": self.since,
                "last_command_id": self.last_command_id,
                "online": self.online,
            },
        )

    @classmethod
    def from_json(cls, payload: bytes | str) -> EncoderState:
        r = _Reader("state", payload)
        return cls(
            channel=r.string("channel"),
            active_input=r.opt_string("active_input"),
            since=r.opt_string("since"),
            last_command_id=r.opt_string("last_command_id"),
            online=r.boolean("online"),
        )


@dataclass(frozen=True)
class OperatorRequest:
    """Console → daemon: an operator's answer or override.

    ``confirm`` / ``reject`` answer the open request (``request_id`` optional: without it, the
    request open now); ``switch`` needs ``to`` (``primary``, ``backup`` or an input name);
    ``lock`` stops automatic switching until ``unlock``.
    """

    action: OperatorVerb
    operator: str
    request_id: str | None = None
    to: str | None = None

    def __post_init__(self) -> None:
        if self.action == "switch" and not self.to:
            raise ProtocolError("operator: to: required for action 'switch'")

    def to_json(self) -> bytes:
        return _dump(
            {
                "action": self.action,
                "operator": self.operator,
                "request_id": self.request_id,
                "to": self.to,
            },
        )

    @classmethod
    def from_json(cls, payload: bytes | str) -> OperatorRequest:
        r = _Reader("operator", payload)
        return cls(
            action=r.choice("action", get_args(OperatorVerb)),
            operator=r.string("operator"),
            request_id=r.opt_string("request_id"),
            to=r.opt_string("to"),
        )


@dataclass(frozen=True)
class ConfirmRequest:
    """Daemon → console, retained: the policy wants to switch ``to`` and asks first.

    ``expires_at`` is when the daemon switches by itself (null: it waits for an answer).
    """

    request_id: str
    channel: str
    to: str
    reason: tuple[str, ...]
    expires_at: str | None

    def to_json(self) -> bytes:
        return _dump(
            {
                "request_id": self.request_id,
                "channel": self.channel,
                "to": self.to,
                "reason": list(self.reason),
                "expires_at": self.expires_at,
            },
        )

    @classmethod
    def from_json(cls, payload: bytes | str) -> ConfirmRequest:
        r = _Reader("request", payload)
        return cls(
            request_id=r.string("request_id"),
            channel=r.string("channel"),
            to=r.string("to"),
            reason=r.strings("reason"),
            expires_at=r.opt_string("expires_at"),
        )


@dataclass(frozen=True)
class AuditEvent:
    """Daemon → all: one decision of the policy and why (also written to the log)."""

    channel: str
    decision: str
    why: str
    at: str
    operator: str | None = None
    command_id: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return _dump(
            {
                "channel": self.channel,
                "decision": self.decision,
                "why": self.why,
                "at": self.at,
                "operator": self.operator,
                "command_id": self.command_id,
                "detail": dict(self.detail),
            },
        )

    @classmethod
    def from_json(cls, payload: bytes | str) -> AuditEvent:
        r = _Reader("audit", payload)
        return cls(
            channel=r.string("channel"),
            decision=r.string("decision"),
            why=r.text("why"),
            at=r.string("at"),
            operator=r.opt_string("operator"),
            command_id=r.opt_string("command_id"),
            detail=r.mapping("detail"),
        )
