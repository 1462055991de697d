"""The alarm engine: hold-offs on media time, start/end of the condition, one id per alarm."""

import json

import pytest

from monitor.alarms.engine import AlarmTracker, Phase, Subject
from monitor.config import AlarmRule

SUBJECT = Subject("news", "primary")
RULE = AlarmRule(raise_after_s=2.0, clear_after_s=1.0)


def track(observations, rule=RULE, end_s=None):
    events = []
    tracker = AlarmTracker("black", rule, SUBJECT, events.append)
    for t, active in observations:
        tracker.observe(t, active)
    if end_s is not None:
        tracker.finish(end_s)
    return [(e.state, e.start, e.end) for e in events], tracker, events


def frames(start, stop, active, step=0.04):
    n = round((stop - start) / step)
    return [(round(start + i * step, 6), active) for i in range(n)]


CASES = {
    # name: (observations, expected events)
    "condition shorter than raise_after never raises": (
        frames(0, 1, False) + frames(1, 2.5, True) + frames(2.5, 5, False),
        [],
    ),
    "condition exactly raise_after long raises when it ends": (
        frames(0, 1, False) + frames(1, 3, True) + frames(3, 5, False),
        [("raised", 1.0, None), ("cleared", 1.0, 3.0)],
    ),
    "start is the onset, end is when it stopped, not the hold-off expiries": (
        frames(0, 4, False) + frames(4, 7, True) + frames(7, 10, False),
        [("raised", 4.0, None), ("cleared", 4.0, 7.0)],
    ),
    "gap shorter than clear_after does not split the alarm": (
        frames(0, 3, True) + frames(3, 3.5, False) + frames(3.5, 6, True) + frames(6, 8, False),
        [("raised", 0.0, None), ("cleared", 0.0, 6.0)],
    ),
    "gap of clear_after splits it in two": (
        frames(0, 3, True) + frames(3, 4.2, False) + frames(4.2, 7, True) + frames(7, 9, False),
        [
            ("raised", 0.0, None),
            ("cleared", 0.0, 3.0),
            ("raised", 4.2, None),
            ("cleared", 4.2, 7.0),
        ],
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hysteresis(name):
    observations, expected = CASES[name]
    got, _, _ = track(observations)
    assert [(s, pytest.approx(a), None if b is None else pytest.approx(b)) for s, a, b in got] == [
        (s, pytest.approx(a), None if b is None else pytest.approx(b)) for s, a, b in expected
    ]


def test_raise_happens_when_the_hold_off_expires_not_before():
    events = []
    tracker = AlarmTracker("black", AlarmRule(raise_after_s=2.0), SUBJECT, events.append)
    tracker.observe(10.0, True)
    tracker.observe(11.96, True)
    assert events == [] and tracker.phase is Phase.PENDING
    tracker.observe(12.0, True)
    assert [e.state for e in events] == ["raised"] and events[0].start == 10.0


def test_since_backdates_the_onset():
    events = []
    tracker = AlarmTracker("freeze", AlarmRule(raise_after_s=2.0), SUBJECT, events.append)
    tracker.observe(5.04, True, since_s=5.0)
    tracker.observe(7.0, True, since_s=5.0)
    assert events[0].start == 5.0


def test_alarm_open_at_end_of_input_is_cleared_there():
    got, tracker, events = track(frames(0, 1, False) + frames(1, 5, True), end_s=5.0)
    assert got == [("raised", 1.0, None), ("cleared", 1.0, 5.0)]
    assert events[-1].detail["cleared_by"] == "end_of_input"
    assert tracker.phase is Phase.IDLE


def test_alarm_clearing_at_end_of_input_ends_when_the_condition_ended():
    got, _, _ = track(frames(0, 3, True) + frames(3, 3.4, False), end_s=3.4)
    assert got == [("raised", 0.0, None), ("cleared", 0.0, 3.0)]


def test_pending_condition_at_end_of_input_raises_only_if_long_enough():
    assert track(frames(0, 1.5, True), end_s=1.5)[0] == []
    assert track(frames(0, 2.5, True), end_s=2.5)[0][0] == ("raised", 0.0, None)


def test_zero_clear_after_clears_at_the_first_absent_observation():
    got, _, _ = track(
        frames(0, 3, True) + [(3.0, False)], rule=AlarmRule(raise_after_s=1.0, clear_after_s=0.0)
    )
    assert got == [("raised", 0.0, None), ("cleared", 0.0, 3.0)]


def test_raise_and_clear_share_an_id_and_follow_the_event_contract():
    _, _, events = track(frames(0, 3, True) + frames(3, 5, False))
    raised, cleared = (e.to_dict() for e in events)
    assert raised["id"] == cleared["id"] and len(raised["id"]) >= 16
    assert set(raised) == {
        "version", "alarm", "state", "start", "end", "channel", "input", "rendition",
        "severity", "wallclock", "id", "detail",
    }  # fmt: skip
    assert raised["state"] == "raised" and raised["end"] is None
    assert cleared["state"] == "cleared" and cleared["end"] == 3.0
    assert raised["channel"] == "news" and raised["input"] == "primary"
    assert raised["wallclock"].endswith("Z")
    assert cleared["detail"]["duration_s"] == 3.0
    assert json.loads(events[0].to_json())["alarm"] == "black"


def test_severity_comes_from_the_rule():
    _, _, events = track(frames(0, 3, True), rule=AlarmRule(raise_after_s=1, severity="critical"))
    assert events[0].severity == "critical"


def test_sparse_observations_clear_when_the_absence_lasted_long_enough():
    # Detectors that report only changes: absent at 3.0, present again at 4.2 (> clear_after).
    got, _, _ = track([(0.0, True), (3.0, False), (4.2, True), (7.0, True), (8.0, False)], end_s=9)
    assert got == [
        ("raised", 0.0, None),
        ("cleared", 0.0, 3.0),
        ("raised", 4.2, None),
        ("cleared", 4.2, 8.0),
    ]


def test_sparse_observations_within_clear_after_keep_one_alarm():
    got, _, _ = track([(0.0, True), (3.0, False), (3.8, True), (7.0, True), (8.0, False)], end_s=9)
    assert got == [("raised", 0.0, None), ("cleared", 0.0, 8.0)]


def test_inherited_alarms_of_one_subject_are_told_apart_by_stream_subject_and_graphic():
    from monitor.alarms.engine import AlarmEvent, Inheritance

    def raised(alarm, **detail):
        return AlarmEvent(
            alarm,
            "raised",
            1.0,
            None,
            "news",
            "primary",
            None,
            "major",
            "2026-11-25T00:00:00.000Z",
            f"{alarm}-{detail}",
            detail,
        )

    events = [
        raised("graphic_missing", graphic="logo"),
        raised("graphic_missing", graphic="clock"),
        raised("silence", stream=0),
        raised("silence", stream=1),
    ]
    inherited = Inheritance(events)
    assert len(inherited) == 4
    claimed = inherited.claim("graphic_missing", SUBJECT, {"graphic": "clock"})
    assert claimed is events[1]
    assert inherited.claim("silence", SUBJECT, {"stream": 1}) is events[3]
    assert inherited.claim("graphic_missing", SUBJECT, {"graphic": "ticker"}) is None
    assert len(inherited) == 2
