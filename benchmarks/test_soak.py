"""The chaos soak, short: two minutes of chaos on a fixed seed, every invariant asserted.

``benchmarks/soak.py`` says what runs and what is checked; ``python -m benchmarks.soak
--minutes 60`` is the long run whose figures are in RESULTS.md. This one runs in the suite
(about 2.3 minutes, the clips cached after the first run) and fails when an event is lost, a
fault is not raised and cleared once, events arrive out of order, an input stays stuck, the
failover switches against its policy, or queued events take longer than the recovery bound
after the broker is back.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.soak import KINDS, RECOVERY_BOUND_S, run, table

SEED = 1
MINUTES = 1.9


@pytest.mark.timeout(360)
def test_two_minutes_of_chaos_lose_nothing_and_recover_within_the_bound(
    tmp_path: Path, report
) -> None:
    result = run(MINUTES, SEED, tmp_path / "soak", log=lambda line: None)
    summary = table(result)
    report.add(f"chaos soak, {MINUTES} minutes, seed {SEED}", *summary.splitlines())
    failed = result["invariants_failed"]
    assert not failed, summary + "\n" + "\n".join(failed)
    # what must have happened for the run to prove anything
    assert set(result["actions"]) == set(KINDS), result["action_log"]
    assert not result["actions_failed"], result["actions_failed"]
    assert result["events_published"] >= 80, summary
    assert result["lost"] == 0 and result["faults"]["lost"] == 0, summary
    assert result["faults"]["ok"] >= 30, summary
    assert result["recovery_first_queued_s"]["n"] >= 1, result["recovery"]
    assert result["recovery_first_queued_s"]["max"] <= RECOVERY_BOUND_S, result["recovery"]
    assert result["failover"]["switches_run"] >= 2 and result["failover"]["ok"], result["failover"]
