"""Prometheus metrics and the /metrics + /healthz server, scraped over real HTTP on loopback."""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request
from dataclasses import replace

import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from monitor.alarms.input_stats import InputStats
from monitor.errors import ConfigError
from monitor.sinks.metrics import Metrics, MetricsServer

STATS = InputStats(
    channel="news",
    input="primary",
    rendition=None,
    flowing=True,
    media_lag_s=0.8,
    pictures=1000,
    frames_dropped=2,
    frames_late=1,
    picture_wait_max_s=0.012,
    reconnects=3,
    bytes_in=123_456,
    luma_mean_cv=110.5,
    audio_peak_dbfs=((0, 0, -12.0), (0, 1, float("-inf"))),
)


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a scrape, keyed by (name, labels)."""
    text = metrics.render().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, frozenset(labels.items())))


def names(metrics: Metrics) -> set[str]:
    return {name for name, _ in samples(metrics)}


INPUT = {"channel": "news", "input": "primary", "rendition": ""}


def test_input_stats_are_exported_with_channel_input_and_empty_rendition_labels():
    metrics = Metrics()
    metrics.observe_input(STATS)

    assert value(metrics, "streamqc_input_flowing", **INPUT) == 1
    assert value(metrics, "streamqc_media_lag_seconds", **INPUT) == 0.8
    assert value(metrics, "streamqc_pictures_total", **INPUT) == 1000
    assert value(metrics, "streamqc_frames_dropped_total", **INPUT) == 2
    assert value(metrics, "streamqc_frames_late_total", **INPUT) == 1
    assert value(metrics, "streamqc_picture_wait_max_seconds", **INPUT) == 0.012
    assert value(metrics, "streamqc_input_reconnects_total", **INPUT) == 3
    assert value(metrics, "streamqc_input_bytes_total", **INPUT) == 123_456
    assert value(metrics, "streamqc_luma_mean", **INPUT) == 110.5
    peak = "streamqc_audio_peak_dbfs"
    assert value(metrics, peak, **INPUT, stream="0", audio_channel="0") == -12.0
    assert value(metrics, peak, **INPUT, stream="0", audio_channel="1") == float("-inf")


def test_check_measurements_are_exported_under_their_own_names_and_labels():
    metrics = Metrics()
    lufs = (("loudness_short_term_lufs", (("stream", "1"),), -23.5),)
    metrics.observe_input(replace(STATS, gauges=lufs))
    metrics.observe_input(replace(STATS, rendition="360p", gauges=lufs[:0]))

    name = "streamqc_loudness_short_term_lufs"
    assert value(metrics, name, **INPUT, stream="1") == -23.5
    assert value(metrics, name, **{**INPUT, "rendition": "360p"}, stream="1") is None


def test_counters_are_the_totals_of_the_latest_report_per_rendition():
    metrics = Metrics()
    metrics.observe_input(replace(STATS, rendition="720p"))
    metrics.observe_input(replace(STATS, rendition="720p", pictures=1025, flowing=False))
    metrics.observe_input(replace(STATS, rendition="360p", pictures=7))

    assert value(metrics, "streamqc_pictures_total", **INPUT | {"rendition": "720p"}) == 1025
    assert value(metrics, "streamqc_input_flowing", **INPUT | {"rendition": "720p"}) == 0
    assert value(metrics, "streamqc_pictures_total", **INPUT | {"rendition": "360p"}) == 7


def test_luma_is_absent_while_no_picture_was_measured():
    metrics = Metrics()
    metrics.observe_input(replace(STATS, luma_mean_cv=None))
    assert value(metrics, "streamqc_luma_mean", **INPUT) is None
    assert value(metrics, "streamqc_pictures_total", **INPUT) == 1000


def test_alarm_events_are_counted_per_alarm_severity_and_state():
    metrics = Metrics()
    metrics.count_event("black", "news", "primary", "major", "raised")
    metrics.count_event("black", "news", "primary", "major", "cleared")
    metrics.count_event("black", "news", "primary", "major", "raised")
    metrics.set_active_alarms("news", "primary", 1)

    events = "streamqc_alarm_events_total"
    black = {"channel": "news", "input": "primary", "alarm": "black", "severity": "major"}
    assert value(metrics, events, **black, state="raised") == 2
    assert value(metrics, events, **black, state="cleared") == 1
    assert value(metrics, "streamqc_active_alarms", channel="news", input="primary") == 1


def test_channel_state_is_one_for_the_current_state_and_zero_for_the_others():
    metrics = Metrics()
    metrics.set_channel_state("news", "degraded")
    metrics.set_channel_state("news", "failed")

    states = {
        s: value(metrics, "streamqc_channel_state", channel="news", state=s)
        for s in ("ok", "degraded", "failed", "offline")
    }
    assert states == {"ok": 0, "degraded": 0, "failed": 1, "offline": 0}
    with pytest.raises(ValueError, match="ok, degraded, failed, offline"):
        metrics.set_channel_state("news", "broken")


def test_remove_channel_drops_every_series_of_that_channel_only():
    metrics = Metrics()
    for channel in ("news", "sport"):
        metrics.observe_input(replace(STATS, channel=channel))
        metrics.count_event("freeze", channel, "primary", "major", "raised")
        metrics.set_active_alarms(channel, "primary", 1)
        metrics.set_channel_state(channel, "ok")

    metrics.remove_channel("news")

    channels = {dict(labels).get("channel") for _, labels in samples(metrics)} - {None}
    assert channels == {"sport"}
    assert value(metrics, "streamqc_pictures_total", **INPUT | {"channel": "sport"}) == 1000


def test_mqtt_and_worker_series_appear_once_reported():
    metrics = Metrics()
    assert not {n for n in names(metrics) if "mqtt" in n or "worker" in n}

    metrics.set_mqtt(connected=True, queued=4, delivered=10, dropped=1, reconnects=2)
    metrics.set_workers(alive=3, restarts=1)

    assert value(metrics, "streamqc_mqtt_connected") == 1
    assert value(metrics, "streamqc_mqtt_queued_messages") == 4
    assert value(metrics, "streamqc_mqtt_delivered_total") == 10
    assert value(metrics, "streamqc_mqtt_dropped_total") == 1
    assert value(metrics, "streamqc_mqtt_reconnects_total") == 2
    assert value(metrics, "streamqc_workers_alive") == 3
    assert value(metrics, "streamqc_worker_restarts_total") == 1


def test_each_instance_has_its_own_registry_with_process_metrics():
    first, second = Metrics(), Metrics()  # the global registry would refuse the second
    first.observe_input(STATS)
    assert "streamqc_pictures_total" not in names(second)
    assert "process_cpu_seconds_total" in names(first)
    assert "python_info" in names(first)


# --- HTTP ------------------------------------------------------------------------------------


@pytest.fixture
def serve():
    started: list[MetricsServer] = []

    def start(metrics=None, health=lambda: (True, {"status": "ok"}), listen="127.0.0.1:0"):
        server = MetricsServer(metrics or Metrics(), listen, health)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def get(server: MetricsServer, path: str, method: str = "GET"):
    host, port = server.address
    host = f"[{host}]" if ":" in host else host
    request = urllib.request.Request(f"http://{host}:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def test_metrics_are_served_in_the_text_format(serve):
    metrics = Metrics()
    metrics.observe_input(STATS)
    server = serve(metrics)

    status, headers, body = get(server, "/metrics")

    assert status == 200
    assert headers["Content-Type"] == CONTENT_TYPE_LATEST
    assert 'streamqc_pictures_total{channel="news",input="primary",rendition=""} 1000' in (
        body.decode()
    )


def test_healthz_is_200_with_the_health_as_json_when_healthy(serve):
    server = serve(health=lambda: (True, {"channels": {"news": "ok"}}))
    status, headers, body = get(server, "/healthz")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"channels": {"news": "ok"}}


def test_healthz_is_503_when_unhealthy_or_when_the_check_fails(serve):
    assert get(serve(health=lambda: (False, {"workers": 0})), "/healthz")[0] == 503

    def broken():
        raise RuntimeError("no supervisor")

    status, _, body = get(serve(health=broken), "/healthz")
    assert status == 503
    assert "no supervisor" in json.loads(body)["error"]


def test_other_paths_are_404_and_other_methods_405(serve):
    server = serve()
    assert get(server, "/")[0] == 404
    assert get(server, "/metrics/extra")[0] == 404
    assert get(server, "/metrics", method="POST")[0] == 405
    status, _, body = get(server, "/metrics", method="HEAD")
    assert (status, body) == (200, b"")


def test_requests_are_not_logged(serve, capfd):
    server = serve()
    for _ in range(3):
        get(server, "/metrics")
        get(server, "/nowhere")
    out, err = capfd.readouterr()
    assert out == err == ""


def test_a_port_in_use_is_a_one_line_config_error(serve):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as caught:
            serve(listen=f"127.0.0.1:{port}")
    assert str(caught.value) == f"metrics.listen 127.0.0.1:{port}: address in use"


def test_a_malformed_listen_address_is_a_config_error(serve):
    with pytest.raises(ConfigError, match="metrics.listen: must be HOST:PORT"):
        serve(listen="localhost")


def test_stop_ends_the_thread_and_frees_the_port(serve):
    server = serve()
    port = server.address[1]
    server.stop()
    assert not [t for t in threading.enumerate() if t.name == "streamqc-metrics"]
    again = serve(listen=f"127.0.0.1:{port}")
    assert get(again, "/healthz")[0] == 200


def test_ipv6_loopback(serve):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        server = serve(listen="[::1]:0")
    except ConfigError as error:
        pytest.skip(f"no IPv6 loopback here: {error}")
    assert server.address[0] == "::1"
    assert get(server, "/healthz")[0] == 200
