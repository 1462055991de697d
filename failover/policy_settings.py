"""Failover settings of one channel (YAML: ``channels[].failover``).

The knobs follow AWS MediaLive's automatic input failover where it has one
(``InputAttachment.AutomaticInputFailoverSettings``): ``triggers`` are its
``FailoverConditions`` (there "if any occur, fail over"; here ``any`` or ``all``, the OR/AND
fault logic of the Evertz 7700ACO2 and the AVP 4000's "freeze and silence"), ``failback`` is its
``InputPreference`` (``PRIMARY_INPUT_PREFERRED`` / ``EQUAL_INPUT_PREFERENCE``, here ``stay``) and
``error_clear_time_s`` its ``ErrorClearTimeMsec``: "a recovered input must be condition-free
this long to count as healthy; with primary preferred it is the failback delay". The flap
budget (``max_switches`` per ``flap_window_s``) follows the Tieline codec's "max retries per time
frame". Defaults: MediaLive's three conditions (input loss, black, silence), its user guide's
"healthy again for more than 30 seconds", and ``mode: off`` so that nothing switches until an
engineer says so.

Ranges are ``annotated_types`` constraints, which the config loader turns into YAML checks;
``__post_init__`` checks them too (for settings built in code) and the rules across keys,
raising ``ValueError("key: what is wrong")``.
"""

from __future__ import annotations

import dataclasses
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args, get_origin, get_type_hints

from annotated_types import Ge, Gt, Interval

Mode = Literal["auto", "confirm", "off"]
Combine = Literal["any", "all"]
Failback = Literal["primary_preferred", "stay"]

_PATTERN = re.compile(r"[a-z0-9_]*\*?")
OWN_ALARM_PREFIX = "failover_"
"""Alarms the policy raises itself; they can never trigger it (no feedback loop)."""


def matches(pattern: str, alarm: str) -> bool:
    """True when ``alarm`` is ``pattern``, or starts with it when it ends with ``*``."""
    if alarm.startswith(OWN_ALARM_PREFIX):
        return False
    if pattern.endswith("*"):
        return alarm.startswith(pattern[:-1])
    return alarm == pattern


def _check_pattern(key: str, pattern: str) -> None:
    if not pattern or not _PATTERN.fullmatch(pattern):
        raise ValueError(
            f"{key}: must be an alarm name (snake_case), optionally ending with '*' as a"
            f" prefix wildcard, got {pattern!r}"
        )
    if pattern.startswith(OWN_ALARM_PREFIX):
        raise ValueError(f"{key}: {pattern!r}: failover_* alarms are raised by the policy itself")


def check_ranges(settings: object) -> None:
    """Check the annotated_types constraints of a dataclass's fields (settings built in code)."""
    hints = get_type_hints(type(settings), include_extras=True)
    for spec in dataclasses.fields(settings):  # type: ignore[arg-type]
        value = getattr(settings, spec.name)
        hint = hints[spec.name]
        if value is None or isinstance(value, bool):
            continue
        for option in get_args(hint) if get_origin(hint) is not Annotated else (hint,):
            if get_origin(option) is Annotated:
                _check_bounds(spec.name, value, get_args(option)[1:])


_BOUNDS: dict[str, tuple[str, Callable[[Any, Any], bool]]] = {
    "ge": (">=", operator.ge),
    "gt": (">", operator.gt),
    "le": ("<=", operator.le),
    "lt": ("<", operator.lt),
}


def _check_bounds(key: str, value: Any, constraints: tuple[Any, ...]) -> None:
    for constraint in constraints:
        if not isinstance(constraint, Interval | Ge | Gt):
            continue
        for name, (words, holds) in _BOUNDS.items():
            bound = getattr(constraint, name, None)
            if bound is not None and not holds(value, bound):
                # :g as typing caches Annotated[float, Gt(0)] and [.., Gt(0.0)] as one (equal)
                raise ValueError(f"{key}: must be {words} {bound:g}, got {value!r}")


@dataclass(frozen=True)
class Trigger:
    """One failover condition: an alarm of the on-air input, held for ``hold_s`` more seconds.

    ``alarm`` is an alarm name (``black``, ``input_loss``, ...) or a prefix ending with ``*``
    (``tr101290_*`` matches every TR 101 290 alarm). The hold-off runs from the moment the
    alarm was raised, on top of the alarm's own ``raise_after``: ``Trigger("freeze", 10.0)``
    switches only on a freeze that has lasted its raise_after plus ten seconds.
    """

    alarm: str
    hold_s: Annotated[float, Ge(0.0)] = 0.0

    def __post_init__(self) -> None:
        _check_pattern("alarm", self.alarm)
        check_ranges(self)

    def matches(self, alarm: str) -> bool:
        return matches(self.alarm, alarm)


@dataclass(frozen=True)
class FailoverSettings:
    """When a channel switches its encoder to the other input, and when it comes back."""

    mode: Mode = "off"
    """``auto`` switches at once; ``confirm`` asks the NOC first (and switches by itself after
    ``confirm_timeout_s`` unless that is None); ``off`` raises alarms only and audits what it
    would have done."""
    triggers: tuple[Trigger, ...] = (Trigger("input_loss"), Trigger("black"), Trigger("silence"))
    """The failover conditions, evaluated on the alarms of the input that is on air."""
    combine: Combine = "any"
    """``any``: one held trigger switches (MediaLive). ``all``: every trigger must be held,
    e.g. freeze and silence together = dead air."""
    unfit_alarms: tuple[str, ...] = ("input_loss", "video_missing", "audio_missing")
    """Alarms that make an input unfit to switch to even when they are not triggers (names or
    ``prefix*``). An input whose own triggers hold is always unfit."""
    failback: Failback = "primary_preferred"
    """``primary_preferred`` returns to primary once it has been clean for
    ``error_clear_time_s`` (MediaLive PRIMARY_INPUT_PREFERRED); ``stay`` remains on backup
    until an operator switches back (MediaLive EQUAL_INPUT_PREFERENCE, Evertz AUS)."""
    error_clear_time_s: Annotated[float, Ge(0.0)] = 30.0
    """How long primary must be free of trigger and unfit alarms before a failback (MediaLive
    ``ErrorClearTimeMsec``)."""
    confirm_timeout_s: Annotated[float, Ge(0.0)] | None = 60.0
    """In ``confirm`` mode, switch anyway when the NOC has not answered this long; None never."""
    max_switches: Annotated[int, Ge(1)] = 3
    """Flap damping: at most this many switches (failovers, failbacks, manual) per window..."""
    flap_window_s: Annotated[float, Gt(0.0)] = 600.0
    """... after which automatic switching holds (``failover_flapping``) until the window
    frees."""
    ack_timeout_s: Annotated[float, Gt(0.0)] = 5.0
    """A command the agent has not acknowledged this long is sent again (same command_id)."""
    retries: Annotated[int, Interval(ge=0, le=10)] = 2
    """Resends before ``failover_no_ack`` is raised."""
    done_timeout_s: Annotated[float, Gt(0.0)] = 30.0
    """After ``accepted``, how long the agent may take to report ``done`` or ``failed`` (an
    encoder restart can take a while) before ``failover_no_ack`` is raised."""
    primary: str = "primary"
    """Name of the primary input (as in the channel's ``inputs`` and the commands' ``to``)."""
    backup: str = "backup"
    """Name of the backup input."""

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.mode not in get_args(Mode):
            raise ValueError(f"mode: must be one of auto, confirm, off, got {self.mode!r}")
        if self.combine not in get_args(Combine):
            raise ValueError(f"combine: must be any or all, got {self.combine!r}")
        if self.failback not in get_args(Failback):
            raise ValueError(f"failback: must be primary_preferred or stay, got {self.failback!r}")
        if not self.triggers:
            raise ValueError("triggers: must list at least one alarm")
        seen: set[str] = set()
        for trigger in self.triggers:
            if trigger.alarm in seen:
                raise ValueError(f"triggers: {trigger.alarm!r} is listed twice")
            seen.add(trigger.alarm)
        for pattern in self.unfit_alarms:
            _check_pattern("unfit_alarms", pattern)
        for key in ("primary", "backup"):
            if not getattr(self, key):
                raise ValueError(f"{key}: must be an input name, got ''")
        if self.primary == self.backup:
            raise ValueError(f"backup: must differ from primary, both are {self.primary!r}")

    def other(self, input_name: str) -> str:
        """The input that is not ``input_name``."""
        return self.backup if input_name == self.primary else self.primary
