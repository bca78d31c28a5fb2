"""Every way a Travis call can be refused before it does anything (PROTOCOL B2, B7)."""

from __future__ import annotations

import pytest

from actions.travis.emulator import TravisEmulator
from tests.emulator_travis.conftest import OTHER, READ_ONLY, SLUG, Api, accepted, repo_path

LOGIN_REQUIRED = {
    "@type": "error",
    "error_type": "login_required",
    "error_message": "login required",
}
REPO_NOT_FOUND = {
    "@type": "error",
    "error_type": "not_found",
    "error_message": "repository not found (or insufficient access)",
    "resource_type": "repository",
}


def _minimal_repo(emulator: TravisEmulator, slug: str = SLUG) -> dict[str, object]:
    repo_id = next(r["id"] for r in emulator.repositories() if r["slug"] == slug)
    return {
        "@type": "repository",
        "@href": f"/repo/{repo_id}",
        "@representation": "minimal",
        "id": repo_id,
        "name": slug.split("/")[1],
        "slug": slug,
    }


WRONG_CREDENTIALS = {
    "@type": "error",
    "error_type": "wrong_credentials",
    "error_message": "access denied",
}


def test_no_authorization_header_is_403_login_required(
    api: Api, emulator: TravisEmulator
) -> None:
    response = api.call("POST", repo_path() + "/requests", token=None, body={"request": {}})
    assert response.status_code == 403
    assert response.json() == LOGIN_REQUIRED
    assert emulator.requests() == []


@pytest.mark.parametrize(
    "authorization", ["token not-a-token", "Bearer write-token-1", "token", "write-token-1"]
)
def test_credentials_travis_does_not_know_are_403_wrong_credentials(
    api: Api, emulator: TravisEmulator, authorization: str
) -> None:
    """v3/access_control.rb: a header no access control mode accepts is WrongCredentials."""
    response = api.call("POST", repo_path() + "/requests", token=None,
                        headers={"Authorization": authorization}, body={"request": {}})
    assert response.status_code == 403
    assert response.json() == WRONG_CREDENTIALS
    assert emulator.requests() == []


def test_with_the_text_setting_scope_check_refuses_an_unknown_token_in_plain_text(
    api: Api, emulator: TravisEmulator
) -> None:
    """app/middleware/scope_check.rb halts 403 'access denied' before v3 sees the call; a
    scheme it does not read (Bearer) still reaches v3's JSON answer."""
    emulator.configure(wrong_token="text")
    plain = api.call("POST", repo_path() + "/requests", token="not-a-token",
                     body={"request": {}})
    assert (plain.status_code, plain.text) == (403, "access denied")
    assert not plain.headers["Content-Type"].startswith("application/json")
    bearer = api.call("POST", repo_path() + "/requests", token=None,
                      headers={"Authorization": "Bearer write-token-1"}, body={"request": {}})
    assert bearer.json() == WRONG_CREDENTIALS
    assert emulator.requests() == []


def test_reads_need_a_token_too(api: Api) -> None:
    for path in (repo_path() + "/requests", repo_path() + "/builds", "/build/500001", "/user"):
        response = api.get(path, token=None)
        assert response.status_code == 403, path
        assert response.json() == LOGIN_REQUIRED


def test_unknown_repository_is_404(api: Api) -> None:
    for path in (repo_path("octo/nothing") + "/requests", "/repo/999999/requests"):
        response = api.call("POST", path, body={"request": {}})
        assert response.status_code == 404
        assert response.json() == REPO_NOT_FOUND


def test_token_without_access_to_the_repository_is_404_not_403(
    api: Api, emulator: TravisEmulator
) -> None:
    response = api.trigger(token=OTHER)
    assert response.status_code == 404
    assert response.json() == REPO_NOT_FOUND
    listing = api.get(repo_path() + "/builds", token=OTHER)
    assert listing.status_code == 404
    assert listing.json() == REPO_NOT_FOUND
    assert emulator.requests() == []


def test_read_only_token_cannot_trigger(api: Api, emulator: TravisEmulator) -> None:
    response = api.trigger(token=READ_ONLY)
    assert response.status_code == 403
    assert response.json() == {
        "@type": "error",
        "error_type": "insufficient_access",
        "error_message": "operation requires create_request access to repository",
        "permission": "create_request",
        "resource_type": "repository",
        "repository": _minimal_repo(emulator),
    }
    assert emulator.requests() == []


def test_read_only_token_can_read(api: Api) -> None:
    request_id = accepted(api)["request"]["id"]
    assert api.get(f"{repo_path()}/request/{request_id}", token=READ_ONLY).status_code == 200
    assert api.get(repo_path() + "/builds", token=READ_ONLY).status_code == 200


def test_inactive_repository_is_406_on_trigger_only(api: Api, emulator: TravisEmulator) -> None:
    emulator.update_repository(SLUG, active=False)
    response = api.trigger()
    assert response.status_code == 406
    assert response.json() == {
        "@type": "error",
        "error_type": "repository_inactive",
        "error_message": "cannot create requests on an inactive repository",
        "repository": _minimal_repo(emulator),
    }
    assert api.get(repo_path() + "/requests").status_code == 200
    emulator.update_repository(SLUG, active=True)
    assert api.trigger().status_code == 202


def test_unknown_route_is_404_not_found(api: Api, emulator: TravisEmulator) -> None:
    for method, path in (("GET", "/nowhere"), ("DELETE", repo_path() + "/requests")):
        response = api.call(method, path)
        assert response.status_code == 404
        assert response.json()["error_type"] == "not_found"
    assert emulator.call_counts()["GET (unknown route)"] == 1


def test_missing_api_version_is_refused(api: Api, emulator: TravisEmulator) -> None:
    response = api.call("POST", repo_path() + "/requests", body={}, version=False)
    assert response.status_code == 400
    body = response.json()
    assert body["error_type"] == "wrong_params"
    assert "Travis-API-Version: 3" in body["error_message"]
    wrong = api.call(
        "POST",
        repo_path() + "/requests",
        body={},
        version=False,
        headers={"Travis-API-Version": "2"},
    )
    assert wrong.status_code == 400
    assert emulator.requests() == []


def test_v3_media_type_selects_the_api(api: Api) -> None:
    response = api.call(
        "GET",
        repo_path() + "/requests",
        version=False,
        headers={"Accept": "application/vnd.travis-ci.3+json"},
    )
    assert response.status_code == 200


def test_token_is_never_echoed_in_errors(api: Api) -> None:
    secret = "secret-token-xyz"
    response = api.trigger(token=secret)
    assert secret not in response.text
    response = api.trigger(token=READ_ONLY)
    assert READ_ONLY not in response.text
