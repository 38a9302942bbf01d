"""Backup cost against the floor: API calls and bytes for a full run and one-day incremental runs, and
repository growth over 7 daily points.

    .venv/bin/python bench/backup_calls.py --size small --days 6
    .venv/bin/python bench/backup_calls.py --size medium --days 6

Floor (issue 3): the fewest calls the data needs at pageSize=1000 (one per page, at least one per endpoint
read, plus the Organisation call) plus one call per new or changed attachment. Strongroom also lists a
record's attachments before downloading them (Xero gives no other way to learn their ids and names) and
captures reports; both are counted and shown separately. Xero's per-minute limit is lifted in the sandbox so
the run is quick; "minutes under Xero's limits" is calls / 60, the per-tenant minute limit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import tempfile
import time
from pathlib import Path

from appliance.backup.mirror import Mirror
from appliance.backup.plan import floor_calls
from appliance.service import Appliance
from sandbox.demo import connect_through_browserless_consent, demo_settings
from sandbox.testing import SandboxServer

ANCHOR_MS = 1_790_000_000_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def repo_bytes(path: Path) -> int:
    return sum(os.path.getsize(os.path.join(root, f)) for root, _d, files in os.walk(path) for f in files)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="small")
    parser.add_argument("--days", type=int, default=6)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-backup-"))
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
        appliance = Appliance.initialise(settings)
        (org,) = asyncio.run(connect_through_browserless_consent(appliance))
        repository = settings.data_dir / "repositories" / org.org_id
        rows = []
        sizes = []
        for day in range(args.days + 1):
            if day:
                sandbox.advance(1)
            before = {a["AttachmentID"] for a in _attachments(appliance, org.org_id)}
            t0 = time.monotonic()
            (outcome,) = asyncio.run(appliance.backup(full=day == 0))
            seconds = time.monotonic() - t0
            assert outcome.status == "succeeded", outcome
            mirror = Mirror(appliance.mirror_path(org.org_id))
            manifest = mirror.manifest()
            after = _attachments(appliance, org.org_id)
            changed_attachments = len([a for a in after if a["AttachmentID"] not in before])
            if day == 0:
                counts = {name: entry.get("count") or 0 for name, entry in manifest["endpoints"].items()}
                floor = floor_calls(counts, changed_attachments) + 1
            else:
                # An incremental run's floor: one call per endpoint read (every endpoint is either an
                # If-Modified-Since page or a whole small list), plus Organisation, plus changed attachments.
                floor = len(manifest["endpoints"]) + 1 + changed_attachments
            sizes.append(repo_bytes(repository))
            rows.append(
                (day, outcome.mode, outcome.records, outcome.calls, floor, outcome.bytes_downloaded, seconds, sizes[-1])
            )
        appliance.close()
    print(f"\nsize={args.size} seed={args.seed} days={args.days}")
    print("day mode         records  calls  floor  ratio  downloaded   seconds  repo bytes  min-under-limits")
    for day, mode, records, calls, floor, nbytes, seconds, size in rows:
        print(
            f"{day:>3} {mode:<12} {records:>7} {calls:>6} {floor:>6} {calls / floor:>6.2f} {nbytes:>11,} "
            f"{seconds:>8.1f} {size:>11,} {calls / 60:>8.1f}"
        )
    print(f"\nrepository after 1 point: {sizes[0]:,} B; after {len(sizes)} points: {sizes[-1]:,} B; "
          f"ratio {sizes[-1] / sizes[0]:.3f}")  # fmt: skip


def _attachments(appliance: Appliance, org_id: str) -> list[dict]:
    path = appliance.mirror_path(org_id)
    if not (path / "manifest.json").exists():
        return []
    mirror = Mirror(path)
    return [
        entry
        for endpoint in mirror.attachment_endpoints()
        for record_id in mirror.attachment_records(endpoint)
        for entry in mirror.attachments(endpoint, record_id)
    ]


if __name__ == "__main__":
    main()
