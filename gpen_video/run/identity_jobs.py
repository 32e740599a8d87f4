"""Where the identity guard's distances are computed: in the guard's own thread, or in worker processes.

dlib holds Python's lock while its network runs (measured: six faces embedded on two threads take as long as on
one), so in threads the guard's two embeddings a measured face (about 170 ms of one core) run one at a time
whatever the cores, and on a machine fed by a GPU they would bound the run. ``ProcessJobs`` runs them in
``identity.processes`` worker processes instead, each with its own recogniser; the guard stage hands each frame's
pairs of thumbnails over and takes the distances back in the order it gave them, so the report and the pictures are
the same as ``InlineJobs``'s (the recogniser gives the same embedding in any process). The processes are started
(spawned: the run's threads make forking unsafe) when the first pair is handed over, so a run whose restored faces
all equal their sources (``--model identity``) starts none.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor

import numpy as np

from gpen_video.faces.recognizers.base import Recognizer

#: one face's pair: the source's thumbnail and the restored one, and the five points in each (1, 5, 2)
Pair = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def distances(recognizer: Recognizer, pairs: Sequence[Pair]) -> list[float]:
    """The recogniser's distance between the two faces of each pair."""
    out = []
    for before, after, before_points, after_points in pairs:
        a = recognizer.embed(before, before_points)
        b = recognizer.embed(after, after_points)
        out.append(float(recognizer.distance(a, b)[0, 0]))
    return out


class InlineJobs:
    """The distances computed when asked, in the caller's thread (``get``: the recogniser, made at its first use)."""

    def __init__(self, get: Callable[[], Recognizer]) -> None:
        self.get = get

    def submit(self, pairs: Sequence[Pair]) -> Future[list[float]]:
        done: Future[list[float]] = Future()
        done.set_result(distances(self.get(), pairs))
        return done

    def close(self) -> None:
        return None


_WORKER_RECOGNIZER: Recognizer | None = None  # a worker process's own recogniser


def _load(name: str) -> None:
    global _WORKER_RECOGNIZER
    from gpen_video.faces.recognizers import create_recognizer

    _WORKER_RECOGNIZER = create_recognizer(name)


def _worker_distances(pairs: Sequence[Pair]) -> list[float]:
    assert _WORKER_RECOGNIZER is not None
    return distances(_WORKER_RECOGNIZER, pairs)


class ProcessJobs:
    """The distances computed in ``processes`` worker processes, each with the recogniser ``name`` makes."""

    def __init__(self, name: str, processes: int) -> None:
        self.name = name
        self.processes = processes
        self.pool: ProcessPoolExecutor | None = None

    def submit(self, pairs: Sequence[Pair]) -> Future[list[float]]:
        if self.pool is None:
            context = multiprocessing.get_context("spawn")
            self.pool = ProcessPoolExecutor(self.processes, mp_context=context, initializer=_load,
                                            initargs=(self.name,))  # fmt: skip
        return self.pool.submit(_worker_distances, list(pairs))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
