"""What a worker counts, in Prometheus' terms (prometheus_client), for `--metrics-port`.

One registry per process (METRICS), so that an action's own calls are counted beside the
engine's with one line (`record_call("travis", "POST /requests", "ok")`) and a scrape sees
them together. Gauges that describe a worker's present (in flight, leases held, jobs by state)
are read when scraped, from the worker that is running, never kept up to date on every step.

Names follow Prometheus' conventions: a `cpworker_` prefix, `_total` for counters, base units
(seconds), labels with few values (effect, action, operation, outcome; never a job id).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

METRICS = CollectorRegistry(auto_describe=True)
"""The process's registry; `cpworker run --metrics-port` serves it."""

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    120.0)
"""Seconds: from a local commit to an external call that waits out its timeout."""

TRANSITIONS = Counter("cpworker_transitions", "Events appended to the log, by event type",
                      ["event"], registry=METRICS)
EFFECT_SECONDS = Histogram("cpworker_effect_seconds",
                           "How long an effect took, by effect, action and outcome",
                           ["effect", "action", "outcome"], buckets=_LATENCY_BUCKETS,
                           registry=METRICS)
API_CALLS = Counter("cpworker_api_calls",
                    "Calls to CodePipeline and to the actions' services, by service, operation "
                    "and outcome (ok, throttled, refused, server_error, unreachable)",
                    ["service", "operation", "outcome"], registry=METRICS)
POLL_BATCH = Histogram("cpworker_poll_batch_jobs", "Jobs returned by one PollForJobs",
                       buckets=(0, 1, 2, 5, 10, 25, 50, 100), registry=METRICS)
LATENESS = Histogram("cpworker_scheduler_lateness_seconds",
                     "From a machine's due time to the start of its effect",
                     buckets=_LATENCY_BUCKETS, registry=METRICS)
COMMIT_JOBS = Histogram("cpworker_commit_jobs", "Jobs written by one commit (group commit)",
                        buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000), registry=METRICS)
COMMIT_SECONDS = Histogram("cpworker_commit_seconds", "How long one commit took",
                           buckets=_LATENCY_BUCKETS, registry=METRICS)
RETRIES = Counter("cpworker_retries", "Effects that failed and were scheduled again, by effect",
                  ["effect"], registry=METRICS)
LOOP_ERRORS = Counter("cpworker_loop_errors",
                      "Rounds of a loop that failed (and were retried), by loop",
                      ["loop"], registry=METRICS)
EVENTS = Counter("cpworker_events",
                 "Messages of the CodePipeline events queue (engine.events), by what became of "
                 "them (received, deleted, malformed, foreign, started, ended, kept, errors)",
                 ["outcome"], registry=METRICS)


_children: dict[tuple[object, tuple[str, ...]], Any] = {}


def child(metric: Counter | Histogram, *labels: str) -> Any:
    """`metric.labels(*labels)`, remembered: the hot path (a commit's transitions, every
    effect) pays a dictionary look-up instead of the client's validation and lock."""
    key = (metric, labels)
    found = _children.get(key)
    if found is None:
        found = _children[key] = metric.labels(*labels)
    return found


def record_call(service: str, operation: str, outcome: str) -> None:
    """Count one call to a service; for actions as for the engine. Keep `operation` a name of
    the API's (a method and a path template), never a URL with ids in it."""
    child(API_CALLS, service, operation, outcome).inc()


def outcome_of_status(status: int | None, throttled: bool = False) -> str:
    """The outcome label for an HTTP answer (None: no answer at all)."""
    if status is None:
        return "unreachable"
    if throttled or status == 429:
        return "throttled"
    if status >= 500:
        return "server_error"
    if status >= 400:
        return "refused"
    return "ok"


class WorkerGauges(Collector):
    """The present of one running worker, read at scrape time.

    `jobs_by_state` is a query, so it is cached for `cache_for` seconds: a scraper polling
    every second must not become the database's main load.
    """

    def __init__(self, in_flight: Callable[[], int], leases_held: Callable[[], int],
                 jobs_by_state: Callable[[], Mapping[str, int]],
                 cache_for: float = 10.0) -> None:
        self._in_flight = in_flight
        self._leases_held = leases_held
        self._jobs_by_state = jobs_by_state
        self._cache_for = cache_for
        self._cached: tuple[float, Mapping[str, int]] | None = None
        self._lock = threading.Lock()

    def describe(self) -> Iterable[Metric]:
        return []  # read only when scraped: describing must not query the database

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily("cpworker_in_flight",
                                "Jobs whose effect is running or queued in this worker",
                                value=self._in_flight())
        yield GaugeMetricFamily("cpworker_leases_held",
                                "Jobs this worker holds a lease on", value=self._leases_held())
        states = GaugeMetricFamily("cpworker_jobs", "Jobs in the state database, by state",
                                   labels=["state"])
        for state, count in sorted(self._states().items()):
            states.add_metric([state], count)
        yield states

    def _states(self) -> Mapping[str, int]:
        with self._lock:
            # A monotonic timer for a cache, not the worker's clock: nothing is decided by it.
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] > self._cache_for:
                try:
                    self._cached = (now, dict(self._jobs_by_state()))
                except Exception:  # a scrape must answer while the database is away
                    return {} if self._cached is None else self._cached[1]
            return self._cached[1]


def _operation(event_name: str) -> str:
    """'after-call.codepipeline.PollForJobs' -> 'PollForJobs'."""
    return event_name.rsplit(".", 1)[-1] if event_name.count(".") >= 2 else "unknown"


def boto_call_counter(service: str) -> Callable[..., Any]:
    """A botocore `after-call` handler counting each API call by operation and outcome."""

    def count(http_response: Any = None, parsed: Any = None, event_name: str = "",
              **_: Any) -> None:
        status = getattr(http_response, "status_code", None)
        code = ""
        if isinstance(parsed, Mapping):
            error = parsed.get("Error")
            code = str(error.get("Code", "")) if isinstance(error, Mapping) else ""
        throttled = "Throttl" in code or code in ("RequestLimitExceeded", "TooManyRequests")
        record_call(service, _operation(event_name), outcome_of_status(status, throttled))

    return count


def boto_error_counter(service: str) -> Callable[..., Any]:
    """A botocore `after-call-error` handler: a call that got no answer (network, timeout) or
    could not be made (no credentials)."""

    def count(exception: BaseException | None = None, event_name: str = "", **_: Any) -> None:
        name = type(exception).__name__ if exception is not None else ""
        outcome = "no_credentials" if "Credential" in name else "unreachable"
        record_call(service, _operation(event_name), outcome)

    return count
