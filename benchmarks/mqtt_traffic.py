"""What one daemon publishes to its broker, per channel: messages and bytes a second by kind.

    python -m benchmarks.mqtt_traffic --channels 8 --seconds 60

Live UDP feeds of a 360p clip with black and silence three times each per 44 s loop (a
channel far busier with alarms than one on air), the daemon with its production defaults
(status every 5 s, a thumbnail every 10 s and one per raised alarm), a real Mosquitto, and a
subscriber to ``#`` that counts every message by the last part of its topic. Prints per
channel and per 1,000 channels: the figures for sizing a broker (README, "Past one host").
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import tempfile
import time
from pathlib import Path

from benchmarks.daemon_load import BenchDaemon, FedChannel, StampedSubscriber, play_staggered
from benchmarks.test_daemon_e2e import LATENCY_FULL, synth_clip
from tests.mqttbroker import Mosquitto


def kind_of(topic: str, names: set[str]) -> str:
    parts = [re.sub(r"^[0-9a-f]{16,}$", "<id>", p) for p in topic.split("/")]
    for i, part in enumerate(parts):
        if part in names:
            return "/".join(parts[i + 1 :]) or "(channel)"
    return "(daemon) " + parts[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    args = parser.parse_args()
    clip = synth_clip(LATENCY_FULL, "latency")
    work = Path(tempfile.mkdtemp(prefix="streamqc-mqtt-traffic-"))
    os.chdir(work)
    broker = Mosquitto(work / "broker").start()
    channels = [FedChannel(f"c{k:03d}", clip) for k in range(args.channels)]
    daemon = BenchDaemon(work / "daemon", channels, broker_url=broker.url)
    player = None
    subscriber = StampedSubscriber(broker.port, "#")
    try:
        daemon.start()
        daemon.wait_listening([c.port for c in channels], timeout_s=60 + args.channels)
        n = args.channels
        player = play_staggered(clip, channels)
        time.sleep(args.warmup)
        t0 = time.time()
        time.sleep(args.seconds)
        t1 = time.time()
        window = [m for t, m in subscriber.stamped_snapshot() if t0 <= t < t1]
    finally:
        subscriber.close()
        if player is not None:
            player.stop()
        daemon.stop()
        broker.stop()
    names = {c.name for c in channels}
    count: collections.Counter[str] = collections.Counter()
    size: collections.Counter[str] = collections.Counter()
    for m in window:
        kind = kind_of(m.topic, names)
        count[kind] += 1
        size[kind] += len(m.topic) + len(m.payload)
    wall = t1 - t0
    print(f"{args.channels} channels, {wall:.0f} s, {len(window)} messages")
    print(f"{'kind':<24} {'msg/s/ch':>9} {'B/s/ch':>9} {'per 1,000 channels':>22}")
    for kind, _ in sorted(size.items(), key=lambda kv: -kv[1]):
        per_ch = count[kind] / wall / n
        bytes_ch = size[kind] / wall / n
        print(
            f"{kind:<24} {per_ch:9.3f} {bytes_ch:9.0f}"
            f" {per_ch * 1000:8.0f} msg/s {bytes_ch * 1000 * 8 / 1e6:6.2f} Mbit/s"
        )
    total_count, total_size = sum(count.values()) / wall / n, sum(size.values()) / wall / n
    print(
        f"{'all':<24} {total_count:9.3f} {total_size:9.0f}"
        f" {total_count * 1000:8.0f} msg/s {total_size * 1000 * 8 / 1e6:6.2f} Mbit/s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
