"""The MQTT publisher: alarm events in order and at least once, retained status, thumbnails.

One drainer task owns the connection and publishes in order: on every (re)connect the retained
values it holds, then the spooled events oldest first, each removed from the spool only once
the broker acknowledged it (PUBACK), then transient messages (QoS 0, dropped while offline).
A lost connection is logged in one line and retried forever with capped, jittered backoff;
``close()`` sends a clean DISCONNECT so the broker does not publish the LWT.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sqlite3
import ssl
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt

from failover.aio import until_first
from monitor.config import MqttConfig, TlsConfig, broker_address
from monitor.errors import ConfigError
from monitor.sinks.spool import Spool

PASSWORD_ENV = "STREAMQC_MQTT_PASSWORD"


@dataclass(frozen=True)
class BrokerSettings:
    """Where and how to connect, resolved from ``MqttConfig``; the password is never shown."""

    host: str
    port: int
    tls: ssl.SSLContext | None
    username: str | None
    password: str | None = field(repr=False)
    client_id: str
    keepalive_s: float

    @classmethod
    def from_config(
        cls,
        mqtt: MqttConfig,
        default_client_id: str,
        embedded: tuple[str, int] | None = None,
    ) -> BrokerSettings:
        """Read the password and TLS files now, so a bad path is a ConfigError at start-up.

        With ``embedded=(host, port)`` connect to the embedded broker there (no TLS, no login).
        """
        client_id = mqtt.client_id or default_client_id
        if embedded is not None:
            host, port = embedded
            return cls(host, port, None, None, None, client_id, mqtt.keepalive_s)
        if mqtt.url is None:
            raise ConfigError("mqtt.url: not set, and no embedded broker to connect to")
        host, port, tls = broker_address(mqtt.url)
        context = _tls_context(mqtt.tls or TlsConfig()) if tls or mqtt.tls else None
        password = _password(mqtt)
        return cls(host, port, context, mqtt.username, password, client_id, mqtt.keepalive_s)


def _password(mqtt: MqttConfig) -> str | None:
    if mqtt.password_file is None:
        return os.environ.get(PASSWORD_ENV)
    if mqtt.username is None:
        raise ConfigError("mqtt.password_file: set without mqtt.username")
    try:
        text = Path(mqtt.password_file).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(
            f"mqtt.password_file: cannot read {mqtt.password_file}: {error.strerror}"
        ) from None
    except UnicodeDecodeError:  # its message would quote the bytes: say nothing of them
        raise ConfigError(f"mqtt.password_file: {mqtt.password_file} is not UTF-8 text") from None
    return text.rstrip("\r\n")


def _tls_context(tls: TlsConfig) -> ssl.SSLContext:
    """Verify the broker against ``ca`` (else the system's CAs); present ``cert`` if given."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the certificate and host name
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.ca is None:
        context.load_default_certs()
    else:
        ca = tls.ca
        _load("mqtt.tls.ca", ca, lambda: context.load_verify_locations(cafile=ca))
    if tls.key is not None and tls.cert is None:
        raise ConfigError("mqtt.tls.key: set without mqtt.tls.cert")
    if tls.cert is not None:
        cert, key = tls.cert, tls.key
        if key is not None:
            _load("mqtt.tls.key", key, lambda: None)
        _load("mqtt.tls.cert", cert, lambda: context.load_cert_chain(cert, key))
    return context


def _load(key: str, path: str, load: Callable[[], None]) -> None:
    """Run ``load`` on the file ``path`` given by config ``key``: any problem is one line."""
    if not Path(path).is_file():
        raise ConfigError(f"{key}: no such file: {path}")
    try:
        load()
    except ssl.SSLError as error:
        raise ConfigError(f"{key}: cannot use {path}: {error.reason or error}") from None
    except OSError as error:
        raise ConfigError(f"{key}: cannot read {path}: {error.strerror}") from None


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
        backoff_first_s: float = 0.5,
        backoff_max_s: float = 30.0,
        timeout_s: float = 10.0,
        in_flight: int = 32,
        transient_max: int = 16,
    ) -> None:
        self._settings = settings
        self._spool = spool
        self._will = aiomqtt.Will(will_topic, will_payload, qos=1, retain=True)
        self._log = log
        self._backoff_first_s = backoff_first_s
        self._backoff_max_s = backoff_max_s
        self._timeout_s = timeout_s
        """Bound of every network wait: CONNACK, PUBACK, DISCONNECT."""
        self._in_flight = in_flight
        """Events published before waiting for the first PUBACK (ordered on one connection)."""
        self._retained: dict[str, bytes | None] = {}
        self._retained_due: set[str] = set()
        self._transient: deque[tuple[str, bytes, bool]] = deque(maxlen=transient_max)
        self._immediate: deque[tuple[str, bytes, bool]] = deque(maxlen=256)
        self._subscriptions: dict[str, Callable[[str, bytes], None]] = {}
        self._subscribe_due: set[str] = set()
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._connected = False
        self._ever_connected = False
        self._runner: asyncio.Task[None] | None = None
        self._connected_since_s: float | None = None
        self.delivered = 0
        """Spooled events acknowledged by the broker."""
        self.reconnects = 0
        """Connections made after the first one (i.e. recoveries from a lost connection)."""
        self.transient_dropped = 0
        """Transient messages dropped because no broker was connected."""

    @property
    def connected(self) -> bool:
        return self._connected

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
        return f"{self._settings.host}:{self._settings.port}"

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
        if not self._connected or self._closing.is_set():
            self.transient_dropped += 1
            return
        self._transient.append((topic, payload, retain))  # full: the oldest goes
        self._wake.set()

    def publish_now(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """QoS 1 but not queued on disk: for what is stale once the broker is back (a switch
        command has its own ack timeout and escalation). Dropped when not connected."""
        if not self._connected or self._closing.is_set():
            self.transient_dropped += 1
            return
        self._immediate.append((topic, payload, retain))
        self._wake.set()

    def subscribe(self, topic_filter: str, handler: Callable[[str, bytes], None]) -> None:
        """Call ``handler(topic, payload)`` for every message matching ``topic_filter`` (QoS 1),
        from now on and after every reconnect."""
        self._subscriptions[topic_filter] = handler
        self._subscribe_due.add(topic_filter)
        self._wake.set()

    def unsubscribe(self, topic_filter: str) -> None:
        self._subscriptions.pop(topic_filter, None)
        self._subscribe_due.discard(topic_filter)

    async def run(self) -> None:
        """Connect and publish until ``close()``; only CancelledError gets out."""
        if self._runner is not None:
            raise RuntimeError("MqttSink.run() is already running")
        self._runner = asyncio.create_task(self._reconnect_forever())
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

    # --- The connection loop ------------------------------------------------------------------

    async def _reconnect_forever(self) -> None:
        failures = 0
        while True:
            try:
                await self._session()
                return  # closed
            except Exception as error:  # noqa: BLE001 - any failure means: log, back off, retry
                reason = _reason(error)
            since_s = self._connected_since_s
            if since_s is not None and time.monotonic() - since_s >= self._backoff_max_s:
                failures = 0  # it was up a good while: this is a new outage, retry quickly
            ceiling_s = min(self._backoff_max_s, self._backoff_first_s * 2 ** min(failures, 30))
            delay_s = random.uniform(ceiling_s / 2, ceiling_s)  # jitter: no reconnect storms
            failures += 1
            self._log(
                "mqtt disconnected",
                broker=self._broker,
                reason=reason,
                retry_in_s=round(delay_s, 2),
                queued=self.queued,
            )
            if self._closing.is_set():
                await asyncio.sleep(delay_s)  # close() cancels this when its time is up
            else:
                with contextlib.suppress(TimeoutError):  # close() cuts it short: one last try
                    await asyncio.wait_for(self._closing.wait(), delay_s)

    async def _session(self) -> None:
        """One connection: publish until closed (returns) or the connection fails (raises)."""
        self._connected_since_s = None
        settings = self._settings
        client = aiomqtt.Client(
            settings.host,
            settings.port,
            identifier=settings.client_id,
            username=settings.username,
            password=settings.password,
            tls_context=settings.tls,
            will=self._will,
            clean_session=True,
            keepalive=max(1, round(settings.keepalive_s)),
            timeout=self._timeout_s,
            max_inflight_messages=self._in_flight,
        )
        client.pending_calls_threshold = self._in_flight + 1  # our own bound; no warning below
        async with client:
            self._connected = True
            self._connected_since_s = time.monotonic()
            if self._ever_connected:
                self.reconnects += 1
            self._ever_connected = True
            self._retained_due.update(self._retained)
            self._subscribe_due.update(self._subscriptions)
            self._log("mqtt connected", broker=self._broker, queued=self.queued)
            try:
                await until_first(self._drain(client), self._receive(client))
            finally:
                self._connected = False
                self._transient.clear()
                self._immediate.clear()

    async def _drain(self, client: aiomqtt.Client) -> None:
        """Publish whatever is due, then sleep until there is more; return once closed."""
        while True:
            self._wake.clear()
            for topic_filter in sorted(self._subscribe_due):
                self._subscribe_due.discard(topic_filter)
                await client.subscribe(topic_filter, qos=1)
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
            if not self._retained_due and not self._subscribe_due and not self._immediate:
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

    async def _receive(self, client: aiomqtt.Client) -> None:
        """Hand subscribed messages to their handlers; raise MqttError when the connection is
        lost (aiomqtt's publish would only notice at its timeout)."""
        try:
            async for message in client.messages:
                payload = message.payload if isinstance(message.payload, bytes) else b""
                for topic_filter, handler in list(self._subscriptions.items()):
                    if message.topic.matches(topic_filter):
                        try:
                            handler(message.topic.value, payload)
                        except Exception as error:  # noqa: BLE001 - a handler bug is logged
                            self._log(
                                "mqtt handler failed",
                                topic=message.topic.value,
                                reason=f"{type(error).__name__}: {error}",
                            )
        except aiomqtt.MqttError as error:  # aiomqtt says "Disconnected during message iteration"
            why = f": {error.__cause__}" if error.__cause__ else ""
            raise aiomqtt.MqttError(f"connection lost{why}") from None


def _reason(error: BaseException) -> str:
    """One line saying why the connection failed, e.g. '[code:134] Bad user name or password'."""
    message = str(error) or type(error).__name__
    if not isinstance(error, aiomqtt.MqttError | OSError):
        message = f"{type(error).__name__}: {message}"
    return " ".join(message.split())
