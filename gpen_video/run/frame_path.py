"""Where a frame's faces are cut, restored and pasted back: on the host (NumPy/OpenCV) or on the restorer's
device (torch), chosen once per run by ``choose_path``.

Both paths offer the same steps, so the stages never ask where they run:

- ``fuse``: a face's region merged with its track's neighbours (``fusion.frames``), the merge on this side;
- ``align``: (upload the frame and) cut the aligned crops, 8-bit copies for the restorer;
- ``restoring`` / ``join`` / ``restore`` / ``mark``: run a batch of crops through the restorer;
- ``compose``: paste the restored faces back (and download the composed frame), giving host arrays.

The host path is the reference. The device path keeps a frame on the GPU from upload to paste-back; its
CUDA streams (``restore.streams``) overlap copies with compute: upload on the align stage's stream, the
network on the restore stage's, paste-back and download on one stream per compose worker. On a CPU device
it is the tests' twin of the GPU path (same code, plain tensors).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from gpen_video.align import align_faces, align_faces_torch, compose
from gpen_video.align.compose import AlignedBatch, ComposeResult, GrainSeed
from gpen_video.align.fusion import FaceView, FusedFace, fuse_face
from gpen_video.config import ComposeConfig
from gpen_video.errors import ConfigError
from gpen_video.faces.types import TrackedFace
from gpen_video.io.colour import to_8bit
from gpen_video.restore.restorer import DeviceRestorer, Restorer

if TYPE_CHECKING:
    import torch

    from gpen_video.restore.streams import StageStream

    #: a batch of crops: a host array on the host path, a device tensor on the device path
    Crops = np.ndarray | torch.Tensor

DEVICE_PATH_CHOICES = ("auto", "on", "off")


@dataclass(frozen=True, eq=False)
class FaceCrops:
    """One frame's aligned faces, on the side of the path that cut them (host arrays or device tensors)."""

    for_restorer: np.ndarray | torch.Tensor  # (N, S, S, 3) uint8 BGR
    source: np.ndarray | torch.Tensor  # the same crops in the frame's bit depth (colour matching)
    affines: np.ndarray  # (N, 2, 3) float64, frame -> crop
    frame: np.ndarray | torch.Tensor  # the upright frame where compose works (the host image, or its device copy)
    ready: torch.cuda.Event | None = None  # CUDA: recorded after the crops were cut
    tracks: tuple[int, ...] = ()  # each face's track id (the report's per-face flicker follows them)

    def __len__(self) -> int:
        return len(self.affines)


class FramePath(ABC):
    """The four steps, on one side. ``on_device``: frames stay on the restorer's device."""

    on_device: bool

    def __init__(self, restorer: Restorer) -> None:
        self.restorer = restorer

    @abstractmethod
    def align(
        self,
        image: np.ndarray,
        faces: Sequence[TrackedFace],
        size: int,
        template: str,
        fused: np.ndarray | None = None,
    ) -> FaceCrops:
        """Cut ``faces`` out of the upright working ``image``. ``fused``: ``image`` with its faces fused along their
        tracks (``align.fusion``): the restorer's crops are cut from it; colour matching and the paste-back keep
        ``image``'s own."""

    @abstractmethod
    def fuse(self, reference: FaceView, neighbours: Sequence[FaceView], strength: float) -> FusedFace:
        """``reference``'s face region fused with its track's ``neighbours`` (``align.fusion``), as host samples."""

    @abstractmethod
    def restoring(self, parts: Sequence[FaceCrops]) -> Iterator[None]:
        """A context in which the crops of ``parts`` may be read and restored."""

    @abstractmethod
    def join(self, batches: Sequence[np.ndarray | torch.Tensor]) -> np.ndarray | torch.Tensor:
        """Several batches of crops as one (along the first axis)."""

    @abstractmethod
    def restore(self, batch: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """One forward batch through the restorer, on this side."""

    @abstractmethod
    def mark(self) -> torch.cuda.Event | None:
        """After the restores queued so far (CUDA); None where work is done when the call returns."""

    @abstractmethod
    def compose(
        self,
        image: np.ndarray,
        crops: FaceCrops,
        restored: np.ndarray | torch.Tensor,
        ready: torch.cuda.Event | None,
        config: ComposeConfig,
        frame_key: int = 0,
        factors: Sequence[float] | None = None,
    ) -> ComposeResult:
        """The composed upright frame (``image``'s dtype), the paste mask (H, W) float32 and where it may be nonzero,
        on the host.
        ``frame_key``: the frame's source pts (seeds its grain); ``factors``: each face's factor on the blend (the
        identity guard's; None: 1)."""

    @abstractmethod
    def thumbnails(
        self, crops: np.ndarray | torch.Tensor, rows: Sequence[int], side: int, ready: Sequence[torch.cuda.Event | None]
    ) -> np.ndarray:
        """Rows ``rows`` of a frame's ``crops`` (restorer's or source's, either depth) as 8-bit (n, side, side, 3)
        host arrays, shrunk by block means where they are larger (only these rows, at that size, reach the host).
        ``ready``: the events after the work that made ``crops``."""


class HostPath(FramePath):
    """NumPy and OpenCV on the host: the reference."""

    on_device = False

    def align(
        self,
        image: np.ndarray,
        faces: Sequence[TrackedFace],
        size: int,
        template: str,
        fused: np.ndarray | None = None,
    ) -> FaceCrops:
        batch = align_faces(image, faces, size, template)
        for_restorer = batch.crops if fused is None else align_faces(fused, faces, size, template).crops
        tracks = tuple(f.track_id for f in faces)
        return FaceCrops(to_8bit(for_restorer), batch.crops, batch.affines, image, None, tracks)

    def fuse(self, reference: FaceView, neighbours: Sequence[FaceView], strength: float) -> FusedFace:
        return fuse_face(reference, neighbours, strength)

    @contextmanager
    def restoring(self, parts: Sequence[FaceCrops]) -> Iterator[None]:
        yield

    def join(self, batches: Sequence[np.ndarray | torch.Tensor]) -> np.ndarray:
        return np.concatenate(batches)

    def restore(self, batch: np.ndarray | torch.Tensor) -> np.ndarray:
        assert isinstance(batch, np.ndarray)
        return self.restorer.restore(batch)

    def mark(self) -> None:
        return None

    def compose(
        self,
        image: np.ndarray,
        crops: FaceCrops,
        restored: np.ndarray | torch.Tensor,
        ready: torch.cuda.Event | None,
        config: ComposeConfig,
        frame_key: int = 0,
        factors: Sequence[float] | None = None,
    ) -> ComposeResult:
        assert isinstance(restored, np.ndarray) and isinstance(crops.source, np.ndarray)
        # the frame the crops were cut from: ``image`` may be larger (background upscale)
        batch = AlignedBatch(crops.source, crops.affines, tuple(crops.frame.shape[:2]))
        grain = GrainSeed(frame_key) if config.grain == "match" else None
        return compose(image, restored, batch, config, grain=grain, factors=factors)

    def thumbnails(
        self, crops: np.ndarray | torch.Tensor, rows: Sequence[int], side: int, ready: Sequence[torch.cuda.Event | None]
    ) -> np.ndarray:
        assert isinstance(crops, np.ndarray)
        picked = to_8bit(crops[list(rows)])
        if picked.shape[1] <= side:
            return picked
        return np.stack([cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA) for crop in picked])


class DevicePath(FramePath):
    """torch on the restorer's device: one upload per frame with faces, one download of the composed frame."""

    on_device = True

    def __init__(self, restorer: DeviceRestorer) -> None:
        from gpen_video.restore.streams import StageStream

        super().__init__(restorer)
        self.device_restorer = restorer
        self.torch_device = restorer.device.torch()
        self.upload_stream = StageStream(self.torch_device)
        self.compute_stream = StageStream(self.torch_device)
        self._download_streams: dict[int, StageStream] = {}  # one per compose worker thread
        self._lock = threading.Lock()

    def align(
        self,
        image: np.ndarray,
        faces: Sequence[TrackedFace],
        size: int,
        template: str,
        fused: np.ndarray | None = None,
    ) -> FaceCrops:
        """Upload the frame once, on the upload stream; cut the crops there (16-bit frames travel as int32). A fused
        frame (fusion runs on the host) is uploaded too, for the restorer's crops."""
        with self.upload_stream.enter():
            frame = self.upload_stream.upload(image)
            crops, affines = align_faces_torch(frame, faces, size, template)
            for_restorer = crops
            if fused is not None:
                for_restorer, _ = align_faces_torch(self.upload_stream.upload(fused), faces, size, template)
            tracks = tuple(f.track_id for f in faces)
            return FaceCrops(to_8bit(for_restorer), crops, affines, frame, self.upload_stream.mark(), tracks)

    def fuse(self, reference: FaceView, neighbours: Sequence[FaceView], strength: float) -> FusedFace:
        """Registration on the host, resampling and merge on the device (``align.torch_fusion``), on the calling
        worker's current stream; the fused region comes back before the crops are cut."""
        from gpen_video.align.torch_fusion import fuse_face_torch

        return fuse_face_torch(reference, neighbours, strength, self.torch_device)

    @contextmanager
    def restoring(self, parts: Sequence[FaceCrops]) -> Iterator[None]:
        with self.compute_stream.enter([p.ready for p in parts], [p.for_restorer for p in parts]):
            yield

    def join(self, batches: Sequence[np.ndarray | torch.Tensor]) -> torch.Tensor:
        import torch

        return torch.cat(list(batches))  # type: ignore[arg-type] - device tensors on this path

    def restore(self, batch: np.ndarray | torch.Tensor) -> torch.Tensor:
        assert not isinstance(batch, np.ndarray)
        return self.device_restorer.restore_on_device(batch)

    def mark(self) -> torch.cuda.Event | None:
        return self.compute_stream.mark()

    def compose(
        self,
        image: np.ndarray,
        crops: FaceCrops,
        restored: np.ndarray | torch.Tensor,
        ready: torch.cuda.Event | None,
        config: ComposeConfig,
        frame_key: int = 0,
        factors: Sequence[float] | None = None,
    ) -> ComposeResult:
        """Paste back on the device, on this worker's download stream; the composed frame comes back once."""
        from gpen_video.align.torch_compose import compose_torch

        if config.grain != "off" or config.upscale != 1:
            raise ConfigError(
                "grain and background upscale are composed on the host path; pass --set restore.device_path=off"
            )
        stream = self._download_stream()
        # each worker its own stream, so one frame's paste and download do not queue behind another's
        with stream.enter([ready], (crops.frame, restored, crops.source)):
            image_t, mask_t, box = compose_torch(
                crops.frame, restored, crops.affines, config, crops=crops.source, factors=factors
            )
            composed, mask = stream.download(image_t), stream.download(mask_t)
        return ComposeResult(composed.astype(image.dtype, copy=False), mask, () if box is None else (box,))

    def thumbnails(
        self, crops: np.ndarray | torch.Tensor, rows: Sequence[int], side: int, ready: Sequence[torch.cuda.Event | None]
    ) -> np.ndarray:
        """Shrunk on the device (block means, as ``cv2.INTER_AREA`` for a whole factor), on this thread's stream after
        ``ready``; one download of the shrunk rows."""
        import torch
        import torch.nn.functional as F

        assert not isinstance(crops, np.ndarray)
        stream = self._download_stream()
        with stream.enter(ready, (crops,)):
            picked = to_8bit(crops[torch.as_tensor(list(rows), device=crops.device)])
            if picked.shape[1] > side:
                area = F.interpolate(picked.permute(0, 3, 1, 2).to(torch.float32), size=(side, side), mode="area")
                picked = area.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
            return stream.download(picked)

    def _download_stream(self) -> StageStream:
        from gpen_video.restore.streams import StageStream

        worker = threading.get_ident()
        with self._lock:
            if worker not in self._download_streams:  # made once per worker: a CUDA stream is not free
                self._download_streams[worker] = StageStream(self.torch_device)
            return self._download_streams[worker]


def choose_path(restorer: Restorer, device_path: str) -> FramePath:
    """``restore.device_path``: ``auto`` keeps frames on the GPU when the restorer runs on CUDA; ``on`` forces
    the device path on the restorer's device (on CPU, the twin the tests compare with the host path)."""
    if device_path not in DEVICE_PATH_CHOICES:  # defensive: config declares the choices
        raise ConfigError(f"restore.device_path must be auto, on or off, got '{device_path}'")
    if device_path == "off":
        return HostPath(restorer)
    if not isinstance(restorer, DeviceRestorer):
        if device_path == "on":
            raise ConfigError(
                f"restore.device_path on needs a restorer that takes device tensors (PyTorch GPEN or identity); "
                f"{restorer.name} takes host arrays only"
            )
        return HostPath(restorer)
    if device_path == "auto" and not restorer.device.is_cuda:
        return HostPath(restorer)
    return DevicePath(restorer)
