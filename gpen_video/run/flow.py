"""Stages in their own threads, joined by bounded queues.

Decode, face tracking, restoring and compositing each run in a thread (PyAV, OpenCV, ONNX Runtime
and torch release the GIL while they work), so the wall time approaches that of the slowest stage
rather than the sum, and the bounded queues keep memory flat however long the video is. Each stage
handles its items in arrival order, so frames stay in order without a reorder buffer; a stage may
hold items back (look-ahead, batching) and release them later, still in order.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

from gpen_video.run.report import StageTimes

END = object()  # end of stream marker

In = TypeVar("In", contravariant=True)
Out = TypeVar("Out", covariant=True)


class Stage(Protocol[In, Out]):
    """One step of the flow, ``In`` records in, ``Out`` records out, in order: ``process`` each item, ``idle``
    when the inbox is momentarily empty (release what is held rather than wait), ``finish`` at the end."""

    name: str

    def process(self, item: In) -> Iterable[Out]: ...

    def idle(self) -> Iterable[Out]: ...

    def finish(self) -> Iterable[Out]: ...


#: items each queue between two stages holds at most
QUEUE_SIZE = 4


class Flow:
    """A source iterator followed by stages; iterate it to get the last stage's output in order."""

    def __init__(
        self,
        source: Iterable[Any],
        stages: Sequence[Stage[Any, Any]],
        times: StageTimes,
        queue_size: int = QUEUE_SIZE,
        threaded: bool = True,
    ) -> None:
        self.source = source
        self.stages = stages
        self.threaded = threaded  # False: the same stages one after another in the caller's thread
        self.times = times
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.queues: list[queue.Queue[Any]] = [queue.Queue(maxsize=queue_size) for _ in range(len(stages) + 1)]
        self.threads = [threading.Thread(target=self._run_source, name="decode", daemon=True)]
        for i, stage in enumerate(stages):
            self.threads.append(threading.Thread(target=self._run_stage, args=(stage, i), name=stage.name, daemon=True))

    def __iter__(self) -> Iterator[Any]:
        if not self.threaded:
            yield from self._sequential()
            return
        for thread in self.threads:
            thread.start()
        out = self.queues[-1]
        try:
            while True:
                item = self._get(out)
                if item is END:
                    break
                yield item
        finally:
            self.stop.set()
            for thread in self.threads:
                thread.join(timeout=10)
        if self.errors:
            raise self.errors[0]

    def _sequential(self) -> Iterator[Any]:
        """Every item through every stage in turn, in this thread: the baseline the threads must beat."""

        def run(level: int, items: Iterable[Any]) -> Iterator[Any]:
            if level == len(self.stages):
                yield from items
                return
            stage = self.stages[level]
            for item in items:
                with self.times.timing(stage.name):
                    produced = list(stage.process(item)) if item is not END else list(stage.finish())
                yield from run(level + 1, produced)
                if item is END:
                    yield from run(level + 1, [END])

        for item in run(0, itertools.chain(self._timed_source(), [END])):
            if item is not END:
                yield item

    def _timed_source(self) -> Iterator[Any]:
        """The source's items, its time counted as the ``decode`` stage's."""
        iterator = iter(self.source)
        while True:
            with self.times.timing("decode"):
                item = next(iterator, END)
            if item is END:
                return
            yield item

    # -- threads ---------------------------------------------------------------------------------
    def _run_source(self) -> None:
        outbox = self.queues[0]
        try:
            for item in self._timed_source():
                if self.stop.is_set():
                    break
                self._put(outbox, item)
        except BaseException as exc:  # handed to the consumer
            self._fail(exc)
        finally:
            self._put(outbox, END, force=True)

    def _run_stage(self, stage: Stage[Any, Any], index: int) -> None:
        inbox, outbox = self.queues[index], self.queues[index + 1]
        try:
            while not self.stop.is_set():
                try:
                    item = inbox.get_nowait()
                except queue.Empty:
                    self._emit(outbox, stage.name, stage.idle)
                    item = self._get(inbox)
                if item is END:
                    self._emit(outbox, stage.name, stage.finish)
                    break
                self._emit(outbox, stage.name, lambda item=item: stage.process(item))
        except BaseException as exc:  # handed to the consumer
            self._fail(exc)
        finally:
            self._put(outbox, END, force=True)

    def _emit(self, outbox: queue.Queue[Any], name: str, produce: Callable[[], Iterable[Any]]) -> None:
        with self.times.timing(name):
            items = list(produce())
        for item in items:
            self._put(outbox, item)

    def _fail(self, exc: BaseException) -> None:
        self.errors.append(exc)
        self.stop.set()

    def _put(self, q: queue.Queue[Any], item: Any, force: bool = False) -> None:
        while True:
            if self.stop.is_set() and not force:
                return
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                if self.stop.is_set():
                    if force:  # make room for the end marker so the consumer wakes up
                        with contextlib.suppress(queue.Empty):
                            q.get_nowait()
                    else:
                        return

    def _get(self, q: queue.Queue[Any]) -> Any:
        while True:
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                if self.stop.is_set() and q.empty():
                    return END
