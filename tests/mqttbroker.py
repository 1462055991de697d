"""A real Mosquitto broker and a plain paho subscriber for tests (no mocks on the wire).

``Mosquitto`` runs one ``/usr/sbin/mosquitto`` on 127.0.0.1 with its config, password file,
persistence and log in a work folder; ``restart()`` keeps the port and the persisted sessions,
``freeze()``/``thaw()`` make it hang and come back, ``kill()`` crashes it.
``Subscriber`` is a synchronous paho client in its own thread that records every message.
``make_tls_files`` makes a throwaway CA and a server certificate for 127.0.0.1 with openssl.

The ``mosquitto`` fixture (function scope) yields a started broker and stops it afterwards.
"""

from __future__ import annotations

import os
import pwd
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

MOSQUITTO = "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = "mosquitto_passwd"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class TlsFiles:
    """A CA and a server certificate signed by it, valid for 127.0.0.1 and localhost."""

    ca: Path
    cert: Path
    key: Path


def make_tls_files(folder: Path) -> TlsFiles:
    """Generate a self-signed CA and a server certificate for 127.0.0.1 with the openssl CLI."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = folder / "ca.pem", folder / "ca.key"
    cert, key, csr = folder / "server.pem", folder / "server.key", folder / "server.csr"
    ext = folder / "server.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def openssl(*args: str | Path) -> None:
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=streamqc test CA", "-keyout", ca_key, "-out", ca)  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", key, "-out", csr)  # fmt: skip
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
            "-days", "2", "-extfile", ext, "-out", cert)  # fmt: skip
    return TlsFiles(ca, cert, key)


def make_client_cert(tls: TlsFiles, cn: str) -> TlsFiles:
    """A client certificate with common name ``cn``, signed by the CA of ``tls`` (whose key
    lies beside it): (the CA, the client's certificate, its key)."""
    folder = tls.ca.parent
    cert, key, csr = folder / f"{cn}.pem", folder / f"{cn}.key", folder / f"{cn}.csr"
    ca_key = folder / "ca.key"

    def openssl(*args: str | Path) -> None:
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)

    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}",
            "-keyout", key, "-out", csr)  # fmt: skip
    openssl("x509", "-req", "-in", csr, "-CA", tls.ca, "-CAkey", ca_key, "-CAcreateserial",
            "-days", "2", "-out", cert)  # fmt: skip
    return TlsFiles(tls.ca, cert, key)


class Mosquitto:
    """One mosquitto process on 127.0.0.1:<port>, its files in ``workdir``."""

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        tls: TlsFiles | None = None,
        passwords: dict[str, str] | None = None,
        persistence: bool = True,
        acl: str | None = None,
    ) -> None:
        """``acl``: an ACL file's text; clients then need a certificate from ``tls``'s CA,
        whose CN is their user name."""
        if not Path(MOSQUITTO).is_file():
            raise RuntimeError(f"{MOSQUITTO} is missing: install the mosquitto package")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.tls = tls
        self.log_path = self.workdir / "mosquitto.log"
        self._process: subprocess.Popen[bytes] | None = None
        # Started as root, mosquitto would switch to user "mosquitto" and could not write here.
        lines = [f"user {pwd.getpwuid(os.getuid()).pw_name}", f"listener {self.port} 127.0.0.1"]
        if tls is not None:
            lines += [f"cafile {tls.ca}", f"certfile {tls.cert}", f"keyfile {tls.key}"]
        if passwords:
            password_file = self.workdir / "passwords"
            password_file.unlink(missing_ok=True)
            for user, password in passwords.items():
                create = ["-c"] if not password_file.exists() else []
                subprocess.run(
                    [MOSQUITTO_PASSWD, *create, "-b", str(password_file), user, password],
                    check=True,
                    capture_output=True,
                )
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        elif acl is not None:
            acl_file = self.workdir / "acl"
            acl_file.write_text(acl)
            lines += [
                "require_certificate true",
                "use_identity_as_username true",
                "allow_anonymous false",
                f"acl_file {acl_file}",
            ]
        else:
            lines.append("allow_anonymous true")
        if persistence:
            lines += ["persistence true", f"persistence_location {self.workdir}/"]
        lines += [f"log_dest file {self.log_path}", "log_type all"]
        self.config_path = self.workdir / "mosquitto.conf"
        self.config_path.write_text("\n".join(lines) + "\n")

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = 10.0) -> Mosquitto:
        """Start it and wait until it accepts TCP connections."""
        if self.running:
            return self
        self._process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"mosquitto exited at start: {self._output()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(
            f"mosquitto did not listen on {self.port} in {timeout_s} s: {self._output()}"
        )

    def stop(self) -> None:
        """SIGTERM and wait: mosquitto saves its persistence file (durable sessions) on the way."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()

    def freeze(self) -> None:
        """SIGSTOP: connections stay open but nothing is answered (a hung broker)."""
        self._signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL: a crash; nothing is saved and unread input is lost."""
        self._signal(signal.SIGKILL)
        process, self._process = self._process, None
        if process is not None:
            process.wait()
            if process.stderr is not None:
                process.stderr.close()

    def _signal(self, number: signal.Signals) -> None:
        if self._process is None:
            raise RuntimeError("mosquitto is not running")
        self._process.send_signal(number)

    def restart(self) -> None:
        """Stop, then start again on the same port with the same persisted state."""
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _output(self) -> str:
        process = self._process
        stderr = b""
        if process is not None and process.stderr is not None and process.poll() is not None:
            stderr = process.stderr.read()
        return (stderr.decode(errors="replace") + self.log())[-2000:]


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    qos: int
    dup: bool = False
    """The broker's redelivery of a QoS 1 message whose PUBACK it had not got (e.g. it stopped)."""


def _binary(message: Received) -> bool:
    """JPEG thumbnails: left out of failure messages, which must stay readable."""
    return message.payload[:2] == b"\xff\xd8"


class Subscriber:
    """A paho client in a background thread recording every message it gets, in order.

    With ``clean_start=False`` and a fixed ``client_id`` the session (subscription and QoS 1
    messages queued while away) survives disconnections and a persisting broker's restart.
    """

    def __init__(
        self,
        port: int,
        topic_filter: str = "#",
        *,
        client_id: str | None = None,
        clean_start: bool = True,
        qos: int = 1,
        tls: TlsFiles | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 10.0,
        client_cert: TlsFiles | None = None,
    ) -> None:
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._topic_filter = topic_filter
        self._qos = qos
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or "",
            clean_session=clean_start,
        )
        if tls is not None:
            context = ssl.create_default_context(cafile=str(tls.ca))
            if client_cert is not None:
                context.load_cert_chain(str(client_cert.cert), str(client_cert.key))
            self._client.tls_set_context(context)
        if username is not None:
            self._client.username_pw_set(username, password)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(0.05, 0.2)
        self._client.connect("127.0.0.1", port, keepalive=10)
        self._client.loop_start()
        if not self._subscribed.wait(timeout_s):
            self.close()
            raise AssertionError(f"subscriber could not subscribe to {topic_filter} on {port}")

    def _on_connect(self, client: paho.Client, *args: object) -> None:
        client.subscribe(self._topic_filter, qos=self._qos)  # again after every reconnect

    def _on_subscribe(self, *args: object) -> None:
        self._subscribed.set()

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        with self._lock:
            received = Received(msg.topic, bytes(msg.payload), bool(msg.retain), msg.qos, msg.dup)
            self.messages.append(received)

    def received(self, topic: str | None = None) -> list[Received]:
        """A snapshot of what arrived so far (on ``topic`` only, if given)."""
        with self._lock:
            return [m for m in self.messages if topic is None or m.topic == topic]

    def payloads(self, topic: str) -> list[bytes]:
        return [m.payload for m in self.received(topic)]

    def wait_for(self, predicate: Callable[[Received], bool], timeout_s: float = 10.0) -> Received:
        """The first message matching ``predicate``, waiting up to ``timeout_s`` for it."""
        deadline = time.monotonic() + timeout_s
        while True:
            for message in self.received():
                if predicate(message):
                    return message
            if time.monotonic() > deadline:
                got = [
                    (m.topic, m.payload[:60], m.retain) for m in self.received() if not _binary(m)
                ][-20:]
                raise AssertionError(f"no matching message in {timeout_s} s; last received: {got}")
            time.sleep(0.01)

    def wait_until(
        self, condition: Callable[[list[Received]], bool], timeout_s: float = 10.0
    ) -> None:
        """Wait until ``condition(all messages so far)`` holds."""
        deadline = time.monotonic() + timeout_s
        while not condition(self.received()):
            if time.monotonic() > deadline:
                got = [
                    (m.topic, m.payload[:60], m.retain) for m in self.received() if not _binary(m)
                ][-20:]
                raise AssertionError(f"condition not met in {timeout_s} s; last received: {got}")
            time.sleep(0.01)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


SINK_PROCESS = """
import asyncio, sys
from pathlib import Path
from monitor.sinks.mqtt import MqttSink
from monitor.util.mqtt_connection import BrokerSettings
from monitor.sinks.spool import Spool

async def main():
    port, folder, topic = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    settings = BrokerSettings("127.0.0.1", port, None, None, None, "sink-process", 30.0)
    log = lambda event, **fields: print(event, flush=True)
    sink = MqttSink(settings, Spool(folder / "q.db", 100), will_topic=topic,
                    will_payload=b"offline", log=log)
    sink.set_retained(topic, b"online")
    await sink.run()

asyncio.run(main())
"""


def start_sink_process(port: int, folder: Path, will_topic: str) -> subprocess.Popen[bytes]:
    """An MqttSink in its own process (retained ``online``, will ``offline`` on ``will_topic``).

    SIGKILL it to drop its connection without a DISCONNECT, as a crash or power cut would.
    """
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.Popen(
        [sys.executable, "-c", SINK_PROCESS, str(port), str(folder), will_topic],
        stdout=subprocess.DEVNULL,
        env=env,
    )


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A started Mosquitto with persistence on a free port of 127.0.0.1, stopped afterwards."""
    broker = Mosquitto(tmp_path / "mosquitto").start()
    try:
        yield broker
    finally:
        broker.stop()
