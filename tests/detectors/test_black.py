"""Black detection on synthetic luma planes: FFmpeg blackdetect semantics plus dark scenes."""

import numpy as np
import pytest

from detectors.black import BlackSettings, black_level
from detectors.picture import PictureAnalyzer
from detectors.regions import Region

H, W = 180, 320
DEFAULTS = BlackSettings()


def plane(value: int, *, pad: int = 64, dtype=np.uint8) -> np.ndarray:
    """A luma plane as decoders give it: a view into rows padded beyond the width."""
    buf = np.full((H, W + pad), value, dtype=dtype)
    return buf[:, :W]


def textured(low: int, high: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = plane(0)
    y[:] = rng.integers(low, high + 1, size=(H, W), dtype=np.uint8)
    return y


def measure(frames, settings=DEFAULTS, **kw):
    analyzer = PictureAnalyzer(settings, None, **kw)
    return [analyzer.update(y, i * 0.04).black for i, y in enumerate(frames)]


def test_black_level_matches_ffmpeg_blackdetect():
    assert black_level(BlackSettings(), 8, full_range=False) == 37
    assert black_level(BlackSettings(), 8, full_range=True) == 25
    assert black_level(BlackSettings(), 10, full_range=False) == 64 + int(0.1 * 219 * 4)


def test_limited_range_black_is_black_from_the_first_picture_after_a_cut():
    bright = textured(100, 200, 1)
    results = measure([bright, plane(16), plane(16), plane(16)])
    assert [m.black for m in results] == [False, True, True, True]
    assert results[1].ratio == 1.0


def test_picture_ratio_follows_ffmpeg_pic_th():
    y = plane(16)
    y[:, : int(W * 0.03)] = 200  # 3 % bright pixels: below pic_th 0.98
    assert measure([y])[0].black is False
    y = plane(16)
    y[:, : int(W * 0.01)] = 200  # 1 % bright pixels: still black
    assert measure([y])[0].black is True


def test_pixels_just_above_the_threshold_are_not_black():
    assert measure([plane(37)])[0].black is True
    assert measure([plane(38)])[0].black is False


def test_dark_textured_scene_is_not_black():
    # Every pixel is below the black level, so FFmpeg's rule alone would call it black.
    frames = [textured(16, 34, seed) for seed in range(5)]
    results = measure(frames)
    assert all(m.ratio == 1.0 for m in results)
    assert not any(m.black for m in results)
    assert results[0].dark_stddev_cv > 3.0


def test_dark_flat_but_moving_scene_is_not_black():
    frames = []
    for i in range(6):
        y = plane(17)
        y[40:140, 20 + i * 30 : 110 + i * 30] = 36  # a dim object crossing a flat dark field
        frames.append(y)
    results = measure(frames, BlackSettings(dark_texture_cv=100.0))
    assert results[0].black  # no motion yet on the first picture
    assert not any(m.black for m in results[1:])


def test_plain_ffmpeg_semantics_when_dark_scene_check_is_off():
    frames = [textured(16, 34, seed) for seed in range(3)]
    assert all(m.black for m in measure(frames, BlackSettings(dark_scene_check=False)))


def test_full_range_black_uses_full_range_threshold():
    analyzer = PictureAnalyzer(BlackSettings(), None)
    assert analyzer.update(plane(20), 0.0, full_range=True).black.black is True
    analyzer = PictureAnalyzer(BlackSettings(), None)
    assert analyzer.update(plane(30), 0.0, full_range=True).black.black is False


def test_ten_bit_black():
    analyzer = PictureAnalyzer(BlackSettings(), None)
    assert analyzer.update(plane(64, dtype=np.uint16), 0.0, bit_depth=10).black.black is True
    analyzer = PictureAnalyzer(BlackSettings(), None)
    assert analyzer.update(plane(400, dtype=np.uint16), 0.0, bit_depth=10).black.black is False


def test_logo_over_black_is_black_when_its_region_is_ignored():
    y = plane(16)
    y[10:40, 250:310] = 220  # a bright logo: about 3 % of the picture
    assert measure([y])[0].black is False
    logo = Region(x=0.75, y=0.0, w=0.25, h=0.25)
    assert measure([y], BlackSettings(ignore=(logo,)))[0].black is True


@pytest.mark.parametrize("row_step", [1, 2, 4])
def test_row_decimation_gives_the_same_verdicts(row_step):
    frames = [textured(100, 200, 1), plane(16), textured(16, 34, 2), textured(16, 34, 3)]
    assert [m.black for m in measure(frames, row_step=row_step)] == [False, True, False, False]
