"""``gpen-video preview``: judge a restoration on a few seconds before committing hours of GPU time.

Restores only ``--start``..``--start+--duration`` with the production settings (the reader seeks to
the key frame before the start, so a preview deep into a 2-hour reel starts in seconds), then, in one
more pass over that range, writes a before/after comparison clip (side by side or split screen) and a
PNG contact sheet with a before/after crop of every face track.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from av.video.reformatter import ColorPrimaries, ColorRange, Colorspace, ColorTrc

from gpen_video.config import Config
from gpen_video.faces.types import TrackSummary
from gpen_video.io.colour import ColourInfo, colour_of_frame, to_8bit, to_working
from gpen_video.io.formats import container_family
from gpen_video.io.output import atomic_output, check_output_path
from gpen_video.io.probe import MediaInfo, probe
from gpen_video.io.reader import VideoReader
from gpen_video.io.side_streams import SideStreams
from gpen_video.run import ProgressCallback, RestoreJob, run_restore
from gpen_video.run.report import RunReport

log = logging.getLogger(__name__)


_MAX_COMPARE_WIDTH = 3840
_TILE = 192  # contact-sheet crop side, px
_TILES_PER_ROW = 3


@dataclass
class PreviewOutputs:
    restored: Path
    comparison: Path | None
    contact_sheet: Path


@dataclass
class PreviewResult:
    outputs: PreviewOutputs
    report: RunReport


def preview_outputs(input_path: Path, prefix: Path | None, compare: str) -> PreviewOutputs:
    """``reel.mov`` -> ``reel.preview.restored.mov``, ``reel.preview.compare.mp4``, ``reel.preview.faces.png``."""
    base = prefix if prefix is not None else input_path.with_name(f"{input_path.stem}.preview")
    return PreviewOutputs(
        restored=base.with_name(f"{base.name}.restored{input_path.suffix}"),
        comparison=None if compare == "none" else base.with_name(f"{base.name}.compare.mp4"),
        contact_sheet=base.with_name(f"{base.name}.faces.png"),
    )


def run_preview(
    input_path: Path,
    config: Config,
    compare: str = "side",
    prefix: Path | None = None,
    progress: ProgressCallback | None = None,
    info: MediaInfo | None = None,
) -> PreviewResult:
    outputs = preview_outputs(input_path, prefix, compare)
    for path in (outputs.restored, outputs.comparison, outputs.contact_sheet):
        if path is not None:
            check_output_path(input_path, path, config.output.overwrite)
    info = info or probe(input_path)
    report = run_restore(RestoreJob(input_path, outputs.restored, config, progress=progress, info=info))
    wanted = _contact_frames(report.tracks)
    captions = _captions(report)
    before_after: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
    if outputs.comparison is None and not wanted:  # no comparison clip and no crops: nothing to read again
        _write_contact_sheet(outputs.contact_sheet, before_after, captions)
        return PreviewResult(outputs, report)
    reader = VideoReader(input_path, info, config.reader, config.start, config.duration)
    reader.side_streams = []  # the comparison needs the video only: no audio demuxed past the range
    last = max(wanted, default=-1)
    with contextlib.ExitStack() as stack:
        stack.enter_context(reader)
        restored = stack.enter_context(av.open(str(outputs.restored)))
        out_stream = restored.streams.video[0]
        sink = None
        if outputs.comparison is not None:
            temp = stack.enter_context(atomic_output(outputs.comparison))
            sink = _ComparisonSink(temp, compare, restored)
            stack.callback(sink.close_file)  # runs before the temporary file is removed or renamed
        out_colour: ColourInfo | None = None
        for frame, after_frame in zip(reader, restored.decode(out_stream), strict=False):
            if sink is not None or frame.index in wanted:
                out_colour = out_colour or colour_of_frame(after_frame)
                before = to_8bit(frame.upright(info.video.colour, info.video.rotation))
                after = to_8bit(to_working(after_frame, out_colour, info.video.rotation))
                if sink is not None:
                    sink.add(before, after, after_frame.pts, out_stream.time_base)
                for track_id, box in wanted.get(frame.index, []):
                    before_after.setdefault(track_id, []).append((_crop(before, box), _crop(after, box)))
            if sink is None and frame.index >= last:
                break  # no comparison clip: the range is read up to the contact sheet's last crop only
        if sink is not None:
            sink.finish()
    _write_contact_sheet(outputs.contact_sheet, before_after, captions)
    return PreviewResult(outputs, report)


def _contact_frames(tracks: list[TrackSummary]) -> dict[int, list[tuple[int, list[float]]]]:
    """For each track, the frame and box its summary samples: frame index -> [(track id, box)]."""
    wanted: dict[int, list[tuple[int, list[float]]]] = {}
    for track in tracks:
        wanted.setdefault(track.sample_frame, []).append((track.id, list(track.sample_box)))
    return wanted


def _captions(report: RunReport) -> dict[int, list[str]]:
    """Each track's lines on the contact sheet: its id (what ``--tracks-select`` takes) and face height, whether
    it was restored (and why not, where a selection rule left it alone), its input quality, and where the identity
    guard measured it, the recogniser's median distance between its source and restored faces."""
    selected = report.selection.tracks if report.selection is not None else {}
    quality = {t.id: t for t in report.input_quality}
    identity = {t.id: t for t in report.identity.tracks} if report.identity is not None else {}
    captions = {}
    for track in report.tracks:
        height = track.sample_box[3] - track.sample_box[1]
        verdict = selected[track.id].describe() if track.id in selected else "restored"
        captions[track.id] = [f"track {track.id}  {height:.0f} px", verdict]
        if track.id in quality:
            captions[track.id].append(quality[track.id].describe())
        if track.id in identity:  # the guard's median distance between the source face and the restored one
            same = identity[track.id]
            captions[track.id].append(f"identity {same.median:.2f}" + (" (another person)" if same.over else ""))
    return captions


def _crop(image: np.ndarray, box: list[float]) -> np.ndarray:
    """A square crop around ``box`` (1.4× its larger side), resized to the contact-sheet tile."""
    x0, y0, x1, y1 = box
    side = 1.4 * max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    scale = _TILE / max(side, 1.0)
    affine = np.array([[scale, 0, _TILE / 2 - scale * cx], [0, scale, _TILE / 2 - scale * cy]], np.float64)
    return cv2.warpAffine(image, affine, (_TILE, _TILE), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_CONSTANT)


def _write_contact_sheet(
    path: Path, crops: dict[int, list[tuple[np.ndarray, np.ndarray]]], captions: dict[int, list[str]]
) -> None:
    tiles = []
    for track_id in sorted(crops):
        before, after = crops[track_id][0]
        tile = np.concatenate([before, after], axis=1)
        for line, text in enumerate(captions.get(track_id, [f"track {track_id}"])):
            for colour, weight in (((0, 0, 0), 3), ((255, 255, 255), 1)):  # outlined: legible on any face
                cv2.putText(tile, text, (6, 18 + 18 * line), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, weight,
                            cv2.LINE_AA)  # fmt: skip
        tiles.append(tile)
    if not tiles:
        sheet = np.full((_TILE, 2 * _TILE, 3), 32, np.uint8)
        cv2.putText(sheet, "no faces in this range", (12, _TILE // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                    (255, 255, 255), 1, cv2.LINE_AA)  # fmt: skip
    else:
        while len(tiles) % _TILES_PER_ROW and len(tiles) > _TILES_PER_ROW:
            tiles.append(np.zeros_like(tiles[0]))
        rows = [np.concatenate(tiles[i : i + _TILES_PER_ROW], axis=1) for i in range(0, len(tiles), _TILES_PER_ROW)]
        sheet = np.concatenate(rows, axis=0)
    with atomic_output(path) as temp:
        if not cv2.imwrite(str(temp), sheet):
            raise OSError(f"cannot write {path}")


class _ComparisonSink:
    """Encodes before/after frames as one H.264 clip with the restored clip's audio."""

    def __init__(self, path: Path, mode: str, restored: av.container.InputContainer) -> None:
        self.mode = mode
        self.restored = restored
        self.container = av.open(str(path), "w")
        self.audio = [s for s in restored.streams if s.type == "audio"]
        self.stream: av.VideoStream | None = None
        self.side: SideStreams | None = None
        self._closed = False

    def _open(self, width: int, height: int, time_base: Fraction) -> None:
        stream = self.container.add_stream("libx264", options={"crf": "18", "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        cc = stream.codec_context
        # the clip is converted below with BT.709 limited range: tag it so
        cc.colorspace, cc.color_range = Colorspace.ITU709, ColorRange.MPEG
        cc.color_primaries, cc.color_trc = ColorPrimaries.BT709, ColorTrc.BT709
        self.stream = stream
        family = container_family(self.container.format.name)
        self.side = SideStreams(self.container, family, self.audio, Fraction(0))

    def add(self, before: np.ndarray, after: np.ndarray, pts: int, time_base: Fraction) -> None:
        picture = compare_picture(before, after, self.mode)
        if self.stream is None:
            self._open(picture.shape[1], picture.shape[0], time_base)
        assert self.stream is not None
        frame = av.VideoFrame.from_ndarray(picture, format="bgr24").reformat(
            format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG"
        )
        frame.pts, frame.time_base = pts, time_base
        self.container.mux(self.stream.encode(frame))

    def finish(self) -> None:
        """Flush the encoder and copy the restored clip's audio."""
        if self.stream is None:
            return
        self.container.mux(self.stream.encode(None))
        assert self.side is not None
        if self.side.has_streams:
            self.restored.seek(0)
            self.side.write([p for p in self.restored.demux(*self.audio) if p.size])

    def close_file(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(av.error.FFmpegError):
                self.container.close()


def compare_picture(before: np.ndarray, after: np.ndarray, mode: str) -> np.ndarray:
    """Side by side (before | after) or split screen (left half before, right half after), even-sized."""
    if mode == "split":
        width = before.shape[1]
        picture = before.copy()
        picture[:, width // 2 :] = after[:, width // 2 :]
        picture[:, width // 2 - 1 : width // 2 + 1] = 255
        labels = ((8, "before"), (width // 2 + 8, "after"))
    else:
        picture = np.concatenate([before, after], axis=1)
        labels = ((8, "before"), (before.shape[1] + 8, "after"))
    for x, text in labels:
        cv2.putText(picture, text, (x, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2, cv2.LINE_AA)
    if picture.shape[1] > _MAX_COMPARE_WIDTH:
        scale = _MAX_COMPARE_WIDTH / picture.shape[1]
        picture = cv2.resize(picture, (_MAX_COMPARE_WIDTH, int(picture.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    h, w = picture.shape[:2]
    return np.ascontiguousarray(picture[: h - h % 2, : w - w % 2])


def preview_config(config: Config, start: float | None, duration: float | None) -> Config:
    """The production config, restricted to the preview's range (5 s from the start by default)."""
    return replace(config, start=start if start is not None else (config.start or 0.0),
                   duration=duration if duration is not None else (config.duration or 5.0))  # fmt: skip
