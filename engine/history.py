"""Reading histories back: the inspect timeline and the replay check.

Both read only the log (and compare with the projection); neither writes. Replay folds each
recorded history through the machine as defined today, so a change that would strand old jobs
is caught before it is deployed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from engine.errors import UnknownJob
from engine.machine import IllegalEvent, JobState, next_state, replay
from engine.projection import Event, Job, fold
from engine.store import EventStore

_SHOWN_KEYS = ("reason", "error", "attempt", "effect", "nonce", "by", "note", "message", "ok")


def iso(at: float | None) -> str | None:
    if at is None:
        return None
    return datetime.fromtimestamp(at, tz=timezone.utc).isoformat(timespec="milliseconds")


_SHOWN_OUTPUTS = 5
"""Output variables named in a timeline line; `inspect --json` has them all."""


def _seconds(value: float) -> str:
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def key_data(event: Event) -> str:
    """The few fields of an event worth a glance in a timeline."""
    data = event.data
    parts: list[str] = []
    details = data.get("details")
    if isinstance(details, Mapping):
        for name in ("external_id", "summary", "percent"):
            if details.get(name) is not None:
                parts.append(f"{name}={details[name]}")
    report = data.get("report")
    if isinstance(report, Mapping) and report.get("failure_type"):
        parts.append(f"failure={report['failure_type']}")
    variables = report.get("output_variables") if isinstance(report, Mapping) else None
    if isinstance(variables, Mapping) and variables:
        shown = [f"{name}={value}" for name, value in sorted(variables.items())[:_SHOWN_OUTPUTS]]
        more = len(variables) - _SHOWN_OUTPUTS
        parts.append("outputs " + ", ".join(shown) + (f" (+{more} more)" if more > 0 else ""))
    for name in _SHOWN_KEYS:
        if name in data and data[name] not in (None, ""):
            parts.append(f"{name}={data[name]}")
    if "due_at" in data:
        wait = float(data["due_at"]) - event.at
        parts.append(f"waits {_seconds(wait)}, until {iso(float(data['due_at']))}"
                     if wait >= 0.5 else f"next={iso(float(data['due_at']))}")
    if data.get("armed_until") is not None:
        parts.append(f"calls until {iso(float(data['armed_until']))}")
    if data.get("holder"):
        parts.append(f"waiting out {data['holder']}")
    if event.type == "acquired":
        pipeline = data.get("pipeline") or {}
        if isinstance(pipeline, Mapping) and pipeline.get("pipeline_name"):
            parts.append(f"pipeline={pipeline['pipeline_name']}")
        artifacts = pipeline.get("artifacts") if isinstance(pipeline, Mapping) else None
        inputs = artifacts.get("input") if isinstance(artifacts, Mapping) else None
        for artifact in inputs if isinstance(inputs, list) else []:
            if isinstance(artifact, Mapping) and artifact.get("revision"):
                parts.append(f"revision {artifact.get('name') or '?'}={artifact['revision']}")
        if data.get("continues"):
            parts.append(f"continues={data['continues']}")
        if data.get("problem"):
            parts.append(f"problem={data['problem']}")
    return ", ".join(parts)


def inspect_json(store: EventStore, job: Job) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "state": job.state.value,
        "action_type": job.action_type,
        "execution_id": job.execution_id,
        "external_id": job.external_id,
        "continues": job.continues,
        "continued_by": job.continued_by,
        "events": [
            {"seq": e.seq, "type": e.type, "at": iso(e.at), "data": dict(e.data),
             "worker": e.worker}
            for e in store.history(job.job_id)
        ],
        "uploads": [_upload_json(u) for u in store.uploads(job.execution_id)],
    }


def _upload_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """An uploads-ledger row for `inspect --json`: what reached S3, when, by which job."""
    return {"artifact": row["artifact"], "bucket": row["bucket"], "key": row["object_key"],
            "size": row["size"], "etag": row["etag"], "version_id": row["version_id"],
            "sha256": row["sha256"], "kms_key_id": row["kms_key_id"], "at": iso(row["at"]),
            "job_id": row["job_id"], "worker": row["worker"]}


def timeline(store: EventStore, job: Job) -> str:
    """The job's history as text; the other jobs of its action execution shown with it."""
    family = store.by_execution(job.execution_id) or [job]
    lines = [
        f"execution {job.execution_id} ({job.action_type}), "
        f"{len(family)} job(s); external run {job.external_id or '-'}",
    ]
    for member in family:
        marker = "  <- asked for" if member.job_id == job.job_id else ""
        lines.append("")
        lines.append(f"job {member.job_id}  state {member.state.value}{marker}")
        state = JobState.NEW
        worker: str | None = None
        for event in store.history(member.job_id):
            if event.worker and event.worker != worker:
                lines.append(_handover(worker, event))
                worker = event.worker
            try:
                state = next_state(state, event.type)
                after = state.value
            except IllegalEvent:
                after = "?? (not accepted by this version)"
            lines.append(f"  {iso(event.at)}  {event.seq:>3}  {event.type:<22} {after:<22} "
                         f"{key_data(event)}".rstrip())
    uploads = store.uploads(job.execution_id)
    if uploads:
        lines.append("")
        lines.append("uploaded (output artifacts, as S3 confirmed them)")
        for row in uploads:
            kms = f", kms {row['kms_key_id']}" if row["kms_key_id"] else ""
            version = f", version {row['version_id']}" if row["version_id"] else ""
            lines.append(f"  {iso(row['at'])}  {row['artifact']}: s3://{row['bucket']}/"
                         f"{row['object_key']}, {row['size']} bytes, etag {row['etag']}"
                         f"{version}{kms}, by job {row['job_id']}")
    return "\n".join(lines) + "\n"


def _handover(before: str | None, event: Event) -> str:
    """Who works the job from `event` on, and how it came to: the first worker, a takeover
    (the previous holder's lease ran out: it died or hung), or workers sharing jobs."""
    assert event.worker is not None
    if before is None:
        return f"  worked by {event.worker}"
    gone = event.data.get("took_over_from")
    if isinstance(gone, str) and gone:
        return (f"  ~~ worker {event.worker} took over from {gone}, whose lease ran out "
                "(it stopped, died or hung) ~~")
    return (f"  -- continued by worker {event.worker} (after {before}: workers share the "
            "jobs, each step by whoever claims it) --")


@dataclass
class ReplayReport:
    job_id: str
    state: str | None
    events: int
    error: str | None = None
    mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.mismatches

    def to_json(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "state": self.state, "events": self.events,
                "ok": self.ok, "error": self.error, "mismatches": self.mismatches}


_COMPARED = ("state", "last_seq", "external_id", "execution_id", "next_due_at", "continued_by",
             "attempt")


def replay_history(history: list[Event], projected: Job | None) -> ReplayReport:
    """Fold one history through the `transitions` Machine (engine.machine.replay), then rebuild
    its row with the projection and compare that with the stored row.

    The Machine is the judge of whether the history is legal: a refusal is reported with the
    state the Machine was in. The projection, which steps with the lookup compiled from the
    same Machine, must then reach the same state.
    """
    job_id = history[0].job_id if history else (projected.job_id if projected else "?")
    folded = replay((event.type for event in history), job_id)
    if folded.error is not None:
        state = None if folded.state is JobState.NEW else folded.state.value
        return ReplayReport(job_id, state, len(history), error=str(folded.error))
    rebuilt = fold(history)
    report = ReplayReport(job_id, rebuilt.state.value if rebuilt is not None else None,
                          len(history))
    if rebuilt is not None and rebuilt.state is not folded.state:
        report.mismatches.append(f"state: the machine says {folded.state.value!r}, the "
                                 f"projection's fold {rebuilt.state.value!r}")
    if projected is None:
        report.mismatches.append("the job has events but no projection row")
        return report
    if rebuilt is None:
        report.mismatches.append("the job has a projection row but no events")
        return report
    for name in _COMPARED:
        want, have = getattr(rebuilt, name), getattr(projected, name)
        if isinstance(want, float) and isinstance(have, float) and abs(want - have) < 1e-3:
            continue
        if want != have:
            shown_want = want.value if isinstance(want, JobState) else want
            shown_have = have.value if isinstance(have, JobState) else have
            report.mismatches.append(f"{name}: log says {shown_want!r}, projection has "
                                     f"{shown_have!r}")
    return report


def replay_jobs(store: EventStore, job_ids: Iterable[str] | None) -> list[ReplayReport]:
    ids = None if job_ids is None else list(job_ids)
    reports: list[ReplayReport] = []
    seen: set[str] = set()
    for history in store.histories(ids):
        job_id = history[0].job_id
        seen.add(job_id)
        reports.append(replay_history(history, store.get(job_id)))
    if ids is not None:
        for missing in set(ids) - seen:
            raise UnknownJob(f"job {missing} has no events")
    else:
        for job in store.list_jobs():
            if job.job_id not in seen:
                reports.append(replay_history([], job))
    return reports
