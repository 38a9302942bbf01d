"""A deterministic fleet written straight into a real state database, for snapshot tests and the 5,000-org
dashboard test and benchmark.

Real backups are what the Pilot tests use (see conftest's `installation`); these rows stand in for months of
history across thousands of organisations, which no test could back up for real. Every id, name and time
derives from the seed and `now`, so snapshots are identical run after run.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from pathlib import Path

from appliance.settings import Settings
from appliance.store import State

NOW = 1_790_000_000.0
"""The frozen "now" of snapshot tests: 2026-09-21 14:13:20 UTC."""
HOUR = 3_600.0
DAY = 86_400.0

_FIRST = ("Harbour", "Kauri", "Southern", "Pacific", "Tasman", "Totara", "Summit", "Riverside", "Coastal", "Alpine")
_SECOND = ("Physio", "Bakery", "Joinery", "Legal", "Dental", "Freight", "Studio", "Plumbing", "Nursery", "Cafe")
_SUFFIX = ("Ltd", "Limited", "Pty Ltd", "& Co", "Trust", "Partners")
_REGIONS = ("nz", "au", "uk", None)
ENDPOINTS = ("Accounts", "Contacts", "Invoices", "Payments", "BankTransactions", "CreditNotes", "ManualJournals")


@dataclass(frozen=True)
class FleetShape:
    healthy: int
    stale: int
    failing: int
    needs_consent: int


def org_id_for(index: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"strongroom-tui-test-org-{index}"))


def settings_for(root: Path) -> Settings:
    return Settings(data_dir=root / "strongroom", restic_binary="restic")


def populate(state: State, count: int, *, now: float = NOW, seed: int = 1, points_per_org: int = 3) -> FleetShape:
    """Write `count` organisations with points and runs; returns how many of each health it made."""
    rng = random.Random(seed)
    state.apps.record("default", "TESTCLIENTID", tier="core")
    grant = state.grants.create("default", grant_id="grant-1")
    healthy = stale = failing = needs_consent = 0
    db = state.db
    with db.transaction():
        for index in range(count):
            org_id = org_id_for(index)
            name = f"{rng.choice(_FIRST)} {rng.choice(_SECOND)} {index:04d} {rng.choice(_SUFFIX)}"
            kind = index % 20
            status = "needs_consent" if kind == 7 else "active"
            db.execute(
                "INSERT INTO organisations(org_id, name, app_name, grant_id, status, region, country, base_currency, "
                "integrations, created_at, updated_at) VALUES (?, ?, 'default', ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    org_id,
                    name,
                    grant.grant_id,
                    status,
                    _REGIONS[index % len(_REGIONS)],
                    ("NZ", "AU", "GB")[index % 3],
                    ("NZD", "AUD", "GBP")[index % 3],
                    '[{"kind":"app","name":"Stripe","notes":"payouts"}]' if index % 5 == 0 else "[]",
                    now - 200 * DAY,
                    now - 200 * DAY,
                ),
            )
            # The newest point's age decides stale vs healthy: kind 3 and 13 missed two days.
            newest_age = (2.5 * DAY if kind in (3, 13) else (2 + index % 20) * HOUR) + (index % 60)
            records = {endpoint: 50 + rng.randrange(5_000) for endpoint in ENDPOINTS}
            for back in range(points_per_org):
                taken_at = now - newest_age - (points_per_org - 1 - back) * DAY
                run_id = f"run-{index:05d}-{back}"
                calls = 140 if back == 0 else 20 + rng.randrange(30)
                for endpoint in ENDPOINTS:
                    records[endpoint] += rng.randrange(20)
                db.execute(
                    "INSERT INTO runs(run_id, org_id, mode, status, started_at, finished_at, calls, bytes) "
                    "VALUES (?, ?, ?, 'succeeded', ?, ?, ?, ?)",
                    (run_id, org_id, "full" if back == 0 else "incremental", taken_at - 60, taken_at, calls, 0),
                )
                db.execute(
                    "INSERT INTO points(org_id, snapshot_id, run_id, taken_at, mode, summary, size_bytes) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        org_id,
                        uuid.uuid5(uuid.NAMESPACE_URL, run_id).hex * 2,
                        run_id,
                        taken_at,
                        "full" if back == 0 else "incremental",
                        json.dumps({"calls": calls, "data_added": 100_000 + back * 7_000, "records": records}),
                        2_500_000 + back * 30_000,
                    ),
                )
            if kind == 11:  # the last run failed after the last good point
                db.execute(
                    "INSERT INTO runs(run_id, org_id, mode, status, started_at, finished_at, calls, bytes, error) "
                    "VALUES (?, ?, 'incremental', 'failed', ?, ?, 3, 0, 'Xero is unavailable (503)')",
                    (f"run-{index:05d}-failed", org_id, now - HOUR, now - HOUR + 30),
                )
            if status != "active":
                needs_consent += 1
            elif kind == 11:
                failing += 1
            elif kind in (3, 13):
                stale += 1
            else:
                healthy += 1
    return FleetShape(healthy, stale, failing, needs_consent)


def build_state(root: Path, count: int, *, now: float = NOW) -> tuple[Settings, FleetShape]:
    """A fresh installation directory with `count` organisations; returns its settings."""
    settings = settings_for(root)
    state = State.initialise(settings)
    try:
        shape = populate(state, count, now=now)
    finally:
        state.close()
    return settings, shape
