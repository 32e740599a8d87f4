"""A scan file's picture-describing header (DPX or TIFF), read from a source frame and kept in its restored file,
or, for a video output, what of it the video can carry and what it cannot.

``read_header`` gives the typed header of one file (``DpxHeader``, ``TiffHeader``, ``PngHeader``; ``None`` for
EXR, whose header is not kept here); ``keep_header`` writes the source's fields into an encoded file of the same
kind and says, in words, what could not be kept; ``video_losses`` says what a video output leaves out.
"""

from __future__ import annotations

from pathlib import Path

from gpen_video.io.dpx_header import COLORIMETRIC_NAMES, TRANSFER_NAMES, DpxHeader, DpxHeaderError
from gpen_video.io.png_header import PngHeader, PngHeaderError
from gpen_video.io.tiff_header import KEPT_TAGS, TiffHeader, TiffHeaderError

ImageHeader = DpxHeader | TiffHeader | PngHeader
_UNSPECIFIED = 2  # FFmpeg's AVCOL_TRC/AVCOL_PRI_UNSPECIFIED: the decoder found no video tag for the DPX code
_DPX_UNSPECIFIED_VIDEO = 4  # nothing said, nothing lost


class HeaderError(ValueError):
    """A file's header cannot be read as its kind's."""


def read_header(path: Path, codec: str) -> ImageHeader | None:
    """The header of ``path`` (a ``codec`` file), or None for a kind whose header is not read here."""
    try:
        if codec == "dpx":
            return DpxHeader.read(path)
        if codec == "tiff":
            return TiffHeader.read(path)
        if codec == "png":
            return PngHeader.read(path)
    except (DpxHeaderError, TiffHeaderError, PngHeaderError, OSError) as exc:
        raise HeaderError(str(exc)) from exc
    return None


def keep_header(source: Path, source_codec: str, encoded: bytes, codec: str) -> tuple[bytes, list[str]]:
    """``encoded`` (a ``codec`` file) with the picture fields of ``source``'s header; and what was not kept."""
    if source_codec != codec:
        return encoded, [f"{source_codec.upper()} header fields are not written into {codec.upper()} files"]
    try:
        header = read_header(source, source_codec)
    except HeaderError as exc:
        return encoded, [f"{exc}: its header was not kept"]
    if header is None:
        return encoded, []
    return header.keep_in(encoded)


def video_losses(header: ImageHeader | None, decoded_transfer: int, decoded_primaries: int) -> list[str]:
    """What of the first file's header a video output cannot carry (the decoder's colour tags, the pixel aspect
    and the timecode it can)."""
    if isinstance(header, DpxHeader):
        notes = []
        if decoded_transfer == _UNSPECIFIED and header.transfer != _DPX_UNSPECIFIED_VIDEO:
            name = TRANSFER_NAMES.get(header.transfer, "reserved")
            notes.append(f"DPX transfer '{name}' has no video tag: the video says unspecified")
        if decoded_primaries == _UNSPECIFIED and header.colorimetric not in (2, 3, _DPX_UNSPECIFIED_VIDEO):
            name = COLORIMETRIC_NAMES.get(header.colorimetric, "reserved")
            notes.append(f"DPX colorimetric '{name}' has no video tag: the video says unspecified")
        if header.industry:
            notes.append("DPX film and television header fields besides timecode (film format, frame id, slate, "
                         "gamma...) have no place in a video file")  # fmt: skip
        return notes
    if isinstance(header, TiffHeader):
        kept = [KEPT_TAGS[e.tag] for e in header.kept()]
        return [f"TIFF tags {', '.join(kept)} have no place in a video file"] if kept else []
    if isinstance(header, PngHeader):
        kinds = sorted({c.kind.decode() for c in header.kept()} - {"pHYs", "gAMA", "cHRM", "sRGB", "cICP", "sBIT"})
        return [f"PNG chunks {', '.join(kinds)} have no place in a video file"] if kinds else []
    return []
