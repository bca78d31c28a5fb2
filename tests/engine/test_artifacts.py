"""engine.artifacts against moto's S3 server over HTTP on 127.0.0.1, with a real SQLite ledger.

The job-credential side (credentials scoped to the job, expiring, refused unencrypted uploads)
is the CodePipeline emulator's; these tests hold the parts that are S3 and archives alone.
"""

from __future__ import annotations

import hashlib
import io
import os
import socket
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import server as moto_server

from engine.action import ArtifactCredentials, JobContext
from engine.artifacts import PART_SIZE, ArtifactError, JobArtifacts, S3Settings
from engine.clock import FakeClock
from engine.store import EventStore, open_store

BUCKET = "cpworker-test-artifacts"
"""Not the emulator's bucket: moto keeps one state per process, shared with its tests."""
INPUT_KEY = "pipeline/SourceArtif/abc1234"
OUTPUT_KEY = "pipeline/BuildOutput/def5678"
KEY_ID = "arn:aws:kms:us-east-1:111111111111:key/5c5f5a9e-1111-2222-3333-444455556666"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(s3_url: str) -> Any:
    client = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    if any(b["Name"] == BUCKET for b in client.list_buckets().get("Buckets", [])):
        for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
            client.delete_object(Bucket=BUCKET, Key=item["Key"])
    else:
        client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    opened = open_store(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        yield opened
    finally:
        opened.close()


def _artifacts(s3_url: str, ledger: EventStore | None, *, key: str | None = KEY_ID,
               job_id: str = "job-1") -> JobArtifacts:
    return JobArtifacts(
        job_id=job_id, execution_id="exec-1",
        inputs=({"name": "SourceArtifact", "revision": "abc", "bucket": BUCKET,
                 "key": INPUT_KEY},),
        outputs=({"name": "BuildOutput", "bucket": BUCKET, "key": OUTPUT_KEY},),
        encryption_key=key,
        credentials=ArtifactCredentials("ASIATESTING", "testing-secret", "testing-token"),
        renew=lambda: None, ledger=ledger, s3=S3Settings(s3_url, "us-east-1"),
        clock=FakeClock(), worker="test-worker")


def _zip_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_a_directory_is_zipped_encrypted_with_the_pipeline_key_and_recorded(
        s3_url: str, s3: Any, store: EventStore, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "bin").mkdir(parents=True)
    (out / "bin" / "app").write_bytes(b"\x7fELF binary")
    (out / "report.txt").write_text("all green\n")
    upload = _artifacts(s3_url, store).upload("BuildOutput", out)

    head = s3.head_object(Bucket=BUCKET, Key=OUTPUT_KEY)
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"].endswith(KEY_ID.split("/")[-1])
    assert head["Metadata"]["cpworker-execution"] == "exec-1"
    body = s3.get_object(Bucket=BUCKET, Key=OUTPUT_KEY)["Body"].read()
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert sorted(archive.namelist()) == ["bin/app", "report.txt"]
        assert archive.read("report.txt") == b"all green\n"
    assert upload.size == len(body) and upload.sha256 == hashlib.sha256(body).hexdigest()
    assert upload.etag == head["ETag"]
    rows = store.uploads("exec-1")
    assert [(r["artifact"], r["etag"], r["size"], r["job_id"]) for r in rows] == \
        [("BuildOutput", head["ETag"], len(body), "job-1")]


def test_an_upload_recorded_for_the_execution_is_not_made_again(
        s3_url: str, s3: Any, store: EventStore, tmp_path: Path) -> None:
    """A check() run again after a crash (here: by the continuation job, in a new object)
    gets the recorded upload back; S3 sees no second PUT (the object deleted in between
    stays deleted)."""
    (tmp_path / "a.txt").write_text("first build")
    first = _artifacts(s3_url, store).upload("BuildOutput", tmp_path / "a.txt")
    s3.delete_object(Bucket=BUCKET, Key=OUTPUT_KEY)
    (tmp_path / "a.txt").write_text("a different build")
    again = _artifacts(s3_url, store, job_id="job-2").upload("BuildOutput", tmp_path / "a.txt")
    assert again == first
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0
    assert len(store.uploads("exec-1")) == 1


def test_without_a_pipeline_key_uploads_use_the_stores_default_kms_key(
        s3_url: str, s3: Any, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x")
    upload = _artifacts(s3_url, None, key=None).upload("BuildOutput", tmp_path / "a.txt")
    head = s3.head_object(Bucket=BUCKET, Key=OUTPUT_KEY)
    assert head["ServerSideEncryption"] == "aws:kms" and upload.kms_key_id is None


def test_a_large_file_goes_up_in_parts_and_comes_back_whole(
        s3_url: str, s3: Any, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with open(big, "wb") as out:
        for _ in range(2 * PART_SIZE // (1024 * 1024) + 3):
            out.write(os.urandom(1024 * 1024))
    upload = _artifacts(s3_url, None).upload("BuildOutput", big, archive=False)
    assert upload.etag is not None and upload.etag.strip('"').endswith("-3")  # three parts
    s3.copy_object(Bucket=BUCKET, Key=INPUT_KEY, CopySource={"Bucket": BUCKET, "Key": OUTPUT_KEY})
    kept = _artifacts(s3_url, None).download("SourceArtifact", tmp_path / "back.bin",
                                             extract=False)
    assert kept.read_bytes() == big.read_bytes()


def test_a_zip_input_is_extracted_into_the_directory(
        s3_url: str, s3: Any, tmp_path: Path) -> None:
    s3.put_object(Bucket=BUCKET, Key=INPUT_KEY,
                  Body=_zip_bytes({"src/main.py": b"print(1)\n", "README.md": b"# hi\n"}))
    where = _artifacts(s3_url, None).download("SourceArtifact", tmp_path / "src")
    assert (where / "src" / "main.py").read_bytes() == b"print(1)\n"
    assert (where / "README.md").read_text() == "# hi\n"
    kept = _artifacts(s3_url, None).download("SourceArtifact", tmp_path, extract=False)
    assert kept == tmp_path / "SourceArtifact.zip" and zipfile.is_zipfile(kept)


def test_a_tar_gz_input_is_extracted_too(s3_url: str, s3: Any, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        data = b"deploy: yes\n"
        info = tarfile.TarInfo("conf/app.yml")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    s3.put_object(Bucket=BUCKET, Key=INPUT_KEY, Body=buffer.getvalue())
    where = _artifacts(s3_url, None).download("SourceArtifact", tmp_path / "x")
    assert (where / "conf" / "app.yml").read_bytes() == b"deploy: yes\n"


@pytest.mark.parametrize("member", ["../escape.txt", "/etc/cpworker-owned", "a/../../up.txt"])
def test_an_archive_member_outside_the_directory_fails_before_anything_is_written(
        s3_url: str, s3: Any, tmp_path: Path, member: str) -> None:
    s3.put_object(Bucket=BUCKET, Key=INPUT_KEY,
                  Body=_zip_bytes({"fine.txt": b"ok", member: b"owned"}))
    with pytest.raises(ArtifactError, match="outside its directory") as raised:
        _artifacts(s3_url, None).download("SourceArtifact", tmp_path / "in")
    assert "job-1" in str(raised.value)
    assert not (tmp_path / "in" / "fine.txt").exists()
    assert not (tmp_path / "escape.txt").exists()


def test_names_the_job_lacks_and_missing_sources_are_one_line_errors(
        s3_url: str, s3: Any, tmp_path: Path) -> None:
    artifacts = _artifacts(s3_url, None)
    with pytest.raises(ArtifactError, match=r"no input artifact named 'Nope'.*SourceArtifact"):
        artifacts.download("Nope", tmp_path)
    with pytest.raises(ArtifactError, match="does not exist"):
        artifacts.upload("BuildOutput", tmp_path / "missing")
    with pytest.raises(ArtifactError, match="NoSuchKey"):
        artifacts.download("SourceArtifact", tmp_path / "in")


def test_a_context_without_artifact_access_says_so() -> None:
    context = JobContext(job_id="j", execution_id="e", pipeline={}, configuration={}, run={},
                         details=None, attempt=0, resumed=False, clock=FakeClock())
    with pytest.raises(Exception, match="no artifact access"):
        context.download("SourceArtifact", "/tmp/nowhere")
