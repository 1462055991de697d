"""The systemd notify protocol, received on a real unix datagram socket as systemd would."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import time
import uuid

import pytest
import structlog

from monitor.daemon.sdnotify import Notifier
from monitor.logs import configure_logging


@pytest.fixture
def systemd(tmp_path, monkeypatch):
    """A NOTIFY_SOCKET on a path; returns a function reading the next datagram."""
    path = tmp_path / "notify"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    for name in ("WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(name, raising=False)

    def receive(timeout_s: float = 2.0) -> str:
        receiver.settimeout(timeout_s)
        return receiver.recv(4096).decode()

    yield receive
    receiver.close()


def nothing_received(receive) -> bool:
    try:
        receive(timeout_s=0.2)  # a datagram to a local socket arrives at once, or never
    except TimeoutError:
        return True
    return False


def test_ready_with_status_is_one_datagram(systemd):
    notifier = Notifier.from_env()
    assert notifier.enabled
    notifier.ready("3 channels")
    assert systemd() == "READY=1\nSTATUS=3 channels"


def test_status_is_one_line(systemd):
    Notifier.from_env().status("news: black\nsport: ok\r\n")
    assert systemd() == "STATUS=news: black sport: ok"


def test_stopping_and_reloading(systemd):
    notifier = Notifier.from_env()
    notifier.stopping("shutting down")
    assert systemd() == "STOPPING=1\nSTATUS=shutting down"

    before_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier.reloading()
    state, stamp = systemd().split("\n")
    assert state == "RELOADING=1"
    assert stamp.startswith("MONOTONIC_USEC=")
    assert before_us <= int(stamp.removeprefix("MONOTONIC_USEC=")) <= before_us + 2_000_000


def test_watchdog_pings_at_half_of_watchdog_usec(systemd, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    notifier = Notifier.from_env()
    assert notifier.watchdog_interval_s == 15.0
    notifier.watchdog()
    assert systemd() == "WATCHDOG=1"


def test_a_watchdog_meant_for_another_process_is_ignored(systemd, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    notifier = Notifier.from_env()
    assert notifier.enabled
    assert notifier.watchdog_interval_s is None
    notifier.watchdog()
    notifier.ready()
    assert systemd() == "READY=1"  # the ping was not sent


def test_without_watchdog_usec_there_is_no_watchdog(systemd):
    notifier = Notifier.from_env()
    assert notifier.watchdog_interval_s is None
    notifier.watchdog()
    assert nothing_received(systemd)


def test_abstract_namespace_socket(monkeypatch):
    name = f"streamqc-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind("\0" + name)
        receiver.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        Notifier.from_env().ready()
        assert receiver.recv(4096) == b"READY=1"


def test_without_notify_socket_every_call_is_a_no_op(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    notifier = Notifier.from_env()
    assert not notifier.enabled
    assert notifier.watchdog_interval_s is None
    notifier.ready("x")
    notifier.status("x")
    notifier.watchdog()
    notifier.stopping()
    notifier.reloading()


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


def test_a_missing_socket_warns_once_and_never_raises(tmp_path, monkeypatch, restore_logging):
    stream = io.StringIO()
    configure_logging(json=True, stream=stream)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    notifier = Notifier.from_env()
    for _ in range(3):
        notifier.ready()
        notifier.status("still here")
    warnings = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(warnings) == 1
    assert warnings[0]["event"].startswith("cannot notify systemd")
    assert warnings[0]["socket"] == str(tmp_path / "gone")
