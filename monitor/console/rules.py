"""What the console shows and allows: tiles, active alarms, acknowledgements, shelves, floods.

Pure logic in the manner of ``failover/policy.py``: it never reads a clock (every call brings
``now_s``, UTC seconds since the epoch), does no I/O and imports no asyncio, aiohttp or MQTT, so
each rule is a unit test. ``ConsoleState`` holds what the broker said last about every channel
of every site; ``web`` feeds it the parsed MQTT messages and asks it for tiles.

Rules (from the alarm-console practice in ISA-18.2 and OPC UA Part 9 §4.8):

- An alarm is *active* while the channel's retained status lists it; the status, not the
  event stream, decides (it is republished on every reconnect, events may be missed).
- A **shelved** channel (an operator's maintenance window, OPC UA "shelving") keeps recording
  its alarms but none of them counts as active, and its tile says "shelved" until the shelf
  expires. A shelf lasts between ``SHELVE_MIN_S`` and ``SHELVE_MAX_S``.
- An **acknowledgement** is per alarm id, first one wins (who and when), shared by every
  browser; it does not hide the alarm, which stays active until it clears.
- A channel of a daemon whose ``daemon/status`` is offline is ``offline`` whatever its last
  status said (the daemon's Last Will tells us it is gone).
- A thumbnail is **stale** when older than ``STALE_INTERVALS`` intervals (the interval is
  learnt from the gap between the last two pictures, ``DEFAULT_THUMBNAIL_INTERVAL_S`` before).
- An alarm **flood** is more than ``FLOOD_ALARMS`` alarms raised in ``FLOOD_WINDOW_S``
  (ISA-18.2: "more than 10 alarms per 10 minutes" per operator position).
- Viewers see; operators also acknowledge, shelve and act on failover.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

Role = Literal["viewer", "operator"]
ROLES: tuple[Role, ...] = ("viewer", "operator")
Action = Literal["view", "ack", "shelve", "failover"]
TileState = Literal["ok", "degraded", "failed", "offline", "unknown"]

STALE_INTERVALS = 3
DEFAULT_THUMBNAIL_INTERVAL_S = 10.0
"""The daemon's default ``thumbnails.interval`` (README, MQTT API)."""
SHELVE_MIN_S = 60.0
SHELVE_MAX_S = 7 * 86_400.0
FLOOD_ALARMS = 10
FLOOD_WINDOW_S = 600.0
"""ISA-18.2's alarm flood: more than 10 alarms in 10 minutes (ref. standards-2 §7)."""
SEVERITY_RANK = {"critical": 3, "major": 2, "minor": 1, "warning": 1, "info": 0}
STATE_RANK = {"failed": 4, "offline": 3, "degraded": 2, "unknown": 1, "ok": 0}
FAILOVER_VERBS = ("confirm", "reject", "switch", "lock", "unlock")


class PayloadError(ValueError):
    """An MQTT payload the console cannot use; the message is one line naming what is wrong."""


def may(role: str, action: Action) -> bool:
    """Whether a user of ``role`` may do ``action``; checked by the server on every request."""
    if action == "view":
        return role in ROLES
    return role == "operator"


def epoch_s(iso: str) -> float:
    """``2026-11-25T02:50:00.122Z`` → seconds since the epoch; PayloadError when not a time."""
    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        raise PayloadError(f"not an ISO 8601 time: {str(iso)[:40]!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def iso(at_s: float) -> str:
    """Seconds since the epoch → UTC ISO 8601 with milliseconds, as the daemon writes them."""
    return datetime.fromtimestamp(at_s, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def json_object(payload: bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise PayloadError(f"{what}: not JSON") from None
    if not isinstance(data, dict):
        raise PayloadError(f"{what}: not a JSON object")
    if data.get("version") != 1:
        raise PayloadError(f"{what}: version {data.get('version')!r}, this console reads 1")
    return data


# --- What the broker says ---------------------------------------------------------------------


@dataclass(frozen=True)
class ActiveAlarm:
    """One alarm listed by a channel status (README, MQTT API: channel status)."""

    id: str
    alarm: str
    severity: str
    input: str
    rendition: str | None
    start: float
    """Media seconds."""
    since: str
    """UTC time it was raised."""
    since_s: float
    detail: dict[str, Any]


@dataclass(frozen=True)
class ChannelStatus:
    channel: str
    state: str
    active_input: str | None
    inputs: dict[str, str]
    """input → its state."""
    alarms: tuple[ActiveAlarm, ...]
    updated: str
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)
    """input → what its checks say beyond alarms: ``captions`` ({on_air, last_line}),
    ``in_break``, ``break_ends_at`` (the daemon's status, when those checks are on)."""


def _text(data: dict[str, Any], key: str, what: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise PayloadError(f"{what}: {key}: must be a non-empty string")
    return value


def parse_status(payload: bytes) -> ChannelStatus:
    """A retained ``<prefix>/<channel>/status`` payload, checked key by key."""
    data = json_object(payload, "status")
    channel = _text(data, "channel", "status")
    state = _text(data, "state", "status")
    inputs_data = data.get("inputs")
    if not isinstance(inputs_data, dict):
        raise PayloadError("status: inputs: must be an object")
    inputs: dict[str, str] = {}
    facts: dict[str, dict[str, Any]] = {}
    alarms: list[ActiveAlarm] = []
    for name, body in inputs_data.items():
        if not isinstance(body, dict) or not isinstance(body.get("alarms", []), list):
            raise PayloadError(f"status: inputs.{name}: must be an object with an alarms list")
        inputs[str(name)] = str(body.get("state", "unknown"))
        facts[str(name)] = _facts(body)
        for item in body.get("alarms", []):
            if not isinstance(item, dict):
                raise PayloadError(f"status: inputs.{name}.alarms: must hold objects")
            since = _text(item, "since", f"status: inputs.{name}.alarms")
            start = item.get("start", 0.0)
            detail = item.get("detail") or {}
            alarms.append(
                ActiveAlarm(
                    id=_text(item, "id", f"status: inputs.{name}.alarms"),
                    alarm=_text(item, "alarm", f"status: inputs.{name}.alarms"),
                    severity=str(item.get("severity") or "major"),
                    input=str(name),
                    rendition=item.get("rendition")
                    if isinstance(item.get("rendition"), str)
                    else None,
                    start=float(start) if isinstance(start, int | float) else 0.0,
                    since=since,
                    since_s=epoch_s(since),
                    detail=detail if isinstance(detail, dict) else {},
                )
            )
    active = data.get("active_input")
    return ChannelStatus(
        channel=channel,
        state=state,
        active_input=active if isinstance(active, str) else None,
        inputs=inputs,
        alarms=tuple(sorted(alarms, key=lambda a: (a.since_s, a.id))),
        updated=str(data.get("updated") or ""),
        facts=facts,
    )


def _facts(body: dict[str, Any]) -> dict[str, Any]:
    """The captions and ad-break facts of one input's status, when well formed (a status
    without them, or from an older daemon, has none)."""
    out: dict[str, Any] = {}
    captions = body.get("captions")
    if isinstance(captions, dict) and isinstance(captions.get("on_air"), bool):
        line = captions.get("last_line")
        out["captions"] = {
            "on_air": captions["on_air"],
            "last_line": line if isinstance(line, str) else None,
        }
    if isinstance(body.get("in_break"), bool):
        ends = body.get("break_ends_at")
        out["in_break"] = body["in_break"]
        out["break_ends_at"] = ends if isinstance(ends, str) else None
    return out


@dataclass(frozen=True)
class Shelf:
    """An operator's maintenance window on one channel."""

    site: str
    channel: str
    user: str
    until_s: float
    reason: str
    at_s: float

    def to_json(self) -> dict[str, Any]:
        return {
            "by": self.user,
            "until": iso(self.until_s),
            "reason": self.reason,
            "at": iso(self.at_s),
        }


@dataclass(frozen=True)
class Ack:
    alarm_id: str
    user: str
    at_s: float


def shelf_until(now_s: float, duration_s: object) -> float:
    """When a shelf of ``duration_s`` started now ends; PayloadError outside the bounds."""
    if isinstance(duration_s, bool) or not isinstance(duration_s, int | float):
        raise PayloadError("duration_s: must be a number of seconds")
    if not SHELVE_MIN_S <= duration_s <= SHELVE_MAX_S:
        raise PayloadError(
            f"duration_s: must be between {SHELVE_MIN_S:g} and {SHELVE_MAX_S:g} s, "
            f"got {duration_s:g}"
        )
    return now_s + float(duration_s)


def failover_request(
    body: object, pending_request_id: str | None
) -> tuple[str, str | None, str | None]:
    """(action, request_id, to) of an operator's failover request from the API, checked.

    ``confirm``/``reject`` answer the open request (an error when there is none); ``switch``
    needs ``to``.
    """
    if not isinstance(body, dict):
        raise PayloadError("body: must be a JSON object")
    action = body.get("action")
    if action not in FAILOVER_VERBS:
        raise PayloadError(f"action: must be one of {', '.join(FAILOVER_VERBS)}")
    to = body.get("to")
    if to is not None and (not isinstance(to, str) or not to):
        raise PayloadError("to: must be an input name such as primary or backup")
    if action == "switch" and not to:
        raise PayloadError("to: required for action 'switch'")
    request_id = None
    if action in ("confirm", "reject"):
        if pending_request_id is None:
            raise PayloadError(f"{action}: no failover request is open on this channel")
        wanted = body.get("request_id")
        if wanted is not None and wanted != pending_request_id:
            raise PayloadError("request_id: the open request has changed; look again")
        request_id = pending_request_id
    return str(action), request_id, to


# --- The state of every channel ---------------------------------------------------------------


@dataclass
class ChannelRecord:
    site: str
    channel: str
    status: ChannelStatus | None = None
    thumbnail_at_s: float | None = None
    thumbnail_interval_s: float | None = None
    thumbnail_seq: int = 0
    encoder: dict[str, Any] | None = None
    """The agent's retained failover/state."""
    request: dict[str, Any] | None = None
    """The daemon's open confirm request (failover/request)."""


@dataclass
class ConsoleState:
    """Everything the broker said last, per (site, channel); shelves and acks from the store."""

    channels: dict[tuple[str, str], ChannelRecord] = field(default_factory=dict)
    daemons: dict[str, dict[str, Any]] = field(default_factory=dict)
    shelves: dict[tuple[str, str], Shelf] = field(default_factory=dict)
    acks: dict[str, Ack] = field(default_factory=dict)
    raised_s: deque[float] = field(default_factory=deque)

    def record(self, site: str, channel: str) -> ChannelRecord:
        key = (site, channel)
        if key not in self.channels:
            self.channels[key] = ChannelRecord(site, channel)
        return self.channels[key]

    # updates: each returns whether what a tile shows changed

    def set_status(self, site: str, channel: str, status: ChannelStatus | None) -> bool:
        """A new retained status; None (an empty retained message) removes the channel."""
        if status is None:
            return self.channels.pop((site, channel), None) is not None
        record = self.record(site, channel)
        changed = record.status is None or _shown(record.status) != _shown(status)
        record.status = status
        return changed

    def set_thumbnail(self, site: str, channel: str, now_s: float) -> None:
        record = self.record(site, channel)
        if record.thumbnail_at_s is not None and now_s > record.thumbnail_at_s:
            record.thumbnail_interval_s = now_s - record.thumbnail_at_s
        record.thumbnail_at_s = now_s
        record.thumbnail_seq += 1

    def set_daemon(self, site: str, status: dict[str, Any] | None) -> bool:
        before = self.daemons.get(site)
        if status is None:
            self.daemons.pop(site, None)
        else:
            self.daemons[site] = status
        return before != status

    def set_encoder(self, site: str, channel: str, state: dict[str, Any] | None) -> bool:
        record = self.record(site, channel)
        changed = record.encoder != state
        record.encoder = state
        return changed

    def set_request(self, site: str, channel: str, request: dict[str, Any] | None) -> bool:
        record = self.record(site, channel)
        changed = record.request != request
        record.request = request
        return changed

    def alarm_raised(self, now_s: float) -> None:
        self.raised_s.append(now_s)
        self._forget_old(now_s)

    def _forget_old(self, now_s: float) -> None:
        while self.raised_s and self.raised_s[0] < now_s - FLOOD_WINDOW_S:
            self.raised_s.popleft()

    def shelve(self, shelf: Shelf) -> None:
        self.shelves[(shelf.site, shelf.channel)] = shelf

    def unshelve(self, site: str, channel: str) -> bool:
        return self.shelves.pop((site, channel), None) is not None

    def expire_shelves(self, now_s: float) -> list[tuple[str, str]]:
        """Drop the shelves that ended; their channels (whose tiles change)."""
        ended = [key for key, shelf in self.shelves.items() if shelf.until_s <= now_s]
        for key in ended:
            del self.shelves[key]
        return ended

    def acknowledge(self, ack: Ack) -> Ack:
        """The first acknowledgement of an alarm wins; returns the one that stands."""
        return self.acks.setdefault(ack.alarm_id, ack)

    # queries

    def daemon_online(self, site: str) -> bool | None:
        status = self.daemons.get(site)
        return None if status is None else status.get("state") == "online"

    def flood(self, now_s: float) -> dict[str, Any] | None:
        """The flood banner: None when under ISA-18.2's 10 alarms per 10 minutes."""
        self._forget_old(now_s)
        count = len(self.raised_s)
        if count <= FLOOD_ALARMS:
            return None
        return {"alarms": count, "window_s": FLOOD_WINDOW_S}

    def tile(self, site: str, channel: str, now_s: float) -> dict[str, Any] | None:
        record = self.channels.get((site, channel))
        if record is None:
            return None
        return tile(
            record, self.daemon_online(site), self.shelves.get((site, channel)), self.acks, now_s
        )

    def tiles(self, now_s: float) -> list[dict[str, Any]]:
        out = []
        for site, channel in sorted(self.channels):
            shown = self.tile(site, channel, now_s)
            if shown is not None and self.channels[(site, channel)].status is not None:
                out.append(shown)
        return out

    def active_alarms(self, now_s: float) -> list[dict[str, Any]]:
        """Every active alarm of every channel, shelved ones flagged, newest first."""
        out = []
        for (site, channel), record in self.channels.items():
            if record.status is None:
                continue
            shelf = self.shelves.get((site, channel))
            for alarm in record.status.alarms:
                out.append(
                    alarm_json(site, channel, alarm, self.acks.get(alarm.id), now_s)
                    | {"shelved": shelf is not None}
                )
        return sorted(out, key=lambda a: (-a["since_s"], a["id"]))


def _shown(status: ChannelStatus) -> tuple[Any, ...]:
    """What a tile shows of a status (``updated`` alone changing is no news)."""
    alarms = tuple(a.id for a in status.alarms)
    return (status.state, status.active_input, status.inputs, alarms, status.facts)


def alarm_json(
    site: str, channel: str, alarm: ActiveAlarm, ack: Ack | None, now_s: float
) -> dict[str, Any]:
    return {
        "id": alarm.id,
        "site": site,
        "channel": channel,
        "input": alarm.input,
        "rendition": alarm.rendition,
        "alarm": alarm.alarm,
        "severity": alarm.severity,
        "start": alarm.start,
        "since": alarm.since,
        "since_s": alarm.since_s,
        "duration_s": round(max(0.0, now_s - alarm.since_s), 1),
        "detail": alarm.detail,
        "acked_by": ack.user if ack else None,
        "acked_at": iso(ack.at_s) if ack else None,
    }


def thumbnail_stale(record: ChannelRecord, now_s: float) -> bool:
    if record.thumbnail_at_s is None:
        return True
    interval_s = record.thumbnail_interval_s or DEFAULT_THUMBNAIL_INTERVAL_S
    return now_s - record.thumbnail_at_s > STALE_INTERVALS * interval_s


def tile(
    record: ChannelRecord,
    daemon_online: bool | None,
    shelf: Shelf | None,
    acks: dict[str, Ack],
    now_s: float,
) -> dict[str, Any]:
    """A channel as the mosaic and ``GET /api/channels`` show it."""
    status = record.status
    state: TileState = "unknown"
    if status is not None:
        state = status.state if status.state in STATE_RANK else "unknown"  # type: ignore[assignment]
    if daemon_online is False:
        state = "offline"
    alarms = (
        []
        if status is None
        else [
            alarm_json(record.site, record.channel, a, acks.get(a.id), now_s) for a in status.alarms
        ]
    )
    encoder = record.encoder or {}
    on_air = encoder.get("active_input") or (status.active_input if status else None)
    facts = status.facts.get(on_air or "", {}) if status else {}
    interval_s = record.thumbnail_interval_s or DEFAULT_THUMBNAIL_INTERVAL_S
    return {
        "site": record.site,
        "channel": record.channel,
        "state": state,
        "daemon_online": daemon_online,
        "active_input": on_air,
        "inputs": dict(status.inputs) if status else {},
        "alarms": alarms,
        "captions": facts.get("captions"),
        "in_break": facts.get("in_break"),
        "break_ends_at": facts.get("break_ends_at"),
        "shelved": shelf.to_json() if shelf else None,
        "thumbnail_seq": record.thumbnail_seq,
        "thumbnail_age_s": None
        if record.thumbnail_at_s is None
        else round(now_s - record.thumbnail_at_s, 1),
        "thumbnail_at_s": record.thumbnail_at_s,
        "thumbnail_stale_after_s": STALE_INTERVALS * interval_s,
        "thumbnail_stale": thumbnail_stale(record, now_s),
        "failover": None
        if record.encoder is None and record.request is None
        else {
            "active_input": encoder.get("active_input"),
            "online": encoder.get("online"),
            "since": encoder.get("since"),
            "request": record.request,
        },
        "updated": status.updated if status else None,
    }


def worst_first(tile_json: dict[str, Any]) -> tuple[int, int, str, str]:
    """Sort key of 'worst first': state, then the worst alarm's severity, then name."""
    worst = max((SEVERITY_RANK.get(a["severity"], 1) for a in tile_json["alarms"]), default=-1)
    return (-STATE_RANK.get(tile_json["state"], 1), -worst, tile_json["site"], tile_json["channel"])


def with_ack(alarm: dict[str, Any], ack: Ack | None) -> dict[str, Any]:
    return alarm | {
        "acked_by": ack.user if ack else None,
        "acked_at": iso(ack.at_s) if ack else None,
    }
