"""Secrets never rest.

Secret configuration properties and artifact credentials arrive with every job (CodePipeline
sends them in plain text). They are split off before anything is persisted, kept in a bounded
in-memory vault, scrubbed from every outcome, log line and error text, and fetched again with
GetJobDetails after a restart or when they may have expired.

Scrubbing looks for every form a library may print a value in, not only the value itself: a
token with a newline reaches a log as `\\n` through requests' InvalidHeader (a repr), as `%0A`
in a URL, as `\\u00e9` in JSON. One index of all those forms serves every text, so the cost of
a scrub grows with the text, not with the number of secrets held.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar
from urllib.parse import quote, quote_plus

from engine import defaults
from engine.action import ArtifactCredentials
from engine.outcomes import Outcome

REDACTED = "****"
"""What a secret value is replaced with, as CodePipeline itself shows secrets in its console."""

_MIN_SCRUB_LENGTH = 4
"""Shorter values would turn ordinary words into asterisks; such secrets are not secrets."""

_PREFIX = _MIN_SCRUB_LENGTH
"""Forms are indexed by their first characters; every form is at least this long."""

_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")
"""Characters no encoding here changes (RFC 3986's unreserved): such a value has one form."""
_ESCAPED = frozenset("\\'\"")
"""Printable ASCII that repr() or JSON escape: a value without them prints as itself."""

_LONE = "backslashreplace"
"""How a lone surrogate (JSON may carry one) is encoded where a form needs bytes: no library
prints such a value as UTF-8 anyway, and the other forms still hold."""

_ORPHANS_PER_ENTRY = 8
"""Values of jobs that left the vault (evicted, expired) kept scrubbable, per unit of capacity."""


def redact_configuration(
    configuration: Mapping[str, Any], secret_names: Iterable[str]
) -> dict[str, Any]:
    secret = set(secret_names)
    return {k: (REDACTED if k in secret else v) for k, v in configuration.items()}


def forms(value: str) -> frozenset[str]:
    """Every spelling of `value` a library may print: as is, repr()/backslash-escaped (with and
    without non-ASCII escaped), JSON-escaped (ensure_ascii on and off), URL-encoded (quote with
    and without '/', quote_plus), the repr of its UTF-8 and latin-1 bytes, and a JSON string
    holding one of the escaped forms (a repr inside a JSON log or event)."""
    if _UNRESERVED.fullmatch(value):
        return frozenset((value,)) if len(value) >= _MIN_SCRUB_LENGTH else frozenset()
    if value.isascii() and value.isprintable() and not _ESCAPED.intersection(value):
        # Nothing to escape (most tokens, every AWS key): only URL-encoding can differ.
        plain = {value, quote(value), quote(value, safe=""), quote_plus(value)}
        return frozenset(f for f in plain if len(f) >= _MIN_SCRUB_LENGTH)
    found = {value, repr(value)[1:-1], ascii(value)[1:-1],
             value.encode("unicode_escape").decode("ascii"),
             json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1],
             quote(value, errors=_LONE), quote(value, safe="", errors=_LONE),
             quote_plus(value, errors=_LONE), repr(value.encode("utf-8", _LONE))[2:-1]}
    with suppress(UnicodeEncodeError):  # then http.client never gets as far as printing it
        found.add(repr(value.encode("latin-1"))[2:-1])
    for escaped in list(found):
        found.add(json.dumps(escaped)[1:-1])
    return frozenset(f for f in found if len(f) >= _MIN_SCRUB_LENGTH)


def secret_values(configuration: Mapping[str, Any], secret_names: Iterable[str],
                  credentials: ArtifactCredentials | None) -> frozenset[str]:
    """The values worth scrubbing: secret properties that are text, and the credentials."""
    names = set(secret_names)
    values = [v for k, v in configuration.items() if k in names and isinstance(v, str)]
    if credentials is not None:
        values += [credentials.secret_access_key, credentials.session_token,
                   credentials.access_key_id]
    return frozenset(v for v in values if isinstance(v, str) and len(v) >= _MIN_SCRUB_LENGTH)


@dataclass
class JobSecrets:
    configuration: Mapping[str, str] = field(repr=False)
    credentials: ArtifactCredentials | None = field(repr=False)
    fetched_at: float


@dataclass
class _Value:
    """One secret value: the jobs holding it and the forms it is scrubbed in."""

    holders: set[str]
    forms: frozenset[str]


class SecretVault:
    """Secrets of recently active jobs, in memory only, bounded (LRU) so 100,000 jobs in flight
    cost a few hundred entries, not 100,000: a miss is one GetJobDetails call.

    Memory stays flat: at most `capacity` jobs, the values they hold, and `capacity` x 8 values
    of jobs that left by eviction or age (still scrubbed: such a job may be mid-effect, and its
    next step fetches them again). forget() drops a finished job's values as soon as no other
    job holds the same value.
    """

    def __init__(self, capacity: int = defaults.SECRET_CACHE,
                 max_age: float = defaults.SECRET_MAX_AGE) -> None:
        self._capacity = max(1, capacity)
        self._max_age = max_age
        self._entries: OrderedDict[str, JobSecrets] = OrderedDict()
        self._held: dict[str, frozenset[str]] = {}
        """job id -> its values, for the jobs in _entries."""
        self._values: dict[str, _Value] = {}
        self._orphans: OrderedDict[str, None] = OrderedDict()
        """Values no job in the vault holds any more, oldest first."""
        self._forms: dict[str, int] = {}
        """Every form of every value -> how many values have it (two values may share one)."""
        self._lengths: dict[str, dict[int, int]] = {}
        self._index: dict[str, tuple[int, ...]] = {}
        """First characters of a form -> the lengths of the forms starting so, longest first.
        Rebuilt per prefix under the lock and swapped in whole, so scrub() reads it lock-free."""
        self._lock = threading.Lock()
        self.lookups = 0
        """Index lookups made by scrub(), all texts together: one per position looked at."""

    # --- holding ---------------------------------------------------------------------------------

    def put(
        self,
        job_id: str,
        configuration: Mapping[str, str],
        secret_names: Iterable[str],
        credentials: ArtifactCredentials | None,
        now: float,
    ) -> None:
        values = secret_values(configuration, secret_names, credentials)
        with self._lock:
            self._drop_entry(job_id, orphan=False)
            self._entries[job_id] = JobSecrets(dict(configuration), credentials, now)
            self._held[job_id] = values
            for value in values:
                self._hold(value, job_id)
            while len(self._entries) > self._capacity:
                oldest = next(iter(self._entries))
                self._drop_entry(oldest, orphan=True)
            self._trim_orphans()

    def get(self, job_id: str, now: float) -> JobSecrets | None:
        """The job's secrets if held and not older than max_age (credentials expire)."""
        with self._lock:
            entry = self._entries.get(job_id)
            if entry is None:
                return None
            if now - entry.fetched_at > self._max_age:
                self._drop_entry(job_id, orphan=True)
                self._trim_orphans()
                return None
            self._entries.move_to_end(job_id)
            return entry

    def forget(self, job_id: str) -> None:
        """The job is finished here: drop its secrets, and their forms unless another job
        holds the same value."""
        with self._lock:
            self._drop_entry(job_id, orphan=False)

    def __len__(self) -> int:
        return len(self._entries)

    def sizes(self) -> dict[str, int]:
        """How much the vault holds, by structure (what a memory test bounds)."""
        with self._lock:
            return {"entries": len(self._entries), "held": len(self._held),
                    "values": len(self._values), "orphans": len(self._orphans),
                    "forms": len(self._forms), "prefixes": len(self._index)}

    def _hold(self, value: str, job_id: str) -> None:
        known = self._values.get(value)
        if known is None:
            known = self._values[value] = _Value(set(), forms(value))
            for form in known.forms:
                self._add_form(form)
        self._orphans.pop(value, None)
        known.holders.add(job_id)

    def _drop_entry(self, job_id: str, *, orphan: bool) -> None:
        """Take a job out; its values lose a holder. A value nobody holds is dropped at once
        (forget, a refetch) or kept among the orphans (eviction, age: the job may be mid-effect)."""
        self._entries.pop(job_id, None)
        for value in self._held.pop(job_id, frozenset()):
            known = self._values.get(value)
            if known is None:
                continue
            known.holders.discard(job_id)
            if known.holders:
                continue
            if orphan:
                self._orphans[value] = None
                self._orphans.move_to_end(value)
            else:
                self._drop_value(value)

    def _trim_orphans(self) -> None:
        while len(self._orphans) > self._capacity * _ORPHANS_PER_ENTRY:
            value, _ = self._orphans.popitem(last=False)
            self._drop_value(value)

    def _drop_value(self, value: str) -> None:
        self._orphans.pop(value, None)
        known = self._values.pop(value, None)
        if known is not None:
            for form in known.forms:
                self._remove_form(form)

    def _add_form(self, form: str) -> None:
        count = self._forms.get(form, 0)
        self._forms[form] = count + 1
        if count:
            return
        prefix = form[:_PREFIX]
        lengths = self._lengths.setdefault(prefix, {})
        before = lengths.get(len(form), 0)
        lengths[len(form)] = before + 1
        if not before:  # a new length for this prefix: the index entry changes
            self._index[prefix] = tuple(sorted(lengths, reverse=True))

    def _remove_form(self, form: str) -> None:
        count = self._forms.get(form, 0)
        if count > 1:
            self._forms[form] = count - 1
            return
        self._forms.pop(form, None)
        prefix = form[:_PREFIX]
        lengths = self._lengths.get(prefix, {})
        left = lengths.get(len(form), 0) - 1
        if left > 0:
            lengths[len(form)] = left
            return
        lengths.pop(len(form), None)
        if lengths:
            self._index[prefix] = tuple(sorted(lengths, reverse=True))
        else:
            self._lengths.pop(prefix, None)
            self._index.pop(prefix, None)

    # --- scrubbing -------------------------------------------------------------------------------

    def scrub(self, text: str, job_id: str | None = None) -> str:
        """`text` with every form of every secret the vault knows replaced by ****.

        That covers `job_id`'s own secrets (configuration and artifact credentials) and, as a
        safety net, every other job's, held or recently held: they share one index, so naming
        the job costs nothing extra; it marks the job as in use, so it is not the next evicted.

        Cost: one pass over the text. At each position one dict lookup of its first 4
        characters; only where a form starts so, one set lookup per distinct length of such
        forms (a handful: AWS keys have fixed lengths), longest first, so the longest match
        wins. O(len(text)) for any number of secrets held, never O(secrets).
        """
        if job_id is not None:
            with self._lock:
                if job_id in self._entries:
                    self._entries.move_to_end(job_id)
        index, known = self._index, self._forms
        if not index or len(text) < _PREFIX:
            return text
        pieces: list[str] = []
        start = i = looked = 0
        end = len(text) - _PREFIX
        while i <= end:
            looked += 1
            lengths = index.get(text[i:i + _PREFIX])
            if lengths:
                for length in lengths:
                    if i + length <= len(text) and text[i:i + length] in known:
                        pieces += (text[start:i], REDACTED)
                        i = start = i + length
                        break
                else:
                    i += 1
            else:
                i += 1
        self.lookups += looked  # a statistic: a lost update between threads does no harm
        if not pieces:
            return text
        pieces.append(text[start:])
        return "".join(pieces)


# --- one gate for outcomes ------------------------------------------------------------------------

_O = TypeVar("_O", bound=Outcome)


def scrub_outcome(outcome: _O, scrub: Callable[[str], str]) -> _O:
    """`outcome` with every text it carries passed through `scrub`: messages and reasons,
    RunDetails (summary, external id), output variables and every string nested in `data`
    (keys too). Works on any outcome dataclass, so a new outcome type is covered without a
    change here. Returns the same object when nothing changed."""
    scrubbed: _O = scrub_value(outcome, scrub)
    return scrubbed


_SCALARS = (int, float, bool, type(None))
_INIT_FIELDS: dict[type, tuple[str, ...]] = {}
"""Each outcome class's init fields, looked up once: dataclasses.fields() on every outcome of
the hot path cost more than the scrub itself."""


def scrub_value(value: Any, scrub: Callable[[str], str]) -> Any:
    """`value` with its strings scrubbed, however deep in mappings, sequences and dataclasses."""
    kind = type(value)
    if kind is str:
        return scrub(value)
    if kind in _SCALARS or isinstance(value, Enum):
        return value
    if isinstance(value, str):
        return scrub(value)
    if kind is dict or isinstance(value, Mapping):
        items = [(scrub_value(k, scrub), scrub_value(v, scrub)) for k, v in value.items()]
        if all(k is k0 and v is v0 for (k, v), (k0, v0) in zip(items, value.items(), strict=True)):
            return value
        return dict(items)
    if isinstance(value, (list, tuple)):
        scrubbed = [scrub_value(v, scrub) for v in value]
        if all(a is b for a, b in zip(scrubbed, value, strict=True)):
            return value
        return tuple(scrubbed) if isinstance(value, tuple) else scrubbed
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = _INIT_FIELDS.get(kind)
        if names is None:
            names = tuple(f.name for f in dataclasses.fields(value) if f.init)
            _INIT_FIELDS[kind] = names
        changes = {}
        for name in names:
            before = getattr(value, name)
            after = scrub_value(before, scrub)
            if after is not before:
                changes[name] = after
        return dataclasses.replace(value, **changes) if changes else value
    return value


# --- logging -------------------------------------------------------------------------------------

LOG_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime"}
"""A log record's own attributes; any other was given with `extra` (and is scrubbed too)."""


class ScrubbingFilter(logging.Filter):
    """A logging filter that scrubs known secrets from every record before a handler sees it:
    the message with its args, the exception and stack text, and fields given with `extra`."""

    def __init__(self, vault: SecretVault) -> None:
        super().__init__()
        self._vault = vault

    def filter(self, record: logging.LogRecord) -> bool:
        scrub = self._vault.scrub
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: the handler reports it, as without a filter
            message = None
        if message is not None:
            scrubbed = scrub(message)
            if scrubbed is not message:
                record.msg, record.args = scrubbed, None
        if record.exc_info and record.exc_info[1] is not None:
            # Rendered here, once, and scrubbed: no handler formats the live exception again.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in LOG_RECORD_FIELDS and not key.startswith("_"):
                setattr(record, key, scrub_value(value, scrub))
        return True
