"""A local emulator of the GitHub Actions REST API (workflow dispatch, workflow runs, cancel),
shipped with the GitHub action for tests, the `cpworker emulator` command and the sandbox
(entry points cpworker.emulators and cpworker.sandboxes). The action itself never imports it."""

from actions.github.emulator.emulator import GitHubEmulator

__all__ = ["GitHubEmulator"]
