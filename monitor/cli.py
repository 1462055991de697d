"""The ``streamqc`` command line.

Errors a user can act on are one line on stderr and a non-zero exit, never a traceback:
1 = the input is unusable, 2 = the configuration or the command line is wrong.
Set STREAMQC_DEBUG=1 to see tracebacks of unexpected errors.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from monitor.alarms.engine import AlarmEvent
from monitor.checks.base import InfoEvent, Inform, ignore_info
from monitor.checks.registry import refuse_unrunnable
from monitor.config import Config, default_channel, load_config, parse_duration
from monitor.errors import ConfigError, InputError, StreamqcError
from monitor.pipeline.analyze import AnalysisSummary, analyze, damage
from monitor.pipeline.live_session import LiveSession, LiveSummary, is_live_url
from monitor.version import streamqc_version

EXIT_INPUT = 1
EXIT_CONFIG = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        return fail(str(exc), EXIT_CONFIG)
    except InputError as exc:
        return fail(str(exc), EXIT_INPUT)
    except StreamqcError as exc:
        return fail(str(exc), EXIT_INPUT)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # stdout closed by a pager or `head`: not an error of ours.
        sys.stderr.close()
        return 0
    except Exception as exc:  # a bug: say so in one line, keep the traceback for debugging
        if os.environ.get("STREAMQC_DEBUG"):
            raise
        return fail(
            f"internal error: {type(exc).__name__}: {exc} (STREAMQC_DEBUG=1 for details)", 70
        )


def fail(message: str, code: int) -> int:
    print(f"streamqc: error: {message}", file=sys.stderr)
    return code


def warn(message: str) -> None:
    print(f"streamqc: warning: {message}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamqc",
        description="Real-time stream QC: black, freeze, silence and more, as alarm events.",
    )
    parser.add_argument("--version", action="version", version=f"streamqc {streamqc_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "analyze",
        help="analyse a file or URL once; alarm events as JSON lines on stdout",
        description="Run a channel's detectors over SOURCE until it ends. Alarm events go to "
        "stdout as JSON lines, a summary to stderr. Alarms are findings, not errors: the exit "
        "status is 0 whenever the analysis completed.",
    )
    p.add_argument(
        "source", metavar="SOURCE", help="file path or URL (file, http(s), udp, rtp, ...)"
    )
    p.add_argument("--config", metavar="FILE", help="channel configuration (YAML)")
    p.add_argument(
        "--channel", metavar="NAME", help="channel of --config to use (default: the only one)"
    )
    p.add_argument(
        "--input",
        default="primary",
        metavar="NAME",
        help="input name put in events (default: primary)",
    )
    p.add_argument("--duration", metavar="DUR", help="stop after this much media, e.g. 30s or 5m")
    p.add_argument(
        "--threads", type=int, default=1, metavar="N", help="decoder threads (0 = auto; default 1)"
    )
    p.add_argument(
        "--events",
        action="store_true",
        help="also print informational events (SCTE-35 cues) as JSON lines on stdout; each "
        "has a 'type' where an alarm event has an 'alarm'",
    )
    p.add_argument("--quiet", action="store_true", help="no summary on stderr")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser(
        "demo",
        help="watch the daemon find faults in live feeds on this machine (--offline: in a file)",
        description="Play three generated channels as live MPEG-TS/UDP feeds on loopback, with "
        "black, a freeze and silence at known times, run the daemon on them (embedded MQTT "
        "broker, metrics, a failover agent) and the NOC web console (its URL and a throw-away "
        "login are printed), print the alarms and status changes arriving over MQTT, then "
        "what was found against what was injected. Exit 0 when they match, 1 when not, 130 "
        "when stopped before --duration. Needs nothing but streamqc itself.",
    )
    p.add_argument(
        "--duration",
        metavar="DUR",
        help="how long the live demo runs (default: until Ctrl-C; 40s plays every fault once; "
        "the clips loop every 60 s)",
    )
    p.add_argument(
        "--offline",
        action="store_true",
        help="analyse one 30 s clip with faults instead (black, freeze, silence, a muted "
        "channel, a dark scene): no daemon, no network, a few seconds",
    )
    p.add_argument("--keep", metavar="DIR", help="keep the generated clips (and config) in DIR")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "run",
        help="the daemon: monitor every channel of a configuration, alarms to MQTT",
        description="Monitor every input of every channel in FILE until stopped: alarms, "
        "status and thumbnails to MQTT (an embedded broker when none is configured), "
        "Prometheus metrics, systemd notifications. SIGHUP reloads FILE; SIGTERM stops.",
    )
    p.add_argument("--config", required=True, metavar="FILE", help="configuration (YAML)")
    add_log_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "agent",
        help="the failover agent on an encoder host: switch commands over MQTT",
        description="Take the daemon's switch commands for the channels in FILE over MQTT and "
        "put the other input on air (restart the encoder, call its HTTP API or run a script); "
        "acknowledge each command and keep the encoder's state retained. SIGTERM stops.",
    )
    p.add_argument("--config", required=True, metavar="FILE", help="agent configuration (YAML)")
    p.add_argument(
        "--check", action="store_true", help="validate FILE and exit (files it names unread)"
    )
    add_log_options(p)
    p.set_defaults(func=cmd_agent)

    add_console_parser(sub)

    p = sub.add_parser("check-config", help="validate a configuration file and exit")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(func=cmd_check_config)
    return parser


def add_console_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "console",
        help="the NOC web console: mosaic, alarm list, failover buttons, JSON API",
        description="Serve the web console of every site publishing to the broker of FILE: "
        "the mosaic of channels with live pictures, the alarm list with history, "
        "acknowledgements and shelves, channel pages with failover actions, and /api/. "
        "SIGTERM stops.",
    )
    p.add_argument("--config", metavar="FILE", help="console configuration (YAML)")
    add_log_options(p)
    p.set_defaults(func=cmd_console)
    actions = p.add_subparsers(dest="console_command", metavar="ACTION")
    user = actions.add_parser("user", help="manage the console's users")
    user_actions = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    add = user_actions.add_parser(
        "add",
        help="add or replace a user (password on stdin, or --password-file)",
        description="Write NAME with a scrypt hash of the password into the users_file of "
        "--config. The password is read from --password-file, else from stdin (asked twice "
        "on a terminal). A running console picks the change up at the next login.",
    )
    add.add_argument("name", metavar="NAME")
    add.add_argument("--role", required=True, choices=("viewer", "operator"))
    add.add_argument("--config", required=True, metavar="FILE", help="console configuration")
    add.add_argument("--password-file", metavar="F", help="file whose first line is the password")
    add.set_defaults(func=cmd_console_user_add)
    check = actions.add_parser("check-config", help="validate a console configuration and exit")
    check.add_argument("file", metavar="FILE")
    check.set_defaults(func=cmd_console_check)


def add_log_options(p: argparse.ArgumentParser) -> None:
    """The log options of the long-running commands (the daemon and the agent)."""
    p.add_argument(
        "--log-format",
        choices=("auto", "json", "console"),
        default="auto",
        help="auto (default): readable on a terminal, JSON lines otherwise (journald)",
    )
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")


def cmd_analyze(args: argparse.Namespace) -> int:
    duration_s = None
    if args.duration is not None:
        try:
            duration_s = parse_duration(args.duration)
        except ValueError as exc:
            raise ConfigError(f"--duration: {exc}") from None
    if args.config:
        config = load_config(args.config)
        refuse_unrunnable(config)
        channel = config.channel(args.channel)
    else:
        if args.channel:
            raise ConfigError("--channel needs --config")
        channel = default_channel()

    def emit(event: AlarmEvent) -> None:
        sys.stdout.write(event.to_json() + "\n")
        sys.stdout.flush()

    def inform(event: InfoEvent) -> None:
        sys.stdout.write(json.dumps(event.to_dict()) + "\n")
        sys.stdout.flush()

    events_out: Inform = inform if args.events else ignore_info

    configured = channel.inputs.get(args.input)
    # The source named on the command line, with the configured input's timeouts.
    source = replace(configured, url=args.source) if configured else None
    if is_live_url(args.source):
        session = LiveSession(
            args.source,
            channel,
            emit,
            input_name=args.input,
            source=source,
            duration_s=duration_s,
            inform=events_out,
        )
        session.notice = warn
        live = session.run()
        if not args.quiet:
            print_live_summary(live)
        return 0
    summary = analyze(
        args.source,
        channel,
        emit,
        input_name=args.input,
        duration_s=duration_s,
        threads=args.threads,
        source=source,
        inform=events_out,
    )
    if not args.quiet:
        print_summary(summary)
    return 0


def print_summary(s: AnalysisSummary) -> None:
    streams = "; ".join(info.description for info in s.streams)
    speed = f"{s.media_s / s.wall_s:.0f}x real time" if s.wall_s > 0 else ""
    print(
        f"streamqc: {s.source} ({streams}): {s.media_s:.2f} s of media in {s.wall_s:.2f} s"
        f" ({speed}), {s.pictures} pictures",
        file=sys.stderr,
    )
    raised = [e for e in s.events if e.state == "raised"]
    ends = {e.id: e.end for e in s.events if e.state == "cleared"}
    if not raised:
        print("streamqc: no alarms", file=sys.stderr)
    for e in raised:
        end = ends.get(e.id)
        span = f"{e.start:.3f}-{end:.3f} s" if end is not None else f"from {e.start:.3f} s"
        extra = ""
        if e.alarm == "silence" and e.detail.get("channels") is not None:
            channels = ",".join(str(c) for c in e.detail["channels"])
            extra = f" (channels {channels} of {e.detail.get('channel_count')})"
        print(f"streamqc: alarm {e.alarm} [{e.severity}] {span}{extra}", file=sys.stderr)
    r = s.report
    for message in r.warnings:
        warn(message)
    if damage(r):
        warn(
            f"{damage(r)}: the input is damaged or truncated; "
            f"analysed what could be decoded, to {s.media_s:.2f} s"
        )
    if r.truncated:
        warn(f"{s.source} {r.truncated}: truncated; analysed the {s.media_s:.2f} s it holds")
    if r.read_error:
        warn(f"reading stopped early at {s.media_s:.2f} s: {r.read_error}")


def print_live_summary(s: LiveSummary) -> None:
    streams = "; ".join(info.description for info in s.streams) or "no decodable stream"
    if s.ended:  # a VOD asset, read to its end as fast as it decodes
        speed = f", {s.media_s / s.wall_s:.1f}x real time" if s.wall_s > 0 else ""
        done = f"analysed {s.media_s:.1f} s of media to the end in {s.wall_s:.1f} s{speed}"
    else:
        done = f"monitored {s.media_s:.1f} s"
    print(
        f"streamqc: {s.source} ({streams}): {done}, {s.pictures} pictures, "
        f"{s.bytes_in} bytes, {s.restarts} decoder restarts",
        file=sys.stderr,
    )
    if damage(s.damage):
        warn(f"{damage(s.damage)}: the input is damaged; monitored what could be decoded")


def cmd_demo(args: argparse.Namespace) -> int:
    keep = Path(args.keep) if args.keep else None
    if args.offline:
        if args.duration is not None:
            raise ConfigError("--duration is for the live demo; --offline plays a 30 s clip")
        from monitor.demo.offline import run_demo as run_offline  # PyAV encoding only here

        return run_offline(keep)
    from monitor.demo.live import run_demo

    if args.duration is None:
        return run_demo(None, keep)  # until Ctrl-C: time to watch it in the console
    try:
        duration_s = parse_duration(args.duration)
    except ValueError as exc:
        raise ConfigError(f"--duration: {exc}") from None
    if duration_s <= 0:
        raise ConfigError(f"--duration: must be more than 0, got {args.duration}")
    return run_demo(duration_s, keep)


def cmd_run(args: argparse.Namespace) -> int:
    import asyncio

    from monitor.daemon.supervisor import run_daemon
    from monitor.logs import configure_logging

    json = {"auto": None, "json": True, "console": False}[args.log_format]
    configure_logging(json=json, level=args.log_level)
    # A watchdog kill (SIGABRT) then leaves every thread's Python stack in the journal.
    faulthandler.enable()
    return asyncio.run(run_daemon(args.config))


def cmd_check_config(args: argparse.Namespace) -> int:
    config: Config = load_config(args.file)
    refuse_unrunnable(config)
    names = ", ".join(c.name for c in config.channels)
    print(f"{args.file}: OK: site {config.site}, {len(config.channels)} channels ({names})")
    return 0


def cmd_agent(args: argparse.Namespace) -> int:
    import asyncio

    from monitor.config.agent import load_agent_config
    from monitor.daemon.agent_service import run_agent
    from monitor.logs import configure_logging

    config = load_agent_config(args.config)
    if args.check:
        names = ", ".join(c.name for c in config.settings.channels)
        print(f"{args.config}: OK: agent {config.settings.agent_id}, channels {names}")
        return 0
    broker = config.broker()  # reads the password and TLS files: a bad one is exit 2 now
    json = {"auto": None, "json": True, "console": False}[args.log_format]
    configure_logging(json=json, level=args.log_level)
    faulthandler.enable()
    return asyncio.run(run_agent(config, broker))


def cmd_console(args: argparse.Namespace) -> int:
    import asyncio

    from monitor.console.auth import Users
    from monitor.console.settings import check_tls_files, load_console_settings
    from monitor.console.web import run_console
    from monitor.logs import configure_logging

    if not args.config:
        raise ConfigError("console: --config FILE is required (or: console user add, check-config)")
    settings = load_console_settings(args.config)
    check_tls_files(settings)
    broker = settings.broker()  # reads the password and TLS files: a bad one is exit 2 now
    users = Users(settings.users_file)  # no users file: say how to add a user, exit 2
    json = {"auto": None, "json": True, "console": False}[args.log_format]
    configure_logging(json=json, level=args.log_level)
    faulthandler.enable()
    return asyncio.run(run_console(settings, broker, users))


def cmd_console_check(args: argparse.Namespace) -> int:
    from monitor.console.settings import check_tls_files, load_console_settings

    settings = load_console_settings(args.file)
    check_tls_files(settings)
    scheme = "https" if settings.tls else "http"
    print(
        f"{args.file}: OK: {scheme}://{settings.listen_host}:{settings.listen_port}/, prefixes "
        f"{', '.join(settings.prefixes)}, users in {settings.users_file}"
    )
    return 0


def cmd_console_user_add(args: argparse.Namespace) -> int:
    import getpass

    from monitor.console.auth import add_user
    from monitor.console.settings import load_console_settings

    settings = load_console_settings(args.config)
    if args.password_file:
        try:
            text = Path(args.password_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--password-file: cannot read {args.password_file}: {exc}") from None
        password = text.splitlines()[0] if text else ""
    elif sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise ConfigError("the two passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    replaced = add_user(settings.users_file, args.name, args.role, password)
    verb = "replaced" if replaced else "added"
    print(f"{settings.users_file}: {verb} {args.name} ({args.role})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
