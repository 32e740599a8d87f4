"""Zero-phase robust smoothing and the tracker's logic on scripted detections."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from faces_helpers import ScriptedDetector

from gpen_video.config import FacesConfig
from gpen_video.faces import FaceStage
from gpen_video.faces.association import association_cost, hungarian
from gpen_video.faces.smoothing import local_linear, smooth_track
from gpen_video.faces.types import Detections

FACE = np.array([[40.0, 50.0], [60.0, 50.0], [50.0, 60.0], [42.0, 70.0], [58.0, 70.0]])


def test_linear_motion_passes_through_without_lag():
    t = np.arange(30.0)
    values = np.stack([3.0 + 0.7 * t, -2.0 - 0.3 * t], axis=1)
    out = smooth_track(t, values, window=9)
    np.testing.assert_allclose(out, values, atol=1e-9)  # zero-phase local-linear: no lag on a ramp


def test_noise_is_reduced_threefold_and_an_outlier_ignored():
    rng = np.random.default_rng(0)
    t = np.arange(60.0)
    truth = np.stack([0.5 * t, np.sin(t / 15.0) * 3], axis=1)
    noisy = truth + rng.normal(0, 1.0, truth.shape)
    noisy[30] += (25.0, -25.0)  # a wild detection
    out = smooth_track(t, noisy, window=9, noise_floor=0.5)
    err_raw = np.sqrt(np.mean(np.delete(noisy - truth, 30, 0) ** 2))
    err_out = np.sqrt(np.mean((out - truth)[12:-12] ** 2))
    assert err_out < err_raw / 3
    assert np.linalg.norm(out[29] - truth[29]) < 1.0  # the neighbours of the outlier are not dragged
    with pytest.raises(ValueError):
        local_linear(t, noisy, 200.0, window=9)


def test_strength_blends_between_raw_and_smoothed():
    rng = np.random.default_rng(1)
    t = np.arange(20.0)
    values = rng.normal(0, 1, (20, 2))
    half = smooth_track(t, values, window=5, strength=0.5)
    full = smooth_track(t, values, window=5, strength=1.0)
    np.testing.assert_allclose(half, 0.5 * (values + full), atol=1e-12)


def test_hungarian_association_is_gated():
    tracks = np.stack([FACE, FACE + np.array((200, 0))])
    boxes = np.array([[30, 35, 70, 85], [230, 35, 270, 85]], float)
    det = Detections(
        np.array([[232, 36, 272, 86], [500, 500, 540, 550]], np.float32),
        np.ones(2, np.float32),
        np.stack([FACE + np.array((202, 1)), FACE + np.array((470, 465))]).astype(np.float32),
    )
    pairs = hungarian(association_cost(tracks, boxes, det))
    assert pairs == [(1, 0)]  # the far-away detection is a new face, not track 0


def run_scripted(script: dict, frames: int, config: FacesConfig):
    detector = ScriptedDetector(script)
    # a scripted detector's faces come and go on a picture that never changes: every key frame searches it whole
    # (between sweeps only what changed is searched, and here nothing does)
    stage = FaceStage(replace(config, keyframe_search="whole"), detector=detector)
    out = []
    image = np.zeros((120, 160, 3), np.uint8)
    for i in range(frames):
        detector.frame = i
        out += stage.push(i, image)
    out += stage.flush()
    return out, stage, detector


def test_gap_is_interpolated_and_short_tracks_dropped():
    config = FacesConfig(min_face=5, keyframe_interval=4, max_gap=4, min_track_length=3, scene_threshold=0)
    script = {i: [FACE + np.array((0.5 * i, 0))] for i in range(20) if i not in (8, 9, 10)}
    for i in (15, 16):  # a face seen on two frames only: too short to trust
        script[i] = [*script[i], FACE + np.array((90, 30))]
    out, stage, detector = run_scripted(script, 20, config)
    assert [len(r.faces) for r in out] == [1] * 20
    assert {f.track_id for r in out for f in r.faces} == {0}
    gap = [r.faces[0] for r in out if r.index in (8, 9, 10)]
    assert all(f.interpolated for f in gap)
    np.testing.assert_allclose(gap[1].landmarks5, FACE + np.array((4.5, 0)), atol=1e-4)
    report = stage.summary().to_dict()
    assert len(report["tracks"]) == 1 and report["tracks"][0]["first_frame"] == 0
    assert report["tracks"][0]["last_frame"] == 19
    assert report["detector_calls"] <= 8
    assert report["detector_calls"] + report["detector_region_calls"] == detector.detect_calls


def test_long_gap_ends_the_track_and_max_faces_keeps_the_largest():
    config = FacesConfig(min_face=5, keyframe_interval=4, max_gap=2, min_track_length=2, scene_threshold=0, max_faces=1)
    big = (FACE - 50) * 2 + 80
    script = {i: [FACE, big] if i < 5 or i > 12 else [big] for i in range(18)}
    out, stage, _ = run_scripted(script, 18, config)
    assert all(len(r.faces) == 1 for r in out)
    assert len({f.track_id for r in out for f in r.faces}) == 1  # only the big face is kept
    assert stage.summary().to_dict()["skipped_faces"] >= 6  # the small face on the frames it is tracked
    config2 = FacesConfig(min_face=5, keyframe_interval=4, max_gap=2, min_track_length=2, scene_threshold=0)
    out2, _, _ = run_scripted(script, 18, config2)
    small_ids = [{f.track_id for f in r.faces if f.landmarks5[0, 0] < 45} for r in out2]
    assert small_ids[0] and small_ids[17] and small_ids[0].isdisjoint(small_ids[17])  # lost > max_gap: new id
    assert all(not ids for ids in small_ids[6:12])


def test_small_and_profile_faces_are_skipped_and_counted():
    config = FacesConfig(min_face=30, scene_threshold=0)  # detector box px: FACE's is 44, the small one's 22
    profile = FACE.copy()
    profile[2] = (30.0, 60.0)  # nose beyond the left eye: turned away
    small = (FACE - 50) * 0.5 + 120
    script = {i: [FACE + np.array((60, 0)), profile, small] for i in range(10)}
    out, stage, _ = run_scripted(script, 10, config)
    assert all(len(r.faces) == 1 for r in out)
    assert stage.summary().to_dict()["skipped_faces"] >= 2
