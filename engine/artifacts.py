"""Artifacts: a job's input and output artifacts in S3, with the job's own credentials.

CodePipeline hands a custom action its artifacts as S3 locations and a set of temporary
credentials scoped to them (PROTOCOL A3). Every worker that does more than trigger a remote run
needs the same few things, and they are easy to get wrong, so the engine does them once:

- SigV4 signing (KMS-encrypted objects need it), path-style addressing against a custom
  endpoint (an emulator, an S3-compatible store);
- the archive format: artifacts are zip files (tar and tar.gz are read too, as the Jenkins
  plugin reads them), extracted without letting a member escape its directory;
- server-side encryption on upload: `aws:kms`, naming the pipeline's key when the job names
  one ([UG-CA]; CodePipeline's default artifact bucket policy refuses unencrypted uploads);
- credentials that expire (about 15 minutes; PROTOCOL A3): an S3 answer that says so fetches
  fresh ones through GetJobDetails and the interrupted step is retried, a download resuming at
  the byte it reached, an upload at the part it reached;
- streaming: nothing reads a whole artifact into memory (one multipart part at most);
- durability: an upload is recorded in the state database's upload ledger the moment S3
  confirms it, so a check() run again after a crash gets the recorded upload back instead of
  uploading again, and the success event says what was uploaded.

The credentials live in memory only: they are never part of an error text (botocore's errors
do not carry them, and every outcome is scrubbed besides).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import tarfile
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, TypeVar

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from engine import crashpoints
from engine.action import ArtifactCredentials
from engine.clock import Clock
from engine.errors import CpworkerError
from engine.outcomes import JSON

log = logging.getLogger(__name__)

PART_SIZE = 8 * 1024 * 1024
"""Bytes per multipart part, and the largest body held in memory at once. S3 takes parts of
5 MiB to 5 GiB and at most 10,000 of them: 8 MiB parts carry artifacts up to 78 GiB."""

_MAX_PARTS = 10_000
_CHUNK = 1024 * 1024
"""Bytes read or written per step while streaming a download or hashing a file."""

EXPIRED_CODES = frozenset({"ExpiredToken", "ExpiredTokenException", "TokenRefreshRequired",
                           "RequestExpired"})
"""S3's answers to credentials past their expiry: fetch fresh ones and try again."""

_RENEWALS = 3
"""Fresh credentials fetched per step before its expiry is taken as an error: a clock far off,
or credentials that expire as they are issued."""

T = TypeVar("T")


class ArtifactError(CpworkerError):
    """An artifact cannot be read or written: a name the job does not have, an archive that
    would write outside its directory, S3 refusing (the message names the job and the S3
    error code, never the credentials)."""


@dataclass(frozen=True)
class S3Settings:
    """Where S3 is. `endpoint_url` None: AWS's own endpoint for the region (boto3 also reads
    AWS_ENDPOINT_URL_S3); given, addressing is path-style, which every S3-compatible endpoint
    and the emulator serve."""

    endpoint_url: str | None = None
    region: str | None = None


@dataclass(frozen=True)
class Upload:
    """An output artifact as S3 confirmed it, as the upload ledger keeps it."""

    artifact: str
    bucket: str
    key: str
    size: int
    sha256: str | None
    etag: str | None
    version_id: str | None
    kms_key_id: str | None
    at: float
    job_id: str

    def to_json(self) -> dict[str, JSON]:
        return {"artifact": self.artifact, "bucket": self.bucket, "key": self.key,
                "size": self.size, "sha256": self.sha256, "etag": self.etag,
                "version_id": self.version_id, "kms_key_id": self.kms_key_id, "at": self.at,
                "job_id": self.job_id}

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Upload:
        return cls(artifact=str(row["artifact"]), bucket=str(row["bucket"]),
                   key=str(row["object_key"]), size=int(row["size"]), sha256=row.get("sha256"),
                   etag=row.get("etag"), version_id=row.get("version_id"),
                   kms_key_id=row.get("kms_key_id"), at=float(row["at"]),
                   job_id=str(row["job_id"]))


class UploadLedger(Protocol):
    """Where uploads are recorded (the state database: engine.store.EventStore)."""

    def record_upload(self, row: Mapping[str, Any]) -> dict[str, Any]: ...

    def uploads(self, execution_id: str, artifact: str | None = None) -> list[dict[str, Any]]: ...


_SESSION_LOCK = threading.Lock()
_CLIENT_LOCK = threading.Lock()
_SESSION: botocore.session.Session | None = None


def _session() -> botocore.session.Session:
    """One botocore session for every job's client: loading the S3 model once, not per job."""
    global _SESSION
    with _SESSION_LOCK:
        if _SESSION is None:
            _SESSION = botocore.session.get_session()
        return _SESSION


class JobArtifacts:
    """One job's artifacts: what JobContext.download and JobContext.upload do.

    Built by the engine for each effect; it holds the job's credentials for that effect only.
    `renew` fetches fresh credentials (GetJobDetails) and returns them, or None when
    CodePipeline has none to give.
    """

    def __init__(
        self,
        *,
        job_id: str,
        execution_id: str,
        inputs: tuple[Mapping[str, JSON], ...],
        outputs: tuple[Mapping[str, JSON], ...],
        encryption_key: str | None,
        credentials: ArtifactCredentials | None,
        renew: Callable[[], ArtifactCredentials | None],
        ledger: UploadLedger | None,
        s3: S3Settings,
        clock: Clock,
        worker: str | None = None,
    ) -> None:
        self.job_id = job_id
        self.execution_id = execution_id
        self.inputs = {str(a.get("name")): a for a in inputs}
        self.outputs = {str(a.get("name")): a for a in outputs}
        self.encryption_key = encryption_key
        self._credentials = credentials
        self._renew = renew
        self._ledger = ledger
        self._where = s3
        self._clock = clock
        self._worker = worker
        self._client: Any = None
        self._made: list[Upload] = []

    # --- the action's side ----------------------------------------------------------------------

    def download(self, name: str, dest: str | os.PathLike[str], *, extract: bool = True) -> Path:
        """Fetch input artifact `name`. extract: unpack it (zip, tar or tar.gz) into the
        directory `dest` (made if missing) and return it; else keep the archive as the file
        `dest` (or `dest/<name>.zip` when `dest` is a directory) and return its path."""
        artifact = self._artifact(self.inputs, name, "input")
        bucket, key = _location(artifact)
        target = Path(dest)
        if extract:
            target.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix="cpworker-artifact-") as scratch:
                archive = Path(scratch) / "artifact"
                self._fetch(bucket, key, archive, name)
                _unpack(archive, target, self.job_id, name)
            return target
        if target.is_dir():
            target = target / f"{name}.zip"
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        self._fetch(bucket, key, partial, name)
        os.replace(partial, target)
        return target

    def upload(self, name: str, source: str | os.PathLike[str], *,
               archive: bool = True) -> Upload:
        """Put output artifact `name`: `source` (a file or a directory) zipped as CodePipeline
        expects, or, archive=False, the file `source` as it is (already an archive). Returns the
        upload as recorded; an artifact recorded as uploaded for this execution is not uploaded
        again (a check() run again after a crash gets the recorded one back)."""
        artifact = self._artifact(self.outputs, name, "output")
        recorded = self._recorded(name)
        if recorded is not None:
            log.info("job %s: output artifact %s was uploaded before (%s), not again",
                     self.job_id, name, recorded.etag)
            return recorded
        bucket, key = _location(artifact)
        path = Path(source)
        if not path.exists():
            raise ArtifactError(f"job {self.job_id}: cannot upload output artifact {name}: "
                                f"{path} does not exist",
                                fix="give upload() the file or directory the action produced")
        with tempfile.TemporaryDirectory(prefix="cpworker-artifact-") as scratch:
            if archive:
                body = Path(scratch) / f"{name}.zip"
                _zip(path, body)
            elif path.is_file():
                body = path
            else:
                raise ArtifactError(f"job {self.job_id}: output artifact {name}: archive=False "
                                    f"needs a file, and {path} is a directory",
                                    fix="upload the directory with archive=True (zipped)")
            size, digest = _measure(body)
            etag, version = self._put(bucket, key, body, size, digest, name)
        upload = Upload(artifact=name, bucket=bucket, key=key, size=size, sha256=digest,
                        etag=etag, version_id=version, kms_key_id=self.encryption_key,
                        at=self._clock.now(), job_id=self.job_id)
        upload = self._record(upload)
        crashpoints.reached("after:upload")
        return upload

    def uploaded(self) -> tuple[Upload, ...]:
        """Every output artifact recorded as uploaded for this execution (by any job of it, in
        any process), or made by this object when no ledger records them."""
        if self._ledger is None:
            return tuple(self._made)
        return tuple(Upload.from_row(r) for r in self._ledger.uploads(self.execution_id))

    # --- S3 -------------------------------------------------------------------------------------

    def _artifact(self, artifacts: Mapping[str, Mapping[str, JSON]], name: str,
                  side: str) -> Mapping[str, JSON]:
        found = artifacts.get(name)
        if found is None:
            names = ", ".join(sorted(artifacts)) or "none"
            raise ArtifactError(
                f"job {self.job_id} has no {side} artifact named {name!r} (it has: {names})",
                fix=f"use a name the action's {side} artifacts have in the pipeline")
        return found

    def _s3(self) -> Any:
        if self._client is None:
            credentials = self._credentials
            if credentials is None:
                credentials = self._renew()
                self._credentials = credentials
            if credentials is None:
                raise ArtifactError(f"job {self.job_id} came without artifact credentials, and "
                                    "GetJobDetails gave none either",
                                    fix="check the action type declares artifacts")
            config = Config(
                signature_version="s3v4",
                # Path-style at any endpoint but AWS's own (given, or AWS_ENDPOINT_URL_S3 /
                # AWS_ENDPOINT_URL, which botocore reads): emulators and S3-compatible stores
                # serve it, few serve a bucket as a host name.
                s3={"addressing_style": "path"} if self._where.endpoint_url or os.environ.get(
                    "AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") else {},
                retries={"mode": "standard", "max_attempts": 4},
                # The checksum only where S3 requires one: S3-compatible stores and older
                # gateways refuse the trailing checksums botocore sends by default.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                connect_timeout=10, read_timeout=120,
            )
            session = _session()
            with _CLIENT_LOCK:  # botocore's client creation is not thread-safe
                self._client = session.create_client(
                    "s3", region_name=self._where.region, endpoint_url=self._where.endpoint_url,
                    aws_access_key_id=credentials.access_key_id,
                    aws_secret_access_key=credentials.secret_access_key,
                    aws_session_token=credentials.session_token, config=config)
        return self._client

    def _call(self, what: str, step: Callable[[Any], T]) -> T:
        """`step` with the job's S3 client; expired credentials are renewed and it runs again."""
        for renewal in range(_RENEWALS + 1):
            try:
                return step(self._s3())
            except ClientError as error:
                code = str(error.response.get("Error", {}).get("Code", ""))
                if code in EXPIRED_CODES and renewal < _RENEWALS:
                    log.info("job %s: artifact credentials expired during %s; fetching fresh "
                             "ones", self.job_id, what)
                    self._credentials = self._renew()
                    self._client = None
                    continue
                message = str(error.response.get("Error", {}).get("Message", "")) or code
                raise ArtifactError(f"job {self.job_id}: {what} refused by S3: {code}: "
                                    f"{message}",
                                    fix=_FIXES.get(code, "see the S3 error code")) from None
            except BotoCoreError as error:
                raise ArtifactError(f"job {self.job_id}: {what} failed: "
                                    f"{type(error).__name__}: {error}",
                                    fix="check the S3 endpoint can be reached") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _fetch(self, bucket: str, key: str, into: Path, name: str) -> None:
        """Stream the object into `into`, resuming where it broke off when credentials expire
        mid-way (a Range request from the bytes already written)."""
        with open(into, "wb") as out:
            def step(client: Any) -> None:
                extra = {"Range": f"bytes={out.tell()}-"} if out.tell() else {}
                answer = client.get_object(Bucket=bucket, Key=key, **extra)
                body = answer["Body"]
                try:
                    for chunk in body.iter_chunks(_CHUNK):
                        out.write(chunk)
                finally:
                    body.close()

            self._call(f"downloading input artifact {name}", step)

    def _put(self, bucket: str, key: str, body: Path, size: int, digest: str,
             name: str) -> tuple[str | None, str | None]:
        """Upload `body` (one PUT up to PART_SIZE, else multipart, one part in memory at a
        time); returns (ETag, VersionId)."""
        extra: dict[str, Any] = {"ServerSideEncryption": "aws:kms",
                                 "Metadata": {"cpworker-execution": self.execution_id,
                                              "cpworker-sha256": digest}}
        if self.encryption_key:
            extra["SSEKMSKeyId"] = self.encryption_key
        what = f"uploading output artifact {name}"
        with open(body, "rb") as source:
            if size <= PART_SIZE:
                def put(client: Any) -> Any:
                    source.seek(0)
                    return client.put_object(Bucket=bucket, Key=key, Body=source,
                                             ContentLength=size, **extra)

                answer = self._call(what, put)
                return answer.get("ETag"), answer.get("VersionId")
            part_size = max(PART_SIZE, -(-size // _MAX_PARTS))
            started: dict[str, Any] = self._call(what, lambda c: c.create_multipart_upload(
                Bucket=bucket, Key=key, **extra))
            upload_id = started["UploadId"]
            try:
                parts: list[dict[str, Any]] = []
                for number, offset in enumerate(range(0, size, part_size), start=1):
                    source.seek(offset)
                    chunk = source.read(part_size)
                    sent = self._call(what, _part(bucket, key, upload_id, number, chunk))
                    parts.append({"ETag": sent["ETag"], "PartNumber": number})
                    del chunk
                answer = self._call(what, lambda c: c.complete_multipart_upload(
                    Bucket=bucket, Key=key, UploadId=upload_id,
                    MultipartUpload={"Parts": parts}))
            except BaseException:
                self._abort(bucket, key, upload_id)
                raise
            return answer.get("ETag"), answer.get("VersionId")

    def _abort(self, bucket: str, key: str, upload_id: str) -> None:
        """Best effort: an abandoned multipart upload costs storage until a lifecycle rule."""
        try:
            self._s3().abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except Exception as error:  # the failure that brought us here is the one to report
            log.info("job %s: aborting multipart upload of %s failed: %s", self.job_id, key,
                     type(error).__name__)

    # --- the ledger -----------------------------------------------------------------------------

    def _recorded(self, name: str) -> Upload | None:
        if self._ledger is None:
            return next((u for u in self._made if u.artifact == name), None)
        rows = self._ledger.uploads(self.execution_id, name)
        return Upload.from_row(rows[0]) if rows else None

    def _record(self, upload: Upload) -> Upload:
        if self._ledger is None:
            self._made.append(upload)
            return upload
        row = self._ledger.record_upload({
            "execution_id": self.execution_id, "artifact": upload.artifact,
            "job_id": upload.job_id, "bucket": upload.bucket, "object_key": upload.key,
            "etag": upload.etag, "version_id": upload.version_id, "size": upload.size,
            "sha256": upload.sha256, "kms_key_id": upload.kms_key_id, "at": upload.at,
            "worker": self._worker})
        return Upload.from_row(row)


def _part(bucket: str, key: str, upload_id: str, number: int,
          chunk: bytes) -> Callable[[Any], dict[str, Any]]:
    """One multipart part's upload, as a step _call can run again with fresh credentials."""
    def step(client: Any) -> dict[str, Any]:
        answer: dict[str, Any] = client.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk,
            ContentLength=len(chunk))
        return answer
    return step


_FIXES = {
    "AccessDenied": "the job's credentials allow only its own artifacts, and uploads only with "
                    "aws:kms encryption; check the artifact names and the bucket policy",
    "NoSuchKey": "the input artifact is gone from the artifact store (a lifecycle rule?); "
                 "run the pipeline again",
    "NoSuchBucket": "check the S3 endpoint and the pipeline's artifact store",
    "InvalidAccessKeyId": "the job's credentials are not known to this S3 endpoint; check "
                          "--s3-endpoint-url",
    "SignatureDoesNotMatch": "check the S3 endpoint and region",
}


def _location(artifact: Mapping[str, JSON]) -> tuple[str, str]:
    bucket, key = artifact.get("bucket"), artifact.get("key")
    if not isinstance(bucket, str) or not isinstance(key, str):
        raise ArtifactError(f"artifact {artifact.get('name')} has no S3 location in its job",
                            fix="CodePipeline sends S3 locations for custom actions; check "
                                "the job's data with `cpworker inspect --json`")
    return bucket, key


# --- archives ---------------------------------------------------------------------------------


def _zip(source: Path, archive: Path) -> None:
    """Zip a file or a directory tree into `archive`, streaming each file in (zipfile reads a
    member in chunks); names are relative and sorted, so the same tree gives the same list."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as out:
        if source.is_file():
            out.write(source, source.name)
            return
        for path in sorted(_tree(source)):
            out.write(path, path.relative_to(source).as_posix())


def _tree(root: Path) -> Iterator[Path]:
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for name in names:
            path = Path(folder) / name
            if path.is_file():
                yield path


def _measure(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as source:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _unpack(archive: Path, dest: Path, job_id: str, name: str) -> None:
    """Extract a zip, tar or tar.gz into `dest`; a member that would land outside it (an
    absolute name, `..`, a link out) fails the whole extraction before anything is written."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zipped:
            listed = zipped.infolist()
            for info in listed:
                _inside(info.filename, job_id, name)
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise ArtifactError(f"job {job_id}: input artifact {name} holds a symbolic "
                                        f"link ({info.filename}), which is not extracted",
                                        fix="produce the artifact without links")
            for info in listed:
                _extract_zip_member(zipped, info, dest)
        return
    try:
        with tarfile.open(archive) as source:
            members = source.getmembers()
            for member in members:
                _inside(member.name, job_id, name)
                if not (member.isfile() or member.isdir()):
                    raise ArtifactError(f"job {job_id}: input artifact {name} holds "
                                        f"{member.name}, which is not a file or a directory",
                                        fix="produce the artifact without links or devices")
            for member in members:
                target = dest.joinpath(*PurePosixPath(member.name).parts)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                extracted = source.extractfile(member)
                if extracted is None:  # pragma: no cover - isfile() members always have data
                    continue
                with extracted, open(target, "wb") as out:
                    shutil.copyfileobj(extracted, out, _CHUNK)
    except tarfile.TarError:
        raise ArtifactError(f"job {job_id}: input artifact {name} is neither a zip nor a tar "
                            "archive", fix="download it with extract=False to keep the file "
                                           "as it is") from None


def _extract_zip_member(source: zipfile.ZipFile, member: zipfile.ZipInfo, dest: Path) -> None:
    target = dest.joinpath(*PurePosixPath(member.filename).parts)
    if member.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with source.open(member) as data, open(target, "wb") as out:
        shutil.copyfileobj(data, out, _CHUNK)
    mode = (member.external_attr >> 16) & 0o777
    if mode & 0o100:
        os.chmod(target, 0o755)


def _inside(member: str, job_id: str, name: str) -> None:
    path = PurePosixPath(member.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise ArtifactError(f"job {job_id}: input artifact {name} holds {member!r}, which "
                            "would be written outside its directory; nothing was extracted",
                            fix="produce the artifact with relative member names")

