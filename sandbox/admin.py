"""The sandbox's admin API under `/_sandbox/...`: outside Xero's paths, for tests, the demo and the CLI.

This module owns the admin endpoints: time (`advance`, identity clock skew), ground truth, usage,
organisations, reset, faults, tiers, limits, token lifetimes, consent mode, lock dates and damage
scenarios. There is no
authentication: it answers loopback clients only (it is a local test tool, never exposed).

It must not implement what it configures: data changes go to `sandbox.generate`/`sandbox.churn`,
limits to `sandbox.limits`, faults to `sandbox.faults`, apps and tokens to `sandbox.identity`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox import identity, limits
from sandbox.faults import FaultSpec
from sandbox.store import ms_date

if TYPE_CHECKING:
    from sandbox.app import Runtime

PREFIX = "/_sandbox"
_KEEP_ON_RESET = ("meta", "apps", "users")


class AdminError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


def _loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host in ("localhost", "testclient")


Handler = Callable[["Runtime", dict[str, Any], Request], Any]


def _endpoint(handler: Handler) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        if not _loopback(request):
            return JSONResponse({"error": "the admin API answers loopback clients only"}, status_code=403)
        body: dict[str, Any] = {}
        if request.method == "POST":
            raw = await request.body()
            if raw.strip():
                try:
                    body = json.loads(raw)
                except json.JSONDecodeError:
                    return JSONResponse({"error": "body must be JSON"}, status_code=400)
                if not isinstance(body, dict):
                    return JSONResponse({"error": "body must be a JSON object"}, status_code=400)
        runtime = _runtime(request)
        try:
            result = await runtime.in_thread(handler, runtime, body, request)
        except AdminError as error:
            return JSONResponse({"error": error.message}, status_code=error.status)
        except (ValueError, TypeError) as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        return JSONResponse(result)

    return endpoint


def _int(body: dict[str, Any], key: str, default: int | None = None) -> int | None:
    value = body.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise AdminError(400, f"{key} must be an integer")
    try:
        return int(value)
    except ValueError as exc:
        raise AdminError(400, f"{key} must be an integer") from exc


# ---------------------------------------------------------------------------------------------


def info(runtime: Runtime, body: dict[str, Any], request: Request) -> dict[str, Any]:
    return runtime.info(runtime.base_url or runtime.base_url_for(request))


def advance(runtime: Runtime, body: dict[str, Any], request: Request) -> dict[str, Any]:
    days = _int(body, "days", 1)
    if days is None or days < 0:
        raise AdminError(400, "days must be a non-negative integer")
    try:
        from sandbox import churn  # the data side
    except ImportError as exc:
        raise AdminError(501, "this sandbox build has no churn module") from exc

    store = runtime.store()
    result = churn.advance(store, days=days, seed=_int(body, "seed"))
    return {"days": days, "now_ms": store.now_ms(), "result": result}


def truth(runtime: Runtime, body: dict[str, Any], request: Request) -> dict[str, Any]:
    tenant_id = request.query_params.get("tenant", "")
    store = runtime.store()
    if not store.scalar("SELECT count(*) FROM orgs WHERE tenant_id=?", (tenant_id,)):
        raise AdminError(404, f"unknown tenant {tenant_id!r}")
    return {"tenant_id": tenant_id, "endpoints": store.truth(tenant_id)}


def usage(runtime: Runtime, body: dict[str, Any], request: Request) -> dict[str, Any]:
    """Per tenant: calls served, 429s, and response bytes sent (egress), in total and per UTC day."""
    store = runtime.store()
    wanted = request.query_params.get("tenant")
    tenants: dict[str, Any] = {}
    for tenant_id, day, calls, nbytes, rejected in store.query(
        "SELECT tenant_id, day, calls, bytes, rejected_429 FROM usage ORDER BY tenant_id, day"
    ):
        if wanted and tenant_id != wanted:
            continue
        entry = tenants.setdefault(tenant_id, {"calls": 0, "bytes": 0, "rejected_429": 0, "days": {}})
        entry["calls"] += calls
        entry["bytes"] += nbytes
        entry["rejected_429"] += rejected
        entry["days"][day] = {"calls": calls, "bytes": nbytes, "rejected_429": rejected}
    for (tenant_id, problem), count in runtime.limiter.rejections.items():  # this process's 429s, by limit
        if tenant_id in tenants:
            tenants[tenant_id].setdefault("rejected_by_problem", {})[problem] = count
    return {"tenants": tenants}


def list_orgs(runtime: Runtime, body: dict[str, Any], request: Request) -> dict[str, Any]:
    return {"tenants": runtime.info()["tenants"]}


def create_orgs(runtime: Runtime, body: dict[str, Any], request: Request) -> dict[str, Any]:
    """`{"size": "small", "seed": 5, "count": 1}` generates; `{"country": "NZ", "name": ...}` creates an empty one."""
    from sandbox import app as sandbox_app

    store = runtime.store()
    size = body.get("size")
    if size and size != "empty":
        seed = _int(body, "seed", runtime.settings.seed + 1000 + int(store.scalar("SELECT count(*) FROM orgs")))
        count = _int(body, "count", 1) or 1
        assert seed is not None
        created = sandbox_app.seed_organisations(store, seed=seed, orgs=count, size=str(size), anchor_ms=None)
    else:
        from sandbox import generate

        country = str(body.get("country", "NZ")).upper()
        tenant_id = generate.create_empty_org(
            store,
            country=country,
            base_currency=body.get("base_currency"),
            name=str(body.get("name") or f"Empty organisation ({country})"),
        )
        identity.ensure_default_user(store)
        created = [tenant_id]
    all_tenants = runtime.info()["tenants"]
    return {"created": [t for t in all_tenants if t["tenant_id"] in created]}


def reset(runtime: Runtime, body: dict[str, Any], request: Request) -> dict[str, Any]:
    """Back to a first start: wipe data, tokens, connections, usage and config; seed again."""
    store = runtime.store()
    tables = [
        name
        for (name,) in store.query("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")
        if name not in _KEEP_ON_RESET
    ]
    with store.transaction():
        for table in tables:
            store.query(f'DELETE FROM "{table}"')
    runtime.limiter.reset()
    runtime.bootstrap()
    return {"tenants": runtime.info()["tenants"]}


def faults(runtime: Runtime, body: dict[str, Any], request: Request) -> dict[str, Any]:
    if request.method == "POST":
        spec = FaultSpec.parse(body["spec"]) if "spec" in body else FaultSpec.from_dict(body)
        runtime.set_faults(spec)
    current = runtime.fault_spec()
    return {"spec": current.to_spec(), "faults": current.to_dict()}


def tier(runtime: Runtime, body: dict[str, Any], request: Request) -> dict[str, Any]:
    store = runtime.store()
    if request.method == "POST":
        identity.set_app_tier(store, str(body.get("tier", "")), body.get("client_id"))
    app = identity.load_app(store, str(body.get("client_id") or runtime.client_id))
    return {"client_id": app.client_id if app else None, "tier": app.tier if app else None}


def limits_endpoint(runtime: Runtime, body: dict[str, Any], request: Request) -> dict[str, Any]:
    store = runtime.store()
    if request.method == "POST":
        values = {k: body[k] for k in limits.Limits.__dataclass_fields__ if k in body}
        limits.set_limits(store, values, body.get("tenant"))
        if body.get("reset_windows"):
            runtime.limiter.reset()
    return {"limits": store.get_config("limits", {}) or {}, "defaults": limits.describe(limits.Limits())}


def tokens(runtime: Runtime, body: dict[str, Any], request: Request) -> dict[str, Any]:
    store = runtime.store()
    if request.method == "POST":
        current = store.get_config("tokens", {}) or {}
        for key in identity.TokenSettings.__dataclass_fields__:
            if key in body:
                value = _int(body, key)
                if value is None or value < 1:
                    raise AdminError(400, f"{key} must be a positive integer")
                current[key] = value
        store.set_config("tokens", current)
    return identity.TokenSettings.load(store).__dict__


def clock(runtime: Runtime, body: dict[str, Any], request: Request) -> dict[str, Any]:
    """`{"identity_skew_s": n}`: move the token clock (expiry, grace) without touching business time."""
    store = runtime.store()
    if request.method == "POST" and "identity_skew_s" in body:
        skew = _int(body, "identity_skew_s", 0) or 0
        store.set_config("identity_skew_ms", skew * 1000)
    return {
        "identity_skew_s": int(store.get_config("identity_skew_ms", 0) or 0) // 1000,
        "identity_now_ms": identity.identity_now_ms(store),
        "business_now_ms": store.now_ms(),
    }


def consent(runtime: Runtime, body: dict[str, Any], request: Request) -> dict[str, Any]:
    store = runtime.store()
    if request.method == "POST":
        store.set_config("auto_consent", bool(body.get("auto", True)))
    return {"auto": runtime.auto_consent()}


def damage(runtime: Runtime, body: dict[str, Any], request: Request) -> dict[str, Any]:
    """`{"kind": "onboarding", "tenant": ID, ...options}` plays a damage scenario and returns its ground truth;
    `GET ?tenant=ID` lists the ground truth recorded so far."""
    from sandbox import damage as scenarios  # the data side

    store = runtime.store()
    if request.method == "GET":
        tenant_id = request.query_params.get("tenant", "")
        return {"tenant_id": tenant_id, "events": scenarios.ground_truth(store, tenant_id)}
    options = {k: v for k, v in body.items() if k not in ("kind", "tenant")}
    try:
        return scenarios.play(store, str(body.get("tenant", "")), str(body.get("kind", "")), options)
    except scenarios.DamageError as error:
        raise AdminError(400, str(error)) from error


def lock_dates(runtime: Runtime, body: dict[str, Any], request: Request) -> dict[str, Any]:
    """`{"tenant": ID, "period_lock_date": "2026-03-31", "end_of_year_lock_date": ...}`: Xero sets lock dates in
    its web app only (no API), so a test sets them here; `null` clears one."""
    store = runtime.store()
    tenant_id = str(body.get("tenant", ""))
    doc = store.scalar("SELECT doc FROM orgs WHERE tenant_id=?", (tenant_id,))
    if doc is None:
        raise AdminError(404, f"unknown tenant {tenant_id!r}")
    organisation = json.loads(doc)
    for key, field in (("period_lock_date", "PeriodLockDate"), ("end_of_year_lock_date", "EndOfYearLockDate")):
        if key in body:
            if body[key]:
                try:
                    day = dt.datetime.strptime(str(body[key])[:10], "%Y-%m-%d").replace(tzinfo=dt.UTC)
                except ValueError as error:
                    raise AdminError(400, f"{key} must be a date YYYY-MM-DD") from error
                organisation[field] = ms_date(int(day.timestamp() * 1000))  # Xero's msdate form (SPEC)
            else:
                organisation.pop(field, None)
    store.query("UPDATE orgs SET doc=? WHERE tenant_id=?", (json.dumps(organisation), tenant_id))
    return {k: organisation.get(k) for k in ("PeriodLockDate", "EndOfYearLockDate")}


def routes() -> list[Route]:
    return [
        Route(f"{PREFIX}/info", _endpoint(info), methods=["GET"]),
        Route(f"{PREFIX}/advance", _endpoint(advance), methods=["POST"]),
        Route(f"{PREFIX}/truth", _endpoint(truth), methods=["GET"]),
        Route(f"{PREFIX}/usage", _endpoint(usage), methods=["GET"]),
        Route(f"{PREFIX}/orgs", _endpoint(list_orgs), methods=["GET"]),
        Route(f"{PREFIX}/orgs", _endpoint(create_orgs), methods=["POST"]),
        Route(f"{PREFIX}/reset", _endpoint(reset), methods=["POST"]),
        Route(f"{PREFIX}/faults", _endpoint(faults), methods=["GET", "POST"]),
        Route(f"{PREFIX}/tier", _endpoint(tier), methods=["GET", "POST"]),
        Route(f"{PREFIX}/limits", _endpoint(limits_endpoint), methods=["GET", "POST"]),
        Route(f"{PREFIX}/tokens", _endpoint(tokens), methods=["GET", "POST"]),
        Route(f"{PREFIX}/clock", _endpoint(clock), methods=["GET", "POST"]),
        Route(f"{PREFIX}/consent", _endpoint(consent), methods=["GET", "POST"]),
        Route(f"{PREFIX}/damage", _endpoint(damage), methods=["GET", "POST"]),
        Route(f"{PREFIX}/lockdates", _endpoint(lock_dates), methods=["POST"]),
    ]
