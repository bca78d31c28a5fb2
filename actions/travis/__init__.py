"""The Travis CI action: one Travis build per CodePipeline action execution, followed to its end.

Register the type with `cpworker register travis` (the definition is travis.json beside this
file); the worker finds the action through the entry point `travis = actions.travis:TravisAction`.
"""

from actions._http import Endpoint
from actions.travis.action import TravisAction, marker
from actions.travis.client import DEFAULT_API_URL, TravisClient
from actions.travis.errors import TravisError
from actions.travis.pacing import PostPacer

__all__ = ["DEFAULT_API_URL", "Endpoint", "PostPacer", "TravisAction", "TravisClient",
           "TravisError", "marker"]
