"""The MQTT publisher against a real Mosquitto on loopback: order, retained, outages, LWT, TLS."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from monitor.config import MqttConfig, TlsConfig
from monitor.errors import ConfigError
from monitor.sinks.mqtt import MqttSink
from monitor.sinks.spool import Spool
from monitor.util import mqtt_connection
from monitor.util.mqtt_connection import PASSWORD_ENV, BrokerSettings
from tests.mqttbroker import Mosquitto, Subscriber, make_tls_files, start_sink_process

STATUS = "streamqc/test/daemon/status"
ALARMS = "streamqc/test/news/alarms"
FAST = {"backoff_first_s": 0.05, "backoff_max_s": 0.2, "timeout_s": 3.0}


def run(scenario, timeout_s: float = 30.0):
    """Run an async test scenario, bounded."""
    return asyncio.run(asyncio.wait_for(scenario, timeout_s))


async def blocking(function, *args):
    """Wait on a blocking helper (subscriber, broker process) without stalling the sink."""
    return await asyncio.to_thread(function, *args)


async def until(condition, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def plain(port: int, client_id: str = "streamqc-test") -> BrokerSettings:
    return BrokerSettings("127.0.0.1", port, None, None, None, client_id, 30.0)


def make_sink(settings: BrokerSettings, tmp_path: Path, log, **options) -> MqttSink:
    spool = Spool(tmp_path / "state" / "queue.db", max_messages=1000)
    return MqttSink(
        settings, spool, will_topic=STATUS, will_payload=b"offline", log=log, **(FAST | options)
    )


def test_events_arrive_in_order_with_qos_1_and_leave_the_spool(mosquitto, tmp_path, mqtt_log):
    subscriber = Subscriber(mosquitto.port, "streamqc/#")

    async def scenario():
        sink = make_sink(plain(mosquitto.port), tmp_path, mqtt_log)
        runner = asyncio.create_task(sink.run())
        for i in range(300):
            sink.publish_event(ALARMS, b'{"n":%d}' % i)
        await blocking(subscriber.wait_for, lambda m: m.payload == b'{"n":299}')
        await until(lambda: sink.queued == 0)
        assert sink.delivered == 300 and sink.connected
        await sink.close({})
        await runner
        assert not sink.connected

    run(scenario())
    subscriber.close()
    events = subscriber.received(ALARMS)
    assert [m.payload for m in events] == [b'{"n":%d}' % i for i in range(300)]
    assert {m.qos for m in events} == {1}
    assert [event for event, _ in mqtt_log.records] == ["mqtt connected"]


def test_retained_values_reach_late_subscribers_and_none_deletes_them(
    mosquitto, tmp_path, mqtt_log
):
    topic = "streamqc/test/news/status"

    async def scenario():
        sink = make_sink(plain(mosquitto.port), tmp_path, mqtt_log)
        runner = asyncio.create_task(sink.run())
        sink.set_retained(topic, b"degraded")
        sink.set_retained(topic, b"ok")  # only the latest value matters
        await until(lambda: sink.connected)
        late = await blocking(Subscriber, mosquitto.port, topic)
        first = await blocking(late.wait_for, lambda m: m.retain)
        late.close()
        assert first.payload == b"ok"

        watcher = await blocking(Subscriber, mosquitto.port, "streamqc/#")
        sink.set_retained(topic, None)
        await blocking(watcher.wait_for, lambda m: m.topic == topic and m.payload == b"")
        watcher.close()
        await sink.close({})
        await runner

        after = await blocking(Subscriber, mosquitto.port, "streamqc/#")
        await asyncio.sleep(0.3)
        after.close()
        assert after.received(topic) == []  # nothing retained any more

    run(scenario())


def test_events_published_while_the_broker_is_down_arrive_in_order_once_after_restart(
    mosquitto, tmp_path, mqtt_log
):
    # A persistent subscriber session: the broker keeps (and persists) what arrives meanwhile.
    subscriber = Subscriber(
        mosquitto.port, "streamqc/#", client_id="noc-console", clean_start=False
    )

    async def scenario():
        sink = make_sink(plain(mosquitto.port), tmp_path, mqtt_log)
        runner = asyncio.create_task(sink.run())
        sink.set_retained(STATUS, b"online")
        for i in range(5):
            sink.publish_event(ALARMS, b"%d" % i)
        await blocking(subscriber.wait_for, lambda m: m.payload == b"4")

        await blocking(mosquitto.stop)
        await until(lambda: not sink.connected)
        for i in range(5, 25):
            sink.publish_event(ALARMS, b"%d" % i)
            await asyncio.sleep(0.01)
        sink.set_retained(STATUS, b"online, was away")
        assert sink.queued == 20  # on disk, waiting

        await blocking(mosquitto.start)
        await until(lambda: sink.queued == 0)
        await blocking(subscriber.wait_for, lambda m: m.payload == b"24")
        await blocking(subscriber.wait_for, lambda m: m.payload == b"online, was away")
        assert sink.reconnects == 1 and sink.delivered == 25
        await sink.close({})
        await runner

        late = await blocking(Subscriber, mosquitto.port, STATUS)
        retained = await blocking(late.wait_for, lambda m: m.retain)
        late.close()
        # Mosquitto publishes the wills of its clients when it stops: our reconnect corrects it.
        assert retained.payload == b"online, was away"

    run(scenario())
    subscriber.close()
    events = subscriber.received(ALARMS)
    # Every event once, in order. The broker itself may redeliver (DUP) to the subscriber what
    # it had sent just before stopping without getting the PUBACK: those are not ours.
    assert [m.payload for m in events if not m.dup] == [b"%d" % i for i in range(25)]
    assert {m.payload for m in events if m.dup} <= {b"%d" % i for i in range(5)}
    disconnected = mqtt_log.events("mqtt disconnected")
    assert disconnected and all(0 < d["retry_in_s"] <= 0.2 for d in disconnected)
    assert len(mqtt_log.events("mqtt connected")) == 2


def test_events_in_flight_when_the_broker_dies_are_kept_and_sent_again(
    mosquitto, tmp_path, mqtt_log
):
    subscriber = Subscriber(
        mosquitto.port, "streamqc/#", client_id="noc-console", clean_start=False
    )
    mosquitto.restart()  # saves the subscriber's session: it survives the crash below

    async def scenario():
        sink = make_sink(plain(mosquitto.port), tmp_path, mqtt_log, timeout_s=0.5)
        runner = asyncio.create_task(sink.run())
        await until(lambda: sink.connected)
        mosquitto.freeze()  # a hung broker: our PUBLISHes sit unread, no PUBACK comes
        for i in range(10):
            sink.publish_event(ALARMS, b"%d" % i)
        await until(lambda: mqtt_log.events("mqtt disconnected"))  # the PUBACK wait timed out
        assert sink.queued == 10  # nothing acknowledged, nothing forgotten
        await blocking(mosquitto.kill)  # what it had not read is lost with it
        await blocking(mosquitto.start)
        await until(lambda: sink.queued == 0)
        await blocking(subscriber.wait_for, lambda m: m.payload == b"9")
        await sink.close({})
        await runner

    run(scenario())
    subscriber.close()
    assert [m.payload for m in subscriber.received(ALARMS)] == [b"%d" % i for i in range(10)]
    assert "Operation timed out" in mqtt_log.events("mqtt disconnected")[0]["reason"]


def test_retained_values_are_published_again_after_the_broker_forgot_them(tmp_path, mqtt_log):
    broker = Mosquitto(tmp_path / "broker", persistence=False).start()

    async def scenario():
        sink = make_sink(plain(broker.port), tmp_path, mqtt_log)
        runner = asyncio.create_task(sink.run())
        sink.set_retained(STATUS, b"online")
        sink.set_retained("streamqc/test/news/status", b"ok")
        await until(lambda: sink.connected)
        await blocking(broker.restart)  # no persistence: its retained messages are gone
        await until(lambda: sink.reconnects == 1)
        late = await blocking(Subscriber, broker.port, "streamqc/#")
        await blocking(late.wait_until, lambda got: len([m for m in got if m.retain]) == 2)
        late.close()
        await sink.close({})
        await runner
        return {m.topic: m.payload for m in late.received()}

    try:
        assert run(scenario()) == {STATUS: b"online", "streamqc/test/news/status": b"ok"}
    finally:
        broker.stop()


def test_the_will_marks_the_daemon_offline_when_its_connection_dies(mosquitto, tmp_path):
    subscriber = Subscriber(mosquitto.port, STATUS)
    process = start_sink_process(mosquitto.port, tmp_path, STATUS)
    try:
        subscriber.wait_for(lambda m: m.payload == b"online")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        subscriber.wait_for(lambda m: m.payload == b"offline")
    finally:
        process.kill()
        process.wait()
        subscriber.close()
    late = Subscriber(mosquitto.port, STATUS)
    retained = late.wait_for(lambda m: m.retain)
    late.close()
    assert retained.payload == b"offline"


def test_close_sets_the_final_retained_values_and_the_will_does_not_fire(
    mosquitto, tmp_path, mqtt_log
):
    subscriber = Subscriber(mosquitto.port, "streamqc/#")

    async def scenario():
        sink = make_sink(plain(mosquitto.port), tmp_path, mqtt_log)
        runner = asyncio.create_task(sink.run())
        sink.set_retained(STATUS, b"online")
        sink.publish_event(ALARMS, b"last words")
        await blocking(subscriber.wait_for, lambda m: m.payload == b"online")
        await sink.close({STATUS: b"stopped"}, timeout_s=3.0)
        await runner
        assert not sink.connected and sink.queued == 0
        await asyncio.sleep(0.5)  # time for a will, if the broker were to send one

    run(scenario())
    subscriber.close()
    assert subscriber.payloads(STATUS) == [b"online", b"stopped"]
    assert subscriber.payloads(ALARMS) == [b"last words"]
    late = Subscriber(mosquitto.port, STATUS)
    assert late.wait_for(lambda m: m.retain).payload == b"stopped"
    late.close()
    assert "mqtt disconnected" not in [event for event, _ in mqtt_log.records]


def test_close_without_a_broker_gives_up_after_its_timeout_and_keeps_the_events(tmp_path, mqtt_log):
    port = Mosquitto(tmp_path / "never-started").port  # nobody listens there

    async def scenario():
        sink = make_sink(plain(port), tmp_path, mqtt_log)
        runner = asyncio.create_task(sink.run())
        sink.publish_event(ALARMS, b"undelivered")
        sink.publish_transient("streamqc/test/news/thumbnail", b"jpeg")  # dropped: offline
        await asyncio.sleep(0.3)
        started = asyncio.get_running_loop().time()
        await sink.close({STATUS: b"stopped"}, timeout_s=0.5)
        await runner  # returns, does not raise
        assert asyncio.get_running_loop().time() - started < 2.0
        assert sink.queued == 1 and sink.transient_dropped == 1

    run(scenario())
    assert Spool(tmp_path / "state" / "queue.db", 10).head()[0].payload == b"undelivered"
    reasons = [fields["reason"] for fields in mqtt_log.events("mqtt disconnected")]
    assert reasons and all("refused" in reason.lower() for reason in reasons), reasons


def test_events_left_in_the_spool_by_a_previous_run_go_out_first(mosquitto, tmp_path, mqtt_log):
    leftover = Spool(tmp_path / "state" / "queue.db", max_messages=1000)
    leftover.append(ALARMS, b"from the last run")
    leftover.close()
    subscriber = Subscriber(mosquitto.port, ALARMS)

    async def scenario():
        sink = make_sink(plain(mosquitto.port), tmp_path, mqtt_log)
        assert sink.queued == 1
        sink.publish_event(ALARMS, b"new")
        runner = asyncio.create_task(sink.run())
        await blocking(subscriber.wait_for, lambda m: m.payload == b"new")
        await sink.close({})
        await runner

    run(scenario())
    subscriber.close()
    assert subscriber.payloads(ALARMS) == [b"from the last run", b"new"]


def test_transient_messages_go_out_at_qos_0_while_connected(mosquitto, tmp_path, mqtt_log):
    topic = "streamqc/test/news/thumbnail"
    subscriber = Subscriber(mosquitto.port, topic)

    async def scenario():
        sink = make_sink(plain(mosquitto.port), tmp_path, mqtt_log)
        runner = asyncio.create_task(sink.run())
        await until(lambda: sink.connected)
        for i in range(3):
            sink.publish_transient(topic, b"jpeg %d" % i)
            await asyncio.sleep(0.02)
        await blocking(subscriber.wait_for, lambda m: m.payload == b"jpeg 2")
        await sink.close({})
        await runner

    run(scenario())
    subscriber.close()
    assert subscriber.payloads(topic) == [b"jpeg 0", b"jpeg 1", b"jpeg 2"]
    assert {m.qos for m in subscriber.received(topic)} == {0}


# --- TLS, login, settings ---------------------------------------------------------------------

PASSWORD = "pa55-word-nobody-logs"


@pytest.fixture
def secure_broker(tmp_path):
    """Mosquitto with TLS (a test CA) and a password file; yields (broker, tls files)."""
    files = make_tls_files(tmp_path / "tls")
    broker = Mosquitto(tmp_path / "secure", tls=files, passwords={"qc": PASSWORD}).start()
    yield broker, files
    broker.stop()


def test_tls_and_a_password_from_a_file_connect_and_deliver(secure_broker, tmp_path, mqtt_log):
    broker, files = secure_broker
    password_file = tmp_path / "mqtt-password"
    password_file.write_text(PASSWORD + "\n")
    config = MqttConfig(
        url=broker.url,
        username="qc",
        password_file=str(password_file),
        tls=TlsConfig(ca=str(files.ca)),
    )
    settings = BrokerSettings.from_config(config, "streamqc-test-host")
    assert settings.password == PASSWORD and settings.tls is not None
    subscriber = Subscriber(broker.port, "streamqc/#", tls=files, username="qc", password=PASSWORD)

    async def scenario():
        sink = make_sink(settings, tmp_path, mqtt_log)
        runner = asyncio.create_task(sink.run())
        sink.publish_event(ALARMS, b"secure")
        await blocking(subscriber.wait_for, lambda m: m.payload == b"secure")
        await sink.close({})
        await runner

    run(scenario())
    subscriber.close()
    assert [event for event, _ in mqtt_log.records] == ["mqtt connected"]


def test_a_wrong_password_is_one_log_line_per_retry_and_is_never_logged(
    secure_broker, tmp_path, mqtt_log, monkeypatch, capfd, caplog
):
    caplog.set_level(logging.DEBUG)
    broker, files = secure_broker
    wrong = "wrong-" + PASSWORD
    monkeypatch.setenv(PASSWORD_ENV, wrong)
    config = MqttConfig(url=broker.url, username="qc", tls=TlsConfig(ca=str(files.ca)))
    settings = BrokerSettings.from_config(config, "streamqc-test-host")
    assert settings.password == wrong

    async def scenario():
        sink = make_sink(settings, tmp_path, mqtt_log)
        runner = asyncio.create_task(sink.run())
        sink.publish_event(ALARMS, b"waiting")
        await until(lambda: len(mqtt_log.events("mqtt disconnected")) >= 3)
        assert not sink.connected and sink.queued == 1
        await sink.close({}, timeout_s=0.2)
        await runner

    run(scenario())
    reasons = {fields["reason"] for fields in mqtt_log.events("mqtt disconnected")}
    assert len(reasons) == 1 and "not authori" in reasons.pop().lower()
    output = capfd.readouterr()
    logged = [record.getMessage() for record in caplog.records]  # aiomqtt's, paho's, ours
    assert not [record for record in caplog.records if record.exc_info]
    everything = "\n".join([*mqtt_log.lines(), *logged, output.out, output.err])
    assert PASSWORD not in everything and "Traceback" not in everything
    assert all("\n" not in line for line in mqtt_log.lines())


def test_the_password_comes_from_the_environment_without_a_password_file(monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "from-env")
    config = MqttConfig(url="mqtt://broker.example:1884", username="qc")
    settings = BrokerSettings.from_config(config, "streamqc-site-host")
    assert (settings.host, settings.port, settings.tls) == ("broker.example", 1884, None)
    assert settings.password == "from-env" and settings.client_id == "streamqc-site-host"
    monkeypatch.delenv(PASSWORD_ENV)
    assert BrokerSettings.from_config(config, "x").password is None


def test_settings_never_show_the_password(tmp_path):
    password_file = tmp_path / "password"
    password_file.write_text("hunter2-secret\r\n")
    config = MqttConfig(
        url="mqtts://broker.example", username="qc", password_file=str(password_file)
    )
    settings = BrokerSettings.from_config(config, "id")
    assert settings.password == "hunter2-secret" and settings.port == 8883
    assert settings.tls is not None  # mqtts:// implies TLS, verified by the system's CAs
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings)


def test_the_embedded_broker_address_overrides_the_url():
    config = MqttConfig(url="mqtts://broker.example", client_id="mine")
    settings = BrokerSettings.from_config(config, "default", embedded=("127.0.0.1", 18830))
    assert (settings.host, settings.port, settings.tls, settings.client_id) == (
        "127.0.0.1",
        18830,
        None,
        "mine",
    )


@pytest.mark.parametrize(
    ("tls", "message"),
    [
        (TlsConfig(ca="/nowhere/ca.pem"), "mqtt.tls.ca: no such file: /nowhere/ca.pem"),
        (TlsConfig(cert="/nowhere/c.pem"), "mqtt.tls.cert: no such file: /nowhere/c.pem"),
        (TlsConfig(key="/nowhere/k.pem"), "mqtt.tls.key: set without mqtt.tls.cert"),
    ],
)
def test_missing_tls_files_are_one_config_error_naming_key_and_path(tls, message):
    config = MqttConfig(url="mqtt://127.0.0.1", tls=tls)
    with pytest.raises(ConfigError) as error:
        BrokerSettings.from_config(config, "id")
    assert str(error.value) == message


def test_a_ca_file_that_is_not_a_certificate_is_one_config_error(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate\n")
    config = MqttConfig(url="mqtts://127.0.0.1", tls=TlsConfig(ca=str(ca)))
    with pytest.raises(ConfigError, match=r"^mqtt\.tls\.ca: cannot use .*ca\.pem: "):
        BrokerSettings.from_config(config, "id")


def test_an_unreadable_password_file_names_the_file_not_its_content(tmp_path):
    config = MqttConfig(url="mqtt://h", username="qc", password_file=str(tmp_path / "missing"))
    with pytest.raises(ConfigError) as error:
        BrokerSettings.from_config(config, "id")
    assert str(error.value) == (
        f"mqtt.password_file: cannot read {tmp_path / 'missing'}: No such file or directory"
    )
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xffsecret\xfe")
    config = MqttConfig(url="mqtt://h", username="qc", password_file=str(binary))
    with pytest.raises(ConfigError, match="is not UTF-8 text") as error:
        BrokerSettings.from_config(config, "id")
    assert "secret" not in str(error.value) and "xff" not in str(error.value)


def test_subscriptions_reach_their_handler_again_after_the_broker_restarts(
    mosquitto, tmp_path, mqtt_log
):
    got: list[tuple[str, bytes]] = []

    async def scenario():
        sink = make_sink(plain(mosquitto.port), tmp_path, mqtt_log)
        sink.subscribe("streamqc/test/+/failover/ack", lambda t, p: got.append((t, p)))
        runner = asyncio.create_task(sink.run())
        await until(lambda: sink.connected)
        await asyncio.sleep(0.3)  # the SUBSCRIBE goes out right after the connect
        sink.publish_now("streamqc/test/news/failover/ack", b"first")
        sink.publish_now("streamqc/test/news/failover/command", b"not subscribed")
        await until(lambda: len(got) == 1)
        await blocking(mosquitto.restart)
        await until(lambda: sink.connected and sink.reconnects == 1, 20)
        await asyncio.sleep(0.3)
        sink.publish_now("streamqc/test/sport/failover/ack", b"second")
        await until(lambda: len(got) == 2)
        await sink.close({})
        await runner

    run(scenario())
    assert got == [
        ("streamqc/test/news/failover/ack", b"first"),
        ("streamqc/test/sport/failover/ack", b"second"),
    ]


def test_publish_now_is_dropped_not_queued_while_disconnected(tmp_path, mqtt_log):
    async def scenario():
        sink = make_sink(plain(1), tmp_path, mqtt_log)  # nothing listens on port 1
        sink.publish_now("streamqc/test/news/failover/command", b"stale later")
        assert sink.queued == 0 and sink.transient_dropped == 1

    run(scenario())


def test_a_connection_closed_before_connack_is_retried_at_once_not_after_the_timeout(
    mosquitto, tmp_path, mqtt_log
):
    """A relay (load balancer, Docker's port proxy) accepts while the broker behind it is down
    and closes at once. Each try must fail then, not wait out CONNECT_TIMEOUT_S (5 s): the
    chaos soak measured 3.4-4 s from a broker restart to the first queued event before."""
    relay = socket.socket()
    relay.bind(("127.0.0.1", 0))
    relay.listen(16)
    relay_port = relay.getsockname()[1]
    accepted: list[float] = []
    broker_up = threading.Event()

    def serve() -> None:
        while True:
            try:
                client, _ = relay.accept()
            except OSError:
                return
            accepted.append(time.monotonic())
            if not broker_up.is_set():
                client.close()  # the broker behind it is down
                continue
            upstream = socket.create_connection(("127.0.0.1", mosquitto.port))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=pipe, args=(a, b), daemon=True).start()

    def pipe(a: socket.socket, b: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := a.recv(65536):
                b.sendall(data)
        with contextlib.suppress(OSError):
            b.shutdown(socket.SHUT_WR)

    threading.Thread(target=serve, daemon=True).start()
    subscriber = Subscriber(mosquitto.port, "streamqc/#")

    async def scenario():
        sink = make_sink(
            plain(relay_port), tmp_path, mqtt_log, backoff_first_s=0.2, backoff_max_s=0.4
        )
        runner = asyncio.create_task(sink.run())
        sink.publish_event(ALARMS, b"queued while the broker was away")
        await asyncio.sleep(2.0)
        broker_up.set()
        up = time.monotonic()
        await blocking(subscriber.wait_for, lambda m: m.topic == ALARMS, 10.0)
        delivered_after_s = time.monotonic() - up
        await sink.close({})
        await runner
        return delivered_after_s

    try:
        delivered_after_s = run(scenario())
    finally:
        relay.close()
        subscriber.close()
    # tries 0.1-0.4 s apart, each failing at once: several in 2 s (one, with a 5 s wait)
    assert len(accepted) >= 4, accepted
    assert delivered_after_s < 1.0, delivered_after_s
    reasons = [fields["reason"] for fields in mqtt_log.events("mqtt disconnected")]
    assert all("before CONNACK" in reason for reason in reasons), reasons


def test_a_connection_closed_after_its_connect_timed_out_logs_no_traceback(
    tmp_path, mqtt_log, monkeypatch
):
    """A path that holds packets: the connect times out, and the relay closes the socket
    later. aiomqtt then asked its cancelled CONNACK future for an exception: an asyncio
    'Exception in callback' traceback at error level, 7 an hour in the chaos soak."""
    monkeypatch.setattr(mqtt_connection, "CONNECT_TIMEOUT_S", 0.3)
    relay = socket.socket()
    relay.bind(("127.0.0.1", 0))
    relay.listen(16)
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                client, _ = relay.accept()
            except OSError:
                return
            held.append(client)
            threading.Timer(0.5, client.close).start()  # after the connect gave up

    threading.Thread(target=serve, daemon=True).start()
    errors: list[dict] = []

    async def scenario():
        asyncio.get_running_loop().set_exception_handler(
            lambda loop, context: errors.append(context)
        )
        sink = make_sink(
            plain(relay.getsockname()[1]), tmp_path, mqtt_log, backoff_first_s=0.2,
            backoff_max_s=0.3,
        )  # fmt: skip
        runner = asyncio.create_task(sink.run())
        await asyncio.sleep(2.5)
        await sink.close({}, timeout_s=0.5)
        await runner

    try:
        run(scenario())
    finally:
        relay.close()
    assert len(held) >= 2, held  # it tried, timed out and tried again
    assert errors == [], [str(e.get("exception") or e.get("message")) for e in errors]
