"""The GitHub Actions action: one workflow run per CodePipeline action execution, followed to
its end.

Register the type with `cpworker register github` (the definition is github.json beside this
file); the worker finds the action through the entry point `github = actions.github:GitHubAction`.
"""

from actions._http import Endpoint
from actions.github.action import GitHubAction
from actions.github.client import DEFAULT_API_URL, GitHubClient, Repo
from actions.github.errors import GitHubError
from actions.github.lookup import marker
from actions.github.target import MARKER_INPUT, REVISION_INPUT

__all__ = ["DEFAULT_API_URL", "MARKER_INPUT", "REVISION_INPUT", "Endpoint", "GitHubAction",
           "GitHubClient", "GitHubError", "Repo", "marker"]
