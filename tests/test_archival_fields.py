"""Interlaced sources: field order from the stream and the pictures, bwdif to field rate, weave, telecine.

Clips are made with the ffmpeg CLI from insightface's t1.jpg panned 4 px right and 2 px down per field
(so every field is a known moment), woven with ``tinterlace`` and tagged/encoded interlaced (H.264 with
``+ildct+ilme``, MPEG-2 with ``-top``, FFV1 with ``-field_order``); ffprobe's ``field_order`` is the truth.
"""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from conformance_cases import ffmpeg_exe, ffprobe_json

from gpen_video.align.compose import AlignedBatch, compose
from gpen_video.align.warp import warp_cpu
from gpen_video.config import ComposeConfig
from gpen_video.errors import InputError
from gpen_video.io.deinterlace import FieldDeinterlacer, field_pictures, weave, weave_frames
from gpen_video.io.field_analysis import (
    analyse_fields,
    comb_ratio,
    detect_telecine,
    line_difference_energy,
    stream_field_order,
)
from gpen_video.synthetic import faces_image_path

FFMPEG = ffmpeg_exe()
SCALE = 0.75  # photo scale in the clips
X0, Y0, DX, DY = 230, 170, 4, 2  # crop window origin and its motion per field (50p frame)
W, H = 320, 240
FIELDS = 24


def _pan(n_expr: str = "n") -> str:
    return f"scale={int(1280 * SCALE)}:-2,crop={W}:{H}:x='{X0}+{DX}*{n_expr}':y='{Y0}+{DY}*{n_expr}'"


def _ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-loglevel", "error", "-y", *args], check=True)


def _probe(path: Path) -> dict:
    entries = "stream=field_order,nb_read_frames,r_frame_rate"
    return ffprobe_json(path, "-count_frames", "-select_streams", "v:0", "-show_entries", entries)["streams"][0]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("interlaced")
    photo = str(faces_image_path())
    truth = d / "truth50.mkv"  # the field-rate truth: one progressive picture per field time
    _ffmpeg("-framerate", "50", "-loop", "1", "-i", photo, "-frames:v", str(FIELDS), "-vf", _pan(),
            "-c:v", "ffv1", "-pix_fmt", "yuv420p", str(truth))  # fmt: skip
    out = {"truth": truth}
    top = "tinterlace=interleave_top,setfield=tff"
    bottom = "tinterlace=interleave_bottom,setfield=bff"
    jobs = {
        "tff_h264": (top, ["-c:v", "libx264", "-crf", "8", "-flags", "+ildct+ilme", "-x264opts", "tff=1"], "mp4"),
        "bff_mpeg2": (bottom, ["-c:v", "mpeg2video", "-q:v", "2", "-flags", "+ildct+ilme", "-top", "0"], "mpg"),
        "tff_mpeg2": (top, ["-c:v", "mpeg2video", "-q:v", "2", "-flags", "+ildct+ilme", "-top", "1"], "mpg"),
        "tff_ffv1": (top, ["-c:v", "ffv1", "-field_order", "tt"], "mkv"),
        "bff_untagged": (bottom + ",setfield=prog", ["-c:v", "ffv1"], "mkv"),  # tags lie: pictures are bff
    }
    for name, (vf, codec, ext) in jobs.items():
        path = d / f"{name}.{ext}"
        _ffmpeg("-i", str(truth), "-vf", vf, *codec, "-pix_fmt", "yuv420p", "-r", "25", str(path))
        out[name] = path
    prog = d / "prog.mp4"
    _ffmpeg("-framerate", "25", "-loop", "1", "-i", photo, "-frames:v", "12", "-vf", _pan(),
            "-c:v", "libx264", "-crf", "8", "-pix_fmt", "yuv420p", str(prog))  # fmt: skip
    out["prog"] = prog
    tele = d / "telecine.mkv"  # 23.976p film, 3:2 pulldown to 29.97i
    _ffmpeg("-framerate", "24000/1001", "-loop", "1", "-i", photo, "-vf", f"{_pan()},telecine=pattern=23",
            "-frames:v", "30", "-c:v", "ffv1", "-pix_fmt", "yuv420p", str(tele))  # fmt: skip
    out["telecine"] = tele
    video30 = d / "video2997.mkv"  # true 59.94-field video: no field repeats
    _ffmpeg("-framerate", "60000/1001", "-loop", "1", "-i", photo, "-frames:v", "60", "-vf", f"{_pan()},{top}",
            "-c:v", "ffv1", "-pix_fmt", "yuv420p", "-r", "30000/1001", str(video30))  # fmt: skip
    out["video2997"] = video30
    return out


def _decode(path: Path) -> tuple[av.container.InputContainer, av.VideoStream, list[av.VideoFrame]]:
    container = av.open(str(path))
    stream = container.streams.video[0]
    return container, stream, list(container.decode(stream))


def _gray(frames) -> list[np.ndarray]:
    return [f.to_ndarray(format="gray") for f in frames]


FFPROBE_ORDER = {"tt": "tff", "bb": "bff", "tb": "tff", "bt": "bff", "progressive": "progressive"}


@pytest.mark.parametrize("name", ["tff_h264", "bff_mpeg2", "tff_mpeg2", "tff_ffv1", "prog"])
def test_stream_field_order_matches_ffprobe(clips, name):
    truth = FFPROBE_ORDER[_probe(clips[name])["field_order"]]
    _, stream, frames = _decode(clips[name])
    found = stream_field_order(stream, frames[0])
    assert found.order == truth
    assert found.flagged_interlaced == (truth != "progressive")
    assert found.describe().startswith("interlaced" if truth != "progressive" else "progressive")


@pytest.mark.parametrize(
    "name, order",
    [("tff_h264", "tff"), ("bff_mpeg2", "bff"), ("tff_mpeg2", "tff"), ("bff_untagged", "bff"), ("prog", "progressive")],
)
def test_field_order_measured_on_the_pictures(clips, name, order):
    _, stream, frames = _decode(clips[name])
    analysis = analyse_fields(_gray(frames))
    assert analysis.order == order
    assert analysis.frames == len(frames)
    if order != "progressive":
        assert analysis.confidence > 1.5 and analysis.comb_ratio > 1.5
    else:
        assert analysis.comb_ratio < 1.0
    if name == "bff_untagged":  # the tag says progressive; the pictures say otherwise
        assert stream_field_order(stream, frames[0]).order != "bff"


def test_static_pictures_have_no_field_order():
    still = np.tile(np.arange(64, dtype=np.uint8)[None, :], (48, 1))
    assert analyse_fields([still] * 5).order == "unknown"


@pytest.mark.parametrize("name, order", [("tff_ffv1", "tff"), ("bff_mpeg2", "bff"), ("tff_h264", "tff")])
def test_field_rate_deinterlace_and_weave_keep_frames_timestamps_and_lines(clips, name, order):
    probed = _probe(clips[name])
    _, stream, frames = _decode(clips[name])
    assert len(frames) == int(probed["nb_read_frames"]) == FIELDS // 2
    pictures = list(field_pictures(enumerate(frames), stream, order))
    assert len(pictures) == 2 * len(frames)
    assert [(p.frame_index, p.field) for p in pictures] == [(i, f) for i in range(len(frames)) for f in (0, 1)]
    field_step = (frames[1].pts - frames[0].pts) * stream.time_base / 2
    for a, b in itertools.pairwise(pictures):
        assert (b.pts - a.pts) * b.time_base == field_step  # field rate: half the frame duration
    # unprocessed field pictures weave back into the decoded frames, sample for sample
    for i, frame in enumerate(frames):
        woven = weave_frames(pictures[2 * i].source, pictures[2 * i + 1].source, order)
        assert np.array_equal(woven.to_ndarray(format="yuv420p"), frame.to_ndarray(format="yuv420p"))
    # each field picture shows its own moment: nearer its truth picture than the other field's
    _, _, truth = _decode(clips["truth"])
    truth_g = [t.astype(np.float32) for t in _gray(truth)]
    for k, p in enumerate(pictures):
        g = p.source.to_ndarray(format="gray").astype(np.float32)
        own = np.abs(g - truth_g[k]).mean()
        other = np.abs(g - truth_g[k ^ 1]).mean()
        assert own < 6.0 and own < 0.5 * other


def test_deinterlacer_refuses_without_an_order(clips):
    _, stream, _ = _decode(clips["prog"])
    with pytest.raises(InputError, match="--deinterlace off"):
        FieldDeinterlacer(stream, "progressive")


def test_frame_mode_gives_one_picture_per_frame(clips):
    _, stream, frames = _decode(clips["tff_ffv1"])
    d = FieldDeinterlacer(stream, "tff", mode="send_frame")
    pictures = [p for i, f in enumerate(frames) for p in d.push(f, i)] + d.flush()
    assert [p.frame_index for p in pictures] == list(range(len(frames)))
    assert analyse_fields(_gray([p.source for p in pictures])).comb_ratio < 1.0


def test_weave_puts_the_first_field_on_the_right_lines():
    first = np.zeros((6, 4), np.uint16)
    second = np.full((6, 4), 7, np.uint16)
    assert weave(first, second, "tff")[:, 0].tolist() == [0, 7, 0, 7, 0, 7]
    assert weave(first, second, "bff")[:, 0].tolist() == [7, 0, 7, 0, 7, 0]
    with pytest.raises(ValueError):
        weave(first, second, "progressive")


def test_telecine_is_detected_and_true_video_is_not(clips):
    assert _probe(clips["telecine"])["r_frame_rate"] == "30000/1001"
    _, _, frames = _decode(clips["telecine"])
    report = detect_telecine(_gray(frames))
    assert report.detected, report
    assert len(report.top_repeats) == len(report.bottom_repeats) == len(frames) // 5
    assert {i % 5 for i in report.top_repeats} == {report.phase}
    assert "3:2 pulldown" in report.describe()
    _, _, video = _decode(clips["video2997"])
    assert not detect_telecine(_gray(video)).detected
    _, _, prog = _decode(clips["prog"])
    assert not detect_telecine(_gray(prog) * 2).detected


# -- faces restored at field rate are not combed -------------------------------------------------------
def _face_boxes(field: int) -> list[tuple[int, int, int, int]]:
    """Boxes (x0, y0, x1, y1) of the photo's faces in 50p picture ``field``, from the known pan; inside only."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from faces_helpers import photo_landmarks

    boxes = []
    for lm in photo_landmarks():
        cx, cy = lm.mean(0) * SCALE - (X0 + DX * field, Y0 + DY * field)
        half = 0.9 * np.ptp(lm[:, 0]) * SCALE
        box = (int(cx - half), int(cy - half), int(cx + half), int(cy + half * 1.2))
        if box[0] >= 4 and box[1] >= 4 and box[2] <= W - 4 and box[3] <= H - 4:
            boxes.append(box)
    return boxes


def _restore_faces(bgr: np.ndarray, boxes) -> np.ndarray:
    """A stand-in restorer on each face: crop at 128, sharpen (new detail), paste back with the project's compose."""
    size = 128
    affines, restored = [], []
    for x0, y0, x1, _ in boxes:
        s = size / (x1 - x0)
        a = np.array([[s, 0.0, -s * x0], [0.0, s, -s * y0]])
        crop = warp_cpu(bgr, a, size)
        blur = cv2.GaussianBlur(crop, (0, 0), 2.0)
        restored.append(cv2.addWeighted(crop, 2.0, blur, -1.0, 0))
        affines.append(a)
    batch = AlignedBatch(np.stack([warp_cpu(bgr, a, size) for a in affines]), np.stack(affines))
    return compose(bgr, np.stack(restored), batch, ComposeConfig(color_match=False, blend=1.0)).image


def _restored_frame(picture: av.VideoFrame, field: int) -> av.VideoFrame:
    bgr = _restore_faces(picture.to_ndarray(format="bgr24"), _face_boxes(field))
    return av.VideoFrame.from_ndarray(bgr, format="bgr24").reformat(format="yuv420p")


def test_faces_restored_at_field_rate_are_not_combed_more_than_the_source(clips):
    """Field-rate restore + weave: combed no more than the source, and as the ideal (the truth fields restored).

    The line-to-line energy in each face box is compared with the source's and with the "ideal" output: the
    same restorer run on the 50p truth pictures and woven. Restoring the woven frame itself (``frame`` mode)
    is the contrast that shows the measure can fail; a swapped weave is caught by the field-order measure.
    """
    _, stream, frames = _decode(clips["tff_ffv1"])
    _, _, truth = _decode(clips["truth"])
    pictures = list(field_pictures(enumerate(frames), stream, "tff"))
    checked = 0
    woven_ours, woven_wrong = [], []
    for i, frame in enumerate(frames):
        first, second = (_restored_frame(p.source, 2 * i + p.field) for p in pictures[2 * i : 2 * i + 2])
        ours = weave_frames(first, second, "tff").to_ndarray(format="gray")
        woven_ours.append(ours)
        woven_wrong.append(weave_frames(second, first, "tff").to_ndarray(format="gray"))
        ideal = weave_frames(_restored_frame(truth[2 * i], 2 * i), _restored_frame(truth[2 * i + 1], 2 * i + 1), "tff")
        ideal = ideal.to_ndarray(format="gray").astype(np.float32)
        source = frame.to_ndarray(format="gray")
        frame_mode = _restored_frame(frame, 2 * i).to_ndarray(format="gray")  # restored on the woven frame
        for x0, y0, x1, y1 in _face_boxes(2 * i):
            box = (x0 - 2, y0 - 2, x1 + 2 + DX, y1 + 2 + DY)  # covers the face in both fields
            inside = (slice(box[1], box[3]), slice(box[0], box[2]))
            ours_e = line_difference_energy(ours, box)
            assert ours_e <= 1.02 * line_difference_energy(ideal, box)  # no combing beyond the motion's own
            assert comb_ratio(ours, box) <= 1.05 * comb_ratio(source, box)  # not combed more than the source
            ours_err = np.abs(ours[inside] - ideal[inside]).mean()
            frame_err = np.abs(frame_mode[inside] - ideal[inside]).mean()
            assert ours_err < 0.5 * frame_err  # each field keeps its own moment; frame mode mixes them
            checked += 1
    assert checked >= 8
    assert analyse_fields(woven_ours).order == "tff"  # the output keeps the source's field order
    assert analyse_fields(woven_wrong).order == "bff"  # and a swapped weave would be seen


@pytest.mark.parametrize("name, order", [("tff_h264", "tff"), ("bff_mpeg2", "bff")])
def test_reader_frames_go_to_field_rate_and_weave_back_with_source_timing(clips, name, order):
    from gpen_video.io.deinterlace import FieldRateFrames, Weaver
    from gpen_video.io.probe import probe
    from gpen_video.io.reader import VideoReader

    reader = VideoReader(clips[name], probe(clips[name]))
    source = [
        (f.index, f.pts, f.time_base, f.source.to_ndarray(format="yuv420p"))
        for f in VideoReader(clips[name], probe(clips[name]))
    ]
    fields = FieldRateFrames(reader, reader.video, order)
    weaver = Weaver(fields)
    records, woven = [], []
    for record in fields:
        records.append(record)
        if record.index == 4:  # one frame passed on untouched, as a faceless frame is
            continue
        if record.index == 5:
            woven.append(weaver.add_untouched(2))
            continue
        out = weaver.add(record.index, record.source)
        if out is not None:
            woven.append(out)
    assert len(records) == 2 * len(source) == 2 * int(_probe(clips[name])["nb_read_frames"])
    times = [r.pts * r.time_base for r in records]
    assert all(b > a for a, b in itertools.pairwise(times))  # --deinterlace progressive: field-rate timeline
    assert [(w.index, w.pts, w.time_base) for w in woven] == [s[:3] for s in source]
    for w, s in zip(woven, source, strict=True):
        assert np.array_equal(w.source.to_ndarray(format="yuv420p"), s[3])


# -- issue 22: what the writer keeps of a master (judged with the ffmpeg CLI), what it refuses before work ----


def _alpha_md5(path: Path) -> list[str]:
    """The alpha plane of every frame, as ffmpeg's framemd5 of ``extractplanes=a`` says it."""
    done = subprocess.run([FFMPEG, "-v", "error", "-i", str(path), "-vf", "extractplanes=a", "-f", "framemd5", "-"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return [line.split(",")[-1].strip() for line in done.stdout.splitlines() if line and not line.startswith("#")]


def _plane_md5(path: Path, plane: str) -> list[str]:
    done = subprocess.run([FFMPEG, "-v", "error", "-i", str(path), "-vf", f"extractplanes={plane}", "-f", "framemd5",
                           "-"], capture_output=True, text=True, check=True)  # fmt: skip
    return [line.split(",")[-1].strip() for line in done.stdout.splitlines() if line and not line.startswith("#")]


MATTE = "a='if(lt(Y,16),1023,if(lt(X,100),0,512+X))'"  # opaque strip on top, transparent left, graded right


def test_prores4444_8bit_alpha_comes_back_level_identical(tmp_path, run_cli):
    """An 8-bit ProRes alpha re-coded at 16 bits changed its levels (257 -> 256 at 12 bits): the source's alpha
    depth is kept, so with nothing restored the alpha plane is bit-identical (ffmpeg's framemd5)."""
    source = tmp_path / "matte.mov"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25:duration=0.12", "-vf",
            "format=yuva444p10le,geq=lum='lum(X,Y)':cb='cb(X,Y)':cr='cr(X,Y)':a='X*16+Y'", "-c:v", "prores_ks",
            "-profile:v", "4444", "-alpha_bits", "8", "-pix_fmt", "yuva444p10le", str(source))  # fmt: skip
    out = tmp_path / "matte.out.mov"
    result = run_cli("restore", source, "-o", out, "--model", "identity", "-q")
    assert result.returncode == 0, result.stderr
    assert _alpha_md5(out) == _alpha_md5(source)


def test_faces_pasted_over_a_transparent_matte_leave_the_alpha_untouched(tmp_path, run_cli):
    """t1.jpg's faces over the transparent part of a ProRes 4444 matte, restored with film-reel and grain match:
    the picture changes where the faces are, the alpha plane not at all (it came out opaque in the mask's shape)."""
    source = tmp_path / "faces_matte.mov"
    _ffmpeg("-loop", "1", "-framerate", "25", "-t", "0.12", "-i", str(faces_image_path()), "-vf",
            f"scale=320:240,format=yuva444p10le,geq=lum='lum(X,Y)':cb='cb(X,Y)':cr='cr(X,Y)':{MATTE}",
            "-c:v", "prores_ks", "-profile:v", "4444", "-pix_fmt", "yuva444p10le", str(source))  # fmt: skip
    out = tmp_path / "faces_matte.out.mov"
    result = run_cli("restore", source, "-o", out, "--model", "identity", "--config", "film-reel", "--grain", "match",
                     "-q", "--report", tmp_path / "report.json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert _plane_md5(out, "y") != _plane_md5(source, "y"), "no face was pasted: the test would prove nothing"
    assert _alpha_md5(out) == _alpha_md5(source)


def test_an_upscaled_matte_is_the_source_matte_scaled(tmp_path, run_cli):
    """With --upscale 2 the picture is converted whole: its alpha is the source's scaled, never opaque."""
    source = tmp_path / "matte.mov"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=128x64:rate=25:duration=0.08", "-vf",
            f"format=yuva444p10le,geq=lum='lum(X,Y)':cb='cb(X,Y)':cr='cr(X,Y)':{MATTE}", "-c:v", "prores_ks",
            "-profile:v", "4444", "-pix_fmt", "yuva444p10le", str(source))  # fmt: skip
    out = tmp_path / "matte.up.mov"
    result = run_cli("restore", source, "-o", out, "--model", "identity", "--upscale", "2", "-q")
    assert result.returncode == 0, result.stderr
    with av.open(str(out)) as container:
        frame = next(container.decode(video=0))
        alpha = np.frombuffer(frame.planes[3], np.uint16).reshape(frame.planes[3].height, -1)[:, : frame.width]
    assert alpha.shape == (128, 256)
    assert alpha[40:, :190].max() == 0  # the transparent part stays transparent
    assert alpha[:30].min() == 4095 and alpha[40:, 210:].min() > 2000  # opaque and graded parts as they were


@pytest.mark.parametrize(
    "build, out_ext, said",
    [
        (["-vf", "setfield=tff", "-c:v", "prores_ks", "-flags", "+ildct+ilme", "-top", "1"], ".mxf",
         "field order would be lost"),
        (["-vf", "setsar=4/3", "-c:v", "dnxhd", "-profile:v", "dnxhr_sq", "-pix_fmt", "yuv422p"], ".mxf",
         "does not keep the pixel aspect 4:3"),
    ],
    ids=["prores_tff_into_mxf", "dnxhr_anamorphic_into_mxf"],
)  # fmt: skip
def test_what_a_muxer_would_drop_is_refused_before_work(tmp_path, run_cli, build, out_ext, said):
    """MXF stores ProRes progressive and DNxHD at a fixed 16:9: one line, exit 2, no output, nothing restored."""
    source = tmp_path / "master.mov"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=256x144:rate=25:duration=0.08", *build, str(source))
    out = tmp_path / f"master.out{out_ext}"
    result = run_cli("restore", source, "-o", out, "--model", "identity", "-q")
    assert result.returncode == 2, result.stderr
    assert said in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "write .mov or .mkv" in result.stderr  # the containers that keep it, never the output's own
    assert not out.exists() and not list(tmp_path.glob(".master.out*"))


def test_the_refusal_never_suggests_the_output_s_own_container():
    from gpen_video.run.sinks import _keeping_suffixes

    assert _keeping_suffixes(Path("reel.MOV")) == ".mkv"
    assert _keeping_suffixes(Path("reel.mkv")) == ".mov"
    assert _keeping_suffixes(Path("reel.mxf")) == ".mov or .mkv"


def test_matroska_aspect_without_ffmpeg_is_refused(tmp_path, monkeypatch):
    """Where Matroska would lose the aspect (FFV1) and no ffmpeg CLI can set it, the sink refuses as it is made;
    MOV keeps it itself and needs none."""
    from gpen_video.errors import ConfigError, DependencyError
    from gpen_video.io.encoding import EncodeSettings
    from gpen_video.io.probe import probe
    from gpen_video.run import sinks

    def no_ffmpeg(configured=None):
        raise DependencyError("no ffmpeg")

    source = tmp_path / "pal.mkv"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=90x72:rate=25:duration=0.08", "-vf", "setsar=16/15", "-c:v", "ffv1",
            "-pix_fmt", "yuv422p10le", str(source))  # fmt: skip
    info = probe(source)
    monkeypatch.setattr(sinks, "find_ffmpeg", no_ffmpeg)
    with pytest.raises(ConfigError, match="cannot keep the pixel aspect 16:15"):
        sinks.aspect_binary(tmp_path / "out.mkv", info, EncodeSettings("ffv1", "yuv422p10le", {"g": "1"}))
    assert sinks.aspect_binary(tmp_path / "out.mov", info, EncodeSettings("prores_ks", "yuv422p10le")) is None
