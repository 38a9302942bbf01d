"""Xero Identity, as one sandbox host: consent page, token endpoint, revocation, connections.

This module owns the OAuth 2.0 side: the ready-registered app and demo user, authorisation codes,
grants, rotating refresh tokens, access tokens and connections, all in `sandbox.store`'s tables
(tokens are kept only as sha256 hashes). It also decides whether a bearer token may call the
Accounting API for a tenant with a scope (`authenticate_bearer`, `check_call`).

It must not know about rate limits, faults or records. Times come from an injected clock
(`now_ms`), separate from the business clock that `advance` moves, so tests can jump past the
refresh grace window without sleeping.

Behaviour and sources:
- endpoints and hosts: https://developer.xero.com/documentation/guides/oauth2/auth-flow/ and the
  SPEC securitySchemes (login.xero.com/identity/connect/authorize, identity.xero.com/connect/token);
- PKCE S256 only: https://developer.xero.com/documentation/guides/oauth2/pkce-flow/ ;
- 30-minute access tokens, rotating refresh tokens with a 30-minute grace for the previous one,
  60 days for an unused one: https://developer.xero.com/faq/oauth2 ;
- revocation "removes all their connections to your app": xero-node 4.10.1 release notes;
- connections fields: `xero-identity.yaml` `Connection`;
- error bodies `{"error": "invalid_grant"}`: RFC 6749 §5.2 as Xero's token endpoint answers them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import secrets
import time
import urllib.parse
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from sandbox.limits import write_transaction
from sandbox.store import SandboxStore


def _row(store: SandboxStore, sql: str, params: tuple[Any, ...] = ()) -> Any:
    """The first row of a query, or None."""
    return next(iter(store.query(sql, params)), None)


if TYPE_CHECKING:
    from sandbox.app import Runtime

MINUTE_MS = 60_000
DEFAULT_ACCESS_TTL_S = 30 * 60  # https://developer.xero.com/faq/oauth2
DEFAULT_REFRESH_GRACE_S = 30 * 60  # ibid.: "retry ... for a grace period of 30 minutes"
DEFAULT_CODE_TTL_S = 5 * 60  # authorisation codes are single use and last 5 minutes
UNUSED_REFRESH_TTL_MS = 60 * 24 * 60 * MINUTE_MS  # "Unused refresh tokens expire after 60 days"

IDENTITY_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})
BROAD_SCOPES = frozenset(
    {
        "accounting.transactions",
        "accounting.transactions.read",
        "accounting.reports.read",
        "accounting.settings",
        "accounting.settings.read",
        "accounting.contacts",
        "accounting.contacts.read",
        "accounting.attachments",
        "accounting.attachments.read",
        "accounting.journals.read",
        "accounting.budgets.read",
        "assets",
        "assets.read",
        "files",
        "files.read",
    }
)
GRANULAR_SCOPES = frozenset(
    {
        "accounting.invoices",
        "accounting.invoices.read",
        "accounting.payments",
        "accounting.payments.read",
        "accounting.banktransactions",
        "accounting.banktransactions.read",
        "accounting.manualjournals",
        "accounting.manualjournals.read",
        "accounting.reports.aged.read",
        "accounting.reports.balancesheet.read",
        "accounting.reports.banksummary.read",
        "accounting.reports.budgetsummary.read",
        "accounting.reports.executivesummary.read",
        "accounting.reports.profitandloss.read",
        "accounting.reports.trialbalance.read",
        "accounting.reports.taxreports.read",
        "accounting.reports.tenninetynine.read",
    }
)
ALL_SCOPES = IDENTITY_SCOPES | BROAD_SCOPES | GRANULAR_SCOPES

# The read-everything scope string for an app created after 2 March 2026 (research notes §5.2).
READ_EVERYTHING_SCOPE = (
    "offline_access openid profile email accounting.settings.read accounting.contacts.read"
    " accounting.invoices.read accounting.payments.read accounting.banktransactions.read"
    " accounting.manualjournals.read accounting.attachments.read accounting.budgets.read"
    " accounting.reports.aged.read accounting.reports.balancesheet.read accounting.reports.banksummary.read"
    " accounting.reports.budgetsummary.read accounting.reports.executivesummary.read"
    " accounting.reports.profitandloss.read accounting.reports.trialbalance.read"
    " accounting.reports.taxreports.read"
)
JOURNAL_TIERS = frozenset({"advanced", "enterprise"})  # Journals behind the Advanced tier since 2 March 2026
TIERS = ("starter", "core", "plus", "advanced", "enterprise")

DEFAULT_USER_EMAIL = "demo@strongroom.example"
DEFAULT_REDIRECT_URI = "http://localhost:8766/callback"  # not the sandbox's own default port


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def wall_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class TokenSettings:
    access_ttl_s: int = DEFAULT_ACCESS_TTL_S
    refresh_grace_s: int = DEFAULT_REFRESH_GRACE_S
    code_ttl_s: int = DEFAULT_CODE_TTL_S

    @classmethod
    def load(cls, store: SandboxStore) -> TokenSettings:
        raw = store.get_config("tokens", {}) or {}
        return cls(**{k: int(v) for k, v in raw.items() if k in cls.__dataclass_fields__})


def identity_now_ms(store: SandboxStore) -> int:
    """The identity clock: wall time plus a skew tests set through `/_sandbox/clock`."""
    return wall_ms() + int(store.get_config("identity_skew_ms", 0) or 0)


class OAuthError(Exception):
    """An error the token or revocation endpoint answers as `{"error": ...}`."""

    def __init__(self, error: str, description: str = "", status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status

    def response(self) -> JSONResponse:
        body = {"error": self.error}
        if self.description:
            body["error_description"] = self.description
        return JSONResponse(body, status_code=self.status, headers={"cache-control": "no-store"})


class BearerError(Exception):
    """A call the Accounting API refuses before reading anything: 401 or 403 with Xero's problem body.

    Shapes seen from Xero: 401 `TokenExpired: token expired at ...` (freakboy3742/pyxero#337),
    401 `AuthenticationUnsuccessful` for a bad token (XeroAPI/xero-php-oauth2#138),
    401 `AuthorizationUnsuccessful` for a scope the token lacks (XeroAPI/Xero-NetStandard#298, #178),
    403 `AuthenticationUnsuccessful` for a missing or unconnected xero-tenant-id (NangoHQ/nango#203,
    XeroAPI/xero-python#116).
    """

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status} {detail}")
        self.status = status
        self.detail = detail

    def body(self) -> dict[str, Any]:
        return {
            "Type": None,
            "Title": "Unauthorized" if self.status == 401 else "Forbidden",
            "Status": self.status,
            "Detail": self.detail,
            "Instance": str(uuid.uuid4()),
            "Extensions": {},
        }


# ---------------------------------------------------------------------------------------------
# Registration: the ready-made app and the demo user


@dataclass(frozen=True)
class AppInfo:
    client_id: str
    client_secret: str | None
    redirect_uris: tuple[str, ...]
    tier: str
    name: str


def ensure_default_app(
    store: SandboxStore, *, seed: int, redirect_uris: tuple[str, ...] = (), tier: str | None = None
) -> AppInfo:
    """Register (once) the app whose credentials `--info` publishes; deterministic from the seed."""
    digest = hashlib.sha256(f"strongroom-sandbox-app:{seed}".encode()).digest()
    client_id = digest[:16].hex().upper()  # Xero client ids are 32 upper-case hex characters
    secret_digest = hashlib.sha256(b"strongroom-sandbox-secret:" + digest).digest()
    client_secret = base64.urlsafe_b64encode(secret_digest).decode().rstrip("=")[:48]
    with write_transaction(store):
        row = _row(store, "SELECT redirect_uris, tier FROM apps WHERE client_id=?", (client_id,))
        if row is None:
            uris = list(redirect_uris or (DEFAULT_REDIRECT_URI,))
            store.query(
                "INSERT INTO apps(client_id, client_secret, name, redirect_uris, allowed_scopes, tier, created_ms)"
                " VALUES (?,?,?,?,?,?,?)",
                (
                    client_id,
                    client_secret,
                    "Strongroom Sandbox App",
                    json.dumps(uris),
                    " ".join(sorted(ALL_SCOPES)),
                    tier or "core",
                    wall_ms(),
                ),
            )
        else:
            uris = json.loads(row[0])
            for uri in redirect_uris:
                if uri not in uris:
                    uris.append(uri)
            store.query(
                "UPDATE apps SET redirect_uris=?, tier=? WHERE client_id=?",
                (json.dumps(uris), tier or row[1], client_id),
            )
    app = load_app(store, client_id)
    assert app is not None
    return app


def load_app(store: SandboxStore, client_id: str) -> AppInfo | None:
    row = _row(
        store, "SELECT client_id, client_secret, redirect_uris, tier, name FROM apps WHERE client_id=?", (client_id,)
    )
    if row is None:
        return None
    return AppInfo(row[0], row[1], tuple(json.loads(row[2])), row[3], row[4])


def ensure_default_user(store: SandboxStore) -> str:
    """The demo user, a member of every organisation in the sandbox (new ones included)."""
    user_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"strongroom-sandbox-user:{DEFAULT_USER_EMAIL}"))
    with write_transaction(store):
        store.query(
            "INSERT OR IGNORE INTO users(user_id, email, name) VALUES (?,?,?)",
            (user_id, DEFAULT_USER_EMAIL, "Demo User"),
        )
        store.query("INSERT OR IGNORE INTO user_orgs(user_id, tenant_id) SELECT ?, tenant_id FROM orgs", (user_id,))
    return user_id


def set_app_tier(store: SandboxStore, tier: str, client_id: str | None = None) -> None:
    if tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r}; one of {', '.join(TIERS)}")
    if client_id:
        store.query("UPDATE apps SET tier=? WHERE client_id=?", (tier, client_id))
    else:
        store.query("UPDATE apps SET tier=?", (tier,))


# ---------------------------------------------------------------------------------------------
# Authorisation codes


@dataclass(frozen=True)
class AuthorizeRequest:
    client_id: str
    redirect_uri: str
    scope: str
    state: str
    code_challenge: str
    code_challenge_method: str


def parse_authorize(params: Mapping[str, str], store: SandboxStore) -> tuple[AuthorizeRequest, AppInfo]:
    """Validate what can be validated before showing consent. Raises `OAuthError`.

    Client and redirect URI errors are shown on the page and never redirected (RFC 6749 §4.1.2.1);
    the caller redirects other errors back to the client.
    """
    client_id = params.get("client_id", "")
    app = load_app(store, client_id)
    if app is None:
        raise OAuthError("unauthorized_client", "Unknown client or client not enabled")
    redirect_uri = params.get("redirect_uri", "")
    if redirect_uri not in app.redirect_uris:  # exact match, no wildcards (https://developer.xero.com/faq/oauth2)
        raise OAuthError("invalid_request", "Invalid redirect_uri")
    request = AuthorizeRequest(
        client_id=client_id,
        redirect_uri=redirect_uri,
        scope=" ".join(params.get("scope", "").split()),
        state=params.get("state", ""),
        code_challenge=params.get("code_challenge", ""),
        code_challenge_method=params.get("code_challenge_method", ""),
    )
    return request, app


def check_authorize_scope(request: AuthorizeRequest) -> None:
    if params_error := _authorize_error(request):
        raise OAuthError(*params_error)


def _authorize_error(request: AuthorizeRequest) -> tuple[str, str] | None:
    scopes = set(request.scope.split())
    if not scopes:
        return ("invalid_scope", "No scope requested")
    unknown = scopes - ALL_SCOPES
    if unknown:
        # Asking for a scope the app may not have fails the whole request (research notes §5.2).
        return ("invalid_scope", f"Invalid scope for client: {' '.join(sorted(unknown))}")
    if request.code_challenge and request.code_challenge_method != "S256":
        return ("invalid_request", "code_challenge_method must be S256")
    return None


def issue_code(store: SandboxStore, request: AuthorizeRequest, *, user_id: str, tenants: list[str], now_ms: int) -> str:
    settings = TokenSettings.load(store)
    code = secrets.token_urlsafe(32)
    store.query(
        "INSERT INTO auth_codes(code, client_id, user_id, redirect_uri, scope, code_challenge, code_challenge_method,"
        " tenants, auth_event_id, expires_ms) VALUES (?,?,?,?,?,?,?,?,?,?)",
        (
            hash_token(code),
            request.client_id,
            user_id,
            request.redirect_uri,
            request.scope,
            request.code_challenge or None,
            request.code_challenge_method or None,
            json.dumps(tenants),
            str(uuid.uuid4()),
            now_ms + settings.code_ttl_s * 1000,
        ),
    )
    return code


def redirect_with(redirect_uri: str, params: Mapping[str, str]) -> str:
    separator = "&" if "?" in redirect_uri else "?"
    return redirect_uri + separator + urllib.parse.urlencode({k: v for k, v in params.items() if v})


# ---------------------------------------------------------------------------------------------
# Token endpoint


def client_credentials(headers: Mapping[str, str], form: Mapping[str, str]) -> tuple[str, str | None]:
    """Client id and secret from HTTP Basic (what Xero documents) or the form body."""
    auth = headers.get("authorization", "")
    if auth.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(auth[6:].strip()).decode()
        except (ValueError, UnicodeDecodeError) as exc:
            raise OAuthError("invalid_client", "Malformed Basic credentials") from exc
        client_id, _, secret = decoded.partition(":")
        return urllib.parse.unquote_plus(client_id), urllib.parse.unquote_plus(secret)
    return form.get("client_id", ""), form.get("client_secret")


def _authenticate_client(store: SandboxStore, client_id: str, secret: str | None, *, pkce: bool) -> AppInfo:
    app = load_app(store, client_id)
    if app is None:
        raise OAuthError("invalid_client")
    if secret is None and pkce:
        return app  # a PKCE exchange proves possession without the secret (Xero's PKCE apps have none)
    if app.client_secret is not None and not hmac.compare_digest(secret or "", app.client_secret):
        raise OAuthError("invalid_client")
    return app


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _jwt(claims: Mapping[str, Any], key: bytes) -> str:
    """A JWT-shaped token (HS256); Xero's access and id tokens are JWTs clients sometimes decode."""
    header = _b64url(orjson.dumps({"alg": "HS256", "typ": "JWT"}))
    payload = _b64url(orjson.dumps(dict(claims)))
    signature = hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(signature)}"


def _issue_tokens(store: SandboxStore, *, grant_id: str, app: AppInfo, now_ms: int, issuer: str) -> dict[str, Any]:
    grant = _row(store, "SELECT user_id, scope, auth_event_id FROM grants WHERE grant_id=?", (grant_id,))
    user_id, scope, auth_event_id = grant
    settings = TokenSettings.load(store)
    key = (app.client_secret or app.client_id).encode()
    expires_ms = now_ms + settings.access_ttl_s * 1000
    access_token = _jwt(
        {
            "iss": issuer,
            "nbf": now_ms // 1000,
            "exp": expires_ms // 1000,
            "client_id": app.client_id,
            "sub": user_id,
            "xero_userid": user_id,
            "authentication_event_id": auth_event_id,
            "jti": secrets.token_hex(16),
            "scope": scope.split(),
        },
        key,
    )
    store.query(
        "INSERT INTO access_tokens(token_hash, grant_id, expires_ms) VALUES (?,?,?)",
        (hash_token(access_token), grant_id, expires_ms),
    )
    body: dict[str, Any] = {
        "access_token": access_token,
        "expires_in": settings.access_ttl_s,
        "token_type": "Bearer",
        "scope": scope,
    }
    if "openid" in scope.split():
        email, name = _row(store, "SELECT email, name FROM users WHERE user_id=?", (user_id,))
        given, _, family = name.partition(" ")
        body["id_token"] = _jwt(
            {
                "iss": issuer,
                "aud": app.client_id,
                "iat": now_ms // 1000,
                "exp": expires_ms // 1000,
                "sub": user_id,
                "xero_userid": user_id,
                "authentication_event_id": auth_event_id,
                "email": email,
                "given_name": given,
                "family_name": family,
            },
            key,
        )
    if "offline_access" in scope.split():  # refresh tokens only with offline_access (Xero FAQ)
        refresh_token = secrets.token_hex(32)
        store.query(
            "INSERT INTO refresh_tokens(token_hash, grant_id, issued_ms) VALUES (?,?,?)",
            (hash_token(refresh_token), grant_id, now_ms),
        )
        body["refresh_token"] = refresh_token
    return body


def exchange_code(
    store: SandboxStore,
    headers: Mapping[str, str],
    form: Mapping[str, str],
    *,
    now_ms: int,
    issuer: str,
) -> dict[str, Any]:
    with write_transaction(store):
        # Errors are returned, not raised, inside the transaction so that consuming the code and
        # revoking after a reuse are committed even though the request fails.
        outcome = _exchange_code(store, headers, form, now_ms=now_ms, issuer=issuer)
    if isinstance(outcome, OAuthError):
        raise outcome
    return outcome


def _exchange_code(
    store: SandboxStore,
    headers: Mapping[str, str],
    form: Mapping[str, str],
    *,
    now_ms: int,
    issuer: str,
) -> dict[str, Any] | OAuthError:
    client_id, secret = client_credentials(headers, form)
    verifier = form.get("code_verifier", "")
    code_hash = hash_token(form.get("code", ""))
    row = _row(
        store,
        "SELECT client_id, user_id, redirect_uri, scope, code_challenge, tenants, auth_event_id, expires_ms, used"
        " FROM auth_codes WHERE code=?",
        (code_hash,),
    )
    app = _authenticate_client(store, client_id, secret, pkce=bool(row and row[4] and verifier))
    if row is None:
        return OAuthError("invalid_grant")
    code_client, user_id, redirect_uri, scope, challenge, tenants, auth_event_id, expires_ms, used = row
    if used:
        # RFC 6749 §4.1.2: a reused code is refused, and the tokens it produced should be revoked.
        revoke_grant(store, "SELECT grant_id FROM grants WHERE auth_event_id=?", (auth_event_id,))
        return OAuthError("invalid_grant", "Authorisation code already used")
    store.query("UPDATE auth_codes SET used=1 WHERE code=?", (code_hash,))  # single use, even when it fails
    if code_client != app.client_id:
        return OAuthError("invalid_grant")
    if now_ms > expires_ms:
        return OAuthError("invalid_grant", "Authorisation code expired")
    if form.get("redirect_uri", "") != redirect_uri:
        return OAuthError("invalid_grant", "redirect_uri does not match")
    if challenge:
        computed = _b64url(hashlib.sha256(verifier.encode()).digest())
        if not verifier or not hmac.compare_digest(computed, challenge):
            return OAuthError("invalid_grant", "PKCE verification failed")
    grant_id = str(uuid.uuid4())
    store.query(
        "INSERT INTO grants(grant_id, client_id, user_id, scope, auth_event_id, created_ms) VALUES (?,?,?,?,?,?)",
        (grant_id, app.client_id, user_id, scope, auth_event_id, now_ms),
    )
    for tenant_id in json.loads(tenants):
        # updatedDateUtc "may differ to the created date if the user has disconnected and
        # subsequently reconnected this tenant" (xero-identity.yaml).
        store.query(
            "INSERT INTO connections(id, client_id, user_id, tenant_id, auth_event_id, created_ms, updated_ms)"
            " VALUES (?,?,?,?,?,?,?) ON CONFLICT(client_id, user_id, tenant_id) DO UPDATE SET"
            " auth_event_id=excluded.auth_event_id, updated_ms=excluded.updated_ms",
            (str(uuid.uuid4()), app.client_id, user_id, tenant_id, auth_event_id, now_ms, now_ms),
        )
    return _issue_tokens(store, grant_id=grant_id, app=app, now_ms=now_ms, issuer=issuer)


def refresh(
    store: SandboxStore,
    headers: Mapping[str, str],
    form: Mapping[str, str],
    *,
    now_ms: int,
    issuer: str,
) -> dict[str, Any]:
    client_id, secret = client_credentials(headers, form)
    token_hash = hash_token(form.get("refresh_token", ""))
    settings = TokenSettings.load(store)
    with write_transaction(store):
        row = _row(
            store,
            "SELECT r.grant_id, r.issued_ms, r.superseded_ms, g.client_id, g.revoked,"
            " EXISTS(SELECT 1 FROM auth_codes c WHERE c.auth_event_id=g.auth_event_id AND c.code_challenge IS NOT NULL)"
            " FROM refresh_tokens r JOIN grants g ON g.grant_id = r.grant_id WHERE r.token_hash=?",
            (token_hash,),
        )
        # A grant obtained with PKCE refreshes with the client id alone, as Xero's PKCE apps do.
        app = _authenticate_client(store, client_id, secret, pkce=bool(row and row[5]))
        if row is None:
            raise OAuthError("invalid_grant")
        grant_id, issued_ms, superseded_ms, grant_client, revoked, _pkce = row
        if revoked or grant_client != app.client_id:
            raise OAuthError("invalid_grant")
        if superseded_ms is not None and now_ms - superseded_ms > settings.refresh_grace_s * 1000:
            raise OAuthError("invalid_grant")
        if superseded_ms is None and now_ms - issued_ms > UNUSED_REFRESH_TTL_MS:
            raise OAuthError("invalid_grant")
        body = _issue_tokens(store, grant_id=grant_id, app=app, now_ms=now_ms, issuer=issuer)
        # The grace window runs from the token's first use; later retries do not extend it.
        store.query(
            "UPDATE refresh_tokens SET superseded_ms=coalesce(superseded_ms, ?), successor_hash=? WHERE token_hash=?",
            (now_ms, hash_token(body.get("refresh_token", "")), token_hash),
        )
    return body


def revoke_grant(store: SandboxStore, grant_sql: str, params: tuple[Any, ...]) -> None:
    for (grant_id,) in list(store.query(grant_sql, params)):
        client_id, user_id = _row(store, "SELECT client_id, user_id FROM grants WHERE grant_id=?", (grant_id,))
        store.query("UPDATE grants SET revoked=1 WHERE grant_id=?", (grant_id,))
        store.query("DELETE FROM access_tokens WHERE grant_id=?", (grant_id,))
        store.query("DELETE FROM refresh_tokens WHERE grant_id=?", (grant_id,))
        # "removes all their connections to your app" (xero-node 4.10.1 release notes)
        store.query("DELETE FROM connections WHERE client_id=? AND user_id=?", (client_id, user_id))


def revoke(store: SandboxStore, headers: Mapping[str, str], form: Mapping[str, str]) -> None:
    client_id, secret = client_credentials(headers, form)
    _authenticate_client(store, client_id, secret, pkce=False)
    token_hash = hash_token(form.get("token", ""))
    with write_transaction(store):
        revoke_grant(
            store,
            "SELECT r.grant_id FROM refresh_tokens r JOIN grants g ON g.grant_id=r.grant_id"
            " WHERE r.token_hash=? AND g.client_id=?",
            (token_hash, client_id),
        )


# ---------------------------------------------------------------------------------------------
# Bearer tokens on API calls


@dataclass(frozen=True)
class Caller:
    grant_id: str
    client_id: str
    user_id: str
    scopes: frozenset[str]
    tier: str


def authenticate_bearer(store: SandboxStore, headers: Mapping[str, str], *, now_ms: int) -> Caller:
    auth = headers.get("authorization", "")
    if not auth.lower().startswith("bearer ") or not auth[7:].strip():
        raise BearerError(401, "AuthenticationUnsuccessful")
    row = _row(
        store,
        "SELECT t.expires_ms, g.grant_id, g.client_id, g.user_id, g.scope, g.revoked, a.tier FROM access_tokens t"
        " JOIN grants g ON g.grant_id=t.grant_id JOIN apps a ON a.client_id=g.client_id WHERE t.token_hash=?",
        (hash_token(auth[7:].strip()),),
    )
    if row is None or row[5]:
        raise BearerError(401, "AuthenticationUnsuccessful")
    expires_ms, grant_id, client_id, user_id, scope, _revoked, tier = row
    if now_ms >= expires_ms:
        stamp = time.strftime("%m/%d/%Y %H:%M:%S", time.gmtime(expires_ms / 1000))
        raise BearerError(401, f"TokenExpired: token expired at {stamp}")
    return Caller(grant_id, client_id, user_id, frozenset(scope.split()), tier)


def check_tenant(store: SandboxStore, caller: Caller, headers: Mapping[str, str]) -> str:
    tenant_id = headers.get("xero-tenant-id", "").strip()
    if not tenant_id:
        raise BearerError(403, "AuthenticationUnsuccessful")
    row = _row(
        store,
        "SELECT tenant_id FROM connections WHERE client_id=? AND user_id=? AND lower(tenant_id)=lower(?)",
        (caller.client_id, caller.user_id, tenant_id),
    )
    if row is None:
        raise BearerError(403, "AuthenticationUnsuccessful")
    return str(row[0])


def check_scope(caller: Caller, needed: frozenset[str]) -> None:
    if not caller.scopes & needed:
        raise BearerError(401, "AuthorizationUnsuccessful")


# ---------------------------------------------------------------------------------------------
# Connections


def _iso_utc(ms: int) -> str:
    # Xero writes these with 7 fractional digits and no zone (xero-identity.yaml example
    # "2019-12-07T18:46:19.5165400"), but the same spec declares `format: date-time`, which requires
    # a zone; the sandbox adds "Z" so responses validate. Clients must accept both (docs/sandbox.md).
    seconds, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}0000Z"


def list_connections(store: SandboxStore, caller: Caller, auth_event_id: str | None) -> list[dict[str, Any]]:
    sql = (
        "SELECT c.id, c.auth_event_id, c.tenant_id, o.name, c.created_ms, c.updated_ms FROM connections c"
        " JOIN orgs o ON o.tenant_id=c.tenant_id WHERE c.client_id=? AND c.user_id=?"
    )
    params: list[Any] = [caller.client_id, caller.user_id]
    if auth_event_id:
        sql += " AND c.auth_event_id=?"
        params.append(auth_event_id)
    return [
        {
            "id": cid,
            "authEventId": event,
            "tenantId": tenant,
            "tenantType": "ORGANISATION",
            "tenantName": name,
            "createdDateUtc": _iso_utc(created),
            "updatedDateUtc": _iso_utc(updated),
        }
        for cid, event, tenant, name, created, updated in store.query(
            sql + " ORDER BY c.created_ms, c.id", tuple(params)
        )
    ]


def delete_connection(store: SandboxStore, caller: Caller, connection_id: str) -> bool:
    with write_transaction(store):
        found = store.scalar(
            "SELECT count(*) FROM connections WHERE id=? AND client_id=? AND user_id=?",
            (connection_id, caller.client_id, caller.user_id),
        )
        store.query("DELETE FROM connections WHERE id=?", (connection_id,))
    return bool(found)


# ---------------------------------------------------------------------------------------------
# HTTP handlers (sync: Starlette runs them in its thread pool, each thread with its own store)


async def _form_pairs(request: Request) -> list[tuple[str, str]]:
    """An `application/x-www-form-urlencoded` body (the only form encoding OAuth uses), in order."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return urllib.parse.parse_qsl(body, keep_blank_values=True)


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


def _consent_page(store: SandboxStore, request: AuthorizeRequest, app: AppInfo, user_id: str) -> str:
    orgs = list(
        store.query(
            "SELECT o.tenant_id, o.name, o.country FROM orgs o JOIN user_orgs u ON u.tenant_id=o.tenant_id"
            " WHERE u.user_id=? ORDER BY o.name, o.tenant_id",
            (user_id,),
        )
    )
    hidden = "".join(
        f'<input type="hidden" name="{name}" value="{html.escape(value)}">'
        for name, value in (
            ("client_id", request.client_id),
            ("redirect_uri", request.redirect_uri),
            ("scope", request.scope),
            ("state", request.state),
            ("code_challenge", request.code_challenge),
            ("code_challenge_method", request.code_challenge_method),
        )
    )
    boxes = "".join(
        f'<li><label><input type="checkbox" name="tenant" value="{html.escape(tid)}" checked> '
        f"{html.escape(name)} ({html.escape(country)})</label></li>"
        for tid, name, country in orgs
    )
    scopes = "".join(f"<li><code>{html.escape(s)}</code></li>" for s in request.scope.split())
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Xero sandbox: allow access</title></head><body>"
        f"<h1>{html.escape(app.name)} wants access to your organisations</h1>"
        f"<form method='post' action='/identity/connect/authorize'>{hidden}"
        f"<h2>Organisations</h2><ul>{boxes}</ul><h2>Permissions</h2><ul>{scopes}</ul>"
        "<button type='submit' name='decision' value='allow'>Allow access</button> "
        "<button type='submit' name='decision' value='deny'>Cancel</button></form></body></html>"
    )


def authorize(request: Request) -> Response:
    runtime = _runtime(request)
    store = runtime.store()
    params = dict(request.query_params)
    try:
        auth_request, app = parse_authorize(params, store)
    except OAuthError as error:
        return HTMLResponse(f"<h1>Error: {html.escape(error.error)}</h1><p>{html.escape(error.description)}</p>", 400)
    if params.get("response_type") != "code":
        return RedirectResponse(
            redirect_with(
                auth_request.redirect_uri, {"error": "unsupported_response_type", "state": auth_request.state}
            ),
            302,
        )
    if problem := _authorize_error(auth_request):
        return RedirectResponse(
            redirect_with(
                auth_request.redirect_uri,
                {"error": problem[0], "error_description": problem[1], "state": auth_request.state},
            ),
            302,
        )
    user_id = ensure_default_user(store)
    if runtime.auto_consent():
        tenants = [t for (t,) in store.query("SELECT tenant_id FROM user_orgs WHERE user_id=?", (user_id,))]
        code = issue_code(store, auth_request, user_id=user_id, tenants=tenants, now_ms=identity_now_ms(store))
        location = redirect_with(
            auth_request.redirect_uri, {"code": code, "scope": auth_request.scope, "state": auth_request.state}
        )
        return RedirectResponse(location, 302)
    return HTMLResponse(_consent_page(store, auth_request, app, user_id))


async def authorize_post(request: Request) -> Response:
    pairs = await _form_pairs(request)
    fields = {k: v for k, v in pairs if k != "tenant"}
    tenants = [v for k, v in pairs if k == "tenant"]
    runtime = _runtime(request)
    return await runtime.in_thread(_authorize_post, runtime, fields, tenants)


def _authorize_post(runtime: Runtime, fields: dict[str, str], tenants: list[str]) -> Response:
    store = runtime.store()
    try:
        auth_request, _app = parse_authorize(fields, store)
    except OAuthError as error:
        return HTMLResponse(f"<h1>Error: {html.escape(error.error)}</h1>", 400)
    if problem := _authorize_error(auth_request):
        return RedirectResponse(
            redirect_with(auth_request.redirect_uri, {"error": problem[0], "state": auth_request.state}), 302
        )
    if fields.get("decision") != "allow":
        return RedirectResponse(
            redirect_with(auth_request.redirect_uri, {"error": "access_denied", "state": auth_request.state}), 302
        )
    user_id = ensure_default_user(store)
    member = {t for (t,) in store.query("SELECT tenant_id FROM user_orgs WHERE user_id=?", (user_id,))}
    chosen = [t for t in tenants if t in member]
    code = issue_code(store, auth_request, user_id=user_id, tenants=chosen, now_ms=identity_now_ms(store))
    return RedirectResponse(
        redirect_with(
            auth_request.redirect_uri, {"code": code, "scope": auth_request.scope, "state": auth_request.state}
        ),
        302,
    )


async def token(request: Request) -> Response:
    form = dict(await _form_pairs(request))
    headers = {k.lower(): v for k, v in request.headers.items()}
    runtime = _runtime(request)
    issuer = runtime.base_url_for(request)
    return await runtime.in_thread(_token, runtime, headers, form, issuer)


def _token(runtime: Runtime, headers: dict[str, str], form: dict[str, str], issuer: str) -> Response:
    store = runtime.store()
    grant_type = form.get("grant_type", "")
    try:
        if grant_type == "authorization_code":
            body = exchange_code(store, headers, form, now_ms=identity_now_ms(store), issuer=issuer)
        elif grant_type == "refresh_token":
            body = refresh(store, headers, form, now_ms=identity_now_ms(store), issuer=issuer)
        else:
            raise OAuthError("unsupported_grant_type")
    except OAuthError as error:
        return error.response()
    return JSONResponse(body, headers={"cache-control": "no-store", "pragma": "no-cache"})


async def revocation(request: Request) -> Response:
    form = dict(await _form_pairs(request))
    headers = {k.lower(): v for k, v in request.headers.items()}
    runtime = _runtime(request)

    def run() -> Response:
        try:
            revoke(runtime.store(), headers, form)
        except OAuthError as error:
            return error.response()
        return Response(status_code=200)  # RFC 7009 §2.2: 200 whether or not the token was valid

    return await runtime.in_thread(run)


def _caller_or_error(runtime: Runtime, headers: Mapping[str, str]) -> Caller | JSONResponse:
    store = runtime.store()
    try:
        return authenticate_bearer(store, headers, now_ms=identity_now_ms(store))
    except BearerError as error:
        return JSONResponse(error.body(), status_code=error.status)


def connections(request: Request) -> Response:
    runtime = _runtime(request)
    caller = _caller_or_error(runtime, {k.lower(): v for k, v in request.headers.items()})
    if isinstance(caller, Response):
        return caller
    return JSONResponse(list_connections(runtime.store(), caller, request.query_params.get("authEventId")))


def connection_delete(request: Request) -> Response:
    runtime = _runtime(request)
    caller = _caller_or_error(runtime, {k.lower(): v for k, v in request.headers.items()})
    if isinstance(caller, Response):
        return caller
    if not delete_connection(runtime.store(), caller, request.path_params["connection_id"]):
        return Response(status_code=404)
    return Response(status_code=204)


def routes() -> list[Route]:
    return [
        Route("/identity/connect/authorize", authorize, methods=["GET"]),
        Route("/identity/connect/authorize", authorize_post, methods=["POST"]),
        Route("/connect/token", token, methods=["POST"]),
        Route("/connect/revocation", revocation, methods=["POST"]),
        # Xero's docs write /connections; the identity spec writes /Connections. Serve both.
        Route("/connections", connections, methods=["GET"]),
        Route("/Connections", connections, methods=["GET"]),
        Route("/connections/{connection_id}", connection_delete, methods=["DELETE"]),
        Route("/Connections/{connection_id}", connection_delete, methods=["DELETE"]),
    ]
