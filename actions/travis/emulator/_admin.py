"""The Travis emulator's admin interface over HTTP, under /_emulator/.

It mirrors the Python admin methods for clients in another process (the CLI, a shell script, a
test of a packaged worker). No auth and no faults here: setting the stage must never be flaky.
Bad input is answered 400 {"error": "..."} naming what to fix; an unknown repository is 404.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from engine.devtools.emulator import Request, Response

if TYPE_CHECKING:
    from actions.travis.emulator.emulator import TravisEmulator

ADMIN_PREFIX = "/_emulator"

_REPO_KEYS = {
    "slug",
    "token",
    "read_only_tokens",
    "default_branch",
    "active",
    "request_limit",
    "build_delay",
    "unknown_sha",
}
_SETTINGS_KEYS = {"active", "request_limit", "build_delay", "unknown_sha"}
_PUSH_KEYS = {"branch", "sha", "message"}
_BEHAVIOUR_KEYS = {"cancel_delay", "processed_message", "wrong_token", "ban_posts",
                   "ban_window", "ban_time", "throttle_limit"}
_TOKEN_KEYS = {"token", "read_only"}
_SCHEDULE_KEYS = {"branch", "start_after", "finish_after", "result", "reject", "intermediate"}
_EXTRA_FAULT_KEYS = {"retry_after", "errors_after_create"}


class _BadInput(ValueError):
    pass


def handle_admin(emulator: TravisEmulator, request: Request) -> Response:
    """Route one admin call; every failure becomes a readable JSON error, never a 500."""
    path = request.path[len(ADMIN_PREFIX) :].rstrip("/") or "/"
    try:
        return _route(emulator, request, path)
    except LookupError as error:
        return Response.json(404, {"error": _text(error)})
    except (ValueError, TypeError) as error:
        return Response.json(400, {"error": _text(error)})


def _route(emulator: TravisEmulator, request: Request, path: str) -> Response:
    method = request.method
    if (method, path) == ("GET", "/health"):
        return Response.json(200, {"ok": True, "service": "travis"})
    if (method, path) == ("GET", "/repos"):
        return Response.json(200, {"repositories": emulator.repositories()})
    if (method, path) == ("POST", "/repos"):
        return Response.json(201, _add_repository(emulator, _body(request)))
    if method == "POST" and path.startswith("/repos/"):
        slug, _, action = path[len("/repos/") :].rpartition("/")
        slug = unquote(slug)
        handler = _REPO_ACTIONS.get(action)
        if handler is not None and slug:
            return handler(emulator, slug, _body(request))
    if (method, path) == ("GET", "/requests"):
        return Response.json(200, {"requests": emulator.requests(request.param("repo"))})
    if (method, path) == ("GET", "/builds"):
        return Response.json(200, {"builds": emulator.builds(request.param("repo"))})
    if (method, path) == ("GET", "/bans"):
        return Response.json(200, {"bans": emulator.bans()})
    if path == "/behaviour" and method in ("GET", "POST"):
        if method == "POST":
            _configure_behaviour(emulator, _body(request))
        return Response.json(200, emulator.behaviour())
    if (method, path) == ("GET", "/calls"):
        return Response.json(
            200, {"calls": emulator.call_counts(), "faults": emulator.faults.counts()})
    if path == "/faults" and method in ("GET", "POST"):
        if method == "POST":
            _configure_faults(emulator, _body(request))
        return Response.json(200, _faults(emulator))
    if (method, path) == ("POST", "/reset"):
        emulator.reset()
        return Response.json(200, {"ok": True})
    return Response.json(404, {"error": f"no admin endpoint {method} {ADMIN_PREFIX}{path}"})


def _add_repository(emulator: TravisEmulator, body: Mapping[str, Any]) -> dict[str, Any]:
    _only(body, _REPO_KEYS)
    read_only = body.get("read_only_tokens", [])
    if not isinstance(read_only, list) or not all(isinstance(t, str) for t in read_only):
        raise _BadInput("read_only_tokens must be a list of strings")
    return emulator.add_repository(
        _get(body, "slug", str, required=True),
        token=_get(body, "token", str),
        read_only_tokens=read_only,
        default_branch=_get(body, "default_branch", str) or "main",
        active=_get(body, "active", bool, default=True),
        request_limit=_get(body, "request_limit", int),
        build_delay=_number(body, "build_delay"),
        unknown_sha=_get(body, "unknown_sha", str) or "accept",
    )


def _add_token(emulator: TravisEmulator, slug: str, body: Mapping[str, Any]) -> Response:
    _only(body, _TOKEN_KEYS)
    read_only = _get(body, "read_only", bool, default=False)
    emulator.add_token(slug, _get(body, "token", str, required=True), read_only=read_only)
    # The token itself is never echoed: admin answers end up in logs too.
    return Response.json(200, {"ok": True, "slug": slug, "read_only": read_only})


def _set_schedule(emulator: TravisEmulator, slug: str, body: Mapping[str, Any]) -> Response:
    _only(body, _SCHEDULE_KEYS)
    start_after = _number(body, "start_after")
    finish_after = _number(body, "finish_after")
    emulator.set_schedule(
        slug,
        _get(body, "branch", str),
        start_after=1.0 if start_after is None else start_after,
        finish_after=5.0 if finish_after is None else finish_after,
        result=_get(body, "result", str) or "passed",
        reject=_get(body, "reject", str),
        intermediate=_get(body, "intermediate", str),
    )
    return Response.json(200, {"ok": True, "slug": slug})


def _update_settings(emulator: TravisEmulator, slug: str, body: Mapping[str, Any]) -> Response:
    _only(body, _SETTINGS_KEYS)
    record = emulator.update_repository(
        slug,
        active=_get(body, "active", bool),
        request_limit=_get(body, "request_limit", int),
        build_delay=_number(body, "build_delay"),
        unknown_sha=_get(body, "unknown_sha", str),
    )
    return Response.json(200, record)


def _push(emulator: TravisEmulator, slug: str, body: Mapping[str, Any]) -> Response:
    _only(body, _PUSH_KEYS)
    sha = emulator.push(slug, _get(body, "branch", str, required=True),
                        sha=_get(body, "sha", str), message=_get(body, "message", str))
    return Response.json(200, {"ok": True, "slug": slug, "sha": sha})


def _configure_behaviour(emulator: TravisEmulator, body: Mapping[str, Any]) -> None:
    _only(body, _BEHAVIOUR_KEYS)
    emulator.configure(
        cancel_delay=_number(body, "cancel_delay"),
        processed_message=_get(body, "processed_message", str),
        wrong_token=_get(body, "wrong_token", str),
        ban_posts=_get(body, "ban_posts", int),
        ban_window=_number(body, "ban_window"),
        ban_time=_number(body, "ban_time"),
        throttle_limit=_get(body, "throttle_limit", int),
    )


_REPO_ACTIONS: dict[str, Callable[[TravisEmulator, str, Mapping[str, Any]], Response]] = {
    "tokens": _add_token,
    "schedule": _set_schedule,
    "settings": _update_settings,
    "push": _push,
}


def _configure_faults(emulator: TravisEmulator, body: Mapping[str, Any]) -> None:
    # Validate everything before changing anything, so a bad call leaves the faults as they were
    # (Faults.configure_from is itself all-or-nothing).
    retry_after = _number(body, "retry_after")
    if retry_after is not None and retry_after < 0:
        raise _BadInput(f"retry_after must be >= 0 seconds, not {retry_after}")
    errors_after_create = _get(body, "errors_after_create", bool)
    emulator.faults.configure_from({k: v for k, v in body.items() if k not in _EXTRA_FAULT_KEYS})
    if "retry_after" in body:
        emulator.retry_after = retry_after
    if errors_after_create is not None:
        emulator.errors_after_create = errors_after_create


def _faults(emulator: TravisEmulator) -> dict[str, Any]:
    return {
        **emulator.faults.as_dict(),
        "retry_after": emulator.retry_after,
        "errors_after_create": emulator.errors_after_create,
    }


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


def _get(
    body: Mapping[str, Any],
    key: str,
    kind: type[Any],
    *,
    required: bool = False,
    default: Any = None,
) -> Any:
    value = body.get(key)
    if value is None:
        if required:
            raise _BadInput(f"{key} is required")
        return default
    # bool is an int in Python, but true is not a request limit.
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
