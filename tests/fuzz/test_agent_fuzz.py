"""Property tests of the agent's command handling: whatever arrives on a command topic is run
once, rejected with a reason, or (not a command at all) logged and ignored; never an
exception, never a switch the checks should have stopped.

The agent is the real one, its link and encoder recorders (``agent_harness``). CI runs
Hypothesis's default budget; ``HYPOTHESIS_PROFILE=long pytest tests/fuzz`` runs more.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from failover.protocol import Command, ProtocolError
from tests.fuzz.agent_harness import CHANNEL, INPUTS, MAX_COMMAND_AGE_S, commands_through_agent

NOW_S = 1_800_000_000.0


def iso(offset_s: float) -> str:
    """``issued_at`` for a command issued ``offset_s`` before now (negative: in the future)."""
    at = datetime.fromtimestamp(NOW_S, UTC) - timedelta(seconds=offset_s)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


issued_at = st.one_of(
    st.floats(-MAX_COMMAND_AGE_S + 0.5, MAX_COMMAND_AGE_S - 0.5).map(iso),  # fresh
    st.floats(MAX_COMMAND_AGE_S + 0.5, 1e9).map(iso),  # stale
    st.floats(-1e9, -MAX_COMMAND_AGE_S - 0.5).map(iso),  # from the future
    st.text(min_size=1, max_size=40),  # anything
    st.sampled_from(["2026-13-01T00:00:00Z", "now", "9999-12-31T23:59:59-23:59"]),
)
names = st.sampled_from([CHANNEL, "sport", "news/x"]) | st.text(min_size=1, max_size=12)
inputs = st.sampled_from([*INPUTS, "nope"]) | st.text(min_size=1, max_size=12)
json_values = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
commands = st.fixed_dictionaries(
    {
        "version": st.just(1),
        "action": st.just("switch"),
        "command_id": st.text(min_size=1, max_size=20),
        "channel": names,
        "to": inputs,
        "reason": st.lists(st.text(min_size=1, max_size=10), max_size=3),
        "issued_at": issued_at,
    },
    optional={
        "operator": st.none() | st.text(min_size=1, max_size=10),
        "extra": json_values,
    },
)
# the same, with a key dropped or its value replaced by something of another type
KEYS = ["version", "action", "command_id", "channel", "to", "issued_at", "reason"]
damaged = st.tuples(commands, st.sampled_from(KEYS), st.booleans(), json_values)


def readable_age_s(text: str) -> float | None:
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        return NOW_S - at.timestamp()
    except (ValueError, OverflowError):
        return None


def check_one(payload: bytes) -> None:
    outcome = commands_through_agent([payload], NOW_S)
    try:
        command = Command.from_json(payload)
    except ProtocolError:
        assert outcome.acks == [] and outcome.switches == [], outcome
        assert [e for _, e, _ in outcome.log if "ignored" in e] == ["invalid command ignored"]
        return
    statuses = [a.status for a in outcome.acks_of(command.command_id)]
    age_s = readable_age_s(command.issued_at)
    runnable = (
        age_s is not None
        and abs(age_s) <= MAX_COMMAND_AGE_S
        and command.channel == CHANNEL
        and command.to in INPUTS
    )
    if not runnable:
        assert statuses == ["rejected"], (command, outcome.acks)
        assert outcome.acks[0].detail, "a rejection says why"
        assert outcome.switches == []
    else:
        assert statuses == ["accepted", "done"], (command, outcome.acks)
        assert outcome.switches == ([] if command.to == "primary" else [command.to])


@settings(deadline=None, max_examples=300)
@given(command=commands)
def test_a_command_with_any_fields_runs_or_is_rejected_with_a_reason(command: dict[str, Any]):
    payload = json.dumps(command).encode()
    Command.from_json(payload)  # well-formed by construction: it must be answered
    check_one(payload)


@settings(deadline=None)
@given(case=damaged)
def test_a_damaged_command_is_ignored_in_one_line_or_answered(
    case: tuple[dict[str, Any], str, bool, Any],
):
    command, key, drop, value = case
    command = dict(command)
    if drop:
        command.pop(key)
    else:
        command[key] = value
    check_one(json.dumps(command).encode())


@settings(deadline=None)
@given(payload=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_bytes_on_the_command_topic_never_raise(payload: bytes):
    check_one(payload)


@settings(deadline=None)
@given(
    sequence=st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from(["primary", "backup"])),
        min_size=1,
        max_size=12,
    )
)
def test_a_command_id_seen_before_never_switches_again(sequence: list[tuple[str, str]]):
    """Redelivered commands (QoS 1, daemon resends) are answered again but not run again."""
    payloads = [
        Command(command_id, CHANNEL, to, ("black",), iso(1.0)).to_json()
        for command_id, to in sequence
    ]
    outcome = commands_through_agent(payloads, NOW_S)
    first_to: dict[str, str] = {}
    for command_id, to in sequence:
        first_to.setdefault(command_id, to)
    on_air, expected = "primary", []
    for to in first_to.values():  # each id runs once, in the order first seen
        if to != on_air:
            expected.append(to)
            on_air = to
    assert outcome.switches == expected
    for command_id in first_to:
        assert outcome.acks_of(command_id)[-1].status == "done"


# --- what the fuzzing found (regressions) ---------------------------------------------------


def test_a_command_dated_further_ahead_than_max_command_age_is_rejected_not_run():
    """Found by the test above: a command issued 31 s in the future was run. A replayed
    command dated ahead would never go stale; clocks that far apart make its age meaningless."""
    command = Command("c-future", CHANNEL, "backup", ("black",), iso(-31.0))
    outcome = commands_through_agent([command.to_json()], NOW_S)
    assert [a.status for a in outcome.acks] == ["rejected"]
    assert outcome.acks[0].detail.startswith("issued 31 s in the future, at "), outcome.acks
    assert outcome.switches == []
    # within the bound either way (clocks a little apart) it runs
    command = Command("c-soon", CHANNEL, "backup", ("black",), iso(-5.0))
    outcome = commands_through_agent([command.to_json()], NOW_S)
    assert outcome.switches == ["backup"]


def test_a_command_whose_issued_at_is_not_a_time_is_rejected_not_run():
    command = Command("c-when", CHANNEL, "backup", ("black",), "yesterday")
    outcome = commands_through_agent([command.to_json()], NOW_S)
    assert [(a.status, a.detail) for a in outcome.acks] == [
        ("rejected", "issued_at 'yesterday' is not an ISO 8601 time: the command's age cannot "
         "be checked")
    ]  # fmt: skip
    assert outcome.switches == []
