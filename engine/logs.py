"""Logging set-up: text for people, JSON lines for machines; secrets scrubbed either way."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone

from engine.secrets import ScrubbingFilter, SecretVault

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "at": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


_vaults: list[SecretVault] = []


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
    _vaults.append(vault)
    for handler in logging.getLogger().handlers:
        handler.addFilter(ScrubbingFilter(vault))
