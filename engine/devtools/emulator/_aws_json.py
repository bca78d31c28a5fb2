"""The AWS JSON 1.1 wire format as botocore parses it: one error type, two response shapes.

Every AWS-facing failure in the CodePipeline emulator (signature, model validation, job state)
is raised as an AwsError and turned into bytes in exactly one place, so boto3 and the AWS CLI
see the same `__type`/`message`/status triple whichever layer refused the call.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from engine.devtools.emulator._http import Response

CONTENT_TYPE = "application/x-amz-json-1.1"
ACCEPTED_CONTENT_TYPES = ("application/x-amz-json-1.1", "application/x-amz-json-1.0")
"""Coral services accept either JSON version on the way in; botocore and the CLI send 1.1."""


class AwsError(Exception):
    """A refusal as AWS words it: botocore maps `code` to `client.exceptions.<code>`."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def new_request_id() -> str:
    """Request ids are not seeded: they must not shift the seeded id/nonce sequence."""
    return str(uuid.uuid4())


def error_response(error: AwsError, request_id: str) -> Response:
    return Response.json(
        error.status,
        {"__type": error.code, "message": error.message},
        content_type=CONTENT_TYPE,
        headers={"x-amzn-RequestId": request_id},
    )


def ok_response(payload: dict[str, Any] | None, request_id: str) -> Response:
    """Operations without an output shape answer 200 with an empty body, as AWS documents."""
    body = b"" if payload is None else json.dumps(payload).encode("utf-8")
    headers = {"Content-Type": CONTENT_TYPE, "x-amzn-RequestId": request_id}
    return Response(200, body, headers)
