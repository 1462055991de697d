"""The console's live picture of every site and channel: fed by the broker's messages, read by
the web app, pushed to the browsers in coalesced batches.

``ChannelBook.receive(topic, payload, now_s)`` sorts one MQTT message into the rules' state
(``rules.ConsoleState``), the store (history, onset pictures, audit) and the latest thumbnail of
each channel, and marks what changed. ``take_batch()`` hands the web app the changes since the
last batch, so a thousand status messages a second become four small WebSocket messages.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from monitor.console.mqtt_feed import topic_parts
from monitor.console.rules import ConsoleState, PayloadError, epoch_s, json_object, parse_status
from monitor.console.store import Store

WARN_EVERY_S = 60.0
"""A topic that keeps sending bad payloads is logged once a minute, not per message."""

Key = tuple[str, str]


@dataclass
class Batch:
    channels: set[Key] = field(default_factory=set)
    removed: set[Key] = field(default_factory=set)
    alarms: bool = False
    audit: set[Key] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.channels or self.removed or self.alarms or self.audit)


class ChannelBook:
    def __init__(self, patterns: list[list[str]], store: Store, log: Callable[..., None]) -> None:
        self.patterns = patterns
        self.store = store
        self.log = log
        self.state = ConsoleState()
        self.prefixes: dict[str, str] = {}
        """site → its concrete topic prefix (where operator requests go)."""
        self.thumbnails: dict[Key, bytes] = {}
        self.messages = 0
        self._batch = Batch()
        self._warned: dict[str, float] = {}

    def load(self, now_s: float) -> None:
        """Shelves and acknowledgements from the store, at start-up."""
        for shelf in self.store.shelves(now_s):
            self.state.shelve(shelf)
        for ack in self.store.acks():
            self.state.acknowledge(ack)

    def take_batch(self) -> Batch:
        batch, self._batch = self._batch, Batch()
        return batch

    def touch(self, key: Key, alarms: bool = False) -> None:
        self._batch.channels.add(key)
        self._batch.alarms |= alarms

    # --- one message ------------------------------------------------------------------------

    def receive(self, topic: str, payload: bytes, now_s: float) -> None:
        self.messages += 1
        parts = topic_parts(self.patterns, topic)
        if parts is None:
            return
        prefix, rest = parts
        site = prefix.rsplit("/", 1)[-1]
        self.prefixes[site] = prefix
        try:
            self._dispatch(site, rest, payload, now_s)
        except PayloadError as error:
            if now_s - self._warned.get(topic, -WARN_EVERY_S) >= WARN_EVERY_S:
                self._warned[topic] = now_s
                self.log("payload ignored", topic=topic, error=str(error))

    def _dispatch(self, site: str, rest: list[str], payload: bytes, now_s: float) -> None:
        if rest == ["daemon", "status"]:
            status = json_object(payload, "daemon status") if payload else None
            if self.state.set_daemon(site, status):
                for key in self.state.channels:
                    if key[0] == site:
                        self.touch(key)
            return
        if len(rest) < 2 or rest[0] in ("daemon", "agents"):
            return
        channel, leaf = rest[0], rest[1:]
        key = (site, channel)
        if leaf == ["status"]:
            self._status(site, channel, payload, now_s)
        elif leaf == ["thumbnail"]:
            if payload:
                self.thumbnails[key] = payload
                self.state.set_thumbnail(site, channel, now_s)
                self.touch(key)
        elif leaf == ["alarms"]:
            self._alarm_event(site, json_object(payload, "alarm event"), now_s)
        elif len(leaf) == 3 and leaf[0] == "alarms" and leaf[2] == "thumbnail" and payload:
            self.store.add_picture(leaf[1], payload)
        elif leaf == ["failover", "state"]:
            state = json_object(payload, "failover state") if payload else None
            if self.state.set_encoder(site, channel, state):
                self.touch(key)
        elif leaf == ["failover", "request"]:
            request = json_object(payload, "failover request") if payload else None
            if self.state.set_request(site, channel, request):
                self.touch(key)
        elif leaf == ["failover", "audit"] and payload:
            audit = json_object(payload, "failover audit")
            at = audit.get("at")
            self.store.add_audit(
                site, channel, audit, epoch_s(at) if isinstance(at, str) else now_s
            )
            self._batch.audit.add(key)

    def _status(self, site: str, channel: str, payload: bytes, now_s: float) -> None:
        key = (site, channel)
        if not payload:  # the channel was removed from its daemon
            if self.state.set_status(site, channel, None):
                self.thumbnails.pop(key, None)
                self._batch.removed.add(key)
                self._batch.alarms = True
            self.store.reconcile(site, channel, set(), now_s)
            return
        status = parse_status(payload)
        record = self.state.channels.get(key)
        before = {a.id for a in record.status.alarms} if record and record.status else None
        if not self.state.set_status(site, channel, status):
            return
        now_ids = {a.id for a in status.alarms}
        self.touch(key, alarms=before != now_ids)
        if before == now_ids:
            return
        # Alarms the console first learns of from a status (raised while it was away).
        for alarm in status.alarms:
            event = {
                "id": alarm.id, "channel": channel, "input": alarm.input,
                "rendition": alarm.rendition, "alarm": alarm.alarm, "severity": alarm.severity,
                "start": alarm.start, "detail": alarm.detail,
            }  # fmt: skip
            self.store.raised(site, event, alarm.since_s)
        self.store.reconcile(site, channel, now_ids, now_s)

    def _alarm_event(self, site: str, event: dict[str, Any], now_s: float) -> None:
        for name in ("id", "alarm", "state", "channel", "input", "severity"):
            if not isinstance(event.get(name), str):
                raise PayloadError(f"alarm event: {name}: must be a string")
        wall = event.get("wallclock")
        at_s = epoch_s(wall) if isinstance(wall, str) else now_s
        detail = event.get("detail") if isinstance(event.get("detail"), dict) else {}
        if event["state"] == "raised":
            if self.store.raised(site, event, at_s):
                self.state.alarm_raised(now_s)
        elif event["state"] == "cleared":
            end = event.get("end")
            self.store.cleared(
                event["id"], end if isinstance(end, int | float) else None, at_s, detail or {}
            )
        self._batch.alarms = True

    # --- reads for the web app ----------------------------------------------------------------

    def channel_json(self, site: str, channel: str, now_s: float) -> dict[str, Any] | None:
        return self.state.tile(site, channel, now_s)

    def encode_batch(self, batch: Batch, now_s: float) -> str:
        tiles = [
            t for key in sorted(batch.channels) if (t := self.state.tile(*key, now_s)) is not None
        ]
        return json.dumps(
            {
                "type": "update",
                "now_s": now_s,
                "channels": [
                    t for t in tiles if self.state.channels[(t["site"], t["channel"])].status
                ],
                "removed": sorted(batch.removed),
                "alarms": batch.alarms,
                "audit": sorted(batch.audit),
                "flood": self.state.flood(now_s),
            },
            separators=(",", ":"),
        )

    def encode_snapshot(self, now_s: float, connected: bool) -> str:
        return json.dumps(
            {
                "type": "snapshot",
                "now_s": now_s,
                "channels": self.state.tiles(now_s),
                "flood": self.state.flood(now_s),
                "mqtt_connected": connected,
            },
            separators=(",", ":"),
        )
