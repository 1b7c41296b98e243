"""Worker groups: work of one group runs in order, different groups concurrently.

Each request is queued on its group (by default its resource name); a
group's queue is worked off by one task at a time, and at most ``count``
groups run at once.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Awaitable, Callable

#: Groups worked on at once unless the service says otherwise.
DEFAULT_WORKER_COUNT = 32

Job = Callable[[], Awaitable[None]]


class Workers:
    """Queues of jobs by group name."""

    def __init__(self, count: int = DEFAULT_WORKER_COUNT, log: logging.Logger | None = None) -> None:
        if count < 1:
            raise ValueError("the worker count is at least 1")
        self.count = count
        self._log = log or logging.getLogger("resservice")
        self._queues: dict[str, collections.deque[Job]] = {}
        self._slots: asyncio.Semaphore | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle: asyncio.Event | None = None

    def submit(self, group: str, job: Job) -> None:
        """Queue ``job`` behind the group's earlier jobs."""
        queue = self._queues.get(group)
        if queue is not None:
            queue.append(job)
            return
        queue = self._queues[group] = collections.deque([job])
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.count)
            self._idle = asyncio.Event()
        self._idle.clear()
        task = asyncio.ensure_future(self._work(group, queue))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _work(self, group: str, queue: collections.deque[Job]) -> None:
        assert self._slots is not None and self._idle is not None
        try:
            async with self._slots:
                while queue:
                    try:
                        await queue[0]()
                    except Exception:
                        # Jobs answer their own errors; one that still raises is a bug here.
                        self._log.exception("resservice: a job of worker group %s failed", group)
                    finally:
                        queue.popleft()
        finally:
            del self._queues[group]
            if not self._queues:
                self._idle.set()

    @property
    def busy(self) -> bool:
        return bool(self._queues)

    async def idle(self) -> None:
        """Wait until every queued job has run."""
        if self._queues and self._idle is not None:
            await self._idle.wait()
