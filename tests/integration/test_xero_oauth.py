"""OAuth against the sandbox over loopback HTTP: the connect flow, refresh rotation, the grace window, revoked
consent, and concurrent refreshes from several tasks and token managers."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx
import pytest

from appliance import logs
from appliance.errors import ConsentRequired, XeroAuthError
from appliance.models import TokenSet
from appliance.xero.oauth import (
    CallbackReceiver,
    PendingAuthorization,
    XeroIdentity,
    build_authorization,
    parse_redirect,
    ssh_forward_hint,
)
from appliance.xero.tokens import TokenManager
from sandbox.testing import SandboxServer
from tests.integration.xero_support import (
    ORG_NAME,
    TENANT,
    Connected,
    MemoryTokenStore,
    admin,
    connect,
    populate,
)

GRANT = "grant-1"


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxServer]:
    state = tmp_path / "sandbox.db"
    populate(state)
    with SandboxServer(state, orgs=0, auto_consent=True) as server:
        yield server


class CountingTransport(httpx.AsyncBaseTransport):
    """Real HTTP, counting token-endpoint calls; optionally losing the response of the first N of them."""

    def __init__(self, lose: int = 0) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.token_calls = 0
        self.lose = lose
        self.lost = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path.endswith("/connect/token"):
            self.token_calls += 1
            if self.lost < self.lose:
                # The server has already rotated the token; the client never hears about it.
                await response.aread()
                await response.aclose()
                self.lost += 1
                raise httpx.ReadError("connection reset while reading the response", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def no_sleep(_: float) -> None:
    await asyncio.sleep(0)


def manager_for(
    connected: Connected, store: MemoryTokenStore, transport: httpx.AsyncBaseTransport | None = None
) -> TokenManager:
    identity = XeroIdentity(connected.app, connected.hosts, transport=transport)
    return TokenManager(store, lambda _grant: identity, sleep=no_sleep)


def expired(token_set: TokenSet) -> TokenSet:
    return TokenSet(
        access_token=token_set.access_token,
        refresh_token=token_set.refresh_token,
        expires_at=time.time() - 5,
        scope=token_set.scope,
    )


async def test_connect_flow_with_pkce_and_connections(sandbox: SandboxServer, tmp_path: Path) -> None:
    connected = await connect(sandbox.info, tmp_path)
    token_set = connected.token_set
    assert token_set.refresh_token
    assert token_set.access_token
    assert token_set.expires_at > time.time() + 25 * 60  # Xero: 30-minute access tokens
    assert "offline_access" in token_set.scope
    assert [(t.tenant_id, t.name, t.tenant_type) for t in connected.tenants] == [(TENANT, ORG_NAME, "ORGANISATION")]
    assert connected.tenants[0].connection_id
    assert connected.tenants[0].auth_event_id
    # Tokens never show up in a log line, nor in a repr.
    assert token_set.access_token not in logs.mask(f"token {token_set.access_token}")
    assert token_set.refresh_token not in repr(token_set)


async def test_authorize_url_sends_pkce_s256_and_state(sandbox: SandboxServer, tmp_path: Path) -> None:
    connected = await connect(sandbox.info, tmp_path)
    pending = build_authorization(connected.app, connected.hosts)
    query = parse_qs(urlsplit(pending.url).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["state"] == [pending.state]
    assert len(pending.code_verifier) >= 43
    assert pending.code_verifier not in pending.url
    assert query["redirect_uri"] == [sandbox.info["redirect_uri"]]
    assert pending.code_verifier not in repr(pending)


async def test_a_wrong_code_verifier_is_refused(sandbox: SandboxServer, tmp_path: Path) -> None:
    connected = await connect(sandbox.info, tmp_path)
    pending = build_authorization(connected.app, connected.hosts)
    async with httpx.AsyncClient(trust_env=False) as http:
        response = await http.get(pending.url)
    code = parse_redirect(response.headers["location"], pending.state)
    forged = PendingAuthorization(pending.url, pending.state, "x" * 64)
    with pytest.raises(XeroAuthError):
        await connected.identity.exchange_code(code, forged, state=pending.state)
    with pytest.raises(XeroAuthError, match="state"):
        await connected.identity.exchange_code(code, pending, state="another-state")


async def test_loopback_receiver_catches_the_redirect(sandbox: SandboxServer, tmp_path: Path) -> None:
    connected = await connect(sandbox.info, tmp_path)
    pending = build_authorization(connected.app, connected.hosts)
    async with CallbackReceiver(0) as receiver, httpx.AsyncClient(trust_env=False) as http:
        waiting = asyncio.create_task(receiver.wait(pending.state, timeout=30))
        redirect = (await http.get(pending.url)).headers["location"]
        # The browser would follow the redirect to localhost:8765; point it at the receiver's free port.
        parts = urlsplit(redirect)
        to_receiver = urlunsplit((parts.scheme, f"127.0.0.1:{receiver.port}", parts.path, parts.query, ""))
        stray = await http.get(f"http://127.0.0.1:{receiver.port}/favicon.ico")
        assert stray.status_code == 404
        page = await http.get(to_receiver)
        assert page.status_code == 200
        assert "close this tab" in page.text
        code = await waiting
    token_set = await connected.identity.exchange_code(code, pending, state=pending.state)
    assert await connected.identity.list_connections(token_set.access_token)


async def test_receiver_rejects_a_foreign_state_and_times_out() -> None:
    async with CallbackReceiver(0) as receiver, httpx.AsyncClient(trust_env=False) as http:
        waiting = asyncio.create_task(receiver.wait("expected-state", timeout=30))
        await http.get(f"http://127.0.0.1:{receiver.port}/callback?code=abc&state=forged")
        with pytest.raises(XeroAuthError, match="state"):
            await waiting
    async with CallbackReceiver(0) as receiver:
        with pytest.raises(XeroAuthError, match="no redirect"):
            await receiver.wait("s", timeout=0.05)


def test_parse_redirect_and_ssh_hint() -> None:
    assert parse_redirect("http://localhost:8765/callback?code=the-code&state=s1", "s1") == "the-code"
    with pytest.raises(XeroAuthError, match="state"):
        parse_redirect("http://localhost:8765/callback?code=the-code&state=s2", "s1")
    with pytest.raises(XeroAuthError, match="access_denied"):
        parse_redirect("http://localhost:8765/callback?error=access_denied&state=s1", "s1")
    with pytest.raises(XeroAuthError, match="no authorization code"):
        parse_redirect("http://localhost:8765/callback?state=s1", "s1")
    assert ssh_forward_hint(8765) == "ssh -L 8765:127.0.0.1:8765 user@host"


async def test_refresh_rotates_and_stores_before_use(sandbox: SandboxServer, tmp_path: Path) -> None:
    connected = await connect(sandbox.info, tmp_path)
    store = MemoryTokenStore()
    store.save(GRANT, expired(connected.token_set))
    manager = manager_for(connected, store)
    access = await manager.access_token(GRANT)
    stored = store.load(GRANT)
    assert stored is not None
    assert access == stored.access_token != connected.token_set.access_token
    assert stored.refresh_token != connected.token_set.refresh_token
    assert stored.previous_refresh_token == connected.token_set.refresh_token
    assert stored.rotated_at
    # A fresh token is served from the store without another refresh.
    assert await manager.access_token(GRANT) == access
    assert manager.refreshes == 1
    assert await connected.identity.list_connections(access)


async def test_refresh_is_proactive_two_minutes_before_expiry(sandbox: SandboxServer, tmp_path: Path) -> None:
    connected = await connect(sandbox.info, tmp_path)
    store = MemoryTokenStore()
    soon = TokenSet(
        access_token=connected.token_set.access_token,
        refresh_token=connected.token_set.refresh_token,
        expires_at=time.time() + 90,
    )
    store.save(GRANT, soon)
    manager = manager_for(connected, store)
    assert await manager.access_token(GRANT) != soon.access_token
    assert manager.refreshes == 1


async def test_lost_refresh_response_recovers_within_the_grace_window(sandbox: SandboxServer, tmp_path: Path) -> None:
    connected = await connect(sandbox.info, tmp_path)
    store = MemoryTokenStore()
    store.save(GRANT, expired(connected.token_set))
    transport = CountingTransport(lose=1)
    manager = manager_for(connected, store, transport)
    access = await manager.access_token(GRANT)
    # First response lost after the server rotated; the retry reused the superseded token (grace window).
    assert transport.lost == 1
    assert transport.token_calls == 2
    assert manager.refreshes == 1
    assert await connected.identity.list_connections(access)
    # The rotated token is what was stored, and it works.
    stored = store.load(GRANT)
    assert stored is not None
    assert await connected.identity.refresh(stored.refresh_token)
    await transport.aclose()


async def test_superseded_token_after_the_grace_window_needs_consent(sandbox: SandboxServer, tmp_path: Path) -> None:
    connected = await connect(sandbox.info, tmp_path)
    # Another holder rotated the token (its result lost to us) more than 30 minutes ago.
    await connected.identity.refresh(connected.token_set.refresh_token)
    await admin(sandbox.base_url, "clock", {"identity_skew_s": 31 * 60})
    store = MemoryTokenStore()
    store.save(GRANT, expired(connected.token_set))
    transport = CountingTransport()
    manager = manager_for(connected, store, transport)
    with pytest.raises(ConsentRequired):
        await manager.access_token(GRANT)
    # invalid_grant is final: one call, no retry loop, nothing saved.
    assert transport.token_calls == 1
    assert store.saves == 1
    await transport.aclose()


async def test_previous_refresh_token_is_tried_once_inside_its_grace_window(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    connected = await connect(sandbox.info, tmp_path)
    store = MemoryTokenStore()
    broken = TokenSet(
        access_token="stale",
        refresh_token="a-refresh-token-xero-never-issued",
        expires_at=time.time() - 5,
        previous_refresh_token=connected.token_set.refresh_token,
        rotated_at=time.time() - 60,
    )
    store.save(GRANT, broken)
    transport = CountingTransport()
    manager = manager_for(connected, store, transport)
    access = await manager.access_token(GRANT)
    assert transport.token_calls == 2
    assert manager.refreshes == 1
    assert await connected.identity.list_connections(access)
    await transport.aclose()


async def test_revoked_consent_raises_consent_required(sandbox: SandboxServer, tmp_path: Path) -> None:
    connected = await connect(sandbox.info, tmp_path)
    await connected.identity.revoke(connected.token_set.refresh_token)
    # Xero: revoking removes all the grant's connections.
    assert await _connections_or_refused(connected) == []
    store = MemoryTokenStore()
    store.save(GRANT, expired(connected.token_set))
    manager = manager_for(connected, store)
    with pytest.raises(ConsentRequired) as raised:
        await manager.access_token(GRANT)
    assert "connect" in (raised.value.hint or "")
    assert manager.refreshes == 0


async def _connections_or_refused(connected: Connected) -> list[Any]:
    try:
        return await connected.identity.list_connections(connected.token_set.access_token)
    except XeroAuthError:
        return []


async def test_disconnect_removes_one_connection(sandbox: SandboxServer, tmp_path: Path) -> None:
    connected = await connect(sandbox.info, tmp_path)
    await connected.identity.disconnect(connected.token_set.access_token, connected.tenants[0].connection_id)
    assert await connected.identity.list_connections(connected.token_set.access_token) == []


async def test_concurrent_refresh_from_many_tasks_and_managers_is_one_refresh(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    connected = await connect(sandbox.info, tmp_path)
    store = MemoryTokenStore()
    store.save(GRANT, expired(connected.token_set))
    transport = CountingTransport()
    # Two managers over one store: two jobs of one daemon (other processes: tests/integration/test_state_store.py).
    managers = [manager_for(connected, store, transport), manager_for(connected, store, transport)]
    tokens = await asyncio.gather(*(managers[i % 2].access_token(GRANT) for i in range(12)))
    assert transport.token_calls == 1
    assert len(set(tokens)) == 1
    assert sum(m.refreshes for m in managers) == 1
    # A 401 on the new token from many tasks at once also refreshes only once.
    rejected = tokens[0]
    again = await asyncio.gather(*(managers[i % 2].access_token(GRANT, rejected=rejected) for i in range(8)))
    assert transport.token_calls == 2
    assert len(set(again)) == 1
    assert again[0] != rejected
    await transport.aclose()


async def test_many_jobs_sharing_an_expired_grant_do_not_starve_the_thread_pool(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    """The daemon runs each job with its own manager. 16 of them meeting one expired token, with fewer worker
    threads than jobs (6 on a 2-core machine), once deadlocked: every waiter held a thread on the blocking
    cross-process lock and the holder could not run its own save. They must all get the new token, from one
    refresh."""
    loop = asyncio.get_running_loop()
    loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=4))
    connected = await connect(sandbox.info, tmp_path)
    store = MemoryTokenStore()
    store.save(GRANT, expired(connected.token_set))
    transport = CountingTransport()
    managers = [manager_for(connected, store, transport) for _ in range(16)]
    tokens = await asyncio.wait_for(asyncio.gather(*(m.access_token(GRANT) for m in managers)), timeout=60)
    assert len(set(tokens)) == 1
    assert transport.token_calls == 1
    await transport.aclose()


async def test_a_cancelled_wait_for_the_refresh_lock_does_not_leave_it_held() -> None:
    class NeverCalled:
        async def refresh(self, refresh_token: str) -> TokenSet:
            raise AssertionError("no refresh may start after cancellation")

    store = MemoryTokenStore()
    store.save(GRANT, TokenSet(access_token="old-access", refresh_token="old-refresh", expires_at=time.time() - 5))
    manager = TokenManager(store, lambda _grant: NeverCalled())
    other_process = store.refresh_lock(GRANT)
    other_process.__enter__()
    task = asyncio.create_task(manager.access_token(GRANT))
    for _ in range(50):  # let the task reach the blocking wait in its worker thread
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    other_process.__exit__(None, None, None)
    # The worker thread now obtains the lock; the cancelled task's callback must hand it back.
    lock = store.refresh_lock(GRANT)
    await asyncio.wait_for(asyncio.to_thread(lock.__enter__), timeout=30)
    lock.__exit__(None, None, None)
