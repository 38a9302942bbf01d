"""Restore use cases for the CLI and the TUI: plan, start, run/resume, status, cancel, retry, verify, checklist.

This module composes the restore's parts with the appliance's adapters: it restores the point's mirror out of
restic into the cache (once per point, atomically), reads the target organisation's state through the Xero
client, builds the plan (`appliance.restore.plan`), records restores in the state database, runs the push
(`appliance.restore.push`), reads the target's reports for `verify`, and builds the checklist. Front ends call
these functions and get plain data back.

It must not print or parse arguments.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

from appliance.backup.mirror import Mirror
from appliance.errors import NotFound, UsageError
from appliance.models import Organisation
from appliance.restore import plan as restore_plan
from appliance.restore.checklist import ChecklistItem, build_checklist
from appliance.restore.push import PointSource, ProgressCallback, RestorePush, RunOutcome, select_elements
from appliance.restore.verify import REPORTS, Unrestored, VerifyReport, build_report, report_params
from appliance.service import Appliance
from appliance.store import Job, JobState
from appliance.store.restores import Restore
from appliance.xero import catalogue
from appliance.xero.client import XeroClient

_CONTENT_ENDPOINTS = ("Contacts", "Invoices", "CreditNotes", "BankTransactions", "ManualJournals", "Payments", "Items")


def point_mirror(appliance: Appliance, org_id: str, snapshot_id: str) -> Mirror:
    """The point's mirror on local disk (restored from restic once; a killed restore of it is redone)."""
    root = appliance.settings.effective_cache_dir / "restore-points" / org_id
    final = root / snapshot_id
    if (final / "manifest.json").exists():
        return Mirror(final)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    staging = root / f".{snapshot_id}.{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    appliance.repository(org_id).restore(snapshot_id, staging)
    os.replace(staging, final)  # the point is usable only once complete
    return Mirror(final)


def _client(appliance: Appliance, organisation: Organisation) -> XeroClient:
    return appliance._clients()[organisation.app_name]


async def _target_state(client: XeroClient, target: Organisation, day_limit: int) -> restore_plan.TargetState:
    grant, tenant = target.grant_id, target.org_id
    organisation_body = await client.get_json(grant, tenant, "Organisation")
    organisations = organisation_body.get("Organisations") or [{}]
    currencies = await client.get_json(grant, tenant, "Currencies")
    counts: dict[str, int] = {}
    for name in _CONTENT_ENDPOINTS:
        # One page is enough to know whether the organisation is empty.
        async for page in client.iter_records(grant, tenant, catalogue.endpoint(name), page_size=100):
            counts[name] = len(page)
            break
    return restore_plan.TargetState(
        tenant_id=tenant,
        organisation=organisations[0],
        currencies=[str(c.get("Code")) for c in currencies.get("Currencies") or []],
        counts=counts,
        day_limit=day_limit,
    )


def _day_limit(appliance: Appliance, organisation: Organisation) -> int:
    limit = appliance.settings.limits.tenant_per_day
    if limit:
        return int(limit)
    app = appliance.settings.app(organisation.app_name)
    return 1000 if str(app.tier).lower() == "starter" else 5000


def _step_sizes(source: PointSource) -> tuple[dict[str, int], dict[str, int]]:
    counts: dict[str, int] = {}
    sizes: dict[str, int] = {}
    for step in restore_plan.STEPS:
        selected = select_elements(step, source)
        counts[step.name] = len(selected)
        if step.name == "attachments":
            sizes[step.name] = sum(
                int(entry.get("size") or 0)
                for endpoint in source.mirror.attachment_endpoints()
                for record_id in source.mirror.attachment_records(endpoint)
                for entry in source.mirror.attachments(endpoint, record_id)
            )
        else:
            records = source.records(step.endpoint)
            sizes[step.name] = sum(len(json.dumps(records[i], separators=(",", ":"))) for i in selected if i in records)
    return counts, sizes


def _earliest_day(source: PointSource) -> str | None:
    from appliance.restore.transform import day

    days = [
        found
        for endpoint in ("Invoices", "CreditNotes", "BankTransactions", "ManualJournals", "Payments")
        for record in source.records(endpoint).values()
        if (found := day(record.get("Date")))
    ]
    return min(days) if days else None


def plan_restore(
    appliance: Appliance, org_key: str, point_id: str, target_key: str, *, allow_non_empty: bool = False
) -> restore_plan.Plan:
    """A dry run: reads only the point and the target."""
    organisation = appliance.organisation(org_key)
    point = appliance.state.points.get(organisation.org_id, point_id)
    target = appliance.organisation(target_key)
    source = PointSource(point_mirror(appliance, organisation.org_id, point.snapshot_id))
    client = _client(appliance, target)

    async def read() -> restore_plan.TargetState:
        try:
            return await _target_state(client, target, _day_limit(appliance, target))
        finally:
            await client.aclose()

    target_state = asyncio.run(read())
    problems = restore_plan.preflight(
        source_org_id=organisation.org_id,
        source_organisation=source.organisation(),
        source_currencies=list(source.records("Currencies")),
        earliest_document_day=_earliest_day(source),
        target=target_state,
        allow_non_empty=allow_non_empty,
    )
    counts, sizes = _step_sizes(source)
    return restore_plan.build_plan(
        org_id=organisation.org_id,
        snapshot_id=point.snapshot_id,
        target=target_state,
        records_per_step=counts,
        bytes_per_step=sizes,
        problems=problems,
    )


def start_restore(
    appliance: Appliance, org_key: str, point_id: str, target_key: str, *, allow_non_empty: bool = False
) -> Restore:
    """Plan, refuse on a blocker, and record a new restore (not yet run)."""
    plan = plan_restore(appliance, org_key, point_id, target_key, allow_non_empty=allow_non_empty)
    if plan.blocked:
        blockers = "; ".join(p.message for p in plan.problems if p.severity == "blocker")
        raise UsageError(f"the restore is refused: {blockers}", hint="see `strongroom restore plan`")
    restore_id = str(uuid.uuid4())
    return appliance.state.restores.create(
        restore_id,
        plan.org_id,
        plan.snapshot_id,
        plan.target_tenant_id,
        plan=plan.as_dict(),
        options={"allow_non_empty": allow_non_empty},
    )


def run_restore(
    appliance: Appliance,
    restore_id: str,
    *,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> RunOutcome:
    """Run or resume a restore until it finishes, pauses (day budget) or is cancelled (on a new event loop)."""
    return asyncio.run(run_restore_async(appliance, restore_id, progress=progress, cancel=cancel))


async def run_restore_async(
    appliance: Appliance,
    restore_id: str,
    *,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> RunOutcome:
    """`run_restore` on the caller's event loop (the restore job's handler); restic runs in a worker thread."""
    restore = appliance.state.restores.get(restore_id)
    target = appliance.organisation(restore.target_tenant_id)
    mirror = await asyncio.to_thread(point_mirror, appliance, restore.org_id, restore.snapshot_id)
    source = PointSource(mirror)
    client = _client(appliance, target)
    try:
        push = RestorePush(
            appliance.state, client, target.grant_id, restore.restore_id, source, cancel=cancel, progress=progress
        )
        return await push.run()
    finally:
        await client.aclose()


def outcome_of(appliance: Appliance, restore_id: str) -> RunOutcome:
    """Where a restore stands, in the shape a run returns (what the CLI prints after watching its job)."""
    restore = appliance.state.restores.get(restore_id)
    return RunOutcome(
        restore.restore_id,
        restore.status,
        restore.calls,
        appliance.state.restores.counts(restore.restore_id),
        restore.error,
        restore.resume_after,
    )


# --- the restore as a job ----------------------------------------------------------------------------------------
RESTORE_JOB = "restore"


def restore_jobs(appliance: Appliance, restore_id: str) -> list[Job]:
    """The jobs that ran or will run this restore, oldest first (kind `restore`, params `{"restore_id": ...}`)."""
    restore = appliance.state.restores.get(restore_id)
    return [
        job
        for job in appliance.state.jobs.list(kind=RESTORE_JOB, limit=1_000_000)
        if job.params.get("restore_id") == restore.restore_id
    ]


def active_job(appliance: Appliance, restore_id: str) -> Job | None:
    """The queued or running job of this restore, if any."""
    active = [job for job in restore_jobs(appliance, restore_id) if job.state in (JobState.QUEUED, JobState.RUNNING)]
    return active[-1] if active else None


def enqueue_restore(appliance: Appliance, restore_id: str, *, priority: int = 50, now: bool = False) -> Job:
    """Queue the restore's job for the daemon (or return the one already queued or running): kind `restore`,
    the target organisation as its organisation (no other job runs on it meanwhile), params
    `{"restore_id": ...}`. This is what the TUI and the CLI enqueue. `now`: a person resumes it, so a job
    waiting for Xero's day window to reset is replaced by one that runs at once."""
    restore = appliance.state.restores.get(restore_id)
    if restore.status == "finished":
        raise UsageError(f"restore {restore.restore_id[:8]} is finished", hint="`strongroom restore retry` first")
    existing = active_job(appliance, restore.restore_id)
    waiting = existing is not None and existing.state is JobState.QUEUED and (existing.not_before or 0) > time.time()
    if existing is not None and now and waiting:
        appliance.state.jobs.request_cancel(existing.job_id)
    elif existing is not None:
        return existing
    return appliance.state.jobs.enqueue(
        RESTORE_JOB,
        org_id=restore.target_tenant_id,
        params={"restore_id": restore.restore_id},
        priority=priority,
    )


def restores(appliance: Appliance, org_key: str | None = None) -> list[Restore]:
    org_id = appliance.organisation(org_key).org_id if org_key else None
    return appliance.state.restores.list(org_id)


def status(appliance: Appliance, restore_id: str) -> dict[str, Any]:
    restore = appliance.state.restores.get(restore_id)
    return {
        "restore_id": restore.restore_id,
        "org_id": restore.org_id,
        "snapshot_id": restore.snapshot_id,
        "target_tenant_id": restore.target_tenant_id,
        "status": restore.status,
        "step": restore.step,
        "calls": restore.calls,
        "error": restore.error,
        "resume_after": restore.resume_after,
        "counts": appliance.state.restores.counts(restore.restore_id),
        "job": _job_summary(active_job(appliance, restore.restore_id) or _last(restore_jobs(appliance, restore_id))),
    }


def _last(jobs: list[Job]) -> Job | None:
    return jobs[-1] if jobs else None


def _job_summary(job: Job | None) -> dict[str, Any] | None:
    if job is None:
        return None
    return {
        "job_id": job.job_id,
        "state": job.state.value,
        "progress": job.progress,
        "attempts": job.attempts,
        "not_before": job.not_before,
    }


def cancel_restore(appliance: Appliance, restore_id: str) -> Restore:
    """Ask a running restore to stop between batches (or mark an idle one cancelled); its queued job is
    cancelled and its running job asked to stop (the journal keeps what was written: resumable)."""
    restore = appliance.state.restores.get(restore_id)
    job = active_job(appliance, restore.restore_id)
    if job is not None:
        appliance.state.jobs.request_cancel(job.job_id)
    if restore.status in ("finished", "cancelled"):
        return restore
    if restore.status == "running" and appliance.state.locks.holder(restore.target_tenant_id) is not None:
        appliance.state.restores.update(restore.restore_id, cancel_requested=True)
    else:
        appliance.state.restores.update(restore.restore_id, status="cancelled", cancel_requested=True)
    return appliance.state.restores.get(restore.restore_id)


def retry_refused(appliance: Appliance, restore_id: str, step: str | None = None) -> int:
    """Queue the refused elements again (after fixing their cause) and reopen a finished restore."""
    restore = appliance.state.restores.get(restore_id)
    if step is not None and step not in restore_plan.STEPS_BY_NAME:
        raise UsageError(f"no restore step {step!r}", hint=", ".join(restore_plan.STEP_NAMES))
    count = appliance.state.restores.retry_refused(restore.restore_id, step)
    if count and restore.status == "finished":
        appliance.state.restores.update(restore.restore_id, status="paused", finished_at=None)
    return count


async def _read_reports(
    client: XeroClient, target: Organisation, point_reports: Mapping[str, Mapping[str, Any] | None]
) -> dict[str, dict[str, Any]]:
    result = {}
    for name in REPORTS:
        point = point_reports.get(name)
        if not point:
            continue
        params = report_params(point)
        result[name] = await client.get_json(target.grant_id, target.org_id, f"Reports/{name}", params=params)
    return result


def verify_restore(appliance: Appliance, restore_id: str) -> VerifyReport:
    restore = appliance.state.restores.get(restore_id)
    target = appliance.organisation(restore.target_tenant_id)
    mirror = point_mirror(appliance, restore.org_id, restore.snapshot_id)
    point_reports = {name: mirror.document(f"reports/{name}") for name in REPORTS}
    client = _client(appliance, target)

    async def read() -> dict[str, dict[str, Any]]:
        try:
            return await _read_reports(client, target, point_reports)
        finally:
            await client.aclose()

    target_reports = asyncio.run(read())
    state = appliance.state.restores
    exceptions = [
        Unrestored(element.step, element.source_id, element.status, element.reason or "")
        for element in state.elements(restore.restore_id)
        if element.status in ("refused", "pending", "sent")
        or (element.status == "skipped" and not (element.reason or "").startswith("restored with"))
    ]
    report = build_report(
        restore.restore_id, point_reports, target_reports, state.counts(restore.restore_id), exceptions
    )
    state.update(restore.restore_id, verification=report.as_dict())
    return report


def checklist(appliance: Appliance, restore_id: str) -> list[ChecklistItem]:
    restore = appliance.state.restores.get(restore_id)
    integrations: list[dict[str, Any]] = []
    with contextlib.suppress(NotFound):
        integrations = appliance.state.orgs.integrations(restore.org_id)
    return build_checklist(
        appliance.state.restores.counts(restore.restore_id),
        appliance.state.restores.ticks(restore.restore_id),
        integrations,
        running_step=restore.step if restore.status == "running" else None,
    )


def tick(appliance: Appliance, restore_id: str, number: int, *, ticked: bool = True) -> ChecklistItem:
    items = checklist(appliance, restore_id)
    chosen = next((item for item in items if item.number == number), None)
    if chosen is None:
        raise UsageError(f"no checklist item {number}", hint=f"items are 1 to {len(items)}")
    if chosen.kind != "manual":
        raise UsageError(f"item {number} is automatic: the restore run ticks it")
    restore = appliance.state.restores.get(restore_id)
    appliance.state.restores.tick(restore.restore_id, chosen.key, ticked=ticked)
    return next(item for item in checklist(appliance, restore_id) if item.number == number)
