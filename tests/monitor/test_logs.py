"""Log lines: JSON for journald and files, readable text on a terminal, secrets never written."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import warnings

import pytest
import structlog

from monitor.logs import configure_logging, get_logger, log_record


@pytest.fixture
def lines(restore_logging):
    """configure_logging(**options) -> function returning the JSON lines written so far."""
    stream = io.StringIO()

    def configure(**options):
        configure_logging(stream=stream, **options)
        return lambda: [json.loads(line) for line in stream.getvalue().splitlines()]

    return configure


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_json_lines_carry_timestamp_level_event_and_bound_fields(lines):
    written = lines()
    log = get_logger(channel="news", input="primary", rendition=None)
    log.info("input opened", url="srt://encoder:9000")
    log.warning("decoder restarted", reason="stalled")

    first, second = written()
    assert list(first)[:3] == ["timestamp", "level", "event"]
    assert first["timestamp"].endswith("Z") and first["timestamp"][10] == "T"
    assert first | {"timestamp": None} == {
        "timestamp": None,
        "level": "info",
        "event": "input opened",
        "channel": "news",
        "input": "primary",
        "rendition": None,
        "url": "srt://encoder:9000",
    }
    assert (second["level"], second["channel"], second["reason"]) == ("warning", "news", "stalled")


def test_a_logger_made_before_configuration_follows_it(restore_logging):
    log = get_logger(channel="news")  # as at import time of a module
    stream = io.StringIO()
    configure_logging(json=True, stream=stream)
    log.info("hello")
    assert json.loads(stream.getvalue())["channel"] == "news"


def test_lines_below_the_level_are_not_written(lines):
    written = lines(level="warning")
    log = get_logger()
    log.info("chatty")
    log.error("failed")
    assert [line["event"] for line in written()] == ["failed"]


def test_an_unknown_level_is_a_clear_error(restore_logging):
    with pytest.raises(ValueError, match="debug, info, warning, error, critical, got 'loud'"):
        configure_logging(level="loud", stream=io.StringIO())


def test_secrets_are_redacted_at_any_depth(lines):
    written = lines()
    get_logger(password="hunter2").info(
        "connecting",
        mqtt={"username": "qc", "password": "hunter2", "tls": {"passphrase": "p"}},
        api_token="t0k",
        client_secret="s",
        tokens_per_second=3,
    )
    (line,) = written()
    assert "hunter2" not in json.dumps(line)
    assert line["password"] == "***"
    assert line["mqtt"] == {"username": "qc", "password": "***", "tls": {"passphrase": "***"}}
    assert line["api_token"] == line["client_secret"] == "***"
    assert line["tokens_per_second"] == 3


def test_exceptions_are_one_json_line_with_the_traceback(lines):
    written = lines()
    try:
        raise RuntimeError("decoder exploded")
    except RuntimeError:
        get_logger(channel="news").exception("pipeline crashed")
    (line,) = written()
    assert line["level"] == "error"
    assert "RuntimeError: decoder exploded" in line["exception"]


def test_standard_library_warnings_use_the_same_format_and_infos_are_dropped(lines):
    written = lines()
    logging.getLogger("amqtt.client").info("connection made")
    logging.getLogger("amqtt.client").warning("broker %s unreachable", "mqtt://noc")
    warnings.warn("old option", DeprecationWarning, stacklevel=1)

    amqtt, warned = written()
    assert (amqtt["level"], amqtt["logger"], amqtt["event"]) == (
        "warning",
        "amqtt.client",
        "broker mqtt://noc unreachable",
    )
    assert warned["logger"] == "py.warnings"
    assert "DeprecationWarning: old option" in warned["event"]


def test_a_record_from_a_worker_keeps_its_level_fields_and_time(lines):
    written = lines()
    log_record(
        {
            "level": "warning",
            "event": "frames dropped",
            "timestamp": "2025-01-01T00:00:00.000Z",
            "channel": "news",
            "input": "backup",
            "count": 12,
        }
    )
    log_record({"level": "debug", "event": "below the level"})
    assert written() == [
        {
            "timestamp": "2025-01-01T00:00:00.000Z",
            "level": "warning",
            "event": "frames dropped",
            "channel": "news",
            "input": "backup",
            "count": 12,
        }
    ]


def test_a_terminal_gets_readable_coloured_text(restore_logging, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    terminal = Terminal()
    configure_logging(stream=terminal)
    get_logger(channel="news").info("input opened", password="hunter2")
    assert "\x1b[" in terminal.getvalue()
    text = re.sub(r"\x1b\[[0-9;]*m", "", terminal.getvalue())
    assert "input opened" in text and "channel=news" in text and "password=***" in text
    assert not text.lstrip().startswith("{")


def test_no_color_turns_colours_off_on_a_terminal(restore_logging, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    terminal = Terminal()
    configure_logging(stream=terminal)
    get_logger().info("plain")
    assert "plain" in terminal.getvalue() and "\x1b[" not in terminal.getvalue()


def test_console_format_forced_on_a_file_has_no_colour_codes(restore_logging):
    stream = io.StringIO()
    configure_logging(json=False, stream=stream)
    get_logger(channel="news").warning("late frames")
    assert "late frames" in stream.getvalue()
    assert "\x1b[" not in stream.getvalue()


def test_json_can_be_forced_on_a_terminal(restore_logging):
    terminal = Terminal()
    configure_logging(json=True, stream=terminal)
    get_logger().info("hello")
    assert json.loads(terminal.getvalue())["event"] == "hello"


def test_lines_to_journald_carry_their_syslog_priority(restore_logging, monkeypatch, tmp_path):
    """systemd names the stream it gave the service in JOURNAL_STREAM; journald reads a
    leading <N> as the line's priority, so journalctl -p warning finds the warnings."""
    with open(tmp_path / "journal", "w+", encoding="utf-8") as stream:
        info = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}")
        configure_logging(stream=stream, json=True)
        log = get_logger(channel="news")
        log.info("started")
        log.warning("mqtt disconnected")
        log.error("worker failed")
        stream.flush()
        lines = (tmp_path / "journal").read_text().splitlines()
    assert [line[:3] for line in lines] == ["<6>", "<4>", "<3>"]
    assert json.loads(lines[1][3:])["event"] == "mqtt disconnected"


def test_lines_to_another_stream_have_no_priority_prefix(restore_logging, monkeypatch, tmp_path):
    monkeypatch.setenv("JOURNAL_STREAM", "1:2")  # the service's stream, not this file
    with open(tmp_path / "log", "w+", encoding="utf-8") as stream:
        configure_logging(stream=stream, json=True)
        get_logger().warning("x")
        stream.flush()
    assert json.loads((tmp_path / "log").read_text())["event"] == "x"
