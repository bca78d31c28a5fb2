"""Reading what a Travis client sent: the route, the API version, filters and the request body.

Everything here is a pure function of the incoming Request, so the emulator's endpoints only
deal with state, and a surprising parse can be checked without a server.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from actions.travis.emulator._model import MERGE_MODES, BuildRecord, wrong_params
from engine.devtools.emulator import Request, Response

PROVIDERS = frozenset({"github", "gitlab", "bitbucket", "assembla"})
"""Provider names Travis accepts in /repo/{provider}/{slug}/... paths."""

Handler = Callable[[Request, Mapping[str, str], float], Response]
"""An endpoint: the request, the values of its path placeholders, and the time of the call."""


@dataclass(frozen=True)
class Route:
    key: str
    """"METHOD /path/{placeholder}": also how the call is counted in call_counts()."""
    method: str
    pattern: tuple[str, ...]
    """Path segments; "{slug}" takes a slug or a numeric id, "{id}" only digits."""
    handler: Handler

    @classmethod
    def of(cls, key: str, handler: Handler) -> Route:
        method, _, path = key.partition(" ")
        return cls(key, method, tuple(part for part in path.split("/") if part), handler)

    def match(self, method: str, segments: Sequence[str]) -> dict[str, str] | None:
        if method != self.method or len(segments) != len(self.pattern):
            return None
        args: dict[str, str] = {}
        for want, got in zip(self.pattern, segments, strict=True):
            if want == "{id}":
                if not got.isdigit():
                    return None
                args["id"] = got
            elif want == "{slug}":
                args["slug"] = got
            elif want != got:
                return None
        return args


def split_path(path: str) -> tuple[list[str], bool]:
    """Split a raw path into decoded segments; an encoded slug (owner%2Frepo) stays one segment.

    Returns the segments without a /v3 prefix or a provider name, and whether /v3 was there.
    An unencoded slug becomes two segments and matches no route, as on the real server.
    """
    segments = [unquote(part) for part in path.split("/") if part]
    versioned = bool(segments) and segments[0] == "v3"
    if versioned:
        segments = segments[1:]
    if (
        len(segments) >= 3
        and segments[0] == "repo"
        and segments[1] in PROVIDERS
        and ("/" in segments[2] or segments[2].isdigit())
    ):
        segments = [segments[0], *segments[2:]]
    return segments, versioned


def asks_for_v3(request: Request) -> bool:
    """The two header ways of opting in to v3 (the /v3 prefix is the third)."""
    if request.header("travis-api-version").strip() == "3":
        return True
    return "application/vnd.travis-ci.3+" in request.header("accept")


def query_filter(request: Request, *names: str) -> set[str] | None:
    """A comma-separated filter parameter as a set, or None when absent.

    Several names cover Travis's prefixed and unprefixed spellings of the same filter.
    """
    for name in names:
        value = request.param(name)
        if value is not None:
            return {part.strip() for part in value.split(",") if part.strip()}
    return None


def query_include(request: Request) -> frozenset[str]:
    value = request.param("include") or ""
    return frozenset(part.strip() for part in value.split(",") if part.strip())


def sort_builds(builds: list[BuildRecord], sort_by: str | None, now: float) -> list[BuildRecord]:
    """Sort by number, id, started_at or finished_at; "field:desc" reverses. Default number desc.

    Unknown fields fall back to the default, as Travis ignores sort fields it does not know.
    """
    keys: dict[str, Callable[[BuildRecord], float]] = {
        "number": lambda b: b.number,
        "id": lambda b: b.id,
        "started_at": lambda b: b.started_at(now) or 0.0,
        "finished_at": lambda b: b.finished_at(now) or 0.0,
    }
    name, _, order = (sort_by or "number:desc").partition(":")
    if name not in keys:
        name, order = "number", "desc"
    return sorted(builds, key=keys[name], reverse=order == "desc")


def request_fields(request: Request) -> dict[str, Any]:
    """The parameters of a POST /requests body, checked; keys absent from the body are None.

    Travis takes them under "request" or at the top level and ignores anything else (an `id` or
    `user` in the body has no effect), so unknown keys are ignored here too.
    """
    try:
        body = request.json()
    except (ValueError, UnicodeDecodeError):
        raise wrong_params("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise wrong_params("the request body must be a JSON object")
    fields = body.get("request", body)
    if not isinstance(fields, dict):
        raise wrong_params("'request' must be an object")
    checked: dict[str, Any] = {}
    for name in ("branch", "message", "sha", "tag_name"):
        value = fields.get(name)
        if value is not None and not isinstance(value, str):
            raise wrong_params(f"{name} must be a string")
        checked[name] = value
    if checked["branch"] is not None and not checked["branch"].strip():
        raise wrong_params("branch must not be empty")
    merge_mode = fields.get("merge_mode")
    if merge_mode is not None and merge_mode not in MERGE_MODES:
        raise wrong_params(f"merge_mode must be one of {', '.join(MERGE_MODES)}")
    checked["merge_mode"] = merge_mode
    config = fields.get("config")
    if config is not None and not isinstance(config, (dict, str)):
        raise wrong_params("config must be an object (or a YAML string)")
    checked["config"] = config
    configs = fields.get("configs")
    if configs is not None and not isinstance(configs, list):
        raise wrong_params("configs must be a list of {config, mode} objects")
    checked["configs"] = configs
    return checked
