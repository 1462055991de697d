"""Graphics checks end to end: generated H.264 clips, the channel's YAML, ``analyze``.

Each fault is injected at known media times; a fault is found when its alarm (with the right
graphic) starts within 1 s of the fault, i.e. is raised within ``raise_after`` + 1 s, and a
false alarm is any alarm that matches no fault. Precision and recall are printed as a table
at the end of the module (and are in every assertion message).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from monitor.alarms.engine import AlarmEvent
from monitor.config import load_config
from monitor.errors import ConfigError
from monitor.pipeline.analyze import analyze
from tests.graphicsclips import (
    GraphicsClip,
    Span,
    clip_file,
    write_logo_reference,
    write_lower_third_reference,
)

TOLERANCE_S = 1.0  # of a found alarm's start: it is raised within raise_after + this
EDGE_S = 0.25  # of its start and end against the fault's: one analysed picture and a bit

GRAPHICS = """\
detectors:
  audio_missing: {enabled: false}     # the clips have no audio
  picture_corrupt: {enabled: true}
  graphics:
    - name: logo
      roi: [0.80, 0.04, 0.16, 0.20]
      LOGO
      raise_after: 1s
      clear_after: 1s
    - name: clock
      roi: [0.04, 0.05, 0.20, 0.09]
      changing: true
      raise_after: 2s
    - name: lower-third
      roi: [0.06, 0.76, 0.88, 0.16]
      reference: artwork/lower-third.png
      THIRD
"""
STUCK = "expect: never\n      raise_after: 3s"  # a lower third on air longer than 3 s is stuck

FAULTS = GraphicsClip(
    duration_s=26.0,
    lower_third=(Span(1.5, 3.0), Span(12.0, 18.0)),
    logo_off=(Span(6.0, 9.0),),
    clock_frozen=(Span(10.0, 13.0),),
    flat_garbage=(Span(14.0, 16.0),),
    dark=(Span(17.0, 20.0),),
    smeared_garbage=(Span(21.0, 23.0),),
    logo_box=(Span(23.5, 25.5),),
)
# (alarm, graphic or None, span) of every fault of FAULTS; the dark scene and the lower third
# on air for 1.5 s are not faults.
EXPECTED = [
    ("graphic_missing", "logo", Span(6.0, 9.0)),
    ("graphic_frozen", "clock", Span(10.0, 13.0)),
    ("graphic_unexpected", "lower-third", Span(12.0, 18.0)),
    ("picture_corrupt", None, Span(14.0, 16.0)),
    ("picture_corrupt", None, Span(21.0, 23.0)),
    ("graphic_missing", "logo", Span(23.5, 25.5)),
    ("picture_corrupt", "logo", Span(23.5, 25.5)),  # the opaque box
]


def channel_yaml(folder: Path, logo: str = "learn: 4s", third: str = STUCK) -> Path:
    """A one-channel config in ``folder``, its artwork under ``folder/artwork``."""
    (folder / "artwork").mkdir(exist_ok=True)
    write_lower_third_reference(folder / "artwork" / "lower-third.png")
    write_logo_reference(folder / "artwork" / "logo.png")
    head = 'version: 1\nsite: test\nchannels:\n  - name: news\n    inputs:\n      primary: {url: "udp://127.0.0.1:5000"}\n'  # noqa: E501
    body = textwrap.indent(GRAPHICS.replace("LOGO", logo).replace("THIRD", third), "    ")
    path = folder / "news.yaml"
    path.write_text(head + body)
    return path


@dataclass
class Score:
    """Faults found and alarms raised on one clip."""

    name: str
    faults: int = 0
    found: int = 0
    alarms: int = 0
    false: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return (self.alarms - len(self.false)) / self.alarms if self.alarms else 1.0

    @property
    def recall(self) -> float:
        return self.found / self.faults if self.faults else 1.0

    def __str__(self) -> str:
        return (
            f"{self.name}: {self.found}/{self.faults} faults found, {len(self.false)} false of"
            f" {self.alarms} alarms: precision {self.precision:.2f}, recall {self.recall:.2f}"
            + (f"; missed {self.missed}" if self.missed else "")
            + (f"; false {self.false}" if self.false else "")
        )


SCORES: list[Score] = []


@pytest.fixture(scope="module", autouse=True)
def scoreboard(request):
    yield
    plugins = request.config.pluginmanager
    reporter = plugins.get_plugin("terminalreporter")
    capture = plugins.get_plugin("capturemanager")
    if reporter is None or capture is None or not SCORES:
        return
    total = Score("all clips")
    for s in SCORES:
        total.faults += s.faults
        total.found += s.found
        total.alarms += s.alarms
        total.false += s.false
    with capture.global_and_fixture_disabled():  # shown whatever the outcome
        reporter.write("\n")
        reporter.section("graphics checks: precision and recall on generated clips", sep="-")
        for line in [*SCORES, total]:
            reporter.line(str(line))


def alarms(events: list[AlarmEvent]) -> list[tuple[str, str | None, float, float]]:
    """(alarm, graphic, start, end) of every raised-and-cleared alarm."""
    raised = {e.id for e in events if e.state == "raised"}
    return [
        (e.alarm, e.detail.get("graphic"), e.start, e.end)
        for e in events
        if e.state == "cleared" and e.id in raised and e.end is not None
    ]


def score(name: str, found_alarms, expected) -> Score:
    result = Score(name, faults=len(expected), alarms=len(found_alarms))
    matched: set[int] = set()
    for alarm, graphic, span in expected:
        hit = next(
            (
                i
                for i, (a, g, start, end) in enumerate(found_alarms)
                if i not in matched
                and (a, g) == (alarm, graphic)
                and abs(start - span.start_s) <= TOLERANCE_S
                and start < span.end_s
                and end > span.start_s
            ),
            None,
        )
        if hit is None:
            result.missed.append(f"{alarm}/{graphic}@{span.start_s:g}")
        else:
            matched.add(hit)
            result.found += 1
    result.false = [
        f"{a}/{g}@{start:g}-{end:g}" for i, (a, g, start, end) in enumerate(found_alarms)
        if i not in matched
    ]  # fmt: skip
    SCORES.append(result)
    return result


def run(clip: Path, config: Path) -> list[AlarmEvent]:
    events: list[AlarmEvent] = []
    analyze(str(clip), load_config(config).channel(None), events.append)
    return events


@pytest.fixture(scope="module")
def faults_events(tmp_path_factory) -> list[AlarmEvent]:
    return run(clip_file(FAULTS), channel_yaml(tmp_path_factory.mktemp("faults")))


def test_every_graphics_fault_is_found_on_time_and_nothing_else(faults_events):
    """The logo learned from the feed (no artwork), a ticking clock, a lower third from its
    artwork, garbage, an opaque box; a dark scene and a short lower third are no faults."""
    found = alarms(faults_events)
    result = score("360p CRF 18, logo learned", found, EXPECTED)
    assert result.recall == 1.0 and result.precision == 1.0, result
    # Starts and ends are as exact as the analysis rate (5 looks a second).
    for (alarm, graphic, span), (a, g, start, end) in zip(
        sorted(EXPECTED, key=lambda e: (e[2].start_s, e[0])),
        sorted(found, key=lambda f: (f[2], f[0])),
        strict=True,
    ):
        assert (a, g) == (alarm, graphic)
        assert abs(start - span.start_s) <= EDGE_S and abs(end - span.end_s) <= EDGE_S, found


def test_alarms_name_the_graphic_its_region_and_the_measure_against_its_threshold(faults_events):
    raised: dict[tuple[str, str | None], AlarmEvent] = {}
    for e in faults_events:  # the first of each
        if e.state == "raised":
            raised.setdefault((e.alarm, e.detail.get("graphic")), e)
    missing = raised[("graphic_missing", "logo")].detail
    assert missing["roi"] == [0.80, 0.04, 0.16, 0.20]
    assert missing["score"] < missing["threshold"] == 0.3
    frozen = raised[("graphic_frozen", "clock")].detail
    assert frozen["roi"] == [0.04, 0.05, 0.20, 0.09] and frozen["unchanged_s"] >= 2.0
    box = raised[("picture_corrupt", "logo")].detail
    assert box["kind"] == "opaque_box" and box["stddev"] < box["threshold"]
    corrupt = raised[("picture_corrupt", None)].detail
    assert corrupt["garbage_blocks"] >= corrupt["min_blocks"]
    x, y, w, h = corrupt["roi"]  # around the garbage: left of the middle of the picture
    assert 0.2 <= x <= 0.3 and 0.25 <= y <= 0.35 and w < 0.5 and h < 0.3


@pytest.mark.parametrize(
    "spec",
    [
        GraphicsClip(duration_s=20.0, crf=42, dark=(Span(6.0, 12.0),),
                     lower_third=(Span(14.0, 16.0),)),
        GraphicsClip(width=480, height=270, duration_s=20.0, crf=45, dark=(Span(6.0, 12.0),),
                     lower_third=(Span(14.0, 16.0),)),
    ],
    ids=["360p_crf42", "270p_crf45"],
)  # fmt: skip
def test_a_blocky_low_bitrate_rendition_with_a_dark_scene_raises_nothing(tmp_path, spec):
    found = alarms(run(clip_file(spec), channel_yaml(tmp_path)))
    result = score(f"{spec.height}p CRF {spec.crf}, clean", found, [])
    assert found == [], result


def test_logo_missing_on_one_rendition_only_is_found_there_from_the_same_artwork(tmp_path):
    """One config (normalised regions, one PNG) on two renditions of a ladder: the logo is
    dropped on the 360p only, which a monitor of the top rendition alone would never see."""
    config = channel_yaml(tmp_path, logo="reference: artwork/logo.png")
    top = GraphicsClip(width=1280, height=720, duration_s=10.0, crf=23)
    low = GraphicsClip(duration_s=10.0, crf=30, logo_off=(Span(4.0, 7.0),))
    top_found = alarms(run(clip_file(top), config))
    low_found = alarms(run(clip_file(low), config))
    score("720p of the ladder, artwork", top_found, [])
    expected = [("graphic_missing", "logo", Span(4.0, 7.0))]
    result = score("360p of the ladder, logo off", low_found, expected)
    assert top_found == [] and result.recall == 1.0 and result.precision == 1.0, result


def test_a_scheduled_graphic_is_expected_inside_its_window_only(tmp_path, monkeypatch):
    """The lower third is scheduled from 10:00 local time and the clip starts at 09:59:50: on
    air at 4-6 s it is early, and from 10 s on it is missing until it shows at 13 s."""
    import time

    from monitor.checks import graphics as check_graphics

    start = time.mktime((2026, 6, 1, 9, 59, 50, 0, 0, -1))
    monkeypatch.setattr(check_graphics, "wall_clock", lambda: start)
    scheduled = 'expect: schedule\n      schedule: ["10:00-11:00"]\n      raise_after: 1s'
    config = channel_yaml(tmp_path, third=scheduled)
    spec = GraphicsClip(duration_s=20.0, lower_third=(Span(4.0, 6.0), Span(13.0, 20.0)))
    found = [a for a in alarms(run(clip_file(spec), config)) if a[1] == "lower-third"]
    expected = [
        ("graphic_unexpected", "lower-third", Span(4.0, 6.0)),
        ("graphic_missing", "lower-third", Span(10.0, 13.0)),
    ]
    result = score("360p, lower third on a schedule", found, expected)
    assert result.recall == 1.0 and result.precision == 1.0, result


def test_a_region_declared_static_raises_graphic_changing_only_while_it_changes(tmp_path):
    """The lower third's plate holds still; a region of the moving picture declared static
    keeps changing: only that one raises, from its first look to the end."""
    static = textwrap.dedent(
        """\
        version: 1
        site: test
        channels:
          - name: news
            inputs: {primary: {url: "udp://127.0.0.1:5000"}}
            detectors:
              audio_missing: {enabled: false}
              graphics:
                - {name: plate, roi: [0.06, 0.76, 0.88, 0.16], changing: false, raise_after: 1s}
                - {name: picture, roi: [0.30, 0.30, 0.30, 0.30], changing: false, raise_after: 1s}
        """
    )
    config = tmp_path / "static.yaml"
    config.write_text(static)
    spec = GraphicsClip(duration_s=6.0, lower_third=(Span(0.0, 6.0),))
    found = alarms(run(clip_file(spec), config))
    expected = [("graphic_changing", "picture", Span(0.2, 6.0))]
    result = score("360p, regions declared static", found, expected)
    assert result.recall == 1.0 and result.precision == 1.0, result


# --- Configuration --------------------------------------------------------------------------


def config_error(tmp_path: Path, graphics: str) -> str:
    (tmp_path / "logo.png").write_bytes(b"")
    text = (
        "version: 1\n"
        "site: test\n"
        "channels:\n"
        "  - name: news\n"
        "    inputs:\n"
        '      primary: {url: "udp://127.0.0.1:5000"}\n'
        "    detectors:\n"
        "      graphics:\n" + textwrap.indent(textwrap.dedent(graphics), "        ")
    )
    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    return str(raised.value).replace(f"{tmp_path}/", "")


@pytest.mark.parametrize(
    ("graphics", "message"),
    [
        pytest.param(
            "- {name: logo, roi: [0.8, 0.0, 0.19], learn: 10s}",
            "x.yaml:9: channels[0].detectors.graphics[0].roi: must be [x, y, w, h], fractions "
            "of the picture, got [0.8, 0.0, 0.19]",
            id="a region of three numbers",
        ),
        pytest.param(
            "- {name: logo, learn: 10s}\n- {name: clock, roi: [0.9, 0.0, 0.2, 0.1], "
            "changing: true}",
            "x.yaml:9: channels[0].detectors.graphics[0]: missing required key 'roi'",
            id="a region missing",
        ),
        pytest.param(
            "- name: logo\n  learn: 10s\n  roi: [0.9, 0.0, 0.2, 0.1]",
            "x.yaml:11: channels[0].detectors.graphics[0].roi: reaches outside the picture "
            "(x+w and y+h must be <= 1), got [0.9, 0.0, 0.2, 0.1]",
            id="a region reaching outside the picture",
        ),
        pytest.param(
            "- {name: logo, roi: [0.8, 0.0, 0.19, 0.1], learn: 10s}\n"
            "- {name: clock, roi: 0.5, changing: true}",
            "x.yaml:10: channels[0].detectors.graphics[1].roi: must be a list, got 0.5",
            id="a region that is not a list",
        ),
        pytest.param(
            "- {name: logo, roi: [0.8, 0.0, 0.19, 0.1], learn: 10s, reference: logo.png}",
            "x.yaml:9: channels[0].detectors.graphics[0].reference: give learn or reference, "
            "not both",
            id="learn and reference",
        ),
        pytest.param(
            "- {name: logo, roi: [0.8, 0.0, 0.19, 0.1], reference: missing.png}",
            "x.yaml:9: channels[0].detectors.graphics[0].reference: cannot read "
            "'missing.png': No such file or directory",
            id="artwork that is not there, relative to the config file",
        ),
        pytest.param(
            "- {name: logo, roi: [0.8, 0.0, 0.19, 0.1], reference: logo.png}",
            "x.yaml:9: channels[0].detectors.graphics[0].reference: 'logo.png' is not an "
            "image OpenCV can read",
            id="artwork that is no image",
        ),
        pytest.param(
            "- {name: logo, roi: [0.8, 0.0, 0.19, 0.1], learn: 10s, expect: sometimes}",
            "x.yaml:9: channels[0].detectors.graphics[0].expect: must be one of: always, "
            "never, schedule, got 'sometimes'",
            id="an unknown expectation",
        ),
        pytest.param(
            "- {name: logo, roi: [0.8, 0.0, 0.19, 0.1], learn: 10s, expect: schedule,\n"
            "   schedule: ['6:00 to 9:00']}",
            "x.yaml:10: channels[0].detectors.graphics[0].schedule: '6:00 to 9:00' is not a "
            "time window 'HH:MM-HH:MM'",
            id="a schedule window that is not one",
        ),
        pytest.param(
            "- {name: logo, roi: [0.8, 0.0, 0.19, 0.1], lern: 10s}",
            "x.yaml:9: channels[0].detectors.graphics[0]: unknown key 'lern', did you mean "
            "'learn'? (known: enabled, raise_after, clear_after, severity, name, roi, learn, "
            "reference, expect, schedule, during_breaks, changing, match_threshold)",
            id="a misspelt key",
        ),
        pytest.param(
            "- {name: logo, roi: [0.8, 0.0, 0.19, 0.1], learn: 500ms}",
            "x.yaml:9: channels[0].detectors.graphics[0].learn: must be >= 1, got '500ms'",
            id="too short to learn",
        ),
        pytest.param(
            "- {name: logo, roi: [0.8, 0.0, 0.19, 0.1], learn: 10s}\n"
            "- {name: logo, roi: [0.0, 0.0, 0.19, 0.1], changing: true}",
            "x.yaml:10: channels[0].detectors.graphics[1].name: duplicate graphic name 'logo' "
            "(first at line 9)",
            id="two graphics of one name",
        ),
        pytest.param(
            "- {name: logo, roi: [0.8, 0.0, 0.19, 0.1]}",
            "x.yaml:9: channels[0].detectors.graphics[0]: nothing to check: give learn or "
            "reference (is it on air?) and/or changing (is it stuck?)",
            id="nothing to check",
        ),
    ],
)
def test_each_graphics_config_mistake_is_one_exact_line(tmp_path, graphics, message):
    assert config_error(tmp_path, graphics) == message


def test_channels_override_the_default_graphics_key_by_key_by_name(tmp_path):
    write_logo_reference(tmp_path / "logo.png")
    path = tmp_path / "x.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            version: 1
            site: test
            defaults:
              detectors:
                picture_corrupt: {enabled: true, min_blocks: 8}
                graphics:
                  - {name: logo, roi: [0.8, 0.0, 0.19, 0.1], reference: logo.png}
                  - {name: clock, roi: [0.0, 0.0, 0.2, 0.1], changing: true}
            channels:
              - name: news
                inputs: {primary: {url: "udp://127.0.0.1:5000"}}
                detectors:
                  graphics:
                    - {name: clock, raise_after: 70s, severity: minor}
                    - {name: ticker, roi: [0.0, 0.9, 1.0, 0.1], changing: true}
              - name: movies
                inputs: {primary: {url: "udp://127.0.0.1:5002"}}
                detectors:
                  picture_corrupt: {enabled: false}
                  graphics:
                    - {name: logo, enabled: false}
            """
        )
    )
    news, movies = load_config(path).channels
    assert [g.settings.name for g in news.graphics] == ["logo", "clock", "ticker"]
    logo, clock, _ = news.graphics
    assert logo.settings.reference == str(tmp_path / "logo.png")
    assert clock.settings.changing is True and clock.settings.roi == (0.0, 0.0, 0.2, 0.1)
    assert (clock.rule.raise_after_s, clock.rule.severity) == (70.0, "minor")
    assert news.picture_corrupt.rule.enabled and news.picture_corrupt.settings.min_blocks == 8
    assert not movies.graphics[0].rule.enabled and not movies.picture_corrupt.rule.enabled


def test_channels_without_graphics_checks_do_not_load_them_nor_opencv():
    code = (
        "import sys\n"
        "from monitor.config import default_channel\n"
        "from monitor.pipeline.channel import ChannelPipeline\n"
        "p = ChannelPipeline(default_channel(), 'primary', print, audio_streams=[])\n"
        "assert not [c for c in p.checks if type(c).__name__ == 'GraphicsCheck']\n"
        "print('cv2' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_the_check_exports_its_measurements_for_the_metrics(tmp_path):
    from monitor.decode.media_source import MediaSource
    from monitor.pipeline.channel import ChannelPipeline

    channel = load_config(channel_yaml(tmp_path)).channel(None)
    pipeline = ChannelPipeline(channel, "primary", lambda event: None, audio_streams=[])
    with MediaSource(str(clip_file(FAULTS))) as media:
        for item in media:
            pipeline.process(item)
            if item.pts_s >= 5.0:
                break
    gauges = {(name, labels.get("graphic")): value for name, labels, value in pipeline.gauges()}
    assert gauges[("graphic_presence_score", "logo")] > 0.3
    assert 0.0 <= gauges[("graphic_unchanged_seconds", "clock")] < 1.1
    assert 0.5 < gauges[("picture_blockiness", None)] < 2.0
    assert gauges[("picture_garbage_blocks", None)] == 0
