"""The failover protocol: messages round-trip, and bad payloads fail in one line naming the key."""

from __future__ import annotations

import json

import pytest

from failover.protocol import (
    Ack,
    AuditEvent,
    Command,
    ConfirmRequest,
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

AT = "2025-03-01T12:00:00.000Z"

MESSAGES = [
    Command("c1", "news", "backup", ("black", "silence"), AT),
    Command("c2", "news", "primary", ("manual",), AT, operator="alice"),
    Ack("c1", "news", "accepted", AT),
    Ack("c1", "news", "failed", AT, detail="encoder API timed out"),
    EncoderState("news", "backup", AT, "c1", online=True),
    EncoderState("news", None, None, None, online=False),
    OperatorRequest("confirm", "alice", request_id="r1"),
    OperatorRequest("switch", "alice", to="backup"),
    OperatorRequest("lock", "bob"),
    ConfirmRequest("r1", "news", "backup", ("freeze", "silence"), AT),
    ConfirmRequest("r2", "news", "primary", ("failback",), None),
    AuditEvent("news", "switch", "switching to backup: black on primary for 2 s", AT),
    AuditEvent("news", "switched", "done", AT, "alice", "c2", {"from": "primary", "to": "backup"}),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_messages_round_trip(message: object) -> None:
    payload = message.to_json()  # type: ignore[attr-defined]
    assert json.loads(payload)["version"] == 1
    assert type(message).from_json(payload) == message  # type: ignore[attr-defined]


def test_command_json_is_the_documented_shape() -> None:
    command = Command("c1", "news", "backup", ("black",), AT)
    assert json.loads(command.to_json()) == {
        "version": 1,
        "command_id": "c1",
        "channel": "news",
        "action": "switch",
        "to": "backup",
        "reason": ["black"],
        "issued_at": AT,
        "operator": None,
    }


def test_unknown_keys_are_ignored_so_version_1_can_grow() -> None:
    payload = json.dumps(
        {"version": 1, "command_id": "c1", "channel": "news", "status": "done", "at": AT, "x": 1}
    )
    assert Ack.from_json(payload) == Ack("c1", "news", "done", AT, detail="")


def test_topics_follow_the_documented_layout() -> None:
    prefix = "streamqc/site-a/"
    assert command_topic(prefix, "news") == "streamqc/site-a/news/failover/command"
    assert ack_topic(prefix, "news") == "streamqc/site-a/news/failover/ack"
    assert state_topic(prefix, "news") == "streamqc/site-a/news/failover/state"
    assert operator_topic(prefix, "news") == "streamqc/site-a/news/failover/operator"
    assert request_topic(prefix, "news") == "streamqc/site-a/news/failover/request"
    assert audit_topic("streamqc/site-a", "news") == "streamqc/site-a/news/failover/audit"


def _operator(**fields: object) -> bytes:
    return json.dumps({"version": 1, "action": "confirm", "operator": "alice", **fields}).encode()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"{not json", "operator: not JSON (Expecting property name enclosed in double quotes"),
        (b"\xff\xfe", "operator: payload is not UTF-8"),
        (b"[1, 2]", "operator: must be a JSON object, got list"),
        (b'{"action": "lock", "operator": "a"}', "operator: version: missing"),
        (_operator(version=2), "operator: version: unsupported 2 (this daemon speaks version 1)"),
        (_operator(version="1"), "operator: version: unsupported '1'"),
        (_operator(action="switch"), "operator: to: required for action 'switch'"),
        (_operator(action="explode"), "operator: action: must be one of confirm, reject, switch,"),
        (_operator(operator=""), 'operator: operator: must be a non-empty string, got ""'),
        (_operator(operator=7), "operator: operator: must be a non-empty string, got 7"),
        (_operator(request_id=["r1"]), "operator: request_id: must be a non-empty string or null"),
    ],
)
def test_bad_operator_requests_fail_in_one_line(payload: bytes, message: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        OperatorRequest.from_json(payload)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_missing_fields_are_named() -> None:
    with pytest.raises(ProtocolError, match=r"^ack: command_id: missing$"):
        Ack.from_json(b'{"version": 1, "channel": "news", "status": "done", "at": "x"}')
    with pytest.raises(ProtocolError, match=r"^state: online: missing$"):
        EncoderState.from_json(b'{"version": 1, "channel": "news", "active_input": "primary"}')


@pytest.mark.parametrize(
    ("cls", "body", "message"),
    [
        (
            Ack,
            {"status": "ok"},
            'ack: status: must be one of accepted, rejected, done, failed, got "ok"',
        ),
        (Ack, {"detail": 5}, "ack: detail: must be a string, got 5"),
        (
            Command,
            {"reason": "black"},
            'command: reason: must be a list of non-empty strings, got "black"',
        ),
        (Command, {"action": "restart"}, 'command: action: must be one of switch, got "restart"'),
        (EncoderState, {"online": "yes"}, 'state: online: must be true or false, got "yes"'),
        (AuditEvent, {"detail": []}, "audit: detail: must be an object, got []"),
    ],
)
def test_wrong_types_are_named(cls: type, body: dict[str, object], message: str) -> None:
    valid = {
        Ack: Ack("c1", "news", "done", AT),
        Command: Command("c1", "news", "backup", ("black",), AT),
        EncoderState: EncoderState("news", "primary", AT, None, online=True),
        AuditEvent: AuditEvent("news", "switch", "why", AT),
    }[cls]
    payload = {**json.loads(valid.to_json()), **body}
    with pytest.raises(ProtocolError) as caught:
        cls.from_json(json.dumps(payload))  # type: ignore[attr-defined]
    assert str(caught.value) == message


def test_long_bad_values_are_shortened_in_the_message() -> None:
    with pytest.raises(ProtocolError) as caught:
        OperatorRequest.from_json(_operator(operator=["x" * 500]))
    assert len(str(caught.value)) < 120


def test_protocol_errors_are_value_errors() -> None:
    assert issubclass(ProtocolError, ValueError)
