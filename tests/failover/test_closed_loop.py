"""The whole failover loop with real parts: feeds, the daemon, Mosquitto, the agent, an encoder.

Each source feed is sent twice (as a multicast feed reaches both the monitor and the
encoder): once to the daemon, which watches primary and backup, once to the encoder the agent
manages. The daemon also watches the encoder's output as its own channel.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.publish

from failover.protocol import (
    Ack,
    Command,
    OperatorRequest,
    ack_topic,
    command_topic,
    operator_topic,
    state_topic,
)
from monitor.demo.udp_sender import UdpSender, free_udp_port
from tests.daemon import BLACK, CLIP_S, Channel, Clips, Daemon, events, retained_json
from tests.failover.test_agent import AgentProcess, flow
from tests.mqttbroker import Mosquitto, Subscriber

PREFIX = "streamqc/test"


@dataclass
class Feed:
    """One source clip, sent to two ports."""

    clip: Path
    monitor_port: int = field(default_factory=free_udp_port)
    encoder_port: int = field(default_factory=free_udp_port)
    senders: list[UdpSender] = field(default_factory=list)

    def start(self) -> None:
        if not self.senders:
            self.senders = [
                UdpSender(self.clip, port, CLIP_S).start()
                for port in (self.monitor_port, self.encoder_port)
            ]

    def stop(self) -> None:
        for sender in self.senders:
            sender.stop()
        self.senders = []


@dataclass
class FailoverChannel:
    """A channel with primary and backup inputs and a failover section (for Daemon)."""

    name: str
    primary: Feed
    backup: Feed
    failover: str

    def yaml(self) -> str:
        return (
            f"  - name: {self.name}\n"
            "    inputs:\n"
            f'      primary: {{url: "udp://127.0.0.1:{self.primary.monitor_port}"}}\n'
            f'      backup: {{url: "udp://127.0.0.1:{self.backup.monitor_port}"}}\n'
            "    detectors: {transport: {enabled: false}}\n"
            f"    failover: {self.failover}\n"
        )

    def start(self) -> None:
        self.primary.start()
        self.backup.start()

    def stop(self) -> None:
        self.primary.stop()
        self.backup.stop()


def start_loop(
    tmp_path: Path,
    clips: Clips,
    broker: Mosquitto,
    backup_clip: Path,
    failover: str,
    *,
    daemon_mqtt: str | None = None,
    agent_mqtt: str | None = None,
) -> tuple[Daemon, AgentProcess, FailoverChannel, int]:
    """Feeds, the agent (started) and the daemon (not yet started) of the loop; the ``mqtt``
    sections, in YAML flow style, when the broker wants more than its URL."""
    news = FailoverChannel("news", Feed(clips.black), Feed(backup_clip), failover)
    output = free_udp_port()
    command = [sys.executable, "-m", "tests.encoder", "--input", "{input}",
               "--output", f"udp://127.0.0.1:{output}"]  # fmt: skip
    agent = AgentProcess(
        tmp_path / "agent",
        broker.port,
        f"""\
  - name: news
    inputs: {{primary: "udp://127.0.0.1:{news.primary.encoder_port}",
              backup: "udp://127.0.0.1:{news.backup.encoder_port}"}}
    action: {{process: {{command: {flow(command)}, stop_timeout: 3s, start_check: 1s}}}}
""",
        mqtt=agent_mqtt,
    )
    out = Channel("news-out", clips.clean, port=output)
    out.start = lambda: None  # type: ignore[method-assign]  (the encoder feeds it)
    daemon = Daemon(
        tmp_path / "daemon",
        [news, out],  # type: ignore[list-item]
        broker_url=None if daemon_mqtt else broker.url,
        mqtt=daemon_mqtt,
    )
    news.start()
    agent.start()
    return daemon, agent, news, output


def commands(sub: Subscriber) -> list[Command]:
    topic = command_topic(PREFIX, "news")
    return [Command.from_json(m.payload) for m in sub.received(topic)]


def acks(sub: Subscriber) -> list[Ack]:
    return [Ack.from_json(m.payload) for m in sub.received(ack_topic(PREFIX, "news"))]


def test_black_on_primary_switches_to_backup_and_back_after_error_clear_time(
    tmp_path: Path, clips: Clips, mosquitto: Mosquitto, daemons: list[Daemon]
) -> None:
    (tmp_path / "daemon").mkdir()
    sub = Subscriber(mosquitto.port, f"{PREFIX}/#")
    daemon, agent, news, output = start_loop(
        tmp_path, clips, mosquitto, clips.clean,
        "{mode: auto, triggers: [black], error_clear_time: 3s}",
    )  # fmt: skip
    daemons.append(daemon.start())
    try:
        # black on primary (8-12 s of the clip) → switch to backup → back once clean for 3 s
        sub.wait_for(lambda m: m.topic.endswith("news/alarms") and b'"black"' in m.payload, 40)
        sub.wait_until(lambda ms: len(commands(sub)) >= 2, 40)
        sub.wait_until(lambda ms: sum(a.status == "done" for a in acks(sub)) >= 2, 30)
        time.sleep(2.0)  # a second switch of either kind would show now
        sent = commands(sub)
        assert [c.to for c in sent] == ["backup", "primary"], sent
        assert [c.reason for c in sent][0] == ("black",)
        done = [a.command_id for a in acks(sub) if a.status == "done"]
        assert done == [c.command_id for c in sent]
        state = retained_json(sub.received(), state_topic(PREFIX, "news"))
        assert state["active_input"] == "primary"

        # The channel's status followed the input on air.
        on_air = [
            json.loads(m.payload)["active_input"]
            for m in sub.received(daemon.topic("news", "status"))
            if m.payload
        ]
        assert "backup" in on_air and on_air[-1] == "primary"
        # Every decision was audited.
        audits = [json.loads(m.payload) for m in sub.received(f"{PREFIX}/news/failover/audit")]
        assert audits and all(a["why"] for a in audits)
        # The black reached the output only for the time it took to switch.
        out_black = [e for e in events(sub.received(), "news-out") if e["alarm"] == "black"]
        if out_black:
            cleared = [e for e in out_black if e["state"] == "cleared"]
            assert cleared and cleared[0]["detail"]["duration_s"] < BLACK.duration_s
        daemon.wait_rate("streamqc_pictures_total", 20, channel="news-out")
    finally:
        agent.close()
        sub.close()


def test_a_failing_backup_blocks_the_switch(
    tmp_path: Path, clips: Clips, mosquitto: Mosquitto, daemons: list[Daemon]
) -> None:
    (tmp_path / "daemon").mkdir()
    sub = Subscriber(mosquitto.port, f"{PREFIX}/#")
    # The backup is silent from start to end: unfit once silence is a trigger.
    daemon, agent, news, output = start_loop(
        tmp_path, clips, mosquitto, clips.silent,
        "{mode: auto, triggers: [black, silence], error_clear_time: 3s}",
    )  # fmt: skip
    daemons.append(daemon.start())
    try:
        blocked = sub.wait_for(
            lambda m: m.topic.endswith("news/alarms") and b"failover_blocked" in m.payload, 40
        )
        event = json.loads(blocked.payload)
        assert event["input"] == "failover" and event["severity"] == "critical"
        time.sleep(2.0)
        assert commands(sub) == []
        status = retained_json(sub.received(), daemon.topic("news", "status"))
        assert status["active_input"] == "primary"
    finally:
        agent.close()
        sub.close()


def test_confirm_mode_waits_for_the_operator_and_audits_who_confirmed(
    tmp_path: Path, clips: Clips, mosquitto: Mosquitto, daemons: list[Daemon]
) -> None:
    (tmp_path / "daemon").mkdir()
    sub = Subscriber(mosquitto.port, f"{PREFIX}/#")
    daemon, agent, news, output = start_loop(
        tmp_path, clips, mosquitto, clips.clean,
        "{mode: confirm, triggers: [black], confirm_timeout: null, failback: stay}",
    )  # fmt: skip
    daemons.append(daemon.start())
    request_topic = f"{PREFIX}/news/failover/request"
    try:
        request = sub.wait_for(lambda m: m.topic == request_topic and m.payload != b"", 40)
        asked = json.loads(request.payload)
        assert asked["to"] == "backup" and asked["expires_at"] is None
        # Nothing moves without the operator (who must answer while the fault lasts: the
        # request is withdrawn when the black ends, 3 s after it was raised).
        time.sleep(1.0)
        assert commands(sub) == []
        answer = OperatorRequest("confirm", "jane@noc", request_id=asked["request_id"])
        paho.mqtt.publish.single(
            operator_topic(PREFIX, "news"), answer.to_json(), qos=1, port=mosquitto.port
        )
        sub.wait_until(lambda ms: any(a.status == "done" for a in acks(sub)), 30)
        [sent] = commands(sub)
        assert sent.to == "backup" and sent.operator in (None, "jane@noc")
        audits = [json.loads(m.payload) for m in sub.received(f"{PREFIX}/news/failover/audit")]
        assert any(a.get("operator") == "jane@noc" for a in audits), audits
        # failback: stay: the channel remains on backup after primary has recovered
        time.sleep(5.0)
        assert len(commands(sub)) == 1
    finally:
        agent.close()
        sub.close()


def test_a_command_nobody_acknowledges_is_retried_then_escalated(
    tmp_path: Path, clips: Clips, mosquitto: Mosquitto, daemons: list[Daemon]
) -> None:
    (tmp_path / "daemon").mkdir()
    sub = Subscriber(mosquitto.port, f"{PREFIX}/#")
    daemon, agent, news, output = start_loop(
        tmp_path, clips, mosquitto, clips.clean,
        "{mode: auto, triggers: [black], ack_timeout: 1s, retries: 2}",
    )  # fmt: skip
    agent.close()  # the agent is gone: nobody answers
    agent.process = None
    daemons.append(daemon.start())
    try:
        raised = sub.wait_for(
            lambda m: m.topic.endswith("news/alarms") and b"failover_no_ack" in m.payload, 40
        )
        assert json.loads(raised.payload)["severity"] == "critical"
        sent = commands(sub)
        assert len(sent) == 3 and len({c.command_id for c in sent}) == 1  # one command, resent
    finally:
        sub.close()
