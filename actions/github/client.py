"""A small GitHub REST client: the Actions calls the action needs, and errors it can act on.

One `requests.Session` per action keeps connections open across jobs; the token and the API
URL differ per job, so they travel with each call (an `Endpoint`), and the token goes only into
the Authorization header, never into a URL, a log line or an exception. A pagination link is
followed only when it points at the same API, so the token is never sent anywhere else.

Reads and cancels (harmless to repeat: a second cancel is a 409) are retried a few times with
jittered backoff on 5xx and network failures. The dispatch is never retried here: a 500 may
come after the run was created, and only the action, which can look for its marker first, may
decide to send it again.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from actions._http import (
    ATTEMPTS,
    CONNECT_TIMEOUT,
    USER_AGENT,
    Endpoint,
    PooledClient,
    json_body,
    parse_retry_after,
    snippet,
)
from actions.github.errors import GitHubError
from actions.github.settings import READ_TIMEOUT
from engine.metrics import outcome_of_status, record_call

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
PAGE = 100
"""Runs per page: GitHub's maximum per_page."""


@dataclass(frozen=True)
class Answer:
    """A successful answer: its JSON body, and what GitHub said of the token's budget."""

    status: int
    body: dict[str, Any]
    remaining: int | None = None
    reset: float | None = None
    next_url: str | None = None
    """The Link header's rel="next", when it points at the same API."""


@dataclass(frozen=True)
class Repo:
    """A repository and one of its workflows, as path segments."""

    owner: str
    name: str
    workflow: str

    @property
    def base(self) -> str:
        return f"/repos/{quote(self.owner, safe='')}/{quote(self.name, safe='')}"

    @property
    def workflow_path(self) -> str:
        return f"{self.base}/actions/workflows/{quote(self.workflow, safe='')}"


class GitHubClient(PooledClient):
    """The GitHub Actions calls of the action. Thread-safe enough for the engine's effect pool."""

    def __init__(
        self,
        *,
        timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT),
        attempts: int = ATTEMPTS,
        wait_initial: float = 0.5,
        wait_max: float = 4.0,
        sleep: Callable[[float], None] = time.sleep,
        pool_size: int = 16,
    ) -> None:
        super().__init__({"Accept": "application/vnd.github+json",
                          "X-GitHub-Api-Version": API_VERSION, "User-Agent": USER_AGENT},
                         timeout=timeout, attempts=attempts, wait_initial=wait_initial,
                         wait_max=wait_max, sleep=sleep, pool_size=pool_size)

    # ------------------------------------------------------------------ the calls

    def dispatch(self, endpoint: Endpoint, repo: Repo, ref: str, inputs: Mapping[str, str],
                 run_details: bool) -> Answer:
        """POST .../dispatches once. With `run_details`, GitHub (since 2026-02-19) answers 200
        with workflow_run_id, run_url and html_url; without, or on an older server, 204 and an
        empty body."""
        body: dict[str, Any] = {"ref": ref, "inputs": dict(inputs)}
        if run_details:
            body["return_run_details"] = True
        return self._call(endpoint, "POST", f"{repo.workflow_path}/dispatches", json=body)

    def list_runs(self, endpoint: Endpoint, repo: Repo, *, created_since: str,
                  page_url: str | None = None) -> Answer:
        """A page of the workflow's dispatched runs created at or after `created_since` (an
        ISO time), newest first; `page_url` is an earlier page's next_url."""
        if page_url is not None:
            return self._read(endpoint, "GET", page_url[len(endpoint.url):])
        return self._read(endpoint, "GET", f"{repo.workflow_path}/runs", params={
            "event": "workflow_dispatch", "created": f">={created_since}", "per_page": PAGE})

    def get_run(self, endpoint: Endpoint, repo: Repo, run_id: int) -> Answer:
        return self._read(endpoint, "GET", f"{repo.base}/actions/runs/{run_id}")

    def cancel_run(self, endpoint: Endpoint, repo: Repo, run_id: int, *,
                   force: bool = False) -> bool:
        """Ask GitHub to cancel (or force-cancel) the run; False when it answers 409 (it
        cannot be cancelled that way: finished, or GitHub refuses the gentle cancel)."""
        verb = "force-cancel" if force else "cancel"
        try:
            self._read(endpoint, "POST", f"{repo.base}/actions/runs/{run_id}/{verb}")
        except GitHubError as error:
            if error.status == 409:
                return False
            raise
        return True

    # ------------------------------------------------------------------ plumbing

    def _read(self, endpoint: Endpoint, method: str, path: str,
              params: Mapping[str, str | int] | None = None) -> Answer:
        """A call that is safe to repeat: retried on 5xx and network failures, boundedly."""
        retrying = self.retrying(lambda e: isinstance(e, GitHubError) and e.transient)
        answer: Answer = retrying(self._call, endpoint, method, path, params=params)
        return answer

    def _call(self, endpoint: Endpoint, method: str, path: str, *,
              params: Mapping[str, str | int] | None = None, json: Any = None) -> Answer:
        operation = f"{method} {path.split('?')[0]}"
        counted = f"{method} {_template(path)}"
        try:
            response = self.session.request(
                method, endpoint.url + path, params=params, json=json, timeout=self.timeout,
                headers={"Authorization": f"Bearer {endpoint.token}"},
            )
        except requests.Timeout as error:
            record_call("github", counted, "unreachable")
            raise GitHubError(operation, None, f"no answer from {endpoint.url} within "
                              f"{self.timeout[1]:g} s ({type(error).__name__})") from None
        except (requests.exceptions.InvalidHeader, UnicodeError):
            # requests shows the header's value (the token) in its message: it goes no
            # further. Nothing was sent, and nothing will be until the property changes.
            raise GitHubError(operation, None, "the Token cannot be sent in an HTTP header (it "
                              "holds a line break, a control character or a character outside "
                              "Latin-1)", configuration="Token") from None
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                requests.exceptions.InvalidSchema) as error:
            raise GitHubError(operation, None, f"{endpoint.url!r} cannot be called: "
                              f"{type(error).__name__}: {snippet(str(error), 300)}",
                              configuration="ApiUrl") from None
        except requests.RequestException as error:
            record_call("github", counted, "unreachable")
            # requests' text names host and path, never headers: safe to pass on.
            raise GitHubError(operation, None, f"cannot reach {endpoint.url}: "
                              f"{type(error).__name__}: {snippet(str(error), 300)}") from None
        return _decode(operation, counted, endpoint, response)


def _template(path: str) -> str:
    """'/repos/octo/app/actions/runs/12/cancel' -> '/repos/{owner}/{repo}/actions/runs/{id}/
    cancel': few label values for metrics."""
    path = path.split("?")[0]
    path = _REPOS.sub("/repos/{owner}/{repo}", path)
    path = _WORKFLOW.sub("/workflows/{workflow}", path)
    return _IDS.sub("/{id}", path)


_REPOS = re.compile(r"/repos/[^/]+/[^/]+")
_WORKFLOW = re.compile(r"/workflows/[^/]+")
_IDS = re.compile(r"/\d+(?=/|$)")


def _decode(operation: str, counted: str, endpoint: Endpoint,
            response: requests.Response) -> Answer:
    headers = response.headers
    remaining = _int(headers.get("x-ratelimit-remaining"))
    reset = _float(headers.get("x-ratelimit-reset"))
    body = json_body(response)
    status = response.status_code
    throttled = status == 429 or (status == 403 and remaining == 0)
    record_call("github", counted, outcome_of_status(status, throttled))
    if 200 <= status < 300:
        if status != 204 and response.content and not isinstance(body, dict):
            raise GitHubError(operation, status, "the answer is not GitHub's JSON (is ApiUrl "
                              "the API's URL, https://HOST/api/v3?): "
                              + snippet(response.text))
        link = response.links.get("next", {}).get("url")
        same_api = isinstance(link, str) and link.startswith(endpoint.url + "/")
        return Answer(status, body if isinstance(body, dict) else {}, remaining, reset,
                      link if same_api else None)
    retry_after = parse_retry_after(headers.get("retry-after"))
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        raise GitHubError(operation, status, body["message"], retry_after=retry_after,
                          remaining=remaining, reset=reset, details=_errors(body.get("errors")))
    raise GitHubError(operation, status, snippet(response.text) or response.reason or "",
                      retry_after=retry_after, remaining=remaining, reset=reset)


def _errors(value: object) -> str:
    """GitHub's `errors` (strings, or objects with resource, field, code, message) on one
    line: a 422 names the input or field it refused there."""
    if not isinstance(value, list):
        return ""
    said = []
    for item in value[:10]:
        if isinstance(item, dict):
            said.append(str(item.get("message") or " ".join(
                str(item[k]) for k in ("resource", "field", "code") if item.get(k))))
        elif isinstance(item, str):
            said.append(item)
    return snippet("; ".join(s for s in said if s), 500)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _float(value: str | None) -> float | None:
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None
