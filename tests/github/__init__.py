"""Tests of the GitHub Actions action (actions.github)."""
