"""Logging set-up: text for people, JSON lines for machines; secrets scrubbed either way."""

from __future__ import annotations

import json
import logging
import sys
import weakref
from datetime import datetime, timezone

from engine.secrets import LOG_RECORD_FIELDS, ScrubbingFilter, SecretVault


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "at": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in LOG_RECORD_FIELDS and not key.startswith("_"):
                payload[key] = value
        # The scrubbing filter leaves the exception rendered (and scrubbed) in exc_text.
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            payload["exception"] = record.exc_text
        if record.stack_info:
            payload["stack"] = record.stack_info
        return json.dumps(payload, default=str)


_vaults: weakref.WeakSet[SecretVault] = weakref.WeakSet()
"""Vaults to scrub with; weak, so a worker that is gone (a test's) takes its vault along."""


def setup(fmt: str = "text", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("botocore", "boto3", "urllib3", "alembic", "transitions"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for vault in _vaults:
        handler.addFilter(ScrubbingFilter(vault))


def scrub_with(vault: SecretVault) -> None:
    """Scrub this vault's secrets from every handler of the root logger, now and after setup()."""
    if vault in _vaults:
        return
    _vaults.add(vault)
    for handler in logging.getLogger().handlers:
        handler.addFilter(ScrubbingFilter(vault))
