"""The Travis action's own settings, read from the environment when the worker starts.

Read once, when the action is made (`cpworker run` makes its actions as it starts), never at
import: a module imported by a test, a tool or another process before its environment is set
must not freeze a value, and a bad value must stop the worker at start with one line, not fail
jobs one by one later.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from engine.errors import ConfigurationProblem

API_URL_ENV = "CPWORKER_TRAVIS_API_URL"
"""The API URL when a job's ApiUrl property is empty (the emulator in tests)."""
TIMEOUT_ENV = "CPWORKER_TRAVIS_TIMEOUT"
"""Seconds to wait for one Travis answer."""

READ_TIMEOUT = 20.0
"""Seconds to wait for Travis's answer when CPWORKER_TRAVIS_TIMEOUT is unset. Three attempts
with backoff stay well inside the engine's five-minute lease of a job."""


@dataclass(frozen=True)
class TravisSettings:
    api_url: str | None = None
    """Used when a job's ApiUrl is empty; None: api.travis-ci.com."""
    read_timeout: float = READ_TIMEOUT

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> TravisSettings:
        raw = environ.get(TIMEOUT_ENV, "").strip()
        timeout = READ_TIMEOUT
        if raw:
            try:
                timeout = float(raw)
            except ValueError:
                timeout = math.nan
            if not (math.isfinite(timeout) and 0 < timeout <= 300):
                raise ConfigurationProblem(
                    f"{TIMEOUT_ENV}={raw!r} is not a number of seconds between 0 and 300",
                    fix=f"set {TIMEOUT_ENV} to e.g. 20, or unset it",
                )
        return cls(api_url=environ.get(API_URL_ENV, "").strip() or None, read_timeout=timeout)
