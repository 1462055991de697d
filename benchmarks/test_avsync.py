"""What the A/V sync check costs against decoding the same media, measured in one run.

On the cached benchmark clip, each round runs three variants, rotating their order:

  decode    plain PyAV demux + decode of the video and audio streams (benchmarks.runners)
  streamqc  ``analyze()`` with the default channel (av_sync off, as shipped)
  av_sync   the same channel with ``av_sync`` on (method auto, 10 s window, 1 s hop)

Costs are CPU seconds (``time.process_time``) per media second. The difference between the
last two is coarse (whole runs vary by ±5-10 % on this VM), so the av_sync runs also time the
check itself in place: thread CPU time inside ``AvSyncCheck.picture``, ``.audio`` and
``.finish`` (the luma kernel, the onset kernel, the windows' correlation, the Python around
them), which is immune to the other runs and to other processes sharing the CPU.

A second benchmark compares the audio onset envelope with librosa's ``onset_strength`` on the
same audio: librosa stays off the hot path unless it were cheaper (it is not).

The clip has no A/V events (moving noise texture, a steady tone), so no offset is found: the
cost is the steady state every window pays whatever the content.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from benchmarks.clips import broadcast_clip, clip_path
from benchmarks.runners import decode_only, interleaved, streamqc
from monitor.checks.avsync import AvSyncCheck
from monitor.config import AlarmRule, ChannelConfig, DetectorConfig, default_channel

CLIP_S = 12.0
QUICK_CLIP_S = 1.0
ROUNDS = {1080: 6, 360: 10}
SECTION = "A/V sync check: CPU ms per media second, against decode of the same clip"


def av_sync_channel() -> ChannelConfig:
    channel = default_channel()
    return dataclasses.replace(
        channel, av_sync=DetectorConfig(AlarmRule(), channel.av_sync.settings)
    )


class CheckTimer:
    """Thread CPU time spent inside the check's methods (patched for the test's duration)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.seconds = 0.0
        for name in ("picture", "audio", "finish"):
            monkeypatch.setattr(AvSyncCheck, name, self._timed(getattr(AvSyncCheck, name)))

    def _timed(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any) -> Any:
            t0 = time.thread_time()
            try:
                return method(*args)
            finally:
                self.seconds += time.thread_time() - t0

        return timed


@pytest.mark.parametrize("height", [1080, 360])
def test_av_sync_check_cost_against_decode(benchmark, report, monkeypatch, height: int) -> None:
    spec = broadcast_clip(height, QUICK_CLIP_S if benchmark.disabled else CLIP_S)
    path = clip_path(spec)
    path.read_bytes()  # into the page cache
    channel = av_sync_channel()
    timer = CheckTimer(monkeypatch)
    streamqc(path, channel)  # loads the cached Numba code of every kernel
    in_check: list[float] = []

    def av_sync() -> None:
        before = timer.seconds
        streamqc(path, channel)
        in_check.append(timer.seconds - before)

    variants: dict[str, Callable[[], object]] = {
        "decode": lambda: decode_only(path),
        "streamqc": lambda: streamqc(path),
        "av_sync": av_sync,
    }
    benchmark.group = "av_sync: wall time of one round of all variants"
    cpu = interleaved(benchmark, variants, 1 if benchmark.disabled else ROUNDS[height])
    if benchmark.disabled:
        return

    media_s = spec.duration_s
    ms = {name: statistics.median(t) / media_s * 1e3 for name, t in cpu.items()}
    check_ms = statistics.median(in_check) / media_s * 1e3
    whole_ms = ms["av_sync"] - ms["streamqc"]
    benchmark.extra_info.update(
        clip=spec.name,
        cpu_ms_per_media_s_median=ms,
        av_sync_check_ms_per_media_s=check_ms,
        av_sync_check_vs_decode=check_ms / ms["decode"],
        av_sync_whole_run_ms_per_media_s=whole_ms,
        cpu_s_per_run=cpu,
        check_cpu_s_per_run=in_check,
    )
    report.add(
        SECTION,
        f"{spec.width}x{spec.height}p{spec.fps} {spec.video_kbps} kbit/s + AAC stereo,"
        f" {media_s:g} s, {len(in_check)} rounds: decode {ms['decode']:.1f} ms/s,"
        f" analyze {ms['streamqc']:.1f}, analyze + av_sync {ms['av_sync']:.1f}"
        f" (difference {whole_ms:+.1f} ms/s)",
        f"  in place, inside the check: {check_ms:.2f} ms/s ="
        f" {check_ms / ms['decode'] * 100:.1f} % of decode",
    )


def decoded_audio(path: Path) -> list[np.ndarray]:
    """The clip's first audio stream as ~200 ms float32 planar blocks, as the pipeline feeds."""
    blocks, parts, n = [], [], 0
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            parts.append(frame.to_ndarray())
            n += frame.samples
            if n >= 9600:
                blocks.append(np.ascontiguousarray(np.concatenate(parts, axis=1)))
                parts, n = [], 0
    return blocks


def test_onset_envelope_cost_against_librosa(benchmark, report) -> None:
    from detectors.avsync import AvSyncDetector, AvSyncSettings

    spec = broadcast_clip(360, QUICK_CLIP_S if benchmark.disabled else CLIP_S)
    blocks = decoded_audio(clip_path(spec))
    rate = 48_000
    media_s = sum(b.shape[1] for b in blocks) / rate

    def envelope() -> None:
        detector = AvSyncDetector(AvSyncSettings(method="content"))
        t = 0.0
        for block in blocks:
            detector.audio(block, t, rate)
            t += block.shape[1] / rate

    envelope()  # loads the cached kernel
    benchmark.group = "audio onset envelope"
    benchmark.pedantic(envelope, rounds=1 if benchmark.disabled else 20, iterations=1)
    if benchmark.disabled or benchmark.stats is None:
        return
    ours_ms = benchmark.stats.stats.median / media_s * 1e3

    import librosa  # only here: its first call costs seconds (perf.md §6)

    mono = np.concatenate(blocks, axis=1).mean(axis=0)
    librosa.onset.onset_strength(y=mono, sr=rate)  # warm
    times = []
    for _ in range(5):
        t0 = time.process_time()
        librosa.onset.onset_strength(y=mono, sr=rate)
        times.append(time.process_time() - t0)
    librosa_ms = statistics.median(times) / media_s * 1e3
    benchmark.extra_info.update(ours_ms_per_media_s=ours_ms, librosa_ms_per_media_s=librosa_ms)
    report.add(
        SECTION,
        f"audio onset envelope, 48 kHz stereo in 200 ms blocks: {ours_ms:.3f} ms/s (5 ms grid,"
        f" Numba, three bands) vs librosa.onset.onset_strength {librosa_ms:.3f} ms/s"
        f" (mono, 10.7 ms grid): {librosa_ms / ours_ms:.1f}x",
    )
