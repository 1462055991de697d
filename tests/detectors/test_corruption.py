"""Corrupted pictures: garbage macroblocks found, blocky but correct pictures left alone."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.corruption import (
    MB,
    WARMUP_SAMPLES,
    CorruptionDetector,
    CorruptionSettings,
    opaque_box,
)
from detectors.regions import Region
from tests.graphicsclips import (
    CLOCK_ROI,
    LOGO_ROI,
    LOWER_THIRD_ROI,
    Clip,
    GraphicsClip,
    Span,
    clip_file,
    decoded_lumas,
)

FPS = 25
STEP = 5
REGIONS = [LOGO_ROI, CLOCK_ROI, LOWER_THIRD_ROI]


def detector(**settings) -> CorruptionDetector:
    return CorruptionDetector(CorruptionSettings(**settings), excluded=REGIONS)


def warm(d: CorruptionDetector, clip: Clip, count: int = WARMUP_SAMPLES) -> None:
    """Clean pictures for the baseline."""
    for i in range(count):
        d.update(clip.luma(i * STEP), i * 0.2)


def test_green_garbage_of_a_zeroed_buffer_is_found_from_luma_alone():
    spec = GraphicsClip(duration_s=4.0, flat_garbage=(Span(2.0, 4.0),))
    clip = Clip(spec)
    d = detector()
    clean = d.update(clip.luma(0), 0.0)
    m = d.update(clip.luma(60), 2.4, chroma=None)
    x0, y0, x1, y1 = clip.garbage_box()
    assert not clean.corrupt and clean.garbage_blocks == 0
    assert m.corrupt and m.garbage_blocks == (x1 - x0) // MB * (y1 - y0) // MB
    # Before the baseline is learned: garbage colour needs none.
    assert m.damaged_threshold is None
    x, y, w, h = d.damaged_region()
    assert (x * 640, y * 360, (x + w) * 640, (y + h) * 360) == pytest.approx((x0, y0, x1, y1))


def paint_magenta(planes, box):
    """Flat blocks of a legal luma but U = V = 255: only the chroma planes give them away."""
    y, u, v = (p.copy() for p in planes)
    x0, y0, x1, y1 = box
    y[y0:y1, x0:x1] = 128
    u[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2] = 255
    v[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2] = 255
    return y, u, v


def test_magenta_garbage_is_found_in_the_chroma_planes_of_flat_blocks():
    clip = Clip(GraphicsClip(duration_s=1.0))
    box = clip.garbage_box()
    y, u, v = paint_magenta(clip.planes(0), box)
    asked = []

    def chroma():
        asked.append(True)
        return u, v

    assert detector().update(y, 0.0).garbage_blocks == 0  # luma alone: a flat grey patch
    m = detector().update(y, 0.0, chroma=chroma)
    assert asked and m.corrupt and m.garbage_blocks >= 24
    # A clean picture has no flat blocks worth a look at its chroma.
    asked.clear()
    detector().update(clip.luma(0), 0.0, chroma=chroma)
    assert not asked


def test_zero_luma_is_black_in_full_range_video_not_garbage():
    clip = Clip(GraphicsClip(duration_s=1.0))
    y = clip.luma(0).copy()
    y[8 * MB : 12 * MB, 28 * MB : 36 * MB] = 0
    assert detector().update(y, 0.0).garbage_blocks == 32
    assert detector().update(y, 0.0, full_range=True).garbage_blocks == 0


@pytest.fixture(scope="module")
def smeared():
    """Every 5th decoded picture of 360p at CRF 18: blocks from the wrong place 6-8 s and
    10-11 s, a dark scene 8-10 s."""
    spec = GraphicsClip(
        duration_s=12.0,
        smeared_garbage=(Span(6.0, 8.0), Span(10.0, 11.0)),
        dark=(Span(8.0, 10.0),),
    )
    return decoded_lumas(clip_file(spec), every=STEP)


def test_blocks_copied_from_the_wrong_place_are_damaged_blocks_over_the_baseline(smeared):
    d = detector()
    results = [(t, d.update(y, t)) for t, y in smeared]
    garbage = [m for t, m in results if 6.0 <= t < 8.0 or 10.0 <= t < 11.0]
    clean = [m for t, m in results if not (6.0 <= t < 8.0 or 10.0 <= t < 11.0)]
    assert all(m.corrupt for m in garbage), [m.damaged_blocks for m in garbage]
    assert not any(m.corrupt for m in clean), [(m.pts_s, m.damaged_blocks) for m in clean]
    assert min(m.damaged_blocks for m in garbage) > 3 * max(m.damaged_blocks for m in clean)


def test_blockiness_rises_on_a_starved_dark_scene_as_on_garbage_so_it_only_measures():
    # At CRF 42 a dark scene is as blocky as decode garbage by the boundary-step ratio; what
    # tells them apart is that its block edges are a few code values, not hard.
    spec = GraphicsClip(duration_s=10.0, crf=42, dark=(Span(5.0, 10.0),))
    d = detector()
    results = [(t, d.update(y, t)) for t, y in decoded_lumas(clip_file(spec), every=STEP)]
    bright = np.median([m.blockiness for t, m in results if t < 5.0])
    dark = np.median([m.blockiness for t, m in results if t >= 5.0])
    garbage = np.median([d.update(y, 20.0).blockiness for t, y in garbage_pictures()])
    assert 0.8 < bright < 1.3 and dark > 2.0 and garbage > 1.8
    assert not any(m.corrupt for _, m in results)


def garbage_pictures():
    spec = GraphicsClip(duration_s=12.0, smeared_garbage=(Span(6.0, 8.0), Span(10.0, 11.0)))
    return [(t, y) for t, y in decoded_lumas(clip_file(spec), every=STEP) if 6.0 <= t < 8.0]


def test_a_low_bitrate_rendition_that_is_blocky_but_correct_is_never_corrupt():
    spec = GraphicsClip(
        width=480, height=270, duration_s=12.0, crf=45, dark=(Span(4.0, 8.0),),
        lower_third=(Span(8.0, 12.0),),
    )  # fmt: skip
    d = detector()
    results = [d.update(y, t) for t, y in decoded_lumas(clip_file(spec), every=STEP)]
    assert not any(m.corrupt for m in results), [(m.pts_s, m.damaged_blocks) for m in results]


def grid_graphic(y: np.ndarray) -> np.ndarray:
    """A score box drawn on the macroblock grid: hard edges both ways at every corner."""
    y = y.copy()
    for row in range(2):
        for col in range(4):
            top, left = (16 + 2 * row) * MB, (2 + 2 * col) * MB
            y[top : top + MB, left : left + MB] = 230 if (row + col) % 2 else 30
    return y


def test_graphics_on_the_grid_are_part_of_the_baseline_and_garbage_still_stands_out():
    clip = Clip(GraphicsClip(duration_s=8.0, smeared_garbage=(Span(6.0, 8.0),)))
    d = CorruptionDetector(CorruptionSettings())
    first = [d.update(grid_graphic(clip.luma(i * STEP)), i * 0.2) for i in range(30)]
    assert min(m.damaged_blocks for m in first) >= 8
    assert not any(m.corrupt for m in first)
    assert first[-1].damaged_threshold > max(m.damaged_blocks for m in first)
    late = d.update(grid_graphic(clip.luma(6 * FPS + 5)), 6.2)
    assert late.corrupt


def test_damaged_blocks_are_judged_once_the_baseline_has_enough_pictures():
    clip = Clip(GraphicsClip(duration_s=6.0, smeared_garbage=(Span(1.0, 1.2), Span(4.0, 6.0))))
    d = detector()
    results = [d.update(clip.luma(i * STEP), i * 0.2) for i in range(WARMUP_SAMPLES + 10)]
    warming = results[:WARMUP_SAMPLES]
    assert all(m.damaged_threshold is None for m in warming)
    assert warming[5].damaged_blocks > 20 and not warming[5].corrupt  # 1.0 s: not judged yet
    assert all(m.corrupt for m in results if m.pts_s >= 4.0)


def test_ignored_regions_are_left_out():
    clip = Clip(GraphicsClip(duration_s=4.0, smeared_garbage=(Span(2.0, 4.0),)))
    x0, y0, x1, y1 = clip.garbage_box()
    hidden = Region(x0 / 640, y0 / 360, min(1.0, 2 * (x1 - x0) / 640), (y1 - y0) / 360)
    seen, ignoring = detector(), detector(ignore=(hidden,))
    warm(seen, clip)
    warm(ignoring, clip)
    assert seen.update(clip.luma(60), 2.4).corrupt
    assert ignoring.update(clip.luma(60), 2.4).damaged_blocks == 0


def test_ten_bit_pictures_read_like_eight_bit():
    clip = Clip(GraphicsClip(duration_s=4.0, smeared_garbage=(Span(2.0, 4.0),)))
    eight, ten = detector(), detector()
    for i in range(0, 80, STEP):
        y = clip.luma(i)
        a = eight.update(y, i / FPS)
        b = ten.update(y.astype(np.uint16) << 2, i / FPS, bit_depth=10)
        assert (a.damaged_blocks, a.garbage_blocks, a.corrupt) == (
            b.damaged_blocks, b.garbage_blocks, b.corrupt,
        )  # fmt: skip
        assert a.blockiness == pytest.approx(b.blockiness, rel=1e-6)


def test_opaque_box_measures_the_box_and_the_region_around_it():
    cells = np.full((20, 30), 90.0, np.float32)
    cells[5:15, 8:22] = 235.0  # the box, in a region (margin 2) of 16 x 26 cells
    stddev, outside = opaque_box(cells, 2, 16, 26, np.array([4, 7, 12, 19]), 20.0)
    assert stddev == pytest.approx(0.0, abs=1e-3)
    inside_cells = (13 - 3) * (20 - 6)  # box cells of the region outside the measured box
    measured = (12 - 4) * (19 - 7)
    assert outside == pytest.approx((16 * 26 - inside_cells) / (16 * 26 - measured), abs=1e-6)
