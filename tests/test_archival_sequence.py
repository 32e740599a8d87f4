"""Image sequences: DPX/TIFF/PNG/EXR in, the same kind out at the same bit depth and numbering, gaps, stills, resume.

Inputs are made with the ffmpeg CLI; outputs are checked with ffprobe (``pix_fmt``) and with samples the ffmpeg
CLI decodes to raw ``rgb48le``/``gbrp10le`` — never with the code under test.
"""

from __future__ import annotations

import logging
import os
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conformance_cases import deep_16bit_source, ffmpeg_exe, ffprobe_exe

from gpen_video.errors import InputError, OutputError
from gpen_video.io.sequence import (
    ImageSequenceReader,
    ImageSequenceWriter,
    MissingFramesError,
    SequenceError,
    find_sequence,
    looks_like_sequence,
)

FFMPEG = ffmpeg_exe()
FFPROBE = ffprobe_exe() or "ffprobe"
W, H = 48, 32


DEEP = deep_16bit_source(f"{W}x{H}")  # true 16-bit content: every sample differs in its low byte


def _make(folder: Path, pattern: str, pix_fmt: str, frames: int = 4, start: int = 1, extra: tuple[str, ...] = ()):
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [FFMPEG, "-loglevel", "error", "-y", "-f", "lavfi", "-i", DEEP, "-frames:v",
         str(frames), "-pix_fmt", pix_fmt, *extra, "-start_number", str(start), str(folder / pattern)],
        check=True,
    )  # fmt: skip


def _pix_fmt(path: Path) -> str:
    return subprocess.run(
        [FFPROBE, "-v", "error", "-show_entries", "stream=pix_fmt", "-of", "csv=p=0", str(path)],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip


def _raw(path: Path, pix_fmt: str = "rgb48le") -> np.ndarray:
    out = subprocess.run(
        [FFMPEG, "-loglevel", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", pix_fmt, "-"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    a = np.frombuffer(out, "<u2")
    return a.reshape(H, W, 3) if pix_fmt == "rgb48le" else a.reshape(3, H, W)


def _with_patch(picture: av.VideoFrame, value: int) -> av.VideoFrame:
    """A 'restored' picture: a patch of a 16-bit value that 8 bits cannot hold, the rest as decoded."""
    rgb = picture.to_ndarray(format="rgb48le").copy()
    rgb[8:16, 8:24] = value
    return av.VideoFrame.from_ndarray(rgb, format="rgb48le")


@pytest.mark.parametrize(
    "pattern, spec, pix_fmt, start",
    [
        ("reel_%06d.dpx", "reel_%06d.dpx", "rgb48le", 86400),  # 16-bit DPX, printf pattern, film frame numbers
        ("scan_%04d.tif", "scan_*.tif", "rgb48le", 1),  # 16-bit TIFF, glob
        ("p_%05d.png", ".", "rgb48be", 7),  # 16-bit PNG, a folder
    ],
)
def test_16_bit_round_trip_keeps_depth_and_numbering(tmp_path, pattern, spec, pix_fmt, start):
    src = tmp_path / "in"
    _make(src, pattern, pix_fmt, frames=4, start=start)
    sequence = find_sequence(src / spec if spec != "." else src)
    assert sequence.pattern == pattern and sequence.start_number == start and len(sequence.files) == 4
    reader = ImageSequenceReader(sequence)
    assert reader.format.bit_depth == 16 and reader.format.pix_fmt == pix_fmt
    out = tmp_path / "out"
    writer = ImageSequenceWriter(out, sequence, reader.format.pix_fmt)
    frames = list(reader)
    assert [f.pts for f in frames] == [0, 1, 2, 3] and frames[0].time_base == Fraction(1, 24)
    for f in frames:
        number = reader.number_of(f)
        writer.write(number, _with_patch(f.source, 12345) if number == start + 2 else f.source)
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(p.name for p in src.iterdir())  # same names, same numbering
    for name in names:
        assert _pix_fmt(out / name) == pix_fmt  # same bit depth, by ffprobe
        before, after = _raw(src / name), _raw(out / name)
        if name == sequence.name_for(start + 2):
            assert (after[8:16, 8:24] == 12345).all()  # a value only 16 bits hold, kept
            mask = np.ones((H, W), bool)
            mask[8:16, 8:24] = False
            assert np.array_equal(after[mask], before[mask])
        else:
            assert np.array_equal(after, before)  # untouched frames: every sample as scanned
    assert (_raw(src / names[0]) % 257 != 0).mean() > 0.9  # the input really uses 16 bits


@pytest.mark.parametrize("pix_fmt, bits", [("gbrp10le", 10), ("gbrp12le", 12), ("rgb24", 8)])
def test_dpx_10_12_8_bit_round_trip(tmp_path, pix_fmt, bits):
    _make(tmp_path / "in", "r_%04d.dpx", pix_fmt, frames=2, start=100)
    sequence = find_sequence(tmp_path / "in" / "r_%04d.dpx")
    reader = ImageSequenceReader(sequence)
    assert reader.format.bit_depth == bits
    writer = ImageSequenceWriter(tmp_path / "out", sequence, reader.format.pix_fmt)
    for f in reader:
        writer.write(reader.number_of(f), f.source)
    for name in ("r_0100.dpx", "r_0101.dpx"):
        assert _pix_fmt(tmp_path / "out" / name) == pix_fmt
        assert np.array_equal(_raw(tmp_path / "out" / name), _raw(tmp_path / "in" / name))


def test_a_missing_frame_is_reported_never_skipped(tmp_path, caplog):
    _make(tmp_path, "reel_%06d.dpx", "rgb48le", frames=8, start=1000)
    (tmp_path / "reel_001003.dpx").unlink()
    (tmp_path / "reel_001005.dpx").unlink()
    (tmp_path / "reel_001006.dpx").unlink()
    with pytest.raises(MissingFramesError) as err:
        find_sequence(tmp_path / "reel_%06d.dpx")
    assert isinstance(err.value, InputError)  # one line on stderr, exit 2
    assert [(g.first, g.last) for g in err.value.gaps] == [(1003, 1003), (1005, 1006)]
    assert "3 frame(s) missing: 1003, 1005-1006" in str(err.value)
    with caplog.at_level(logging.WARNING):
        sequence = find_sequence(tmp_path / "reel_%06d.dpx", on_gap="warn")
    assert "1005-1006" in caplog.text
    reader = ImageSequenceReader(sequence, fps=25)
    frames = list(reader)
    assert [f.pts for f in frames] == [0, 1, 2, 4, 7]  # times keep the holes
    assert [reader.number_of(f) for f in frames] == [1000, 1001, 1002, 1004, 1007]
    assert frames[0].time_base == Fraction(1, 25)
    assert "3 missing" in sequence.describe()


def test_a_still_is_a_sequence_of_one(tmp_path):
    _make(tmp_path, "portrait.png", "rgb48be", frames=1, extra=("-update", "1"))
    assert looks_like_sequence(tmp_path / "portrait.png")
    sequence = find_sequence(tmp_path / "portrait.png")
    assert sequence.is_still and sequence.pattern == "portrait.png"
    reader = ImageSequenceReader(sequence)
    (frame,) = list(reader)
    assert frame.index == 0 and frame.pts == 0
    writer = ImageSequenceWriter(tmp_path / "out", sequence, reader.format.pix_fmt)
    path = writer.write(reader.number_of(frame), _with_patch(frame.source, 54321))
    assert path.name == "portrait.png" and _pix_fmt(path) == "rgb48be"
    assert (_raw(path)[8:16, 8:24] == 54321).all()


def test_resume_keeps_finished_frames_and_drops_partial_ones(tmp_path):
    _make(tmp_path / "in", "f_%03d.tif", "rgb48le", frames=4)
    sequence = find_sequence(tmp_path / "in" / "f_%03d.tif")
    reader = ImageSequenceReader(sequence)
    out = tmp_path / "out"
    writer = ImageSequenceWriter(out, sequence, reader.format.pix_fmt)
    frames = iter(reader)
    for _ in range(2):
        f = next(frames)
        writer.write(reader.number_of(f), f.source)
    stamp = os.stat(out / "f_001.tif").st_mtime_ns
    (out / "f_003.tif.partial-99999").write_bytes(b"half a frame")  # a crash mid-write
    (out / ".f_004.tif.partial-88888").write_bytes(b"half a frame")  # the same, named by atomic_write_bytes
    again = ImageSequenceWriter(out, sequence, reader.format.pix_fmt)
    assert not (out / "f_003.tif.partial-99999").exists() and not (out / ".f_004.tif.partial-88888").exists()
    done = again.done_numbers()
    assert done == {1, 2}
    rest = ImageSequenceReader(sequence, skip=done)
    left = list(rest)
    assert [rest.number_of(f) for f in left] == [3, 4] and [f.index for f in left] == [2, 3]
    for f in left:
        again.write(rest.number_of(f), f.source)
    assert os.stat(out / "f_001.tif").st_mtime_ns == stamp
    assert sorted(p.name for p in out.iterdir()) == ["f_001.tif", "f_002.tif", "f_003.tif", "f_004.tif"]


def test_exr_half_is_decoded_and_written_as_16_bit_tiff(tmp_path):
    _make(tmp_path / "in", "plate_%04d.exr", "gbrpf32le", frames=2, extra=("-c:v", "exr", "-format", "half"))
    sequence = find_sequence(tmp_path / "in")
    reader = ImageSequenceReader(sequence)
    assert sequence.codec == "exr" and reader.format.pix_fmt.startswith("gbrpf")
    writer = ImageSequenceWriter(tmp_path / "out", sequence, reader.format.pix_fmt)
    for f in reader:
        writer.write(reader.number_of(f), f.source)
    out = tmp_path / "out" / "plate_0001.tif"
    assert _pix_fmt(out) == "rgb48le"
    ours, ffmpegs = _raw(out).astype(int), _raw(tmp_path / "in" / "plate_0001.exr").astype(int)
    assert np.abs(ours - ffmpegs).max() <= 64  # half floats have 11 significant bits; FFmpeg's own conversion
    assert ours.max() > 60000 and ours.min() < 5000 and (ours % 257 != 0).mean() > 0.5


def test_bad_sequences_say_what_to_do(tmp_path):
    with pytest.raises(SequenceError, match="does not exist"):
        find_sequence(tmp_path / "nothing.dpx")
    with pytest.raises(SequenceError, match="no files match"):
        find_sequence(tmp_path / "reel_%06d.dpx")
    _make(tmp_path / "two", "a_%03d.png", "rgb24", frames=2)
    _make(tmp_path / "two", "b_%03d.png", "rgb24", frames=2)
    with pytest.raises(SequenceError, match="holds 2 sequences"):
        find_sequence(tmp_path / "two")
    seq = find_sequence(tmp_path / "two" / "a_%03d.png")
    with pytest.raises(OutputError, match="another folder"):
        ImageSequenceWriter(tmp_path / "two", seq, "rgb24")
    subprocess.run(
        [FFMPEG, "-loglevel", "error", "-y", "-f", "lavfi", "-i", "color=red:size=16x16", "-frames:v", "1",
         "-update", "1", str(tmp_path / "two" / "a_003.png")],
        check=True,
    )  # fmt: skip
    with pytest.raises(SequenceError, match="every file must match"):
        list(ImageSequenceReader(find_sequence(tmp_path / "two" / "a_%03d.png")))


@pytest.mark.parametrize("pix_fmt", ["rgb48le", "gbrp10le", "gbrp12le", "rgb24"])
def test_working_space_round_trip_is_exact(tmp_path, pix_fmt):
    """Through the pipeline's colour path (upright BGR, back with from_working): the samples survive exactly."""
    from gpen_video.io.colour import colour_of_frame, from_working

    _make(tmp_path / "in", "w_%03d.dpx", pix_fmt, frames=1)
    sequence = find_sequence(tmp_path / "in" / "w_%03d.dpx")
    reader = ImageSequenceReader(sequence)
    (frame,) = list(reader)
    colour = colour_of_frame(frame.source)
    bgr = frame.upright(colour, 0)
    assert bgr.dtype == (np.uint8 if pix_fmt == "rgb24" else np.uint16)
    if pix_fmt == "rgb48le":
        assert np.array_equal(bgr[..., ::-1], _raw(tmp_path / "in" / "w_001.dpx"))  # as ffmpeg decodes it
    writer = ImageSequenceWriter(tmp_path / "out", sequence, reader.format.pix_fmt)
    writer.write(reader.number_of(frame), from_working(bgr, colour, pix_fmt))
    raw_fmt = "gbrp10le" if pix_fmt == "gbrp10le" else "gbrp12le" if pix_fmt == "gbrp12le" else "rgb48le"
    assert np.array_equal(_raw(tmp_path / "out" / "w_001.dpx", raw_fmt), _raw(tmp_path / "in" / "w_001.dpx", raw_fmt))


def test_a_frame_that_fails_to_land_leaves_no_file(tmp_path, monkeypatch):
    """The rename into place fails (a crash there, a full disk): neither the frame nor its temporary file is left."""
    import gpen_video.io.output as output

    _make(tmp_path / "in", "f_%03d.tif", "rgb48le", frames=2)
    sequence = find_sequence(tmp_path / "in" / "f_%03d.tif")
    reader = ImageSequenceReader(sequence)
    out = tmp_path / "out"
    writer = ImageSequenceWriter(out, sequence, reader.format.pix_fmt)
    first, second = list(reader)
    writer.write(reader.number_of(first), first.source)

    def fail(temp, target, replace=False):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(output, "_rename_into_place", fail)
    with pytest.raises(OutputError, match="disk is full"):
        writer.write(reader.number_of(second), second.source)
    assert sorted(p.name for p in out.iterdir()) == ["f_001.tif"]
    assert writer.done_numbers() == {1}


def test_the_default_output_folder_is_beside_the_frames_folder_never_inside(tmp_path, monkeypatch):
    """A glob or pattern input writes where a folder input does (issue 25): beside the scans' folder, so a later
    glob of that folder never meets the output; a still is written beside itself, as a video is."""
    from gpen_video.run.sequence import default_sequence_output

    scans = tmp_path / "scans"
    scans.mkdir()
    assert default_sequence_output(scans) == tmp_path / "scans.restored"
    assert default_sequence_output(scans / "*.tif") == tmp_path / "scans.restored"
    assert default_sequence_output(scans / "reel_%06d.dpx") == tmp_path / "reel.restored"
    assert default_sequence_output(scans / "reel_??????.dpx") == tmp_path / "reel.restored"
    assert default_sequence_output(scans / "portrait.tif") == scans / "portrait.restored"
    monkeypatch.chdir(scans)
    assert default_sequence_output(Path("*.png")) == tmp_path / "scans.restored"


def test_a_sequence_job_knows_its_frame_count_for_the_time_left(tmp_path):
    """The progress bar's total for a film scan (issue 25: long runs showed no ETA): the sequence's files."""
    from gpen_video.config import load_config
    from gpen_video.run.restore import job_frames, restore_job

    scans = tmp_path / "scans"
    scans.mkdir()
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=32x24:r=24", "-frames:v", "5",
                    str(scans / "f_%04d.png")], check=True)  # fmt: skip
    assert job_frames(restore_job(scans / "f_%04d.png", None, load_config("default"))) == 5
