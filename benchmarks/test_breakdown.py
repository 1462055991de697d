"""Where the time goes inside one analyze run: decode vs each streamqc component, in situ.

Whole runs on this VM vary by ±5-10 % from run to run, more than the overhead being measured.
Time split *within* one run does not suffer from that: decode and detection share the same
slow or fast phases. So this benchmark wraps the decoder (demux + ``packet.decode``) and each
streamqc component with timers (``time.perf_counter``; pytest's monkeypatch, undone after the
test), runs ``analyze()`` a few times, and reports each component's exclusive time per media
second. FFmpeg's filters and a bare decode loop get the same decode/rest split.

Timings are taken where the code really runs: right after the decoder, with its caches cold
for our code and data. The per-call costs are therefore higher than test_kernels.py's, which
loop over the same few pictures with warm caches.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
import pytest

import detectors.picture
import detectors.silence
import monitor.decode.media_source
from benchmarks.clips import broadcast_clip, clip_path
from benchmarks.runners import decode_only, ffmpeg_filters, streamqc
from detectors.picture import PictureAnalyzer
from detectors.silence import SilenceDetector
from monitor.alarms.engine import AlarmTracker
from monitor.decode.media_source import MediaSource
from monitor.pipeline.channel import ChannelPipeline

CLIP_S = 12.0
QUICK_CLIP_S = 1.0
RUNS = 3
DECODE = "demux + decode (PyAV, 1 thread)"
REST = "analyze loop, MediaSource iteration and audio batching, setup (rest)"
clock = time.perf_counter


class Timers:
    """Exclusive time and call count per label; nested timed calls are not counted twice."""

    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.calls: Counter[str] = Counter()
        self._children: list[float] = []

    def wrap(self, label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._children.append(0.0)
            t0 = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                dt = clock() - t0
                self.seconds[label] += dt - self._children.pop()
                self.calls[label] += 1
                if self._children:
                    self._children[-1] += dt

        return timed


class TimedPacket:
    __slots__ = ("_decode", "_packet", "is_corrupt", "stream")

    def __init__(self, packet: av.Packet, decode: Callable[[av.Packet], list]) -> None:
        self._packet = packet
        self._decode = decode
        self.stream = packet.stream
        self.is_corrupt = packet.is_corrupt

    def decode(self) -> list[av.frame.Frame]:
        return self._decode(self._packet)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._packet, name)


class TimedContainer:
    """An input container whose demuxing and decoding count as DECODE."""

    def __init__(self, container: av.container.InputContainer, timers: Timers) -> None:
        self._container = container
        self._timers = timers

    def demux(self, *args: Any, **kwargs: Any) -> Iterator[TimedPacket]:
        packets = self._container.demux(*args, **kwargs)
        read = self._timers.wrap(DECODE, next)
        decode = self._timers.wrap(DECODE, av.Packet.decode)
        while True:
            try:
                packet = read(packets)
            except StopIteration:
                return
            yield TimedPacket(packet, decode)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)

    def __enter__(self) -> TimedContainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self._container.close()


def instrument(monkeypatch: pytest.MonkeyPatch, timers: Timers) -> None:
    real_open = av.open
    monkeypatch.setattr(av, "open", lambda *a, **k: TimedContainer(real_open(*a, **k), timers))
    targets: list[tuple[object, str, str]] = [
        (monitor.decode.media_source, "luma_view", "luma view (zero-copy numpy over the Y plane)"),
        (MediaSource, "_picture", "MediaSource: frame -> Picture (rest)"),
        # MediaSource._audio and AudioBatch are generators: their time lands in REST.
        (detectors.picture, "picture_step", "picture_step Numba call (kernel + verdicts)"),
        (PictureAnalyzer, "update", "PictureAnalyzer.update (rest)"),
        (detectors.silence, "block_levels", "block_levels Numba kernel (silence)"),
        (SilenceDetector, "update", "SilenceDetector.update (rest: numpy, observations)"),
        (AlarmTracker, "observe", "AlarmTracker.observe (hysteresis)"),
        (ChannelPipeline, "_presence", "ChannelPipeline presence checks (rest)"),
        (ChannelPipeline, "process", "ChannelPipeline.process (rest: glue, detail dicts)"),
    ]
    for owner, name, label in targets:
        if hasattr(owner, name):  # private names may move: then their time lands in the caller
            monkeypatch.setattr(owner, name, timers.wrap(label, getattr(owner, name)))


def timer_cost_s() -> float:
    """What wrapping adds to one call (two clock reads and the bookkeeping)."""
    timers = Timers()
    noop = timers.wrap("noop", lambda: None)
    bare = lambda: None  # noqa: E731
    n = 50_000
    t0 = clock()
    for _ in range(n):
        noop()
    t1 = clock()
    for _ in range(n):
        bare()
    t2 = clock()
    return max(0.0, ((t1 - t0) - (t2 - t1)) / n)


def pct(part: float, whole: float) -> str:
    return f"{part / whole * 100:4.1f} %"


def split_run(
    monkeypatch: pytest.MonkeyPatch, run: Callable[[Path], object], path: Path
) -> tuple[float, Timers]:
    timers = Timers()
    with monkeypatch.context() as patch:
        instrument(patch, timers)
        t0 = clock()
        run(path)
        total = clock() - t0
    return total, timers


@pytest.mark.parametrize("height", [1080, 360])
def test_time_split_inside_one_run(benchmark, report, monkeypatch, height: int) -> None:
    spec = broadcast_clip(height, QUICK_CLIP_S if benchmark.disabled else CLIP_S)
    path = clip_path(spec)
    path.read_bytes()
    for run in (decode_only, streamqc, ffmpeg_filters):  # warm: Numba, filters, page cache
        run(path)
    per_call_s = timer_cost_s()
    runs: dict[str, list[tuple[float, Timers]]] = {"decode": [], "streamqc": [], "ffmpeg": []}

    def one_round() -> None:
        runs["decode"].append(split_run(monkeypatch, decode_only, path))
        runs["streamqc"].append(split_run(monkeypatch, streamqc, path))
        runs["ffmpeg"].append(split_run(monkeypatch, ffmpeg_filters, path))

    benchmark.group = "time split inside one run: wall time of one round (3 runs)"
    benchmark.pedantic(one_round, rounds=1 if benchmark.disabled else RUNS, iterations=1)
    if benchmark.disabled:
        return

    media_s = spec.duration_s

    def ms(seconds: list[float]) -> float:
        return statistics.median(seconds) / media_s * 1e3

    def outside_decode(name: str) -> tuple[float, float]:
        """Median ms/s of decode and of everything else, timer overhead taken out."""
        decode = [t.seconds[DECODE] for _total, t in runs[name]]
        rest = [
            total - t.seconds[DECODE] - per_call_s * sum(t.calls.values())
            for total, t in runs[name]
        ]
        return ms(decode), ms(rest)

    sq_runs = runs["streamqc"]
    labels = [label for label in sq_runs[0][1].seconds if label != DECODE]
    rest_s = [
        total - sum(t.seconds.values()) - per_call_s * sum(t.calls.values()) for total, t in sq_runs
    ]
    decode_ms, sq_ms = outside_decode("streamqc")
    bare_decode_ms, bare_ms = outside_decode("decode")
    ff_decode_ms, ff_ms = outside_decode("ffmpeg")

    lines = [
        f"{'streamqc analyze(), default channel':<62} {'ms/s':>6} {'µs/call':>8}"
        f" {'calls/s':>8} {'of decode':>9}",
        f"{DECODE:<62} {decode_ms:6.1f}",
    ]
    components: dict[str, float] = {}
    for label in labels:
        seconds = [t.seconds[label] for _total, t in sq_runs]
        calls = sq_runs[0][1].calls[label]
        components[label] = ms(seconds)
        lines.append(
            f"  {label:<60} {ms(seconds):6.2f} {statistics.median(seconds) / calls * 1e6:8.1f}"
            f" {calls / media_s:8.1f} {ms(seconds) / decode_ms * 100:8.1f} %"
        )
    components[REST] = ms(rest_s)
    lines.append(
        f"  {REST:<60} {ms(rest_s):6.2f} {'':>8} {'':>8} {ms(rest_s) / decode_ms * 100:8.1f} %"
    )
    lines += [
        f"streamqc, all but decode: {sq_ms:5.2f} ms/s = {pct(sq_ms, decode_ms)} of its decode"
        f" time; net of the bare loop's floor: {sq_ms - bare_ms:5.2f} ms/s ="
        f" {pct(sq_ms - bare_ms, decode_ms)} (target < 5 %)",
        f"FFmpeg filters, all but decode: {ff_ms:5.2f} ms/s = {pct(ff_ms, ff_decode_ms)} of its"
        f" decode time; net of the floor: {ff_ms - bare_ms:5.2f} ms/s ="
        f" {pct(ff_ms - bare_ms, ff_decode_ms)}",
        f"bare PyAV decode loop, all but decode: {bare_ms:5.2f} ms/s"
        f" ({bare_decode_ms:.1f} ms/s decode): the floor of any Python loop over the packets",
        f"(median of {len(sq_runs)} runs each; the timers' own cost, {per_call_s * 1e6:.2f} µs"
        " per timed call, is taken out of the totals, not of the components)",
    ]
    benchmark.extra_info.update(
        clip=spec.name,
        runs=len(sq_runs),
        decode_ms_per_media_s=decode_ms,
        streamqc_components_ms_per_media_s=components,
        streamqc_outside_decode_ms_per_media_s=sq_ms,
        streamqc_outside_decode_ratio=sq_ms / decode_ms,
        ffmpeg_outside_decode_ms_per_media_s=ff_ms,
        ffmpeg_outside_decode_ratio=ff_ms / ff_decode_ms,
        bare_loop_outside_decode_ms_per_media_s=bare_ms,
        streamqc_net_of_floor_ratio=(sq_ms - bare_ms) / decode_ms,
        ffmpeg_net_of_floor_ratio=(ff_ms - bare_ms) / ff_decode_ms,
        timer_cost_us_per_call=per_call_s * 1e6,
    )
    report.add(
        f"time split inside one run, {spec.width}x{spec.height}p{spec.fps}"
        f" ({media_s:g} s clip; wall-clock timers, exclusive times, median of {RUNS} runs)",
        *lines,
    )
