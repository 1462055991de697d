"""``streamqc run`` end to end: real UDP feeds, a real Mosquitto broker, the real daemon process."""

from __future__ import annotations

import json
import re
import signal
import time
from importlib.metadata import version
from pathlib import Path

import cv2
import numpy as np

from monitor.ingest.srt import SRT_METRICS
from tests.daemon import BLACK, Channel, Clips, Daemon, events, retained_json
from tests.mqttbroker import Mosquitto, Subscriber

EVENT_KEYS = {
    "version", "alarm", "state", "start", "end", "channel", "input", "rendition", "severity",
    "wallclock", "id", "detail",
}  # fmt: skip


ROOT = Path(__file__).resolve().parents[2]


def online(sub: Subscriber, daemon: Daemon, timeout_s: float = 30.0) -> None:
    sub.wait_for(lambda m: m.topic == daemon.daemon_topic and b'"online"' in m.payload, timeout_s)


def test_alarms_status_and_thumbnails_arrive_with_the_documented_payloads(
    tmp_path: Path, clips: Clips, mosquitto: Mosquitto, daemons: list[Daemon]
) -> None:
    sub = Subscriber(mosquitto.port, "streamqc/#")
    daemon = Daemon(
        tmp_path,
        [Channel("news", clips.black), Channel("sport", clips.clean)],
        broker_url=mosquitto.url,
    )
    daemons.append(daemon.start())
    online(sub, daemon)
    status = retained_json(sub.received(), daemon.daemon_topic)
    assert status is not None
    assert status["version"] == 1 and status["site"] == "test" and status["channels"] == 2

    cleared = sub.wait_for(
        lambda m: m.topic.endswith("news/alarms") and b'"cleared"' in m.payload, 40
    )
    news = events(sub.received(), "news")
    raised = [e for e in news if e["state"] == "raised"]
    assert [e["alarm"] for e in raised] == ["black"], news
    black = raised[0]
    assert set(black) == EVENT_KEYS
    assert black["channel"] == "news" and black["input"] == "primary"
    assert black["rendition"] is None and black["severity"] == "major" and black["end"] is None
    end = json.loads(cleared.payload)
    assert end["id"] == black["id"] and end["alarm"] == "black"
    assert abs(end["end"] - end["start"] - BLACK.duration_s) < 0.1
    assert events(sub.received(), "sport") == []

    # The picture at the onset travels with the raise, and it is black.
    thumb_topic = black["detail"]["thumbnail"]
    assert thumb_topic == daemon.topic("news", f"alarms/{black['id']}/thumbnail")
    jpeg = sub.wait_for(lambda m: m.topic == thumb_topic, 5).payload
    picture = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert picture is not None and picture.shape[1] == 192 and picture.mean() < 30

    # Retained channel status followed the alarm: degraded while it lasted, ok after.
    statuses = [
        json.loads(m.payload) for m in sub.received(daemon.topic("news", "status")) if m.payload
    ]
    states = [s["state"] for s in statuses]
    assert states[-1] == "ok" and "degraded" in states, states
    during = next(s for s in statuses if s["state"] == "degraded")
    assert during["version"] == 1 and during["active_input"] == "primary"
    [active] = during["inputs"]["primary"]["alarms"]
    assert active["alarm"] == "black" and active["id"] == black["id"]
    assert active["since"] == black["wallclock"]

    # A periodic thumbnail per channel, retained, a real JPEG.
    for name in ("news", "sport"):
        periodic = sub.wait_for(lambda m, n=name: m.topic == daemon.topic(n, "thumbnail"), 10)
        assert periodic.payload[:2] == b"\xff\xd8"

    # Metrics: both channels decode at the clip's rate; health is green.
    for name in ("news", "sport"):
        daemon.wait_rate("streamqc_pictures_total", 20, 30, channel=name)
        # analysed as they come: a picture waits far less than a second between the two
        daemon.wait_metric("streamqc_picture_wait_max_seconds", lambda v: 0 < v < 1, channel=name)
    assert daemon.metric("streamqc_alarm_events_total", alarm="black", state="raised") == 1
    assert daemon.metric("streamqc_build_info", version=version("streamqc")) == 1
    assert daemon.metric("streamqc_tr101290_packets_total", channel="news") > 0
    code, body = daemon.get("/healthz")
    assert code == 200 and json.loads(body)["mqtt_connected"] is True
    sub.close()

    # Every metric the shipped Grafana dashboard and Prometheus rules name is one the daemon
    # exports: this daemon's own scrape, and libsrt's counters (no SRT input here) by name.
    _, scrape = daemon.get("/metrics")
    exported = set(re.findall(r"^(streamqc_\w+)", scrape.decode(), re.M))
    exported |= {f"streamqc_{name}" for name, _ in SRT_METRICS.values()}
    for shipped in ("grafana-dashboard.json", "prometheus-alerts.yaml"):
        named = set(re.findall(r"streamqc_\w+", (ROOT / "configs" / shipped).read_text()))
        assert named and named <= exported, (shipped, sorted(named - exported))


def test_events_raised_while_the_broker_is_down_arrive_in_order_when_it_returns(
    tmp_path: Path, clips: Clips, mosquitto: Mosquitto, daemons: list[Daemon]
) -> None:
    # A persistent session: the broker keeps what arrives for it while it reconnects.
    sub = Subscriber(mosquitto.port, "streamqc/#", client_id="noc", clean_start=False)
    daemon = Daemon(tmp_path, [Channel("news", clips.black)], broker_url=mosquitto.url)
    daemons.append(daemon.start())
    online(sub, daemon)
    mosquitto.stop()
    # The black fault (8-12 s of the clip) comes and goes while the broker is away.
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        lines = daemon.log_lines()
        if any(e.get("event") == "alarm cleared" and e.get("alarm") == "black" for e in lines):
            break
        time.sleep(0.2)
    else:
        raise AssertionError(daemon.log_text()[-3000:])
    assert daemon.metric("streamqc_mqtt_queued_messages") >= 2  # raise, its JPEG, clear
    assert daemon.metric("streamqc_mqtt_connected") == 0
    mosquitto.start()
    sub.wait_until(lambda ms: len([e for e in events(ms) if e["alarm"] == "black"]) >= 2, 30)
    time.sleep(1.0)  # anything duplicated would arrive now
    black = [e for e in events(sub.received()) if e["alarm"] == "black"]
    assert [e["state"] for e in black] == ["raised", "cleared"]
    assert black[0]["id"] == black[1]["id"]
    # (Mosquitto publishes the daemon's will when it shuts down: offline, then online again.)
    assert [m for m in sub.received() if m.dup and "/alarms" in m.topic] == []
    # Retained status is corrected on reconnect: online, and the channel ok again.
    sub.wait_for(lambda m: m.topic == daemon.daemon_topic and b'"online"' in m.payload)
    assert retained_json(sub.received(), daemon.topic("news", "status"))["state"] == "ok"
    daemon.wait_metric("streamqc_mqtt_queued_messages", lambda v: v == 0)
    sub.close()


def test_a_dead_sender_raises_input_loss_on_its_channel_alone(
    tmp_path: Path, clips: Clips, mosquitto: Mosquitto, daemons: list[Daemon]
) -> None:
    sub = Subscriber(mosquitto.port, "streamqc/#")
    a, b = Channel("a", clips.clean), Channel("b", clips.clean)
    daemon = Daemon(tmp_path, [a, b], broker_url=mosquitto.url)
    daemons.append(daemon.start())
    online(sub, daemon)
    daemon.wait_rate("streamqc_pictures_total", 20, channel="b")
    a.stop()
    raised = sub.wait_for(lambda m: m.topic.endswith("a/alarms") and b"input_loss" in m.payload)
    assert json.loads(raised.payload)["severity"] == "critical"
    status = sub.wait_for(
        lambda m: m.topic == daemon.topic("a", "status") and b'"failed"' in m.payload
    )
    assert json.loads(status.payload)["inputs"]["primary"]["state"] == "failed"
    # b keeps decoding while a is gone (its stats come once a second: sample slower than that).
    counts = []
    for _ in range(4):
        assert daemon.metric("streamqc_input_flowing", channel="b") == 1
        counts.append(daemon.metric("streamqc_pictures_total", channel="b"))
        time.sleep(1.6)
    assert counts == sorted(set(counts)), counts  # strictly increasing
    assert events(sub.received(), "b") == []
    sub.close()


def test_sigterm_stops_cleanly_and_leaves_offline_retained(
    tmp_path: Path, clips: Clips, mosquitto: Mosquitto, daemons: list[Daemon]
) -> None:
    daemon = Daemon(tmp_path, [Channel("news", clips.clean)], broker_url=mosquitto.url)
    daemons.append(daemon.start())
    sub = Subscriber(mosquitto.port, "streamqc/#")
    online(sub, daemon)
    daemon.wait_rate("streamqc_pictures_total", 20, channel="news")
    sub.close()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(timeout_s=10) == 0
    # What a console that connects now is told:
    late = Subscriber(mosquitto.port, "streamqc/#")
    late.wait_until(lambda ms: len({m.topic for m in ms if m.retain}) >= 2, 5)
    status = retained_json(late.received(), daemon.daemon_topic)
    assert status["state"] == "offline" and status["reason"] == "stopped"
    assert retained_json(late.received(), daemon.topic("news", "status"))["state"] == "offline"
    assert "Traceback" not in daemon.log_text()
    late.close()


def test_the_last_will_says_offline_when_the_daemon_is_killed(
    tmp_path: Path, clips: Clips, mosquitto: Mosquitto, daemons: list[Daemon]
) -> None:
    daemon = Daemon(tmp_path, [Channel("news", clips.clean)], broker_url=mosquitto.url)
    daemons.append(daemon.start())
    sub = Subscriber(mosquitto.port, "streamqc/#")
    online(sub, daemon)
    workers = [w["pid"] for w in daemon.health()["workers"]]
    assert len(workers) == 1
    daemon.signal(signal.SIGKILL)
    will = sub.wait_for(lambda m: m.topic == daemon.daemon_topic and b'"offline"' in m.payload, 10)
    assert json.loads(will.payload)["reason"] == "connection lost"
    # The workers notice their supervisor is gone and exit on their own.
    deadline = time.monotonic() + 10
    while workers and time.monotonic() < deadline:
        workers = [pid for pid in workers if _running(pid)]
        time.sleep(0.1)
    assert workers == []
    sub.close()


def _running(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
