"""Restore cost against the floor: API calls of a whole restore of a generated organisation into a new one,
and the time it needs under Xero's limits.

    .venv/bin/python bench/restore_calls.py --size medium

Floor (issue 7): ceil(records / 50) per batchable step plus one call per element of a step Xero takes one at a
time (accounts, tax rates, currencies, tracking, contact groups, allocations, linked transactions, archiving)
and one per attachment; voids and deletions are batchable (50 status changes per POST)
(`appliance.restore.plan.floor_calls` over the elements the plan selected). Strongroom also reads
the target's settings to map system accounts, tax rates and names (a few calls per run): they are counted.
Xero's per-minute limit is lifted in the sandbox so the run is quick; "minutes under Xero's limits" is
calls / 60 (the per-tenant minute limit) and "days" is calls / 5,000 (the day limit above Starter).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import tempfile
import time
from pathlib import Path

from appliance.restore import usecases
from appliance.restore.plan import STEPS, floor_calls
from appliance.restore.push import PointSource, select_elements
from appliance.service import Appliance
from sandbox.demo import connect_through_browserless_consent, demo_settings
from sandbox.testing import SandboxServer
from sandbox.writes import WRITE_EVERYTHING_SCOPE

ANCHOR_MS = 1_790_000_000_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="medium")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-restore-"))
    port = free_port()
    uri = f"http://localhost:{port}/callback"
    started = time.monotonic()
    with SandboxServer(
        root / "sandbox.db", orgs=1, size=args.size, seed=args.seed, anchor_ms=ANCHOR_MS, redirect_uris=(uri,)
    ) as sandbox:
        print(f"sandbox ready in {time.monotonic() - started:.1f} s")
        sandbox.set_limits(minute=100_000, day=1_000_000)
        settings, _toml = demo_settings(sandbox.info, root, uri)
        settings.limits.tenant_per_minute = 100_000
        settings.limits.tenant_per_day = 1_000_000
        settings.apps[0].scopes = WRITE_EVERYTHING_SCOPE.split()
        appliance = Appliance.initialise(settings)
        (source,) = asyncio.run(connect_through_browserless_consent(appliance))
        (backup,) = asyncio.run(appliance.backup([source.org_id], full=True))
        assert backup.status == "succeeded", backup.error
        snapshot_id = appliance.points(source.org_id)[-1].snapshot_id
        point = PointSource(usecases.point_mirror(appliance, source.org_id, snapshot_id))
        country = str(point.organisation().get("CountryCode") or "NZ")
        created = sandbox._admin("POST", "orgs", {"country": country, "name": "Bench restore"})
        target = created["created"][0]["tenant_id"]
        asyncio.run(connect_through_browserless_consent(appliance))
        sandbox.set_limits(tenant=target, minute=100_000, day=1_000_000)
        elements = {step.name: len(select_elements(step, point)) for step in STEPS}
        floor = floor_calls(elements)
        restore = usecases.start_restore(appliance, source.org_id, snapshot_id, target)
        began = time.monotonic()
        outcome = usecases.run_restore(appliance, restore.restore_id)
        seconds = time.monotonic() - began
        report = usecases.verify_restore(appliance, restore.restore_id)
        counts = outcome.counts
        done = sum(c.get("done", 0) for c in counts.values())
        refused = sum(c.get("refused", 0) for c in counts.values())
        print(f"organisation size: {args.size}, seed {args.seed}, country {country}")
        print(f"elements planned: {sum(elements.values())} ({done} written, {refused} refused)")
        print(f"restore calls: {outcome.calls}; floor: {floor}; ratio: {outcome.calls / floor:.2f}")
        print(
            f"minutes under Xero's 60/minute limit: {outcome.calls / 60:.1f}; days at 5,000/day: "
            f"{outcome.calls / 5000:.2f}"
        )
        print(f"wall time in the sandbox (limits lifted): {seconds:.1f} s; status {outcome.status}")
        print(f"verify: balanced={report.balanced}, mismatching report rows={len(report.mismatches)}")
        for step in STEPS:
            c = counts.get(step.name, {})
            if c:
                print(f"  {step.name:22s} {elements[step.name]:6d} elements  {c}")
        appliance.close()


if __name__ == "__main__":
    main()
