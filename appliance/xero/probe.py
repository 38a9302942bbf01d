"""Adapter: is Xero reachable from here, and does this machine's clock agree with it? (for `strongroom doctor`)

One unauthenticated GET; any HTTP answer means reachable. Xero's answers carry a `Date` header (RFC 9110
§6.6.1), which gives the clock check: OAuth tokens carry `nbf`/`exp` claims and a badly skewed clock makes them
look not yet valid or expired.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import httpx


@dataclass(frozen=True)
class Probe:
    url: str
    status: int | None
    skew_seconds: float | None
    """Our clock minus the server's (positive: we are ahead); None without a usable Date header."""
    error: str | None = None


def probe(url: str, *, timeout: float = 10.0, transport: httpx.BaseTransport | None = None) -> Probe:
    try:
        with httpx.Client(timeout=timeout, transport=transport, follow_redirects=False) as client:
            started = time.time()
            response = client.get(url)
            ended = time.time()
    except httpx.HTTPError as error:
        return Probe(url, None, None, error=f"{type(error).__name__}: {error}")
    skew = None
    header = response.headers.get("date")
    if header:
        try:
            server = parsedate_to_datetime(header).timestamp()
        except (TypeError, ValueError):
            server = None
        if server is not None:
            # The header has one-second resolution; compare with the middle of the exchange.
            skew = (started + ended) / 2 - server
    return Probe(url, response.status_code, skew)
