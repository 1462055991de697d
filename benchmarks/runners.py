"""The workloads the overhead benchmarks compare, each a function of the clip's path.

All decode with one decoder thread (``thread_type='NONE'``, as ``MediaSource(threads=1)``) and
demux the same streams (the video and every audio stream).
"""

from __future__ import annotations

import dataclasses
import gc
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import av.error
import av.filter

from monitor.alarms.engine import AlarmEvent
from monitor.config import ChannelConfig, default_channel
from monitor.decode.media_source import PROBE_OPTIONS
from monitor.pipeline.analyze import analyze


def open_single_threaded(path: Path) -> av.container.InputContainer:
    container = av.open(str(path), options=dict(PROBE_OPTIONS))
    cc = container.streams.video[0].codec_context
    cc.thread_type = "NONE"
    cc.thread_count = 1
    return container


def decode_only(path: Path) -> None:
    """Plain PyAV demux + decode of video and audio: no numpy, no detectors."""
    with open_single_threaded(path) as container:
        streams = [container.streams.video[0], *container.streams.audio]
        for packet in container.demux(streams):
            for _frame in packet.decode():
                pass


def streamqc(path: Path, channel: ChannelConfig | None = None) -> list[AlarmEvent]:
    """``streamqc analyze``: decode, every detector of the channel, the alarm engine."""
    events: list[AlarmEvent] = []
    analyze(str(path), channel or default_channel(), events.append, threads=1)
    return events


def streamqc_all_rows(path: Path) -> list[AlarmEvent]:
    return streamqc(path, dataclasses.replace(default_channel(), row_step=1))


def _drain(sink: av.filter.context.FilterContext, found: list[str] | None = None) -> None:
    while True:
        try:
            frame = sink.pull()
        except (av.error.BlockingIOError, av.error.EOFError):
            return
        if found is not None and "lavfi.silence_start" in frame.metadata:
            found.append(frame.metadata["lavfi.silence_start"])


def ffmpeg_filters(path: Path) -> list[str]:
    """Decode + FFmpeg's blackdetect and freezedetect (video) and silencedetect (audio) at the
    CLI's defaults, through PyAV's libavfilter. Returns the silence starts found."""
    silences: list[str] = []
    with open_single_threaded(path) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]

        vgraph = av.filter.Graph()
        vgraph.threads = 1  # as `ffmpeg -filter_threads 1`; blackdetect is slice-threaded
        vsrc = vgraph.add_buffer(template=video)
        vsink = vgraph.add("buffersink")
        vgraph.link_nodes(
            vsrc,
            vgraph.add("blackdetect", "d=2:pic_th=0.98:pix_th=0.10"),
            vgraph.add("freezedetect", "n=-60dB:d=2"),
            vsink,
        ).configure()

        agraph = av.filter.Graph()
        agraph.threads = 1
        asrc = agraph.add_abuffer(template=audio)
        asink = agraph.add("abuffersink")
        agraph.link_nodes(asrc, agraph.add("silencedetect", "n=-60dB:d=2"), asink).configure()

        for packet in container.demux(video, audio):
            is_video = packet.stream.index == video.index
            for frame in packet.decode():
                if is_video:
                    vsrc.push(frame)
                    _drain(vsink)
                else:
                    asrc.push(frame)
                    _drain(asink, silences)
        vsrc.push(None)
        asrc.push(None)
        _drain(vsink)
        _drain(asink, silences)
    return silences


def cpu_seconds(run: Callable[[], object]) -> float:
    """CPU seconds ``run()`` took: every thread of this process, plus the child processes it
    waited for (the FFmpeg command line)."""
    gc.collect()
    t0, c0 = time.process_time(), _children_cpu_s()
    run()
    return time.process_time() - t0 + _children_cpu_s() - c0


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def interleaved(
    benchmark: Any, runs: dict[str, Callable[[], object]], rounds: int
) -> dict[str, list[float]]:
    """CPU seconds of every run in each round. Each round starts one run later than the one
    before, so the machine's slow phases spread over all of them. The pytest-benchmark row is
    the wall time of one round of all runs; the numbers that matter are these."""
    names = list(runs)
    cpu: dict[str, list[float]] = {name: [] for name in names}

    def one_round() -> None:
        k = len(cpu[names[0]]) % len(names)
        for name in names[k:] + names[:k]:
            cpu[name].append(cpu_seconds(runs[name]))

    benchmark.pedantic(one_round, rounds=rounds, iterations=1, warmup_rounds=0)
    return cpu
