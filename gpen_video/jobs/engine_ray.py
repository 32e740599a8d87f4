"""The Ray engine: segments of every file run as tasks on a pool of Ray actors, one per GPU.

Ray is the existing engine for GPU batch inference across machines: it places each actor on a
node with a free GPU (``num_gpus=1``; 0 when restoring on CPU), and each actor loads its model once
and keeps it for every segment it is given. Workers read the inputs and write segment files into
the job folder, so both must be on storage every node sees (NFS, a cluster file system); the driver
alone records the manifest and assembles outputs, so resume is the same as with the local engine.
"""

from __future__ import annotations

import logging
from typing import Any

from gpen_video.config import Config
from gpen_video.errors import ConfigError, DependencyError
from gpen_video.jobs.tasks import RestorerCache, SegmentDone, SegmentTask, execute_segment
from gpen_video.restore.device import parse_device

log = logging.getLogger(__name__)

INSTALL_HINT = "--engine ray needs Ray: pip install 'gpen-video[ray]'"


def import_ray() -> Any:
    """Ray, or a one-line DependencyError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise DependencyError(INSTALL_HINT) from None
    return ray


class SegmentWorker:
    """Body of a Ray actor: holds the restorers of one worker (one GPU) for its lifetime."""

    def __init__(self, gpu: bool) -> None:
        logging.getLogger("gpen_video").setLevel(logging.WARNING)
        self.restorers = RestorerCache("cuda" if gpu else None)  # Ray shows the actor its GPU as cuda:0

    def run(self, task: SegmentTask) -> SegmentDone:
        return execute_segment(task, self.restorers)


def wants_gpu(device: str, cluster_gpus: float) -> bool:
    """1 GPU per worker when CUDA is requested (or ``auto`` on a cluster that has GPUs), else 0."""
    tensorrt = device.strip().lower() in ("tensorrt", "trt")
    parsed = None if tensorrt else parse_device(device)  # the one reading of auto|cpu|cuda|cuda:N
    if tensorrt or (parsed is not None and parsed.is_cuda):
        if cluster_gpus < 1:
            raise ConfigError(f"--device {device}: the Ray cluster has no GPU; use --device cpu or add GPU nodes")
        return True
    return parsed is None and cluster_gpus >= 1


class RayEngine:
    """Runs tasks on ``workers`` actors (default: one per GPU, or one per CPU when on CPU)."""

    name = "ray"

    def __init__(self, config: Config, address: str | None = None, workers: int | None = None) -> None:
        ray = import_ray()
        self.ray = ray
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=True)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = address or "a local Ray instance"
                raise DependencyError(f"cannot start or reach {where}: {str(exc).splitlines()[0]}") from exc
        resources = ray.cluster_resources()
        gpus = float(resources.get("GPU", 0))
        try:
            self.gpu = wants_gpu(config.restore.device, gpus)
        except ConfigError:
            if self._owns_ray:
                ray.shutdown()
            raise
        count = workers or int(gpus if self.gpu else resources.get("CPU", 1))
        self.capacity = max(1, count)
        self._actor_class = ray.remote(num_gpus=1 if self.gpu else 0, num_cpus=1, max_restarts=0)(SegmentWorker)
        self._idle = [self._new_actor() for _ in range(self.capacity)]
        self._running: dict[Any, tuple[Any, SegmentTask]] = {}
        log.info("ray: %d worker(s), %s each", self.capacity, "1 GPU" if self.gpu else "1 CPU")

    def _new_actor(self) -> Any:
        return self._actor_class.remote(self.gpu)

    def submit(self, task: SegmentTask) -> None:
        actor = self._idle.pop()
        self._running[actor.run.remote(task)] = (actor, task)

    def in_flight(self) -> int:
        return len(self._running)

    def next_done(self) -> SegmentDone:
        ready, _ = self.ray.wait(list(self._running), num_returns=1)
        ref = ready[0]
        actor, task = self._running.pop(ref)
        try:
            done = self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:  # the worker died (node lost, out of memory)
            log.warning("ray worker lost while restoring %s segment %d: %s", task.input, task.index, exc)
            self.ray.kill(actor, no_restart=True)
            actor = self._new_actor()
            done = SegmentDone(task.key, task.index, error=f"the Ray worker failed: {str(exc).splitlines()[0]}")
        self._idle.append(actor)
        return done

    def reports_frames(self) -> bool:
        return False  # frames are counted when a segment comes back

    def close(self) -> None:
        for actor in self._idle + [a for a, _ in self._running.values()]:
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception:
                log.debug("could not stop a ray actor", exc_info=True)
        self._idle, self._running = [], {}
        if self._owns_ray:
            self.ray.shutdown()
