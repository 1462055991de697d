"""Chaos soak: the daemon, a real Mosquitto and a failover agent under everything at once.

``python -m benchmarks.soak --minutes 60 --seed 1 --out DIR`` (CI runs a 2-minute version,
``benchmarks/test_soak.py``). What runs, all real processes on loopback:

- **Feeds.** ``FAULT_CHANNELS`` channels of a 320x180p25 H.264/AAC clip (~0.5 Mbit/s) with
  black, silence and freeze at known media times, looping, each feed shifted by a few seconds
  so onsets do not coincide; plus a failover channel ``fo`` whose primary has black at a known
  time every loop and whose backup is clean. One player process sends them all over UDP on
  their PCR schedule (``daemon_load.PlayerProcess``); a feed can be muted and unmuted.
- **Mosquitto** with persistence (autosave every second), so a subscriber's session survives
  its SIGKILL.
- **The daemon** (``streamqc run``, a subprocess) reaches the broker through ``BrokerPath``, a
  TCP relay here that can cut its path: ``held`` (nothing passes either way, a connect gets no
  answer, as when packets are dropped; what was sent meanwhile moves on once restored, as TCP
  would retransmit it) or ``reset`` (connections reset, new ones refused).
- **The agent** (``streamqc agent``) switches ``fo`` with a script action that records each
  switch in a file.
- **A subscriber** with a persistent session (clean_session false, QoS 1) records every message
  and when it arrived.

Chaos from a seeded schedule, one action at a time with random gaps: the broker SIGKILLed and
restarted on its port; the daemon's path cut and restored; a worker SIGKILLed; a feed stopped
and resumed; a SIGHUP reload changing one channel (its input's watchdog); the daemon SIGKILLed
and restarted. The first six actions are one of each, so a short run has them all.

Invariants (the contract of DESIGN.md's reliability rules):

- **No event lost.** Every alarm event the daemon logged as published (after it is in its
  on-disk queue) reaches the subscriber: ``lost`` counts (id, state) pairs that never did.
  Duplicates (QoS 1 is at least once: a redelivery after a kill) are counted, not failures.
- **Every injected fault raised and cleared once.** A fault whose span (plus its hold-offs)
  does not overlap a moment when its input was not being watched (the daemon down, its worker
  restarting, its feed stopped, its channel restarting on a reload) must be raised exactly
  once and cleared exactly once (one id); missing one is a loss. Broker kills and path cuts do
  not excuse anything: the queue is there for them. A fault that does overlap such a gap may
  be missed (the daemon was not watching) or raised late, but never twice, and what was
  raised must clear (alarms are inherited across restarts).
- **In order per channel**: first arrivals in the order the daemon published them.
- **No channel stuck**: each input flowing again (``streamqc_input_flowing``) within
  ``STUCK_BOUND_S`` after every action, and at the end.
- **Failover only when the policy says so**: every switch the agent ran answers a command; a
  switch to backup while black held on primary, a switch back once it had been clear for the
  error clear time; no command ran twice.
- **Recovery bound**: after the broker is reachable again (restarted, or path restored), the
  first event queued meanwhile reaches the subscriber within ``RECOVERY_BOUND_S``.
- **RSS flat**: the slope of the daemon's memory over each long enough stretch without a
  daemon restart (reported; asserted only on long runs, where it means something).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import pickle
import random
import selectors
import signal
import socket
import statistics
import struct
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.clips import cache_dir
from benchmarks.daemon_load import (
    BenchDaemon,
    Feed,
    PlayerProcess,
    StampedSubscriber,
    black_onsets,
    first_pcr,
    iso_to_wall,
)
from monitor.demo.synth import MediaSpec, Span, make_ts
from monitor.demo.udp_sender import free_udp_port
from tests.daemon import Channel
from tests.failover.test_agent import AgentProcess, flow
from tests.mqttbroker import Mosquitto, Received, free_port

SITE = "soak"
PREFIX = f"streamqc/{SITE}"
FAULT_CHANNELS = 8
CLIP_S = 45.0
WIDTH, HEIGHT = 320, 180
FAULTS = {  # alarm -> its span in every loop of channel 0's clip
    "black": Span(3.0, 7.0),
    "silence": Span(16.0, 20.0),
    "freeze": Span(29.0, 33.0),
}
SHIFT_S = 1.2
"""Channel k's faults come k x this later in its clip: onsets never coincide, and every feed
starts at once (a feed that starts late is input_loss until it does)."""
FO_CLIP_S = 90.0
FO_BLACK = Span(12.0, 18.0)  # on the failover channel's primary, once a loop: 2 switches
FO_ERROR_CLEAR_S = 3.0
FO_SETTINGS = (
    "{mode: auto, triggers: [black], error_clear_time: 3s, max_switches: 30, flap_window: 10m}"
)
RAISE_AFTER_S = 2.0  # black, silence and freeze: the defaults
CLEAR_AFTER_S = 1.0
STUCK_BOUND_S = 30.0
RECOVERY_BOUND_S = 2.0
WARMUP_S = 15.0
SETTLE_S = 25.0  # no chaos in the last stretch: what was queued drains, alarms clear
SAMPLE_S = 1.0
RSS_EVERY_S = 5.0
RSS_MIN_SEGMENT_S = 600.0  # a stretch between daemon restarts long enough for a slope
RSS_FLAT_MB_PER_H = 20.0


# --- media ----------------------------------------------------------------------------------


def clip(spec: MediaSpec, name: str) -> Path:
    """``make_ts`` output cached beside the benchmark clips, keyed by the whole spec."""
    import hashlib

    key = hashlib.sha1(repr(spec).encode()).hexdigest()[:10]
    path = cache_dir() / f"soak_{name}_{key}.ts"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.partial.ts")
        try:
            make_ts(partial, spec)
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)
    return path


def shifted(k: int) -> dict[str, Span]:
    """Channel ``k``'s fault spans."""
    return {a: Span(f.start_s + k * SHIFT_S, f.end_s + k * SHIFT_S) for a, f in FAULTS.items()}


def clips() -> dict[str, Path]:
    size = {"width": WIDTH, "height": HEIGHT}
    out = {}
    for k in range(FAULT_CHANNELS):
        spans = shifted(k)
        spec = MediaSpec(
            duration_s=CLIP_S,
            **size,  # type: ignore[arg-type]
            black=(spans["black"],),
            silence=(spans["silence"],),
            freeze=(spans["freeze"],),
            seed=k,
        )
        out[f"fault{k}"] = clip(spec, f"fault{k}")
    out["fo_primary"] = clip(
        MediaSpec(duration_s=FO_CLIP_S, **size, black=(FO_BLACK,)),  # type: ignore[arg-type]
        "fo_primary",
    )
    out["clean"] = clip(MediaSpec(duration_s=CLIP_S, **size, seed=99), "clean")  # type: ignore[arg-type]
    return out


def media_to_send_s(path: Path, first_black_s: float) -> float:
    """Seconds from the player's time zero (the first PCR) to media t=0 of ``path``: found
    from the first black picture of the clip, whose media time is known."""
    pts = black_onsets(path, [first_black_s])[0]
    return (pts - first_pcr(path)) / 90000 - first_black_s


# --- the daemon's path to the broker -----------------------------------------------------------


@dataclass
class _Pair:
    client: socket.socket
    upstream: socket.socket | None = None
    to_upstream: bytearray = field(default_factory=bytearray)
    to_client: bytearray = field(default_factory=bytearray)
    client_eof: bool = False
    upstream_eof: bool = False


class BrokerPath(threading.Thread):
    """A TCP relay 127.0.0.1:<port> -> the broker, whose path can be cut and restored.

    ``cut("held")``: nothing passes either way and a new connection gets no answer (its
    CONNECT waits, as behind a path that drops packets); what either side sent meanwhile is
    delivered once restored, as TCP would retransmit it, and an end that gave up meanwhile is
    closed then. ``cut("reset")``: every connection is reset and new ones are refused until
    restored."""

    def __init__(self, upstream_port: int) -> None:
        super().__init__(name="broker-path", daemon=True)
        self.upstream_port = upstream_port
        self.port = free_port()
        self.state = "up"
        self._lock = threading.Lock()
        self._pairs: list[_Pair] = []
        self._selector = selectors.DefaultSelector()
        self._listener: socket.socket | None = None
        self._halt = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._listen()

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        listener.setblocking(False)
        self._listener = listener
        self._selector.register(listener, selectors.EVENT_READ, "listen")

    def cut(self, how: str) -> None:
        with self._lock:
            self.state = how
        self._wake()

    def restore(self) -> None:
        with self._lock:
            self.state = "up"
        self._wake()

    def close(self) -> None:
        self._halt = True
        self._wake()
        self.join(timeout=5)

    def _wake(self) -> None:
        self._wake_w.send(b"x")

    def run(self) -> None:
        applied = "up"
        while not self._halt:
            with self._lock:
                state = self.state
            if state != applied:
                self._apply(applied, state)
                applied = state
            self._sync_interest(state)
            for key, mask in self._selector.select(timeout=0.5):
                if key.fileobj is self._wake_r:
                    self._wake_r.recv(4096)
                elif key.data == "listen":
                    self._accept(state)
                else:
                    pair, side = key.data
                    if mask & selectors.EVENT_READ:
                        self._read(pair, side)
                    if mask & selectors.EVENT_WRITE and state == "up":
                        self._flush(pair)
            if state == "up":
                for pair in list(self._pairs):
                    self._flush(pair)
        for pair in list(self._pairs):
            self._drop(pair, reset=False)

    def _apply(self, old: str, new: str) -> None:
        if new == "reset":
            for pair in list(self._pairs):
                self._drop(pair, reset=True)
            if self._listener is not None:
                self._selector.unregister(self._listener)
                self._listener.close()
                self._listener = None
        elif new == "up":
            if self._listener is None:
                self._listen()
            for pair in list(self._pairs):
                if pair.upstream is None:
                    self._connect_upstream(pair)

    def _accept(self, state: str) -> None:
        assert self._listener is not None
        try:
            client, _ = self._listener.accept()
        except OSError:
            return
        client.setblocking(False)
        pair = _Pair(client)
        self._pairs.append(pair)
        self._selector.register(client, selectors.EVENT_READ, (pair, "client"))
        if state == "up":
            self._connect_upstream(pair)

    def _connect_upstream(self, pair: _Pair) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=2)
        except OSError:  # the broker is down: the client sees its connection end
            self._drop(pair, reset=False)
            return
        upstream.setblocking(False)
        pair.upstream = upstream
        self._selector.register(upstream, selectors.EVENT_READ, (pair, "upstream"))

    def _read(self, pair: _Pair, side: str) -> None:
        sock = pair.client if side == "client" else pair.upstream
        if sock is None:
            return
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if side == "client":
            if data:
                pair.to_upstream += data
            else:
                pair.client_eof = True
        elif data:
            pair.to_client += data
        else:
            pair.upstream_eof = True

    def _flush(self, pair: _Pair) -> None:
        if pair not in self._pairs:
            return
        try:
            if pair.upstream is not None and pair.to_upstream:
                sent = pair.upstream.send(pair.to_upstream)
                del pair.to_upstream[:sent]
            if pair.to_client:
                sent = pair.client.send(pair.to_client)
                del pair.to_client[:sent]
        except BlockingIOError:
            return
        except OSError:
            self._drop(pair, reset=False)
            return
        done_up = pair.client_eof and not pair.to_upstream
        done_down = pair.upstream_eof and not pair.to_client
        if done_up or done_down:
            self._drop(pair, reset=False)

    def _sync_interest(self, state: str) -> None:
        for pair in self._pairs:
            for sock, side, pending in (
                (pair.client, "client", pair.to_client),
                (pair.upstream, "upstream", pair.to_upstream),
            ):
                if sock is None:
                    continue
                eof = pair.client_eof if side == "client" else pair.upstream_eof
                mask = 0 if eof else selectors.EVENT_READ
                if pending and state == "up":
                    mask |= selectors.EVENT_WRITE
                try:
                    if mask:
                        self._selector.modify(sock, mask, (pair, side))
                    else:
                        self._selector.unregister(sock)
                except (KeyError, ValueError):
                    if mask:
                        self._selector.register(sock, mask, (pair, side))

    def _drop(self, pair: _Pair, *, reset: bool) -> None:
        if pair in self._pairs:
            self._pairs.remove(pair)
        for sock in (pair.client, pair.upstream):
            if sock is None:
                continue
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(sock)
            if reset:  # linger 0: close sends a RST
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()


# --- channels and processes -------------------------------------------------------------------


@dataclass
class SoakChannel(Channel):
    """A channel fed by the player; ``watchdog_s`` is what a reload changes."""

    watchdog_s: int = 10

    def yaml(self) -> str:
        return (
            f"  - name: {self.name}\n"
            f'    inputs: {{primary: {{url: "udp://127.0.0.1:{self.port}",'
            f" watchdog: {self.watchdog_s}s}}}}\n"
            f"    detectors: {self.detectors}\n"
        )

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


@dataclass
class FailoverSoakChannel(Channel):
    backup_port: int = field(default_factory=free_udp_port)

    def yaml(self) -> str:
        return (
            f"  - name: {self.name}\n"
            "    inputs:\n"
            f'      primary: {{url: "udp://127.0.0.1:{self.port}"}}\n'
            f'      backup: {{url: "udp://127.0.0.1:{self.backup_port}"}}\n'
            f"    detectors: {self.detectors}\n"
            f"    failover: {FO_SETTINGS}\n"
        )

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


SWITCH_SCRIPT = 'printf "%s %s\\n" "$(date +%s.%N)" "$STREAMQC_INPUT_NAME" >> '


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


# --- the schedule --------------------------------------------------------------------------------

KINDS = ("broker_kill", "path_cut", "worker_kill", "feed_stop", "reload", "daemon_kill")
WEIGHTS = {  # of the random actions after the first round
    "broker_kill": 3,
    "path_cut": 4,
    "worker_kill": 3,
    "feed_stop": 3,
    "reload": 3,
    "daemon_kill": 1,
}


@dataclass
class Action:
    kind: str
    at_s: float  # after the start of the chaos clock
    down_s: float = 0.0  # how long the broker / path / feed / daemon stays away
    how: str = ""  # path_cut: held or reset
    target: int = 0  # feed_stop: feed index; reload: channel index; worker_kill: worker index
    # filled in when it ran (time.time())
    started: float | None = None
    restored: float | None = None
    affected: list[str] = field(default_factory=list)  # "channel/input" not watched meanwhile
    note: str = ""


def schedule(seed: int, total_s: float, n_feeds: int) -> list[Action]:
    rng = random.Random(seed)
    short = total_s <= 300
    actions: list[Action] = []
    t = WARMUP_S
    end = total_s - SETTLE_S
    first = list(KINDS)
    rng.shuffle(first)
    while True:
        kind = first.pop(0) if first else rng.choices(KINDS, [WEIGHTS[k] for k in KINDS])[0]
        if kind == "broker_kill":
            down = rng.uniform(1.0, 4.0) if short else rng.uniform(1.0, 15.0)
        elif kind == "path_cut":
            down = rng.uniform(3.0, 8.0) if short else rng.uniform(3.0, 25.0)
        elif kind == "feed_stop":
            down = rng.uniform(2.0, 6.0) if short else rng.uniform(2.0, 20.0)
        elif kind == "daemon_kill":
            down = rng.uniform(0.5, 2.0) if short else rng.uniform(0.5, 8.0)
        else:
            down = 0.0
        busy = {"daemon_kill": 12.0, "worker_kill": 4.0, "reload": 3.0}.get(kind, 2.0)
        if t + down + busy > end:
            break
        actions.append(
            Action(
                kind=kind,
                at_s=round(t, 2),
                down_s=round(down, 2),
                how=rng.choice(("held", "reset")) if kind == "path_cut" else "",
                target=rng.randrange(n_feeds if kind == "feed_stop" else FAULT_CHANNELS),
            )
        )
        gap = rng.uniform(2.0, 5.0) if short else rng.uniform(5.0, 30.0)
        t += down + busy + gap
    return actions


# --- the run ----------------------------------------------------------------------------------


class Soak:
    def __init__(self, out: Path, total_s: float, seed: int, log: Any = print) -> None:
        self.out = out
        self.total_s = total_s
        self.seed = seed
        self.say = log
        self.out.mkdir(parents=True, exist_ok=True)
        self.samples: list[tuple[float, dict[str, float]]] = []  # (time, {ch/in: flowing})
        self.rss: list[tuple[float, int, float, dict[int, float]]] = []  # (t, gen, sup, pid: MB)
        self.generation = 0
        self._halt = threading.Event()
        self._daemon_lock = threading.Lock()

    # --- set-up ---

    def start(self) -> None:
        self.clips = clips()
        self.spans: dict[str, dict[str, Span]] = {
            f"fault{k}": shifted(k) for k in range(FAULT_CHANNELS)
        }
        self.spans["fo_primary"] = {"black": FO_BLACK}
        self.offsets = {
            name: media_to_send_s(self.clips[name], spans["black"].start_s)
            for name, spans in self.spans.items()
        }
        self.broker = Mosquitto(self.out / "mosquitto")
        with self.broker.config_path.open("a") as conf:
            conf.write("autosave_interval 1\n")
        self.broker.start()
        self.path = BrokerPath(self.broker.port)
        self.path.start()
        self.sub = StampedSubscriber(
            self.broker.port, f"{PREFIX}/#", client_id="soak-subscriber", clean_start=False
        )
        self.channels: list[SoakChannel] = [
            SoakChannel(f"ch{k}", self.clips[f"fault{k}"]) for k in range(FAULT_CHANNELS)
        ]
        self.fo = FailoverSoakChannel("fo", self.clips["fo_primary"])
        # feed index -> (channel, input, clip name, offset in the player): a few ms apart, so
        # that their datagrams do not leave in bursts
        self.feeds: list[tuple[str, str, str, float]] = [
            (c.name, "primary", f"fault{k}", k * 0.013) for k, c in enumerate(self.channels)
        ]
        self.feeds += [("fo", "primary", "fo_primary", 0.11), ("fo", "backup", "clean", 0.12)]
        self.switch_log = self.out / "switches.txt"
        self.agent = AgentProcess(
            self.out / "agent",
            self.broker.port,
            f"""\
  - name: fo
    inputs: {{primary: "udp://127.0.0.1:{self.fo.port}",
              backup: "udp://127.0.0.1:{self.fo.backup_port}"}}
    action: {{script: {{path: /bin/sh, args: {flow(["-c", f"{SWITCH_SCRIPT}{self.switch_log}"])}}}}}
""",
            agent_id="soak-agent",
        )
        self.agent.config.write_text(
            self.agent.config.read_text().replace("site: test", f"site: {SITE}")
        )
        self.agent.start()
        self.daemon = BenchDaemon(
            self.out / "daemon",
            [*self.channels, self.fo],  # type: ignore[list-item]
            broker_url=f"mqtt://127.0.0.1:{self.path.port}",
            site=SITE,
        )
        self.start_daemon()
        self.daemon.wait_listening(
            [c.port for c in self.channels] + [self.fo.port, self.fo.backup_port], timeout_s=90
        )
        self.ports = [c.port for c in self.channels] + [self.fo.port, self.fo.backup_port]
        self.player = PlayerProcess(
            [
                Feed(self.clips[name], port, offset)
                for (_, _, name, offset), port in zip(self.feeds, self.ports, strict=True)
            ]
        ).start()
        self.started_at = time.time()
        self.sampler = threading.Thread(target=self._sample, name="sampler", daemon=True)
        self.sampler.start()

    def start_daemon(self) -> None:
        with self._daemon_lock:
            self.daemon.start()
            self.generation += 1

    # --- sampling ---

    def _sample(self) -> None:
        next_rss = 0.0
        while not self._halt.wait(SAMPLE_S):
            now = time.time()
            try:
                metrics = self.daemon.metrics()
            except OSError:
                continue
            flowing = {
                f"{labels['channel']}/{labels['input']}": value
                for labels, value in metrics.get("streamqc_input_flowing", [])
            }
            self.samples.append((now, flowing))
            if now >= next_rss:
                next_rss = now + RSS_EVERY_S
                with self._daemon_lock:
                    process, generation = self.daemon.process, self.generation
                try:
                    pids = self.daemon.worker_pids()
                except (OSError, ValueError, KeyError):
                    continue
                if process is None:
                    continue
                sup = rss_mb(process.pid)
                workers = {pid: rss_mb(pid) for pid in pids}
                if sup is not None:
                    alive = {pid: mb for pid, mb in workers.items() if mb is not None}
                    self.rss.append((now, generation, sup, alive))

    # --- chaos ---

    def run_chaos(self) -> list[Action]:
        actions = schedule(self.seed, self.total_s, len(self.feeds))
        self.t0 = time.time()
        self.chaos_start = self.t0
        for action in actions:
            wait = self.t0 + action.at_s - time.time()
            if wait > 0:
                time.sleep(wait)
            try:
                getattr(self, f"do_{action.kind}")(action)
            except Exception as error:  # noqa: BLE001 - an action that could not run is reported
                action.note = f"failed: {type(error).__name__}: {error}"
            self.say(
                f"{time.time() - self.t0:7.1f} s  {action.kind:<11} {action.how:<5} "
                f"down {action.down_s:5.1f} s  {action.note}"
            )
        remaining = self.t0 + self.total_s - time.time()
        if remaining > 0:
            time.sleep(remaining)
        return actions

    def inputs(self) -> list[str]:
        return [f"{c}/{i}" for c, i, _, _ in self.feeds]

    def do_broker_kill(self, action: Action) -> None:
        action.started = time.time()
        self.broker.kill()
        time.sleep(action.down_s)
        self.broker.start()
        action.restored = time.time()

    def do_path_cut(self, action: Action) -> None:
        action.started = time.time()
        self.path.cut(action.how)
        time.sleep(action.down_s)
        self.path.restore()
        action.restored = time.time()

    def do_worker_kill(self, action: Action) -> None:
        health = self.daemon.health()
        workers = [w for w in health["workers"] if w["pid"] is not None]
        worker = workers[action.target % len(workers)]
        action.affected = list(worker["inputs"])
        action.note = f"worker {worker['index']} pid {worker['pid']}"
        action.started = time.time()
        os.kill(worker["pid"], signal.SIGKILL)
        action.restored = action.started

    def do_feed_stop(self, action: Action) -> None:
        channel, input_name, _, _ = self.feeds[action.target]
        action.affected = [f"{channel}/{input_name}"]
        action.note = action.affected[0]
        action.started = time.time()
        self.player.mute(action.target)
        time.sleep(action.down_s)
        self.player.mute(action.target, muted=False)
        action.restored = time.time()

    def do_reload(self, action: Action) -> None:
        channel = self.channels[action.target]
        channel.watchdog_s = 11 if channel.watchdog_s == 10 else 10
        self.daemon.write_config([*self.channels, self.fo])  # type: ignore[list-item]
        action.affected = [f"{channel.name}/primary"]
        action.note = f"{channel.name} watchdog {channel.watchdog_s}s"
        action.started = time.time()
        self.daemon.signal(signal.SIGHUP)
        action.restored = action.started

    def do_daemon_kill(self, action: Action) -> None:
        pids: list[int] = []
        with contextlib.suppress(OSError, ValueError, KeyError):
            pids = self.daemon.worker_pids()
        action.affected = self.inputs()
        action.started = time.time()
        assert self.daemon.process is not None
        self.daemon.process.kill()
        self.daemon.process.wait()
        deadline = time.monotonic() + 10
        for pid in pids:  # a worker ends by itself when its pipe closes; make sure
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        time.sleep(action.down_s)
        self.start_daemon()
        action.restored = time.time()
        action.note = f"{len(pids)} workers ended with it"

    # --- the end ---

    def finish(self) -> None:
        """Let the queue drain, stop everything cleanly, keep what was recorded."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if self.daemon.health().get("mqtt_queued") == 0:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.5)
        time.sleep(2.0)
        self.end = time.time()
        self._halt.set()
        self.sampler.join(timeout=10)
        self.player_stats = self.player.stop()
        self.daemon.stop()
        self.agent.close()
        time.sleep(1.0)
        self.sub.close()
        self.path.close()
        self.broker.stop()

    def record(self) -> Record:
        messages = [(t, m) for t, m in self.sub.stamped_snapshot() if m.payload[:2] != b"\xff\xd8"]
        switches = []
        if self.switch_log.exists():
            switches = [line.split() for line in self.switch_log.read_text().splitlines()]
        return Record(
            seed=self.seed,
            log_lines=self.daemon.log_lines(),
            messages=messages,
            start_wall=self.player.start_wall,
            periods=[f.period_s for f in self.player.feeds],
            feeds=self.feeds,
            spans=self.spans,
            offsets=self.offsets,
            inputs=self.inputs(),
            t0=self.t0,
            chaos_start=self.chaos_start,
            started_at=self.started_at,
            end=self.end,
            samples=self.samples,
            rss=self.rss,
            switches=[w for w in switches if w],
            player_stats=self.player_stats,
        )

    def abort(self) -> None:
        self._halt.set()
        for stop in (
            lambda: self.player.stop(),
            lambda: self.daemon.stop(),
            lambda: self.agent.process and self.agent.process.kill(),
            lambda: self.sub.close(),
            lambda: self.path.close(),
            lambda: self.broker.stop(),
        ):
            with contextlib.suppress(Exception):  # tearing down whatever got started
                stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as error:
        return error.errno == errno.EPERM
    try:  # a zombie is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# --- checking --------------------------------------------------------------------------------


@dataclass
class Record:
    """What a run left to check, in plain data (pickled beside the results, so a run's
    checks can be run again: ``--recheck DIR``)."""

    seed: int
    log_lines: list[dict[str, Any]]
    messages: list[tuple[float, Received]]  # every message but thumbnails, with arrival time
    start_wall: float  # the player's time zero
    periods: list[float]  # each feed's loop
    feeds: list[tuple[str, str, str, float]]
    spans: dict[str, dict[str, Span]]
    offsets: dict[str, float]
    inputs: list[str]
    t0: float
    chaos_start: float
    started_at: float
    end: float
    samples: list[tuple[float, dict[str, float]]]
    rss: list[tuple[float, int, float, dict[int, float]]]
    switches: list[list[str]]
    player_stats: dict[str, Any]


def fault_windows(rec: Record) -> list[dict[str, Any]]:
    """Every injected fault: channel/input, alarm, and its span on the wall clock."""
    start = rec.start_wall
    windows = []
    for k, (channel, input_name, name, offset) in enumerate(rec.feeds):
        if name not in rec.spans:
            continue
        spans = rec.spans[name]
        shift = rec.offsets[name]
        period = rec.periods[k]
        loop = 0
        while True:
            base = start + offset + loop * period + shift
            if base > rec.end:
                break
            for alarm, span in spans.items():
                windows.append(
                    {
                        "input": f"{channel}/{input_name}",
                        "alarm": alarm,
                        "on": base + span.start_s,
                        "off": base + span.end_s,
                    }
                )
            loop += 1
    return windows


def flowing_back(
    samples: list[tuple[float, dict[str, float]]], key: str, after: float, until: float
) -> float | None:
    """The first sampled time in [after, until] at which ``key`` was flowing."""
    for t, values in samples:
        if after <= t <= until and values.get(key) == 1.0:
            return t
    return None


def slope_per_h(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares slope (per hour) and its standard error."""
    ts = [t for t, _ in points]
    ys = [y for _, y in points]
    mt, my = statistics.fmean(ts), statistics.fmean(ys)
    sxx = sum((t - mt) ** 2 for t in ts)
    if sxx == 0 or len(points) < 3:
        return 0.0, float("inf")
    b = sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True)) / sxx
    a = my - b * mt
    residual = sum((y - a - b * t) ** 2 for t, y in zip(ts, ys, strict=True))
    se = (residual / (len(points) - 2) / sxx) ** 0.5
    return b * 3600, se * 3600


def distribution(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "min": None, "median": None, "p90": None, "max": None}
    ordered = sorted(values)
    return {
        "n": len(values),
        "min": round(ordered[0], 3),
        "median": round(statistics.median(ordered), 3),
        "p90": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 3),
        "max": round(ordered[-1], 3),
    }


def check(rec: Record, actions: list[Action]) -> dict[str, Any]:
    lines = rec.log_lines
    published: list[dict[str, Any]] = [
        {**line, "t": iso_to_wall(line["timestamp"])}
        for line in lines
        if line.get("event") in ("alarm raised", "alarm cleared") and "id" in line
    ]
    for p in published:
        p["state"] = p["event"].split()[1]
    stamped = [(t, m) for t, m in rec.messages if m.topic.endswith("/alarms")]
    arrivals: list[tuple[float, dict[str, Any]]] = [(t, json.loads(m.payload)) for t, m in stamped]
    first_arrival: dict[tuple[str, str], float] = {}
    copies: dict[tuple[str, str], int] = {}
    events: dict[tuple[str, str], dict[str, Any]] = {}
    for t, e in arrivals:
        key = (e["id"], e["state"])
        copies[key] = copies.get(key, 0) + 1
        if key not in first_arrival:
            first_arrival[key] = t
            events[key] = e
    published_keys = [(p["id"], p["state"]) for p in published]
    lost = sorted({k for k in published_keys if k not in first_arrival})
    unlogged = sorted(set(first_arrival) - set(published_keys))  # e.g. a kill before the log line
    duplicates = sum(n - 1 for n in copies.values())

    # order per channel: first arrivals in publishing order
    order_violations = []
    by_channel: dict[str, list[tuple[str, str]]] = {}
    for p in published:
        key = (p["id"], p["state"])
        if key in first_arrival and key not in by_channel.get(p["channel"], []):
            by_channel.setdefault(p["channel"], []).append(key)
    for channel, keys in by_channel.items():
        times = [first_arrival[k] for k in keys]
        for a, b, ta, tb in zip(keys, keys[1:], times, times[1:], strict=False):
            if tb < ta:
                order_violations.append({"channel": channel, "before": a, "after": b})
    for (event_id, state), t in first_arrival.items():
        raised_at = first_arrival.get((event_id, "raised"))
        if state == "cleared" and raised_at is not None and raised_at > t:
            order_violations.append({"id": event_id, "cleared_before_raised": True})

    # gaps: when an input was not being watched
    gaps: dict[str, list[tuple[float, float]]] = {}
    stuck = []
    recover_s: dict[str, list[float]] = {}
    for action in actions:
        if action.started is None or action.restored is None:
            continue
        affected = action.affected
        if action.kind in ("broker_kill", "path_cut"):
            affected = []
        # every input is checked for flowing after every action (a stuck channel shows
        # wherever it happens); the affected ones were not watched until then
        for key in rec.inputs:
            back = flowing_back(rec.samples, key, action.restored + 2.0,
                                action.restored + STUCK_BOUND_S)  # fmt: skip
            if back is None:
                stuck.append({"input": key, "after": action.kind, "at_s": action.at_s})
            elif key in affected:
                recover_s.setdefault(action.kind, []).append(back - action.restored)
            if key in affected:
                end = back if back is not None else action.restored + STUCK_BOUND_S
                end = max(end, action.restored + 5.0)
                gaps.setdefault(key, []).append((action.started, end))
    last_t, last = rec.samples[-1] if rec.samples else (0.0, {})
    not_flowing_at_end = [k for k in rec.inputs if last.get(k) != 1.0]

    # injected faults
    windows = fault_windows(rec)
    horizon = rec.end - 4.0
    by_input_alarm: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for key, e in events.items():
        if key[1] != "raised":
            continue
        by_input_alarm.setdefault((f"{e['channel']}/{e['input']}", e["alarm"]), []).append(e)
    matched_ids: set[str] = set()
    verdicts = {"expected": 0, "ok": 0, "lost": 0, "split": 0, "not_cleared": 0,
                "in_gap": 0, "in_gap_raised": 0, "in_gap_missed": 0, "late_clear": 0}  # fmt: skip
    problems = []
    for w in windows:
        candidates = [
            e
            for e in by_input_alarm.get((w["input"], w["alarm"]), [])
            if w["on"] + 0.5 <= iso_to_wall(e["wallclock"]) <= w["off"] + 3.0
        ]
        ids = [e["id"] for e in candidates]
        matched_ids.update(ids)
        if w["on"] < rec.started_at + 8.0 or w["off"] + CLEAR_AFTER_S + 2.5 > horizon:
            continue  # before the daemon could see it, or not over when the run ended
        lo, hi = w["on"] - 1.0, w["off"] + CLEAR_AFTER_S + 2.0
        in_gap = any(a < hi and b > lo for a, b in gaps.get(w["input"], []))
        verdicts["expected"] += 1
        if in_gap:
            verdicts["in_gap"] += 1
            verdicts["in_gap_raised" if ids else "in_gap_missed"] += 1
        cleared = [i for i in ids if (i, "cleared") in first_arrival]
        where = {**w, "on_s": round(w["on"] - rec.t0, 2), "off_s": round(w["off"] - rec.t0, 2)}
        del where["on"], where["off"]
        if not ids:
            if not in_gap:
                verdicts["lost"] += 1
                problems.append({"problem": "fault never raised", **where})
            continue
        if len(ids) > 1:
            verdicts["split"] += 1
            problems.append({"problem": "fault raised under several ids", "ids": ids, **where})
        if len(cleared) < len(ids):
            verdicts["not_cleared"] += 1
            problems.append({"problem": "raised, never cleared", "ids": ids, **where})
            continue
        clear_t = max(iso_to_wall(events[(i, "cleared")]["wallclock"]) for i in ids)
        if clear_t > w["off"] + CLEAR_AFTER_S + 3.0:
            verdicts["late_clear"] += 1
            if not in_gap:
                problems.append({"problem": "cleared late", "late_s": clear_t - w["off"], **where})
        if len(ids) == 1:
            verdicts["ok"] += 1

    # everything else that was raised
    other: dict[str, int] = {}
    unexpected = []
    unpaired = []
    for (event_id, state), e in events.items():
        if state != "raised":
            continue
        if (event_id, "cleared") not in first_arrival and iso_to_wall(e["wallclock"]) < horizon:
            unpaired.append({"alarm": e["alarm"], "input": f"{e['channel']}/{e['input']}",
                             "at_s": round(iso_to_wall(e["wallclock"]) - rec.t0, 2)})  # fmt: skip
        if event_id in matched_ids:
            continue
        other[e["alarm"]] = other.get(e["alarm"], 0) + 1
        t = iso_to_wall(e["wallclock"])
        key = f"{e['channel']}/{e['input']}"
        explained = any(a - 1.0 <= t <= b + 15.0 for a, b in gaps.get(key, []))
        if e["alarm"] in FAULTS and e["input"] != "failover" and not explained:
            unexpected.append({"alarm": e["alarm"], "input": key, "at_s": round(t - rec.t0, 2),
                               "start": e["start"]})  # fmt: skip

    # failover
    failover = check_failover(rec, events, first_arrival)

    # recovery after broker outages
    recovery = []
    for action in actions:
        if action.kind not in ("broker_kill", "path_cut") or action.restored is None:
            continue
        assert action.started is not None
        queued = [
            first_arrival[(p["id"], p["state"])]
            for p in published
            if p["t"] < action.restored
            and (p["id"], p["state"]) in first_arrival
            and first_arrival[(p["id"], p["state"])] > action.restored
        ]
        status = [
            t
            for t, m in rec.messages
            if t > action.restored and m.topic == f"{PREFIX}/daemon/status" and not m.retain
        ]
        recovery.append(
            {
                "kind": action.kind,
                "how": action.how,
                "at_s": action.at_s,
                "down_s": action.down_s,
                "queued_events": len(queued),
                "first_queued_s": round(min(queued) - action.restored, 3) if queued else None,
                "daemon_status_s": round(min(status) - action.restored, 3) if status else None,
            }
        )
    first_queued = [r["first_queued_s"] for r in recovery if r["first_queued_s"] is not None]
    over_bound = [r for r in recovery if (r["first_queued_s"] or 0) > RECOVERY_BOUND_S]

    # memory: the supervisor over each of its lives, each worker process over its own
    series: dict[str, list[tuple[float, float]]] = {}
    for t, generation, sup, workers in rec.rss:
        series.setdefault(f"supervisor#{generation}", []).append((t, sup))
        for pid, mb in workers.items():
            series.setdefault(f"worker pid {pid}", []).append((t, mb))
    rss_segments = []
    for name, points in series.items():
        span = points[-1][0] - points[0][0] if points else 0.0
        kept = [p for p in points if p[0] >= points[0][0] + min(120.0, span / 4)]
        if len(kept) < 3:
            continue  # start-up growth (imports, caches, JIT) is not a leak
        slope, se = slope_per_h(kept)
        rss_segments.append(
            {
                "process": name,
                "minutes": round(span / 60, 1),
                "mb": [round(kept[0][1], 1), round(kept[-1][1], 1)],
                "mb_per_h": round(slope, 2),
                "mb_per_h_se": round(se, 2),
            }
        )
    long = [s for s in rss_segments if s["minutes"] * 60 >= RSS_MIN_SEGMENT_S]
    rss_flat = all(s["mb_per_h"] <= max(RSS_FLAT_MB_PER_H, 3 * s["mb_per_h_se"]) for s in long)

    kinds: dict[str, int] = {}
    for action in actions:
        kinds[action.kind] = kinds.get(action.kind, 0) + 1
    failed_actions = [asdict(a) for a in actions if a.note.startswith("failed")]
    return {
        "seed": rec.seed,
        "minutes": round((rec.end - rec.chaos_start) / 60, 2),
        "channels": FAULT_CHANNELS + 1,
        "feeds": len(rec.feeds),
        "events_published": len(set(published_keys)),
        "events_received": len(first_arrival),
        "lost": len(lost),
        "lost_events": [list(k) for k in lost][:50],
        "received_not_logged": len(unlogged),
        "duplicates": duplicates,
        "order_violations": order_violations[:50],
        "faults": verdicts,
        "fault_problems": problems[:100],
        "other_raised": other,
        "unexpected_raises": unexpected[:100],
        "raised_never_cleared": unpaired[:100],
        "stuck": stuck[:100],
        "not_flowing_at_end": not_flowing_at_end,
        "back_flowing_s": {k: distribution(v) for k, v in recover_s.items()},
        "failover": failover,
        "recovery": recovery,
        "recovery_first_queued_s": distribution(first_queued),
        "recovery_over_bound": over_bound,
        "rss_segments": rss_segments,
        "rss_flat": rss_flat,
        "actions": kinds,
        "actions_total": len(actions),
        "actions_failed": failed_actions,
        "action_log": [
            {k: v for k, v in asdict(a).items() if k not in ("affected",)}
            | {"at_s": round((a.started or 0) - rec.t0, 2)}
            for a in actions
        ],
        "player": rec.player_stats,
    }


def check_failover(
    rec: Record,
    events: dict[tuple[str, str], dict[str, Any]],
    first_arrival: dict[tuple[str, str], float],
) -> dict[str, Any]:
    from failover.protocol import Ack, Command

    messages = rec.messages
    commands = {}
    acks: list[Ack] = []
    for _, m in messages:
        if m.topic == f"{PREFIX}/fo/failover/command":
            c = Command.from_json(m.payload)
            commands[c.command_id] = c
        elif m.topic == f"{PREFIX}/fo/failover/ack":
            acks.append(Ack.from_json(m.payload))
    done: dict[str, int] = {}
    for a in acks:
        if a.status == "done":
            done[a.command_id] = done.get(a.command_id, 0) + 1
    rejected = [
        {"command_id": a.command_id, "detail": a.detail} for a in acks if a.status == "rejected"
    ]
    switches = rec.switches
    black = sorted(
        (
            iso_to_wall(e["wallclock"]),
            iso_to_wall(events[(e["id"], "cleared")]["wallclock"])
            if (e["id"], "cleared") in events
            else float("inf"),
        )
        for (i, s), e in events.items()
        if s == "raised" and e["channel"] == "fo" and e["input"] == "primary"
        and e["alarm"] == "black"
    )  # fmt: skip
    not_allowed = []
    for command_id, command in commands.items():
        t = iso_to_wall(command.issued_at)
        active = any(raised - 0.5 <= t <= cleared + 0.5 for raised, cleared in black)
        if command.to == "backup" and not active:
            not_allowed.append({"command": command_id, "to": "backup", "why": "no black on primary",
                                "at_s": round(t - rec.t0, 2)})  # fmt: skip
        if command.to == "primary":
            last_clear = max((c for _, c in black if c <= t + 0.5), default=None)
            if active or (last_clear is not None and t - last_clear < FO_ERROR_CLEAR_S - 0.5):
                not_allowed.append({"command": command_id, "to": "primary",
                                    "why": "primary not clear for the error clear time",
                                    "at_s": round(t - rec.t0, 2)})  # fmt: skip
    ran_twice = [c for c, n in done.items() if n > 1]
    # the script runs once per switch it carries out; every run must answer a command
    unexplained = max(0, len(switches) - len(done))
    return {
        "commands": len(commands),
        "switches_run": len(switches),
        "done": len(done),
        "rejected": rejected,
        "ran_twice": ran_twice,
        "switches_without_command": unexplained,
        "not_allowed": not_allowed,
        "ok": not ran_twice and not unexplained and not not_allowed,
    }


def verdict(result: dict[str, Any], *, long_run: bool) -> list[str]:
    """The invariants that failed (empty: all held)."""
    failed = []
    if result["lost"]:
        failed.append(f"{result['lost']} events lost")
    if result["faults"]["lost"]:
        failed.append(f"{result['faults']['lost']} injected faults never raised")
    if result["faults"]["not_cleared"]:
        failed.append(f"{result['faults']['not_cleared']} faults raised but never cleared")
    if result["faults"]["split"]:
        failed.append(f"{result['faults']['split']} faults raised under several ids")
    if result["order_violations"]:
        failed.append(f"{len(result['order_violations'])} events out of order")
    if result["stuck"] or result["not_flowing_at_end"]:
        failed.append(f"stuck inputs: {result['stuck'][:5]} {result['not_flowing_at_end']}")
    if result["raised_never_cleared"]:
        failed.append(f"alarms never cleared: {result['raised_never_cleared'][:5]}")
    if result["unexpected_raises"]:
        failed.append(f"unexpected raises: {result['unexpected_raises'][:5]}")
    if not result["failover"]["ok"]:
        failed.append(f"failover: {result['failover']}")
    if result["recovery_over_bound"]:
        failed.append(f"recovery over {RECOVERY_BOUND_S} s: {result['recovery_over_bound']}")
    if result["actions_failed"]:
        failed.append(f"actions that could not run: {result['actions_failed'][:3]}")
    if long_run and not result["rss_flat"]:
        growing = [
            s
            for s in result["rss_segments"]
            if s["minutes"] * 60 >= RSS_MIN_SEGMENT_S
            and s["mb_per_h"] > max(RSS_FLAT_MB_PER_H, 3 * s["mb_per_h_se"])
        ]
        failed.append(f"RSS grows in processes alive >= 10 min: {growing}")
    return failed


def table(result: dict[str, Any]) -> str:
    f = result["faults"]
    r = result["recovery_first_queued_s"]
    rows = [
        ("minutes of chaos", result["minutes"]),
        ("channels / feeds", f"{result['channels']} / {result['feeds']}"),
        ("chaos actions", f"{result['actions_total']} {result['actions']}"),
        ("events published / received",
         f"{result['events_published']} / {result['events_received']}"),
        ("events lost", result["lost"]),
        ("duplicates (redelivered copies)", result["duplicates"]),
        ("order violations", len(result["order_violations"])),
        ("injected faults checked", f["expected"]),
        ("  raised+cleared once", f["ok"]),
        ("  never raised (outside any gap)", f["lost"]),
        ("  overlapping a watch gap: raised / missed",
         f"{f['in_gap_raised']} / {f['in_gap_missed']}"),
        ("  split / not cleared / late clear",
         f"{f['split']} / {f['not_cleared']} / {f['late_clear']}"),
        ("other alarms raised", result["other_raised"]),
        ("unexpected raises", len(result["unexpected_raises"])),
        ("stuck inputs", len(result["stuck"]) + len(result["not_flowing_at_end"])),
        ("failover commands / switches run / rejected",
         f"{result['failover']['commands']} / {result['failover']['switches_run']}"
         f" / {len(result['failover']['rejected'])}"),
        ("failover against policy", len(result["failover"]["not_allowed"])),
        ("recovery: first queued event after broker back (s)",
         f"n={r['n']} min={r['min']} median={r['median']} p90={r['p90']} max={r['max']}"),
        ("RSS slope, MB/h (processes alive >= 10 min)",
         [(s["process"], s["minutes"], s["mb_per_h"]) for s in result["rss_segments"]
          if s["minutes"] >= RSS_MIN_SEGMENT_S / 60]),
    ]  # fmt: skip
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def run(minutes: float, seed: int, out: Path, log: Any = print) -> dict[str, Any]:
    soak = Soak(out, minutes * 60, seed, log)
    try:
        soak.start()
        log(f"soak: {len(soak.feeds)} feeds, broker {soak.broker.port}, path {soak.path.port}")
        actions = soak.run_chaos()
        soak.finish()
    except BaseException:
        soak.abort()
        raise
    record = soak.record()
    with (out / "record.pickle").open("wb") as f:
        pickle.dump((record, actions), f)
    return checked(record, actions, out)


def checked(record: Record, actions: list[Action], out: Path) -> dict[str, Any]:
    result = check(record, actions)
    result["invariants_failed"] = verdict(result, long_run=result["minutes"] >= 20)
    (out / "soak.json").write_text(json.dumps(result, indent=2, default=str))
    (out / "summary.txt").write_text(table(result) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--recheck", action="store_true", help="check the record a run left in --out again"
    )
    args = parser.parse_args(argv)
    if args.recheck:
        with (args.out / "record.pickle").open("rb") as f:
            record, actions = pickle.load(f)  # noqa: S301 - our own file
        result = checked(record, actions, args.out)
    else:
        result = run(args.minutes, args.seed, args.out, log=lambda s: print(s, flush=True))
    print(table(result))
    failed = result["invariants_failed"]
    print("invariants: " + ("all held" if not failed else "FAILED:\n  " + "\n  ".join(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
