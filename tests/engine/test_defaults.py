"""Every default is named once, in engine.defaults, and nothing else disagrees with it.

Each named default must be reachable as a flag and as its CPWORKER_* variable, show that very
value in --help, and be the default of every constructor that takes the same setting, so that
a worker built in code (the testing kit, an embedding program) behaves as `cpworker run` does.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import click
import pytest

from engine import defaults
from engine.action import Action
from engine.cli import main
from engine.decide import Policy, tenacity_backoff
from engine.scheduler import Scheduler
from engine.secrets import SecretVault
from engine.store import open_store
from engine.worker import Settings

NAMED = {name: getattr(defaults, name) for name in dir(defaults)
         if name.isupper() and name not in ("PER_ACTION", "PROGRESS_MODES")}
"""PER_ACTION and PROGRESS_MODES (the choices of PROGRESS) are not settings."""
WORKER = {name: value for name, value in NAMED.items() if name not in defaults.PER_ACTION}
"""The worker's settings; the others are an action's, which it sets on its class."""

FLAG_OF = {"DB_URL": "db"}
"""Defaults whose flag is not their own name in lower case."""


def _options() -> dict[str, click.Option]:
    run = main.commands["run"]
    # The group's own options win over the copies every command gets (engine.options).
    found = {p.name: p for p in [*run.params, *main.params] if isinstance(p, click.Option)}
    assert all(isinstance(name, str) for name in found)
    return {str(name): option for name, option in found.items()}


@pytest.mark.parametrize("name", sorted(WORKER))
def test_each_default_is_a_flag_and_a_variable_with_the_same_value(name: str) -> None:
    option = _options().get(FLAG_OF.get(name, name.lower()))
    assert option is not None, f"defaults.{name} has no cpworker flag"
    assert option.envvar == f"CPWORKER_{FLAG_OF.get(name, name).upper()}"
    assert option.default == NAMED[name] or str(option.default).upper() == str(NAMED[name])


def _defaults_of(call: Callable[..., Any]) -> dict[str, Any]:
    return {name: p.default for name, p in inspect.signature(call).parameters.items()
            if p.default is not inspect.Parameter.empty}


def test_settings_start_from_the_named_defaults() -> None:
    settings = Settings()
    for name, value in NAMED.items():
        if hasattr(settings, name.lower()):
            assert getattr(settings, name.lower()) == value, name


def test_policy_starts_from_the_named_defaults() -> None:
    policy = Policy()
    for name, value in NAMED.items():
        if hasattr(policy, name.lower()):
            assert getattr(policy, name.lower()) == value, name
    backoff = _defaults_of(tenacity_backoff)
    assert (backoff["initial"], backoff["maximum"]) == (defaults.BACKOFF_INITIAL,
                                                        defaults.BACKOFF_MAX)


def test_constructors_take_the_named_defaults() -> None:
    scheduler = _defaults_of(Scheduler.__init__)
    assert scheduler["pool_size"] == defaults.EFFECT_THREADS
    assert scheduler["lease_for"] == defaults.LEASE
    assert scheduler["claim_depth"] == defaults.CLAIM_DEPTH
    vault = _defaults_of(SecretVault.__init__)
    assert (vault["capacity"], vault["max_age"]) == (defaults.SECRET_CACHE,
                                                     defaults.SECRET_MAX_AGE)
    assert Action.submit_grace == Policy().submit_grace == defaults.SUBMIT_GRACE
    store = _defaults_of(open_store)
    assert (store["synchronous"], store["pool_size"]) == (defaults.SQLITE_SYNCHRONOUS,
                                                          defaults.DB_POOL_SIZE)


def test_the_pool_size_reaches_the_database_pool(tmp_path: Any) -> None:
    store = open_store(f"sqlite:///{tmp_path}/state.db", pool_size=3)
    assert store.engine.pool.size() == 3  # type: ignore[attr-defined]
