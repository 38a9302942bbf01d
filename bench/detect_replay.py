"""The damage rules replayed on an installation's last two points (no baseline, as on a new appliance): the
step's size, the rules' time, and every finding. For organisations too big to stage in a test.

    .venv/bin/python bench/detect_replay.py /work/bench-runs/large   # an installation (bench/points_open.py --keep)
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

from appliance.detect import rules, runner
from appliance.points.usecases import PointsService
from appliance.service import Appliance
from appliance.settings import load


def main() -> None:
    appliance = Appliance(load(Path(sys.argv[1]) / "strongroom.toml"))
    organisation = appliance.organisations()[0]
    service = PointsService(appliance)
    first, second = appliance.points(organisation.org_id)[-2:]
    started = time.perf_counter()
    with (
        service.open(organisation.org_id, first.snapshot_id) as before,
        service.open(organisation.org_id, second.snapshot_id) as after,
    ):
        opened = time.perf_counter()
        step = runner.build_step(before, after)
        built = time.perf_counter()
        findings = rules.evaluate(step, [])
        evaluated = time.perf_counter()
    print(
        f"opens {opened - started:.1f} s, step {built - opened:.1f} s, rules {evaluated - built:.2f} s;"
        f" {step.records:,} records before, {len(step.new_lines):,} new lines, counts {dict(step.counts)}"
    )
    print("findings by severity:", dict(Counter(f.severity for f in findings)))
    for finding in findings:
        print(f"  {finding.severity} {finding.rule}: {finding.summary}")


if __name__ == "__main__":
    main()
