"""A/B of the pipe capacity for a point's cold open: 1 MiB (`widen_pipe`) against Linux's default 64 KiB,
alternating in one run so both see the same load.

    .venv/bin/python bench/points_pipe_ab.py /work/bench-runs/medium   # an installation (bench/points_open.py --keep)
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from appliance.points import index as ix
from appliance.service import Appliance
from appliance.settings import load
from appliance.vault import runner

app = Appliance(load(Path(sys.argv[1]) / "strongroom.toml"))
org = app.organisations()[0]
repo = app.repository(org.org_id)
repo.version()
pt = app.points(org.org_id)[-1]
cache = app.settings.effective_cache_dir
path = ix.index_path(cache, org.org_id, pt.snapshot_id)
real = runner.widen_pipe
res = {"on": [], "off": []}
for _ in range(4):
    for mode in ("off", "on"):
        f = real if mode == "on" else (lambda fd: None)
        ix.widen_pipe = f
        runner.widen_pipe = f
        path.unlink(missing_ok=True)
        t = time.perf_counter()
        ix.open_point(repo, org.org_id, pt.snapshot_id, cache).close()
        res[mode].append(time.perf_counter() - t)
for k, v in res.items():
    print(k, "median", round(statistics.median(v), 2), "best", round(min(v), 2), [round(x, 2) for x in v])
