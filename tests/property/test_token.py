"""Property 3: a continuation token never exceeds CodePipeline's 2,048 characters, whatever the run
data, and it always names the job it continues.

What engine.jobdata promises: the token carries the run (data, details, start) when all of it
fits CodePipeline's limit as engine.limits counts it (UTF-16 code units, the stricter of the two
readings), else only the job id, and a continuation then reads the run from that job's row.
"""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from engine import limits
from engine.jobdata import decode_token, encode_token, read_token
from engine.outcomes import JSON
from tests.property.strategies import DETAILS, JSON_VALUE, SHORT, TEXT

JOB_IDS = st.uuids().map(str) | st.text(
    st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=64)
"""CodePipeline's job ids are UUIDs; anything the jobs table's 64-character key holds, too."""

HUGE = st.sampled_from(["x" * 2100, "é" * 700, "😀" * 200, "\u2028" * 400, '"\\' * 600])
"""Values past the limit once JSON escapes them (ensure_ascii: \\uXXXX per character)."""

RUNS: st.SearchStrategy[dict[str, JSON]] = st.dictionaries(
    SHORT | HUGE, JSON_VALUE | HUGE | TEXT, max_size=5)
DETAILS_OR_NONE = st.none() | DETAILS | st.fixed_dictionaries(
    {"external_id": HUGE, "summary": HUGE | TEXT, "percent": st.none() | st.integers(0, 100)})
STARTED = st.none() | st.floats(0.0, 4e9, allow_nan=False)


@given(job_id=JOB_IDS, run=RUNS, details=DETAILS_OR_NONE, started=STARTED, short=st.booleans())
def test_a_token_fits_codepipeline_and_names_its_job(
    job_id: str, run: dict[str, JSON], details: dict[str, JSON] | None, started: float | None,
    short: bool,
) -> None:
    token = encode_token(job_id, run, details, started, short=short)

    assert limits.CONTINUATION_TOKEN.fits(token)
    assert limits.measure(token, limits.Unit.UTF16) <= 2048
    assert limits.CONTINUATION_TOKEN.fit(token) == token  # what report_progress sends

    payload = decode_token(token)
    assert payload is not None and payload["job"] == job_id
    read = read_token(token)
    assert read.problem is None and read.data["continues"] == job_id
    whole = json.dumps({"v": 1, "job": job_id, "run": run, "details": details,
                        "started": started}, separators=(",", ":"), sort_keys=True)
    if short or not limits.CONTINUATION_TOKEN.fits(whole):
        assert "run" not in payload and read.shortened == job_id
    else:  # nothing is shortened that fits: the run comes back as it went in
        assert (payload["run"], payload["details"], payload["started"]) == (run, details, started)
        assert read.shortened is None
        assert read.data["run"] == run and read.data["details"] == details
        assert read.data["run_started_at"] == started
