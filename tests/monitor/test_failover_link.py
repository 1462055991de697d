"""The failover link hands the policy one alarm per name and input, however many trackers
raise it (one per audio channel, stream or rendition)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from failover.events import AlarmChanged
from failover.policy_settings import FailoverSettings
from monitor.alarms.engine import AlarmEvent
from monitor.config import InputConfig, default_channel
from monitor.daemon.failover_link import FailoverLink


class RecordingSink:
    """Takes what the link would publish; the link's MQTT side is not under test here."""

    def __init__(self) -> None:
        self.subscribed: list[str] = []

    def subscribe(self, topic: str, handler: Any) -> None:
        self.subscribed.append(topic)

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def event(alarm_id: str, state: str, detail: dict[str, Any]) -> AlarmEvent:
    return AlarmEvent(
        alarm="silence",
        state=state,  # type: ignore[arg-type]
        start=1.0,
        end=None if state == "raised" else 5.0,
        channel="news",
        input="primary",
        rendition=None,
        severity="major",
        wallclock="2026-12-04T00:00:00.000Z",
        id=alarm_id,
        detail=detail,
    )


def test_two_silence_alarms_of_one_input_are_one_condition_to_the_policy() -> None:
    inputs = {"primary": InputConfig("udp://a"), "backup": InputConfig("udp://b")}
    channel = replace(default_channel("news"), inputs=inputs, failover=FailoverSettings())
    link = FailoverLink(
        channel, "streamqc/t", RecordingSink(), origin_wall_s=0.0, on_alarm=print, log=None
    )
    seen: list[AlarmChanged] = []
    link._apply = seen.append  # type: ignore[method-assign]

    link.alarm(event("fl", "raised", {"stream": 0, "audio_channel": 0}))
    link.alarm(event("fc", "raised", {"stream": 0, "audio_channel": 2}))
    link.alarm(event("fl", "cleared", {"stream": 0, "audio_channel": 0}))
    assert [(e.alarm, e.active) for e in seen] == [("silence", True)]

    link.alarm(event("fc", "cleared", {"stream": 0, "audio_channel": 2}))
    assert [(e.alarm, e.active) for e in seen] == [("silence", True), ("silence", False)]
