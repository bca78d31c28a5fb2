"""The CodePipeline emulator's artifact store: real boto3 S3 calls over HTTP on the emulator's
own port, with the job's credentials, against moto's S3 behind it."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
import requests
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from engine.clock import FakeClock
from engine.devtools.emulator import CodePipelineEmulator, EmulatorServer
from engine.devtools.emulator._cp_s3 import make_zip
from engine.devtools.testing import SharedServer, codepipeline_client

if TYPE_CHECKING:
    from mypy_boto3_codepipeline import CodePipelineClient
    from mypy_boto3_codepipeline.type_defs import ActionTypeIdTypeDef, JobDataTypeDef

REPO = Path(__file__).resolve().parents[2]
TYPE_ID: ActionTypeIdTypeDef = {
    "category": "Build", "owner": "Custom", "provider": "Artifacts", "version": "1"}
TYPE = "Build/Custom/Artifacts/1"
REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emulator(clock: FakeClock) -> Iterator[CodePipelineEmulator]:
    emulator = CodePipelineEmulator(clock=clock)
    yield emulator
    emulator.close()


@pytest.fixture
def server(emulator: CodePipelineEmulator, shared_server: SharedServer) -> Iterator[EmulatorServer]:
    yield shared_server.plug(emulator)
    shared_server.unplug()


@pytest.fixture
def cp(server: EmulatorServer) -> CodePipelineClient:
    client = codepipeline_client(server.url)
    client.create_custom_action_type(
        category="Build", provider="Artifacts", version="1",
        inputArtifactDetails={"minimumCount": 1, "maximumCount": 5},
        outputArtifactDetails={"minimumCount": 0, "maximumCount": 5})
    return client


def s3(url: str, credentials: JobDataTypeDef | dict[str, str]) -> Any:
    """A worker's S3 client for the emulator: the job's credentials, path-style, SigV4."""
    given: Any = credentials.get("artifactCredentials", credentials)
    return boto3.client(
        "s3", endpoint_url=url, region_name="us-east-1",
        aws_access_key_id=given["accessKeyId"], aws_secret_access_key=given["secretAccessKey"],
        aws_session_token=given["sessionToken"],
        config=Config(s3={"addressing_style": "path"}, signature_version="s3v4",
                      retries={"max_attempts": 1}))


def polled(cp: CodePipelineClient, count: int = 1) -> list[Any]:
    jobs = list(cp.poll_for_jobs(actionTypeId=TYPE_ID, maxBatchSize=count)["jobs"])
    assert len(jobs) == count
    return jobs


def where(artifact: Any) -> dict[str, str]:
    location = artifact["location"]["s3Location"]
    return {"Bucket": location["bucketName"], "Key": location["objectKey"]}


def refusal(call: Any, **kwargs: Any) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    response: Any = caught.value.response
    return (response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"],
            response["Error"].get("Message", ""))


# --- reading the input artifact ----------------------------------------------------------------


def test_the_jobs_credentials_download_its_input_artifact_a_zip_holding_the_revision(
        emulator: CodePipelineEmulator, server: EmulatorServer, cp: CodePipelineClient) -> None:
    emulator.start_execution(TYPE, {}, revision=REVISION)
    data = polled(cp)[0]["data"]
    client = s3(server.url, data)
    body = client.get_object(**where(data["inputArtifacts"][0]))["Body"].read()
    archive = zipfile.ZipFile(io.BytesIO(body))
    assert archive.read("revision.txt").decode().strip() == REVISION
    assert "README.md" in archive.namelist()
    assert client.head_object(**where(data["inputArtifacts"][0]))["ContentLength"] == len(body)


def test_another_jobs_credentials_are_denied(
        emulator: CodePipelineEmulator, server: EmulatorServer, cp: CodePipelineClient) -> None:
    emulator.start_execution(TYPE, {})
    emulator.start_execution(TYPE, {})
    first, second = polled(cp, 2)
    code, status, message = refusal(s3(server.url, first["data"]).get_object,
                                    **where(second["data"]["inputArtifacts"][0]))
    assert (code, status) == ("AccessDenied", 403)
    assert first["id"] in message and first["data"]["artifactCredentials"]["secretAccessKey"] \
        not in message


def test_a_made_up_key_is_an_invalid_access_key_id_and_a_wrong_token_an_invalid_token(
        emulator: CodePipelineEmulator, server: EmulatorServer, cp: CodePipelineClient) -> None:
    emulator.start_execution(TYPE, {})
    data = polled(cp)[0]["data"]
    real = data["artifactCredentials"]
    made_up = {**real, "accessKeyId": "ASIAMADEUPKEY0000000"}
    assert refusal(s3(server.url, made_up).get_object,
                   **where(data["inputArtifacts"][0]))[:2] == ("InvalidAccessKeyId", 403)
    wrong_token = {**real, "sessionToken": real["sessionToken"][:-4] + "AAAA"}
    # S3's error list: InvalidToken is 400 Bad Request (botocore's S3 model, Error.Code).
    assert refusal(s3(server.url, wrong_token).get_object,
                   **where(data["inputArtifacts"][0]))[:2] == ("InvalidToken", 400)
    wrong_secret = {**real, "secretAccessKey": "x" * 40}
    assert refusal(s3(server.url, wrong_secret).get_object,
                   **where(data["inputArtifacts"][0]))[:2] == ("SignatureDoesNotMatch", 403)


def test_forced_expiry_gives_expired_token_until_get_job_details_hands_out_fresh_credentials(
        emulator: CodePipelineEmulator, server: EmulatorServer, cp: CodePipelineClient) -> None:
    emulator.start_execution(TYPE, {})
    job = polled(cp)[0]
    artifact = where(job["data"]["inputArtifacts"][0])
    client = s3(server.url, job["data"])
    assert client.get_object(**artifact)["Body"].read()
    answer = requests.post(f"{server.url}/_emulator/credentials/expire",
                           json={"job_id": job["id"]}, timeout=10)
    assert answer.json() == {"expired": 1}
    assert refusal(client.get_object, **artifact) == (
        "ExpiredToken", 400, "The provided token has expired.")
    fresh = cp.get_job_details(jobId=job["id"])["jobDetails"]["data"]
    assert s3(server.url, fresh).get_object(**artifact)["Body"].read()


def test_credentials_lapse_after_credentials_ttl_on_the_emulators_clock(
        clock: FakeClock, shared_server: SharedServer) -> None:
    emulator = CodePipelineEmulator(clock=clock, credentials_ttl=60)
    try:
        server = shared_server.plug(emulator)
        cp = codepipeline_client(server.url)
        cp.create_custom_action_type(
            category="Build", provider="Artifacts", version="1",
            inputArtifactDetails={"minimumCount": 1, "maximumCount": 1},
            outputArtifactDetails={"minimumCount": 0, "maximumCount": 0})
        emulator.start_execution(TYPE, {})
        data = polled(cp)[0]["data"]
        client, artifact = s3(server.url, data), where(data["inputArtifacts"][0])
        clock.advance(59.5)
        assert client.get_object(**artifact)["Body"].read()
        clock.advance(0.5)
        assert refusal(client.get_object, **artifact)[:2] == ("ExpiredToken", 400)
    finally:
        shared_server.unplug()
        emulator.close()


# --- writing the output artifact ---------------------------------------------------------------


def test_an_sse_kms_upload_shows_in_the_admin_view_with_its_key_and_one_put(
        emulator: CodePipelineEmulator, server: EmulatorServer, cp: CodePipelineClient) -> None:
    assert emulator.artifact_store is not None
    key_id = emulator.artifact_store.kms_key_id
    assert key_id
    started = emulator.start_execution(TYPE, {}, output_artifacts=["Built"],
                                       encryption_key=key_id)
    job = polled(cp)[0]
    data = job["data"]
    assert data["encryptionKey"] == {"id": key_id, "type": "KMS"}
    content = make_zip({"app.bin": os.urandom(3000)})
    put = s3(server.url, data).put_object(
        Body=content, ServerSideEncryption="aws:kms", SSEKMSKeyId=key_id,
        **where(data["outputArtifacts"][0]))
    view = requests.get(f"{server.url}/_emulator/executions/{started['pipelineExecutionId']}",
                        timeout=10)
    upload = view.json()["outputArtifacts"][0]["upload"]
    assert upload["size"] == len(content) and upload["eTag"] == put["ETag"]
    assert upload["versionId"] == put["VersionId"]
    assert (upload["serverSideEncryption"], upload["kmsKeyId"], upload["kmsKeyMatches"]) == (
        "aws:kms", key_id, True)
    assert (upload["puts"], upload["multipartUploads"], upload["uploads"]) == (1, 0, 1)
    assert upload["jobIds"] == [job["id"]]
    assert data["artifactCredentials"]["secretAccessKey"] not in view.text
    assert data["artifactCredentials"]["sessionToken"] not in view.text
    assert emulator.artifact_bytes(started["pipelineExecutionId"], "Built") == content


def test_an_upload_without_sse_kms_is_denied_by_the_artifact_bucket_policy(
        emulator: CodePipelineEmulator, server: EmulatorServer, cp: CodePipelineClient) -> None:
    started = emulator.start_execution(TYPE, {}, output_artifacts=1)
    data = polled(cp)[0]["data"]
    client = s3(server.url, data)
    code, status, message = refusal(client.put_object, Body=b"zip",
                                     **where(data["outputArtifacts"][0]))
    assert (code, status) == ("AccessDenied", 403)
    assert "DenyUnEncryptedObjectUploads" in message
    code, _, _ = refusal(client.put_object, Body=b"zip", ServerSideEncryption="AES256",
                         **where(data["outputArtifacts"][0]))
    assert code == "AccessDenied"
    assert emulator.uploads(started["pipelineExecutionId"]) == {"OutputArtifact": None}


def test_the_credentials_write_nowhere_but_the_output_locations(
        emulator: CodePipelineEmulator, server: EmulatorServer, cp: CodePipelineClient) -> None:
    emulator.start_execution(TYPE, {}, output_artifacts=1)
    data = polled(cp)[0]["data"]
    client = s3(server.url, data)
    sse = {"ServerSideEncryption": "aws:kms"}
    source, output = where(data["inputArtifacts"][0]), where(data["outputArtifacts"][0])
    assert refusal(client.put_object, Body=b"x", **source, **sse)[:2] == ("AccessDenied", 403)
    elsewhere = {"Bucket": output["Bucket"], "Key": output["Key"] + "-other"}
    assert refusal(client.put_object, Body=b"x", **elsewhere, **sse)[0] == "AccessDenied"
    assert refusal(client.delete_object, **source)[0] == "AccessDenied"
    assert refusal(client.get_object, **output)[0] == "AccessDenied"
    assert refusal(client.list_objects_v2, Bucket=output["Bucket"])[0] == "AccessDenied"


def test_a_multipart_upload_of_12_mb_in_5_mb_parts_counts_as_one_upload(
        emulator: CodePipelineEmulator, server: EmulatorServer, cp: CodePipelineClient,
        tmp_path: Path) -> None:
    assert emulator.artifact_store is not None
    key_id = emulator.artifact_store.kms_key_id
    started = emulator.start_execution(TYPE, {}, output_artifacts=1, encryption_key=key_id)
    data = polled(cp)[0]["data"]
    file = tmp_path / "artifact.zip"
    file.write_bytes(os.urandom(12 * 1024 * 1024))
    output = where(data["outputArtifacts"][0])
    s3(server.url, data).upload_file(
        str(file), output["Bucket"], output["Key"],
        ExtraArgs={"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": str(key_id)},
        Config=TransferConfig(multipart_threshold=5 * 1024 * 1024,
                              multipart_chunksize=5 * 1024 * 1024, max_concurrency=2))
    upload = emulator.uploads(started["pipelineExecutionId"])["OutputArtifact"]
    assert upload is not None
    assert (upload["puts"], upload["multipartUploads"], upload["uploads"]) == (0, 1, 1)
    assert upload["size"] == 12 * 1024 * 1024 and str(upload["eTag"]).endswith('-3"')
    assert upload["kmsKeyMatches"] is True
    stored = emulator.artifact_bytes(started["pipelineExecutionId"], "OutputArtifact")
    assert hashlib.sha256(stored).digest() == hashlib.sha256(file.read_bytes()).digest()


def test_an_upload_naming_another_key_is_recorded_as_not_matching(
        emulator: CodePipelineEmulator, server: EmulatorServer, cp: CodePipelineClient) -> None:
    assert emulator.artifact_store is not None
    started = emulator.start_execution(TYPE, {}, output_artifacts=1,
                                       encryption_key=emulator.artifact_store.kms_key_arn)
    data = polled(cp)[0]["data"]
    s3(server.url, data).put_object(Body=b"zip", ServerSideEncryption="aws:kms",
                                    **where(data["outputArtifacts"][0]))
    upload = emulator.uploads(started["pipelineExecutionId"])["OutputArtifact"]
    assert upload is not None and (upload["kmsKeyId"], upload["kmsKeyMatches"]) == (None, False)


# --- what the emulator stores and how it is run ------------------------------------------------


def test_input_content_given_over_the_admin_api_is_what_the_worker_downloads(
        emulator: CodePipelineEmulator, server: EmulatorServer, cp: CodePipelineClient) -> None:
    content = make_zip({"src/main.py": b"print('hi')\n"})
    answer = requests.post(f"{server.url}/_emulator/executions", timeout=10, json={
        "action_type": TYPE, "input_artifacts": ["Source", "Other"],
        "input_content": {"Source": base64.b64encode(content).decode()}})
    assert answer.status_code == 201, answer.text
    data = polled(cp)[0]["data"]
    client = s3(server.url, data)
    source, other = data["inputArtifacts"]
    assert client.get_object(**where(source))["Body"].read() == content
    assert zipfile.ZipFile(io.BytesIO(client.get_object(**where(other))["Body"].read())).read(
        "revision.txt").decode().strip() == other["revision"]
    wrong = requests.post(f"{server.url}/_emulator/executions", timeout=10, json={
        "action_type": TYPE, "input_content": {"Nope": "AAAA"}})
    assert wrong.status_code == 400 and "not input artifacts" in wrong.json()["error"]


def test_reset_forgets_uploads_and_deletes_the_objects(
        emulator: CodePipelineEmulator, server: EmulatorServer, cp: CodePipelineClient) -> None:
    started = emulator.start_execution(TYPE, {}, output_artifacts=1)
    data = polled(cp)[0]["data"]
    output = where(data["outputArtifacts"][0])
    s3(server.url, data).put_object(Body=b"zip", ServerSideEncryption="aws:kms", **output)
    assert emulator.artifact_bytes(started["pipelineExecutionId"], "OutputArtifact") == b"zip"
    store = emulator.artifact_store
    assert store is not None
    emulator.reset()
    with pytest.raises(KeyError):
        store.read(output["Key"])


def test_the_moto_server_listens_on_loopback_only(emulator: CodePipelineEmulator) -> None:
    assert emulator.artifact_store is not None
    url = emulator.artifact_store.moto_url
    assert url is not None and url.startswith("http://127.0.0.1:")
    port = int(url.rsplit(":", 1)[1])
    tables = [Path("/proc/net/tcp"), Path("/proc/net/tcp6")]
    if not tables[0].exists():
        pytest.skip("no /proc/net/tcp to read listening sockets from")
    listening = []
    for table in tables:
        for line in table.read_text().splitlines()[1:] if table.exists() else []:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if int(hex_port, 16) == port and fields[3] == "0A":  # 0A: LISTEN
                listening.append(address)
    assert listening == ["0100007F"]  # 127.0.0.1, and nothing on 0.0.0.0 or ::


def _emulator_output(command: list[str]) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, cwd=REPO, start_new_session=True)
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while not any("Press Ctrl-C" in line for line in lines):
        assert time.monotonic() < deadline and process.poll() is None, "".join(lines)
        lines.append(process.stdout.readline())
    return process, "".join(lines)


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def test_the_emulator_command_prints_the_s3_endpoint_and_the_kms_key() -> None:
    process, text = _emulator_output([sys.executable, "-m", "engine.cli", "emulator",
                                      "--port", "0", "--port-for", "travis=0"])
    try:
        cp_url = re.search(r"AWS_ENDPOINT_URL_CODEPIPELINE=(\S+)", text)
        s3_url = re.search(r"AWS_ENDPOINT_URL_S3=(\S+)", text)
        kms = re.search(r"KMS key ([0-9a-f-]{36})", text)
        assert cp_url and s3_url and kms, text
        assert s3_url.group(1) == cp_url.group(1)
        store = requests.get(f"{cp_url.group(1)}/_emulator/artifact-store", timeout=10).json()
        assert store["kmsKeyId"] == kms.group(1)
        assert str(store["motoUrl"]).startswith("http://127.0.0.1:")
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    finally:
        _stop(process)


def test_without_moto_the_emulator_command_says_how_to_get_real_artifacts() -> None:
    hide_moto = ("import sys; sys.modules['moto'] = None; from engine.cli import main; "
                 "sys.argv[0] = 'cpworker'; main()")
    process, text = _emulator_output([sys.executable, "-c", hide_moto, "emulator", "--port",
                                      "0", "--port-for", "travis=0"])
    try:
        hint = [line for line in text.splitlines() if "cpworker[emulator]" in line]
        assert len(hint) == 1 and "Traceback" not in text, text
        assert "AWS_ENDPOINT_URL_S3" not in text
    finally:
        _stop(process)


def test_the_execution_view_is_json_with_no_upload_before_one(
        emulator: CodePipelineEmulator, server: EmulatorServer, cp: CodePipelineClient) -> None:
    started = emulator.start_execution(TYPE, {}, output_artifacts=["A", "B"])
    view = emulator.execution(started["pipelineExecutionId"])
    json.dumps(view)
    assert [(a["name"], a["upload"]) for a in view["outputArtifacts"]] == [("A", None),
                                                                            ("B", None)]


def test_an_unreachable_s3_endpoint_answers_internal_error_which_sdks_retry(
        clock: FakeClock, shared_server: SharedServer) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    emulator = CodePipelineEmulator(clock=clock, s3_endpoint=f"http://127.0.0.1:{closed_port}")
    try:
        server = shared_server.plug(emulator)
        cp = codepipeline_client(server.url)
        cp.create_custom_action_type(
            category="Build", provider="Artifacts", version="1",
            inputArtifactDetails={"minimumCount": 1, "maximumCount": 1},
            outputArtifactDetails={"minimumCount": 0, "maximumCount": 0})
        emulator.start_execution(TYPE, {})
        data = polled(cp)[0]["data"]
        assert refusal(s3(server.url, data).get_object,
                       **where(data["inputArtifacts"][0]))[:2] == ("InternalError", 500)
    finally:
        shared_server.unplug()
        emulator.close()
