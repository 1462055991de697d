"""Per-channel silence over short blocks, fed in decoder-sized chunks."""

import numpy as np
import pytest

from detectors.silence import SilenceDetector, SilenceSettings

RATE = 48000


def tone(channels: int, seconds: float, level: float = 0.1) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return np.stack(
        [level * np.sin(2 * np.pi * (440 + 110 * c) * t) for c in range(channels)]
    ).astype(np.float32)


def feed(detector: SilenceDetector, x: np.ndarray, chunk: int = 1024, start_s: float = 0.0):
    observations = []
    for i in range(0, x.shape[1], chunk):
        part = np.ascontiguousarray(x[:, i : i + chunk])
        observations += detector.update(part, start_s + i / RATE)
    return observations


def changes(observations):
    out = []
    for o in observations:
        if not out or out[-1][1] != o.muted:
            out.append((round(o.t_s, 4), o.muted))
    return out


def test_one_muted_channel_of_stereo_is_reported_by_index():
    x = tone(2, 3.0)
    x[1, RATE : 2 * RATE] = 0.0
    obs = feed(SilenceDetector(SilenceSettings(), RATE, 2), x)
    assert changes(obs) == [(0.0, ()), (1.0, (1,)), (2.0, ())]


def test_all_channels_silent():
    x = tone(2, 2.0)
    x[:, RATE // 2 :] = 0.0
    assert changes(feed(SilenceDetector(SilenceSettings(), RATE, 2), x)) == [
        (0.0, ()),
        (0.5, (0, 1)),
    ]


def test_five_one_with_dead_lfe_and_centre():
    x = tone(6, 1.0)
    x[2] = 0.0
    x[3] = 0.0
    assert changes(feed(SilenceDetector(SilenceSettings(), RATE, 6), x)) == [(0.0, (2, 3))]


@pytest.mark.parametrize("chunk", [480, 1024, 1536, 4000])
def test_onset_is_within_one_block_whatever_the_chunk_size(chunk):
    x = tone(2, 2.0)
    onset = 52_345  # not on a block boundary
    x[0, onset:] = 0.0
    obs = feed(SilenceDetector(SilenceSettings(), RATE, 2), x, chunk=chunk)
    t = changes(obs)[1][0]
    assert onset / RATE <= t <= onset / RATE + 0.010


def test_peak_measure_is_ffmpegs_rule_and_rms_tolerates_hiss():
    rng = np.random.default_rng(0)
    hiss = (rng.standard_normal((1, RATE)) * 10 ** (-66 / 20)).astype(
        np.float32
    )  # peaks ~ -55 dBFS
    peak = SilenceDetector(SilenceSettings(threshold_db=-60), RATE, 1)
    rms = SilenceDetector(SilenceSettings(threshold_db=-60, measure="rms"), RATE, 1)
    assert changes(feed(peak, hiss)) == [(0.0, ())]
    assert changes(feed(rms, hiss)) == [(0.0, (0,))]


def test_timestamp_gap_restarts_the_block_grid():
    detector = SilenceDetector(SilenceSettings(), RATE, 1)
    x = np.zeros((1, 1000), dtype=np.float32)
    detector.update(x, 0.0)
    obs = detector.update(x, 5.0)  # a jump of five seconds
    # 1000 samples after the restart make two whole 10 ms blocks from 5.0 s; carrying the
    # 40 samples left over from the first chunk would have put them elsewhere.
    assert obs[-1].t_s == pytest.approx(5.02)


def test_levels_are_reported_in_dbfs():
    x = tone(1, 0.1, level=0.5)
    obs = feed(SilenceDetector(SilenceSettings(), RATE, 1), x)
    assert obs[-1].levels_db[0] == pytest.approx(20 * np.log10(0.5), abs=0.1)
