"""How fast a VOD HLS ladder is analysed, clear and AES-128, over a real HTTP server.

The ladder is ``tests/ladderclips.py``'s scene at 384x216, 256x144 and 192x108 (40 s, the
middle rung garbled over 22-26 s), packaged by Debian's ``ffmpeg`` into 2 s VOD segments,
once in the clear and once with ``-hls_key_info_file`` (AES-128), served by
``tests/ingest/hlsvod.py``'s server on loopback and analysed by a ``LiveSession`` (the path of
``streamqc analyze http://…/master.m3u8``) with ``rendition_mismatch`` on. Rounds alternate
clear and encrypted. Reported: media seconds per wall second (the issue's goal: a VOD asset is
read faster than real time), CPU per media second, and where the fault was found.

With ``--benchmark-disable`` one round on a 6 s ladder, reporting nothing.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pytest

from monitor.config import ChannelConfig
from monitor.demo.synth import Span
from monitor.pipeline.live_session import LiveSession
from tests.ingest.hlsvod import FFMPEG, StaticHlsServer, package_vod
from tests.ladderclips import LadderClip, make_ladder

ROUNDS = 3


def channel() -> ChannelConfig:
    base = ChannelConfig(name="vod")
    rule = replace(base.rendition_mismatch.rule, enabled=True)
    return replace(base, rendition_mismatch=replace(base.rendition_mismatch, rule=rule))


def analyse(url: str) -> tuple[float, float, float, list[dict]]:
    """(media s, wall s, CPU s, events) of one analysis of ``url`` to its end."""
    events: list[dict] = []
    session = LiveSession(url, channel(), lambda e: events.append(e.to_dict()))
    wall0, cpu0 = time.perf_counter(), time.process_time()
    summary = session.run()
    wall_s, cpu_s = time.perf_counter() - wall0, time.process_time() - cpu0
    assert summary.ended, "a VOD ladder is read to its end"
    return summary.media_s, wall_s, cpu_s, events


@pytest.mark.skipif(FFMPEG is None, reason="needs Debian's ffmpeg (.ci/setup)")
def test_vod_ladder_speed_clear_and_aes128(benchmark, report) -> None:
    quick = benchmark.disabled
    clip = (
        LadderClip(duration_s=6.0)
        if quick
        else LadderClip(duration_s=40.0, garbled=((1, Span(22.0, 26.0)),))
    )
    folder = Path(tempfile.mkdtemp(prefix="streamqc-bench-vod-"))
    try:
        files = make_ladder(folder, clip)
        inputs = [files[r.name] for r in clip.rungs]
        roots = {
            "clear": package_vod(inputs, folder / "clear").parent,
            "AES-128": package_vod(inputs, folder / "aes", encrypt=True).parent,
        }
        runs: dict[str, list[tuple[float, float, float, list[dict]]]] = {n: [] for n in roots}
        with StaticHlsServer(roots["clear"]) as clear, StaticHlsServer(roots["AES-128"]) as aes:
            urls = {"clear": clear.url(), "AES-128": aes.url()}
            analyse(urls["clear"])  # kernels and decoders loaded outside the timing
            done = 0

            def one_round() -> None:
                nonlocal done
                names = list(urls)[done % 2 :] + list(urls)[: done % 2]
                for name in names:
                    runs[name].append(analyse(urls[name]))
                done += 1

            benchmark.group = "VOD HLS ladder: one clear and one AES-128 analysis"
            benchmark.pedantic(one_round, rounds=1 if quick else ROUNDS, iterations=1)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if quick:
        return
    lines = [f"{'ladder':<10} {'media s':>8} {'wall s':>7} {'x real time':>12} {'CPU ms/s':>9}"]
    info: dict[str, dict[str, float]] = {}
    for name, results in runs.items():
        media_s = statistics.median(r[0] for r in results)
        wall_s = statistics.median(r[1] for r in results)
        cpu_ms = statistics.median(r[2] / r[0] * 1e3 for r in results)
        info[name] = {"media_s": media_s, "wall_s": wall_s, "cpu_ms_per_media_s": cpu_ms}
        lines.append(
            f"{name:<10} {media_s:8.1f} {wall_s:7.2f} {media_s / wall_s:12.1f} {cpu_ms:9.1f}"
        )
        found = [
            f"{e['rendition']} {e['start']:.2f}-{e['end']:.2f} s"
            for r in results
            for e in r[3]
            if e["alarm"] == "rendition_mismatch" and e["state"] == "cleared"
        ]
        lines.append(f"{'':<10} rendition_mismatch found: {', '.join(found) or 'none'}")
    benchmark.extra_info.update(info)
    report.add(
        f"VOD HLS ladder (3 rungs x {clip.duration_s:g} s, FFmpeg-packaged, 2 s segments),"
        f" {done} interleaved rounds, medians",
        *lines,
        "injected: the 256x144 rung garbled over 22.00-26.00 s",
    )
