"""What monitoring a whole HLS ladder costs against monitoring its top rendition alone.

Three renditions of the benchmark content (1080p25 6 Mbit/s, 720p25 3 Mbit/s, 360p25
0.8 Mbit/s, each with AAC stereo), decoded in one process as a live session does: each
through its own ``MediaSource`` and ``ChannelPipeline`` (black, freeze, silence, presence on
every rendition), items handed over in presentation order across the renditions, every
picture also offered to the ``RenditionMismatchCheck`` (``rendition_mismatch``). Variants:

  top        the 1080p rendition alone (decode + its checks)
  ladder     all three, the smaller two decoding reference pictures only (the default
             ``ladder_pictures: reference``), compared at their keyframes
  keyframes  the same with ``ladder_pictures: keyframes``
  all        the same with every picture of every rendition decoded, compared 5 times a second

CPU seconds per media second, rounds interleaved in rotating order. Target:
ladder <= 1.3 x top. With ``--benchmark-disable`` one round on 1 s clips, reporting nothing.
"""

from __future__ import annotations

import gc
import heapq
import statistics
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from benchmarks.clips import broadcast_clip, clip_path
from monitor.config import ChannelConfig, default_channel
from monitor.decode.media_source import AudioChunk, MediaSource, Picture, PictureSelection
from monitor.pipeline.channel import ChannelPipeline
from tests.ladderclips import Ladder

CLIP_S = 12.0
QUICK_CLIP_S = 1.0
ROUNDS = 5
HEIGHTS = (1080, 720, 360)


def ladder_channel() -> ChannelConfig:
    channel = default_channel("ladder")
    rule = replace(channel.rendition_mismatch.rule, enabled=True)
    return replace(channel, rendition_mismatch=replace(channel.rendition_mismatch, rule=rule))


def tagged(k: int, source: MediaSource) -> Iterator[tuple[float, int, Picture | AudioChunk]]:
    for item in source:
        yield item.pts_s, k, item


def monitor(paths: dict[str, Path], lower: PictureSelection | None) -> int:
    """Decode and check the renditions (the first is the top one; ``lower`` None: only it).
    Returns the number of comparisons the ladder made."""
    channel = ladder_channel()
    names = list(paths) if lower is not None else list(paths)[:1]
    comparator = (
        Ladder(channel, lambda e: None, keyframes=lower != "all") if len(names) > 1 else None
    )
    sources = [
        MediaSource(str(paths[name]), threads=1, pictures="all" if k == 0 else lower or "all")
        for k, name in enumerate(names)
    ]
    try:
        pipelines = [
            ChannelPipeline(
                channel,
                "primary",
                lambda e: None,
                audio_streams=[s for s in source.stream_infos() if s.kind == "audio"],
                rendition=name,
            )
            for name, source in zip(names, sources, strict=True)
        ]
        streams = [tagged(k, source) for k, source in enumerate(sources)]
        for _, k, item in heapq.merge(*streams, key=lambda entry: (entry[0], entry[1])):
            pipelines[k].process(item)
            if comparator is not None and type(item) is Picture:
                comparator.picture(names[k], item, pipelines[k])
        for pipeline in pipelines:
            pipeline.finish()
    finally:
        for source in sources:
            source.close()
    return comparator.comparisons if comparator is not None else 0


def test_ladder_cost_over_its_top_rendition(benchmark, report) -> None:
    quick = benchmark.disabled
    duration_s = QUICK_CLIP_S if quick else CLIP_S
    specs = {f"{h}p": broadcast_clip(h, duration_s) for h in HEIGHTS}
    paths = {name: clip_path(spec) for name, spec in specs.items()}
    for path in paths.values():
        path.read_bytes()
    variants: dict[str, PictureSelection | None] = {
        "top": None,
        "ladder": "reference",
        "keyframes": "keyframes",
        "all": "all",
    }
    monitor(paths, "reference")  # load kernels and decoders outside the timing
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    comparisons: dict[str, int] = {}
    done = 0

    def one_round() -> None:
        nonlocal done
        names = list(variants)
        k = done % len(names)
        for name in names[k:] + names[:k]:
            gc.collect()
            t0 = time.process_time()
            comparisons[name] = monitor(paths, variants[name])
            cpu[name].append(time.process_time() - t0)
        done += 1

    benchmark.group = "ladder cost: wall time of one round of all variants"
    benchmark.pedantic(one_round, rounds=1 if quick else ROUNDS, iterations=1)
    # A 1 s clip holds one keyframe, the first picture, which no rung has measured yet: only
    # the variant that compares every picture compares anything there.
    assert comparisons["all"] > 0, comparisons
    if quick:
        return
    assert comparisons["ladder"] > 0 and comparisons["keyframes"] > 0, comparisons

    ms = {n: statistics.median(t) / duration_s * 1e3 for n, t in cpu.items()}
    x_top = {n: ms[n] / ms["top"] for n in ms}
    benchmark.extra_info.update(ms_per_media_s=ms, x_top=x_top, comparisons=comparisons)
    labels = {
        "top": "1080p alone, its checks",
        "ladder": "1080p + 720p + 360p, smaller rungs I/P only (default)",
        "keyframes": "the same, smaller rungs keyframes only",
        "all": "the same, every picture of every rung",
    }
    lines = [f"{'variant':<56} {'ms/s':>7} {'x top':>6} {'comparisons':>12}"]
    lines += [
        f"{labels[n]:<56} {ms[n]:7.1f} {x_top[n]:6.2f} {comparisons[n]:>12}" for n in variants
    ]
    lines.append(
        f"whole ladder = {x_top['ladder']:.2f} x the top rendition (target <= 1.3: "
        f"{'met' if x_top['ladder'] <= 1.3 else 'NOT met'})"
    )
    report.add(
        f"ladder cost: black, freeze, silence, presence on every rung + rendition_mismatch,"
        f" {duration_s:g} s clips, {done} interleaved rounds, CPU per media second",
        *lines,
    )
