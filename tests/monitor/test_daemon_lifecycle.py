"""The daemon over its life: reloads, crashed and hung workers, systemd, the embedded broker."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.daemon import Channel, Clips, Daemon, events, retained_json
from tests.mqttbroker import Mosquitto, Subscriber, free_port


def online(sub: Subscriber, daemon: Daemon, timeout_s: float = 30.0) -> None:
    sub.wait_for(lambda m: m.topic == daemon.daemon_topic and b'"online"' in m.payload, timeout_s)


def worker_of(daemon: Daemon, channel: str) -> dict:
    [worker] = [w for w in daemon.health()["workers"] if f"{channel}/primary" in w["inputs"]]
    return worker


def test_sighup_adds_removes_and_restarts_channels_and_leaves_the_rest_running(
    tmp_path: Path, clips: Clips, mosquitto: Mosquitto, daemons: list[Daemon]
) -> None:
    keep, change, drop = (Channel(n, clips.clean) for n in ("keep", "change", "drop"))
    silent = Channel("drop", clips.silent)  # a standing silence alarm, to be cleared on removal
    drop = silent
    daemon = Daemon(tmp_path, [keep, change, drop], broker_url=mosquitto.url)
    daemons.append(daemon.start())
    sub = Subscriber(mosquitto.port, "streamqc/#")
    online(sub, daemon)
    sub.wait_for(lambda m: m.topic.endswith("drop/alarms") and b"silence" in m.payload, 30)
    for name in ("keep", "change"):
        daemon.wait_metric("streamqc_pictures_total", lambda v: v > 100, channel=name)

    # An invalid file is rejected in one log line; everything keeps running.
    good = daemon.config_path.read_text()
    daemon.config_path.write_text(good.replace("version: 1", "version: 2"))
    daemon.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while not any(e.get("event", "").startswith("reload rejected") for e in daemon.log_lines()):
        assert time.monotonic() < deadline, daemon.log_text()[-2000:]
        time.sleep(0.1)
    [rejected] = [e for e in daemon.log_lines() if e.get("event", "").startswith("reload rejected")]
    assert "streamqc.yaml:1: version: must be 1" in rejected["reason"]
    assert "\n" not in rejected["reason"]

    keep_before = daemon.metric("streamqc_pictures_total", channel="keep")
    change_before = daemon.metric("streamqc_pictures_total", channel="change")
    added = Channel("added", clips.clean)
    added.start()
    daemon.channels["added"] = added
    change.detectors = "{transport: {enabled: false}, black: {raise_after: 3s}}"
    daemon.write_config([keep, change, added])
    daemon.signal(signal.SIGHUP)

    # Removed: its alarm cleared as such, its retained status deleted.
    cleared = sub.wait_for(lambda m: m.topic.endswith("drop/alarms") and b"cleared" in m.payload)
    assert json.loads(cleared.payload)["detail"]["cleared_by"] == "channel_removed"
    sub.wait_for(lambda m: m.topic == daemon.topic("drop", "status") and m.payload == b"")
    # Added: it runs and publishes its status.
    daemon.wait_metric("streamqc_pictures_total", lambda v: v > 25, channel="added")
    assert retained_json(sub.received(), daemon.topic("added", "status"))["state"] == "ok"
    # Changed: restarted (its counters start over); untouched: no gap (its counters go on).
    daemon.wait_metric("streamqc_pictures_total", lambda v: v < change_before, channel="change")
    assert daemon.metric("streamqc_pictures_total", channel="keep") > keep_before
    assert daemon.metric("streamqc_pictures_total", channel="drop") is None
    reloaded = [e for e in daemon.log_lines() if e.get("event") == "configuration reloaded"]
    assert reloaded[-1] | {"timestamp": None} == reloaded[-1] | {
        "timestamp": None, "added": 1, "removed": 1, "changed": 1, "unchanged": 1,
    }  # fmt: skip
    assert [e for e in events(sub.received(), "keep")] == []
    sub.close()


def test_a_crashed_or_hung_worker_is_restarted_and_its_alarms_carry_on(
    tmp_path: Path, clips: Clips, mosquitto: Mosquitto, daemons: list[Daemon]
) -> None:
    silent, other = Channel("silent", clips.silent), Channel("other", clips.clean)
    daemon = Daemon(tmp_path, [silent, other], broker_url=mosquitto.url)
    daemons.append(daemon.start())
    sub = Subscriber(mosquitto.port, "streamqc/#")
    online(sub, daemon)
    raised = sub.wait_for(lambda m: m.topic.endswith("silent/alarms") and b"raised" in m.payload)
    alarm_id = json.loads(raised.payload)["id"]
    other_worker = worker_of(daemon, "other")

    for how in (signal.SIGKILL, signal.SIGSTOP):  # a crash, then a hang
        worker = worker_of(daemon, "silent")
        os.kill(worker["pid"], how)
        deadline = time.monotonic() + 40
        while worker_of(daemon, "silent")["restarts"] == worker["restarts"]:
            assert time.monotonic() < deadline, daemon.log_text()[-2000:]
            time.sleep(0.2)
        daemon.wait_rate("streamqc_pictures_total", 20, channel="silent")
        time.sleep(6.0)  # longer than the window in which a restarted input reclaims its alarms
        silent_events = events(sub.received(), "silent")
        assert [(e["state"], e["id"]) for e in silent_events] == [("raised", alarm_id)]
        status = retained_json(sub.received(), daemon.topic("silent", "status"))
        assert [a["id"] for a in status["inputs"]["primary"]["alarms"]] == [alarm_id]

    # The other worker never noticed.
    assert worker_of(daemon, "other")["pid"] == other_worker["pid"]
    assert worker_of(daemon, "other")["restarts"] == 0
    assert events(sub.received(), "other") == []
    failures = [e for e in daemon.log_lines() if e.get("event") == "worker failed: restarting it"]
    assert [f["reason"].split(" ")[0] for f in failures] == ["exited", "no"]
    sub.close()


def test_systemd_hears_ready_watchdog_status_and_stopping(
    tmp_path: Path, clips: Clips, mosquitto: Mosquitto, daemons: list[Daemon]
) -> None:
    path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    listener.settimeout(1.0)
    daemon = Daemon(
        tmp_path,
        [Channel("news", clips.clean)],
        broker_url=mosquitto.url,
        env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "2000000"},
    )
    daemons.append(daemon.start())
    heard: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and sum("WATCHDOG=1" in h for h in heard) < 3:
        with contextlib.suppress(TimeoutError):
            heard.append(listener.recv(4096).decode())
    ready = [h for h in heard if "READY=1" in h]
    assert ready and "STATUS=1 channels" in ready[0], heard
    assert sum("WATCHDOG=1" in h for h in heard) >= 3, heard
    daemon.signal(signal.SIGTERM)
    while "STOPPING=1" not in " ".join(heard) and time.monotonic() < deadline + 10:
        with contextlib.suppress(TimeoutError):
            heard.append(listener.recv(4096).decode())
    assert any("STOPPING=1" in h for h in heard), heard
    assert daemon.wait(10) == 0
    listener.close()


def test_without_a_broker_configured_an_embedded_one_serves_consoles(
    tmp_path: Path, clips: Clips, daemons: list[Daemon]
) -> None:
    daemon = Daemon(tmp_path, [Channel("news", clips.black)], broker_url=None)
    daemons.append(daemon.start())
    deadline = time.monotonic() + 30
    while True:
        try:
            sub = Subscriber(daemon.embedded_port, "streamqc/#", timeout_s=2)
            break
        except (AssertionError, OSError):
            assert time.monotonic() < deadline, daemon.log_text()[-2000:]
            time.sleep(0.3)
    online(sub, daemon)
    raised = sub.wait_for(lambda m: m.topic.endswith("news/alarms") and b"black" in m.payload, 40)
    assert json.loads(raised.payload)["state"] == "raised"
    status = sub.wait_for(lambda m: m.topic == daemon.topic("news", "status"))
    assert json.loads(status.payload)["version"] == 1
    sub.close()


def test_a_file_input_or_a_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "version: 1\nsite: s\nchannels:\n  - name: a\n    inputs: {primary: {url: /tmp/x.ts}}\n"
    )
    run = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "run", "--config", str(config)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "/tmp/x.ts is not a live input" in run.stderr
    config.write_text("version: 1\nsite: s\nmqtt: {url: 'mqtt://u:hunter2@h'}\nchannels: []\n")
    run = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "run", "--config", str(config)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2 and "hunter2" not in run.stderr
    assert run.stderr.startswith(f"streamqc: error: {config}:3: mqtt.url: no credentials")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    config.write_text(
        f"version: 1\nsite: s\nmqtt: {{embedded_listen: '127.0.0.1:{port}'}}\n"
        f"metrics: {{listen: '127.0.0.1:{free_port()}'}}\nstate_dir: {tmp_path}\n"
        "channels:\n  - name: a\n    inputs: {primary: {url: 'udp://127.0.0.1:5999'}}\n"
    )
    run = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "run", "--config", str(config)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    busy.close()
    assert run.returncode == 1, run.stderr
    assert "address in use" in run.stderr and "Traceback" not in run.stderr


def test_alarms_open_at_a_restart_resume_and_those_of_removed_channels_clear(
    tmp_path: Path, clips: Clips, mosquitto: Mosquitto, daemons: list[Daemon]
) -> None:
    silent = Channel("silent", clips.silent)
    daemon = Daemon(tmp_path, [silent], broker_url=mosquitto.url)
    daemons.append(daemon.start())
    sub = Subscriber(mosquitto.port, "streamqc/#")
    raised = sub.wait_for(lambda m: m.topic.endswith("silent/alarms") and b"raised" in m.payload)
    alarm = json.loads(raised.payload)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(10) == 0

    # Restarted (systemd would): the standing silence is the same alarm, not a second one.
    daemon.start()
    online(sub, daemon)
    daemon.wait_rate("streamqc_pictures_total", 20, channel="silent")
    time.sleep(6.0)  # past the window in which a restarted input reclaims its alarms
    assert [(e["state"], e["id"]) for e in events(sub.received(), "silent")] == [
        ("raised", alarm["id"])
    ]
    status = retained_json(sub.received(), daemon.topic("silent", "status"))
    [active] = status["inputs"]["primary"]["alarms"]
    assert (active["id"], active["start"]) == (alarm["id"], alarm["start"])

    # Stopped again, and the channel taken out of the configuration meanwhile.
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(10) == 0
    other = Channel("other", clips.clean)
    daemon.channels = {"other": other}
    silent.stop()
    daemon.write_config([other])
    daemon.start()
    cleared = sub.wait_for(lambda m: m.topic.endswith("silent/alarms") and b"cleared" in m.payload)
    cleared_event = json.loads(cleared.payload)
    assert cleared_event["id"] == alarm["id"]
    assert cleared_event["detail"]["cleared_by"] == "channel_removed"
    sub.wait_for(lambda m: m.topic == daemon.topic("silent", "status") and m.payload == b"")
    sub.close()
