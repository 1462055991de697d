"""``streamqc agent`` as its users meet it: a real process, a real Mosquitto, real encoders.

The agent runs as ``python -m monitor.cli agent --config FILE``; commands are published and
acks / states read over MQTT like the daemon does. The process action manages
``tests/encoder.py`` (PyAV re-muxing UDP MPEG-TS) fed by real-time UDP senders; the HTTP action
calls an ``http.server`` here; the script action runs shell scripts.
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import av
import paho.mqtt.publish
import pytest

from failover.agent.settings import HttpSettings, ProcessSettings, ScriptSettings
from failover.protocol import Ack, Command, ack_topic, command_topic, state_topic
from monitor.config import DAEMON_ONLY_MQTT_KEYS, MqttConfig
from monitor.config.agent import load_agent_config
from monitor.demo.synth import MediaSpec
from monitor.demo.udp_sender import UdpSender, free_udp_port
from monitor.errors import ConfigError
from tests.mqttbroker import Mosquitto, Received, Subscriber

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "streamqc/test"
STATUS = f"{PREFIX}/agents/enc01/status"
CLIP_S = 30.0


# --- Helpers ------------------------------------------------------------------------------------


def flow(value: Any) -> str:
    """A value in YAML flow style (JSON is YAML)."""
    return json.dumps(value)


class AgentProcess:
    """``streamqc agent`` on a configuration written here; its log in ``agent.log``."""

    def __init__(
        self,
        folder: Path,
        port: int,
        channels: str,
        *,
        agent_id: str = "enc01",
        mqtt: str | None = None,
    ):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.config = folder / "agent.yaml"
        self.config.write_text(
            "version: 1\n"
            "site: test\n"
            f"agent_id: {agent_id}\n"
            f"state_dir: {flow(str(folder / 'state'))}\n"
            f"mqtt: {mqtt or flow({'url': f'mqtt://127.0.0.1:{port}', 'keepalive': '5s'})}\n"
            f"channels:\n{channels}"
        )
        self.log_path = folder / "agent.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str] | None = None) -> AgentProcess:
        argv = [sys.executable, "-m", "monitor.cli", "agent", "--config", str(self.config)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*argv, "--log-format", "json"],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
            )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log().splitlines() if line.startswith("{")]

    def signal(self, number: signal.Signals, timeout_s: float = 20.0) -> int:
        assert self.process is not None
        self.process.send_signal(number)
        return self.process.wait(timeout_s)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        assert "Traceback" not in self.log(), self.log()


def iso_ago(seconds: float) -> str:
    """UTC ISO 8601 of ``seconds`` ago, as the daemon writes ``issued_at``."""
    at = datetime.now(UTC) - timedelta(seconds=seconds)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def send(
    port: int, channel: str, to: str, *, command_id: str | None = None, age_s: float = 0.0
) -> Command:
    command = Command(
        command_id=command_id or uuid.uuid4().hex,
        channel=channel,
        to=to,
        reason=("black",),
        issued_at=iso_ago(age_s),
    )
    publish(port, command_topic(PREFIX, channel), command.to_json())
    return command


def publish(port: int, topic: str, payload: bytes, *, retain: bool = False) -> None:
    paho.mqtt.publish.single(topic, payload, qos=1, retain=retain, hostname="127.0.0.1", port=port)


def acks_of(sub: Subscriber, command_id: str) -> list[Received]:
    return [
        m
        for m in sub.received()
        if m.topic.endswith("/failover/ack") and json.loads(m.payload)["command_id"] == command_id
    ]


def wait_ack(sub: Subscriber, command: Command, status: str, timeout_s: float = 20.0) -> Ack:
    topic = ack_topic(PREFIX, command.channel)
    message = sub.wait_for(
        lambda m: (
            m.topic == topic
            and Ack.from_json(m.payload).command_id == command.command_id
            and Ack.from_json(m.payload).status == status
        ),
        timeout_s,
    )
    return Ack.from_json(message.payload)


def wait_state(
    sub: Subscriber,
    channel: str,
    check: Callable[[dict[str, Any]], bool],
    timeout_s: float = 20.0,
    *,
    after: int = 0,
) -> dict[str, Any]:
    """The first state of ``channel`` passing ``check`` among the messages from ``after`` on."""
    topic = state_topic(PREFIX, channel)
    deadline = time.monotonic() + timeout_s
    while True:
        for m in sub.received()[after:]:
            if m.topic == topic and check(state := json.loads(m.payload)):
                return state
        assert time.monotonic() < deadline, f"no such state of {channel} in {timeout_s} s"
        time.sleep(0.02)


def picture_size(port: int, timeout_s: float = 15.0) -> tuple[int, int]:
    """Size of the first picture decoded from the MPEG-TS arriving on ``port`` from now on."""
    container = av.open(
        f"udp://127.0.0.1:{port}",
        format="mpegts",
        options={"timeout": str(int(timeout_s * 1e6)), "overrun_nonfatal": "1"},
        timeout=timeout_s,
    )
    try:
        for frame in container.decode(video=0):
            return frame.width, frame.height
    finally:
        container.close()
    raise AssertionError(f"no picture on port {port}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is dead too
        return stat.read().split(")")[-1].split()[0] != "Z"


def started_pids(log: Path) -> list[int]:
    return [int(line.split()[0]) for line in log.read_text().splitlines()] if log.exists() else []


def eventually(condition: Callable[[], bool], timeout_s: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        time.sleep(0.05)


def sh(script: str) -> list[str]:
    """A script action / process command running ``script`` with $1 $2 $3 = name, url, channel."""
    return ["/bin/sh", "-c", script, "sh", "{input_name}", "{input}", "{channel}"]


# --- Fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    server = Mosquitto(tmp_path_factory.mktemp("agent-broker")).start()
    yield server
    server.stop()


@dataclasses.dataclass
class Api:
    """A tiny encoder API: records every request; /fail answers 500."""

    port: int
    requests: list[tuple[str, str, bytes, dict[str, str]]]


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    requests: list[tuple[str, str, bytes, dict[str, str]]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            requests.append((self.command, self.path, self.rfile.read(length), dict(self.headers)))
            if self.path.startswith("/fail"):
                self.send_response(500)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"matrix busy\n")
            else:
                self.send_response(204)
                self.end_headers()

        do_POST = do_PUT = do_GET = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Api(server.server_address[1], requests)
    server.shutdown()
    server.server_close()


BROKEN_SCRIPT = 'echo "starting $0" >&2; echo "matrix port 3: no answer" >&2; exit 2'


@pytest.fixture(scope="module")
def agent(
    broker: Mosquitto, api: Api, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AgentProcess]:
    """One agent with script and HTTP channels, shared by the tests that do not stop it."""
    folder = tmp_path_factory.mktemp("agent")
    record = folder / "script-calls"
    base = f"http://127.0.0.1:{api.port}"
    script_ok = folder / "switch-ok"
    script_ok.write_text(f'#!/bin/sh\nsleep 0.3\necho "$@" >> {record}\n')
    script_ok.chmod(0o755)
    channels = f"""\
  - name: scripted
    inputs: {{primary: "udp://10.0.0.1:5000", backup: "udp://10.0.0.2:5000"}}
    action: {{script: {{path: {flow(str(script_ok))}}}}}
  - name: broken
    inputs: {{primary: a, backup: b}}
    action:
      script:
        path: /bin/sh
        args: {flow(["-c", BROKEN_SCRIPT, "{input_name}"])}
  - name: slow
    inputs: {{primary: a, backup: b}}
    action: {{script: {{path: /bin/sleep, args: ["30"], timeout: 500ms}}}}
  - name: api
    inputs: {{primary: "udp://10.0.0.1:5000", backup: "udp://10.0.0.2:5000"}}
    action:
      http:
        url: "{base}/api/{{channel}}/input?url={{input}}"
        method: PUT
        body: '{{"input": "{{input_name}}"}}'
        headers: {{Content-Type: application/json, X-Channel: "{{channel}}"}}
  - name: api-broken
    inputs: {{primary: a, backup: b}}
    action: {{http: {{url: "{base}/fail?to={{input_name}}", timeout: 2s}}}}
"""
    process = AgentProcess(folder, broker.port, channels).start()
    process.record = record  # type: ignore[attr-defined]
    sub = Subscriber(broker.port, f"{PREFIX}/#")
    try:
        sub.wait_for(lambda m: m.topic == STATUS and b'"online"' in m.payload, 20)
    except AssertionError:
        raise AssertionError(process.log()) from None
    finally:
        sub.close()
    yield process
    process.close()


@pytest.fixture
def sub(broker: Mosquitto) -> Iterator[Subscriber]:
    """Everything under the prefix on the shared broker (the shared agent's)."""
    subscriber = Subscriber(broker.port, f"{PREFIX}/#")
    yield subscriber
    subscriber.close()


@pytest.fixture
def own(mosquitto: Mosquitto) -> Iterator[tuple[Mosquitto, Subscriber]]:
    """A broker of the test's own (no retained state from other tests) and its subscriber."""
    subscriber = Subscriber(mosquitto.port, f"{PREFIX}/#")
    yield mosquitto, subscriber
    subscriber.close()


# --- The process action with a real encoder -----------------------------------------------------


@pytest.fixture
def feeds(media: Callable[[MediaSpec], Path]) -> Iterator[tuple[int, int]]:
    """UDP feeds on two ports: primary 192x108, backup 160x90 (so the output tells which)."""
    primary = UdpSender(media(MediaSpec(CLIP_S, 192, 108)), free_udp_port(), CLIP_S).start()
    backup = UdpSender(media(MediaSpec(CLIP_S, 160, 90)), free_udp_port(), CLIP_S).start()
    yield primary.address[1], backup.address[1]
    primary.stop()
    backup.stop()


def test_a_switch_restarts_the_encoder_on_the_backup_feed_once_even_if_sent_twice(
    own: tuple[Mosquitto, Subscriber], feeds: tuple[int, int], tmp_path: Path
) -> None:
    broker, sub = own
    primary, backup = feeds
    output = free_udp_port()
    started = tmp_path / "started.log"
    command = [sys.executable, "-m", "tests.encoder", "--input", "{input}",
               "--output", f"udp://127.0.0.1:{output}", "--started-log", str(started)]  # fmt: skip
    channels = f"""\
  - name: news
    inputs: {{primary: "udp://127.0.0.1:{primary}", backup: "udp://127.0.0.1:{backup}"}}
    action: {{process: {{command: {flow(command)}, stop_timeout: 3s, start_check: 1s}}}}
"""
    agent = AgentProcess(tmp_path / "agent", broker.port, channels).start()
    try:
        first = wait_state(sub, "news", lambda s: s["encoder_running"])
        assert first["active_input"] == "primary" and first["online"]
        assert first["agent_id"] == "enc01"
        assert picture_size(output) == (192, 108)

        switch = send(broker.port, "news", "backup")
        wait_ack(sub, switch, "done")
        statuses = [Ack.from_json(m.payload).status for m in acks_of(sub, switch.command_id)]
        assert statuses == ["accepted", "done"]
        state = wait_state(sub, "news", lambda s: s["last_command_id"] == switch.command_id)
        assert (state["active_input"], state["encoder_running"]) == ("backup", True)
        late = Subscriber(broker.port, state_topic(PREFIX, "news"))  # a console starting now
        try:
            kept = late.wait_for(lambda m: True)
        finally:
            late.close()
        assert kept.retain and json.loads(kept.payload)["active_input"] == "backup"
        assert picture_size(output) == (160, 90)
        pids = started_pids(started)
        assert len(pids) == 2 and not alive(pids[0]) and alive(pids[1])

        send(broker.port, "news", "backup", command_id=switch.command_id)  # redelivered
        sub.wait_until(lambda _: len(acks_of(sub, switch.command_id)) == 3)
        done, again = acks_of(sub, switch.command_id)[1:]
        assert again.payload == done.payload  # the same ack, byte for byte
        time.sleep(1.5)  # time enough for a restart that must not happen
        assert started_pids(started) == pids and alive(pids[1])
        assert len(acks_of(sub, switch.command_id)) == 3

        unknown = send(broker.port, "news", "tertiary")
        ack = wait_ack(sub, unknown, "rejected")
        assert ack.detail == "unknown input 'tertiary' (inputs: primary, backup)"
        assert started_pids(started) == pids
    finally:
        agent.close()


def test_a_switch_whose_encoder_will_not_start_fails_and_puts_the_previous_input_back(
    own: tuple[Mosquitto, Subscriber], tmp_path: Path
) -> None:
    broker, sub = own
    starts = tmp_path / "starts"
    script = f'echo "$1" >> {starts}; case "$2" in bad*) echo "$2: Connection refused" >&2; exit 1;; esac; exec sleep 60'  # noqa: E501
    channels = f"""\
  - name: news
    inputs: {{primary: good, backup: "bad://10.0.0.9"}}
    action: {{process: {{command: {flow(sh(script))}, start_check: 500ms}}}}
"""
    agent = AgentProcess(tmp_path / "agent", broker.port, channels).start()
    try:
        wait_state(sub, "news", lambda s: s["encoder_running"])
        seen = len(sub.received())
        switch = send(broker.port, "news", "backup")
        ack = wait_ack(sub, switch, "failed")
        assert ack.detail.startswith("encoder (/bin/sh on backup, after ")
        assert ack.detail.endswith(
            "ended (exit status 1): bad://10.0.0.9: Connection refused; back on primary"
        )
        assert starts.read_text().split() == ["primary", "backup", "primary"]
        state = wait_state(sub, "news", lambda s: s["encoder_running"], after=seen)
        assert (state["active_input"], state["last_command_id"]) == ("primary", None)
    finally:
        agent.close()


def test_an_encoder_that_dies_is_restarted_on_the_same_input_and_the_state_says_so(
    own: tuple[Mosquitto, Subscriber], tmp_path: Path
) -> None:
    broker, sub = own
    starts = tmp_path / "starts"
    script = f'echo "$1" >> {starts}; sleep 1; echo "lost sync" >&2; exit 3'
    channels = f"""\
  - name: news
    inputs: {{primary: a, backup: b}}
    initial: backup
    action: {{process: {{command: {flow(sh(script))}, start_check: 200ms}}}}
"""
    agent = AgentProcess(tmp_path / "agent", broker.port, channels).start()
    try:
        topic = state_topic(PREFIX, "news")
        sub.wait_until(
            lambda messages: (
                [json.loads(m.payload)["encoder_running"] for m in messages if m.topic == topic][:3]
                == [True, False, True]
            ),  # fmt: skip
            timeout_s=15,
        )
        assert set(starts.read_text().split()) == {"backup"}
        down = next(line for line in agent.lines() if line["event"] == "encoder down")
        assert down["reason"] == "encoder ended (exit status 3): lost sync"
    finally:
        agent.close()


def test_a_killed_agent_is_marked_offline_by_its_last_will_and_its_encoder_stops(
    own: tuple[Mosquitto, Subscriber], tmp_path: Path
) -> None:
    broker, sub = own
    started = tmp_path / "started"
    script = f"echo $$ >> {started}; exec sleep 60"
    channels = f"""\
  - name: news
    inputs: {{primary: a, backup: b}}
    action: {{process: {{command: {flow(sh(script))}, start_check: 200ms}}}}
"""
    agent = AgentProcess(tmp_path / "agent", broker.port, channels).start()
    try:
        sub.wait_for(lambda m: m.topic == STATUS and json.loads(m.payload)["state"] == "online")
        wait_state(sub, "news", lambda s: s["encoder_running"])
        agent.signal(signal.SIGKILL)
        will = sub.wait_for(
            lambda m: m.topic == STATUS and json.loads(m.payload)["state"] == "offline"
        )
        assert json.loads(will.payload)["reason"] == "connection lost"
        (encoder,) = started_pids(started)
        eventually(lambda: not alive(encoder), what="the encoder to die with its agent")
    finally:
        agent.close()


def test_a_stopped_agent_stops_its_encoder_and_says_offline_then_resumes_where_it_was(
    own: tuple[Mosquitto, Subscriber], tmp_path: Path
) -> None:
    broker, sub = own
    started = tmp_path / "started"
    script = f'echo "$$ $1" >> {started}; exec sleep 60'
    channels = f"""\
  - name: news
    inputs: {{primary: a, backup: b}}
    action: {{process: {{command: {flow(sh(script))}, start_check: 200ms}}}}
"""
    agent = AgentProcess(tmp_path / "agent", broker.port, channels).start()
    try:
        wait_state(sub, "news", lambda s: s["encoder_running"])
        switch = send(broker.port, "news", "backup")
        wait_ack(sub, switch, "done")
        assert agent.signal(signal.SIGTERM) == 0
        final = wait_state(sub, "news", lambda s: not s["online"])
        assert (final["active_input"], final["encoder_running"]) == ("backup", False)
        status = sub.wait_for(
            lambda m: m.topic == STATUS and json.loads(m.payload)["state"] == "offline"
        )
        assert json.loads(status.payload)["reason"] == "stopped"
        assert status.retain is False  # live, not the retained copy
        assert not any(alive(int(line.split()[0])) for line in started.read_text().splitlines())

        # A command left retained on the topic while the agent was away is stale: not run.
        stale = Command("c-stale", "news", "primary", ("black",), "2025-01-01T00:00:00Z")
        publish(broker.port, command_topic(PREFIX, "news"), stale.to_json(), retain=True)
        seen = len(sub.received())
        agent.start()  # the state file remembers backup: the encoder starts on it again
        resumed = wait_state(sub, "news", lambda s: s["encoder_running"], after=seen)
        assert (resumed["active_input"], resumed["last_command_id"]) == (
            "backup",
            switch.command_id,
        )
        assert started.read_text().split()[-1] == "backup"
        event = "retained command ignored (commands must not be retained)"
        eventually(lambda: any(line["event"] == event for line in agent.lines()), what=event)
        assert acks_of(sub, "c-stale") == []
    finally:
        agent.close()


def test_after_a_broker_crash_the_agent_reconnects_republishes_its_state_and_takes_commands(
    own: tuple[Mosquitto, Subscriber], tmp_path: Path
) -> None:
    broker, sub = own
    channels = """\
  - name: news
    inputs: {primary: a, backup: b}
    action: {script: {path: /bin/true}}
"""
    agent = AgentProcess(tmp_path / "agent", broker.port, channels).start()
    try:
        wait_state(sub, "news", lambda s: True)
        broker.kill()  # nothing saved: the retained state is gone with it
        broker.start()
        fresh = Subscriber(broker.port, f"{PREFIX}/#")
        try:
            state = wait_state(fresh, "news", lambda s: True, timeout_s=30)
            assert (state["active_input"], state["online"]) == ("primary", True)
            switch = send(broker.port, "news", "backup")
            wait_ack(fresh, switch, "done")
        finally:
            fresh.close()
        assert any(line["event"] == "mqtt disconnected" for line in agent.lines())
    finally:
        agent.close()


def test_the_agent_tells_systemd_when_it_is_ready_pings_the_watchdog_and_says_it_stops(
    own: tuple[Mosquitto, Subscriber], tmp_path: Path
) -> None:
    broker, sub = own
    channels = """\
  - name: news
    inputs: {primary: a, backup: b}
    action: {script: {path: /bin/true}}
"""
    name = f"streamqc-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind("\0" + name)  # an abstract socket: no path length limit to mind
        systemd.settimeout(20)
        agent = AgentProcess(tmp_path / "agent", broker.port, channels)
        agent.start(env={"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "1000000"})
        try:
            said: list[str] = []
            while sum("WATCHDOG=1" in each for each in said) < 2:
                said.append(systemd.recv(4096).decode())
            ready = next(each for each in said if each.startswith("READY=1"))
            assert ready.endswith("news: primary")
            assert agent.signal(signal.SIGTERM) == 0
            while not said[-1].startswith("STOPPING=1"):
                said.append(systemd.recv(4096).decode())
        finally:
            agent.close()


# --- Script and HTTP actions --------------------------------------------------------------------


def on_air(sub: Subscriber, channel: str) -> tuple[str, str]:
    """(input on air, the other one) by the channel's latest state (retained on subscribing)."""
    wait_state(sub, channel, lambda s: True)
    latest = json.loads(sub.received(state_topic(PREFIX, channel))[-1].payload)
    active = latest["active_input"]
    return active, "backup" if active == "primary" else "primary"


def test_a_script_action_switches_with_name_url_and_channel_as_arguments(
    agent: AgentProcess, broker: Mosquitto, sub: Subscriber
) -> None:
    was, to = on_air(sub, "scripted")
    switch = send(broker.port, "scripted", to)
    ack = wait_ack(sub, switch, "done")
    assert ack.detail.startswith(f"{to} on air (switched from {was} in 0.")
    calls = agent.record.read_text().splitlines()  # type: ignore[attr-defined]
    url = {"primary": "udp://10.0.0.1:5000", "backup": "udp://10.0.0.2:5000"}[to]
    assert calls[-1] == f"{to} {url} scripted"
    state = wait_state(sub, "scripted", lambda s: s["last_command_id"] == switch.command_id)
    assert (state["active_input"], state["encoder_running"]) == (to, None)

    again = send(broker.port, "scripted", to)
    assert wait_ack(sub, again, "done").detail == f"{to} already on air"
    assert len(agent.record.read_text().splitlines()) == len(calls)  # type: ignore[attr-defined]


def test_a_failing_script_fails_the_switch_with_the_end_of_its_stderr(
    agent: AgentProcess, broker: Mosquitto, sub: Subscriber
) -> None:
    switch = send(broker.port, "broken", "backup")
    ack = wait_ack(sub, switch, "failed")
    assert ack.detail == "/bin/sh ended (exit status 2): starting backup / matrix port 3: no answer"
    state = wait_state(sub, "broken", lambda s: True)
    assert state["active_input"] == "primary"


def test_a_script_that_hangs_is_killed_at_its_timeout(
    agent: AgentProcess, broker: Mosquitto, sub: Subscriber
) -> None:
    switch = send(broker.port, "slow", "backup")
    ack = wait_ack(sub, switch, "failed")
    assert ack.detail == "/bin/sleep did not finish in 0.5 s (killed)"


def test_commands_during_a_switch_wait_their_turn(
    agent: AgentProcess, broker: Mosquitto, sub: Subscriber
) -> None:
    was, to = on_air(sub, "scripted")
    first = send(broker.port, "scripted", to)  # the script takes 0.3 s
    second = send(broker.port, "scripted", was)
    sub.wait_until(lambda _: bool(acks_of(sub, second.command_id)))
    waiting = Ack.from_json(acks_of(sub, second.command_id)[0].payload)
    assert waiting.status == "accepted"
    assert waiting.detail == f"waiting for command {first.command_id} (to {to}) to finish"
    wait_ack(sub, second, "done")
    done = [
        Ack.from_json(m.payload).command_id
        for m in sub.received(ack_topic(PREFIX, "scripted"))
        if Ack.from_json(m.payload).status == "done"
    ]
    assert done[-2:] == [first.command_id, second.command_id]
    assert wait_state(sub, "scripted", lambda s: s["last_command_id"] == second.command_id)


def test_an_http_action_calls_the_encoder_api_with_the_input_filled_in(
    agent: AgentProcess, api: Api, broker: Mosquitto, sub: Subscriber
) -> None:
    switch = send(broker.port, "api", "backup")
    wait_ack(sub, switch, "done")
    method, path, body, headers = api.requests[-1]
    assert (method, path) == ("PUT", "/api/api/input?url=udp%3A%2F%2F10.0.0.2%3A5000")
    assert json.loads(body) == {"input": "backup"}
    assert (headers["Content-Type"], headers["X-Channel"]) == ("application/json", "api")


def test_an_http_error_status_fails_the_switch_with_the_answer(
    agent: AgentProcess, api: Api, broker: Mosquitto, sub: Subscriber
) -> None:
    switch = send(broker.port, "api-broken", "backup")
    ack = wait_ack(sub, switch, "failed")
    url = f"http://127.0.0.1:{api.port}/fail?to=backup"
    assert ack.detail == f"POST {url}: HTTP 500 Internal Server Error: matrix busy"


def test_a_misrouted_command_is_rejected_and_an_invalid_one_ignored(
    agent: AgentProcess, broker: Mosquitto, sub: Subscriber
) -> None:
    misrouted = Command("c-misrouted", "other", "backup", ("black",), iso_ago(0))
    publish(broker.port, command_topic(PREFIX, "scripted"), misrouted.to_json())
    ack = wait_ack(sub, dataclasses.replace(misrouted, channel="scripted"), "rejected")
    assert ack.detail == "command for channel 'other' came on the topic of 'scripted'"

    publish(broker.port, command_topic(PREFIX, "scripted"), b'{"version": 1, "to": "backup"}')
    event = "invalid command ignored"
    eventually(lambda: any(line["event"] == event for line in agent.lines()), what=event)
    line = next(line for line in agent.lines() if line["event"] == event)
    assert (line["channel"], line["reason"]) == ("scripted", "command: command_id: missing")


def test_a_command_issued_too_long_ago_is_rejected_and_not_run(
    agent: AgentProcess, broker: Mosquitto, sub: Subscriber
) -> None:
    """A switch redelivered minutes late (QoS 1 after a restart) must not take a healthy
    channel off air: older than max_command_age (30 s by default), it is refused."""
    stale = send(broker.port, "scripted", "backup", age_s=95.0)
    ack = wait_ack(sub, stale, "rejected")
    assert ack.detail.startswith("stale: issued 95 s ago, at "), ack.detail
    assert ack.detail.endswith("(max_command_age 30 s)"), ack.detail
    fresh = send(broker.port, "scripted", "backup", age_s=5.0)
    assert wait_ack(sub, fresh, "done").status == "done"


# --- Configuration ------------------------------------------------------------------------------

AGENT_YAML = """\
version: 1
site: test
mqtt: {url: "mqtt://127.0.0.1:1883"}
channels:
  - name: news
    inputs: {primary: "udp://127.0.0.1:5000", backup: "udp://127.0.0.1:5001"}
    action:
      process: {command: [ffmpeg, -i, "{input}", -f, mpegts, "udp://127.0.0.1:6000"]}
"""


@pytest.fixture
def error(tmp_path: Path) -> Callable[[str], str]:
    def load(text: str) -> str:
        path = tmp_path / "x.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError) as raised:
            load_agent_config(path)
        message = str(raised.value)
        assert "\n" not in message
        return message.replace(f"{tmp_path}/", "")

    return load


def test_a_minimal_agent_config_loads_with_its_defaults(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(AGENT_YAML)
    config = load_agent_config(path)
    settings = config.settings
    assert settings.prefix == "streamqc/test" and settings.agent_id
    (news,) = settings.channels
    assert news.initial == "primary"
    assert news.action == ProcessSettings(
        ("ffmpeg", "-i", "{input}", "-f", "mpegts", "udp://127.0.0.1:6000"), 5.0, 1.0, 30.0
    )
    assert config.broker().client_id == f"streamqc-agent-test-{settings.agent_id}"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(
            ("    action:\n", "    initial: spare\n    action:\n"),
            "x.yaml:7: channels[0].initial: 'spare' is not an input (inputs: primary, backup)",
            id="an initial input that does not exist",
        ),
        pytest.param(
            ('inputs: {primary: "udp://127.0.0.1:5000", ', "inputs: {main: x, "),
            "x.yaml:5: channels[0].initial: not set, and no input is named primary "
            "(inputs: main, backup)",
            id="no primary and no initial",
        ),
        pytest.param(
            ("      process:", "      script: {path: /bin/true}\n      process:"),
            "x.yaml:7: channels[0].action: must hold exactly one of process, http, script, got "
            "{script: {path: /bin/true}, process: {command: [ffmpeg, -i, '{input}', -f, mp...",
            id="two actions",
        ),
        pytest.param(
            ('"{input}"', "in.ts"),
            "x.yaml:8: channels[0].action.process.command: must use {input} or {input_name} "
            "somewhere",
            id="a command that ignores the input",
        ),
        pytest.param(
            ('"udp://127.0.0.1:6000"]}', '"udp://127.0.0.1:6000"], stop_timeout: soon}'),
            "x.yaml:8: channels[0].action.process.stop_timeout: must be a duration like 500ms, "
            "5s, 2m, 1h or a number of seconds, got 'soon'",
            id="a duration without a number",
        ),
        pytest.param(
            ('mqtt: {url: "mqtt://127.0.0.1:1883"}', "mqtt: {embedded_listen: '127.0.0.1:1883'}"),
            "x.yaml:3: mqtt: unknown key 'embedded_listen' (known: url, client_id, username, "
            "password_file, tls, prefix, keepalive)",
            id="no embedded broker for the agent",
        ),
        pytest.param(
            ("    action:\n      process: {", "    action:\n      http: {url: 'ftp://x', "),
            "x.yaml:8: channels[0].action.http: unknown key 'command' (known: url, method, body, "
            "headers, timeout, expect_status)",
            id="process keys under http",
        ),
        pytest.param(
            ("    action:\n      process:", "    action:\n      http: {url: 'ftp://x/{input}'}\n#"),
            "x.yaml:8: channels[0].action.http.url: must be http://... or https://..., "
            "got 'ftp://x/{input}'",
            id="an API URL of another scheme",
        ),
        pytest.param(
            ("inputs: {", "inputs: {'main feed': x, "),
            "x.yaml:6: channels[0].inputs.main feed: an input name must be letters, digits, '_', "
            "'.' or '-' (commands name it)",
            id="an input name with a space",
        ),
        pytest.param(
            (
                "    action:\n      process:",
                "    action:\n      http: {url: 'http://x/{input}', headers: {X-Input: 1}}\n#",
            ),  # fmt: skip
            "x.yaml:8: channels[0].action.http.headers.X-Input: must be a string, got 1",
            id="a header that is not a string",
        ),
        pytest.param(
            ('mqtt: {url: "mqtt://127.0.0.1:1883"}', "mqtt: {username: agent}"),
            "x.yaml:3: mqtt: missing required key 'url'",
            id="no broker URL",
        ),
        pytest.param(
            ("channels:", "agent_id: 'enc 01'\nchannels:"),
            "x.yaml:4: agent_id: must be letters, digits, '_', '.' or '-' (it goes into MQTT "
            "topics), got 'enc 01'",
            id="an agent id that cannot be a topic level",
        ),
    ],
)
def test_each_agent_config_mistake_is_one_exact_line(
    error: Callable[[str], str], change: tuple[str, str], message: str
) -> None:
    old, new = change
    assert old in AGENT_YAML
    assert error(AGENT_YAML.replace(old, new, 1)) == message


def test_a_bad_agent_config_is_one_line_and_exit_status_2(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(AGENT_YAML.replace("version: 1", "version: 2"))
    result = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "agent", "--config", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr == (
        f"streamqc: error: {path}:1: version: must be 1, the only format version so far, got 2\n"
    )


def test_the_agent_example_loads_and_documents_every_key() -> None:
    example = ROOT / "configs" / "agent-example.yaml"
    config = load_agent_config(example)
    names = [channel.name for channel in config.settings.channels]
    assert names == ["news-hd", "sport", "radio"]
    assert [type(c.action) for c in config.settings.channels] == [
        ProcessSettings,
        HttpSettings,
        ScriptSettings,
    ]
    text = example.read_text()
    for section in (MqttConfig, ProcessSettings, HttpSettings, ScriptSettings):
        for spec in dataclasses.fields(section):
            if section is MqttConfig and spec.name in DAEMON_ONLY_MQTT_KEYS:
                continue
            assert f"{spec.name.removesuffix('_s')}:" in text, spec.name
    for key in (
        "version",
        "site",
        "agent_id",
        "state_dir",
        "max_command_age",
        "inputs",
        "initial",
        "action",
    ):
        assert f"{key}:" in text, key


def test_the_agent_examples_sample_error_message_is_the_real_one(tmp_path: Path) -> None:
    example = ROOT / "configs" / "agent-example.yaml"
    text = example.read_text()
    sample = next(line for line in text.splitlines() if "must be > 0" in line)
    broken = tmp_path / "agent-example.yaml"
    broken.write_text(text.replace("stop_timeout: 5s ", "stop_timeout: 0  ", 1))
    with pytest.raises(ConfigError) as raised:
        load_agent_config(broken)
    assert str(raised.value) == sample.strip("# ").replace("configs/", f"{tmp_path}/")
