"""Rate limits and faults on the sandbox over real HTTP, including concurrent load."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from sandbox.faults import FaultInjector, FaultSpec
from sandbox.limits import Limits, RateLimiter
from sandbox.testing import TokenSet
from tests.conftest import TinySandbox


@pytest.fixture
def headers(sandbox_server: TinySandbox, tokens: TokenSet) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {tokens.access_token}",
        "xero-tenant-id": sandbox_server.org.tenant_id,
        "Accept": "application/json",
    }


@pytest.fixture
def api(sandbox_server: TinySandbox, headers: dict[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{sandbox_server.base_url}/api.xro/2.0", headers=headers, timeout=30) as client:
        yield client


def test_every_response_carries_the_limit_headers(api: httpx.Client) -> None:
    first = api.get("/Accounts")
    second = api.get("/NoSuchThing")  # errors after authentication count too
    assert first.headers["X-MinLimit-Remaining"] == "59"
    assert first.headers["X-DayLimit-Remaining"] == "4999"
    assert first.headers["X-AppMinLimit-Remaining"] == "9999"
    assert second.status_code == 404
    assert second.headers["X-MinLimit-Remaining"] == "58"


def test_starter_tier_has_a_1000_call_day(sandbox_server: TinySandbox, api: httpx.Client) -> None:
    sandbox_server.server.set_tier("starter")
    assert api.get("/Accounts").headers["X-DayLimit-Remaining"] == "999"


def test_minute_limit_gives_429_with_retry_after(sandbox_server: TinySandbox, api: httpx.Client) -> None:
    sandbox_server.server.set_limits(sandbox_server.org.tenant_id, minute=3)
    statuses = [api.get("/Accounts") for _ in range(5)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429, 429]
    refused = statuses[3]
    assert refused.headers["X-Rate-Limit-Problem"] == "minute"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["X-MinLimit-Remaining"] == "0"
    usage = sandbox_server.server.usage()[sandbox_server.org.tenant_id]
    assert usage["calls"] == 3
    assert usage["rejected_429"] == 2


def test_day_limit_exhaustion_fault(sandbox_server: TinySandbox, api: httpx.Client) -> None:
    sandbox_server.server.set_faults(f"exhaust={sandbox_server.org.tenant_id}")
    refused = api.get("/Accounts")
    assert refused.status_code == 429
    assert refused.headers["X-Rate-Limit-Problem"] == "day"
    assert refused.headers["X-DayLimit-Remaining"] == "0"
    assert int(refused.headers["Retry-After"]) >= 1


async def test_concurrent_limit_under_load(sandbox_server: TinySandbox, headers: dict[str, str]) -> None:
    # Each call holds its slot for the injected latency, so 12 simultaneous calls exceed 5 in flight.
    sandbox_server.server.set_faults("latency_ms=400")
    async with httpx.AsyncClient(base_url=f"{sandbox_server.base_url}/api.xro/2.0", headers=headers) as client:
        responses = await asyncio.gather(*(client.get("/Accounts") for _ in range(12)))
    codes = [r.status_code for r in responses]
    assert codes.count(200) == 5
    assert codes.count(429) == 7
    assert {r.headers["X-Rate-Limit-Problem"] for r in responses if r.status_code == 429} == {"concurrent"}


async def test_minute_limit_under_concurrent_load(sandbox_server: TinySandbox, headers: dict[str, str]) -> None:
    sandbox_server.server.set_limits(minute=8, concurrent=50)
    async with httpx.AsyncClient(base_url=f"{sandbox_server.base_url}/api.xro/2.0", headers=headers) as client:
        responses = await asyncio.gather(*(client.get("/Accounts") for _ in range(20)))
    codes = [r.status_code for r in responses]
    assert codes.count(200) == 8
    assert {r.headers["X-Rate-Limit-Problem"] for r in responses if r.status_code == 429} == {"minute"}


@pytest.mark.parametrize("status", [500, 503, 504])
def test_server_error_faults(sandbox_server: TinySandbox, api: httpx.Client, status: int) -> None:
    sandbox_server.server.set_faults(f"{status}=1")
    response = api.get("/Accounts")
    assert response.status_code == status
    assert "X-MinLimit-Remaining" in response.headers
    sandbox_server.server.set_faults("none")
    assert api.get("/Accounts").status_code == 200


def test_dropped_connection_fault(sandbox_server: TinySandbox, api: httpx.Client) -> None:
    sandbox_server.server.set_faults("drop=1")
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        api.get("/Accounts")


def test_truncated_body_fault(sandbox_server: TinySandbox, api: httpx.Client) -> None:
    sandbox_server.server.set_faults("truncate=1")
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        api.get("/Invoices", params={"page": 1})


def test_slow_fault(sandbox_server: TinySandbox, headers: dict[str, str]) -> None:
    sandbox_server.server.set_faults("slow=1,slow_ms=5000")
    base_url = f"{sandbox_server.base_url}/api.xro/2.0"
    with httpx.Client(base_url=base_url, headers=headers, timeout=0.5) as client, pytest.raises(httpx.ReadTimeout):
        client.get("/Accounts")


def test_faults_are_deterministic_under_a_seed(sandbox_server: TinySandbox, api: httpx.Client) -> None:
    def run() -> list[int]:
        sandbox_server.server.set_faults("none")
        sandbox_server.server.set_faults("seed=42,503=0.5")
        return [api.get("/Accounts").status_code for _ in range(12)]

    first = run()
    assert set(first) == {200, 503}
    assert run() == first
    sandbox_server.server.set_limits(minute=1000)


def test_fault_spec_round_trips_and_rejects_nonsense() -> None:
    spec = FaultSpec.parse("seed=7,500=0.1,drop=0.05,slow=0.2,slow_ms=100,latency_ms=5,jitter_ms=3,exhaust=a+b")
    assert spec.p500 == 0.1
    assert spec.drop == 0.05
    assert spec.exhaust == ("a", "b")
    assert FaultSpec.parse(spec.to_spec()) == spec
    assert FaultSpec.parse("none") == FaultSpec()
    for bad in ("500=2", "boom=1", "500", "500=0.6,503=0.6", "latency_ms=-1"):
        with pytest.raises(ValueError):
            FaultSpec.parse(bad)


def test_fault_injector_sequence_depends_only_on_seed() -> None:
    def plans(seed: int) -> list[str | None]:
        injector = FaultInjector()
        injector.use(FaultSpec.parse(f"seed={seed},500=0.3,drop=0.3"))
        return [injector.decide().kind for _ in range(50)]

    assert plans(1) == plans(1)
    assert plans(1) != plans(2)
    assert {"500", "drop", None} == set(plans(1))


def test_rate_limiter_fixed_windows_with_an_injected_clock() -> None:
    now = [1000.0]
    limiter = RateLimiter(clock=lambda: now[0])
    limits = Limits(concurrent=2, minute=3, day=10, app_minute=5)
    first = limiter.acquire("t1", "app", limits)
    assert first.allowed
    assert first.minute_remaining == 2
    assert limiter.acquire("t1", "app", limits).allowed
    refused = limiter.acquire("t1", "app", limits)
    assert (refused.allowed, refused.problem) == (False, "concurrent")
    limiter.release("t1")
    limiter.release("t1")
    assert limiter.acquire("t1", "app", limits).allowed
    limiter.release("t1")
    now[0] += 45
    minute = limiter.acquire("t1", "app", limits)
    assert (minute.problem, minute.retry_after) == ("minute", 15)
    # Another tenant has its own window but shares the app's.
    assert limiter.acquire("t2", "app", limits).allowed
    limiter.release("t2")
    assert limiter.acquire("t2", "app", limits).allowed
    limiter.release("t2")
    app_minute = limiter.acquire("t2", "app", limits)
    assert app_minute.problem == "appminute"
    # The fixed window opens again 60 s after it started.
    now[0] += 15
    assert limiter.acquire("t1", "app", limits).allowed
    # A call the day limit refuses gives its minute slot back.
    limiter.rollback("t1", "app")
    assert limiter.acquire("t1", "app", limits).minute_remaining == 2
