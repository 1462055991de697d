"""Rendition mismatch on a live ABR ladder: the session's renditions compared at the same time.

A live HLS input decodes each rendition on its own thread, and their pictures reach the
session's control loop at different moments: segments of different renditions arrive up to a
target duration apart, and each decoder's session timeline starts when it joined. Pictures
are therefore matched on their *source* PTS — the packager's timestamps, which the renditions
of a ladder share — at ``comparisons_per_second`` instants a second, a whole number of frames
apart from the first picture seen, so that each instant is the middle of a frame. Each
rendition contributes the picture shown at the instant (within half a frame of it:
renditions at 50 and 25 fps pick the same picture, and timestamps that differ between
renditions by less than half a frame still pick the same one). Only those pictures are
measured.

Their signatures wait, per instant, until every flowing video rendition has delivered that
instant or moved past it, or until ``max_skew_s`` of newer media has arrived without it; then
the instant is judged (``detectors.ladder``) and each compared rendition's
``rendition_mismatch`` tracker observes the verdict at the session time of its own picture.

A rendition whose own ``black`` or ``freeze`` condition is present (pending or raised) takes
no part in the comparison: its own alarm names it already, and with several renditions black
the one healthy rendition would look like the outlier. Audio-only renditions have no
pictures and are left out by name as well.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from detectors.ladder import Deviation, LadderConsensus, LadderSettings, PictureSignature
from monitor.alarms.engine import AlarmTracker
from monitor.checks.base import Check, CheckContext, InputCheck
from monitor.decode.media_source import MPEG_WRAP_TICKS, Picture

ALARM = "rendition_mismatch"
MPEG_WRAP_S = MPEG_WRAP_TICKS / 90_000
"""Source times are taken modulo the 33-bit MPEG wrap (26.5 h): decoders that joined on either
side of a wrap still agree on the time of a picture."""


@dataclass(slots=True)
class _Sample:
    t_s: float  # session media time of the picture
    signature: np.ndarray | None  # None: its own black/freeze condition explains it


class RenditionMismatchCheck(InputCheck):
    """Compares the video renditions of one live input and tracks ``rendition_mismatch``."""

    wants_pictures: ClassVar[bool] = True

    @classmethod
    def build(cls, context: CheckContext) -> Check | None:
        if not context.ladder or not context.channel.rendition_mismatch.rule.enabled:
            return None
        return cls(context, keyframes=context.ladder_keyframes)

    def __init__(self, context: CheckContext, keyframes: bool = False) -> None:
        """``keyframes``: compare at keyframes only, for ladders whose smaller renditions
        are not decoded in full (an ABR ladder's renditions have their keyframes at the same
        times, so that players can switch between them)."""
        config = context.channel.rendition_mismatch
        self.keyframes = keyframes
        self.rule = config.rule
        self.settings = config.settings
        self._tracker = context.tracker
        self._consensus = LadderConsensus(self.settings)
        self._signatures: dict[str, PictureSignature] = {}
        self._grid: tuple[float, float] | None = None  # (origin, step) of the instants
        self._instants: dict[int, dict[str, _Sample]] = {}  # in order of first arrival
        # Per rendition: source time, half its frame duration, session time of its latest picture.
        self._latest: dict[str, tuple[float, float, float]] = {}
        self._trackers: dict[str | None, AlarmTracker] = {}
        self._observed_s: dict[str | None, float] = {}
        self.comparisons = 0
        _warm_up(self.settings)

    def rendition_picture(self, rendition: str | None, picture: Picture, explained: bool) -> None:
        """One decoded picture of ``rendition``, after its own pipeline has measured it."""
        if rendition is None or rendition.startswith("audio-"):
            return
        frame = picture.frame
        time_s = None if frame is None else frame.time  # source PTS in seconds
        duration_s = picture.duration_s
        if time_s is None or duration_s <= 0:
            return
        # Every picture passes here: a few arithmetic steps, nothing measured.
        source_s = time_s % MPEG_WRAP_S
        half_s = duration_s / 2
        self._latest[rendition] = (source_s, half_s, picture.pts_s)
        if self._grid is None:
            per_second = self.settings.comparisons_per_second
            frames = 1 if self.keyframes else max(1, round(1.0 / (per_second * duration_s)))
            self._grid = (source_s, frames * duration_s)
        if self.keyframes and not picture.keyframe:
            if self._instants:  # the renditions' progress may complete a waiting instant
                self._judge_ready()
            return
        origin_s, step_s = self._grid
        k = math.floor((source_s + half_s - origin_s) / step_s)
        if origin_s + k * step_s <= source_s - half_s or len(self._latest) < 2:
            return  # not the picture of an instant (or no second rendition yet)
        signature = None
        if not explained:
            signer = self._signatures.get(rendition)
            if signer is None:
                signer = self._signatures[rendition] = PictureSignature(self.settings)
            signature = signer(picture.luma, picture.bit_depth, picture.full_range)
        self._instants.setdefault(k, {})[rendition] = _Sample(picture.pts_s, signature)
        self._judge_ready()

    def _judge_ready(self) -> None:
        while self._instants:
            k, samples = next(iter(self._instants.items()))
            assert self._grid is not None
            origin_s, step_s = self._grid
            if not self._ready(origin_s + k * step_s, samples):
                return
            del self._instants[k]
            self._judge(samples)

    def _ready(self, instant_s: float, samples: dict[str, _Sample]) -> bool:
        """Every flowing rendition has delivered the instant or will not any more."""
        max_skew_s = self.settings.max_skew_s
        newest_s = max(t_s for _, _, t_s in self._latest.values())
        if newest_s - min(s.t_s for s in samples.values()) > max_skew_s:
            return True  # waited long enough for the late ones
        for rendition, (source_s, half_s, t_s) in self._latest.items():
            if rendition in samples or newest_s - t_s > max_skew_s:
                continue  # delivered, or not flowing
            if instant_s - max_skew_s < source_s + half_s < instant_s:
                return False  # still before the instant: its picture is on the way
        return True

    def _judge(self, samples: dict[str, _Sample]) -> None:
        compared = {r: s.signature for r, s in samples.items() if s.signature is not None}
        if len(compared) < 2:
            for rendition, sample in samples.items():
                if sample.signature is None:
                    self._observe(rendition, sample.t_s, None)
            return
        self.comparisons += 1
        verdict = self._consensus.compare(compared)
        named = {d.rendition: d for d in verdict.deviations}
        for rendition, sample in samples.items():
            self._observe(rendition, sample.t_s, named.get(rendition))
        if None in named or None in self._trackers:
            t_s = max(samples[r].t_s for r in compared)
            self._observe(None, t_s, named.get(None), verdict.compared)

    def _observe(
        self,
        rendition: str | None,
        t_s: float,
        deviation: Deviation | None,
        compared: tuple[str, ...] = (),
    ) -> None:
        if t_s < self._observed_s.get(rendition, -math.inf):
            return  # a straggler judged after a later instant of the same rendition
        self._observed_s[rendition] = t_s
        tracker = self._trackers.get(rendition)
        if tracker is None:
            if deviation is None:
                return
            tracker = self._tracker(ALARM, self.rule, rendition=rendition)
            self._trackers[rendition] = tracker
        detail = None if deviation is None else _detail(deviation, compared)
        tracker.observe(t_s, deviation is not None, detail=detail)


def _detail(deviation: Deviation, compared: tuple[str, ...]) -> dict[str, Any]:
    detail: dict[str, Any] = {
        "rendition": deviation.rendition,
        "consensus": list(deviation.consensus),
        "distance": deviation.distance_cv,
        "baseline": deviation.baseline_cv,
        "roi": list(deviation.roi),
    }
    if deviation.rendition is None:
        detail["renditions"] = list(compared)
    return detail


def _warm_up(settings: LadderSettings) -> None:
    """Load the kernels' cached code now, not mid-stream (it holds the GIL for a while)."""
    luma = np.zeros((settings.grid_height, settings.grid_width + 16), np.uint8)
    luma = luma[:, : settings.grid_width]
    luma.flags.writeable = False
    signature = PictureSignature(settings)(luma, 8, False)
    assert signature is not None
    LadderConsensus(settings).compare({"a": signature, "b": signature, "c": signature})
