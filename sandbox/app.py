"""The sandbox's HTTP application: one Starlette app standing in for Xero's login, identity and API hosts.

This module owns the wiring: `create_app()` (bootstrap of the state file, the registered app and
the demo user), the per-process `Runtime` (settings, rate limiter, fault injector, thread-local
store connections), and the gate every `/api.xro/2.0/...` call goes through, in Xero's order:
bearer token (401) -> tenant connection (403) -> scope and tier (401) -> rate limits (429) ->
faults -> the read or write itself (`sandbox.accounting`, `sandbox.writes`) -> usage and egress recorded in
the store. Writes count against the same limits as reads.

It must not implement OAuth rules (`sandbox.identity`), query rules (`sandbox.accounting`), limit
values (`sandbox.limits`), fault choice (`sandbox.faults`) or data generation (`sandbox.generate`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
import apsw
from starlette.applications import Starlette
from starlette.datastructures import Headers, QueryParams
from starlette.requests import Request
from starlette.routing import Mount
from starlette.types import Message, Receive, Scope, Send

from sandbox import accounting, admin, identity, limits, writes
from sandbox.faults import FaultInjector, FaultPlan, FaultSpec
from sandbox.store import SandboxStore, for_thread

log = logging.getLogger(__name__)
T = TypeVar("T")

SIZES = ("small", "medium", "large")
TRANSPORT_KEY = "sandbox.transport"


@dataclass(frozen=True)
class SandboxSettings:
    """How a sandbox server starts. `None` means: keep what the state file already says."""

    seed: int = 1
    """Seed for generated data and for the registered app's credentials."""
    orgs: int = 2
    """Organisations generated on first start when the state file has none."""
    size: str = "small"
    """small (~2,000 records), medium (~50,000), large (~500,000) per organisation."""
    latency_ms: int | None = None
    """Fixed latency added to every API call (shorthand for the `latency_ms` fault)."""
    faults: str | None = None
    """A fault SPEC (see `sandbox.faults`)."""
    auto_consent: bool | None = None
    """Authorize redirects straight back with a code for all the user's organisations."""
    token_ttl_s: int | None = None
    """Access token lifetime in seconds (Xero: 1800)."""
    tier: str | None = None
    """The registered app's Xero tier: starter, core, plus, advanced, enterprise."""
    redirect_uris: tuple[str, ...] = ()
    """Redirect URIs registered for the app (exact match, as Xero)."""
    anchor_ms: int | None = None
    """Business-clock anchor passed to the generator (deterministic data)."""


def _thread_store(path: str) -> SandboxStore:
    # Opening a connection runs the schema script in a deferred transaction, which SQLite can refuse
    # at once with SQLITE_BUSY while other threads are writing; opening is idempotent, so retry.
    for attempt in range(50):
        try:
            return for_thread(path)
        except apsw.BusyError:
            if attempt == 49:
                raise
            time.sleep(0.01 * (attempt + 1))
    raise AssertionError("unreachable")


@dataclass
class Runtime:
    """Per-process state shared by the handlers; reached as `request.app.state.runtime`."""

    state_path: str
    settings: SandboxSettings
    client_id: str = ""
    limiter: limits.RateLimiter = field(default_factory=limits.RateLimiter)
    injector: FaultInjector = field(default_factory=FaultInjector)
    base_url: str = ""

    def store(self) -> SandboxStore:
        return _thread_store(self.state_path)

    async def in_thread(self, function: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(function, *args)

    def auto_consent(self) -> bool:
        return bool(self.store().get_config("auto_consent", False))

    def base_url_for(self, request: Request) -> str:
        return f"{request.url.scheme}://{request.url.netloc}"

    def info(self, base_url: str | None = None) -> dict[str, Any]:
        """The `--info` document: how a client reaches this sandbox and what it may ask for."""
        store = self.store()
        app = identity.load_app(store, self.client_id)
        assert app is not None
        scope = identity.READ_EVERYTHING_SCOPE
        if app.tier in identity.JOURNAL_TIERS:
            scope += " accounting.journals.read"
        tenants = [
            {"tenant_id": t, "name": n, "country": c}
            for t, n, c in store.query("SELECT tenant_id, name, country FROM orgs ORDER BY created_ms, tenant_id")
        ]
        return {
            "base_url": base_url or self.base_url,
            "client_id": app.client_id,
            "client_secret": app.client_secret,
            # The URI this server was started with, else the first registered one.
            "redirect_uri": (self.settings.redirect_uris or app.redirect_uris)[0],
            "scope": scope,
            "tier": app.tier,
            "tenants": tenants,
        }

    def bootstrap(self) -> None:
        """Prepare the state file: seed organisations once, register the app, apply settings."""
        store = self.store()
        settings = self.settings
        if settings.orgs > 0 and not store.scalar("SELECT count(*) FROM orgs"):
            seed_organisations(
                store, seed=settings.seed, orgs=settings.orgs, size=settings.size, anchor_ms=settings.anchor_ms
            )
        app = identity.ensure_default_app(
            store, seed=settings.seed, redirect_uris=settings.redirect_uris, tier=settings.tier
        )
        self.client_id = app.client_id
        identity.ensure_default_user(store)
        if settings.auto_consent is not None:
            store.set_config("auto_consent", settings.auto_consent)
        if settings.token_ttl_s is not None:
            tokens = store.get_config("tokens", {}) or {}
            tokens["access_ttl_s"] = settings.token_ttl_s
            store.set_config("tokens", tokens)
        if settings.faults is not None or settings.latency_ms is not None:
            spec = FaultSpec.parse(settings.faults) if settings.faults is not None else self.fault_spec()
            if settings.latency_ms is not None:
                spec = FaultSpec.from_dict({**spec.to_dict(), "latency_ms": settings.latency_ms})
            self.set_faults(spec)

    def fault_spec(self) -> FaultSpec:
        return FaultSpec.from_dict(self.store().get_config("faults", {}) or {})

    def fault_state(self) -> tuple[FaultSpec, int]:
        """The fault spec and its generation (bumped on every set, so re-setting restarts the sequence)."""
        raw = self.store().get_config("faults", {}) or {}
        return FaultSpec.from_dict(raw), int(raw.get("generation", 0))

    def set_faults(self, spec: FaultSpec) -> FaultSpec:
        store = self.store()
        generation = int((store.get_config("faults", {}) or {}).get("generation", 0)) + 1
        store.set_config("faults", {**spec.to_dict(), "generation": generation})
        if spec.exhaust:
            tenants = spec.exhaust
            if tenants == ("all",):
                tenants = tuple(t for (t,) in store.query("SELECT tenant_id FROM orgs"))
            tier = identity.load_app(store, self.client_id).tier if self.client_id else "core"  # type: ignore[union-attr]
            for tenant_id in tenants:
                limit = limits.limits_for(store, tenant_id, tier).day
                limits.exhaust_day(store, tenant_id, limit, store.now_ms())
        return spec


def seed_organisations(store: SandboxStore, *, seed: int, orgs: int, size: str, anchor_ms: int | None) -> list[str]:
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}")
    from sandbox import generate  # the data side; imported late so the HTTP side loads without it

    tenants = generate.seed_sandbox(store, seed=seed, orgs=orgs, size=size, anchor_ms=anchor_ms)
    identity.ensure_default_user(store)
    return list(tenants)


# ---------------------------------------------------------------------------------------------
# The API gate


async def _send_bytes(send: Send, status: int, body: bytes, media_type: str, headers: dict[str, str]) -> None:
    raw_headers = [(b"content-type", media_type.encode()), (b"content-length", str(len(body)).encode())]
    raw_headers += [(k.lower().encode(), v.encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


async def _abort(scope: Scope) -> None:
    """Close the client's connection at once: the 'dropped connection' fault.

    uvicorn does not hand the transport to ASGI apps; `SandboxStarlette` keeps it in the scope.
    Yielding lets uvicorn see the connection as lost, so it does not try to send a 500.
    """
    transport = scope.get(TRANSPORT_KEY)
    if transport is not None:
        transport.abort()
        for _ in range(3):
            await asyncio.sleep(0)
    else:  # not served by uvicorn: the closest we can do is an exception the server turns into a close
        raise ConnectionAbortedError("sandbox fault: drop")


_FAULT_BODIES = {
    500: (
        b'{"Title":"An error occurred","Detail":"An error occurred in Xero. Check the API Status page.","Status":500}',
        "application/json; charset=utf-8",
    ),
    503: (b"The Xero API is currently offline for maintenance", "text/plain; charset=utf-8"),
    504: (b"<html><body><h1>504 Gateway Time-out</h1></body></html>", "text/html"),
}


class ApiGate:
    """ASGI app mounted at `/api.xro/2.0`: auth, tenant, scope, limits, faults, then the read or write."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        runtime = self.runtime
        headers = {k.lower(): v for k, v in Headers(scope=scope).items()}
        as_json = accounting.wants_json(headers)
        full_path: str = scope["path"]
        at = full_path.find(accounting.API_PREFIX)
        path = full_path[at + len(accounting.API_PREFIX) :] if at >= 0 else full_path
        method = scope["method"]
        if method not in ("GET", "HEAD", "PUT", "POST", "DELETE"):
            # Xero answers verbs it has no operation for with 405.
            await _send_bytes(send, 405, b"Method not allowed", "text/plain; charset=utf-8", {})
            return
        body = b""
        if method in ("PUT", "POST"):
            try:
                read = await _read_body(receive, writes.MAX_ATTACHMENT_BYTES)
            except _ClientGone:
                return
            if read is None:
                await _send_bytes(send, 413, b"Request entity too large", "text/plain; charset=utf-8", {})
                return
            body = read

        checked = await runtime.in_thread(_check_call, runtime, headers, path, method)
        if isinstance(checked, accounting.ApiResponse):
            await _send_bytes(send, checked.status, checked.body, checked.media_type, checked.headers)
            return
        caller, tenant_id, route, tier_limits = checked

        admission = runtime.limiter.acquire(tenant_id, caller.client_id, tier_limits)
        if admission.allowed:
            admitted, calls_today = await runtime.in_thread(_admit_day, runtime, tenant_id, tier_limits.day)
            admission.day_remaining = tier_limits.day - calls_today
            if not admitted:
                runtime.limiter.rollback(tenant_id, caller.client_id)
                admission.allowed = False
                admission.problem = "day"
                admission.retry_after = await runtime.in_thread(_seconds_to_next_day, runtime)
        else:
            calls_today = await runtime.in_thread(_record_rejection, runtime, tenant_id)
            admission.day_remaining = tier_limits.day - calls_today
        if not admission.allowed:
            body = b'{"Title":"Too Many Requests","Status":429,"Detail":"' + (admission.problem or "").encode() + b'"}'
            await _send_bytes(send, 429, body, "application/json; charset=utf-8", admission.headers())
            return

        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                runtime.limiter.release(tenant_id)

        async def send_then_release(message: Message) -> None:
            # The concurrency slot is free once the response is complete on the server's side, i.e. before its
            # last bytes go out: a client that starts its next call the moment it has read a response must
            # never find the slot still held.
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                release()
            await send(message)

        try:
            await self._serve(
                scope,
                send_then_release,
                runtime,
                headers,
                path,
                tenant_id,
                route,
                admission,
                as_json,
                caller.client_id,
                body,
            )
        finally:
            release()

    async def _serve(
        self,
        scope: Scope,
        send: Send,
        runtime: Runtime,
        headers: dict[str, str],
        path: str,
        tenant_id: str,
        route: accounting.ApiRoute | writes.WriteRoute | accounting.ApiResponse,
        admission: limits.Admission,
        as_json: bool,
        client_id: str = "",
        body: bytes = b"",
    ) -> None:
        runtime.injector.use(*await runtime.in_thread(runtime.fault_state))
        plan: FaultPlan = runtime.injector.decide()
        if plan.delay_ms:
            await asyncio.sleep(plan.delay_ms / 1000)
        limit_headers = admission.headers()
        if plan.kind in ("500", "503", "504"):
            status = int(plan.kind)
            body, media_type = _FAULT_BODIES[status]
            await runtime.in_thread(_record_bytes, runtime, tenant_id, len(body))
            await _send_bytes(send, status, body, media_type, limit_headers)
            return
        if plan.kind == "drop":
            await _abort(scope)
            return
        if isinstance(route, accounting.ApiResponse):  # an unknown path: 404 after the limits
            await runtime.in_thread(_record_bytes, runtime, tenant_id, len(route.body))
            await _send_bytes(send, route.status, route.body, route.media_type, limit_headers)
            return
        request = accounting.ApiRequest(
            tenant_id=tenant_id,
            path=path,
            query=dict(QueryParams(scope.get("query_string", b"").decode("latin-1"))),
            headers=headers,
            base_url=_base_url(scope, headers),
        )
        if isinstance(route, writes.WriteRoute):
            write = writes.WriteRequest(api=request, method=scope["method"], body=body, client_id=client_id)
            response = await runtime.in_thread(_write, runtime, write, route)
        else:
            response = await runtime.in_thread(_read, runtime, request, route)
        await runtime.in_thread(_record_bytes, runtime, tenant_id, len(response.body))
        response_headers = {**response.headers, **limit_headers}
        if plan.kind == "truncate" and len(response.body) > 1:
            raw = [
                (b"content-type", response.media_type.encode()),
                (b"content-length", str(len(response.body)).encode()),
            ]
            raw += [(k.lower().encode(), v.encode("latin-1")) for k, v in response_headers.items()]
            await send({"type": "http.response.start", "status": response.status, "headers": raw})
            await send(
                {"type": "http.response.body", "body": response.body[: len(response.body) // 2], "more_body": True}
            )
            await _abort(scope)
            return
        body = b"" if scope["method"] == "HEAD" else response.body
        await _send_bytes(send, response.status, body, response.media_type, response_headers)


def _base_url(scope: Scope, headers: dict[str, str]) -> str:
    host = headers.get("host")
    if not host:
        server = scope.get("server") or ("127.0.0.1", 80)
        host = f"{server[0]}:{server[1]}"
    return f"{scope.get('scheme', 'http')}://{host}"


class _ClientGone(Exception):
    """The client disconnected before its request body was complete."""


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None once it grows past `limit` (answered 413 without reading on)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            # The client went away mid-body: a server never acts on part of a request (acting on it cached a
            # 400 under the request's Idempotency-Key, and the client's complete retry was then refused as
            # "used with a different request").
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _check_call(
    runtime: Runtime, headers: dict[str, str], path: str, method: str = "GET"
) -> (
    tuple[identity.Caller, str, accounting.ApiRoute | writes.WriteRoute | accounting.ApiResponse, limits.Limits]
    | accounting.ApiResponse
):
    store = runtime.store()
    as_json = accounting.wants_json(headers)
    try:
        caller = identity.authenticate_bearer(store, headers, now_ms=identity.identity_now_ms(store))
        tenant_id = identity.check_tenant(store, caller, headers)
    except identity.BearerError as error:
        return _bearer_response(error, as_json)
    route: accounting.ApiRoute | writes.WriteRoute
    try:
        route = accounting.resolve(path) if method in ("GET", "HEAD") else writes.resolve(method, path)
    except accounting.ApiError as error:
        # Unknown paths are answered after the rate limits, like any other call from this app.
        return (
            caller,
            tenant_id,
            accounting.error_response(error, as_json=as_json),
            limits.limits_for(store, tenant_id, caller.tier),
        )
    try:
        identity.check_scope(caller, route.scopes)
        if (
            isinstance(route, accounting.ApiRoute)
            and route.kind in ("journals", "journal")
            and caller.tier not in identity.JOURNAL_TIERS
        ):
            # Journals need the Advanced tier since 2 March 2026 (research notes §1.3).
            raise identity.BearerError(401, "AuthorizationUnsuccessful")
    except identity.BearerError as error:
        return _bearer_response(error, as_json)
    return caller, tenant_id, route, limits.limits_for(store, tenant_id, caller.tier)


def _bearer_response(error: identity.BearerError, as_json: bool) -> accounting.ApiResponse:
    body = error.body()
    if as_json:
        import orjson

        return accounting.ApiResponse(error.status, orjson.dumps(body), "application/json; charset=utf-8")
    return accounting.ApiResponse(error.status, accounting.render_xml("ApiException", body), "text/xml; charset=utf-8")


def _admit_day(runtime: Runtime, tenant_id: str, day_limit: int) -> tuple[bool, int]:
    store = runtime.store()
    return limits.admit_day(store, tenant_id, day_limit, store.now_ms())


def _record_rejection(runtime: Runtime, tenant_id: str) -> int:
    store = runtime.store()
    now = store.now_ms()
    store.add_usage(tenant_id, limits.day_key(now), 0, 0, rejected=1)
    return limits.day_calls(store, tenant_id, now)


def _seconds_to_next_day(runtime: Runtime) -> int:
    return limits.seconds_to_next_day(runtime.store().now_ms())


def _record_bytes(runtime: Runtime, tenant_id: str, nbytes: int) -> None:
    store = runtime.store()
    store.add_usage(tenant_id, limits.day_key(store.now_ms()), 0, nbytes)


def _read(runtime: Runtime, request: accounting.ApiRequest, route: accounting.ApiRoute) -> accounting.ApiResponse:
    store = runtime.store()
    return accounting.handle(store, request, route, now_ms=store.now_ms())


def _write(runtime: Runtime, request: writes.WriteRequest, route: writes.WriteRoute) -> accounting.ApiResponse:
    store = runtime.store()
    return writes.handle(store, request, route, now_ms=store.now_ms())


# ---------------------------------------------------------------------------------------------
# The application


class SandboxStarlette(Starlette):
    """Starlette that remembers uvicorn's transport in the scope, so faults can drop connections."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            cycle = getattr(send, "__self__", None)
            transport = getattr(cycle, "transport", None)
            if transport is not None:
                scope[TRANSPORT_KEY] = transport
        await super().__call__(scope, receive, send)


def create_app(state_path: Path | str, settings: SandboxSettings | None = None, **overrides: Any) -> SandboxStarlette:
    """Build the sandbox app over a state file, seeding it on first use (blocking until ready)."""
    if settings is None:
        settings = SandboxSettings(**overrides)
    elif overrides:
        settings = SandboxSettings(**{**settings.__dict__, **overrides})
    runtime = Runtime(state_path=str(state_path), settings=settings)
    runtime.bootstrap()
    routes = [
        *identity.routes(),
        *admin.routes(),
        Mount(accounting.API_PREFIX, app=ApiGate(runtime)),
    ]
    app = SandboxStarlette(routes=routes)
    app.state.runtime = runtime
    return app
