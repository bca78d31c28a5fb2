"""Request validation against botocore's own CodePipeline service model.

The constraints (lengths, ranges, patterns, enums, required members) are read from the model
botocore ships, never restated here, so the emulator refuses exactly what the model says AWS
refuses, and a model update reaches the emulator with `pip install -U botocore`.

Messages follow the Coral wording AWS uses, e.g. "1 validation error detected: Value '101' at
'executionDetails.percentComplete' failed to satisfy constraint: Member must have value less
than or equal to 100", with list items addressed as `tags.1.member.key` (1-based) as AWS does.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import botocore.session
from botocore.model import (
    ListShape,
    MapShape,
    OperationModel,
    ServiceModel,
    Shape,
    StringShape,
    StructureShape,
)

from engine.devtools.emulator._aws_json import AwsError
from engine.limits import Unit, measure

SERVICE_NAME = "codepipeline"
LENGTH_UNITS = {"code_points": Unit.CODE_POINTS, "utf16": Unit.UTF16, "utf8": Unit.UTF8}
"""How a string's length constraint may be counted (CodePipelineEmulator's length_unit)."""
_REDACTED = "*** Sensitive Data Redacted ***"


@functools.lru_cache(maxsize=1)
def service_model() -> ServiceModel:
    """Loaded once: parsing the model costs about a tenth of a second."""
    return botocore.session.get_session().get_service_model(SERVICE_NAME)


def target_prefix() -> str:
    return str(service_model().metadata["targetPrefix"])


def operation_model(name: str) -> OperationModel | None:
    model = service_model()
    return model.operation_model(name) if name in model.operation_names else None


def validate_input(operation: str, body: Any, length_unit: str = "utf16") -> None:
    """Raise SerializationException for JSON of the wrong type, ValidationException for values
    that break a model constraint; return quietly when the body is a valid input. String
    lengths are counted in `length_unit` (LENGTH_UNITS)."""
    op = operation_model(operation)
    if op is None or op.input_shape is None:
        return
    validator = _Validator(LENGTH_UNITS[length_unit])
    validator.check(op.input_shape, body, "")
    if validator.type_errors:
        raise AwsError("SerializationException", validator.type_errors[0])
    if validator.errors:
        raise validation_error(validator.errors)


def validation_error(errors: list[str]) -> AwsError:
    """The Coral "N validation errors detected" message, for model and semantic rules alike."""
    count = len(errors)
    noun = "error" if count == 1 else "errors"
    return AwsError(
        "ValidationException", f"{count} validation {noun} detected: " + "; ".join(errors)
    )


_CONSTRAINT = " failed to satisfy constraint: "


def constraint_error(value: Any, path: str, constraint: str, shape: Shape | None = None) -> str:
    return f"Value {render(value, shape)} at '{path}'{_CONSTRAINT}{constraint}"


def render(value: Any, shape: Shape | None = None) -> str:
    """A value as Coral prints it in a message: quoted, maps as {k=v}, null bare."""
    if value is None:
        return "null"
    if shape is not None and shape.metadata.get("sensitive"):
        return f"'{_REDACTED}'"
    return f"'{_plain(value)}'"


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_plain(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_plain(v) for v in value) + "]"
    return "null" if value is None else str(value)


@functools.lru_cache(maxsize=256)
def _pattern(pattern: str) -> re.Pattern[str] | None:
    """Model patterns are Java regexes matched against the whole value; the few Java-only
    constructs Python cannot compile are skipped rather than guessed at."""
    try:
        return re.compile(pattern)
    except re.error:
        return None


def _join(path: str, member: str) -> str:
    return f"{path}.{member}" if path else member


class _Validator:
    """One walk over a value and its shape, collecting every violation as AWS lists them all."""

    def __init__(self, unit: Unit = Unit.UTF16) -> None:
        self.errors: list[str] = []
        self.type_errors: list[str] = []
        self.unit = unit

    def check(self, shape: Shape, value: Any, path: str) -> None:
        kind = shape.type_name
        if isinstance(shape, StructureShape):
            self._structure(shape, value, path)
        elif isinstance(shape, ListShape):
            self._list(shape, value, path)
        elif isinstance(shape, MapShape):
            self._map(shape, value, path)
        elif kind == "string":
            self._string(shape, value, path)
        elif kind in ("integer", "long"):
            self._integer(shape, value, path)
        elif kind in ("float", "double"):
            self._number(shape, value, path, "Double")
        elif kind == "boolean":
            if not isinstance(value, bool):
                self._wrong_type(value, path, "Boolean")
        elif kind == "timestamp":
            # JSON 1.1 timestamps travel as epoch seconds; botocore sends numbers.
            self._number(shape, value, path, "Timestamp")
        elif kind == "blob" and not isinstance(value, str):
            self._wrong_type(value, path, "Blob (base64 string)")

    def _wrong_type(self, value: Any, path: str, expected: str) -> None:
        where = path or "the request body"
        self.type_errors.append(
            f"Expected {expected} at '{where}' but got {type(value).__name__} {render(value)}; "
            "the body must match the operation's input shape"
        )

    def _structure(self, shape: StructureShape, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            self._wrong_type(value, path, f"structure {shape.name}")
            return
        members = shape.members
        for name in shape.required_members:
            if value.get(name) is None:
                self.errors.append(
                    constraint_error(None, _join(path, name), "Member must not be null")
                )
        for name, item in value.items():
            member_path = _join(path, name)
            if name not in members:
                known = ", ".join(members)
                self.errors.append(
                    constraint_error(
                        item,
                        member_path,
                        f"Member must be one of the {shape.name} members [{known}]",
                    )
                )
            elif item is not None:
                self.check(members[name], item, member_path)

    def _size(self, shape: Shape, value: Any, path: str) -> None:
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        size = measure(value, self.unit) if isinstance(value, str) else len(value)
        if low is not None and size < low:
            self.errors.append(
                constraint_error(
                    value, path, f"Member must have length greater than or equal to {low}", shape
                )
            )
        if high is not None and size > high:
            self.errors.append(
                constraint_error(
                    value, path, f"Member must have length less than or equal to {high}", shape
                )
            )

    def _list(self, shape: ListShape, value: Any, path: str) -> None:
        if not isinstance(value, list):
            self._wrong_type(value, path, f"list {shape.name}")
            return
        self._size(shape, value, path)
        member = shape.member
        for index, item in enumerate(value, start=1):
            self.check(member, item, f"{path}.{index}.member")

    def _map(self, shape: MapShape, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            self._wrong_type(value, path, f"map {shape.name}")
            return
        self._size(shape, value, path)
        key_shape, value_shape = shape.key, shape.value
        for key, item in value.items():
            keys = _Validator(self.unit)
            keys.check(key_shape, key, path)
            self.type_errors.extend(keys.type_errors)
            if keys.errors:
                reasons = ", ".join(error.partition(_CONSTRAINT)[2] for error in keys.errors)
                self.errors.append(
                    f"Value {render(key)} at '{path}'{_CONSTRAINT}"
                    f"Map keys must satisfy constraint: [{reasons}]"
                )
            # Coral prints a bad map value as a constraint on the whole map; naming the entry
            # in the path tells the reader which one is wrong.
            self.check(value_shape, item, f"{path}.{key}")

    def _string(self, shape: Shape, value: Any, path: str) -> None:
        if not isinstance(value, str):
            self._wrong_type(value, path, "String")
            return
        enum = shape.enum if isinstance(shape, StringShape) else []
        if enum and value not in enum:
            self.errors.append(
                constraint_error(
                    value, path, f"Member must satisfy enum value set: [{', '.join(enum)}]", shape
                )
            )
            return
        self._size(shape, value, path)
        pattern = shape.metadata.get("pattern")
        compiled = _pattern(pattern) if pattern else None
        if compiled is not None and compiled.fullmatch(value) is None:
            self.errors.append(
                constraint_error(
                    value, path, f"Member must satisfy regular expression pattern: {pattern}", shape
                )
            )

    def _integer(self, shape: Shape, value: Any, path: str) -> None:
        is_int = isinstance(value, int) and not isinstance(value, bool)
        if not is_int and not (isinstance(value, float) and value.is_integer()):
            self._wrong_type(value, path, "Integer")
            return
        self._range(shape, int(value), path)

    def _number(self, shape: Shape, value: Any, path: str, expected: str) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self._wrong_type(value, path, expected)
            return
        self._range(shape, value, path)

    def _range(self, shape: Shape, value: float, path: str) -> None:
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        if low is not None and value < low:
            self.errors.append(
                constraint_error(
                    value, path, f"Member must have value greater than or equal to {low}"
                )
            )
        if high is not None and value > high:
            self.errors.append(
                constraint_error(
                    value, path, f"Member must have value less than or equal to {high}"
                )
            )
