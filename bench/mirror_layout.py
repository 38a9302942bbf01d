"""Measure the mirror's candidate layouts on sandbox churn with real restic.

For each sandbox size: generate one organisation, then record its state for day 0 and after each of
`--days` calls to `sandbox.churn.advance(days=1)`. Every layout then replays the same week: a full mirror
and a backup on day 0, and for each later day the day's changes (upserts, hard deletions, attachment
changes) applied incrementally and backed up. Printed per layout: repository bytes after 1 and after
`days + 1` points (the sum of file sizes under the repository, plus `restic stats --mode raw-data`), their
ratio, the mirror's file count, mirror write time (day 0 full; mean daily incremental), the time to read a
mirror back (all records hashed) and to open the newest point (`restic restore` + read back).

    .venv/bin/python bench/mirror_layout.py --sizes small,medium --days 6 --publish journal,exchange
    .venv/bin/python bench/mirror_layout.py --sizes medium --layouts month-p1,month256-p2 --publish journal

The figures and the choice they led to are in docs/BENCHMARKS.md ("Mirror layout").

It writes nothing outside `--work` (a temporary directory unless given) and needs restic on PATH.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from appliance.backup.mirror import LAYOUTS, Layout, Mirror, MirrorWriter
from appliance.vault.repository import Repository
from sandbox.store import SandboxStore

PASSWORD = "mirror-layout-bench"


@dataclass
class State:
    """One day of one organisation: records as canonical JSON, attachments with their bytes."""

    records: dict[str, dict[str, str]]
    attachments: dict[tuple[str, str], dict[str, tuple[dict[str, Any], bytes]]]
    organisation: dict[str, Any]


@dataclass
class Day:
    upserts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    deletes: dict[str, list[str]] = field(default_factory=dict)
    attachment_puts: list[tuple[str, str, dict[str, Any], bytes]] = field(default_factory=list)
    attachment_keeps: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    organisation: dict[str, Any] = field(default_factory=dict)


def read_state(store: SandboxStore, tenant_id: str) -> State:
    records: dict[str, dict[str, str]] = {}
    for endpoint, record_id, doc in store.query(
        "SELECT endpoint, record_id, doc FROM records WHERE tenant_id=?", (tenant_id,)
    ):
        records.setdefault(endpoint, {})[record_id] = doc
    attachments: dict[tuple[str, str], dict[str, tuple[dict[str, Any], bytes]]] = {}
    for attachment_id, endpoint, record_id, file_name, mime_type, include_online, content in store.query(
        "SELECT attachment_id, endpoint, record_id, file_name, mime_type, include_online, content"
        " FROM attachments WHERE tenant_id=?",
        (tenant_id,),
    ):
        meta = {
            "AttachmentID": attachment_id,
            "FileName": file_name,
            "MimeType": mime_type,
            "ContentLength": len(content),
            "IncludeOnline": bool(include_online),
        }
        attachments.setdefault((endpoint, record_id), {})[attachment_id] = (meta, bytes(content))
    organisation = json.loads(store.scalar("SELECT doc FROM orgs WHERE tenant_id=?", (tenant_id,)))
    return State(records, attachments, organisation)


def diff(before: State, after: State) -> Day:
    day = Day(organisation=after.organisation)
    for endpoint in sorted(set(before.records) | set(after.records)):
        old, new = before.records.get(endpoint, {}), after.records.get(endpoint, {})
        changed = [json.loads(doc) for record_id, doc in sorted(new.items()) if old.get(record_id) != doc]
        if changed:
            day.upserts[endpoint] = changed
        gone = sorted(set(old) - set(new))
        if gone:
            day.deletes[endpoint] = gone
    for key in sorted(set(before.attachments) | set(after.attachments)):
        old_files, new_files = before.attachments.get(key, {}), after.attachments.get(key, {})
        for attachment_id, (meta, content) in sorted(new_files.items()):
            if attachment_id not in old_files or old_files[attachment_id][1] != content:
                day.attachment_puts.append((key[0], key[1], meta, content))
        if set(old_files) - set(new_files):
            day.attachment_keeps[key] = set(new_files)
    return day


def full_day(state: State) -> Day:
    return diff(State({}, {}, {}), state)


def apply(writer: MirrorWriter, day: Day) -> None:
    for endpoint, records in day.upserts.items():
        writer.upsert(endpoint, records)
    for endpoint, ids in day.deletes.items():
        writer.delete(endpoint, ids)
    for (endpoint, record_id), keep in day.attachment_keeps.items():
        writer.drop_attachments(endpoint, record_id, keep)
    for endpoint, record_id, meta, content in day.attachment_puts:
        writer.put_attachment(endpoint, record_id, meta, io.BytesIO(content))
    writer.put_document("organisation", day.organisation)


def repository_bytes(path: Path) -> int:
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())


def file_count(path: Path) -> int:
    return sum(1 for file in path.rglob("*") if file.is_file())


def generate(work: Path, size: str, seed: int, days: int) -> tuple[list[State], dict[str, dict[str, Any]]]:
    from sandbox.churn import advance
    from sandbox.generate import seed_sandbox

    store = SandboxStore(work / f"sandbox-{size}.sqlite")
    [tenant_id] = seed_sandbox(store, seed=seed, orgs=1, size=size)
    states = [read_state(store, tenant_id)]
    for day in range(days):
        advance(store, days=1, seed=seed + day + 1)
        states.append(read_state(store, tenant_id))
    truth = store.truth(tenant_id)
    store.close()
    return states, truth


@dataclass
class Result:
    size: str
    layout: str
    publish: str
    records: int
    mirror_bytes: int
    files: int
    repo_first: int
    repo_last: int
    raw_first: int
    raw_last: int
    daily_added: list[int]
    write_full_s: float
    write_daily_s: float
    read_s: float
    open_s: float
    truth_ok: bool

    @property
    def ratio(self) -> float:
        return self.repo_last / self.repo_first


def measure(work: Path, size: str, layout: Layout, publish: str, states: list[State], truth: dict[str, Any]) -> Result:
    base = work / size / f"{layout.name.replace('/', '_')}-{publish}"
    org_id = "bench-org"
    repository = Repository(str(base / "repo"), PASSWORD, cache_dir=base / "cache")
    repository.init()
    host = f"org-{org_id}"
    writer = MirrorWriter(base / "mirrors", org_id, layout=layout, publish=publish)

    started = time.perf_counter()
    writer.begin(full=True)
    apply(writer, full_day(states[0]))
    current = writer.commit({"day": 0})
    write_full_s = time.perf_counter() - started
    repository.backup(current, host=host, tags=[f"org:{org_id}"])
    repo_first = repository_bytes(base / "repo")
    raw_first = int(repository.stats()["total_size"])

    daily_write: list[float] = []
    daily_added: list[int] = []
    for number in range(1, len(states)):
        day = diff(states[number - 1], states[number])
        started = time.perf_counter()
        writer.begin(full=False)
        apply(writer, day)
        current = writer.commit({"day": number})
        daily_write.append(time.perf_counter() - started)
        before = repository_bytes(base / "repo")
        repository.backup(current, host=host, tags=[f"org:{org_id}"])
        daily_added.append(repository_bytes(base / "repo") - before)

    mirror = Mirror(current)
    started = time.perf_counter()
    actual = mirror.truth()
    read_s = time.perf_counter() - started

    [latest] = repository.snapshots(host=host)[-1:]
    restored = base / "restored"
    started = time.perf_counter()
    repository.restore(latest.id, restored)
    opened = Mirror(restored)
    restored_truth = opened.truth()
    open_s = time.perf_counter() - started

    return Result(
        size=size,
        layout=layout.name,
        publish=publish,
        records=sum(entry["count"] for name, entry in actual.items() if name != "Attachments"),
        mirror_bytes=sum(file.stat().st_size for file in current.rglob("*") if file.is_file()),
        files=file_count(current),
        repo_first=repo_first,
        repo_last=repository_bytes(base / "repo"),
        raw_first=raw_first,
        raw_last=int(repository.stats()["total_size"]),
        daily_added=daily_added,
        write_full_s=write_full_s,
        write_daily_s=statistics.mean(daily_write),
        read_s=read_s,
        open_s=open_s,
        truth_ok=actual == truth and restored_truth == truth,
    )


def table(results: list[Result]) -> Iterator[str]:
    yield (
        "| size | layout | publish | records | mirror MB | files | repo 1 point MB | repo 7 points MB | ratio |"
        " raw-data ratio | daily added KB (mean) | write full s | write daily s | read s | open s | truth |"
    )
    yield "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    for r in results:
        yield (
            f"| {r.size} | {r.layout} | {r.publish} | {r.records} | {r.mirror_bytes / 1e6:.2f} | {r.files} |"
            f" {r.repo_first / 1e6:.2f} | {r.repo_last / 1e6:.2f} | {r.ratio:.3f} | {r.raw_last / r.raw_first:.3f} |"
            f" {statistics.mean(r.daily_added) / 1e3:.0f} | {r.write_full_s:.2f} | {r.write_daily_s:.2f} |"
            f" {r.read_s:.2f} | {r.open_s:.2f} | {'ok' if r.truth_ok else 'MISMATCH'} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="small,medium")
    parser.add_argument("--layouts", default=",".join(LAYOUTS))
    parser.add_argument("--publish", default="journal,exchange", help="publish modes to measure")
    parser.add_argument("--days", type=int, default=6, help="churn days after day 0 (points = days + 1)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--work", type=Path, default=None, help="keep everything here (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mirror-layout-") as temporary:
        work = args.work or Path(temporary)
        work.mkdir(parents=True, exist_ok=True)
        results: list[Result] = []
        for size in args.sizes.split(","):
            started = time.perf_counter()
            states, truth = generate(work, size, args.seed, args.days)
            churn = [diff(states[n - 1], states[n]) for n in range(1, len(states))]
            print(
                f"# {size}: generated and churned in {time.perf_counter() - started:.1f} s; daily upserts"
                f" {[sum(len(v) for v in d.upserts.values()) for d in churn]}, deletes"
                f" {[sum(len(v) for v in d.deletes.values()) for d in churn]}, attachment puts"
                f" {[len(d.attachment_puts) for d in churn]}",
                file=sys.stderr,
            )
            for publish in args.publish.split(","):
                for name in args.layouts.split(","):
                    result = measure(work, size, LAYOUTS[name], publish, states, truth)
                    results.append(result)
                    print(f"# {size} {name} {publish}: ratio {result.ratio:.3f}", file=sys.stderr, flush=True)
        print(f"seed {args.seed}, {args.days + 1} points per layout")
        for line in table(results):
            print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
