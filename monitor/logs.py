"""Logging: structlog lines that carry channel / input / rendition, JSON for journald and files.

``configure_logging()`` once at start-up; ``log = get_logger(channel=..., input=...)`` in every
pipeline so each line says where it comes from. Standard-library loggers (amqtt, asyncio,
``warnings``) go through the same renderer at WARNING and above, and worker processes send
their lines to the supervisor as dicts that ``log_record`` re-emits unchanged.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}

SECRET_KEYS = ("password", "passphrase", "secret", "token")
"""Values of keys with these names (or ending in ``_<name>``) are logged as ``***``."""

_FIRST_KEYS = ("timestamp", "level", "logger", "event")

JOURNAL_PRIORITY = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2}
"""syslog priorities (RFC 5424) of our levels, for the ``<N>`` prefix journald reads."""


def configure_logging(
    *, json: bool | None = None, level: str = "info", stream: TextIO | None = None
) -> None:
    """Send every log line to ``stream`` (default stderr) as JSON, or readable text on a TTY.

    ``json`` forces either format. Safe to call again (tests, reconfiguration on reload).
    """
    stream = sys.stderr if stream is None else stream
    min_level = _level_number(level)
    tty = _isatty(stream)
    use_json = not tty if json is None else json
    renderer: Processor
    if use_json:
        tail: list[Processor] = [structlog.processors.format_exc_info, _first_keys]
        renderer = structlog.processors.JSONRenderer()
    else:
        tail = []
        renderer = structlog.dev.ConsoleRenderer(
            colors=tty and not os.environ.get("NO_COLOR"),  # https://no-color.org
            exception_formatter=structlog.dev.plain_traceback,
        )
    if _to_journal(stream):
        renderer = _with_priority(renderer)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _timestamp,
            redact_secrets,
            structlog.processors.StackInfoRenderer(),
            *tail,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(min_level),
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        # Not cached: loggers made at import time must follow a later configure_logging().
        cache_logger_on_first_use=False,
    )
    _route_stdlib_logging(max(min_level, logging.WARNING))


def get_logger(**bound: Any) -> FilteringBoundLogger:
    """A logger whose every line carries ``bound`` (e.g. channel, input, rendition)."""
    logger: FilteringBoundLogger = structlog.get_logger(**bound)
    return logger


def log_record(record: Mapping[str, Any]) -> None:
    """Re-emit a log line a worker process sent as ``{"level", "event", **fields}``.

    The worker's level, fields and (if present) timestamp are kept.
    """
    fields = dict(record)
    level = _level_number(str(fields.pop("level", "info")))
    event = str(fields.pop("event", ""))
    structlog.get_logger().log(level, event, **fields)


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Defense in depth: a password that reaches a log call is written as ``***``."""
    return _redacted(event_dict)


def _redacted(mapping: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in mapping.items():
        if _is_secret(key):
            mapping[key] = "***"
        elif isinstance(value, Mapping):
            mapping[key] = _redacted(dict(value))
    return mapping


def _is_secret(key: object) -> bool:
    name = str(key).lower().replace("-", "_")
    return any(name == word or name.endswith("_" + word) for word in SECRET_KEYS)


def _timestamp(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    # setdefault: a line relayed from a worker keeps the time it was logged there.
    event_dict.setdefault(
        "timestamp", datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )
    return event_dict


def _first_keys(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    # JSON keeps insertion order: time, level and message first reads best in `journalctl`.
    ordered = {key: event_dict.pop(key) for key in _FIRST_KEYS if key in event_dict}
    ordered.update(event_dict)
    return ordered


def _to_journal(stream: TextIO) -> bool:
    """``stream`` is connected to journald: systemd sets ``JOURNAL_STREAM=<dev>:<inode>`` of
    the stream it gave the service (``sd_journal_stream_fd(3)``)."""
    journal = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = journal.partition(":")
    try:
        info = os.fstat(stream.fileno())
        return (info.st_dev, info.st_ino) == (int(device), int(inode))
    except (AttributeError, OSError, ValueError):  # no file behind it, or no journal
        return False


def _with_priority(renderer: Processor) -> Processor:
    """Each line prefixed ``<N>`` with its syslog priority, so ``journalctl -p warning``
    finds the warnings (journald's ``SyslogLevelPrefix=``, on by default)."""

    def render(logger: WrappedLogger, method: str, event_dict: EventDict) -> Any:
        priority = JOURNAL_PRIORITY.get(str(event_dict.get("level")), 6)
        line = renderer(logger, method, event_dict)
        if isinstance(line, bytes):
            return b"<%d>%s" % (priority, line)
        return f"<{priority}>{line}"

    return render


def _level_number(level: str) -> int:
    try:
        return LEVELS[level.lower()]
    except KeyError:
        raise ValueError(
            f"log level must be one of debug, info, warning, error, critical, got {level!r}"
        ) from None


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class _StructlogHandler(logging.Handler):
    """Hands standard-library records to structlog, so there is one format and one writer."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            # structlog knows only the standard levels: round down to the nearest one.
            level = max(
                (n for n in (10, 20, 30, 40, 50) if n <= record.levelno), default=logging.DEBUG
            )
            fields: dict[str, Any] = {"logger": record.name}
            if record.exc_info:
                fields["exc_info"] = record.exc_info
            structlog.get_logger().log(level, record.getMessage().rstrip(), **fields)
        except Exception:
            self.handleError(record)


def _route_stdlib_logging(level: int) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _StructlogHandler):  # ours, from an earlier call
            root.removeHandler(handler)
    root.addHandler(_StructlogHandler())
    root.setLevel(level)
    # warnings.warn() would otherwise print free-form text to stderr, outside the format.
    logging.captureWarnings(True)
