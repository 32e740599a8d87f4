"""The in-process engine: segments run one after another in this process, same planner, same manifest.

It is the default because a single machine with one GPU gains nothing from a scheduler, and it
keeps at most one segment in flight, so a crash loses at most that segment's work.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from gpen_video.jobs.tasks import RestorerCache, SegmentDone, SegmentTask, execute_segment

FramesCallback = Callable[[str, int], None]  # (record key, frames newly written)


class LocalEngine:
    """Runs each submitted task when its result is asked for."""

    name = "local"
    capacity = 1

    def __init__(self, on_frames: FramesCallback | None = None) -> None:
        self.on_frames = on_frames
        self.restorers = RestorerCache()
        self._queue: deque[SegmentTask] = deque()

    def submit(self, task: SegmentTask) -> None:
        self._queue.append(task)

    def in_flight(self) -> int:
        return len(self._queue)

    def next_done(self) -> SegmentDone:
        task = self._queue.popleft()
        seen = 0

        def progress(done: int) -> None:
            nonlocal seen
            if self.on_frames and done > seen:
                self.on_frames(task.key, done - seen)
            seen = max(seen, done)

        return execute_segment(task, self.restorers, progress)

    def reports_frames(self) -> bool:
        return True

    def close(self) -> None:
        self.restorers.close()
