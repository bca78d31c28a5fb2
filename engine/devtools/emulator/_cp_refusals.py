"""Refusals set from outside: CodePipeline answering a call with an error the worker cannot see
coming (a limit the service counts otherwise than the model says, a rule nobody documented).

Like the seeded faults (_http.Faults), they are the test's hand on the service;
unlike them, they are deterministic and hit one operation only, after the request passed the
model's validation, so a worker's handling of a permanent refusal can be shown end to end.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from engine.devtools.emulator._aws_json import AwsError


@dataclass
class _Refusal:
    code: str
    message: str
    times: int | None
    """Calls still to refuse; None: every call until lifted."""


class Refusals:
    """Per operation, the error its next calls are answered with."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_operation: dict[str, _Refusal] = {}

    def set(self, operation: str, code: str | None, message: str, times: int | None) -> None:
        """Refuse `operation` with `code` (every call, or the next `times`); None lifts it."""
        if times is not None and times < 1:
            raise ValueError(f"times must be >= 1 or None, not {times}")
        with self._lock:
            if code is None:
                self._by_operation.pop(operation, None)
            else:
                self._by_operation[operation] = _Refusal(code, message, times)

    def check(self, operation: str) -> None:
        """Raise the refusal set for `operation`, if one is left (and count it down)."""
        with self._lock:
            refusal = self._by_operation.get(operation)
            if refusal is None:
                return
            if refusal.times is not None:
                refusal.times -= 1
                if refusal.times <= 0:
                    del self._by_operation[operation]
        raise AwsError(refusal.code, refusal.message)

    def as_dict(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {operation: {"code": r.code, "message": r.message, "times": r.times}
                    for operation, r in self._by_operation.items()}

    def clear(self) -> None:
        with self._lock:
            self._by_operation.clear()
