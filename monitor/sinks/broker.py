"""An embedded MQTT broker (amqtt) for bare machines: ``streamqc demo`` and configs without a url.

It runs in the caller's event loop, anonymous, on a loopback address. Production points
``mqtt.url`` at a real broker; this one keeps retained values and sessions only in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from amqtt.broker import Broker  # type: ignore[import-untyped]
from amqtt.errors import BrokerError as AmqttBrokerError  # type: ignore[import-untyped]

from monitor.errors import StreamqcError

# amqtt logs every connection at INFO and its state machine (transitions) at INFO too.
for _name in ("amqtt", "transitions"):
    logging.getLogger(_name).setLevel(logging.WARNING)


SHUTDOWN_TIMEOUT_S = 3.0


class BrokerError(StreamqcError):
    """The embedded broker cannot start: the message says where and what to do instead."""


def _config(host: str, port: int) -> dict[str, object]:
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return {
        "listeners": {"default": {"type": "tcp", "bind": bind}},
        # amqtt 0.12's plugin configuration; the older auth / topic-check keys are deprecated.
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }


def _cannot_start(host: str, port: int, why: str) -> BrokerError:
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return BrokerError(
        f"cannot start the embedded MQTT broker on {where}: {why} "
        "(set mqtt.url to use a broker, or mqtt.embedded_listen)"
    )


def _check_free(host: str, port: int) -> None:
    """Bind the address as the broker will (SO_REUSEADDR), to report a busy port in one line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise _cannot_start(host, port, "address in use") from None
            raise _cannot_start(host, port, error.strerror or str(error)) from None


class _NoTraceback(logging.Filter):
    """Drop amqtt's 'Broker startup failed' traceback: we report the failure in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.exc_info is None


@asynccontextmanager
async def embedded_broker(host: str, port: int) -> AsyncIterator[tuple[str, int]]:
    """Run a broker on ``host:port`` for the duration of the block; yield its (host, port).

    Port 0 picks a free port (the one yielded). Raises BrokerError, one line, when the
    address is in use or cannot be bound.
    """
    if port:
        _check_free(host, port)
    broker = Broker(_config(host, port))
    quiet = _NoTraceback()
    amqtt_log = logging.getLogger("amqtt.broker")
    amqtt_log.addFilter(quiet)
    try:
        await broker.start()
    except AmqttBrokerError as error:
        cause = error.__cause__
        if isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE:  # lost a race
            raise _cannot_start(host, port, "address in use") from None
        raise _cannot_start(host, port, str(cause or error)) from None
    finally:
        amqtt_log.removeFilter(quiet)
    try:
        yield host, _bound_port(broker, port)
    finally:
        # amqtt's shutdown was seen to hang (under load, a client still connected): bounded.
        with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
            await asyncio.wait_for(broker.shutdown(), SHUTDOWN_TIMEOUT_S)


def _bound_port(broker: Broker, port: int) -> int:
    """The port actually listened on (differs from ``port`` only when that was 0)."""
    if port:
        return port
    server: asyncio.Server = broker._servers["default"].instance  # amqtt has no public accessor
    return int(server.sockets[0].getsockname()[1])
