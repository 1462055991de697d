"""Shared fixtures: media generated on the fly (cached per session) and a CLI runner."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from monitor.demo.synth import MediaSpec, make_ts
from tests.daemon import clips, daemons  # noqa: F401  (fixtures)
from tests.mqttbroker import mosquitto  # noqa: F401  (fixture)


@pytest.fixture(scope="session")
def media(tmp_path_factory):
    """media(spec) -> path of an MPEG-TS file made to that spec, generated once per session."""
    folder = tmp_path_factory.mktemp("media")
    made: dict[MediaSpec, Path] = {}

    def make(spec: MediaSpec) -> Path:
        if spec not in made:
            name = hashlib.sha1(repr(spec).encode()).hexdigest()[:12]
            made[spec] = make_ts(folder / f"{name}.ts", spec)
        return made[spec]

    return make


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def events(self) -> list[dict]:
        """stdout of `analyze`: one JSON alarm event per line, nothing else."""
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def alarms(self, name: str | None = None) -> list[tuple[str, float, float]]:
        """(alarm, start, end) of every alarm that was raised and cleared, in order."""
        raised = {e["id"]: e for e in self.events if e["state"] == "raised"}
        out = []
        for e in self.events:
            if e["state"] == "cleared" and (name is None or e["alarm"] == name):
                assert e["id"] in raised, f"cleared without a raise: {e}"
                assert raised[e["id"]]["start"] == e["start"]
                out.append((e["alarm"], e["start"], e["end"]))
        return out


def run_cli(*args: str, timeout: float = 120) -> Run:
    """Run `streamqc ARGS` as a user would: never a traceback, whatever the outcome."""
    proc = subprocess.run(
        [sys.executable, "-m", "monitor.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return Run(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def streamqc():
    return run_cli
