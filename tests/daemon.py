"""The real daemon for tests: ``streamqc run`` as a subprocess with live UDP feeds on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from monitor.demo.synth import MediaSpec, Span, make_ts
from monitor.demo.udp_sender import UdpSender, free_udp_port
from tests.mqttbroker import Received, free_port

CLIP_S = 90.0
BLACK = Span(8.0, 12.0)  # in the "faulty" clip; the sender starts the clip at its beginning


@dataclass
class Clips:
    clean: Path
    black: Path
    silent: Path  # silence from start to end: a standing alarm


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Clips:
    folder = tmp_path_factory.mktemp("daemon-clips")
    spec = MediaSpec(duration_s=CLIP_S, width=192, height=108)
    return Clips(
        clean=make_ts(folder / "clean.ts", spec),
        black=make_ts(folder / "black.ts", MediaSpec(**{**spec.__dict__, "black": (BLACK,)})),
        silent=make_ts(
            folder / "silent.ts", MediaSpec(**{**spec.__dict__, "silence": (Span(0.0, CLIP_S),)})
        ),
    )


@dataclass
class Channel:
    name: str
    clip: Path
    port: int = field(default_factory=free_udp_port)
    # YAML flow mapping. TR 101 290 timing is off: the sender here is a Python thread on a
    # busy 2-core machine, not a CBR multiplexer, and its PCR jitter is not what these tests
    # are about (tests/ingest/test_tr101290.py and test_udp.py cover it).
    detectors: str = "{transport: {enabled: false}}"
    sender: UdpSender | None = None
    pictures: str = "all"
    """The input's ``pictures`` tier."""

    def yaml(self) -> str:
        tier = f", pictures: {self.pictures}" if self.pictures != "all" else ""
        text = (
            f"  - name: {self.name}\n"
            f'    inputs: {{primary: {{url: "udp://127.0.0.1:{self.port}", watchdog: 4s{tier}}}}}\n'
        )
        if self.detectors:
            text += f"    detectors: {self.detectors}\n"
        return text

    def start(self) -> None:
        if self.sender is None:  # a restarted daemon finds its feeds still running
            self.sender = UdpSender(self.clip, self.port, CLIP_S).start()

    def stop(self) -> None:
        if self.sender is not None:
            self.sender.stop()
            self.sender = None


class Daemon:
    """``streamqc run`` on a config written here; the channels' senders are started with it."""

    def __init__(
        self,
        folder: Path,
        channels: list[Channel],
        *,
        broker_url: str | None,
        embedded_port: int | None = None,
        env: dict[str, str] | None = None,
        site: str = "test",
        mqtt: str | None = None,
    ) -> None:
        """``mqtt``: the mqtt section in YAML flow style, instead of one made of the URL."""
        self.folder = folder
        self.mqtt = mqtt
        self.channels = {c.name: c for c in channels}
        self.broker_url = broker_url
        self.embedded_port = embedded_port or free_port()
        self.metrics_port = free_port()
        self.site = site
        self.config_path = folder / "streamqc.yaml"
        self.log_path = folder / "daemon.log"
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.write_config(channels)

    # --- topics ---

    def topic(self, channel: str, leaf: str) -> str:
        return f"streamqc/{self.site}/{channel}/{leaf}"

    @property
    def daemon_topic(self) -> str:
        return f"streamqc/{self.site}/daemon/status"

    # --- config ---

    SETTINGS = "thumbnails: {interval: 2s}\nworkers: 2\n"
    """Daemon settings of the tests: thumbnails often enough to see, two workers whatever
    the machine."""

    def write_config(self, channels: list[Channel], extra: str = "") -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        mqtt = (
            f"mqtt: {self.mqtt}\n"
            if self.mqtt
            else f'mqtt: {{url: "{self.broker_url}"}}\n'
            if self.broker_url
            else f'mqtt: {{embedded_listen: "127.0.0.1:{self.embedded_port}"}}\n'
        )
        self.config_path.write_text(
            "version: 1\n"
            f"site: {self.site}\n"
            + mqtt
            + f'metrics: {{listen: "127.0.0.1:{self.metrics_port}"}}\n'
            f"state_dir: {self.folder / 'state'}\n"
            + self.SETTINGS
            + extra
            + "channels:\n"
            + "".join(c.yaml() for c in channels)
        )

    # --- process ---

    def start(self) -> Daemon:
        for channel in self.channels.values():
            channel.start()
        env = {**os.environ, "STREAMQC_DEBUG": "1", **self.env}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "monitor.cli",
                    "run",
                    "--config",
                    str(self.config_path),
                    "--log-format",
                    "json",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        return self

    def signal(self, number: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(number)

    def wait(self, timeout_s: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout_s)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for channel in self.channels.values():
            channel.stop()

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                lines.append({"event": line, "level": "raw"})
        return lines

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    # --- HTTP ---

    def get(self, path: str) -> tuple[int, bytes]:
        url = f"http://127.0.0.1:{self.metrics_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def health(self) -> dict[str, Any]:
        status, body = self.get("/healthz")
        return json.loads(body)

    def metric(self, name: str, **labels: str) -> float | None:
        """The value of one sample of /metrics, or None."""
        status, body = self.get("/metrics")
        for line in body.decode().splitlines():
            if not line.startswith(name + "{") and line.split(" ")[0] != name:
                continue
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
        return None

    def wait_metric(
        self, name: str, predicate: Any, timeout_s: float = 20.0, **labels: str
    ) -> float:
        deadline = time.monotonic() + timeout_s
        value = None
        while time.monotonic() < deadline:
            try:
                value = self.metric(name, **labels)
            except OSError:
                value = None
            if value is not None and predicate(value):
                return value
            time.sleep(0.2)
        raise AssertionError(f"{name}{labels} = {value}, still not as expected after {timeout_s} s")

    def wait_rate(
        self,
        name: str,
        low: float,
        high: float = float("inf"),
        window_s: float = 4.0,
        timeout_s: float = 30.0,
        **labels: str,
    ) -> float:
        """Wait until counter ``name`` grows between ``low`` and ``high`` per second (what
        Prometheus's rate() would show); the rate. Inputs report about once a second, so the
        rate is taken between two moments the counter changed, ``window_s`` or more apart."""
        deadline = time.monotonic() + timeout_s
        rate = None
        changes: list[tuple[float, float]] = []  # (when seen to change, value)
        last = None
        while time.monotonic() < deadline:
            try:
                value = self.metric(name, **labels)
            except OSError:
                value = None
            now = time.monotonic()
            if value is not None and value != last:
                if last is not None:
                    changes.append((now, value))
                last = value
                if len(changes) >= 2 and now - changes[0][0] >= window_s:
                    (t0, v0), (t1, v1) = changes[0], changes[-1]
                    rate = (v1 - v0) / (t1 - t0)
                    if low <= rate <= high:
                        return rate
                    changes = changes[-1:]
            time.sleep(0.1)
        raise AssertionError(f"rate of {name}{labels} = {rate}, not in [{low}, {high}]")


def events(messages: list[Received], channel: str | None = None) -> list[dict[str, Any]]:
    """The alarm events among ``messages`` (JSON on …/<channel>/alarms), in arrival order."""
    out = []
    for m in messages:
        if m.topic.endswith("/alarms") and (channel is None or f"/{channel}/alarms" in m.topic):
            out.append(json.loads(m.payload))
    return out


def retained_json(messages: list[Received], topic: str) -> dict[str, Any] | None:
    """The last payload on ``topic`` as JSON (None when deleted or never sent)."""
    payloads = [m.payload for m in messages if m.topic == topic]
    if not payloads or not payloads[-1]:
        return None
    return json.loads(payloads[-1])


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    """Every Daemon a test appends here is stopped (with its senders) when the test ends."""
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.stop()
