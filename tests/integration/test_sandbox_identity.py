"""The sandbox's Xero Identity over real loopback HTTP: authorise, tokens, rotation, revocation, connections."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sandbox.testing import SandboxServer, TokenSet, pkce_pair
from tests.conftest import TinySandbox


def _authorize(http: httpx.Client, info: dict[str, Any], **overrides: str) -> httpx.Response:
    params = {
        "response_type": "code",
        "client_id": info["client_id"],
        "redirect_uri": info["redirect_uri"],
        "scope": info["scope"],
        "state": "xyz",
    }
    params.update(overrides)
    return http.get("/identity/connect/authorize", params=params, follow_redirects=False)


def _code(response: httpx.Response) -> str:
    assert response.status_code == 302, response.text
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(response.headers["location"]).query))
    assert query["state"] == "xyz"
    return query["code"]


def _exchange(http: httpx.Client, info: dict[str, Any], code: str, **form: str) -> httpx.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": info["redirect_uri"], **form}
    return http.post("/connect/token", data=data, auth=(info["client_id"], info["client_secret"]))


def _refresh(http: httpx.Client, info: dict[str, Any], refresh_token: str) -> httpx.Response:
    return http.post(
        "/connect/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=(info["client_id"], info["client_secret"]),
    )


def _api(
    http: httpx.Client, access_token: str, tenant_id: str | None, path: str = "/api.xro/2.0/Accounts"
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {access_token}", "Accept": "application/json"}
    if tenant_id:
        headers["xero-tenant-id"] = tenant_id
    return http.get(path, headers=headers)


@pytest.fixture
def http(sandbox_server: TinySandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox_server.base_url, timeout=30) as client:
        yield client


def test_full_flow_with_pkce_gives_tokens_and_connections(sandbox_server: TinySandbox, http: httpx.Client) -> None:
    info = sandbox_server.info
    verifier, challenge = pkce_pair()
    code = _code(_authorize(http, info, code_challenge=challenge, code_challenge_method="S256"))
    response = _exchange(http, info, code, code_verifier=verifier)
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 1800  # Xero's 30-minute access tokens
    assert body["refresh_token"]
    assert body["id_token"].count(".") == 2
    connections = http.get("/connections", headers={"Authorization": f"Bearer {body['access_token']}"}).json()
    assert [c["tenantId"] for c in connections] == [sandbox_server.org.tenant_id]
    assert connections[0]["tenantType"] == "ORGANISATION"
    assert connections[0]["tenantName"] == "Tiny Test Ltd"
    by_event = http.get(
        "/connections",
        params={"authEventId": connections[0]["authEventId"]},
        headers={"Authorization": f"Bearer {body['access_token']}"},
    ).json()
    assert by_event == connections
    assert _api(http, body["access_token"], sandbox_server.org.tenant_id).status_code == 200


def test_pkce_verifier_mismatch_is_invalid_grant(sandbox_server: TinySandbox, http: httpx.Client) -> None:
    info = sandbox_server.info
    _verifier, challenge = pkce_pair()
    code = _code(_authorize(http, info, code_challenge=challenge, code_challenge_method="S256"))
    response = _exchange(http, info, code, code_verifier="a" * 64)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_pkce_missing_verifier_is_invalid_grant(sandbox_server: TinySandbox, http: httpx.Client) -> None:
    info = sandbox_server.info
    _verifier, challenge = pkce_pair()
    code = _code(_authorize(http, info, code_challenge=challenge, code_challenge_method="S256"))
    assert _exchange(http, info, code).json()["error"] == "invalid_grant"


def test_plain_pkce_method_is_refused_by_redirect(sandbox_server: TinySandbox, http: httpx.Client) -> None:
    response = _authorize(http, sandbox_server.info, code_challenge="abc", code_challenge_method="plain")
    assert response.status_code == 302
    assert "error=invalid_request" in response.headers["location"]


def test_unregistered_redirect_uri_is_not_redirected_to(sandbox_server: TinySandbox, http: httpx.Client) -> None:
    response = _authorize(http, sandbox_server.info, redirect_uri="http://evil.example/cb")
    assert response.status_code == 400
    assert "location" not in response.headers
    assert "invalid_request" in response.text


def test_redirect_uri_mismatch_at_token_is_invalid_grant(sandbox_server: TinySandbox, http: httpx.Client) -> None:
    info = sandbox_server.info
    code = _code(_authorize(http, info))
    response = http.post(
        "/connect/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": "http://localhost:1/other"},
        auth=(info["client_id"], info["client_secret"]),
    )
    assert response.json() == {"error": "invalid_grant", "error_description": "redirect_uri does not match"}


def test_wrong_client_secret_is_invalid_client(sandbox_server: TinySandbox, http: httpx.Client) -> None:
    info = sandbox_server.info
    code = _code(_authorize(http, info))
    response = http.post(
        "/connect/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": info["redirect_uri"]},
        auth=(info["client_id"], "not-the-secret"),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_client"


def test_secret_in_form_body_is_accepted(sandbox_server: TinySandbox, http: httpx.Client) -> None:
    info = sandbox_server.info
    code = _code(_authorize(http, info))
    response = http.post(
        "/connect/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": info["redirect_uri"],
            "client_id": info["client_id"],
            "client_secret": info["client_secret"],
        },
    )
    assert response.status_code == 200, response.text


def test_code_is_single_use_and_reuse_revokes_the_grant(sandbox_server: TinySandbox, http: httpx.Client) -> None:
    info = sandbox_server.info
    code = _code(_authorize(http, info))
    first = _exchange(http, info, code)
    assert first.status_code == 200
    second = _exchange(http, info, code)
    assert second.status_code == 400
    assert second.json()["error"] == "invalid_grant"
    # RFC 6749 §4.1.2: tokens issued from a replayed code are revoked.
    assert _api(http, first.json()["access_token"], sandbox_server.org.tenant_id).status_code == 401


def test_expired_code_is_invalid_grant(sandbox_server: TinySandbox, http: httpx.Client) -> None:
    info = sandbox_server.info
    code = _code(_authorize(http, info))
    sandbox_server.server.skew_identity_clock(5 * 60 + 1)
    assert _exchange(http, info, code).json()["error"] == "invalid_grant"


def test_refresh_rotates_and_old_token_has_a_30_minute_grace(
    sandbox_server: TinySandbox, http: httpx.Client, tokens: TokenSet
) -> None:
    info = sandbox_server.info
    assert tokens.refresh_token is not None
    first = _refresh(http, info, tokens.refresh_token)
    assert first.status_code == 200
    rotated = first.json()["refresh_token"]
    assert rotated != tokens.refresh_token
    # The previous refresh token still works within 30 minutes of its first use (lost-response retry).
    sandbox_server.server.skew_identity_clock(29 * 60)
    retry = _refresh(http, info, tokens.refresh_token)
    assert retry.status_code == 200
    # ...and not after.
    sandbox_server.server.skew_identity_clock(30 * 60 + 1)
    late = _refresh(http, info, tokens.refresh_token)
    assert late.status_code == 400
    assert late.json()["error"] == "invalid_grant"
    # The newest one is unaffected.
    newest = retry.json()["refresh_token"]
    assert _refresh(http, info, newest).status_code == 200


def test_access_token_expires_after_its_lifetime(
    sandbox_server: TinySandbox, http: httpx.Client, tokens: TokenSet
) -> None:
    tenant = sandbox_server.org.tenant_id
    assert _api(http, tokens.access_token, tenant).status_code == 200
    sandbox_server.server.skew_identity_clock(30 * 60)
    response = _api(http, tokens.access_token, tenant)
    assert response.status_code == 401
    assert response.json()["Detail"].startswith("TokenExpired: token expired at ")


def test_token_lifetime_is_configurable(sandbox_server: TinySandbox, http: httpx.Client) -> None:
    sandbox_server.server.set_tokens(access_ttl_s=5)
    tokens = sandbox_server.server.connect()
    assert tokens.expires_in == 5
    sandbox_server.server.skew_identity_clock(6)
    assert _api(http, tokens.access_token, sandbox_server.org.tenant_id).status_code == 401


def test_missing_or_bad_bearer_is_401_with_xero_problem_body(sandbox_server: TinySandbox, http: httpx.Client) -> None:
    tenant = sandbox_server.org.tenant_id
    missing = http.get("/api.xro/2.0/Accounts", headers={"xero-tenant-id": tenant, "Accept": "application/json"})
    assert missing.status_code == 401
    assert missing.json()["Title"] == "Unauthorized"
    assert missing.json()["Detail"] == "AuthenticationUnsuccessful"
    assert _api(http, "not-a-token", tenant).status_code == 401


def test_missing_or_unconnected_tenant_is_403(
    sandbox_server: TinySandbox, http: httpx.Client, tokens: TokenSet
) -> None:
    for tenant in (None, "00000000-0000-0000-0000-000000000000"):
        response = _api(http, tokens.access_token, tenant)
        assert response.status_code == 403
        assert response.json()["Detail"] == "AuthenticationUnsuccessful"


def test_call_outside_granted_scopes_is_401(sandbox_server: TinySandbox, http: httpx.Client) -> None:
    tokens = sandbox_server.server.connect(scope="offline_access accounting.contacts.read")
    tenant = sandbox_server.org.tenant_id
    assert _api(http, tokens.access_token, tenant, "/api.xro/2.0/Contacts").status_code == 200
    refused = _api(http, tokens.access_token, tenant, "/api.xro/2.0/Invoices")
    assert refused.status_code == 401
    assert refused.json()["Detail"] == "AuthorizationUnsuccessful"


def test_broad_legacy_scope_reads_invoices(sandbox_server: TinySandbox, http: httpx.Client) -> None:
    tokens = sandbox_server.server.connect(scope="offline_access accounting.transactions.read")
    assert _api(http, tokens.access_token, sandbox_server.org.tenant_id, "/api.xro/2.0/Invoices").status_code == 200


def test_unknown_scope_fails_authorize(sandbox_server: TinySandbox, http: httpx.Client) -> None:
    response = _authorize(http, sandbox_server.info, scope="offline_access accounting.everything")
    assert "error=invalid_scope" in response.headers["location"]


def test_journals_need_the_advanced_tier(sandbox_server: TinySandbox, http: httpx.Client) -> None:
    scope = sandbox_server.info["scope"] + " accounting.journals.read"
    tokens = sandbox_server.server.connect(scope=scope)
    tenant = sandbox_server.org.tenant_id
    assert _api(http, tokens.access_token, tenant, "/api.xro/2.0/Journals").status_code == 401
    sandbox_server.server.set_tier("advanced")
    response = _api(http, tokens.access_token, tenant, "/api.xro/2.0/Journals")
    assert response.status_code == 200
    assert [j["JournalNumber"] for j in response.json()["Journals"]] == [1, 2]


def test_revoking_the_refresh_token_removes_connections(
    sandbox_server: TinySandbox, http: httpx.Client, tokens: TokenSet
) -> None:
    info = sandbox_server.info
    response = http.post(
        "/connect/revocation", data={"token": tokens.refresh_token}, auth=(info["client_id"], info["client_secret"])
    )
    assert response.status_code == 200
    assert _refresh(http, info, tokens.refresh_token or "").json()["error"] == "invalid_grant"
    assert _api(http, tokens.access_token, sandbox_server.org.tenant_id).status_code == 401
    # A new consent works and sees the organisation again.
    again = sandbox_server.server.connect()
    assert _api(http, again.access_token, sandbox_server.org.tenant_id).status_code == 200


def test_deleting_a_connection_disconnects_the_tenant(
    sandbox_server: TinySandbox, http: httpx.Client, tokens: TokenSet
) -> None:
    headers = {"Authorization": f"Bearer {tokens.access_token}"}
    connection = http.get("/connections", headers=headers).json()[0]
    assert http.delete(f"/connections/{connection['id']}", headers=headers).status_code == 204
    assert http.get("/connections", headers=headers).json() == []
    assert _api(http, tokens.access_token, sandbox_server.org.tenant_id).status_code == 403
    assert http.delete(f"/connections/{connection['id']}", headers=headers).status_code == 404


def test_consent_page_lists_organisations_and_connects_only_the_ticked_ones(tmp_path: Any) -> None:
    from sandbox.store import SandboxStore
    from tests.conftest import build_tiny_org

    store = SandboxStore(tmp_path / "sandbox.db")
    org = build_tiny_org(store)
    store.close()
    with (
        SandboxServer(tmp_path / "sandbox.db", orgs=0, auto_consent=False) as server,
        httpx.Client(base_url=server.base_url) as http,
    ):
        info = server.info
        page = _authorize(http, info)
        assert page.status_code == 200
        assert "Tiny Test Ltd" in page.text
        assert re.search(rf'name="tenant" value="{org.tenant_id}"', page.text)
        form = {
            "client_id": info["client_id"],
            "redirect_uri": info["redirect_uri"],
            "scope": info["scope"],
            "state": "xyz",
            "decision": "allow",
        }
        # Nothing ticked: a code for no organisation, so /connections is empty.
        code = _code(http.post("/identity/connect/authorize", data=form, follow_redirects=False))
        body = _exchange(http, info, code).json()
        assert http.get("/connections", headers={"Authorization": f"Bearer {body['access_token']}"}).json() == []
        denied = http.post("/identity/connect/authorize", data={**form, "decision": "deny"}, follow_redirects=False)
        assert "error=access_denied" in denied.headers["location"]
        ticked = _code(
            http.post("/identity/connect/authorize", data={**form, "tenant": org.tenant_id}, follow_redirects=False)
        )
        access = _exchange(http, info, ticked).json()["access_token"]
        assert _api(http, access, org.tenant_id).status_code == 200


def test_pkce_client_needs_no_secret_but_others_do(sandbox_server: TinySandbox, http: httpx.Client) -> None:
    info = sandbox_server.info
    verifier, challenge = pkce_pair()
    code = _code(_authorize(http, info, code_challenge=challenge, code_challenge_method="S256"))
    public = {"client_id": info["client_id"]}
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": info["redirect_uri"]}
    exchanged = http.post("/connect/token", data={**form, **public, "code_verifier": verifier})
    assert exchanged.status_code == 200, exchanged.text
    refresh_form = {"grant_type": "refresh_token", "refresh_token": exchanged.json()["refresh_token"], **public}
    assert http.post("/connect/token", data=refresh_form).status_code == 200
    # Without PKCE the client must authenticate.
    plain = _code(_authorize(http, info))
    refused = http.post("/connect/token", data={**form, "code": plain, **public})
    assert refused.json()["error"] == "invalid_client"
