"""The probe tier: what a channel at ``pictures: keyframes`` costs, against its decode floor.

On the 1080p25 6 Mbit/s benchmark clip played five times in a row (60 s, one timeline, stream
copied: ``clips.looped_clip_path``), each round runs, in rotating order:

  floor  plain PyAV demux + decode with ``skip_frame='NONKEY'`` on the video (its keyframes,
         one every 2 s) and every audio frame: nothing else
  probe  ``analyze()`` of an input at ``pictures: keyframes`` with black, freeze, silence,
         loudness (with true peak) and presence on: the whole path a probe-tier channel runs
         in a worker, minus the live ingest (UDP reader, TR 101 290, input loss)

Costs are CPU seconds (``time.process_time``: every thread of the process) per media second,
one decoder thread. The issue's goal is 12 ms/s of worker CPU per channel (80 channels per
core), about twice the keyframes + audio floor.
"""

from __future__ import annotations

import dataclasses
import statistics
from functools import partial
from pathlib import Path

import pytest

from benchmarks.clips import broadcast_clip, looped_clip_path
from benchmarks.runners import interleaved, open_single_threaded
from monitor.alarms.engine import AlarmEvent
from monitor.config import ChannelConfig, InputConfig, default_channel
from monitor.pipeline.analyze import AnalysisSummary, analyze

CLIP_S = 12.0
COPIES = 5
ROUNDS = 8
QUICK_CLIP_S = 1.0  # with benchmarks disabled: one round on a short clip, as a smoke test

FLOOR = "decode floor: keyframes (skip_frame NONKEY) + all audio, PyAV, nothing else"
PROBE = "streamqc analyze(), pictures: keyframes; black, freeze, silence, loudness, presence"


def probe_channel() -> ChannelConfig:
    channel = default_channel("probe")
    loudness = dataclasses.replace(
        channel.loudness, rule=dataclasses.replace(channel.loudness.rule, enabled=True)
    )
    return dataclasses.replace(channel, loudness=loudness)


def keyframes_floor(path: Path) -> None:
    """Demux everything, decode the keyframes and the audio: what any probe pays."""
    with open_single_threaded(path) as container:
        container.streams.video[0].codec_context.skip_frame = "NONKEY"
        streams = [container.streams.video[0], *container.streams.audio]
        for packet in container.demux(streams):
            for _frame in packet.decode():
                pass


def probe(path: Path) -> AnalysisSummary:
    events: list[AlarmEvent] = []
    source = InputConfig(str(path), pictures="keyframes")
    return analyze(str(path), probe_channel(), events.append, threads=1, source=source)


def test_probe_tier_cost_against_its_floor(benchmark, report) -> None:
    quick = benchmark.disabled
    spec = broadcast_clip(1080, QUICK_CLIP_S if quick else CLIP_S)
    copies = 1 if quick else COPIES
    path = looped_clip_path(spec, copies)
    path.read_bytes()  # into the page cache
    summary = probe(path)  # also loads Numba's cached kernels outside any timing
    # It measured something: one picture per keyframe, and each copy's silence, where it is;
    # and the sparse pictures were not taken for missing media.
    assert summary.pictures <= copies * spec.duration_s / 2 + 1, summary.pictures
    alarms = {e.alarm for e in summary.events}
    assert not alarms & {"video_missing", "audio_missing"}, summary.events
    assert spec.silence_s is not None
    silences = [e.start for e in summary.events if e.alarm == "silence" and e.state == "raised"]
    if not quick:
        starts = [spec.silence_s[0] + k * spec.duration_s for k in range(copies)]
        assert silences == pytest.approx(starts, abs=0.1), silences
    benchmark.group = "probe tier: wall time of one round of both variants"
    runs = {"floor": partial(keyframes_floor, path), "probe": partial(probe, path)}
    cpu = interleaved(benchmark, runs, 1 if quick else ROUNDS)
    if quick:
        return

    media_s = copies * spec.duration_s
    ms = {n: statistics.median(t) / media_s * 1e3 for n, t in cpu.items()}
    ms_min = {n: min(t) / media_s * 1e3 for n, t in cpu.items()}
    ratios = sorted(p / f for f, p in zip(cpu["floor"], cpu["probe"], strict=True))
    per_core = 1000 / ms["probe"]
    benchmark.extra_info.update(
        clip=path.name,
        media_s=media_s,
        rounds=len(cpu["floor"]),
        pictures=summary.pictures,
        cpu_ms_per_media_s_median=ms,
        cpu_ms_per_media_s_min=ms_min,
        probe_over_floor=ms["probe"] / ms["floor"],
        channels_per_core=per_core,
        cpu_s_per_run=cpu,
    )
    verdict = "within" if ms["probe"] <= 12.0 else "ABOVE"
    report.add(
        f"probe tier, {spec.width}x{spec.height}p{spec.fps} H.264 {spec.video_kbps} kbit/s"
        f" + AAC stereo, {media_s:g} s ({copies} x {spec.duration_s:g} s, GOP 2 s),"
        f" {len(cpu['floor'])} interleaved rounds, 1 decoder thread, CPU ms per media second",
        f"{'variant':<82} {'median':>7} {'min':>7}",
        f"{FLOOR:<82} {ms['floor']:7.2f} {ms_min['floor']:7.2f}",
        f"{PROBE:<82} {ms['probe']:7.2f} {ms_min['probe']:7.2f}",
        f"probe / floor: {ms['probe'] / ms['floor']:.2f}x (per round {ratios[0]:.2f}"
        f" .. {ratios[-1]:.2f}); {verdict} the 12 ms/s goal; {per_core:.0f} such channels"
        " per core at 100 % (decode + checks, without the live ingest)",
    )
