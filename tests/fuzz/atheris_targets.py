"""Coverage-guided fuzzing (atheris, libFuzzer) of what reaches streamqc from outside.

    python -m tests.fuzz.atheris_targets TARGET [libFuzzer flags] [CORPUS_DIR ...]
    python -m tests.fuzz.atheris_targets ts -atheris_runs=200000 /var/tmp/fuzz-ts
    python -m tests.fuzz.atheris_targets all -atheris_runs=20000   # each target in turn

Targets (each takes the fuzzer's bytes as one input; an expected refusal is fine, any other
exception or a crash is a finding):

- ``ts``: the transport scanner and PSI parsing (TR 101 290 analyzer: sync, CC, PAT/PMT
  sections and their CRC, PCR, PTS), fed the bytes in up to three chunks.
- ``scte35``: SCTE-35 splice_info_section decoding.
- ``rtp``: the RTP header parser and the RFC 3550 sequence accounting.
- ``hls``: playlist parsing (``parse_playlist``, its kind and encryption checks).
- ``config``: the YAML loaders of the daemon and the agent (a refusal is one ConfigError line).
- ``protocol``: the failover protocol decoders (Command, Ack, EncoderState, OperatorRequest).
- ``agent``: the agent's command handling (``agent_harness``: the real Agent, link and encoder
  recorded): every command answered once or ignored in one log line, none run that should
  not be.

Without a corpus directory, a temporary one is used; an empty corpus directory is first
seeded with valid inputs of the target's kind. CI runs
each target for a fixed number of runs (``tests/fuzz/test_atheris.py``); crashes are written
as ``crash-<sha1>`` in the working directory and reproduce with ``python -m
tests.fuzz.atheris_targets TARGET crash-<sha1>``.
"""

from __future__ import annotations

import inspect
import json
import struct
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import atheris

# Modules with Numba kernels are imported uninstrumented (atheris's hooks in a kernel's
# bytecode would not compile); their plain Python is instrumented function by function below.
from monitor.ingest import tr101290

with atheris.instrument_imports(include=["monitor", "failover"]):
    from failover.protocol import Ack, Command, EncoderState, OperatorRequest, ProtocolError
    from monitor.config import load_config
    from monitor.config.agent import load_agent_config
    from monitor.decode.scte35 import decode_section
    from monitor.errors import ConfigError
    from monitor.ingest.hls_playlist import (
        PlaylistError,
        parse_playlist,
        playlist_kind,
        unsupported_method,
    )
    from monitor.ingest.reports import TransportCondition
    from monitor.ingest.rtp import RtpSequence, parse_rtp
    from tests.fuzz.agent_harness import CHANNEL, INPUTS, MAX_COMMAND_AGE_S, commands_through_agent

Tr101290Analyzer, Tr101290Settings = tr101290.Tr101290Analyzer, tr101290.Tr101290Settings


def instrument_python_parts(module: object) -> None:
    """Instrument every plain function and method of ``module`` (not its Numba kernels)."""
    for value in vars(module).values():
        if getattr(value, "__module__", None) != getattr(module, "__name__", None):
            continue
        functions = vars(value).values() if isinstance(value, type) else [value]
        for function in functions:
            if inspect.isfunction(function):
                atheris.instrument_func(function)


instrument_python_parts(tr101290)

ROOT = Path(__file__).resolve().parents[2]
NOW_S = 1_800_000_000.0


# --- targets ---------------------------------------------------------------------------------


def fuzz_ts(data: bytes) -> None:
    conditions: list[TransportCondition] = []
    analyzer = Tr101290Analyzer(Tr101290Settings(), conditions.append)
    cut1, cut2 = len(data) // 3, 2 * len(data) // 3
    for i, chunk in enumerate((data[:cut1], data[cut1:cut2], data[cut2:])):
        analyzer.feed(chunk, 1000.0 + 0.1 * i)
    totals = analyzer.counters.totals
    assert all(count >= 0 for count in totals.values()), totals
    assert totals["packets"] * 188 <= len(data), totals
    assert all(c.alarm.startswith("tr101290_") for c in conditions)


def fuzz_scte35(data: bytes) -> None:
    decode_section(data)  # a Splice or a BadSection saying why, never an exception


def fuzz_rtp(data: bytes) -> None:
    header = parse_rtp(data)
    if header is not None:
        assert 12 <= header.payload_offset <= header.payload_end <= len(data), header
    sequence = RtpSequence()
    numbers = struct.unpack(f">{len(data) // 2}H", data[: len(data) // 2 * 2])
    for i, number in enumerate(numbers):
        sequence.packet(number, ssrc=7 if i % 97 else i)  # now and then another source
        if i % 50 == 49:
            sequence.judge()
    c = sequence.counters
    assert c.received == len(numbers), c
    assert min(c.lost, c.duplicates, c.reordered, c.restarts) >= 0, c
    assert c.duplicates + c.reordered <= c.received, c


def fuzz_hls(data: bytes) -> None:
    text = data.decode("utf-8", errors="replace")
    try:
        playlist = parse_playlist(text, "http://origin.example/live/index.m3u8")
    except PlaylistError as error:
        assert "\n" not in str(error), str(error)
        return
    playlist_kind(playlist)
    unsupported_method(playlist)


_folder = Path(tempfile.mkdtemp(prefix="streamqc-fuzz-config-"))


def fuzz_config(data: bytes) -> None:
    path = _folder / "fuzz.yaml"
    path.write_bytes(data)
    for load in (load_config, load_agent_config):
        try:
            load(path)
        except ConfigError as error:
            message = str(error)
            assert message.startswith(str(path)) and "\n" not in message, message


def fuzz_protocol(data: bytes) -> None:
    for message in (Command, Ack, EncoderState, OperatorRequest):
        try:
            decoded = message.from_json(data)
        except ProtocolError as error:
            assert "\n" not in str(error), str(error)
            continue
        assert message.from_json(decoded.to_json()) == decoded


def fuzz_agent(data: bytes) -> None:
    # up to four commands, split at NUL bytes, so duplicates and sequences are reached too
    payloads = data.split(b"\0")[:4]
    outcome = commands_through_agent(payloads, NOW_S)
    assert not [e for level, e, _ in outcome.log if level == "error"], outcome.log
    assert set(outcome.switches) <= set(INPUTS), outcome.switches
    for payload in payloads:
        try:
            command = Command.from_json(payload)
        except ProtocolError:
            continue
        acks = outcome.acks_of(command.command_id)
        assert acks, f"no answer to {command}"
        if acks[0].status == "rejected":
            assert acks[0].detail, acks


TARGETS: dict[str, Callable[[bytes], None]] = {
    "ts": fuzz_ts,
    "scte35": fuzz_scte35,
    "rtp": fuzz_rtp,
    "hls": fuzz_hls,
    "config": fuzz_config,
    "protocol": fuzz_protocol,
    "agent": fuzz_agent,
}


# --- seeds -----------------------------------------------------------------------------------


def _iso(offset_s: float) -> str:
    from datetime import UTC, datetime, timedelta

    at = datetime.fromtimestamp(NOW_S, UTC) - timedelta(seconds=offset_s)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def seeds(target: str) -> list[bytes]:
    """A few valid inputs of the target's kind, for the fuzzer to start from."""
    command = Command("c1", CHANNEL, "backup", ("black",), _iso(1.0)).to_json()
    if target == "ts":
        from monitor.demo.synth import MediaSpec, make_ts

        with tempfile.TemporaryDirectory() as folder:
            clip = make_ts(Path(folder) / "seed.ts", MediaSpec(duration_s=0.5, width=64, height=36))
            data = clip.read_bytes()
        return [data[: 188 * 40], data[188 * 40 : 188 * 120]]
    if target == "scte35":
        from tests.scte35clips import splice_insert, time_signal

        return [
            splice_insert(7, 900000, out=True, duration_s=30.0),
            splice_insert(8, None, out=False),
            time_signal(0x34, 1800000, 60.0),
        ]
    if target == "rtp":
        header = struct.pack(">BBHII", 0x80, 33, 1000, 90000, 0x1234)
        wrap = [n % 65536 for n in range(65530, 65538)]
        return [header + b"\x47" + bytes(187), struct.pack(">8H", *wrap)]
    if target == "hls":
        return [
            b"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n"
            b"#EXTINF:2.0,\nseg7.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:2.0,\nseg8.ts\n",
            b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360\nlow.m3u8\n"
            b'#EXT-X-KEY:METHOD=AES-128,URI="k.bin"\n',
        ]
    if target == "config":
        return [
            (ROOT / "configs" / "example.yaml").read_bytes(),
            (ROOT / "configs" / "agent-example.yaml").read_bytes(),
        ]
    if target == "protocol":
        ack = Ack("c1", CHANNEL, "done", _iso(0.5), "backup on air").to_json()
        state = json.dumps(
            {
                "version": 1,
                "channel": CHANNEL,
                "active_input": "primary",
                "since": _iso(9.0),
                "last_command_id": None,
                "online": True,
            }  # fmt: skip
        ).encode()
        return [command, ack, state]
    if target == "agent":
        stale = Command("c2", CHANNEL, "primary", (), _iso(MAX_COMMAND_AGE_S + 5)).to_json()
        return [command, command + b"\0" + command, stale]
    raise KeyError(target)


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in (*TARGETS, "all"):
        sys.exit(f"usage: python -m tests.fuzz.atheris_targets {{{','.join(TARGETS)},all}} ...")
    name, rest = argv[1], argv[2:]
    if name == "all":
        import subprocess

        for target in TARGETS:
            print(f"--- {target}", flush=True)
            subprocess.run([sys.executable, "-m", "tests.fuzz.atheris_targets", target, *rest],
                           check=True)  # fmt: skip
        return
    corpora = [Path(a) for a in rest if not a.startswith("-")]
    if not corpora:  # no corpus: a temporary one
        corpora = [Path(tempfile.mkdtemp(prefix=f"streamqc-fuzz-{name}-"))]
        rest.append(str(corpora[0]))
    if corpora[0].is_dir() and not any(corpora[0].iterdir()):  # an empty corpus is seeded
        for i, seed in enumerate(seeds(name)):
            (corpora[0] / f"seed{i}").write_bytes(seed)
    atheris.Setup([argv[0], *rest], TARGETS[name])
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
