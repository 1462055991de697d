"""Thumbnails: the onset ring, and the region outlined on a regional alarm's picture."""

from __future__ import annotations

import av
import cv2
import numpy as np

from monitor.config import ThumbnailConfig
from monitor.decode.media_source import Picture
from monitor.decode.thumbnails import Thumbnailer, outline


def picture(t_s: float, level: int, size: tuple[int, int] = (320, 180)) -> Picture:
    width, height = size
    frame = av.VideoFrame.from_ndarray(
        np.full((height, width, 3), level, np.uint8), format="rgb24"
    ).reformat(format="yuv420p")
    luma = np.frombuffer(frame.planes[0], np.uint8).reshape(height, -1)[:, :width]
    return Picture(luma, t_s, 0.04, 8, False, frame=frame)


def decoded(jpeg: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def test_the_onset_picture_is_the_first_kept_at_or_after_the_time_asked():
    thumbnails = Thumbnailer(ThumbnailConfig(width=160))
    for i in range(20):  # 0.0 .. 1.9 s, grey rising with time
        thumbnails.offer(picture(i * 0.1, 10 * i))

    onset = decoded(thumbnails.at(1.0) or b"")  # kept every 0.5 s: 0.0, 0.5, 1.0, 1.5
    assert onset.shape[1] == 160
    assert abs(float(onset.mean()) - 100) < 6, onset.mean()
    late = decoded(thumbnails.at(9.0) or b"")  # after the ring: the latest one
    assert abs(float(late.mean()) - 150) < 6, late.mean()


def test_a_regions_outline_is_drawn_in_red_where_the_region_is():
    jpeg = Thumbnailer(ThumbnailConfig(width=320)).encode(picture(0.0, 128)) or b""

    image = decoded(outline(jpeg, [0.75, 0.0, 0.25, 0.25]))

    blue, green, red = (image[..., c].astype(int) for c in range(3))
    redness = red - (green + blue) // 2
    edge_left = redness[5:40, 238:242]  # the region's left edge, x = 0.75 * 320 = 240
    assert edge_left.mean() > 60, edge_left.mean()
    assert np.abs(redness[100:, :200]).mean() < 8  # the rest of the picture is untouched
    assert np.abs(redness[10:35, 250:310]).mean() < 8  # inside the region too


def test_anything_but_a_region_leaves_the_picture_as_it_was():
    jpeg = Thumbnailer(ThumbnailConfig(width=64)).encode(picture(0.0, 50)) or b""
    for roi in (None, "logo", [0.1, 0.2], [0.1, "a", 0.2, 0.3], {"x": 0.1}):
        assert outline(jpeg, roi) == jpeg
    assert outline(b"not a jpeg", [0.1, 0.1, 0.2, 0.2]) == b"not a jpeg"
