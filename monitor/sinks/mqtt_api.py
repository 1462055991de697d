"""The MQTT API: topic names and the payloads of channel and daemon status (version 1).

These are a stable contract with NOC consoles (documented in the README): add fields, never
rename or remove one without bumping ``STATUS_VERSION``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from monitor.alarms.engine import AlarmEvent, utc_now

STATUS_VERSION = 1

ChannelState = Literal["ok", "degraded", "failed", "offline"]


@dataclass(frozen=True)
class Topics:
    """Every topic streamqc publishes, under one prefix (default ``streamqc/<site>``)."""

    prefix: str

    def alarms(self, channel: str) -> str:
        return f"{self.prefix}/{channel}/alarms"

    def alarm_thumbnail(self, channel: str, alarm_id: str) -> str:
        return f"{self.prefix}/{channel}/alarms/{alarm_id}/thumbnail"

    def events(self, channel: str) -> str:
        """Informational events (SCTE-35 cues), QoS 1, not retained."""
        return f"{self.prefix}/{channel}/events"

    def status(self, channel: str) -> str:
        return f"{self.prefix}/{channel}/status"

    def thumbnail(self, channel: str) -> str:
        return f"{self.prefix}/{channel}/thumbnail"

    @property
    def daemon_status(self) -> str:
        return f"{self.prefix}/daemon/status"


def input_state(alarms: Iterable[AlarmEvent]) -> ChannelState:
    """failed: a critical alarm (the picture or sound is gone); degraded: any other alarm."""
    severities = {event.severity for event in alarms}
    if "critical" in severities:
        return "failed"
    return "degraded" if severities else "ok"


def channel_state(active_input: str, inputs: Mapping[str, Iterable[AlarmEvent]]) -> ChannelState:
    """The on-air path decides: failed/degraded as its input; a failing standby input makes
    the channel degraded (it has lost its redundancy), never failed."""
    states = {name: input_state(alarms) for name, alarms in inputs.items()}
    on_air = states.get(active_input, "ok")
    if on_air != "ok":
        return on_air
    return "degraded" if any(state != "ok" for state in states.values()) else "ok"


def _raised_order(event: AlarmEvent) -> tuple[str, str]:
    return (event.wallclock, event.id)


def _alarm(event: AlarmEvent) -> dict[str, Any]:
    return {
        "alarm": event.alarm,
        "id": event.id,
        "severity": event.severity,
        "rendition": event.rendition,
        "start": round(event.start, 3),
        "since": event.wallclock,  # when it was raised, UTC
        "detail": dict(event.detail),
    }


def channel_status(
    channel: str,
    active_input: str,
    inputs: Mapping[str, Iterable[AlarmEvent]],
    *,
    offline: bool = False,
    facts: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The retained ``<prefix>/<channel>/status`` payload. ``facts``: per input, what its
    checks say about it beyond alarms (``captions``, ``in_break``, ``break_ends_at``)."""
    facts = facts or {}
    alarms = {name: sorted(events, key=_raised_order) for name, events in inputs.items()}
    state: ChannelState = "offline" if offline else channel_state(active_input, alarms)
    return {
        "version": STATUS_VERSION,
        "channel": channel,
        "state": state,
        "active_input": active_input,
        "inputs": {
            name: {
                "state": "offline" if offline else input_state(events),
                "alarms": [_alarm(e) for e in events],
                **facts.get(name, {}),
            }
            for name, events in alarms.items()
        },
        "updated": utc_now(),
    }


def daemon_status(
    state: Literal["online", "offline"], *, site: str, host: str, **fields: Any
) -> dict[str, Any]:
    """The retained ``<prefix>/daemon/status`` payload (also the Last Will, as offline)."""
    return {"version": STATUS_VERSION, "state": state, "site": site, "host": host, **fields}


def to_json(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), allow_nan=False, default=str).encode()
