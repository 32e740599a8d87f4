"""Accuracy against known trajectories, no false faces, small faces at any frame size, stills, measured motion."""

from __future__ import annotations

import numpy as np
import pytest
from faces_helpers import mtcnn, photo_landmarks, to_photo, which_photo_face

from gpen_video.config import FacesConfig
from gpen_video.faces import FaceStage
from gpen_video.faces.motion import apply, measure_motion
from gpen_video.synthetic import (
    CrowdScene,
    EnteringPan,
    FaceScene,
    crowd_faces,
    crowd_frames,
    crowd_shift,
    frames,
    render,
    trajectory_accuracy,
)


def run(config: FacesConfig, images: list[np.ndarray]) -> tuple[list, FaceStage]:
    stage = FaceStage(config, detector=mtcnn())
    out = []
    for index, image in enumerate(images):
        out += stage.push(index, image)
    out += stage.flush()
    return sorted(out, key=lambda r: r.index), stage


@pytest.fixture(scope="module", params=["sway", "shake"])
def moving(request):
    clip = list(frames(FaceScene(width=640, height=360, frames=20, degrade=0.6, seed=4, path=request.param)))
    images = [f.image for f in clip]
    raw = [list(mtcnn().detect(image, min_size=20).landmarks) for image in images]
    default, stage = run(FacesConfig(), images)
    no_smooth, _ = run(FacesConfig(smooth=False), images)
    per_frame = {
        "raw": raw,
        "no-smooth": [[f.landmarks5 for f in r.faces] for r in no_smooth],
        "default": [[f.landmarks5 for f in r.faces] for r in default],
    }
    truth = photo_landmarks()
    return request.param, {k: trajectory_accuracy(v, clip, truth) for k, v in per_frame.items()}, default, clip, stage


def test_error_against_the_truth_is_ordered_default_no_smooth_raw(moving):
    path, acc, *_ = moving
    (raw, raw_jit, raw_n), (plain, plain_jit, plain_n), (default, jit, n) = acc["raw"], acc["no-smooth"], acc["default"]
    assert raw_n == plain_n == n == 6
    assert raw > 0.5, f"{path}: the degraded clip should make the raw detector err ({raw:.2f} px)"
    assert plain < 0.7 * raw, f"{path}: no-smooth {plain:.3f} px vs raw {raw:.3f} px"
    assert default < 0.85 * plain, f"{path}: default {default:.3f} px vs no-smooth {plain:.3f} px"
    assert default < raw / 3
    assert jit < raw_jit / 3 and jit < plain_jit


def test_one_track_per_face_and_no_false_track(moving):
    path, _, results, clip, stage = moving
    ids: dict[int | None, set] = {}
    for r in results:
        for face in r.faces:
            ids.setdefault(which_photo_face(to_photo(face.landmarks5, clip[r.index].affine)), set()).add(face.track_id)
    assert None not in ids, f"{path}: a track on something that is not a face"
    assert sorted(ids) == list(range(6)) and all(len(v) == 1 for v in ids.values())
    assert len(stage.track_summaries()) == 6


def test_false_candidates_are_rejected_and_counted():
    """At 1920×1080 the detector scores a shirt fold and a hand as faces; neither becomes a track."""
    clip = list(frames(FaceScene(width=1920, height=1080, frames=6, degrade=0.6, seed=4, path="sway")))
    found = mtcnn().detect(clip[0].image, min_size=12)
    strays = [lm for lm in found.landmarks if which_photo_face(to_photo(lm, clip[0].affine)) is None]
    assert strays, "the clip should hold detections that are not faces"
    # the default, and ``min_face`` 12: the default's small-face pass starts at the pyramid level that still sees
    # a 16 px face, which no longer sees these strays (18 and 26 px boxes found at the levels for 13 and 18 px)
    for config in (FacesConfig(), FacesConfig(min_face=12)):
        results, stage = run(config, [f.image for f in clip])
        for r in results:
            for face in r.faces:
                assert which_photo_face(to_photo(face.landmarks5, clip[r.index].affine)) is not None
        # five or six: the top face is turned too far for ``min_frontal`` on some frames at this size
        assert len(stage.track_summaries()) >= 5
    assert stage.summary().to_dict()["rejected_candidates"] >= 1


def crowd_recall(scene: CrowdScene, config: FacesConfig) -> tuple[float, float, int]:
    """(recall of faces ≥ 20 px, recall of smaller ones, tracks on no face) at the clip's last frame."""
    results, _ = run(config, list(crowd_frames(scene)))
    last = results[-1]
    truth = crowd_faces(scene)
    centres = [face.centre + crowd_shift(scene, last.index) for face in truth]
    found_centres = np.array([0.5 * (f.box[:2] + f.box[2:]) for f in last.faces]).reshape(-1, 2)
    hit = []
    for face, centre in zip(truth, centres, strict=True):
        hit.append(bool(len(found_centres)) and np.linalg.norm(found_centres - centre, axis=1).min() < 0.4 * face.size)
    hit = np.array(hit)
    sizes = np.array([f.size for f in truth])
    false = sum(
        1
        for c in found_centres
        if min(np.linalg.norm(c - t) / f.size for t, f in zip(centres, truth, strict=True)) >= 0.4
    )
    return float(hit[sizes >= 20].mean()), float(hit[sizes < 20].mean()), false


def test_small_faces_are_found_where_the_detector_copy_is_much_smaller_than_the_frame():
    """A 960×540 crowd (16–40 px faces) with the detector's copy at 240 px: the 4K-to-960 ratio, cheaply."""
    scene = CrowdScene(width=960, height=540, frames=4, columns=6, rows=4, seed=2)
    config = FacesConfig(detect_size=240)
    recall, _, false = crowd_recall(scene, config)
    assert recall >= 0.95, f"recall of faces of 20 px and more: {recall:.2f}"
    assert false == 0
    # without the source-resolution pass (the faces' size on the small copy is what decides) most are lost
    blind, _, _ = crowd_recall(scene, FacesConfig(detect_size=240, min_face=48))
    assert blind < 0.5


def test_small_faces_stay_tracked_and_on_the_face_for_48_frames():
    """20-26 px faces the coarse pass cannot see (the detector's copy at a quarter of the frame, as for 4K), so
    between rare band re-detections only the per-frame refinement follows them: every face is given out in every
    frame after the first key-frame interval, near its true landmarks. (Boxes placed from ONet's own answers for
    such faces drifted and turned away: faces lost after ~8 frames, others never confirmed.)"""
    scene = CrowdScene(width=640, height=360, frames=48, columns=4, rows=2, sizes=(20.0, 26.0), seed=2)
    results, _ = run(FacesConfig(detect_size=160), list(crowd_frames(scene)))
    assert [r.index for r in results] == list(range(48))
    truth = photo_landmarks()
    faces = crowd_faces(scene)
    for r in results[8:]:
        shift = crowd_shift(scene, r.index)
        for k, face in enumerate(faces):
            true = apply(face.affine, truth[face.photo_face]) + shift
            errors = [float(np.sqrt(np.mean(np.sum((f.landmarks5 - true) ** 2, axis=-1)))) for f in r.faces]
            assert errors and min(errors) < 0.25 * face.size, (
                f"frame {r.index}: face {k} ({face.size:.0f} px) missing or off by {min(errors, default=-1):.1f} px"
            )


def test_faces_panning_into_view_are_tracked_within_12_frames():
    """Faces of 22-30 px come into view one after another (a pan) with the detector's copy at a quarter of the
    frame, as at 4K, so only the source-resolution pass sees them: each is tracked within 12 frames of being whole
    in view (issue 25). Sweeping that pass one band per key frame, 7 of these 15 were never tracked in the clip
    and the others waited up to 32 frames."""
    pan = EnteringPan(width=960, height=540, frames=48, speed=10, sizes=(22.0, 30.0))
    results, _ = run(FacesConfig(detect_size=240), list(pan.clip()))
    waits, missed = pan.waits({r.index: [f.box for f in r.faces] for r in results})
    assert len(waits) + missed >= 12, "the pan should bring at least twelve faces into view"
    assert missed == 0 and max(waits) <= 12, f"frames until tracked: {sorted(waits)}, never: {missed}"


@pytest.mark.parametrize("count", [1, 2])
def test_a_still_or_two_frames_get_their_faces(count):
    image = render(FaceScene(width=640, height=360, degrade=0.3, seed=2), 0)
    results, stage = run(FacesConfig(), [image.image] * count)
    assert [len(r.faces) for r in results] == [6] * count
    ks = {which_photo_face(to_photo(f.landmarks5, image.affine)) for f in results[0].faces}
    assert ks == set(range(6))
    assert len(stage.track_summaries()) == 6


def test_measured_motion_recovers_a_known_similarity():
    clip = list(frames(FaceScene(width=640, height=360, frames=3, degrade=0.3, seed=1, path="roll")))
    truth = photo_landmarks()
    for k in range(6):
        before = apply(clip[1].affine, truth[k])
        after = apply(clip[2].affine, truth[k])
        box = np.concatenate([before.min(0), before.max(0)]) + np.array([-10, -14, 10, 10])
        motion = measure_motion(clip[1].image, clip[2].image, box)
        assert motion.reliable
        error = np.linalg.norm(apply(motion.affine, before) - after, axis=1).max()
        assert error < 0.25, f"face {k}: {error:.3f} px"
    blank = np.zeros((360, 640, 3), np.uint8)
    assert not measure_motion(blank, blank, np.array([100, 100, 160, 170])).reliable
