"""The one backoff policy: doubling waits, capped, jittered within its spread, reset."""

import pytest

from monitor.util.backoff import Backoff


def test_waits_double_up_to_the_cap_without_jitter() -> None:
    backoff = Backoff(0.5, 5.0, spread=(1.0, 1.0))
    assert [backoff.next_s() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_reset_makes_the_next_outage_start_small() -> None:
    backoff = Backoff(1.0, 30.0, spread=(1.0, 1.0))
    for _ in range(5):
        backoff.next_s()
    backoff.reset()
    assert backoff.next_s() == 1.0


def test_each_wait_stays_within_its_spread() -> None:
    backoff = Backoff(1.0, 8.0, spread=(0.5, 1.0))
    for ceiling in (1.0, 2.0, 4.0, 8.0, 8.0) * 20:
        if backoff.ceiling_s != ceiling:
            backoff.reset()
            while backoff.ceiling_s < ceiling:
                backoff.next_s()
        wait = backoff.next_s()
        assert ceiling / 2 <= wait <= ceiling


def test_jitter_spreads_clients_that_failed_together() -> None:
    waits = {Backoff(1.0, 30.0).next_s() for _ in range(50)}
    assert len(waits) > 40
    assert min(waits) >= 0.8 and max(waits) <= 1.2


@pytest.mark.parametrize(
    ("first_s", "max_s", "spread"),
    [(0.0, 1.0, (1.0, 1.0)), (2.0, 1.0, (1.0, 1.0)), (1.0, 2.0, (1.2, 0.8))],
)
def test_nonsense_settings_are_refused(
    first_s: float, max_s: float, spread: tuple[float, float]
) -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(first_s, max_s, spread=spread)
