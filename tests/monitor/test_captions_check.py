"""Captions end to end: a generated H.264 clip with caption faults at known times, the
channel's YAML, ``analyze``.

The clip carries roll-up text on CC1 and text for CTA-708 service 1 on every picture, except
in the fault spans: no cc_data at all (the inserter bypassed: ``captions_missing``), and
padding only (the inserter fed nothing: ``captions_empty``). A fault is found when its alarm
starts within 0.5 s of the fault's start; any other captions alarm is a false one.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from monitor.alarms.engine import AlarmEvent
from monitor.config import load_config
from monitor.errors import ConfigError
from monitor.pipeline.analyze import analyze
from tests.captionclips import PAD, dtvcc_packet, roll_up, triplet_608, write_clip

TOLERANCE_S = 0.5


@dataclass(frozen=True)
class Span:
    start_s: float
    end_s: float

    def holds(self, t_s: float) -> bool:
        return self.start_s <= t_s < self.end_s


MISSING = (Span(4.0, 8.0),)
EMPTY = (Span(11.0, 15.5),)
SHORT_GAP = Span(18.0, 19.0)  # shorter than raise_after: no alarm
DURATION_S = 22.0


def lines() -> list[tuple[int, int]]:
    pairs: list[tuple[int, int]] = []
    for n in range(200):
        pairs += roll_up(f"LINE {n}")
    return pairs


PAIRS = lines()


def faulty(i: int, t: float) -> list[bytes] | None:
    if any(span.holds(t) for span in MISSING) or SHORT_GAP.holds(t):
        return None
    if any(span.holds(t) for span in EMPTY):
        return [triplet_608(1, PAD), triplet_608(2, PAD), *dtvcc_packet(0, b"")]
    return [triplet_608(1, PAIRS[i]), triplet_608(2, PAD), *dtvcc_packet(1, b"AB", i)]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip(tmp_path_factory.mktemp("cc") / "captions.ts", DURATION_S, faulty)


HEAD = """\
version: 1
site: test
channels:
  - name: news
    inputs:
      primary: {url: "udp://127.0.0.1:5000"}
    detectors:
      audio_missing: {enabled: false}   # the clip has no audio
"""


def run(clip: Path, tmp_path: Path, captions: str = "") -> list[AlarmEvent]:
    path = tmp_path / "news.yaml"
    path.write_text(HEAD + textwrap.indent(captions, "      "))
    events: list[AlarmEvent] = []
    analyze(str(clip), load_config(path).channel(None), events.append)
    return [e for e in events if e.alarm.startswith("captions_")]


CONFIG = """\
captions:
  services: [cc1, "708:1"]
  raise_after: 2s
  clear_after: 1s
"""


def test_every_caption_loss_and_empty_span_found_nothing_else(clip: Path, tmp_path: Path) -> None:
    raised = [e for e in run(clip, tmp_path, CONFIG) if e.state == "raised"]
    expected = [
        (alarm, service, span)
        for alarm, spans in (("captions_missing", MISSING), ("captions_empty", EMPTY))
        for span in spans
        for service in ("cc1", "708:1")
    ]
    found = []
    for alarm, service, span in expected:
        match = [
            e
            for e in raised
            if e.alarm == alarm
            and e.detail["service"] == service
            and abs(e.start - span.start_s) <= TOLERANCE_S
        ]
        assert match, f"{alarm} {service} at {span} not found in {raised}"
        found.extend(match)
    false = [e for e in raised if e not in found]
    assert not false, f"false alarms: {false}"
    assert len(found) == len(expected)


def test_alarms_clear_when_captions_come_back(clip: Path, tmp_path: Path) -> None:
    cleared = [e for e in run(clip, tmp_path, CONFIG) if e.state == "cleared"]
    ends = sorted((e.alarm, e.detail["service"], round(e.end or 0, 1)) for e in cleared)
    assert ends == sorted(
        [
            ("captions_missing", "cc1", 8.0),
            ("captions_missing", "708:1", 8.0),
            ("captions_empty", "cc1", 15.5),
            ("captions_empty", "708:1", 15.5),
        ]
    )


def test_a_channel_without_captions_config_never_alarms(clip: Path, tmp_path: Path) -> None:
    assert run(clip, tmp_path) == []


def test_a_service_never_carried_is_empty_from_the_start(clip: Path, tmp_path: Path) -> None:
    # CC3 shares field 2, which carries padding only: data without text, never missing.
    events = run(clip, tmp_path, "captions: {services: [cc3], raise_after: 2s}\n")
    raised = [(e.alarm, e.start) for e in events if e.state == "raised"]
    assert raised[0] == ("captions_empty", 0.0)
    assert {a for a, _ in raised} == {"captions_empty", "captions_missing"}


def test_a_bad_service_name_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(HEAD + "      captions: {services: [cc5]}\n")
    with pytest.raises(ConfigError, match="cc5"):
        load_config(path)


def test_the_example_documents_every_caption_and_ad_break_key() -> None:
    import dataclasses

    from detectors.ad_breaks import AdBreakSettings
    from detectors.captions import CaptionSettings
    from detectors.subtitles import SubtitleSettings

    example = Path(__file__).parents[2] / "configs" / "example.yaml"
    text = example.read_text()
    news = load_config(example).channel("news-hd")
    assert news.captions.rule.enabled and news.captions.settings.services == ("cc1", "708:1")
    assert news.scte35.settings.max_interval_s == 3600.0
    assert news.graphics[0].settings.during_breaks == "absent"
    for cls in (CaptionSettings, AdBreakSettings, SubtitleSettings):
        for spec in dataclasses.fields(cls):
            assert f"{spec.name.removesuffix('_s')}:" in text, spec.name
    assert "during_breaks:" in text
