"""The secret vault: every printed form of a secret scrubbed, at a cost set by the text alone,
in memory that stays flat however many jobs pass through."""

from __future__ import annotations

import http.client
import io
import json
import logging
from collections.abc import Callable, Iterator
from urllib.parse import quote, quote_plus, urlencode

import pytest
import requests

from engine.action import ArtifactCredentials
from engine.logs import JSONFormatter
from engine.outcomes import (
    Cancelled,
    Done,
    Failed,
    FailureType,
    InProgress,
    Outcome,
    Refused,
    Rejected,
    Reported,
    RetryLater,
    RunDetails,
)
from engine.secrets import REDACTED, ScrubbingFilter, SecretVault, forms, scrub_outcome

TOKEN = "tok-\nsé☃cret-\"quoted\"/+=%-9f2c"
"""A newline, non-ASCII (Latin-1 and beyond), quotes and URL-special characters in one value."""
CREDENTIALS = ArtifactCredentials("ASIAVAULTTEST0000001", "wJalrXUtnFEMI/K7MDENG+bPxRfiCY0001",
                                  "IQoJb3JpZ2luX2VjSESSION/TOKEN+0001==")


def vault_with(token: str = TOKEN, job_id: str = "job-1") -> SecretVault:
    vault = SecretVault()
    vault.put(job_id, {"Token": token, "Plain": "visible-value"}, {"Token"}, CREDENTIALS, 0.0)
    return vault


def _requests_header(value: str) -> str:
    with pytest.raises(requests.exceptions.InvalidHeader) as raised:
        requests.Request("GET", "http://127.0.0.1/", headers={"Authorization": value}).prepare()
    return str(raised.value)


def _http_client_header(value: str) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", 9)
    connection.putrequest("GET", "/")
    with pytest.raises(ValueError) as raised:
        connection.putheader("Authorization", value.encode("latin-1"))
    return str(raised.value)


RENDERINGS: dict[str, Callable[[str], str]] = {
    "as is": lambda v: f"token {v} refused",
    "repr": lambda v: f"sent {v!r}",
    "repr in a container": lambda v: repr({"headers": {"Authorization": f"token {v}"}}),
    "ascii()": lambda v: ascii(v),
    "json": lambda v: json.dumps({"token": v}),
    "json without ensure_ascii": lambda v: json.dumps({"token": v}, ensure_ascii=False),
    "json of a repr": lambda v: json.dumps({"error": repr(v)}),
    "quote": lambda v: "https://x/?t=" + quote(v),
    "quote without safe": lambda v: "https://x/" + quote(v, safe=""),
    "quote_plus / urlencode": lambda v: "https://x/?" + urlencode({"token": v}),
    "quote_plus": lambda v: quote_plus(v),
    "utf-8 bytes repr": lambda v: repr(v.encode("utf-8")),
    "requests InvalidHeader": lambda v: _requests_header(f"token {v}"),
}


@pytest.mark.parametrize("how", RENDERINGS)
def test_every_form_a_library_prints_is_scrubbed(how: str) -> None:
    vault = vault_with()
    text = RENDERINGS[how](TOKEN)
    scrubbed = vault.scrub(text, "job-1")
    assert REDACTED in scrubbed
    for form in forms(TOKEN):
        assert form not in scrubbed, (how, form, scrubbed)


def test_http_client_bytes_repr_of_a_latin1_token_is_scrubbed() -> None:
    token = "tok\nlatin-é-secret"
    vault = vault_with(token)
    text = _http_client_header(f"token {token}")
    assert "\\n" in text and "\\xe9" in text  # http.client shows the bytes' repr
    scrubbed = vault.scrub(text)
    assert all(form not in scrubbed for form in forms(token)), scrubbed


def test_credentials_and_the_token_go_but_plain_values_stay() -> None:
    vault = vault_with()
    text = (f"key {CREDENTIALS.access_key_id} secret {CREDENTIALS.secret_access_key} session "
            f"{quote(CREDENTIALS.session_token, safe='')} plain visible-value")
    assert vault.scrub(text) == "key **** secret **** session **** plain visible-value"


def test_a_value_no_codec_can_encode_is_still_held_and_scrubbed() -> None:
    token = "tok-\ud800-lone-surrogate"  # JSON may carry one as an escape
    vault = vault_with(token)
    assert vault.scrub(f"a {token} b {json.dumps(token)}") == "a **** b \"****\""


def test_short_values_are_not_scrubbed() -> None:
    vault = SecretVault()
    vault.put("job-1", {"Token": "abc"}, {"Token"}, None, 0.0)
    assert vault.scrub("abc abcd") == "abc abcd"
    assert vault.sizes()["forms"] == 0


def test_the_longest_form_wins_where_two_start_alike() -> None:
    vault = SecretVault()
    vault.put("short", {"Token": "secret-1"}, {"Token"}, None, 0.0)
    vault.put("long", {"Token": "secret-1-and-more"}, {"Token"}, None, 0.0)
    assert vault.scrub("x secret-1-and-more y secret-1 z") == "x **** y **** z"


def test_the_work_is_set_by_the_text_not_by_the_secrets_held() -> None:
    line = "job 1234: check failed: HTTP 503 from the Travis API, retrying in 5 s " * 3
    few = vault_with()
    many = SecretVault(capacity=20_000)
    for n in range(10_000):
        many.put(f"job-{n}", {"Token": f"token-{n:05d}-{'x' * 30}"}, {"Token"}, CREDENTIALS, 0.0)
    assert many.sizes()["forms"] > 10_000
    for vault in (few, many):
        before = vault.lookups
        assert vault.scrub(line) == line
        assert vault.lookups - before == len(line) - 3  # one index lookup per position


def test_an_empty_vault_looks_at_nothing() -> None:
    vault = SecretVault()
    assert vault.scrub("anything at all", "job-1") == "anything at all"
    assert vault.lookups == 0


def test_forgetting_a_job_drops_its_forms_unless_another_job_holds_the_value() -> None:
    vault = SecretVault()
    vault.put("a", {"Token": "shared-secret"}, {"Token"}, None, 0.0)
    vault.put("b", {"Token": "shared-secret"}, {"Token"}, None, 0.0)
    vault.put("c", {"Token": "own-secret-c"}, {"Token"}, None, 0.0)
    vault.forget("a")
    vault.forget("c")
    assert vault.scrub("shared-secret own-secret-c") == "**** own-secret-c"
    vault.forget("b")
    assert vault.scrub("shared-secret") == "shared-secret"
    assert vault.sizes() == {"entries": 0, "held": 0, "values": 0, "orphans": 0, "forms": 0,
                             "prefixes": 0}


def test_an_evicted_job_is_still_scrubbed_while_it_may_be_mid_effect() -> None:
    vault = SecretVault(capacity=2)
    for n in range(3):
        vault.put(f"job-{n}", {"Token": f"secret-of-{n}"}, {"Token"}, None, 0.0)
    assert vault.get("job-0", 0.0) is None  # evicted: its next step fetches it again
    assert vault.scrub("secret-of-0", "job-0") == REDACTED


def test_a_refetch_replaces_the_old_credentials() -> None:
    vault = SecretVault()
    vault.put("job-1", {}, (), ArtifactCredentials("AKIAOLD-1", "old-secret", "old-session"), 0)
    vault.put("job-1", {}, (), ArtifactCredentials("AKIANEW-1", "new-secret", "new-session"), 1)
    assert vault.scrub("old-secret new-secret") == "old-secret ****"


def test_a_hundred_thousand_jobs_through_a_vault_of_512_leave_it_bounded() -> None:
    capacity = 512
    vault = SecretVault(capacity=capacity)
    peak: dict[str, int] = {}
    for n in range(100_000):
        job_id = f"job-{n}"
        # Mostly plain tokens, as in life; one in ten with a newline and non-ASCII (more forms).
        token = f"tok-{n}\n\u00e9" if n % 10 == 0 else f"trv-{n:020d}"
        vault.put(job_id, {"Token": token, "Shared": "one-token-for-all"}, {"Token", "Shared"},
                  ArtifactCredentials(f"ASIA{n:016d}", f"sk/{n:036d}+", f"IQoJ{n:060d}"),
                  float(n))
        if n % 1000 == 0:
            assert vault.scrub(repr(token), job_id) == f"'{REDACTED}'"
            peak = {k: max(v, peak.get(k, 0)) for k, v in vault.sizes().items()}
        if n % 3:
            vault.forget(job_id)  # two in three finish; the rest are evicted by the LRU
    per_job = 4  # values: the token, the shared one, three credentials; shared counted once
    values = capacity * per_job + capacity * 8 + 1
    assert peak["entries"] <= capacity and peak["held"] <= capacity
    assert peak["values"] <= values
    assert peak["forms"] <= values * 16
    assert peak["prefixes"] <= peak["forms"]
    assert peak["orphans"] <= capacity * 8
    assert vault.scrub("one-token-for-all") == REDACTED  # held by jobs still in the vault


# --- outcomes -----------------------------------------------------------------------------------

SECRET = "s3cr3t-token-value"


def _scrub(text: str) -> str:
    return text.replace(SECRET, REDACTED)


@pytest.mark.parametrize("outcome", [
    Done(RunDetails(f"id-{SECRET}", f"passed with {SECRET}", 100), {"Token": SECRET},
         {"nested": [{"deep": f"x {SECRET}"}, (SECRET,)], SECRET: 1}),
    InProgress(RunDetails(None, f"running as {SECRET}", 5), {"request": SECRET}, 3.0),
    RetryLater(f"try later, {SECRET}", after=1.0, counted=False),
    Failed(FailureType.PERMISSION_ERROR, f"token {SECRET} refused", RunDetails(SECRET)),
    Refused(f"refused {SECRET}"),
    Rejected(f"rejected {SECRET}"),
    Reported(f"note {SECRET}"),
    Cancelled(False, f"cancel failed for {SECRET}"),
])
def test_every_text_of_every_outcome_is_scrubbed(outcome: Outcome) -> None:
    scrubbed = scrub_outcome(outcome, _scrub)
    assert type(scrubbed) is type(outcome)
    assert SECRET not in repr(scrubbed) and REDACTED in repr(scrubbed)


def test_numbers_flags_and_failure_types_are_kept_and_a_clean_outcome_is_returned_as_is() -> None:
    retry = RetryLater(f"wait {SECRET}", after=2.5, counted=False,
                       failure_type=FailureType.JOB_FAILED)
    scrubbed = scrub_outcome(retry, _scrub)
    assert (scrubbed.after, scrubbed.counted, scrubbed.failure_type) == (
        2.5, False, FailureType.JOB_FAILED)
    assert scrubbed.failure_type is FailureType.JOB_FAILED
    clean = Done(RunDetails("1", "passed", 100), {"BuildId": "1"}, {"build_id": 1})
    assert scrub_outcome(clean, _scrub) is clean


# --- logging ------------------------------------------------------------------------------------


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO, io.StringIO]]:
    """A logger with a text and a JSON handler, both behind the vault's filter."""
    vault = vault_with()
    logger = logging.getLogger("tests.secrets")
    text_out, json_out = io.StringIO(), io.StringIO()
    text_handler = logging.StreamHandler(text_out)
    text_handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    json_handler = logging.StreamHandler(json_out)
    json_handler.setFormatter(JSONFormatter())
    for handler in (text_handler, json_handler):
        handler.addFilter(ScrubbingFilter(vault))
        logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        yield logger, text_out, json_out
    finally:
        for handler in (text_handler, json_handler):
            logger.removeHandler(handler)
        logger.propagate = True


def test_a_log_record_args_exception_and_extras_are_scrubbed(
    logged: tuple[logging.Logger, io.StringIO, io.StringIO],
) -> None:
    logger, text_out, json_out = logged
    logger.info("submit with %s and %r", TOKEN, TOKEN, extra={"token": TOKEN,
                                                               "nested": {"t": [TOKEN]}})
    try:
        requests.Request("GET", "http://127.0.0.1/",
                         headers={"Authorization": f"token {TOKEN}"}).prepare()
    except requests.exceptions.InvalidHeader:
        logger.exception("the call failed for %s", CREDENTIALS.access_key_id)
    logger.warning("stack", stack_info=True, extra={"secret": CREDENTIALS.secret_access_key})
    text, lines = text_out.getvalue(), json_out.getvalue()
    assert "InvalidHeader" in text and "Traceback" in text and "exception" in lines
    for form in forms(TOKEN) | forms(CREDENTIALS.access_key_id) | forms(
            CREDENTIALS.secret_access_key):
        assert form not in text and form not in lines, form
    for line in lines.splitlines():
        json.loads(line)


def test_a_record_whose_arguments_do_not_fit_its_format_passes_the_filter_untouched() -> None:
    # Raising from a filter would raise from the log call itself, in the middle of the engine;
    # the handler reports the bad format as it would without a filter.
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "two %s %s", ("only one",), None)
    assert ScrubbingFilter(vault_with()).filter(record) is True
    assert (record.msg, record.args) == ("two %s %s", ("only one",))
