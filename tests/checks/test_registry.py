"""The one check registry: every module of monitor/checks/ is found, by scope, in order."""

from __future__ import annotations

import pkgutil

import monitor.checks
from monitor.alarms.engine import AlarmEvent, Subject, Trackers
from monitor.checks.base import ChannelCheck, CheckContext, InputCheck, MediaCheck, UnitCheck
from monitor.checks.failover import FailoverAlarmsCheck
from monitor.checks.registry import build_checks, check_types
from monitor.config import default_channel

SCOPES = {"rendition": MediaCheck, "input": InputCheck, "unit": UnitCheck, "channel": ChannelCheck}


def test_every_check_module_defines_a_check_the_registry_finds() -> None:
    found = {cls.__module__ for scope in SCOPES for cls in check_types(scope)}  # type: ignore[arg-type]
    modules = {
        f"monitor.checks.{m.name}"
        for m in pkgutil.iter_modules(monitor.checks.__path__)
        if m.name not in ("base", "registry")
    }
    assert found == modules


def test_each_check_is_found_in_its_own_scope_only() -> None:
    for scope, base in SCOPES.items():
        for cls in check_types(scope):  # type: ignore[arg-type]
            assert issubclass(cls, base), (scope, cls)


def test_black_and_freeze_see_each_picture_before_the_checks_that_judge_presence() -> None:
    names = [cls.__name__ for cls in check_types("rendition")]
    # The ad-break check only keeps the break state the others read: it goes first.
    assert names[:2] == ["AdBreaksCheck", "BlackFreezeCheck"] and names[-1] == "PresenceCheck"


def test_a_check_that_is_off_is_not_built() -> None:
    channel = default_channel()  # loudness, av_sync, graphics are off unless written
    trackers = Trackers(Subject("news", "primary"), lambda event: None)
    built = build_checks("rendition", CheckContext(channel, trackers.subject, trackers))
    assert {type(c).__name__ for c in built} == {
        "BlackFreezeCheck",
        "SilenceCheck",
        "PresenceCheck",
    }


def test_the_failover_policys_alarm_is_raised_and_cleared_at_once() -> None:
    events: list[AlarmEvent] = []
    trackers = Trackers(Subject("news", "failover"), events.append)
    check = FailoverAlarmsCheck.build(
        CheckContext(default_channel("news"), trackers.subject, trackers)
    )
    assert isinstance(check, FailoverAlarmsCheck)
    check.policy_alarm("failover_blocked", True, 10.0, "critical", {"why": "backup black"})
    check.policy_alarm("failover_blocked", True, 11.0, "critical", {"why": "later"})
    check.policy_alarm("failover_blocked", False, 12.5, "critical", {})
    assert [(e.alarm, e.state, e.severity) for e in events] == [
        ("failover_blocked", "raised", "critical"),
        ("failover_blocked", "cleared", "critical"),
    ]
    raised, cleared = events
    assert raised.start == 10.0 and raised.detail == {"why": "backup black"}
    assert cleared.id == raised.id and cleared.end == 12.5
    assert cleared.detail == {"why": "backup black", "duration_s": 2.5}
