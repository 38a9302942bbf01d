"""The Xero Accounting API client: one async httpx client for every read (and restore write) Strongroom makes.

This module owns the HTTP side of reading: the headers Xero needs (`Accept: application/json`,
`xero-tenant-id`, the bearer token), admission through the rate governor, retries of 5xx, timeouts,
dropped connections and truncated bodies under the retry policy, 429 handling (wait `Retry-After` for
minute and concurrency limits; `DayBudgetExhausted` for the day limit, never a sleep), one forced token
refresh on 401, paging (the `pagination` object, capped at `pageCount`, else "until a short page"), and
streaming attachment downloads. It counts calls and bytes per tenant. The write side (`put_json`, `post_json`,
`upload`, used only by the restore) goes through the same governor, retry and 429 rules, always with an
`Idempotency-Key`, so a retried write is replayed by Xero instead of creating a second record.

It must not decide what to back up (the backup use case does, from the catalogue), store anything, or let an
httpx exception escape: everything leaves as an `appliance.errors` type. It never logs tokens.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO, Protocol

import httpx

from appliance import logs
from appliance.errors import (
    DayBudgetExhausted,
    XeroError,
    XeroForbidden,
    XeroRateLimited,
    XeroRejected,
    XeroUnavailable,
)
from appliance.settings import RateLimits, XeroHosts
from appliance.xero.catalogue import Endpoint, Paging
from appliance.xero.dates import format_if_modified_since, parse_ms_date
from appliance.xero.governor import Limit, RateGovernor, RetryPolicy, Verdict

__all__ = ["AccessTokens", "TenantStats", "XeroClient", "parse_ms_date"]

logger = logging.getLogger(__name__)

API_PREFIX = "/api.xro/2.0/"
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
# Transient server answers. 501 is not among them: Xero uses it for "NotImplemented", which a retry cannot fix.
RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})
MAX_RATE_LIMIT_WAITS = 30
"""Consecutive minute/concurrency 429s on one call before giving up (a storm that never ends is an outage)."""


class AccessTokens(Protocol):
    """What the client needs from the token manager."""

    async def access_token(self, grant_id: str, *, rejected: str | None = None) -> str: ...


@dataclass
class TenantStats:
    calls: int = 0
    """HTTP requests sent, retries included (what Xero counts against the limits)."""
    bytes_downloaded: int = 0
    """Response bytes on the wire (what Xero's egress charge measures, research §1.3)."""
    retries: int = 0
    rate_limited: int = 0
    forced_refreshes: int = 0


class _Retry(Exception):
    """Internal: this attempt failed in a way the retry policy covers."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class XeroClient:
    """Reads one or many tenants of one Xero app (its governor is the app's)."""

    def __init__(
        self,
        hosts: XeroHosts,
        tokens: AccessTokens,
        governor: RateGovernor,
        *,
        limits: RateLimits,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        rng: random.Random | None = None,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    ) -> None:
        self._base = hosts.api_url.rstrip("/") + API_PREFIX
        self._tokens = tokens
        self._governor = governor
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._retry = retry or RetryPolicy(max_retries=limits.max_retries)
        self._http = httpx.AsyncClient(
            transport=transport,
            timeout=timeout,
            trust_env=False,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=max(10, limits.tenant_concurrent * 4)),
        )
        self._slot_freed: dict[str, asyncio.Event] = {}
        self.stats: dict[str, TenantStats] = {}

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> XeroClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _stats(self, tenant_id: str) -> TenantStats:
        return self.stats.setdefault(tenant_id, TenantStats())

    # -- public reads ---------------------------------------------------------------------
    async def get_json(
        self,
        grant_id: str,
        tenant_id: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        if_modified_since: datetime | None = None,
    ) -> dict[str, Any]:
        """GET `path` (under `/api.xro/2.0/`) as JSON. A 304 Not Modified gives `{}`."""
        headers = {"Accept": "application/json"}
        if if_modified_since is not None:
            headers["If-Modified-Since"] = format_if_modified_since(if_modified_since)

        result = await self._call(
            grant_id, tenant_id, path, params=params, headers=headers, consume=_json_consumer(path)
        )
        return result if result is not None else {}

    # -- public writes ----------------------------------------------------------------------
    async def write_json(
        self,
        grant_id: str,
        tenant_id: str,
        method: str,
        path: str,
        body: Mapping[str, Any],
        *,
        idempotency_key: str,
        summarize_errors: bool | None = False,
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """PUT (create) or POST (create or update) a JSON body; the parsed answer.

        `summarize_errors=False` sends `summarizeErrors=false`, so a batch answers 200 with a
        `StatusAttributeString` and `ValidationErrors` per element instead of a 400 that hides which elements
        were saved (research §4.2; StackOverflow 52706101); `None` leaves the parameter out, for endpoints
        whose SPEC operation does not take it. `idempotency_key` (128 characters at most, SPEC) makes Xero
        replay its cached answer for a retried identical request, so the transport retries below never
        create a second record (research §4.3). A 400 with Xero's error shape raises `XeroRejected` with
        the parsed body as `detail`.
        """
        if method not in ("PUT", "POST"):
            raise ValueError(f"not a write method: {method}")
        if not idempotency_key or len(idempotency_key) > 128:
            raise ValueError("an Idempotency-Key of 1 to 128 characters is required")
        query = dict(params or {})
        if summarize_errors is not None:
            query["summarizeErrors"] = "true" if summarize_errors else "false"
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "Idempotency-Key": idempotency_key,
        }
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        result = await self._call(
            grant_id,
            tenant_id,
            path,
            params=query or None,
            headers=headers,
            consume=_json_consumer(path),
            method=method,
            content=content,
        )
        return result if result is not None else {}

    async def upload(
        self,
        grant_id: str,
        tenant_id: str,
        path: str,
        content: bytes,
        *,
        content_type: str,
        idempotency_key: str,
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """PUT raw bytes (an attachment: `/{Endpoint}/{id}/Attachments/{FileName}`, ATT); the parsed answer.

        Xero takes the file as the raw request body with its MIME type as Content-Type (ATT); a PUT of the
        same file name replaces the file, so a retried upload cannot leave two copies.
        """
        if not idempotency_key or len(idempotency_key) > 128:
            raise ValueError("an Idempotency-Key of 1 to 128 characters is required")
        headers = {
            "Accept": "application/json",
            "Content-Type": content_type or "application/octet-stream",
            "Idempotency-Key": idempotency_key,
        }
        result = await self._call(
            grant_id,
            tenant_id,
            path,
            params=params,
            headers=headers,
            consume=_json_consumer(path),
            method="PUT",
            content=content,
        )
        return result if result is not None else {}

    async def iter_records(
        self,
        grant_id: str,
        tenant_id: str,
        endpoint: Endpoint,
        *,
        modified_since: datetime | None = None,
        page_size: int = 1000,
        start_offset: int = 0,
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Yield the endpoint's records page by page (never an empty page).

        `modified_since` is sent as If-Modified-Since where the endpoint honours it and ignored elsewhere
        (those endpoints are read whole). `start_offset` resumes Journals after a JournalNumber.
        """
        since = modified_since if endpoint.if_modified_since else None
        if endpoint.paging is Paging.NONE:
            body = await self.get_json(
                grant_id, tenant_id, endpoint.path, params=endpoint.query(), if_modified_since=since
            )
            records = _records(body, endpoint)
            if records:
                yield records
            return
        if endpoint.paging is Paging.OFFSET:
            async for records in self._iter_offset(grant_id, tenant_id, endpoint, since, start_offset):
                yield records
            return
        full_page = min(page_size, endpoint.page_size or page_size) if endpoint.paging is Paging.PAGE else 100
        page = 1
        first_ids: str | None = None
        while True:
            params = endpoint.query(page=page, page_size=page_size)
            body = await self.get_json(grant_id, tenant_id, endpoint.path, params=params, if_modified_since=since)
            records = _records(body, endpoint)
            if not records:
                return
            first = _first_id(records, endpoint)
            if first is not None and first == first_ids:
                # Xero once ignored paging and returned everything on every page (singer-io/tap-xero#104,
                # research §8.3): stop instead of burning the day budget.
                raise XeroRejected(f"Xero returned the same {endpoint.name} page twice (page {page})", status=200)
            first_ids = first
            yield records
            page_count = _page_count(body)
            if page_count is not None:
                if page >= page_count:
                    return
            elif len(records) < full_page:
                # No pagination object (it came and went in Xero's spec, §8.4): a short page is the last.
                return
            page += 1

    async def _iter_offset(
        self, grant_id: str, tenant_id: str, endpoint: Endpoint, since: datetime | None, offset: int
    ) -> AsyncIterator[list[dict[str, Any]]]:
        # Journals: "journals with a JournalNumber greater than the offset will be returned", 100 at a time,
        # oldest first; the next offset is the last JournalNumber received (JRN; CM-JRN, research §2.2).
        while True:
            body = await self.get_json(
                grant_id, tenant_id, endpoint.path, params=endpoint.query(offset=offset), if_modified_since=since
            )
            records = _records(body, endpoint)
            if not records:
                return
            yield records
            numbers = [r["JournalNumber"] for r in records if isinstance(r.get("JournalNumber"), int)]
            if not numbers or max(numbers) <= offset:
                raise XeroRejected(f"Xero's {endpoint.name} offset did not advance past {offset}", status=200)
            offset = max(numbers)
            if len(records) < (endpoint.page_size or 100):
                return

    async def download(
        self, grant_id: str, tenant_id: str, path: str, out: BinaryIO, *, content_type: str | None = None
    ) -> int:
        """Stream `path`'s raw bytes (an attachment) into `out`; return the number of bytes written.

        `out` must be seekable: a retried download starts again from where it started. The SPEC declares a
        `contentType` header with the attachment's MIME type on these GETs; it is sent when known.
        """
        headers = {"Accept": "application/octet-stream"}
        if content_type:
            headers["contentType"] = content_type
        start = out.tell()

        async def consume(response: httpx.Response) -> int:
            out.seek(start)
            out.truncate()
            written = 0
            expected = response.headers.get("content-length")
            async for chunk in response.aiter_bytes():
                out.write(chunk)
                written += len(chunk)
            if expected is not None and expected.isdigit() and int(expected) != written:
                raise _Retry("truncated download")
            return written

        result = await self._call(grant_id, tenant_id, path, params=None, headers=headers, consume=consume)
        if result is None:
            raise XeroRejected(f"Xero answered {path} with 304 Not Modified", status=304)
        return int(result)

    # -- the call loop ----------------------------------------------------------------------
    async def _admit(self, tenant_id: str) -> None:
        """Wait until the governor lets a call for `tenant_id` go (it is then counted)."""
        while True:
            decision = self._governor.acquire(tenant_id, self._clock())
            if decision.verdict is Verdict.GO:
                return
            if decision.verdict is Verdict.CHECKPOINT:
                raise DayBudgetExhausted(
                    f"the day's call budget for tenant {tenant_id} is spent",
                    retry_after=decision.delay,
                    limit="day",
                    hint="the run checkpoints and resumes after Xero's day window resets",
                )
            if decision.limit is Limit.CONCURRENT and decision.delay <= 0:
                # Event.clear and the decision happen with no await in between, and release sets the event
                # synchronously: no wake-up can be lost.
                event = self._slot_freed.setdefault(tenant_id, asyncio.Event())
                event.clear()
                await event.wait()
            else:
                await self._sleep(decision.delay)

    def _release(self, tenant_id: str) -> None:
        self._governor.release(tenant_id)
        event = self._slot_freed.get(tenant_id)
        if event is not None:
            event.set()

    async def _call(
        self,
        grant_id: str,
        tenant_id: str,
        path: str,
        *,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str],
        consume: Callable[[httpx.Response], Awaitable[Any]],
        method: str = "GET",
        content: bytes | None = None,
    ) -> Any:
        url = self._base + path.lstrip("/")
        stats = self._stats(tenant_id)
        attempt = 0
        rate_limit_waits = 0
        rejected_token: str | None = None
        refreshed = False
        while True:
            await self._admit(tenant_id)
            try:
                token = await self._tokens.access_token(grant_id, rejected=rejected_token)
                logs.register_secret(token)
                request_headers = {**headers, "Authorization": f"Bearer {token}", "xero-tenant-id": tenant_id}
                stats.calls += 1
                try:
                    async with self._http.stream(
                        method, url, params=params, headers=request_headers, content=content
                    ) as response:
                        try:
                            status = response.status_code
                            if status != 429:
                                # A 429's own counts are handled by `on_429`, which knows when Xero's window resets.
                                self._governor.on_response(tenant_id, response.headers, self._clock())
                            if status == 200:
                                return await consume(response)
                            if status == 304 and method == "GET":
                                return None
                            body = await response.aread()
                        finally:
                            stats.bytes_downloaded += response.num_bytes_downloaded
                except (httpx.TransportError, httpx.DecodingError) as error:
                    raise _Retry(type(error).__name__) from None
            except _Retry as retry:
                attempt += 1
                delay = self._retry.next_delay(attempt, self._rng)
                if delay is None:
                    raise XeroUnavailable(
                        f"Xero did not answer {path} after {attempt} attempts ({retry.reason})",
                        hint="Xero or the network is unwell; the next run resumes",
                    ) from None
                stats.retries += 1
                logger.info("%s %s: %s; retry %d in %.2f s", method, path, retry.reason, attempt, delay)
                await self._sleep(delay)
                continue
            finally:
                self._release(tenant_id)

            # A complete non-200 answer.
            if status == 401 and not refreshed:
                # Typically an access token that expired in flight: one forced refresh, then retry.
                refreshed = True
                rejected_token = token
                stats.forced_refreshes += 1
                continue
            if status == 429:
                stats.rate_limited += 1
                problem = response.headers.get("x-rate-limit-problem")
                retry_after = _retry_after(response.headers.get("retry-after"))
                decision = self._governor.on_429(tenant_id, problem, retry_after, self._clock())
                if decision.verdict is Verdict.CHECKPOINT:
                    raise DayBudgetExhausted(
                        f"Xero's day limit for tenant {tenant_id} is reached",
                        retry_after=decision.delay,
                        limit="day",
                        hint="the run checkpoints and resumes after Xero's day window resets",
                    )
                rate_limit_waits += 1
                if rate_limit_waits > MAX_RATE_LIMIT_WAITS:
                    raise XeroRateLimited(
                        f"Xero kept answering 429 ({problem or 'no problem header'}) for {path}",
                        retry_after=decision.delay,
                        limit=decision.limit.value,
                    )
                logger.info("%s %s: 429 %s; waiting %.1f s", method, path, problem or "", decision.delay)
                continue  # _admit waits: the governor now blocks the limit Xero named
            if status in RETRYABLE_STATUSES:
                attempt += 1
                delay = self._retry.next_delay(attempt, self._rng)
                if delay is None:
                    raise XeroUnavailable(f"Xero answered {path} with HTTP {status} {attempt} times")
                stats.retries += 1
                logger.info("%s %s: HTTP %d; retry %d in %.2f s", method, path, status, attempt, delay)
                await self._sleep(delay)
                continue
            raise _rejection(path, status, body, response.headers)


def _json_consumer(path: str) -> Callable[[httpx.Response], Awaitable[dict[str, Any]]]:
    async def consume(response: httpx.Response) -> dict[str, Any]:
        body = await response.aread()
        content_type = response.headers.get("content-type", "")
        if "json" not in content_type.lower():
            # Xero answers XML unless asked for JSON (RR); a non-JSON 200 is a gateway page or a server that
            # ignored Accept: parsing it as data would corrupt the mirror.
            raise XeroRejected(
                f"Xero answered {path} with {content_type or 'no content type'}, not JSON",
                status=response.status_code,
                correlation_id=response.headers.get("xero-correlation-id"),
            )
        try:
            value = json.loads(body)
        except ValueError:
            # A JSON body that does not parse was cut short: retry like a dropped connection.
            raise _Retry("truncated JSON body") from None
        if not isinstance(value, dict):
            raise XeroRejected(f"Xero's answer to {path} is not a JSON object", status=response.status_code)
        return value

    return consume


def _records(body: Mapping[str, Any], endpoint: Endpoint) -> list[dict[str, Any]]:
    records = body.get(endpoint.collection)
    if records is None:
        return []
    if not isinstance(records, list):
        raise XeroRejected(f"Xero's {endpoint.name} answer has no list under {endpoint.collection!r}", status=200)
    return records


def _first_id(records: list[dict[str, Any]], endpoint: Endpoint) -> str | None:
    if endpoint.id_field is None or not records:
        return None
    value = records[0].get(endpoint.id_field)
    return None if value is None else str(value)


def _page_count(body: Mapping[str, Any]) -> int | None:
    pagination = body.get("pagination")
    if isinstance(pagination, Mapping):
        count = pagination.get("pageCount")
        if isinstance(count, int):
            return count
    return None


def _retry_after(value: str | None) -> float | None:
    """`Retry-After` in seconds (Xero sends seconds, LIMITS); the HTTP-date form is tolerated."""
    if value is None:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


def _rejection(path: str, status: int, body: bytes, headers: httpx.Headers) -> XeroError:
    detail: object = None
    message = ""
    try:
        detail = json.loads(body) if body else None
    except ValueError:
        detail = logs.mask(body[:500].decode("utf-8", "replace"))
    if isinstance(detail, dict):
        # Xero's API errors: {"ErrorNumber","Type","Message","Elements"}; identity-style: {"Title","Detail"}.
        message = str(detail.get("Message") or detail.get("Detail") or detail.get("Title") or "")
    correlation_id = headers.get("xero-correlation-id")
    text = f"Xero answered {path} with HTTP {status}" + (f": {logs.mask(message)}" if message else "")
    if status in (401, 403):
        return XeroForbidden(text, hint="the organisation may be disconnected or a scope missing; reconnect it")
    return XeroRejected(text, status=status, detail=detail, correlation_id=correlation_id)
