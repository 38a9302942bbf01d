"""A fleet round: 200 tiny sandbox organisations backed up by the daemon within Xero's limits.

The daemon's own loop (scheduler, job runner, backup engine, restic) runs in this process against a sandbox
with 200 organisations and 50 ms of latency on every call; the round ends when every organisation has a
point. The sandbox counts every call and every 429 it sent: none may be a 429 (the scheduler keeps the app
inside 10,000 calls a minute; the client's governor keeps each tenant inside its limits). `bench/fleet.py`
runs the same with 5,000 organisations.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.fleet import run_fleet

pytestmark = pytest.mark.slow


@pytest.mark.timeout(1800)  # about 6 minutes on a shared 2-core machine (docs/BENCHMARKS.md, "Fleet")
def test_two_hundred_orgs_complete_a_round_without_a_429(tmp_path: Path) -> None:
    result = run_fleet(tmp_path, orgs=200, latency_ms=50, max_concurrent_jobs=16, timeout=1200)
    assert result.backed_up == 200
    assert result.rejected_429 == 0
    assert result.calls >= 200 * 20  # every organisation was really read, not skipped
