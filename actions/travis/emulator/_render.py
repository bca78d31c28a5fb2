"""The JSON Travis API v3 renders for the emulator's records, and the admin views of them.

Each function returns what travis-api puts on the wire for that representation; the comments
name the renderer (`lib/travis/api/v3/renderer/*.rb`) or query a shape comes from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from actions.travis.emulator._model import (
    BuildRecord,
    Commit,
    Repo,
    RequestRecord,
    User,
    iso,
    iso_ms,
    wrong_params,
)

DEFAULT_LIMIT = 25
MAX_LIMIT = 100
"""Travis's paginator: 25 entries unless asked, never more than 100 for a normal user."""

GITHUB_ID_OFFSET = 7_000_000
"""Travis puts the GitHub id, not its own, in a 202's request.repository; keeping them apart
lets a client test catch code that confuses the two."""

PROCESSED_MESSAGES = ("status", "sent", "none")
"""What a processed request shows as its own `message` (a setting, `processed_message`).

The renderer shows the requests table's `message` column (renderer/request.rb); an API request
is created without one (queries/request.rb#create_request: only event_type, state, repository,
owner), so a *pending* request's message is null whatever was sent: that part is certain. What
the gatekeeper writes there on processing is not in travis-api's source:

- "status" (default): Travis's own status text, null when all went well and the reason when
  not. Observed: API requests Travis rejected show "Could not authorize build request for
  <slug>." there while their commit.message holds the message the client sent
  (cljs-oss/canary's published job reports, 2021).
- "sent": the message the client sent.
- "none": always null.
"""

TRAVIS_YML = "language: shell\nos: linux\n"
"""The .travis.yml every emulated repository has."""


def render_repo_minimal(repo: Repo) -> dict[str, Any]:
    return {
        "@type": "repository",
        "@href": f"/repo/{repo.id}",
        "@representation": "minimal",
        "id": repo.id,
        "name": repo.name,
        "slug": repo.slug,
    }


def render_repo_standard(repo: Repo) -> dict[str, Any]:
    return {
        **render_repo_minimal(repo),
        "@representation": "standard",
        "description": None,
        "github_id": repo.id + GITHUB_ID_OFFSET,
        "vcs_id": str(repo.id + GITHUB_ID_OFFSET),
        "vcs_type": "GithubRepository",
        "owner_name": repo.owner_name,
        "vcs_name": repo.name,
        "active": repo.active,
        "private": True,
        "owner": {"@type": "user", "login": repo.owner_name},
        "default_branch": render_branch(repo, repo.default_branch),
        "starred": False,
        "managed_by_installation": False,
        "migration_status": None,
    }


def render_user(user: User, representation: str = "minimal") -> dict[str, Any]:
    return {
        "@type": "user",
        "@href": f"/user/{user.id}",
        "@representation": representation,
        "id": user.id,
        "login": user.login,
    }


def render_branch(repo: Repo, name: str) -> dict[str, Any]:
    return {
        "@type": "branch",
        "@href": f"/repo/{repo.id}/branch/{name}",
        "@representation": "minimal",
        "name": name,
    }


def render_commit(commit: Commit | None) -> dict[str, Any] | None:
    if commit is None:
        return None
    return {
        "@type": "commit",
        "@representation": "minimal",
        "id": commit.id,
        "sha": commit.sha,
        "ref": commit.ref,
        "message": commit.message,
        "compare_url": None,
        "committed_at": iso(commit.committed_at),
    }


def config_text(config: Any) -> Any:
    """queries/request.rb#to_str: a config object travels (and is echoed) as a JSON string."""
    return json.dumps(config) if isinstance(config, dict) else config


def render_pending_request(record: RequestRecord) -> dict[str, Any]:
    """The `request` member of a 202: the payload queued for the gatekeeper, None values dropped
    (queries/request.rb#schedule and #compact), configs normalised as #request_configs does."""
    repo = record.repo
    configs: Any = record.configs
    if isinstance(configs, list):
        configs = [_normalized(c) for c in configs]
    elif record.config is not None:
        configs = [{"config": config_text(record.config), "mode": record.merge_mode}]
    payload: dict[str, Any] = {
        "repository": {
            "id": repo.id + GITHUB_ID_OFFSET,
            "vcs_type": "GithubRepository",
            "owner_name": repo.owner_name,
            "name": repo.name,
        },
        "user": {"id": record.user.id},
        "id": record.id,
        "message": record.message,
        "branch": record.branch,
        "tag_name": record.tag_name,
        "sha": record.sha,
        "configs": configs,
        "merge_mode": record.merge_mode,
        "config": config_text(record.config),
    }
    return {key: value for key, value in payload.items() if value is not None}


def _normalized(config: Any) -> Any:
    if not isinstance(config, dict):
        return config
    entry = dict(config)
    entry["config"] = config_text(entry.get("config"))
    if entry.get("merge_mode"):
        entry["mode"] = entry.pop("merge_mode")
    return entry


def render_request_minimal(record: RequestRecord, processed_message: str = "status"
                           ) -> dict[str, Any]:
    """renderer/request.rb :minimal. `message` is the request row's, never the commit's."""
    message = None
    if record.processed and processed_message == "status":
        message = record.status_message
    elif record.processed and processed_message == "sent":
        message = record.message
    return {
        "@type": "request",
        "@href": f"/repo/{record.repo.id}/request/{record.id}",
        "@representation": "minimal",
        "id": record.id,
        "state": record.state,
        "result": record.result,
        "message": message,
        "pull_request_mergeable": None,
    }


def render_request(
    record: RequestRecord, now: float, include: frozenset[str] = frozenset(),
    processed_message: str = "status",
) -> dict[str, Any]:
    """renderer/request.rb :standard. Until the gatekeeper has processed it, an API request has
    no commit and so no branch_name (models/request.rb#branch_name), no builds and an empty
    config (models/request.rb#config falls back to {})."""
    body: dict[str, Any] = {
        **render_request_minimal(record, processed_message),
        "@representation": "standard",
        "repository": render_repo_minimal(record.repo),
        "branch_name": record.branch if record.on_branch else None,
        "commit": render_commit(record.commit),
        "builds": [] if record.build is None else [render_build_minimal(record.build, now)],
        "owner": render_user(record.user),
        "created_at": iso(record.created_at),
        "event_type": "api",
        "base_commit": None,
        "head_commit": None,
        "config": merged_config(record) if record.processed else {},
        "raw_configs": raw_configs(record) if record.processed else [],
    }
    if "request.messages" in include:
        body["messages"] = list(record.messages)
    return body


def merged_config(record: RequestRecord) -> dict[str, Any]:
    """The request's config as renderer/request.rb#config gives it: an object (JSON parsed,
    keys symbolised, `.result` dropped). The emulator merges the API config shallowly onto the
    repository's .travis.yml ("replace" keeps the API config alone)."""
    base: dict[str, Any] = {"language": "shell", "os": "linux"}
    sent = record.config if isinstance(record.config, dict) else {}
    merged = dict(sent) if record.merge_mode == "replace" and sent else {**base, **sent}
    return {key: value for key, value in merged.items() if key != ".result"}


def raw_configs(record: RequestRecord) -> list[dict[str, Any]]:
    """renderer/request.rb#raw_configs: the configs the request was built from, by source."""
    found = []
    if record.config is not None:
        found.append({"@type": "request_raw_configuration", "@representation": "minimal",
                      "config": config_text(record.config), "source": "api",
                      "merge_mode": record.merge_mode})
    if record.commit is not None:
        found.append({"@type": "request_raw_configuration", "@representation": "minimal",
                      "config": TRAVIS_YML,
                      "source": f"{record.repo.slug}:.travis.yml@{record.commit.sha[:16]}",
                      "merge_mode": None})
    return found


def render_build_minimal(build: BuildRecord, now: float) -> dict[str, Any]:
    """renderer/build.rb :minimal."""
    return {
        "@type": "build",
        "@href": f"/build/{build.id}",
        "@representation": "minimal",
        "id": build.id,
        "number": str(build.number),
        "state": build.state_at(now),
        "duration": build.duration(now),
        "event_type": "api",
        "previous_state": build.previous_state,
        "pull_request_title": None,
        "pull_request_number": None,
        "started_at": iso(build.started_at(now)),
        "finished_at": iso(build.finished_at(now)),
        "private": True,
        "priority": False,
    }


def render_build(build: BuildRecord, now: float, include: frozenset[str] = frozenset(),
                 processed_message: str = "status") -> dict[str, Any]:
    """renderer/build.rb :standard, also what GET /repo/{slug}/builds lists (the collection
    renders its entries :standard unless asked otherwise, collection_renderer.rb). `request`
    is not in :standard: only include=build.request adds it (available_attributes)."""
    repo = build.repo
    moments = (build.created_at, build.started_at(now), build.finished_at(now))
    updated = max(t for t in moments if t is not None)
    body = {
        **render_build_minimal(build, now),
        "@representation": "standard",
        "repository": render_repo_minimal(repo),
        "branch": render_branch(repo, build.request.branch),
        "tag": None,
        "commit": render_commit(build.commit),
        "jobs": [
            {
                "@type": "job",
                "@href": f"/job/{build.job_id}",
                "@representation": "minimal",
                "id": build.job_id,
            }
        ],
        "stages": [],
        "created_by": render_user(build.request.user),
        "updated_at": iso_ms(updated),
    }
    if "build.request" in include:
        body["request"] = render_request_minimal(build.request, processed_message)
    return body


def paginate(
    items: Sequence[Any], query: Mapping[str, list[str]], path: str
) -> tuple[list[Any], dict[str, Any], str]:
    """Slice a collection the way Travis's paginator does and describe the slice.

    Returns the page, the "@pagination" member and the collection's own "@href".
    """

    def number(name: str) -> int | None:
        values = query.get(name)
        if not values or values[0] == "":
            return None
        try:
            return int(values[0])
        except ValueError:
            raise wrong_params(f"{name} must be an integer") from None

    limit = number("limit")
    if limit is None or limit < 0:
        limit = DEFAULT_LIMIT
    if limit < 1 or limit > MAX_LIMIT:
        limit = MAX_LIMIT
    offset = max(number("offset") or 0, 0)
    count = len(items)
    others = [(k, v) for k, values in query.items() if k not in ("limit", "offset") for v in values]

    def href(at: int, size: int) -> str:
        return f"{path}?{urlencode([*others, ('limit', size), ('offset', at)])}"

    def info(at: int, size: int = limit) -> dict[str, Any]:
        return {"@href": href(at, size), "offset": at, "limit": size}

    is_last = count <= offset + limit
    last_offset = count // limit * limit
    if last_offset == count and last_offset > 0:
        last_offset -= limit
    previous = None
    if offset > 0:
        previous = info(0, offset) if offset <= limit else info(offset - limit)
    pagination = {
        "limit": limit,
        "offset": offset,
        "count": count,
        "is_first": offset == 0,
        "is_last": is_last,
        "next": None if is_last else info(offset + limit),
        "prev": previous,
        "first": info(0),
        "last": info(last_offset),
    }
    self_href = href(offset, limit) if query else path
    return list(items[offset : offset + limit]), pagination, self_href


# Admin records: plain data for tests and the admin HTTP interface, times as epoch floats.


def repo_record(repo: Repo, request_limit: int, build_delay: float) -> dict[str, Any]:
    """A repository as the admin API shows it; tokens are counted, never shown."""
    return {
        "id": repo.id,
        "slug": repo.slug,
        "owner_name": repo.owner_name,
        "name": repo.name,
        "default_branch": repo.default_branch,
        "active": repo.active,
        "request_limit": request_limit,
        "build_delay": build_delay,
        "unknown_sha": repo.unknown_sha,
        "heads": dict(repo.heads),
        "tokens": len(repo.tokens),
        "schedules": {
            "*" if branch is None else branch: schedule.as_dict()
            for branch, schedule in repo.schedules.items()
        },
    }


def request_record(record: RequestRecord) -> dict[str, Any]:
    """A request with what the client sent (message, branch, sha) and what Travis made of it:
    `commit_sha` is the commit it built (the branch head at processing when no sha was sent)."""
    return {
        "id": record.id,
        "repository": record.repo.slug,
        "repository_id": record.repo.id,
        "branch": record.branch,
        "message": record.message,
        "sha": record.sha,
        "commit_sha": None if record.commit is None else record.commit.sha,
        "tag_name": record.tag_name,
        "merge_mode": record.merge_mode,
        "config": record.config,
        "event_type": "api",
        "state": record.state,
        "result": record.result,
        "created_at": record.created_at,
        "processed_at": record.due_at if record.processed else None,
        "build_id": None if record.build is None else record.build.id,
        "messages": list(record.messages),
    }


def build_record(build: BuildRecord, now: float) -> dict[str, Any]:
    return {
        "id": build.id,
        "number": build.number,
        "repository": build.repo.slug,
        "repository_id": build.repo.id,
        "branch": build.request.branch,
        "request_id": build.request.id,
        "sha": build.commit.sha,
        "message": build.commit.message,
        "state": build.state_at(now),
        "created_at": build.created_at,
        "started_at": build.started_at(now),
        "finished_at": build.finished_at(now),
        "cancel_requested": build.cancel_at is not None,
        "canceled": build.state_at(now) == "canceled",
    }
