"""The action's configuration, checked: which workflow of which repository, on which GitHub, as
whom, with which inputs.

Checked before any call, so that a mistake only the operator can fix fails the job at once as
ConfigurationError, naming the property and the fix, rather than as a network error retried
until SystemUnavailable.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests

from actions._http import Endpoint
from actions.github.client import DEFAULT_API_URL, Repo
from actions.github.errors import Where
from actions.github.settings import API_URL_ENV
from engine import Failed, FailureType

MARKER_INPUT = "cpworker_marker"
"""The input that carries the execution's marker; the workflow's run-name must show it."""
REVISION_INPUT = "cpworker_revision"
"""The input that carries the commit to check out: the revision the pipeline releases."""
RESERVED = frozenset({MARKER_INPUT, REVISION_INPUT})
WORKFLOWS_DIR = ".github/workflows/"


@dataclass(frozen=True)
class Target:
    """A job's configuration, checked."""

    repo: Repo
    ref: str
    endpoint: Endpoint
    inputs: Mapping[str, str] = field(default_factory=dict)
    """The Inputs property: extra workflow inputs, beside the marker and the revision."""

    @property
    def repository(self) -> str:
        return f"{self.repo.owner}/{self.repo.name}"

    @property
    def where(self) -> Where:
        return Where(self.repository, self.repo.workflow, self.ref, self.endpoint.url)

    def run_url(self, run_id: object) -> str:
        return f"{web_url(self.endpoint.url)}/{self.repository}/actions/runs/{run_id}"

    @classmethod
    def parse(cls, configuration: Mapping[str, str],
              env_url: str | None = None) -> Target | Failed:
        """The configuration, or why it cannot be used (ConfigurationError with the fix).
        `env_url` is the API URL the action read from CPWORKER_GITHUB_API_URL at start."""
        owner = (configuration.get("Owner") or "").strip()
        name = (configuration.get("Repository") or "").strip()
        workflow = (configuration.get("Workflow") or "").strip()
        if workflow.startswith(WORKFLOWS_DIR):
            workflow = workflow[len(WORKFLOWS_DIR):]  # the path as the repository shows it
        ref = (configuration.get("Ref") or "").strip()
        token = (configuration.get("Token") or "").strip()
        raw_inputs = (configuration.get("Inputs") or "").strip()
        given_url = (configuration.get("ApiUrl") or "").strip()
        api_url = given_url or (env_url or "").strip() or DEFAULT_API_URL
        url_source = ("ApiUrl" if given_url else
                      f"the API URL from the environment variable {API_URL_ENV}")
        where = f"GitHub workflow {workflow or '?'} of {owner or '?'}/{name or '?'}"
        problems = [f"{prop} is empty" for prop, value in (
            ("Owner", owner), ("Repository", name), ("Workflow", workflow), ("Ref", ref),
            ("Token", token)) if not value]
        if owner and not _OWNER.fullmatch(owner):
            problems.append(f"Owner {owner!r} must be a GitHub user or organisation name "
                            "(letters, digits and '-', no '/')")
        if name and not _NAME.fullmatch(name):
            problems.append(f"Repository {name!r} must be one repository name of letters, "
                            "digits, '.', '_' and '-' (no owner/ prefix)")
        if workflow and not _WORKFLOW.fullmatch(workflow):
            problems.append(f"Workflow {workflow!r} must be the workflow's file name, like "
                            "deploy.yml, or its numeric id")
        if ref and not _REF.fullmatch(ref):
            problems.append(f"Ref {ref!r} is not a branch or tag name (no spaces, control "
                            "characters or ~^:?*[\\)")
        problems += _token_problems(token)
        inputs = _inputs(raw_inputs, problems)
        url_problem = _api_url_problem(api_url, url_source)
        if url_problem:
            problems.append(url_problem)
        if problems:
            return Failed(FailureType.CONFIGURATION_ERROR,
                          f"{where}: the action is configured wrongly: {'; '.join(problems)}. "
                          "Fix: edit the action's properties in the pipeline (Owner and "
                          "Repository as in github.com/OWNER/REPOSITORY, Workflow the file "
                          "name under .github/workflows/, Ref a branch or tag, Token on one "
                          "line, Inputs a JSON object of strings, ApiUrl like "
                          "https://github.example.com/api/v3 or empty for github.com)")
        return cls(Repo(owner, name, workflow), ref, Endpoint(api_url, token), inputs)


_OWNER = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})")
_NAME = re.compile(r"(?!\.\.?$)[A-Za-z0-9._-]{1,100}")
_WORKFLOW = re.compile(r"[A-Za-z0-9._-]{1,200}\.ya?ml|\d{1,20}")
_REF = re.compile(r"[^\x00-\x20\x7f~^:?*\[\\]{1,250}")
"""What git check-ref-format lets through, roughly; refs/heads/... and refs/tags/... too."""


def _inputs(raw: str, problems: list[str]) -> dict[str, str]:
    """The Inputs property as the dispatch sends it: string values (numbers and booleans
    written as GitHub's form inputs would hold them)."""
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as error:
        problems.append(f"Inputs is not JSON ({error.msg} at character {error.pos})")
        return {}
    if not isinstance(value, dict):
        problems.append('Inputs must be a JSON object, like {"environment": "staging"}')
        return {}
    inputs: dict[str, str] = {}
    for key, item in value.items():
        if key in RESERVED:
            problems.append(f"Inputs may not set {key}: the action sets it itself")
        elif isinstance(item, bool):
            inputs[key] = "true" if item else "false"
        elif isinstance(item, (str, int, float)):
            inputs[key] = str(item)
        else:
            problems.append(f"Inputs' {key} must be a string, a number or true/false "
                            "(workflow_dispatch inputs are strings)")
    return inputs


def _token_problems(token: str) -> list[str]:
    """Why the token cannot go into an Authorization header (never showing the token)."""
    problems = []
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in token):
        problems.append("Token contains a line break or another control character, which an "
                        "HTTP header cannot carry (copy the token again, on one line)")
    if any(ord(c) > 0xFF for c in token):
        problems.append("Token contains a character outside Latin-1, which an HTTP header "
                        "cannot carry; GitHub tokens are plain letters, digits and '_' (copy "
                        "the token again)")
    return problems


def _api_url_problem(api_url: str, source: str) -> str | None:
    """Why `api_url` cannot be called, in the words of the library that would refuse it."""
    try:
        parts = urlsplit(api_url)
        port = parts.port
    except ValueError as error:
        return f"{source} {api_url!r} is not a usable URL ({error})"
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return f"{source} {api_url!r} is not an http(s) URL"
    if port == 0:
        return f"{source} {api_url!r} is not a usable URL (Port out of range 1-65535)"
    try:
        requests.PreparedRequest().prepare_url(api_url, None)
    except requests.RequestException as error:
        return f"{source} {api_url!r} is not a usable URL ({error})"
    return None


def web_url(api_url: str) -> str:
    """The web UI's base for run links: github.com for api.github.com, the server's root for
    GitHub Enterprise Server (https://HOST/api/v3), github.com for anything else (an
    emulator), as the action type's executionUrlTemplate does."""
    parts = urlsplit(api_url)
    path = parts.path.rstrip("/")
    if (parts.hostname or "") != "api.github.com" and path.endswith("/api/v3"):
        return f"{parts.scheme}://{parts.netloc}{path[:-7]}"
    return "https://github.com"
