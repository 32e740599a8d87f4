"""The identity guard (issue 21): a restored face that is another person is named (``warn``) or left as the source
(``protect``).

The clip is a pan over three of insightface's t1.jpg faces, made by the ffmpeg CLI (lossless FFV1, so the source
samples are known exactly). The restorer returns each crop unchanged except where it shows face A, where it pastes
another t1.jpg person's face aligned to the same template: the truth is which face was swapped, where it is in each
frame (the photo's landmarks carried by the known pan), and the source's samples. The recogniser is the real one.
"""

from __future__ import annotations

import itertools
import json
import subprocess
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
from conformance_cases import ffmpeg_exe
from faces_helpers import photo_landmarks

from gpen_video import cli
from gpen_video.align.compose import AlignedBatch, compose
from gpen_video.align.torch_compose import compose_torch
from gpen_video.config import ComposeConfig, IdentityConfig, load_config
from gpen_video.faces.geometry import face_to_crop, invert_affine
from gpen_video.faces.recognizers.base import Recognizer
from gpen_video.io.reader import Frame
from gpen_video.models.registry import resolve_template
from gpen_video.restore.restorer import IdentityRestorer, Restorer
from gpen_video.run.frame_path import DevicePath, FaceCrops, HostPath
from gpen_video.run.guard_stage import GuardStage
from gpen_video.run.identity import RecognizerSource
from gpen_video.run.records import Aligned, Restored
from gpen_video.run.report import RunReport
from gpen_video.run.restore import restore_job, run_restore
from gpen_video.synthetic import faces_image, faces_image_path

FRAMES = 12
TOP, STEP = 80, 2  # frame n shows the photo from (STEP * n, TOP)
FACE_A, FACE_B = 2, 5  # photo faces by x (0 leftmost): A is in the clip, B (another person) is pasted over it
SIZE = 256  # the test restorer's crop side
TEMPLATE = resolve_template("auto", load_config("default").restore.model)
RATE = Fraction(25)  # the clip's frames a second


def _clip(folder: Path) -> Path:
    """12 frames of 640x480 FFV1 over photo faces 0, 1 and 2, panning 2 px a frame."""
    path = folder / "three.mkv"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-loop", "1", "-framerate", str(RATE), "-i", str(faces_image_path()),
                    "-vf", f"crop=640:480:n*{STEP}:{TOP},format=yuv420p", "-frames:v", str(FRAMES), "-c:v", "ffv1",
                    str(path)], check=True)  # fmt: skip
    return path


def _photo_crop(face: int) -> np.ndarray:
    return cv2.warpAffine(faces_image(), face_to_crop(photo_landmarks()[face], SIZE, TEMPLATE), (SIZE, SIZE),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)  # fmt: skip


class SwapRestorer(Restorer):
    """Each crop as it came (``soften``: blurred, as a restorer changes a face without changing who it is), except
    face A's: face B's crop from the photo, on the same template."""

    name = "swap A for B"
    size = SIZE

    def __init__(self, soften: float = 0.0) -> None:
        self.references = np.stack([self._small(_photo_crop(k)) for k in range(len(photo_landmarks()))])
        self.face_b = _photo_crop(FACE_B)
        self.soften = soften

    @staticmethod
    def _small(crop: np.ndarray) -> np.ndarray:
        return cv2.resize(crop, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)

    def restore(self, batch: np.ndarray) -> np.ndarray:
        out = batch.copy()
        for k, crop in enumerate(batch):
            if not crop.any():  # the batcher's padding
                continue
            nearest = int(np.argmin(np.abs(self.references - self._small(crop)).mean(axis=(1, 2, 3))))
            if nearest == FACE_A:
                out[k] = self.face_b
            elif self.soften:
                out[k] = cv2.GaussianBlur(crop, (0, 0), self.soften)
        return out


def _frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]


def _run(
    clip: Path,
    out: Path,
    soften: float = 0.0,
    threaded: bool = True,
    batch: int = 0,
    ranges: dict[str, object] | None = None,
    **identity: object,
) -> tuple[RunReport, list[np.ndarray]]:
    overrides = {f"identity.{k}": v for k, v in identity.items()} | (ranges or {})
    config = load_config("default", {"output.video_codec": "ffv1", "restore.batch_size": batch, **overrides})
    job = replace(restore_job(clip, out, config), restorer=SwapRestorer(soften))
    report = run_restore(job, threaded=threaded)
    return report, _frames(out)


def _track_of(report: RunReport, face: int) -> int:
    """The track whose best-seen box is on photo face ``face`` (the pan carried back)."""
    centres = photo_landmarks().mean(axis=1)
    for track in report.tracks:
        x0, y0, x1, y1 = track.sample_box
        at = np.array([(x0 + x1) / 2 + STEP * track.sample_frame, (y0 + y1) / 2 + TOP])
        if int(np.argmin(np.linalg.norm(centres - at, axis=1))) == face:
            return track.id
    raise AssertionError(f"no track on photo face {face}")


def _regions(face: int, n: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Frame n's boxes around photo face ``face``: the face itself (its landmarks' box grown by 60 % each side: inside
    its paste mask, clear of the other faces'), and its whole crop (beyond which its paste cannot reach)."""
    landmarks = photo_landmarks()[face] - (STEP * n, TOP)
    low, high = landmarks.min(0), landmarks.max(0)
    grow = 0.6 * (high - low)
    corners = np.array([[0, 0, 1], [SIZE, 0, 1], [0, SIZE, 1], [SIZE, SIZE, 1]], np.float64)
    points = corners @ invert_affine(face_to_crop(landmarks, SIZE, TEMPLATE)).T
    return _box(low - grow, high + grow), _box(points.min(0) - 2, points.max(0) + 2)


def _box(low: np.ndarray, high: np.ndarray, shape: tuple[int, int] = (480, 640)) -> tuple[slice, slice]:
    (x0, y0), (x1, y1) = np.floor(low).astype(int), np.ceil(high).astype(int)
    return slice(max(y0, 0), min(y1, shape[0])), slice(max(x0, 0), min(x1, shape[1]))


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _clip(tmp_path_factory.mktemp("guard"))


@pytest.fixture(scope="module")
def plain(clip: Path) -> tuple[RunReport, list[np.ndarray]]:
    """The guard off: the run as before the guard."""
    return _run(clip, clip.parent / "off.mkv", guard="off")


def _a_frames(report: RunReport) -> tuple[int, list[list[int]]]:
    """Face A's track, and its frames as one range (the swap is on every one of them)."""
    track = _track_of(report, FACE_A)
    summary = next(t for t in report.tracks if t.id == track)
    assert summary.frames == summary.last_frame - summary.first_frame + 1
    return track, [[summary.first_frame, summary.last_frame]]


def test_warn_names_the_swapped_track_alone_and_changes_no_picture(clip, plain, tmp_path, monkeypatch, capsys):
    """Through the command line with ``-q`` and the default sampling: the report's section and the one stderr line
    name face A's track and its frames, no other; the pictures are the plain run's."""
    monkeypatch.setattr("gpen_video.run.run.load_restorer", lambda config: SwapRestorer())
    out, report_path = tmp_path / "warn.mkv", tmp_path / "warn.json"
    argv = ["restore", str(clip), "-o", str(out), "--video-codec", "ffv1", "--identity-guard", "warn", "-q"]
    assert cli.main([*argv, "--report", str(report_path)]) == 0
    said = [line for line in capsys.readouterr().err.splitlines() if "identity guard" in line]
    track, frames = _a_frames(plain[0])
    others = [t.id for t in plain[0].tracks if t.id != track]
    assert len(said) == 1 and f"track {track} frames {frames[0][0]}-{frames[0][1]}" in said[0], said
    assert not any(f"track {other} " in said[0] for other in others), said
    identity = json.loads(report_path.read_text())["identity"]
    assert identity["guard"] == "warn" and identity["tracks_over"] == [track]
    assert identity["threshold"] > 0 and identity["recognizer"]
    by_id = {t["id"]: t for t in identity["tracks"]}
    assert by_id[track]["over"] == frames and by_id[track]["median"] > identity["threshold"]
    assert all(by_id[other]["over"] == [] and by_id[other]["worst"] < identity["threshold"] / 2 for other in others)
    every = load_config("default").identity.every
    assert identity["every"] == every and identity["faces_checked"] == 3 * len(range(0, FRAMES, every))
    pictures = _frames(out)
    assert all(np.array_equal(a, b) for a, b in zip(pictures, plain[1], strict=True))


@pytest.fixture(scope="module")
def protected(clip: Path) -> tuple[RunReport, list[np.ndarray]]:
    """``protect`` measuring every face."""
    return _run(clip, clip.parent / "protect.mkv", guard="protect", every=1)


def test_protect_keeps_the_source_face_and_leaves_the_others_as_the_plain_run(clip, plain, protected) -> None:
    report, pictures = protected
    source = _frames(clip)
    track, frames = _a_frames(plain[0])
    assert report.identity is not None and [t.id for t in report.identity.tracks_over] == [track]
    assert report.identity.faces_source_kept == frames[0][1] - frames[0][0] + 1
    assert sum("kept the source face" in w and f"track {track} " in w for w in report.warnings) == 1
    for n, (out, off, src) in enumerate(zip(pictures, plain[1], source, strict=True)):
        face, crop = _regions(FACE_A, n)
        assert np.abs(off[face].astype(int) - src[face]).mean() > 10  # the swap is there unguarded
        assert np.abs(out[face].astype(int) - src[face]).max() <= 1, n  # and gone
        outside = np.ones(out.shape[:2], bool)
        outside[crop] = False
        assert np.array_equal(out[outside], off[outside]), n  # the other faces as the plain run pastes them


def test_protect_gives_the_same_pictures_one_stage_after_another_and_one_face_a_batch(clip, protected, tmp_path):
    """Same input, same pictures: no threads and a batch of one face change neither a sample nor the report's
    section."""
    report, pictures = _run(clip, tmp_path / "again.mkv", threaded=False, batch=1, guard="protect", every=1)
    assert all(np.array_equal(a, b) for a, b in zip(pictures, protected[1], strict=True))
    assert report.identity == protected[0].identity


def test_a_ranged_run_under_protect_keeps_the_whole_runs_pictures(clip, tmp_path) -> None:
    """A range of frames 6-9 under protect, one frame in 5 measured: none of its own frames is sampled (5 and 10
    are), so only the frames restored and measured around it, unwritten, keep face A's swap out; its pictures are
    the whole run's, and its report counts none of them."""
    options = {"guard": "protect", "every": 5, "ramp": 1}
    whole_report, whole = _run(clip, tmp_path / "whole.mkv", **options)
    assert whole_report.identity is not None and whole_report.identity.faces_source_kept > 0
    first, count = 6, 4
    ranged = {"start": first / RATE, "duration": (count - 0.5) / RATE}
    report, pictures = _run(clip, tmp_path / "ranged.mkv", ranges=ranged, **options)
    assert len(pictures) == count
    assert all(np.array_equal(a, b) for a, b in zip(pictures, whole[first : first + count], strict=True))
    assert report.identity is not None and report.identity.faces_checked == 0
    assert report.identity.faces_source_kept == count  # face A's, kept on every written frame
    assert report.faces is not None and report.faces.faces_restored == 3 * count  # the context's are not counted
    assert report.faces.frames_with_faces == count


def test_worker_processes_give_the_same_pictures_and_report(clip, protected, tmp_path) -> None:
    """The embeddings in two worker processes (``identity.processes``: dlib holds Python's lock) instead of the
    guard's thread: the same factors, so the same pictures, and the same report section."""
    report, pictures = _run(clip, tmp_path / "processes.mkv", guard="protect", every=1, processes=2)
    assert all(np.array_equal(a, b) for a, b in zip(pictures, protected[1], strict=True))
    assert report.identity == protected[0].identity and report.identity.faces_source_kept > 0


def test_sampled_guard_flags_the_same_track_and_frames(clip, plain, protected, tmp_path) -> None:
    """The faces of one frame in 5 measured, the others' faces blurred (the recogniser measures them too): the same
    track, and (the faces between a distant sample and its neighbours counting as distant) the same frames as every
    face measured; the blurred faces stay their own people."""
    report, _ = _run(clip, tmp_path / "sampled.mkv", soften=1.5, guard="warn", every=5)
    track, frames = _a_frames(plain[0])
    identity, every_face = report.identity, protected[0].identity
    assert identity is not None and identity.faces_checked == 3 * len(range(0, FRAMES, 5))
    assert every_face is not None and every_face.every == 1 and every_face.faces_checked == 3 * FRAMES
    found = [(t.id, [list(r) for r in t.over]) for t in identity.tracks_over]
    assert found == [(t.id, [list(r) for r in t.over]) for t in every_face.tracks_over] == [(track, frames)]
    assert identity.threshold is not None and identity.recognizer == "dlib"
    others = [t for t in identity.tracks if t.id != track]
    assert len(others) == 2 and all(0.0 < t.worst < identity.threshold for t in others), others


# ---------------------------------------------------------------------------------------------------
# The stage's mechanics, with a recogniser that only tells a changed crop from an unchanged one


class _Brightness(Recognizer):
    """Embeds a crop as its mean level: a restored crop brighter by 50 levels is 5 away, over 0.6."""

    name = "brightness"
    threshold = 0.6

    def embed(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        return np.full((len(landmarks), 1), image.mean() / 10.0, np.float32)

    def distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.abs(a[:, None, 0] - b[None, :, 0])


TRACKS = (7, 8)


def _records(frames: int, distant: dict[int, set[int]], written: range | None = None) -> list[Restored]:
    """Frames of two faces (tracks 7 and 8) whose restored crop is changed in the frames ``distant`` names; those
    outside ``written`` (None: all are) are a range's context, restored and not written."""
    records = []
    for n in range(frames):
        source = np.full((2, 16, 16, 3), 100, np.uint8)
        restored = source.copy()
        for k, track in enumerate(TRACKS):
            if n in distant.get(track, ()):
                restored[k] += 50
        faces = FaceCrops(source, source, np.zeros((2, 2, 3)), source[0], None, TRACKS)
        frame = Frame(n, n, 1 / RATE, None)  # type: ignore[arg-type] - the stage never reads the samples
        records.append(Restored(Aligned(frame, written is None or n in written, source[0], faces), restored))
    return records


def _guard(mode: str = "protect", every: int = 1, ramp: int = 4) -> GuardStage:
    config = IdentityConfig(guard=mode, every=every, ramp=ramp)  # type: ignore[arg-type]
    return GuardStage(config, HostPath(IdentityRestorer(16)), RecognizerSource(config, _Brightness), TEMPLATE, RATE)


def _factors(out: list[Restored]) -> dict[int, list[float]]:
    """Each track's blend factor frame by frame (1 where the record carries none)."""
    return {track: [1.0 if r.blend is None else r.blend[k] for r in out] for k, track in enumerate(TRACKS)}


def _one_at_a_time(guard: GuardStage, records: list[Restored]) -> list[Restored]:
    out: list[Restored] = []
    for record in records:
        out += guard.process(record)
        out += guard.idle()
    return out + list(guard.finish())


def _in_bursts(guard: GuardStage, records: list[Restored], sizes: tuple[int, ...]) -> list[Restored]:
    """Records in bursts of the given sizes (in turn), the inbox idle only between bursts."""
    out: list[Restored] = []
    start, k = 0, 0
    while start < len(records):
        for record in records[start : start + sizes[k % len(sizes)]]:
            out += guard.process(record)
        out += guard.idle()
        start, k = start + sizes[k % len(sizes)], k + 1
    return out + list(guard.finish())


def test_the_ramp_falls_to_zero_on_the_distant_frames_and_rises_monotonically_each_side() -> None:
    ramp = 4
    records = _records(30, {7: {10, 11, 12}})
    out = _one_at_a_time(_guard(ramp=ramp), records)
    assert [r.aligned.frame.index for r in out] == list(range(30)) and all(a is b.aligned for a, b in zip(
        [r.aligned for r in records], out, strict=True))  # fmt: skip
    factors = _factors(out)
    assert factors[8] == [1.0] * 30  # the other face is left alone
    seven = factors[7]
    assert seven[10:13] == [0.0, 0.0, 0.0]
    before, after = seven[10 - ramp - 1 : 10][::-1], seven[13 : 13 + ramp + 1]  # moving away from the distant frames
    for side in (before, after):
        assert side[0] > 0.0 and all(a < b for a, b in itertools.pairwise(side)) and side[-1] == 1.0, side
    assert before == after  # the same ramp down and up
    assert seven[: 10 - ramp - 1] == [1.0] * (10 - ramp - 1) and seven[13 + ramp + 1 :] == [1.0] * (30 - 18)
    for sizes in ((1,), (3,), (7, 1, 5), (30,)):
        assert _factors(_in_bursts(_guard(ramp=ramp), _records(30, {7: {10, 11, 12}}), sizes)) == factors, sizes
    guard = _guard(ramp=ramp)
    _one_at_a_time(guard, records)
    assert guard.summary().faces_source_kept == 3 and guard.summary().faces_protected == 3 + 2 * ramp


def test_a_distant_sample_makes_the_faces_to_its_neighbouring_samples_distant() -> None:
    """One face in 3 measured: 9 is near, 12 is distant (the crops differ on 10-12 only): 10-14 count as distant
    (those between 12 and its neighbouring samples, 9 and 15), and the blend is 0 there."""
    guard = _guard(every=3, ramp=2)
    factors = _factors(_one_at_a_time(guard, _records(24, {7: {10, 11, 12}})))
    assert [n for n, f in enumerate(factors[7]) if f == 0.0] == [10, 11, 12, 13, 14]
    assert [n for n, f in enumerate(factors[7]) if f < 1.0] == list(range(8, 17))
    seven = next(t for t in guard.summary().tracks if t.id == 7)
    assert seven.over == ((10, 14),) and seven.checked == 8


def test_a_range_with_its_context_gets_the_whole_runs_factors() -> None:
    """Same input, same pictures: a range (a preview, a batch segment) whose frames ``identity.reach`` either side
    come in restored but unwritten gives its frames the whole run's factors, though the distant samples that lower
    them (16 before it, 32 after it) are outside it. Frames are sampled by their number in the source, not by their
    place in the run; the report counts the written frames alone."""
    every, ramp = 4, 3
    config = IdentityConfig(guard="protect", every=every, ramp=ramp)
    distant = {7: {15, 16}, 8: {31, 32}}
    whole = _factors(_one_at_a_time(_guard(every=every, ramp=ramp), _records(40, distant)))
    written = range(20, 28)
    context = range(written.start - config.reach, written.stop + config.reach)
    guard = _guard(every=every, ramp=ramp)
    records = _records(40, distant, written)[context.start : context.stop]
    out = [r for r in _one_at_a_time(guard, records) if r.aligned.emit]
    assert [r.aligned.frame.index for r in out] == list(written)
    ranged = _factors(out)
    for track in TRACKS:
        assert ranged[track] == whole[track][written.start : written.stop], track
    assert min(ranged[7]) < 1.0 and min(ranged[8]) < 1.0  # lowered from outside the range on both sides
    assert guard.summary().faces_checked == 2 * len(range(20, 28, every))  # 20 and 24: written frames alone
    lone = _guard(every=every, ramp=ramp)  # the range without its context: nothing tells it
    assert _factors(_one_at_a_time(lone, _records(40, distant)[written.start : written.stop])) == {
        7: [1.0] * 8,
        8: [1.0] * 8,
    }


def test_guard_off_passes_every_record_through_as_it_came() -> None:
    records = _records(12, {7: {3, 4}})
    for guard in (_guard(mode="off"), GuardStage(IdentityConfig(guard="warn"), HostPath(IdentityRestorer(16)), None,
                                                 TEMPLATE, RATE)):  # fmt: skip
        out = _one_at_a_time(guard, records)
        assert len(out) == len(records) and all(a is b for a, b in zip(out, records, strict=True))
        assert guard.summary().guard == "off" and guard.summary().faces_checked == 0
    warned = _guard(mode="warn")
    out = _one_at_a_time(warned, records)
    assert all(a is b for a, b in zip(out, records, strict=True)) and warned.summary().faces_over == 2


def test_a_restored_crop_equal_to_its_source_needs_no_recogniser() -> None:
    """A dry run's crops come back unchanged: distance 0, and the recogniser (a second to load) is never made."""

    def never() -> Recognizer:
        raise AssertionError("the recogniser was made")

    config = IdentityConfig(guard="protect", every=1)
    guard = GuardStage(config, HostPath(IdentityRestorer(16)), RecognizerSource(config, never), TEMPLATE, RATE)
    out = _one_at_a_time(guard, _records(6, {}))
    summary = guard.summary()
    assert all(r.blend is None for r in out) and summary.faces_checked == 12 and summary.faces_over == 0
    assert "not loaded" in str(summary.recognizer) and all(t.worst == 0.0 for t in summary.tracks)


# ---------------------------------------------------------------------------------------------------
# Compose: the guard's factor on each face's blend, on both frame paths


@pytest.fixture(scope="module")
def photo_faces() -> tuple[np.ndarray, AlignedBatch, np.ndarray]:
    """The photo, its six faces cut on the template, and 'restored' crops far from them (inverted)."""
    image = faces_image()
    affines = np.stack([face_to_crop(lm, SIZE, TEMPLATE) for lm in photo_landmarks()])
    crops = np.stack([cv2.warpAffine(image, a, (SIZE, SIZE), flags=cv2.INTER_LINEAR) for a in affines])
    return image, AlignedBatch(crops, affines, tuple(image.shape[:2])), 255 - crops


def _on_torch(image, batch, restored, config, factors):  # type: ignore[no-untyped-def]
    out, mask, _ = compose_torch(torch.from_numpy(image), torch.from_numpy(restored), batch.affines, config,
                              crops=torch.from_numpy(batch.crops), factors=factors)  # fmt: skip
    return out.numpy(), mask.numpy()


def _host(image, batch, restored, config, factors):  # type: ignore[no-untyped-def]
    result = compose(image, restored, batch, config, factors=factors)
    return result.image, result.mask


@pytest.mark.parametrize("paste", [_host, _on_torch], ids=["host", "device-twin"])
def test_a_factor_of_one_changes_no_bit_and_zero_leaves_the_source(photo_faces, paste) -> None:  # type: ignore[no-untyped-def]
    image, batch, restored = photo_faces
    config = ComposeConfig()
    plain, plain_mask = paste(image, batch, restored, config, None)
    ones, ones_mask = paste(image, batch, restored, config, (1.0,) * 6)
    assert np.array_equal(ones, plain) and np.array_equal(ones_mask, plain_mask)
    kept, kept_mask = paste(image, batch, restored, config, (1.0, 1.0, 0.0, 1.0, 1.0, 1.0))
    half, half_mask = paste(image, batch, restored, config, (1.0, 1.0, 0.5, 1.0, 1.0, 1.0))
    face, crop = _regions_in_photo(FACE_A)
    assert np.abs(plain[face].astype(int) - image[face]).mean() > 20  # the inverted face is pasted ...
    assert np.array_equal(kept[face], image[face]) and not kept_mask[face].any()  # ... and at 0, not at all
    outside = np.ones(image.shape[:2], bool)
    outside[crop] = False
    assert np.array_equal(kept[outside], plain[outside]) and np.array_equal(half[outside], plain[outside])
    assert np.allclose(half_mask[face], plain_mask[face] * 0.5, atol=1e-6)


def _regions_in_photo(face: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """``_regions`` on the photo itself."""
    landmarks = photo_landmarks()[face]
    low, high = landmarks.min(0), landmarks.max(0)
    grow = 0.6 * (high - low)
    corners = np.array([[0, 0, 1], [SIZE, 0, 1], [0, SIZE, 1], [SIZE, SIZE, 1]], np.float64)
    points = corners @ invert_affine(face_to_crop(landmarks, SIZE, TEMPLATE)).T
    return _box(low - grow, high + grow, (886, 1280)), _box(points.min(0) - 2, points.max(0) + 2, (886, 1280))


def test_the_device_path_brings_the_same_thumbnails_to_the_host(photo_faces) -> None:  # type: ignore[no-untyped-def]
    """What the recogniser sees: the device twin shrinks the crops as OpenCV's area resize does, within a level."""
    _, batch, _ = photo_faces
    big = np.stack([cv2.resize(c, (1024, 1024), interpolation=cv2.INTER_CUBIC) for c in batch.crops[:3]])
    host = HostPath(IdentityRestorer(1024)).thumbnails(big, [0, 2], 256, (None,))
    device = DevicePath(IdentityRestorer(1024)).thumbnails(torch.from_numpy(big), [0, 2], 256, (None,))
    assert host.shape == device.shape == (2, 256, 256, 3) and host.dtype == device.dtype == np.uint8
    assert np.abs(host.astype(int) - device).max() <= 1
    deep = HostPath(IdentityRestorer(1024)).thumbnails(big.astype(np.uint16) * 257, [1], 256, (None,))
    assert np.array_equal(deep[0], cv2.resize(big[1], (256, 256), interpolation=cv2.INTER_AREA))


# ---------------------------------------------------------------------------------------------------
# Without a recogniser; the plan; the device budget


def _no_recogniser(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gpen_video.run.identity.recognizer_class", lambda name: None)

    def never(config: object) -> Restorer:
        raise AssertionError("the restorer was loaded")

    monkeypatch.setattr("gpen_video.run.run.load_restorer", never)


def test_protect_without_a_recogniser_stops_before_any_work(clip, tmp_path, monkeypatch, capsys) -> None:
    _no_recogniser(monkeypatch)
    out = tmp_path / "never.mkv"
    assert cli.main(["restore", str(clip), "-o", str(out), "--identity-guard", "protect"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "gpen-video[identity]" in err[0] and "protect" in err[0], err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_warn_without_a_recogniser_says_so_once_and_goes_on(clip, tmp_path, monkeypatch, capsys) -> None:
    _no_recogniser(monkeypatch)
    monkeypatch.setattr("gpen_video.run.run.load_restorer", lambda config: IdentityRestorer(64))
    out, report = tmp_path / "on.mkv", tmp_path / "on.json"
    assert cli.main(["restore", str(clip), "-o", str(out), "--report", str(report), "--duration", "0.2"]) == 0
    said = [line for line in capsys.readouterr().err.splitlines() if "identity guard" in line]
    assert len(said) == 1 and "off" in said[0] and "gpen-video[identity]" in said[0], said
    assert out.exists() and json.loads(report.read_text())["identity"] == {"guard": "off", **_OFF}


_OFF = {"recognizer": None, "threshold": None, "every": 1, "ramp": 0, "faces_checked": 0, "faces_over": 0,
        "faces_protected": 0, "faces_source_kept": 0, "tracks_over": [], "tracks": []}  # fmt: skip


def test_probe_plan_says_the_guard_in_force(clip, monkeypatch, capsys) -> None:
    assert cli.main(["probe", str(clip), "--plan"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "identity guard" in x)
    assert line.strip().startswith("identity guard: warn:") and "distances over 0.6" in line, line
    assert cli.main(["probe", str(clip), "--plan", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)["plan"]["identity"]
    assert plan["guard"] == plan["requested"] == "warn" and plan["threshold"] == 0.6 and plan["recognizer"]
    _no_recogniser(monkeypatch)
    assert cli.main(["probe", str(clip), "--plan", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)["plan"]["identity"]
    assert plan["guard"] == "off" and plan["requested"] == "warn" and "pip install" in plan["line"]


def test_protect_window_counts_against_the_device_budget() -> None:
    from types import SimpleNamespace

    from gpen_video.run.stages import FRAMES_IN_FLIGHT, device_holdings

    info = SimpleNamespace(video=SimpleNamespace(width=1920, height=1080, colour=SimpleNamespace(bit_depth=8)))
    per_face, held = device_holdings(info, 512, on_device=True)  # type: ignore[arg-type]
    frame = 1920 * 1080 * (3 + 4)
    assert (per_face, held) == (frame + 3 * 512 * 512 * 3, FRAMES_IN_FLIGHT * frame)
    window = _guard(every=3, ramp=8).window
    assert window == 10  # the ramp and the samples' spacing ahead of each frame
    assert device_holdings(info, 512, True, window) == (per_face, held + window * per_face)  # type: ignore[arg-type]


def test_a_gpu_run_bounded_by_the_guard_is_told_how_to_measure_less() -> None:
    from gpen_video.run.report import StageTimes, host_bound_hint

    hint = host_bound_hint(StageTimes({"guard": 4.0, "faces": 1.0, "restore": 2.0}), 100, "cuda:0")
    assert hint is not None and "guard is busy 40.0 ms a frame" in hint and "identity.every" in hint
