"""The written file's check reads its packets, not every picture, and still refuses a damaged write.

``io.output.verify_video`` takes a file's presentation times from its packets (sorted pts) or, for an intra
stream in MOV/MP4, from the sample table, and decodes the first and last GOP only. Each file here is made with
the ffmpeg CLI and damaged with plain byte edits or the CLI; what it should hold is ffprobe's word.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
from conformance_cases import ffmpeg, ffprobe_json
from read_counting import counting_reads

from gpen_video.errors import VerificationError
from gpen_video.io.output import verify_video

# (name, encoder arguments): intra in NUT (packets read), long GOP with B-frames in TS and MP4 (packets read: the
# sample table holds decode times), intra in MOV (its sample table read, not its packets), intra and long GOP in
# Matroska (its block headers read, not its frames)
FILES = {
    "ffv1.nut": ["-c:v", "ffv1"],
    "h264.ts": ["-c:v", "libx264", "-preset", "ultrafast", "-g", "8", "-bf", "2"],
    "h264.mp4": ["-c:v", "libx264", "-preset", "ultrafast", "-g", "8", "-bf", "2"],
    "ffv1.mov": ["-c:v", "ffv1", "-g", "1", "-movflags", "+faststart"],
    "ffv1.mkv": ["-c:v", "ffv1", "-g", "1"],
    "h264.mkv": ["-c:v", "libx264", "-preset", "ultrafast", "-g", "8", "-bf", "2"],
}


def _make(folder: Path, name: str, size: str = "64x48", frames: int = 24, extra: tuple[str, ...] = ()) -> Path:
    path = folder / name
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25", "-frames:v", str(frames), *extra, *FILES[name],
           path)  # fmt: skip
    return path


def _truth(path: Path) -> tuple[list[int], Fraction]:
    """ffprobe's video pts, in presentation order, and the stream's time base."""
    probed = ffprobe_json(path, "-select_streams", "v:0", "-show_entries", "packet=pts:stream=time_base")
    return sorted(int(p["pts"]) for p in probed["packets"]), Fraction(probed["streams"][0]["time_base"])


def _damaged(path: Path, name: str, edit) -> Path:  # type: ignore[no-untyped-def]
    out = path.with_name(f"{name}-{path.name}")
    out.write_bytes(bytes(edit(bytearray(path.read_bytes()))))
    return out


def _flip_middle(data: bytearray) -> bytearray:
    middle = len(data) // 2
    data[middle : middle + 512] = bytes(b ^ 0x5A for b in data[middle : middle + 512])
    return data


@pytest.mark.parametrize("name", list(FILES))
def test_a_whole_file_passes_and_a_missing_frame_is_caught(name: str, tmp_path: Path) -> None:
    path = _make(tmp_path, name)
    pts, tb = _truth(path)
    assert len(pts) == 24
    verify_video(path, pts, tb, {})
    # the same pictures with the 11th dropped by the CLI (the others keep their times; one more at the end)
    (tmp_path / "short").mkdir()
    short = _make(tmp_path / "short", name, extra=("-vf", "select=not(eq(n\\,10))", "-fps_mode", "passthrough"))
    with pytest.raises(VerificationError, match=r"frame 10: output timestamp"):
        verify_video(short, pts, tb, {})


@pytest.mark.parametrize("name", ["ffv1.nut", "h264.ts"])
def test_bytes_damaged_in_the_middle_are_caught(name: str, tmp_path: Path) -> None:
    path = _make(tmp_path, name)
    pts, tb = _truth(path)
    with pytest.raises(VerificationError):
        verify_video(_damaged(path, "flipped", _flip_middle), pts, tb, {})


@pytest.mark.parametrize("name", list(FILES))
def test_a_truncated_last_gop_is_caught(name: str, tmp_path: Path) -> None:
    path = _make(tmp_path, name)
    pts, tb = _truth(path)
    cut = _damaged(path, "cut", lambda data: data[: len(data) - len(data) // 12])
    with pytest.raises(VerificationError):
        verify_video(cut, pts, tb, {})


def test_a_last_gop_that_does_not_decode_is_caught(tmp_path: Path) -> None:
    """Every packet there, at its time: only decoding the last GOP shows its key frame's picture is gone."""
    path = _make(tmp_path, "h264.mp4")
    pts, tb = _truth(path)
    probed = ffprobe_json(path, "-select_streams", "v:0", "-show_entries", "packet=pos,size,flags")["packets"]
    last_key = [p for p in probed if p["flags"].startswith("K")][-1]
    start, size = int(last_key["pos"]), int(last_key["size"])

    def blank_key(data: bytearray) -> bytearray:
        data[start + 4 : start + size] = bytes(size - 4)  # its length prefix kept: the packet demuxes whole
        return data

    with pytest.raises(VerificationError, match="last GOP"):
        verify_video(_damaged(path, "blank", blank_key), pts, tb, {})


def test_an_intra_mov_is_checked_from_its_sample_table(tmp_path: Path, monkeypatch) -> None:
    """Nothing read but the header and the two ends: a lossless master is not read back whole."""
    path = _make(tmp_path, "ffv1.mov", size="320x240", frames=30, extra=("-pix_fmt", "yuv444p"))
    pts, tb = _truth(path)
    with counting_reads(monkeypatch, path) as log:
        verify_video(path, pts, tb, {})
    assert log.ratio() < 0.35, log.reads
    # ... and a timestamp off by a frame in the middle is still seen (from the table)
    wrong = [*pts[:15], pts[15] + 1, *pts[16:]]
    with pytest.raises(VerificationError, match="frame 15"):
        verify_video(path, wrong, tb, {})


@pytest.mark.parametrize("codec", [["-c:v", "ffv1", "-g", "1"], ["-c:v", "libx264", "-g", "8", "-bf", "2"]])
def test_a_matroska_file_is_checked_from_its_block_headers(codec: list[str], tmp_path: Path, monkeypatch) -> None:
    """An FFV1 master (or x264 with B-frames) in Matroska: its blocks' headers and two ends read, not its frames;
    the times and sizes are ffprobe's."""
    path = tmp_path / "master.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-f", "lavfi", "-i", "sine", "-frames:v", "200",
           "-t", "8", *codec, "-pix_fmt", "yuv444p", "-c:a", "flac", path)  # fmt: skip
    pts, tb = _truth(path)
    sizes = [int(p["size"]) for p in ffprobe_json(path, "-select_streams", "v:0", "-show_entries",
                                                  "packet=size")["packets"]]  # fmt: skip
    with counting_reads(monkeypatch, path, python_opens=True) as log:
        verify_video(path, pts, tb, {1: Fraction(0)}, sizes=sizes)
    assert log.ratio() < 0.35, log.reads
    wrong = [*pts[:30], pts[30] + 1, *pts[31:]]
    with pytest.raises(VerificationError, match="frame 30"):
        verify_video(path, sorted(wrong), tb, {})
    with pytest.raises(VerificationError, match="packet 40"):
        verify_video(path, pts, tb, {}, sizes=[*sizes[:40], sizes[40] + 1, *sizes[41:]])


def test_a_matroska_file_whose_headers_disagree_with_the_demux_is_read_through(tmp_path: Path, monkeypatch) -> None:
    """Headers that do not stand for the demux (here: sizes off by varying amounts) are given up after the two ends
    were demuxed, and the read-through that follows still sees every frame from the first."""
    from gpen_video.io import output

    path = _make(tmp_path, "h264.mkv", frames=48)
    pts, tb = _truth(path)
    real = output.read_blocks

    def uneven(file: Path):  # type: ignore[no-untyped-def]
        blocks = real(file)
        video = blocks.tracks[blocks.track_numbers[0]]
        video.sizes = [size + i % 3 for i, size in enumerate(video.sizes)]
        return blocks

    monkeypatch.setattr(output, "read_blocks", uneven)
    verify_video(path, pts, tb, {})
    with pytest.raises(VerificationError, match="frame 20"):
        verify_video(path, [*pts[:20], pts[20] + 1, *pts[21:]], tb, {})


def test_a_side_stream_written_but_missing_from_the_file_is_caught(tmp_path: Path) -> None:
    """Streams present: one the writer wrote packets of must be in the file (found in the same pass as the video)."""
    path = tmp_path / "with_audio.nut"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-f", "lavfi", "-i", "sine=frequency=440", "-t", "1",
           "-c:v", "ffv1", "-c:a", "pcm_s16le", path)  # fmt: skip
    pts, tb = _truth(path)
    verify_video(path, pts, tb, {1: Fraction(0)})
    silent = tmp_path / "silent.nut"
    ffmpeg("-i", path, "-map", "0:v", "-c", "copy", silent)
    with pytest.raises(VerificationError, match="#1 were written"):
        verify_video(silent, pts, tb, {1: Fraction(0)})


def test_a_one_gop_clip_is_decoded_once_and_its_damage_still_caught(tmp_path: Path, monkeypatch) -> None:
    """A preview or a short clip is one GOP (x264 keeps 250 frames apart): its first GOP is its last, decoded once,
    with frame threads; a picture blanked in its middle still stops the check."""
    from gpen_video.io import output

    path = tmp_path / "one-gop.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-frames:v", "24", "-c:v", "libx264", "-preset",
           "ultrafast", "-g", "250", "-bf", "2", path)  # fmt: skip
    pts, tb = _truth(path)
    calls: list[tuple[str, int, str]] = []
    checked = output._check_decoded

    def counted(name, which, decoder, packets, must):  # type: ignore[no-untyped-def]
        calls.append((which, len(packets), decoder.thread_type.name))
        return checked(name, which, decoder, packets, must)

    monkeypatch.setattr(output, "_check_decoded", counted)
    verify_video(path, pts, tb, {})
    assert calls == [("first and last GOP", 24, "AUTO")]
    probed = ffprobe_json(path, "-select_streams", "v:0", "-show_entries", "packet=pos,size")["packets"]
    start, size = int(probed[12]["pos"]), int(probed[12]["size"])

    def blank(data: bytearray) -> bytearray:
        data[start + 4 : start + size] = bytes(size - 4)
        return data

    with pytest.raises(VerificationError, match="first and last GOP"):
        verify_video(_damaged(path, "blank", blank), pts, tb, {})
