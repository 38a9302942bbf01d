"""Fleet round benchmark: N tiny sandbox organisations backed up by the daemon's scheduler and job runner.

Creates a sandbox with N empty organisations (a real chart of accounts, tax rates, currency, branding theme;
no transactions: the per-organisation floor of calls), connects them all with one consent, and runs the
daemon (in this process, the same `Daemon` systemd runs) until every organisation has a backup point.
Records the round time against the floor Xero's app limit sets (total calls / 10,000 a minute), the 429s
the sandbox counted, CPU (this process and its restic children) and peak memory.

    .venv/bin/python bench/fleet.py --orgs 5000 --latency-ms 50

`tests/integration/test_fleet.py` runs the same with 200 organisations.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from appliance.daemon.lifecycle import Lifecycle  # noqa: E402
from appliance.daemon.notify import Notifier  # noqa: E402
from appliance.daemon.service import Daemon  # noqa: E402
from appliance.service import Appliance  # noqa: E402
from appliance.settings import AlertSettings, ScheduleSettings  # noqa: E402
from sandbox.demo import connect_through_browserless_consent, demo_settings  # noqa: E402
from sandbox.testing import SandboxServer  # noqa: E402


@dataclass
class FleetResult:
    organisations: int
    backed_up: int
    round_seconds: float
    calls: int
    rejected_429: int
    rejected_by_problem: dict[str, int]
    app_per_minute: int
    floor_seconds: float
    ratio_to_floor: float
    max_concurrent_jobs: int
    latency_ms: int
    cpu_seconds_self: float
    cpu_seconds_children: float
    max_rss_mib: float
    setup_seconds: float
    nightly: dict[str, Any]
    """The second round (after a day of activity, every point incremental), when asked for."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_fleet(
    root: Path,
    *,
    orgs: int,
    latency_ms: int = 50,
    max_concurrent_jobs: int = 16,
    timeout: float = 3600,
    progress: bool = False,
    heartbeat_url: str | None = None,
    until: Callable[[], bool] | None = None,
    nightly_round: bool = False,
) -> FleetResult:
    """Set up `orgs` tiny organisations under `root`, run one fleet round, and measure it.

    `heartbeat_url`: the daemon pings it when the round completes; `until`: also wait for this before stopping
    the daemon (a test waits for the ping), so the round time then includes that wait."""
    started = time.monotonic()
    port = _free_port()
    redirect_uri = f"http://localhost:{port}/callback"
    with SandboxServer(root / "sandbox.db", orgs=1, size="small", seed=11, redirect_uris=(redirect_uri,),
                       auto_consent=True) as sandbox:  # fmt: skip
        for index in range(orgs - 1):
            sandbox._admin("POST", "orgs", {"country": ("NZ", "AU", "GB")[index % 3], "name": f"Tiny {index:05d}"})
        settings, _toml = demo_settings(sandbox.info, root, redirect_uri)
        settings.schedule = ScheduleSettings(
            window_start="00:00",
            window_end="00:00",
            tick_seconds=0.5,
            max_concurrent_jobs=max_concurrent_jobs,
            retention_every_days=0,
            check_every_days=0,
            replicate_after_backup=False,
        )
        if heartbeat_url:
            settings.alerts = AlertSettings(heartbeat_url=heartbeat_url)
        appliance = Appliance.initialise(settings)
        connected = asyncio.run(connect_through_browserless_consent(appliance))
        if len(connected) != orgs:
            raise RuntimeError(f"the consent connected {len(connected)} of {orgs} organisations")
        usage_before = sandbox.usage()
        sandbox.set_faults(latency_ms=latency_ms)
        setup_seconds = time.monotonic() - started
        before = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)

        async def round_(points_each: int = 1) -> float:
            daemon = Daemon(settings)
            lifecycle = Lifecycle(Notifier(None))
            task = asyncio.ensure_future(daemon.main(lifecycle))
            began = time.monotonic()
            try:
                while time.monotonic() - began < timeout:
                    await asyncio.sleep(1.0)
                    if task.done():
                        task.result()
                    done = appliance.state.db.scalar(
                        "SELECT count(*) FROM (SELECT org_id FROM points GROUP BY org_id HAVING count(*) >= ?)",
                        (points_each,),
                    )
                    if progress:
                        print(f"\r{done}/{orgs} backed up, {time.monotonic() - began:.0f} s", end="", file=sys.stderr)
                    if done >= orgs and (until is None or until()):
                        break
                return time.monotonic() - began
            finally:
                lifecycle.request_stop("benchmark")
                await task

        seconds = asyncio.run(round_())
        after = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        usage = sandbox.usage()
        backed_up = int(appliance.state.db.scalar("SELECT count(DISTINCT org_id) FROM points"))
        nightly: dict[str, Any] = {}
        if nightly_round:
            # The next night: a day of activity, then every organisation due again (an interval of seconds, so
            # no waiting; oldest point first keeps the ones not yet done ahead of any repeat).
            sandbox.set_faults()
            sandbox.advance(1)
            sandbox.set_faults(latency_ms=latency_ms)
            settings.schedule.interval_hours = 5 / 3600
            time.sleep(5)
            usage_before_nightly = sandbox.usage()
            cpu_before = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
            nightly_seconds = asyncio.run(round_(points_each=2))
            cpu_after = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
            nightly_usage = sandbox.usage()
            nightly_calls = _total(nightly_usage, "calls") - _total(usage_before_nightly, "calls")
            nightly = {
                "round_seconds": round(nightly_seconds, 1),
                "calls": nightly_calls,
                "rejected_429": _total(nightly_usage, "rejected_429") - _total(usage_before_nightly, "rejected_429"),
                "floor_seconds": round(nightly_calls / settings.limits.app_per_minute * 60, 1),
                "cpu_seconds_self": round(_cpu(cpu_after[0]) - _cpu(cpu_before[0]), 1),
                "cpu_seconds_children": round(_cpu(cpu_after[1]) - _cpu(cpu_before[1]), 1),
            }
        appliance.close()
    calls = _total(usage, "calls") - _total(usage_before, "calls")
    rejected = _total(usage, "rejected_429") - _total(usage_before, "rejected_429")
    floor = calls / settings.limits.app_per_minute * 60
    return FleetResult(
        organisations=orgs,
        backed_up=backed_up,
        round_seconds=round(seconds, 1),
        calls=calls,
        rejected_429=rejected,
        rejected_by_problem=_by_problem(usage),
        app_per_minute=settings.limits.app_per_minute,
        floor_seconds=round(floor, 1),
        ratio_to_floor=round(seconds / floor, 2) if floor else 0.0,
        max_concurrent_jobs=max_concurrent_jobs,
        latency_ms=latency_ms,
        cpu_seconds_self=round(after[0].ru_utime + after[0].ru_stime - before[0].ru_utime - before[0].ru_stime, 1),
        cpu_seconds_children=round(after[1].ru_utime + after[1].ru_stime - before[1].ru_utime - before[1].ru_stime, 1),
        max_rss_mib=round(after[0].ru_maxrss / 1024, 1),
        setup_seconds=round(setup_seconds, 1),
        nightly=nightly,
    )


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def _by_problem(usage: dict[str, Any]) -> dict[str, int]:
    """The sandbox's 429s by the limit they enforced (`concurrent`, `minute`, `appminute`, `day`)."""
    totals: dict[str, int] = {}
    for entry in usage.values():
        for problem, count in entry.get("rejected_by_problem", {}).items():
            totals[problem] = totals.get(problem, 0) + int(count)
    return totals


def _total(usage: dict[str, Any], key: str) -> int:
    """Sum one counter over the sandbox's per-tenant usage (`SandboxServer.usage()`: tenant id -> counters)."""
    return int(sum(entry.get(key, 0) for entry in usage.values()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orgs", type=int, default=5000)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--max-concurrent-jobs", type=int, default=16)
    parser.add_argument("--dir", type=Path, default=None, help="Work directory (default: a temporary one).")
    parser.add_argument("--nightly", action="store_true", help="Also measure a second, incremental round.")
    parser.add_argument("--timeout", type=float, default=3 * 3600, help="Give up on a round after this many s.")
    args = parser.parse_args()
    # The result is printed before the scratch directory goes: a 400-organisation run once lost its figures to
    # a failed cleanup (ENOTEMPTY while deleting the state directory).
    with tempfile.TemporaryDirectory(prefix="strongroom-fleet-", ignore_cleanup_errors=True) as scratch:
        root = args.dir or Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        result = run_fleet(
            root,
            orgs=args.orgs,
            latency_ms=args.latency_ms,
            max_concurrent_jobs=args.max_concurrent_jobs,
            progress=sys.stderr.isatty(),
            nightly_round=args.nightly,
            timeout=args.timeout,
        )
        print(json.dumps(asdict(result), indent=2), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
