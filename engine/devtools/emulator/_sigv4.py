"""SigV4 checks on incoming AWS calls, from "is it signed at all" to a full recomputation.

A worker that forgets to sign, or signs for the wrong service, must fail against the emulator as
it would against AWS. With a key pair configured the signature is recomputed with botocore's own
SigV4Auth over the request as received, so a wrong secret is caught, not just a missing header.
"""

from __future__ import annotations

import hmac
import re
from urllib.parse import quote, urlencode

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from engine.devtools.emulator._aws_json import AwsError
from engine.devtools.emulator._http import Request

ALGORITHM = "AWS4-HMAC-SHA256"
_PARAM = re.compile(r"(Credential|SignedHeaders|Signature)=([^,\s]*)")


def verify(
    request: Request,
    *,
    service: str,
    region: str,
    credentials: tuple[str, str] | None,
) -> None:
    """Raise the AwsError AWS would give for this request's signature, or return quietly.

    Without `credentials` only the shape of the signature is checked (any key is accepted),
    which is what tests with dummy keys need; with them, the key id and the signature must match.
    """
    authorization = request.header("authorization")
    if not authorization:
        raise AwsError("MissingAuthenticationTokenException", "Missing Authentication Token")
    algorithm, _, rest = authorization.partition(" ")
    if algorithm != ALGORITHM:
        raise AwsError(
            "IncompleteSignatureException",
            f"Unsupported Authorization algorithm {algorithm!r}; AWS JSON services expect "
            f"{ALGORITHM} (sign the request with SigV4).",
        )
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
        raise AwsError(
            "IncompleteSignatureException", " ".join([*problems, f"Authorization={authorization}"])
        )
    scope = params["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        raise AwsError(
            "IncompleteSignatureException",
            f"Credential must have exactly 5 slash-delimited elements, e.g. "
            f"keyid/date/region/service/aws4_request, got '{params['Credential']}'",
        )
    if credentials is None:
        return
    key_id, scope_date, scope_region, scope_service, _ = scope
    if key_id != credentials[0]:
        raise AwsError(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
            403,
        )
    if scope_service != service:
        raise AwsError(
            "InvalidSignatureException",
            f"Credential should be scoped to correct service: '{service}'.",
            403,
        )
    if scope_region != region:
        raise AwsError(
            "InvalidSignatureException",
            f"Credential should be scoped to a valid region, not '{scope_region}'; "
            f"this endpoint serves '{region}'.",
            403,
        )
    if scope_date != amz_date[:8]:
        raise AwsError(
            "InvalidSignatureException",
            f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{scope_date}' != '{amz_date[:8]}', from '{amz_date}'.",
            403,
        )
    expected = _signature(request, params["SignedHeaders"].split(";"), amz_date, credentials, scope)
    if not hmac.compare_digest(expected, params["Signature"]):
        raise AwsError(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method. "
            "Consult the service documentation for details.",
            403,
        )


def _signature(
    request: Request,
    signed_headers: list[str],
    amz_date: str,
    credentials: tuple[str, str],
    scope: list[str],
) -> str:
    """botocore's SigV4Auth, minus the part that stamps the current time: the client's
    X-Amz-Date is what was signed, so it is what the recomputation must use."""
    host = request.header("host", "localhost")
    url = f"http://{host}{quote(request.path, safe='/~%')}"
    pairs = [(key, value) for key, values in request.query.items() for value in values]
    if pairs:
        url += "?" + urlencode(sorted(pairs), quote_via=quote, safe="-_.~")
    headers = {name: request.header(name) for name in signed_headers}
    aws_request = AWSRequest(method=request.method, url=url, headers=headers, data=request.body)
    aws_request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(credentials[0], credentials[1]), scope[3], scope[2])
    canonical = signer.canonical_request(aws_request)
    string_to_sign = signer.string_to_sign(aws_request, canonical)
    return str(signer.signature(string_to_sign, aws_request))
