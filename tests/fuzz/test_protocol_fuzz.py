"""Property tests: whatever bytes reach a failover topic, decoding either yields a message or
raises ProtocolError with one line; and every message survives its own JSON round trip.

CI runs Hypothesis's default budget; a longer run: ``HYPOTHESIS_PROFILE=long pytest tests/fuzz``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from failover.protocol import (
    Ack,
    AuditEvent,
    Command,
    ConfirmRequest,
    EncoderState,
    OperatorRequest,
    ProtocolError,
)

MESSAGES = [Command, Ack, EncoderState, OperatorRequest, ConfirmRequest, AuditEvent]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=20,
)
keys = st.sampled_from(
    [
        "version", "command_id", "channel", "action", "to", "reason", "issued_at", "operator",
        "status", "detail", "at", "active_input", "since", "last_command_id", "online",
        "request_id", "expires_at", "decision", "why", "agent_id", "attempt",
    ]
)  # fmt: skip
objects = st.dictionaries(keys | st.text(max_size=8), json_values, max_size=10)


def decodes_or_refuses(message: type[Any], payload: bytes) -> None:
    try:
        message.from_json(payload)
    except ProtocolError as error:
        assert str(error) and "\n" not in str(error)


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: m.__name__)
@given(payload=st.binary(max_size=200))
def test_any_bytes_decode_or_are_refused_in_one_line(message: type[Any], payload: bytes) -> None:
    decodes_or_refuses(message, payload)


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: m.__name__)
@given(document=objects)
def test_any_json_object_decodes_or_is_refused_in_one_line(
    message: type[Any], document: dict[str, Any]
) -> None:
    decodes_or_refuses(message, json.dumps(document).encode())


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: m.__name__)
@given(document=objects)
def test_what_decodes_encodes_to_the_same_message(
    message: type[Any], document: dict[str, Any]
) -> None:
    try:
        decoded = message.from_json(json.dumps(document).encode())
    except ProtocolError:
        return
    assert message.from_json(decoded.to_json()) == decoded
