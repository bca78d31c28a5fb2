"""CodePipeline calls per execution, on the emulators: a change that adds calls fails here.

Each hand-on costs a continuation job (a poll's share, an AcknowledgeJob, a
PutJobSuccessResult) against per-account quotas AWS does not publish, so the default hands on
once, when the external run's link is known, then only every progress interval
(engine.decide). The figures come from the real worker driving the Travis action against the
CodePipeline and Travis emulators over HTTP, on a fake clock (tests/bench/calls_bench.py); the
benchmark prints the same measurement at larger sizes.
"""

from __future__ import annotations

import math
from pathlib import Path

from engine import defaults
from tests.bench.calls_bench import calls_per_execution

MINUTE = 60.0


def test_a_short_build_costs_two_jobs_four_calls_beyond_polls(tmp_path: Path) -> None:
    economy = calls_per_execution(tmp_path, 3, 1 * MINUTE)
    # The first job hands on at the build's link, its continuation reports the result.
    assert economy.jobs_per_execution == 2
    assert economy.calls.get("AcknowledgeJob") == 6
    assert economy.calls.get("PutJobSuccessResult") == 6
    assert economy.beyond_polls == 4
    assert "GetJobDetails" not in economy.calls and "PutJobFailureResult" not in economy.calls
    # Polls are the poller's cadence over the run (about 4 minutes here, 3 executions), shared
    # out; a poller that stopped backing off when idle would blow this.
    assert economy.polls <= 8


def test_a_long_build_hands_on_once_per_progress_interval(tmp_path: Path) -> None:
    build = 20 * MINUTE
    economy = calls_per_execution(tmp_path, 1, build)
    jobs = 1 + math.ceil(build / defaults.PROGRESS_INTERVAL)
    assert economy.jobs == jobs  # the link's hand-on, then one every 300 s the build outlasts
    assert economy.beyond_polls == 2 * jobs


def test_every_change_is_the_old_chattier_behaviour(tmp_path: Path) -> None:
    quiet = calls_per_execution(tmp_path, 2, 1 * MINUTE)
    chatty = calls_per_execution(tmp_path, 2, 1 * MINUTE, progress="every-change")
    # The pending request's summary is a hand-on of its own there, and the build's start too
    # when a check sees it apart from its creation.
    assert chatty.jobs_per_execution >= quiet.jobs_per_execution + 1
    assert chatty.beyond_polls >= quiet.beyond_polls + 2
