"""Rendition mismatch end to end: a live HLS ladder on loopback, monitored by a LiveSession.

The ladder is ``tests/ladderclips.py``'s: one scene at 384x216, 256x144 and 192x108 (the last
visibly blocky), cut into 1 s segments and served live by ``LiveHlsServer`` (a window of 5
segments, one more each second). The session joins at the newest segment, content second 4.
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from monitor.checks.rendition_mismatch import RenditionMismatchCheck
from monitor.config import ChannelConfig
from monitor.pipeline.live_session import LiveSession
from tests.ingest.hlsserver import LiveHlsServer
from tests.ladderclips import CLEAN, FAULTY, hls_ladder

WINDOW = 5
CHANNEL = ChannelConfig(name="ladder")
CHANNEL = replace(
    CHANNEL,
    rendition_mismatch=replace(
        CHANNEL.rendition_mismatch, rule=replace(CHANNEL.rendition_mismatch.rule, enabled=True)
    ),
)
RAISE_AFTER_S = CHANNEL.rendition_mismatch.rule.raise_after_s


class TimedHlsServer(LiveHlsServer):
    """Notes when each segment is first served: when a fault reached the monitor."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.served: dict[str, float] = {}

    def respond(self, path: str) -> tuple[int, str, bytes]:
        answer = super().respond(path)
        if answer[0] == 200 and path.endswith(".ts"):
            self.served.setdefault(path.strip("/"), time.monotonic())
        return answer


def monitor(server: LiveHlsServer, duration_s: float) -> tuple[list, LiveSession]:
    events: list = []
    session = LiveSession(
        server.url,
        CHANNEL,
        lambda event: events.append((time.monotonic(), event.to_dict())),
        duration_s=duration_s,
    )
    session.run()
    return events, session


def test_a_clean_ladder_raises_nothing():
    with TimedHlsServer(hls_ladder(CLEAN), window=WINDOW) as server:
        events, session = monitor(server, 8.0)
    assert events == []
    # The smaller rungs decode reference pictures only (the default), so the rungs are
    # compared at their keyframes: one a second (1 s GOP) for the ~6 s all of them flow.
    ladder = next(c for c in session.checks if isinstance(c, RenditionMismatchCheck))
    assert ladder.comparisons >= 5
    print(f"\nclean live ladder: {ladder.comparisons} comparisons, 0 alarms")


def test_a_fault_on_one_rendition_raises_rendition_mismatch_on_it_alone():
    with TimedHlsServer(hls_ladder(FAULTY), window=WINDOW) as server:
        opened_s = time.monotonic()
        events, session = monitor(server, 17.0)
    mismatch = [(at, e) for at, e in events if e["alarm"] == "rendition_mismatch"]
    assert [e for _, e in events if e["alarm"] != "rendition_mismatch"] == []
    assert [(e["state"], e["rendition"]) for _, e in mismatch] == [
        ("raised", FAULTY.name(2)),
        ("cleared", FAULTY.name(2)),
        ("raised", FAULTY.name(1)),
        ("cleared", FAULTY.name(1)),
    ]
    faults = [*FAULTY.logo_missing, *FAULTY.garbled]
    lines = []
    for (rung, span), (raised_at, raised), (_, cleared) in zip(
        faults, mismatch[::2], mismatch[1::2], strict=True
    ):
        msn = round(span.start_s)  # 1 s segments: content second n is segment n
        published_s = opened_s + (msn - WINDOW + 1) * server.segment_s
        fetched_s = max(server.served[f"{r.name}/seg{msn}.ts"] for r in FAULTY.rungs)
        after_edge_s, after_fetch_s = raised_at - published_s, raised_at - fetched_s
        lines.append(
            f"{FAULTY.name(rung)}: raised {after_edge_s:.2f} s after the faulty segment reached"
            f" the live edge, {after_fetch_s:.2f} s after the last rendition fetched it;"
            f" lasted {cleared['end'] - raised['start']:.2f} s of {span.duration_s:g}"
        )
        # The client reloads a playlist once per target duration (1 s): the fault reaches
        # the monitor up to that long after the edge, then takes raise_after of media.
        assert after_fetch_s <= RAISE_AFTER_S + 1.0
        assert after_edge_s <= RAISE_AFTER_S + 1.0 + server.target_duration
        assert cleared["end"] - raised["start"] == pytest.approx(span.duration_s, abs=0.25)
        assert raised["detail"]["consensus"] == sorted(
            r.name for k, r in enumerate(FAULTY.rungs) if k != rung
        )
    print("\nlive ladder:", *lines, sep="\n  ")


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        ("reference", {"1920x1080": "all", "1280x720": "reference", "640x360": "reference"}),
        ("keyframes", {"1920x1080": "all", "1280x720": "keyframes", "640x360": "keyframes"}),
        ("all", {"1920x1080": "all", "1280x720": "all", "640x360": "all"}),
    ],
)
def test_the_largest_rendition_is_decoded_in_full_the_others_as_configured(selection, expected):
    from types import SimpleNamespace

    from monitor.config import InputConfig

    url = "http://127.0.0.1:9/master.m3u8"
    source = InputConfig(url, ladder_pictures=selection)
    session = LiveSession(url, CHANNEL, lambda event: None, source=source)
    names = [*expected, "audio-eng", "1920x1080-2000000"]
    session.ingest.client = SimpleNamespace(renditions=dict.fromkeys(names))

    assert {name: session._pictures(name) for name in expected} == expected
    assert session._pictures("1920x1080-2000000") == "all"  # as large as the largest
    assert session._pictures("audio-eng") == "all"  # no pictures to skip
    assert session._pictures(None) == "all"  # not a ladder


def test_an_event_ladder_is_timed_from_its_first_segment():
    # An EVENT playlist is read from segment 0 (content second 0), then at the live edge, and
    # its times are media seconds: the logo missing over 9-13 s on the bottom rung is raised
    # at 9 s of the event, however long after joining that is on the wall clock.
    with TimedHlsServer(hls_ladder(FAULTY), window=WINDOW, event=True) as server:
        events, session = monitor(server, 14.5)
    assert session.media_timed
    mismatch = [e for _, e in events if e["alarm"] == "rendition_mismatch"]
    assert [(e["state"], e["rendition"]) for e in mismatch] == [
        ("raised", FAULTY.name(2)),
        ("cleared", FAULTY.name(2)),
    ], events
    (rung, span) = FAULTY.logo_missing[0]
    assert rung == 2
    assert mismatch[0]["start"] == pytest.approx(span.start_s, abs=0.5)
    assert mismatch[1]["end"] == pytest.approx(span.end_s, abs=0.5)
    assert [e for _, e in events if e["alarm"] != "rendition_mismatch"] == []
