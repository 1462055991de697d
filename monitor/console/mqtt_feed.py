"""All of the console's broker I/O: subscribe to every watched prefix, hand each message on,
publish operator requests. Nothing else in the console imports aiomqtt.

The connection is the one every part of streamqc uses (``monitor.util.mqtt_connection``),
kept up with backoff. Its session is persistent (``clean_session=False`` with a fixed client
id): QoS 1 alarm events published while the console was restarting wait at the broker and are
recorded when it comes back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiomqtt

from monitor.util.mqtt_connection import BrokerSettings, MqttConnection

PUBLISH_TIMEOUT_S = 5.0

OnMessage = Callable[[str, bytes], None]
Log = Callable[..., None]


class FeedUnavailable(Exception):
    """The broker is not connected: an operator's request could not be published."""


class MqttFeed:
    def __init__(
        self, broker: BrokerSettings, filters: list[str], on_message: OnMessage, log: Log
    ) -> None:
        self.broker = broker
        self.filters = filters
        self.on_message = on_message
        self.log = log
        self._client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()
        self._connection = MqttConnection(
            broker, log=log, persistent=True, max_queued_incoming=100_000
        )
        for topic_filter in filters:
            self._connection.subscribe(topic_filter, self._deliver)

    @property
    def reconnects(self) -> int:
        return self._connection.reconnects

    async def run(self) -> None:
        """Receive until cancelled, reconnecting with backoff."""
        await self._connection.run(
            self._session, asyncio.Event(), on_up=self._up, on_down=self._down
        )

    def _deliver(self, message: aiomqtt.Message) -> None:
        payload = message.payload if isinstance(message.payload, bytes) else b""
        self.on_message(message.topic.value, payload)

    def _up(self) -> None:
        self.log("broker connected", broker=self._connection.broker)

    def _down(self, reason: str, retry_in_s: float) -> None:
        self.log("broker unreachable", error=reason, retry_in_s=round(retry_in_s, 2))

    async def _session(self, client: aiomqtt.Client) -> None:
        """While connected: the client operators' requests are published with."""
        self._client = client
        self.connected.set()
        try:
            await asyncio.Event().wait()  # until the connection is lost or we are cancelled
        finally:
            self._client = None
            self.connected.clear()

    async def publish(self, topic: str, payload: bytes) -> None:
        """QoS 1, not retained; FeedUnavailable when the broker is away or does not answer."""
        client = self._client
        if client is None:
            raise FeedUnavailable("the console is not connected to the broker")
        try:
            await asyncio.wait_for(client.publish(topic, payload, qos=1), PUBLISH_TIMEOUT_S)
        except (aiomqtt.MqttError, TimeoutError) as error:
            raise FeedUnavailable(f"the broker did not take the message: {error}") from None


def topic_parts(patterns: list[list[str]], topic: str) -> tuple[str, list[str]] | None:
    """(concrete prefix, the levels after it) of a topic under one of the watched prefixes."""
    levels = topic.split("/")
    for pattern in patterns:
        if len(levels) <= len(pattern):
            continue
        if all(p == "+" or p == level for p, level in zip(pattern, levels, strict=False)):
            return "/".join(levels[: len(pattern)]), levels[len(pattern) :]
    return None


def subscriptions(prefixes: tuple[str, ...]) -> tuple[list[str], list[list[str]]]:
    """The topic filters to subscribe to and the prefixes as level lists, for ``topic_parts``."""
    return [f"{p}/#" for p in prefixes], [p.split("/") for p in prefixes]
