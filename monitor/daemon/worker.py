"""A worker process: runs the live sessions of the channel inputs the supervisor gives it.

Decoding and detection live here, one thread per channel input (PyAV and the Numba kernels
release the GIL), so they use every core the supervisor starts workers for, and the busy
Python of the control plane (MQTT, HTTP, log rendering) never sits next to a decode thread.

The supervisor talks to a worker over one duplex pipe, in the messages of
``monitor.daemon.messages``.

One sender thread owns the pipe's sending side: events wait for room (never dropped, always in
order), stats and thumbnails are dropped when the supervisor falls behind.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from monitor.alarms.engine import AlarmEvent, Inheritance, Subject, Trackers
from monitor.alarms.input_stats import InputStats
from monitor.checks.base import CheckContext, InfoEvent, UnitCheck
from monitor.checks.monitor_error import MONITOR_ERROR
from monitor.checks.registry import build_checks
from monitor.daemon.messages import (
    ExitWorker,
    FromWorker,
    Heartbeat,
    StartUnit,
    StopUnit,
    ToWorker,
    UnitEvent,
    UnitInfo,
    UnitKey,
    UnitSpec,
    UnitStats,
    UnitStopped,
    UnitThumbnail,
    WorkerLog,
)
from monitor.decode.thumbnails import outline
from monitor.errors import StreamqcError
from monitor.pipeline.live_session import LiveSession, warm_up
from monitor.util.backoff import Backoff

HEARTBEAT_S = 0.5
SESSION_BACKOFF_FIRST_S = 1.0
SESSION_BACKOFF_MAX_S = 30.0


class PipeSender:
    """The worker's side of the pipe, shared by every thread of the worker."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._queue: queue.Queue[FromWorker] = queue.Queue(maxsize=2000)
        self._thread = threading.Thread(target=self._send, name="outbox", daemon=True)
        self._thread.start()

    def put(self, message: FromWorker) -> None:
        """For what must arrive: waits for room."""
        self._queue.put(message)

    def offer(self, message: FromWorker) -> None:
        """For what can be skipped (stats, thumbnails): dropped when the queue is full."""
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(message)

    def log(self, level: str, message: str, **fields: Any) -> None:
        self.offer(WorkerLog(level, message, fields))

    def drain(self, timeout_s: float) -> None:
        """Wait until everything queued has been sent (at exit)."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def _send(self) -> None:
        while True:
            message = self._queue.get()
            try:
                self._conn.send(message)
            except (OSError, EOFError, ValueError):
                os._exit(0)  # the supervisor is gone: nothing left to work for
            self._queue.task_done()


class UnitThread(threading.Thread):
    """Runs one channel input's live session until stopped, restarting it if it fails."""

    def __init__(self, spec: UnitSpec, outbox: PipeSender) -> None:
        super().__init__(name=f"unit {spec.channel.name}/{spec.input}", daemon=True)
        self.spec = spec
        self.outbox = outbox
        self.stop = threading.Event()
        self.last_tick_s = time.monotonic()
        self.session: LiveSession | None = None
        self.active = {e["id"]: AlarmEvent.from_dict(e) for e in spec.active}
        self._session_started_s = time.monotonic()
        # The unit's own checks (monitor_error), resuming what the last worker had raised.
        carried = [e for e in self.active.values() if e.alarm == MONITOR_ERROR]
        subject = Subject(spec.channel.name, spec.input, None)
        trackers = Trackers(subject, self.emit, Inheritance(carried))
        context = CheckContext(spec.channel, subject, trackers)
        self.checks = [c for c in build_checks("unit", context) if isinstance(c, UnitCheck)]
        for event in carried:  # it was failing when its worker stopped: still is, until it runs
            for check in self.checks:
                check.session_failed(str(event.detail.get("error", "")), self._media_now_s())

    # --- SessionObserver ---

    def tick(self) -> None:
        self.last_tick_s = time.monotonic()

    def stats(self, stats: list[InputStats]) -> None:
        self.outbox.offer(UnitStats(self.spec.key, stats))
        for check in self.checks:
            check.session_running(self._session_s(), self._media_now_s())

    def thumbnail(self, rendition: str | None, jpeg: bytes) -> None:
        self.outbox.offer(UnitThumbnail(self.spec.key, rendition, jpeg))

    # ---

    def emit(self, event: AlarmEvent) -> None:
        jpeg = None
        if event.state == "raised":
            self.active[event.id] = event
            if self.session is not None:
                jpeg = self.session.thumbnail_at(event.rendition, event.start)
                if jpeg is not None and "roi" in event.detail:
                    jpeg = outline(jpeg, event.detail["roi"], self.spec.thumbnails.quality)
        else:
            self.active.pop(event.id, None)
        self.outbox.put(UnitEvent(self.spec.key, event.to_dict(), jpeg))

    def inform(self, event: InfoEvent) -> None:
        self.outbox.put(UnitInfo(self.spec.key, event.to_dict()))

    def run(self) -> None:
        spec = self.spec
        source = spec.channel.inputs[spec.input]
        backoff = Backoff(SESSION_BACKOFF_FIRST_S, SESSION_BACKOFF_MAX_S, spread=(1.0, 1.0))
        while not self.stop.is_set():
            self.tick()
            try:
                session = LiveSession(
                    source.url,
                    spec.channel,
                    self.emit,
                    input_name=spec.input,
                    source=source,
                    stop=self.stop,
                    origin_wall_s=spec.origin_wall_s,
                    inherited=Inheritance(
                        e for e in self.active.values() if e.alarm != MONITOR_ERROR
                    ),
                    observer=self,
                    thumbnails=spec.thumbnails,
                    persistent=True,
                    inform=self.inform,
                )
                session.notice = lambda message: self.outbox.log("warning", message)
                self.session = session
                self._session_started_s = time.monotonic()
                session.run()
                backoff.reset()
            except StreamqcError as exc:
                self.outbox.log("error", f"{exc}; retrying in {backoff.ceiling_s:.0f} s")
                self._failed(str(exc))
            except Exception as exc:  # a bug in one input must not end the others
                error = f"internal error: {type(exc).__name__}: {exc}"
                self.outbox.log("error", f"{error}; restarting in {backoff.ceiling_s:.0f} s")
                self._failed(error)
            if self.stop.wait(backoff.next_s()):
                break
        self.outbox.put(UnitStopped(spec.key))

    def _session_s(self) -> float:
        return time.monotonic() - self._session_started_s

    def _media_now_s(self) -> float:
        return time.time() - self.spec.origin_wall_s

    def _failed(self, error: str) -> None:
        for check in self.checks:
            check.session_failed(error, self._media_now_s())


def worker_main(conn: Connection, index: int) -> None:
    """The worker process's entry point."""
    # Ctrl-C in a terminal reaches the whole process group: the supervisor decides what stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    outbox = PipeSender(conn)
    warm_up()
    units: dict[UnitKey, UnitThread] = {}

    def heartbeat() -> None:
        while True:
            now = time.monotonic()
            ages = {key: now - unit.last_tick_s for key, unit in list(units.items())}
            outbox.offer(Heartbeat(ages))
            time.sleep(HEARTBEAT_S)

    threading.Thread(target=heartbeat, name="heartbeat", daemon=True).start()
    while True:
        try:
            message: ToWorker = conn.recv()
        except (EOFError, OSError):
            os._exit(0)  # the supervisor is gone
        match message:
            case StartUnit(spec):
                old = units.get(spec.key)
                if old is not None and old.is_alive():
                    outbox.log("error", f"{spec.key}: already running")
                    continue
                unit = units[spec.key] = UnitThread(spec, outbox)
                unit.start()
            case StopUnit(key):
                stopping = units.pop(key, None)
                if stopping is None:
                    outbox.put(UnitStopped(key))
                else:
                    stopping.stop.set()  # the unit says UnitStopped when its session has ended
            case ExitWorker():
                for unit in units.values():
                    unit.stop.set()
                deadline = time.monotonic() + 3.0
                for unit in units.values():
                    unit.join(timeout=max(deadline - time.monotonic(), 0.0))
                outbox.drain(1.0)
                os._exit(0)
