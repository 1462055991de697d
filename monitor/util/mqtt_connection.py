"""One broker connection kept up for as long as it is wanted: the daemon's MQTT sink, the
agent and the console all talk to their broker through it.

``BrokerSettings`` resolves a ``MqttConfig`` (password file or environment, TLS files) once, at
start-up, so a bad path is a ConfigError then and not a reconnect loop later.
``MqttConnection.run`` connects, subscribes every registered topic filter again, hands each
message to its handler and runs its owner's session (what it publishes) until the connection
fails; then it waits out a ``Backoff`` and connects again, until its owner is closing. A
connection that was up for ``backoff.max_s`` or more starts its next outage's backoff small.

Recovery after an outage is bounded by the backoff's ``max_s`` (1.5 s by default: one connect
attempt every 0.75-1.5 s while the broker is away, which any broker carries) plus the connect
itself, so that queued alarms flow within 2 s of the broker being back (the chaos soak,
``benchmarks/soak.py``, measures it; with a 2 s cap its worst case was just over). A connect
that gets no answer (a path that drops packets) gives up after ``CONNECT_TIMEOUT_S`` instead
of waiting for the broker's or TCP's own timeouts, and one closed before its CONNACK fails at
once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from monitor.config import MqttConfig, TlsConfig, broker_address
from monitor.errors import ConfigError
from monitor.util.aio import until_first
from monitor.util.backoff import Backoff

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


CONNECT_TIMEOUT_S = 5.0
"""TCP, TLS and CONNACK together; paho's own TCP connect timeout is the same."""


class _Client(aiomqtt.Client):
    """aiomqtt's client, except that a connection closed before its CONNACK fails at once.

    aiomqtt (2.5) ignores a disconnection that comes before the CONNACK, so the connect waits
    out ``CONNECT_TIMEOUT_S``: behind a relay that accepts and then closes while the broker is
    down (a load balancer, Docker's port proxy) every try took 5 s, and an alarm queued during
    a broker restart reached the NOC 3-4 s after the broker was back (the chaos soak found it).
    Nor does a close after a connect that timed out log a traceback.
    """

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None = None,
    ) -> None:
        if self._connected.cancelled():
            # The connect gave up (CONNECT_TIMEOUT_S cancels the wait and its future) and the
            # socket closed after: nobody waits any more. aiomqtt would ask the cancelled future
            # for its exception and log a CancelledError traceback (the soak saw 7 an hour).
            return
        if not self._connected.done():
            self._connected.set_exception(
                aiomqtt.MqttError(f"connection closed before CONNACK ({reason_code})")
            )
            return
        super()._on_disconnect(client, userdata, flags, reason_code, properties)


Handler = Callable[[aiomqtt.Message], None]
Session = Callable[[aiomqtt.Client], Awaitable[None]]
"""What one connection is for: publish until closing (return) or until it fails (raise)."""


class MqttConnection:
    """Connects to one broker, and again after every failure, with backoff.

    Args:
        settings: Where and how to connect.
        log: ``log(event, **fields)`` for a handler that raised.
        backoff: The waits between tries; default 0.25 s doubling to 1.5 s, equal jitter.
        timeout_s: Bound of every network wait: CONNACK, PUBACK, DISCONNECT.
        in_flight: QoS 1 messages published before waiting for the first PUBACK.
        persistent: Keep the session at the broker across connections (a fixed client id,
            ``clean_session=False``): QoS 1 messages for it wait while it is away. The console
            wants that; the daemon and the agent do not (a stale command is worse than none).
        max_queued_incoming: Bound of received messages waiting for the handlers (0: none).
    """

    def __init__(
        self,
        settings: BrokerSettings,
        *,
        log: Callable[..., None],
        backoff: Backoff | None = None,
        timeout_s: float = 10.0,
        in_flight: int = 32,
        persistent: bool = False,
        max_queued_incoming: int = 0,
    ) -> None:
        self.settings = settings
        self._persistent = persistent
        self._max_queued_incoming = max_queued_incoming
        self._log = log
        self.backoff = backoff or Backoff(0.25, 1.5, spread=(0.5, 1.0))
        self._timeout_s = timeout_s
        self._in_flight = in_flight
        self._handlers: dict[str, Handler] = {}
        self._subscribe_due: set[str] = set()
        self._subscribe_wake = asyncio.Event()
        self._connected = False
        self._ever_connected = False
        self.reconnects = 0
        """Connections made after the first one (i.e. recoveries from a lost connection)."""

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def broker(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def subscribe(self, topic_filter: str, handler: Handler) -> None:
        """Hand every message matching ``topic_filter`` (QoS 1) to ``handler``, from now on and
        after every reconnect."""
        self._handlers[topic_filter] = handler
        self._subscribe_due.add(topic_filter)
        self._subscribe_wake.set()

    def unsubscribe(self, topic_filter: str) -> None:
        self._handlers.pop(topic_filter, None)
        self._subscribe_due.discard(topic_filter)

    async def run(
        self,
        session: Session,
        closing: asyncio.Event,
        *,
        will: Callable[[], aiomqtt.Will | None] = lambda: None,
        on_up: Callable[[], None] = lambda: None,
        on_down: Callable[[str, float], None] = lambda reason, retry_in_s: None,
    ) -> None:
        """Keep connected until ``session`` returns (its owner is done), or a try fails while
        ``closing`` is set. ``will()`` is each connection's Last Will; ``on_up()`` is called
        once connected, ``on_down(reason, retry_in_s)`` after each failure."""
        while True:
            up_since_s: float | None = None
            try:
                async with contextlib.AsyncExitStack() as stack:
                    client = await self._connect(stack, will())
                    up_since_s = time.monotonic()
                    self._connected = True
                    if self._ever_connected:
                        self.reconnects += 1
                    self._ever_connected = True
                    self._subscribe_due.update(self._handlers)
                    on_up()
                    await until_first(session(client), self._receive(client))
                return  # the session is over
            except Exception as error:  # noqa: BLE001 - any failure means: back off, retry
                reason = reason_of(error)
            finally:
                self._connected = False
            if closing.is_set():
                return
            if up_since_s is not None and time.monotonic() - up_since_s >= self.backoff.max_s:
                self.backoff.reset()  # it was up a good while: a new outage, retry quickly
            delay_s = self.backoff.next_s()
            on_down(reason, delay_s)
            with contextlib.suppress(TimeoutError):  # closing cuts the wait short: one last try
                await asyncio.wait_for(closing.wait(), delay_s)

    async def _connect(
        self, stack: contextlib.AsyncExitStack, will: aiomqtt.Will | None
    ) -> aiomqtt.Client:
        """A connected client (disconnected when ``stack`` closes), or MqttError."""
        try:
            return await asyncio.wait_for(
                stack.enter_async_context(self._client(will)), CONNECT_TIMEOUT_S
            )
        except TimeoutError:
            raise aiomqtt.MqttError(f"no answer within {CONNECT_TIMEOUT_S:g} s") from None

    def _client(self, will: aiomqtt.Will | None) -> aiomqtt.Client:
        settings = self.settings
        client = _Client(
            settings.host,
            settings.port,
            identifier=settings.client_id,
            username=settings.username,
            password=settings.password,
            tls_context=settings.tls,
            will=will,
            clean_session=not self._persistent,
            keepalive=max(1, round(settings.keepalive_s)),
            timeout=self._timeout_s,
            max_inflight_messages=self._in_flight,
            max_queued_incoming_messages=self._max_queued_incoming,
        )
        client.pending_calls_threshold = self._in_flight + 1  # our own bound; no warning below
        return client

    async def _receive(self, client: aiomqtt.Client) -> None:
        """Subscribe what is due, hand messages to their handlers; raise MqttError when the
        connection is lost (aiomqtt's publish would only notice at its timeout)."""
        try:
            await until_first(self._subscriber(client), self._dispatch(client))
        except aiomqtt.MqttError as error:  # aiomqtt says "Disconnected during message iteration"
            why = f": {error.__cause__}" if error.__cause__ else ""
            raise aiomqtt.MqttError(f"connection lost{why}") from None

    async def _subscriber(self, client: aiomqtt.Client) -> None:
        while True:
            self._subscribe_wake.clear()
            for topic_filter in sorted(self._subscribe_due):
                self._subscribe_due.discard(topic_filter)
                await client.subscribe(topic_filter, qos=1)
            await self._subscribe_wake.wait()

    async def _dispatch(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            for topic_filter, handler in list(self._handlers.items()):
                if message.topic.matches(topic_filter):
                    try:
                        handler(message)
                    except Exception as error:  # noqa: BLE001 - a handler bug is logged
                        self._log(
                            "mqtt handler failed",
                            topic=message.topic.value,
                            reason=f"{type(error).__name__}: {error}",
                        )
        raise aiomqtt.MqttError("connection lost")


def reason_of(error: BaseException) -> str:
    """One line saying why the connection failed, e.g. '[code:134] Bad user name or password'."""
    message = str(error) or type(error).__name__
    if not isinstance(error, aiomqtt.MqttError | OSError):
        message = f"{type(error).__name__}: {message}"
    return " ".join(message.split())
