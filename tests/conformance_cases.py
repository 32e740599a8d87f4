"""The conformance matrix: inputs built with the ffmpeg CLI, outputs checked with ffprobe.

Each ``Case`` says how its input is made (ffmpeg arguments), how it is restored (extra ``restore``
flags, the output extension) and what must survive (``keeps``, checked by ``Check`` functions that
compare ffprobe's view of the input with ffprobe's view of the output). Nothing here uses the
project's own reader or writer, so the matrix does not share their assumptions.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any


def ffmpeg_exe() -> str:
    """The ffmpeg CLI: on PATH (Debian's package), else the binary inside the imageio-ffmpeg wheel."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def ffprobe_exe() -> str | None:
    return shutil.which("ffprobe")


def ffmpeg(*args: str | Path) -> None:
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *map(str, args)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"ffmpeg failed: {' '.join(cmd)}\n{done.stderr}")


@dataclass
class Probed:
    """ffprobe's view of a file: streams, format, chapters, and the video frames' timing and side data."""

    streams: list[dict[str, Any]]
    format: dict[str, Any]
    chapters: list[dict[str, Any]]
    frames: list[dict[str, Any]]  # video frames in presentation order as decoded

    @property
    def video(self) -> dict[str, Any]:
        return next(s for s in self.streams if s["codec_type"] == "video" and not s["disposition"]["attached_pic"])

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [s for s in self.streams if s["codec_type"] == kind]

    def frame_times(self) -> list[Fraction]:
        tb = Fraction(self.video["time_base"])
        stamps = [f.get("pts", f.get("best_effort_timestamp")) for f in self.frames]
        return [int(t) * tb for t in stamps if t is not None]


def ffprobe_json(path: Path, *args: str) -> dict[str, Any]:
    """ffprobe's JSON answer about ``path``, for the given ``-show_*``/``-select_streams`` arguments."""
    exe = ffprobe_exe()
    assert exe, "ffprobe is needed (scripts/setup.sh --test installs Debian's ffmpeg)"
    cmd = [exe, "-v", "error", "-of", "json", *args, str(path)]
    return json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


def ffprobe(path: Path) -> Probed:
    meta = ffprobe_json(path, "-show_streams", "-show_format", "-show_chapters")
    frames = ffprobe_json(path, "-select_streams", "V:0", "-show_frames",
                          "-show_entries", "frame=pts,best_effort_timestamp,width,height,side_data_list,"
                          "interlaced_frame,top_field_first,pix_fmt,sample_aspect_ratio,pict_type")  # fmt: skip
    return Probed(meta.get("streams", []), meta.get("format", {}), meta.get("chapters", []), frames.get("frames", []))


Check = Callable[[Probed, Probed], None]


@dataclass
class Case:
    name: str
    ext: str  # input extension
    build: list[str]  # ffmpeg arguments between the tool and the output path (inputs, codecs, tags)
    keeps: str  # what must survive, in words
    checks: list[Check]
    out_ext: str | None = None  # output extension (default: the input's)
    restore_args: list[str] = field(default_factory=list)
    expect_warning: str | None = None  # a substring stderr must hold (survives -q)
    faces: bool = False  # build from a real face picture instead of testsrc2
    damage: Callable[[Path], None] | None = None  # applied to the built input (truncation, corruption)
    strict_fails: bool = False  # with --strict the run must fail with one line, exit 2
    known_gap: str | None = None  # an xfail(strict) reason: a loss this PyAV cannot yet avoid (listed in the report)
    remux: list[str] | None = None  # a second ffmpeg pass, ``-i built -c copy REMUX`` (tags 5.1 sets only then)


# -- sources ---------------------------------------------------------------------------------------


ASS_HEADER = """[Script Info]
ScriptType: v4.00+

[V4+ Styles]
Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, \
Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, \
MarginV, Encoding
Style: Default,Arial,20,&H00FFFFFF,&H000000FF,&H00000000,&H00000000,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,1

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
"""


def ass_script(*dialogues: str) -> str:
    """An ASS subtitle file: one default style, one ``Dialogue:`` line each (``0:00:00.50,0:00:01.20,Text``)."""
    return ASS_HEADER + "".join(f"Dialogue: 0,{start},{end},Default,,0,0,0,,{text}\n"
                                for start, end, text in (d.split(",", 2) for d in dialogues))  # fmt: skip


def deep_16bit_source(size: str, rate: int = 24) -> str:
    """A lavfi source of true 16-bit RGB (not 8-bit x 257): every sample value differs in its low byte."""
    return (
        f"nullsrc=size={size}:rate={rate},format=gbrp16le,geq=r='mod(X*1361+Y*97+N*4099,65536)'"
        ":g='mod(X*31+Y*2039+N*17,65536)':b='mod(65535-X*977-Y*13,65536)'"
    )


def video_src(size: str = "64x48", rate: str = "25", seconds: float = 0.4) -> list[str]:
    return ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}"]


def tone(seconds: float = 0.4, rate: int = 48000, freq: int = 440) -> list[str]:
    return ["-f", "lavfi", "-i", f"sine=frequency={freq}:sample_rate={rate}:duration={seconds}"]


# -- checks: each compares ffprobe's input and output ----------------------------------------------


def same_frame_times(src: Probed, out: Probed) -> None:
    """Every frame at the input's time, in the input's order (no sorting), relative to the first."""
    a, b = src.frame_times(), out.frame_times()
    assert len(b) == len(a), f"{len(b)} frames out, {len(a)} in"
    tol = Fraction(1, 1000)
    assert all(abs((x - a[0]) - (y - b[0])) <= tol for x, y in zip(a, b, strict=True)), (a, b)


def video_field(*keys: str) -> Check:
    def check(src: Probed, out: Probed) -> None:
        for key in keys:
            assert out.video.get(key) == src.video.get(key), (
                f"video {key}: {out.video.get(key)} != {src.video.get(key)}"
            )

    check.__name__ = f"video_{'_'.join(keys)}"
    return check


def video_is(key: str, value: Any) -> Check:
    def check(src: Probed, out: Probed) -> None:
        assert out.video.get(key) == value, f"video {key}: {out.video.get(key)} != {value}"

    check.__name__ = f"video_{key}_is_{value}"
    return check


def video_is_one_of(key: str, *values: Any) -> Check:
    def check(src: Probed, out: Probed) -> None:
        assert out.video.get(key) in values, f"video {key}: {out.video.get(key)} not in {values}"

    check.__name__ = f"video_{key}_in"
    return check


def video_codec_in(*codecs: str) -> Check:
    def check(src: Probed, out: Probed) -> None:
        assert out.video["codec_name"] in codecs, out.video["codec_name"]

    return check


def no_b_frames(src: Probed, out: Probed) -> None:
    """No B-frames in a container that stores no presentation order (decode order is display order)."""
    kinds = [f.get("pict_type") for f in out.frames]
    assert kinds and "B" not in kinds, kinds


def same_streams(kind: str, *keys: str) -> Check:
    """Every stream of ``kind`` is in the output, with the same codec (and ``keys``), tags and dispositions."""

    def check(src: Probed, out: Probed) -> None:
        a, b = src.of_type(kind), out.of_type(kind)
        assert len(b) == len(a), f"{len(b)} {kind} streams out, {len(a)} in"
        for x, y in zip(a, b, strict=True):
            assert y.get("codec_name") == x.get("codec_name"), (y.get("codec_name"), x.get("codec_name"))
            for key in keys:
                assert y.get(key) == x.get(key), (kind, key, y.get(key), x.get(key))
            for tag in ("language", "title", "filename", "mimetype"):
                if tag in x.get("tags", {}):
                    assert y.get("tags", {}).get(tag) == x["tags"][tag], (kind, tag, y.get("tags"))
            for flag in ("default", "forced"):
                assert y["disposition"][flag] == x["disposition"][flag], (kind, flag)

    check.__name__ = f"same_{kind}"
    return check


def stream_count(kind: str, count: int) -> Check:
    def check(src: Probed, out: Probed) -> None:
        assert len(out.of_type(kind)) == count, [s["codec_name"] for s in out.of_type(kind)]

    return check


def audio_codec_in(*codecs: str) -> Check:
    def check(src: Probed, out: Probed) -> None:
        assert out.of_type("audio"), "no audio in the output"
        assert all(s["codec_name"] in codecs for s in out.of_type("audio")), [s["codec_name"] for s in out.streams]

    return check


def audio_starts_with_video(src: Probed, out: Probed) -> None:
    """The audio keeps its offset from the video (a late start stays late)."""

    def gap(p: Probed) -> float:
        return float(p.of_type("audio")[0]["start_time"]) - float(p.video["start_time"])

    assert abs(gap(out) - gap(src)) < 0.03, (gap(src), gap(out))


def same_chapters(src: Probed, out: Probed) -> None:
    assert len(out.chapters) == len(src.chapters) > 0, (out.chapters, src.chapters)
    for x, y in zip(src.chapters, out.chapters, strict=True):
        assert abs(float(x["start_time"]) - float(y["start_time"])) < 0.002
        assert x.get("tags", {}).get("title") == y.get("tags", {}).get("title")


def same_tag(tag: str) -> Check:
    def check(src: Probed, out: Probed) -> None:
        want = src.video.get("tags", {}).get(tag) or src.format.get("tags", {}).get(tag)
        got = out.video.get("tags", {}).get(tag) or out.format.get("tags", {}).get(tag)
        assert want and got == want, (tag, got, want)

    check.__name__ = f"same_tag_{tag}"
    return check


def side_data(kind: str) -> Check:
    """The first output frame carries the same ``kind`` side data as the input's."""

    def pick(p: Probed) -> dict[str, Any] | None:
        for item in p.frames[0].get("side_data_list", []) if p.frames else []:
            if item.get("side_data_type") == kind:
                return item
        for item in p.video.get("side_data_list", []):
            if item.get("side_data_type") == kind:
                return item
        return None

    def check(src: Probed, out: Probed) -> None:
        a, b = pick(src), pick(out)
        assert a is not None, f"the input has no {kind}"
        assert b is not None, f"the output lost its {kind}"
        for key, value in a.items():
            if key not in ("side_data_type",):
                assert b.get(key) == value, (kind, key, b.get(key), value)

    check.__name__ = f"side_data_{kind.split()[0].lower()}"
    return check


def rotation_kept(src: Probed, out: Probed) -> None:
    def rot(p: Probed) -> int:
        for item in p.video.get("side_data_list", []):
            if "rotation" in item:
                return int(item["rotation"]) % 360
        return int(p.video.get("tags", {}).get("rotate", 0)) % 360

    assert rot(src) != 0 and rot(out) == rot(src), (rot(src), rot(out))


def is_vfr(src: Probed, out: Probed) -> None:
    times = out.frame_times()
    deltas = {b - a for a, b in itertools.pairwise(times)}
    assert len(deltas) > 1, deltas


def start_time_shifted(seconds: float) -> Check:
    """A range cut: the output's first frame is the input's frame at ``seconds`` after the stream start."""

    def check(src: Probed, out: Probed) -> None:
        t_in = src.frame_times()
        t_out = out.frame_times()
        first = t_in[0] + Fraction(seconds).limit_denominator(1000)
        kept = [t for t in t_in if t >= first - Fraction(1, 1000)]
        assert len(t_out) == len(kept), (len(t_out), len(kept))

    return check


def timecode_offset(seconds_frames: int) -> Check:
    """A partial restore's timecode starts ``seconds_frames`` frames after the source's."""

    def check(src: Probed, out: Probed) -> None:
        def frames(tc: str, rate: int) -> int:
            h, m, s, f = (int(x) for x in tc.replace(";", ":").split(":"))
            return ((h * 60 + m) * 60 + s) * rate + f

        rate = round(Fraction(src.video["avg_frame_rate"]))
        tc_in = src.video.get("tags", {}).get("timecode") or src.format.get("tags", {}).get("timecode")
        tc_out = out.video.get("tags", {}).get("timecode") or out.format.get("tags", {}).get("timecode")
        assert tc_in and tc_out, (tc_in, tc_out)
        assert frames(tc_out, rate) - frames(tc_in, rate) == seconds_frames, (tc_in, tc_out)

    return check


# -- damage ----------------------------------------------------------------------------------------


def cut_before_last_packets(count: int) -> Callable[[Path], None]:
    """Cut the file exactly where its ``count``-th last video packet starts (a clean cut between packets)."""

    def damage(path: Path) -> None:
        probed = ffprobe_json(path, "-select_streams", "v:0", "-show_entries", "packet=pos", "-show_packets")
        positions = sorted(int(p["pos"]) for p in probed["packets"] if p.get("pos", "N/A") != "N/A")
        cut = positions[-count]
        if path.suffix == ".ts":
            cut -= cut % 188
        data = path.read_bytes()
        path.write_bytes(data[:cut])

    return damage


def append_ts(size: str) -> Callable[[Path], None]:
    """Join a second TS recording (``size`` pictures, timestamps from zero again) after the first, as ``cat`` does."""

    def damage(path: Path) -> None:
        second = path.with_name(f"{path.stem}.second.ts")
        ffmpeg(*video_src(size), "-c:v", "libx264", "-g", "5", second)
        path.write_bytes(path.read_bytes() + second.read_bytes())

    return damage


def corrupt_inside_packet(index: int) -> Callable[[Path], None]:
    """Overwrite bytes in the middle of the ``index``-th video packet's payload (headers intact)."""

    def damage(path: Path) -> None:
        probed = ffprobe_json(path, "-select_streams", "v:0", "-show_entries", "packet=pos,size", "-show_packets")
        packet = probed["packets"][index]
        pos, size = int(packet["pos"]), int(packet["size"])
        data = bytearray(path.read_bytes())
        start = pos + size // 3
        length = max(8, size // 3)
        data[start : start + length] = bytes((i * 37 + 11) % 256 for i in range(length))
        path.write_bytes(bytes(data))

    return damage


# -- issue 22 (archive masters through the writer): fields, aspect, depth and alpha of intermediates ----------


def pal_like(size: str = "90x72", sar: str = "16/15", fields: str = "tff", fmt: str | None = None) -> list[str]:
    """A tiny PAL-shaped picture (720x576 / 8: a whole Matroska display width at 16:15 and 64:45) with its pixel
    aspect and field flags set on the frames, as a capture's would be (``fields``: tff, bff or prog)."""
    chain = f"setsar={sar},setfield={fields}" + (f",format={fmt}" if fmt else "")
    return [*video_src(size, seconds=0.16), "-vf", chain]


def frames_flagged_like_input(src: Probed, out: Probed) -> None:
    """Every output frame says interlaced and top-field-first exactly as the input's frames do (ffprobe
    -show_frames), and the input's are interlaced: the flags a downstream deinterlacer follows."""
    flags_in = [(f.get("interlaced_frame"), f.get("top_field_first")) for f in src.frames]
    flags_out = [(f.get("interlaced_frame"), f.get("top_field_first")) for f in out.frames]
    assert flags_in and all(i == 1 for i, _ in flags_in), flags_in
    assert len(flags_out) == len(flags_in) and set(flags_out) == set(flags_in), (flags_in, flags_out)


def display_kept(src: Probed, out: Probed) -> None:
    """The stream's pixel aspect and display aspect as the input's, and not square (the input is anamorphic)."""
    assert src.video.get("sample_aspect_ratio") not in (None, "1:1", "0:1"), src.video.get("sample_aspect_ratio")
    for key in ("sample_aspect_ratio", "display_aspect_ratio"):
        assert out.video.get(key) == src.video.get(key), (key, out.video.get(key), src.video.get(key))


# -- issue 22 (side streams and transport streams) -----------------------------------------------------------


def _stream_start(stream: dict[str, Any]) -> Fraction:
    return int(stream["start_pts"]) * Fraction(stream["time_base"])


def av_offset_kept(src: Probed, out: Probed) -> None:
    """Each audio stream starts as far from the first video frame as in the input, within one tick of the coarser
    time base (a frame-counting encoder must not round the video onto its grid: 20 ms at 25i)."""
    a, b = src.of_type("audio"), out.of_type("audio")
    assert len(b) == len(a) > 0, (len(a), len(b))
    first_in, first_out = src.frame_times()[0], out.frame_times()[0]
    for x, y in zip(a, b, strict=True):
        tick = max(Fraction(s["time_base"]) for s in (x, y, src.video, out.video))
        gap_in, gap_out = _stream_start(x) - first_in, _stream_start(y) - first_out
        assert abs(gap_out - gap_in) <= tick, f"A/V offset {float(gap_out):+.6f}s out, {float(gap_in):+.6f}s in"


def _packet_counts(path: str, kind: str) -> list[int]:
    probed = ffprobe_json(Path(path), "-count_packets", "-select_streams", kind, "-show_entries",
                          "stream=nb_read_packets")  # fmt: skip
    return [int(s["nb_read_packets"]) for s in probed["streams"]]


def same_video_packets(src: Probed, out: Probed) -> None:
    """Every video stream (a second angle too) has as many packets out as in."""
    got, want = _packet_counts(out.format["filename"], "v"), _packet_counts(src.format["filename"], "v")
    assert got == want, (got, want)


def audio_decodes_same(src: Probed, out: Probed) -> None:
    """Each audio stream decodes to the same samples in and out (a lossless conversion), by ffmpeg's MD5."""

    def md5(path: str, index: int) -> str:
        cmd = [ffmpeg_exe(), "-v", "error", "-i", path, "-map", f"0:a:{index}", "-af", "aformat=s32",
               "-c:a", "pcm_s32le", "-f", "md5", "-"]  # fmt: skip
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()

    for i in range(len(src.of_type("audio"))):
        assert md5(out.format["filename"], i) == md5(src.format["filename"], i), f"audio #{i} decodes differently"


def cut_bytes_from_end(count: int) -> Callable[[Path], None]:
    """Cut the last ``count`` bytes (a recorder stopped mid-write: the size need not be whole packets)."""

    def damage(path: Path) -> None:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) - count])

    return damage


def cut_inside_last_audio_pes(ts_packets: int) -> Callable[[Path], None]:
    """Cut ``ts_packets`` TS packets (188 bytes each) into the PES of the last audio packet: a clean TS packet
    boundary, but the audio PES declares more than the file holds."""

    def damage(path: Path) -> None:
        probed = ffprobe_json(path, "-select_streams", "a:0", "-show_entries", "packet=pos", "-show_packets")
        last = max(int(p["pos"]) for p in probed["packets"] if p.get("pos", "N/A") != "N/A")
        path.write_bytes(path.read_bytes()[: last - last % 188 + 188 * ts_packets])

    return damage


def append_ts_after(size: str, seconds: float) -> Callable[[Path], None]:
    """Join a second TS recording of ``size`` pictures whose timestamps go on ``seconds`` after the first's start
    (a broadcast switching formats), as ``cat`` does."""

    def damage(path: Path) -> None:
        second = path.with_name(f"{path.stem}.second.ts")
        ffmpeg(*video_src(size), "-c:v", "libx264", "-g", "5", "-output_ts_offset", str(seconds), second)
        path.write_bytes(path.read_bytes() + second.read_bytes())

    return damage
