"""Image sequences in and out: film scans as DPX/TIFF/PNG/EXR files, one picture per file.

Input is a printf pattern (``reel_%06d.dpx``), a glob (``scan/*.tif``), a folder holding one sequence, or a
single still (a sequence of one). Every file is decoded on its own with PyAV (``av.open(file)``), which keeps
the file's exact samples and bit depth (DPX 8/10/12/16-bit, TIFF and PNG 8/16-bit, EXR half/float); frames come
out as the video reader's ``Frame`` records, with ``pts`` = frame number − start number in a ``1/fps``
time base, so the numbering (and any hole in it) survives to the writer.

A hole in the numbering is never skipped silently: ``MissingFramesError`` lists the missing numbers, or,
with ``on_gap="warn"``, a warning does and the frames after the hole keep their own numbers and times.

Output goes into a folder with the input's file names, the same codec and the same pixel format (so the same
bit depth), and each file keeps its source file's picture-describing header fields (``io.image_headers``: DPX
transfer, colorimetric, pixel aspect, timecode, frame rate...; TIFF resolution, ICC profile, description...);
``header_notes`` says what could not be kept. Each file is encoded in memory, written to a temporary name beside
its target and renamed, so a crash never leaves a half-written frame under a final name, and a rerun keeps
every frame already on disk.
EXR is decode-only (FFmpeg 5.1 encodes no half-float EXR that round-trips); such a sequence is written as
16-bit TIFF.
"""

from __future__ import annotations

import glob
import itertools
import logging
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av

from gpen_video.errors import InputError, OutputError
from gpen_video.io.image_headers import keep_header
from gpen_video.io.output import PARTIAL_MARK, atomic_write_bytes
from gpen_video.io.reader import Frame

log = logging.getLogger(__name__)

CODEC_OF_SUFFIX = {".dpx": "dpx", ".tif": "tiff", ".tiff": "tiff", ".png": "png", ".exr": "exr"}
WRITABLE_CODECS = ("dpx", "tiff", "png")
DEFAULT_FPS = Fraction(24)
_PRINTF = re.compile(r"%(0?)(\d*)d")
_LAST_NUMBER = re.compile(r"^(.*?)(\d+)(\D*)$")
TEMP_MARK = PARTIAL_MARK  # the temporary files of atomic_write_bytes: never frames


class SequenceError(InputError):
    """An image sequence that cannot be read as one (mixed names, sizes or formats, no files)."""


class MissingFramesError(SequenceError):
    """Numbers missing inside a numbered sequence."""

    def __init__(self, message: str, gaps: tuple[SequenceGap, ...]) -> None:
        super().__init__(message)
        self.gaps = gaps


@dataclass(frozen=True)
class SequenceGap:
    """Frame numbers ``first`` to ``last`` (inclusive) are absent."""

    first: int
    last: int

    @property
    def count(self) -> int:
        return self.last - self.first + 1

    def describe(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"


@dataclass(frozen=True)
class SequenceFile:
    number: int | None  # None for a still without a number in its name
    path: Path


@dataclass(frozen=True)
class ImageSequence:
    """Files of one sequence, in frame-number order, and how their names are made."""

    files: tuple[SequenceFile, ...]
    prefix: str  # file name before the number
    suffix: str  # file name after the number, extension included
    padding: int  # digits of the number (0: unpadded)
    codec: str  # dpx | tiff | png | exr
    gaps: tuple[SequenceGap, ...] = ()

    @property
    def start_number(self) -> int:
        first = self.files[0].number
        return 0 if first is None else first

    @property
    def is_still(self) -> bool:
        return len(self.files) == 1

    @property
    def pattern(self) -> str:
        """The printf pattern of the names (``reel_%06d.dpx``), or the still's own name."""
        if self.files[0].number is None:
            return self.prefix + self.suffix
        return f"{self.prefix}%0{self.padding}d{self.suffix}" if self.padding else f"{self.prefix}%d{self.suffix}"

    def name_for(self, number: int | None) -> str:
        if number is None or self.files[0].number is None:
            return self.prefix + self.suffix
        digits = f"{number:0{self.padding}d}" if self.padding else str(number)
        return f"{self.prefix}{digits}{self.suffix}"

    def describe(self) -> str:
        if self.is_still:
            return f"still image {self.files[0].path.name} ({self.codec})"
        last = self.files[-1].number
        missing = sum(g.count for g in self.gaps)
        holes = f", {missing} missing" if missing else ""
        return f"{self.pattern}: frames {self.start_number}-{last} ({len(self.files)} files{holes}, {self.codec})"


def looks_like_sequence(spec: str | Path) -> bool:
    """Whether ``spec`` names an image sequence (pattern, glob, folder or image file) rather than a video file."""
    text = str(spec)
    path = Path(text)
    if _PRINTF.search(path.name) or glob.has_magic(text):
        return True
    return path.is_dir() or path.suffix.lower() in CODEC_OF_SUFFIX


def find_sequence(spec: str | Path, on_gap: Literal["error", "warn", "list"] = "error") -> ImageSequence:
    """The sequence ``spec`` names: ``reel_%06d.dpx``, ``scan/*.tif``, a folder, or one image file; a hole in
    the numbering raises (``error``), is logged (``warn``) or only listed in ``gaps`` (``list``, for probe)."""
    text = str(spec)
    path = Path(text)
    if _PRINTF.search(path.name):
        sequence = _from_printf(path)
    elif glob.has_magic(text):
        found = [Path(p) for p in sorted(glob.glob(text)) if Path(p).is_file()]
        if not found:
            raise SequenceError(f"no files match {text}; check the pattern (quote it so the shell does not expand it)")
        sequence = _from_files(found, what=text)
    elif path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in CODEC_OF_SUFFIX)
        found = [p for p in found if TEMP_MARK not in p.name]
        if not found:
            kinds = ", ".join(sorted(CODEC_OF_SUFFIX))
            raise SequenceError(f"{path} holds no image files ({kinds}); name the sequence with a pattern")
        sequence = _from_files(found, what=str(path))
    elif path.is_file():
        sequence = _still(path)
    else:
        raise SequenceError(f"{text} does not exist; give a file, a folder, a pattern like reel_%06d.dpx or a glob")
    return _check_gaps(sequence, on_gap)


def _codec_for(path: Path) -> str:
    codec = CODEC_OF_SUFFIX.get(path.suffix.lower())
    if codec is None:
        raise SequenceError(f"{path.name}: not an image type this tool reads ({', '.join(sorted(CODEC_OF_SUFFIX))})")
    return codec


def _still(path: Path) -> ImageSequence:
    match = _LAST_NUMBER.match(path.stem)
    if match:  # keep its number, so a still named reel_000123.dpx is written back under that name
        prefix, digits, rest = match.groups()
        pad = len(digits) if digits.startswith("0") else 0
        return ImageSequence((SequenceFile(int(digits), path),), prefix, rest + path.suffix, pad, _codec_for(path))
    return ImageSequence((SequenceFile(None, path),), path.stem, path.suffix, 0, _codec_for(path))


def _from_printf(path: Path) -> ImageSequence:
    match = _PRINTF.search(path.name)
    assert match is not None
    prefix, suffix = path.name[: match.start()], path.name[match.end() :]
    width = int(match.group(2) or 0)
    digits = rf"\d{{{width},}}" if width else r"\d+"
    name_re = re.compile(re.escape(prefix) + f"({digits})" + re.escape(suffix) + "$")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise SequenceError(f"folder {folder} does not exist")
    files = []
    for p in folder.iterdir():
        m = name_re.match(p.name)
        if m and p.is_file():
            files.append(SequenceFile(int(m.group(1)), p))
    if not files:
        raise SequenceError(f"no files match {path}; check the folder and the number of digits")
    return _ordered(files, prefix, suffix, width, _codec_for(path), what=str(path))


def _from_files(paths: list[Path], what: str) -> ImageSequence:
    groups: dict[tuple[str, str], list[tuple[str, Path]]] = {}
    for p in paths:
        match = _LAST_NUMBER.match(p.stem)
        if not match:
            groups.setdefault((p.stem, p.suffix), []).append(("", p))
            continue
        prefix, digits, rest = match.groups()
        groups.setdefault((prefix, rest + p.suffix), []).append((digits, p))
    if len(groups) > 1:
        listing = "; ".join(f"{a}#{b} ({len(v)} files)" for (a, b), v in sorted(groups.items())[:5])
        raise SequenceError(
            f"{what} holds {len(groups)} sequences ({listing}); name one with a pattern like a_%04d.dpx"
        )
    (prefix, suffix), members = next(iter(groups.items()))
    if len(members) == 1 and not members[0][0]:
        return _still(members[0][1])
    lengths = {len(d) for d, _ in members}
    padding = lengths.pop() if len(lengths) == 1 else 0  # one width: padded (or can be written so)
    files = [SequenceFile(int(d), p) for d, p in members]
    return _ordered(files, prefix, suffix, padding, _codec_for(members[0][1]), what=what)


def _ordered(files: list[SequenceFile], prefix: str, suffix: str, padding: int, codec: str, what: str) -> ImageSequence:
    files.sort(key=lambda f: (f.number, f.path.name))
    seen: dict[int | None, Path] = {}
    for f in files:
        if f.number in seen:
            raise SequenceError(f"{what}: frame {f.number} is there twice ({seen[f.number].name}, {f.path.name})")
        seen[f.number] = f.path
    return ImageSequence(tuple(files), prefix, suffix, padding, codec)


def find_gaps(numbers: list[int]) -> tuple[SequenceGap, ...]:
    return tuple(SequenceGap(a + 1, b - 1) for a, b in itertools.pairwise(numbers) if b - a > 1)


def _check_gaps(sequence: ImageSequence, on_gap: str) -> ImageSequence:
    numbers = [f.number for f in sequence.files if f.number is not None]
    gaps = find_gaps(numbers)
    if not gaps:
        return sequence
    missing = sum(g.count for g in gaps)
    shown = ", ".join(g.describe() for g in gaps[:12]) + (", ..." if len(gaps) > 12 else "")
    message = f"{sequence.pattern}: {missing} frame(s) missing: {shown}"
    if on_gap == "error":
        raise MissingFramesError(f"{message}; restore the files, or pass --allow-gaps to go on without them", gaps)
    if on_gap == "warn":
        log.warning("%s; going on: the frames after each hole keep their numbers", message)
    return ImageSequence(sequence.files, sequence.prefix, sequence.suffix, sequence.padding, sequence.codec, gaps)


# -- reading ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SequenceFormat:
    """What every picture of the sequence is: checked on each file."""

    width: int
    height: int
    pix_fmt: str
    bit_depth: int
    codec: str


def decode_image(path: Path) -> av.VideoFrame:
    """The one picture of an image file, its samples as stored."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            for frame in container.decode(stream):
                return frame
    except (av.error.FFmpegError, IndexError) as exc:
        raise SequenceError(f"{path}: cannot decode this image ({exc}); replace the file or leave it out") from exc
    raise SequenceError(f"{path}: the file holds no picture; replace it or leave it out")


def frame_format(frame: av.VideoFrame, codec: str) -> SequenceFormat:
    bits = max(c.bits for c in frame.format.components)
    return SequenceFormat(frame.width, frame.height, frame.format.name, bits, codec)


class ImageSequenceReader:
    """Frames of an image sequence, as ``Frame`` records with ``pts = number - start`` at ``1/fps``.

    ``skip`` holds frame numbers not to decode (already written by an earlier run); they are passed over
    without a ``Frame``. ``index`` stays the position in the whole sequence, so per-frame seeds do not move
    on a resumed run.
    """

    def __init__(self, sequence: ImageSequence, fps: Fraction | int | float = DEFAULT_FPS, skip: Collection[int] = ()):
        fps = Fraction(fps).limit_denominator(1001 * 1000)
        if fps <= 0:
            raise InputError(f"--fps must be positive, not {fps}")
        self.sequence = sequence
        self.fps = fps
        self.time_base = 1 / fps
        self.skip = frozenset(skip)
        first = decode_image(sequence.files[0].path)
        self.format = frame_format(first, sequence.codec)
        self.frames_read = 0

    def number_of(self, frame: Frame) -> int | None:
        """The file number a frame came from (``None`` for an unnumbered still)."""
        if self.sequence.files[0].number is None:
            return None
        return self.sequence.start_number + frame.pts

    def __iter__(self) -> Iterator[Frame]:
        return self.frames()

    def frames(self) -> Iterator[Frame]:
        start = self.sequence.start_number
        for index, item in enumerate(self.sequence.files):
            if item.number is not None and item.number in self.skip:
                continue
            picture = decode_image(item.path)
            found = frame_format(picture, self.sequence.codec)
            if found != self.format:
                raise SequenceError(
                    f"{item.path.name} is {found.width}x{found.height} {found.pix_fmt}, the sequence is "
                    f"{self.format.width}x{self.format.height} {self.format.pix_fmt}; every file must match"
                )
            pts = 0 if item.number is None else item.number - start
            picture.pts = pts
            picture.time_base = self.time_base
            self.frames_read += 1
            yield Frame(index, pts, self.time_base, picture)


# -- writing ------------------------------------------------------------------------------------------------
def output_codec(sequence: ImageSequence) -> str:
    """The codec an output sequence is written in: the input's, or 16-bit TIFF for a decode-only EXR input."""
    return sequence.codec if sequence.codec in WRITABLE_CODECS else "tiff"


_SUFFIX_OF_CODEC = {"dpx": ".dpx", "tiff": ".tif", "png": ".png"}


class ImageSequenceWriter:
    """Writes frames into ``folder`` under the input's names, codec and pixel format, one atomic file each."""

    def __init__(self, folder: str | Path, sequence: ImageSequence, pix_fmt: str, codec: str | None = None):
        self.folder = Path(folder)
        self.sequence = sequence
        self.codec = codec or output_codec(sequence)
        if self.codec not in WRITABLE_CODECS:
            raise OutputError(f"cannot write {self.codec} images; write dpx, tiff or png")
        self.pix_fmt = writable_format(self.codec, pix_fmt if sequence.codec == self.codec else deep_format(self.codec))
        if self.folder.exists() and not self.folder.is_dir():
            raise OutputError(f"{self.folder} is a file; an image sequence is written into a folder")
        for f in sequence.files:
            if f.path.parent.resolve() == self.folder.resolve():
                raise OutputError(f"{self.folder} holds the input frames; write the output into another folder")
        self.folder.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temps()
        self.written = 0
        self._sources = {f.number: f.path for f in sequence.files}
        self.header_notes: list[str] = []  # what of the source files' headers could not be kept, each said once

    def path_for(self, number: int | None) -> Path:
        name = self.sequence.name_for(number)
        if self.codec != self.sequence.codec:  # EXR in: same name, TIFF suffix
            name = str(Path(name).with_suffix(_SUFFIX_OF_CODEC[self.codec]))
        return self.folder / name

    def is_done(self, number: int | None) -> bool:
        return self.path_for(number).is_file()

    def done_numbers(self) -> set[int]:
        """Frame numbers whose output file is already complete (resume skips them)."""
        return {f.number for f in self.sequence.files if f.number is not None and self.is_done(f.number)}

    def write(self, number: int | None, picture: av.VideoFrame) -> Path:
        """Encode ``picture`` (converted to the output pixel format) to its final name, atomically."""
        if picture.format.name != self.pix_fmt:
            picture = picture.reformat(format=self.pix_fmt)
        target = self.path_for(number)
        source = self._sources.get(number, self.sequence.files[0].path)
        data, notes = keep_header(source, self.sequence.codec, encode_image(picture, self.codec), self.codec)
        self.header_notes.extend(n for n in notes if n not in self.header_notes)
        # a temporary sibling, fsync, rename, fsync of the folder: a crash leaves finished frames only
        atomic_write_bytes(target, data)
        self.written += 1
        return target

    def _remove_stale_temps(self) -> None:
        for p in self.folder.iterdir():
            if TEMP_MARK in p.name and p.is_file():
                log.info("removing %s, left by an interrupted run", p.name)
                p.unlink(missing_ok=True)


def writable_format(codec: str, pix_fmt: str) -> str:
    """``pix_fmt``, or its other byte order where the encoder takes only that (TIFF: little-endian only)."""
    formats = [f.name for f in (av.codec.Codec(codec, "w").video_formats or [])]
    if not formats or pix_fmt in formats:
        return pix_fmt
    other = pix_fmt[:-2] + ("le" if pix_fmt.endswith("be") else "be")
    return other if pix_fmt.endswith(("le", "be")) and other in formats else pix_fmt


def deep_format(codec: str) -> str:
    return {"tiff": "rgb48le", "png": "rgb48be", "dpx": "rgb48le"}[codec]


def encode_image(picture: av.VideoFrame, codec: str) -> bytes:
    """One picture as the bytes of an image file (FFmpeg's dpx/tiff/png encoders, through PyAV)."""
    ctx = av.CodecContext.create(codec, "w")
    ctx.width, ctx.height, ctx.pix_fmt = picture.width, picture.height, picture.format.name
    ctx.time_base = Fraction(1, 24)
    try:
        packets = list(ctx.encode(picture)) + list(ctx.encode(None))
    except av.error.FFmpegError as exc:
        raise OutputError(f"the {codec} encoder cannot write {picture.format.name} pictures ({exc})") from exc
    return b"".join(bytes(p) for p in packets)
