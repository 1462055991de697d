"""The daemon end to end: ``streamqc run`` with live UDP feeds and a real Mosquitto broker.

Two measurements, each on the real daemon process (control plane + one worker process per
core), fed over loopback UDP by a PCR-paced player in a process of its own
(``daemon_load.PlayerProcess``):

alarm latency
    Feeds of a clip with black and silence faults at known media times. A fault's onset on the
    wall clock is when the player was due to send the first PCR plus the fault's PTS minus that
    first PCR, i.e. the moment a decoder locked to the PCR would present the first faulty
    picture or sample (``make_ts`` writes PCR = PTS at the start, and a picture's packets leave
    within ~80 ms after its PTS time, so this reference is not early). Latency is the
    arrival of the ``raised`` event at an MQTT subscriber minus that onset; the target is
    ``raise_after`` + 0.5 s. Split: onset -> the event's ``wallclock`` (stamped in the worker
    when the alarm tracker emits) -> the supervisor's ``alarm raised`` log line (after the
    event is in the on-disk queue) -> the subscriber.

sustained channels
    N feeds of the benchmark clip (``clips.py``, 640x360p25 0.8 Mbit/s; 1280x720p25 3 Mbit/s)
    into one daemon (the default worker count), N increasing until it falls behind, then
    bisected. After a warm-up, /metrics is read for a 15 s window: a channel keeps real time
    when its pictures_total grows by >= 0.95 x 25 per second (timed between two of the
    worker's once-a-second reports) and the slope of its media lag over the window adds up to
    < 0.5 s. (The lag's absolute value includes how long the decoder waited for the first
    byte, so only its growth says anything.) CPU of the worker processes (and of worker 0's
    threads), the supervisor, the broker, the player and the rest of the machine comes from
    /proc. Each step waits for the machine to be idle first, and a failed step during which
    other processes used over 60 ms/s is run again (up to 3 times).

With ``--benchmark-disable`` (the default, CI) each runs once in a tiny form as a smoke test:
one channel and one black fault; two channels for a few seconds. Nothing is reported then.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

from benchmarks.clips import ClipSpec, broadcast_clip, cache_dir, clip_path
from benchmarks.daemon_load import (
    BenchDaemon,
    FedChannel,
    Feed,
    PlayerProcess,
    StampedSubscriber,
    black_onsets,
    first_pcr,
    iso_to_wall,
    machine_busy_s,
    others_busy,
    per_channel,
    play_staggered,
    proc_cpu_s,
    silence_onsets,
    threads_cpu_s,
)
from monitor.demo.synth import MediaSpec, Span, make_ts
from tests.daemon import events
from tests.mqttbroker import Mosquitto

RAISE_AFTER_S = 2.0  # black and silence, the defaults
TARGET_S = 0.5  # alarm on MQTT within raise_after + this
FPS = 25

# --- latency clips: black and silence at known media times, clean in between ---

LATENCY_FULL = MediaSpec(
    duration_s=44.0,
    width=640,
    height=360,
    black=(Span(8.0, 12.0), Span(20.0, 24.0), Span(32.0, 36.0)),
    silence=(Span(14.0, 17.0), Span(26.0, 29.0), Span(38.0, 41.0)),
)
LATENCY_QUICK = MediaSpec(duration_s=7.0, width=320, height=180, black=(Span(2.0, 5.0),))
LATENCY_CHANNELS = 4
LATENCY_STAGGER_S = 0.37  # feed k starts k x this after the first: the onsets do not coincide
LATENCY_BACKGROUND = [0, 20]  # extra clean 360p channels loading the daemon meanwhile

# --- sustained channels ---

SUSTAIN_CLIP_S = 60.0
SUSTAIN_STEPS = [2, 4, 8, 12, 16, 24, 32, 40, 48, 56, 64, 80, 96]
SUSTAIN_GRANULARITY = 4  # after the first failing step, bisect down to this
WARMUP_S = 5.0
WINDOW_S = 15.0
SAMPLE_EVERY_S = 0.5
EDGE_POLL_S = 0.02
SENDER_LATE_LIMIT = 0.005  # the ramp stops when more datagrams than this left > 50 ms late
MIN_FPS = 0.95 * FPS
MAX_LAG_GROWTH_S = 0.5
QUIET_LIMIT = 0.03  # share of the machine busy before a step (other processes)
QUIET_TIMEOUT_S = 120.0
OTHERS_LIMIT_MS = 60.0  # CPU of processes not ours during a window, above which a failed
ATTEMPTS = 3  # step is run again, up to this many times


def sustain_clip(height: int) -> ClipSpec:
    if height == 360:
        return ClipSpec(640, 360, 800, SUSTAIN_CLIP_S)
    if height == 720:
        return ClipSpec(1280, 720, 3000, SUSTAIN_CLIP_S)
    raise ValueError(height)


def synth_clip(spec: MediaSpec, name: str) -> Path:
    """``make_ts`` output, cached next to the benchmark clips (keyed by the whole spec)."""
    key = hashlib.sha1(repr(spec).encode()).hexdigest()[:10]
    path = cache_dir() / f"synth_{name}_{key}.ts"
    if not path.exists():
        partial = path.with_suffix(f".{os.getpid()}.partial.ts")
        try:
            make_ts(partial, spec)
            partial.replace(path)  # atomic: a concurrent run never sees half a file
        finally:
            partial.unlink(missing_ok=True)
    return path


def cpu_ms_per_s(before: float, after: float, wall_s: float) -> float:
    return (after - before) / wall_s * 1e3


def self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# =========================================================================================
# alarm latency
# =========================================================================================


@dataclass
class Sample:
    channel: str
    alarm: str
    onset_media_s: float  # fault start in the clip
    total_s: float  # MQTT arrival - onset
    detect_s: float  # event wallclock (worker) - onset
    to_supervisor_s: float | None  # supervisor log line - event wallclock
    to_client_s: float | None  # MQTT arrival - supervisor log line
    hop_s: float  # MQTT arrival - event wallclock


def measure_latency(
    folder: Path,
    broker: Mosquitto,
    spec: MediaSpec,
    clip: Path,
    n_channels: int,
    background: int,
) -> tuple[list[Sample], dict[str, Any]]:
    pcr0 = first_pcr(clip)
    faults: dict[str, list[tuple[float, float]]] = {}  # alarm -> [(media start, PTS of onset)]
    if spec.black:
        starts = [s.start_s for s in spec.black]
        faults["black"] = list(zip(starts, black_onsets(clip, starts), strict=True))
    if spec.silence:
        starts = [s.start_s for s in spec.silence]
        faults["silence"] = list(zip(starts, silence_onsets(clip, starts), strict=True))
    last_onset_s = max(t for f in faults.values() for t, _ in f)

    channels = [FedChannel(f"fault{k}", clip) for k in range(n_channels)]
    load = []
    if background:
        load_clip = clip_path(sustain_clip(360))
        load = [FedChannel(f"load{k}", load_clip) for k in range(background)]
    sub = StampedSubscriber(broker.port, "streamqc/#")
    daemon = BenchDaemon(folder, channels + load, broker_url=broker.url)
    player = None
    try:
        daemon.start()
        sub.wait_for(
            lambda m: m.topic == daemon.daemon_topic and b'"online"' in m.payload, timeout_s=60
        )
        daemon.wait_listening([c.port for c in channels + load])
        feeds = [Feed(clip, c.port, k * LATENCY_STAGGER_S) for k, c in enumerate(channels)]
        feeds += [Feed(c.clip, c.port, k * 2.0 / len(load)) for k, c in enumerate(load)]
        player = PlayerProcess(feeds).start()
        busy0, t0 = machine_busy_s(), time.monotonic()
        wanted = n_channels * sum(len(f) for f in faults.values())

        def raised(ms: list[Any]) -> list[dict[str, Any]]:
            return [
                e
                for e in events(ms)
                if e["state"] == "raised" and e["alarm"] in faults and e["channel"] in names
            ]

        names = {c.name for c in channels}
        timeout_s = last_onset_s + n_channels * LATENCY_STAGGER_S + RAISE_AFTER_S + 20.0
        sub.wait_until(lambda ms: len(raised(ms)) >= wanted, timeout_s=timeout_s)
        time.sleep(0.5)  # anything unexpected (a second raise) would show now
        machine_ms = cpu_ms_per_s(busy0, machine_busy_s(), time.monotonic() - t0)
    finally:
        final = player.stop() if player is not None else {}
        daemon.stop()
        sub.close()

    supervisor_s = {
        line["id"]: iso_to_wall(line["timestamp"])
        for line in daemon.log_lines()
        if line.get("event") == "alarm raised" and "id" in line
    }
    stamped = sub.stamped_snapshot()
    samples: list[Sample] = []
    other: list[str] = []
    for k, channel in enumerate(channels):
        start_wall = player.feed_start_wall(k)
        arrivals = [
            (t, json.loads(m.payload))
            for t, m in stamped
            if m.topic.endswith(f"/{channel.name}/alarms")
        ]
        for alarm, onsets in faults.items():
            got = [(t, e) for t, e in arrivals if e["state"] == "raised" and e["alarm"] == alarm]
            if len(got) != len(onsets):
                raise AssertionError(f"{channel.name}: {alarm} raised {len(got)} times: {got}")
            # the events' media starts must be spaced like the faults: no mismatched pairs
            spacing = [e["start"] - got[0][1]["start"] for _, e in got]
            expected = [t - onsets[0][0] for t, _ in onsets]
            assert all(abs(a - b) < 0.1 for a, b in zip(spacing, expected, strict=True)), (
                spacing,
                expected,
            )
            for (t_recv, event), (media_s, pts) in zip(got, onsets, strict=True):
                onset = start_wall + (pts - pcr0) / 90000
                emitted = iso_to_wall(event["wallclock"])
                logged = supervisor_s.get(event["id"])
                samples.append(
                    Sample(
                        channel=channel.name,
                        alarm=alarm,
                        onset_media_s=media_s,
                        total_s=t_recv - onset,
                        detect_s=emitted - onset,
                        to_supervisor_s=None if logged is None else logged - emitted,
                        to_client_s=None if logged is None else t_recv - logged,
                        hop_s=t_recv - emitted,
                    )
                )
        other += [
            f"{channel.name}: {e['alarm']} {e['state']}"
            for _, e in arrivals
            if e["alarm"] not in faults
        ]
    onset_offsets = {
        alarm: [round((pts - pcr0) / 90000 - media_s, 4) for media_s, pts in onsets]
        for alarm, onsets in faults.items()
    }
    return samples, {
        "machine_busy_ms_per_s": machine_ms,
        "sender": final,
        "other_alarms": other,
        "onset_pts_minus_pcr0_minus_media_s": onset_offsets,
    }


def summarise(samples: list[Sample], field: str) -> dict[str, float]:
    values = [getattr(s, field) for s in samples if getattr(s, field) is not None]
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


@pytest.mark.timeout(900)
@pytest.mark.parametrize("background", LATENCY_BACKGROUND, ids=lambda n: f"load{n}")
def test_alarm_latency(benchmark, report, tmp_path: Path, broker: Mosquitto, background: int):
    quick = benchmark.disabled
    if quick and background:
        pytest.skip("smoke run: without background load only")
    spec = LATENCY_QUICK if quick else LATENCY_FULL
    clip = synth_clip(spec, "latency")
    n_channels = 1 if quick else LATENCY_CHANNELS
    result: dict[str, Any] = {}

    def run() -> None:
        result["machine_busy_before"] = None if quick else wait_quiet()
        result["samples"], result["info"] = measure_latency(
            tmp_path / "daemon", broker, spec, clip, n_channels, background
        )

    benchmark.group = "daemon end to end: alarm latency (wall time of the whole run)"
    benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    samples: list[Sample] = result["samples"]
    assert samples and all(s.total_s > 0 for s in samples), samples
    if quick:
        return

    info = result["info"]
    by_alarm = {a: [s for s in samples if s.alarm == a] for a in sorted({s.alarm for s in samples})}
    table: dict[str, dict[str, dict[str, float]]] = {}
    for alarm, group in by_alarm.items():
        table[alarm] = {
            f: summarise(group, f)
            for f in ("total_s", "detect_s", "to_supervisor_s", "to_client_s", "hop_s")
        }
    over = {
        a: {k: v - RAISE_AFTER_S for k, v in t["total_s"].items() if k != "n"}
        for a, t in table.items()
    }
    benchmark.extra_info.update(
        clip=spec.__dict__
        | {"black": [asdict(s) for s in spec.black], "silence": [asdict(s) for s in spec.silence]},
        fault_channels=n_channels,
        background_channels=background,
        raise_after_s=RAISE_AFTER_S,
        latency_minus_raise_after_s=over,
        split_s=table,
        samples=[asdict(s) for s in samples],
        machine_busy_before=result["machine_busy_before"],
        **info,
    )

    def ms(x: float) -> str:
        return f"{x * 1e3:7.0f}"

    lines = [
        f"{'alarm':<8} {'n':>3}  {'onset->MQTT client':>26}  {'onset->event':>20}"
        f"  {'event->supervisor':>18}  {'supervisor->client':>18}",
        f"{'':<8} {'':>3}  {'- raise_after, ms':>26}  {'- raise_after, ms':>20}"
        f"  {'ms':>18}  {'ms':>18}",
        f"{'':<8} {'':>3}  {'median':>7} {'min':>7} {'max':>8}    {'median':>7} {'max':>8}"
        f"    {'median':>7} {'max':>6}    {'median':>7} {'max':>7}",
    ]
    for alarm, t in table.items():
        tot, det, sup, cli = t["total_s"], t["detect_s"], t["to_supervisor_s"], t["to_client_s"]
        lines.append(
            f"{alarm:<8} {tot['n']:>3}  {ms(tot['median'] - RAISE_AFTER_S)} "
            f"{ms(tot['min'] - RAISE_AFTER_S)} {ms(tot['max'] - RAISE_AFTER_S)} "
            f"   {ms(det['median'] - RAISE_AFTER_S)} {ms(det['max'] - RAISE_AFTER_S)}"
            f"    {ms(sup['median'])} {ms(sup['max'])[1:]}    {ms(cli['median'])} {ms(cli['max'])}"
        )
    worst = max(s.total_s for s in samples) - RAISE_AFTER_S
    verdict = "within" if worst <= TARGET_S else "ABOVE"
    lines.append(
        f"worst {worst * 1e3:.0f} ms over raise_after: {verdict} the"
        f" {TARGET_S * 1e3:.0f} ms target."
        f" Sender: {info['sender']['late_over_10ms']} of {info['sender']['sent']} datagrams"
        f" > 10 ms late, max {info['sender']['late_max_s'] * 1e3:.1f} ms. Machine busy"
        f" {info['machine_busy_ms_per_s']:.0f} ms/s meanwhile (all processes, ours included)."
        + (f" Other alarms: {info['other_alarms']}" if info["other_alarms"] else "")
    )
    report.add(
        f"daemon end to end: alarm latency, {n_channels} channels {spec.width}x{spec.height}p25"
        f" with faults + {background} clean 640x360 channels, real Mosquitto, raise_after"
        f" {RAISE_AFTER_S:g} s",
        *lines,
    )


# =========================================================================================
# sustained channels
# =========================================================================================


def slope(ts: list[float], ys: list[float]) -> float:
    mt, my = statistics.fmean(ts), statistics.fmean(ys)
    den = sum((t - mt) ** 2 for t in ts)
    return sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True)) / den if den else 0.0


Metrics = dict[str, list[tuple[dict[str, str], float]]]


def counter_edges(
    daemon: BenchDaemon, names: list[str], metric: str, timeout_s: float = 3.0
) -> dict[str, tuple[float, float]]:
    """(monotonic time, value) at which each channel's ``metric`` next changes, polled every
    EDGE_POLL_S. Workers report about once a second, at their own phase, and do not export
    when; timing the changes makes a 15 s rate exact to ~0.2 %, where sampled values could be
    off by a whole report (~7 %)."""
    before = per_channel(daemon.metrics(), metric)
    edges: dict[str, tuple[float, float]] = {}
    deadline = time.monotonic() + timeout_s
    while len(edges) < len(names) and time.monotonic() < deadline:
        time.sleep(EDGE_POLL_S)
        now_values = per_channel(daemon.metrics(), metric)
        now = time.monotonic()
        for name in names:
            if name not in edges and now_values.get(name) != before.get(name):
                edges[name] = (now, now_values.get(name, 0.0))
    return edges


def run_step(
    folder: Path,
    broker: Mosquitto,
    clip: Path,
    n: int,
    warmup_s: float,
    window_s: float,
    workers: int | None = None,
    cpus: set[int] | None = None,
) -> dict[str, Any]:
    channels = [FedChannel(f"c{k:03d}", clip) for k in range(n)]
    daemon = BenchDaemon(folder, channels, broker_url=broker.url, workers=workers, cpus=cpus)
    player = None
    try:
        daemon.start()
        daemon.wait_listening([c.port for c in channels], timeout_s=60 + n)
        player = play_staggered(clip, channels)
        deadline = time.monotonic() + 30 + n * 0.2
        started = time.monotonic()
        while True:  # a channel that never decodes fails the step (fps 0), it is no error
            pictures = per_channel(daemon.metrics(), "streamqc_pictures_total")
            decoding = sum(v > 0 for v in pictures.values())
            if decoding == n or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        first_picture_s = time.monotonic() - started
        time.sleep(warmup_s)

        pids = daemon.worker_pids()
        supervisor_pid = daemon.process.pid  # type: ignore[union-attr]
        broker_pid = broker._process.pid  # type: ignore[union-attr]
        names = [c.name for c in channels]
        samples: list[tuple[float, Metrics]] = []
        sender0 = player.stats()
        t0 = time.monotonic()
        cpu0 = {pid: proc_cpu_s(pid) for pid in [*pids, supervisor_pid, broker_pid]}
        threads0 = threads_cpu_s(pids[0])
        self0, machine0 = self_cpu_s(), machine_busy_s()
        first = counter_edges(daemon, names, "streamqc_pictures_total")
        while True:
            now = time.monotonic()
            samples.append((now, daemon.metrics()))
            if now - t0 >= window_s:
                break
            time.sleep(max(0.0, t0 + len(samples) * SAMPLE_EVERY_S - time.monotonic()))
        last = counter_edges(daemon, names, "streamqc_pictures_total")
        t1 = time.monotonic()
        cpu1 = {pid: proc_cpu_s(pid) for pid in cpu0}
        threads1 = threads_cpu_s(pids[0])
        self1, machine1 = self_cpu_s(), machine_busy_s()
        sender1 = player.stats()
        health = daemon.health()
    finally:
        if player is not None:
            player.stop()
        daemon.stop()

    wall = t1 - t0
    ts = [t - t0 for t, _ in samples]
    fps, growth, lag_end, wait_max = {}, {}, {}, {}
    for name in names:
        if name in first and name in last:
            (ta, pa), (tb, pb) = first[name], last[name]
            fps[name] = (pb - pa) / (tb - ta)
        else:
            fps[name] = 0.0  # stalled: its counter did not move within the edge timeout
        lags = [per_channel(m, "streamqc_media_lag_seconds").get(name, 0.0) for _, m in samples]
        waits = [
            per_channel(m, "streamqc_picture_wait_max_seconds").get(name, 0.0) for _, m in samples
        ]
        wait_max[name] = max(waits)
        growth[name] = slope(ts, lags) * window_s
        lag_end[name] = lags[-1]

    def delta(metric: str) -> float:
        first = per_channel(samples[0][1], metric)
        last = per_channel(samples[-1][1], metric)
        return sum(last.values()) - sum(first.values())

    workers_ms = {pid: cpu_ms_per_s(cpu0[pid], cpu1[pid], wall) for pid in pids}
    worker_total = sum(workers_ms.values())
    threads = sorted(
        (cpu_ms_per_s(threads0.get(tid, 0.0), v, wall) for tid, v in threads1.items()),
        reverse=True,
    )
    keeps = min(fps.values()) >= MIN_FPS and max(growth.values()) < MAX_LAG_GROWTH_S
    ours = (
        worker_total
        + cpu_ms_per_s(cpu0[supervisor_pid], cpu1[supervisor_pid], wall)
        + cpu_ms_per_s(cpu0[broker_pid], cpu1[broker_pid], wall)
        + cpu_ms_per_s(sender0["process_cpu_s"], sender1["process_cpu_s"], wall)
        + cpu_ms_per_s(self0, self1, wall)
    )
    return {
        "others_ms_per_s": cpu_ms_per_s(machine0, machine1, wall) - ours,
        "channels": n,
        "keeps_real_time": keeps,
        "sender_late_fraction": (sender1["late_over_50ms"] - sender0["late_over_50ms"])
        / max(sender1["sent"] - sender0["sent"], 1),
        "sender_late_max_s": sender1["late_max_s"],
        "first_picture_s": first_picture_s,
        "decoding_before_window": decoding,
        "window_s": wall,
        "fps_min": min(fps.values()),
        "fps_median": statistics.median(fps.values()),
        "lag_growth_max_s": max(growth.values()),
        "lag_growth_median_s": statistics.median(growth.values()),
        "lag_end_median_s": statistics.median(lag_end.values()),
        "lag_end_max_s": max(lag_end.values()),
        "picture_wait_max_s": max(wait_max.values()),
        "picture_wait_median_of_max_s": statistics.median(wait_max.values()),
        "frames_late": delta("streamqc_frames_late_total"),
        "frames_dropped": delta("streamqc_frames_dropped_total"),
        "reconnects": delta("streamqc_input_reconnects_total"),
        "worker_ms_per_s": list(workers_ms.values()),
        "worker_total_ms_per_s": worker_total,
        "worker_ms_per_s_per_channel": worker_total / n,
        "worker0_inputs": len(health["workers"][0]["inputs"]),
        "worker0_threads_ms_per_s": [round(x, 1) for x in threads if x >= 0.05],
        "supervisor_ms_per_s": cpu_ms_per_s(cpu0[supervisor_pid], cpu1[supervisor_pid], wall),
        "broker_ms_per_s": cpu_ms_per_s(cpu0[broker_pid], cpu1[broker_pid], wall),
        "player_ms_per_s": cpu_ms_per_s(sender0["process_cpu_s"], sender1["process_cpu_s"], wall),
        "player_niceness": sender1["niceness"],
        "test_process_ms_per_s": cpu_ms_per_s(self0, self1, wall),
        "machine_busy_ms_per_s": cpu_ms_per_s(machine0, machine1, wall),
        "fps_per_channel": fps,
        "lag_growth_per_channel_s": growth,
    }


def wait_quiet(limit: float = QUIET_LIMIT, timeout_s: float = QUIET_TIMEOUT_S) -> float:
    """Wait until the machine is nearly idle (other benchmarks, builds, a daemon still
    stopping); returns its busy share at the start, whatever it is at the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        busy = others_busy(3.0)
        if busy < limit or time.monotonic() > deadline:
            return busy


def thread_tiers(threads_ms: list[float], inputs: int) -> tuple[float, float]:
    """Mean ms/s of a worker's ``inputs`` heaviest threads, and of each input's next two."""
    top = threads_ms[:inputs]
    rest = threads_ms[inputs : 3 * inputs]
    return (
        statistics.fmean(top) if top else 0.0,
        sum(rest) / inputs if inputs else 0.0,
    )


def ramp(
    folder: Path,
    broker: Mosquitto,
    clip: Path,
    steps: list[int],
    warmup_s: float,
    window_s: float,
    **daemon: Any,
) -> list[dict[str, Any]]:
    """Each step in turn until one falls behind, then bisect between the last good and it."""
    results: list[dict[str, Any]] = []

    def step(n: int) -> dict[str, Any]:
        discarded: list[dict[str, Any]] = []
        for attempt in range(1, ATTEMPTS + 1):
            quiet = wait_quiet()
            r = run_step(folder / f"n{n}-{attempt}", broker, clip, n, warmup_s, window_s, **daemon)
            r.update(attempt=attempt, machine_busy_before=quiet)
            print(  # progress, with -s
                f"{n} channels: real time {r['keeps_real_time']}, fps min {r['fps_min']:.2f},"
                f" lag growth max {r['lag_growth_max_s']:.2f} s,"
                f" workers {r['worker_total_ms_per_s']:.0f} ms/s,"
                f" other processes {r['others_ms_per_s']:.0f} ms/s",
                flush=True,
            )
            # a step that failed while something else used the machine is run again
            if r["keeps_real_time"] or r["others_ms_per_s"] < OTHERS_LIMIT_MS:
                break
            discarded.append({k: v for k, v in r.items() if "per_channel" not in k})
        r["discarded_attempts"] = discarded
        results.append(r)
        return r

    good, bad = 0, None
    for n in steps:
        r = step(n)
        if r["sender_late_fraction"] > SENDER_LATE_LIMIT:
            break  # the player cannot keep up: the numbers above this are about it, not us
        if not r["keeps_real_time"]:
            bad = n
            break
        good = n
    while bad is not None and bad - good > SUSTAIN_GRANULARITY:
        n = (good + bad) // 2 // 2 * 2
        if step(n)["keeps_real_time"]:
            good = n
        else:
            bad = n
    return sorted(results, key=lambda r: r["channels"])


@pytest.mark.timeout(3600)
@pytest.mark.parametrize("height", [360, 720])
def test_sustained_channels(benchmark, report, tmp_path: Path, broker: Mosquitto, height: int):
    quick = benchmark.disabled
    if quick and height != 360:
        pytest.skip("smoke run: 360p only")
    spec = broadcast_clip(360, 1.0) if quick else sustain_clip(height)
    clip = clip_path(spec)
    result: dict[str, Any] = {}

    def run() -> None:
        if quick:
            result["steps"] = [run_step(tmp_path / "n2", broker, clip, 2, 0.5, 2.0)]
        else:
            result["steps"] = ramp(tmp_path, broker, clip, SUSTAIN_STEPS, WARMUP_S, WINDOW_S)

    benchmark.group = "daemon end to end: sustained channels (wall time of the whole ramp)"
    benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    steps: list[dict[str, Any]] = result["steps"]
    assert steps[0]["fps_median"] > 0, steps[0]
    if quick:
        return

    kept = [r["channels"] for r in steps if r["keeps_real_time"]]
    failed = [r["channels"] for r in steps if not r["keeps_real_time"]]
    best = max((n for n in kept if not failed or n < min(failed)), default=0)
    benchmark.extra_info.update(
        clip=spec.name,
        max_channels_in_real_time=best,
        min_fps=MIN_FPS,
        max_lag_growth_s=MAX_LAG_GROWTH_S,
        warmup_s=WARMUP_S,
        window_s=WINDOW_S,
        steps=steps,
    )
    lines = [
        f"{'N':>4} {'real time':>9} {'fps min':>7} {'lag +s':>6} {'wait ms':>7} {'late':>5}"
        f" {'workers':>7} {'per ch':>6} {'decode':>6} {'2 more':>6} {'superv.':>7}"
        f" {'broker':>6} {'player':>6} {'test':>5} {'others':>6}",
    ]
    for r in steps:
        tiers = thread_tiers(r["worker0_threads_ms_per_s"], r["worker0_inputs"])
        lines.append(
            f"{r['channels']:>4} {'yes' if r['keeps_real_time'] else 'NO':>9}"
            f" {r['fps_min']:7.2f} {r['lag_growth_max_s']:6.2f}"
            f" {r['picture_wait_max_s'] * 1e3:7.0f} {r['frames_late']:5.0f}"
            f" {r['worker_total_ms_per_s']:7.0f} {r['worker_ms_per_s_per_channel']:6.1f}"
            f" {tiers[0]:6.1f} {tiers[1]:6.1f}"
            f" {r['supervisor_ms_per_s']:7.1f} {r['broker_ms_per_s']:6.1f}"
            f" {r['player_ms_per_s']:6.1f} {r['test_process_ms_per_s']:5.0f}"
            f" {r['others_ms_per_s']:6.0f}"
            + (
                f" SENDER LATE ({r['sender_late_fraction']:.1%} of datagrams > 50 ms)"
                if r["sender_late_fraction"] > SENDER_LATE_LIMIT
                else ""
            )
        )
    lines.append(
        "CPU in ms per wall second (one core is 1000, the machine 2000): worker processes in"
        " all, per channel, and per channel in worker 0 its heaviest thread per input (the"
        " decoder, by its size) and the next two per input (control loop, UDP reader), on"
        " average; the supervisor, Mosquitto, the player process, the test process, and"
        " everything else on the machine meanwhile. lag +s: largest media lag growth over"
        " the window; wait ms: the longest any picture waited between decoded and analysed"
        " (target: within a frame interval, 40 ms); late: pictures analysed > 1 s after"
        " decoding, in the window."
    )
    lines.append(
        f"largest N in real time: {best} (fps >= {MIN_FPS:g} and media lag growing < "
        f"{MAX_LAG_GROWTH_S:g} s over {WINDOW_S:g} s, every channel)."
    )
    report.add(
        f"daemon end to end: sustained channels of {spec.width}x{spec.height}p25 H.264"
        f" {spec.video_kbps} kbit/s + AAC over UDP, one daemon, {WARMUP_S:g} s warm-up +"
        f" {WINDOW_S:g} s window per step",
        *lines,
    )


@pytest.mark.timeout(3600)
def test_scaling_one_core_to_two(benchmark, report, tmp_path: Path, broker: Mosquitto):
    """Channels kept in real time by a daemon confined to one core (one worker, supervisor
    and worker pinned to CPU 0) and by one using both (two workers, unpinned). The player,
    the broker and this process run beside it in both cases, on the other core or on the
    same two, so the ratio is if anything conservative."""
    quick = benchmark.disabled
    spec = broadcast_clip(360, 1.0) if quick else sustain_clip(360)
    clip = clip_path(spec)
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        pytest.skip("needs two cores")
    setups = {"1 core": {"workers": 1, "cpus": {cores[0]}}, "2 cores": {"workers": 2}}
    result: dict[str, list[dict[str, Any]]] = {}

    def run() -> None:
        for name, daemon in setups.items():
            folder = tmp_path / name.replace(" ", "")
            if quick:
                result[name] = [run_step(folder, broker, clip, 2, 0.5, 2.0, **daemon)]
            else:
                result[name] = ramp(
                    folder, broker, clip, SUSTAIN_STEPS, WARMUP_S, WINDOW_S, **daemon
                )

    benchmark.group = "daemon end to end: scaling over cores (wall time of both ramps)"
    benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    assert all(steps[0]["fps_median"] > 0 for steps in result.values()), result
    if quick:
        return

    def best(steps: list[dict[str, Any]]) -> int:
        failed = [r["channels"] for r in steps if not r["keeps_real_time"]]
        kept = [r["channels"] for r in steps if r["keeps_real_time"]]
        return max((n for n in kept if not failed or n < min(failed)), default=0)

    most = {name: best(steps) for name, steps in result.items()}
    ratio = most["2 cores"] / most["1 core"] if most["1 core"] else float("nan")
    benchmark.extra_info.update(max_channels=most, ratio=ratio, steps=result)

    def wait_ms(steps: list[dict[str, Any]]) -> float:
        return max((r["picture_wait_max_s"] for r in steps if r["keeps_real_time"]), default=0)

    report.add(
        f"daemon end to end: scaling, {spec.width}x{spec.height}p25 {spec.video_kbps} kbit/s"
        " channels over UDP kept in real time",
        *(
            f"{name}: {n} channels (longest picture wait while in real time:"
            f" {wait_ms(result[name]) * 1e3:.0f} ms)"
            for name, n in most.items()
        ),
        f"two cores / one core = {ratio:.2f} (target >= 1.85; bisected to "
        f"{SUSTAIN_GRANULARITY} channels, so the ratio is known to about "
        f"±{SUSTAIN_GRANULARITY / max(most['1 core'], 1):.0%})",
    )
