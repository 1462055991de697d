"""Pieces of the end-to-end daemon benchmark: feeds played from another process, a
subscriber that timestamps what it receives, the daemon on a production-like configuration,
/proc readings.

``Player`` sends any number of MPEG-TS files to UDP ports on their PCR schedule (as
``monitor.demo.udp_sender.UdpSender`` does, one file per port, looping), but from a single thread,
so that 50 feeds cost one thread and not 50 threads fighting for a GIL. It records when it
started on both clocks, how late each datagram left, and its CPU time. ``PlayerProcess`` runs
it in a process of its own: in the test process its thread shared the GIL with the thread
polling /metrics, and left up to 6 % of its datagrams over 50 ms late at 48 feeds.
"""

from __future__ import annotations

import heapq
import multiprocessing
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import av
import numpy as np
import paho.mqtt.client as paho

from monitor.demo.udp_sender import DATAGRAM, TS_PER_DATAGRAM, pcr_times
from tests.daemon import Channel, Daemon
from tests.mqttbroker import Received, Subscriber

CLOCK_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
PLAYER_NICE = -10
EARLY_S = 0.001
"""Datagrams due within this are sent now: one wake-up sends several, with many feeds."""


# --- feeds --------------------------------------------------------------------------------


@cache
def _schedule(path: Path) -> tuple[memoryview, np.ndarray, float]:
    """A file's whole datagrams, each one's due time and the loop period (shared by feeds)."""
    raw = path.read_bytes()
    raw = raw[: len(raw) // DATAGRAM * DATAGRAM]
    # as UdpSender: a datagram is due at its last packet's PCR time, relative to the file's
    # first PCR; the loop restarts one datagram interval after the last
    times = pcr_times(raw)[TS_PER_DATAGRAM - 1 :: TS_PER_DATAGRAM]
    period_s = float(times[-1] + (times[-1] - times[0]) / max(len(times) - 1, 1))
    return memoryview(raw), times, period_s


@dataclass
class Feed:
    """One file played to one port, starting ``offset_s`` after the player's start."""

    path: Path
    port: int
    offset_s: float = 0.0
    data: memoryview = field(init=False, repr=False)
    due: np.ndarray = field(init=False, repr=False)
    period_s: float = field(init=False)

    def __post_init__(self) -> None:
        self.data, self.due, self.period_s = _schedule(Path(self.path))


class Player(threading.Thread):
    """Plays every feed, PCR-paced and looping, from this one thread, until ``stop()``."""

    def __init__(self, feeds: list[Feed], host: str = "127.0.0.1") -> None:
        super().__init__(name="player", daemon=True)
        self.feeds = feeds
        self.host = host
        self.start_mono = 0.0
        self.start_wall = 0.0  # time.time() at start_mono: due times are relative to it
        self.sent = 0
        self.late_max_s = 0.0
        self.late_over_10ms = 0
        self.late_over_50ms = 0
        self.niceness: int | None = None  # of this thread, when it could be raised
        self.muted: set[int] = set()
        """Feeds (by index) whose datagrams are not sent: their schedule runs on, so a feed
        that is unmuted comes back at the live point, as a source that went away would."""
        self._halt = threading.Event()
        self._playing = threading.Event()

    def start(self) -> Player:  # type: ignore[override]
        super().start()
        self._playing.wait(5)
        return self

    def cpu_s(self) -> float:
        """CPU time of this thread so far (user + system), from /proc."""
        if self.native_id is None:
            return 0.0
        return task_cpu_s(os.getpid(), self.native_id)

    def stats(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "late_over_10ms": self.late_over_10ms,
            "late_over_50ms": self.late_over_50ms,
            "late_max_s": self.late_max_s,
            "thread_cpu_s": self.cpu_s(),
            "niceness": self.niceness,
        }

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)

    def run(self) -> None:
        # The player stands for a source on another machine: when allowed (root), it goes
        # ahead of the daemon's threads for the CPU, so that its pacing does not suffer when
        # the daemon saturates the cores. Its CPU time is reported either way.
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), PLAYER_NICE)
            self.niceness = PLAYER_NICE
        except OSError:
            pass
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        feeds = self.feeds
        addresses = [(self.host, f.port) for f in feeds]
        index = [0] * len(feeds)
        loops = [0] * len(feeds)
        start = self.start_mono = time.monotonic()
        self.start_wall = time.time()
        self._playing.set()
        heap = [(start + f.offset_s + float(f.due[0]), k) for k, f in enumerate(feeds)]
        heapq.heapify(heap)
        monotonic, sleep = time.monotonic, time.sleep
        try:
            while heap and not self._halt.is_set():
                due, k = heap[0]
                now = monotonic()
                if due > now + EARLY_S:
                    sleep(min(due - now, 0.05))
                    continue
                late = now - due
                if late > 0.010:
                    self.late_over_10ms += 1
                    if late > 0.050:
                        self.late_over_50ms += 1
                    if late > self.late_max_s:
                        self.late_max_s = late
                f = feeds[k]
                i = index[k]
                if k not in self.muted:
                    sock.sendto(f.data[i * DATAGRAM : (i + 1) * DATAGRAM], addresses[k])
                    self.sent += 1
                i += 1
                if i == len(f.due):
                    i = 0
                    loops[k] += 1
                index[k] = i
                next_due = start + f.offset_s + loops[k] * f.period_s + float(f.due[i])
                heapq.heapreplace(heap, (next_due, k))
        finally:
            sock.close()


def _player_main(conn: Connection, feeds: list[tuple[str, int, float]]) -> None:
    player = Player([Feed(Path(path), port, offset) for path, port, offset in feeds]).start()
    conn.send((player.start_mono, player.start_wall))
    while True:
        try:
            command = conn.recv()
        except EOFError:
            command = "stop"
        if command == "stop":
            player.stop()
            conn.send(player.stats())
            return
        if isinstance(command, tuple):  # ("mute" | "unmute", feed index)
            verb, k = command
            if verb == "mute":
                player.muted.add(k)
            else:
                player.muted.discard(k)
        conn.send(player.stats())


class PlayerProcess:
    """A Player in a process of its own (spawned), driven over a pipe."""

    def __init__(self, feeds: list[Feed]) -> None:
        self.feeds = feeds
        self.start_mono = 0.0
        self.start_wall = 0.0
        self.final: dict[str, Any] | None = None
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        specs = [(str(f.path), f.port, f.offset_s) for f in feeds]
        self._process = context.Process(
            target=_player_main, args=(child, specs), name="player", daemon=True
        )
        self._child = child

    def start(self, timeout_s: float = 60.0) -> PlayerProcess:
        self._process.start()
        self._child.close()
        if not self._conn.poll(timeout_s):
            self._process.kill()
            raise RuntimeError(f"the player did not start in {timeout_s} s")
        self.start_mono, self.start_wall = self._conn.recv()
        return self

    @property
    def pid(self) -> int:
        assert self._process.pid is not None
        return self._process.pid

    def feed_start_wall(self, k: int) -> float:
        """Wall time (time.time()) at which feed ``k``'s first PCR was due."""
        return self.start_wall + self.feeds[k].offset_s

    def stats(self) -> dict[str, Any]:
        """Datagrams sent and late so far, the player thread's CPU, and the whole process's."""
        if self.final is not None:
            return self.final
        self._conn.send("stats")
        stats = self._conn.recv()
        stats["process_cpu_s"] = proc_cpu_s(self.pid)
        return stats

    def mute(self, k: int, muted: bool = True) -> None:
        """Stop (or resume) sending feed ``k``; its schedule runs on meanwhile."""
        self._conn.send(("mute" if muted else "unmute", k))
        self._conn.recv()

    def stop(self) -> dict[str, Any]:
        if self.final is None:
            process_cpu_s = proc_cpu_s(self.pid)
            try:
                self._conn.send("stop")
                self.final = self._conn.recv() if self._conn.poll(10) else {}
            except (OSError, EOFError):
                self.final = {}
            self.final["process_cpu_s"] = process_cpu_s
            self._process.join(timeout=5)
            if self._process.is_alive():
                self._process.kill()
            self._conn.close()
        return self.final


# --- fault onsets in a clip ----------------------------------------------------------------


def first_pcr(path: Path) -> int:
    """The first PCR base (90 kHz) of an MPEG-TS file: the player's time zero."""
    with path.open("rb") as f:
        data = f.read(188 * 4096)
    packets = np.frombuffer(data[: len(data) // 188 * 188], np.uint8).reshape(-1, 188)
    has_pcr = ((packets[:, 3] & 0x20) != 0) & (packets[:, 4] >= 7) & ((packets[:, 5] & 0x10) != 0)
    row = packets[int(np.flatnonzero(has_pcr)[0]), 6:11].astype(np.int64)
    return int((row[0] << 25) | (row[1] << 17) | (row[2] << 9) | (row[3] << 1) | (row[4] >> 7))


def black_onsets(path: Path, near_s: list[float]) -> list[float]:
    """PTS (90 kHz ticks) of the first black picture (mean luma <= 17) at or after each media
    time in ``near_s``, found by decoding the file."""
    out: list[float] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        origin = container.start_time * 90000 // av.time_base
        wanted = sorted(near_s)
        dark = False
        for frame in container.decode(stream):
            y = np.frombuffer(frame.planes[0], np.uint8)
            is_black = float(y.mean()) <= 17.0
            t = (frame.pts - origin) / 90000
            if is_black and not dark and wanted and t >= wanted[0] - 0.5:
                out.append(frame.pts)
                wanted.pop(0)
            dark = is_black
    if len(out) != len(near_s):
        raise RuntimeError(f"{path}: found {len(out)} black onsets, expected {len(near_s)}")
    return out


def silence_onsets(path: Path, near_s: list[float], min_run_s: float = 0.2) -> list[float]:
    """PTS (90 kHz ticks, fractional) of the first digitally silent sample of each silence
    starting near a media time in ``near_s`` (within 0.5 s), found by decoding the file."""
    chunks: list[np.ndarray] = []
    first_pts = None
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        origin = container.start_time * 90000 // av.time_base
        rate = stream.codec_context.sample_rate
        for frame in container.decode(stream):
            if first_pts is None:
                first_pts = frame.pts
            chunks.append(np.abs(frame.to_ndarray()).max(axis=0))
    assert first_pts is not None
    level = np.concatenate(chunks)
    silent = level == 0.0
    out = []
    run = int(min_run_s * rate)
    for t in near_s:
        lo = int(((origin - first_pts) / 90000 + t - 0.5) * rate)
        for n in range(max(lo, 0), len(silent) - run):
            if silent[n] and silent[n : n + run].all():
                out.append(first_pts + n * 90000 / rate)
                break
        else:
            raise RuntimeError(f"{path}: no silence near {t} s")
    return out


# --- broker side ---------------------------------------------------------------------------


class StampedSubscriber(Subscriber):
    """A Subscriber that also keeps the wall time (time.time()) each message arrived."""

    def __init__(self, port: int, topic_filter: str = "#", **kwargs: Any) -> None:
        self.stamped: list[tuple[float, Received]] = []
        super().__init__(port, topic_filter, **kwargs)

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        now = time.time()
        super()._on_message(client, userdata, msg)
        with self._lock:
            self.stamped.append((now, self.messages[-1]))

    def stamped_snapshot(self) -> list[tuple[float, Received]]:
        with self._lock:
            return list(self.stamped)


def iso_to_wall(stamp: str) -> float:
    """'2026-11-24T10:00:00.123Z' -> time.time() seconds."""
    return datetime.fromisoformat(stamp).timestamp()


# --- the daemon ----------------------------------------------------------------------------


@dataclass
class FedChannel(Channel):
    """A Channel whose media comes from a Player, not from its own UdpSender, with the
    default watchdog (10 s; tests.daemon's channels use 4 s). TR 101 290 alarms stay off as
    there (a Python sender's PCR jitter), but the analysis itself still runs on every byte.
    ``query``: URL options of the input (``?batch_ms=200``)."""

    query: str = ""

    def yaml(self) -> str:
        tier = f", pictures: {self.pictures}" if self.pictures != "all" else ""
        url = f"udp://127.0.0.1:{self.port}{self.query}"
        return (
            f"  - name: {self.name}\n"
            f'    inputs: {{primary: {{url: "{url}"{tier}}}}}\n'
            f"    detectors: {self.detectors}\n"
        )

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


def play_staggered(clip: Path, channels: list[Channel], gop_s: float = 2.0) -> PlayerProcess:
    """A started player of ``clip`` to every channel, their starts spread over one GOP, so
    that the feeds' I-frames (and their decoders' busiest moments) are spread too."""
    n = len(channels)
    feeds = [Feed(clip, c.port, k * gop_s / n) for k, c in enumerate(channels)]
    player = PlayerProcess(feeds)
    player.start()
    return player


class BenchDaemon(Daemon):
    """``streamqc run`` on a production-like configuration: the default worker count (one per
    core), default thumbnails (one per channel every 10 s, plus one per raised alarm).

    ``workers``: a fixed worker count instead; ``cpus``: the CPUs the daemon (supervisor and
    workers, which inherit it) may run on; ``extra``: more top-level YAML."""

    SETTINGS = ""

    def __init__(
        self,
        folder: Path,
        channels: list[Channel],
        *,
        workers: int | None = None,
        cpus: set[int] | None = None,
        extra: str = "",
        **kwargs: Any,
    ) -> None:
        self.workers = workers
        self.cpus = cpus
        self.extra = extra
        super().__init__(folder, channels, **kwargs)

    def write_config(self, channels: list[Channel], extra: str = "") -> None:
        extra = self.extra + ("\n" if self.extra else "") + extra
        if self.workers is not None:
            extra = f"workers: {self.workers}\n" + extra
        super().write_config(channels, extra)

    def start(self) -> BenchDaemon:
        # STREAMQC_DEBUG only adds tracebacks on internal errors; keep the daemon as deployed
        self.env.setdefault("STREAMQC_DEBUG", "")
        super().start()
        if self.cpus is not None:
            # before the supervisor has imported enough to spawn its workers (~0.7 s)
            assert self.process is not None
            os.sched_setaffinity(self.process.pid, self.cpus)
        return self

    def metrics(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        """Every sample of /metrics: name -> [(labels, value)]."""
        status, body = self.get("/metrics")
        return parse_metrics(body.decode())

    def worker_pids(self) -> list[int]:
        return [w["pid"] for w in self.health()["workers"] if w["pid"] is not None]

    def wait_listening(self, ports: list[int], timeout_s: float = 60.0) -> None:
        """Until every port has a UDP socket bound (the channels' readers are up)."""
        deadline = time.monotonic() + timeout_s
        while True:
            missing = set(ports) - udp_bound_ports()
            if not missing:
                return
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"daemon exited: {self.log_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(missing)} ports not bound after {timeout_s} s: {self.log_text()[-3000:]}"
                )
            time.sleep(0.1)


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        name, labels, value = match.groups()
        out.setdefault(name, []).append((dict(_LABEL.findall(labels or "")), float(value)))
    return out


def per_channel(
    metrics: dict[str, list[tuple[dict[str, str], float]]], name: str
) -> dict[str, float]:
    return {labels["channel"]: value for labels, value in metrics.get(name, [])}


# --- /proc ---------------------------------------------------------------------------------


def _stat_cpu_s(path: str) -> float:
    try:
        fields = Path(path).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # after the ")": state is fields[0], utime fields[11], stime fields[12]
    return (int(fields[11]) + int(fields[12])) * CLOCK_TICK_S


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) so far."""
    return _stat_cpu_s(f"/proc/{pid}/stat")


def task_cpu_s(pid: int, tid: int) -> float:
    return _stat_cpu_s(f"/proc/{pid}/task/{tid}/stat")


def threads_cpu_s(pid: int) -> dict[int, float]:
    """CPU seconds of each thread of a process."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        out[int(tid)] = task_cpu_s(pid, int(tid))
    return out


def machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (all cores, all processes) since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) * CLOCK_TICK_S  # user .. steal; guest is inside user


def others_busy(seconds: float = 5.0) -> float:
    """Share of the machine (0..1) busy over ``seconds`` now: before a run, to wait for quiet."""
    a, t = machine_busy_s(), time.monotonic()
    time.sleep(seconds)
    return (machine_busy_s() - a) / (time.monotonic() - t) / (os.cpu_count() or 1)


def udp_bound_ports() -> set[int]:
    ports = set()
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local = line.split()[1]
            ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports
