"""The CodePipeline emulator's artifact store: S3 on the emulator's own port, CodePipeline's rules
in front, a real S3 behind (moto's server, or an endpoint you give).

A worker downloads its input artifacts and uploads its outputs with the job's temporary
credentials, over S3's wire protocol, exactly as against AWS: so the front authenticates like S3
(SigV4 with a session token, S3's error codes in S3's XML), lets each set of credentials reach only
its job's artifacts (CodePipeline scopes them to the artifact paths: PROTOCOL A3, [UG-TS]), lets
them lapse, and refuses unencrypted uploads as CodePipeline's default artifact bucket policy does.
What passes is re-signed for the backend and streamed through: the front never holds more than
one request body (a multipart part) and never a whole object on the way out.

Error codes, messages and statuses are those of S3's error list (botocore's S3 model, shape
`Error`, member `Code`; https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html).
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import importlib.util
import io
import logging
import re
import threading
import uuid
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlencode
from xml.sax.saxutils import escape

import urllib3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from engine.clock import Clock
from engine.devtools.emulator import _sigv4
from engine.devtools.emulator._cp_jobs import Grant, object_key
from engine.devtools.emulator._http import Request, Response

if TYPE_CHECKING:
    from moto.server import ThreadedMotoServer

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'cpworker[emulator]'"
"""How to get moto's server, which the store runs S3 on when no S3 endpoint is given."""
MOTO_CREDENTIALS = ("testing", "testing")
"""moto checks no signature; any key pair opens it."""
_CHUNK = 1 << 20
_DROPPED_HEADERS = frozenset({
    "authorization", "x-amz-security-token", "x-amz-date", "x-amz-content-sha256", "host",
    "expect", "content-length", "connection", "keep-alive", "transfer-encoding", "te",
    "upgrade", "x-amz-decoded-content-length", "x-amz-trailer", "amz-sdk-invocation-id",
    "amz-sdk-request", "user-agent"})
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "server", "date",
                         "content-length", "access-control-allow-origin"})
_READ_PARAMS = frozenset({"versionId", "partNumber", "response-content-type",
                          "response-content-disposition", "response-content-encoding",
                          "response-content-language", "response-cache-control",
                          "response-expires", "x-id"})
_UPLOAD_ID = re.compile(r"<UploadId>([^<]+)</UploadId>")


def moto_installed() -> bool:
    return importlib.util.find_spec("moto") is not None


class MotoServer:
    """One moto server per process, on 127.0.0.1 and a free port, shared by reference count.

    moto keeps its backends in process-wide memory, so a second server would serve the same
    state anyway; every emulator of the process (and anything else that wants moto, such as an
    event publisher on SQS) acquires this one and releases it when it stops.
    """

    _lock = threading.Lock()
    _server: ThreadedMotoServer | None = None
    _url: str | None = None
    _users = 0

    @classmethod
    def acquire(cls) -> str:
        """Start it if it is not running; its URL."""
        with cls._lock:
            if cls._server is None:
                from moto.server import ThreadedMotoServer

                werkzeug = logging.getLogger("werkzeug")
                if werkzeug.level == logging.NOTSET:
                    werkzeug.setLevel(logging.WARNING)  # not a line per request on stderr
                server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
                server.start()
                host, port = server.get_host_and_port()
                cls._server, cls._url = server, f"http://{host}:{port}"
                log.info("moto server for the artifact store at %s", cls._url)
            cls._users += 1
            assert cls._url is not None
            return cls._url

    @classmethod
    def release(cls) -> None:
        """Stop it when its last user releases it."""
        with cls._lock:
            cls._users = max(0, cls._users - 1)
            if cls._users or cls._server is None:
                return
            server, cls._server, cls._url = cls._server, None, None
        server.stop()


@atexit.register
def _stop_moto() -> None:
    with MotoServer._lock:
        MotoServer._users = 1
    MotoServer.release()


class S3Error(Exception):
    """A refusal as S3 words it (see the module docstring for the source of each code)."""

    def __init__(self, code: str, message: str, status: int = 403, **extra: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status, self.extra = code, message, status, extra

    def response(self) -> Response:
        request_id = uuid.uuid4().hex[:16].upper()
        extra = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in self.extra.items())
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{self.code}</Code>'
                f"<Message>{escape(self.message)}</Message>{extra}"
                f"<RequestId>{request_id}</RequestId><HostId>cpworker-emulator</HostId></Error>")
        return Response(self.status, body.encode(), {"Content-Type": "application/xml",
                                                     "x-amz-request-id": request_id})


def _expired() -> S3Error:
    return S3Error("ExpiredToken", "The provided token has expired.", 400)


def make_zip(files: Mapping[str, bytes]) -> bytes:
    """A zip of these files (path -> bytes), with fixed timestamps so equal input gives equal
    bytes; CodePipeline stores artifacts as zip files (PROTOCOL A3)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in files.items():
            archive.writestr(zipfile.ZipInfo(path, (2020, 1, 1, 0, 0, 0)), data)
    return buffer.getvalue()


def default_input(pipeline: str, artifact: Mapping[str, Any]) -> bytes:
    """What an input artifact holds unless the caller gives its bytes: a small source tree
    that names its revision, so a test can tell one execution's artifact from another's."""
    revision = str(artifact.get("revision", ""))
    return make_zip({
        "README.md": f"# {artifact['name']}\n\nInput artifact of pipeline {pipeline}, made by "
                     "the cpworker CodePipeline emulator.\n".encode(),
        "revision.txt": f"{revision}\n".encode(),
    })


@dataclass
class _Upload:
    """What reached one output location."""

    key: str
    size: int = 0
    etag: str | None = None
    version_id: str | None = None
    sse: str | None = None
    kms_key_id: str | None = None
    kms_key_matches: bool | None = None
    puts: int = 0
    multipart: int = 0
    job_ids: list[str] = field(default_factory=list)

    def view(self) -> dict[str, Any]:
        return {"objectKey": self.key, "size": self.size, "eTag": self.etag,
                "versionId": self.version_id, "serverSideEncryption": self.sse,
                "kmsKeyId": self.kms_key_id, "kmsKeyMatches": self.kms_key_matches,
                "puts": self.puts, "multipartUploads": self.multipart,
                "uploads": self.puts + self.multipart, "jobIds": list(self.job_ids)}


@dataclass(frozen=True)
class _Multipart:
    key: str
    job_id: str
    sse: str
    kms_key_id: str | None
    encryption_key: str | None


class ArtifactStore:
    """S3 for one CodePipeline emulator: the artifact bucket `codepipeline-<region>-<account>`,
    versioned, as CodePipeline's artifact stores are ([IAM-RBP] below).

    Nothing starts until something needs it (an S3 request, `start()`, `kms_key_id`...), so an
    emulator whose tests never touch artifacts costs nothing; input artifacts staged before that
    are put in the bucket as it starts.

    The bucket policy is that of the bucket CodePipeline's wizard creates (statement
    DenyUnEncryptedObjectUploads: s3:PutObject without `x-amz-server-side-encryption: aws:kms`
    is denied; [IAM-RBP] https://docs.aws.amazon.com/codepipeline/latest/userguide/
    security_iam_resource-based-policy-examples.html). It is applied to PutObject, CopyObject and
    CreateMultipartUpload, the requests that carry that header. Its DenyInsecureConnections
    statement is not: the emulator speaks plain HTTP on loopback.
    """

    def __init__(self, *, bucket: str, region: str, account_id: str, clock: Clock,
                 grants: Callable[[str], Grant | None], s3_endpoint: str | None = None,
                 s3_credentials: tuple[str, str] | None = None) -> None:
        self.bucket = bucket
        self.region = region
        self.account_id = account_id
        self.clock = clock
        self.s3_endpoint = s3_endpoint.rstrip("/") if s3_endpoint else None
        self._grants = grants
        self._given_credentials = s3_credentials
        self._lock = threading.RLock()
        self._started = False
        self._backend = ""
        self._moto = False
        self._credentials = Credentials(*MOTO_CREDENTIALS)
        self._pool = urllib3.PoolManager(maxsize=16, timeout=urllib3.Timeout(connect=5, read=120))
        self._client: Any = None
        self._kms_key: dict[str, str] = {}
        self._pending: dict[str, bytes] = {}
        self._inputs: set[str] = set()
        self._uploads: dict[str, _Upload] = {}
        self._multipart: dict[str, _Multipart] = {}

    # ----------------------------------------------------------------- lifecycle

    @property
    def started(self) -> bool:
        return self._started

    def start(self) -> ArtifactStore:
        """Bring up the backend (moto's server unless an endpoint was given), the bucket, a KMS
        key (moto only) and every staged input artifact. Idempotent."""
        with self._lock:
            if self._started:
                return self
            import boto3
            from botocore.config import Config

            if self.s3_endpoint is None:
                self._backend, self._moto = MotoServer.acquire(), True
            else:
                self._backend = self.s3_endpoint
                self._credentials = self._endpoint_credentials()
            try:
                session = boto3.session.Session(
                    aws_access_key_id=self._credentials.access_key,
                    aws_secret_access_key=self._credentials.secret_key,
                    region_name=self.region)
                config = Config(s3={"addressing_style": "path"}, signature_version="s3v4",
                                retries={"max_attempts": 2, "mode": "standard"})
                self._client = session.client("s3", endpoint_url=self._backend, config=config)
                self._client.meta.events.register("before-sign.*.*", self._mark_account)
                self._create_bucket()
                if self._moto:
                    kms = session.client("kms", endpoint_url=self._backend, config=config)
                    kms.meta.events.register("before-sign.*.*", self._mark_account)
                    metadata = kms.create_key(
                        Description="the CodePipeline emulator's artifact key")["KeyMetadata"]
                    self._kms_key = {"id": metadata["KeyId"], "arn": metadata["Arn"]}
            except BaseException:
                if self._moto:
                    MotoServer.release()
                raise
            self._started = True
            for key, content in self._pending.items():
                self._put(key, content)
            self._pending.clear()
            return self

    def _endpoint_credentials(self) -> Credentials:
        if self._given_credentials is not None:
            return Credentials(*self._given_credentials)
        import boto3

        found = boto3.session.Session().get_credentials()
        if found is None:
            raise ValueError(f"no AWS credentials for the S3 endpoint {self.s3_endpoint}: set "
                             "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or a profile)")
        frozen = found.get_frozen_credentials()
        return Credentials(str(frozen.access_key), str(frozen.secret_key), frozen.token)

    def _mark_account(self, request: AWSRequest, **_: Any) -> None:
        """moto files what it stores under the account this header names: the emulator's."""
        if self._moto:
            request.headers["x-moto-account-id"] = self.account_id

    def _create_bucket(self) -> None:
        existing = {b["Name"] for b in self._client.list_buckets().get("Buckets", [])}
        if self.bucket not in existing:
            extra = ({} if self.region == "us-east-1"
                     else {"CreateBucketConfiguration": {"LocationConstraint": self.region}})
            self._client.create_bucket(Bucket=self.bucket, **extra)
        self._client.put_bucket_versioning(
            Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"})

    @property
    def moto_url(self) -> str | None:
        """The moto server behind the store (starting it), None with a given S3 endpoint."""
        self.start()
        return self._backend if self._moto else None

    @property
    def backend_url(self) -> str:
        return self.start()._backend

    @property
    def kms_key_id(self) -> str | None:
        """The id of the KMS key made in moto at start, for start_execution(encryption_key=);
        None with a given S3 endpoint (bring your own key there)."""
        return self.start()._kms_key.get("id")

    @property
    def kms_key_arn(self) -> str | None:
        return self.start()._kms_key.get("arn")

    def reset(self) -> None:
        """Forget every upload and delete every object this store put or saw put (never other
        objects of a bucket someone else may share)."""
        with self._lock:
            keys = self._inputs | set(self._uploads)
            open_uploads = list(self._multipart.items())
            self._pending.clear()
            self._inputs.clear()
            self._uploads.clear()
            self._multipart.clear()
            if not self._started:
                return
            for upload_id, upload in open_uploads:
                self._quietly(self._client.abort_multipart_upload, Bucket=self.bucket,
                              Key=upload.key, UploadId=upload_id)
            for key in keys:
                versions = self._client.list_object_versions(Bucket=self.bucket, Prefix=key)
                for version in versions.get("Versions", []) + versions.get("DeleteMarkers", []):
                    if version["Key"] == key:
                        self._quietly(self._client.delete_object, Bucket=self.bucket, Key=key,
                                      VersionId=version["VersionId"])

    def close(self) -> None:
        """Stop using the backend; moto's objects are deleted (its memory outlives us)."""
        with self._lock:
            if not self._started:
                return
            if self._moto:
                self.reset()
            self._started = False
            self._pool.clear()
            if self._moto:
                MotoServer.release()

    @staticmethod
    def _quietly(call: Callable[..., Any], **kwargs: Any) -> None:
        try:
            call(**kwargs)
        except Exception as error:  # tidying up: what is already gone is fine
            log.debug("artifact store clean-up: %s", error)

    # ----------------------------------------------------------------- the emulator's side

    def stage_input(self, key: str, content: bytes) -> None:
        """Put an input artifact at its location now, or as the store starts."""
        with self._lock:
            self._inputs.add(key)
            if self._started:
                self._put(key, content)
            else:
                self._pending[key] = content

    def _put(self, key: str, content: bytes) -> None:
        extra = {"SSEKMSKeyId": self._kms_key["id"]} if self._kms_key else {}
        self._client.put_object(Bucket=self.bucket, Key=key, Body=content,
                                ServerSideEncryption="aws:kms", **extra)

    def upload(self, key: str) -> dict[str, Any] | None:
        """What reached this output location, or None."""
        with self._lock:
            found = self._uploads.get(key)
            return None if found is None else found.view()

    def read(self, key: str) -> bytes:
        """An object's bytes (KeyError if absent), for tests."""
        with self._lock:
            if key in self._pending:
                return self._pending[key]
        self.start()
        try:
            return bytes(self._client.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        except self._client.exceptions.NoSuchKey:
            raise KeyError(f"nothing stored at s3://{self.bucket}/{key}") from None

    # ----------------------------------------------------------------- S3 requests

    def handle(self, request: Request) -> Response:
        """One S3 request from a worker: authenticate, authorize, forward, record."""
        try:
            return self._handle(request)
        except S3Error as error:
            return error.response()
        except Exception:  # the backend down, or a bug: S3's words for it, which SDKs retry
            log.exception("artifact store failed on %s %s", request.method, request.path)
            return S3Error("InternalError", "We encountered an internal error. Please try "
                           "again.", 500).response()

    def _handle(self, request: Request) -> Response:
        bucket, _, key = unquote(request.path.lstrip("/")).partition("/")
        grant = self._authenticate(request)
        operation = self._authorize(request, bucket, key, grant)
        body, trailers = self._payload(request, grant)
        self.start()
        return self._forward(request, operation, key, body, trailers, grant)

    def _authenticate(self, request: Request) -> Grant:
        """S3's checks, in S3's order, with S3's words (module docstring)."""
        if "X-Amz-Credential" in request.query or "X-Amz-Signature" in request.query:
            raise S3Error("AccessDenied", "This emulator accepts only Authorization-header "
                          "SigV4, not presigned URLs")
        try:
            auth = _sigv4.parse(request)
        except _sigv4.MalformedAuthorization as error:
            if error.algorithm:
                raise S3Error("InvalidRequest", f"{error.message}; please use "
                              f"{_sigv4.ALGORITHM}.", 400) from None
            raise S3Error("AuthorizationHeaderMalformed",
                          f"The authorization header is malformed; {error.message}",
                          400) from None
        if auth is None:
            raise S3Error("AccessDenied", "Access Denied (the request is anonymous: sign it "
                          "with the job's artifactCredentials)")
        grant = self._grants(auth.key_id)
        if grant is None:
            raise S3Error("InvalidAccessKeyId", "The AWS Access Key Id you provided does not "
                          "exist in our records.", AWSAccessKeyId=auth.key_id)
        token = request.header("x-amz-security-token")
        if not hmac.compare_digest(token.encode(), grant.session_token.encode()):
            raise S3Error("InvalidToken", "The provided token is malformed or otherwise "
                          "invalid.", 400)
        if self.clock.now() >= grant.expires_at:
            raise _expired()
        if auth.region != self.region:
            raise S3Error("AuthorizationHeaderMalformed", "The authorization header is "
                          f"malformed; the region '{auth.region}' is wrong; expecting "
                          f"'{self.region}'", 400, Region=self.region)
        if "x-amz-content-sha256" not in request.headers:
            raise S3Error("InvalidRequest", "Missing required header for this request: "
                          "x-amz-content-sha256", 400)
        if auth.service != "s3" or not _sigv4.signature_matches(
                request, auth, grant.secret_access_key, s3=True):
            raise S3Error("SignatureDoesNotMatch", "The request signature we calculated does "
                          "not match the signature you provided. Check your key and signing "
                          "method.")  # S3 adds the key id; an issued one is kept out
        return grant

    def _authorize(self, request: Request, bucket: str, key: str, grant: Grant) -> str:
        """The S3 action the request is, if the job's credentials and the bucket policy allow
        it; AccessDenied in IAM's words otherwise."""
        operation = _operation(request)
        if operation in ("CopyObject", "UploadPartCopy"):
            source = unquote(request.header("x-amz-copy-source").split("?")[0]).lstrip("/")
            source_bucket, _, source_key = source.partition("/")
            if source_bucket != self.bucket or source_key not in grant.readable | grant.writable:
                raise self._denied(grant, "s3:GetObject", source)
        action = {"GetObject": "s3:GetObject", "HeadObject": "s3:GetObject"}.get(
            operation, "s3:PutObject" if operation in _WRITES else f"s3:{operation}")
        allowed = grant.readable if action == "s3:GetObject" else grant.writable
        if bucket != self.bucket or not key or key not in allowed or operation == "Other":
            raise self._denied(grant, action, f"{bucket}/{key}" if key else bucket)
        if (operation in ("PutObject", "CopyObject", "CreateMultipartUpload")
                and request.header("x-amz-server-side-encryption") != "aws:kms"):
            raise S3Error("AccessDenied", f"User: {self._principal(grant)} is not authorized "
                          f"to perform: s3:PutObject on resource: "
                          f'"arn:aws:s3:::{bucket}/{key}" with an explicit deny in a '
                          "resource-based policy (the artifact bucket's "
                          "DenyUnEncryptedObjectUploads: upload with "
                          "x-amz-server-side-encryption: aws:kms)")
        return operation

    def _principal(self, grant: Grant) -> str:
        return f"arn:aws:sts::{self.account_id}:assumed-role/codepipeline-job/{grant.job_id}"

    def _denied(self, grant: Grant, action: str, resource: str) -> S3Error:
        return S3Error("AccessDenied", f"User: {self._principal(grant)} is not authorized to "
                       f'perform: {action} on resource: "arn:aws:s3:::{resource}" because no '
                       "session policy allows the action (artifact credentials reach only the "
                       "job's input artifacts, to read, and its output artifacts, to write)")

    @staticmethod
    def _payload(request: Request, grant: Grant) -> tuple[bytes, dict[str, str]]:
        """The body as the object will hold it, checked against X-Amz-Content-SHA256, and the
        checksums an aws-chunked body carried in its trailer."""
        declared = request.header("x-amz-content-sha256")
        if declared == "UNSIGNED-PAYLOAD":
            return request.body, {}
        if declared in _sigv4.STREAMING:
            auth = _sigv4.parse(request)
            assert auth is not None  # authenticated before
            try:
                decoded = _sigv4.decode_chunked(request.body, declared, auth,
                                                grant.secret_access_key)
            except _sigv4.ChunkError as error:
                if error.signature:
                    raise S3Error("SignatureDoesNotMatch", f"The request signature we "
                                  f"calculated does not match: {error.message}.") from None
                raise S3Error("IncompleteBody", f"{error.message}.", 400) from None
            length = request.header("x-amz-decoded-content-length")
            if length and length != str(len(decoded.body)):
                raise S3Error("IncompleteBody", "You did not provide the number of bytes "
                              "specified by the x-amz-decoded-content-length HTTP header.", 400)
            checksums = {k: v for k, v in decoded.trailers.items()
                         if k.startswith("x-amz-checksum-")}
            return decoded.body, checksums
        if not hmac.compare_digest(hashlib.sha256(request.body).hexdigest(), declared.lower()):
            raise S3Error("XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' "
                          "header does not match what was computed.", 400)
        return request.body, {}

    def _forward(self, request: Request, operation: str, key: str, body: bytes,
                 trailers: Mapping[str, str], grant: Grant) -> Response:
        """Re-sign for the backend and stream its answer back; record what succeeded."""
        headers = {name: value for name, value in request.headers.items()
                   if name not in _DROPPED_HEADERS}
        encoding = [e for e in headers.pop("content-encoding", "").split(",")
                    if e.strip() and e.strip() != "aws-chunked"]
        if encoding:
            headers["content-encoding"] = ",".join(encoding)
        headers.update(trailers)
        if self._moto:
            headers["x-moto-account-id"] = self.account_id
        pairs = sorted((k, v) for k, values in request.query.items() for v in values)
        url = f"{self._backend}{quote(request.path, safe='/~%')}"
        if pairs:
            url += "?" + urlencode(pairs, quote_via=quote, safe="-_.~")
        outgoing = AWSRequest(method=request.method, url=url, headers=headers, data=body)
        S3SigV4Auth(self._credentials, "s3", self.region).add_auth(outgoing)
        prepared = outgoing.prepare()
        answer = self._pool.request(request.method, prepared.url, body=body or None,
                                    headers=dict(prepared.headers.items()),
                                    preload_content=False, redirect=False, retries=False)
        out = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP}
        length = answer.headers.get("content-length")
        if operation in ("GetObject", "HeadObject") and length is not None:
            out["Content-Length"] = length
            return Response(answer.status, b"", out, stream=_stream(answer, request.method))
        data = answer.read()
        answer.release_conn()
        if answer.status == 200 and b"<Error>" not in data:
            self._record(request, operation, key, data, grant)
        return Response(answer.status, data, out)

    def _record(self, request: Request, operation: str, key: str, data: bytes,
                grant: Grant) -> None:
        upload_id = request.param("uploadId")
        with self._lock:
            if operation == "CreateMultipartUpload":
                found = _UPLOAD_ID.search(data.decode("utf-8", "replace"))
                if found:
                    self._multipart[found.group(1)] = _Multipart(
                        key, grant.job_id, request.header("x-amz-server-side-encryption"),
                        request.header("x-amz-server-side-encryption-aws-kms-key-id") or None,
                        grant.encryption_key)
                return
            if operation == "AbortMultipartUpload" and upload_id:
                self._multipart.pop(upload_id, None)
                return
            if operation not in ("PutObject", "CopyObject", "CompleteMultipartUpload"):
                return
            started = self._multipart.pop(upload_id or "", None)
            kms_key = (started.kms_key_id if started else
                       request.header("x-amz-server-side-encryption-aws-kms-key-id") or None)
            upload = self._uploads.setdefault(key, _Upload(key))
            if started is not None or operation == "CompleteMultipartUpload":
                upload.multipart += 1
            else:
                upload.puts += 1
            upload.job_ids.append(grant.job_id)
            upload.kms_key_id = kms_key
            upload.kms_key_matches = (None if grant.encryption_key is None
                                      else _same_key(kms_key, grant.encryption_key))
        head = self._client.head_object(Bucket=self.bucket, Key=key)
        with self._lock:
            upload.size = int(head["ContentLength"])
            upload.etag = head.get("ETag")
            upload.version_id = head.get("VersionId")
            upload.sse = head.get("ServerSideEncryption")


_WRITES = frozenset({"PutObject", "CopyObject", "CreateMultipartUpload", "UploadPart",
                     "UploadPartCopy", "CompleteMultipartUpload", "AbortMultipartUpload"})


def _operation(request: Request) -> str:
    """Which S3 object operation a request is ("Other" for any this store does not allow)."""
    params = set(request.query)
    method = request.method
    copy = bool(request.header("x-amz-copy-source"))
    if method in ("GET", "HEAD") and params <= _READ_PARAMS:
        return "GetObject" if method == "GET" else "HeadObject"
    if method == "PUT" and params <= {"x-id"}:
        return "CopyObject" if copy else "PutObject"
    if method == "PUT" and {"partNumber", "uploadId"} <= params <= {"partNumber", "uploadId",
                                                                     "x-id"}:
        return "UploadPartCopy" if copy else "UploadPart"
    if method == "POST" and params <= {"uploads", "x-id"} and "uploads" in params:
        return "CreateMultipartUpload"
    if method == "POST" and params <= {"uploadId", "x-id"} and "uploadId" in params:
        return "CompleteMultipartUpload"
    if method == "DELETE" and params <= {"uploadId", "x-id"} and "uploadId" in params:
        return "AbortMultipartUpload"
    return "Other"


def _same_key(named: str | None, wanted: str) -> bool:
    """Whether the key an upload named is the execution's key (an id and its ARN match)."""
    if named is None:
        return False
    return named.rsplit("key/", 1)[-1] == wanted.rsplit("key/", 1)[-1]


def _stream(answer: Any, method: str) -> Iterator[bytes]:
    try:
        if method != "HEAD":
            yield from answer.stream(_CHUNK)
    finally:
        answer.release_conn()


def stage_inputs(store: ArtifactStore | None, inputs: Sequence[Mapping[str, Any]],
                 content: Mapping[str, bytes] | None, pipeline: str) -> None:
    """Put a new execution's input artifacts at their locations: the bytes `content` gives
    by artifact name (stored as given: a zip, or anything else a test wants the worker to
    meet), default_input() for the others. Refuses content for no input artifact, and content
    where no store can keep it."""
    given = dict(content or {})
    names = [str(a["name"]) for a in inputs]
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise ValueError(f"input_content names {unknown}, which are not input artifacts of the "
                         f"execution {names}")
    wrong = sorted(n for n, v in given.items() if not isinstance(v, (bytes, bytearray)))
    if wrong:
        raise ValueError(f"input_content of {wrong} must be bytes (an artifact's whole content)")
    if store is None:
        if given:
            raise ValueError(f"input_content needs the artifact store: {INSTALL_HINT}, or give "
                             "the emulator an s3_endpoint")
        return
    for artifact in inputs:
        name = str(artifact["name"])
        data = bytes(given[name]) if name in given else default_input(pipeline, artifact)
        store.stage_input(object_key(artifact), data)


def uploads_of(store: ArtifactStore | None,
               outputs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any] | None]:
    """What reached each output artifact's location, by artifact name."""
    return {str(a["name"]): None if store is None else store.upload(object_key(a))
            for a in outputs}


def serve(store: ArtifactStore | None, request: Request) -> Response:
    """An S3 request reaching an emulator, with or without an artifact store."""
    if store is None:
        return S3Error("NotImplemented", "This CodePipeline emulator hands out artifact "
                       "locations only; for real artifacts, " + INSTALL_HINT + " (moto's "
                       "server) or start it with an S3 endpoint", 501).response()
    return store.handle(request)
