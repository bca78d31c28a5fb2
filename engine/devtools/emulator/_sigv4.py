"""SigV4 checks on incoming AWS calls, from "is it signed at all" to a full recomputation.

A worker that forgets to sign, or signs for the wrong service, must fail against the emulator as
it would against AWS. With a key pair configured the signature is recomputed with botocore's own
SigV4Auth over the request as received, so a wrong secret is caught, not just a missing header.

The parsing and the recomputation are shared by the two services the emulator speaks: `verify`
words refusals as AWS JSON services do, the artifact store (_cp_s3) as S3 does. S3 signs the
path as sent (no normalisation) and its payload hash comes from `x-amz-content-sha256`, which may
announce an aws-chunked body; `decode_chunked` unwraps that and checks each chunk's signature.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from engine.devtools.emulator._aws_json import AwsError
from engine.devtools.emulator._http import Request

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_PARAM = re.compile(r"(Credential|SignedHeaders|Signature)=([^,\s]*)")


class MalformedAuthorization(Exception):
    """The Authorization header is there but is not a SigV4 header a service could check."""

    def __init__(self, message: str, *, algorithm: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.algorithm = algorithm
        """True when the algorithm itself is not SigV4's (each service words that its way)."""


@dataclass(frozen=True)
class Authorization:
    """A parsed `Authorization: AWS4-HMAC-SHA256 ...` header and its X-Amz-Date."""

    key_id: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str
    amz_date: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"


def parse(request: Request) -> Authorization | None:
    """The request's SigV4 authorization; None when it has no Authorization header at all."""
    authorization = request.header("authorization")
    if not authorization:
        return None
    algorithm, _, rest = authorization.partition(" ")
    if algorithm != ALGORITHM:
        raise MalformedAuthorization(f"Unsupported Authorization algorithm {algorithm!r}",
                                     algorithm=True)
    params = dict(_PARAM.findall(rest))
    missing = [
        name for name in ("Credential", "SignedHeaders", "Signature") if not params.get(name)
    ]
    amz_date = request.header("x-amz-date")
    problems = [f"Authorization header requires '{name}' parameter." for name in missing]
    if not amz_date:
        problems.append(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
        )
    if problems:
        raise MalformedAuthorization(" ".join([*problems, f"Authorization={authorization}"]))
    scope = params["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        raise MalformedAuthorization(
            f"Credential must have exactly 5 slash-delimited elements, e.g. "
            f"keyid/date/region/service/aws4_request, got '{params['Credential']}'"
        )
    return Authorization(
        key_id=scope[0], date=scope[1], region=scope[2], service=scope[3],
        signed_headers=tuple(params["SignedHeaders"].split(";")),
        signature=params["Signature"], amz_date=amz_date,
    )


def verify(
    request: Request,
    *,
    service: str,
    region: str,
    credentials: tuple[str, str] | None,
) -> None:
    """Raise the AwsError an AWS JSON service would give for this request's signature, or
    return quietly.

    Without `credentials` only the shape of the signature is checked (any key is accepted),
    which is what tests with dummy keys need; with them, the key id and the signature must match.
    """
    try:
        parsed = parse(request)
    except MalformedAuthorization as error:
        message = error.message
        if error.algorithm:
            message += f"; AWS JSON services expect {ALGORITHM} (sign the request with SigV4)."
        raise AwsError("IncompleteSignatureException", message) from None
    if parsed is None:
        raise AwsError("MissingAuthenticationTokenException", "Missing Authentication Token")
    if credentials is None:
        return
    if parsed.key_id != credentials[0]:
        raise AwsError(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
            403,
        )
    if parsed.service != service:
        raise AwsError(
            "InvalidSignatureException",
            f"Credential should be scoped to correct service: '{service}'.",
            403,
        )
    if parsed.region != region:
        raise AwsError(
            "InvalidSignatureException",
            f"Credential should be scoped to a valid region, not '{parsed.region}'; "
            f"this endpoint serves '{region}'.",
            403,
        )
    if parsed.date != parsed.amz_date[:8]:
        raise AwsError(
            "InvalidSignatureException",
            f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{parsed.date}' != '{parsed.amz_date[:8]}', from '{parsed.amz_date}'.",
            403,
        )
    if not signature_matches(request, parsed, credentials[1]):
        raise AwsError(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method. "
            "Consult the service documentation for details.",
            403,
        )


def signature_matches(request: Request, parsed: Authorization, secret: str, *,
                      s3: bool = False) -> bool:
    """Whether the request's signature is the one `secret` gives (compared in constant time).

    `s3`: canonicalise as S3 does (the path as sent, the payload hash as x-amz-content-sha256
    states it, which the caller checks against the body separately)."""
    expected = _signature(request, parsed, secret, s3=s3)
    return hmac.compare_digest(expected, parsed.signature)


def _signature(request: Request, parsed: Authorization, secret: str, *, s3: bool) -> str:
    """botocore's SigV4Auth, minus the part that stamps the current time: the client's
    X-Amz-Date is what was signed, so it is what the recomputation must use."""
    host = request.header("host", "localhost")
    url = f"http://{host}{quote(request.path, safe='/~%')}"
    pairs = [(key, value) for key, values in request.query.items() for value in values]
    if pairs:
        url += "?" + urlencode(sorted(pairs), quote_via=quote, safe="-_.~")
    headers = {name: request.header(name) for name in parsed.signed_headers}
    # S3 signs the payload hash the client announced; anything else hashes the body it got.
    aws_request = AWSRequest(method=request.method, url=url, headers=headers,
                             data=b"" if s3 else request.body)
    aws_request.context["timestamp"] = parsed.amz_date
    signer_class = S3SigV4Auth if s3 else SigV4Auth
    signer = signer_class(Credentials(parsed.key_id, secret), parsed.service, parsed.region)
    canonical = signer.canonical_request(aws_request)
    string_to_sign = signer.string_to_sign(aws_request, canonical)
    return str(signer.signature(string_to_sign, aws_request))


# --- aws-chunked payloads ---------------------------------------------------------------------
# https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-streaming.html and
# .../sigv4-streaming-trailers.html: botocore sends these only over HTTPS (it signs the whole
# payload on plain HTTP), other SDKs may send them anywhere.

SIGNED_CHUNKS = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
SIGNED_CHUNKS_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING = (SIGNED_CHUNKS, SIGNED_CHUNKS_TRAILER, UNSIGNED_TRAILER)


class ChunkError(Exception):
    """An aws-chunked body that does not decode, or a chunk whose signature is wrong."""

    def __init__(self, message: str, *, signature: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.signature = signature


@dataclass(frozen=True)
class Decoded:
    body: bytes
    trailers: dict[str, str]
    """Trailing headers (e.g. x-amz-checksum-crc32), names lower-cased, signature removed."""


def signing_key(secret: str, parsed: Authorization) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (parsed.date, parsed.region, parsed.service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def chunk_signature(key: bytes, parsed: Authorization, previous: str, chunk: bytes) -> str:
    """The signature of one chunk, chained to the previous one (the seed is the header's)."""
    to_sign = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", parsed.amz_date, parsed.scope, previous,
                         EMPTY_SHA256, hashlib.sha256(chunk).hexdigest()])
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def trailer_signature(key: bytes, parsed: Authorization, previous: str,
                      trailers: dict[str, str]) -> str:
    canonical = "".join(f"{name}:{value}\n" for name, value in trailers.items())
    to_sign = "\n".join(["AWS4-HMAC-SHA256-TRAILER", parsed.amz_date, parsed.scope, previous,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def decode_chunked(body: bytes, mode: str, parsed: Authorization, secret: str) -> Decoded:
    """The payload of an aws-chunked body; chunk and trailer signatures checked when `mode`
    says the chunks are signed. Raises ChunkError."""
    signed = mode in (SIGNED_CHUNKS, SIGNED_CHUNKS_TRAILER)
    key = signing_key(secret, parsed) if signed else b""
    previous = parsed.signature
    parts: list[bytes] = []
    at = 0
    while True:
        end = body.find(b"\r\n", at)
        if end < 0:
            raise ChunkError("the aws-chunked body ends inside a chunk header")
        size_text, _, extension = body[at:end].decode("latin-1").partition(";")
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ChunkError(f"chunk size {size_text!r} is not hexadecimal") from None
        data = body[end + 2:end + 2 + size]
        if len(data) != size:
            raise ChunkError("the aws-chunked body is shorter than its chunk sizes say")
        if signed:
            given = extension.partition("chunk-signature=")[2]
            if not hmac.compare_digest(chunk_signature(key, parsed, previous, data), given):
                raise ChunkError("a chunk signature does not match", signature=True)
            previous = given
        parts.append(data)
        at = end + 2 + size
        if size == 0:
            break
        if body[at:at + 2] != b"\r\n":
            raise ChunkError("a chunk is not followed by CRLF")
        at += 2
    trailers: dict[str, str] = {}
    given_trailer = ""
    for line in body[at:].decode("latin-1").split("\r\n"):
        if not line:
            continue
        name, _, value = line.partition(":")
        if name.strip().lower() == "x-amz-trailer-signature":
            given_trailer = value.strip()
        else:
            trailers[name.strip().lower()] = value.strip()
    if mode == SIGNED_CHUNKS_TRAILER and not hmac.compare_digest(
            trailer_signature(key, parsed, previous, trailers), given_trailer):
        raise ChunkError("the trailer signature does not match", signature=True)
    return Decoded(b"".join(parts), trailers)
