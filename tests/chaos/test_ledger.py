"""The chaos kit's ledger is an external system: a started run stays checkable, whoever finds it."""

from __future__ import annotations

from pathlib import Path

from engine import Done, InProgress, JobContext
from engine.clock import FakeClock
from tests.actions.ledger import EXPECTED_TOKEN_PREFIX, LedgerAction


def _job(ledger: Path, *, resumed: bool) -> JobContext:
    return JobContext(job_id="j-2", execution_id="e-1", pipeline={},
                      configuration={"Ledger": str(ledger), "Outcome": "pass", "Steps": "1",
                                     "Token": EXPECTED_TOKEN_PREFIX + "x"},
                      run={}, details=None, attempt=1, resumed=resumed, clock=FakeClock(0.0))


def test_a_run_started_by_its_log_line_alone_is_found_and_checked(tmp_path: Path) -> None:
    """A worker killed between the run's log line and its file: the next one's find() sees the
    run, and check() can follow it (it raised FileNotFoundError in a CI kill loop)."""
    (tmp_path / "submissions.log").write_text("e-1 run-abc j-1\n")
    action = LedgerAction()
    found = action.find(_job(tmp_path, resumed=True))
    assert isinstance(found, InProgress) and found.details is not None
    assert found.details.external_id == "run-abc"
    outcome = action.check(_job(tmp_path, resumed=True))
    assert isinstance(outcome, Done) and outcome.details is not None
    assert outcome.details.external_id == "run-abc"
    assert (tmp_path / "submissions.log").read_text().count("run-") == 1
