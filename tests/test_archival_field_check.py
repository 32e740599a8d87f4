"""Issue 15: the field order of a stream whose tag says nothing, judged on its first pictures at run time.

Clips are made with the ffmpeg CLI from insightface's t1.jpg panned 6 px a field (50p), interlaced to 25i with
``interlace=scan=tff|bff`` and stored where the tag is lost (FFV1 in AVI: ffprobe says ``unknown``), or tagged
progressive (FFV1 in Matroska after ``setfield=prog``). ffprobe gives the truth about tags, frame counts and
timestamps; each output field is compared with the source's field (the ffmpeg CLI's ``field`` filter).
"""

from __future__ import annotations

import json
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from conformance_cases import ffmpeg_exe, ffprobe_exe

from gpen_video.config import load_config
from gpen_video.io.field_analysis import CombWatch, analyse_fields
from gpen_video.io.field_check import check_fields
from gpen_video.io.probe import probe
from gpen_video.restore.restorer import IdentityRestorer
from gpen_video.run import RestoreJob, run_restore
from gpen_video.synthetic import faces_image_path

FFMPEG = ffmpeg_exe()
FFPROBE = ffprobe_exe() or "ffprobe"
W, H, FRAMES = 480, 320, 8
FFPROBE_ORDER = {"tt": "tff", "tb": "tff", "bb": "bff", "bt": "bff"}


def _ffmpeg(*args: str | Path) -> None:
    subprocess.run([FFMPEG, "-loglevel", "error", "-y", *map(str, args)], check=True)


def _probe(path: Path, entries: str) -> str:
    return subprocess.run(
        [FFPROBE, "-v", "error", "-select_streams", "v:0", "-show_entries", entries, "-of", "csv=p=0", str(path)],
        check=True, capture_output=True, text=True,
    ).stdout.strip().strip(",")  # fmt: skip


def _pts(path: Path) -> list[Fraction]:
    """Each frame's presentation time in seconds (containers differ in time base)."""
    tick = Fraction(_probe(path, "stream=time_base"))
    return [int(x.strip(",")) * tick for x in _probe(path, "frame=pts").splitlines() if x.strip(",")]


def _fields(path: Path, which: str, width: int = W, height: int = H) -> np.ndarray:
    out = subprocess.run(
        [FFMPEG, "-loglevel", "error", "-i", str(path), "-vf", f"field={which}", "-f", "rawvideo", "-pix_fmt", "gray",
         "-"], check=True, capture_output=True,
    ).stdout  # fmt: skip
    return np.frombuffer(out, np.uint8).reshape(-1, height // 2, width).astype(np.float32)


def _pan(scan: str | None, frames: int = FRAMES) -> str:
    """t1's faces panning right 6 px a picture at 50p; ``scan``: interlaced to 25i with that field first."""
    pan = f"crop={W}:{H}:x='300+n*6':y=230,format=yuv420p"
    return pan if scan is None else f"{pan},interlace=scan={scan},setfield=prog"


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("untagged")
    still = d / "t1.png"
    _ffmpeg("-i", faces_image_path(), still)
    out = {}
    for name, scan, ext, rate in (("tff", "tff", "avi", 50), ("bff", "bff", "avi", 50), ("prog", None, "avi", 25),
                                  ("tagged_prog", "tff", "mkv", 50)):  # fmt: skip
        out[name] = d / f"{name}.{ext}"
        _ffmpeg("-loop", 1, "-framerate", rate, "-i", still, "-vf", _pan(scan), "-frames:v", FRAMES, "-c:v", "ffv1",
                out[name])  # fmt: skip
    return out


def _run(clip: Path, out: Path, **settings) -> dict:
    config = load_config(None, {"compose.blend": 1.0, "output.overwrite": True, **settings})
    report = run_restore(RestoreJob(clip, out, config, restorer=IdentityRestorer()), threaded=False)
    return {"warnings": report.warnings, "faces": report.faces.to_dict()}


@pytest.mark.parametrize("order", ["tff", "bff"])
def test_an_untagged_interlaced_clip_is_restored_per_field(clips, tmp_path, order):
    clip = clips[order]
    assert _probe(clip, "stream=field_order") == "unknown"  # the tag really is lost
    check = check_fields(probe(clip)).video.field_check
    assert check is not None and check.analysis.order == order and check.analysis.confident
    runs = {}
    for mode in ("keep", "off"):  # off: what an untagged file got before (faces restored on woven fields)
        out = tmp_path / f"{mode}.mkv"
        runs[mode] = _run(clip, out, **{"reader.deinterlace": mode})
        assert _pts(out) == _pts(clip) and len(_pts(out)) == FRAMES  # every frame, at its own time
        runs[mode]["out"] = out
    keep, off = runs["keep"], runs["off"]
    assert keep["faces"]["frames_with_faces"] == 2 * FRAMES  # two field pictures a frame
    assert off["faces"]["frames_with_faces"] == FRAMES
    assert FFPROBE_ORDER[_probe(keep["out"], "stream=field_order")] == order  # woven, and now tagged so
    (said,) = [w for w in keep["warnings"] if "field order not tagged" in w]
    assert f"interlaced, {'top' if order == 'tff' else 'bottom'} field first (confident" in said
    assert f"restored as {order}" in said
    # each output field holds its own moment: faces pasted on woven fields mix the other field's in
    for which in ("top", "bottom"):
        source = _fields(clip, which)
        err_keep = np.abs(_fields(keep["out"], which) - source)
        err_off = np.abs(_fields(off["out"], which) - source)
        touched = (err_keep > 2) | (err_off > 2)
        assert touched.mean() > 0.02  # faces were pasted
        assert err_keep[touched].mean() < 0.8 * err_off[touched].mean()


def test_an_untagged_progressive_clip_with_motion_stays_progressive(clips, tmp_path):
    clip = clips["prog"]
    assert _probe(clip, "stream=field_order") == "unknown"
    analysis = check_fields(probe(clip)).video.field_check.analysis
    assert analysis.order == "progressive" and analysis.clearly_progressive and not analysis.confident
    out = tmp_path / "prog.mkv"
    run = _run(clip, out)
    assert run["faces"]["frames_with_faces"] == FRAMES  # one picture a frame: no false interlaced verdict
    assert not [w for w in run["warnings"] if "field" in w]
    assert _probe(out, "stream=field_order") not in FFPROBE_ORDER
    assert _pts(out) == _pts(clip)


def test_a_still_untagged_clip_is_treated_as_progressive_and_said(tmp_path):
    clip = tmp_path / "still.avi"
    _ffmpeg("-loop", 1, "-framerate", 25, "-i", faces_image_path(), "-vf", f"crop={W}:{H}:300:230,format=yuv420p",
            "-frames:v", 4, "-c:v", "ffv1", clip)  # fmt: skip
    run = _run(clip, tmp_path / "still.mkv")
    (said,) = [w for w in run["warnings"] if "field order not tagged" in w]
    assert "nothing moves" in said and "treated as progressive" in said and "--field-order tff|bff" in said
    assert run["faces"]["frames_with_faces"] == 4


def test_a_clip_tagged_progressive_whose_fields_comb_is_warned_about(clips, tmp_path, run_cli):
    clip = clips["tagged_prog"]
    assert _probe(clip, "stream=field_order") == "progressive"
    out = tmp_path / "t.mkv"
    result = run_cli("restore", clip, "-o", out, "--model", "identity", "-q", "--report", tmp_path / "r.json")
    assert result.returncode == 0, result.stderr
    assert "tagged progressive, but its first frames comb" in result.stderr  # said even with -q
    assert "--field-order tff" in result.stderr
    assert json.loads((tmp_path / "r.json").read_text())["faces"]["frames_with_faces"] == FRAMES  # as tagged
    said = run_cli("probe", clip)
    assert "fields from the pictures: interlaced, top field first (confident" in said.stdout
    assert "unless given --field-order tff" in said.stdout


@pytest.mark.parametrize("order", ["tff", "bff"])
def test_probe_says_the_field_order_it_sees(clips, run_cli, order):
    said = run_cli("probe", clips[order])
    assert said.returncode == 0, said.stderr
    words = "top" if order == "tff" else "bottom"
    assert f"fields from the pictures: interlaced, {words} field first (confident" in said.stdout
    assert "restore works per field" in said.stdout
    data = json.loads(run_cli("probe", clips[order], "--json").stdout)
    assert data["video"]["field_check"]["analysis"]["order"] == order


def test_probe_reads_only_the_start_to_judge_the_fields(tmp_path, monkeypatch, restore_gpen_logger, capsys):
    from read_counting import counting_reads

    from gpen_video.cli import main

    clip = tmp_path / "long.avi"  # 4 s of untagged interlaced frames: the judgement needs the first 16
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=50", "-vf", "interlace=scan=tff,setfield=prog",
            "-frames:v", 100, "-c:v", "ffv1", clip)  # fmt: skip
    with counting_reads(monkeypatch, clip) as log:
        assert main(["probe", str(clip)]) == 0
    assert "fields from the pictures: interlaced, top field first" in capsys.readouterr().out
    assert log.opens == 2  # probe, and the look at the first pictures
    assert log.distinct_bytes < 0.3 * clip.stat().st_size


def test_motion_in_part_of_the_picture_is_enough(tmp_path):
    """A talking head on a still background: judged on the blocks that move, not diluted by the rest."""
    photo = faces_image_path()
    clip = tmp_path / "head.avi"
    _ffmpeg("-loop", 1, "-framerate", 50, "-i", photo, "-loop", 1, "-framerate", 50, "-i", photo, "-filter_complex",
            "[0]crop=480:320:0:0[bg];[1]crop=96:96:600:300[fg];[bg][fg]overlay=x='100+3*n':y=100,format=yuv420p,"
            "interlace=scan=bff,setfield=prog", "-frames:v", 12, "-c:v", "ffv1", clip)  # fmt: skip
    analysis = check_fields(probe(clip)).video.field_check.analysis
    assert analysis.order == "bff" and analysis.confident, analysis


@pytest.mark.parametrize("count", [FRAMES, 5])
@pytest.mark.parametrize("threaded", [True, False])
def test_the_comb_watch_measures_on_its_own_thread_what_analyse_fields_measures(clips, count, threaded):
    """The watch's verdict, measured off the decode thread, is ``analyse_fields`` of the same pictures, to the bit,
    given with the last of its ``count`` pictures (or at ``finish`` for a shorter clip); then its thread is gone."""
    import threading

    import av

    with av.open(str(clips["tagged_prog"])) as container:
        pictures = list(container.decode(video=0))
    watch = CombWatch(count, threaded)
    given = [watch.add(picture) for picture in pictures[: min(count, FRAMES - 1)]]
    if count > FRAMES - 1:  # the last picture of the count gives the verdict
        given.append(watch.add(pictures[FRAMES - 1]))
        assert given[-1] is not None and not any(given[:-1])
        assert watch.add(pictures[0]) is None and watch.finish() is None  # said once
    else:
        assert given[-1] is not None and watch.finish() is None
    truth = analyse_fields(p.to_ndarray(format="gray") for p in pictures[: min(count, FRAMES)])
    assert given[-1] == truth and truth.order == "tff"
    assert not [t for t in threading.enumerate() if t.name.startswith("comb-watch")]
    short = CombWatch(FRAMES + 4, threaded)  # a clip shorter than the count: the verdict comes at finish
    assert not any(short.add(p) for p in pictures)
    assert short.finish() == analyse_fields(p.to_ndarray(format="gray") for p in pictures)


@pytest.mark.parametrize("scan", ["tff", "bff", None])
def test_a_1080_picture_is_judged_on_half_its_columns_as_on_all(monkeypatch, scan):
    """Every 2nd column of a 1920-px picture (``MEASURED_COLUMNS``) gives the verdict all of them give: t1's faces
    panned 6 px a field at 1080p50 and interlaced by the ffmpeg CLI, or left progressive."""
    from gpen_video.io import field_analysis

    pan = "scale=2880:-2,crop=1920:1080:x='200+n*6':y=100,format=yuv420p"
    chain = pan if scan is None else f"{pan},interlace=scan={scan}"
    out = subprocess.run(
        [FFMPEG, "-loglevel", "error", "-loop", "1", "-framerate", "50", "-i", str(faces_image_path()), "-vf", chain,
         "-frames:v", "6", "-f", "rawvideo", "-pix_fmt", "gray", "-"], check=True, capture_output=True,
    ).stdout  # fmt: skip
    pictures = list(np.frombuffer(out, np.uint8).reshape(-1, 1080, 1920))
    assert len(pictures) >= 3
    halved = analyse_fields(pictures)
    monkeypatch.setattr(field_analysis, "MEASURED_COLUMNS", 1920)
    whole = analyse_fields(pictures)
    assert halved.order == whole.order == (scan or "progressive")
    assert halved.confident == whole.confident == (scan is not None)
    assert halved.clearly_progressive == whole.clearly_progressive == (scan is None)
    assert halved != whole  # really measured on fewer columns
    assert abs(halved.comb_ratio / whole.comb_ratio - 1) < 0.1 and abs(halved.confidence / whole.confidence - 1) < 0.1


def test_static_pictures_say_nothing_moves():
    still = np.tile(np.arange(64, dtype=np.uint8)[None, :], (48, 1))
    analysis = analyse_fields([still] * 5)
    assert analysis.order == "unknown" and analysis.moving_blocks == 0 and not analysis.confident
    assert "nothing moves" in analysis.describe()


def _scaled_fields(path: Path, which: str, k: int) -> np.ndarray:
    """The source's ``which`` field pictures, scaled k× by the ffmpeg CLI (Lanczos): each field's own moment."""
    out = subprocess.run(
        [FFMPEG, "-loglevel", "error", "-i", str(path), "-vf",
         f"field={which},scale={k * W}:{k * H // 2}:flags=lanczos", "-f", "rawvideo", "-pix_fmt", "gray", "-"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    return np.frombuffer(out, np.uint8).reshape(-1, k * H // 2, k * W).astype(np.float32)


@pytest.mark.slow
def test_keep_with_upscale_weaves_fields_of_the_upscaled_pictures(clips, tmp_path):
    """``--deinterlace keep --upscale 2``: each field-rate picture is upscaled and composed, then woven into a
    2×-height interlaced frame; ``off`` upscales the woven frame, which smears each field into the other."""
    clip, k = clips["tff"], 2
    errors = {}
    for mode in ("keep", "off"):
        out = tmp_path / f"{mode}.mkv"
        run = _run(clip, out, **{"reader.deinterlace": mode, "compose.upscale": k})
        assert _probe(out, "stream=width,height") == f"{k * W},{k * H}"
        assert _pts(out) == _pts(clip) and len(_pts(out)) == FRAMES
        if mode == "keep":
            assert run["faces"]["frames_with_faces"] == 2 * FRAMES
            assert FFPROBE_ORDER[_probe(out, "stream=field_order")] == "tff"
            assert analyse_fields(_frames(out, k)).order == "tff"  # the woven k× frames show it too
        errors[mode] = [
            np.abs(_fields(out, w, k * W, k * H) - _scaled_fields(clip, w, k)).mean() for w in ("top", "bottom")
        ]
    for keep, off in zip(errors["keep"], errors["off"], strict=True):
        assert keep < 0.7 * off, errors


def _frames(path: Path, k: int) -> list[np.ndarray]:
    out = subprocess.run(
        [FFMPEG, "-loglevel", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "gray", "-"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    return list(np.frombuffer(out, np.uint8).reshape(-1, k * H, k * W))


def test_a_still_start_is_looked_past(tmp_path):
    """A slate for the first 1.6 s (40 frames: more than the 16 the start is judged on), then a bff pan."""
    clip = tmp_path / "slate.avi"
    _ffmpeg("-loop", 1, "-framerate", 50, "-i", faces_image_path(), "-vf",
            f"crop={W}:{H}:x='300+6*max(n-80,0)':y=230,format=yuv420p,interlace=scan=bff,setfield=prog",
            "-frames:v", 75, "-c:v", "ffv1", clip)  # fmt: skip
    assert _probe(clip, "stream=field_order") == "unknown" and len(_pts(clip)) == 75
    from gpen_video.io.field_check import measure_field_order

    assert measure_field_order(probe(clip), places=1).analysis.order == "unknown"  # the start alone: nothing moves
    check = check_fields(probe(clip)).video.field_check
    assert check.analysis.order == "bff" and check.analysis.confident, check


# -- issue 22: a written file's field order, read back from its tag and from every frame's flags ---------------


def _ffmpeg_cli(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", *args], check=True)


@pytest.mark.parametrize(
    "name, chain, codec, expected, wrong",
    [
        ("right_tff", "setfield=tff", ["-c:v", "libx264", "-flags", "+ildct+ilme", "-field_order", "tt"], "tff", None),
        ("right_bff", "setfield=bff", ["-c:v", "ffv1", "-field_order", "bb"], "bff", None),
        # tagged tt but x264 coded bff: the ffmpeg CLI's own output when the frames say bff (issue 22's bug)
        ("frames_bff_tag_tt", "setfield=bff", ["-c:v", "libx264", "-flags", "+ildct+ilme", "-field_order", "tt"],
         "tff", "frames are flagged bff"),
        ("tag_progressive", "setfield=tff", ["-c:v", "ffv1", "-field_order", "progressive"], "tff",
         "tagged progressive"),
    ],
)  # fmt: skip
def test_written_fields_are_read_from_tag_and_frames(tmp_path, name, chain, codec, expected, wrong):
    from gpen_video.errors import VerificationError
    from gpen_video.io.field_check import check_written_fields, read_written_fields

    path = tmp_path / f"{name}.mkv"
    _ffmpeg_cli("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=25:duration=0.16", "-vf", chain, *codec, str(path))
    frames = read_written_fields(path).frames
    assert len(frames) == 4 and None not in frames, frames
    if wrong is None:
        check_written_fields(path, expected)
        assert set(frames) == {expected}
    else:
        with pytest.raises(VerificationError, match=wrong):
            check_written_fields(path, expected)
