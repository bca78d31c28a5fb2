"""The ladder of ever smaller reports, for a report CodePipeline refuses as it is (pure).

engine.decide climbs it one rung per refusal (report_degraded) until the report is taken or
nothing is left to drop; then it says the result another way (success_undeliverable,
progress_undeliverable) or gives up.
"""

from __future__ import annotations

from engine import limits
from engine.outcomes import JSON


def smaller_report(kind: str, report: dict[str, JSON], external_id: str | None,
                   refusal: str) -> tuple[dict[str, JSON], list[str]] | None:
    """The next, smaller form of a refused report and what it leaves out; None: nothing left.

    One rung per refusal, skipping rungs that would change nothing. A success or progress
    report: its texts fitted again in UTF-8 bytes, the strictest measure the service might use
    (engine.limits); its execution details dropped (the console's summary matters less than
    the output variables later actions may read); its output variables dropped; for a progress
    report the token cut to the job id. OutputVariablesSizeExceededException drops the
    variables first: the service said what it could not take. A failure report: its texts in
    UTF-8 bytes, then the message in ASCII, 1,000 characters at most, without an external id.
    """
    if kind in ("success", "progress"):
        variables = report.get("output_variables") or {}
        details = report.get("details")
        Rung = tuple[dict[str, JSON], list[str]] | None
        strict: Rung = None
        if details and not report.get("strict"):
            fitted, notes = limits.fit_details(details, limits.Unit.UTF8)
            if notes:
                strict = ({**report, "details": fitted, "strict": True},
                          ["execution details fitted in UTF-8 bytes: " + "; ".join(notes)])
        no_details: Rung = None if not details else (
            {**report, "details": None, "strict": True},
            ["its execution details (summary, external id, percent) dropped"])
        no_variables: Rung = None if not variables else (
            {**report, "output_variables": {}},
            [f"its {len(variables)} output variable(s) dropped "
             f"({limits.output_variables_size(variables):,} bytes)"])
        rungs = [strict, no_details, no_variables]
        if "OutputVariablesSizeExceededException" in refusal:
            rungs = [no_variables, strict, no_details]
        if kind == "progress" and not report.get("short_token"):
            rungs.append(({**report, "short_token": True},
                          ["the continuation token cut to the job id"]))
        return next((rung for rung in rungs if rung is not None), None)
    message = str(report.get("message") or "failed")
    external = report.get("external_id", external_id)
    if not report.get("strict"):
        strict_message = limits.FAILURE_MESSAGE.fit(message, limits.Unit.UTF8)
        strict_id = None if external is None else limits.EXTERNAL_ID.fit(str(external),
                                                                          limits.Unit.UTF8)
        if strict_message != message or strict_id != external:
            return ({**report, "message": strict_message, "external_id": strict_id,
                     "strict": True},
                    [f"the message and external id fitted in UTF-8 bytes "
                     f"({limits.FAILURE_MESSAGE.describe(limits.Unit.UTF8)})"])
    shortest = limits.fit_text(limits.ascii_only(message), _SHORTEST_MESSAGE,
                               limits.Unit.CODE_POINTS)
    if not report.get("minimal") and (shortest != message or external is not None):
        return ({**report, "message": shortest, "external_id": None, "strict": True,
                 "minimal": True},
                [f"the message in ASCII, {_SHORTEST_MESSAGE:,} characters at most, and no "
                 "external id"])
    return None


_SHORTEST_MESSAGE = 1000
"""The failure message's last form: ASCII (the same size in every unit), far inside 5,000."""
