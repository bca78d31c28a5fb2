"""The command line through click's CliRunner: the diagram, empty and broken databases, readable
errors, and every setting's environment variable in --help."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from engine.cli import main
from engine.machine import EFFECTS, EVENT_TYPES, FINAL, TRANSITIONS, JobState
from engine.projection import Event, Job, fold
from engine.store import Change, EventStore, open_store
from tests.e2e.conftest import LEDGER_TYPE, invoke


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


@pytest.fixture
def store(db: str) -> Iterator[EventStore]:
    opened = open_store(db)
    yield opened
    opened.close()


def _acquired(job_id: str, at: float) -> Event:
    return Event(job_id, 1, "acquired", at, {
        "nonce": "n-1", "action": "ledger", "action_type": LEDGER_TYPE,
        "execution_id": f"execution-of-{job_id}", "pipeline": {"pipeline_name": "p"},
    })


def _write_good(store: EventStore, job_id: str) -> None:
    """A job as the engine writes it: the row is the fold of its events."""
    events = [_acquired(job_id, time.time())]
    row = fold(events)
    assert row is not None
    store.commit([Change(events, row, new=True)])


def _write_bad(store: EventStore, job_id: str, event_type: str) -> None:
    """A history the machine cannot accept, with a hand-made row, as a buggy writer would."""
    now = time.time()
    events = [_acquired(job_id, now), Event(job_id, 2, event_type, now, {})]
    row = Job(job_id=job_id, state=JobState.ACQUIRED, action="ledger", action_type=LEDGER_TYPE,
              execution_id=f"execution-of-{job_id}", created_at=now, updated_at=now, last_seq=2,
              next_due_at=now)
    store.commit([Change(events, row, new=True)])


# --- diagram ------------------------------------------------------------------------------------


def test_the_mermaid_diagram_draws_every_transition_of_the_machine() -> None:
    result = invoke("diagram")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "stateDiagram-v2"
    drawn = {m.groups() for m in (re.fullmatch(r"    (\S+) --> (\S+): (\w+)", line)
                                  for line in lines) if m}
    expected = set()
    for trigger, sources, dest in TRANSITIONS:
        for source in sources if isinstance(sources, list) else [sources]:
            start = "[*]" if source is JobState.NEW else source.value
            expected.add((start, (dest or source).value, trigger))
    assert drawn == expected
    assert {trigger for _, _, trigger in drawn} == EVENT_TYPES
    ends = {line.split()[0] for line in lines if line.endswith("--> [*]")}
    assert ends == {s.value for s in FINAL}


def test_the_text_diagram_lists_every_event_effect_and_final_state() -> None:
    result = invoke("diagram", "--format", "text")

    assert result.exit_code == 0, result.output
    table, _, footer = result.stdout.partition("\n\n")
    header, *rows = table.splitlines()
    assert header.split() == ["from", "event", "to"]
    assert len(rows) == len(TRANSITIONS)
    events = [trigger for trigger, _, _ in TRANSITIONS]
    for row, trigger in zip(rows, events, strict=True):
        assert re.search(rf"\s{trigger}\s", row), (row, trigger)
    assert set(events) == EVENT_TYPES
    for state, effect in EFFECTS.items():
        assert f"{state.value}: {effect.value}" in footer
    assert f"final: {', '.join(sorted(s.value for s in FINAL))}" in footer


# --- reading an empty database ------------------------------------------------------------------


def test_jobs_and_replay_on_an_empty_database(db: str) -> None:
    open_store(db).close()  # made by a worker that has not polled anything yet
    listed = invoke("--db", db, "jobs")
    assert (listed.exit_code, listed.stdout) == (0, "no jobs\n")
    assert json.loads(invoke("--db", db, "jobs", "--json").stdout) == []
    assert invoke("--db", db, "jobs", "--state", "failed").stdout == "no jobs in state failed\n"
    replayed = invoke("--db", db, "replay", "--all")
    assert replayed.exit_code == 0
    assert "0 job(s) replayed, 0 with problems" in replayed.stdout


# --- readable errors ----------------------------------------------------------------------------


@pytest.mark.parametrize("as_json", [[], ["--json"]])
def test_inspect_an_unknown_job_is_one_readable_line(
    db: str, store: EventStore, as_json: list[str]
) -> None:
    _write_good(store, "abc-1")

    result = invoke("--db", db, "inspect", "nope", *as_json)

    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == ("cpworker: no job id starts with 'nope'. "
                             "Fix: list the jobs with `cpworker jobs`\n")


def test_inspect_an_ambiguous_prefix_names_the_candidates(db: str, store: EventStore) -> None:
    _write_good(store, "abc-1")
    _write_good(store, "abc-2")

    result = invoke("--db", db, "inspect", "abc")

    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert result.stderr.startswith("cpworker: 'abc' matches several jobs (abc-1, abc-2)")
    assert "Fix: give more characters of the job id" in result.stderr
    assert invoke("--db", db, "inspect", "abc-2").exit_code == 0


@pytest.mark.parametrize("args", [[], ["abc-1", "--all"]])
def test_replay_wants_one_job_or_all(db: str, store: EventStore, args: list[str]) -> None:
    _write_good(store, "abc-1")

    result = invoke("--db", db, "replay", *args)

    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "--help" in result.stderr
    assert "give a JOB or --all (not both)" in result.stderr
    assert "Traceback" not in result.output


# --- replay finds histories the machine cannot accept -------------------------------------------


def test_replay_exits_1_on_an_event_the_machine_cannot_accept(db: str, store: EventStore) -> None:
    _write_good(store, "good-1")
    _write_bad(store, "bad-1", "run_started")
    _write_bad(store, "bad-2", "teleported")

    everything = invoke("--db", db, "replay", "--all")

    assert everything.exit_code == 1
    out = everything.stdout
    assert re.search(r"^good-1\s+1 events\s+-> acquired\s+ok$", out, re.MULTILINE), out
    assert re.search(r"^bad-1\s+2 events\s+-> acquired\s+PROBLEM$", out, re.MULTILINE), out
    assert ("cannot accept: job bad-1: event 'run_started' is not allowed in state 'acquired'"
            in out)
    assert "event 'teleported' (an event type this version does not know)" in out
    assert "3 job(s) replayed, 2 with problems" in out

    assert invoke("--db", db, "replay", "bad-1").exit_code == 1
    assert invoke("--db", db, "replay", "good-1").exit_code == 0
    as_json = invoke("--db", db, "replay", "--all", "--json")
    assert as_json.exit_code == 1
    document = json.loads(as_json.stdout)
    assert document["ok"] is False
    assert {j["job_id"]: j["ok"] for j in document["jobs"]} == {
        "good-1": True, "bad-1": False, "bad-2": False}

    timeline = invoke("--db", db, "inspect", "bad-1")
    assert timeline.exit_code == 0
    assert re.search(r"run_started\s+\?\? \(not accepted by this version\)", timeline.stdout)


# --- every setting has an environment variable, and --help says which --------------------------


def _commands(command: click.Command, path: tuple[str, ...] = ()
              ) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from _commands(sub, (*path, name))


def _envvars(command: click.Command) -> list[str]:
    found: list[str] = []
    for param in command.params:
        if isinstance(param, click.Option) and param.envvar:
            envvar = param.envvar
            found.extend([envvar] if isinstance(envvar, str) else envvar)
    return found


@pytest.mark.parametrize(("path", "command"), [
    pytest.param(path, command, id=" ".join(path) or "cpworker")
    for path, command in _commands(main)
])
def test_help_lists_every_environment_variable(
    path: tuple[str, ...], command: click.Command
) -> None:
    result = invoke(*path, "--help")

    assert result.exit_code == 0, result.output
    for envvar in _envvars(command):
        assert envvar.startswith("CPWORKER_")
        # click wraps the help text, so "env var:" and the name may be a line apart.
        assert re.search(rf"\[env\s+var:\s+{envvar}\b", result.stdout), (path, envvar)


def test_every_run_setting_has_an_environment_variable() -> None:
    run = main.commands["run"]
    options = [p for p in run.params if isinstance(p, click.Option) and p.name != "help"]
    missing = [o.opts[0] for o in options if not o.envvar]
    assert not missing
    assert len(_envvars(run)) >= 15
    assert {"CPWORKER_DB", "CPWORKER_LOG_FORMAT"} <= set(_envvars(main))
    assert {"CPWORKER_UNTIL_IDLE", "CPWORKER_POLL_INTERVAL", "CPWORKER_CONTINUATION_TIMEOUT",
            "CPWORKER_ACTIONS"} <= set(_envvars(run))


@pytest.mark.parametrize("given", [["--poll-batch", "0"], ["--poll-batch", "-3"]])
def test_a_poll_batch_below_one_is_one_readable_line(db: str, given: list[str]) -> None:
    result = invoke("--db", db, "run", *given)
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"cpworker: --poll-batch (CPWORKER_POLL_BATCH) must be at least 1, not {given[1]}"]


def test_the_poll_batch_is_read_from_the_environment(
    db: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CPWORKER_POLL_BATCH", "0")
    result = invoke("--db", db, "run")
    assert result.exit_code == 2 and "CPWORKER_POLL_BATCH" in result.output
