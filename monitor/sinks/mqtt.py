"""The MQTT publisher: alarm events in order and at least once, retained status, thumbnails.

One drainer task owns the connection and publishes in order: on every (re)connect the retained
values it holds, then the spooled events oldest first, each removed from the spool only once
the broker acknowledged it (PUBACK), then transient messages (QoS 0, dropped while offline).
The connection (``monitor.util.mqtt_connection``) is retried forever with capped, jittered
backoff and each loss logged in one line; ``close()`` sends a clean DISCONNECT so the broker
does not publish the LWT.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import deque
from collections.abc import Callable, Sequence

import aiomqtt

from monitor.sinks.spool import Spool
from monitor.util.backoff import Backoff
from monitor.util.mqtt_connection import BrokerSettings, MqttConnection

_MISSING = object()


class MqttSink:
    """Publishes to one broker, reconnecting forever; events survive outages in the spool."""

    def __init__(
        self,
        settings: BrokerSettings,
        spool: Spool,
        *,
        will_topic: str,
        will_payload: bytes,
        log: Callable[..., None],
        backoff_first_s: float = 0.25,
        backoff_max_s: float = 1.5,
        timeout_s: float = 10.0,
        in_flight: int = 32,
        transient_max: int = 16,
    ) -> None:
        self._spool = spool
        self._will = aiomqtt.Will(will_topic, will_payload, qos=1, retain=True)
        self._log = log
        self._connection = MqttConnection(
            settings,
            log=log,
            backoff=Backoff(backoff_first_s, backoff_max_s, spread=(0.5, 1.0)),
            timeout_s=timeout_s,
            in_flight=in_flight,
        )
        self._timeout_s = timeout_s
        self._in_flight = in_flight
        """Events published before waiting for the first PUBACK (ordered on one connection)."""
        self._retained: dict[str, bytes | None] = {}
        self._retained_due: set[str] = set()
        self._transient: deque[tuple[str, bytes, bool]] = deque(maxlen=transient_max)
        self._immediate: deque[tuple[str, bytes, bool]] = deque(maxlen=256)
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self.delivered = 0
        """Spooled events acknowledged by the broker."""
        self.transient_dropped = 0
        """Transient messages dropped because no broker was connected."""

    @property
    def connected(self) -> bool:
        return self._connection.connected

    @property
    def reconnects(self) -> int:
        """Connections made after the first one (i.e. recoveries from a lost connection)."""
        return self._connection.reconnects

    @property
    def queued(self) -> int:
        """Events waiting in the spool for the broker."""
        return len(self._spool)

    @property
    def dropped(self) -> int:
        """Events dropped from the full spool (oldest first) since it was opened."""
        return self._spool.dropped

    @property
    def _broker(self) -> str:
        return self._connection.broker

    # --- What the daemon calls ----------------------------------------------------------------

    def publish_event(self, topic: str, payload: bytes) -> None:
        """Durable, QoS 1: queued on disk first, delivered in order whenever a broker is there."""
        try:
            self._spool.append(topic, payload, qos=1)
        except sqlite3.Error as error:  # e.g. disk full: say so, but never stop the caller
            self._log("mqtt queue write failed", topic=topic, reason=str(error))
            return
        self._wake.set()

    def set_retained(self, topic: str, payload: bytes | None) -> None:
        """Keep ``payload`` as the topic's retained value (published now and on every reconnect).

        None deletes it on the broker (one empty retained message) and forgets the topic.
        """
        self._retained[topic] = payload
        self._retained_due.add(topic)
        self._wake.set()

    def publish_transient(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """QoS 0, best effort (e.g. thumbnails): dropped when not connected, never blocks."""
        if not self.connected or self._closing.is_set():
            self.transient_dropped += 1
            return
        self._transient.append((topic, payload, retain))  # full: the oldest goes
        self._wake.set()

    def publish_now(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """QoS 1 but not queued on disk: for what is stale once the broker is back (a switch
        command has its own ack timeout and escalation). Dropped when not connected."""
        if not self.connected or self._closing.is_set():
            self.transient_dropped += 1
            return
        self._immediate.append((topic, payload, retain))
        self._wake.set()

    def subscribe(self, topic_filter: str, handler: Callable[[str, bytes], None]) -> None:
        """Call ``handler(topic, payload)`` for every message matching ``topic_filter`` (QoS 1),
        from now on and after every reconnect."""

        def deliver(message: aiomqtt.Message) -> None:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            handler(message.topic.value, payload)

        self._connection.subscribe(topic_filter, deliver)

    def unsubscribe(self, topic_filter: str) -> None:
        self._connection.unsubscribe(topic_filter)

    async def run(self) -> None:
        """Connect and publish until ``close()``; only CancelledError gets out."""
        if self._runner is not None:
            raise RuntimeError("MqttSink.run() is already running")
        self._runner = asyncio.create_task(
            self._connection.run(
                self._drain,
                self._closing,
                will=lambda: self._will,
                on_up=self._connected_now,
                on_down=self._disconnected,
            )
        )
        try:
            await self._runner
        except asyncio.CancelledError:
            this = asyncio.current_task()
            if this is not None and this.cancelling():
                raise  # run() itself was cancelled, not just stopped by close()
        finally:
            self._runner.cancel()
            await asyncio.wait({self._runner})

    async def close(self, final_retained: dict[str, bytes | None], timeout_s: float = 5.0) -> None:
        """Set the final retained values, flush what fits in ``timeout_s``, DISCONNECT cleanly.

        Events not delivered by then stay in the spool for the next start.
        """
        for topic, payload in final_retained.items():
            self.set_retained(topic, payload)
        self._closing.set()
        self._wake.set()
        runner = self._runner
        if runner is None or runner.done():
            return
        await asyncio.wait({runner}, timeout=timeout_s)
        if not runner.done():
            self._log("mqtt close timed out", broker=self._broker, queued=self.queued)
            runner.cancel()
            await asyncio.wait({runner}, timeout=self._timeout_s)

    # --- The connection --------------------------------------------------------------------

    def _connected_now(self) -> None:
        self._retained_due.update(self._retained)
        self._log("mqtt connected", broker=self._broker, queued=self.queued)

    def _disconnected(self, reason: str, retry_in_s: float) -> None:
        self._transient.clear()
        self._immediate.clear()
        self._log(
            "mqtt disconnected",
            broker=self._broker,
            reason=reason,
            retry_in_s=round(retry_in_s, 2),
            queued=self.queued,
        )

    async def _drain(self, client: aiomqtt.Client) -> None:
        """Publish whatever is due, then sleep until there is more; return once closed."""
        while True:
            self._wake.clear()
            while self._immediate:
                topic, payload, retain = self._immediate.popleft()
                await client.publish(topic, payload, qos=1, retain=retain)
            await self._publish_retained(client)
            if await self._publish_spooled(client):
                continue  # retained values set meanwhile go before the next batch
            if self._closing.is_set() and not self._retained_due:
                return
            while self._transient:
                topic, payload, retain = self._transient.popleft()
                await client.publish(topic, payload, qos=0, retain=retain)
            if not self._retained_due and not self._immediate:
                await self._wake.wait()

    async def _publish_spooled(self, client: aiomqtt.Client) -> bool:
        """Publish the oldest spooled events, removing each once acknowledged; False if none."""
        batch = self._spool.head(self._in_flight)

        def acked(i: int) -> None:
            self._spool.remove(batch[i].seq)
            self.delivered += 1

        messages = [(m.topic, m.payload, m.qos, False) for m in batch]
        await self._publish_in_order(client, messages, acked)
        return bool(batch)

    async def _publish_retained(self, client: aiomqtt.Client) -> None:
        due = sorted(self._retained_due)
        values = [self._retained.get(topic) for topic in due]

        def acked(i: int) -> None:
            topic = due[i]
            if self._retained.get(topic, _MISSING) is values[i]:  # not changed meanwhile
                self._retained_due.discard(topic)
                if values[i] is None:
                    del self._retained[topic]

        messages = [(t, v or b"", 1, True) for t, v in zip(due, values, strict=True)]
        await self._publish_in_order(client, messages, acked)

    async def _publish_in_order(
        self,
        client: aiomqtt.Client,
        messages: Sequence[tuple[str, bytes, int, bool]],
        acked: Callable[[int], None],
    ) -> None:
        """Publish all, several awaiting their PUBACK at once; ``acked(i)`` in order as they are.

        Each ``client.publish`` hands its message to paho before its first await, and tasks
        start in creation order, so the messages go out (and are retried) in order.
        """
        tasks = [
            asyncio.create_task(client.publish(topic, payload, qos=qos, retain=retain))
            for topic, payload, qos, retain in messages
        ]
        try:
            for i, task in enumerate(tasks):
                await task
                acked(i)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
