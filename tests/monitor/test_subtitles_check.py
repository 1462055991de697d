"""DVB subtitles and teletext end to end: PIDs that stop at known times, ``analyze``.

The clip (20 s) announces three languages in its PMT: teletext ``eng`` (a PES with every
picture) silent from 8 to 12 s, DVB subtitles ``fra`` (every 0.2 s) silent from 14 s to the
end; the channel also expects ``deu``, which is not there at all. raise_after (the window) is
3 s: each loss is found with its start within 0.5 s, and nothing else is raised.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import av
import pytest

from monitor.alarms.engine import AlarmEvent
from monitor.config import load_config
from monitor.errors import ConfigError
from monitor.pipeline.analyze import analyze
from tests.captionclips import write_clip
from tests.subtitleclips import SubtitlePid, add_subtitles

TOLERANCE_S = 0.5
PIDS = [
    SubtitlePid(0x1F2, "eng", teletext=True, sends=lambda t: not 8.0 <= t < 12.0),
    SubtitlePid(0x1F3, "fra", teletext=False, sends=lambda t: t < 14.0),
]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = write_clip(tmp_path_factory.mktemp("subs") / "subs.ts", 20.0, lambda i, t: None)
    return add_subtitles(path, PIDS)


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


def run(clip: Path, tmp_path: Path, extra: str) -> list[AlarmEvent]:
    path = tmp_path / "news.yaml"
    path.write_text(HEAD + textwrap.indent(extra, "      "))
    events: list[AlarmEvent] = []
    analyze(str(clip), load_config(path).channel(None), events.append)
    return [e for e in events if e.alarm == "subtitles_missing"]


def test_ffmpeg_reads_the_announced_languages(clip: Path) -> None:
    with av.open(str(clip)) as container:
        languages = [s.metadata.get("language") for s in container.streams.subtitles]
    assert languages == ["eng", "fra"]


def test_each_stopped_pid_and_the_absent_language_found_nothing_else(
    clip: Path, tmp_path: Path
) -> None:
    events = run(clip, tmp_path, "subtitles: {languages: [eng, fra, deu], raise_after: 3s}\n")
    raised = {e.detail["language"]: e for e in events if e.state == "raised"}
    assert sorted(raised) == ["deu", "eng", "fra"], events
    assert len([e for e in events if e.state == "raised"]) == 3
    for language, start in (("eng", 8.0), ("fra", 14.0), ("deu", 0.0)):
        assert abs(raised[language].start - start) <= TOLERANCE_S, raised[language]
    eng_clear = next(e for e in events if e.state == "cleared" and e.detail["language"] == "eng")
    assert abs((eng_clear.end or 0) - 12.0) <= TOLERANCE_S
    # Teletext is "undecoded" unless FFmpeg was built with libzvbi.
    teletext = "libzvbi_teletextdec" if "libzvbi_teletextdec" in av.codecs_available else None
    assert raised["eng"].detail["codec"] in (teletext or "undecoded", "undecoded")
    assert raised["fra"].detail["codec"] == "dvbsub"


def test_without_a_subtitles_block_nothing_is_read(clip: Path, tmp_path: Path) -> None:
    assert run(clip, tmp_path, "") == []


def test_a_language_is_three_letters(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(HEAD + "      subtitles: {languages: [english]}\n")
    with pytest.raises(ConfigError, match="ISO 639-2"):
        load_config(path)
