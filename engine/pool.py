"""The effect threads: a fixed number of threads running queued calls, each under a job's id.

What the scheduler needs of concurrent.futures.ThreadPoolExecutor, without its per-call costs:
no Future (each one builds a Condition and its locks) and no done-callback, which cost more
than an instant effect itself on the hot path (one call per effect, four effects per job).
The scheduler learns of a finished effect from its own queue, so a result object has no
reader. Like the executor, the threads start as calls come in, are named `effect_N`, and the
interpreter waits at exit for calls that are running (a call that never started is cancelled
by `close`, which says whose they were).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from contextlib import suppress
from queue import SimpleQueue

_STOP: tuple[str, Callable[[], None] | None] = ("", None)


class _Shared:
    """What the threads use: never the pool itself, so a pool nobody closed (a test's) is
    collected, and its threads told to stop, as an executor's are."""

    def __init__(self) -> None:
        self.work: SimpleQueue[tuple[str, Callable[[], None] | None]] = SimpleQueue()
        self.queued: dict[str, int] = {}
        """Calls queued and not started, by job id (a count: one job is queued once, but a
        miscount must not lose a cancellation)."""
        self.lock = threading.Lock()
        self.idle = 0
        self.threads: list[threading.Thread] = []

    def serve(self) -> None:
        while True:
            key, call = self.work.get()
            if call is None:
                return
            with self.lock:
                left = self.queued.get(key, 0) - 1
                if left < 0:
                    continue  # cancelled by close(): never started
                if left:
                    self.queued[key] = left
                else:
                    del self.queued[key]
            # What a call raises is dropped, as an executor's unread future would hold it: the
            # scheduler's calls catch what they mean to report.
            with suppress(BaseException):
                call()
            with self.lock:
                self.idle += 1

    def stop(self) -> None:
        with self.lock:
            threads = len(self.threads)
        for _ in range(threads):
            self.work.put(_STOP)


class EffectPool:
    def __init__(self, size: int, name: str = "effect") -> None:
        if size < 1:
            raise ValueError(f"an effect pool needs at least one thread, not {size}")
        self.size = size
        self.name = name
        self._shared = _Shared()
        self._closed = False
        self._finalizer = weakref.finalize(self, self._shared.stop)
        _alive.add(self._shared)

    def submit(self, key: str, call: Callable[[], None]) -> None:
        """Run `call` in a pool thread; `key` (a job id) names it for `close`."""
        shared = self._shared
        with shared.lock:
            if self._closed:
                raise RuntimeError("the effect pool is closed")
            shared.queued[key] = shared.queued.get(key, 0) + 1
            thread = None
            if shared.idle:
                shared.idle -= 1
            elif len(shared.threads) < self.size:
                thread = threading.Thread(target=shared.serve, daemon=True,
                                          name=f"{self.name}_{len(shared.threads)}")
                shared.threads.append(thread)
        shared.work.put((key, call))
        if thread is not None:
            thread.start()

    def close(self) -> list[str]:
        """Stop taking calls, cancel the queued ones and return their keys; running calls
        finish (the interpreter waits for them at exit, as for an executor's)."""
        shared = self._shared
        with shared.lock:
            self._closed = True
            cancelled = sorted(shared.queued)
            shared.queued.clear()
        self._finalizer()  # tells every thread to stop, once
        return cancelled


_alive: weakref.WeakSet[_Shared] = weakref.WeakSet()


def _join_at_exit() -> None:
    """At interpreter exit, as concurrent.futures does: wait for the calls still running
    (the threads are daemons only so that an idle one cannot keep the process alive)."""
    for shared in list(_alive):
        shared.stop()
        for thread in list(shared.threads):
            if thread.is_alive():
                thread.join()


threading._register_atexit(_join_at_exit)  # type: ignore[attr-defined]
