"""Tests of the Travis CI action against the Travis emulator."""
