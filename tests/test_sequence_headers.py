"""Issue 22: film scans keep the header fields that say how their picture is read; a scan into a MOV is ProRes;
``probe`` takes a sequence.

Inputs are made with the ffmpeg CLI (and, for what it cannot write, with tifffile or with the SMPTE 268M layout
written out below, byte by byte); outputs are judged with ffprobe, the ffmpeg CLI and tifffile, and, for DPX
fields no tool names (printing density, frame rate), by comparing the bytes at the standard's offsets: never
with the project's own readers.
"""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conformance_cases import ffmpeg, ffmpeg_exe, ffprobe_json

from gpen_video.cli import main

pytestmark = pytest.mark.usefixtures("restore_gpen_logger")  # main() is called in-process (fast)

SIZE = "64x48"
SRC = f"testsrc2=size={SIZE}:rate=24"


def _scan(folder: Path, pattern: str, frames: int, *args: str, start: int = 1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    ffmpeg("-f", "lavfi", "-i", SRC, "-frames:v", str(frames), *args, "-start_number", str(start), folder / pattern)
    return folder / pattern


def _restore(spec: Path, out: Path, *extra: str) -> int:
    return main(["restore", str(spec), "-o", str(out), "--model", "identity", "-q", *extra])


def _stream(path: Path, entries: str) -> dict:
    return ffprobe_json(path, "-show_entries", f"stream={entries}")["streams"][0]


def _frame_tags(path: Path) -> dict:
    return ffprobe_json(path, "-show_frames", "-show_entries", "frame_tags")["frames"][0].get("tags", {})


def _samples(path: Path, pix_fmt: str) -> bytes:
    return subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", pix_fmt, "-"],
                          capture_output=True, check=True).stdout  # fmt: skip


# -- SMPTE 268M, written out here so the test does not share the code under test's reading of it --------------
def _order(data: bytes) -> str:
    return {b"SDPX": ">", b"XPDS": "<"}[bytes(data[:4])]


def _field(data: bytes, offset: int, fmt: str):
    return struct.unpack_from(_order(data) + fmt, data, offset)[0]


def _add_film_and_tv_headers(path: Path, transfer: int, timecode: int, rate: float) -> None:
    """An FFmpeg-made DPX (1664-byte header, no industry headers) given what a film scanner writes: transfer and
    colorimetric codes, a film and a television header (frame rate, BCD timecode), undefined fields all 0xFF."""
    data = bytearray(path.read_bytes())
    order = _order(data)
    industry = bytearray(b"\xff" * 384)
    struct.pack_into(order + "f", industry, 1724 - 1664, rate)  # film header: frame rate
    struct.pack_into(order + "I", industry, 1920 - 1664, timecode)  # television header: SMPTE timecode, BCD
    struct.pack_into(order + "f", industry, 1940 - 1664, rate)
    data[801], data[802] = transfer, transfer  # image element 0: transfer, colorimetric
    struct.pack_into(order + "4I", data, 784, 95, 0, 685, 0)  # reference low/high code (density quantities: 0)
    data[1556:1570] = b"Scanity HDR 1\0"  # input device
    for at, value in ((4, 2048), (16, len(data) + 384), (28, 384), (808, 2048)):  # offsets, file size, sizes
        struct.pack_into(order + "I", data, at, value)
    path.write_bytes(bytes(data[:1664] + industry + data[1664:]))


# -- DPX into a folder -----------------------------------------------------------------------------------------
def test_a_linear_10_bit_dpx_keeps_transfer_and_pixel_aspect(tmp_path, capsys):
    """Before: transfer linear came back 'unknown' (DPX code 4, unspecified video), pixel aspect 4:3 as N/A."""
    spec = _scan(tmp_path / "in", "lin_%04d.dpx", 3, "-vf", "setsar=4/3", "-pix_fmt", "gbrp10le",
                 "-color_trc", "linear")  # fmt: skip
    src = _stream(tmp_path / "in" / "lin_0001.dpx", "pix_fmt,color_transfer,sample_aspect_ratio")
    assert src == {"pix_fmt": "gbrp10le", "color_transfer": "linear", "sample_aspect_ratio": "4:3"}
    assert _restore(spec, tmp_path / "out") == 0
    for n in (1, 2, 3):
        out = tmp_path / "out" / f"lin_{n:04d}.dpx"
        assert _stream(out, "pix_fmt,color_transfer,sample_aspect_ratio") == src
        assert _samples(out, "gbrp10le") == _samples(tmp_path / "in" / out.name, "gbrp10le")  # faceless: as scanned
    assert capsys.readouterr().err == ""  # everything kept: nothing to say


@pytest.mark.parametrize("pix_fmt, transfer", [("gbrp10be", 1), ("rgb48le", 3)])  # printing density BE, log LE
def test_a_film_scan_keeps_its_film_and_tv_headers_frame_by_frame(tmp_path, pix_fmt, transfer):
    """Each output file has its own source file's timecode, the frame rate, transfer and colorimetric codes, the
    reference codes and the input device, in the output's byte order (a big-endian scan comes back little-endian)."""
    spec = _scan(tmp_path / "in", "reel_%06d.dpx", 3, "-vf", "setsar=2/1", "-pix_fmt", pix_fmt, start=86400)
    for i, path in enumerate(sorted((tmp_path / "in").iterdir())):
        _add_film_and_tv_headers(path, transfer, 0x10000000 + i, 23.976)
    first = tmp_path / "in" / "reel_086400.dpx"
    assert _frame_tags(first)["timecode"] == "10:00:00:00"  # ffprobe reads the test's header as a scanner's
    assert _restore(spec, tmp_path / "out") == 0
    for i in range(3):
        src, out = (folder / f"reel_{86400 + i:06d}.dpx" for folder in (tmp_path / "in", tmp_path / "out"))
        assert _frame_tags(out)["timecode"] == f"10:00:00:{i:02d}"
        assert _stream(out, "sample_aspect_ratio")["sample_aspect_ratio"] == "2:1"
        a, b = src.read_bytes(), out.read_bytes()
        assert (b[801], b[802]) == (transfer, transfer)
        for offset, fmt in ((1724, "f"), (1940, "f"), (784, "I"), (792, "I"), (1920, "I"), (1924, "I")):
            assert _field(b, offset, fmt) == _field(a, offset, fmt), offset
        assert b[1556:1570] == b"Scanity HDR 1\0"
        raw = "gbrp10le" if pix_fmt.startswith("gbrp") else "rgb48le"
        assert _samples(out, raw) == _samples(src, raw)


# -- TIFF into a folder ----------------------------------------------------------------------------------------
def _tags(path: Path) -> dict:
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        return {tag.name: tag.value for tag in page.tags.values()} | {"pixels": page.asarray()}


def test_tiff_resolution_icc_and_description_are_kept(tmp_path, capsys):
    """Before: 300 dpi came back 72 dpi; the ICC profile, description, artist and copyright were dropped."""
    rgb = np.random.default_rng(22).integers(0, 65536, (48, 64, 3), dtype=np.uint16)
    icc = bytes(range(256)) * 2
    (tmp_path / "in").mkdir()
    for n in (1, 2):  # big-endian, as some scanners write; FFmpeg's TIFF encoder writes little-endian only
        tifffile.imwrite(tmp_path / "in" / f"plate_{n:03d}.tif", rgb, photometric="rgb", byteorder=">", metadata=None,
                         resolution=(300, 300), resolutionunit="INCH", description=f"reel 4, plate {n}",
                         software="ScanStation 2.1", iccprofile=icc,
                         extratags=[(315, "s", 0, "A. Archivist", True),
                                    (33432, "s", 0, "(c) Film Archive", True)])  # fmt: skip
    assert _restore(tmp_path / "in", tmp_path / "out") == 0
    for n in (1, 2):
        tags = _tags(tmp_path / "out" / f"plate_{n:03d}.tif")
        assert tags["XResolution"] == (300, 1) and tags["YResolution"] == (300, 1) and tags["ResolutionUnit"] == 2
        assert tags["InterColorProfile"] == icc
        assert tags["ImageDescription"] == f"reel 4, plate {n}"  # each file its own
        assert tags["Artist"] == "A. Archivist" and tags["Copyright"] == "(c) Film Archive"
        assert tags["PhotometricInterpretation"] == 2 and tags["BitsPerSample"] == (16, 16, 16)
        assert np.array_equal(tags["pixels"], rgb)
    err = capsys.readouterr().err
    assert "Software 'ScanStation 2.1'" in err and err.count("\n") == 1, err  # said once, even with -q


def test_an_ffmpeg_tiff_keeps_its_dpi(tmp_path):
    spec = _scan(tmp_path / "in", "s_%04d.tif", 2, "-pix_fmt", "rgb48le", "-dpi", "600")
    assert _restore(spec, tmp_path / "out") == 0
    assert _tags(tmp_path / "out" / "s_0002.tif")["XResolution"] == (600, 1)


# -- PNG into a folder -----------------------------------------------------------------------------------------
def test_png_text_icc_and_pixel_size_are_kept(tmp_path, capsys):
    """Before: the text chunks (description, author) were dropped."""
    from PIL import Image, PngImagePlugin

    spec = _scan(tmp_path / "in", "q_%03d.png", 2, "-vf", "setsar=2/1", "-pix_fmt", "rgb24")
    with Image.open(tmp_path / "in" / "q_002.png") as picture:  # a second writer: text, ICC profile, 300 dpi
        text = PngImagePlugin.PngInfo()
        text.add_text("Description", "reel 4, shot 12")
        text.add_text("Author", "A. Archivist")
        picture.save(tmp_path / "in" / "q_002.png", pnginfo=text, icc_profile=bytes(range(256)) * 2, dpi=(300, 300))
    assert _restore(spec, tmp_path / "out") == 0
    assert _stream(tmp_path / "out" / "q_001.png", "sample_aspect_ratio")["sample_aspect_ratio"] == "2:1"
    (frame,) = ffprobe_json(tmp_path / "out" / "q_002.png", "-show_frames", "-show_entries",
                            "frame_tags:frame=side_data")["frames"]  # fmt: skip
    assert frame["tags"] == {"Description": "reel 4, shot 12", "Author": "A. Archivist"}
    assert [(d["side_data_type"], d["size"]) for d in frame["side_data_list"]] == [("ICC profile", 512)]
    with Image.open(tmp_path / "out" / "q_002.png") as written:
        assert round(written.info["dpi"][0]) == 300
    assert capsys.readouterr().err == ""


# -- into a MOV --------------------------------------------------------------------------------------------------
def test_a_10_bit_scan_into_a_mov_is_prores_4444_with_timecode_and_aspect(tmp_path, capsys):
    """Before: HEVC 4:4:4 10-bit RGB (gbrp10le), which editors do not open."""
    spec = _scan(tmp_path / "in", "r_%04d.dpx", 3, "-vf", "setsar=2/1", "-pix_fmt", "gbrp10le")
    for path in (tmp_path / "in").iterdir():
        _add_film_and_tv_headers(path, 1, 0x01000000, 24.0)
    out = tmp_path / "r.mov"
    assert _restore(spec, out) == 0
    video = _stream(out, "codec_name,profile,pix_fmt,color_space,color_range,sample_aspect_ratio,nb_frames")
    assert video["codec_name"] == "prores" and video["profile"] == "4444" and video["nb_frames"] == "3"
    assert video["pix_fmt"].startswith("yuv444p1") and video["color_space"] == "bt709" and video["color_range"] == "tv"
    assert video["sample_aspect_ratio"] == "2:1"
    assert ffprobe_json(out, "-show_entries", "stream_tags=timecode")["streams"][0]["tags"]["timecode"] == "01:00:00:00"
    err = capsys.readouterr().err
    assert "printing density' has no video tag" in err and "Y'CbCr" in err, err


def test_an_8_bit_scan_into_a_mov_is_prores_422_hq(tmp_path):
    spec = _scan(tmp_path / "in", "p_%03d.png", 2, "-pix_fmt", "rgb24")
    assert _restore(spec, tmp_path / "p.mov") == 0
    video = _stream(tmp_path / "p.mov", "codec_name,profile,pix_fmt")
    assert video == {"codec_name": "prores", "profile": "HQ", "pix_fmt": "yuv422p10le"}


# -- probe -------------------------------------------------------------------------------------------------------
def _probe(capsys, *args: str | Path) -> tuple[int, str, str]:
    code = main(["probe", *map(str, args)])
    said = capsys.readouterr()
    return code, said.out, said.err


def test_probe_shows_range_gaps_depth_and_header(tmp_path, capsys):
    """Before: 'no such file', exit 2."""
    spec = _scan(tmp_path / "in", "lin_%04d.dpx", 5, "-vf", "setsar=4/3", "-pix_fmt", "gbrp10le",
                 "-color_trc", "linear", start=10)  # fmt: skip
    for n in (12, 13):
        (tmp_path / "in" / f"lin_{n:04d}.dpx").unlink()
    code, out, err = _probe(capsys, spec)
    assert code == 0, err
    assert "frames 10-14, 3 files" in out and "missing: 2 frame(s): 12-13" in out
    assert "gbrp10le, 10-bit" in out and "64x48" in out
    assert "transfer linear (2)" in out and "pixel aspect 4:3" in out
    code, out, _ = _probe(capsys, tmp_path / "in", "--json")
    found = json.loads(out)
    assert (found["first"], found["last"], found["missing"], found["bit_depth"]) == (10, 14, ["12-13"], 10)
    code, out, _ = _probe(capsys, spec, "--plan", "-o", tmp_path / "x.mov")
    assert "plan: video" in out and "prores_ks yuv444p10le" in out and "ProRes 4444" in out
    code, out, _ = _probe(capsys, spec, "--plan")
    assert "plan: folder" in out and "dpx gbrp10le" in out and "header fields kept" in out


def test_probe_refuses_a_bad_sequence_in_one_line(tmp_path, capsys):
    _scan(tmp_path / "mixed", "m_%03d.tif", 2, "-pix_fmt", "rgb24")
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=32x48", "-frames:v", "1", "-update", "1", tmp_path / "mixed" / "m_003.tif"
    )
    (tmp_path / "empty").mkdir()
    for spec in (tmp_path / "mixed", tmp_path / "empty"):
        code, out, err = _probe(capsys, spec)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert "m_003.tif is 32x48" in _probe(capsys, tmp_path / "mixed")[2]
