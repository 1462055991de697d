"""Graphic presence, learning, stuck regions and opaque boxes, on pictures with known graphics.

Pictures come from ``tests/graphicsclips.py``: straight from the generator where coding does
not matter (fast), and decoded from H.264 where it does.
"""

from __future__ import annotations

import numpy as np
import pytest

from detectors.graphics import (
    MAX_CELLS,
    GraphicDetector,
    GraphicSettings,
    PictureMotion,
    geometry,
    in_windows,
    load_reference,
    parse_window,
)
from tests.graphicsclips import (
    CLOCK_ROI,
    LOGO_ROI,
    LOWER_THIRD_ROI,
    Clip,
    GraphicsClip,
    Span,
    clip_file,
    decoded_lumas,
    write_logo_reference,
)

FPS = 25
STEP = 5  # analyse every 5th picture, as the check does at 25 fps
REGIONS = [LOGO_ROI, CLOCK_ROI, LOWER_THIRD_ROI]


def logo(**keys) -> GraphicSettings:
    return GraphicSettings("logo", LOGO_ROI, **keys)


def run(detector: GraphicDetector, pictures, motion: PictureMotion | None = None):
    """Feed (t, luma) pairs; (t, measurement) for each."""
    motion = motion or PictureMotion(REGIONS)
    return [(t, detector.update(y, t, moving=motion.update(y))) for t, y in pictures]


def generated(spec: GraphicsClip, start_s: float = 0.0, end_s: float | None = None):
    clip = Clip(spec)
    last = spec.frames if end_s is None else round(end_s * FPS)
    return [(i / FPS, clip.luma(i)) for i in range(round(start_s * FPS), last, STEP)]


# --- Settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"roi": (0.1, 0.1, 0.2)}, "roi: must be [x, y, w, h]"),
        ({"roi": (0.9, 0.1, 0.2, 0.1)}, "roi: reaches outside the picture"),
        ({"roi": (0.1, 0.1, 0.0, 0.1)}, "roi: x and y must be in 0..1, w and h in (0, 1]"),
        ({"learn_s": 5.0, "reference": "x.png"}, "reference: give learn or reference"),
        ({"learn_s": 5.0, "expect": "never"}, "learn: a graphic never expected on air"),
        ({"learn_s": 5.0, "expect": "schedule"}, "expect: schedule needs schedule windows"),
        ({"learn_s": 5.0, "schedule": ("06:00-09:00",)}, "schedule: windows need expect"),
        ({"changing": True, "name": "a b"}, "name: must be letters"),
        ({}, "nothing to check"),
    ],
)
def test_settings_refuse_what_cannot_be_checked(keys, message):
    values = {"name": "logo", "roi": LOGO_ROI, **keys}
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
        GraphicSettings(**values)


def test_schedule_windows_are_times_of_day_and_may_wrap_midnight():
    assert parse_window("06:00-09:30") == (6 * 3600.0, 9.5 * 3600.0)
    assert parse_window(" 22:00 - 24:00 ") == (22 * 3600.0, 24 * 3600.0)
    for bad in ("6-9", "25:00-26:00", "06:00-06:00", "06:61-07:00"):
        with pytest.raises(ValueError, match="not a time window"):
            parse_window(bad)
    night = [parse_window("22:00-02:00")]
    assert in_windows(night, 23 * 3600.0) and in_windows(night, 3600.0)
    assert not in_windows(night, 12 * 3600.0) and not in_windows(night, 2 * 3600.0)


def test_a_region_reads_as_about_the_same_grid_in_every_rendition():
    grids = [geometry(LOGO_ROI, w, h, 3) for w, h in ((640, 360), (1280, 720), (1920, 1080))]
    for g in grids:
        assert g.rows * g.cols <= MAX_CELLS and g.k >= 2
    for side in ("rows", "cols"):
        cells = [getattr(g, side) for g in grids]
        assert max(cells) <= 1.4 * min(cells), grids
    assert [g.k for g in grids] == sorted(g.k for g in grids)


# --- Presence, learned from the feed ---------------------------------------------------------


@pytest.fixture(scope="module")
def coded():
    """Every 5th decoded picture of a 360p clip at CRF 18: logo off 6-9 s, dark 10-13 s."""
    spec = GraphicsClip(duration_s=15.0, logo_off=(Span(6.0, 9.0),), dark=(Span(10.0, 13.0),))
    return decoded_lumas(clip_file(spec), every=STEP)


def test_learning_finds_the_semi_transparent_logo_without_artwork(coded):
    detector = GraphicDetector(logo(learn_s=4.0))
    results = run(detector, coded)
    template = detector.template
    assert template is not None
    # The learned edges lie on the logo (the middle 80 % of the region), not on the picture.
    core = (template.ta != 0) | (template.tb != 0)
    rows, cols = np.nonzero(core)
    g = detector._geometry
    assert rows.min() >= 0.08 * g.rows and rows.max() < 0.92 * g.rows
    assert cols.min() >= 0.08 * g.cols and cols.max() < 0.92 * g.cols
    learning = [t for t, m in results if m.learning]
    assert learning and max(learning) < 4.5 and all(m.present is None for _, m in results[:5])


def test_learned_logo_is_present_over_busy_and_dark_pictures_and_missing_when_off(coded):
    results = run(GraphicDetector(logo(learn_s=4.0)), coded)
    judged = [(t, m) for t, m in results if m.present is not None]
    off = [m for t, m in judged if 6.0 <= t < 9.0]
    dark = [m for t, m in judged if 10.0 <= t < 13.0]
    busy = [m for t, m in judged if not (6.0 <= t < 9.0 or 10.0 <= t < 13.0)]
    assert off and dark and busy
    assert all(not m.present for m in off), [round(m.score, 2) for m in off]
    assert all(m.present for m in dark + busy)
    assert max(m.score for m in off) < 0.25 < 0.4 < min(m.score for m in busy + dark)


def test_a_logo_off_air_while_learning_is_reported_missing_then_learned_when_it_returns():
    spec = GraphicsClip(duration_s=18.0, logo_off=(Span(0.0, 6.0),))
    results = run(GraphicDetector(logo(learn_s=4.0)), generated(spec))
    failed = [t for t, m in results if not m.learned]
    # The first window (0-4 s) finds nothing; the window the logo returns in (4-8 s) may not
    # either; the next one learns it.
    assert failed and 4.0 <= min(failed) < 4.5 and max(failed) < 12.5
    assert all(m.present is False for t, m in results if not m.learned)
    assert all(m.present for t, m in results if t >= 12.5)


def test_learning_waits_for_the_picture_to_move():
    spec = GraphicsClip(duration_s=6.0)
    still = generated(spec)[:1] * 30
    pictures = [(i * 0.2, y) for i, (_, y) in enumerate(still)]
    results = run(GraphicDetector(logo(learn_s=2.0)), pictures)
    assert all(m.learning for _, m in results)  # six seconds of a still picture teach nothing


# --- Presence from artwork -------------------------------------------------------------------


@pytest.mark.parametrize("size", [(640, 360), (1280, 720), (320, 180)])
def test_artwork_matches_the_logo_in_every_rendition_and_a_few_pixels_off(tmp_path, size):
    width, height = size
    reference = load_reference(str(write_logo_reference(tmp_path / "logo.png")))
    spec = GraphicsClip(width=width, height=height, duration_s=4.0, logo_off=(Span(2.0, 4.0),))
    pictures = generated(spec)
    x, y, w, h = LOGO_ROI
    for dx in (0.0, 3.0 / width, -3.0 / width):  # the region drawn 3 pixels off
        roi = (x + dx, y + 2.0 / height, w, h)
        settings = GraphicSettings("logo", roi, reference="logo.png")
        results = run(GraphicDetector(settings, reference), pictures)
        on = [m for t, m in results if t < 2.0]
        off = [m for t, m in results if t >= 2.0]
        scores = ([m.score for m in on], [m.score for m in off])
        assert all(m.present for m in on) and not any(m.present for m in off), (size, dx, scores)


def test_artwork_without_alpha_is_the_whole_region(tmp_path):
    import cv2

    path = tmp_path / "plate.png"
    cv2.imwrite(str(path), np.full((40, 100), 128, np.uint8))
    reference = load_reference(str(path))
    assert reference.alpha is None and np.allclose(reference.luma, 16 + 219 * 128 / 255)


def test_unreadable_artwork_is_a_value_error(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(ValueError, match="not an image OpenCV can read"):
        load_reference(str(tmp_path / "bad.png"))
    with pytest.raises(ValueError, match="cannot read"):
        load_reference(str(tmp_path / "missing.png"))


# --- Opaque box ------------------------------------------------------------------------------


def test_a_logo_rendered_as_an_opaque_box_is_a_box_and_a_missing_logo_is_not():
    spec = GraphicsClip(
        duration_s=12.0, logo_box=(Span(5.0, 7.0),), logo_off=(Span(8.0, 10.0),),
        dark=(Span(8.0, 12.0),),
    )  # fmt: skip
    results = run(GraphicDetector(logo(learn_s=3.0)), generated(spec))
    box = [m for t, m in results if 5.0 <= t < 7.0]
    others = [m for t, m in results if t >= 3.2 and not 5.0 <= t < 7.0]
    assert all(m.opaque_box and m.present is False for m in box)
    assert not any(m.opaque_box for m in others)


# --- Stuck and restless regions --------------------------------------------------------------


def test_a_stopped_clock_stops_changing_while_a_ticking_one_changes_every_second():
    spec = GraphicsClip(duration_s=10.0, clock_frozen=(Span(4.0, 8.0),))
    pictures = decoded_lumas(clip_file(spec), every=STEP)
    results = run(GraphicDetector(GraphicSettings("clock", CLOCK_ROI, changing=True)), pictures)
    ticking = [m for t, m in results if 1.0 <= t < 4.0 or t >= 8.2]
    frozen = [(t, m) for t, m in results if 4.2 <= t < 8.0]
    assert max(m.pts_s - m.still_since_s for m in ticking) < 1.1
    assert all(m.changed is False and m.still_since_s == pytest.approx(4.0) for _, m in frozen)
    changes = [round(t, 3) for t, m in results if m.changed]
    assert 4.0 in changes and not any(4.0 < t < 8.0 for t in changes) and 8.0 in changes


def test_a_static_region_that_keeps_changing_is_seen_changing():
    # The region of the moving picture itself, declared static: it changes at every look.
    settings = GraphicSettings("plate", (0.3, 0.3, 0.3, 0.3), changing=False)
    results = run(GraphicDetector(settings), generated(GraphicsClip(duration_s=3.0)))
    assert all(m.changed for _, m in results[1:])
    still = run(GraphicDetector(settings), generated(GraphicsClip(duration_s=1.0))[:1] * 8)
    assert not any(m.changed for _, m in still[1:])


# --- The picture around the graphics ---------------------------------------------------------


def test_picture_motion_tells_moving_from_still_and_flat_pictures():
    pictures = generated(GraphicsClip(duration_s=2.0))
    motion = PictureMotion(REGIONS)
    moving = [motion.update(y) for _, y in pictures]
    assert not moving[0] and all(moving[1:]) and not motion.flat
    motion = PictureMotion(REGIONS)
    assert not any(motion.update(pictures[0][1]) for _ in range(3))
    black = np.full((360, 640), 16, np.uint8)
    motion.update(black)
    assert motion.flat


def test_ten_bit_luma_reads_like_eight_bit():
    spec = GraphicsClip(duration_s=8.0, logo_off=(Span(6.0, 8.0),))
    pictures = generated(spec)
    eight = run(GraphicDetector(logo(learn_s=3.0)), pictures)
    detector, motion = GraphicDetector(logo(learn_s=3.0)), PictureMotion(REGIONS)
    ten = []
    for t, y in pictures:
        y10 = y.astype(np.uint16) << 2
        ten.append((t, detector.update(y10, t, moving=motion.update(y10, 10), bit_depth=10)))
    for (_, a), (_, b) in zip(eight, ten, strict=True):
        assert a.present == b.present
        if a.score is not None:
            assert a.score == pytest.approx(b.score, abs=1e-3)
