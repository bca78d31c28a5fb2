"""Fixtures shared by the whole suite: the offline kit cpworker ships for action authors."""

pytest_plugins = ["engine.devtools.fixtures", "actions.travis.emulator.fixtures", "tests.pg"]
