"""Is the worker alive, is it ready: answered over HTTP with its metrics (`--metrics-port`).

Live (`/healthz`) means each loop has completed a round recently and the state database
answered: a supervisor restarts a worker that is not (a poller stuck on a connection that never
answers, a scheduler stuck on a lock). Ready (`/readyz`) means live, started (its jobs resumed)
and not stopping, and CodePipeline answered its last poll: a rollout waits for it.

Time comes from the worker's clock; the server binds to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from engine.clock import Clock
from engine.errors import ConfigurationProblem

log = logging.getLogger(__name__)

LOOPS = ("poller", "scheduler")


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reasons: tuple[str, ...]

    def body(self) -> bytes:
        return json.dumps({"ok": self.ok, "reasons": list(self.reasons)}).encode() + b"\n"


class Health:
    """Heartbeats of the loops and of the database, judged against `stale` seconds."""

    def __init__(self, clock: Clock, stale: float) -> None:
        self.clock = clock
        self.stale = stale
        self._lock = threading.Lock()
        self._beats: dict[str, float] = {}
        self._store_ok: float | None = None
        self._store_error: str | None = None
        self._poll_ok: bool | None = None
        self._poll_error: str | None = None
        self._started = False
        self._stopping = False
        self._born = clock.now()

    def beat(self, loop: str) -> None:
        """`loop` completed a round (whatever its outcome: the loop is not stuck)."""
        with self._lock:
            self._beats[loop] = self.clock.now()

    def store_answered(self) -> None:
        with self._lock:
            self._store_ok, self._store_error = self.clock.now(), None

    def store_failed(self, error: BaseException) -> None:
        with self._lock:
            self._store_error = str(error)

    def polled(self, problem: str | None = None) -> None:
        """A poll round ended: without a problem, or with one (said for an operator)."""
        with self._lock:
            self._poll_ok = problem is None
            self._poll_error = problem

    def started(self) -> None:
        with self._lock:
            self._started = True

    def stopping(self) -> None:
        with self._lock:
            self._stopping = True

    def live(self) -> Verdict:
        now = self.clock.now()
        reasons = []
        with self._lock:
            for loop in LOOPS:
                last = self._beats.get(loop)
                since = now - (last if last is not None else self._born)
                if since > self.stale:
                    done = "no round yet" if last is None else "no round completed"
                    reasons.append(f"{loop}: {done} for {since:.0f} s (limit {self.stale:g} s)")
            since_store = now - (self._store_ok if self._store_ok is not None else self._born)
            if since_store > self.stale:
                why = f": {self._store_error}" if self._store_error else ""
                reasons.append(f"state database: no answer for {since_store:.0f} s{why}")
        return Verdict(not reasons, tuple(reasons))

    def ready(self) -> Verdict:
        alive = self.live()
        reasons = list(alive.reasons)
        with self._lock:
            if not self._started:
                reasons.append("starting: unfinished jobs are being resumed")
            if self._stopping:
                reasons.append("stopping")
            if self._poll_ok is False:
                reasons.append(f"CodePipeline: the last poll failed: {self._poll_error}")
            elif self._poll_ok is None:
                reasons.append("CodePipeline: not polled yet")
        return Verdict(not reasons, tuple(reasons))


class HealthServer:
    """/metrics, /healthz and /readyz on one port, in a thread of its own."""

    def __init__(self, health: Health, registry: CollectorRegistry, host: str, port: int) -> None:
        handler = _handler(health, registry)
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as error:
            raise ConfigurationProblem(
                f"cannot serve metrics on {host}:{port} ({error.strerror or error})",
                fix="choose a free port with --metrics-port (0: any free port)") from error
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics",
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host if isinstance(host, str) else host.decode()}:{port}"

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(health: Health, registry: CollectorRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            elif path in ("/healthz", "/readyz"):
                verdict = health.live() if path == "/healthz" else health.ready()
                self._send(200 if verdict.ok else 503, "application/json", verdict.body())
            else:
                self._send(404, "text/plain", b"try /metrics, /healthz or /readyz\n")

        def _send(self, status: int, kind: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("metrics: " + format, *args)

    return Handler
