"""All of the console's broker I/O: subscribe to every watched prefix, hand each message on,
publish operator requests. Nothing else in the console imports aiomqtt.

The session is persistent (``clean_session=False`` with a fixed client id): QoS 1 alarm events
published while the console was restarting wait at the broker and are recorded when it comes
back. The connection is retried forever with a capped exponential backoff.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiomqtt

from monitor.sinks.mqtt import BrokerSettings

BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0
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
        self.reconnects = 0

    def _new_client(self) -> aiomqtt.Client:
        b = self.broker
        return aiomqtt.Client(
            b.host,
            b.port,
            identifier=b.client_id,
            username=b.username,
            password=b.password,
            tls_context=b.tls,
            clean_session=False,
            keepalive=max(1, round(b.keepalive_s)),
            timeout=10.0,
            max_queued_incoming_messages=100_000,
        )

    async def run(self) -> None:
        """Receive until cancelled, reconnecting with backoff."""
        delay_s = BACKOFF_FIRST_S
        while True:
            try:
                async with self._new_client() as client:
                    for topic_filter in self.filters:
                        await client.subscribe(topic_filter, qos=1)
                    self._client = client
                    self.connected.set()
                    self.log("broker connected", broker=f"{self.broker.host}:{self.broker.port}")
                    delay_s = BACKOFF_FIRST_S
                    async for message in client.messages:
                        payload = message.payload if isinstance(message.payload, bytes) else b""
                        try:
                            self.on_message(str(message.topic), payload)
                        except Exception as error:  # one bad message must not stop the console
                            self.log(
                                "message not handled", topic=str(message.topic), error=repr(error)
                            )
            except aiomqtt.MqttError as error:
                self.log("broker unreachable", error=str(error), retry_in_s=delay_s)
            finally:
                self._client = None
                self.connected.clear()
            self.reconnects += 1
            await asyncio.sleep(delay_s)
            delay_s = min(BACKOFF_MAX_S, delay_s * 2)

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
