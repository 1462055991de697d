"""The encoder-side agent: takes switch commands over MQTT and puts the other input on air.

Topics (``protocol`` has the channel ones; ``<prefix>`` is the daemon's, ``streamqc/<site>``)::

    <prefix>/<channel>/failover/command   subscribed, QoS 1         Command
    <prefix>/<channel>/failover/ack       published, QoS 1          Ack
    <prefix>/<channel>/failover/state     published, QoS 1, retained EncoderState (+ agent_id,
                                                                     encoder_running)
    <prefix>/agents/<agent_id>/status     published, QoS 1, retained, also the Last Will:
        {"version": 1, "state": "online" | "offline", "agent_id", "host", "channels",
         "since", "reason" (offline only: "connection lost" | "stopped")}

How commands are handled (the protocol leaves these to the agent):

- **Duplicates.** The last ``remember_commands`` command ids are kept with their latest ack; a
  command seen before is not run again: its latest ack (``accepted`` while it waits or runs,
  then ``done`` / ``failed`` / ``rejected``) is published again, byte for byte.
- **One switch at a time per channel.** A command arriving while a switch of its channel is in
  progress is ``accepted`` and waits its turn (first come, first served; at most
  ``max_queued`` wait, more are ``rejected``). Rejecting instead would fail an operator's
  override that supersedes an automatic switch still running. Channels switch independently.
- **Already on air.** A command for the input already on air is ``done`` at once without
  touching the encoder (a restart would cut the output), unless the agent's own encoder is
  down, in which case it is started again.
- **Rejected** (never tried): issued longer ago than ``max_command_age`` (stale), or further
  ahead than it (the clocks disagree, so its age means nothing), or with an ``issued_at`` that
  is not a time; the payload's channel is not the topic's; the input is unknown.
  A payload that is not a valid command is logged in one line and ignored (it has no id to
  answer), and so is a retained command (it would run again at every reconnect).
- **State.** Every channel's ``EncoderState`` is retained and published again on every
  reconnect: on start the input remembered in ``state_file`` (else the configured initial one),
  after each switch the new one. A failed switch leaves ``active_input`` as it was (the process
  action puts the previous input back on air). When the agent stops it publishes each state
  with ``online`` false, then its status ``offline``, then disconnects cleanly; if it dies the
  broker publishes the Last Will. The encoder's own restarts show in ``encoder_running``.
- Commands are not queued by the broker while the agent is away (clean session): the daemon
  resends until its ack timeout, then escalates; a stale command run minutes later would be
  worse.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import aiomqtt

from failover.agent.actions import Action, ActionError, Log, MakeDelays, make_action
from failover.agent.settings import AgentChannel, AgentSettings
from failover.protocol import (
    VERSION,
    Ack,
    AckStatus,
    Command,
    EncoderState,
    ProtocolError,
    ack_topic,
    command_topic,
    state_topic,
)

STOP_TIMEOUT_S = 5.0
"""How long a stop may take to tell the broker (states offline, status offline) and disconnect."""


def agent_status_topic(prefix: str, agent_id: str) -> str:
    """Where an agent keeps its retained status (online / offline, also its Last Will)."""
    return f"{prefix.rstrip('/')}/agents/{agent_id}/status"


def agent_status(
    state: Literal["online", "offline"], agent_id: str, host: str, **fields: Any
) -> bytes:
    """The payload of ``agent_status_topic``."""
    body = {"version": VERSION, "state": state, "agent_id": agent_id, "host": host, **fields}
    return json.dumps(body, separators=(",", ":")).encode()


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Notify(Protocol):
    """What the agent tells its service manager (``monitor.daemon.sdnotify.Notifier`` fits)."""

    watchdog_interval_s: float | None

    def ready(self, status: str | None = None) -> None: ...

    def status(self, text: str) -> None: ...

    def watchdog(self) -> None: ...

    def stopping(self, status: str | None = None) -> None: ...


class Link(Protocol):
    """The agent's connection to its broker, kept up with backoff by its owner (the command
    line gives ``monitor.util.mqtt_connection.MqttConnection``)."""

    @property
    def connected(self) -> bool: ...

    def subscribe(self, topic_filter: str, handler: Callable[[aiomqtt.Message], None]) -> None:
        """Hand every matching message to ``handler``, after every reconnect too."""

    async def run(
        self,
        session: Callable[[aiomqtt.Client], Awaitable[None]],
        closing: asyncio.Event,
        *,
        will: Callable[[], aiomqtt.Will | None],
        on_up: Callable[[], None],
        on_down: Callable[[str, float], None],
    ) -> None:
        """Connect, run ``session`` per connection, reconnect until it returns or a try fails
        while ``closing`` is set."""


@dataclass
class _Channel:
    settings: AgentChannel
    action: Action
    active_input: str
    since: str
    last_command_id: str | None
    queue: asyncio.Queue[Command] = field(default_factory=asyncio.Queue)
    busy: Command | None = None

    @property
    def name(self) -> str:
        return self.settings.name


class Agent:
    """Runs until ``stop()`` (or cancellation): actions started, MQTT connected (forever)."""

    def __init__(
        self,
        settings: AgentSettings,
        link: Link,
        log: Log,
        *,
        delays: MakeDelays,
        notify: Notify | None = None,
        host: str | None = None,
        actions: Mapping[str, Action] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``delays`` makes the waits between an encoder's restarts; ``actions`` replaces the
        configured action of the channels it names (tests)."""
        self.settings = settings
        self._link = link
        self._log = log
        self._notify = notify
        self._host = host or socket.gethostname()
        self._clock = clock
        self._status_topic = agent_status_topic(settings.prefix, settings.agent_id)
        self._started = utc_now()
        self._online = True
        self._channels: dict[str, _Channel] = {}
        self._by_topic: dict[str, _Channel] = {}
        remembered = self._load_state()
        for spec in settings.channels:

            def changed(name: str = spec.name) -> None:
                if name in self._channels:
                    self._publish_state(self._channels[name])

            action = (actions or {}).get(spec.name) or make_action(
                spec.action, spec.name, log, changed, delays
            )
            memory = remembered.get(spec.name, {})
            active = memory.get("active_input")
            if active not in spec.inputs:
                memory, active = {}, spec.initial
            channel = _Channel(
                spec,
                action,
                active_input=str(active),
                since=str(memory.get("since") or self._started),
                last_command_id=memory.get("last_command_id"),
            )
            self._channels[spec.name] = channel
            self._by_topic[command_topic(settings.prefix, spec.name)] = channel
        self._answers: OrderedDict[str, tuple[str, Ack]] = OrderedDict()
        """command_id → (ack topic, latest ack), oldest first."""
        self._retained: dict[str, bytes] = {}
        self._due: dict[str, None] = {}
        """Retained topics to publish, in order (a dict: ordered, no duplicates)."""
        self._acks: list[tuple[str, bytes]] = []
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._closing = asyncio.Event()
        for topic in self._by_topic:
            link.subscribe(topic, self._on_message)

    @property
    def connected(self) -> bool:
        return self._link.connected

    # --- Lifecycle --------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask ``run()`` to stop: encoders stopped, offline published, clean disconnect."""
        self._stopping.set()

    async def run(self) -> None:
        channels = list(self._channels.values())
        self._set_status("online")
        for channel in channels:
            self._publish_state(channel)
        await asyncio.gather(
            *(c.action.start(c.active_input, c.settings.inputs[c.active_input]) for c in channels)
        )
        tasks = [asyncio.create_task(self._work(c), name=f"switch-{c.name}") for c in channels]
        connection = asyncio.create_task(
            self._link.run(
                self._send,
                self._closing,
                will=self._will,
                on_up=self._connected_now,
                on_down=self._disconnected,
            ),
            name="mqtt",
        )
        if self._notify is not None:
            tasks.append(asyncio.create_task(self._watchdog(self._notify), name="watchdog"))
            # Ready once the encoders run, broker or not: a broker down at boot must not make
            # systemd kill the agent (and its encoder) at its start timeout.
            self._notify.ready(self._summary())
        self._log.info(
            "agent started",
            agent_id=self.settings.agent_id,
            channels=len(channels),
            status_topic=self._status_topic,
        )
        try:
            await self._stopping.wait()
        finally:
            await self._shutdown(tasks, connection)

    async def _shutdown(
        self, tasks: list[asyncio.Task[None]], connection: asyncio.Task[None]
    ) -> None:
        if self._notify is not None:
            self._notify.stopping("stopping")
        self._log.info("agent stopping")
        unfinished = {
            name: ([c.busy] if c.busy else []) + _drain(c.queue)
            for name, c in self._channels.items()
        }
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for name, commands in unfinished.items():
            for command in commands:
                why = "the agent stopped before the switch was over"
                self._answer(self._channels[name], command, "failed", why)
        results = await asyncio.gather(
            *(c.action.close() for c in self._channels.values()), return_exceptions=True
        )
        for channel, result in zip(self._channels.values(), results, strict=True):
            if isinstance(result, BaseException):
                self._log.error("action did not stop", channel=channel.name, reason=repr(result))
        self._online = False
        for channel in self._channels.values():
            self._publish_state(channel)
        self._set_status("offline", reason="stopped")
        self._closing.set()
        self._wake.set()
        await asyncio.wait({connection}, timeout=STOP_TIMEOUT_S)
        if not connection.done():
            self._log.warning(
                "could not tell the broker that the agent stops", queued=self._pending
            )
            connection.cancel()
            await asyncio.gather(connection, return_exceptions=True)
        self._log.info("agent stopped")

    async def _watchdog(self, notify: Notify) -> None:
        """Pings from the event loop itself: a hung loop stops them and systemd restarts us."""
        interval_s = notify.watchdog_interval_s
        while interval_s is not None:
            notify.watchdog()
            await asyncio.sleep(interval_s)

    def _summary(self) -> str:
        link = "connected" if self.connected else "waiting for the broker"
        on_air = ", ".join(f"{c.name}: {c.active_input}" for c in self._channels.values())
        return f"{link}; {on_air}"

    # --- Commands ---------------------------------------------------------------------------

    def _on_message(self, message: aiomqtt.Message) -> None:
        channel = self._by_topic.get(message.topic.value)
        if channel is None:
            return
        if message.retain:
            self._log.warning(
                "retained command ignored (commands must not be retained)", channel=channel.name
            )
            return
        payload = message.payload
        if isinstance(payload, bytearray):
            payload = bytes(payload)
        raw = payload if isinstance(payload, bytes | str) else json.dumps(payload)
        try:
            command = Command.from_json(raw)
        except ProtocolError as error:
            self._log.warning("invalid command ignored", channel=channel.name, reason=str(error))
            return
        self._handle(channel, command)

    def _handle(self, channel: _Channel, command: Command) -> None:
        known = self._answers.get(command.command_id)
        if known is not None:
            topic, ack = known
            self._answers.move_to_end(command.command_id)
            self._log.info(
                "duplicate command: ack sent again",
                channel=channel.name,
                command_id=command.command_id,
                status=ack.status,
            )
            self._send_ack(topic, ack)
            return
        inputs = channel.settings.inputs
        age_s = self._age_s(command)
        max_age_s = self.settings.max_command_age_s
        if age_s is None:
            why = (
                f"issued_at {command.issued_at!r} is not an ISO 8601 time: the command's age "
                "cannot be checked"
            )
            self._answer(channel, command, "rejected", why)
        elif age_s > max_age_s:
            why = (
                f"stale: issued {age_s:.0f} s ago, at {command.issued_at} (max_command_age "
                f"{max_age_s:g} s)"
            )
            self._answer(channel, command, "rejected", why)
        elif age_s < -max_age_s:
            # Its age cannot be trusted: a replayed command with a date in the future would
            # never go stale.
            why = (
                f"issued {-age_s:.0f} s in the future, at {command.issued_at}: the clocks are "
                f"out of step by more than max_command_age ({max_age_s:g} s)"
            )
            self._answer(channel, command, "rejected", why)
        elif command.channel != channel.name:
            why = f"command for channel '{command.channel}' came on the topic of '{channel.name}'"
            self._answer(channel, command, "rejected", why)
        elif command.to not in inputs:
            why = f"unknown input '{command.to}' (inputs: {', '.join(inputs)})"
            self._answer(channel, command, "rejected", why)
        elif channel.queue.qsize() >= self.settings.max_queued:
            why = f"{channel.queue.qsize()} commands already waiting behind the switch in progress"
            self._answer(channel, command, "rejected", why)
        else:
            ahead = channel.busy
            detail = (
                f"waiting for command {ahead.command_id} (to {ahead.to}) to finish"
                if ahead is not None
                else f"switching to {command.to}"
            )
            self._answer(channel, command, "accepted", detail)
            channel.queue.put_nowait(command)

    def _age_s(self, command: Command) -> float | None:
        """Seconds since the command was issued, by its ``issued_at``; None if unreadable."""
        try:
            issued = datetime.fromisoformat(command.issued_at.replace("Z", "+00:00"))
        except ValueError:
            return None
        if issued.tzinfo is None:
            issued = issued.replace(tzinfo=UTC)
        return self._clock() - issued.timestamp()

    async def _work(self, channel: _Channel) -> None:
        """Runs the channel's commands one at a time, in the order they came."""
        while True:
            command = await channel.queue.get()
            channel.busy = command
            try:
                await self._execute(channel, command)
            finally:
                channel.busy = None

    async def _execute(self, channel: _Channel, command: Command) -> None:
        to, was = command.to, channel.active_input
        fields = {"channel": channel.name, "command_id": command.command_id, "to": to}
        if to == was and channel.action.running is not False:
            channel.last_command_id = command.command_id
            self._publish_state(channel)
            self._answer(channel, command, "done", f"{to} already on air")
            return
        self._log.info(
            "switching", **fields, reason=list(command.reason), operator=command.operator
        )
        started_s = time.monotonic()
        try:
            await channel.action.switch(to, channel.settings.inputs[to])
        except ActionError as error:
            self._log.error("switch failed", **fields, reason=str(error))
            self._answer(channel, command, "failed", str(error))
            return
        except Exception as error:  # noqa: BLE001 - a broken action must not stop the agent
            self._log.error("switch failed", **fields, reason=repr(error))
            self._answer(channel, command, "failed", f"{type(error).__name__}: {error}")
            return
        took_s = time.monotonic() - started_s
        channel.active_input = to
        channel.since = utc_now()
        channel.last_command_id = command.command_id
        self._save_state()
        self._publish_state(channel)  # before the ack: whoever reads ``done`` finds the state
        self._log.info("switched", **fields, previous=was, took_s=round(took_s, 3))
        self._answer(
            channel, command, "done", f"{to} on air (switched from {was} in {took_s:.1f} s)"
        )

    def _answer(self, channel: _Channel, command: Command, status: AckStatus, detail: str) -> None:
        ack = Ack(command.command_id, channel.name, status, utc_now(), detail)
        topic = ack_topic(self.settings.prefix, channel.name)
        self._answers[command.command_id] = (topic, ack)
        self._answers.move_to_end(command.command_id)
        while len(self._answers) > self.settings.remember_commands:
            self._answers.popitem(last=False)
        if status == "rejected":
            self._log.warning(
                "command rejected",
                channel=channel.name,
                command_id=command.command_id,
                reason=detail,
            )
        self._send_ack(topic, ack)

    # --- What is published ------------------------------------------------------------------

    def _send_ack(self, topic: str, ack: Ack) -> None:
        self._acks.append((topic, ack.to_json()))
        del self._acks[: -self.settings.remember_commands]  # bounded while the broker is away
        self._wake.set()

    def _publish_state(self, channel: _Channel) -> None:
        state = EncoderState(
            channel=channel.name,
            active_input=channel.active_input,
            since=channel.since,
            last_command_id=channel.last_command_id,
            online=self._online,
        )
        body = json.loads(state.to_json())
        body.update(agent_id=self.settings.agent_id, encoder_running=channel.action.running)
        payload = json.dumps(body, separators=(",", ":")).encode()
        self._set_retained(state_topic(self.settings.prefix, channel.name), payload)

    def _set_status(self, state: Literal["online", "offline"], **fields: Any) -> None:
        payload = agent_status(
            state,
            self.settings.agent_id,
            self._host,
            channels=list(self._channels),
            since=self._started,
            **fields,
        )
        self._set_retained(self._status_topic, payload)

    def _set_retained(self, topic: str, payload: bytes) -> None:
        self._retained[topic] = payload
        self._due.pop(topic, None)  # to the end: published in the order they were set
        self._due[topic] = None
        self._wake.set()

    @property
    def _pending(self) -> int:
        return len(self._due) + len(self._acks)

    # --- The connection ---------------------------------------------------------------------

    def _will(self) -> aiomqtt.Will:
        status = agent_status(
            "offline",
            self.settings.agent_id,
            self._host,
            channels=list(self._channels),
            since=self._started,
            reason="connection lost",
        )
        return aiomqtt.Will(self._status_topic, status, qos=1, retain=True)

    def _connected_now(self) -> None:
        for topic in list(self._retained):  # the broker may have lost them: all again
            self._due.setdefault(topic, None)
        self._wake.set()
        self._log.info("mqtt connected", channels=len(self._channels))
        if self._notify is not None:
            self._notify.status(self._summary())

    def _disconnected(self, reason: str, retry_in_s: float) -> None:
        self._log.warning("mqtt disconnected", reason=reason, retry_in_s=round(retry_in_s, 2))
        if self._notify is not None:
            self._notify.status(self._summary())

    async def _send(self, client: aiomqtt.Client) -> None:
        """Publish retained values first (a state before the ack that reports it), then acks."""
        while True:
            self._wake.clear()
            while self._due:
                topic = next(iter(self._due))
                payload = self._retained[topic]
                await client.publish(topic, payload, qos=1, retain=True)
                if self._retained[topic] is payload and topic in self._due:
                    del self._due[topic]
            while self._acks and not self._due:
                topic, payload = self._acks[0]
                await client.publish(topic, payload, qos=1)
                if self._acks and self._acks[0][1] is payload:
                    del self._acks[0]
            if self._due:
                continue
            if self._closing.is_set() and not self._acks:
                return
            if not self._acks:
                await self._wake.wait()

    # --- Remembering the input on air -------------------------------------------------------

    def _load_state(self) -> dict[str, dict[str, Any]]:
        path = self.settings.state_file
        if path is None or not os.path.exists(path):
            return {}
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            channels = data["channels"]
            if not isinstance(channels, dict):
                raise TypeError("channels is not an object")
            return {str(k): dict(v) for k, v in channels.items() if isinstance(v, dict)}
        except (OSError, ValueError, KeyError, TypeError) as error:
            self._log.warning("state file ignored", file=path, reason=str(error))
            return {}

    def _save_state(self) -> None:
        path = self.settings.state_file
        if path is None:
            return
        body = {
            "version": VERSION,
            "channels": {
                c.name: {
                    "active_input": c.active_input,
                    "since": c.since,
                    "last_command_id": c.last_command_id,
                }
                for c in self._channels.values()
            },
        }
        temporary = f"{path}.tmp"
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(temporary).write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
            os.replace(temporary, path)
        except OSError as error:
            self._log.error("cannot save the state file", file=path, reason=error.strerror)


def _drain(queue: asyncio.Queue[Command]) -> list[Command]:
    commands = []
    while not queue.empty():
        commands.append(queue.get_nowait())
    return commands
