"""The HTTP plumbing both emulators share: a threaded loopback server, requests, responses, faults.

Each emulator is a plain function from Request to Response; this module only moves bytes, so the
protocol logic can be read (and called) without a socket in sight.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import socket
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
"""Emulators listen on loopback unless told otherwise: they hand out secrets by design."""


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    """Header names lower-cased."""
    body: bytes
    declared_length: int | None = None
    """The Content-Length the client sent, if any."""

    @property
    def incomplete(self) -> bool:
        """The body ended (the client closed its side, or stalled past BODY_TIMEOUT) before
        the bytes its Content-Length announced had arrived."""
        return self.declared_length is not None and len(self.body) < self.declared_length

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def json(self) -> Any:
        """The body as JSON; raises ValueError when it is not, or when it is incomplete (a
        truncated body is never read as a shorter one, nor as `{}`)."""
        if self.incomplete:
            raise ValueError(f"the body ended after {len(self.body)} of the "
                             f"{self.declared_length} bytes its Content-Length announced")
        if not self.body:
            return {}
        return json.loads(self.body.decode("utf-8"))


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    """No answer at all: the server resets the connection instead of sending this response."""
    stream: Iterable[bytes] | None = None
    """A body sent chunk by chunk instead of `body` (a large S3 object is never held whole);
    its Content-Length is then in `headers`, and a HEAD answer sends only that."""

    @classmethod
    def dropped(cls) -> Response:
        """The connection is reset without an answer: what a client sees when the answer is lost
        on the way back, or when the service cannot be reached at all."""
        return cls(0, drop=True)

    @classmethod
    def json(
        cls,
        status: int,
        payload: Any,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        all_headers = {"Content-Type": content_type, **(headers or {})}
        return cls(status, json.dumps(payload).encode("utf-8"), all_headers)

    @classmethod
    def text(cls, status: int, text: str, headers: Mapping[str, str] | None = None) -> Response:
        all_headers = {"Content-Type": "text/plain; charset=utf-8", **(headers or {})}
        return cls(status, text.encode("utf-8"), all_headers)


App = Callable[[Request], Response]

BODY_TIMEOUT = 10.0
"""Seconds a request's body may take to arrive once its headers have: a client that announced
more bytes than it sends is answered (and its connection closed) after that, instead of holding
a server thread for ever."""


def incomplete_response(request: Request) -> Response:
    """The default answer to a body shorter than its Content-Length, for an app that has no
    `incomplete_body(request)` of its own: 400 and the connection closed (see _Handler)."""
    return Response.text(400, f"Bad Request: the body ended after {len(request.body)} of the "
                              f"{request.declared_length} bytes its Content-Length announced\n")


OUTAGE_MODES = ("unreachable", "unavailable")
"""How a service in an outage refuses every call.

- "unreachable": the connection is reset without an answer. It is what a client sees when the
  network path or the service's front end is gone (a partition, a dead load balancer, DNS
  pointing nowhere): the request may leave the client, nothing comes back. It is the default
  because it is the harder case for a client (a connection error, not an HTTP status it can
  classify) and the one the other faults never produce on every call.
- "unavailable": HTTP 503 in the service's own error shape, as when the front end is up but the
  service behind it is not (AWS's ServiceUnavailableException, a Travis maintenance page).

Either way the service does nothing: a call refused by an outage is never carried out.
"""


class Faults:
    """Seeded fault injection: a share of calls throttled, failed or answered into the void,
    added latency, and an outage switch.

    Per call, one draw decides, in this order of the rates: throttled, failed with a server
    error (nothing done), or *lost* (the call is carried out, then its answer is lost: the
    connection is reset, as when a response goes missing after the service acted). Past a
    total of 1, later rates are cut. The draw sequence depends only on the seed and the order of
    calls, so a test that sends its calls one at a time sees the same faults on every run. An
    outage (see OUTAGE_MODES) refuses every call until it is switched off, without drawing, so
    the seeded sequence resumes where it was.
    """

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self.seed = seed
        self.throttle_rate = 0.0
        self.error_rate = 0.0
        self.lost_rate = 0.0
        self.latency = 0.0
        self.outage: str | None = None
        """None, or the OUTAGE_MODES entry every call is refused with."""
        self.refused = 0
        """Calls refused by outages so far (the service never saw them, so they are not among
        the emulator's call counts)."""
        self.injected: Counter[str] = Counter()
        """Faults drawn so far, by kind ('throttle', 'error', 'lost')."""

    def configure(
        self,
        *,
        throttle_rate: float | None = None,
        error_rate: float | None = None,
        lost_rate: float | None = None,
        latency: float | None = None,
        outage: str | bool | None = None,
        seed: int | None = None,
    ) -> None:
        """Change what is injected from now on; a new seed restarts the draw sequence.

        `outage`: True or "unreachable", "unavailable", or False to end it; None leaves it as is.
        """
        for name, value in (("throttle_rate", throttle_rate), ("error_rate", error_rate),
                            ("lost_rate", lost_rate)):
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, not {value}")
        if latency is not None and latency < 0:
            raise ValueError(f"latency must be >= 0 seconds, not {latency}")
        mode = _outage_mode(outage)
        with self._lock:
            if throttle_rate is not None:
                self.throttle_rate = throttle_rate
            if error_rate is not None:
                self.error_rate = error_rate
            if lost_rate is not None:
                self.lost_rate = lost_rate
            if latency is not None:
                self.latency = latency
            if outage is not None:
                self.outage = mode
            if seed is not None:
                self.seed = seed
                self._rng = random.Random(seed)

    def clear(self, seed: int) -> None:
        """No faults, no outage, and the draw sequence of `seed` from its start."""
        self.configure(throttle_rate=0.0, error_rate=0.0, lost_rate=0.0, latency=0.0,
                       outage=False, seed=seed)
        with self._lock:
            self.refused = 0
            self.injected.clear()

    def in_outage(self) -> str | None:
        """The outage mode if the next call is to be refused (and counted as refused)."""
        with self._lock:
            if self.outage is not None:
                self.refused += 1
            return self.outage

    def draw(self) -> str | None:
        """'throttle', 'error', 'lost' or None for the next call."""
        with self._lock:
            if self.throttle_rate == 0.0 and self.error_rate == 0.0 and self.lost_rate == 0.0:
                return None
            roll = self._rng.random()
            fault = None
            if roll < self.throttle_rate:
                fault = "throttle"
            elif roll < self.throttle_rate + self.error_rate:
                fault = "error"
            elif roll < self.throttle_rate + self.error_rate + self.lost_rate:
                fault = "lost"
            if fault is not None:
                self.injected[fault] += 1
            return fault

    def as_dict(self) -> dict[str, Any]:
        """The settings (what configure() takes)."""
        with self._lock:
            return {
                "seed": self.seed,
                "throttle_rate": self.throttle_rate,
                "error_rate": self.error_rate,
                "lost_rate": self.lost_rate,
                "latency": self.latency,
                "outage": self.outage,
            }

    def counts(self) -> dict[str, int]:
        """What was injected so far: faults drawn by kind, and calls refused by outages."""
        with self._lock:
            return {"throttle": self.injected["throttle"], "error": self.injected["error"],
                    "lost": self.injected["lost"], "refused": self.refused}

    def configure_from(self, payload: Mapping[str, Any]) -> None:
        """configure() from an admin request body, rejecting unknown keys loudly.

        "outage" takes true, false, null (off), "unreachable" or "unavailable".
        """
        known = {"throttle_rate", "error_rate", "lost_rate", "latency", "outage", "seed"}
        unknown = set(payload) - known
        if unknown:
            raise ValueError(f"unknown fault settings {sorted(unknown)}; known: {sorted(known)}")
        outage = payload.get("outage")
        if "outage" in payload and outage is None:
            outage = False
        if outage is not None and not isinstance(outage, (bool, str)):
            raise ValueError(f"outage must be true, false, null or one of {list(OUTAGE_MODES)}, "
                             f"not {outage!r}")
        self.configure(
            throttle_rate=_opt_float(payload.get("throttle_rate")),
            error_rate=_opt_float(payload.get("error_rate")),
            lost_rate=_opt_float(payload.get("lost_rate")),
            latency=_opt_float(payload.get("latency")),
            outage=outage,
            seed=None if payload.get("seed") is None else int(payload["seed"]),
        )


def _outage_mode(outage: str | bool | None) -> str | None:
    """The mode an `outage` setting stands for (None: off, or not given)."""
    if outage is None or outage is False:
        return None
    if outage is True:
        return OUTAGE_MODES[0]
    if outage not in OUTAGE_MODES:
        raise ValueError(f"outage must be one of {list(OUTAGE_MODES)} (or true/false), "
                         f"not {outage!r}")
    return outage


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    """Headers and body go out in two writes; with Nagle and delayed ACKs each call took 40 ms."""
    server: _Server

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        declared = self._declared_length()
        body = self._read_body(declared) if declared else b""
        request = Request(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            declared_length=declared,
        )
        try:
            if request.incomplete:
                # RFC 9112 section 6.3: a body that ends (the client closes, or the recipient
                # times out) before Content-Length octets arrived is an incomplete message, and
                # the recipient must close the connection. It is never handed to the app as a
                # shorter body; the app may word the refusal as its service would.
                self.close_connection = True
                answer = getattr(self.server.app, "incomplete_body", None)
                response = answer(request) if callable(answer) else incomplete_response(request)
                response.headers["Connection"] = "close"
                log.info("refused %s %s: %d of %d body bytes arrived", self.command, parts.path,
                         len(body), declared)
            else:
                response = self.server.app(request)
        except Exception:  # an emulator bug must not kill the server thread
            log.exception("emulator failed on %s %s", self.command, self.path)
            response = Response.text(500, "emulator error")
        if response.drop:
            self._reset()
            return
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.stream is None:
            self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if response.stream is not None:
            try:
                for chunk in response.stream if self.command != "HEAD" else ():
                    self.wfile.write(chunk)
            finally:
                close = getattr(response.stream, "close", None)
                if callable(close):
                    close()
        elif self.command != "HEAD":
            self.wfile.write(response.body)

    def _declared_length(self) -> int | None:
        value = self.headers.get("Content-Length")
        if value is None:
            return None
        try:
            return max(0, int(value))
        except ValueError:
            return None

    def _read_body(self, length: int) -> bytes:
        """Up to `length` bytes, fewer if the client closes its side or stalls for
        BODY_TIMEOUT seconds (then the connection is not reused: see _serve)."""
        chunks: list[bytes] = []
        got = 0
        self.connection.settimeout(BODY_TIMEOUT)
        try:
            while got < length:
                chunk = self.rfile.read1(length - got)
                if not chunk:
                    break
                chunks.append(chunk)
                got += len(chunk)
        except (TimeoutError, OSError):
            pass
        finally:
            with contextlib.suppress(OSError):
                self.connection.settimeout(None)
        return b"".join(chunks)

    def _reset(self) -> None:
        """Close the connection with a TCP reset and no answer (SO_LINGER 0 aborts the socket)."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-call (a killed worker) is normal here, not a traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionResetError, BrokenPipeError, TimeoutError)):
            log.debug("client %s went away: %s", client_address, error)
            return
        super().handle_error(request, client_address)

    def __init__(self, address: tuple[str, int], app: App) -> None:
        self.app = app
        super().__init__(address, _Handler)


class EmulatorServer:
    """Serves an App over HTTP from a background thread until stop()."""

    def __init__(self, app: App, host: str = DEFAULT_HOST, port: int = 0) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> EmulatorServer:
        if self._server is not None:
            return self
        self._server = _Server((self._host, self._port), self._app)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"emulator:{self.port}", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the emulator server is not started; call start() first")
        return int(self._server.server_address[1])

    @property
    def address(self) -> str:
        """Where it listens, or was asked to: host:port."""
        port = self.port if self._server is not None else self._port
        return f"{self._host}:{port}"

    @property
    def url(self) -> str:
        host = self._host if ":" not in self._host else f"[{self._host}]"
        return f"http://{host}:{self.port}"

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def real_sleep(seconds: float) -> None:
    """Added latency is wall time on the wire, not emulated time, so it never moves a fake clock."""
    if seconds > 0:
        time.sleep(seconds)
