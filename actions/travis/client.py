"""A small Travis CI API v3 client: the calls the action needs, and errors it can act on.

One `requests.Session` per action keeps connections to Travis open across jobs; the token and
the API URL differ per job, so they travel with each call (an `Endpoint`) and the token goes
only into the Authorization header, never into a URL, a log line or an exception.

Reads (and cancel, which Travis makes harmless to repeat: a second cancel is a 409) are retried
a few times with jittered backoff on 5xx and network failures. POST /requests is never retried
here: a 500 there may arrive after the request was created (PROTOCOL B9), and only the action,
which can look for its marker first, may decide to send it again.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
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
from actions.travis.errors import TravisError
from actions.travis.settings import READ_TIMEOUT
from engine.metrics import outcome_of_status, record_call

DEFAULT_API_URL = "https://api.travis-ci.com"


def repo_path(slug: str) -> str:
    """Travis reads a slug as one path segment only when its slash is encoded: owner%2Fname."""
    return "/repo/" + quote(slug, safe="")


class TravisClient(PooledClient):
    """The Travis API v3 calls of the action. Thread-safe enough for the engine's effect pool."""

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
        super().__init__({"Travis-API-Version": "3", "Accept": "application/json",
                          "User-Agent": USER_AGENT},
                         timeout=timeout, attempts=attempts, wait_initial=wait_initial,
                         wait_max=wait_max, sleep=sleep, pool_size=pool_size)

    # ------------------------------------------------------------------ the calls

    def create_request(
        self, endpoint: Endpoint, slug: str, branch: str, message: str, sha: str | None = None
    ) -> dict[str, Any]:
        """POST /repo/{slug}/requests once; returns the 202 body (its `request` has the id).

        With `sha`, Travis builds that commit (labelled with the branch); without, the branch's
        head when it processes the request (PROTOCOL B3).
        """
        request: dict[str, str] = {"branch": branch, "merge_mode": "deep_merge_append",
                                   "message": message}
        if sha is not None:
            request["sha"] = sha
        return self._call(endpoint, "POST", f"{repo_path(slug)}/requests",
                          json={"request": request})

    def get_request(self, endpoint: Endpoint, slug: str, request_id: int) -> dict[str, Any]:
        """One request with its builds, and Travis's messages explaining a rejection."""
        return self._read(endpoint, "GET", f"{repo_path(slug)}/request/{request_id}",
                          params={"include": "request.messages"})

    def list_requests(
        self, endpoint: Endpoint, slug: str, *, since: str | None = None, limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[dict[str, Any]], bool]:
        """A page of the repository's requests, newest first, and whether it is the last page.

        Never filtered by branch: Travis files an API request under its branch only once it has
        processed it (travis-api `queries/requests.rb` filters on branch_id, which a pending
        request lacks), so a pending request is missing from every branch's list. `since` (an
        ISO time) is Travis's `from` filter on created_at.
        """
        params: dict[str, str | int] = {"limit": limit, "offset": offset}
        if since is not None:
            params["from"] = since
        body = self._read(endpoint, "GET", f"{repo_path(slug)}/requests", params=params)
        found = body.get("requests")
        page = [r for r in found if isinstance(r, dict)] if isinstance(found, list) else []
        pagination = body.get("@pagination")
        is_last = (not page or not isinstance(pagination, dict)
                   or bool(pagination.get("is_last", True)))
        return page, is_last

    def get_build(self, endpoint: Endpoint, build_id: int) -> dict[str, Any]:
        return self._read(endpoint, "GET", f"/build/{build_id}")

    def cancel_build(self, endpoint: Endpoint, build_id: int) -> bool:
        """Ask Travis to cancel; False when the build had already finished (409)."""
        try:
            self._read(endpoint, "POST", f"/build/{build_id}/cancel")
        except TravisError as error:
            if error.status == 409:
                return False
            raise
        return True

    # ------------------------------------------------------------------ plumbing

    def _read(self, endpoint: Endpoint, method: str, path: str,
              params: Mapping[str, str | int] | None = None) -> dict[str, Any]:
        """A call that is safe to repeat: retried on 5xx and network failures, boundedly."""
        retrying = self.retrying(lambda e: isinstance(e, TravisError) and e.transient)
        result: dict[str, Any] = retrying(self._call, endpoint, method, path, params=params)
        return result

    def _call(self, endpoint: Endpoint, method: str, path: str, *,
              params: Mapping[str, str | int] | None = None,
              json: Any = None) -> dict[str, Any]:
        operation = f"{method} {path}"
        counted = f"{method} {_template(path)}"
        """The operation as metrics count it: a path template, never ids (engine.metrics)."""
        try:
            response = self.session.request(
                method, endpoint.url + path, params=params, json=json, timeout=self.timeout,
                headers={"Authorization": f"token {endpoint.token}"},
            )
        except requests.Timeout as error:
            record_call("travis", counted, "unreachable")
            raise TravisError(operation, None, "timeout",
                              f"no answer from {endpoint.url} within {self.timeout[1]:g} s "
                              f"({type(error).__name__})") from None
        except (requests.exceptions.InvalidHeader, UnicodeError):
            # requests shows the header's value (the token) in its message, repr-escaped, and
            # http.client the character it cannot encode: neither goes any further. Nothing
            # was sent, and nothing will be until the property changes.
            raise TravisError(operation, None, "invalid_token",
                              "the APIToken cannot be sent in an HTTP header (it holds a line "
                              "break, a control character or a character outside Latin-1)",
                              configuration="APIToken") from None
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                requests.exceptions.InvalidSchema) as error:
            raise TravisError(operation, None, "invalid_url",
                              f"{endpoint.url!r} cannot be called: {type(error).__name__}: "
                              f"{snippet(str(error), 300)}", configuration="ApiUrl") from None
        except requests.RequestException as error:
            record_call("travis", counted, "unreachable")
            # requests' text names host and path, never headers: safe to pass on.
            raise TravisError(operation, None, "connection_error",
                              f"cannot reach {endpoint.url}: {type(error).__name__}: "
                              f"{snippet(str(error), 300)}") from None
        record_call("travis", counted, outcome_of_status(response.status_code))
        return _decode(operation, response)


def _template(path: str) -> str:
    """'/repo/octo%2Fapp/requests/12' -> '/repo/{slug}/requests/{id}': few label values."""
    return _IDS.sub("/{id}", _REPO.sub("/repo/{slug}", path))


_REPO = re.compile(r"/repo/[^/]+")
_IDS = re.compile(r"/\d+(?=/|$)")


def _decode(operation: str, response: requests.Response) -> dict[str, Any]:
    body = json_body(response)
    if 200 <= response.status_code < 300:
        if isinstance(body, dict):
            return body
        raise TravisError(operation, response.status_code, "not_travis",
                          "the answer is not Travis API v3 JSON (is ApiUrl the API's URL?): "
                          + snippet(response.text))
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if isinstance(body, dict) and isinstance(body.get("error_type"), str):
        raise TravisError(operation, response.status_code, body["error_type"],
                          str(body.get("error_message") or body["error_type"]),
                          retry_after=retry_after, body=body)
    # Not Travis's JSON error: rack-attack's "Retry later", a proxy's page, an HTML 502.
    kind = {429: "throttled", 403: "forbidden", 401: "unauthorized", 404: "not_found"}.get(
        response.status_code, "server_error" if response.status_code >= 500 else "http_error")
    if response.status_code == 403:
        kind = _FORBIDDEN_TEXTS.get(response.text.strip().lower(), kind)
    raise TravisError(operation, response.status_code, kind,
                      snippet(response.text) or response.reason or kind, retry_after=retry_after)


_FORBIDDEN_TEXTS = {
    "forbidden": "blocked",
    "access denied": "wrong_credentials",
}
"""Travis's two plain-text 403s: rack-attack's default blocklist answer to a banned client
(lib/travis/api/attack.rb, rack-attack's DEFAULT_BLOCKLISTED_RESPONSE), and the ScopeCheck
middleware's answer to a token it cannot find (app/middleware/scope_check.rb)."""
