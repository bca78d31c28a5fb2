"""Secrets never rest.

Secret configuration properties and artifact credentials arrive with every job (CodePipeline
sends them in plain text). They are split off before anything is persisted, kept in a bounded
in-memory vault, scrubbed from every log line and error text, and fetched again with
GetJobDetails after a restart or when they may have expired.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from engine.action import ArtifactCredentials

REDACTED = "****"
"""What a secret value is replaced with, as CodePipeline itself shows secrets in its console."""

_MIN_SCRUB_LENGTH = 4
"""Shorter values would turn ordinary words into asterisks; such secrets are not secrets."""


def redact_configuration(
    configuration: Mapping[str, str], secret_names: Iterable[str]
) -> dict[str, str]:
    secret = set(secret_names)
    return {k: (REDACTED if k in secret else v) for k, v in configuration.items()}


@dataclass
class JobSecrets:
    configuration: Mapping[str, str] = field(repr=False)
    credentials: ArtifactCredentials | None = field(repr=False)
    fetched_at: float


class SecretVault:
    """Secrets of recently active jobs, in memory only, bounded (LRU) so 100,000 jobs in flight
    cost a few hundred entries, not 100,000: a miss is one GetJobDetails call."""

    def __init__(self, capacity: int = 512, max_age: float = 600.0) -> None:
        self._capacity = capacity
        self._max_age = max_age
        self._entries: OrderedDict[str, JobSecrets] = OrderedDict()
        self._known: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def put(
        self,
        job_id: str,
        configuration: Mapping[str, str],
        secret_names: Iterable[str],
        credentials: ArtifactCredentials | None,
        now: float,
    ) -> None:
        names = set(secret_names)
        with self._lock:
            self._entries[job_id] = JobSecrets(dict(configuration), credentials, now)
            self._entries.move_to_end(job_id)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)
            values = [v for k, v in configuration.items() if k in names]
            if credentials is not None:
                values += [credentials.secret_access_key, credentials.session_token,
                           credentials.access_key_id]
            for value in values:
                if value and len(value) >= _MIN_SCRUB_LENGTH:
                    self._known[value] = None
                    self._known.move_to_end(value)
            while len(self._known) > self._capacity * 8:
                self._known.popitem(last=False)

    def get(self, job_id: str, now: float) -> JobSecrets | None:
        """The job's secrets if held and not older than max_age (credentials expire)."""
        with self._lock:
            entry = self._entries.get(job_id)
            if entry is None:
                return None
            if now - entry.fetched_at > self._max_age:
                del self._entries[job_id]
                return None
            self._entries.move_to_end(job_id)
            return entry

    def forget(self, job_id: str) -> None:
        with self._lock:
            self._entries.pop(job_id, None)

    def scrub(self, text: str) -> str:
        """`text` with every secret this process has seen replaced by ****."""
        with self._lock:
            values = list(self._known)
        for value in values:
            if value in text:
                text = text.replace(value, REDACTED)
        return text

    def __len__(self) -> int:
        return len(self._entries)


class ScrubbingFilter(logging.Filter):
    """A logging filter that scrubs known secrets from every record before a handler sees it."""

    def __init__(self, vault: SecretVault) -> None:
        super().__init__()
        self._vault = vault

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = self._vault.scrub(message)
        if scrubbed != message:
            record.msg = scrubbed
            record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            text = self._vault.scrub(str(record.exc_info[1]))
            if text != str(record.exc_info[1]):
                record.exc_info = None
                record.msg = f"{record.msg} [exception: {text}]"
        return True
