"""Multi-frame fusion (``align.fusion``) against the clean pictures the noisy frames were made from.

The faces are insightface's t1.jpg, their landmarks MTCNN's on the clean photo carried through known motions;
each frame gets its own noise. The truth is the clean frame, never fusion's own output.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from gpen_video.align.fusion import FaceView, FusionTally, fuse_face, fusion_region
from gpen_video.faces.detectors import create_detector
from gpen_video.synthetic import faces_image

SIGMA = 8.0
SIZE = (640, 400)  # frame width, height


@pytest.fixture(scope="module")
def photo() -> tuple[np.ndarray, np.ndarray]:
    """t1.jpg scaled to fit the frame, and its faces' landmarks there (MTCNN on the clean picture), (6, 5, 2)."""
    image = faces_image()
    scale = SIZE[1] / image.shape[0]
    image = cv2.resize(image, (round(image.shape[1] * scale), SIZE[1]), interpolation=cv2.INTER_AREA)[:, : SIZE[0]]
    found = create_detector("mtcnn").detect(image)
    keep = [k for k in range(len(found)) if found.landmarks[k][:, 0].max() < SIZE[0] - 40]
    return np.ascontiguousarray(image), found.landmarks[keep].astype(np.float64)


def _moved(image: np.ndarray, shift: tuple[float, float]) -> np.ndarray:
    affine = np.array([[1.0, 0.0, shift[0]], [0.0, 1.0, shift[1]]])
    return cv2.warpAffine(image, affine, SIZE, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def _noisy(image: np.ndarray, seed: int, sigma: float = SIGMA) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0.0, sigma, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def _clip(photo, shifts, paint=None):  # type: ignore[no-untyped-def]
    """(clean frames, noisy frames, landmarks per frame) of the photo moved by ``shifts``; ``paint(k, frame)`` draws
    on clean frame k before the noise."""
    image, landmarks = photo
    clean, noisy, points = [], [], []
    for k, shift in enumerate(shifts):
        frame = _moved(image, shift)
        if paint is not None:
            paint(k, frame)
        clean.append(frame)
        noisy.append(_noisy(frame, seed=100 + k))
        points.append(landmarks + np.asarray(shift))
    return clean, noisy, points


SWAY = [(0.0, 0.0), (3.7, -1.2), (7.1, -2.9), (9.8, -3.1), (12.4, -4.6)]  # the middle frame is the reference


def _fuse(noisy, points, face: int, centre: int = 2, radius: int = 2, strength: float = 1.0):  # type: ignore[no-untyped-def]
    reference = FaceView(noisy[centre], points[centre][face])
    around = range(max(centre - radius, 0), min(centre + radius + 1, len(noisy)))
    neighbours = [FaceView(noisy[k], points[k][face]) for k in around if k != centre]
    return fuse_face(reference, neighbours, strength)


def test_noise_falls_on_a_moving_face_and_the_figures_say_so(photo) -> None:  # type: ignore[no-untyped-def]
    clean, noisy, points = _clip(photo, SWAY)
    for face in range(len(photo[1])):
        fused = _fuse(noisy, points, face)
        x0, y0, x1, y1 = fused.box
        before = _psnr(noisy[2][y0:y1, x0:x1], clean[2][y0:y1, x0:x1])
        after = _psnr(fused.patch, clean[2][y0:y1, x0:x1])
        assert after > before + 3.0, (face, before, after)  # five frames: at most 7 dB
        assert fused.neighbours == 4 and fused.accepted > 0.6 and 3.0 < fused.weight_sum <= 5.0
        assert fused.noise_after < 0.7 * fused.noise_before


def test_without_neighbours_or_strength_the_face_is_the_frames_own(photo) -> None:  # type: ignore[no-untyped-def]
    _, noisy, points = _clip(photo, SWAY)
    alone = fuse_face(FaceView(noisy[2], points[2][0]), [])
    x0, y0, x1, y1 = alone.box
    assert np.array_equal(alone.patch, noisy[2][y0:y1, x0:x1]) and alone.weight_sum == 1.0
    off = _fuse(noisy, points, 0, strength=0.0)
    assert np.array_equal(off.patch, noisy[2][y0:y1, x0:x1])
    half, full = _fuse(noisy, points, 0, strength=0.5), _fuse(noisy, points, 0)
    own = noisy[2][y0:y1, x0:x1].astype(np.float64)
    midway = 0.5 * (own + full.patch.astype(np.float64))
    assert np.abs(half.patch - midway).max() <= 1.0  # the blend, rounded once


def _square(k: int, frame: np.ndarray, at: tuple[int, int], step: int) -> None:
    x, y = at[0] + step * (k - 2), at[1]
    frame[y : y + 14, x : x + 14] = (250, 250, 250)
    frame[y + 4 : y + 10, x + 4 : x + 10] = (10, 10, 10)


def test_a_square_moving_across_the_face_leaves_no_ghost(photo) -> None:  # type: ignore[no-untyped-def]
    """A square with a known shape moves 9 px a frame across a still face: where it was in the neighbours and is
    not in frame t, and where it is in frame t, the fused face is the clean picture's within the noise left."""
    centre = photo[1][0].mean(axis=0).astype(int)
    at = (int(centre[0]) - 7, int(centre[1]) - 7)
    clean, noisy, points = _clip(photo, [(0.0, 0.0)] * 5, lambda k, f: _square(k, f, at, 9))
    fused = _fuse(noisy, points, 0)
    x0, y0, x1, y1 = fused.box
    error = fused.patch.astype(np.float64) - clean[2][y0:y1, x0:x1]
    own = noisy[2][y0:y1, x0:x1].astype(np.float64) - clean[2][y0:y1, x0:x1]
    for k in (0, 1, 3, 4, 2):  # the square's places in the neighbours (ghosts), then its own
        sx, sy = at[0] + 9 * (k - 2) - x0, at[1] - y0
        place = (slice(max(sy, 0), sy + 14), slice(max(sx, 0), sx + 14))
        # a ghost would pull the mean by tens of levels; where nothing agrees, frame t's own noise stays
        limit = 5.0 if k != 2 else np.abs(own[place]).mean() + 0.5
        assert np.abs(error[place].mean()) < 2.0 and np.abs(error[place]).mean() < limit, (k, error[place].mean())
    assert _psnr(fused.patch, clean[2][y0:y1, x0:x1]) > _psnr(noisy[2][y0:y1, x0:x1], clean[2][y0:y1, x0:x1]) + 2.0


def test_an_occluder_crossing_the_face_stays_out_of_frame_t(photo) -> None:  # type: ignore[no-untyped-def]
    """A dark bar passes over the face in every neighbour and has left it in frame t."""
    top = int(photo[1][1][:, 1].min()) - 10

    def bar(k: int, frame: np.ndarray) -> None:
        if k != 2:
            frame[top + 12 * k : top + 12 * k + 16, :] = (30, 25, 20)

    clean, noisy, points = _clip(photo, SWAY, bar)
    fused = _fuse(noisy, points, 1)
    x0, y0, x1, y1 = fused.box
    error = fused.patch.astype(np.float64) - clean[2][y0:y1, x0:x1]
    for k in (0, 1, 3, 4):
        rows = slice(max(top + 12 * k - y0, 0), max(top + 12 * k + 16 - y0, 0))
        if error[rows].size:
            assert error[rows].mean() > -2.0 and np.abs(error[rows]).mean() < 5.0, (k, error[rows].mean())


def test_a_cut_inside_the_window_brings_nothing_of_the_other_shot(photo) -> None:  # type: ignore[no-untyped-def]
    """After a cut the detector missed, the same track's landmarks sit on another face (another of t1.jpg's, moved
    onto this one's place, its five points laid out much as this one's): frame t must come out as its own face
    and the same shot's, with nothing of the other."""
    image, landmarks = photo
    _, noisy, points = _clip(photo, SWAY)
    offset = landmarks[2].mean(axis=0) - landmarks[0].mean(axis=0)
    for k in (3, 4):  # the second shot: face 0 where face 2 was
        shifted = _moved(image, (offset[0] + SWAY[k][0], offset[1] + SWAY[k][1]))
        noisy[k] = _noisy(shifted, seed=300 + k)
        points[k] = points[k].copy()
        points[k][2] = landmarks[0] + offset + np.asarray(SWAY[k])
    fused = _fuse(noisy, points, 2)
    first_shot = _fuse(noisy[:3], points[:3], 2)  # frames 0..2: the same shot's two neighbours alone
    assert fused.neighbours == 2  # the two past the cut are not used
    assert np.array_equal(fused.patch, first_shot.patch)


def test_16_bit_frames_keep_their_depth_and_scale(photo) -> None:  # type: ignore[no-untyped-def]
    _, noisy, points = _clip(photo, SWAY)
    deep = [(frame.astype(np.uint16) * 257) for frame in noisy]
    fused8, fused16 = _fuse(noisy, points, 2), _fuse(deep, points, 2)
    assert fused16.patch.dtype == np.uint16
    assert np.abs(fused16.patch / 257.0 - fused8.patch).mean() < 0.5
    assert abs(fused16.noise_before / 257.0 - fused8.noise_before) < 0.05


def test_the_region_stays_inside_the_frame_and_the_tally_sums_per_track(photo) -> None:  # type: ignore[no-untyped-def]
    _, landmarks = photo
    x0, y0, x1, y1 = fusion_region(landmarks[0] - 200, (SIZE[1], SIZE[0], 3))
    assert 0 <= x0 <= x1 <= SIZE[0] and 0 <= y0 <= y1 <= SIZE[1]
    _, noisy, points = _clip(photo, SWAY)
    tally = FusionTally(2, 1.0)
    for face in (0, 0, 1):
        tally.add(face, _fuse(noisy, points, face))
    summary = tally.summary()
    assert summary.faces == 3 and [t.faces for t in summary.tracks] == [2, 1]
    assert summary.noise_after is not None and summary.noise_after < summary.noise_before


class _ScriptedFaces:
    """Stands in for ``FaceStage``: releases each frame ``delay`` frames late with one face on the given landmarks."""

    pool = None

    def __init__(self, landmarks: np.ndarray, delay: int = 3) -> None:
        self.landmarks, self.delay, self.waiting = landmarks, delay, []

    def push(self, index, image, time, counted):  # type: ignore[no-untyped-def]
        from gpen_video.faces.types import FrameFaces, TrackedFace

        self.waiting.append(FrameFaces(index, [TrackedFace(7, self.landmarks.astype(np.float32), np.zeros(4), 1.0)]))
        out, self.waiting = self.waiting[: -self.delay], self.waiting[-self.delay :]
        return out

    def flush(self):  # type: ignore[no-untyped-def]
        out, self.waiting = self.waiting, []
        return out

    def close(self) -> None:
        pass


def test_the_stage_holds_at_most_the_window_and_gives_every_frame_in_order(photo) -> None:  # type: ignore[no-untyped-def]
    """The faces stage keeps at most ``2 R + 1`` frames for fusion, however long the clip: memory stays flat."""
    from fractions import Fraction

    import av

    from gpen_video.config import load_config
    from gpen_video.io.reader import Frame
    from gpen_video.models.loader import load_restorer
    from gpen_video.run.faces_stage import AlignStage
    from gpen_video.run.frame_path import HostPath
    from gpen_video.run.records import Decoded

    image, landmarks = photo
    config = load_config("default", {"restore.model": "identity", "fusion.frames": 2})
    stage = AlignStage(config, HostPath(load_restorer(config.restore)), 64)
    stage.stage = _ScriptedFaces(landmarks[0])  # type: ignore[assignment]
    source = av.VideoFrame(16, 16, "yuv420p")
    out, held = [], []
    for index in range(30):
        frame = Frame(index, index, Fraction(1, 24), source)
        out.extend(stage.process(Decoded(frame, _noisy(image, seed=index))))
        held.append(len(stage.window))
    out.extend(stage.finish())
    assert [a.frame.index for a in out] == list(range(30))
    # between frames: the R before the next frame to align, and the R after it that came in (it is the 2R + 1st)
    assert max(held) == 2 * 2 and stage.fusion_summary().faces == 30
    assert all(a.faces is not None and a.faces.for_restorer.shape == (1, 64, 64, 3) for a in out)
    first, middle = stage.fusion.summary().tracks[0], out[15].faces
    assert first.id == 7 and first.weight_sum > 2.0 and middle is not None
    assert not np.array_equal(middle.for_restorer, middle.source)  # the restorer's crop is the fused one


def test_the_torch_merge_is_the_numpy_merge_within_a_level(photo) -> None:  # type: ignore[no-untyped-def]
    """The device path's fusion (``grid_sample`` resampling and the merge in torch), on CPU tensors, against the
    NumPy/OpenCV one on the same registrations: 8-bit and 16-bit, a moving face and an occluded one."""
    import torch

    from gpen_video.align.torch_fusion import fuse_face_torch

    _, noisy, points = _clip(photo, SWAY)
    deep = [frame.astype(np.uint16) * 257 for frame in noisy]
    for frames, face, level in ((noisy, 0, 1.0), (noisy, 3, 1.0), (deep, 1, 257.0)):
        reference = FaceView(frames[2], points[2][face])
        neighbours = [FaceView(frames[k], points[k][face]) for k in (0, 1, 3, 4)]
        host, device = (
            fuse_face(reference, neighbours),
            fuse_face_torch(reference, neighbours, 1.0, torch.device("cpu")),
        )
        assert host.box == device.box and host.neighbours == device.neighbours == 4
        difference = np.abs(host.patch.astype(np.float64) - device.patch) / level
        # the samples agree to a level (OpenCV reads its maps at 1/32 px); the rest is float rounding
        assert difference.max() <= 1.0 + 1e-9 and difference.mean() < 0.02, (face, difference.max(), difference.mean())
        assert abs(host.accepted - device.accepted) < 0.01 and abs(host.weight_sum - device.weight_sum) < 0.01
