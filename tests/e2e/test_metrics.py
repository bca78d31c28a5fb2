"""`cpworker run --metrics-port`: Prometheus metrics, /healthz and /readyz from a real worker.

A real run is scraped while it works executions through; a worker whose poller hangs on a
CodePipeline that accepts connections and never answers is seen as not live. Everything listens
on 127.0.0.1 and every process is stopped at the end.
"""

from __future__ import annotations

import re
import signal

import pytest
import requests
from botocore.exceptions import NoCredentialsError
from prometheus_client.parser import text_string_to_metric_families

from engine.metrics import API_CALLS, boto_call_counter, boto_error_counter, outcome_of_status
from tests.e2e.conftest import E2E, WorkerProcess, wait_until

pytestmark = pytest.mark.slow


def _url(worker: WorkerProcess) -> str:
    worker.wait_for_log("metrics on ")
    found = re.search(r"metrics on (http://127\.0\.0\.1:\d+)/metrics", worker.stderr)
    assert found, worker.stderr[-2000:]
    return found.group(1)


def _samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = requests.get(f"{url}/metrics", timeout=5).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
           **labels: str) -> float:
    """The sum of `name` over the samples whose labels include `labels`."""
    return sum(v for (n, ls), v in samples.items()
               if n == name and set(labels.items()) <= set(ls))


def test_a_real_run_is_scraped_for_metrics_health_and_readiness(e2e: E2E) -> None:
    executions = [e2e.start("pass"), e2e.start("pass"), e2e.start("fail")]
    worker = e2e.spawn("--metrics-port", "0", until_idle=False)
    url = _url(worker)
    wait_until("every execution ended", lambda: not e2e.unfinished(), timeout=40)
    wait_until("the ready verdict", lambda: requests.get(f"{url}/readyz", timeout=5).ok)
    health = requests.get(f"{url}/healthz", timeout=5)
    assert health.status_code == 200 and health.json() == {"ok": True, "reasons": []}
    samples = _samples(url)

    jobs = sum(len(e2e.worker_jobs(e)) for e in executions)
    assert _value(samples, "cpworker_transitions_total", event="acquired") == jobs
    assert _value(samples, "cpworker_transitions_total", event="result_reported") == 3
    assert _value(samples, "cpworker_jobs", state="succeeded") == 2
    assert _value(samples, "cpworker_jobs", state="failed") == 1
    assert _value(samples, "cpworker_effect_seconds_count", effect="submit",
                  action="ledger") == 3
    assert _value(samples, "cpworker_effect_seconds_count", effect="acknowledge") == jobs
    assert _value(samples, "cpworker_api_calls_total", service="codepipeline",
                  operation="AcknowledgeJob", outcome="ok") == jobs
    assert _value(samples, "cpworker_api_calls_total", service="codepipeline",
                  operation="PollForJobs", outcome="ok") >= 1
    assert _value(samples, "cpworker_poll_batch_jobs_sum") == jobs
    assert _value(samples, "cpworker_scheduler_lateness_seconds_count") >= jobs
    assert _value(samples, "cpworker_commit_jobs_sum") >= jobs
    assert _value(samples, "cpworker_commit_seconds_count") >= 1
    assert ("cpworker_in_flight", ()) in samples and ("cpworker_leases_held", ()) in samples
    assert requests.get(f"{url}/nothing", timeout=5).status_code == 404

    worker.signal(signal.SIGTERM)
    worker.wait(30)
    assert worker.returncode == 0, worker.stderr[-3000:]


def test_healthz_fails_when_the_poller_is_stuck(e2e: E2E, silent_codepipeline: str) -> None:
    worker = e2e.spawn("--metrics-port", "0", "--health-stale", "1.5",
                       env={"AWS_ENDPOINT_URL_CODEPIPELINE": silent_codepipeline},
                       until_idle=False)
    url = _url(worker)

    def stuck() -> bool:
        answer = requests.get(f"{url}/healthz", timeout=5)
        return answer.status_code == 503 and any(
            r.startswith("poller:") for r in answer.json()["reasons"])

    wait_until("/healthz to see the stuck poller", stuck, timeout=15)
    reasons = requests.get(f"{url}/healthz", timeout=5).json()["reasons"]
    assert not any(r.startswith("scheduler") for r in reasons), reasons  # it still turns
    ready = requests.get(f"{url}/readyz", timeout=5)
    assert ready.status_code == 503
    assert "CodePipeline: not polled yet" in ready.json()["reasons"]
    worker.kill()


def test_call_outcomes_say_throttled_refused_and_unreachable() -> None:
    class Response:
        status_code = 400

    def count(outcome: str) -> float:
        return float(API_CALLS.labels("codepipeline", "PollForJobs", outcome)._value.get())

    before = {o: count(o) for o in ("throttled", "refused", "unreachable", "no_credentials")}
    handler = boto_call_counter("codepipeline")
    handler(http_response=Response(), parsed={"Error": {"Code": "ThrottlingException"}},
            event_name="after-call.codepipeline.PollForJobs")
    handler(http_response=Response(), parsed={"Error": {"Code": "ValidationException"}},
            event_name="after-call.codepipeline.PollForJobs")
    errors = boto_error_counter("codepipeline")
    errors(exception=ConnectionError("refused"), event_name="after-call-error.codepipeline."
           "PollForJobs")
    errors(exception=NoCredentialsError(), event_name="after-call-error.codepipeline.PollForJobs")
    assert {o: count(o) - before[o] for o in before} == {
        "throttled": 1, "refused": 1, "unreachable": 1, "no_credentials": 1}
    assert [outcome_of_status(s) for s in (200, 404, 429, 503, None)] == [
        "ok", "refused", "throttled", "server_error", "unreachable"]
