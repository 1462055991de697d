"""The embedded amqtt broker: the sink works through it, retained and will included."""

from __future__ import annotations

import asyncio
import signal
import socket

import pytest

from monitor.sinks import broker as broker_module
from monitor.sinks.broker import BrokerError, embedded_broker
from monitor.sinks.mqtt import MqttSink
from monitor.sinks.spool import Spool
from monitor.util.mqtt_connection import BrokerSettings
from tests.mqttbroker import Subscriber, start_sink_process

STATUS = "streamqc/demo/daemon/status"
ALARMS = "streamqc/demo/news/alarms"


def run(scenario, timeout_s: float = 30.0):
    return asyncio.run(asyncio.wait_for(scenario, timeout_s))


async def blocking(function, *args):
    """Wait on a blocking helper while the broker (in this loop) keeps serving."""
    return await asyncio.to_thread(function, *args)


def test_the_sink_publishes_through_the_embedded_broker(tmp_path, mqtt_log):
    async def scenario():
        async with embedded_broker("127.0.0.1", 0) as (host, port):
            assert host == "127.0.0.1" and port > 0
            subscriber = await blocking(Subscriber, port, "streamqc/#")
            settings = BrokerSettings(host, port, None, None, None, "streamqc-demo", 30.0)
            spool = Spool(tmp_path / "queue.db", 1000)
            sink = MqttSink(
                settings, spool, will_topic=STATUS, will_payload=b"offline", log=mqtt_log
            )
            runner = asyncio.create_task(sink.run())
            sink.set_retained(STATUS, b"online")
            for i in range(50):
                sink.publish_event(ALARMS, b"%d" % i)
            await blocking(subscriber.wait_for, lambda m: m.payload == b"49")

            late = await blocking(Subscriber, port, STATUS)
            retained = await blocking(late.wait_for, lambda m: m.retain)
            late.close()
            assert retained.payload == b"online"

            await sink.close({STATUS: b"stopped"})
            await runner
            await asyncio.sleep(0.3)  # time for a will, if the broker were to send one
            subscriber.close()
            assert subscriber.payloads(ALARMS) == [b"%d" % i for i in range(50)]
            assert subscriber.payloads(STATUS) == [b"online", b"stopped"]
            assert sink.queued == 0 and sink.delivered == 50

    run(scenario())


def test_the_embedded_broker_publishes_the_will_of_a_dead_connection(tmp_path):
    async def scenario():
        async with embedded_broker("127.0.0.1", 0) as (_, port):
            subscriber = await blocking(Subscriber, port, STATUS)
            process = start_sink_process(port, tmp_path, STATUS)
            try:
                await blocking(subscriber.wait_for, lambda m: m.payload == b"online")
                process.send_signal(signal.SIGKILL)
                await blocking(process.wait)
                await blocking(subscriber.wait_for, lambda m: m.payload == b"offline")
            finally:
                process.kill()
                await blocking(process.wait)
                subscriber.close()
            late = await blocking(Subscriber, port, STATUS)
            retained = await blocking(late.wait_for, lambda m: m.retain)
            late.close()
            assert retained.payload == b"offline"

    run(scenario())


@pytest.fixture
def busy_port():
    """A port of 127.0.0.1 that something else is listening on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


def _start_on(port: int) -> None:
    async def scenario():
        async with embedded_broker("127.0.0.1", port):
            raise AssertionError("the broker should not have started")

    run(scenario())


def test_a_port_in_use_is_one_line_saying_what_to_do(busy_port):
    with pytest.raises(BrokerError) as error:
        _start_on(busy_port)
    assert str(error.value) == (
        f"cannot start the embedded MQTT broker on 127.0.0.1:{busy_port}: address in use "
        "(set mqtt.url to use a broker, or mqtt.embedded_listen)"
    )


def test_losing_the_race_for_the_port_inside_amqtt_is_the_same_line(busy_port, monkeypatch, caplog):
    monkeypatch.setattr(broker_module, "_check_free", lambda host, port: None)
    with pytest.raises(BrokerError, match=r"127\.0\.0\.1:\d+: address in use \(set mqtt\.url"):
        _start_on(busy_port)
    assert not [record for record in caplog.records if record.exc_info]  # no traceback logged
