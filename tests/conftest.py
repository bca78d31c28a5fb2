"""Fixtures shared by the whole suite: the offline kit cpworker ships for action authors."""

pytest_plugins = ["engine.testing", "tests.pg"]
