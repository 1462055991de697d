"""What detection costs on top of decoding: streamqc's whole analyze path vs FFmpeg's filters.

On one cached clip, in the same process, each round runs every variant once:

  decode    plain PyAV demux + decode of the video and audio streams, nothing else (no numpy)
  streamqc  ``analyze()`` with the default channel: every detector and the alarm engine
  all_rows  (1080p only) the same with ``row_step=1``: every picture row, as FFmpeg's filters
            read; at 360p the automatic row step already is 1
  ffmpeg    decode + FFmpeg's own blackdetect, freezedetect (video) and silencedetect (audio)
            through PyAV's libavfilter, at their defaults, filter graphs single-threaded

Costs are CPU seconds (``time.process_time``, every thread of the process) per media second,
with one decoder thread everywhere. Rounds interleave the variants, rotating their order, so
the VM's slow phases spread over all of them; the table gives the median and the minimum over
the rounds, and the overhead of each round against the same round's decode-only run. Whole
runs on this VM vary by ±5-10 %, so these differences are coarse: test_breakdown.py splits
the time inside single runs, which is far steadier.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from benchmarks.clips import ClipSpec, broadcast_clip, clip_path
from benchmarks.runners import (
    decode_only,
    ffmpeg_filters,
    interleaved,
    streamqc,
    streamqc_all_rows,
)

CLIP_S = 12.0
ROUNDS = {1080: 8, 360: 12}
QUICK_CLIP_S = 1.0  # with benchmarks disabled: one round on a short clip, as a smoke test

Run = Callable[[Path], object]

DECODE = ("decode only (PyAV demux + decode, video + audio)", decode_only)
STREAMQC = ("streamqc analyze(), default channel (auto row step)", streamqc)
ALL_ROWS = ("streamqc analyze(), row_step=1 (every row)", streamqc_all_rows)
FFMPEG = ("decode + FFmpeg blackdetect, freezedetect, silencedetect", ffmpeg_filters)

VARIANTS: dict[int, dict[str, tuple[str, Run]]] = {
    1080: {"decode": DECODE, "streamqc": STREAMQC, "all_rows": ALL_ROWS, "ffmpeg": FFMPEG},
    360: {"decode": DECODE, "streamqc": STREAMQC, "ffmpeg": FFMPEG},
}


@pytest.fixture(scope="module")
def warmed() -> None:
    """Load Numba's cached kernels, PyAV's filters and the decoders once, outside any timing."""
    path = clip_path(broadcast_clip(360, QUICK_CLIP_S))
    for _label, run in VARIANTS[1080].values():
        run(path)


def check_silence_found(spec: ClipSpec, path: Path) -> None:
    """Both sides must find the clip's silence: a detector that found nothing may have
    measured nothing."""
    assert spec.silence_s is not None
    start_s, end_s = spec.silence_s
    if end_s - start_s < 2.5:  # shorter than the 2 s hold-offs: nothing to find
        return
    raised = [e for e in streamqc(path) if e.alarm == "silence" and e.state == "raised"]
    assert len(raised) == 1 and abs(raised[0].start - start_s) < 0.1, raised
    found = ffmpeg_filters(path)
    assert len(found) == 1 and abs(float(found[0]) - start_s) < 0.1, found


def pct(ratio: float) -> str:
    return f"{ratio * 100:+5.1f} %"


@pytest.mark.parametrize("height", [1080, 360])
def test_detection_overhead_over_decode(benchmark, report, warmed, height: int) -> None:
    spec = broadcast_clip(height, QUICK_CLIP_S if benchmark.disabled else CLIP_S)
    path = clip_path(spec)
    path.read_bytes()  # into the page cache
    check_silence_found(spec, path)
    variants = VARIANTS[height]
    benchmark.group = "analyze overhead: wall time of one round of all variants"
    runs = {name: partial(run, path) for name, (_, run) in variants.items()}
    cpu = interleaved(benchmark, runs, ROUNDS[height])
    if benchmark.disabled:
        return

    media_s = spec.duration_s
    ms = {n: statistics.median(t) / media_s * 1e3 for n, t in cpu.items()}
    ms_min = {n: min(t) / media_s * 1e3 for n, t in cpu.items()}
    per_round = {
        n: sorted(b / a - 1 for a, b in zip(cpu["decode"], t, strict=True))
        for n, t in cpu.items()
        if n != "decode"
    }
    overhead = {n: ms[n] / ms["decode"] - 1 for n in per_round}
    detection_ms = ms["streamqc"] - ms["decode"]
    ffmpeg_ms = ms["ffmpeg"] - ms["decode"]
    vs_ffmpeg = ms["streamqc"] / ms["ffmpeg"] - 1
    benchmark.extra_info.update(
        clip=spec.name,
        media_s=media_s,
        rounds=len(cpu["decode"]),
        cpu_ms_per_media_s_median=ms,
        cpu_ms_per_media_s_min=ms_min,
        overhead_over_decode=overhead,
        overhead_per_round_median={n: statistics.median(r) for n, r in per_round.items()},
        streamqc_detection_ms_per_media_s=detection_ms,
        ffmpeg_detection_ms_per_media_s=ffmpeg_ms,
        streamqc_vs_ffmpeg=vs_ffmpeg,
        cpu_s_per_run=cpu,
    )

    lines = [
        f"{'variant':<58} {'median':>7} {'min':>7} {'vs decode':>10}   per round: median [range]",
        f"{variants['decode'][0]:<58} {ms['decode']:7.1f} {ms_min['decode']:7.1f}",
    ]
    for name, r in per_round.items():
        lines.append(
            f"{variants[name][0]:<58} {ms[name]:7.1f} {ms_min[name]:7.1f} {pct(overhead[name]):>10}"
            f"   {pct(statistics.median(r))} [{pct(r[0])} .. {pct(r[-1])}]"
        )
    verdict = "within" if overhead["streamqc"] < 0.05 else "ABOVE"
    lines += [
        f"streamqc detection: {detection_ms:.1f} ms/s = {pct(overhead['streamqc'])} over decode"
        f" ({verdict} the 5 % target); FFmpeg's filters: {ffmpeg_ms:.1f} ms/s ="
        f" {pct(overhead['ffmpeg'])}; streamqc vs FFmpeg, total CPU: {pct(vs_ffmpeg)}",
    ]
    report.add(
        f"analyze overhead, {spec.width}x{spec.height}p{spec.fps} H.264 {spec.video_kbps} kbit/s"
        f" + AAC stereo, {media_s:g} s clip, {len(cpu['decode'])} interleaved rounds,"
        " 1 decoder thread, CPU ms per media second",
        *lines,
    )
