"""Prometheus ``/metrics`` and a ``/healthz`` probe, served from a thread of the control plane.

The metrics are a snapshot of the latest state the supervisor reported (``InputStats`` per
input about once a second, alarm events, MQTT and worker state); a scrape renders it and
never waits on a pipeline. Counters whose totals are kept elsewhere (``InputStats``) are
exported as those totals. Series of ``channel``/``input``/``rendition`` (``""`` when the input
has a single stream) appear with the first report and go with ``remove_channel``.

=================================  =======  ====================================================
metric                             type     meaning (extra labels)
=================================  =======  ====================================================
streamqc_input_flowing             gauge    1 when decoded media advanced in the last interval
streamqc_media_lag_seconds         gauge    wall clock minus wall time of the newest decoded media
streamqc_pictures_total            counter  pictures decoded
streamqc_frames_dropped_total      counter  pictures missing from the timeline or undecodable
streamqc_frames_late_total         counter  pictures analysed more than 1 s after decoding
streamqc_picture_wait_max_seconds  gauge    longest decode-to-analysed time of a picture over
                                            the last interval (a queue building up shows here)
streamqc_input_reconnects_total    counter  decoder restarts (input ended, failed or stalled)
streamqc_input_bytes_total         counter  bytes received from the input
streamqc_luma_mean                 gauge    mean luma of the last picture, 8-bit code values
streamqc_audio_peak_dbfs           gauge    sample peak over the last interval
                                            (``stream``, ``audio_channel``: 0-based indices)
streamqc_<measurement>             gauge    what a check or the input measures, e.g. loudness,
                                            RTP, SRT and TR 101 290 counters (those named
                                            ``*_total`` are counters; labels of their own;
                                            see the README)
streamqc_alarm_events_total        counter  alarm events (``alarm``, ``severity``,
                                            ``state`` = raised | cleared)
streamqc_active_alarms             gauge    alarms currently raised on a channel input
streamqc_channel_state             gauge    1 for the channel's current ``state``
                                            (ok | degraded | failed | offline), 0 for the others
streamqc_mqtt_connected            gauge    1 while connected to the broker
streamqc_mqtt_queued_messages      gauge    messages waiting in the on-disk queue
streamqc_mqtt_delivered_total      counter  messages acknowledged by the broker
streamqc_mqtt_dropped_total        counter  messages dropped because the queue was full
streamqc_mqtt_reconnects_total     counter  broker reconnections
streamqc_workers_alive             gauge    worker processes running
streamqc_worker_restarts_total     counter  worker processes restarted after a crash or hang
streamqc_build_info                gauge    1, with the ``version`` running
process_*, python_info                      the daemon process (CPU, memory, open files)
=================================  =======  ====================================================

Besides the extra labels above, per-input series carry ``channel``, ``input`` and ``rendition``;
alarm series ``channel`` and ``input``; ``streamqc_channel_state`` ``channel``. MQTT and worker
series appear once the daemon reports them.
"""

from __future__ import annotations

import errno
import json
import socket
import socketserver
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIEnvironment

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monitor.alarms.input_stats import InputStats
from monitor.config import host_port
from monitor.errors import ConfigError
from monitor.logs import get_logger
from monitor.version import streamqc_version

CHANNEL_STATES = ("ok", "degraded", "failed", "offline")
INPUT_LABELS = ["channel", "input", "rendition"]

log = get_logger()


@dataclass(frozen=True)
class _Mqtt:
    connected: bool
    queued: int
    delivered: int
    dropped: int
    reconnects: int


class Metrics:
    """The daemon's metrics in a registry of their own (never prometheus_client's global one)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.registry.register(_Snapshot(self._collect))
        # Updated from the event loop, read by scrape threads: every access holds the lock.
        self._lock = threading.Lock()
        self._inputs: dict[tuple[str, str, str], InputStats] = {}
        self._events: dict[tuple[str, str, str, str, str], int] = {}
        self._active: dict[tuple[str, str], int] = {}
        self._states: dict[str, str] = {}
        self._mqtt: _Mqtt | None = None
        self._workers: tuple[int, int] | None = None

    def observe_input(self, stats: InputStats) -> None:
        """Latest report of one rendition of a channel input."""
        with self._lock:
            self._inputs[(stats.channel, stats.input, stats.rendition or "")] = stats

    def count_event(self, alarm: str, channel: str, input: str, severity: str, state: str) -> None:
        """One alarm event (raised or cleared) was emitted."""
        key = (channel, input, alarm, severity, state)
        with self._lock:
            self._events[key] = self._events.get(key, 0) + 1

    def set_active_alarms(self, channel: str, input: str, count: int) -> None:
        with self._lock:
            self._active[(channel, input)] = count

    def set_channel_state(self, channel: str, state: str) -> None:
        """The channel's overall state, one of ok, degraded, failed, offline."""
        if state not in CHANNEL_STATES:
            raise ValueError(f"channel state must be one of {', '.join(CHANNEL_STATES)}: {state!r}")
        with self._lock:
            self._states[channel] = state

    def set_mqtt(
        self, connected: bool, queued: int, delivered: int, dropped: int, reconnects: int
    ) -> None:
        """Broker connection and queue; the counts are totals since the daemon started."""
        with self._lock:
            self._mqtt = _Mqtt(connected, queued, delivered, dropped, reconnects)

    def set_workers(self, alive: int, restarts: int) -> None:
        """Worker processes running, and restarts since the daemon started."""
        with self._lock:
            self._workers = (alive, restarts)

    def remove_channel(self, channel: str) -> None:
        """Forget every series of a channel (removed from the configuration)."""
        with self._lock:
            self._inputs = {k: v for k, v in self._inputs.items() if k[0] != channel}
            self._events = {k: v for k, v in self._events.items() if k[0] != channel}
            self._active = {k: v for k, v in self._active.items() if k[0] != channel}
            self._states.pop(channel, None)

    def render(self) -> bytes:
        """All metrics in the Prometheus text exposition format."""
        return generate_latest(self.registry)

    def _collect(self) -> Iterator[Metric]:
        with self._lock:
            inputs = list(self._inputs.items())
            events = list(self._events.items())
            active = list(self._active.items())
            states = list(self._states.items())
            mqtt, workers = self._mqtt, self._workers
        yield from _input_families(inputs)

        alarm_events = CounterMetricFamily(
            "streamqc_alarm_events_total",
            "Alarm events emitted.",
            labels=["channel", "input", "alarm", "severity", "state"],
        )
        for labels, count in events:
            alarm_events.add_metric(list(labels), count)
        active_alarms = GaugeMetricFamily(
            "streamqc_active_alarms",
            "Alarms currently raised on a channel input.",
            labels=["channel", "input"],
        )
        for channel_input, count in active:
            active_alarms.add_metric(list(channel_input), count)
        channel_state = GaugeMetricFamily(
            "streamqc_channel_state",
            "1 for the channel's current state (ok, degraded, failed, offline), else 0.",
            labels=["channel", "state"],
        )
        for channel, current in states:
            for state in CHANNEL_STATES:
                channel_state.add_metric([channel, state], 1 if state == current else 0)
        yield from (alarm_events, active_alarms, channel_state)

        if mqtt is not None:
            yield _gauge("streamqc_mqtt_connected", "1 while connected.", int(mqtt.connected))
            yield _gauge(
                "streamqc_mqtt_queued_messages", "Messages in the on-disk queue.", mqtt.queued
            )
            yield _counter(
                "streamqc_mqtt_delivered", "Messages acked by the broker.", mqtt.delivered
            )
            yield _counter("streamqc_mqtt_dropped", "Messages dropped: queue full.", mqtt.dropped)
            yield _counter("streamqc_mqtt_reconnects", "Broker reconnections.", mqtt.reconnects)
        if workers is not None:
            yield _gauge("streamqc_workers_alive", "Worker processes running.", workers[0])
            yield _counter("streamqc_worker_restarts", "Worker processes restarted.", workers[1])
        build = GaugeMetricFamily(
            "streamqc_build_info", "The streamqc release running.", labels=["version"]
        )
        build.add_metric([streamqc_version()], 1)
        yield build


class _Snapshot(Collector):
    def __init__(self, collect: Callable[[], Iterable[Metric]]) -> None:
        self._collect = collect

    def collect(self) -> Iterable[Metric]:
        return self._collect()


def _input_families(inputs: list[tuple[tuple[str, str, str], InputStats]]) -> Iterator[Metric]:
    def gauge(name: str, doc: str) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, labels=INPUT_LABELS)

    def counter(name: str, doc: str) -> CounterMetricFamily:
        return CounterMetricFamily(name, doc, labels=INPUT_LABELS)

    flowing = gauge("streamqc_input_flowing", "1 when decoded media advanced last interval.")
    lag = gauge("streamqc_media_lag_seconds", "Wall clock minus wall time of the newest media.")
    pictures = counter("streamqc_pictures_total", "Pictures decoded.")
    dropped = counter("streamqc_frames_dropped_total", "Pictures missing or undecodable.")
    late = counter("streamqc_frames_late_total", "Pictures analysed over 1 s after decoding.")
    wait = gauge("streamqc_picture_wait_max_seconds", "Longest decode-to-analysed time.")
    reconnects = counter("streamqc_input_reconnects_total", "Decoder restarts.")
    bytes_in = counter("streamqc_input_bytes_total", "Bytes received.")
    luma = gauge("streamqc_luma_mean", "Mean luma of the last picture, 8-bit code values.")
    peak = GaugeMetricFamily(
        "streamqc_audio_peak_dbfs",
        "Sample peak over the last interval, dBFS.",
        labels=[*INPUT_LABELS, "stream", "audio_channel"],
    )
    checks: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
    for key, stats in inputs:
        labels = list(key)
        for name, extra, value in stats.gauges:
            family = checks.get(name)
            if family is None:
                kind = CounterMetricFamily if name.endswith("_total") else GaugeMetricFamily
                family = checks[name] = kind(
                    f"streamqc_{name}",
                    f"{name.removesuffix('_total').replace('_', ' ')} (measured on the input).",
                    labels=[*INPUT_LABELS, *(label for label, _ in extra)],
                )
            family.add_metric([*labels, *(v for _, v in extra)], value)
        flowing.add_metric(labels, int(stats.flowing))
        lag.add_metric(labels, stats.media_lag_s)
        pictures.add_metric(labels, stats.pictures)
        dropped.add_metric(labels, stats.frames_dropped)
        late.add_metric(labels, stats.frames_late)
        wait.add_metric(labels, stats.picture_wait_max_s)
        reconnects.add_metric(labels, stats.reconnects)
        bytes_in.add_metric(labels, stats.bytes_in)
        if stats.luma_mean_cv is not None:
            luma.add_metric(labels, stats.luma_mean_cv)
        for stream, channel, dbfs in stats.audio_peak_dbfs:
            peak.add_metric([*labels, str(stream), str(channel)], dbfs)
    yield from (flowing, lag, pictures, dropped, late, wait, reconnects, bytes_in)
    yield from (luma, peak)
    yield from checks.values()


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)  # exported as NAME_total


# --- HTTP ------------------------------------------------------------------------------------

Health = Callable[[], tuple[bool, dict[str, Any]]]


class MetricsServer:
    """``GET /metrics`` and ``GET /healthz`` (200 healthy / 503 not, JSON body) on a thread."""

    def __init__(self, metrics: Metrics, listen: str, health: Health) -> None:
        self.metrics = metrics
        self.listen = listen
        self._health = health
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound host and port (the real port when ``listen`` asked for port 0)."""
        if self._server is None:
            raise RuntimeError("the metrics server is not started")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Bind and serve; a bind failure is a ConfigError naming metrics.listen."""
        if self._server is not None:
            raise RuntimeError("the metrics server is already started")
        self._server = _bind(self.listen, self._app)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            # How long stop() may wait for the loop to notice; idle wake-ups are negligible.
            kwargs={"poll_interval": 0.2},
            name="streamqc-metrics",
            daemon=True,
        )
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None or thread is None:
            return
        server.shutdown()
        server.server_close()
        thread.join(timeout_s)

    def _app(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ["REQUEST_METHOD"]
        status, content_type, body = "404 Not Found", "text/plain; charset=utf-8", b"not found\n"
        extra: list[tuple[str, str]] = []
        if path in ("/metrics", "/healthz") and method not in ("GET", "HEAD"):
            status, body = "405 Method Not Allowed", b"use GET\n"
            extra.append(("Allow", "GET, HEAD"))
        elif path == "/metrics":
            try:
                status, content_type, body = "200 OK", CONTENT_TYPE_LATEST, self.metrics.render()
            except Exception as error:  # a collector bug must not kill the server thread
                log.warning("cannot render metrics", error=repr(error))
                status, body = "500 Internal Server Error", b"cannot render metrics\n"
        elif path == "/healthz":
            healthy, detail = self._check_health()
            status = "200 OK" if healthy else "503 Service Unavailable"
            content_type = "application/json"
            body = json.dumps(detail, default=str).encode() + b"\n"
        headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            *extra,
        ]
        start_response(status, headers)
        return [b"" if method == "HEAD" else body]

    def _check_health(self) -> tuple[bool, dict[str, Any]]:
        try:
            return self._health()
        except Exception as error:
            log.warning("health check failed", error=repr(error))
            return False, {"error": f"health check failed: {error!r}"}


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a hung client never holds up shutdown

    def server_bind(self) -> None:
        # HTTPServer.server_bind would call socket.getfqdn(): a reverse DNS lookup that can
        # hang start-up for seconds on a host with broken DNS. The name is not needed.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)
        self.setup_environ()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A scraper that hangs up mid-response is its business: no traceback on stderr.
        log.debug("metrics client error", client=str(client_address))


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    timeout = 10  # seconds: a client that connects and sends nothing must not keep a thread

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not logged: one line every few seconds for months is noise."""


def _bind(listen: str, app: Any) -> _Server:
    try:
        host, port = _split_listen(listen)
    except ValueError as error:
        raise ConfigError(f"metrics.{error}") from None  # "listen: must be HOST:PORT ..."
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        server_class = _Server6 if found[0][0] == socket.AF_INET6 else _Server
        server = make_server(host, port, app, server_class, _QuietHandler)
    except socket.gaierror:
        raise ConfigError(f"metrics.listen {listen}: cannot resolve host {host!r}") from None
    except OSError as error:
        reason = {
            errno.EADDRINUSE: "address in use",
            errno.EACCES: "permission denied",
            errno.EADDRNOTAVAIL: "address not available on this host",
        }.get(error.errno or 0, (error.strerror or str(error)).lower())
        raise ConfigError(f"metrics.listen {listen}: {reason}") from None
    assert isinstance(server, _Server)
    return server


def _split_listen(listen: str) -> tuple[str, int]:
    """HOST:PORT as the configuration validates it; port 0 (any free port) also allowed."""
    return host_port(listen)  # port 0 passes too
