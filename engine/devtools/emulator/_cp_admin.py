"""The CodePipeline emulator's admin HTTP routes under /_emulator/: CodePipeline's own side of
the job API (start and stop executions), inspection and fault control, for tests and tools that
run the emulator in another process. No SigV4 and no faults here: this is the test's hand on the
service, not a client of it.

Routes map one to one onto CodePipelineEmulator's Python methods, so they are documented there.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from engine.devtools.emulator import _cp_events
from engine.devtools.emulator._http import Request, Response

if TYPE_CHECKING:
    from engine.devtools.emulator.codepipeline import CodePipelineEmulator

_START_KEYS = {
    "action_type",
    "configuration",
    "pipeline_name",
    "stage",
    "action",
    "input_artifacts",
    "output_artifacts",
    "encryption_key",
    "revision",
    "input_content",
}


class _AdminError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


Handler = Callable[["CodePipelineEmulator", Request, "re.Match[str]"], Response]


def handle(emulator: CodePipelineEmulator, request: Request) -> Response:
    """Route one admin request; every refusal is JSON {"error": ...} a person can act on."""
    try:
        allowed = []
        for method, pattern, handler in _ROUTES:
            match = pattern.fullmatch(request.path.rstrip("/") or "/")
            if match is None:
                continue
            if method == request.method:
                return handler(emulator, request, match)
            allowed.append(method)
        if allowed:
            raise _AdminError(
                405,
                f"{request.method} is not allowed on {request.path}; use {' or '.join(allowed)}",
            )
        raise _AdminError(
            404, f"no admin route {request.path}; see CodePipelineEmulator's docstring"
        )
    except _AdminError as error:
        return Response.json(error.status, {"error": error.message})
    except KeyError as error:
        return Response.json(404, {"error": str(error.args[0]) if error.args else "not found"})
    except (ValueError, TypeError) as error:
        return Response.json(400, {"error": str(error)})


def _body(request: Request, known: set[str]) -> dict[str, Any]:
    try:
        body = request.json()
    except (ValueError, UnicodeDecodeError) as error:
        raise _AdminError(400, f"the request body is not JSON: {error}") from None
    if not isinstance(body, dict):
        raise _AdminError(400, f"the request body must be a JSON object, not {type(body).__name__}")
    unknown = sorted(set(body) - known)
    if unknown:
        raise _AdminError(400, f"unknown keys {unknown}; known: {sorted(known)}")
    return body


def _typed(body: Mapping[str, Any], key: str, kinds: tuple[type, ...], what: str) -> None:
    value = body.get(key)
    if key in body and (not isinstance(value, kinds) or isinstance(value, bool) != (bool in kinds)):
        raise _AdminError(400, f"{key} must be {what}, not {value!r}")


def _health(emulator: CodePipelineEmulator, request: Request, match: re.Match[str]) -> Response:
    return Response.json(
        200,
        {
            "status": "ok",
            "service": "codepipeline",
            "region": emulator.region,
            "accountId": emulator.account_id,
            "now": emulator.clock.now(),
        },
    )


def _start(emulator: CodePipelineEmulator, request: Request, match: re.Match[str]) -> Response:
    body = _body(request, _START_KEYS)
    if "action_type" not in body:
        raise _AdminError(400, 'action_type is required, e.g. "Test/Custom/Travis/1"')
    _typed(body, "action_type", (str, dict), 'a "Category/Owner/Provider/Version" string or object')
    _typed(body, "configuration", (dict,), "an object of strings")
    configuration = body.get("configuration") or {}
    if not all(isinstance(v, str) for v in configuration.values()):
        raise _AdminError(400, "configuration values must be strings, as CodePipeline stores them")
    for key in ("pipeline_name", "stage", "action", "encryption_key", "revision"):
        _typed(body, key, (str,), "a string")
    for key in ("input_artifacts", "output_artifacts"):
        _typed(body, key, (int, list), "a count or a list of artifact names (input artifacts "
               'also as {"name", "revision"} objects)')
    kwargs = {k: v for k, v in body.items() if k not in ("action_type", "configuration")}
    if "input_content" in body:
        kwargs["input_content"] = _decoded(body["input_content"])
    started = emulator.start_execution(body["action_type"], configuration, **kwargs)
    return Response.json(201, started)


def _decoded(content: Any) -> dict[str, bytes]:
    """input_content: {"ArtifactName": "<base64 of the artifact's bytes>"}."""
    if not isinstance(content, dict) or not all(isinstance(v, str) for v in content.values()):
        raise _AdminError(400, 'input_content must be {"ArtifactName": "<base64 bytes>"}')
    try:
        return {name: base64.b64decode(value, validate=True) for name, value in content.items()}
    except binascii.Error as error:
        raise _AdminError(400, f"input_content holds something that is not base64: {error}"
                          ) from None


def _expire(emulator: CodePipelineEmulator, request: Request, match: re.Match[str]) -> Response:
    body = _body(request, {"job_id"})
    _typed(body, "job_id", (str,), "a job id")
    return Response.json(200, {"expired": emulator.expire_credentials(body.get("job_id"))})


def _artifact_store(emulator: CodePipelineEmulator, request: Request,
                    match: re.Match[str]) -> Response:
    store = emulator.artifact_store
    if store is None:
        return Response.json(200, {"enabled": False})
    return Response.json(200, {"enabled": True, "bucket": store.bucket,
                               "backendUrl": store.backend_url, "motoUrl": store.moto_url,
                               "kmsKeyId": store.kms_key_id, "kmsKeyArn": store.kms_key_arn})


def _artifact(emulator: CodePipelineEmulator, request: Request, match: re.Match[str]) -> Response:
    data = emulator.artifact_bytes(match["id"], match["name"])
    return Response(200, data, {"Content-Type": "application/octet-stream"})


def _stop(emulator: CodePipelineEmulator, request: Request, match: re.Match[str]) -> Response:
    body = _body(request, {"abandon", "reason"})
    _typed(body, "abandon", (bool,), "true or false")
    _typed(body, "reason", (str,), "a string")
    execution_id = match["id"]
    emulator.stop_execution(
        execution_id, abandon=body.get("abandon", True), reason=body.get("reason", "")
    )
    return Response.json(200, emulator.execution(execution_id))


def _tamper(emulator: CodePipelineEmulator, request: Request, match: re.Match[str]) -> Response:
    body = _body(request, {"configuration"})
    _typed(body, "configuration", (dict,), "an object")
    emulator.tamper(match["id"], body.get("configuration") or {})
    return Response.json(200, emulator.execution(match["id"]))


def _get_refusals(emulator: CodePipelineEmulator, request: Request,
                  match: re.Match[str]) -> Response:
    return Response.json(200, {"refusals": emulator.refusals.as_dict()})


def _refuse(emulator: CodePipelineEmulator, request: Request, match: re.Match[str]) -> Response:
    body = _body(request, {"operation", "code", "message", "times"})
    if "operation" not in body:
        raise _AdminError(400, 'operation is required, e.g. "PutJobSuccessResult"')
    _typed(body, "operation", (str,), "an operation name")
    _typed(body, "message", (str,), "a string")
    _typed(body, "times", (int,), "a whole number of calls")
    code = body.get("code", "ValidationException")
    if code is not None and not isinstance(code, str):
        raise _AdminError(400, f"code must be an error code or null (lifts it), not {code!r}")
    emulator.refuse(body["operation"], code, body.get("message"), body.get("times"))
    return Response.json(200, {"refusals": emulator.refusals.as_dict()})


def _executions(emulator: CodePipelineEmulator, request: Request, match: re.Match[str]) -> Response:
    return Response.json(200, {"executions": emulator.executions()})


def _execution(emulator: CodePipelineEmulator, request: Request, match: re.Match[str]) -> Response:
    return Response.json(200, emulator.execution(match["id"]))


def _jobs(emulator: CodePipelineEmulator, request: Request, match: re.Match[str]) -> Response:
    return Response.json(200, {"jobs": emulator.jobs(request.param("status"))})


def _job(emulator: CodePipelineEmulator, request: Request, match: re.Match[str]) -> Response:
    return Response.json(200, emulator.job(match["id"]))


def _action_types(
    emulator: CodePipelineEmulator, request: Request, match: re.Match[str]
) -> Response:
    return Response.json(200, {"actionTypes": emulator.action_types()})


def _calls(emulator: CodePipelineEmulator, request: Request, match: re.Match[str]) -> Response:
    return Response.json(200, {"calls": emulator.call_counts(), "faults": emulator.faults.counts()})


def _get_faults(emulator: CodePipelineEmulator, request: Request, match: re.Match[str]) -> Response:
    return Response.json(200, emulator.faults.as_dict())


def _set_faults(emulator: CodePipelineEmulator, request: Request, match: re.Match[str]) -> Response:
    try:
        payload = request.json()
    except (ValueError, UnicodeDecodeError) as error:
        raise _AdminError(400, f"the request body is not JSON: {error}") from None
    if not isinstance(payload, dict):
        raise _AdminError(400, "the fault settings must be a JSON object")
    emulator.faults.configure_from(payload)
    return Response.json(200, emulator.faults.as_dict())


def _advance(emulator: CodePipelineEmulator, request: Request, match: re.Match[str]) -> Response:
    body = _body(request, {"seconds"})
    _typed(body, "seconds", (int, float), "a number of seconds")
    advance = getattr(emulator.clock, "advance", None)
    if advance is None:
        raise _AdminError(
            409, "this emulator runs on a real clock; start it with a FakeClock to move time"
        )
    advance(float(body.get("seconds", 0)))
    return Response.json(200, {"now": emulator.clock.now()})


def _reset(emulator: CodePipelineEmulator, request: Request, match: re.Match[str]) -> Response:
    emulator.reset()
    return Response.json(200, {"status": "reset"})


_ID = r"(?P<id>[^/]+)"
_ROUTES: list[tuple[str, re.Pattern[str], Handler]] = [
    (method, re.compile("/_emulator" + path), handler)
    for method, path, handler in [
        ("GET", "/health", _health),
        ("POST", "/executions", _start),
        ("GET", "/executions", _executions),
        ("GET", f"/executions/{_ID}", _execution),
        ("POST", f"/executions/{_ID}/stop", _stop),
        ("POST", f"/executions/{_ID}/tamper", _tamper),
        ("GET", f"/executions/{_ID}/artifacts/(?P<name>[^/]+)", _artifact),
        ("POST", "/credentials/expire", _expire),
        ("GET", "/artifact-store", _artifact_store),
        ("GET", "/jobs", _jobs),
        ("GET", f"/jobs/{_ID}", _job),
        ("GET", "/action-types", _action_types),
        ("GET", "/calls", _calls),
        ("GET", "/faults", _get_faults),
        ("GET", "/refusals", _get_refusals),
        ("POST", "/refusals", _refuse),
        ("POST", "/faults", _set_faults),
        ("POST", "/clock/advance", _advance),
        ("GET", "/events", _cp_events.admin_get),
        ("POST", "/events", _cp_events.admin_set),
        ("POST", "/reset", _reset),
    ]
]
