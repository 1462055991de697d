"""Freeze detection: FFmpeg freezedetect semantics, ignore regions, keyframe refresh."""

import numpy as np

from detectors.freeze import FreezeSettings
from detectors.picture import PictureAnalyzer
from detectors.regions import Region

H, W = 180, 320
DEFAULTS = FreezeSettings()


def picture(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    buf = rng.integers(40, 220, size=(H, W + 32), dtype=np.uint8)
    return buf[:, :W]


def nudged(y: np.ndarray, amount: int, fraction: float) -> np.ndarray:
    """The same picture with ``fraction`` of its rows shifted by ``amount`` code values."""
    out = y.copy()
    rows = int(H * fraction)
    out[:rows] = np.clip(out[:rows].astype(int) + amount, 0, 255).astype(np.uint8)
    return out


def run(frames, settings=DEFAULTS, keyframes=()):
    analyzer = PictureAnalyzer(None, settings)
    return [
        analyzer.update(y, i * 0.04, keyframe=i in keyframes).freeze for i, y in enumerate(frames)
    ]


def test_repeated_picture_is_frozen_from_the_first_picture_of_the_still():
    moving = [picture(i) for i in range(3)]
    still = moving[-1]
    results = run(moving + [still] * 4)
    assert results[0] is None  # no reference yet
    assert [m.frozen for m in results[1:]] == [False, False, True, True, True, True]
    assert results[-1].since_s == 2 * 0.04


def test_difference_above_noise_floor_is_motion():
    a = picture(1)
    b = nudged(a, 1, 0.5)  # mean abs difference 0.5 code values > 0.256 (-60 dB)
    assert [m.frozen for m in run([a, b])[1:]] == [False]
    c = nudged(a, 1, 0.2)  # 0.2 code values <= 0.256
    assert [m.frozen for m in run([a, c])[1:]] == [True]


def test_slow_drift_cannot_hide_a_freeze_because_the_reference_stays():
    a = picture(1)
    steps = [nudged(a, 1, f) for f in (0.1, 0.2, 0.3, 0.4)]  # each step 0.1 code values
    results = run([a, *steps])[1:]
    # Against the previous picture every step would look frozen; against the reference the
    # drift adds up to 0.3 > 0.256 and breaks the still, which then restarts there.
    assert [m.frozen for m in results] == [True, True, False, True]
    assert results[-1].since_s == 3 * 0.04


def test_moving_region_inside_ignore_region_does_not_hide_a_freeze():
    still = picture(5)
    frames = []
    for i in range(5):
        y = still.copy()
        y[150:175, :] = picture(100 + i)[150:175, :]  # a ticker along the bottom
        frames.append(y)
    assert not any(m.frozen for m in run(frames)[1:])
    ticker = Region(x=0.0, y=0.8, w=1.0, h=0.2)
    assert all(m.frozen for m in run(frames, FreezeSettings(ignore=(ticker,)))[1:])


def test_keyframe_refresh_of_a_still_continues_the_freeze():
    still = picture(7)
    refreshed = nudged(still, 1, 0.9)  # a keyframe re-encoding the still: 0.9 code values
    frames = [picture(1), still, still, still, refreshed, refreshed, refreshed]
    results = run(frames, keyframes={4})[1:]
    assert all(m.frozen for m in results[1:])
    assert results[-1].since_s == 1 * 0.04


def test_same_step_on_a_non_keyframe_ends_the_freeze():
    still = picture(7)
    refreshed = nudged(still, 1, 0.9)
    frames = [picture(1), still, still, still, refreshed, refreshed]
    results = run(frames)[1:]
    assert [m.frozen for m in results] == [False, True, True, False, True]
    assert results[-1].since_s == 4 * 0.04


def test_keyframe_that_is_not_followed_by_a_still_ends_the_freeze_at_the_keyframe():
    still = picture(7)
    frames = [picture(1), still, still, nudged(still, 1, 0.9), picture(20)]
    results = run(frames, keyframes={3})[1:]
    assert [m.frozen for m in results] == [False, True, True, False]
    assert results[-1].ended_s == 3 * 0.04


def test_large_change_on_a_keyframe_is_a_cut_not_a_refresh():
    still = picture(7)
    frames = [picture(1), still, still, picture(8), picture(8)]
    results = run(frames, keyframes={3})[1:]
    assert [m.frozen for m in results] == [False, True, False, True]
    assert results[-1].since_s == 3 * 0.04


def test_thin_ticker_at_1080p_is_motion_with_auto_row_decimation_as_with_every_row():
    # The auto row step at 1080p analyses every 8th row: a band 8 rows tall always touches
    # one, wherever it is, and the decimated verdict is the full-resolution verdict.
    rng = np.random.default_rng(3)
    still = rng.integers(40, 220, size=(1080, 1920), dtype=np.uint8)
    text = rng.integers(0, 255, size=(8, 4000), dtype=np.uint8)
    frames = []
    for i in range(6):
        y = still.copy()
        y[501:509, :] = text[:, 20 * i : 20 * i + 1920]  # scrolls 20 px per picture
        frames.append(y)

    def verdicts(row_step):
        analyzer = PictureAnalyzer(None, DEFAULTS, row_step=row_step)
        results = [analyzer.update(y, i * 0.04).freeze for i, y in enumerate(frames)]
        return [m.frozen for m in results[1:]]

    assert verdicts(None) == verdicts(1) == [False] * 5


def keyframes_only(frames, settings=DEFAULTS):
    """A probe tier's pictures: every one a keyframe, a GOP (2 s) apart."""
    analyzer = PictureAnalyzer(None, settings, keyframes_only=True)
    return [analyzer.update(y, i * 2.0, keyframe=True).freeze for i, y in enumerate(frames)]


def test_keyframes_only_each_re_encoding_of_a_still_is_frozen():
    still = picture(7)
    # Each keyframe of the still is its own re-encoding: 0.5-0.9 code values from the first.
    keys = [picture(1), still, nudged(still, 1, 0.9), nudged(still, 1, 0.5), nudged(still, 1, 0.7)]
    results = keyframes_only(keys)[1:]
    assert [m.frozen for m in results] == [False, True, True, True]
    assert results[-1].since_s == 1 * 2.0
    # Without the rule, a keyframe re-encoding the still is no still by itself: it would wait
    # for a picture matching it within -60 dB, which a keyframe tier never decodes.
    plain = run(keys, keyframes={1, 2, 3, 4})
    assert not plain[2].frozen and not plain[3].frozen


def test_keyframes_only_a_change_beyond_the_tolerance_is_motion():
    a = picture(1)
    moved = nudged(a, 6, 0.8)  # 4.8 code values: more than -40 dB (2.6)
    assert [m.frozen for m in keyframes_only([a, moved, picture(2)])[1:]] == [False, False]
