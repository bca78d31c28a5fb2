"""CodePipeline's limits, each measured the way the service measures it, in one place.

Nothing else in the engine measures a text with len(): a limit is a `Limit` here, with its unit
and its source, and a field is fitted with `Limit.fit`.

Units (PROTOCOL A4; the numbers are botocore's CodePipeline model, tests/engine/test_limits.py
checks them against it):

- The model's string lengths (summary 2048, externalExecutionId 1500, failure message 5000,
  continuation token 2048) are lengths of characters, but which characters is NOT FOUND for
  CodePipeline: Smithy's `length` trait counts Unicode code points, a Java service's
  String.length() counts UTF-16 code units. UTF-16 units are never fewer than code points (an
  emoji is one code point, two units), so a text that fits in UTF-16 units fits under either
  reading: that is the unit used here (conservative).
- If the service turned out to count UTF-8 bytes instead, a report fitted in UTF-16 units is
  refused with ValidationException; the report is then fitted again in UTF-8 bytes (never fewer
  than UTF-16 units) before anything is dropped (engine.decide, report_degraded).
- Output variables: 122,880 bytes for all of an action's variables together [UG-LIM]. Bytes of
  what exactly (keys and values, or the map as stored) is NOT FOUND: they are measured as the
  UTF-8 bytes of the JSON object as sent (quotes, colons and commas included), which is more
  than keys plus values in any encoding the service might count (conservative).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

CUT_MARKER = " [...cut]"
"""Appended to a text that was cut, so a reader knows it was (ASCII: 9 units in every unit)."""


class Unit(str, Enum):
    CODE_POINTS = "code points"
    UTF16 = "UTF-16 code units"
    UTF8 = "UTF-8 bytes"


def measure(text: str, unit: Unit) -> int:
    """The size of `text` in `unit` (a lone surrogate, which JSON can carry, counts as one unit
    and three bytes, as Java and a UTF-8 encoder that passes it would count it)."""
    if unit is Unit.CODE_POINTS:
        return len(text)
    if text.isascii():
        return len(text)
    if unit is Unit.UTF16:
        return len(text.encode("utf-16-le", "surrogatepass")) // 2
    return len(text.encode("utf-8", "surrogatepass"))


def _char_size(char: str, unit: Unit) -> int:
    code = ord(char)
    if unit is Unit.CODE_POINTS or code < 0x80:
        return 1
    if unit is Unit.UTF16:
        return 2 if code > 0xFFFF else 1
    return 2 if code < 0x800 else 3 if code <= 0xFFFF else 4


def fit_text(text: str, maximum: int, unit: Unit, marker: str = CUT_MARKER) -> str:
    """`text` within `maximum` `unit`s, cut at a character boundary (never inside a surrogate
    pair or a UTF-8 sequence) and ending in `marker` when it was cut."""
    if measure(text, unit) <= maximum:
        return text
    budget = maximum - measure(marker, unit)
    if budget <= 0:
        return _prefix(marker, maximum, unit)
    return _prefix(text, budget, unit) + marker


def _prefix(text: str, budget: int, unit: Unit) -> str:
    used = 0
    for index, char in enumerate(text):
        used += _char_size(char, unit)
        if used > budget:
            return text[:index]
    return text


@dataclass(frozen=True)
class Limit:
    """One field's maximum, in the unit the service is taken to count it in."""

    field: str
    """The field as CodePipeline's API names it (what a ValidationException would name)."""
    maximum: int
    unit: Unit
    source: str

    def measure(self, text: str) -> int:
        return measure(text, self.unit)

    def fits(self, text: str) -> bool:
        return measure(text, self.unit) <= self.maximum

    def fit(self, text: str, unit: Unit | None = None) -> str:
        """`text` cut to this limit (in `unit` instead when given: the stricter measure)."""
        return fit_text(text, self.maximum, unit or self.unit)

    def describe(self, unit: Unit | None = None) -> str:
        return f"{self.maximum:,} {(unit or self.unit).value}"


SUMMARY = Limit("executionDetails.summary", 2048, Unit.UTF16,
                "model ExecutionSummary: length 1-2048")
EXTERNAL_ID = Limit("externalExecutionId", 1500, Unit.UTF16, "model ExecutionId: length 1-1500")
FAILURE_MESSAGE = Limit("failureDetails.message", 5000, Unit.UTF16,
                        "model Message: length 1-5000")
CONTINUATION_TOKEN = Limit("continuationToken", 2048, Unit.UTF16,
                           "model ContinuationToken: length 1-2048")
OUTPUT_VARIABLES = Limit("outputVariables", 122_880, Unit.UTF8,
                         "quotas page [UG-LIM]: 122,880 bytes for all output variables of an "
                         "action; OutputVariablesSizeExceededException past it")
PERCENT_RANGE = (0, 100)
"""model Percentage: 0-100."""

REFUSAL_SHOWN = 600
"""UTF-16 units of a refusal kept in an event or a failure message: Coral's messages echo the
refused value, which may be the 3,000-character summary itself."""

_OUTPUT_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789@-_")
"""model OutputVariablesKey: pattern [A-Za-z0-9@\\-_]+."""


def valid_output_key(key: str) -> bool:
    return bool(key) and all(c in _OUTPUT_KEY_CHARS for c in key)


def _entry_bytes(key: str, value: str) -> int:
    """One variable's share of the JSON object: "key":"value" and its comma."""
    return (measure(json.dumps(key, ensure_ascii=False), Unit.UTF8)
            + measure(json.dumps(value, ensure_ascii=False), Unit.UTF8) + 2)


def output_variables_size(variables: Mapping[str, str]) -> int:
    """The UTF-8 bytes of the variables as a compact JSON object (see the module's docstring)."""
    if not variables:
        return 2
    return 1 + sum(_entry_bytes(k, v) for k, v in variables.items())


def fit_output_variables(variables: Mapping[str, Any]) -> tuple[dict[str, str], list[str]]:
    """The variables CodePipeline can take, and what was dropped and why.

    Keys outside the model's pattern are dropped; then, while the total is over the quota, the
    largest variable is dropped (fewest variables lost for the bytes saved).
    """
    kept: dict[str, str] = {}
    notes: list[str] = []
    invalid = sorted(str(k) for k in variables if not valid_output_key(str(k)))
    if invalid:
        notes.append(f"output variable(s) {_names(invalid)} dropped: a key must match "
                     "[A-Za-z0-9@-_]+")
    for key, value in variables.items():
        if valid_output_key(str(key)):
            kept[str(key)] = str(value)
    sizes = {k: _entry_bytes(k, v) for k, v in kept.items()}
    total = 1 + sum(sizes.values()) if kept else 2
    over: list[str] = []
    for key in sorted(sizes, key=lambda k: (-sizes[k], k)):
        if total <= OUTPUT_VARIABLES.maximum:
            break
        total -= sizes[key]
        del kept[key]
        over.append(key)
    if over:
        notes.append(f"output variable(s) {_names(over)} dropped: all together they passed "
                     f"CodePipeline's quota of {OUTPUT_VARIABLES.describe()}")
    return kept, notes


def _names(keys: list[str], shown: int = 5) -> str:
    named = ", ".join(fit_text(k, 60, Unit.CODE_POINTS) for k in keys[:shown])
    return named + (f" and {len(keys) - shown} more" if len(keys) > shown else "")


def fit_details(details: Mapping[str, Any] | None,
                unit: Unit | None = None) -> tuple[dict[str, Any] | None, list[str]]:
    """RunDetails (as stored: external_id, summary, percent) within executionDetails' limits,
    and a note for each field that had to change. `unit` overrides the fields' own units."""
    if not details:
        return None, []
    fitted = dict(details)
    notes: list[str] = []
    for name, limit in (("summary", SUMMARY), ("external_id", EXTERNAL_ID)):
        value = details.get(name)
        if value is None:
            continue
        text = str(value)
        cut = limit.fit(text, unit)
        if cut != text:
            notes.append(f"{name} cut from {measure(text, unit or limit.unit):,} to "
                         f"{limit.describe(unit)} ({limit.field})")
        fitted[name] = cut
    percent = details.get("percent")
    if percent is not None:
        low, high = PERCENT_RANGE
        clamped = max(low, min(high, int(percent)))
        if clamped != percent:
            notes.append(f"percent {percent} clamped to {low}-{high}")
        fitted["percent"] = clamped
    return fitted, notes


def fit_refusal(text: str) -> str:
    """A refusal's text short enough to quote in an event, a log line or a failure message."""
    return fit_text(" ".join(text.split()), REFUSAL_SHOWN, Unit.UTF16)


def ascii_only(text: str) -> str:
    """`text` with every non-ASCII character escaped (\\u00e9): the same length in any unit."""
    return text.encode("ascii", "backslashreplace").decode("ascii")
