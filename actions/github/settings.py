"""The GitHub action's own settings, read from the environment when the worker starts.

Read once, when the action is made (`cpworker run` makes its actions as it starts), never at
import: a module imported before its environment is set must not freeze a value, and a bad value
must stop the worker at start with one line, not fail jobs one by one later.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from engine.errors import ConfigurationProblem

API_URL_ENV = "CPWORKER_GITHUB_API_URL"
"""The API URL when a job's ApiUrl property is empty (the emulator in tests)."""
TIMEOUT_ENV = "CPWORKER_GITHUB_TIMEOUT"
"""Seconds to wait for one GitHub answer."""
RUN_DELAY_ENV = "CPWORKER_GITHUB_RUN_DELAY"
"""Seconds within which a dispatched run shows in the workflow's run list."""

READ_TIMEOUT = 20.0
"""Seconds to wait for GitHub's answer when CPWORKER_GITHUB_TIMEOUT is unset. Three attempts
with backoff stay well inside the engine's five-minute lease of a job."""

RUN_DELAY = 30.0
"""Seconds a dispatched run may take to show in the run list. GitHub documents none: the
dispatch answer (204) comes before the run exists, and the tools that look for the run
afterwards (cli/cli before v2.87, Codex-/return-dispatch) poll for tens of seconds. A lookup
that finds nothing is trusted only once this long has passed since the dispatch could have
landed, so it bounds both the takeover's wait (the action's submit_grace) and the lookup's."""


def _seconds(environ: Mapping[str, str], name: str, default: float, top: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= top):
        raise ConfigurationProblem(f"{name}={raw!r} is not a number of seconds between 0 and "
                                   f"{top:g}", fix=f"set {name} to e.g. {default:g}, or unset it")
    return value


@dataclass(frozen=True)
class GitHubSettings:
    api_url: str | None = None
    """Used when a job's ApiUrl is empty; None: https://api.github.com."""
    read_timeout: float = READ_TIMEOUT
    run_delay: float = RUN_DELAY

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> GitHubSettings:
        return cls(api_url=environ.get(API_URL_ENV, "").strip() or None,
                   read_timeout=_seconds(environ, TIMEOUT_ENV, READ_TIMEOUT, 300.0),
                   run_delay=_seconds(environ, RUN_DELAY_ENV, RUN_DELAY, 3600.0))
