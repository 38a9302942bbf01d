"""Benchmark: generate one organisation, then page through all of it over HTTP at pageSize=1000.

Prints the generation time, the requests per second the sandbox served and the records per second
a client received, and checks that the client saw exactly the records the ground truth lists.
Rate limits are lifted for the run (Xero's 60 calls a minute would measure the limit, not the server).

    .venv/bin/python bench/sandbox_paging.py --size medium
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import httpx

from sandbox import generate
from sandbox.accounting import ENDPOINTS
from sandbox.store import SandboxStore
from sandbox.testing import SandboxServer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="medium", choices=("small", "medium", "large"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--state", type=Path, help="state file (default: a temporary one)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="sandbox-bench-") as tmp:
        state = args.state or Path(tmp) / "sandbox.db"
        store = SandboxStore(state)
        started = time.perf_counter()
        (tenant_id,) = generate.seed_sandbox(store, seed=args.seed, orgs=1, size=args.size)
        generation_s = time.perf_counter() - started
        truth = store.truth(tenant_id)
        store.close()
        records = sum(v["count"] for k, v in truth.items() if k != "Attachments")
        print(f"generated {args.size}: {records} records in {generation_s:.1f} s")

        with SandboxServer(state, orgs=0) as server:
            server.set_limits(minute=10**9, day=10**9, app_minute=10**9)
            token = server.connect()
            headers = {
                "Authorization": f"Bearer {token.access_token}",
                "xero-tenant-id": tenant_id,
                "Accept": "application/json",
            }
            requests = 0
            seen: dict[str, int] = {}
            started = time.perf_counter()
            with httpx.Client(base_url=f"{server.base_url}/api.xro/2.0", headers=headers, timeout=120) as api:
                for endpoint in ENDPOINTS.values():
                    params: dict[str, str | int] = {"unitdp": 4} if endpoint.unitdp else {}
                    if endpoint.include_archived:
                        params["includeArchived"] = "true"
                    if endpoint.include_deleted:
                        params["includeDeleted"] = "true"
                    page = 1
                    while True:
                        if endpoint.paged:
                            params.update(page=page, pageSize=1000)
                        elif endpoint.fixed_page:
                            params["page"] = page
                        response = api.get(f"/{endpoint.name}", params=params)
                        requests += 1
                        response.raise_for_status()
                        body = response.json()
                        items = body[endpoint.name]
                        seen[endpoint.name] = seen.get(endpoint.name, 0) + len(items)
                        if (endpoint.paged and page < body["pagination"]["pageCount"]) or (
                            endpoint.fixed_page and len(items) == 100
                        ):
                            page += 1
                        else:
                            break
            elapsed = time.perf_counter() - started
        total = sum(seen.values())
        print(f"paged {total} records in {requests} requests, {elapsed:.1f} s")
        print(f"requests/second: {requests / elapsed:.1f}; records/second: {total / elapsed:.0f}")
        mismatched = {k: (seen.get(k, 0), v["count"]) for k, v in truth.items() if k in seen and seen[k] != v["count"]}
        if mismatched:
            print(f"MISMATCH (seen, truth): {mismatched}")
            return 1
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
