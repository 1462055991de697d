"""Full monitoring of one rendition against the decode floor and against FFmpeg's own tools.

On one cached clip per size (1080p25, 720p25, 360p25; H.264 + AAC stereo), each round runs:

  decode    plain PyAV demux + decode of the video and audio streams, nothing else
  default   ``analyze()`` with the default channel: black, freeze, silence, presence
  full      ``analyze()`` with every check a channel can have on one rendition: black,
            freeze, silence, presence, loudness (EBU R128 with true peak), one graphic
            (learned logo), A/V sync (content mode)
  ffmpeg    the FFmpeg command line, ``ffmpeg -threads 1 -i CLIP -vf blackdetect,freezedetect
            -af silencedetect,ebur128 -f null -`` (a child process; its CPU from rusage)

All with one decoder thread. Costs are CPU seconds per media second; rounds interleave the
variants in rotating order. Targets: full <= 1.11 x decode; full < ffmpeg (<= 0.9).
Without the ``ffmpeg`` command the last variant is left out. With ``--benchmark-disable``
(CI) one round on a 1 s clip, reporting nothing.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
from collections.abc import Callable
from functools import cache, partial
from pathlib import Path

import pytest

from benchmarks.clips import broadcast_clip, clip_path
from benchmarks.runners import decode_only, interleaved, streamqc
from monitor.config import ChannelConfig, load_config

CLIP_S = 12.0
QUICK_CLIP_S = 1.0
ROUNDS = {1080: 6, 720: 8, 360: 12}

FULL_CHANNEL = """\
version: 1
site: bench
channels:
  - name: full
    inputs: {primary: {url: "udp://127.0.0.1:5000"}}
    detectors:
      loudness: {enabled: true, preset: ebu_r128}
      av_sync: {enabled: true, preset: ebu_r37}
      graphics:
        - name: logo
          roi: [0.80, 0.02, 0.19, 0.16]
          learn: 10s
"""

FFMPEG_ARGS = [
    "-nostdin",
    "-hide_banner",
    "-loglevel",
    "error",
    "-threads",
    "1",
    "-filter_threads",
    "1",
]


@cache
def full_channel(folder: str) -> ChannelConfig:
    path = Path(folder) / "full.yaml"
    path.write_text(FULL_CHANNEL)
    return load_config(path).channels[0]


def ffmpeg_cli(path: Path) -> None:
    command = [
        "ffmpeg",
        *FFMPEG_ARGS,
        "-i",
        str(path),
        "-vf",
        "blackdetect,freezedetect",
        "-af",
        "silencedetect,ebur128",
        "-f",
        "null",
        "-",
    ]
    subprocess.run(command, check=True, timeout=600, stdin=subprocess.DEVNULL)


Run = Callable[[Path], object]


@pytest.mark.parametrize("height", [1080, 720, 360])
def test_full_monitoring_cost(benchmark, report, tmp_path_factory, height: int) -> None:
    quick = benchmark.disabled
    spec = broadcast_clip(height, QUICK_CLIP_S if quick else CLIP_S)
    path = clip_path(spec)
    path.read_bytes()
    channel = full_channel(str(tmp_path_factory.mktemp("full")))

    def full(p: Path) -> object:
        return streamqc(p, channel)

    variants: dict[str, tuple[str, Run]] = {
        "decode": ("decode only (PyAV, video + audio)", decode_only),
        "default": ("streamqc, default channel", streamqc),
        "full": ("streamqc, every check of one rendition", full),
    }
    if shutil.which("ffmpeg"):
        variants["ffmpeg"] = (
            "ffmpeg CLI: blackdetect,freezedetect,silencedetect,ebur128",
            ffmpeg_cli,
        )
    for _, run in variants.values():  # load kernels, filters and the page cache
        run(clip_path(broadcast_clip(360, QUICK_CLIP_S)))

    benchmark.group = "full monitoring: wall time of one round of all variants"
    runs = {name: partial(run, path) for name, (_, run) in variants.items()}
    cpu = interleaved(benchmark, runs, 1 if quick else ROUNDS[height])
    done = len(cpu["decode"])
    assert all(len(v) == done > 0 for v in cpu.values())
    if quick:
        return

    ms = {n: statistics.median(t) / spec.duration_s * 1e3 for n, t in cpu.items()}
    per_round = {
        n: statistics.median(b / a for a, b in zip(cpu["decode"], t, strict=True))
        for n, t in cpu.items()
    }
    benchmark.extra_info.update(clip=spec.name, ms_per_media_s=ms, x_decode=per_round, cpu=cpu)
    lines = [f"{'variant':<62} {'ms/s':>7} {'x decode':>9} {'per round':>10}"]
    for name, (label, _) in variants.items():
        lines.append(
            f"{label:<62} {ms[name]:7.1f} {ms[name] / ms['decode']:9.3f} {per_round[name]:10.3f}"
        )
    x_full = ms["full"] / ms["decode"]
    lines.append(
        f"full monitoring = {x_full:.3f} x decode (target <= 1.11: "
        f"{'met' if x_full <= 1.11 else 'NOT met'})"
    )
    if "ffmpeg" in ms:
        vs = ms["full"] / ms["ffmpeg"]
        lines.append(
            f"full monitoring / ffmpeg CLI = {vs:.3f} (target <= 0.9: "
            f"{'met' if vs <= 0.9 else 'NOT met'})"
        )
    report.add(
        f"full monitoring, {spec.width}x{spec.height}p{spec.fps} H.264 {spec.video_kbps} kbit/s"
        f" + AAC stereo, {spec.duration_s:g} s clip, {done} interleaved rounds, CPU per media s",
        *lines,
    )
