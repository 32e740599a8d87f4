"""The Ray engine: segments of every file run as tasks on a pool of Ray actors, one per GPU.

Ray is the existing engine for GPU batch inference across machines: it places each actor on a
node with a free GPU (``num_gpus=1``; 0 when restoring on CPU), and each actor loads its model once
and keeps it for every segment it is given. Workers read the inputs and write segment files into
the job folder, so both must be on storage every node sees (NFS, a cluster file system); the driver
alone records the manifest and assembles outputs, so resume is the same as with the local engine.

Every actor restores on the device kind the user asked for (``cuda`` or ``tensorrt`` on the one GPU Ray shows
it, ``cpu``) with the CPU threads the driver means it to have: Ray sets ``OMP_NUM_THREADS`` to an actor's
``num_cpus`` (1), so the share is handed over in the actor's environment, and it sizes the host pools too.

The driver joins exactly the cluster at ``--address`` (Ray 2.60 would turn a loopback address into this
machine's interface address first), and a cluster that is not there, or refuses the driver's token (Ray's
token authentication), is one line that says what to do.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from gpen_video.config import Config
from gpen_video.errors import ClusterError, ConfigError, DependencyError
from gpen_video.jobs.tasks import RestorerCache, SegmentDone, SegmentTask, execute_segment
from gpen_video.restore.device import parse_device

log = logging.getLogger(__name__)

INSTALL_HINT = "--engine ray needs Ray: pip install 'gpen-video[ray]'"
TOKEN_HINT = (
    "export RAY_AUTH_MODE=token and the cluster's token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token; "
    "`ray get-auth-token` on the head prints it) here and on every node before `ray start` (README, Ray section)"
)


def import_ray() -> Any:
    """Ray, or a one-line DependencyError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise DependencyError(INSTALL_HINT) from None
    return ray


class SegmentWorker:
    """Body of a Ray actor: holds the restorers of one worker (one GPU) for its lifetime.

    ``device``: the kind the user asked for, as this actor sees it (Ray shows it its GPU as index 0);
    ``threads``: the CPU threads the driver gave it (also in its ``OMP_NUM_THREADS``).
    """

    def __init__(self, device: str, threads: int) -> None:
        logging.getLogger("gpen_video").setLevel(logging.WARNING)
        self.device, self.threads = device, threads
        self.restorers = RestorerCache(device)

    def run(self, task: SegmentTask) -> SegmentDone:
        if not task.config.threads:  # the host pools get this actor's share of the node, not every core of it
            task = replace(task, config=replace(task.config, threads=self.threads))
        return replace(execute_segment(task, self.restorers), node=_node_id())

    def describe(self) -> dict[str, Any]:
        """What this actor runs with: device, threads (its own and its environment's) and node."""
        return {"device": self.device, "threads": self.threads, "omp": os.environ.get("OMP_NUM_THREADS"),
                "node": _node_id()}  # fmt: skip


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def wants_gpu(device: str, cluster_gpus: float) -> bool:
    """1 GPU per worker when CUDA is requested (or ``auto`` on a cluster that has GPUs), else 0."""
    tensorrt = device.strip().lower().partition(":")[0] in ("tensorrt", "trt")
    parsed = None if tensorrt else parse_device(device)  # the one reading of auto|cpu|cuda|cuda:N
    if tensorrt or (parsed is not None and parsed.is_cuda):
        if cluster_gpus < 1:
            raise ConfigError(f"--device {device}: the Ray cluster has no GPU; use --device cpu or add GPU nodes")
        return True
    return parsed is None and cluster_gpus >= 1


def actor_device(device: str, gpu: bool) -> str:
    """The device of every actor: the kind asked for, on the one GPU Ray shows the actor (``cuda:1`` -> ``cuda``,
    ``tensorrt:1`` -> ``tensorrt``; ``auto`` on a GPU cluster -> ``cuda``), or ``cpu`` for actors without a GPU."""
    if not gpu:
        return "cpu"
    kind = device.strip().lower().partition(":")[0]
    return "tensorrt" if kind in ("tensorrt", "trt") else "cuda"


def actor_threads(nodes: list[dict[str, Any]], gpu: bool, actors: int) -> int:
    """CPU threads per actor: with GPUs, the CPUs of the leanest GPU node over its GPUs (an actor per GPU); on
    the CPU, the cluster's CPUs over the actors, but never more than the smallest node has."""
    resources = [n.get("Resources", {}) for n in nodes if n.get("Alive", n.get("alive", False))]
    if gpu:
        shares = [r.get("CPU", 0) // r["GPU"] for r in resources if r.get("GPU", 0) >= 1]
    else:
        cpus = [r["CPU"] for r in resources if r.get("CPU", 0) >= 1]
        shares = [min(sum(cpus) // max(1, actors), min(cpus))] if cpus else []
    return max(1, int(min(shares, default=1)))


def host_port(address: str) -> tuple[str, int] | None:
    """``HOST:PORT`` (``[V6]:PORT``) of a head; None for what Ray resolves itself (``auto``, ``local``,
    ``ray://`` client addresses)."""
    if address in ("auto", "local") or "://" in address:
        return None
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address {address}: give the head's HOST:PORT (the port of `ray start --head --port`)")
    return host.strip("[]"), int(port)


def check_listening(host: str, port: int, timeout: float = 5.0) -> None:
    """Something must answer at ``host:port`` (Ray itself waits minutes on a dead address before it gives up)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except socket.gaierror:
        raise ClusterError(f"--address {host}:{port}: cannot resolve {host}; give the Ray head's address") from None
    except ConnectionRefusedError:
        raise ClusterError(
            f"nothing listens at {host}:{port}: start the Ray head there (ray start --head --port={port}) "
            "or give --address the head's address"
        ) from None
    except OSError as exc:
        raise ClusterError(
            f"cannot reach the Ray head at {host}:{port} ({exc.strerror or 'timed out'}): "
            "check --address and that the port is open from this machine"
        ) from None


@contextlib.contextmanager
def exact_address() -> Iterator[None]:
    """While ``ray.init`` runs, an address is used as given: Ray 2.60 (``services.resolve_ip_for_localhost``)
    turns 127.0.0.1 or localhost into this machine's first interface address, a head that may not listen there."""
    try:
        from ray._private import services
    except ImportError:  # another Ray layout: nothing to undo
        services = None
    original = getattr(services, "resolve_ip_for_localhost", None)
    if original is not None:
        services.resolve_ip_for_localhost = lambda host: host
    try:
        yield
    finally:
        if original is not None:
            services.resolve_ip_for_localhost = original


def _refused(exc: BaseException, where: str) -> ClusterError:
    """The one line for a failed ``ray.init``: the token refused (or missing), or why the cluster was not joined."""
    chain, seen = [], exc
    while seen is not None and len(chain) < 8:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    text = " ".join(f"{type(e).__name__} {e}" for e in chain)
    if any(word in text for word in ("InvalidAuthToken", "Unauthenticated", "AuthenticationError", "auth token")):
        return ClusterError(f"the Ray cluster at {where} refused this driver's token: {TOKEN_HINT}")
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return ClusterError(f"cannot start or reach {where}: {first}")


@contextlib.contextmanager
def ray_output_to_log() -> Iterator[None]:
    """What Ray's C++ client writes to the process's stderr while it joins a cluster (a warning a second while the
    token is refused) goes to this module's debug log (``-v``), so a refusal is the CLI's one line."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode(errors="replace").strip()
            if text:
                log.debug("ray: %s", text)


def connect(ray: Any, address: str | None) -> None:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``), exactly there; with neither, start a local Ray."""
    target = address or os.environ.get("RAY_ADDRESS") or None
    endpoint = host_port(target) if target else None
    if endpoint is not None:
        check_listening(*endpoint)
    # a local instance starts processes that would inherit a redirected stderr: only a join is quietened
    quiet = ray_output_to_log() if endpoint is not None else contextlib.nullcontext()
    try:
        with quiet, exact_address():
            ray.init(address=target, include_dashboard=False, log_to_driver=True, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as exc:
        raise _refused(exc, target or "a local Ray instance") from exc


class RayEngine:
    """Runs tasks on ``workers`` actors (default: one per GPU, or one per CPU when on CPU)."""

    name = "ray"

    def __init__(self, config: Config, address: str | None = None, workers: int | None = None) -> None:
        ray = import_ray()
        self.ray = ray
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            connect(ray, address)
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
        self.device = actor_device(config.restore.device, self.gpu)
        self.threads = actor_threads(ray.nodes(), self.gpu, self.capacity)
        # num_cpus=1 places the actors as before; Ray would also set OMP_NUM_THREADS=1 in them, so their share of
        # the node's cores is set in their environment instead
        self._actor_class = ray.remote(
            num_gpus=1 if self.gpu else 0,
            num_cpus=1,
            max_restarts=0,
            runtime_env={"env_vars": {"OMP_NUM_THREADS": str(self.threads)}},
        )(SegmentWorker)
        self._idle = [self._new_actor() for _ in range(self.capacity)]
        self._running: dict[Any, tuple[Any, SegmentTask]] = {}
        log.info("ray: %d %s worker(s), %s and %d CPU thread(s) each", self.capacity, self.device,
                 "1 GPU" if self.gpu else "no GPU", self.threads)  # fmt: skip

    def _new_actor(self) -> Any:
        return self._actor_class.remote(self.device, self.threads)

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
