"""`streamqc demo`: the daemon watching three live channels on this machine, faults on cue.

Three clips are generated with PyAV and played as live MPEG-TS over UDP on loopback, as an
encoder would send them. The daemon (``streamqc run``: supervisor, worker processes, embedded
MQTT broker, metrics) runs in this process on a configuration written next to the clips, and the
demo subscribes to its MQTT topics as a NOC console would: it prints every alarm and status
change as it arrives, then checks them against what was injected. Nothing to set up.

The NOC web console (``streamqc console``) runs in this process too, on a free loopback port
with a throw-away operator login, and a failover agent (script action: nothing to restart
here) answers the daemon's switch commands: ``kids`` has a backup feed and
``failover: {mode: confirm}`` on its freeze, so a newcomer confirms a failover with one click.

``streamqc demo --offline`` (monitor/demo/offline.py) analyses one file instead.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiomqtt

from failover.agent.agent import Agent
from failover.agent.settings import AgentChannel, AgentSettings, ScriptSettings
from monitor.config import AlarmRule, MqttConfig, load_config
from monitor.console.auth import Users, add_user
from monitor.console.settings import DEFAULT_HISTORY_S, ConsoleSettings
from monitor.console.web import Console as WebConsole
from monitor.daemon.agent_service import restart_delays
from monitor.daemon.sdnotify import Notifier
from monitor.daemon.supervisor import Supervisor
from monitor.demo.synth import MediaSpec, Span, make_ts
from monitor.demo.udp_sender import UdpSender, free_udp_port
from monitor.errors import StreamqcError
from monitor.logs import configure_logging, get_logger
from monitor.util.mqtt_connection import BrokerSettings, MqttConnection

SITE = "demo"
CHANNELS = ("news", "sport", "kids")
CLIP_S = 60.0
"""Length of each clip; the senders loop it, so a longer --duration plays the faults again."""
DEFAULT_DURATION_S = 40.0
"""Long enough to play every fault once (what the tests run); without --duration the demo runs
until Ctrl-C, so that there is time to look at the console."""
GOP = 25
"""A keyframe every second: the daemon joins a feed at its next keyframe."""
START_SLACK_S = 2.0
"""How far an alarm's start (translated to feed time) may sit from the injected start and still
be that fault's alarm. The daemon puts the first picture it decodes (a keyframe, up to a GOP
after it joined) at the moment it joined, so its clock is off the feed's by up to a GOP."""
SETTLE_S = 4.0
"""A fault counts as played once the feed is this far past its end (clear hold-off + latency)."""
CONNECT_TIMEOUT_S = 20.0
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class Fault:
    channel: str
    alarm: str
    span: Span  # in clip seconds
    what: str


FAULTS = (
    Fault("news", "black", Span(12.0, 16.0), "black picture"),
    Fault("kids", "freeze", Span(16.0, 28.0), "frozen picture"),
    Fault("news", "silence", Span(22.0, 26.0), "silence on both audio channels"),
)
FAILOVER_CHANNEL = "kids"
"""Has a clean backup feed and asks the NOC to confirm a switch while its freeze lasts (12 s,
so there is time to click Confirm in the console)."""
OPERATOR = "operator"


def clip_spec(channel: str) -> MediaSpec:
    """The clip of a channel's primary feed; ``<channel>-backup`` is a clean one."""
    spans = {f.alarm: (f.span,) for f in FAULTS if f.channel == channel}
    if channel.endswith("-backup"):
        return MediaSpec(duration_s=CLIP_S, gop=GOP, seed=len(CHANNELS))
    return MediaSpec(
        duration_s=CLIP_S,
        black=spans.get("black", ()),
        freeze=spans.get("freeze", ()),
        silence=spans.get("silence", ()),
        gop=GOP,
        seed=CHANNELS.index(channel),
    )


@dataclass
class Feed:
    channel: str
    clip: Path
    port: int = field(default_factory=free_udp_port)
    sender: UdpSender | None = None

    @property
    def url(self) -> str:
        return f"udp://127.0.0.1:{self.port}"


def run_demo(duration_s: float | None = DEFAULT_DURATION_S, keep: Path | None = None) -> int:
    """0 when every fault played raised its alarm over MQTT and nothing else was raised;
    1 otherwise; 130 when stopped by Ctrl-C (or SIGTERM) before ``duration_s``. With
    ``duration_s`` None it runs until Ctrl-C and then gives its verdict."""
    configure_logging(json=False, level="error")  # alarms are printed from MQTT, below
    with tempfile.TemporaryDirectory(prefix="streamqc-demo-") as tmp:
        folder = keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        say("streamqc demo: the daemon watching three live channels on this machine")
        say(f"  making four {CLIP_S:.0f} s clips (320x180 H.264, stereo AAC; one a backup) ...")
        names = (*CHANNELS, f"{FAILOVER_CHANNEL}-backup")
        with ThreadPoolExecutor(len(names)) as pool:
            clips = pool.map(lambda c: make_ts(folder / f"{c}.ts", clip_spec(c)), names)
            feeds = [Feed(c, clip) for c, clip in zip(names, clips, strict=True)]
        demo = LiveDemo(folder, feeds, duration_s)
        code = asyncio.run(demo.run())
        if keep:
            say(f"  the clips and {demo.config_path.name} stay in {folder}")
        return code


class LiveDemo:
    def __init__(self, folder: Path, feeds: list[Feed], duration_s: float | None) -> None:
        self.folder = folder
        self.feeds = feeds
        self.duration_s = duration_s
        self.mqtt_port = free_tcp_port()
        self.metrics_port = free_tcp_port()
        self.console_port = free_tcp_port()
        self.config_path = write_config(folder, feeds, self.mqtt_port, self.metrics_port)
        self.feeds_start_wall_s = 0.0
        self.password = secrets.token_urlsafe(9)

    def web_console(self) -> WebConsole:
        """The NOC console on the embedded broker, with a throw-away operator login."""
        users_file = self.folder / "console" / "users.json"
        add_user(users_file, OPERATOR, "operator", self.password)
        settings = ConsoleSettings(
            listen_host="127.0.0.1",
            listen_port=self.console_port,
            mqtt=MqttConfig(url=f"mqtt://127.0.0.1:{self.mqtt_port}"),
            prefixes=(f"streamqc/{SITE}",),
            users_file=users_file,
            state_dir=self.folder / "console",
            tls=None,
            history_s=DEFAULT_HISTORY_S,
            source="streamqc demo",
        )
        broker = BrokerSettings("127.0.0.1", self.mqtt_port, None, None, None,
                                "streamqc-demo-console", 30.0)  # fmt: skip
        return WebConsole(settings, broker, Users(users_file))

    def agent(self) -> Agent:
        """The encoder host's agent for kids; its script action only says yes."""
        backup = next(f for f in self.feeds if f.channel == f"{FAILOVER_CHANNEL}-backup")
        primary = next(f for f in self.feeds if f.channel == FAILOVER_CHANNEL)
        channel = AgentChannel(
            name=FAILOVER_CHANNEL,
            inputs={"primary": primary.url, "backup": backup.url},
            action=ScriptSettings(path=sys.executable, args=("-c", "pass", "{input_name}")),
        )
        settings = AgentSettings(agent_id="demo-encoder", prefix=f"streamqc/{SITE}",
                                 channels=(channel,), state_file=None)  # fmt: skip
        broker = BrokerSettings("127.0.0.1", self.mqtt_port, None, None, None,
                                "streamqc-demo-agent", 30.0)  # fmt: skip
        log = get_logger(component="agent")
        link = MqttConnection(broker, log=log.error)
        return Agent(settings, link, log, delays=restart_delays)

    async def run(self) -> int:
        self.introduce()
        config = load_config(self.config_path)
        # A demo is not a service: no systemd notifications, even when run from a unit.
        supervisor = Supervisor(self.config_path, config, Notifier(None))
        self.feeds_start_wall_s = time.time()
        for feed in self.feeds:
            feed.sender = UdpSender(feed.clip, feed.port, CLIP_S).start()
        console = Console(self.feeds_start_wall_s, origin_of(supervisor))
        web = self.web_console()
        agent = self.agent()
        daemon = asyncio.create_task(supervisor.run(), name="daemon")
        listener = asyncio.create_task(console.listen(self.mqtt_port), name="console")
        serving = asyncio.create_task(web.serve(), name="web console")
        encoder = asyncio.create_task(agent.run(), name="agent")
        forever = asyncio.Event()
        timer = asyncio.create_task(
            forever.wait() if self.duration_s is None else asyncio.sleep(self.duration_s),
            name="timer",
        )
        signalled = asyncio.create_task(signal_received(console), name="signals")
        done: set[asyncio.Task[Any]] = set()
        try:
            done, _ = await asyncio.wait(
                {daemon, listener, timer, signalled, serving}, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopped_feed_s = time.time() - self.feeds_start_wall_s
            # The MQTT clients leave before the daemon closes its broker: amqtt's shutdown can
            # hang on a client still connected (a cancellation lost in Python 3.11's wait_for).
            web.stop()
            agent.stop()
            for task in (listener, timer, signalled):
                task.cancel()
            await asyncio.gather(listener, timer, signalled, return_exceptions=True)
            await asyncio.gather(
                asyncio.wait_for(serving, 10.0), asyncio.wait_for(encoder, 10.0),
                return_exceptions=True,
            )  # fmt: skip
            supervisor.stop()
            try:
                await daemon  # a daemon that could not start raises its one-line error here
            finally:
                for feed in self.feeds:
                    if feed.sender is not None:
                        feed.sender.stop()
        for task in (listener, serving):
            error = task.exception() if task in done else None
            if error is not None:
                raise error
        # Without --duration, Ctrl-C is the way to stop: the verdict is given all the same.
        interrupted = timer not in done and self.duration_s is not None
        ok = self.summarize(console, stopped_feed_s, interrupted)
        if interrupted:
            return EXIT_INTERRUPTED
        return 0 if ok else 1

    def introduce(self) -> None:
        say("  each plays as a live MPEG-TS/UDP feed on loopback, with faults at known times:")
        for feed in self.feeds:
            faults = [f for f in FAULTS if f.channel == feed.channel]
            plan = ", ".join(f"{f.what} {f.span.start_s:g}-{f.span.end_s:g} s" for f in faults)
            name = feed.channel
            if name.endswith("-backup"):
                name, plan = FAILOVER_CHANNEL, "clean: its backup input (failover, confirm mode)"
            say(f"    {name:<6} {feed.url:<22} {plan or 'clean: no fault'}")
        say(f"  times are seconds since the feeds start; the clips loop every {CLIP_S:g} s")
        if self.duration_s is None:
            say("  the demo runs until Ctrl-C, then compares what arrived with what was injected")
        else:
            say(f"  the demo runs {self.duration_s:g} s (Ctrl-C stops it earlier)")
        say("")
        say(f"  NOC console: http://127.0.0.1:{self.console_port}/")
        say(f"    log in as {OPERATOR}, password {self.password} (made up for this run)")
        say(f"    {FAILOVER_CHANNEL} asks to fail over to its backup while it is frozen: open its "
            "channel page and click Confirm")  # fmt: skip
        say("")
        say(f"  daemon: streamqc run --config {self.config_path}, in this process")
        watch = f"mosquitto_sub -h 127.0.0.1 -p {self.mqtt_port} -t 'streamqc/{SITE}/#' -v"
        say(f"    MQTT (embedded broker), to watch from another terminal: {watch}")
        say(f"    metrics: http://127.0.0.1:{self.metrics_port}/metrics")
        say("")
        say("  what arrives over MQTT (local time, seconds since the feeds started, channel, ...);")
        rule = AlarmRule()  # the demo runs every detector at its defaults
        say(
            f"  an alarm is raised once its fault has lasted {rule.raise_after_s:g} s, cleared "
            f"{rule.clear_after_s:g} s after it ends:"
        )

    def summarize(self, console: Console, stopped_feed_s: float, interrupted: bool) -> bool:
        say("")
        how = "stopped by a signal" if interrupted else "stopped"
        say(f"streamqc demo: {how} after {stopped_feed_s:.0f} s; injected vs arrived over MQTT:")
        unmatched = list(console.arrived.values())
        ok = True
        for feed in self.feeds:
            assert feed.sender is not None
            if feed.channel.endswith("-backup"):
                continue
            faults = [f for f in FAULTS if f.channel == feed.channel]
            if not faults:
                clean = not any(a.channel == feed.channel for a in unmatched)
                text = "no alarm: right" if clean else "alarms raised: UNEXPECTED below"
                say(f"    {feed.channel:<6} {'clean feed':<40} {text}")
            for play in plays(faults, feed.sender.period_s, stopped_feed_s):
                arrived = next((a for a in unmatched if play.matches(a)), None)
                if arrived is not None:
                    unmatched.remove(arrived)
                text, right = verdict(play, arrived, play.end_s + SETTLE_S <= stopped_feed_s)
                ok &= right
                say(f"    {feed.channel:<6} {play.what:<40} {text}")
        for a in unmatched:
            ok = False
            say(f"    {a.channel:<6} UNEXPECTED {a.alarm} alarm from {a.start_s:.2f} s")
        say(f"    {console.thumbnail_summary()}")
        needed_s = max(f.span.end_s for f in FAULTS) + SETTLE_S
        if interrupted:
            say("streamqc demo: stopped early; let it run to the end for a verdict")
        elif stopped_feed_s < needed_s:
            ok = False
            say(f"streamqc demo: too short to play every fault: run it {needed_s:.0f} s or more")
        elif ok:
            say("streamqc demo: every injected fault raised its alarm over MQTT, no false alarm")
        else:
            say("streamqc demo: MISMATCH between what was injected and what arrived")
        return ok


@dataclass
class Arrived:
    """An alarm as it arrived over MQTT, in seconds since the feeds started."""

    channel: str
    alarm: str
    start_s: float
    duration_s: float | None = None  # once it cleared


@dataclass(frozen=True)
class Play:
    """One playing of a fault by a looping sender, in seconds since the feeds started."""

    fault: Fault
    start_s: float
    end_s: float

    @property
    def what(self) -> str:
        return f"{self.fault.what} {self.start_s:g}-{self.end_s:g} s"

    def matches(self, arrived: Arrived) -> bool:
        return (arrived.channel, arrived.alarm) == (self.fault.channel, self.fault.alarm) and (
            abs(arrived.start_s - self.start_s) <= START_SLACK_S
        )


def verdict(play: Play, arrived: Arrived | None, over: bool) -> tuple[str, bool]:
    """What to say of one playing of a fault, and whether it went right so far; ``over``: it
    ended long enough before the demo stopped for its alarm to have cleared."""
    if arrived is None:
        return (f"MISSED: no {play.fault.alarm} alarm", False) if over else ("still playing", True)
    text = f"{arrived.alarm} arrived, from {arrived.start_s:.2f} s"
    if arrived.duration_s is not None:
        return f"{text}, lasted {arrived.duration_s:.2f} s", True
    return (f"{text}, NEVER CLEARED", False) if over else (f"{text}, still on", True)


def plays(faults: list[Fault], period_s: float, until_s: float) -> list[Play]:
    """Every playing of ``faults`` by a sender looping every ``period_s``, before ``until_s``."""
    out = []
    for fault in faults:
        loop = 0
        while (start_s := fault.span.start_s + loop * period_s) < until_s:
            out.append(Play(fault, start_s, fault.span.end_s + loop * period_s))
            loop += 1
    return sorted(out, key=lambda p: p.start_s)


class Console:
    """The demo's MQTT subscriber: prints what arrives, as it arrives, and keeps it."""

    def __init__(self, feeds_start_wall_s: float, origin: Callable[[str], float | None]) -> None:
        self.feeds_start_wall_s = feeds_start_wall_s
        self.origin = origin
        self.arrived: dict[str, Arrived] = {}  # by alarm id
        self.thumbnails: Counter[str] = Counter()
        self.snapshots = 0
        self._status: dict[str, tuple[str, ...]] = {}
        self.connected = asyncio.Event()

    async def listen(self, port: int) -> None:
        """Print what arrives until cancelled; connect while the daemon starts its broker, and
        again should the connection drop."""
        deadline: float | None = time.monotonic() + CONNECT_TIMEOUT_S
        while True:
            try:
                async with aiomqtt.Client("127.0.0.1", port, identifier="streamqc-demo") as client:
                    deadline = None
                    await client.subscribe(f"streamqc/{SITE}/#", qos=1)
                    self.connected.set()
                    async for message in client.messages:
                        payload = message.payload if isinstance(message.payload, bytes) else b""
                        self.receive(str(message.topic), payload)
            except aiomqtt.MqttError as exc:
                if deadline is not None and time.monotonic() > deadline:
                    raise StreamqcError(
                        f"the daemon's MQTT broker at 127.0.0.1:{port} did not answer within "
                        f"{CONNECT_TIMEOUT_S:.0f} s: {exc}"
                    ) from None
                await asyncio.sleep(0.2)

    def receive(self, topic: str, payload: bytes) -> None:
        parts = topic.split("/")[2:]  # streamqc/<site>/<channel>/<leaf>[/...]
        if len(parts) < 2:
            return
        channel, leaf = parts[0], parts[1]
        if channel == "daemon" and leaf == "status" and payload:
            self.daemon_status(json.loads(payload))
        elif leaf == "alarms" and len(parts) == 2:
            self.alarm(json.loads(payload))
        elif leaf == "alarms":  # .../alarms/<id>/thumbnail: the picture at the onset
            self.snapshots += 1
        elif leaf == "status" and payload:
            self.channel_status(channel, json.loads(payload))
        elif leaf == "thumbnail" and payload:
            self.thumbnails[channel] += 1

    def daemon_status(self, status: dict[str, Any]) -> None:
        if status["state"] == "online":
            text = f"online: site {status['site']}, {status['channels']} channels"
            self.row(None, "daemon", text)
        else:
            self.row(None, "daemon", f"{status['state']} ({status.get('reason', '')})")

    def channel_status(self, channel: str, status: dict[str, Any]) -> None:
        active = status["inputs"].get(status["active_input"], {}).get("alarms", [])
        key = (status["state"], *(a["alarm"] for a in active))
        if self._status.get(channel) == key:
            return
        self._status[channel] = key
        alarms = f" ({', '.join(key[1:])})" if key[1:] else ""
        self.row(None, channel, f"status {status['state']}{alarms}")

    def alarm(self, event: dict[str, Any]) -> None:
        start = self.feed_s(event["channel"], event["start"])
        if event["state"] == "raised":
            self.arrived[event["id"]] = Arrived(event["channel"], event["alarm"], start)
            state, span = "RAISED ", f"from {start:.2f} s"
        else:
            end = self.feed_s(event["channel"], event["end"])
            arrived = self.arrived.setdefault(
                event["id"], Arrived(event["channel"], event["alarm"], start)
            )
            arrived.duration_s = end - start
            state, span = "cleared", f"{start:.2f}-{end:.2f} s ({end - start:.2f} s)"
        wall = datetime.fromisoformat(event["wallclock"].replace("Z", "+00:00"))
        text = f"{event['alarm']:<8} {state} {event['severity']:<8} {span:<26}"
        self.row(wall, event["channel"], (text + " " + describe(event["detail"])).rstrip())

    def feed_s(self, channel: str, media_s: float) -> float:
        """Media seconds of ``channel`` (the daemon counts from when it started watching it) as
        seconds since the feeds started, the timeline of the injected faults."""
        origin_wall_s = self.origin(channel)
        if origin_wall_s is None:
            return media_s
        return media_s + origin_wall_s - self.feeds_start_wall_s

    def row(self, wall: datetime | None, who: str, text: str) -> None:
        clock = (wall or datetime.now().astimezone()).astimezone().strftime("%H:%M:%S")
        elapsed_s = time.time() - self.feeds_start_wall_s
        say(f"    {clock} {elapsed_s:5.1f} s  {who:<7} {text}")

    def thumbnail_summary(self) -> str:
        per_channel = ", ".join(f"{c} {n}" for c, n in sorted(self.thumbnails.items()))
        total = sum(self.thumbnails.values())
        return (
            f"thumbnails: {total} periodic JPEGs ({per_channel or 'none'}) and "
            f"{self.snapshots} alarm snapshots arrived"
        )


def describe(detail: dict[str, Any]) -> str:
    """A short reading of an event's detail, without what the line already says."""
    parts = []
    if "channels" in detail:  # silence: which audio channels
        names = detail.get("channel_names") or detail["channels"]
        parts.append(
            f"audio channels {','.join(str(n) for n in names)} of {detail.get('channel_count')}"
        )
    skip = {"thumbnail", "stream", "channels", "channel_names", "channel_count", "duration_s"}
    parts += [f"{k.replace('_', ' ')} {v}" for k, v in detail.items() if k not in skip]
    return ", ".join(parts)


async def signal_received(console: Console) -> None:
    """Returns on SIGINT (Ctrl-C) or SIGTERM, so that the console can leave before the daemon
    stops. Until the console is connected, the supervisor's own handlers stop the daemon,
    which ends the demo as well."""
    await console.connected.wait()  # the supervisor has installed its handlers by then
    received = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, received.set)  # in place of the supervisor's
    await received.wait()


def origin_of(supervisor: Supervisor) -> Callable[[str], float | None]:
    """The wall time (time.time()) at which the daemon's media clock of a channel reads 0."""

    def origin(channel: str) -> float | None:
        unit = supervisor.units.get((channel, "primary"))
        return None if unit is None else unit.spec.origin_wall_s

    return origin


def write_config(folder: Path, feeds: list[Feed], mqtt_port: int, metrics_port: int) -> Path:
    backups = {f.channel.removesuffix("-backup"): f for f in feeds if f.channel.endswith("-backup")}
    channels = ""
    for feed in feeds:
        if feed.channel.endswith("-backup"):
            continue
        channels += f'  - name: {feed.channel}\n    inputs:\n      primary: {{url: "{feed.url}"}}\n'
        if feed.channel in backups:
            channels += (
                f'      backup: {{url: "{backups[feed.channel].url}"}}\n'
                "    # asks the NOC console to confirm a switch while the freeze lasts\n"
                "    failover: {mode: confirm, triggers: [freeze]}\n"
            )
    path = folder / "streamqc.yaml"
    path.write_text(
        "# Written by `streamqc demo`: an ordinary configuration (streamqc run --config FILE).\n"
        "version: 1\n"
        f"site: {SITE}\n"
        f'mqtt: {{embedded_listen: "127.0.0.1:{mqtt_port}"}}   # not 1883: a broker may hold it\n'
        f'metrics: {{listen: "127.0.0.1:{metrics_port}"}}\n'
        f'state_dir: "{folder / "state"}"\n'
        "thumbnails: {interval: 5s}\n"
        "defaults:\n"
        "  detectors:\n"
        "    # The demo's sender is a Python thread, not a CBR multiplexer: on a busy small\n"
        "    # machine its PCR jitter would show as TR 101 290 noise.\n"
        "    transport: {enabled: false}\n"
        "channels:\n" + channels
    )
    return path


def free_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def say(text: str) -> None:
    print(text, flush=True)
