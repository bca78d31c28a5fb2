"""The GitHub Actions emulator's admin interface over HTTP, under /_emulator/.

It mirrors the Python admin methods for clients in another process (the CLI, a shell script, a
test of a packaged worker). No auth and no faults here: setting the stage must never be flaky.
Bad input is answered 400 {"error": "..."} naming what to fix; an unknown repository or run is
404. Tokens are never echoed (admin answers end up in logs): views show their digests.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from engine.devtools.emulator import Request, Response

if TYPE_CHECKING:
    from actions.github.emulator.emulator import GitHubEmulator

ADMIN_PREFIX = "/_emulator"

_REPO_KEYS = {"repository", "token", "read_only_tokens", "workflows", "private",
              "default_branch"}
_WORKFLOW_KEYS = {"file", "name", "run_name", "inputs", "dispatch"}
_TOKEN_KEYS = {"token", "read_only"}
_PUSH_KEYS = {"branch", "sha"}
_TAG_KEYS = {"tag", "sha"}
_SCHEDULE_KEYS = {"workflow", "start_after", "finish_after", "conclusion", "ignore_cancel"}
_SECONDARY_KEYS = {"token", "seconds"}
_EXTRA_FAULT_KEYS = {"error_status", "errors_after_effect"}


class _BadInput(ValueError):
    pass


def handle_admin(emulator: GitHubEmulator, request: Request) -> Response:
    """Route one admin call; every failure becomes a readable JSON error, never a 500."""
    path = request.path[len(ADMIN_PREFIX):].rstrip("/") or "/"
    try:
        return _route(emulator, request, path)
    except LookupError as error:
        return Response.json(404, {"error": _text(error)})
    except RuntimeError as error:
        return Response.json(409, {"error": _text(error)})
    except (ValueError, TypeError) as error:
        return Response.json(400, {"error": _text(error)})


def _route(emulator: GitHubEmulator, request: Request, path: str) -> Response:
    method = request.method
    if (method, path) == ("GET", "/health"):
        return Response.json(200, {"ok": True, "service": "github"})
    if (method, path) == ("GET", "/repos"):
        return Response.json(200, {"repositories": emulator.repositories()})
    if (method, path) == ("POST", "/repos"):
        return Response.json(201, _add_repository(emulator, _body(request)))
    if method == "POST" and path.startswith("/repos/"):
        full_name, _, action = path[len("/repos/"):].rpartition("/")
        handler = _REPO_ACTIONS.get(action)
        if handler is not None and full_name.count("/") == 1:
            return handler(emulator, unquote(full_name), _body(request))
    if (method, path) == ("GET", "/runs"):
        return Response.json(200, {"runs": emulator.runs(request.param("repo"))})
    if method == "POST" and path.startswith("/runs/") and path[len("/runs/"):].isdigit():
        body = _body(request)
        _only(body, {"ignore_cancel"})
        return Response.json(200, emulator.set_run(
            int(path[len("/runs/"):]),
            ignore_cancel=_get(body, "ignore_cancel", bool, required=True)))
    if (method, path) == ("GET", "/dispatches"):
        return Response.json(200, {"dispatches": emulator.dispatches()})
    if (method, path) == ("GET", "/calls"):
        return Response.json(
            200, {"calls": emulator.call_counts(), "faults": emulator.faults.counts()})
    if (method, path) == ("GET", "/rate-limits"):
        return Response.json(200, {"rate_limits": emulator.rate_limits()})
    if (method, path) == ("POST", "/rate-limits/secondary"):
        body = _body(request)
        _only(body, _SECONDARY_KEYS)
        seconds = _number(body, "seconds")
        emulator.impose_secondary_limit(_get(body, "token", str),
                                        60.0 if seconds is None else seconds)
        return Response.json(200, {"ok": True})
    if path == "/behaviour" and method in ("GET", "POST"):
        if method == "POST":
            body = _body(request)
            clear = "secondary_retry_after" in body and body["secondary_retry_after"] is None
            emulator.configure(clear_retry_after=clear, **body)
        return Response.json(200, emulator.behaviour())
    if path == "/faults" and method in ("GET", "POST"):
        if method == "POST":
            _configure_faults(emulator, _body(request))
        return Response.json(200, _faults(emulator))
    if (method, path) == ("POST", "/clock/advance"):
        body = _body(request)
        _only(body, {"seconds"})
        seconds = _number(body, "seconds")
        if seconds is None:
            raise _BadInput("seconds is required")
        return Response.json(200, {"now": emulator.advance(seconds)})
    if (method, path) == ("POST", "/reset"):
        emulator.reset()
        return Response.json(200, {"ok": True})
    return Response.json(404, {"error": f"no admin endpoint {method} {ADMIN_PREFIX}{path}"})


def _add_repository(emulator: GitHubEmulator, body: Mapping[str, Any]) -> dict[str, Any]:
    _only(body, _REPO_KEYS)
    read_only = body.get("read_only_tokens", [])
    if not isinstance(read_only, list) or not all(isinstance(t, str) for t in read_only):
        raise _BadInput("read_only_tokens must be a list of strings")
    workflows = body.get("workflows") or {}
    if not isinstance(workflows, dict):
        raise _BadInput("workflows must be an object: {file: {name, run_name, inputs, dispatch}}")
    return emulator.add_repository(
        _get(body, "repository", str, required=True),
        token=_get(body, "token", str),
        read_only_tokens=read_only,
        workflows=workflows,
        private=_get(body, "private", bool, default=True),
        default_branch=_get(body, "default_branch", str) or "main",
    )


def _add_workflow(emulator: GitHubEmulator, full_name: str, body: Mapping[str, Any]) -> Response:
    _only(body, _WORKFLOW_KEYS)
    return Response.json(201, emulator.add_workflow(
        full_name, _get(body, "file", str, required=True), name=_get(body, "name", str),
        run_name=_get(body, "run_name", str), inputs=body.get("inputs") or (),
        dispatch=_get(body, "dispatch", bool, default=True)))


def _add_token(emulator: GitHubEmulator, full_name: str, body: Mapping[str, Any]) -> Response:
    _only(body, _TOKEN_KEYS)
    read_only = _get(body, "read_only", bool, default=False)
    emulator.add_token(full_name, _get(body, "token", str, required=True), read_only=read_only)
    return Response.json(200, {"ok": True, "repository": full_name, "read_only": read_only})


def _push(emulator: GitHubEmulator, full_name: str, body: Mapping[str, Any]) -> Response:
    _only(body, _PUSH_KEYS)
    sha = emulator.push(full_name, _get(body, "branch", str, required=True),
                        _get(body, "sha", str))
    return Response.json(200, {"ok": True, "repository": full_name, "sha": sha})


def _tag(emulator: GitHubEmulator, full_name: str, body: Mapping[str, Any]) -> Response:
    _only(body, _TAG_KEYS)
    sha = emulator.tag(full_name, _get(body, "tag", str, required=True), _get(body, "sha", str))
    return Response.json(200, {"ok": True, "repository": full_name, "sha": sha})


def _set_schedule(emulator: GitHubEmulator, full_name: str,
                  body: Mapping[str, Any]) -> Response:
    _only(body, _SCHEDULE_KEYS)
    start_after = _number(body, "start_after")
    finish_after = _number(body, "finish_after")
    emulator.set_schedule(
        full_name, _get(body, "workflow", str),
        start_after=1.0 if start_after is None else start_after,
        finish_after=5.0 if finish_after is None else finish_after,
        conclusion=_get(body, "conclusion", str) or "success",
        ignore_cancel=_get(body, "ignore_cancel", bool, default=False))
    return Response.json(200, {"ok": True, "repository": full_name})


_REPO_ACTIONS: dict[str, Callable[[GitHubEmulator, str, Mapping[str, Any]], Response]] = {
    "workflows": _add_workflow,
    "tokens": _add_token,
    "push": _push,
    "tags": _tag,
    "schedule": _set_schedule,
}


def _configure_faults(emulator: GitHubEmulator, body: Mapping[str, Any]) -> None:
    # Everything is checked before anything changes (Faults.configure_from is all-or-nothing).
    error_status = _get(body, "error_status", int)
    if error_status is not None and error_status not in (500, 502):
        raise _BadInput(f"error_status must be 500 or 502, not {error_status}")
    errors_after_effect = _get(body, "errors_after_effect", bool)
    emulator.faults.configure_from({k: v for k, v in body.items() if k not in _EXTRA_FAULT_KEYS})
    if error_status is not None:
        emulator.error_status = error_status
    if errors_after_effect is not None:
        emulator.errors_after_effect = errors_after_effect


def _faults(emulator: GitHubEmulator) -> dict[str, Any]:
    return {**emulator.faults.as_dict(), "error_status": emulator.error_status,
            "errors_after_effect": emulator.errors_after_effect}


def _body(request: Request) -> Mapping[str, Any]:
    try:
        body = request.json()
    except (ValueError, UnicodeDecodeError):
        raise _BadInput("the body must be JSON") from None
    if not isinstance(body, dict):
        raise _BadInput("the body must be a JSON object")
    return body


def _only(body: Mapping[str, Any], known: set[str]) -> None:
    unknown = set(body) - known
    if unknown:
        raise _BadInput(f"unknown keys {sorted(unknown)}; known: {sorted(known)}")


def _get(body: Mapping[str, Any], key: str, kind: type[Any], *, required: bool = False,
         default: Any = None) -> Any:
    value = body.get(key)
    if value is None:
        if required:
            raise _BadInput(f"{key} is required")
        return default
    # bool is an int in Python, but true is not a status code.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _BadInput(f"{key} must be of type {kind.__name__}, not {type(value).__name__}")
    return value


def _number(body: Mapping[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _BadInput(f"{key} must be a number, not {type(value).__name__}")
    return float(value)


def _text(error: Exception) -> str:
    # KeyError and LookupError quote their message; a person reads this.
    return str(error.args[0]) if error.args else type(error).__name__
