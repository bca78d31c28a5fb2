"""The Travis CI action: one Travis build per CodePipeline action execution, followed to its end.

Register the type with `cpworker register travis` (the definition is travis.json beside this
file); the worker finds the action through the entry point `travis = actions.travis:TravisAction`.
"""

from actions.travis.action import TravisAction, marker
from actions.travis.client import DEFAULT_API_URL, Endpoint, TravisClient
from actions.travis.errors import TravisError

__all__ = ["DEFAULT_API_URL", "Endpoint", "TravisAction", "TravisClient", "TravisError", "marker"]
