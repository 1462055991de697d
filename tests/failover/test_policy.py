"""The failover policy as a specification: every state × every event, then whole scenarios.

The table drives a fresh Policy into each state through public events only, applies one event
and checks the state after, the input on air and the decisions, summarised as
``send:<to>[#attempt]``, ``request:<to>``, ``withdraw``, ``raise:<alarm>``, ``clear:<alarm>``
(``failover_`` dropped) and the audit decisions, in order.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace

import pytest

from failover.events import (
    AckReceived,
    AlarmChanged,
    Audit,
    ClearAlarm,
    Decision,
    EncoderReported,
    Event,
    OperatorAction,
    RaiseAlarm,
    RequestConfirmation,
    SendCommand,
    Tick,
    WithdrawConfirmation,
)
from failover.policy import Policy
from failover.policy import State as S
from failover.policy_settings import FailoverSettings, Trigger
from failover.protocol import Command

P, B = "primary", "backup"

# black must hold 2 s beyond its raise; silence switches as soon as it is raised.
BASE = FailoverSettings(
    mode="auto",
    triggers=(Trigger("black", hold_s=2.0), Trigger("silence")),
    error_clear_time_s=10.0,
    confirm_timeout_s=30.0,
    max_switches=2,
    flap_window_s=100.0,
    ack_timeout_s=5.0,
    retries=1,
    done_timeout_s=20.0,
)


def make_policy(**overrides: object) -> Policy:
    ids = (f"id{n}" for n in itertools.count(1))
    return Policy(
        replace(BASE, **overrides),  # type: ignore[arg-type]
        "news",
        make_id=lambda: next(ids),
        clock_iso=lambda at_s: f"T+{at_s:g}",
    )


def summary(decisions: list[Decision]) -> str:
    words = []
    for d in decisions:
        if isinstance(d, SendCommand):
            words.append(f"send:{d.to}" + (f"#{d.attempt}" if d.attempt > 1 else ""))
        elif isinstance(d, RequestConfirmation):
            words.append(f"request:{d.to}")
        elif isinstance(d, WithdrawConfirmation):
            words.append("withdraw")
        elif isinstance(d, RaiseAlarm):
            words.append("raise:" + d.name.removeprefix("failover_"))
        elif isinstance(d, ClearAlarm):
            words.append("clear:" + d.name.removeprefix("failover_"))
        else:
            words.append(d.decision)
    return " ".join(words)


def other(name: str) -> str:
    return B if name == P else P


# --- Every state × every event -------------------------------------------------------------------

# How to reach each state: settings overrides and the events, from a fresh policy.
SETUPS: dict[S, tuple[dict[str, object], list[Event]]] = {
    S.ON_PRIMARY: ({}, [Tick(0.0)]),
    S.ON_BACKUP: (  # failed over on silence; primary still silent
        {},
        [AlarmChanged(0.0, P, "silence", True), AckReceived(1.0, "id1", "done")],
    ),
    S.PENDING_SWITCH: ({}, [AlarmChanged(0.0, P, "black", True)]),  # holds at 2.0
    S.PENDING_FAILBACK: (  # primary clean since 2.0, failback at 12.0
        {},
        [
            AlarmChanged(0.0, P, "silence", True),
            AckReceived(1.0, "id1", "done"),
            AlarmChanged(2.0, P, "silence", False),
        ],
    ),
    S.BLOCKED: (
        {},
        [AlarmChanged(0.0, B, "input_loss", True), AlarmChanged(1.0, P, "silence", True)],
    ),
    S.AWAITING_CONFIRM: ({"mode": "confirm"}, [AlarmChanged(0.0, P, "silence", True)]),
    S.SWITCHING: ({}, [AlarmChanged(0.0, P, "silence", True)]),  # id1 out at 0.0
    S.HELD: (  # two switches done (at 1.0 and 4.0) in the 100 s window, a third one due
        {},
        [
            AlarmChanged(0.0, P, "silence", True),
            AckReceived(1.0, "id1", "done"),
            AlarmChanged(2.0, P, "silence", False),
            AlarmChanged(3.0, B, "silence", True),
            AckReceived(4.0, "id2", "done"),
            AlarmChanged(5.0, B, "silence", False),
            AlarmChanged(6.0, P, "silence", True),
        ],
    ),
    S.SUPPRESSED: (  # the agent failed the switch; primary still silent
        {},
        [AlarmChanged(0.0, P, "silence", True), AckReceived(1.0, "id1", "failed", "busy")],
    ),
    S.LOCKED: ({}, [OperatorAction(0.0, "lock", "bob")]),
}


def drive_to(state: S) -> tuple[Policy, float]:
    overrides, events = SETUPS[state]
    policy = make_policy(**overrides)
    for event in events:
        policy.handle(event)
    assert policy.state == state
    return policy, events[-1].at_s


def _ack(status: str) -> Callable[[Policy, float], Event]:
    # the command in flight, else the setup's first command (finished by then)
    return lambda p, t: AckReceived(t + 0.5, p.pending_command_id or "id1", status, "x")  # type: ignore[arg-type]


def _switch_over(p: Policy, t: float) -> Event:
    return OperatorAction(t + 0.5, "switch", "alice", to=other(p.active_input))


# Events half a second after the setup (except long_tick), relative to the input on air.
EVENTS: dict[str, Callable[[Policy, float], Event]] = {
    "trigger_raised": lambda p, t: AlarmChanged(t + 0.5, p.active_input, "silence", True),
    "trigger_cleared": lambda p, t: AlarmChanged(t + 0.5, p.active_input, "silence", False),
    "black_cleared_on_air": lambda p, t: AlarmChanged(t + 0.5, p.active_input, "black", False),
    "standby_clean": lambda p, t: AlarmChanged(t + 0.5, other(p.active_input), "silence", False),
    "standby_unfit": lambda p, t: AlarmChanged(t + 0.5, other(p.active_input), "input_loss", True),
    "standby_fit": lambda p, t: AlarmChanged(t + 0.5, other(p.active_input), "input_loss", False),
    "unknown_input": lambda p, t: AlarmChanged(t + 0.5, "tertiary", "black", True),
    "tick": lambda p, t: Tick(t + 0.5),
    "long_tick": lambda p, t: Tick(t + 1000.0),
    "ack_accepted": _ack("accepted"),
    "ack_done": _ack("done"),
    "ack_failed": _ack("failed"),
    "ack_rejected": _ack("rejected"),
    "ack_unknown": lambda p, t: AckReceived(t + 0.5, "nope", "done"),
    "confirm": lambda p, t: OperatorAction(t + 0.5, "confirm", "alice"),
    "reject": lambda p, t: OperatorAction(t + 0.5, "reject", "alice"),
    "switch": _switch_over,
    "lock": lambda p, t: OperatorAction(t + 0.5, "lock", "alice"),
    "unlock": lambda p, t: OperatorAction(t + 0.5, "unlock", "alice"),
    "encoder_other": lambda p, t: EncoderReported(t + 0.5, other(p.active_input)),
    "encoder_same": lambda p, t: EncoderReported(t + 0.5, p.active_input),
}

# (state, event) -> (state after, input on air after, decisions)
TABLE = [
    # ON_PRIMARY
    (S.ON_PRIMARY, "trigger_raised", S.SWITCHING, P, "send:backup switch"),
    (S.ON_PRIMARY, "trigger_cleared", S.ON_PRIMARY, P, ""),
    (S.ON_PRIMARY, "black_cleared_on_air", S.ON_PRIMARY, P, ""),
    (S.ON_PRIMARY, "standby_clean", S.ON_PRIMARY, P, ""),
    (S.ON_PRIMARY, "standby_unfit", S.ON_PRIMARY, P, ""),
    (S.ON_PRIMARY, "standby_fit", S.ON_PRIMARY, P, ""),
    (S.ON_PRIMARY, "unknown_input", S.ON_PRIMARY, P, "ignored"),
    (S.ON_PRIMARY, "tick", S.ON_PRIMARY, P, ""),
    (S.ON_PRIMARY, "long_tick", S.ON_PRIMARY, P, ""),
    (S.ON_PRIMARY, "ack_accepted", S.ON_PRIMARY, P, "ignored"),
    (S.ON_PRIMARY, "ack_done", S.ON_PRIMARY, P, "ignored"),
    (S.ON_PRIMARY, "ack_failed", S.ON_PRIMARY, P, "ignored"),
    (S.ON_PRIMARY, "ack_rejected", S.ON_PRIMARY, P, "ignored"),
    (S.ON_PRIMARY, "ack_unknown", S.ON_PRIMARY, P, "ignored"),
    (S.ON_PRIMARY, "confirm", S.ON_PRIMARY, P, "ignored"),
    (S.ON_PRIMARY, "reject", S.ON_PRIMARY, P, "ignored"),
    (S.ON_PRIMARY, "switch", S.SWITCHING, P, "send:backup switch"),
    (S.ON_PRIMARY, "lock", S.LOCKED, P, "locked"),
    (S.ON_PRIMARY, "unlock", S.ON_PRIMARY, P, "ignored"),
    (S.ON_PRIMARY, "encoder_other", S.PENDING_FAILBACK, B, "encoder_reported failback_pending"),
    (S.ON_PRIMARY, "encoder_same", S.ON_PRIMARY, P, ""),
    # ON_BACKUP
    (S.ON_BACKUP, "trigger_raised", S.BLOCKED, B, "raise:blocked blocked"),
    (S.ON_BACKUP, "trigger_cleared", S.ON_BACKUP, B, ""),
    (S.ON_BACKUP, "black_cleared_on_air", S.ON_BACKUP, B, ""),
    (S.ON_BACKUP, "standby_clean", S.PENDING_FAILBACK, B, "failback_pending"),
    (S.ON_BACKUP, "standby_unfit", S.ON_BACKUP, B, ""),
    (S.ON_BACKUP, "standby_fit", S.ON_BACKUP, B, ""),
    (S.ON_BACKUP, "unknown_input", S.ON_BACKUP, B, "ignored"),
    (S.ON_BACKUP, "tick", S.ON_BACKUP, B, ""),
    (S.ON_BACKUP, "long_tick", S.ON_BACKUP, B, ""),
    (S.ON_BACKUP, "ack_accepted", S.ON_BACKUP, B, "ignored"),
    (S.ON_BACKUP, "ack_done", S.ON_BACKUP, B, "ignored"),
    (S.ON_BACKUP, "ack_failed", S.ON_BACKUP, B, "ignored"),
    (S.ON_BACKUP, "ack_rejected", S.ON_BACKUP, B, "ignored"),
    (S.ON_BACKUP, "ack_unknown", S.ON_BACKUP, B, "ignored"),
    (S.ON_BACKUP, "confirm", S.ON_BACKUP, B, "ignored"),
    (S.ON_BACKUP, "reject", S.ON_BACKUP, B, "ignored"),
    (S.ON_BACKUP, "switch", S.SWITCHING, B, "send:primary switch"),
    (S.ON_BACKUP, "lock", S.LOCKED, B, "locked"),
    (S.ON_BACKUP, "unlock", S.ON_BACKUP, B, "ignored"),
    (S.ON_BACKUP, "encoder_other", S.SWITCHING, P, "encoder_reported send:backup switch"),
    (S.ON_BACKUP, "encoder_same", S.ON_BACKUP, B, ""),
    # PENDING_SWITCH
    (S.PENDING_SWITCH, "trigger_raised", S.SWITCHING, P, "send:backup switch"),
    (S.PENDING_SWITCH, "trigger_cleared", S.PENDING_SWITCH, P, ""),
    (S.PENDING_SWITCH, "black_cleared_on_air", S.ON_PRIMARY, P, "pending_cancelled"),
    (S.PENDING_SWITCH, "standby_clean", S.PENDING_SWITCH, P, ""),
    (S.PENDING_SWITCH, "standby_unfit", S.PENDING_SWITCH, P, ""),
    (S.PENDING_SWITCH, "standby_fit", S.PENDING_SWITCH, P, ""),
    (S.PENDING_SWITCH, "unknown_input", S.PENDING_SWITCH, P, "ignored"),
    (S.PENDING_SWITCH, "tick", S.PENDING_SWITCH, P, ""),
    (S.PENDING_SWITCH, "long_tick", S.SWITCHING, P, "send:backup switch"),
    (S.PENDING_SWITCH, "ack_accepted", S.PENDING_SWITCH, P, "ignored"),
    (S.PENDING_SWITCH, "ack_done", S.PENDING_SWITCH, P, "ignored"),
    (S.PENDING_SWITCH, "ack_failed", S.PENDING_SWITCH, P, "ignored"),
    (S.PENDING_SWITCH, "ack_rejected", S.PENDING_SWITCH, P, "ignored"),
    (S.PENDING_SWITCH, "ack_unknown", S.PENDING_SWITCH, P, "ignored"),
    (S.PENDING_SWITCH, "confirm", S.PENDING_SWITCH, P, "ignored"),
    (S.PENDING_SWITCH, "reject", S.PENDING_SWITCH, P, "ignored"),
    (S.PENDING_SWITCH, "switch", S.SWITCHING, P, "send:backup switch"),
    (S.PENDING_SWITCH, "lock", S.LOCKED, P, "locked"),
    (S.PENDING_SWITCH, "unlock", S.PENDING_SWITCH, P, "ignored"),
    (S.PENDING_SWITCH, "encoder_other", S.ON_BACKUP, B, "encoder_reported"),
    (S.PENDING_SWITCH, "encoder_same", S.PENDING_SWITCH, P, ""),
    # PENDING_FAILBACK
    (S.PENDING_FAILBACK, "trigger_raised", S.SWITCHING, B, "send:primary switch"),
    (S.PENDING_FAILBACK, "trigger_cleared", S.PENDING_FAILBACK, B, ""),
    (S.PENDING_FAILBACK, "black_cleared_on_air", S.PENDING_FAILBACK, B, ""),
    (S.PENDING_FAILBACK, "standby_clean", S.PENDING_FAILBACK, B, ""),
    (S.PENDING_FAILBACK, "standby_unfit", S.ON_BACKUP, B, "failback_cancelled"),
    (S.PENDING_FAILBACK, "standby_fit", S.PENDING_FAILBACK, B, ""),
    (S.PENDING_FAILBACK, "unknown_input", S.PENDING_FAILBACK, B, "ignored"),
    (S.PENDING_FAILBACK, "tick", S.PENDING_FAILBACK, B, ""),
    (S.PENDING_FAILBACK, "long_tick", S.SWITCHING, B, "send:primary switch"),
    (S.PENDING_FAILBACK, "ack_accepted", S.PENDING_FAILBACK, B, "ignored"),
    (S.PENDING_FAILBACK, "ack_done", S.PENDING_FAILBACK, B, "ignored"),
    (S.PENDING_FAILBACK, "ack_failed", S.PENDING_FAILBACK, B, "ignored"),
    (S.PENDING_FAILBACK, "ack_rejected", S.PENDING_FAILBACK, B, "ignored"),
    (S.PENDING_FAILBACK, "ack_unknown", S.PENDING_FAILBACK, B, "ignored"),
    (S.PENDING_FAILBACK, "confirm", S.PENDING_FAILBACK, B, "ignored"),
    (S.PENDING_FAILBACK, "reject", S.PENDING_FAILBACK, B, "ignored"),
    (S.PENDING_FAILBACK, "switch", S.SWITCHING, B, "send:primary switch"),
    (S.PENDING_FAILBACK, "lock", S.LOCKED, B, "locked"),
    (S.PENDING_FAILBACK, "unlock", S.PENDING_FAILBACK, B, "ignored"),
    (S.PENDING_FAILBACK, "encoder_other", S.ON_PRIMARY, P, "encoder_reported"),
    (S.PENDING_FAILBACK, "encoder_same", S.PENDING_FAILBACK, B, ""),
    # BLOCKED
    (S.BLOCKED, "trigger_raised", S.BLOCKED, P, ""),
    (S.BLOCKED, "trigger_cleared", S.ON_PRIMARY, P, "clear:blocked unblocked"),
    (S.BLOCKED, "black_cleared_on_air", S.BLOCKED, P, ""),
    (S.BLOCKED, "standby_clean", S.BLOCKED, P, ""),
    (S.BLOCKED, "standby_unfit", S.BLOCKED, P, ""),
    (S.BLOCKED, "standby_fit", S.SWITCHING, P, "clear:blocked unblocked send:backup switch"),
    (S.BLOCKED, "unknown_input", S.BLOCKED, P, "ignored"),
    (S.BLOCKED, "tick", S.BLOCKED, P, ""),
    (S.BLOCKED, "long_tick", S.BLOCKED, P, ""),
    (S.BLOCKED, "ack_accepted", S.BLOCKED, P, "ignored"),
    (S.BLOCKED, "ack_done", S.BLOCKED, P, "ignored"),
    (S.BLOCKED, "ack_failed", S.BLOCKED, P, "ignored"),
    (S.BLOCKED, "ack_rejected", S.BLOCKED, P, "ignored"),
    (S.BLOCKED, "ack_unknown", S.BLOCKED, P, "ignored"),
    (S.BLOCKED, "confirm", S.BLOCKED, P, "ignored"),
    (S.BLOCKED, "reject", S.BLOCKED, P, "ignored"),
    (S.BLOCKED, "switch", S.SWITCHING, P, "send:backup switch clear:blocked unblocked"),
    (S.BLOCKED, "lock", S.LOCKED, P, "locked clear:blocked unblocked not_switched"),
    (S.BLOCKED, "unlock", S.BLOCKED, P, "ignored"),
    (S.BLOCKED, "encoder_other", S.ON_BACKUP, B, "encoder_reported clear:blocked unblocked"),
    (S.BLOCKED, "encoder_same", S.BLOCKED, P, ""),
    # AWAITING_CONFIRM
    (S.AWAITING_CONFIRM, "trigger_raised", S.AWAITING_CONFIRM, P, ""),
    (S.AWAITING_CONFIRM, "trigger_cleared", S.ON_PRIMARY, P, "withdraw confirm_withdrawn"),
    (S.AWAITING_CONFIRM, "black_cleared_on_air", S.AWAITING_CONFIRM, P, ""),
    (S.AWAITING_CONFIRM, "standby_clean", S.AWAITING_CONFIRM, P, ""),
    (
        S.AWAITING_CONFIRM,
        "standby_unfit",
        S.BLOCKED,
        P,
        "withdraw confirm_withdrawn raise:blocked blocked",
    ),
    (S.AWAITING_CONFIRM, "standby_fit", S.AWAITING_CONFIRM, P, ""),
    (S.AWAITING_CONFIRM, "unknown_input", S.AWAITING_CONFIRM, P, "ignored"),
    (S.AWAITING_CONFIRM, "tick", S.AWAITING_CONFIRM, P, ""),
    (
        S.AWAITING_CONFIRM,
        "long_tick",
        S.SWITCHING,
        P,
        "withdraw confirm_withdrawn send:backup switch",
    ),
    (S.AWAITING_CONFIRM, "ack_accepted", S.AWAITING_CONFIRM, P, "ignored"),
    (S.AWAITING_CONFIRM, "ack_done", S.AWAITING_CONFIRM, P, "ignored"),
    (S.AWAITING_CONFIRM, "ack_failed", S.AWAITING_CONFIRM, P, "ignored"),
    (S.AWAITING_CONFIRM, "ack_rejected", S.AWAITING_CONFIRM, P, "ignored"),
    (S.AWAITING_CONFIRM, "ack_unknown", S.AWAITING_CONFIRM, P, "ignored"),
    (
        S.AWAITING_CONFIRM,
        "confirm",
        S.SWITCHING,
        P,
        "withdraw confirm_withdrawn confirmed send:backup switch",
    ),
    (S.AWAITING_CONFIRM, "reject", S.SUPPRESSED, P, "withdraw confirm_withdrawn rejected"),
    (S.AWAITING_CONFIRM, "switch", S.SWITCHING, P, "withdraw confirm_withdrawn send:backup switch"),
    (S.AWAITING_CONFIRM, "lock", S.LOCKED, P, "locked withdraw confirm_withdrawn not_switched"),
    (S.AWAITING_CONFIRM, "unlock", S.AWAITING_CONFIRM, P, "ignored"),
    (
        S.AWAITING_CONFIRM,
        "encoder_other",
        S.ON_BACKUP,
        B,
        "encoder_reported withdraw confirm_withdrawn",
    ),
    (S.AWAITING_CONFIRM, "encoder_same", S.AWAITING_CONFIRM, P, ""),
    # SWITCHING
    (S.SWITCHING, "trigger_raised", S.SWITCHING, P, ""),
    (S.SWITCHING, "trigger_cleared", S.SWITCHING, P, ""),
    (S.SWITCHING, "black_cleared_on_air", S.SWITCHING, P, ""),
    (S.SWITCHING, "standby_clean", S.SWITCHING, P, ""),
    (S.SWITCHING, "standby_unfit", S.SWITCHING, P, ""),
    (S.SWITCHING, "standby_fit", S.SWITCHING, P, ""),
    (S.SWITCHING, "unknown_input", S.SWITCHING, P, "ignored"),
    (S.SWITCHING, "tick", S.SWITCHING, P, ""),
    (S.SWITCHING, "long_tick", S.SWITCHING, P, "send:backup#2 retry"),
    (S.SWITCHING, "ack_accepted", S.SWITCHING, P, "accepted"),
    (S.SWITCHING, "ack_done", S.ON_BACKUP, B, "switched"),
    (S.SWITCHING, "ack_failed", S.SUPPRESSED, P, "raise:failed failed"),
    (S.SWITCHING, "ack_rejected", S.SUPPRESSED, P, "raise:failed rejected_by_agent"),
    (S.SWITCHING, "ack_unknown", S.SWITCHING, P, "ignored"),
    (S.SWITCHING, "confirm", S.SWITCHING, P, "ignored"),
    (S.SWITCHING, "reject", S.SWITCHING, P, "ignored"),
    (S.SWITCHING, "switch", S.SWITCHING, P, "ignored"),
    (S.SWITCHING, "lock", S.LOCKED, P, "locked"),
    (S.SWITCHING, "unlock", S.SWITCHING, P, "ignored"),
    (S.SWITCHING, "encoder_other", S.ON_BACKUP, B, "switched"),
    (S.SWITCHING, "encoder_same", S.SWITCHING, P, ""),
    # HELD
    (S.HELD, "trigger_raised", S.HELD, P, ""),
    (S.HELD, "trigger_cleared", S.HELD, P, ""),
    (S.HELD, "black_cleared_on_air", S.HELD, P, ""),
    (S.HELD, "standby_clean", S.HELD, P, ""),
    (S.HELD, "standby_unfit", S.HELD, P, ""),
    (S.HELD, "standby_fit", S.HELD, P, ""),
    (S.HELD, "unknown_input", S.HELD, P, "ignored"),
    (S.HELD, "tick", S.HELD, P, ""),
    (S.HELD, "long_tick", S.SWITCHING, P, "clear:flapping hold_released send:backup switch"),
    (S.HELD, "ack_accepted", S.HELD, P, "ignored"),
    (S.HELD, "ack_done", S.HELD, P, "ignored"),
    (S.HELD, "ack_failed", S.HELD, P, "ignored"),
    (S.HELD, "ack_rejected", S.HELD, P, "ignored"),
    (S.HELD, "ack_unknown", S.HELD, P, "ignored"),
    (S.HELD, "confirm", S.HELD, P, "ignored"),
    (S.HELD, "reject", S.HELD, P, "ignored"),
    (S.HELD, "switch", S.SWITCHING, P, "send:backup switch"),
    (S.HELD, "lock", S.LOCKED, P, "locked not_switched"),
    (S.HELD, "unlock", S.HELD, P, "ignored"),
    (S.HELD, "encoder_other", S.HELD, B, "encoder_reported"),
    (S.HELD, "encoder_same", S.HELD, P, ""),
    # SUPPRESSED
    (S.SUPPRESSED, "trigger_raised", S.SUPPRESSED, P, ""),
    (S.SUPPRESSED, "trigger_cleared", S.ON_PRIMARY, P, "suppression_ended clear:failed"),
    (S.SUPPRESSED, "black_cleared_on_air", S.SUPPRESSED, P, ""),
    (S.SUPPRESSED, "standby_clean", S.SUPPRESSED, P, ""),
    (S.SUPPRESSED, "standby_unfit", S.SUPPRESSED, P, ""),
    (S.SUPPRESSED, "standby_fit", S.SUPPRESSED, P, ""),
    (S.SUPPRESSED, "unknown_input", S.SUPPRESSED, P, "ignored"),
    (S.SUPPRESSED, "tick", S.SUPPRESSED, P, ""),
    (S.SUPPRESSED, "long_tick", S.SUPPRESSED, P, ""),
    (S.SUPPRESSED, "ack_accepted", S.SUPPRESSED, P, "ignored"),
    (S.SUPPRESSED, "ack_done", S.SUPPRESSED, P, "ignored"),
    (S.SUPPRESSED, "ack_failed", S.SUPPRESSED, P, "ignored"),
    (S.SUPPRESSED, "ack_rejected", S.SUPPRESSED, P, "ignored"),
    (S.SUPPRESSED, "ack_unknown", S.SUPPRESSED, P, "ignored"),
    (S.SUPPRESSED, "confirm", S.SUPPRESSED, P, "ignored"),
    (S.SUPPRESSED, "reject", S.SUPPRESSED, P, "ignored"),
    (S.SUPPRESSED, "switch", S.SWITCHING, P, "send:backup switch"),
    (S.SUPPRESSED, "lock", S.LOCKED, P, "locked not_switched"),
    (S.SUPPRESSED, "unlock", S.SUPPRESSED, P, "ignored"),
    (
        S.SUPPRESSED,
        "encoder_other",
        S.ON_BACKUP,
        B,
        "encoder_reported suppression_ended clear:failed",
    ),
    (S.SUPPRESSED, "encoder_same", S.SUPPRESSED, P, ""),
    # LOCKED
    (S.LOCKED, "trigger_raised", S.LOCKED, P, "not_switched"),
    (S.LOCKED, "trigger_cleared", S.LOCKED, P, ""),
    (S.LOCKED, "black_cleared_on_air", S.LOCKED, P, ""),
    (S.LOCKED, "standby_clean", S.LOCKED, P, ""),
    (S.LOCKED, "standby_unfit", S.LOCKED, P, ""),
    (S.LOCKED, "standby_fit", S.LOCKED, P, ""),
    (S.LOCKED, "unknown_input", S.LOCKED, P, "ignored"),
    (S.LOCKED, "tick", S.LOCKED, P, ""),
    (S.LOCKED, "long_tick", S.LOCKED, P, ""),
    (S.LOCKED, "ack_accepted", S.LOCKED, P, "ignored"),
    (S.LOCKED, "ack_done", S.LOCKED, P, "ignored"),
    (S.LOCKED, "ack_failed", S.LOCKED, P, "ignored"),
    (S.LOCKED, "ack_rejected", S.LOCKED, P, "ignored"),
    (S.LOCKED, "ack_unknown", S.LOCKED, P, "ignored"),
    (S.LOCKED, "confirm", S.LOCKED, P, "ignored"),
    (S.LOCKED, "reject", S.LOCKED, P, "ignored"),
    (S.LOCKED, "switch", S.LOCKED, P, "send:backup switch"),
    (S.LOCKED, "lock", S.LOCKED, P, "ignored"),
    (S.LOCKED, "unlock", S.ON_PRIMARY, P, "unlocked"),
    (S.LOCKED, "encoder_other", S.LOCKED, B, "encoder_reported"),
    (S.LOCKED, "encoder_same", S.LOCKED, P, ""),
]


def test_the_table_covers_every_state_and_every_event() -> None:
    assert [(row[0], row[1]) for row in TABLE] == [(s, e) for s in S for e in EVENTS]


@pytest.mark.parametrize(
    ("state", "event", "after", "on_air", "decisions"),
    TABLE,
    ids=[f"{row[0].name}-{row[1]}" for row in TABLE],
)
def test_state_event(state: S, event: str, after: S, on_air: str, decisions: str) -> None:
    policy, t = drive_to(state)
    out = policy.handle(EVENTS[event](policy, t))
    assert (policy.state, policy.active_input, summary(out)) == (after, on_air, decisions)


@pytest.mark.parametrize("row", TABLE, ids=[f"{row[0].name}-{row[1]}" for row in TABLE])
def test_every_decision_comes_with_an_audit(row: tuple[S, str, S, str, str]) -> None:
    policy, t = drive_to(row[0])
    out = policy.handle(EVENTS[row[1]](policy, t))
    if any(not isinstance(d, Audit) for d in out):
        assert any(isinstance(d, Audit) for d in out)


# Sub-states the main table reaches only in passing: their own rows for the events that differ.
def _locked_with_command() -> Policy:
    policy = make_policy()
    policy.handle(OperatorAction(0.0, "lock", "bob"))
    policy.handle(OperatorAction(0.5, "switch", "alice", to="backup"))  # id1
    return policy


def _accepted() -> Policy:
    policy = make_policy()
    policy.handle(AlarmChanged(0.0, P, "silence", True))
    policy.handle(AckReceived(0.5, "id1", "accepted"))
    return policy


def _resent() -> Policy:
    policy = make_policy()
    policy.handle(AlarmChanged(0.0, P, "silence", True))
    policy.handle(Tick(5.0))  # retry 1 of 1
    return policy


def _rejected_by_operator() -> Policy:
    policy = make_policy(mode="confirm")
    policy.handle(AlarmChanged(0.0, P, "silence", True))
    policy.handle(OperatorAction(0.5, "reject", "alice"))
    return policy


def _mode_off() -> Policy:
    policy = make_policy(mode="off")
    policy.handle(AlarmChanged(0.0, P, "silence", True))  # would_switch, then suppressed
    return policy


Row = tuple[Event, S, str, str]  # event, state after, input on air after, decisions

VARIANTS: dict[str, tuple[Callable[[], Policy], list[Row]]] = {
    "locked_with_a_manual_command_out": (
        _locked_with_command,
        [
            (AckReceived(1.0, "id1", "accepted"), S.LOCKED, P, "accepted"),
            (AckReceived(1.0, "id1", "done"), S.LOCKED, B, "switched"),
            (AckReceived(1.0, "id1", "failed"), S.LOCKED, P, "raise:failed failed"),
            (Tick(5.5), S.LOCKED, P, "send:backup#2 retry"),
            (OperatorAction(1.0, "unlock", "bob"), S.SWITCHING, P, "unlocked"),
            (EncoderReported(1.0, B), S.LOCKED, B, "switched"),
        ],
    ),
    "switching_accepted": (
        _accepted,
        [
            (AckReceived(1.0, "id1", "accepted"), S.SWITCHING, P, "ignored"),
            (Tick(6.0), S.SWITCHING, P, ""),  # no resend once accepted
            (Tick(20.5), S.SUPPRESSED, P, "raise:no_ack no_ack"),
            (AckReceived(1.0, "id1", "done"), S.ON_BACKUP, B, "switched"),
        ],
    ),
    "switching_resent": (
        _resent,
        [
            (Tick(9.9), S.SWITCHING, P, ""),
            (Tick(10.0), S.SUPPRESSED, P, "raise:no_ack no_ack"),
            (AckReceived(6.0, "id1", "done"), S.ON_BACKUP, B, "switched"),
        ],
    ),
    "suppressed_by_operator": (
        _rejected_by_operator,
        [
            (OperatorAction(1.0, "confirm", "carol"), S.SUPPRESSED, P, "ignored"),
            (AlarmChanged(1.0, P, "silence", False), S.ON_PRIMARY, P, "suppression_ended"),
            (Tick(1000.0), S.SUPPRESSED, P, ""),
        ],
    ),
    "suppressed_by_mode_off": (
        _mode_off,
        [
            (Tick(1000.0), S.SUPPRESSED, P, ""),
            (AlarmChanged(1.0, P, "silence", False), S.ON_PRIMARY, P, "suppression_ended"),
            (OperatorAction(1.0, "switch", "alice", to=B), S.SUPPRESSED, P, "ignored"),
            (OperatorAction(1.0, "lock", "alice"), S.SUPPRESSED, P, "ignored"),
            (EncoderReported(1.0, B), S.ON_BACKUP, B, "encoder_reported suppression_ended"),
        ],
    ),
}
VARIANT_ROWS = [(name, make, *row) for name, (make, rows) in VARIANTS.items() for row in rows]


@pytest.mark.parametrize(
    ("setup", "make", "event", "after", "on_air", "decisions"),
    VARIANT_ROWS,
    ids=[f"{row[0]}-{i}" for i, row in enumerate(VARIANT_ROWS)],
)
def test_sub_state_event(
    setup: str, make: Callable[[], Policy], event: Event, after: S, on_air: str, decisions: str
) -> None:
    policy = make()
    out = policy.handle(event)
    assert (policy.state, policy.active_input, summary(out)) == (after, on_air, decisions)


# --- Scenarios -----------------------------------------------------------------------------------


class Channel:
    """A policy and everything it said, for scenarios."""

    def __init__(self, **overrides: object) -> None:
        self.policy = make_policy(**overrides)
        self.said: list[Decision] = []

    def __call__(self, event: Event) -> list[Decision]:
        out = self.policy.handle(event)
        self.said.extend(out)
        return out

    @property
    def state(self) -> S:
        return self.policy.state

    @property
    def on_air(self) -> str:
        return self.policy.active_input


def sends(out: list[Decision]) -> list[SendCommand]:
    return [d for d in out if isinstance(d, SendCommand)]


def audit(out: list[Decision], decision: str) -> Audit:
    (found,) = [d for d in out if isinstance(d, Audit) and d.decision == decision]
    return found


def alarms(out: list[Decision]) -> list[tuple[str, str]]:
    return [
        ("raise" if isinstance(d, RaiseAlarm) else "clear", d.name)
        for d in out
        if isinstance(d, RaiseAlarm | ClearAlarm)
    ]


def test_auto_failover_after_the_hold_off_and_failback_after_error_clear_time() -> None:
    ch = Channel()
    ch(Tick(0.0))
    assert ch(AlarmChanged(10.0, P, "black", True))[0].decision == "pending"  # type: ignore[union-attr]
    assert sends(ch(Tick(11.9))) == []
    (command,) = sends(out := ch(Tick(12.0)))
    assert command == SendCommand("id1", "news", B, ("black",), None, 1, 12.0, "T+12")
    assert audit(out, "switch").why == "switching to backup: black on primary for 2 s"
    ch(AckReceived(12.5, "id1", "accepted"))
    assert audit(ch(AckReceived(14.0, "id1", "done")), "switched").detail == {
        "from": P,
        "to": B,
        "kind": "failover",
    }
    assert (ch.state, ch.on_air) == (S.ON_BACKUP, B)

    ch(AlarmChanged(20.0, P, "black", False))
    assert ch.state == S.PENDING_FAILBACK
    assert sends(ch(Tick(29.9))) == []
    (failback,) = sends(out := ch(Tick(30.0)))
    assert (failback.to, failback.reason) == (P, ("failback",))
    assert audit(out, "switch").why == "switching to primary: primary clean for 10 s"
    ch(AckReceived(30.5, "id2", "done"))
    assert (ch.state, ch.on_air) == (S.ON_PRIMARY, P)


def test_failback_waits_for_error_clear_time_after_the_last_alarm_of_primary() -> None:
    ch = Channel()
    ch(AlarmChanged(0.0, P, "silence", True))
    ch(AckReceived(0.5, "id1", "done"))
    ch(AlarmChanged(1.0, P, "silence", False))
    assert audit(ch(AlarmChanged(8.0, P, "input_loss", True)), "failback_cancelled").why == (
        "primary has input_loss again"
    )
    ch(AlarmChanged(9.0, P, "input_loss", False))
    assert sends(ch(Tick(18.9))) == []
    assert [c.to for c in sends(ch(Tick(19.0)))] == [P]


def test_failback_stay_remains_on_backup_until_an_operator_switches_back() -> None:
    ch = Channel(failback="stay")
    ch(AlarmChanged(0.0, P, "silence", True))
    ch(AckReceived(0.5, "id1", "done"))
    ch(AlarmChanged(1.0, P, "silence", False))
    assert sends(ch(Tick(10_000.0))) == []
    assert ch.state == S.ON_BACKUP
    (command,) = sends(ch(OperatorAction(10_001.0, "switch", "alice", to="primary")))
    assert (command.to, command.operator, command.reason) == (P, "alice", ("manual",))


def test_backup_with_an_alarm_blocks_the_failover_until_it_recovers() -> None:
    ch = Channel()
    ch(AlarmChanged(0.0, B, "black", True))
    out = ch(AlarmChanged(1.0, P, "silence", True))
    assert sends(out) == [] and ch.state == S.BLOCKED
    (raised,) = [d for d in out if isinstance(d, RaiseAlarm)]
    assert raised == RaiseAlarm(
        "failover_blocked",
        "critical",
        {"on_air": P, "on_air_alarms": ["silence"], "standby": B, "standby_alarms": ["black"]},
    )
    assert audit(out, "blocked").why == (
        "did not switch to backup: it has black (silence on primary for 0 s)"
    )
    assert ch(Tick(500.0)) == []  # said once, not on every tick
    out = ch(AlarmChanged(501.0, B, "black", False))
    assert alarms(out) == [("clear", "failover_blocked")]
    assert [c.to for c in sends(out)] == [B]


def test_blocked_clears_without_switching_when_primary_recovers() -> None:
    ch = Channel()
    ch(AlarmChanged(0.0, B, "input_loss", True))  # not a trigger, but unfit_alarms
    ch(AlarmChanged(1.0, P, "silence", True))
    out = ch(AlarmChanged(2.0, P, "silence", False))
    assert alarms(out) == [("clear", "failover_blocked")] and sends(out) == []
    assert ch.state == S.ON_PRIMARY


def test_a_failing_backup_switches_back_to_a_clean_primary_at_once_even_with_stay() -> None:
    ch = Channel(failback="stay")
    ch(AlarmChanged(0.0, P, "silence", True))
    ch(AckReceived(0.5, "id1", "done"))
    ch(AlarmChanged(1.0, P, "silence", False))
    (command,) = sends(ch(AlarmChanged(2.0, B, "silence", True)))  # no error_clear_time wait
    assert (command.to, command.reason) == (P, ("silence",))


def test_both_paths_bad_on_backup_blocks_the_way_back() -> None:
    ch = Channel()
    ch(AlarmChanged(0.0, P, "silence", True))
    ch(AckReceived(0.5, "id1", "done"))
    out = ch(AlarmChanged(1.0, B, "silence", True))
    assert ch.state == S.BLOCKED and alarms(out) == [("raise", "failover_blocked")]
    assert audit(out, "blocked").detail["standby"] == P


def test_confirm_mode_switches_on_confirmation_with_the_operator_in_the_trail() -> None:
    ch = Channel(mode="confirm")
    out = ch(AlarmChanged(0.0, P, "silence", True))
    (request,) = [d for d in out if isinstance(d, RequestConfirmation)]
    assert request == RequestConfirmation("id1", "news", B, ("silence",), 0.0, 30.0, "T+30")
    assert "switching in 30 s" in audit(out, "confirm_requested").why
    assert summary(ch(OperatorAction(1.0, "confirm", "carol", request_id="other"))) == "ignored"
    out = ch(OperatorAction(2.0, "confirm", "alice", request_id="id1"))
    assert out[0] == WithdrawConfirmation("id1", "confirmed by alice")
    assert audit(out, "confirmed").operator == "alice"
    (command,) = sends(out)
    assert (command.to, command.operator, command.reason) == (B, "alice", ("silence",))
    assert audit(out, "switch").operator == "alice"


def test_confirm_mode_reject_suppresses_until_the_trigger_clears_and_reasserts() -> None:
    ch = Channel(mode="confirm")
    ch(AlarmChanged(0.0, P, "silence", True))
    out = ch(OperatorAction(1.0, "reject", "alice"))
    assert audit(out, "rejected").operator == "alice" and ch.state == S.SUPPRESSED
    assert ch(AlarmChanged(2.0, P, "black", True)) == []  # still the same incident
    assert ch(Tick(3000.0)) == []
    ch(AlarmChanged(3001.0, P, "silence", False))
    assert ch.state == S.SUPPRESSED  # black still asserted: the same incident
    ch(AlarmChanged(3002.0, P, "black", False))
    assert ch.state == S.ON_PRIMARY
    out = ch(AlarmChanged(3003.0, P, "silence", True))
    assert [d.to for d in out if isinstance(d, RequestConfirmation)] == [B]


def test_confirm_mode_switches_by_itself_when_unanswered() -> None:
    ch = Channel(mode="confirm", confirm_timeout_s=15.0)
    ch(AlarmChanged(0.0, P, "silence", True))
    assert ch(Tick(14.9)) == []
    out = ch(Tick(15.0))
    assert out[0] == WithdrawConfirmation("id1", "unanswered for 15 s")
    (command,) = sends(out)
    assert command.operator is None
    assert audit(out, "switch").why.startswith("unanswered for 15 s: silence on primary")


def test_confirm_mode_without_timeout_waits_for_an_answer_forever() -> None:
    ch = Channel(mode="confirm", confirm_timeout_s=None)
    out = ch(AlarmChanged(0.0, P, "silence", True))
    (request,) = [d for d in out if isinstance(d, RequestConfirmation)]
    assert request.expires_at_s is None and request.expires_at is None
    assert "never switching unasked" in audit(out, "confirm_requested").why
    assert ch(Tick(1e9)) == [] and ch.state == S.AWAITING_CONFIRM


def test_confirm_mode_asks_for_a_failback_too() -> None:
    ch = Channel(mode="confirm")
    ch(AlarmChanged(0.0, P, "silence", True))
    ch(OperatorAction(0.5, "confirm", "alice"))
    ch(AckReceived(1.0, "id2", "done"))
    ch(AlarmChanged(2.0, P, "silence", False))
    out = ch(Tick(12.0))
    assert [(d.to, d.reason) for d in out if isinstance(d, RequestConfirmation)] == [
        (P, ("failback",))
    ]


def test_no_ack_resends_the_same_command_then_raises_failover_no_ack() -> None:
    ch = Channel(retries=2)
    (first,) = sends(ch(AlarmChanged(0.0, P, "silence", True)))
    (second,) = sends(out := ch(Tick(5.0)))
    assert audit(out, "retry").detail == {"attempt": 2, "of": 3}
    (third,) = sends(ch(Tick(10.0)))
    assert {first.command_id, second.command_id, third.command_id} == {"id1"}
    assert [c.attempt for c in (first, second, third)] == [1, 2, 3]
    assert second.command() == first.command()  # identical payload: idempotent by id
    out = ch(Tick(15.0))
    assert out[0] == RaiseAlarm(
        "failover_no_ack", "critical", {"to": B, "attempts": 3, "command_id": "id1"}
    )
    assert audit(out, "no_ack").why == (
        "agent silent: no ack after 3 sends; not retrying until the trigger clears"
    )
    assert (ch.state, ch.on_air) == (S.SUPPRESSED, P)
    assert ch(Tick(100.0)) == []  # no command storm against a dead agent
    # The agent comes back and shows the switch did happen.
    out = ch(EncoderReported(120.0, B))
    assert alarms(out) == [("clear", "failover_no_ack")]
    assert (ch.state, ch.on_air) == (S.ON_BACKUP, B)


def test_accepted_but_never_done_raises_failover_no_ack() -> None:
    ch = Channel()
    ch(AlarmChanged(0.0, P, "silence", True))
    ch(AckReceived(1.0, "id1", "accepted"))
    assert sends(ch(Tick(20.9))) == []
    out = ch(Tick(21.0))
    assert alarms(out) == [("raise", "failover_no_ack")]
    assert "accepted but not done after 20 s" in audit(out, "no_ack").why


def test_late_ack_of_a_given_up_command_clears_no_ack_but_the_state_decides() -> None:
    ch = Channel(retries=0)
    ch(AlarmChanged(0.0, P, "silence", True))
    ch(Tick(5.0))
    out = ch(AckReceived(6.0, "id1", "done"))
    assert alarms(out) == [("clear", "failover_no_ack")]
    assert ch.on_air == P  # the agent's retained state says what is on air
    ch(EncoderReported(6.5, B))
    assert ch.on_air == B


def test_failed_ack_raises_failover_failed_and_does_not_retry_until_the_trigger_resets() -> None:
    ch = Channel()
    ch(AlarmChanged(0.0, P, "silence", True))
    out = ch(AckReceived(1.0, "id1", "failed", "encoder API timeout"))
    assert out[0] == RaiseAlarm(
        "failover_failed",
        "critical",
        {"status": "failed", "to": B, "detail": "encoder API timeout", "command_id": "id1"},
    )
    assert audit(out, "failed").why.startswith(
        "agent failed to switch to backup: encoder API timeout"
    )
    assert sends(ch(Tick(500.0))) == []
    out = ch(AlarmChanged(501.0, P, "silence", False))
    assert alarms(out) == [("clear", "failover_failed")]
    assert [c.to for c in sends(ch(AlarmChanged(502.0, P, "silence", True)))] == [B]


def test_rejected_ack_is_a_failed_failover() -> None:
    ch = Channel()
    ch(AlarmChanged(0.0, P, "silence", True))
    out = ch(AckReceived(1.0, "id1", "rejected", "unknown input"))
    assert alarms(out) == [("raise", "failover_failed")]
    assert audit(out, "rejected_by_agent").detail["status"] == "rejected"


def test_a_later_successful_switch_clears_failover_failed() -> None:
    ch = Channel()
    ch(AlarmChanged(0.0, P, "silence", True))
    ch(AckReceived(1.0, "id1", "failed"))
    ch(OperatorAction(2.0, "switch", "alice", to="backup"))
    assert alarms(ch(AckReceived(3.0, "id2", "done"))) == [("clear", "failover_failed")]


def test_duplicate_and_unknown_acks_are_ignored_with_an_audit() -> None:
    ch = Channel()
    ch(AlarmChanged(0.0, P, "silence", True))
    ch(AckReceived(1.0, "id1", "done"))
    out = ch(AckReceived(1.1, "id1", "done"))  # QoS 1 redelivery
    assert audit(out, "ignored").why == "ack done for a finished command (late or duplicate)"
    out = ch(AckReceived(1.2, "zzz", "failed"))
    assert audit(out, "ignored").why == "ack failed for an unknown command"
    assert (ch.state, ch.on_air) == (S.ON_BACKUP, B)
    assert ch.policy.raised_alarms == frozenset()


def test_flapping_holds_automatic_switching_until_the_window_frees() -> None:
    ch = Channel()  # at most 2 switches per 100 s
    ch(AlarmChanged(0.0, P, "silence", True))
    ch(AckReceived(1.0, "id1", "done"))
    ch(AlarmChanged(2.0, P, "silence", False))
    ch(AlarmChanged(3.0, B, "silence", True))
    ch(AckReceived(4.0, "id2", "done"))
    ch(AlarmChanged(5.0, B, "silence", False))
    out = ch(AlarmChanged(6.0, P, "silence", True))
    assert sends(out) == [] and ch.state == S.HELD
    assert out[0] == RaiseAlarm("failover_flapping", "major", {"switches": 2, "window_s": 100.0})
    assert audit(out, "held").why == (
        "did not switch to backup (silence on primary for 0 s): 2 switches in the last 100 s"
    )
    assert ch(Tick(100.9)) == []
    out = ch(Tick(101.0))  # the switch at 1.0 leaves the window
    assert alarms(out) == [("clear", "failover_flapping")]
    assert [c.to for c in sends(out)] == [B]


def test_lock_stops_automatic_switching_and_manual_switches_carry_the_operator() -> None:
    ch = Channel()
    assert audit(ch(OperatorAction(0.0, "lock", "bob")), "locked").operator == "bob"
    out = ch(AlarmChanged(1.0, P, "silence", True))
    assert sends(out) == []
    assert audit(out, "not_switched").why == (
        "locked by bob: not switching to backup, silence on primary for 0 s"
    )
    assert ch(Tick(2.0)) == []  # said once
    (command,) = sends(out := ch(OperatorAction(3.0, "switch", "alice", to="backup")))
    assert (command.operator, command.reason) == ("alice", ("manual",))
    assert command.command().operator == "alice"
    assert audit(out, "switch").why == "operator alice switched to backup (locked by bob)"
    assert audit(out, "switch").operator == "alice"
    assert audit(ch(AckReceived(4.0, "id1", "done")), "switched").operator == "alice"
    assert (ch.state, ch.on_air) == (S.LOCKED, B)
    assert audit(ch(OperatorAction(5.0, "unlock", "bob")), "unlocked").operator == "bob"
    assert ch.state == S.ON_BACKUP  # pinned by alice's manual switch: no failback


def test_manual_switch_to_backup_suspends_failback_until_back_on_primary() -> None:
    ch = Channel()
    ch(Tick(0.0))
    ch(OperatorAction(1.0, "switch", "alice", to="backup"))
    ch(AckReceived(1.5, "id1", "done"))
    assert ch.policy.pinned_by == "alice"
    assert sends(ch(Tick(10_000.0))) == [] and ch.state == S.ON_BACKUP
    ch(OperatorAction(10_001.0, "switch", "alice", to="primary"))
    ch(AckReceived(10_001.5, "id2", "done"))
    # Switched at the encoder, behind the daemon's back: adopted, not pinned, so primary
    # (clean for long) is preferred again at once.
    (command,) = sends(ch(EncoderReported(10_002.0, B)))
    assert (command.to, command.reason) == (P, ("failback",))


def test_manual_switch_goes_through_even_to_an_alarming_backup_and_says_so() -> None:
    ch = Channel()
    ch(AlarmChanged(0.0, B, "black", True))
    out = ch(OperatorAction(1.0, "switch", "alice", to="backup"))
    assert audit(out, "switch").why == "operator alice switched to backup although it has black"
    assert summary(ch(OperatorAction(1.5, "switch", "alice", to="backup"))) == "ignored"
    assert summary(ch(OperatorAction(1.5, "switch", "alice", to="studio"))) == "ignored"


def test_operator_switch_replaces_a_command_in_flight() -> None:
    ch = Channel()
    ch(AlarmChanged(0.0, P, "silence", True))
    out = ch(OperatorAction(1.0, "switch", "alice", to="primary"))
    assert summary(out) == "superseded send:primary switch"
    assert summary(ch(AckReceived(1.5, "id1", "done"))) == "ignored"


def test_all_combine_switches_on_dead_air_only() -> None:
    triggers = (Trigger("freeze", hold_s=3.0), Trigger("silence", hold_s=1.0))
    ch = Channel(triggers=triggers, combine="all")
    ch(AlarmChanged(0.0, P, "freeze", True))
    assert ch(Tick(100.0)) == [] and ch.state == S.ON_PRIMARY  # frozen picture, sound fine
    ch(AlarmChanged(100.0, P, "silence", True))  # freeze held long ago; silence holds at 101
    assert ch.state == S.PENDING_SWITCH
    assert sends(ch(Tick(100.9))) == []
    (command,) = sends(ch(Tick(101.0)))
    assert command.reason == ("freeze", "silence")


def test_all_combine_hold_offs_run_from_each_alarm_raise() -> None:
    triggers = (Trigger("freeze", hold_s=3.0), Trigger("silence", hold_s=1.0))
    ch = Channel(triggers=triggers, combine="all")
    ch(AlarmChanged(0.0, P, "silence", True))
    ch(AlarmChanged(0.5, P, "freeze", True))
    ch(AlarmChanged(1.0, P, "freeze", True))  # a repeated raise does not restart the hold
    assert sends(ch(Tick(3.4))) == []
    assert [c.to for c in sends(ch(Tick(3.5)))] == [B]


def test_all_combine_backup_with_half_of_dead_air_is_fit_but_blocks_failback() -> None:
    triggers = (Trigger("freeze"), Trigger("silence"))
    ch = Channel(triggers=triggers, combine="all")
    ch(AlarmChanged(0.0, B, "freeze", True))
    ch(AlarmChanged(0.0, P, "freeze", True))
    assert [c.to for c in sends(ch(AlarmChanged(1.0, P, "silence", True)))] == [B]
    ch(AckReceived(1.5, "id1", "done"))
    ch(AlarmChanged(2.0, P, "silence", False))  # primary: freeze alone, not clean
    assert sends(ch(Tick(1000.0))) == [] and ch.state == S.ON_BACKUP


def test_any_combine_uses_each_triggers_own_hold() -> None:
    ch = Channel()
    ch(AlarmChanged(0.0, P, "black", True))
    assert ch.state == S.PENDING_SWITCH
    (command,) = sends(ch(AlarmChanged(1.0, P, "silence", True)))  # silence: no hold
    assert command.reason == ("silence",)


def test_pending_audits_name_only_the_alarms_that_matter() -> None:
    ch = Channel()
    ch(AlarmChanged(0.0, P, "loudness", True))
    out = ch(AlarmChanged(1.0, P, "black", True))
    assert audit(out, "pending").why == "black on primary: switching in 2 s unless it clears"
    ch(Tick(3.0))
    ch(AckReceived(3.5, "id1", "done"))
    out = ch(AlarmChanged(4.0, P, "black", False))
    assert audit(out, "failback_pending").why == (
        "primary clean: failing back in 10 s if it stays clean"
    )


def test_wildcard_trigger_matches_a_family_of_alarms() -> None:
    ch = Channel(triggers=(Trigger("tr101290_*", hold_s=5.0),))
    ch(AlarmChanged(0.0, P, "tr101290_cc_error", True))
    ch(AlarmChanged(0.0, P, "loudness", True))
    (command,) = sends(ch(Tick(5.0)))
    assert command.reason == ("tr101290_cc_error",)


def test_mode_off_audits_what_it_would_do_and_never_commands() -> None:
    ch = Channel(mode="off")
    ch(AlarmChanged(0.0, B, "input_loss", True))
    out = ch(AlarmChanged(1.0, P, "black", True))
    assert audit(out, "pending").why == "black on primary: switching in 2 s unless it clears"
    out = ch(Tick(3.0))
    assert audit(out, "would_switch").why == (
        "mode off: would switch to backup, black on primary for 2 s, but backup has input_loss"
    )
    assert ch(Tick(4.0)) == []
    assert summary(ch(OperatorAction(5.0, "switch", "alice", to="backup"))) == "ignored"
    ch(AlarmChanged(6.0, P, "black", False))
    ch(AlarmChanged(7.0, P, "silence", True))
    assert all(not isinstance(d, SendCommand | RaiseAlarm) for d in ch.said)
    assert [d.decision for d in ch.said if isinstance(d, Audit)].count("would_switch") == 2


def test_start_up_on_backup_fails_back_once_primary_has_been_clean_long_enough() -> None:
    ch = Channel()
    out = ch(EncoderReported(0.0, B))
    assert audit(out, "encoder_reported").why == (
        "encoder reports backup on air (policy believed primary); adopted"
    )
    assert ch.state == S.PENDING_FAILBACK
    assert [c.to for c in sends(ch(Tick(10.0)))] == [P]


def test_unknown_inputs_are_ignored_with_an_audit() -> None:
    ch = Channel()
    assert (
        "unknown input 'studio'"
        in audit(ch(AlarmChanged(0.0, "studio", "black", True)), "ignored").why
    )
    assert summary(ch(EncoderReported(1.0, "studio"))) == "ignored"
    assert ch.on_air == P


def test_decisions_become_protocol_messages() -> None:
    ch = Channel(mode="confirm")
    out = ch(AlarmChanged(0.0, P, "silence", True))
    request = next(d for d in out if isinstance(d, RequestConfirmation)).request()
    assert (request.request_id, request.to, request.expires_at) == ("id1", B, "T+30")
    event = audit(out, "confirm_requested").event()
    assert (event.channel, event.at, event.decision) == ("news", "T+0", "confirm_requested")
    (command,) = sends(ch(OperatorAction(1.0, "confirm", "alice")))
    assert Command.from_json(command.command().to_json()) == command.command()


def test_without_clock_iso_the_caller_supplies_wall_clock_times() -> None:
    policy = Policy(replace(BASE), "news", make_id=lambda: "x")
    (command, note) = policy.handle(AlarmChanged(0.0, P, "silence", True))
    assert isinstance(command, SendCommand) and isinstance(note, Audit)
    assert command.issued_at is None and note.at is None
    with pytest.raises(ValueError, match="issued_at"):
        command.command()
    assert command.command("2025-01-01T00:00:00Z").issued_at == "2025-01-01T00:00:00Z"
    assert note.event("2025-01-01T00:00:00Z").at == "2025-01-01T00:00:00Z"


def test_default_ids_are_uuid_hex() -> None:
    policy = Policy(BASE, "news")
    (command, _) = policy.handle(AlarmChanged(0.0, P, "silence", True))
    assert isinstance(command, SendCommand) and re.fullmatch(r"[0-9a-f]{32}", command.command_id)


# --- Settings ------------------------------------------------------------------------------------


def test_default_settings_are_medialive_conditions_and_off() -> None:
    settings = FailoverSettings()
    assert settings.mode == "off"
    assert [t.alarm for t in settings.triggers] == ["input_loss", "black", "silence"]
    assert (settings.failback, settings.error_clear_time_s) == ("primary_preferred", 30.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"primary": "a", "backup": "a"}, "backup: must differ from primary, both are 'a'"),
        ({"triggers": ()}, "triggers: must list at least one alarm"),
        ({"triggers": (Trigger("black"), Trigger("black"))}, "triggers: 'black' is listed twice"),
        ({"max_switches": 0}, "max_switches: must be >= 1, got 0"),
        ({"ack_timeout_s": 0.0}, "ack_timeout_s: must be > 0, got 0.0"),
        ({"retries": 11}, "retries: must be <= 10, got 11"),
        ({"confirm_timeout_s": -1.0}, "confirm_timeout_s: must be >= 0, got -1.0"),
        ({"unfit_alarms": ("Black",)}, "unfit_alarms: must be an alarm name"),
        ({"mode": "manual"}, "mode: must be one of auto, confirm, off, got 'manual'"),
        ({"backup": ""}, "backup: must be an input name"),
    ],
)
def test_settings_errors_name_the_key(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        FailoverSettings(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("alarm", "message"),
    [
        ("", "alarm: must be an alarm name"),
        ("tr*101", "alarm: must be an alarm name"),
        ("failover_blocked", "alarm: 'failover_blocked': failover_* alarms are raised by"),
    ],
)
def test_trigger_errors_name_the_key(alarm: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        Trigger(alarm)


def test_trigger_hold_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match=r"^hold_s: must be >= 0, got -1.0"):
        Trigger("black", hold_s=-1.0)


def test_trigger_wildcards_match_prefixes_but_never_the_policys_own_alarms() -> None:
    assert Trigger("tr101290_*").matches("tr101290_pat_error")
    assert not Trigger("tr101290_*").matches("tr101290")
    assert Trigger("*").matches("loudness") and not Trigger("*").matches("failover_blocked")
    assert not Trigger("black").matches("black_border")


def test_the_policy_imports_no_io_and_nothing_of_monitor_or_detectors() -> None:
    probe = (
        "import sys, failover.policy, failover.protocol;"
        "banned = ('asyncio', 'aiomqtt', 'monitor', 'detectors');"
        "print(sorted(m for m in banned if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr
