"""CodePipeline's limits, measured as the service measures them: numbers from botocore's own
model, units the conservative reading of each (engine.limits explains which and why)."""

from __future__ import annotations

import json

import botocore.session
import pytest

from engine import limits
from engine.limits import Unit

EMOJI = "\U0001f600"
"""One code point, two UTF-16 code units, four UTF-8 bytes."""


def model_max(shape: str) -> int:
    model = botocore.session.get_session().get_service_model("codepipeline")
    return int(model.shape_for(shape).metadata["max"])


@pytest.mark.parametrize(("limit", "shape"), [
    (limits.SUMMARY, "ExecutionSummary"),
    (limits.EXTERNAL_ID, "ExecutionId"),
    (limits.FAILURE_MESSAGE, "Message"),
    (limits.CONTINUATION_TOKEN, "ContinuationToken"),
])
def test_every_length_is_the_models_own(limit: limits.Limit, shape: str) -> None:
    assert limit.maximum == model_max(shape)
    assert limit.unit is Unit.UTF16  # never fewer than code points: fits either reading


def test_the_output_variables_quota_is_in_bytes() -> None:
    assert (limits.OUTPUT_VARIABLES.maximum, limits.OUTPUT_VARIABLES.unit) == (122_880,
                                                                              Unit.UTF8)


def test_one_text_three_sizes() -> None:
    text = f"a\u00e9\u20ac{EMOJI}"
    assert [limits.measure(text, unit) for unit in Unit] == [4, 5, 10]
    assert limits.measure("\ud800", Unit.UTF16) == 1  # a lone surrogate, as JSON may carry
    assert limits.measure("\ud800", Unit.UTF8) == 3


@pytest.mark.parametrize("unit", list(Unit))
def test_a_text_is_cut_inside_its_limit_on_a_character_boundary(unit: Unit) -> None:
    text = (f"{EMOJI}\u00e9x" * 1000)
    cut = limits.fit_text(text, 2048, unit)
    assert limits.measure(cut, unit) <= 2048
    assert cut.endswith(limits.CUT_MARKER)
    assert text.startswith(cut[: -len(limits.CUT_MARKER)])
    assert limits.measure(cut, unit) > 2048 - 4 - len(limits.CUT_MARKER)  # nothing wasted
    assert limits.fit_text("short", 2048, unit) == "short"


def test_a_3000_character_emoji_summary_fits_in_utf16_units() -> None:
    details = {"external_id": "b-1", "summary": EMOJI * 3000, "percent": 140}
    fitted, notes = limits.fit_details(details)
    assert fitted is not None
    assert limits.measure(fitted["summary"], Unit.UTF16) <= 2048
    assert len(fitted["summary"]) < 1030  # an emoji takes two of the 2048 units
    assert fitted["percent"] == 100 and fitted["external_id"] == "b-1"
    assert notes == ["summary cut from 6,000 to 2,048 UTF-16 code units "
                     "(executionDetails.summary)", "percent 140 clamped to 0-100"]
    strict, strict_notes = limits.fit_details(fitted, Unit.UTF8)
    assert strict is not None and limits.measure(strict["summary"], Unit.UTF8) <= 2048
    assert strict_notes and "UTF-8 bytes" in strict_notes[0]


def test_200_kb_of_output_variables_are_cut_to_the_quota_largest_first() -> None:
    variables = {f"Small{i}": "x" * 100 for i in range(50)}
    variables.update({"Big": "y" * 150_000, "Medium": "\u00e9" * 25_000, "bad key!": "z"})
    assert limits.output_variables_size(variables) > 200_000
    kept, notes = limits.fit_output_variables(variables)
    assert "Big" not in kept and "bad key!" not in kept
    assert "Medium" in kept and all(f"Small{i}" in kept for i in range(50))
    sent = json.dumps(kept, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    assert len(sent) == limits.output_variables_size(kept) <= 122_880
    assert len(notes) == 2
    assert "bad key!" in notes[0] and "[A-Za-z0-9@-_]+" in notes[0]
    assert "Big" in notes[1] and "122,880 UTF-8 bytes" in notes[1]


def test_variables_within_the_quota_are_kept_as_they_are() -> None:
    variables = {"RunId": "r-1", "Url": "https://ci.example/r-1"}
    assert limits.fit_output_variables(variables) == (variables, [])


def test_a_refusal_is_quoted_short() -> None:
    coral = f"1 validation error detected: Value '{EMOJI * 3000}' at 'executionDetails.summary'"
    quoted = limits.fit_refusal(coral)
    assert limits.measure(quoted, Unit.UTF16) <= limits.REFUSAL_SHOWN
    assert quoted.startswith("1 validation error detected")
