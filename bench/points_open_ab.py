"""A/B of a point's full cold open (nothing of the organisation cached): an earlier revision against this tree,
alternating in one run so both see the same machine.

    .venv/bin/python bench/points_open_ab.py /work/bench-runs/medium cb210f3 --rounds 5

Each side gets its own copy of the installation (an earlier revision must not meet the repository key this one
adds) and its own checkout (`git worktree`, removed afterwards); each open runs in a fresh interpreter on its
side's code and times `open_point` alone, from the cache emptied to the index open. Prints both series, the
medians and their ratio.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OPEN = """
import shutil, sys, time
from pathlib import Path
from appliance.points import index as ix
from appliance.service import Appliance
from appliance.settings import load
app = Appliance(load(Path(sys.argv[1]) / "strongroom.toml"))
org = app.organisations()[0]
repo = app.repository(org.org_id)
repo.version()
point = app.points(org.org_id)[-1]
cache = app.settings.effective_cache_dir
shutil.rmtree(ix.index_path(cache, org.org_id, point.snapshot_id).parent, ignore_errors=True)
started = time.perf_counter()
ix.open_point(repo, org.org_id, point.snapshot_id, cache).close()
print(time.perf_counter() - started)
"""


def _copy_installation(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, symlinks=True)
    config = target / "strongroom.toml"
    config.write_text(config.read_text(encoding="utf-8").replace(str(source), str(target)), encoding="utf-8")
    return target


def _open(code: Path, installation: Path) -> float:
    completed = subprocess.run(
        [sys.executable, "-c", OPEN, str(installation)],
        cwd=code,
        env={"PYTHONPATH": str(code), "PATH": "/usr/local/bin:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    return float(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("installation", type=Path, help="an installation (bench/points_open.py --keep)")
    parser.add_argument("revision", help="the earlier revision (A)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench-open-ab-"))
    worktree = scratch / "code-a"
    subprocess.run(["git", "worktree", "add", "--detach", str(worktree), args.revision], cwd=ROOT, check=True)
    try:
        sides = {
            "A": (worktree, _copy_installation(args.installation, scratch / "a")),
            "B": (ROOT, _copy_installation(args.installation, scratch / "b")),
        }
        for code, installation in sides.values():
            _open(code, installation)  # restic's own cache and the page cache warm on both sides alike
        times: dict[str, list[float]] = {"A": [], "B": []}
        for _ in range(args.rounds):
            for side, (code, installation) in sides.items():
                times[side].append(_open(code, installation))
        for side, series in times.items():
            print(f"{side}: median {statistics.median(series):.2f} s, best {min(series):.2f} s,",
                  " ".join(f"{t:.2f}" for t in series))  # fmt: skip
        ratio = statistics.median(times["B"]) / statistics.median(times["A"])
        print(f"B/A median ratio {ratio:.2f} ({args.revision} -> this tree)")
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT, check=False)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
