"""Benchmark: sandbox organisation generation time and record counts per size.

Usage: `.venv/bin/python bench/sandbox_generate.py [small medium large] [--orgs N] [--advance DAYS]`
(default: small and medium, one organisation each). Prints, per size: generation seconds, records per
second, total records, per-endpoint counts, journal lines, attachments, the trial balance check, and the
time `advance` takes to play the given number of days. Writes throwaway state files in a temp directory.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from sandbox import churn
from sandbox.generate import SIZES, seed_sandbox
from sandbox.store import SandboxStore

ANCHOR_MS = 1_780_012_800_000  # fixed, so runs are comparable


def run(size: str, orgs: int, advance_days: int, directory: Path) -> None:
    store = SandboxStore(directory / f"{size}.db")
    started = time.perf_counter()
    seed_sandbox(store, seed=1, orgs=orgs, size=size, anchor_ms=ANCHOR_MS)
    seconds = time.perf_counter() - started
    counts: dict[str, int] = {}
    for endpoint, count in store.query(
        "SELECT endpoint, count(*) FROM records GROUP BY endpoint ORDER BY count(*) DESC"
    ):
        counts[endpoint] = count
    total = sum(counts.values())
    lines = store.scalar("SELECT count(*) FROM journal_lines")
    attachments = store.scalar("SELECT count(*) FROM attachments")
    unbalanced = store.scalar("SELECT sum(CAST(round(net_amount * 100) AS INTEGER)) FROM journal_lines")
    size_mb = sum(p.stat().st_size for p in directory.glob(f"{size}.db*")) / 1e6
    print(f"== {size}: {orgs} org(s), target ~{SIZES[size].approx_records:,} records each")
    print(f"generation: {seconds:.1f} s, {total:,} records ({total / seconds:,.0f} records/s), state {size_mb:.0f} MB")
    print(f"journal lines: {lines:,}; attachments: {attachments:,}; ledger sum (cents): {unbalanced}")
    print("records per endpoint: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    if advance_days:
        started = time.perf_counter()
        summary = churn.advance(store, days=advance_days)
        seconds = time.perf_counter() - started
        changes = {k: sum(s[k] for s in summary.values()) for k in next(iter(summary.values()))}
        print(f"advance {advance_days} day(s): {seconds:.1f} s; changes {changes}")
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", default=["small", "medium"], choices=list(SIZES))
    parser.add_argument("--orgs", type=int, default=1)
    parser.add_argument("--advance", type=int, default=1, help="days to play after generation (0: none)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        for size in args.sizes:
            run(size, args.orgs, args.advance, Path(directory))


if __name__ == "__main__":
    main()
