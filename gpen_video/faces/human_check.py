"""Is it a human face? A check that a cartoon, an animal or a face the detector found in a texture is left alone
(``selection.human_check``): GPEN paints a human face onto whatever it is given.

MTCNN confirms the bunny of Big Buck Bunny as a face (frames 20–42, mean score 0.78), and the recogniser cannot
tell it from a person either: its embedding is as close to real faces' as theirs are to each other. dlib's HOG
frontal-face detector (in the ``dlib-bin`` wheel of the ``identity`` extra, no model file) can: it was trained on
human faces' gradients alone. Each face is cut out level (its eye line horizontal) at ``CHIP_SCALE`` px from eyes
to mouth, and the detector's best score for a box centred on it is the face's *human score*.

Measured (dlib 20.0.1):

- insightface's t1.jpg, six people: 1.58–2.81 at the photo's size, 1.24–2.92 shrunk to 12–40 px from eyes to
  mouth with or without noise of sigma 8; other real faces (the astronaut in scikit-image's data, upscaled
  176×144 carphone frames): 1.11–1.69;
- the bunny, 23 frames: −9 (no box) to 0.80, median −0.41; scikit-image's cat with its eyes, nose and mouth
  placed by hand, a drawn cartoon face and face-shaped patches of grass and gravel: all below 0
  (``tests/test_selection.py``).

It is a frontal detector: a real face turned towards half-profile scores low (0.93–1.04 at frontalness 0.64, shrunk
and noisy), so only faces at least ``HUMAN_FRONTAL`` frontal are looked at (a track never seen so is restored),
and a track's verdict is the median of its first ``HUMAN_LOOKS`` looks (the bunny's frames scatter up to 0.80; its
median is −0.41), taken from its first look on and held once they are all in.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from gpen_video.errors import DependencyError
from gpen_video.faces.types import face_scale

#: a track whose median score is at or above this is human (between the bunny's median, −0.41, and real faces'
#: worst single look, 0.93)
HUMAN_MIN_SCORE = 0.5
#: faces at least this frontal (``types.frontalness``) are looked at
HUMAN_FRONTAL = 0.75
#: a track's verdict is the median of this many looks (its first ones in the period)
HUMAN_LOOKS = 3
#: eyes-to-mouth distance of the level cut-out the detector looks at (px); its 80-px window then holds the face
CHIP_SCALE = 60.0
#: half the cut-out's side, in eyes-to-mouth distances
CHIP_HALF = 2.0
#: a box counts when its centre is this close to the face's (in eyes-to-mouth distances)
CENTRE_TOLERANCE = 0.6


class HumanFaceCheck:
    """dlib's HOG frontal-face detector, asked about one face at a time; made at the first face (a quarter of a
    second that faceless footage and each batch segment without a face never pay)."""

    def __init__(self) -> None:
        try:
            import dlib
        except ImportError as exc:
            from gpen_video.faces.recognizers.dlib_resnet import IDENTITY_EXTRA

            raise DependencyError(f"the human-face check needs dlib: {IDENTITY_EXTRA}") from exc
        self._dlib, self._made = dlib, None

    @property
    def detector(self) -> Any:
        if self._made is None:
            self._made = self._dlib.get_frontal_face_detector()
        return self._made

    def score(self, image: np.ndarray, landmarks: np.ndarray) -> float:
        """The human score of the face at ``landmarks`` (5, 2) in the BGR ``image``: the detector's best score for
        a box on it, or −10 where it finds none."""
        chip = _level_chip(image, np.asarray(landmarks, np.float64))
        boxes, scores, _ = self.detector.run(chip, 0, -10.0)
        centre, best = CHIP_HALF * CHIP_SCALE, -10.0
        for box, score in zip(boxes, scores, strict=True):
            cx, cy = (box.left() + box.right()) / 2, (box.top() + box.bottom()) / 2
            if np.hypot(cx - centre, cy - centre) <= CENTRE_TOLERANCE * CHIP_SCALE:
                best = max(best, float(score))
        return best


def _level_chip(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The face cut out with its eye line level, ``CHIP_SCALE`` px from eyes to mouth, centred between them (RGB,
    8-bit, as dlib takes it)."""
    eyes = 0.5 * (landmarks[0] + landmarks[1])
    mouth = 0.5 * (landmarks[3] + landmarks[4])
    across = landmarks[1] - landmarks[0]
    angle = float(np.degrees(np.arctan2(across[1], across[0])))
    scale = CHIP_SCALE / max(float(face_scale(landmarks)), 1e-6)
    middle = 0.5 * (eyes + mouth)
    side = round(2 * CHIP_HALF * CHIP_SCALE)
    affine = cv2.getRotationMatrix2D((float(middle[0]), float(middle[1])), angle, scale)
    affine[:, 2] += side / 2 - middle
    shrink = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    chip = cv2.warpAffine(image, affine, (side, side), flags=shrink, borderMode=cv2.BORDER_REPLICATE)
    if chip.dtype == np.uint16:
        chip = (chip >> 8).astype(np.uint8)
    return np.ascontiguousarray(chip[:, :, ::-1])
