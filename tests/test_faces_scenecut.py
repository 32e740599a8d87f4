"""A hard cut: new track ids after it, no track and no smoothing across it."""

from __future__ import annotations

import numpy as np
import pytest
from faces_helpers import mtcnn, to_photo, which_photo_face

from gpen_video.config import FacesConfig
from gpen_video.faces import FaceStage
from gpen_video.faces.scenecut import SceneCutDetector
from gpen_video.synthetic import FaceScene, frames

CUT = 14
SCENE = FaceScene(width=640, height=360, frames=28, degrade=0.5, cut_at=CUT, seed=5)


@pytest.fixture(scope="module")
def clip():
    return list(frames(SCENE))


@pytest.fixture(scope="module")
def run(clip):
    stage = FaceStage(FacesConfig(min_face=23, keyframe_interval=8), detector=mtcnn())
    out = []
    for frame in clip:
        out += stage.push(frame.index, frame.image)
    out += stage.flush()
    return out, stage


def test_content_detector_finds_exactly_the_cut(clip):
    detector = SceneCutDetector(threshold=27.0, min_scene_len=4)
    assert [f.index for f in clip if detector.is_cut(f.index, f.image)] == [CUT]


def test_cut_gives_new_ids_and_no_track_spans_it(run):
    results, stage = run
    report = stage.summary().to_dict()
    assert report["scene_cuts"] == [CUT]
    before = {f.track_id for r in results if r.index < CUT for f in r.faces}
    after = {f.track_id for r in results if r.index >= CUT for f in r.faces}
    assert len(before) >= 6 and len(after) >= 4
    assert before.isdisjoint(after)
    for track in report["tracks"]:
        assert track["last_frame"] < CUT or track["first_frame"] >= CUT


def test_no_smoothing_across_the_cut(run, clip):
    """Frames on both sides of the cut map back through their own shot's trajectory to the right face."""
    results, _ = run
    for r in results:
        if abs(r.index - CUT) > 2:
            continue
        matched = set()
        for face in r.faces:
            k = which_photo_face(to_photo(face.landmarks5, clip[r.index].affine), tolerance=15.0)
            if k is not None:
                matched.add(k)
        # shot 0 shows all six faces; shot 1 (mirrored, zoomed in) four of them
        assert len(matched) >= (6 if r.index < CUT else 4), f"frame {r.index}: faces not where their shot puts them"


def test_cut_triggers_a_full_detection(run):
    _, stage = run
    # key frames: 0, 8, the cut (14), 22 -> at least 4, and well under one per frame
    assert 4 <= stage.summary().to_dict()["detector_calls"] <= 8


def test_textured_clip_without_faces_gives_no_faces_and_no_cut():
    stage = FaceStage(FacesConfig(min_face=23), detector=mtcnn())
    out = []
    for frame in frames(FaceScene(frames=10, faces=False)):
        out += stage.push(frame.index, frame.image)
    out += stage.flush()
    assert len(out) == 10 and all(not r.faces for r in out)
    assert stage.summary().to_dict()["scene_cuts"] == [] and stage.summary().to_dict()["tracks"] == []
    assert np.isfinite(stage.lookahead)
