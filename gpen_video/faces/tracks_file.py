"""The ``--tracks FILE.jsonl`` sink: every face of every frame, written as the faces stage releases frames.

One JSON object a line, one line per face per frame, in release (frame) order::

    {"frame": 12, "pts": 0.5, "track": 3, "landmarks": [[x, y] × 5], "box": [x0, y0, x1, y1], "score": 0.998}

With fusion on (``fusion.frames``), each row also has ``"fusion_weight"``: the frames in effect in that face's
fused region (1: its own only; up to 2R + 1), written once the face is fused. Where a selection rule is in force
(``faces.selection``), each row has ``"restored"``, and a face left alone ``"skipped"``: the rule's reason.

Coordinates are pixels of the upright frame (after display rotation), the same ones alignment uses.
``pts`` is the frame's presentation time in seconds, or null where the caller gave none.

Like every output of a run, the file appears only when complete: rows go to a hidden temporary sibling,
which ``close()`` renames into place; ``discard()`` (or leaving the ``with`` block by an exception)
removes it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

from gpen_video.errors import OutputError
from gpen_video.faces.types import FrameFaces


class TracksFile:
    """Streams per-frame faces to a JSON Lines file; use as a context manager or call ``close``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.temp = self.path.with_name(f".{self.path.name}.partial-{os.getpid()}")
        try:
            self._file: TextIO | None = self.temp.open("w", encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"cannot write the tracks file {self.path}: {exc.strerror}; choose another path") from exc
        self.lines = 0

    def write(
        self,
        frame: FrameFaces,
        fusion_weights: Sequence[float | None] | None = None,
        skipped: Sequence[str | None] | None = None,
    ) -> None:
        """``frame``'s faces, a row each; ``fusion_weights``: each face's mean fusion weight sum, where fusion ran
        (None: a face not restored); ``skipped``: where a selection rule is in force, why each face is not restored
        (None: it is)."""
        if self._file is None:
            raise OutputError(f"the tracks file {self.path} is already closed")
        for k, face in enumerate(frame.faces):
            row = {
                "frame": int(frame.index),
                "pts": None if frame.pts_seconds is None else round(float(frame.pts_seconds), 6),
                "track": int(face.track_id),
                "landmarks": [[round(float(x), 3), round(float(y), 3)] for x, y in face.landmarks5],
                "box": [round(float(v), 2) for v in face.box],
                "score": round(float(face.score), 4),
            }
            if fusion_weights is not None and fusion_weights[k] is not None:
                row["fusion_weight"] = round(float(fusion_weights[k]), 3)
            if skipped is not None:
                row["restored"] = skipped[k] is None
                if skipped[k] is not None:
                    row["skipped"] = skipped[k]
            self._file.write(json.dumps(row, separators=(",", ":")) + "\n")
            self.lines += 1

    def close(self) -> None:
        """Finish the file and move it into place."""
        if self._file is not None:
            self._file.close()
            self._file = None
            try:
                os.replace(self.temp, self.path)
            except OSError as exc:
                self.temp.unlink(missing_ok=True)
                raise OutputError(f"cannot write the tracks file {self.path}: {exc.strerror}") from exc

    def discard(self) -> None:
        """Drop what was written (the run failed): no partial tracks file is left."""
        if self._file is not None:
            self._file.close()
            self._file = None
            self.temp.unlink(missing_ok=True)

    def __enter__(self) -> TracksFile:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()


@contextlib.contextmanager
def open_tracks(path: str | Path | None) -> Iterator[TracksFile | None]:
    """The ``--tracks`` file of a run (None when none was asked for): complete when the block completes."""
    if path is None:
        yield None
        return
    with TracksFile(path) as tracks:
        yield tracks
