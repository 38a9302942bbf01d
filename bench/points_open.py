"""Opening a backup point: cold (restic -> index) and warm (cached index) times, and the first ledger query.

    .venv/bin/python bench/points_open.py --size small
    .venv/bin/python bench/points_open.py --size medium --repeat 3
    .venv/bin/python bench/points_open.py --data-dir /path/with/strongroom.toml   # an existing installation

Without `--data-dir` it generates a sandbox organisation of `--size`, connects, and takes one full backup
(minutes for medium), then measures. Cold opens delete the cached index first; the restic cache stays warm
(as on an appliance that backs up daily). "build" is `build_index` alone on the same files, read from a tar of
the point, so restic's share is visible. "TB" is the first trial balance on a fresh index (the postings computed
from the documents); "TB kept" the same query in a new `PointIndex`, as the next process asks it (the postings
read back from beside the index). "derived" is a cold open with the previous point's index cached
(median / best): the index is derived from it, reading only the files `restic diff` names.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import shutil
import socket
import statistics
import tempfile
import time
from pathlib import Path

from appliance.points import queries
from appliance.points.index import PointIndex, build_index, index_path, open_point, tar_files
from appliance.service import Appliance
from appliance.settings import load
from sandbox.demo import connect_through_browserless_consent, demo_settings
from sandbox.testing import SandboxServer

ANCHOR_MS = 1_790_000_000_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _installation(size: str, root: Path, days: int = 1) -> Path:
    """A sandbox organisation of `size` backed up in full, then `days` times more after a day of activity each.
    A sandbox state already in `root` (a kept run whose backup failed) is reused, not generated again."""
    redirect_uri = f"http://localhost:{_free_port()}/callback"
    with SandboxServer(
        root / "sandbox.db", orgs=1, size=size, seed=7, anchor_ms=ANCHOR_MS, redirect_uris=(redirect_uri,)
    ) as sandbox:
        # No call limit in the way of a measurement of opening: a large organisation's first backup takes
        # more than Xero's 5,000 calls a day (the appliance would pause and resume the next day).
        sandbox.set_limits(minute=100_000, day=10_000_000)
        settings, toml = demo_settings(sandbox.info, root, redirect_uri)
        (root / "strongroom.toml").write_text(toml, encoding="utf-8")
        appliance = Appliance.initialise(settings)
        settings.limits.tenant_per_minute = 100_000
        settings.limits.tenant_per_day = 10_000_000
        try:
            asyncio.run(connect_through_browserless_consent(appliance))
            [outcome] = asyncio.run(appliance.backup(full=True))
            if outcome.status != "succeeded":
                raise SystemExit(f"backup failed: {outcome.error}")
            for _ in range(days):
                sandbox.advance(1)
                [outcome] = asyncio.run(appliance.backup())
                if outcome.status != "succeeded":
                    raise SystemExit(f"backup failed: {outcome.error}")
        finally:
            appliance.close()
    return root / "strongroom.toml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="small")
    parser.add_argument("--data-dir", type=Path, help="an installation holding strongroom.toml")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--days", type=int, default=1, help="daily points after the first (generated installs)")
    parser.add_argument("--keep", type=Path, help="generate the installation here and keep it (for --data-dir)")
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    root = args.data_dir or args.keep or Path(tempfile.mkdtemp(prefix="bench-points-"))
    config = root / "strongroom.toml" if args.data_dir else _installation(args.size, root, args.days)
    appliance = Appliance(load(config))
    organisation = appliance.organisations()[0]
    point = appliance.points(organisation.org_id)[-1]
    repository = appliance.repository(organisation.org_id)
    repository.version()
    cache = appliance.settings.effective_cache_dir
    path = index_path(cache, organisation.org_id, point.snapshot_id)
    records = sum(int(v or 0) for v in (point.summary.get("records") or {}).values())

    cold, warm, ledger_query, kept_query = [], [], [], []
    for _ in range(args.repeat):
        path.unlink(missing_ok=True)
        started = time.perf_counter()
        with open_point(repository, organisation.org_id, point.snapshot_id, cache):
            cold.append(time.perf_counter() - started)
        started = time.perf_counter()
        with open_point(repository, organisation.org_id, point.snapshot_id, cache) as index:
            warm.append(time.perf_counter() - started)
            started = time.perf_counter()
            queries.trial_balance(index)
            ledger_query.append(time.perf_counter() - started)
        started = time.perf_counter()
        with PointIndex(path) as index:  # as the next process would: the postings the first query kept
            queries.trial_balance(index)
        kept_query.append(time.perf_counter() - started)
    derived: list[float] = []
    points = appliance.points(organisation.org_id)
    if len(points) >= 2:  # cold, but the previous day's point cached: derived from it (`derive_index`)
        neighbour = points[-2].snapshot_id
        open_point(repository, organisation.org_id, neighbour, cache).close()
        for _ in range(args.repeat):
            path.unlink(missing_ok=True)
            started = time.perf_counter()
            with open_point(repository, organisation.org_id, point.snapshot_id, cache, neighbours=[neighbour]):
                derived.append(time.perf_counter() - started)
    tar = io.BytesIO()
    started = time.perf_counter()
    repository.dump(point.snapshot_id, "/", tar)
    dump_seconds = time.perf_counter() - started
    scratch = Path(tempfile.mkdtemp(prefix="bench-build-"))
    try:
        tar.seek(0)
        started = time.perf_counter()
        build_index(tar_files(tar), scratch / "x.db", org_id="bench", snapshot_id="bench")
        build_seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(scratch)
    print(
        f"| {args.size if not args.data_dir else root.name} | {records:,} | {path.stat().st_size / 1e6:.0f} MB"
        f" | {statistics.median(cold):.2f} | {min(cold):.2f} | {statistics.median(warm) * 1000:.1f} ms"
        f" | {dump_seconds:.2f} | {build_seconds:.2f} | {statistics.median(ledger_query):.2f}"
        f" | {statistics.median(kept_query):.2f}"
        f" | {f'{statistics.median(derived):.2f} / {min(derived):.2f}' if derived else '-'} |"
    )


if __name__ == "__main__":
    main()
