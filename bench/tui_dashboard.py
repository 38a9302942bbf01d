"""Measure the fleet dashboard with 5,000 organisations: start to first full frame, and key-to-frame latency.

    .venv/bin/python bench/tui_dashboard.py [--orgs 5000] [--presses 40]

A state database with N organisations (3 points each, some stale, failing or needing consent) is written
straight through `appliance.store` (tests/tui/fleet_data.py), then the real app runs headless at 140x44:

- fleet query: `FleetService.status()` alone (the one aggregate SQL query plus health);
- start: from `run_test` entering to the dashboard having drawn its rows (loaded + one idle frame);
- key-to-frame: for each key, from sending it to the app being idle again with the screen refreshed
  (`pilot.press` then `pilot.pause()`), over cursor moves, page moves, typing a filter and clearing it.

Prints a JSON summary; docs/BENCHMARKS.md "## TUI" records a run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from appliance.fleet import FleetService
from appliance.service import Appliance
from tests.tui.fleet_data import NOW, build_state
from tui.app import StrongroomApp
from tui.backend import Backend
from tui.screens.fleet import FleetScreen


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": round(ordered[max(0, int(len(ordered) * 0.95) - 1)] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
        "n": len(ordered),
    }


async def measure(root: Path, orgs: int, presses: int) -> dict[str, object]:
    started = time.perf_counter()
    settings, _shape = build_state(root, orgs, now=NOW)
    populate_seconds = time.perf_counter() - started

    appliance = Appliance(settings)
    fleet = FleetService(appliance, clock=lambda: NOW)
    fleet.status()  # warm the page cache the way a second look would
    query = []
    for _ in range(5):
        begin = time.perf_counter()
        fleet.status()
        query.append(time.perf_counter() - begin)
    appliance.close()

    app = StrongroomApp(Backend(Appliance(settings), clock=lambda: NOW))
    begin = time.perf_counter()
    async with app.run_test(size=(140, 44)) as pilot:
        while not (isinstance(app.screen, FleetScreen) and app.screen.loaded.is_set()):
            await pilot.pause(0.005)
        await pilot.pause()
        start_seconds = time.perf_counter() - begin

        async def timed(keys: list[str]) -> list[float]:
            samples = []
            for key in keys:
                t0 = time.perf_counter()
                await pilot.press(key)
                await pilot.pause()
                samples.append(time.perf_counter() - t0)
            return samples

        cursor = await timed(["down"] * presses)
        pages = await timed(["pagedown"] * (presses // 2) + ["pageup"] * (presses // 2))
        typing = await timed(list("harbour"))
        clearing = await timed(["backspace"] * len("harbour"))
    return {
        "organisations": orgs,
        "populate_seconds": round(populate_seconds, 2),
        "fleet_query": _summary(query),
        "start_to_first_frame_seconds": round(start_seconds, 3),
        "key_to_frame": {
            "cursor_down": _summary(cursor),
            "page_up_down": _summary(pages),
            "type_filter_char": _summary(typing),
            "delete_filter_char": _summary(clearing),
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orgs", type=int, default=5_000)
    parser.add_argument("--presses", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="strongroom-tui-bench-") as root:
        result = asyncio.run(measure(Path(root), args.orgs, args.presses))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
