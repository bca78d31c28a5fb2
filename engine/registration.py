"""Registering an action's type with CodePipeline (CreateCustomActionType), idempotently.

CodePipeline never lets a custom action type change under the same version: a changed definition
needs a new version string (and pipelines moved to it). So registering compares first: an
identical type is already done, a different one is an error that says what differs and what to do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.action import ActionDefinition
from engine.errors import ConfigurationProblem

if TYPE_CHECKING:
    from mypy_boto3_codepipeline import CodePipelineClient

_COMPARED = ("settings", "configurationProperties", "inputArtifactDetails",
             "outputArtifactDetails")


@dataclass(frozen=True)
class Registration:
    type_id: str
    status: str
    """'created', 'exists' (identical, nothing to do) or 'would create' (dry run)."""


def _normal_property(prop: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": prop.get("name"), "required": bool(prop.get("required")),
        "key": bool(prop.get("key")), "secret": bool(prop.get("secret")),
        "queryable": bool(prop.get("queryable", False)),
        "description": prop.get("description") or None, "type": prop.get("type") or None,
    }


def _normal(document: Mapping[str, Any]) -> dict[str, Any]:
    """The comparable part of a definition, whether it came from our file or ListActionTypes."""
    properties = document.get("configurationProperties",
                              document.get("actionConfigurationProperties", [])) or []
    return {
        "settings": {k: v for k, v in (document.get("settings") or {}).items() if v},
        "configurationProperties": sorted((_normal_property(p) for p in properties),
                                          key=lambda p: str(p["name"])),
        "inputArtifactDetails": dict(document.get("inputArtifactDetails") or {}),
        "outputArtifactDetails": dict(document.get("outputArtifactDetails") or {}),
    }


def differences(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> list[str]:
    a, b = _normal(ours), _normal(theirs)
    return [name for name in _COMPARED if a[name] != b[name]]


def register(client: CodePipelineClient, definition: ActionDefinition,
             dry_run: bool = False) -> Registration:
    type_id = definition.type_id
    existing = None
    paginator_token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"actionOwnerFilter": "Custom"}
        if paginator_token:
            kwargs["nextToken"] = paginator_token
        page = client.list_action_types(**kwargs)
        for found in page.get("actionTypes", []):
            found_id = found["id"]
            if (found_id["category"], found_id["provider"], found_id["version"]) == (
                type_id.category, type_id.provider, type_id.version
            ):
                existing = found
        paginator_token = page.get("nextToken")
        if not paginator_token or existing is not None:
            break
    if existing is not None:
        changed = differences(definition.document, dict(existing))
        if not changed:
            return Registration(str(type_id), "exists")
        raise ConfigurationProblem(
            f"the action type {type_id} is already registered with a different "
            f"{', '.join(changed)}; CodePipeline never changes a custom action type under the "
            "same version",
            fix="raise the version in the action's JSON file (a version string never used "
            "before), register again, and move the pipelines to the new version",
        )
    if dry_run:
        return Registration(str(type_id), "would create")
    document = dict(definition.document)
    document.pop("owner", None)
    client.create_custom_action_type(**document)
    return Registration(str(type_id), "created")
