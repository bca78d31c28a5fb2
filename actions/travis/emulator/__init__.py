"""A local emulator of the Travis CI API v3, shipped with the Travis action for tests, the
`cpworker emulator` command and the sandbox (entry points cpworker.emulators and
cpworker.sandboxes). The action itself never imports it."""

from actions.travis.emulator.emulator import TravisEmulator

__all__ = ["TravisEmulator"]
