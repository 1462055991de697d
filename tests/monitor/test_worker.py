"""A channel input whose session keeps failing is an alarm, not a silent log line."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any

import pytest

import monitor.daemon.worker as worker
from monitor.checks.monitor_error import MONITOR_ERROR, MonitorErrorCheck
from monitor.config import InputConfig, ThumbnailConfig, default_channel
from monitor.daemon.messages import FromWorker, UnitEvent, UnitSpec, WorkerLog
from monitor.daemon.worker import UnitThread


class Outbox:
    """Keeps what a unit would send to the supervisor."""

    def __init__(self) -> None:
        self.messages: list[FromWorker] = []

    def put(self, message: FromWorker) -> None:
        self.messages.append(message)

    offer = put

    def log(self, level: str, message: str, **fields: Any) -> None:
        self.put(WorkerLog(level, message, fields))

    def events(self) -> list[dict[str, Any]]:
        return [m.event for m in self.messages if isinstance(m, UnitEvent)]


class FlakySession:
    """Fails to start ``failures`` times, then runs, reporting stats, until stopped."""

    failures = 2
    started = 0

    def __init__(self, url: str, channel: Any, emit: Any, **kwargs: Any) -> None:
        FlakySession.started += 1
        if FlakySession.started <= FlakySession.failures:
            raise RuntimeError("kernel exploded")
        self.stop: threading.Event = kwargs["stop"]
        self.observer = kwargs["observer"]
        self.notice = None

    def run(self) -> None:
        while not self.stop.wait(0.05):
            self.observer.stats([])

    def thumbnail_at(self, rendition: str | None, t_s: float) -> bytes | None:
        return None


@pytest.fixture
def flaky(monkeypatch):
    monkeypatch.setattr(worker, "LiveSession", FlakySession)
    monkeypatch.setattr(worker, "SESSION_BACKOFF_FIRST_S", 0.05)
    monkeypatch.setattr(MonitorErrorCheck, "recovered_after_s", 0.3)
    FlakySession.started = 0


def spec(active: tuple[dict[str, Any], ...] = ()) -> UnitSpec:
    inputs = {"primary": InputConfig("udp://127.0.0.1:5000")}
    channel = replace(default_channel("news"), inputs=inputs)
    return UnitSpec(channel, "primary", time.time() - 100.0, ThumbnailConfig(), active)


def run_until(unit: UnitThread, outbox: Outbox, done: Any, timeout_s: float = 10.0) -> None:
    unit.start()
    deadline = time.monotonic() + timeout_s
    while not done(outbox.events()) and time.monotonic() < deadline:
        time.sleep(0.02)
    unit.stop.set()
    unit.join(5)


def test_a_failing_session_raises_monitor_error_once_and_clears_when_it_runs(flaky):
    outbox = Outbox()
    unit = UnitThread(spec(), outbox)  # type: ignore[arg-type]

    run_until(unit, outbox, lambda events: any(e["state"] == "cleared" for e in events))

    events = outbox.events()
    assert [(e["alarm"], e["state"]) for e in events] == [
        (MONITOR_ERROR, "raised"),
        (MONITOR_ERROR, "cleared"),
    ], events
    raised, cleared = events
    assert raised["severity"] == "critical" and raised["channel"] == "news"
    assert "RuntimeError: kernel exploded" in raised["detail"]["error"]
    assert raised["id"] == cleared["id"]
    assert raised["start"] == pytest.approx(100.0, abs=2.0)  # on the unit's media timeline
    assert cleared["end"] >= raised["start"] + 0.3


def test_a_monitor_error_carried_from_an_earlier_worker_is_not_raised_twice(flaky):
    first = Outbox()
    unit = UnitThread(spec(), first)  # type: ignore[arg-type]
    run_until(unit, first, lambda events: len(events) >= 1)
    raised = first.events()[0]
    assert raised["state"] == "raised"

    FlakySession.started = 0  # the new worker's sessions fail twice again, then run
    second = Outbox()
    unit = UnitThread(spec(active=(raised,)), second)  # type: ignore[arg-type]
    run_until(unit, second, lambda events: any(e["state"] == "cleared" for e in events))

    assert [(e["state"], e["id"]) for e in second.events()] == [("cleared", raised["id"])]


WARM_UP = """
from dataclasses import replace
from detectors.avsync_kernels import picture_change
from detectors.loudness_kernels import measure_steps
from monitor.config import default_channel
from monitor.pipeline.live_session import warm_up_checks

channel = default_channel()
if {enable}:
    on = replace(channel.loudness.rule, enabled=True)
    channel = replace(
        channel,
        loudness=replace(channel.loudness, rule=on),
        av_sync=replace(channel.av_sync, rule=on),
    )
warm_up_checks(channel)
print(len(measure_steps.signatures), len(picture_change.signatures))
"""


@pytest.mark.parametrize(("enable", "loaded"), [(True, "1 1"), (False, "0 0")])
def test_a_session_loads_its_channels_check_kernels_before_its_readers_start(enable, loaded):
    """Loading a kernel holds the GIL for a while; mid-stream it would delay the readers."""
    import subprocess
    import sys

    code = WARM_UP.format(enable=enable)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[-2] == loaded
