"""Xero OAuth 2.0: the authorization-code flow with PKCE, token refresh and revocation, and connections.

This module owns every call to Xero's identity endpoints (login host: `/identity/connect/authorize`;
identity host: `/connect/token`, `/connect/revocation`; API host: `/connections`) and the loopback
receiver that catches the browser's redirect. It uses authlib for the protocol (PKCE S256 from
`authlib.oauth2.rfc7636`, token requests through `AsyncOAuth2Client` with the client secret in HTTP
Basic, which Xero wants (research §5.1)). It translates authlib and httpx exceptions into
`XeroAuthError` / `ConsentRequired` / `XeroUnavailable`.

It must not store tokens (the token manager and the state store do), decide when to refresh, or log a
token, code, verifier or client secret: every such value is registered with `logs.register_secret`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import html
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from authlib.common.security import generate_token
from authlib.integrations.base_client import OAuthError
from authlib.oauth2.rfc7636 import create_s256_code_challenge

with warnings.catch_warnings():
    # authlib 1.9 warns that its httpx integration will move to httpx2 ("please use httpx2 instead"); it still
    # works with httpx, which the rest of Strongroom uses. Revisit when authlib drops the httpx fallback.
    warnings.simplefilter("ignore", DeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client

from appliance import logs
from appliance.errors import ConsentRequired, XeroAuthError, XeroError, XeroUnavailable
from appliance.models import Tenant, TokenSet
from appliance.settings import XeroApp, XeroHosts

logger = logging.getLogger(__name__)

AUTHORIZE_PATH = "/identity/connect/authorize"
TOKEN_PATH = "/connect/token"
REVOCATION_PATH = "/connect/revocation"
CONNECTIONS_PATH = "/connections"

# RFC 7636 §4.1: 43-128 characters of [A-Za-z0-9-._~]; Xero's PKCE guide repeats it (research §5.1).
CODE_VERIFIER_LENGTH = 64
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


@dataclass(frozen=True)
class PendingAuthorization:
    """An authorize URL waiting for the person's consent, and what the callback must be checked against."""

    url: str
    state: str
    code_verifier: str

    def __repr__(self) -> str:
        return f"PendingAuthorization(url={self.url!r})"


def build_authorization(
    app: XeroApp, hosts: XeroHosts, *, state: str | None = None, extra: dict[str, str] | None = None
) -> PendingAuthorization:
    """The authorize URL for `app`, with a fresh `state` and a PKCE S256 challenge.

    PKCE is sent even when the app has a client secret: it binds the code to this process, and Xero
    accepts both together (PKCE guide, research §5.1).
    """
    state = state or generate_token(32)
    code_verifier = generate_token(CODE_VERIFIER_LENGTH)
    logs.register_secret(code_verifier)
    params = {
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": app.redirect_uri,
        "scope": " ".join(app.scopes),
        "state": state,
        "code_challenge": create_s256_code_challenge(code_verifier),
        "code_challenge_method": "S256",
        **(extra or {}),
    }
    url = hosts.login_url.rstrip("/") + AUTHORIZE_PATH + "?" + urlencode(params)
    return PendingAuthorization(url=url, state=state, code_verifier=code_verifier)


def parse_redirect(url: str, expected_state: str) -> str:
    """The authorization code from the redirect URL a person pasted (`connect --paste`), after checking state."""
    query = parse_qs(urlsplit(url.strip()).query)
    return _code_from_query({key: values[0] for key, values in query.items() if values}, expected_state)


def _code_from_query(query: dict[str, str], expected_state: str) -> str:
    if "error" in query:
        error = query["error"]
        description = query.get("error_description", "")
        hint = "ask the person to consent again" if error == "access_denied" else None
        raise XeroAuthError(f"Xero refused the authorization: {error} {description}".strip(), hint=hint)
    state = query.get("state", "")
    if not hmac.compare_digest(state.encode(), expected_state.encode()):
        raise XeroAuthError(
            "the redirect's state does not match this connect attempt",
            hint="paste the URL from the browser tab this `strongroom connect` opened, or start again",
        )
    code = query.get("code")
    if not code:
        raise XeroAuthError("the redirect carries no authorization code")
    logs.register_secret(code)
    return code


def ssh_forward_hint(port: int, destination: str = "user@host") -> str:
    """The ssh command that makes the appliance's loopback callback reachable from a laptop's browser."""
    return f"ssh -L {port}:127.0.0.1:{port} {destination}"


# --- the loopback callback receiver -------------------------------------------------------------

_PAGE = (
    "<!doctype html><html><head><meta charset='utf-8'><title>Strongroom</title></head>"
    "<body style='font-family:sans-serif'><h1>{title}</h1><p>{body}</p></body></html>"
)


class CallbackReceiver:
    """A one-shot HTTP listener on 127.0.0.1 that waits for Xero's redirect to the app's redirect URI.

    Bound to loopback only: the code must never be reachable from the network (RFC 8252 §7.3).
    Port 0 picks a free port (tests); `connect` uses the port of the registered redirect URI.
    """

    def __init__(self, port: int, *, path: str = "/callback") -> None:
        self.requested_port = port
        self.path = path
        self._server: asyncio.Server | None = None
        self._result: asyncio.Future[dict[str, str]] | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the receiver is not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def __aenter__(self) -> CallbackReceiver:
        self._result = asyncio.get_running_loop().create_future()
        try:
            self._server = await asyncio.start_server(self._handle, host="127.0.0.1", port=self.requested_port)
        except OSError as error:
            raise XeroAuthError(
                f"cannot listen on 127.0.0.1:{self.requested_port} for Xero's redirect: {error.strerror}",
                hint="free the port, or use `strongroom connect --paste`",
            ) from error
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def wait(self, expected_state: str, timeout: float) -> str:  # noqa: ASYNC109 - a deadline for a person
        """The authorization code, once a redirect with the right state arrives (XeroAuthError otherwise)."""
        assert self._result is not None, "use `async with CallbackReceiver(...)`"
        try:
            query = await asyncio.wait_for(asyncio.shield(self._result), timeout)
        except TimeoutError as error:
            raise XeroAuthError(
                f"no redirect from Xero within {timeout:.0f} s",
                hint="open the URL in a browser that reaches this port (see the ssh -L line), or use --paste",
            ) from error
        return _code_from_query(query, expected_state)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), 10)
            # Drain the headers; the request has no body.
            while True:
                line = await asyncio.wait_for(reader.readline(), 10)
                if line in (b"\r\n", b"\n", b""):
                    break
            parts = request_line.decode("latin-1").split()
            target = urlsplit(parts[1]) if len(parts) >= 2 and parts[0] == "GET" else None
            if target is None or target.path != self.path:
                await self._respond(writer, 404, "Not found", "This listener only accepts Xero's redirect.")
                return
            query = {key: values[0] for key, values in parse_qs(target.query).items() if values}
            if "code" not in query and "error" not in query:
                await self._respond(writer, 400, "Missing code", "The redirect carried no code.")
                return
            if query.get("code"):
                logs.register_secret(query["code"])
            if "error" in query:
                await self._respond(writer, 200, "Xero refused", "You can close this tab.")
            else:
                await self._respond(
                    writer, 200, "Connected", "Strongroom received the authorization. You can close this tab."
                )
            if self._result is not None and not self._result.done():
                self._result.set_result(query)
        except (TimeoutError, ConnectionError, UnicodeError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    @staticmethod
    async def _respond(writer: asyncio.StreamWriter, status: int, title: str, body: str) -> None:
        page = _PAGE.format(title=html.escape(title), body=html.escape(body)).encode()
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}[status]
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\n"
            f"Content-Length: {len(page)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode() + page)
        await writer.drain()


async def wait_for_callback(
    port: int,
    expected_state: str,
    timeout: float,  # noqa: ASYNC109 - the deadline is part of the contract the CLI calls
    *,
    path: str = "/callback",
) -> str:
    """Listen on 127.0.0.1:`port` until Xero redirects back; return the authorization code."""
    async with CallbackReceiver(port, path=path) as receiver:
        return await receiver.wait(expected_state, timeout)


# --- token endpoint, revocation, connections ----------------------------------------------------


class XeroIdentity:
    """Token and connection calls for one Xero app."""

    def __init__(
        self,
        app: XeroApp,
        hosts: XeroHosts,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    ) -> None:
        self.app = app
        self.hosts = hosts
        self._transport = transport
        self._clock = clock
        self._timeout = timeout

    def _secret(self) -> str | None:
        if self.app.client_secret is None:
            return None
        secret = self.app.client_secret.read()
        logs.register_secret(secret)
        return secret

    def _oauth_client(self) -> AsyncOAuth2Client:
        secret = self._secret()
        return AsyncOAuth2Client(
            client_id=self.app.client_id,
            client_secret=secret,
            # Xero wants the client credentials in the Authorization header (research §5.1); a PKCE-only app
            # has no secret and sends just its client_id.
            token_endpoint_auth_method="client_secret_basic" if secret else "none",
            revocation_endpoint_auth_method="client_secret_basic" if secret else "none",
            redirect_uri=self.app.redirect_uri,
            transport=self._transport,
            timeout=self._timeout,
            trust_env=False,
        )

    @property
    def _token_url(self) -> str:
        return self.hosts.identity_url.rstrip("/") + TOKEN_PATH

    def _token_set(self, token: dict[str, Any], *, previous: str | None = None) -> TokenSet:
        access_token = token.get("access_token")
        refresh_token = token.get("refresh_token")
        if not access_token or not refresh_token:
            raise XeroAuthError(
                "Xero's token response has no refresh token",
                hint="the app must request the offline_access scope",
            )
        logs.register_secret(access_token)
        logs.register_secret(refresh_token)
        logs.register_secret(token.get("id_token"))
        now = self._clock()
        expires_in = float(token.get("expires_in") or 1800)  # Xero: access tokens live 30 minutes (§5.1)
        return TokenSet(
            access_token=access_token,
            refresh_token=refresh_token,
            expires_at=now + expires_in,
            scope=str(token.get("scope") or " ".join(self.app.scopes)),
            id_token=token.get("id_token"),
            previous_refresh_token=previous,
            rotated_at=now if previous else None,
        )

    async def exchange_code(self, code: str, pending: PendingAuthorization, *, state: str) -> TokenSet:
        """Trade an authorization code for a token set, after checking the callback's `state`."""
        if not hmac.compare_digest(state.encode(), pending.state.encode()):
            raise XeroAuthError("the callback's state does not match this connect attempt")
        logs.register_secret(code)
        async with self._oauth_client() as client:
            token = await _token_call(
                client.fetch_token(
                    self._token_url,
                    grant_type="authorization_code",
                    code=code,
                    code_verifier=pending.code_verifier,
                )
            )
        return self._token_set(dict(token))

    async def refresh(self, refresh_token: str) -> TokenSet:
        """Use `refresh_token` once; Xero rotates it and returns a new set (OAUTH-FAQ, research §5.1).

        `invalid_grant` -> ConsentRequired. Lost responses surface as XeroUnavailable so the caller can
        retry with the same token within Xero's 30-minute grace window.
        """
        logs.register_secret(refresh_token)
        async with self._oauth_client() as client:
            token = await _token_call(client.refresh_token(self._token_url, refresh_token=refresh_token))
        return self._token_set(dict(token), previous=refresh_token)

    async def revoke(self, refresh_token: str) -> None:
        """Revoke a refresh token: Xero then removes all the grant's connections (research §5.1)."""
        logs.register_secret(refresh_token)
        url = self.hosts.identity_url.rstrip("/") + REVOCATION_PATH
        async with self._oauth_client() as client:
            response = await _token_call(client.revoke_token(url, token=refresh_token, token_type_hint="refresh_token"))
        if isinstance(response, httpx.Response) and response.status_code >= 400:
            raise XeroAuthError(f"Xero refused to revoke the token (HTTP {response.status_code})")

    async def list_connections(self, access_token: str, *, auth_event_id: str | None = None) -> list[Tenant]:
        """The tenants this grant reaches (`GET /connections`); `auth_event_id` narrows to one consent."""
        params = {"authEventId": auth_event_id} if auth_event_id else None
        body = await self._api_call("GET", CONNECTIONS_PATH, access_token, params=params)
        if not isinstance(body, list):
            raise XeroError("Xero's /connections answer is not a list")
        tenants = []
        for item in body:
            tenants.append(
                Tenant(
                    tenant_id=str(item["tenantId"]),
                    name=str(item.get("tenantName") or ""),
                    connection_id=str(item["id"]),
                    tenant_type=str(item.get("tenantType") or "ORGANISATION"),
                    auth_event_id=item.get("authEventId"),
                )
            )
        return tenants

    async def disconnect(self, access_token: str, connection_id: str) -> None:
        """`DELETE /connections/{id}`: the organisation leaves the grant (204)."""
        await self._api_call("DELETE", f"{CONNECTIONS_PATH}/{connection_id}", access_token)

    async def _api_call(
        self, method: str, path: str, access_token: str, *, params: dict[str, str] | None = None
    ) -> Any:
        logs.register_secret(access_token)
        headers = {"Authorization": f"Bearer {access_token}", "Accept": "application/json"}
        try:
            async with httpx.AsyncClient(transport=self._transport, timeout=self._timeout, trust_env=False) as http:
                response = await http.request(
                    method, self.hosts.api_url.rstrip("/") + path, headers=headers, params=params
                )
        except httpx.HTTPError as error:
            raise XeroUnavailable(f"cannot reach Xero's connections endpoint: {type(error).__name__}") from None
        if response.status_code in (401, 403):
            raise XeroAuthError(f"Xero refused the access token for {path} (HTTP {response.status_code})")
        if response.status_code >= 500 or response.status_code == 429:
            raise XeroUnavailable(f"Xero's connections endpoint answered HTTP {response.status_code}")
        if response.status_code >= 400:
            raise XeroError(f"Xero's connections endpoint answered HTTP {response.status_code}")
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise XeroError(f"Xero's {path} answer is not JSON") from None


async def _token_call(awaitable: Any) -> Any:
    """Run one authlib token-endpoint call, translating its and httpx's exceptions."""
    try:
        return await awaitable
    except OAuthError as error:
        code = str(getattr(error, "error", "") or "")
        if code == "invalid_grant":
            # Xero: the refresh token is unknown, used outside its grace window, revoked or 60 days unused.
            raise ConsentRequired(
                "Xero no longer accepts this connection's refresh token (invalid_grant)",
                hint="run `strongroom connect` again for this organisation",
            ) from None
        description = logs.mask(str(getattr(error, "description", "") or ""))
        raise XeroAuthError(f"Xero's token endpoint refused the request: {code} {description}".strip()) from None
    except httpx.HTTPStatusError as error:
        status = error.response.status_code
        if status >= 500 or status == 429:
            raise XeroUnavailable(f"Xero's token endpoint answered HTTP {status}") from None
        raise XeroAuthError(f"Xero's token endpoint answered HTTP {status}") from None
    except httpx.HTTPError as error:
        raise XeroUnavailable(f"no answer from Xero's token endpoint: {type(error).__name__}") from None
    except ValueError as error:
        # authlib: a non-JSON body from the token endpoint (a gateway page).
        raise XeroUnavailable(f"Xero's token endpoint sent an unreadable answer: {logs.mask(str(error))}") from None
