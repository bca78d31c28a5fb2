"""Crash points: let a test kill the worker with SIGKILL at an exact step.

`CPWORKER_CRASH_AT=point[,point...]`, each `name` or `name@n` (the n-th time it is reached in this
process, default 1). Names: `after_commit`, `before:<effect>`, `after:<effect>` (the effect ran,
its outcome is not recorded yet), e.g. `before:submit`, `after:report_success@2`.
Unset (always, outside tests), `reached()` costs one comparison.
"""

from __future__ import annotations

import os
import signal
import threading

ENV = "CPWORKER_CRASH_AT"


def _parse(spec: str | None) -> dict[str, int]:
    points: dict[str, int] = {}
    for item in (spec or "").split(","):
        item = item.strip()
        if not item:
            continue
        name, _, count = item.partition("@")
        points[name] = int(count or 1)
    return points


_points = _parse(os.environ.get(ENV))
_seen: dict[str, int] = {}
_lock = threading.Lock()


def reached(name: str) -> None:
    """Die here, at once and without cleanup, if a test asked for it."""
    if not _points or name not in _points:
        return
    with _lock:
        _seen[name] = _seen.get(name, 0) + 1
        if _seen[name] == _points[name]:
            os.kill(os.getpid(), signal.SIGKILL)
