"""With a key pair configured, the emulator recomputes each SigV4 signature as AWS would."""

from __future__ import annotations

import json

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from engine.clock import FakeClock
from engine.devtools.emulator.codepipeline import CodePipelineEmulator
from tests.emulator_codepipeline.conftest import (
    TRAVIS_ID,
    Attach,
    create_type,
    error_code,
    http_status,
    make_client,
    raw_call,
)

KEY = ("AKIAEMULATOR0000TEST", "emulator/secret+key")


@pytest.fixture
def url(clock: FakeClock, attach: Attach) -> str:
    return attach(CodePipelineEmulator(clock=clock, credentials=KEY)).url


def test_the_right_key_pair_is_accepted(url: str) -> None:
    client = make_client(url, key=KEY)
    create_type(client)
    assert client.poll_for_jobs(actionTypeId=TRAVIS_ID)["jobs"] == []


def test_a_session_token_is_signed_along_and_accepted(url: str) -> None:
    client = make_client(url, key=KEY, token="FwoGZXIvYXdzEJr//////////wEaDemulator")
    assert client.list_action_types()["actionTypes"] == []


def test_a_wrong_secret_is_an_invalid_signature(url: str) -> None:
    client = make_client(url, key=(KEY[0], "not-the-secret"))
    with pytest.raises(ClientError) as caught:
        client.list_action_types()
    assert error_code(caught.value) == "InvalidSignatureException"
    assert http_status(caught.value) == 403
    assert "does not match the signature you provided" in str(caught.value)


def test_an_unknown_key_id_is_an_unrecognized_client(url: str) -> None:
    client = make_client(url, key=("AKIASOMEONEELSE00000", KEY[1]))
    with pytest.raises(ClientError) as caught:
        client.list_action_types()
    assert error_code(caught.value) == "UnrecognizedClientException"
    assert http_status(caught.value) == 403


def test_a_signature_for_another_region_is_refused(url: str) -> None:
    client = make_client(url, key=KEY, region="eu-west-1")
    with pytest.raises(ClientError) as caught:
        client.list_action_types()
    assert error_code(caught.value) == "InvalidSignatureException"
    assert "'us-east-1'" in str(caught.value)


def test_a_body_changed_after_signing_is_caught(url: str) -> None:
    """The recomputation covers the payload hash, not just the headers."""
    request = AWSRequest(
        method="POST",
        url=url + "/",
        data=b"{}",
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": "CodePipeline_20150709.ListActionTypes",
        },
    )
    SigV4Auth(Credentials(*KEY), "codepipeline", "us-east-1").add_auth(request)
    headers = {k: str(v) for k, v in request.headers.items()}
    assert raw_call(url, "ListActionTypes", b"{}", sign=None, headers=headers)[0] == 200
    tampered = b'{"actionOwnerFilter": "Custom"}'
    status, _, body = raw_call(url, "ListActionTypes", tampered, sign=None, headers=headers)
    assert status == 403
    assert json.loads(body)["__type"] == "InvalidSignatureException"


def test_without_a_key_pair_any_well_formed_signature_passes(
    clock: FakeClock, attach: Attach
) -> None:
    url = attach(CodePipelineEmulator(clock=clock)).url
    assert make_client(url, key=("anything", "at-all")).list_action_types()["actionTypes"] == []
