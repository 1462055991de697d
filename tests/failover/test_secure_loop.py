"""The failover loop over TLS with client certificates, against a broker that enforces the
shipped ACL (configs/mosquitto-acl.conf): the daemon, the agent and a console each reach only
the topics they need, and the loop still closes."""

from __future__ import annotations

import json
import ssl
import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from failover.protocol import Command, ack_topic, command_topic
from tests.daemon import Clips, Daemon, events
from tests.failover.test_agent import flow
from tests.failover.test_closed_loop import start_loop
from tests.mqttbroker import Mosquitto, Subscriber, TlsFiles, make_client_cert, make_tls_files

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "streamqc/test"


def acl_for_the_test_site() -> str:
    """The shipped ACL, for site ``test`` instead of ``london``."""
    text = (ROOT / "configs" / "mosquitto-acl.conf").read_text()
    return text.replace("london", "test")


def mqtt_section(broker: Mosquitto, cert: TlsFiles) -> str:
    tls = {"ca": str(cert.ca), "cert": str(cert.cert), "key": str(cert.key)}
    return flow({"url": f"mqtts://127.0.0.1:{broker.port}", "tls": tls, "keepalive": "5s"})


def publish_as(broker: Mosquitto, cert: TlsFiles, topic: str, payload: bytes) -> None:
    """One QoS 1 message from a client with ``cert`` (the broker drops what its ACL denies)."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{time.time_ns()}")
    context = ssl.create_default_context(cafile=str(cert.ca))
    context.load_cert_chain(str(cert.cert), str(cert.key))
    client.tls_set_context(context)
    client.connect("127.0.0.1", broker.port, keepalive=10)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1).wait_for_publish(5)
    finally:
        client.loop_stop()
        client.disconnect()


def test_the_loop_closes_over_tls_with_each_client_held_to_its_own_topics(
    tmp_path: Path, clips: Clips, daemons: list[Daemon]
) -> None:
    tls = make_tls_files(tmp_path / "tls")
    daemon_cert = make_client_cert(tls, "streamqc-test")
    agent_cert = make_client_cert(tls, "streamqc-agent-enc01")
    console_cert = make_client_cert(tls, "streamqc-console")
    broker = Mosquitto(tmp_path / "broker", tls=tls, acl=acl_for_the_test_site()).start()
    console = Subscriber(broker.port, "streamqc/#", tls=tls, client_cert=console_cert)
    daemon, agent, news, _ = start_loop(
        tmp_path,
        clips,
        broker,
        clips.clean,
        "{mode: auto, triggers: [black]}",
        daemon_mqtt=mqtt_section(broker, daemon_cert),
        agent_mqtt=mqtt_section(broker, agent_cert),
    )
    try:
        daemons.append(daemon.start())
        # black on primary → the daemon commands the switch → the agent does it → done
        console.wait_until(
            lambda ms: any(
                json.loads(m.payload).get("status") == "done"
                for m in ms
                if m.topic == ack_topic(PREFIX, "news")
            ),
            60,
        )
        raised = [e for e in events(console.received(), "news") if e["alarm"] == "black"]
        assert raised and raised[0]["state"] == "raised"
        sent = [
            Command.from_json(m.payload) for m in console.received(command_topic(PREFIX, "news"))
        ]
        assert [c.to for c in sent] == ["backup"]

        # What the ACL forbids does not get through: an agent faking an alarm, a console
        # sending a switch command itself (it may only ask the daemon, as an operator).
        fake = {"alarm": "black", "state": "raised", "channel": "news", "id": "forged"}
        publish_as(broker, agent_cert, f"{PREFIX}/news/alarms", json.dumps(fake).encode())
        forged = Command("forged", "news", "primary", ("operator",), "2030-01-01T00:00:00Z")
        publish_as(broker, console_cert, command_topic(PREFIX, "news"), forged.to_json())
        time.sleep(2.0)
        assert all(e.get("id") != "forged" for e in events(console.received(), "news"))
        assert [c.command_id for c in (
            Command.from_json(m.payload) for m in console.received(command_topic(PREFIX, "news"))
        )] == [sent[0].command_id]  # fmt: skip
        assert "denied" in broker.log().lower()
    finally:
        agent.close()
        console.close()
        news.stop()
        broker.stop()
