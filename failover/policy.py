"""The failover policy of one channel: a pure state machine from alarm events to switch commands.

``Policy.handle(event) -> list[Decision]`` is the whole API. Events bring the time (monotonic
``at_s``); the policy never reads a clock, does no I/O and imports no asyncio or MQTT, so every
(state, event) pair is a unit test. Every decision comes with an ``Audit`` saying why.

States (``Policy.state``), with the input on air in ``Policy.active_input``:

=================  ==========================================================================
ON_PRIMARY         primary on air, nothing due
ON_BACKUP          backup on air, nothing due (failback ``stay``, operator's choice, or
                   primary not clean)
PENDING_SWITCH     the on-air input's triggers are asserted, their hold-offs running
PENDING_FAILBACK   on backup, primary clean, waiting for it to stay clean error_clear_time
BLOCKED            a failover is due but the other input is unfit: ``failover_blocked``
AWAITING_CONFIRM   mode confirm: a request is open on the NOC consoles
SWITCHING          a command is out, waiting for the agent's ack (resent on timeout)
HELD               flap damping: max_switches in flap_window: ``failover_flapping``, no
                   automatic switch until the window frees
SUPPRESSED         a switch was due and will not be retried until its cause resets: the
                   operator rejected it, the agent failed / never answered, or mode is off
LOCKED             an operator locked the channel: no automatic switch; manual ones go through
=================  ==========================================================================

The state is derived after every event from a few facts, in this order of precedence: locked,
a command in flight, flapping, an open request, a suppression still valid, a due switch
(blocked, would-switch in mode off, held, confirm or send), then the idle states. That keeps
every pair (state, event) defined without a hand-written transition per pair.

Decisions made where the issue is silent:

- Triggers are evaluated on the input on air, symmetrically: on backup, held triggers switch
  back to primary at once if primary is fit — an emergency switch, not a failback, so it does
  not wait for ``error_clear_time`` and also happens with ``failback: stay``.
- A standby is *fit* when its own trigger condition is not asserted and it has no
  ``unfit_alarms`` alarm; a failback needs primary *clean* (no trigger or unfit alarm at all)
  for ``error_clear_time_s`` (MediaLive ``ErrorClearTimeMsec``).
- Confirm mode asks for failbacks too (every automatic cut on air is the NOC's).
- Flap damping counts switches that were done (failovers, failbacks, manual ones) and holds
  automatic switching when one more is due; manual switches are never held.
- A manual switch to backup suspends automatic failback until the input on air changes again
  (otherwise ``primary_preferred`` would undo the operator after error_clear_time). A switch
  made behind the daemon's back (seen in the agent's state) is adopted, not pinned: after a
  daemon restart on backup the failback must still happen.
- After ``failed``, ``rejected`` or no ack, the policy does not retry by itself until the
  trigger clears and re-asserts (no command storm against a broken encoder).
  ``failover_failed`` clears on the next switch done or when that suppression ends;
  ``failover_no_ack`` clears when the agent is heard again (any ack it should send, or state).
- Mode off ignores operator requests: it never commands the encoder.
- Until the agent's state says otherwise the policy assumes primary is on air. Flap damping
  holds until the window frees, even if the trigger has cleared meanwhile.

Audit ``decision`` values: pending, pending_cancelled, failback_pending, failback_cancelled,
switch, retry, accepted, switched, superseded, failed, rejected_by_agent, no_ack, agent_back,
blocked, unblocked, confirm_requested, confirmed, rejected, confirm_withdrawn, held,
hold_released, suppression_ended, would_switch, locked, unlocked, not_switched,
encoder_reported, ignored.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

from failover.alarm_book import AlarmBook
from failover.events import (
    AckReceived,
    AlarmChanged,
    Decision,
    EncoderReported,
    Event,
    OperatorAction,
)
from failover.outbox import Outbox
from failover.policy_settings import FailoverSettings

BLOCKED_ALARM = "failover_blocked"
FLAPPING_ALARM = "failover_flapping"
NO_ACK_ALARM = "failover_no_ack"
FAILED_ALARM = "failover_failed"
_FINISHED_KEPT = 64  # command ids remembered to tell a late ack from an unknown one

Kind = Literal["failover", "failback", "manual"]


class State(Enum):
    ON_PRIMARY = "on_primary"
    ON_BACKUP = "on_backup"
    PENDING_SWITCH = "pending_switch"
    PENDING_FAILBACK = "pending_failback"
    BLOCKED = "blocked"
    AWAITING_CONFIRM = "awaiting_confirm"
    SWITCHING = "switching"
    HELD = "held"
    SUPPRESSED = "suppressed"
    LOCKED = "locked"


@dataclass(frozen=True)
class _Want:
    """A switch the policy considers due now."""

    kind: Kind
    to: str
    reason: tuple[str, ...]


@dataclass
class _Inflight:
    command_id: str
    kind: Kind
    to: str
    reason: tuple[str, ...]
    operator: str | None
    issued_at: str | None
    sent_s: float
    attempt: int = 1
    accepted_s: float | None = None


@dataclass(frozen=True)
class _Request:
    request_id: str
    want: _Want
    expires_s: float | None


@dataclass(frozen=True)
class _Suppression:
    """No automatic ``kind`` switch while the input on air and its cause stay the same."""

    kind: Kind
    active: str
    primary_clean_since_s: float | None
    why: str
    clears: str | None  # a policy alarm that goes with it


def _uuid_hex() -> str:
    return uuid.uuid4().hex


class Policy:
    """The failover state machine of one channel. Not thread-safe: one caller feeds it."""

    def __init__(
        self,
        settings: FailoverSettings,
        channel: str,
        make_id: Callable[[], str] = _uuid_hex,
        clock_iso: Callable[[float], str] | None = None,
    ) -> None:
        self._s = settings
        self._make_id = make_id
        self._book = AlarmBook(settings)
        self._active = settings.primary
        self._evaluated_active = settings.primary
        self._state = State.ON_PRIMARY
        self._inflight: _Inflight | None = None
        self._finished: deque[str] = deque(maxlen=_FINISHED_KEPT)
        self._request: _Request | None = None
        self._suppressed: _Suppression | None = None
        self._blocked = False
        self._flapping = False
        self._switches_s: deque[float] = deque()
        self._locked_by: str | None = None
        self._locked_noted: _Want | None = None
        self._pinned_by: str | None = None
        self._out = Outbox(channel, clock_iso)
        self._now_s = 0.0

    # --- Read-only view ------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def active_input(self) -> str:
        """The input the policy believes is on air (the agent's state overrides it)."""
        return self._active

    @property
    def locked_by(self) -> str | None:
        return self._locked_by

    @property
    def pinned_by(self) -> str | None:
        """The operator whose manual switch to backup suspends automatic failback."""
        return self._pinned_by

    @property
    def pending_command_id(self) -> str | None:
        return self._inflight.command_id if self._inflight else None

    @property
    def open_request_id(self) -> str | None:
        return self._request.request_id if self._request else None

    @property
    def raised_alarms(self) -> frozenset[str]:
        return frozenset(self._out.raised)

    # --- Entry point ---------------------------------------------------------------------------

    def handle(self, event: Event) -> list[Decision]:
        """Apply one event; return what to do about it, in order."""
        self._now_s = self._out.now_s = event.at_s
        self._book.start(event.at_s)
        if isinstance(event, AlarmChanged):
            self._on_alarm(event)
        elif isinstance(event, AckReceived):
            self._on_ack(event)
        elif isinstance(event, OperatorAction):
            self._on_operator(event)
        elif isinstance(event, EncoderReported):
            self._on_encoder(event)
        self._run_timers()
        self._evaluate()
        self._evaluated_active = self._active
        return self._out.take()

    # --- Events --------------------------------------------------------------------------------

    def _on_alarm(self, event: AlarmChanged) -> None:
        if not self._book.knows(event.input):
            known = f"{self._s.primary}, {self._s.backup}"
            self._out.audit(
                "ignored", f"alarm {event.alarm} on unknown input {event.input!r} ({known})"
            )
            return
        self._book.update(event.input, event.alarm, event.active, event.at_s)

    def _on_ack(self, event: AckReceived) -> None:
        command = self._inflight
        if command is None or event.command_id != command.command_id:
            known = event.command_id in self._finished
            if known:
                self._heard()
            what = "a finished command (late or duplicate)" if known else "an unknown command"
            self._out.audit(
                "ignored",
                f"ack {event.status} for {what}",
                event.command_id,
                detail={"status": event.status, "detail": event.detail},
            )
            return
        self._heard()
        if event.status == "accepted":
            if command.accepted_s is None:
                command.accepted_s = self._now_s
                self._out.audit(
                    "accepted", f"agent accepted the switch to {command.to}", command.command_id
                )
            else:
                self._out.audit("ignored", "duplicate accepted ack", command.command_id)
        elif event.status == "done":
            self._switched(command, f"agent reports done: {command.to} is on air")
        else:
            self._finish(command)
            verb = "failed to switch" if event.status == "failed" else "rejected the switch"
            why = f"agent {verb} to {command.to}: {event.detail or 'no detail'}"
            detail = {"status": event.status, "to": command.to, "detail": event.detail}
            self._out.raise_alarm(
                FAILED_ALARM, "critical", {**detail, "command_id": command.command_id}
            )
            self._after_failure(command, event.status, why, FAILED_ALARM, detail)

    def _on_operator(self, event: OperatorAction) -> None:
        operator = event.operator
        if self._s.mode == "off":
            self._out.audit(
                "ignored", f"{event.action}: failover is off on this channel", op=operator
            )
            return
        if event.action == "lock":
            if self._locked_by is not None:
                self._out.audit("ignored", f"already locked by {self._locked_by}", op=operator)
            else:
                self._locked_by = operator
                self._out.audit("locked", f"automatic switching locked by {operator}", op=operator)
        elif event.action == "unlock":
            if self._locked_by is None:
                self._out.audit("ignored", "unlock: not locked", op=operator)
            else:
                self._locked_by = None
                self._locked_noted = None
                self._out.audit(
                    "unlocked", f"automatic switching unlocked by {operator}", op=operator
                )
        elif event.action == "switch":
            self._operator_switch(event)
        else:
            self._operator_answer(event)

    def _operator_switch(self, event: OperatorAction) -> None:
        operator = event.operator
        to = {"primary": self._s.primary, "backup": self._s.backup}.get(event.to or "", event.to)
        if not to or not self._book.knows(to):
            self._out.audit("ignored", f"switch: unknown input {event.to!r}", op=operator)
            return
        command = self._inflight
        if command is not None and command.to == to:
            self._out.audit(
                "ignored", f"switch: already switching to {to}", command.command_id, op=operator
            )
            return
        if command is None and self._active == to:
            self._out.audit("ignored", f"switch: {to} is already on air", op=operator)
            return
        if command is not None:
            self._finish(command)
            self._out.audit(
                "superseded", f"operator {operator} switches to {to} instead", command.command_id
            )
        self._drop_request(f"operator {operator} switched to {to}")
        self._suppressed = None
        unfit = self._book.unfit(to)
        why = f"operator {operator} switched to {to}"
        if unfit:
            why += f" although it has {', '.join(unfit)}"
        if self._locked_by is not None:
            why += f" (locked by {self._locked_by})"
        self._send(_Want("manual", to, ("manual",)), why, operator)

    def _operator_answer(self, event: OperatorAction) -> None:
        operator = event.operator
        request = self._request
        if request is None:
            self._out.audit("ignored", f"{event.action}: no confirmation request open", op=operator)
            return
        if event.request_id is not None and event.request_id != request.request_id:
            self._out.audit(
                "ignored",
                f"{event.action}: request {event.request_id} is not the open one",
                op=operator,
                detail={"open_request_id": request.request_id},
            )
            return
        want = request.want
        if event.action == "confirm":
            self._drop_request(f"confirmed by {operator}")
            self._out.audit(
                "confirmed", f"{operator} confirmed the switch to {want.to}", op=operator
            )
            self._send(want, f"confirmed by {operator}: {self._because(want)}", operator)
        else:
            self._drop_request(f"rejected by {operator}")
            why = f"{operator} rejected the switch to {want.to}"
            self._out.audit(
                "rejected", f"{why}; not asking again until its cause resets", op=operator
            )
            self._suppress(want.kind, why, clears=None)

    def _on_encoder(self, event: EncoderReported) -> None:
        reported = event.active_input
        if not self._book.knows(reported):
            self._out.audit("ignored", f"encoder reports unknown input {reported!r} on air")
            return
        self._heard()
        if reported == self._active:
            return
        command = self._inflight
        if command is not None and command.to == reported:
            self._switched(command, f"agent state shows {reported} on air")
            return
        self._out.audit(
            "encoder_reported",
            f"encoder reports {reported} on air (policy believed {self._active}); adopted",
        )
        self._set_active(reported)

    # --- Timers ----------------------------------------------------------------------------------

    def _run_timers(self) -> None:
        now = self._now_s
        command = self._inflight
        if command is not None:
            if command.accepted_s is None and now >= command.sent_s + self._s.ack_timeout_s:
                if command.attempt <= self._s.retries:
                    command.attempt += 1
                    command.sent_s = now
                    self._emit_command(command)
                    why = f"no ack after {self._s.ack_timeout_s:g} s, sending again"
                    detail = {"attempt": command.attempt, "of": self._s.retries + 1}
                    self._out.audit("retry", why, command.command_id, detail=detail)
                else:
                    self._no_ack(command, f"no ack after {command.attempt} sends")
            elif command.accepted_s is not None and (
                now >= command.accepted_s + self._s.done_timeout_s
            ):
                self._no_ack(command, f"accepted but not done after {self._s.done_timeout_s:g} s")
        while self._switches_s and self._switches_s[0] <= now - self._s.flap_window_s:
            self._switches_s.popleft()
        if self._flapping and len(self._switches_s) < self._s.max_switches:
            self._flapping = False
            self._out.clear_alarm(FLAPPING_ALARM)
            window = f"{self._s.flap_window_s:g} s"
            self._out.audit(
                "hold_released", f"fewer than {self._s.max_switches} switches in {window}"
            )

    def _no_ack(self, command: _Inflight, why: str) -> None:
        self._finish(command)
        detail = {"to": command.to, "attempts": command.attempt}
        self._out.raise_alarm(
            NO_ACK_ALARM, "critical", {**detail, "command_id": command.command_id}
        )
        self._after_failure(command, "no_ack", f"agent silent: {why}", None, detail)

    # --- Evaluation ----------------------------------------------------------------------------

    def _evaluate(self) -> None:
        """Derive the state from the facts and act on what is due."""
        if self._locked_by is not None:
            self._drop_request(f"locked by {self._locked_by}")
            self._unblock(f"locked by {self._locked_by}")
            self._note_locked()
            self._state = State.LOCKED
            return
        if self._inflight is not None:
            self._drop_request("a command is in flight")
            self._unblock("a command is in flight")
            self._state = State.SWITCHING
            return
        if self._flapping:
            self._drop_request("holding: flapping")
            self._unblock("holding: flapping")
            self._state = State.HELD
            return
        want = self._want()
        if self._request is not None and self._confirm_pending(want):
            return
        if self._suppressed is not None:
            if self._suppression_holds(want):
                self._state = State.SUPPRESSED
                return
            self._end_suppression()
        if want is not None:
            self._due(want)
        else:
            self._unblock(f"nothing to switch: {self._active} is fine")
            self._idle()

    def _want(self) -> _Want | None:
        active, now = self._active, self._now_s
        held = self._book.held(active, now)
        if held is not None:
            return _Want("failover", self._s.other(active), held)
        clean_since = self._failback_clean_since()
        if clean_since is not None and now >= clean_since + self._s.error_clear_time_s:
            return _Want("failback", self._s.primary, ("failback",))
        return None

    def _failback_clean_since(self) -> float | None:
        """When primary became clean, if a failback is wanted at all; None otherwise."""
        if (
            self._active != self._s.backup
            or self._s.failback != "primary_preferred"
            or self._pinned_by is not None
        ):
            return None
        return self._book.clean_since(self._s.primary)

    def _confirm_pending(self, want: _Want | None) -> bool:
        """Keep, expire or withdraw the open request; True while it stays open."""
        request = self._request
        assert request is not None
        if want is None or (want.kind, want.to) != (request.want.kind, request.want.to):
            self._drop_request("no longer needed")
            return False
        unfit = self._book.unfit(want.to)
        if unfit:
            self._drop_request(f"{want.to} now has {', '.join(unfit)}")
            return False
        if request.expires_s is not None and self._now_s >= request.expires_s:
            timeout = self._s.confirm_timeout_s
            self._drop_request(f"unanswered for {timeout:g} s")
            self._send(want, f"unanswered for {timeout:g} s: {self._because(want)}", None)
            self._state = State.SWITCHING
            return True
        self._state = State.AWAITING_CONFIRM
        return True

    def _suppression_holds(self, want: _Want | None) -> bool:
        suppressed = self._suppressed
        assert suppressed is not None
        if suppressed.active != self._active:
            return False
        if want is not None and want.kind != suppressed.kind:
            return False  # a new situation, e.g. backup failing after a rejected failback
        if suppressed.kind == "failback":
            clean_since = self._failback_clean_since()
            return clean_since is not None and clean_since == suppressed.primary_clean_since_s
        return self._book.asserted(self._active)

    def _end_suppression(self) -> None:
        suppressed = self._suppressed
        assert suppressed is not None
        self._suppressed = None
        self._out.audit("suppression_ended", f"cause reset ({suppressed.why})")
        if suppressed.clears is not None:
            self._out.clear_alarm(suppressed.clears)

    def _due(self, want: _Want) -> None:
        """A switch is due: find out whether it may happen, and start it."""
        unfit = self._book.unfit(want.to)
        if self._s.mode == "off":
            why = f"mode off: would switch to {want.to}, {self._because(want)}"
            if unfit:
                why += f", but {want.to} has {', '.join(unfit)}"
            self._out.audit(
                "would_switch", why, detail={"to": want.to, "reason": list(want.reason)}
            )
            self._suppress(want.kind, "mode off", clears=None)
            return
        if unfit:
            if not self._blocked:
                self._blocked = True
                detail: dict[str, Any] = {
                    "on_air": self._active,
                    "on_air_alarms": list(want.reason),
                    "standby": want.to,
                    "standby_alarms": list(unfit),
                }
                self._out.raise_alarm(BLOCKED_ALARM, "critical", detail)
                has = ", ".join(unfit)
                why = f"did not switch to {want.to}: it has {has} ({self._because(want)})"
                self._out.audit("blocked", why, detail=detail)
            self._state = State.BLOCKED
            return
        self._unblock(f"{want.to} recovered")
        if len(self._switches_s) >= self._s.max_switches:
            self._flapping = True
            window = f"{self._s.flap_window_s:g} s"
            detail = {"switches": len(self._switches_s), "window_s": self._s.flap_window_s}
            self._out.raise_alarm(FLAPPING_ALARM, "major", detail)
            why = f"did not switch to {want.to} ({self._because(want)}): {len(self._switches_s)}"
            self._out.audit("held", f"{why} switches in the last {window}", detail=detail)
            self._state = State.HELD
            return
        if self._s.mode == "confirm":
            self._open_request(want)
            return
        self._send(want, f"switching to {want.to}: {self._because(want)}", None)

    def _idle(self) -> None:
        previous = self._state
        active = self._active
        if self._book.asserted(active):
            state = State.PENDING_SWITCH
        elif self._failback_clean_since() is not None:
            state = State.PENDING_FAILBACK
        else:
            state = State.ON_PRIMARY if active == self._s.primary else State.ON_BACKUP
        self._state = state
        if state == previous:
            return
        moved = active != self._evaluated_active  # the encoder_reported audit says why
        if state == State.PENDING_SWITCH:
            alarms = ", ".join(self._book.trigger_alarms(active))
            holds_at = self._book.holds_at(active)
            wait = f"{(holds_at or 0.0) - self._now_s:g} s"
            why = f"{alarms} on {active}: switching in {wait} unless it clears"
            self._out.audit("pending", why, detail={"holds_at_s": holds_at})
        elif state == State.PENDING_FAILBACK:
            clean_since = self._book.clean_since(self._s.primary) or 0.0
            at = clean_since + self._s.error_clear_time_s
            why = (
                f"{self._s.primary} clean: failing back in {at - self._now_s:g} s if it stays clean"
            )
            self._out.audit("failback_pending", why, detail={"failback_at_s": at})
        elif previous == State.PENDING_SWITCH and not moved:
            self._out.audit("pending_cancelled", f"trigger on {active} cleared before its hold-off")
        elif previous == State.PENDING_FAILBACK and not moved:
            alarms = ", ".join(self._book.alarms(self._s.primary))
            why = f"{self._s.primary} has {alarms} again" if alarms else "failback not wanted"
            self._out.audit("failback_cancelled", why)

    def _note_locked(self) -> None:
        want = self._want()
        if self._inflight is not None and want is not None and self._inflight.to == want.to:
            want = None  # the command already out does what is wanted
        if want is not None and want != self._locked_noted:
            why = f"locked by {self._locked_by}: not switching to {want.to}, {self._because(want)}"
            self._out.audit("not_switched", why, op=self._locked_by)
        self._locked_noted = want

    # --- Actions ---------------------------------------------------------------------------------

    def _send(self, want: _Want, why: str, operator: str | None) -> None:
        command = _Inflight(
            command_id=self._make_id(),
            kind=want.kind,
            to=want.to,
            reason=want.reason,
            operator=operator,
            issued_at=self._out.iso(self._now_s),
            sent_s=self._now_s,
        )
        self._inflight = command
        self._emit_command(command)
        detail = {"to": want.to, "reason": list(want.reason), "kind": want.kind}
        self._out.audit("switch", why, command.command_id, op=operator, detail=detail)
        self._state = State.SWITCHING

    def _emit_command(self, command: _Inflight) -> None:
        self._out.command(
            command.command_id,
            command.to,
            command.reason,
            command.operator,
            command.attempt,
            command.issued_at,
        )

    def _open_request(self, want: _Want) -> None:
        timeout = self._s.confirm_timeout_s
        expires_s = None if timeout is None else self._now_s + timeout
        request = _Request(self._make_id(), want, expires_s)
        self._request = request
        self._out.request(request.request_id, want.to, want.reason, expires_s)
        after = "never switching unasked" if timeout is None else f"switching in {timeout:g} s"
        why = f"asking the NOC to confirm a switch to {want.to}, {self._because(want)}; {after}"
        detail = {"request_id": request.request_id, "to": want.to}
        self._out.audit("confirm_requested", why, detail=detail)
        self._state = State.AWAITING_CONFIRM

    def _drop_request(self, why: str) -> None:
        request = self._request
        if request is None:
            return
        self._request = None
        self._out.withdraw(request.request_id, why)
        detail = {"request_id": request.request_id}
        self._out.audit("confirm_withdrawn", f"request for {request.want.to}: {why}", detail=detail)

    def _unblock(self, why: str) -> None:
        if self._blocked:
            self._blocked = False
            self._out.clear_alarm(BLOCKED_ALARM)
            self._out.audit("unblocked", why)

    def _suppress(self, kind: Kind, why: str, clears: str | None) -> None:
        clean_since = self._failback_clean_since() if kind == "failback" else None
        self._suppressed = _Suppression(kind, self._active, clean_since, why, clears)
        self._state = State.SUPPRESSED

    def _switched(self, command: _Inflight, why: str) -> None:
        self._finish(command)
        previous = self._active
        self._switches_s.append(self._now_s)
        self._set_active(command.to)
        if command.kind == "manual" and command.to == self._s.backup:
            self._pinned_by = command.operator
        self._out.clear_alarm(FAILED_ALARM)
        detail = {"from": previous, "to": command.to, "kind": command.kind}
        self._out.audit("switched", why, command.command_id, op=command.operator, detail=detail)

    def _after_failure(
        self,
        command: _Inflight,
        status: str,
        why: str,
        clears: str | None,
        detail: Mapping[str, Any],
    ) -> None:
        """No retry of an automatic switch until its cause resets; manual ones are the NOC's."""
        automatic = command.kind != "manual" and self._locked_by is None
        if automatic:
            why += "; not retrying until the trigger clears"
        decision = {"failed": "failed", "rejected": "rejected_by_agent"}.get(status, "no_ack")
        self._out.audit(decision, why, command.command_id, op=command.operator, detail=detail)
        if automatic:
            self._suppress(command.kind, why, clears)

    def _finish(self, command: _Inflight) -> None:
        self._finished.append(command.command_id)
        if self._inflight is command:
            self._inflight = None

    def _set_active(self, input_name: str) -> None:
        self._active = input_name
        if input_name == self._s.primary:
            self._pinned_by = None

    def _heard(self) -> None:
        if NO_ACK_ALARM in self._out.raised:
            self._out.clear_alarm(NO_ACK_ALARM)
            self._out.audit("agent_back", "the agent answers again")

    # --- Output helpers --------------------------------------------------------------------------

    def _because(self, want: _Want) -> str:
        """Why ``want`` is due, in words: what held on which input, for how long."""
        if want.kind == "failback":
            clean_since = self._book.clean_since(self._s.primary) or 0.0
            return f"{self._s.primary} clean for {self._now_s - clean_since:g} s"
        source = self._s.other(want.to)
        raised = [self._book.raised_at(source, alarm) for alarm in want.reason]
        first = min((at for at in raised if at is not None), default=self._now_s)
        alarms = ", ".join(want.reason)
        return f"{alarms} on {source} for {self._now_s - first:g} s"
