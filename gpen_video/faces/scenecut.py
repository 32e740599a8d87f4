"""Scene cuts from PySceneDetect's content detector, fed the frames we already decoded.

Tracks and smoothing must restart at a hard cut (a face in the next shot is not the same face, and
averaging landmarks across the cut would drag the crop). PySceneDetect's ContentDetector scores the
HSV change between consecutive frames; it is run on a small copy of each frame (its score is an
average, so resolution barely matters), and a cut is reported on the frame it happens, never later.

Its memory is bounded, so a run that starts a little earlier decides every later frame the same way
(a preview or a batch segment against the whole run): a frame over the threshold is a cut unless another
frame was over it in the ``min_scene_len - 1`` frames before (flashes and a second cut too soon are
suppressed, as PySceneDetect's SUPPRESS filter does, but counted from the last frame over the threshold,
not from the last cut kept, whose place would depend on every frame before). ``history_frames`` is what a
run must have seen before a frame for its decision to be the whole run's.
"""

from __future__ import annotations

import cv2
import numpy as np
from scenedetect.common import FrameTimecode
from scenedetect.detector import FlashFilter
from scenedetect.detectors import ContentDetector

from gpen_video.io.colour import to_8bit

_ANALYSIS_WIDTH = 256


class SceneCutDetector:
    """``is_cut(index, image)`` is True on the first frame of a new shot."""

    def __init__(self, threshold: float = 27.0, min_scene_len: int = 8, fps: float = 24.0):
        # every frame over the threshold comes back (no filter): the suppression is this class's own
        self._detector = ContentDetector(threshold=threshold, min_scene_len=0, filter_mode=FlashFilter.Mode.SUPPRESS)
        self._fps = fps
        self._quiet = max(int(min_scene_len) - 1, 0)
        self._last_over: int | None = None  # the last frame over the threshold
        self.cuts: list[int] = []

    @staticmethod
    def history_frames(min_scene_len: int) -> int:
        """Frames before a frame that its decision depends on: the one its score compares with, and the quiet
        frames before it."""
        return max(int(min_scene_len) - 1, 0) + 1

    def is_cut(self, index: int, image: np.ndarray) -> bool:
        small = _analysis_copy(image)
        found = self._detector.process_frame(FrameTimecode(int(index), fps=self._fps), small)
        over = any(int(tc.frame_num) == int(index) for tc in found)
        if not over:
            return False
        cut = self._last_over is None or index - self._last_over > self._quiet
        self._last_over = int(index)
        if cut:
            self.cuts.append(int(index))
        return cut

    def retract(self, index: int) -> None:
        """Forget the cut reported at ``index`` (the faces' measured motion showed the shot goes on: a fast pan)."""
        if self.cuts and self.cuts[-1] == int(index):
            self.cuts.pop()


def _analysis_copy(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    if image.dtype != np.uint8:
        image = to_8bit(image) if image.dtype == np.uint16 else np.clip(image, 0, 255).astype(np.uint8)
    if width <= _ANALYSIS_WIDTH:
        return np.ascontiguousarray(image)
    step = width // _ANALYSIS_WIDTH
    if step >= 2:  # subsample first: an area filter over a whole 4K frame costs more than the detector's score
        image = image[step // 2 :: step, step // 2 :: step]
        height, width = image.shape[:2]
    new_h = max(2, round(height * _ANALYSIS_WIDTH / width))
    return cv2.resize(image, (_ANALYSIS_WIDTH, new_h), interpolation=cv2.INTER_AREA)
