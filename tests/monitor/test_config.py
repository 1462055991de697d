"""Configuration files: what loads, how defaults merge, and one exact line for every mistake."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from detectors.regions import Region
from monitor.config import (
    Config,
    InputConfig,
    default_channel,
    load_config,
    parse_duration,
)
from monitor.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def doc(*lines: str) -> str:
    return "\n".join(lines) + "\n"


# Lines 1-6 of most documents below; what a case adds starts at line 7.
ONE_CHANNEL = (
    "version: 1",
    "site: london",
    "channels:",
    "  - name: news",
    "    inputs:",
    '      primary: {url: "udp://239.1.1.1:5000"}',
)


@pytest.fixture
def load(tmp_path, monkeypatch):
    """load(text) -> Config, read from x.yaml in the working directory (so errors say x.yaml)."""
    monkeypatch.chdir(tmp_path)

    def load(text: str) -> Config:
        Path("x.yaml").write_text(text, encoding="utf-8")
        return load_config("x.yaml")

    return load


@pytest.fixture
def error(load):
    """error(text) -> the message of the ConfigError that loading it raises."""

    def error(text: str) -> str:
        with pytest.raises(ConfigError) as raised:
            load(text)
        return str(raised.value)

    return error


# --- Every mistake is one line: FILE:LINE: KEY.PATH: what is wrong, got VALUE ---------------

ERRORS = {
    "out-of-range threshold names file, line, path and value": (
        doc(*ONE_CHANNEL, "    detectors:", "      black: {picture_ratio: 5}"),
        "x.yaml:8: channels[0].detectors.black.picture_ratio: must be <= 1, got 5",
    ),
    "value below its range names the lower bound": (
        doc(*ONE_CHANNEL, "    detectors:", "      silence: {threshold_db: -200}"),
        "x.yaml:8: channels[0].detectors.silence.threshold_db: must be >= -150, got -200",
    ),
    "a bad value in defaults is named where it is written, not in the channel": (
        doc(
            "version: 1",
            "site: london",
            "defaults:",
            "  detectors:",
            "    black:",
            "      picture_ratio: 1.5",
            "channels:",
            "  - name: news",
            "    inputs: {primary: {url: udp://239.1.1.1:5000}}",
        ),
        "x.yaml:6: defaults.detectors.black.picture_ratio: must be <= 1, got 1.5",
    ),
    "a bad value in the second channel names that channel": (
        doc(
            *ONE_CHANNEL,
            "  - name: sport",
            "    inputs: {primary: {url: udp://239.1.1.2:5000}}",
            "    detectors: {freeze: {noise_db: 3}}",
        ),
        "x.yaml:9: channels[1].detectors.freeze.noise_db: must be <= 0, got 3",
    ),
    "a key with a line break in it is shown escaped, on one line (found by fuzzing)": (
        doc(*ONE_CHANNEL, '"a\\nb": 1'),
        "x.yaml:7: unknown key 'a\\nb' (known: version, site, mqtt, metrics, thumbnails, "
        "workers, state_dir, defaults, channels)",
    ),
    "an unquoted time of day (YAML's base-60 number) says to quote it": (
        doc(*ONE_CHANNEL, "    detectors:", "      loudness: {reset_at: 6:30}"),
        "x.yaml:8: channels[0].detectors.loudness.reset_at: must be a string, got 390 "
        "(YAML reads an unquoted 6:30 as 390: quote it)",
    ),
    "a channel named like one of streamqc's own topics is refused": (
        doc("version: 1", "site: london", "channels:", "  - name: daemon", "    inputs: {}"),
        "x.yaml:4: channels[0].name: 'daemon' is reserved: its MQTT topics are streamqc's own "
        "(reserved: agents, daemon), got 'daemon'",
    ),
    "misspelt key suggests the closest known key and lists them all": (
        doc(*ONE_CHANNEL, "    detectors:", "      silence: {treshold: -50}"),
        "x.yaml:8: channels[0].detectors.silence: unknown key 'treshold', did you mean "
        "'threshold_db'? (known: enabled, raise_after, clear_after, severity, threshold_db, "
        "measure, block_ms, ignore_channels)",
    ),
    "unknown key with nothing close lists the known keys": (
        doc(*ONE_CHANNEL, "    colour: red"),
        "x.yaml:7: channels[0]: unknown key 'colour' (known: name, inputs, row_step, detectors, "
        "failover)",
    ),
    "unknown detector lists the known detectors": (
        doc(*ONE_CHANNEL, "    detectors:", "      blak: {enabled: false}"),
        "x.yaml:8: channels[0].detectors: unknown detector 'blak', did you mean 'black'? "
        "(known: black, freeze, silence, audio_missing, video_missing, input_loss, transport, "
        "loudness, av_sync, rendition_mismatch, picture_corrupt, captions, subtitles, "
        "scte35, graphics)",
    ),
    "the field name of a duration is not a YAML key": (
        doc(*ONE_CHANNEL, "    detectors:", "      black: {raise_after_s: 3}"),
        "x.yaml:8: channels[0].detectors.black: unknown key 'raise_after_s', did you mean "
        "'raise_after'? (known: enabled, raise_after, clear_after, severity, pixel_threshold, "
        "picture_ratio, dark_texture_cv, dark_motion_cv, dark_scene_check, ignore)",
    ),
    "a number in quotes is a string, not a number": (
        doc(*ONE_CHANNEL, "    detectors:", '      black: {pixel_threshold: "0.1"}'),
        "x.yaml:8: channels[0].detectors.black.pixel_threshold: must be a number, got '0.1'",
    ),
    "a number cannot be infinite": (
        doc(*ONE_CHANNEL, "    detectors:", "      black: {dark_texture_cv: .inf}"),
        "x.yaml:8: channels[0].detectors.black.dark_texture_cv: must be a finite number, got .inf",
    ),
    "a bool must be a real YAML bool, not a string": (
        doc(*ONE_CHANNEL, "    detectors:", '      black: {enabled: "no"}'),
        "x.yaml:8: channels[0].detectors.black.enabled: must be true or false, got 'no'",
    ),
    "a bool must be a real YAML bool, not a number": (
        doc(*ONE_CHANNEL, "    detectors:", "      black: {dark_scene_check: 0}"),
        "x.yaml:8: channels[0].detectors.black.dark_scene_check: must be true or false, got 0",
    ),
    "a choice lists the allowed values": (
        doc(*ONE_CHANNEL, "    detectors:", "      silence: {measure: loudest}"),
        "x.yaml:8: channels[0].detectors.silence.measure: must be one of: peak, rms, got 'loudest'",
    ),
    "severity lists the severities": (
        doc(*ONE_CHANNEL, "    detectors:", "      freeze: {severity: fatal}"),
        "x.yaml:8: channels[0].detectors.freeze.severity: must be one of: critical, major, "
        "minor, warning, info, got 'fatal'",
    ),
    "a duration without a known unit is rejected": (
        doc(*ONE_CHANNEL, "    detectors:", "      black: {raise_after: 5 sec}"),
        "x.yaml:8: channels[0].detectors.black.raise_after: must be a duration like 500ms, 5s, "
        "2m, 1h or a number of seconds, got '5 sec'",
    ),
    "a negative duration is rejected": (
        doc(*ONE_CHANNEL, "    detectors:", "      audio_missing: {clear_after: -1s}"),
        "x.yaml:8: channels[0].detectors.audio_missing.clear_after: must not be negative, "
        "got '-1s'",
    ),
    "an input timeout is a duration too": (
        doc(*ONE_CHANNEL[:-1], "      primary: {url: udp://239.1.1.1:5000, read_timeout: never}"),
        "x.yaml:6: channels[0].inputs.primary.read_timeout: must be a duration like 500ms, 5s, "
        "2m, 1h or a number of seconds, got 'never'",
    ),
    "a region reaching outside the picture is rejected": (
        doc(
            *ONE_CHANNEL,
            "    detectors:",
            "      black:",
            "        ignore:",
            "          - {x: 0.9, y: 0.0, w: 0.2, h: 0.1}",
        ),
        "x.yaml:10: channels[0].detectors.black.ignore[0]: region Region(x=0.9, y=0.0, w=0.2, "
        "h=0.1) reaches outside the picture (x+w and y+h must be <= 1), "
        "got {x: 0.9, y: 0.0, w: 0.2, h: 0.1}",
    ),
    "a region coordinate out of 0..1 names the coordinate": (
        doc(
            *ONE_CHANNEL,
            "    detectors:",
            "      freeze:",
            "        ignore:",
            "          - {x: 0.1, y: 0.1, w: 0.1, h: 0.1}",
            "          - {x: 0.1, y: 0.1, w: 0.1,",
            "             h: 2}",
        ),
        "x.yaml:12: channels[0].detectors.freeze.ignore[1].h: must be <= 1, got 2",
    ),
    "a region without all four coordinates names the missing one": (
        doc(*ONE_CHANNEL, "    detectors:", "      black: {ignore: [{x: 0, y: 0, w: 0.1}]}"),
        "x.yaml:8: channels[0].detectors.black.ignore[0]: missing required key 'h'",
    ),
    "ignore must be a list of regions": (
        doc(*ONE_CHANNEL, "    detectors:", "      black: {ignore: {x: 0, y: 0, w: 1, h: 1}}"),
        "x.yaml:8: channels[0].detectors.black.ignore: must be a list, "
        "got {x: 0, y: 0, w: 1, h: 1}",
    ),
    "a detector block must be a mapping": (
        doc(*ONE_CHANNEL, "    detectors:", "      black: off"),
        "x.yaml:8: channels[0].detectors.black: must be a mapping, got false",
    ),
    "a key written twice in one mapping is rejected, not silently overwritten": (
        doc(
            *ONE_CHANNEL,
            "    detectors:",
            "      black:",
            "        picture_ratio: 0.9",
            "        picture_ratio: 0.5",
        ),
        "x.yaml:10: channels[0].detectors.black.picture_ratio: duplicate key 'picture_ratio' "
        "(first at line 9); YAML would silently keep only the last",
    ),
    "a duplicate channel name names the second and the first's line": (
        doc(*ONE_CHANNEL, "  - name: news", "    inputs: {primary: {url: udp://239.1.1.2:5000}}"),
        "x.yaml:7: channels[1].name: duplicate channel name 'news' (first at line 4)",
    ),
    "a missing required key names the enclosing mapping's line": (
        doc(*ONE_CHANNEL[:-1], "      backup: {url: udp://239.1.1.2:5000}"),
        "x.yaml:5: channels[0].inputs: missing required key 'primary'",
    ),
    "an input without url": (
        doc(*ONE_CHANNEL[:-1], "      primary: {read_timeout: 5s}"),
        "x.yaml:6: channels[0].inputs.primary: missing required key 'url'",
    ),
    "a channel without name": (
        doc(*ONE_CHANNEL[:3], "  - inputs: {primary: {url: udp://239.1.1.1:5000}}"),
        "x.yaml:4: channels[0]: missing required key 'name'",
    ),
    "a file without site": (
        doc(ONE_CHANNEL[0], *ONE_CHANNEL[2:]),
        "x.yaml:1: missing required key 'site'",
    ),
    "a file without channels": (
        doc("version: 1", "site: london"),
        "x.yaml:1: missing required key 'channels'",
    ),
    "an empty channel list": (
        doc("version: 1", "site: london", "channels: []"),
        "x.yaml:3: channels: must not be empty, got []",
    ),
    "an unknown URL scheme lists the supported ones": (
        doc(*ONE_CHANNEL[:-1], '      primary: {url: "demo://"}'),
        "x.yaml:6: channels[0].inputs.primary.url: unsupported scheme 'demo' (use file, http, "
        "https, udp, rtp, srt, tcp or a path), got 'demo://'",
    ),
    "an empty URL": (
        doc(*ONE_CHANNEL[:-1], '      primary: {url: ""}'),
        "x.yaml:6: channels[0].inputs.primary.url: must not be empty, got ''",
    ),
    "only format version 1 exists": (
        doc("version: 2", *ONE_CHANNEL[1:]),
        "x.yaml:1: version: must be 1, the only format version so far, got 2",
    ),
    "the version is a number, not a bool": (
        doc("version: true", *ONE_CHANNEL[1:]),
        "x.yaml:1: version: must be 1, the only format version so far, got true",
    ),
    "the site goes into MQTT topics, so no slashes": (
        doc(ONE_CHANNEL[0], "site: london/playout", *ONE_CHANNEL[2:]),
        "x.yaml:2: site: must be letters, digits, '_', '.' or '-' (it goes into MQTT topics), "
        "got 'london/playout'",
    ),
    "a channel name goes into MQTT topics, so no spaces": (
        doc(*ONE_CHANNEL[:3], "  - name: news hd", *ONE_CHANNEL[4:]),
        "x.yaml:4: channels[0].name: must be letters, digits, '_', '.' or '-' (it goes into "
        "MQTT topics), got 'news hd'",
    ),
    "row_step is auto or a positive integer": (
        doc(*ONE_CHANNEL, "    row_step: 0"),
        "x.yaml:7: channels[0].row_step: must be 'auto' or an integer >= 1, got 0",
    ),
    "the first problem in the file is the one reported": (
        doc(
            *ONE_CHANNEL,
            "    detectors:",
            "      freeze: {noise_db: 1}",
            "      black: {picture_ratio: 5}",
            "      silence: {block_ms: 0}",
        ),
        "x.yaml:8: channels[0].detectors.freeze.noise_db: must be <= 0, got 1",
    ),
    "the top level must be a mapping": (
        doc("- news", "- sport"),
        "x.yaml:1: expected a mapping of version, site and channels, got [news, sport]",
    ),
    "an empty file": (
        "",
        "x.yaml:1: the file is empty; expected version, site and channels",
    ),
    "a file of comments only is empty": (
        doc("# nothing yet", ""),
        "x.yaml:1: the file is empty; expected version, site and channels",
    ),
    "a YAML syntax error is one line with the parser's line": (
        doc("version: 1", "site: [london", "channels: []"),
        "x.yaml:3: invalid YAML: expected ',' or ']', but got ':' "
        "(while parsing a flow sequence at line 2)",
    ),
    "bad indentation is a YAML syntax error": (
        doc("version: 1", "  site: london"),
        "x.yaml:2: invalid YAML: mapping values are not allowed here",
    ),
    "two documents in one file": (
        doc(*ONE_CHANNEL, "---", "version: 1"),
        "x.yaml:7: invalid YAML: but found another document "
        "(expected a single document in the stream at line 1)",
    ),
}


@pytest.mark.parametrize(("text", "message"), ERRORS.values(), ids=ERRORS.keys())
def test_each_mistake_is_reported_as_one_exact_line(error, text, message):
    assert error(text) == message


def test_out_of_range_threshold_names_file_line_path_and_value(tmp_path):
    path = tmp_path / "news.yaml"
    path.write_text(doc(*ONE_CHANNEL, "    detectors:", "      black: {picture_ratio: 5}"))
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert str(raised.value) == (
        f"{path}:8: channels[0].detectors.black.picture_ratio: must be <= 1, got 5"
    )


def test_errors_carry_no_pydantic_or_yaml_exception_along(load):
    for text in (doc(*ONE_CHANNEL, "    row_step: many"), doc("version: [1")):
        with pytest.raises(ConfigError) as raised:
            load(text)
        assert raised.value.__cause__ is None
        assert raised.value.__suppress_context__


def test_long_values_are_cut_to_keep_the_message_on_one_line(error):
    message = error(doc(*ONE_CHANNEL, f"    row_step: [{', '.join(['1'] * 100)}]"))
    assert message.startswith("x.yaml:7: channels[0].row_step: must be 'auto' or an integer >= 1")
    assert message.endswith("...")
    assert len(message) < 200


def test_a_missing_file_is_named():
    with pytest.raises(ConfigError, match=r"^configs/nope\.yaml: no such file$"):
        load_config("configs/nope.yaml")


def test_a_directory_is_not_a_config_file(tmp_path):
    with pytest.raises(ConfigError) as raised:
        load_config(tmp_path)
    assert str(raised.value) == f"{tmp_path}: is a directory, not a file"


def test_a_file_that_is_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"version: 1\nsite: z\xfcrich\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert str(raised.value) == f"{path}:2: not UTF-8 text"


# --- Merging defaults into channels ---------------------------------------------------------

WITH_DEFAULTS = doc(
    "version: 1",
    "site: london",
    "defaults:",
    "  row_step: 4",
    "  detectors:",
    "    black: {raise_after: 3s, picture_ratio: 0.9, ignore: [{x: 0.8, y: 0, w: 0.2, h: 0.2}]}",
    "    silence: {threshold_db: -70}",
    "channels:",
    "  - name: news",
    "    inputs: {primary: {url: udp://239.1.1.1:5000}}",
    "    row_step: auto",
    "    detectors:",
    "      black: {enabled: false}",
    "      silence: {threshold_db: -50, measure: rms}",
    "  - name: sport",
    "    inputs: {primary: {url: udp://239.1.1.2:5000}}",
    "    detectors:",
    "      black: {ignore: []}",
)


def test_a_channel_setting_keeps_the_other_keys_of_the_defaults(load):
    black = load(WITH_DEFAULTS).channel("news").black
    assert black.rule.enabled is False
    assert black.rule.raise_after_s == 3.0
    assert black.settings.picture_ratio == 0.9


def test_a_channel_value_overrides_the_default_of_the_same_key(load):
    silence = load(WITH_DEFAULTS).channel("news").silence.settings
    assert (silence.threshold_db, silence.measure) == (-50.0, "rms")


def test_defaults_apply_to_every_channel_that_does_not_override_them(load):
    sport = load(WITH_DEFAULTS).channel("sport")
    assert sport.black.rule.enabled is True
    assert sport.black.rule.raise_after_s == 3.0
    assert sport.silence.settings.threshold_db == -70.0
    assert sport.row_step == 4


def test_a_channel_list_replaces_the_defaults_list_rather_than_extending_it(load):
    config = load(WITH_DEFAULTS)
    assert config.channel("news").black.settings.ignore == (Region(0.8, 0.0, 0.2, 0.2),)
    assert config.channel("sport").black.settings.ignore == ()


def test_row_step_auto_in_a_channel_overrides_a_numeric_default(load):
    assert load(WITH_DEFAULTS).channel("news").row_step is None


def test_keys_nobody_wrote_keep_the_dataclass_defaults(load):
    news = load(WITH_DEFAULTS).channel("news")
    default = default_channel()
    assert news.freeze == default.freeze
    assert news.black.rule.clear_after_s == default.black.rule.clear_after_s
    assert news.black.settings.dark_texture_cv == default.black.settings.dark_texture_cv


def test_presence_checks_default_to_critical_and_can_be_changed(load):
    config = load(doc(*ONE_CHANNEL, "    detectors:", "      video_missing: {severity: minor}"))
    news = config.channel("news")
    assert news.audio_missing.rule.severity == "critical"
    assert news.video_missing.rule.severity == "minor"


def test_checks_off_by_default_are_on_once_their_block_is_written(load):
    news = load(
        doc(
            *ONE_CHANNEL,
            "    detectors:",
            "      av_sync: {preset: ebu_r37, raise_after: 5s}",
            "      loudness: {preset: ebu_r128, enabled: false}",
        )
    ).channel("news")
    assert default_channel().av_sync.rule.enabled is False
    assert news.av_sync.rule.enabled is True and news.av_sync.rule.raise_after_s == 5.0
    assert news.loudness.rule.enabled is False  # said so
    assert news.black.rule.enabled is True  # on by default anyway


@pytest.mark.parametrize(
    "detectors",
    ["", "    detectors:", "    detectors: {}", "    detectors: {black: }"],
    ids=["no detectors key", "empty detectors", "empty mapping", "empty black block"],
)
def test_default_channel_is_what_an_empty_detectors_section_gives(load, detectors):
    news = load(doc(*ONE_CHANNEL, detectors)).channel("news")
    assert dataclasses.replace(news, inputs={}) == default_channel("news")


def test_integers_are_accepted_where_numbers_are_expected_and_stored_as_floats(load):
    config = load(doc(*ONE_CHANNEL, "    detectors:", "      silence: {block_ms: 20}"))
    block_ms = config.channel("news").silence.settings.block_ms
    assert block_ms == 20.0
    assert type(block_ms) is float


def test_inputs_carry_url_and_timeouts(load):
    config = load(
        doc(
            *ONE_CHANNEL[:-1],
            "      primary: {url: udp://239.1.1.1:5000, open_timeout: 2500ms, read_timeout: 1m}",
            "      backup: {url: /var/media/slate.ts}",
        )
    )
    assert config.channel("news").inputs == {
        "primary": InputConfig("udp://239.1.1.1:5000", open_timeout_s=2.5, read_timeout_s=60.0),
        "backup": InputConfig("/var/media/slate.ts"),
    }


def test_a_channel_without_backup_has_only_a_primary_input(load):
    assert list(load(doc(*ONE_CHANNEL)).channel("news").inputs) == ["primary"]


def test_anchors_and_merge_keys_share_settings_between_channels(load):
    config = load(
        doc(
            "version: 1",
            "site: london",
            "channels:",
            "  - name: news",
            "    inputs: {primary: {url: udp://239.1.1.1:5000}}",
            "    detectors:",
            "      freeze: &still {noise_db: -50, severity: minor}",
            "  - name: sport",
            "    inputs: {primary: {url: udp://239.1.1.2:5000}}",
            "    detectors:",
            "      freeze: {<<: *still, severity: warning}",
        )
    )
    sport = config.channel("sport").freeze
    assert (sport.settings.noise_db, sport.rule.severity) == (-50.0, "warning")


@pytest.mark.parametrize("name", ["black", "freeze", "silence", "audio_missing", "video_missing"])
def test_every_detector_takes_the_alarm_keys_and_its_settings_fields(error, name):
    """The YAML blocks are generated from the Settings dataclasses: nothing is listed twice."""
    settings = type(getattr(default_channel(), name).settings)
    message = error(doc(*ONE_CHANNEL, "    detectors:", f"      {name}: {{zzz: 1}}"))
    keys = ["enabled", "raise_after", "clear_after", "severity"]
    keys += [field.name for field in dataclasses.fields(settings)]
    assert message.endswith(f"unknown key 'zzz' (known: {', '.join(keys)})")


# --- Durations ------------------------------------------------------------------------------

DURATIONS = {
    "500ms": 0.5,
    "5s": 5.0,
    "1.5s": 1.5,
    "2m": 120.0,
    "1h": 3600.0,
    "0s": 0.0,
    "250 ms": 0.25,
    "3": 3.0,
    4: 4.0,
    0.25: 0.25,
}


@pytest.mark.parametrize(("text", "seconds"), DURATIONS.items(), ids=map(repr, DURATIONS))
def test_durations_are_seconds(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("soon", "must be a duration like"),
        ("5 sec", "must be a duration like"),
        ("1h30m", "must be a duration like"),
        ("", "must be a duration like"),
        (True, "must be a duration like"),
        (None, "must be a duration like"),
        ("-1s", "must not be negative"),
        (-0.5, "must not be negative"),
        (float("inf"), "must be a finite duration"),
    ],
    ids=repr,
)
def test_garbage_and_negative_durations_are_errors(value, message):
    with pytest.raises(ValueError, match=f"^{message}"):
        parse_duration(value)


# --- Picking a channel ----------------------------------------------------------------------

TWO_CHANNELS = doc(*ONE_CHANNEL, "  - name: sport", "    inputs: {primary: {url: udp://h:1}}")


def test_channel_by_name(load):
    assert load(TWO_CHANNELS).channel("sport").name == "sport"


def test_the_only_channel_needs_no_name(load):
    assert load(doc(*ONE_CHANNEL)).channel(None).name == "news"


def test_no_name_among_several_channels_lists_them(load):
    with pytest.raises(ConfigError, match=r"^x\.yaml: 2 channels, name one of: news, sport$"):
        load(TWO_CHANNELS).channel(None)


def test_an_unknown_channel_name_lists_the_channels(load):
    with pytest.raises(
        ConfigError, match=r"^x\.yaml: no channel named 'weather' \(channels: news, sport\)$"
    ):
        load(TWO_CHANNELS).channel("weather")


# --- The shipped configurations -------------------------------------------------------------


def test_the_example_config_loads_with_its_three_channels():
    config = load_config(CONFIGS / "example.yaml")
    assert [channel.name for channel in config.channels] == ["news-hd", "kids.sd", "regional-07"]
    news, kids, probe = config.channels
    assert news.inputs["primary"].pictures == "all"
    assert probe.inputs["primary"].pictures == "keyframes"
    assert probe.av_sync.rule.enabled and "av_sync" not in probe.written  # from defaults
    assert news.inputs["backup"].url == "srt://10.0.0.2:9000"
    assert news.silence.rule.raise_after_s == 5.0
    assert news.freeze.rule.raise_after_s == 5.0  # from defaults
    assert kids.black.settings.dark_scene_check is False
    assert kids.black.settings.ignore == (Region(0.8, 0.0, 0.2, 0.15),)  # from defaults
    assert kids.video_missing.rule.enabled is False
    assert kids.row_step == 2


def test_the_example_configs_sample_error_message_is_the_real_one(tmp_path):
    text = (CONFIGS / "example.yaml").read_text()
    sample = next(line for line in text.splitlines() if "must be <= 1" in line)
    broken = tmp_path / "example.yaml"
    broken.write_text(text.replace("picture_ratio: 0.98 ", "picture_ratio: 5    ", 1))
    with pytest.raises(ConfigError) as raised:
        load_config(broken)
    assert str(raised.value) == sample.strip("# ").replace("configs/", f"{tmp_path}/")


def test_the_demo_config_loads_one_channel_on_loopback_udp():
    config = load_config(CONFIGS / "demo.yaml")
    assert config.channel(None).inputs["primary"].url == "udp://127.0.0.1:5000"


# --- The daemon's own settings ---------------------------------------------------------------


def test_without_daemon_sections_the_daemon_defaults_to_an_embedded_broker(load):
    daemon = load(doc(*ONE_CHANNEL)).daemon
    assert daemon.mqtt.url is None and daemon.mqtt.embedded_listen == "127.0.0.1:1883"
    assert daemon.metrics.enabled and daemon.metrics.listen == "127.0.0.1:9108"
    assert daemon.thumbnails.interval_s == 10.0 and daemon.workers is None


def test_daemon_sections_load_with_durations_and_nested_tls(load):
    config = load(
        doc(
            *ONE_CHANNEL,
            'mqtt: {url: "mqtts://noc:8883", username: qc, keepalive: 1m, tls: {ca: /ca.pem}}',
            "thumbnails: {interval: 2s, width: 160}",
            "workers: 3",
            "state_dir: /srv/qc",
        )
    )
    mqtt = config.daemon.mqtt
    assert (mqtt.url, mqtt.username, mqtt.keepalive_s, mqtt.tls.ca) == (
        "mqtts://noc:8883", "qc", 60.0, "/ca.pem",
    )  # fmt: skip
    assert (config.daemon.thumbnails.interval_s, config.daemon.thumbnails.width) == (2.0, 160)
    assert config.daemon.workers == 3 and config.daemon.state_dir == "/srv/qc"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        pytest.param(
            "mqtt: {url: 'mqtt://qc:hunter2@noc'}",
            "x.yaml:7: mqtt.url: no credentials in the URL (they would end up in logs): use "
            "username and password_file, or STREAMQC_MQTT_PASSWORD",
            id="a password in the broker URL is refused without echoing it",
        ),
        pytest.param(
            "mqtt: {url: 'http://noc'}",
            "x.yaml:7: mqtt.url: must be mqtt://HOST[:PORT] or mqtts://HOST[:PORT], "
            "got 'http://noc'",
            id="a broker URL of another scheme",
        ),
        pytest.param(
            "mqtt: {password: x}",
            "x.yaml:7: mqtt: unknown key 'password', did you mean 'password_file'? (known: url, "
            "embedded_listen, client_id, username, password_file, tls, prefix, keepalive, "
            "queue_max_messages)",
            id="no password key: a file or the environment",
        ),
        pytest.param(
            "mqtt: {prefix: 'qc/#'}",
            "x.yaml:7: mqtt.prefix: must be a topic without wildcards, got 'qc/#'",
            id="a wildcard in the topic prefix",
        ),
        pytest.param(
            "mqtt: {keepalive: 1s}",
            "x.yaml:7: mqtt.keepalive: must be >= 5, got '1s'",
            id="a keepalive too short",
        ),
        pytest.param(
            "metrics: {listen: '9108'}",
            "x.yaml:7: metrics.listen: must be HOST:PORT, e.g. 127.0.0.1:9108, got '9108'",
            id="a metrics address without host",
        ),
        pytest.param(
            "thumbnails: {interval: 500ms}",
            "x.yaml:7: thumbnails.interval: must be >= 1, got '500ms'",
            id="thumbnails faster than one a second",
        ),
        pytest.param(
            "workers: 0",
            "x.yaml:7: workers: must be 'auto' or an integer >= 1, got 0",
            id="no workers",
        ),
    ],
)
def test_each_daemon_setting_mistake_is_one_exact_line(error, line, message):
    assert error(doc(*ONE_CHANNEL, line)) == message


def test_the_example_documents_every_daemon_setting():
    text = (CONFIGS / "example.yaml").read_text()
    config = load_config(CONFIGS / "example.yaml")
    for section in (config.daemon.mqtt, config.daemon.metrics, config.daemon.thumbnails):
        for spec in dataclasses.fields(section):
            assert f"{spec.name.removesuffix('_s')}:" in text, spec.name


def test_failover_merges_defaults_key_by_key_and_takes_triggers_as_names(load):
    config = load(
        doc(
            "version: 1",
            "site: london",
            "defaults:",
            "  failover: {error_clear_time: 10s, failback: stay}",
            "channels:",
            "  - name: news",
            "    inputs:",
            '      primary: {url: "udp://239.1.1.1:5000"}',
            '      backup: {url: "udp://239.1.1.2:5000"}',
            "    failover:",
            "      mode: confirm",
            '      triggers: [input_loss, {alarm: freeze, hold: 5s}, "tr101290_*"]',
            "      confirm_timeout: null",
        )
    )
    failover = config.channel("news").failover
    assert (failover.mode, failover.failback, failover.error_clear_time_s) == (
        "confirm", "stay", 10.0,
    )  # fmt: skip
    assert [(t.alarm, t.hold_s) for t in failover.triggers] == [
        ("input_loss", 0.0), ("freeze", 5.0), ("tr101290_*", 0.0),
    ]  # fmt: skip
    assert failover.confirm_timeout_s is None


def test_failover_needs_a_backup_input_and_refuses_its_own_alarms_as_triggers(error):
    assert error(doc(*ONE_CHANNEL, "    failover: {mode: auto}")) == (
        "x.yaml:7: channels[0].failover: mode auto needs inputs 'primary' and 'backup'"
    )
    assert error(doc(*ONE_CHANNEL, "    failover: {triggers: [failover_blocked]}")) == (
        "x.yaml:7: channels[0].failover.triggers[0]: alarm: 'failover_blocked': failover_* "
        "alarms are raised by the policy itself, got 'failover_blocked'"
    )
