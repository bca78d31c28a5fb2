"""The action's configuration, checked: which repository and branch, on which Travis, as whom.

Checked before any call, so that a mistake only the operator can fix fails the job at once as
ConfigurationError, naming the property and the fix, rather than as a network error retried
until SystemUnavailable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

from actions._http import Endpoint
from actions.travis.client import DEFAULT_API_URL
from actions.travis.errors import Where
from actions.travis.settings import API_URL_ENV
from engine import Failed, FailureType

DEFAULT_WEB_URL = "https://app.travis-ci.com/github"


@dataclass(frozen=True)
class Target:
    """A job's configuration, checked: which repository and branch, on which Travis, as whom."""

    owner: str
    name: str
    branch: str
    endpoint: Endpoint
    branch_head: bool = False
    """BuildBranchHead: build the branch's head instead of the revision the pipeline releases."""

    @property
    def slug(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def where(self) -> Where:
        return Where(self.slug, self.branch, self.endpoint.url)

    def build_url(self, build_id: object) -> str:
        return f"{web_url(self.endpoint.url)}/{self.owner}/{self.name}/builds/{build_id}"

    @classmethod
    def parse(cls, configuration: Mapping[str, str],
              env_url: str | None = None) -> Target | Failed:
        """The configuration checked before any call, so that a mistake only the operator can
        fix fails the job at once as ConfigurationError, naming the property and the fix,
        rather than as a network error retried until SystemUnavailable. `env_url` is the API
        URL the action read from CPWORKER_TRAVIS_API_URL when the worker started."""
        owner = (configuration.get("Owner") or "").strip()
        name = (configuration.get("ProjectName") or "").strip()
        branch = (configuration.get("Branch") or "").strip()
        token = (configuration.get("APIToken") or "").strip()
        given_url = (configuration.get("ApiUrl") or "").strip()
        head = (configuration.get("BuildBranchHead") or "false").strip().lower()
        env_url = (env_url or "").strip()
        api_url = given_url or env_url or DEFAULT_API_URL
        url_source = ("ApiUrl" if given_url else
                      f"the API URL from the environment variable {API_URL_ENV}")
        where = f"Travis repository {owner or '?'}/{name or '?'}, branch {branch or '?'}"
        problems = [f"{prop} is empty" for prop, value in (
            ("Owner", owner), ("ProjectName", name), ("Branch", branch), ("APIToken", token))
            if not value]
        problems += [f"{prop} {value!r} must be one name of letters, digits, '.', '_' and '-' "
                     "(no '/', spaces or other characters)"
                     for prop, value in (("Owner", owner), ("ProjectName", name))
                     if value and not _SLUG_PART.fullmatch(value)]
        if branch and not _BRANCH.fullmatch(branch):
            problems.append(f"Branch {branch!r} is not a git branch name (no spaces or control "
                            "characters)")
        if head not in ("true", "false"):
            problems.append(f"BuildBranchHead {head!r} must be true or false")
        problems += _token_problems(token)
        url_problem = _api_url_problem(api_url, url_source)
        if url_problem:
            problems.append(url_problem)
        if problems:
            return Failed(FailureType.CONFIGURATION_ERROR,
                          f"{where}: the action is configured wrongly: {'; '.join(problems)}. "
                          "Fix: edit the action's properties in the pipeline (Owner and "
                          "ProjectName as in owner/name on Travis CI, APIToken as Travis shows "
                          "it, on one line, ApiUrl like https://travis.example.com/api or empty "
                          "for travis-ci.com, BuildBranchHead true or false)")
        return cls(owner, name, branch, Endpoint(api_url, token), head == "true")


_SLUG_PART = re.compile(r"(?!\.\.?$)[A-Za-z0-9._-]{1,100}")
"""An owner or repository name as GitHub, GitLab and Bitbucket spell them."""
_BRANCH = re.compile(r"[^\x00-\x20\x7f~^:?*\[\\]{1,250}")
"""What git check-ref-format lets through, roughly: no whitespace, control or glob characters."""


def _token_problems(token: str) -> list[str]:
    """Why the token cannot go into an Authorization header (never showing the token)."""
    problems = []
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in token):
        problems.append("APIToken contains a line break or another control character, which "
                        "an HTTP header cannot carry (copy the token again, on one line)")
    if any(ord(c) > 0xFF for c in token):
        problems.append("APIToken contains a character outside Latin-1, which an HTTP header "
                        "cannot carry; Travis tokens are plain letters and digits (copy the "
                        "token again from Travis CI: Account, Settings, API authentication)")
    return problems


def _api_url_problem(api_url: str, source: str) -> str | None:
    """Why `api_url` cannot be called, in the words of the library that would refuse it."""
    try:
        parts = urlsplit(api_url)
        port = parts.port
    except ValueError as error:  # "Invalid IPv6 URL", "Port out of range 0-65535", ...
        return f"{source} {api_url!r} is not a usable URL ({error})"
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return f"{source} {api_url!r} is not an http(s) URL"
    if port == 0:
        return f"{source} {api_url!r} is not a usable URL (Port out of range 1-65535)"
    try:
        requests.PreparedRequest().prepare_url(api_url, None)
    except requests.RequestException as error:  # InvalidURL: no host, a bad character...
        return f"{source} {api_url!r} is not a usable URL ({error})"
    return None


def web_url(api_url: str) -> str:
    """The web UI's base for build links, from the API URL (PROTOCOL B5; not formally specified).

    api.<domain> serves app.<domain>/github (travis-ci.com); an Enterprise API under /api has its
    web UI at the same root; anything else (an emulator) links to travis-ci.com.
    """
    parts = urlsplit(api_url)
    host = parts.hostname or ""
    if host.startswith("api."):
        return f"{parts.scheme}://app.{parts.netloc[4:]}/github"
    path = parts.path.rstrip("/")
    if path.endswith("/api"):
        return f"{parts.scheme}://{parts.netloc}{path[:-4]}"
    return DEFAULT_WEB_URL
