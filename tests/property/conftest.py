"""Hypothesis profiles for the property tests, chosen by HYPOTHESIS_PROFILE.

- `cpworker` (the default here): bounded so the whole directory takes well under a minute on a
  slow two-core machine; no per-example deadline (a loaded machine is not a failure).
- `ci` (the default when CI is true): the same, derandomized, so a CI run finds what the last one
  found and takes as long; a change's own failure is not hidden behind another's random draw.
- `thorough`: twenty times the examples, for a run on purpose (`HYPOTHESIS_PROFILE=thorough`).

Tests that draw per state (parametrized over the working states) set fewer examples each.
A profile is global to the session; nothing else in the suite uses hypothesis yet.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("cpworker", max_examples=50, deadline=None, print_blob=True)
settings.register_profile("ci", parent=settings.get_profile("cpworker"), derandomize=True)
settings.register_profile("thorough", parent=settings.get_profile("cpworker"),
                          max_examples=1000)

_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci" if _CI else "cpworker")
settings.load_profile(PROFILE)


def examples(per_profile_default: int) -> int:
    """`per_profile_default` examples, scaled up by the thorough profile (20x)."""
    return per_profile_default * (20 if PROFILE == "thorough" else 1)
