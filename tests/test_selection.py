"""Face selection (``faces.selection``): the faces a rule leaves out keep the source's samples bit for bit, the
others are restored, and the ``--tracks`` rows say which and why.

The clip is made by the ffmpeg CLI from insightface's t1.jpg (six people, face boxes 64–92 px tall at this size),
a slow pan, H.264 in; each output is FFV1, so its decoded planes are what the run wrote. Source and output planes
are compared inside each face's box as the ``--tracks`` rows give it.
"""

from __future__ import annotations

import json
import subprocess
from collections import defaultdict
from pathlib import Path

import av
import numpy as np
import pytest
from conformance_cases import ffmpeg_exe

from gpen_video.cli import main
from gpen_video.config import SelectionConfig, load_config
from gpen_video.errors import ConfigError
from gpen_video.faces.selection import FaceSelector, TrackList
from gpen_video.faces.types import TrackedFace, face_box
from gpen_video.jobs.inputs import discover
from gpen_video.preview import _captions, run_preview
from gpen_video.synthetic import faces_image_path

FFMPEG = ffmpeg_exe()
FRAMES = 24
LOSSLESS = ("--model", "identity", "--video-codec", "ffv1", "-q")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("selection") / "six.mkv"
    subprocess.run([FFMPEG, "-v", "error", "-loop", "1", "-framerate", "24", "-t", "1", "-i", str(faces_image_path()),
                    "-vf", "scale=720:-2,crop=640:264:'t*10':14,format=yuv420p", "-c:v", "libx264", "-crf", "12",
                    str(path)], check=True)  # fmt: skip
    return path


def _planes(path: Path) -> list[np.ndarray]:
    """Each decoded picture's luma plane."""
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="gray") for frame in container.decode(video=0)]


def _rows(path: Path) -> dict[int, list[dict]]:
    rows: dict[int, list[dict]] = defaultdict(list)
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        rows[row["frame"]].append(row)
    return rows


def _restore(clip: Path, name: str, *options: str) -> tuple[dict[int, list[dict]], list[np.ndarray], dict]:
    folder = clip.parent
    out = folder / f"{name}.mkv"
    code = main(["restore", str(clip), "-o", str(out), "--tracks", str(folder / f"{name}.jsonl"),
                 "--report", str(folder / f"{name}.json"), "--overwrite", *LOSSLESS, *options])  # fmt: skip
    assert code == 0
    return _rows(folder / f"{name}.jsonl"), _planes(out), json.loads((folder / f"{name}.json").read_text())


def _changed(source: np.ndarray, output: np.ndarray, box: list[float]) -> int:
    """Samples that differ inside the box (its inner two thirds: clear of a neighbour's feathered mask)."""
    x0, y0, x1, y1 = box
    mx, my = (x1 - x0) / 6, (y1 - y0) / 6
    sl = np.s_[int(y0 + my) : int(y1 - my), int(x0 + mx) : int(x1 - mx)]
    return int(np.count_nonzero(source[sl] != output[sl]))


@pytest.fixture(scope="module")
def plain(clip: Path) -> tuple[dict[int, list[dict]], list[np.ndarray], dict]:
    return _restore(clip, "plain")


def _check_pixels(clip: Path, rows: dict[int, list[dict]], planes: list[np.ndarray]) -> tuple[set[int], set[int]]:
    """(tracks restored, tracks left alone) over the clip; a face left alone is the source's, bit for bit, and a
    face restored changed."""
    source = _planes(clip)
    restored, alone = set(), set()
    for frame, faces in rows.items():
        for row in faces:
            changed = _changed(source[frame], planes[frame], row["box"])
            if row["restored"]:
                restored.add(row["track"])
                assert changed > 0, f"frame {frame}: track {row['track']} was to be restored but is the source's"
            else:
                alone.add(row["track"])
                assert changed == 0, f"frame {frame}: track {row['track']} left alone, yet {changed} samples changed"
    return restored, alone


def test_the_largest_face_alone_is_restored(clip: Path, plain) -> None:  # type: ignore[no-untyped-def]
    plain_rows = plain[0]
    assert len({row["track"] for faces in plain_rows.values() for row in faces}) >= 5
    assert all(row["restored"] for faces in plain_rows.values() for row in faces), "six people: all human"
    rows, planes, report = _restore(clip, "largest", "--faces", "largest")
    restored, alone = _check_pixels(clip, rows, planes)
    heights = {row["track"]: row["box"][3] - row["box"][1] for faces in plain_rows.values() for row in faces}
    assert restored == {max(heights, key=heights.__getitem__)}
    assert len(alone) >= 4 and all(row.get("skipped") in (None, "not_largest") for f in rows.values() for row in f)
    assert report["selection"]["faces_restored"] == len(rows) == FRAMES
    assert report["selection"]["faces_skipped"] == {"not_largest": sum(len(f) for f in rows.values()) - FRAMES}


def test_a_height_rule_and_a_track_list(clip: Path, plain, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plain_rows = plain[0]
    tallest: dict[int, float] = {}
    for faces in plain_rows.values():
        for row in faces:
            tallest[row["track"]] = max(tallest.get(row["track"], 0.0), row["box"][3] - row["box"][1])
    rows, planes, _ = _restore(clip, "tall", "--min-face-height", "72")
    restored, alone = _check_pixels(clip, rows, planes)
    assert restored == {t for t, h in tallest.items() if h >= 72} and alone == {t for t, h in tallest.items() if h < 72}
    assert restored and alone
    skip = sorted(tallest)[:2]
    listing = tmp_path / "skip.txt"
    listing.write_text(f"# from the preview\n-{skip[0]}\n-{skip[1]}  # a poster\n", encoding="utf-8")
    rows, planes, _ = _restore(clip, "listed", "--tracks-select", str(listing))
    restored, alone = _check_pixels(clip, rows, planes)
    assert alone == set(skip) and restored == set(tallest) - set(skip)


def test_a_track_list_file_is_checked(tmp_path: Path) -> None:
    good = tmp_path / "ids.txt"
    good.write_text("3, 5\n-7\n\n", encoding="utf-8")
    listed = TrackList.read(good)
    assert (listed.keep, listed.skip) == ({3, 5}, {7})
    assert [listed.reason(t) for t in (3, 4, 7)] == [None, "tracks_select", "tracks_select"]
    bad = tmp_path / "bad.txt"
    bad.write_text("3\nface-4\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.txt:2: 'face-4' is not a track id"):
        TrackList.read(bad)
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="lists no track id"):
        TrackList.read(empty)


def _face(track: int, height: float, x: float = 100.0) -> TrackedFace:
    """A frontal face whose box (``face_box``) is ``height`` px tall."""
    unit = np.array([[-0.5, 0.0], [0.5, 0.0], [0.0, 0.5], [-0.4, 1.0], [0.4, 1.0]])
    scale = height / 2.8  # face_box is 2.8 face scales tall; the face scale is eyes to mouth
    landmarks = (unit * scale + [x, 200.0]).astype(np.float32)
    return TrackedFace(track, landmarks, face_box(landmarks).astype(np.float32), 0.99)


def _verdicts(selector: FaceSelector, frames: list[list[TrackedFace]]) -> list[list[str | None]]:
    return [selector.choose(k, faces, np.zeros((8, 8, 3), np.uint8), True) for k, faces in enumerate(frames)]


def test_largest_holds_its_choice_until_clearly_outgrown() -> None:
    """Two faces of about a size do not trade the place frame by frame; a clearly larger one takes it."""
    selector = FaceSelector(SelectionConfig(faces="largest"))
    heights_b = [98, 103, 97, 104, 99, 160, 170, 180]
    frames = [[_face(1, 100), _face(2, b, 300)] for b in heights_b]
    verdicts = _verdicts(selector, frames)
    chosen = [
        [f.track_id for f, v in zip(faces, row, strict=True) if v is None]
        for faces, row in zip(frames, verdicts, strict=True)
    ]
    assert chosen[:5] == [[1]] * 5, "a face a few percent larger does not take the place"
    assert chosen[-1] == [2], "a face clearly larger (on average over its track) does"
    assert all(len(c) == 1 for c in chosen)


def test_a_size_decision_holds_for_the_track_and_starts_afresh_each_period() -> None:
    selector = FaceSelector(SelectionConfig(min_face_height=100))
    frames = [[_face(1, h)] for h in (90, 101, 95, 90)]
    assert [v[0] for v in _verdicts(selector, frames)] == ["min_face_height", None, None, None]
    selector.new_period()  # a selection period: judged again on what it has seen since
    assert [v[0] for v in _verdicts(selector, [[_face(1, 95)], [_face(1, 102)]])] == ["min_face_height", None]


def test_the_selection_is_in_the_plan_line() -> None:
    config = load_config("default", {"selection.faces": "2", "selection.min_face_height": "80"})
    assert config.selection.describe() == (
        "faces restored: the 2 face(s) of each frame; tracks whose face reaches 80 px; human faces only (where dlib "
        "is installed)"
    )
    off = load_config("default", {"selection.human_check": "off"})
    assert off.selection.describe() == "faces restored: all tracked faces"


def test_a_manifest_row_selects_faces_for_its_file(clip: Path, tmp_path: Path) -> None:
    """Per-file columns: the rule by its flag's name, a file named relative to the manifest (as its inputs are); the
    batch's output is the one a plain restore with the same flags writes."""
    folder = tmp_path / "reels"
    folder.mkdir()
    (folder / "six.mkv").write_bytes(clip.read_bytes())
    (folder / "skip.txt").write_text("-0\n", encoding="utf-8")
    manifest = folder / "jobs.csv"
    manifest.write_text("input,faces,tracks_select\nsix.mkv,largest,skip.txt\n", encoding="utf-8")
    (item,) = discover([manifest], tmp_path / "out")
    assert item.overrides == {"selection.faces": "largest", "selection.tracks_select": str(folder / "skip.txt")}
    code = main(["batch", str(manifest), "-o", str(tmp_path / "out"), *LOSSLESS])
    assert code == 0
    batch = _planes(next((tmp_path / "out").glob("six.*")))
    rows, planes, _ = _restore(clip, "largest-skip", "--faces", "largest", "--tracks-select", str(folder / "skip.txt"))
    assert all(np.array_equal(a, b) for a, b in zip(batch, planes, strict=True))
    assert not any(row["restored"] for row in rows[0] if row["track"] == 0)


def test_the_contact_sheet_names_each_track_and_its_verdict(clip: Path, tmp_path: Path) -> None:
    config = load_config("default", {"restore.model": "identity", "selection.faces": "largest"})
    result = run_preview(clip, config, compare="none", prefix=tmp_path / "pv")
    captions = _captions(result.report)
    assert len(captions) >= 5 and result.outputs.contact_sheet.is_file()
    verdicts = sorted(lines[1] for lines in captions.values())
    assert verdicts[-1] == "restored" and set(verdicts[:-1]) == {"left alone: not largest"}
    assert all(lines[0].startswith(f"track {t}  ") and lines[0].endswith(" px") for t, lines in captions.items())


def _reference_photo(folder: Path, k: int) -> tuple[Path, np.ndarray]:
    """Photo face ``k`` as another picture of the person: cut from t1.jpg, turned 6°, at 0.8× (a PNG), and where
    its landmarks fall at the clip's frame 0 (t1.jpg at 720/1280, 14 px cropped off the top)."""
    import cv2
    from faces_helpers import photo_landmarks

    from gpen_video.synthetic import faces_image

    landmarks = photo_landmarks()[k]
    centre = landmarks.mean(0)
    turn = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), 6.0, 0.8)
    turn[:, 2] += np.array([160.0, 160.0]) - centre
    path = folder / f"person{k}.png"
    cv2.imwrite(str(path), cv2.warpAffine(faces_image(), turn, (320, 320), flags=cv2.INTER_AREA))
    return path, landmarks * (720 / 1280) - [0.0, 14.0]


def _track_at(rows: dict[int, list[dict]], landmarks: np.ndarray) -> int:
    nearest = min(rows[0], key=lambda row: float(np.linalg.norm(np.mean(row["landmarks"], 0) - landmarks.mean(0))))
    return int(nearest["track"])


def test_a_reference_face_restores_that_person_alone(clip: Path, tmp_path: Path) -> None:
    """The person of another picture (turned, smaller) is found among the six by the recogniser: only their track
    is restored, the other faces are the source's bit for bit; ``--exclude-face`` turns that round."""
    photo, landmarks = _reference_photo(tmp_path, 2)
    rows, planes, report = _restore(clip, "reference", "--reference-face", str(photo))
    restored, alone = _check_pixels(clip, rows, planes)
    person = _track_at(rows, landmarks)
    assert restored == {person} and len(alone) >= 4
    distances = {t["id"]: t["reference_distance"] for t in report["selection"]["tracks"]}
    assert distances[person] < 0.45 < min(d for t, d in distances.items() if t != person)
    assert report["selection"]["faces_skipped"] == {"not_reference": sum(len(f) for f in rows.values()) - FRAMES}
    rows, planes, _ = _restore(clip, "exclude", "--exclude-face", str(photo))
    restored, alone = _check_pixels(clip, rows, planes)
    assert alone == {person} and len(restored) >= 4


SKIMAGE_DATA = Path(__import__("skimage").__file__).parent / "data"


def _cartoon() -> tuple[np.ndarray, np.ndarray]:
    """A drawn cartoon face (round head, dot eyes, a nose, a smile) and its five points."""
    import cv2

    image = np.full((400, 400, 3), (90, 160, 210), np.uint8)
    cv2.circle(image, (200, 200), 110, (40, 200, 250), -1)
    for x in (165, 235):
        cv2.circle(image, (x, 170), 14, (20, 20, 20), -1)
        cv2.circle(image, (x - 5, 165), 4, (255, 255, 255), -1)
    cv2.ellipse(image, (200, 205), (8, 6), 0, 0, 360, (30, 60, 200), -1)
    cv2.ellipse(image, (200, 225), (38, 22), 0, 10, 170, (20, 20, 80), 4)
    return image, np.array([[165, 170], [235, 170], [200, 205], [165, 238], [235, 238]], np.float64)


def test_the_human_check_tells_people_from_cartoons_animals_and_textures() -> None:
    """Real faces (t1.jpg's six people, scikit-image's astronaut) score above ``HUMAN_MIN_SCORE``; a cat (its eyes,
    nose and mouth placed by hand), a drawn cartoon and face-shaped patches of grass and gravel below it."""
    import cv2
    from faces_helpers import mtcnn, photo_landmarks

    from gpen_video.faces.human_check import HUMAN_MIN_SCORE, HumanFaceCheck
    from gpen_video.synthetic import faces_image

    check = HumanFaceCheck()
    people = [check.score(faces_image(), lm) for lm in photo_landmarks()]
    astronaut = cv2.imread(str(SKIMAGE_DATA / "astronaut.png"))
    people += [check.score(astronaut, lm) for lm in mtcnn().detect(astronaut).landmarks]
    cat = cv2.imread(str(SKIMAGE_DATA / "chelsea.png"))
    others = [check.score(cat, np.array([[172, 113], [318, 136], [265, 240], [235, 275], [292, 280]], np.float64))]
    others.append(check.score(*_cartoon()))
    layout = np.array([[170, 170], [230, 170], [200, 205], [175, 235], [225, 235]], np.float64)
    for name in ("grass.png", "gravel.png"):
        others.append(check.score(cv2.resize(cv2.imread(str(SKIMAGE_DATA / name)), (512, 512)), layout))
    assert len(people) == 7 and min(people) >= HUMAN_MIN_SCORE + 0.2, people
    assert max(others) < HUMAN_MIN_SCORE - 0.5, others


def test_a_cartoon_track_is_left_alone_until_the_check_is_off() -> None:
    """The drawn face, followed over frames (a detector that takes it for a face), is judged not human once, on its
    first frame, and held so; with the check off it is restored."""
    from gpen_video.faces.human_check import HumanFaceCheck

    image, points = _cartoon()
    box = face_box(points).astype(np.float32)
    shift = [np.array([k, 0.0]) for k in range(6)]
    frames = [[TrackedFace(7, (points + s).astype(np.float32), box + np.tile(s, 2), 0.97)] for s in shift]
    on = FaceSelector(SelectionConfig(), human=HumanFaceCheck())
    assert [on.choose(k, faces, image, True) for k, faces in enumerate(frames)] == [["not_human"]] * 6
    assert on.summary().tracks[7].human_score < 0 and on.summary().faces_skipped == {"not_human": 6}
    off = FaceSelector(SelectionConfig(human_check="off"))
    assert not off.active and [off.choose(k, f, image, True) for k, f in enumerate(frames)] == [[None]] * 6


def test_a_face_too_degraded_to_restore_is_named(clip: Path, plain, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """One person's face blurred down to a few pixels of real resolution (ffmpeg: cut out, shrunk ×8, enlarged back):
    the report's input quality names that track alone, and so does one warning; the undegraded clip names none."""
    degraded = tmp_path / "degraded.mp4"
    graph = ("[0:v]scale=720:-2,split[a][b];[b]crop=80:100:488:28,scale=10:-2,scale=80:100:flags=bicubic[c];"
             "[a][c]overlay=488:28,crop=640:264:'t*10':14,format=yuv420p[v]")  # fmt: skip
    subprocess.run([FFMPEG, "-v", "error", "-loop", "1", "-framerate", "24", "-t", "1", "-i", str(faces_image_path()),
                    "-filter_complex", graph, "-map", "[v]", "-c:v", "libx264", "-crf", "12", str(degraded)],
                   check=True)  # fmt: skip
    _, _, report = _restore(degraded, "degraded", "--human-check", "off")  # so blurred, HOG sees no face in it
    quality = {t["id"]: t for t in report["input_quality"]["tracks"]}
    rows = _rows(degraded.parent / "degraded.jsonl")
    _, landmarks = _reference_photo(tmp_path, 4)  # the person at 871–1001 px in the photo: 490–563 here
    person = _track_at(rows, landmarks)
    assert {t for t, q in quality.items() if q["too_degraded"]} == {person}, quality
    assert min(q["score"] for t, q in quality.items() if t != person) > 0.4
    (warning,) = [w for w in report["warnings"] if "too degraded" in w]
    assert warning.startswith("1 track(s) too degraded to restore faithfully") and f": {person} (" in warning
    assert not [w for w in plain[2]["warnings"] if "too degraded" in w]
    assert all(not q["too_degraded"] for q in plain[2]["input_quality"]["tracks"])


def test_the_contact_sheet_lines_carry_quality_and_the_guards_distance() -> None:
    """Each caption line comes from its report section: the selection's verdict, the input quality and the guard's
    median distance (a stand-in report holding just those sections)."""
    from types import SimpleNamespace

    from gpen_video.faces.selection import TrackSelection
    from gpen_video.faces.track_quality import TrackQuality
    from gpen_video.faces.types import TrackSummary
    from gpen_video.run.identity import TrackIdentity

    tracks = [TrackSummary(t, 0, 9, 10, 0.99, 4, (10.0, 20.0, 60.0, 100.0)) for t in (1003, 1004)]
    skipped = TrackSelection(0)
    skipped.skipped["not_human"] = 10
    report = SimpleNamespace(
        tracks=tracks,
        selection=SimpleNamespace(tracks={1003: TrackSelection(10), 1004: skipped}),
        input_quality=(
            TrackQuality(1003, 2, 0.81, 0.8, 0, 30.0, 1.0, 0.0),
            TrackQuality(1004, 2, 0.1, 0.1, 0, 9.0, 2.0, 1.0),
        ),
        identity=SimpleNamespace(tracks=(TrackIdentity(1003, 1, 0.83, 0.83, 0, ((0, 9),)),)),
    )
    captions = _captions(report)  # type: ignore[arg-type]
    assert captions[1003] == ["track 1003  80 px", "restored", "quality 0.81", "identity 0.83 (another person)"]
    assert captions[1004] == ["track 1004  80 px", "left alone: not human", "quality 0.10 (too degraded)"]
