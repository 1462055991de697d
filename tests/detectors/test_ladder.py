"""Rendition comparison: signatures, and the consensus that names the deviating rendition.

The ladder pictures are real: one scene scaled and coded by libx264 at three sizes and
bitrates (``tests/ladderclips.py``), decoded, and compared every 5th picture as the live
comparator does.
"""

from __future__ import annotations

import functools

import av
import cv2
import numpy as np
import pytest

from detectors.ladder import LadderConsensus, LadderSettings, PictureSignature
from monitor.decode.media_source import luma_view
from tests.ladderclips import (
    CLEAN,
    FAULTY,
    GARBLE_REGION,
    LOGO_REGION,
    LadderClip,
    ladder_files,
)

SETTINGS = LadderSettings()
EVERY = 5  # pictures between compared instants: 5 per second at 25 fps
TOP, MIDDLE, BOTTOM = (rung.name for rung in FAULTY.rungs)


@functools.cache
def signatures(clip: LadderClip) -> dict[str, list[tuple[float, np.ndarray]]]:
    """(media time, signature) of every 5th decoded picture of each rung."""
    out: dict[str, list[tuple[float, np.ndarray]]] = {}
    for name, path in ladder_files(clip).items():
        sign = PictureSignature(SETTINGS)
        kept = []
        with av.open(str(path)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i % EVERY == 0:
                    signature = sign(luma_view(frame), 8, False)
                    assert signature is not None
                    kept.append((i / clip.fps, signature))
        out[name] = kept
    return out


def instants(clip: LadderClip, names: tuple[str, ...] | None = None):
    """(media time, {rendition: signature}) of each compared instant, in order."""
    sigs = signatures(clip)
    names = names or tuple(sigs)
    n = min(len(sigs[name]) for name in names)
    for i in range(n):
        yield sigs[names[0]][i][0], {name: sigs[name][i][1] for name in names}


def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)


def reference_signature(y: np.ndarray) -> np.ndarray:
    """Area-filter downscale (OpenCV) then the 3x3 binomial blur with repeated edges."""
    small = cv2.resize(y.astype(np.float32), (64, 36), interpolation=cv2.INTER_AREA)
    k = np.array([0.25, 0.5, 0.25], np.float32)
    return cv2.sepFilter2D(small, -1, k, k, borderType=cv2.BORDER_REPLICATE)


# --- signatures ----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1080, 1920), (480, 854), (234, 416), (36, 64)])
def test_signature_is_the_area_mean_of_the_picture_lightly_blurred(shape):
    rng = np.random.default_rng(1)
    padded = rng.integers(16, 236, (shape[0], shape[1] + 32), dtype=np.uint8)
    y = padded[:, : shape[1]]  # a decoder's plane: rows padded past the width, read-only
    y.flags.writeable = False
    signature = PictureSignature(SETTINGS)(y, 8, False)
    assert signature is not None and signature.shape == (36, 64)
    np.testing.assert_allclose(signature, reference_signature(y), atol=2e-3)


def test_bit_depth_and_range_give_the_same_signature_for_the_same_picture():
    rng = np.random.default_rng(2)
    y8 = rng.integers(16, 236, (216, 384)).astype(np.uint8)
    sign = PictureSignature(SETTINGS)
    limited8 = sign(y8, 8, False)
    limited10 = sign(y8.astype(np.uint16) * 4, 10, False)
    full8 = sign(np.rint((y8 - 16.0) * 255 / 219).astype(np.uint8), 8, True)
    full10 = sign(np.rint((y8 - 16.0) * 1023 / 219).astype(np.uint16), 10, True)
    np.testing.assert_allclose(limited10, limited8, atol=1e-4)
    # Full range rounds each pixel to its own code values (up to 0.43 of a limited-range one
    # at 8 bits); a cell of 6x6 pixels averages that down to a few hundredths.
    np.testing.assert_allclose(full8, limited8, atol=0.15)
    np.testing.assert_allclose(full10, limited8, atol=0.15)


def test_pictures_smaller_than_the_grid_have_no_signature():
    assert PictureSignature(SETTINGS)(np.zeros((30, 64), np.uint8), 8, False) is None
    assert PictureSignature(SETTINGS)(np.zeros((36, 60), np.uint8), 8, False) is None


# --- the consensus on real coded renditions --------------------------------------------------


def test_one_scene_at_three_sizes_and_bitrates_never_disagrees():
    consensus = LadderConsensus(SETTINGS)
    verdicts = [consensus.compare(sigs) for _, sigs in instants(CLEAN)]
    assert len(verdicts) == 60
    assert [v.deviations for v in verdicts if v.deviations] == []
    # The soft bottom rung differs more from the others, and that is learned as its normal.
    assert consensus.baseline_cv(BOTTOM, TOP) > 1.5 * consensus.baseline_cv(MIDDLE, TOP)


def judged(clip: LadderClip, names: tuple[str, ...] | None = None):
    consensus = LadderConsensus(SETTINGS)
    return [(t, consensus.compare(sigs)) for t, sigs in instants(clip, names)]


def test_a_logo_missing_on_one_of_three_rungs_names_that_rung_and_where():
    found = [(t, v.deviations) for t, v in judged(FAULTY) if 9.0 <= t < 13.0]
    assert len(found) == 20
    for t, deviations in found:
        assert [d.rendition for d in deviations] == [BOTTOM], t
        deviation = deviations[0]
        assert deviation.consensus == (MIDDLE, TOP)
        assert iou(deviation.roi, LOGO_REGION) > 0.7, (t, deviation.roi)
        assert deviation.distance_cv > 5 * deviation.baseline_cv


def test_a_garbled_rung_is_named_with_the_garbled_quarter():
    found = [(t, v.deviations) for t, v in judged(FAULTY) if 15.0 <= t < 18.0]
    assert len(found) == 15
    for t, deviations in found:
        assert [d.rendition for d in deviations] == [MIDDLE], t
        assert iou(deviations[0].roi, GARBLE_REGION) > 0.7, (t, deviations[0].roi)


def test_clean_spans_and_a_dark_scene_under_the_logo_raise_nothing():
    faults = ((9.0, 13.0), (15.0, 18.0))
    clean = [(t, v) for t, v in judged(FAULTY) if not any(a <= t < b for a, b in faults)]
    assert len(clean) == 100 - 35
    assert [(t, v.deviations) for t, v in clean if v.deviations] == []
    assert any(4.0 <= t < 7.0 for t, _ in clean)


def test_per_instant_precision_and_recall_on_the_faulty_ladder():
    truth = {BOTTOM: (9.0, 13.0), MIDDLE: (15.0, 18.0)}
    hits = misses = false = 0
    for t, verdict in judged(FAULTY):
        named = {d.rendition for d in verdict.deviations}
        expected = {r for r, (a, b) in truth.items() if a <= t < b}
        hits += len(named & expected)
        misses += len(expected - named)
        false += len(named - expected)
    precision, recall = hits / (hits + false), hits / (hits + misses)
    print(f"\nladder, per compared instant: precision {precision:.3f}, recall {recall:.3f}")
    assert (precision, recall) == (1.0, 1.0)


def test_with_two_renditions_a_difference_is_reported_without_naming_either():
    found = [v for t, v in judged(FAULTY, (TOP, BOTTOM)) if 9.0 <= t < 13.0]
    assert found and all(len(v.deviations) == 1 for v in found)
    assert {d.rendition for v in found for d in v.deviations} == {None}
    assert all(iou(v.deviations[0].roi, LOGO_REGION) > 0.7 for v in found)


def test_a_rung_showing_another_moment_deviates_as_a_whole():
    """A rung carrying the wrong (here: a 3 s old) picture differs everywhere."""
    sigs = signatures(CLEAN)
    consensus = LadderConsensus(SETTINGS)
    late = 15  # instants: 3 s
    for i in range(late, len(sigs[TOP])):
        verdict = consensus.compare(
            {TOP: sigs[TOP][i][1], MIDDLE: sigs[MIDDLE][i][1], BOTTOM: sigs[BOTTOM][i - late][1]}
        )
        assert [d.rendition for d in verdict.deviations] == [BOTTOM]
        x, y, w, h = verdict.deviations[0].roi
        assert w * h > 0.5


# --- the consensus rule, on constructed signatures -------------------------------------------


def smooth_picture(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    field = cv2.GaussianBlur(rng.normal(0, 40, (36, 64)).astype(np.float32), (0, 0), 3)
    return (120 + field).astype(np.float32)


def patched(signature: np.ndarray, value: float) -> np.ndarray:
    out = signature.copy()
    out[4:12, 8:20] = value
    return out


def test_a_difference_no_majority_explains_names_nobody():
    base = smooth_picture(3)
    verdict = LadderConsensus(SETTINGS).compare(
        {"a": base, "b": patched(base, 230.0), "c": patched(base, 20.0)}
    )
    assert verdict.deviations == ()


def test_with_four_renditions_the_one_outlier_is_named_against_the_three_others():
    base = smooth_picture(4)
    verdict = LadderConsensus(SETTINGS).compare(
        {"a": base, "b": base + 0.5, "c": patched(base, 230.0), "d": base - 0.5}
    )
    assert [(d.rendition, d.consensus) for d in verdict.deviations] == [("c", ("a", "b", "d"))]
    x, y, w, h = verdict.deviations[0].roi
    assert (x, y) <= (8 / 64, 4 / 36) and (x + w, y + h) >= (20 / 64, 12 / 36)


def test_two_of_four_renditions_deviating_alike_name_nobody():
    base = smooth_picture(5)
    bad = patched(base, 230.0)
    verdict = LadderConsensus(SETTINGS).compare({"a": base, "b": base, "c": bad, "d": bad})
    assert verdict.deviations == ()


def test_sensitivity_sets_the_faintest_difference_that_disagrees():
    base = smooth_picture(6)
    faint = base.copy()
    faint[4:12, 8:20] += 10.0  # a faint graphic: 10 code values over 8x12 cells
    sigs = {"a": base, "b": base, "c": faint}
    assert LadderConsensus(SETTINGS).compare(sigs).deviations == ()
    keen = LadderConsensus(LadderSettings(threshold_cv=4.0)).compare(sigs)
    assert [d.rendition for d in keen.deviations] == ["c"]
