"""Captions and SCTE-35 through the real daemon: a UDP feed, a real Mosquitto broker.

The clip carries roll-up captions on CC1 until 12 s and none after, and one cue-out at 5 s
(arriving at 3 s) for a 30 s break that has not ended when the test does. The daemon must
publish the cue on ``…/news/events``, put the break and the captions in the retained status,
and raise ``captions_missing`` once the captions stop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from monitor.alarms.input_stats import InputStats
from monitor.daemon.supervisor import status_facts
from monitor.demo.udp_sender import UdpSender
from tests.captionclips import PAD, roll_up, triplet_608, write_clip
from tests.daemon import Channel, Daemon, events
from tests.mqttbroker import Mosquitto, Subscriber
from tests.scte35clips import Placed, add_cues, splice_insert, video_origin_ticks

CLIP_S = 24.0
CAPTIONS_END_S = 12.0
PAIRS = [pair for n in range(100) for pair in roll_up(f"LINE {n}")]


def captions(i: int, t: float) -> list[bytes] | None:
    if t >= CAPTIONS_END_S:
        return None
    return [triplet_608(1, PAIRS[i]), triplet_608(2, PAD)]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = write_clip(tmp_path_factory.mktemp("compliance") / "feed.ts", CLIP_S, captions)
    origin = video_origin_ticks(path)
    out = splice_insert(77, origin + 5 * 90000, out=True, duration_s=30.0)
    return add_cues(path, [Placed(3.0, out)])


@dataclass
class ClipChannel(Channel):
    """A channel whose sender plays a clip of its own length."""

    def start(self) -> None:
        if self.sender is None:
            self.sender = UdpSender(self.clip, self.port, CLIP_S).start()


DETECTORS = (
    "{transport: {enabled: false}, audio_missing: {enabled: false},"
    " captions: {services: [cc1], raise_after: 2s}, scte35: {tolerance: 1s}}"
)


def test_cues_break_state_and_captions_reach_mqtt(
    tmp_path: Path, clip: Path, mosquitto: Mosquitto, daemons: list[Daemon]
) -> None:
    sub = Subscriber(mosquitto.port, "streamqc/#")
    daemon = Daemon(
        tmp_path, [ClipChannel("news", clip, detectors=DETECTORS)], broker_url=mosquitto.url
    )
    daemons.append(daemon.start())
    status_topic = daemon.topic("news", "status")

    def status_with(predicate: object) -> dict[str, object]:
        def match(m: object) -> bool:
            if getattr(m, "topic", None) != status_topic or not getattr(m, "payload", b""):
                return False
            primary = json.loads(m.payload)["inputs"]["primary"]  # type: ignore[attr-defined]
            return bool(predicate(primary))  # type: ignore[operator]

        return json.loads(sub.wait_for(match, 40).payload)["inputs"]["primary"]  # type: ignore[no-any-return]

    on_air = status_with(lambda p: p.get("captions", {}).get("last_line", "").startswith("LINE"))
    assert on_air["captions"]["on_air"] is True  # type: ignore[index]

    cue = sub.wait_for(lambda m: m.topic == daemon.topic("news", "events"), 40)
    payload = json.loads(cue.payload)
    assert payload["version"] == 1 and payload["type"] == "scte35"
    assert (payload["event_id"], payload["splice_type"], payload["duration"]) == (77, "out", 30.0)
    assert payload["channel"] == "news" and payload["input"] == "primary"

    in_break = status_with(lambda p: p.get("in_break") is True)
    assert isinstance(in_break["break_ends_at"], str) and in_break["break_ends_at"].endswith("Z")

    raised = sub.wait_for(
        lambda m: m.topic == daemon.topic("news", "alarms") and b"captions_missing" in m.payload,
        40,
    )
    event = json.loads(raised.payload)
    assert event["state"] == "raised" and event["detail"]["service"] == "cc1"
    assert [e["alarm"] for e in events(sub.received(), "news") if e["state"] == "raised"] == [
        "captions_missing"
    ]
    sub.close()


def test_status_facts_take_the_first_rendition_and_put_the_break_end_in_utc() -> None:
    def stats(rendition: str | None, status: tuple[tuple[str, object], ...]) -> InputStats:
        return InputStats(
            "news", "primary", rendition, True, 0.0, 0, 0, 0, 0.0, 0, 0, None, (), (), status,
        )  # fmt: skip

    facts = status_facts(
        [
            stats("1080p", (("break_ends_at_media_s", 30.0), ("in_break", True))),
            stats("360p", (("break_ends_at_media_s", 31.0), ("in_break", False))),
        ],
        origin_wall_s=1_700_000_000.0,
    )
    assert facts == {"in_break": True, "break_ends_at": "2023-11-14T22:13:50Z"}
    assert status_facts([stats(None, ())], 0.0) == {}
    off_break = status_facts(
        [stats(None, (("break_ends_at_media_s", None), ("in_break", False)))], 0.0
    )
    assert off_break == {"in_break": False, "break_ends_at": None}
