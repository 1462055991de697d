"""JPEG thumbnails of a channel: a low-rate picture for the NOC console, and the picture at the
onset of each alarm.

A small picture is kept every ``CAPTURE_EVERY_S`` of media in a ring covering the longest
hold-off, so a ``raised`` event (sent ``raise_after`` after the fault began) can carry the
picture of the moment the fault began. Scaling uses the frame's own swscale (PyAV
``reformat``) and JPEG encoding OpenCV; both release the GIL, and at two pictures a second
they cost well under 1 % of a core at 1080p.
"""

from __future__ import annotations

from collections import deque

import cv2
import numpy as np

from monitor.config import ThumbnailConfig
from monitor.decode.media_source import Picture

CAPTURE_EVERY_S = 0.5
RING_S = 90.0
"""Longer than any sensible raise_after: the onset picture is still in the ring at the raise."""


class Thumbnailer:
    """Scaled JPEGs of one picture stream, on media time."""

    def __init__(self, settings: ThumbnailConfig) -> None:
        self.settings = settings
        self._ring: deque[tuple[float, bytes]] = deque(maxlen=int(RING_S / CAPTURE_EVERY_S))
        self._next_capture_s = -1.0
        self._next_publish_s = -1.0

    def offer(self, picture: Picture) -> bytes | None:
        """Keep ``picture`` if a capture is due; return a JPEG when a periodic one is due."""
        t = picture.pts_s
        if picture.frame is None or t < self._next_capture_s:
            return None
        jpeg = self.encode(picture)
        if jpeg is None:
            return None
        self._ring.append((t, jpeg))
        self._next_capture_s = t + CAPTURE_EVERY_S
        if t >= self._next_publish_s:
            self._next_publish_s = t + self.settings.interval_s
            return jpeg
        return None

    def at(self, t_s: float) -> bytes | None:
        """The first kept picture at or after media time ``t_s``; else the latest one."""
        for kept_s, jpeg in self._ring:
            if kept_s >= t_s - 1e-6:
                return jpeg
        return self._ring[-1][1] if self._ring else None

    def latest(self) -> bytes | None:
        return self._ring[-1][1] if self._ring else None

    def encode(self, picture: Picture) -> bytes | None:
        frame = picture.frame
        if frame is None or frame.width <= 0 or frame.height <= 0:
            return None
        width = min(self.settings.width, frame.width) // 2 * 2
        height = max(2, round(frame.height * width / frame.width) // 2 * 2)
        small = frame.reformat(width=width, height=height, format="bgr24")
        ok, data = cv2.imencode(
            ".jpg", small.to_ndarray(), [cv2.IMWRITE_JPEG_QUALITY, self.settings.quality]
        )
        return bytes(np.asarray(data)) if ok else None


def outline(jpeg: bytes, roi: object, quality: int = 80) -> bytes:
    """``jpeg`` with the region ``roi`` ([x, y, w, h], fractions of the picture) outlined, so
    the console shows where a regional alarm (a missing logo, a garbled block) is. Anything
    that is not such a region leaves the picture as it was."""
    if not (
        isinstance(roi, list | tuple)
        and len(roi) == 4
        and all(isinstance(v, int | float) for v in roi)
    ):
        return jpeg
    picture = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if picture is None:
        return jpeg
    height, width = picture.shape[:2]
    x, y, w, h = (float(v) for v in roi)
    left, top = round(x * width), round(y * height)
    right, bottom = round((x + w) * width) - 1, round((y + h) * height) - 1
    thickness = max(1, width // 160)
    cv2.rectangle(picture, (left, top), (right, bottom), (0, 0, 255), thickness)  # red (BGR)
    ok, data = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return bytes(np.asarray(data)) if ok else jpeg
