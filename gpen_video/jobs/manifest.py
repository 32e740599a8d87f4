"""What a batch job has finished, on disk, so a crash, a reboot or a Ctrl-C loses at most the work in flight.

Each input gets one small JSON record in the job folder (``files/<key>.json``), rewritten atomically
(temp file, fsync, rename, fsync of the folder) after every finished segment. A record holds the
input's identity (size, mtime, a hash of its head and tail) and the hash of the settings that shape
the output; finished segments and outputs are reused only while both still match, so an edited
input or a changed setting is recomputed instead of silently mixed with old work.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gpen_video import __version__
from gpen_video.config import Config
from gpen_video.errors import OutputError
from gpen_video.io.output import atomic_write_text
from gpen_video.run.job import SegmentWindow

log = logging.getLogger(__name__)

HASH_BYTES = 1 << 20  # head and tail read for the identity hash
MANIFEST_VERSION = 1


# settings that do not change a single output byte
@dataclass(frozen=True)
class InputIdentity:
    """Cheap fingerprint of an input: a changed file gets a new one without reading it all."""

    size: int
    mtime_ns: int
    head_tail_sha256: str

    @classmethod
    def of(cls, path: Path) -> InputIdentity:
        stat = path.stat()
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            digest.update(handle.read(HASH_BYTES))
            if stat.st_size > HASH_BYTES:
                handle.seek(max(stat.st_size - HASH_BYTES, HASH_BYTES))
                digest.update(handle.read(HASH_BYTES))
        digest.update(str(stat.st_size).encode())
        return cls(stat.st_size, stat.st_mtime_ns, digest.hexdigest())


def settings_hash(config: Config, plan: dict[str, Any]) -> str:
    """Hash of everything that shapes the output: the config (less neutral fields), the plan, the version."""
    data = config.hashed_dict()  # less the options declared Neutral in config.py
    text = json.dumps({"config": data, "plan": plan, "version": __version__}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass
class SegmentRecord:
    """One finished segment file: the window it was restored over and what was written."""

    index: int
    window: SegmentWindow
    file: str  # name inside the file's work folder
    frames: int
    size: int
    faces: int = 0
    side_file: str = ""  # the segment's side-stream packets (side_packets.side_file_for), where it made them
    side_size: int = 0
    first_pts: int | None = None  # its first frame's source pts (None: recorded before this was: emit_start)
    pts_digest: str = ""  # of the source pts its writer wrote ("": recorded when segments were read back on writing)

    def to_dict(self) -> dict[str, Any]:
        """The window's fields stand beside the others, under the names records have always used."""
        data = asdict(self)
        return {"index": data.pop("index"), **data.pop("window"), **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SegmentRecord:
        """A record written before windows kept ``decode_from_byte`` reads as one without it."""
        names = {f.name for f in dataclasses.fields(SegmentWindow)}
        window = SegmentWindow(**{k: v for k, v in data.items() if k in names})
        return cls(window=window, **{k: v for k, v in data.items() if k not in names})


@dataclass
class FileRecord:
    """Everything the job knows about one input, across runs."""

    key: str
    input: str
    output: str
    status: str = "pending"  # pending | running | done | failed
    identity: dict[str, Any] | None = None
    settings: str | None = None
    segments_planned: int = 0
    segments: dict[str, SegmentRecord] = field(default_factory=dict)  # str(index) -> record
    output_size: int | None = None
    output_mtime_ns: int | None = None
    frames: int = 0
    error: str | None = None
    sticky: bool = True  # the failure is the input's (not retried without --retry-failed), not the disk's
    attempts: int = 0
    version: int = MANIFEST_VERSION
    media: dict[str, Any] | None = None  # the input's probe (MediaInfo.to_dict()), taken once per job
    index_source: str | None = None  # where the plan's frames came from: index | scan | cues | seek
    frames_planned: int = 0  # exact with index/scan, estimated (duration × rate) with cues/seek

    def matches(self, identity: InputIdentity, settings: str) -> bool:
        return self.identity == asdict(identity) and self.settings == settings

    def output_intact(self) -> bool:
        """The recorded output is still there, as it was written (size and mtime)."""
        try:
            stat = Path(self.output).stat()
        except OSError:
            return False
        return stat.st_size == self.output_size and stat.st_mtime_ns == self.output_mtime_ns

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FileRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        record = cls(**{k: v for k, v in data.items() if k in names and k != "segments"})
        record.segments = {k: SegmentRecord.from_dict(v) for k, v in (data.get("segments") or {}).items()}
        return record

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["segments"] = {k: v.to_dict() for k, v in self.segments.items()}
        return data


class JobStore:
    """The job folder: one record per input plus a work folder per input for its segment files."""

    def __init__(self, job_dir: Path) -> None:
        self.root = job_dir.resolve()  # Ray workers on other nodes have another working folder
        self.records_dir = self.root / "files"
        self.work_root = self.root / "work"
        try:
            self.records_dir.mkdir(parents=True, exist_ok=True)
            self.work_root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{job_dir}: cannot create the job folder ({exc}); choose one with --job-dir") from exc

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the job folder for this process (two drivers on one job would undo each other's work)."""
        handle = open(self.root / "lock", "a+")  # noqa: SIM115 - held for the whole job
        try:
            try:
                import fcntl
            except ImportError:  # pragma: no cover - Windows: no advisory locks
                yield
                return
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                raise OutputError(
                    f"{self.root}: another batch job is running on this job folder; wait for it or use --job-dir"
                ) from exc
            yield
        finally:
            handle.close()

    def record_path(self, key: str) -> Path:
        return self.records_dir / f"{key}.json"

    def work_dir(self, key: str) -> Path:
        return self.work_root / key

    def load(self, key: str) -> FileRecord | None:
        path = self.record_path(key)
        try:
            return FileRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:  # unreadable record: start that file afresh
            log.warning("%s: ignoring an unreadable job record (%s)", path, exc)
            return None

    def save(self, record: FileRecord) -> None:
        write_json_atomic(self.record_path(record.key), record.to_dict())


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that a crash leaves either the old file or the new one, never a torn one."""
    atomic_write_text(path, json.dumps(data, indent=1, default=str))
