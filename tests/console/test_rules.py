"""The console's rules, pure: tiles, shelves, acknowledgements, floods, roles, payloads."""

from __future__ import annotations

import json

import pytest

from monitor.alarms.engine import AlarmEvent
from monitor.console.rules import (
    FLOOD_ALARMS,
    FLOOD_WINDOW_S,
    Ack,
    ConsoleState,
    PayloadError,
    Shelf,
    epoch_s,
    failover_request,
    may,
    parse_status,
    shelf_until,
    worst_first,
)
from monitor.sinks.mqtt_api import channel_status, to_json

NOW_S = epoch_s("2026-11-25T03:00:00.000Z")


def event(alarm: str = "black", severity: str = "major", input: str = "primary") -> AlarmEvent:
    wall = "2026-11-25T02:59:00.000Z"
    return AlarmEvent(alarm, "raised", 4.0, None, "news", input, None, severity, wall,
                      f"id-{alarm}-{input}", {"ratio": 1.0})  # fmt: skip


def status(*events: AlarmEvent, active: str = "primary") -> bytes:
    inputs: dict[str, list[AlarmEvent]] = {"primary": [], "backup": []}
    for e in events:
        inputs[e.input].append(e)
    return to_json(channel_status("news", active, inputs))


def state_with(*events: AlarmEvent) -> ConsoleState:
    state = ConsoleState()
    state.set_status("paris", "news", parse_status(status(*events)))
    return state


def test_a_status_from_the_daemon_reads_back_with_every_alarm() -> None:
    parsed = parse_status(status(event(), event("silence", input="backup")))
    assert parsed.state == "degraded" and parsed.active_input == "primary"
    assert parsed.inputs == {"primary": "degraded", "backup": "degraded"}
    assert [(a.alarm, a.input) for a in parsed.alarms] == [
        ("black", "primary"),
        ("silence", "backup"),
    ]
    assert parsed.alarms[0].since_s == NOW_S - 60


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"not json", "status: not JSON"),
        (b"[1]", "status: not a JSON object"),
        (b'{"version": 2}', "status: version 2, this console reads 1"),
        (b'{"version": 1, "state": "ok", "inputs": {}}',
         "status: channel: must be a non-empty string"),
        (b'{"version": 1, "channel": "n", "state": "ok", "inputs": []}',
         "status: inputs: must be an object"),
        (b'{"version": 1, "channel": "n", "state": "ok", "inputs": {"p": {"alarms": [{"id": "x",'
         b' "alarm": "black", "since": "yesterday"}]}}}', "not an ISO 8601 time: 'yesterday'"),
    ],
)  # fmt: skip
def test_a_bad_status_is_one_line_naming_the_key(payload: bytes, message: str) -> None:
    with pytest.raises(PayloadError) as caught:
        parse_status(payload)
    assert str(caught.value) == message


def test_a_tile_says_state_input_on_air_and_how_long_each_alarm_lasted() -> None:
    tile = state_with(event()).tile("paris", "news", NOW_S)
    assert tile is not None
    assert (tile["state"], tile["active_input"]) == ("degraded", "primary")
    [alarm] = tile["alarms"]
    assert alarm["alarm"] == "black" and alarm["duration_s"] == 60.0
    assert alarm["acked_by"] is None and tile["shelved"] is None


def test_a_tile_says_whether_captions_are_on_air_and_the_channel_is_in_a_break() -> None:
    """From the daemon's own status payload, with the facts its captions and SCTE-35 checks
    give each input; the tile shows those of the input on air."""
    facts = {
        "primary": {
            "captions": {"on_air": True, "last_line": "GOOD EVENING"},
            "in_break": True,
            "break_ends_at": "2026-11-25T03:01:00Z",
        },
        "backup": {"captions": {"on_air": False, "last_line": None}, "in_break": False},
    }
    payload = channel_status("news", "primary", {"primary": [], "backup": []}, facts=facts)
    state = ConsoleState()
    state.set_status("paris", "news", parse_status(to_json(payload)))
    tile = state.tile("paris", "news", NOW_S)
    assert tile is not None
    assert tile["captions"] == {"on_air": True, "last_line": "GOOD EVENING"}
    assert (tile["in_break"], tile["break_ends_at"]) == (True, "2026-11-25T03:01:00Z")
    # The break ending is news for the tile; a channel without these checks shows none.
    facts["primary"] = {**facts["primary"], "in_break": False, "break_ends_at": None}
    payload = channel_status("news", "primary", {"primary": [], "backup": []}, facts=facts)
    assert state.set_status("paris", "news", parse_status(to_json(payload)))
    assert state.tile("paris", "news", NOW_S)["in_break"] is False  # type: ignore[index]
    plain = state_with().tile("paris", "news", NOW_S)
    assert plain is not None and plain["captions"] is None and plain["in_break"] is None


def test_the_agents_state_decides_the_input_on_air() -> None:
    state = state_with()
    assert state.set_encoder("paris", "news", {"active_input": "backup", "online": True})
    assert state.tile("paris", "news", NOW_S)["active_input"] == "backup"  # type: ignore[index]


def test_an_offline_daemon_makes_its_channels_offline() -> None:
    state = state_with()
    state.set_daemon("paris", {"state": "online"})
    assert state.tile("paris", "news", NOW_S)["state"] == "ok"  # type: ignore[index]
    assert state.set_daemon("paris", {"state": "offline", "reason": "connection lost"})
    assert state.tile("paris", "news", NOW_S)["state"] == "offline"  # type: ignore[index]


def test_only_what_a_tile_shows_counts_as_a_change() -> None:
    state = state_with(event())
    again = json.loads(status(event()))
    again["updated"] = "2026-11-25T03:00:01.000Z"
    assert not state.set_status("paris", "news", parse_status(json.dumps(again).encode()))
    assert state.set_status("paris", "news", parse_status(status()))


def test_a_thumbnail_goes_stale_after_three_of_its_intervals() -> None:
    state = state_with()
    assert state.tile("paris", "news", NOW_S)["thumbnail_stale"]  # type: ignore[index]
    state.set_thumbnail("paris", "news", NOW_S)
    state.set_thumbnail("paris", "news", NOW_S + 2.0)  # a 2 s interval, learnt
    tile = state.tile("paris", "news", NOW_S + 7.9)
    assert (
        tile is not None and not tile["thumbnail_stale"] and tile["thumbnail_stale_after_s"] == 6.0
    )
    assert state.tile("paris", "news", NOW_S + 8.1)["thumbnail_stale"]  # type: ignore[index]


def test_the_first_acknowledgement_stands() -> None:
    state = state_with(event())
    first = state.acknowledge(Ack("id-black-primary", "jane", NOW_S))
    second = state.acknowledge(Ack("id-black-primary", "joe", NOW_S + 5))
    assert first == second and second.user == "jane"
    assert state.tile("paris", "news", NOW_S)["alarms"][0]["acked_by"] == "jane"  # type: ignore[index]


def test_a_shelf_hides_alarms_from_the_active_count_until_it_expires() -> None:
    state = state_with(event())
    state.shelve(Shelf("paris", "news", "jane", NOW_S + 600, "encoder swap", NOW_S))
    [alarm] = state.active_alarms(NOW_S)
    assert alarm["shelved"] is True
    assert state.tile("paris", "news", NOW_S)["shelved"]["by"] == "jane"  # type: ignore[index]
    assert state.expire_shelves(NOW_S + 599) == []
    assert state.expire_shelves(NOW_S + 600) == [("paris", "news")]
    assert state.active_alarms(NOW_S + 600)[0]["shelved"] is False


@pytest.mark.parametrize("duration", [59, 7 * 86_400 + 1, "1h", True, None])
def test_a_shelf_is_between_a_minute_and_a_week(duration: object) -> None:
    with pytest.raises(PayloadError, match="duration_s"):
        shelf_until(NOW_S, duration)
    assert shelf_until(NOW_S, 3600) == NOW_S + 3600


def test_a_flood_is_more_than_ten_alarms_in_ten_minutes() -> None:
    state = ConsoleState()
    for i in range(FLOOD_ALARMS):
        state.alarm_raised(NOW_S + i)
    assert state.flood(NOW_S + 10) is None
    state.alarm_raised(NOW_S + 10)
    assert state.flood(NOW_S + 10) == {"alarms": 11, "window_s": FLOOD_WINDOW_S}
    assert state.flood(NOW_S + FLOOD_WINDOW_S + 0.5) is None  # the first one left the window


def test_viewers_see_and_operators_act() -> None:
    assert may("viewer", "view") and may("operator", "view")
    for action in ("ack", "shelve", "failover"):
        assert may("operator", action) and not may("viewer", action)  # type: ignore[arg-type]
    assert not may("admin", "view")


def test_failover_requests_are_checked_before_anything_is_published() -> None:
    assert failover_request({"action": "confirm"}, "req-1") == ("confirm", "req-1", None)
    assert failover_request({"action": "switch", "to": "backup"}, None) == (
        "switch",
        None,
        "backup",
    )
    assert failover_request({"action": "lock"}, None) == ("lock", None, None)
    for body, message in (
        ({"action": "confirm"}, "no failover request is open"),
        ({"action": "confirm", "request_id": "old"}, "no failover request"),
        ({"action": "switch"}, "to: required"),
        ({"action": "switch", "to": 3}, "to: must be an input name"),
        ({"action": "blow-up"}, "action: must be one of"),
        ([], "body: must be a JSON object"),
    ):
        with pytest.raises(PayloadError, match=message):
            failover_request(body, None)
    with pytest.raises(PayloadError, match="has changed"):
        failover_request({"action": "reject", "request_id": "old"}, "req-2")


def test_worst_first_puts_failed_then_degraded_then_ok() -> None:
    tiles = [
        {"site": "a", "channel": "ok", "state": "ok", "alarms": []},
        {"site": "a", "channel": "minor", "state": "degraded", "alarms": [{"severity": "minor"}]},
        {"site": "a", "channel": "failed", "state": "failed", "alarms": [{"severity": "critical"}]},
        {"site": "a", "channel": "major", "state": "degraded", "alarms": [{"severity": "major"}]},
    ]
    assert [t["channel"] for t in sorted(tiles, key=worst_first)] == [
        "failed",
        "major",
        "minor",
        "ok",
    ]
