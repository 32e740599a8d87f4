"""Key frames between sweeps search only where the picture changed: the change map against known camera moves and
known appearances, and the tracker finding a face that appears on a still shot without a whole-frame search."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
from faces_helpers import mtcnn, photo_landmarks, to_frame

from gpen_video.config import FacesConfig
from gpen_video.faces import FaceStage
from gpen_video.faces.change_map import ChangeMap
from gpen_video.synthetic import PHOTO_FACE_BOXES, faces_image

_SIZE = (960, 540)
_SCALE, _LIFT = 0.75, -20.0  # the photo in the frame: all six faces inside it, no border


def _face_box(k: int) -> tuple[int, int, int, int]:
    """Face ``k`` of the photo in the still frame (whole px)."""
    box = np.array(PHOTO_FACE_BOXES[k]) * _SCALE + [0.0, _LIFT, 0.0, _LIFT]
    return tuple(int(v) for v in box.round())


def _view(affine: np.ndarray) -> np.ndarray:
    """The photo seen through ``affine`` (photo px -> frame px) in a 960x540 frame."""
    return cv2.warpAffine(faces_image(), affine, _SIZE, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _camera(shift: tuple[float, float], zoom: float, roll_degrees: float) -> np.ndarray:
    """Photo -> frame: the photo at ``_SCALE``, lifted ``_LIFT`` px, then moved by a known similarity."""
    base = np.array([[_SCALE, 0.0, 0.0], [0.0, _SCALE, _LIFT]])
    move = cv2.getRotationMatrix2D((480.0, 270.0), roll_degrees, zoom)
    move[:, 2] += shift
    full = np.vstack([move, [0, 0, 1]]) @ np.vstack([base, [0, 0, 1]])
    return full[:2]


def test_a_camera_move_changes_only_what_it_brings_into_view():
    """A pan, zoom and roll between two looks (known): inside the part of the new frame the old one also showed,
    almost no cell is called changed; the strip the camera brought into view is."""
    before, after = _camera((0, 0), 1.0, 0.0), _camera((14.0, -6.0), 1.03, 1.5)
    changes = ChangeMap()
    changes.look(_view(before))
    changed = changes.changed(_view(after))
    rows, cols = changed.cells.shape
    # where each cell centre of the new frame was in the old one (truth: the two known cameras)
    ys, xs = np.mgrid[0:rows, 0:cols]
    centres = np.stack([(xs + 0.5) * changed.cell, (ys + 0.5) * changed.cell], -1).reshape(-1, 2)
    back = np.vstack([before, [0, 0, 1]]) @ np.linalg.inv(np.vstack([after, [0, 0, 1]]))
    old = centres @ back[:2, :2].T + back[:2, 2]
    margin = 3 * changed.cell
    seen = (
        (old[:, 0] > margin) & (old[:, 0] < _SIZE[0] - margin) & (old[:, 1] > margin) & (old[:, 1] < _SIZE[1] - margin)
    )
    unseen = (old[:, 0] < 0) | (old[:, 0] >= _SIZE[0]) | (old[:, 1] < 0) | (old[:, 1] >= _SIZE[1])
    cells = changed.cells.reshape(-1)
    assert unseen.sum() > 50, "the move should bring a strip into view"
    assert cells[seen].mean() < 0.01, f"{cells[seen].mean():.3f} of the cells both looks saw called changed"
    assert cells[unseen].mean() > 0.9, f"only {cells[unseen].mean():.3f} of the cells brought into view changed"


def test_a_face_that_appears_on_a_still_shot_is_where_it_changed():
    """A face uncovered between two looks of a still camera: the changed cells cover it and little else, and the
    regions to search hold all of it."""
    frame = _view(_camera((0, 0), 1.0, 0.0))
    x0, y0, x1, y1 = _face_box(2)
    covered = frame.copy()
    covered[y0:y1, x0:x1] = frame[y0:y1, x0:x1].mean((0, 1))
    changes = ChangeMap()
    changes.look(covered)
    changed = changes.changed(frame)
    cell = changed.cell
    inside = changed.cells[int(y0 / cell) + 1 : int(y1 / cell) - 1, int(x0 / cell) + 1 : int(x1 / cell) - 1]
    assert inside.mean() > 0.5, f"only {inside.mean():.2f} of the face's cells changed"
    grown = np.zeros_like(changed.cells)
    grown[max(0, int(y0 / cell) - 2) : int(y1 / cell) + 3, max(0, int(x0 / cell) - 2) : int(x1 / cell) + 3] = True
    assert not (changed.cells & ~grown).any(), "cells away from the face called changed"
    regions = changed.regions(20.0, *_SIZE)
    assert len(regions) == 1
    rx0, ry0, rx1, ry1 = regions[0]
    assert rx0 <= x0 and ry0 <= y0 and rx1 >= x1 and ry1 >= y1, (regions, (x0, y0, x1, y1))


def test_a_face_that_appears_is_tracked_without_a_whole_frame_search():
    """A still shot whose third face is covered until frame 10: the key frame at 16 searches only where the picture
    changed and finds it; the other faces are re-anchored by looks around them. The same tracks as when every
    key frame searches the whole frame, at the same places, from one whole-frame search instead of three."""
    frame = _view(_camera((0, 0), 1.0, 0.0))
    x0, y0, x1, y1 = _face_box(2)
    covered = frame.copy()
    covered[y0:y1, x0:x1] = frame[y0:y1, x0:x1].mean((0, 1))
    rng = np.random.default_rng(3)
    clip = [
        np.clip((covered if i < 10 else frame) + rng.normal(0, 2.0, frame.shape), 0, 255).astype(np.uint8)
        for i in range(24)
    ]
    results = {}
    for search in ("changed", "whole"):
        stage = FaceStage(replace(FacesConfig(), keyframe_search=search), detector=mtcnn())
        out = [r for i, image in enumerate(clip) for r in stage.push(i, image)] + stage.flush()
        results[search] = (out, stage.tracker.detection)
    changed_out, gated = results["changed"]
    whole_out, swept = results["whole"]
    assert (gated.sweeps, gated.changed_searches) == (1, 2) and swept.sweeps == 3
    last_changed, last_whole = changed_out[-1].faces, whole_out[-1].faces
    assert len(last_changed) == len(last_whole) >= 5  # the sixth (top) face is too far in profile for a track
    # against the truth (the photo's landmarks through the known camera): the face that appeared, whose framing
    # came from a search of a changed region, lies as close to it as the faces the first sweep found; those are
    # where they are when every key frame searches the whole frame
    truth = to_frame(photo_landmarks(), _camera((0, 0), 1.0, 0.0))
    errors = {which: _errors(faces, truth) for which, faces in (("changed", last_changed), ("whole", last_whole))}
    appeared = int(np.argmin(np.abs(truth[:, :, 0].mean(1) - (x0 + x1) / 2)))
    others = [e for k, e in errors["changed"].items() if k != appeared]
    assert errors["changed"][appeared] <= 1.5 * float(np.median(others)), errors
    assert all(abs(errors["changed"][k] - errors["whole"][k]) < 1.0 for k in errors["whole"] if k != appeared), errors
    first = [r.index for r in changed_out if any(_nearest(f.landmarks5, truth) == appeared for f in r.faces)]
    assert first and first[0] <= 16, first[:3]


def _nearest(landmarks: np.ndarray, truth: np.ndarray) -> int:
    return int(np.argmin(np.linalg.norm(truth.mean(1) - landmarks.mean(0), axis=1)))


def _errors(faces, truth: np.ndarray) -> dict[int, float]:
    """Mean landmark distance (px) from the truth, by which photo face."""
    return {
        _nearest(f.landmarks5, truth): float(
            np.linalg.norm(truth[_nearest(f.landmarks5, truth)] - f.landmarks5, axis=1).mean()
        )
        for f in faces
    }
