"""A thread pool of daemon threads, for calls into Go that may never return.

``concurrent.futures.ThreadPoolExecutor`` joins its threads when the
interpreter exits (and ``asyncio.run`` joins the loop's default executor),
so one Go call stuck in a transfer that has no overall timeout (whatsmeow's
media uploads and downloads) would hold the process's exit for as long as
it hangs. These threads are daemons: nobody waits for them at exit.

Threads are made on demand, up to ``max_workers``, and reused; a job that
has not started yet can be cancelled through its future.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

_Job = tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]


class DaemonPool:
    """``submit(fn, *args)`` → a :class:`concurrent.futures.Future`, run on a daemon thread."""

    def __init__(self, max_workers: int, name: str) -> None:
        if max_workers < 1:
            raise ValueError("a pool needs at least one thread")
        self.max_workers = max_workers
        self._name = name
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._threads = 0

    @property
    def threads(self) -> int:
        return self._threads

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        self._jobs.put((future, fn, args))
        self._grow()
        return future

    def _grow(self) -> None:
        if self._idle.acquire(blocking=False):
            return  # a thread is waiting for work: it takes this job
        with self._lock:
            if self._threads >= self.max_workers:
                return
            self._threads += 1
            number = self._threads
        threading.Thread(target=self._work, name=f"{self._name}-{number}", daemon=True).start()

    def _work(self) -> None:
        while True:
            future, fn, args = self._jobs.get()
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args)
                except BaseException as exc:  # handed to whoever awaits the future
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del future, fn, args
            self._idle.release()
