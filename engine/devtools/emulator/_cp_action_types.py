"""Custom action types: what CreateCustomActionType accepts, what a version may never change,
and what a pipeline's configuration of the action must look like.

Kept apart from the job lifecycle because its rules (PROTOCOL.md A3, A7) are about definitions,
not time: identical JSON is idempotent, a changed definition needs a new version string, a
deleted type comes back only from identical JSON, and at most one property may be queryable.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.devtools.emulator._aws_json import AwsError

CUSTOM_ACTION_TYPE_LIMIT = 50
"""Custom action types per account and region [UG-LIM]; deleted types do not count."""
_QUERYABLE_VALUE = re.compile(r"[A-Za-z0-9_-]{1,20}")

TypeKey = tuple[str, str, str]
"""(category, provider, version): the owner of a custom type is always Custom."""


@dataclass
class ActionType:
    definition: dict[str, Any]
    """The CreateCustomActionType input without tags, defaults filled in: what "identical" means."""
    tags: list[dict[str, str]]
    deleted: bool = False

    @property
    def key(self) -> TypeKey:
        d = self.definition
        return (d["category"], d["provider"], d["version"])

    @property
    def type_id(self) -> dict[str, str]:
        category, provider, version = self.key
        return {"category": category, "owner": "Custom", "provider": provider, "version": version}

    @property
    def name(self) -> str:
        """Category/Owner/Provider/Version, the form error messages and start_execution use."""
        return "/".join(self.type_id.values())

    @property
    def properties(self) -> list[dict[str, Any]]:
        return list(self.definition["configurationProperties"])

    @property
    def queryable(self) -> str | None:
        return next((p["name"] for p in self.properties if p.get("queryable")), None)

    def describe(self) -> dict[str, Any]:
        """The ActionType output shape."""
        d = copy.deepcopy(self.definition)
        return {
            "id": self.type_id,
            "settings": d["settings"],
            "actionConfigurationProperties": d["configurationProperties"],
            "inputArtifactDetails": d["inputArtifactDetails"],
            "outputArtifactDetails": d["outputArtifactDetails"],
        }


class ActionTypeRegistry:
    """The custom action types of one account in one region. Not locked: the emulator's lock
    covers every call."""

    def __init__(self, account_id: str, region: str) -> None:
        self.account_id = account_id
        self.region = region
        self._types: dict[TypeKey, ActionType] = {}

    def find(self, category: str, provider: str, version: str) -> ActionType:
        """The live type, or the ActionTypeNotFoundException PollForJobs answers."""
        found = self._types.get((category, provider, version))
        if found is None or found.deleted:
            state = "was deleted" if found is not None else "does not exist"
            raise AwsError(
                "ActionTypeNotFoundException",
                f"Custom action type {category}/Custom/{provider}/{version} {state} in account "
                f"{self.account_id}, region {self.region}; check category, provider and version, "
                "or create it with CreateCustomActionType",
            )
        return found

    def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """CreateCustomActionType on a body the model has already validated."""
        definition = {
            "category": body["category"],
            "provider": body["provider"],
            "version": body["version"],
            "settings": body.get("settings") or {},
            "configurationProperties": [
                {"queryable": False, **prop} for prop in body.get("configurationProperties") or []
            ],
            "inputArtifactDetails": body["inputArtifactDetails"],
            "outputArtifactDetails": body["outputArtifactDetails"],
        }
        candidate = ActionType(copy.deepcopy(definition), list(body.get("tags") or []))
        _check_definition(candidate)
        existing = self._types.get(candidate.key)
        if existing is not None and existing.definition != candidate.definition:
            if existing.deleted:
                raise AwsError(
                    "ValidationException",
                    f"Action type {candidate.name} was deleted; only JSON identical to the "
                    "deleted definition restores it. To define it differently, use a version "
                    "string that has never been used.",
                )
            raise AwsError(
                "ValidationException",
                f"Action type {candidate.name} already exists with a different definition; the "
                "definition of a version cannot be changed. Create the new definition under a "
                "new version string.",
            )
        if existing is None or existing.deleted:
            active = sum(1 for t in self._types.values() if not t.deleted)
            if active >= CUSTOM_ACTION_TYPE_LIMIT:
                raise AwsError(
                    "LimitExceededException",
                    f"Account {self.account_id} already has {active} custom action types in "
                    f"{self.region}, the limit is {CUSTOM_ACTION_TYPE_LIMIT}; delete unused ones "
                    "with DeleteCustomActionType or ask for a quota increase",
                )
        if existing is None:
            existing = self._types[candidate.key] = candidate
        existing.deleted = False
        out: dict[str, Any] = {"actionType": existing.describe()}
        if existing.tags:
            out["tags"] = copy.deepcopy(existing.tags)
        return out

    def list_types(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """ListActionTypes: only the custom types created here; AWS's own are not emulated."""
        if body.get("nextToken") is not None:
            raise AwsError(
                "InvalidNextTokenException",
                "The next token is not valid: this emulator returns every type in one page "
                "and never issues a nextToken",
            )
        owner, region = body.get("actionOwnerFilter"), body.get("regionFilter")
        if owner not in (None, "Custom") or region not in (None, self.region):
            return {"actionTypes": []}
        return {"actionTypes": [t.describe() for t in self._types.values() if not t.deleted]}

    def delete(self, body: Mapping[str, Any]) -> None:
        """DeleteCustomActionType: the type stays known, so identical JSON can restore it."""
        key = (body["category"], body["provider"], body["version"])
        found = self._types.get(key)
        if found is None:
            raise AwsError(
                "ValidationException",
                f"Custom action type {key[0]}/Custom/{key[1]}/{key[2]} does not exist",
            )
        found.deleted = True  # deleting twice is harmless

    def describe_all(self) -> list[dict[str, Any]]:
        return [{**t.describe(), "deleted": t.deleted} for t in self._types.values()]


def _check_definition(candidate: ActionType) -> None:
    """The rules CodePipeline adds on top of the model."""
    problems: list[str] = []
    names = [p["name"] for p in candidate.properties]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        problems.append(f"configuration property names must be unique, repeated: {duplicates}")
    queryable = [p for p in candidate.properties if p.get("queryable")]
    if len(queryable) > 1:
        problems.append(
            "at most one configuration property may be queryable, got "
            f"{[p['name'] for p in queryable]}"
        )
    for prop in queryable:
        if not prop["required"] or prop["secret"]:
            problems.append(f"queryable property {prop['name']!r} must be required and not secret")
    for side in ("inputArtifactDetails", "outputArtifactDetails"):
        details = candidate.definition[side]
        if details["minimumCount"] > details["maximumCount"]:
            problems.append(f"{side}.minimumCount must not exceed {side}.maximumCount")
    if problems:
        raise AwsError("ValidationException", "; ".join(problems))


def parse_type(action_type: str | Mapping[str, str]) -> TypeKey:
    """ "Test/Custom/Travis/1" or an ActionTypeId mapping, as start_execution accepts them."""
    if isinstance(action_type, str):
        parts = action_type.split("/")
        if len(parts) != 4:
            raise ValueError(
                f"action type {action_type!r} must read Category/Owner/Provider/Version, "
                "e.g. Test/Custom/Travis/1"
            )
        category, owner, provider, version = parts
    else:
        missing = {"category", "owner", "provider", "version"} - set(action_type)
        if missing:
            raise ValueError(f"action type {dict(action_type)} lacks {sorted(missing)}")
        category, owner, provider, version = (
            action_type[k] for k in ("category", "owner", "provider", "version")
        )
    if owner != "Custom":
        raise ValueError(f"only Custom action types run on job workers, not owner {owner!r}")
    return (category, provider, version)


def checked_configuration(
    action_type: ActionType, configuration: Mapping[str, str]
) -> dict[str, str]:
    """What the pipeline editor enforces before any job exists."""
    properties = {p["name"]: p for p in action_type.properties}
    problems = []
    unknown = sorted(set(configuration) - set(properties))
    if unknown:
        problems.append(f"unknown properties {unknown} (the type has {sorted(properties)})")
    missing = sorted(n for n, p in properties.items() if p["required"] and n not in configuration)
    if missing:
        problems.append(f"required properties missing: {missing}")
    for name, value in configuration.items():
        if not 1 <= len(value) <= 1000:
            problems.append(f"property {name!r} must be 1-1000 characters, not {len(value)}")
        elif properties.get(name, {}).get("queryable") and not _QUERYABLE_VALUE.fullmatch(value):
            problems.append(
                f"queryable property {name!r} must be at most 20 characters of [A-Za-z0-9_-]"
            )
    if problems:
        raise ValueError(f"configuration for {action_type.name}: " + "; ".join(problems))
    return dict(configuration)
