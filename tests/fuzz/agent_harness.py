"""The real ``failover.agent.Agent`` driven in memory, for the fuzzers: its MQTT link and its
encoder action are recorders, everything between them (command decoding, idempotency, the
stale / wrong channel / unknown input checks, the queue, the acks) is the agent's own code.

``commands_through_agent(payloads, now_s)`` hands each payload to the agent as a message on
the command topic of channel ``news`` (inputs primary and backup, primary on air) and returns
what it published as acks, the switches it ran and what it logged. The end-to-end agent, with
Mosquitto and real encoders, is tested in ``tests/failover/test_agent.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiomqtt

from failover.agent.agent import Agent
from failover.agent.settings import AgentChannel, AgentSettings, ScriptSettings
from failover.protocol import Ack, command_topic

PREFIX = "streamqc/fuzz"
CHANNEL = "news"
TOPIC = command_topic(PREFIX, CHANNEL)
INPUTS = {"primary": "udp://127.0.0.1:5000", "backup": "udp://127.0.0.1:5002"}
MAX_COMMAND_AGE_S = 30.0


class MemoryLink:
    """The agent's Link, connected at once; what it publishes is recorded."""

    def __init__(self) -> None:
        self.handlers: dict[str, Callable[[aiomqtt.Message], None]] = {}
        self.published: list[tuple[str, bytes, bool]] = []
        self.session_started = asyncio.Event()

    @property
    def connected(self) -> bool:
        return True

    def subscribe(self, topic_filter: str, handler: Callable[[aiomqtt.Message], None]) -> None:
        self.handlers[topic_filter] = handler

    async def run(
        self,
        session: Callable[[Any], Awaitable[None]],
        closing: asyncio.Event,
        *,
        will: Callable[[], aiomqtt.Will | None],
        on_up: Callable[[], None],
        on_down: Callable[[str, float], None],
    ) -> None:
        on_up()
        self.session_started.set()
        await session(self)  # it publishes through us as through a client

    async def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        self.published.append((topic, bytes(payload), retain))

    def deliver(self, payload: bytes, *, retain: bool = False) -> None:
        message = aiomqtt.Message(TOPIC, payload, qos=1, retain=retain, mid=1, properties=None)
        for topic_filter, handler in self.handlers.items():
            if message.topic.matches(topic_filter):
                handler(message)


@dataclass
class RecordingAction:
    """An encoder whose switches always work, recorded."""

    switches: list[str] = field(default_factory=list)

    @property
    def running(self) -> bool | None:
        return None

    async def start(self, input_name: str, input_url: str) -> None:
        pass

    async def switch(self, to_input_name: str, input_url: str) -> None:
        self.switches.append(to_input_name)

    async def close(self) -> None:
        pass


@dataclass
class RecordingLog:
    lines: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def info(self, event: str, **fields: Any) -> None:
        self.lines.append(("info", event, fields))

    def warning(self, event: str, **fields: Any) -> None:
        self.lines.append(("warning", event, fields))

    def error(self, event: str, **fields: Any) -> None:
        self.lines.append(("error", event, fields))


@dataclass
class Outcome:
    acks: list[Ack]
    switches: list[str]
    log: list[tuple[str, str, dict[str, Any]]]

    def acks_of(self, command_id: str) -> list[Ack]:
        return [a for a in self.acks if a.command_id == command_id]


def settings() -> AgentSettings:
    action = ScriptSettings(path="/bin/true")  # replaced by RecordingAction
    return AgentSettings(
        agent_id="fuzz",
        prefix=PREFIX,
        channels=(AgentChannel(CHANNEL, INPUTS, action),),
        max_command_age_s=MAX_COMMAND_AGE_S,
    )


def commands_through_agent(payloads: list[bytes], now_s: float) -> Outcome:
    """Each payload as a command message, in order; the agent's clock reads ``now_s``."""

    async def scenario() -> Outcome:
        link, action, log = MemoryLink(), RecordingAction(), RecordingLog()

        def no_delays(max_s: float) -> Any:
            raise AssertionError("the recording action never restarts")

        agent = Agent(
            settings(),
            link,
            log,
            delays=no_delays,
            actions={CHANNEL: action},
            clock=lambda: now_s,
            host="fuzz-host",
        )
        runner = asyncio.create_task(agent.run())
        await asyncio.wait_for(link.session_started.wait(), 5)
        for payload in payloads:
            link.deliver(payload)
            for _ in range(20):  # let its switch worker and its publisher run
                await asyncio.sleep(0)
        agent.stop()
        await asyncio.wait_for(runner, 5)
        acks = [
            Ack.from_json(payload)
            for topic, payload, retain in link.published
            if topic.endswith("/failover/ack")
        ]
        return Outcome(acks, action.switches, log.lines)

    return asyncio.run(scenario())
