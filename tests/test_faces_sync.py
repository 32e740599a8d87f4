"""Sync frames bound the tracker's memory: a faces stage started at ``warm_start`` of a frame gives, from that frame
on, exactly the faces of a stage started at the clip's first frame.

The clip is t1.jpg's six faces filmed hand-held and degraded (blur, noise, JPEG), so the detector misses faces now
and then, with a sync frame every second: tracks start afresh, are taken over, and followed faces the sync
frame's detection missed follow on as orphans and are taken over later. Every range start in the clip is tried.
"""

from __future__ import annotations

import math

import pytest
from faces_helpers import mtcnn

from gpen_video.config import FacesConfig
from gpen_video.faces import FaceStage
from gpen_video.faces.stage import warm_start
from gpen_video.synthetic import FaceScene, frames

FPS = 24.0


def _faces(config: FacesConfig, clip: list, start: int) -> tuple[dict[int, list], FaceStage]:
    """Frame -> its faces (landmarks, in paste order) from a stage that starts at ``start``."""
    stage = FaceStage(config, detector=mtcnn())
    out = []
    for frame in clip[start:]:
        out += stage.push(frame.index - start, frame.image, frame.index / FPS)  # indices count from the run's start
    out += stage.flush()
    return {r.index + start: [f.landmarks5.tolist() for f in r.faces] for r in out}, stage


@pytest.mark.slow
def test_a_stage_started_at_the_warm_start_gives_the_whole_runs_faces():
    config = FacesConfig(sync_seconds=1.0)
    scene = FaceScene(width=480, height=270, frames=168, degrade=0.7, seed=5, path="shake", zoom=(1.3, 1.4))
    clip = list(frames(scene))
    whole, stage = _faces(config, clip, 0)
    tracker = stage.tracker
    assert tracker.orphaned >= 1 and tracker.orphans_taken_over >= 1, (tracker.orphaned, tracker.orphans_taken_over)
    warm = warm_start(config)
    tried = 0
    # ranges starting 0, 5, 6, 11 and 22 frames past a sync frame (one every 24), early and late in the clip; those
    # 6 past one have a warm-up that must reach the sync frame before it (six starts: each costs a run to the end)
    for first in (72, 78, 83, 94, 126, 149):
        start = math.ceil(warm.before(first / FPS, 1.01 / FPS) * FPS - 1e-6)
        assert 0 < start < first
        part, _ = _faces(config, clip, start)
        for index in range(first, len(clip)):
            assert part[index] == whole[index], f"from frame {start} for {first}: frame {index} differs"
        tried += 1
    assert tried == 6
