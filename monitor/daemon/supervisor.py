"""``streamqc run``: the control plane of the daemon.

One asyncio loop owns everything that is not decoding: worker processes (a pool sized to the
cores, channel inputs sharded across it), the alarm state of every channel input, MQTT, the
metrics endpoint, systemd notifications, signals.

- A worker that dies or stops sending heartbeats (or one of whose inputs stops ticking) is
  killed and restarted with backoff; its inputs resume with the alarms they had, so the NOC sees
  no spurious clear or second raise. Other workers never notice.
- SIGHUP reloads the configuration: added inputs start, removed ones stop with their alarms
  cleared, changed ones restart (carrying their alarms), untouched ones keep running. An
  invalid file is rejected in one log line and the running configuration stays.
- SIGTERM/SIGINT stop within ``STOP_TIMEOUT_S``: the workers end, the retained status says
  ``offline``, the broker connection is closed cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from monitor.alarms.engine import AlarmEvent, Inheritance, utc_now
from monitor.alarms.input_stats import InputStats
from monitor.checks.registry import refuse_unrunnable
from monitor.config import ChannelConfig, Config, ThumbnailConfig, host_port, load_config
from monitor.daemon.failover_link import FAILOVER_INPUT, FailoverLink
from monitor.daemon.messages import (
    ExitWorker,
    FromWorker,
    Heartbeat,
    StartUnit,
    StopUnit,
    UnitEvent,
    UnitInfo,
    UnitKey,
    UnitSpec,
    UnitStats,
    UnitStopped,
    UnitThumbnail,
    WorkerLog,
)
from monitor.daemon.sdnotify import Notifier
from monitor.daemon.worker import worker_main
from monitor.errors import ConfigError, StreamqcError
from monitor.logs import get_logger, log_record
from monitor.pipeline.live_session import live_kind
from monitor.sinks.broker import embedded_broker
from monitor.sinks.metrics import Metrics, MetricsServer
from monitor.sinks.mqtt import MqttSink
from monitor.sinks.mqtt_api import Topics, channel_status, daemon_status, input_state, to_json
from monitor.sinks.spool import Spool
from monitor.util.backoff import Backoff
from monitor.util.mqtt_connection import BrokerSettings

HEALTH_EVERY_S = 0.5
WORKER_SILENT_S = 10.0
"""A worker whose heartbeat is older than this is hung (or stopped): it is restarted."""
UNIT_STUCK_S = 30.0
"""An input whose control loop has not ticked for this long (beyond its open timeouts) is hung."""
WORKER_BACKOFF_FIRST_S = 1.0
WORKER_BACKOFF_MAX_S = 30.0
WORKER_STABLE_S = 60.0
"""A worker that has run this long without trouble starts its next backoff small again."""
STOP_TIMEOUT_S = 4.0
DEFAULT_INPUT = "primary"  # on air unless a channel's failover says otherwise


def check_runnable(config: Config) -> None:
    """Every input must be a live input the daemon can follow (files are for ``analyze``),
    and its picture tier must run the checks its channel writes."""
    refuse_unrunnable(config)
    for channel in config.channels:
        for name, source in channel.inputs.items():
            if live_kind(source.url) is None:
                raise ConfigError(
                    f"{config.source}: channel {channel.name}, input {name}: {source.url} is not "
                    "a live input (udp://, rtp://, srt:// or an HLS .m3u8 URL); analyse files "
                    "with streamqc analyze"
                )


def default_state_dir() -> Path:
    if os.environ.get("STATE_DIRECTORY"):  # systemd's StateDirectory=
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    return Path.home() / ".local" / "state" / "streamqc"


@dataclass
class Unit:
    """The supervisor's record of one channel input: where it runs and its active alarms."""

    spec: UnitSpec
    worker: int
    active: dict[str, AlarmEvent] = field(default_factory=dict)
    running: bool = False
    after_stop: str | None = None  # "restart" | "remove": what to do once the worker stopped it
    next_spec: UnitSpec | None = None
    thumbnail_rendition: str | None = None
    tick_age_s: float = 0.0
    facts: dict[str, Any] = field(default_factory=dict)
    """What its checks say beyond alarms, for the channel status (``status_facts``)."""

    @property
    def key(self) -> UnitKey:
        return self.spec.key

    def carried(self) -> UnitSpec:
        spec = self.next_spec or self.spec
        return replace(spec, active=tuple(e.to_dict() for e in self.active.values()))


@dataclass
class Worker:
    index: int
    process: BaseProcess | None = None
    conn: Connection | None = None
    last_heartbeat_s: float = 0.0
    started_s: float = 0.0
    restarts: int = 0
    backoff: Backoff = field(
        default_factory=lambda: Backoff(WORKER_BACKOFF_FIRST_S, WORKER_BACKOFF_MAX_S)
    )
    restart_at_s: float | None = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()


class Supervisor:
    def __init__(self, config_path: str | Path, config: Config, notifier: Notifier) -> None:
        check_runnable(config)
        self.config_path = str(config_path)
        self.config = config
        self.notifier = notifier
        self.log = get_logger()
        self.hostname = socket.gethostname()
        self.topics = Topics(config.daemon.mqtt.prefix or f"streamqc/{config.site}")
        self.units: dict[UnitKey, Unit] = {}
        self.workers: list[Worker] = []
        self.metrics = Metrics()
        self.sink: MqttSink | None = None
        self.started = utc_now()
        self._stop = asyncio.Event()
        self._ctx = multiprocessing.get_context("spawn")
        self._last_status: dict[str, bytes] = {}
        self._notify_status = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker_restarts = 0
        self._alarm_file: Path | None = None
        self.failover: dict[str, FailoverLink] = {}

    # --- running --------------------------------------------------------------------------

    async def run(self) -> int:
        self._loop = asyncio.get_running_loop()
        # Workers first: each takes ~0.8 s to import and load the kernels, time in which the
        # broker, the queue and the metrics get ready (a worker whose pipe closes exits).
        self._start_workers()
        daemon = self.config.daemon
        state_dir = Path(daemon.state_dir) if daemon.state_dir else default_state_dir()
        self._alarm_file = state_dir / f"alarms-{self.config.site}.json"
        spool = Spool(
            state_dir / f"queue-{self.config.site}.sqlite",
            daemon.mqtt.queue_max_messages,
            warn=lambda message: self.log.warning(message),
        )
        async with contextlib.AsyncExitStack() as stack:
            embedded = None
            if daemon.mqtt.url is None:
                host, port = host_port(daemon.mqtt.embedded_listen)
                embedded = await stack.enter_async_context(embedded_broker(host, port))
                self.log.info("embedded MQTT broker", listen=f"{embedded[0]}:{embedded[1]}")
            settings = BrokerSettings.from_config(
                daemon.mqtt, f"streamqc-{self.config.site}-{self.hostname}", embedded
            )
            offline = to_json(self._daemon_status("offline", reason="connection lost"))
            self.sink = MqttSink(
                settings,
                spool,
                will_topic=self.topics.daemon_status,
                will_payload=offline,
                log=self._sink_log,
            )
            server = None
            if daemon.metrics.enabled:
                server = MetricsServer(self.metrics, daemon.metrics.listen, self.health)
                server.start()
                stack.callback(server.stop)
                self.log.info("metrics", listen="{}:{}".format(*server.address))
            self.sink.set_retained(
                self.topics.daemon_status, to_json(self._daemon_status("online"))
            )
            sink_task = asyncio.create_task(self.sink.run(), name="mqtt")
            self._install_signals()
            remembered = self._load_alarms()
            for unit in self._plan(self.config):
                entry = remembered.pop(unit.key, None)
                if entry is not None:  # alarms open when the daemon last stopped carry on
                    unit.spec = replace(unit.spec, origin_wall_s=entry[0])
                    unit.active = {e.id: e for e in entry[1]}
                self._start_unit(unit)
            for key, (origin, active) in remembered.items():
                # Inputs gone from the configuration while the daemon was down.
                spec = UnitSpec(ChannelConfig(name=key[0]), key[1], origin, daemon.thumbnails)
                self._clear_removed(Unit(spec, worker=-1, active={e.id: e for e in active}))
            self._sync_failover(self.config)
            for channel in self.config.channels:
                self._publish_status(channel.name)
            health = asyncio.create_task(self._health_loop(), name="health")
            self.notifier.ready(self._summary())
            self.log.info(
                "started",
                site=self.config.site,
                channels=len(self.config.channels),
                workers=len(self.workers),
                config=self.config_path,
            )
            await self._stop.wait()
            self.notifier.stopping("stopping")
            self.log.info("stopping")
            health.cancel()
            await self._stop_workers()
            self._save_alarms()
            final: dict[str, bytes | None] = {
                self.topics.status(name): to_json(self._status_payload(name, offline=True))
                for name in self._channel_names()
            }
            final[self.topics.daemon_status] = to_json(
                self._daemon_status("offline", reason="stopped")
            )
            await self.sink.close(final, timeout_s=STOP_TIMEOUT_S)
            sink_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sink_task
            spool.close()
        self.log.info("stopped")
        return 0

    def stop(self) -> None:
        self._stop.set()

    def _install_signals(self) -> None:
        assert self._loop is not None
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(sig, self.stop)
        self._loop.add_signal_handler(signal.SIGHUP, self.reload)

    # --- units and workers ----------------------------------------------------------------

    def _plan(self, config: Config, origin: dict[UnitKey, float] | None = None) -> list[Unit]:
        thumbnails: ThumbnailConfig = config.daemon.thumbnails
        now = time.time()
        units = []
        for channel in config.channels:
            for name in channel.inputs:
                key = (channel.name, name)
                start = (origin or {}).get(key, now)
                spec = UnitSpec(channel, name, start, thumbnails)
                units.append(Unit(spec, worker=-1))
        return units

    def _least_loaded(self) -> int:
        load = {w.index: 0 for w in self.workers}
        for unit in self.units.values():
            if unit.worker in load:
                load[unit.worker] += 1
        return min(load, key=lambda index: (load[index], index))

    def _start_unit(self, unit: Unit) -> None:
        if unit.worker < 0:
            unit.worker = self._least_loaded()
        self.units[unit.key] = unit
        worker = self.workers[unit.worker]
        if worker.conn is not None and worker.alive:
            worker.conn.send(StartUnit(unit.carried()))
            unit.running = True
        unit.next_spec = None

    def _stop_unit(self, unit: Unit, then: str) -> None:
        unit.after_stop = then
        worker = self.workers[unit.worker]
        if worker.conn is not None and worker.alive and unit.running:
            worker.conn.send(StopUnit(unit.key))
        else:
            self._stopped(unit)

    def _stopped(self, unit: Unit) -> None:
        unit.running = False
        then, unit.after_stop = unit.after_stop, None
        if then == "restart":
            assert unit.next_spec is not None
            unit.spec = unit.carried()
            self._start_unit(unit)
        elif then == "remove":
            self.units.pop(unit.key, None)
            self._clear_removed(unit)
            self._publish_status(unit.key[0])  # the new status, or none when the channel is gone
            self._save_alarms()

    def _clear_removed(self, unit: Unit) -> None:
        """Clear the alarms of an input that is no longer configured."""
        end = time.time() - unit.spec.origin_wall_s
        gone = Inheritance(unit.active.values())
        gone.expire(end, lambda cleared: self._on_event(unit, cleared, None), "channel_removed")

    # --- failover -------------------------------------------------------------------------

    def _sync_failover(self, config: Config) -> None:
        """One FailoverLink per channel that has both of its failover inputs; a changed
        channel gets a fresh policy (the agent's retained state tells it what is on air)."""
        assert self.sink is not None
        wanted = {
            c.name: c
            for c in config.channels
            if {c.failover.primary, c.failover.backup} <= set(c.inputs)
        }
        for name, link in list(self.failover.items()):
            if name not in wanted or wanted[name] != link.config:
                link.clear_all()
                link.close()
                del self.failover[name]
        for name, channel in wanted.items():
            if name in self.failover:
                continue
            unit = self.units.get((name, channel.failover.primary))
            origin = unit.spec.origin_wall_s if unit else time.time()
            self.failover[name] = FailoverLink(
                channel,
                self.topics.prefix,
                self.sink,
                origin_wall_s=origin,
                on_alarm=self._on_failover_alarm,
                log=self.log,
            )

    # --- alarms that outlive the daemon ---------------------------------------------------

    def _load_alarms(self) -> dict[UnitKey, tuple[float, list[AlarmEvent]]]:
        """What ``_save_alarms`` left: each input's timeline origin and its open alarms."""
        path = self._alarm_file
        if path is None or not path.exists():
            return {}
        try:
            data = json.loads(path.read_text())
            return {
                (entry["channel"], entry["input"]): (
                    float(entry["origin_wall_s"]),
                    [AlarmEvent.from_dict(e) for e in entry["active"]],
                )
                for entry in data["inputs"]
            }
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.log.warning(
                "ignoring the saved alarm state", file=str(path), reason=f"{type(exc).__name__}"
            )
            return {}

    def _save_alarms(self) -> None:
        """Keep the open alarms on disk, so a restarted daemon resumes (or clears) them
        instead of leaving consoles with raises that never clear."""
        path = self._alarm_file
        if path is None:
            return
        inputs = [
            {
                "channel": unit.key[0],
                "input": unit.key[1],
                "origin_wall_s": unit.spec.origin_wall_s,
                "active": [e.to_dict() for e in unit.active.values()],
            }
            for unit in self.units.values()
        ]
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(".tmp")
            temporary.write_text(json.dumps({"version": 1, "inputs": inputs}))
            os.replace(temporary, path)
        except OSError as exc:
            self.log.error("cannot save the alarm state", file=str(path), reason=exc.strerror)

    def _workers_wanted(self) -> int:
        wanted = self.config.daemon.workers or os.cpu_count() or 1
        inputs = sum(len(c.inputs) for c in self.config.channels)
        return max(1, min(wanted, inputs))

    def _start_workers(self) -> None:
        for index in range(self._workers_wanted()):
            worker = Worker(index)
            self.workers.append(worker)
            self._spawn(worker)

    def _spawn(self, worker: Worker) -> None:
        assert self._loop is not None
        parent, child = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=worker_main,
            args=(child, worker.index),
            name=f"streamqc-worker-{worker.index}",
            daemon=True,
        )
        # SIG_IGN survives exec: a Ctrl-C meant for the supervisor must not reach a worker
        # still importing (it would print a traceback); the worker ignores SIGINT itself later.
        handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            process.start()
        finally:
            signal.signal(signal.SIGINT, handler)
        child.close()
        worker.process, worker.conn = process, parent
        worker.started_s = worker.last_heartbeat_s = time.monotonic()
        worker.restart_at_s = None
        self._loop.add_reader(parent.fileno(), self._readable, worker)
        for unit in self.units.values():
            if unit.worker == worker.index:
                unit.running = False
                if unit.after_stop is None:
                    self._start_unit(unit)
                else:
                    self._stopped(unit)

    def _kill(self, worker: Worker, why: str) -> None:
        """Take a failed worker down; it is respawned after its backoff."""
        assert self._loop is not None
        now = time.monotonic()
        if now - worker.started_s > WORKER_STABLE_S:
            worker.backoff.reset()
        delay = worker.backoff.next_s()
        names = sorted(f"{c}/{i}" for (c, i), u in self.units.items() if u.worker == worker.index)
        self.log.error(
            "worker failed: restarting it",
            worker=worker.index,
            reason=why,
            inputs=names,
            retry_in_s=round(delay, 1),
        )
        if worker.conn is not None:
            self._loop.remove_reader(worker.conn.fileno())
            worker.conn.close()
            worker.conn = None
        if worker.process is not None:
            with contextlib.suppress(Exception):
                worker.process.kill()
                worker.process.join(timeout=1.0)
        worker.restart_at_s = now + delay
        worker.restarts += 1
        self._worker_restarts += 1

    async def _stop_workers(self) -> None:
        for worker in self.workers:
            if worker.conn is not None and worker.alive:
                with contextlib.suppress(OSError):
                    worker.conn.send(ExitWorker())
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while any(w.alive for w in self.workers) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # their last events arrive meanwhile
        for worker in self.workers:
            if worker.conn is not None:
                assert self._loop is not None
                self._readable(worker)
                self._loop.remove_reader(worker.conn.fileno())
            if worker.alive:
                assert worker.process is not None
                worker.process.kill()

    # --- messages from workers ------------------------------------------------------------

    def _readable(self, worker: Worker) -> None:
        conn = worker.conn
        if conn is None:
            return
        try:
            while conn.poll():
                self._handle(worker, conn.recv())
        except (EOFError, OSError):
            if not self._stop.is_set() and worker.restart_at_s is None:
                code = worker.process.exitcode if worker.process else None
                self._kill(worker, f"exited (code {code})")
            elif worker.conn is not None:
                assert self._loop is not None
                self._loop.remove_reader(conn.fileno())

    def _handle(self, worker: Worker, message: FromWorker) -> None:
        match message:
            case Heartbeat(ages_s):
                worker.last_heartbeat_s = time.monotonic()
                for key, age_s in ages_s.items():
                    if key in self.units:
                        self.units[key].tick_age_s = age_s
            case WorkerLog(level, text, fields):
                log_record({"level": level, "event": text, **fields, **self._unit_fields(worker)})
            case UnitEvent(key, event, jpeg):
                if (unit := self.units.get(key)) is not None:
                    self._on_event(unit, AlarmEvent.from_dict(event), jpeg)
            case UnitInfo(key, event):
                if key in self.units:
                    self.sink_event(self.topics.events(key[0]), event)
            case UnitStats(key, stats):
                if (unit := self.units.get(key)) is not None:
                    for s in stats:
                        self.metrics.observe_input(s)
                    facts = status_facts(stats, unit.spec.origin_wall_s)
                    if facts != unit.facts:
                        unit.facts = facts
                        self._publish_status(key[0])
            case UnitThumbnail(key, rendition, jpeg):
                if (unit := self.units.get(key)) is not None:
                    self._on_thumbnail(unit, rendition, jpeg)
            case UnitStopped(key):
                if (unit := self.units.get(key)) is not None:
                    self._stopped(unit)

    def sink_event(self, topic: str, payload: dict[str, Any]) -> None:
        assert self.sink is not None
        self.sink.publish_event(topic, to_json(payload))

    def _on_thumbnail(self, unit: Unit, rendition: str | None, jpeg: bytes) -> None:
        if unit.thumbnail_rendition is None:
            unit.thumbnail_rendition = rendition
        on_air = unit.key[1] == self._on_air(unit.key[0])
        if on_air and rendition == unit.thumbnail_rendition:
            assert self.sink is not None
            self.sink.publish_transient(self.topics.thumbnail(unit.key[0]), jpeg, retain=True)

    def _unit_fields(self, worker: Worker) -> dict[str, Any]:
        return {"worker": worker.index}

    def _on_event(self, unit: Unit, event: AlarmEvent, jpeg: bytes | None) -> None:
        if event.state == "raised":
            unit.active[event.id] = event
        else:
            unit.active.pop(event.id, None)
        self._save_alarms()
        self._publish_alarm(event, jpeg, len(unit.active))
        link = self.failover.get(event.channel)
        if link is not None:
            link.alarm(event)

    def _on_failover_alarm(self, event: AlarmEvent) -> None:
        link = self.failover.get(event.channel)
        self._publish_alarm(event, None, len(link.alarms) if link else 0)

    def _publish_alarm(self, event: AlarmEvent, jpeg: bytes | None, active: int) -> None:
        assert self.sink is not None
        payload = event.to_dict()
        if jpeg is not None:
            payload["detail"]["thumbnail"] = self.topics.alarm_thumbnail(event.channel, event.id)
        self.sink.publish_event(self.topics.alarms(event.channel), to_json(payload))
        if jpeg is not None:
            self.sink.publish_event(self.topics.alarm_thumbnail(event.channel, event.id), jpeg)
        self.metrics.count_event(
            event.alarm, event.channel, event.input, event.severity, event.state
        )
        self.metrics.set_active_alarms(event.channel, event.input, active)
        log = self.log.warning if event.state == "raised" else self.log.info
        log(
            f"alarm {event.state}",
            alarm=event.alarm,
            channel=event.channel,
            input=event.input,
            rendition=event.rendition,
            severity=event.severity,
            start=round(event.start, 3),
            end=None if event.end is None else round(event.end, 3),
            id=event.id,
        )
        self._publish_status(event.channel)

    # --- status ---------------------------------------------------------------------------

    def _channel_names(self) -> list[str]:
        return sorted({key[0] for key in self.units})

    def _status_payload(self, channel: str, *, offline: bool = False) -> dict[str, Any]:
        inputs = {
            key[1]: list(u.active.values()) for key, u in self.units.items() if key[0] == channel
        }
        link = self.failover.get(channel)
        if link is not None:
            inputs[FAILOVER_INPUT] = list(link.alarms.values())
        facts = {key[1]: u.facts for key, u in self.units.items() if key[0] == channel}
        return channel_status(channel, self._on_air(channel), inputs, offline=offline, facts=facts)

    def _on_air(self, channel: str) -> str:
        link = self.failover.get(channel)
        return link.active_input if link is not None else DEFAULT_INPUT

    def _publish_status(self, channel: str) -> None:
        assert self.sink is not None
        if not any(key[0] == channel for key in self.units):  # removed: delete its status
            self._last_status.pop(channel, None)
            self.sink.set_retained(self.topics.status(channel), None)
            self.sink.set_retained(self.topics.thumbnail(channel), None)
            self.metrics.remove_channel(channel)
            return
        payload = self._status_payload(channel)
        self.metrics.set_channel_state(channel, payload["state"])
        comparable = to_json({**payload, "updated": None})
        if self._last_status.get(channel) == comparable:
            return
        self._last_status[channel] = comparable
        self.sink.set_retained(self.topics.status(channel), to_json(payload))

    def _daemon_status(self, state: str, **fields: Any) -> dict[str, Any]:
        return daemon_status(
            state,  # type: ignore[arg-type]
            site=self.config.site,
            host=self.hostname,
            pid=os.getpid(),
            started=self.started,
            channels=len(self.config.channels),
            **fields,
        )

    def _summary(self) -> str:
        states = [
            input_state(u.active.values())
            for u in self.units.values()
            if u.key[1] == self._on_air(u.key[0])
        ]
        counts = {s: states.count(s) for s in ("ok", "degraded", "failed")}
        alive = sum(w.alive for w in self.workers)
        broker = "connected" if self.sink and self.sink.connected else "disconnected"
        queued = self.sink.queued if self.sink else 0
        return (
            f"{len(states)} channels: {counts['ok']} ok, {counts['degraded']} degraded, "
            f"{counts['failed']} failed; {alive}/{len(self.workers)} workers; "
            f"MQTT {broker}, {queued} queued"
        )

    def health(self) -> tuple[bool, dict[str, Any]]:
        """For /healthz (called from the metrics thread: reads only)."""
        known = list(self.workers)
        workers = [
            {
                "index": w.index,
                "pid": w.process.pid if w.process else None,
                "alive": w.alive,
                "restarts": w.restarts,
                "inputs": sorted(
                    f"{c}/{i}" for (c, i), u in list(self.units.items()) if u.worker == w.index
                ),
            }
            for w in known
        ]
        healthy = not self._stop.is_set() and all(
            w.alive or w.restart_at_s is not None for w in known
        )
        return healthy, {
            "status": "ok" if healthy else "unhealthy",
            "summary": self._summary(),
            "workers": workers,
            "mqtt_connected": bool(self.sink and self.sink.connected),
            "mqtt_queued": self.sink.queued if self.sink else 0,
        }

    # --- periodic -------------------------------------------------------------------------

    async def _health_loop(self) -> None:
        interval = self.notifier.watchdog_interval_s
        next_ping = 0.0
        while True:
            await asyncio.sleep(HEALTH_EVERY_S)
            now = time.monotonic()
            for worker in self.workers:
                self._check_worker(worker, now)
            sink = self.sink
            if sink is not None:
                self.metrics.set_mqtt(
                    sink.connected, sink.queued, sink.delivered, sink.dropped, sink.reconnects
                )
            self.metrics.set_workers(sum(w.alive for w in self.workers), self._worker_restarts)
            for name, link in list(self.failover.items()):
                link.tick()
                self._publish_status(name)  # only sent when it changed (e.g. the input on air)
            summary = self._summary()
            if summary != self._notify_status:
                self._notify_status = summary
                self.notifier.status(summary)
            # The ping proves this loop runs; a worker in trouble is ours to restart, not a
            # reason for systemd to restart every channel.
            if interval is not None and now >= next_ping:
                self.notifier.watchdog()
                next_ping = now + interval

    def _check_worker(self, worker: Worker, now: float) -> None:
        if worker.restart_at_s is not None:
            if now >= worker.restart_at_s:
                self._spawn(worker)
            return
        if not worker.alive:
            code = worker.process.exitcode if worker.process else None
            self._kill(worker, f"exited (code {code})")
        elif now - worker.last_heartbeat_s > WORKER_SILENT_S:
            self._kill(worker, f"no heartbeat for {now - worker.last_heartbeat_s:.0f} s")
        else:
            for unit in self.units.values():
                if unit.worker == worker.index and unit.running:
                    source = unit.spec.channel.inputs[unit.key[1]]
                    limit = UNIT_STUCK_S + source.open_timeout_s + source.read_timeout_s
                    if unit.tick_age_s > limit:
                        unit.tick_age_s = 0.0
                        self._kill(worker, f"{unit.key[0]}/{unit.key[1]} stuck for {limit:.0f} s")
                        return

    def _sink_log(self, event: str, **fields: Any) -> None:
        self.log.warning(event, **fields)

    # --- reload ---------------------------------------------------------------------------

    def reload(self) -> None:
        self.notifier.reloading()
        try:
            config = load_config(self.config_path)
            check_runnable(config)
        except StreamqcError as exc:
            self.log.error("reload rejected, keeping the running configuration", reason=str(exc))
            self.notifier.ready(self._summary())
            return
        if config.daemon != self.config.daemon or config.site != self.config.site:
            self.log.warning(
                "daemon settings changed (site, mqtt, metrics, thumbnails, workers, state_dir): "
                "restart streamqc to apply them; channels are reloaded now"
            )
            config = replace(config, site=self.config.site, daemon=self.config.daemon)
        origin = {key: unit.spec.origin_wall_s for key, unit in self.units.items()}
        wanted = {unit.key: unit for unit in self._plan(config, origin)}
        added = removed = changed = 0
        for key, unit in list(self.units.items()):
            new = wanted.get(key)
            if new is None:
                self._stop_unit(unit, "remove")
                removed += 1
            elif new.spec.channel != unit.spec.channel:
                unit.next_spec = new.spec
                self._stop_unit(unit, "restart")
                changed += 1
        for key, unit in wanted.items():
            if key not in self.units:
                self._start_unit(unit)
                self._publish_status(key[0])
                added += 1
        self.config = config
        self._sync_failover(config)
        self.log.info(
            "configuration reloaded",
            added=added,
            removed=removed,
            changed=changed,
            unchanged=len(wanted) - added - changed,
        )
        self.notifier.ready(self._summary())


async def run_daemon(config_path: str | Path, notifier: Notifier | None = None) -> int:
    config = load_config(config_path)
    supervisor = Supervisor(config_path, config, notifier or Notifier.from_env())
    return await supervisor.run()


@contextlib.asynccontextmanager
async def running(config_path: str | Path) -> AsyncIterator[Supervisor]:
    """A supervisor running in the current loop until the block ends (the demo uses it)."""
    config = load_config(config_path)
    supervisor = Supervisor(config_path, config, Notifier.from_env())
    task = asyncio.create_task(supervisor.run())
    try:
        yield supervisor
    finally:
        supervisor.stop()
        await task


def status_facts(stats: list[InputStats], origin_wall_s: float) -> dict[str, Any]:
    """An input's facts for the channel status from its renditions' latest stats: the first
    rendition that has each fact gives it; a break's end (media seconds on the unit's
    timeline, whose zero is ``origin_wall_s``) becomes a UTC time an operator can read."""
    facts: dict[str, Any] = {}
    for s in stats:
        for key, value in s.status:
            facts.setdefault(key, value)
    end_s = facts.pop("break_ends_at_media_s", None)
    if "in_break" in facts:
        facts["break_ends_at"] = (
            None
            if end_s is None
            else datetime.fromtimestamp(origin_wall_s + end_s, UTC)
            .isoformat(timespec="seconds")
            .replace("+00:00", "Z")
        )
    return facts
