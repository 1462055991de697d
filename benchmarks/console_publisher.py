"""Simulated sites for the console: many channels' status, alarms and thumbnails over MQTT.

``python -m benchmarks.console_publisher --port P --sites 10 --channels 1000 --duration 60``
publishes, as the MQTT API (version 1) says a daemon does: a retained ``daemon/status`` per
site, every channel's retained ``status`` every second, alarm events (raised, then cleared
5-30 s later) on random channels at ``--alarm-rate`` per second, and a 320 px JPEG thumbnail
per channel every ``--thumbnail-interval`` seconds, spread evenly. Pictures are made once at
start (cv2) with the channel's name on them, so each tile shows its own.

It prints one JSON line at the end with what it sent. The console load benchmark and the
console tests' smoke run use it; it needs nothing but a broker.
"""

from __future__ import annotations

import argparse
import json
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import cv2
import numpy as np
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

ALARMS = (("black", "major"), ("freeze", "major"), ("silence", "major"), ("input_loss", "critical"))


def utc(at_s: float) -> str:
    return datetime.fromtimestamp(at_s, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def picture(name: str, hue: int, width: int = 320) -> bytes:
    """A 16:9 JPEG of colour bars with the channel's name on it (about 10 KB)."""
    height = width * 9 // 16
    bars = np.zeros((height, width, 3), np.uint8)
    colours = [(192, 192, 192), (0, 192, 192), (192, 192, 0), (0, 192, 0), (192, 0, 192),
               (0, 0, 192), (192, 0, 0)]  # fmt: skip
    for i, colour in enumerate(colours):
        bars[:, i * width // 7 : (i + 1) * width // 7] = colour
    bars[height * 2 // 3 :] = ((hue * 37) % 200, (hue * 91) % 200, (hue * 53) % 200)
    cv2.putText(bars, name, (8, height - 14), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
    ok, jpeg = cv2.imencode(".jpg", bars, [cv2.IMWRITE_JPEG_QUALITY, 75])
    assert ok
    return bytes(jpeg)


@dataclass
class SimChannel:
    site: str
    name: str
    alarms: dict[str, dict[str, Any]] = field(default_factory=dict)
    clear_at_s: dict[str, float] = field(default_factory=dict)

    def status(self, now_s: float) -> dict[str, Any]:
        alarms = list(self.alarms.values())
        critical = any(a["severity"] == "critical" for a in alarms)
        state = "failed" if critical else "degraded" if alarms else "ok"
        return {
            "version": 1, "channel": self.name, "state": state, "active_input": "primary",
            "inputs": {"primary": {"state": state, "alarms": alarms},
                       "backup": {"state": "ok", "alarms": []}},
            "updated": utc(now_s),
        }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sites", type=int, default=10)
    parser.add_argument("--channels", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--status-interval", type=float, default=1.0)
    parser.add_argument("--thumbnail-interval", type=float, default=10.0)
    parser.add_argument("--alarm-rate", type=float, default=0.5, help="alarms raised per second")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"sim-{uuid.uuid4().hex[:8]}")
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", args.port, keepalive=30)
    client.loop_start()
    sites = [f"site{s:02d}" for s in range(args.sites)]
    channels = [SimChannel(sites[i % args.sites], f"ch{i:04d}") for i in range(args.channels)]
    pictures = [picture(c.name, i) for i, c in enumerate(channels[:50])]
    start_s = time.time()
    for site in sites:
        status = {"version": 1, "state": "online", "site": site, "host": "sim", "pid": 1,
                  "started": utc(start_s), "channels": args.channels // args.sites}  # fmt: skip
        client.publish(f"streamqc/{site}/daemon/status", json.dumps(status), qos=1, retain=True)
    sent = {"status": 0, "thumbnail": 0, "raised": 0, "cleared": 0}
    tick_s = 0.05  # spread each second's messages over 20 slices
    slices = int(round(args.status_interval / tick_s))
    thumb_slices = int(round(args.thumbnail_interval / tick_s))
    step = 0
    next_alarm_s = (
        start_s + rng.expovariate(args.alarm_rate) if args.alarm_rate > 0 else float("inf")
    )
    while (now_s := time.time()) - start_s < args.duration:
        for i in range(step % slices, len(channels), slices):
            c = channels[i]
            topic = f"streamqc/{c.site}/{c.name}/status"
            client.publish(topic, json.dumps(c.status(now_s)), qos=1, retain=True)
            sent["status"] += 1
        for i in range(step % thumb_slices, len(channels), thumb_slices):
            c = channels[i]
            client.publish(f"streamqc/{c.site}/{c.name}/thumbnail", pictures[i % len(pictures)],
                           qos=0, retain=True)  # fmt: skip
            sent["thumbnail"] += 1
        while now_s >= next_alarm_s:
            next_alarm_s += rng.expovariate(args.alarm_rate)
            c = rng.choice(channels)
            name, severity = rng.choice(ALARMS)
            if name in c.alarms:
                continue
            event = {"version": 1, "alarm": name, "state": "raised", "start": now_s - start_s,
                     "end": None, "channel": c.name, "input": "primary", "rendition": None,
                     "severity": severity, "wallclock": utc(now_s), "id": uuid.uuid4().hex,
                     "detail": {}}  # fmt: skip
            c.alarms[name] = {
                k: event[k] for k in ("alarm", "id", "severity", "rendition", "start")
            }
            c.alarms[name] |= {"since": event["wallclock"], "detail": {}}
            c.clear_at_s[name] = now_s + rng.uniform(5.0, 30.0)
            client.publish(f"streamqc/{c.site}/{c.name}/alarms", json.dumps(event), qos=1)
            sent["raised"] += 1
        for c in channels:
            for name in [n for n, t in c.clear_at_s.items() if t <= now_s]:
                raised = c.alarms.pop(name)
                del c.clear_at_s[name]
                event = {"version": 1, "alarm": name, "state": "cleared", "start": raised["start"],
                         "end": now_s - start_s, "channel": c.name, "input": "primary",
                         "rendition": None, "severity": raised["severity"],
                         "wallclock": utc(now_s), "id": raised["id"],
                         "detail": {"duration_s": now_s - start_s - raised["start"]}}  # fmt: skip
                client.publish(f"streamqc/{c.site}/{c.name}/alarms", json.dumps(event), qos=1)
                sent["cleared"] += 1
        step += 1
        time.sleep(max(0.0, start_s + step * tick_s - time.time()))
    client.loop_stop()
    client.disconnect()
    print(json.dumps(sent | {"seconds": round(time.time() - start_s, 1)}), flush=True)


if __name__ == "__main__":
    main()
