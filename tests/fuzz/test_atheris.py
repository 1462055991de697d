"""CI's fixed budget of coverage-guided fuzzing: each atheris target for a fixed number of
runs from a fixed seed (a few seconds each). A crash fails the test with the fuzzer's report;
its input is left in the test's folder as ``crash-<sha1>``.

The longer run is a command (README, Reliability)::

    python -m tests.fuzz.atheris_targets all -atheris_runs=200000
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris", reason="atheris is in the test extra: pip install -e '.[test]'")

ROOT = Path(__file__).resolve().parents[2]
RUNS = {  # about the same few seconds each on this machine
    "ts": 3000,
    "scte35": 20000,
    "rtp": 5000,
    "hls": 10000,
    "config": 600,
    "protocol": 20000,
    "agent": 3000,
}


@pytest.mark.timeout(180)
@pytest.mark.parametrize("target", sorted(RUNS))
def test_the_fuzz_target_survives_its_ci_budget(target: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.fuzz.atheris_targets",
            target,
            f"-atheris_runs={RUNS[target]}",
            "-seed=1",
            "-max_total_time=60",
        ],  # fmt: skip
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=170,
    )
    report = result.stderr[-4000:]
    assert result.returncode == 0, f"{target}: {list(tmp_path.glob('crash-*'))}\n{report}"
    assert f"Done {RUNS[target]} " in result.stderr or "Done" in result.stderr, report
