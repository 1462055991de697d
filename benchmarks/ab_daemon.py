"""Two source trees side by side in one run: the worker CPU per channel of each.

    git worktree add /tmp/base <commit>
    python -m benchmarks.ab_daemon --height 360 --channels 12 /tmp/base .

Each tree runs its own daemon (one worker, ``--channels`` live UDP feeds of the same clip,
from one PCR-paced player process, one Mosquitto). Both share the machine at the same time,
so whatever else runs on it weighs on both alike: the ratio holds on a busy machine where two
runs one after the other differ by ±15 %. Prints each worker's CPU per channel, split by
thread kind (decode, unit = the channel's control loop and checks, udp = the reader), and the
slowest channel's frame rate (a channel below 25 fps is not keeping up, and its CPU says
nothing).
"""

from __future__ import annotations

import argparse
import collections
import os
import tempfile
import time
from pathlib import Path

from benchmarks.clips import clip_path
from benchmarks.daemon_load import (
    BenchDaemon,
    FedChannel,
    per_channel,
    play_staggered,
    threads_cpu_s,
)
from benchmarks.profile_daemon import CLIPS, dumped_thread_names
from tests.mqttbroker import Mosquitto


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trees", nargs="+", type=Path, help="source trees (checkouts)")
    parser.add_argument("--height", type=int, default=360, choices=sorted(CLIPS))
    parser.add_argument("--channels", type=int, default=12, help="per tree")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=15.0)
    args = parser.parse_args()
    clip = clip_path(CLIPS[args.height])
    work = Path(tempfile.mkdtemp(prefix="streamqc-ab-"))
    os.chdir(work)  # python -m puts the working directory ahead of PYTHONPATH
    broker = Mosquitto(work / "broker").start()
    runs: list[tuple[Path, BenchDaemon, list[FedChannel]]] = []
    player = None
    try:
        for i, tree in enumerate(args.trees):
            channels = [FedChannel(f"t{i}c{k:03d}", clip) for k in range(args.channels)]
            daemon = BenchDaemon(work / f"d{i}", channels, broker_url=broker.url, workers=1)
            daemon.env["PYTHONPATH"] = str(tree.resolve())
            runs.append((tree, daemon.start(), channels))
        every = [c for _, _, channels in runs for c in channels]
        for _, daemon, channels in runs:
            daemon.wait_listening([c.port for c in channels], timeout_s=60 + len(every))
        player = play_staggered(clip, every)
        time.sleep(args.warmup)
        pids = [daemon.worker_pids()[0] for _, daemon, _ in runs]
        names = [dumped_thread_names(pid) for pid in pids]
        cpu0, t0 = [threads_cpu_s(pid) for pid in pids], time.monotonic()
        pictures0 = [per_channel(d.metrics(), "streamqc_pictures_total") for _, d, _ in runs]
        time.sleep(args.seconds)
        cpu1, t1 = [threads_cpu_s(pid) for pid in pids], time.monotonic()
        pictures1 = [per_channel(d.metrics(), "streamqc_pictures_total") for _, d, _ in runs]
        wall = t1 - t0
        for i, (tree, _, channels) in enumerate(runs):
            kinds: collections.Counter[str] = collections.Counter()
            for tid, seconds in cpu1[i].items():
                kind = names[i].get(tid, "other").split(" ")[0]
                kinds[kind] += (seconds - cpu0[i].get(tid, 0.0)) / wall * 1000 / len(channels)
            fps = min(
                (pictures1[i].get(c.name, 0.0) - pictures0[i].get(c.name, 0.0)) / wall
                for c in channels
            )
            split = "  ".join(f"{k} {v:.2f}" for k, v in kinds.most_common() if v >= 0.05)
            print(
                f"{str(tree):<24} {sum(kinds.values()):6.1f} ms/s per channel  ({split})"
                f"  slowest channel {fps:.1f} fps"
            )
    finally:
        if player is not None:
            player.stop()
        for _, daemon, _ in runs:
            daemon.stop()
        broker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
