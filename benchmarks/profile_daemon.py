"""Profile a loaded daemon worker: N live UDP feeds into ``streamqc run``, py-spy on a worker.

    python -m benchmarks.profile_daemon --height 360 --channels 16 --seconds 20 --out prof/

Starts a real Mosquitto, the daemon (one worker unless ``--workers``) and the PCR-paced
player process of ``daemon_load``, waits for every channel to decode plus a warm-up, then
records the worker with py-spy (``--native`` for the C frames: PyAV, FFmpeg, Numba) and
prints each thread's CPU over the window, grouped by thread name. The flame graph
(``profile.svg``) and py-spy's raw collapsed stacks (``profile.txt``) go to ``--out``;
``top_frames`` below sums the collapsed stacks by their innermost Python frame.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.clips import ClipSpec, clip_path
from benchmarks.daemon_load import (
    BenchDaemon,
    FedChannel,
    per_channel,
    play_staggered,
    threads_cpu_s,
)
from tests.mqttbroker import Mosquitto

CLIPS = {
    360: ClipSpec(640, 360, 800, 60.0),
    720: ClipSpec(1280, 720, 3000, 60.0),
    1080: ClipSpec(1920, 1080, 6000, 60.0),
}


def spy_thread_names(collapsed: Path) -> dict[int, str]:
    """Thread id -> the Python thread's name, from py-spy's ``--threads`` stacks."""
    out = {}
    for line in collapsed.read_text().splitlines():
        m = re.match(r"thread \((\d+)\): ([^;]+)", line)
        if m:
            out[int(m.group(1))] = m.group(2).strip()
    return out


def dumped_thread_names(pid: int) -> dict[int, str]:
    """Thread id -> the Python thread's name, from one ``py-spy dump``."""
    out = subprocess.run(
        ["py-spy", "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=60
    ).stdout
    return {int(m[1]): m[2] for m in re.finditer(r"Thread (\d+) \(\w+\): \"([^\"]*)\"", out)}


def top_frames(collapsed: Path, limit: int = 30) -> list[tuple[str, float]]:
    """Share of samples by innermost frame that is not a C frame of the interpreter."""
    counts: collections.Counter[str] = collections.Counter()
    total = 1
    for line in collapsed.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        total += int(n)
        leaf = next(
            (f for f in reversed(frames) if ".py" in f or "libav" in f or "numba" in f), frames[-1]
        )
        counts[re.sub(r"\s*\(.*?\)$", "", leaf) + _where(leaf)] += int(n)
    return [(k, v / total) for k, v in counts.most_common(limit)]


def _where(frame: str) -> str:
    m = re.search(r"\((\S+?):\d+\)", frame)
    return f"  [{Path(m.group(1)).name}]" if m else ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--height", type=int, default=360, choices=sorted(CLIPS))
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument("--native", action="store_true", help="py-spy --native")
    parser.add_argument("--gil", action="store_true", help="py-spy --gil: the GIL's holder only")
    parser.add_argument("--rate", type=int, default=50)
    parser.add_argument("--no-spy", action="store_true", help="only the threads' CPU")
    parser.add_argument("--pictures", default="all", choices=["all", "reference", "keyframes"])
    parser.add_argument("--batch-ms", type=int, default=None, help="the inputs' batch_ms")
    parser.add_argument("--extra", default="", help="more top-level daemon YAML")
    parser.add_argument("--out", type=Path, default=Path("profile-out"))
    args = parser.parse_args()
    if shutil.which("py-spy") is None:
        print("profile_daemon: py-spy is not installed (pip install py-spy)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    clip = clip_path(CLIPS[args.height])
    work = Path(tempfile.mkdtemp(prefix="streamqc-profile-"))
    broker = Mosquitto(work / "broker").start()
    query = f"?batch_ms={args.batch_ms}" if args.batch_ms is not None else ""
    channels = [
        FedChannel(f"c{k:03d}", clip, pictures=args.pictures, query=query)
        for k in range(args.channels)
    ]
    daemon = BenchDaemon(
        work / "daemon", channels, broker_url=broker.url, workers=args.workers, extra=args.extra
    )
    player = None
    try:
        daemon.start()
        daemon.wait_listening([c.port for c in channels], timeout_s=60 + args.channels)
        n = args.channels
        player = play_staggered(clip, channels)
        deadline = time.monotonic() + 30 + n * 0.2
        while time.monotonic() < deadline:
            pictures = per_channel(daemon.metrics(), "streamqc_pictures_total")
            if sum(v > 0 for v in pictures.values()) == n:
                break
            time.sleep(0.25)
        time.sleep(args.warmup)
        pid = daemon.worker_pids()[0]
        cpu0, t0 = threads_cpu_s(pid), time.monotonic()
        svg, raw = args.out / "profile.svg", args.out / "profile.txt"
        common = ["py-spy", "record", "--pid", str(pid), "--duration", str(int(args.seconds))]
        common += ["--threads", "--rate", str(args.rate)]
        common += [] if args.native else ["--nonblocking"]
        common += ["--native"] if args.native else []
        common += ["--gil"] if args.gil else []
        if args.no_spy:
            time.sleep(args.seconds)
            raw.write_text("")
        else:
            subprocess.run([*common, "--format", "raw", "-o", str(raw)], check=True, timeout=600)
        cpu1, t1 = threads_cpu_s(pid), time.monotonic()
        pictures = per_channel(daemon.metrics(), "streamqc_pictures_total")
        names = spy_thread_names(raw) or dumped_thread_names(pid)
        by_name: collections.Counter[str] = collections.Counter()
        for tid, v in cpu1.items():
            name = names.get(tid, "?").split(" ")[0]
            by_name[name] += (v - cpu0.get(tid, 0.0)) / (t1 - t0) * 1000
        total = sum(by_name.values())
        print(f"worker {pid}: {total:.0f} ms/s over {t1 - t0:.1f} s, {total / n:.1f} per channel")
        for name, ms in by_name.most_common():
            if ms >= 0.5:
                print(f"  {name:<24} {ms:7.1f} ms/s  {ms / n:6.2f} per channel")
        print(f"channels decoding: {sum(v > 0 for v in pictures.values())} of {n}")
        print("innermost frames, share of samples:")
        for frame, share in top_frames(raw):
            print(f"  {share:6.1%}  {frame}")
        subprocess.run(
            ["py-spy", "record", "--pid", str(pid), "--duration", "3", "-o", str(svg)]
            if not args.no_spy
            else ["true"],
            check=False,
            capture_output=True,
            timeout=60,
        )
    finally:
        if player is not None:
            player.stop()
        daemon.stop()
        broker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
