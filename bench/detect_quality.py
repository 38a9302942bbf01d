"""False alarms of the damage rules on normal activity: N days of sandbox `advance`, a backup and a detection
after each, on every seeded organisation; counts findings per severity.

    .venv/bin/python bench/detect_quality.py --orgs 3 --days 30 --size small

The damage scenarios themselves (recall and precision of the evidence) are exercised by
`tests/integration/test_detection.py` (all four scenarios staged through the sandbox admin API).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import tempfile
import time
from collections import Counter
from pathlib import Path

from appliance.points.usecases import PointsService
from appliance.service import Appliance
from sandbox.demo import connect_through_browserless_consent, demo_settings
from sandbox.testing import SandboxServer

ANCHOR_MS = 1_790_000_000_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orgs", type=int, default=3)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--size", default="small")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-detect-"))
    redirect_uri = f"http://localhost:{_free_port()}/callback"
    started = time.monotonic()
    with SandboxServer(
        root / "sandbox.db",
        orgs=args.orgs,
        size=args.size,
        seed=args.seed,
        anchor_ms=ANCHOR_MS,
        redirect_uris=(redirect_uri,),
    ) as sandbox:
        sandbox.set_limits(minute=100_000)
        settings, _toml = demo_settings(sandbox.info, root, redirect_uri)
        settings.limits.tenant_per_minute = 100_000
        appliance = Appliance.initialise(settings)
        service = PointsService(appliance)
        severities: Counter[str] = Counter()
        examples: list[str] = []
        try:
            asyncio.run(connect_through_browserless_consent(appliance))
            asyncio.run(appliance.backup(full=True))
            for _day in range(args.days):
                sandbox.advance(1)
                for outcome in asyncio.run(appliance.backup()):
                    if outcome.status != "succeeded" or outcome.snapshot_id is None:
                        raise SystemExit(f"backup failed: {outcome.error}")
                    for finding in service.detect_after_backup(outcome.org_id, outcome.snapshot_id):
                        severities[finding.severity] += 1
                        if finding.severity != "info" and len(examples) < 10:
                            examples.append(f"{finding.rule}: {finding.summary}")
        finally:
            appliance.close()
    steps = args.orgs * args.days
    print(
        f"| {args.orgs} x {args.size} | {args.days} | {steps} | {severities['info']} | {severities['warning']}"
        f" | {severities['critical']} | {time.monotonic() - started:.0f} s |"
    )
    for example in examples:
        print(f"  above info: {example}")


if __name__ == "__main__":
    main()
