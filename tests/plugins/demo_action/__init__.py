"""A second action package, for tests only: it ships its own emulator and sandbox scenario the
way any installed action would (see tests/devtools/conftest.py, which installs it)."""

from tests.plugins.demo_action.action import DemoAction

__all__ = ["DemoAction"]
