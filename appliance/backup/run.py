"""Backing up one organisation: read Xero, rebuild the canonical mirror, snapshot it, record the point.

This use case owns the order of a backup run and its failure semantics:

- The organisation is locked for the run (`state.locks`), so two jobs never back it up at once.
- Records are read per the plan (`appliance.backup.plan`) into a `MirrorWriter`. A complete read of a paged
  endpoint upserts page by page and deletes what it did not see at the end, so a run stopped half-way never
  deletes a record it did not get to read.
- A backup point (restic snapshot) is taken only after a complete mirror is committed; watermarks move only
  after restic confirmed the snapshot. A failure or kill anywhere leaves the previous mirror (or a newer,
  complete one) and every earlier point intact.
- When the tenant's day budget runs out, the endpoints read so far are committed to the mirror, the run is
  paused with a checkpoint (which endpoints are done, and their watermarks), and `resume_at` says when Xero's
  day window resets. The next run of the organisation resumes from the checkpoint instead of starting over.
- A lost consent (`invalid_grant`) marks the grant's organisations as needing consent: an alert, not a loop.

It talks to Xero only through `XeroClient`, to restic only through `Repository`, and to SQLite only through
`State`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from appliance import logs
from appliance.backup.mirror import Mirror, MirrorWriter
from appliance.backup.plan import EndpointRead, RunPlan, Strategy, plan_run
from appliance.errors import (
    ConsentRequired,
    DayBudgetExhausted,
    Interrupted,
    OrganisationLocked,
    RepositoryMissing,
    StrongroomError,
    XeroRejected,
)
from appliance.models import Organisation, OrgStatus
from appliance.settings import Settings
from appliance.store import State
from appliance.store.runs import Run, RunStatus
from appliance.store.watermarks import Watermark
from appliance.vault.repository import Repository
from appliance.xero.catalogue import Endpoint, Paging
from appliance.xero.client import XeroClient
from appliance.xero.dates import parse_ms_date

log = logging.getLogger(__name__)

Status = Literal["succeeded", "paused", "failed", "needs_consent", "locked", "interrupted"]
MANIFEST_SCHEMA = 1
# Attachment downloads in flight per organisation: the governor caps calls per tenant at Xero's 5 anyway.
ATTACHMENT_CONCURRENCY = 4
ENDPOINT_CONCURRENCY = 3


@dataclass
class Progress:
    """One progress event (the CLI renders these with rich, the daemon stores them on the job)."""

    org_id: str
    phase: str
    """plan, read, attachments, reports, mirror, snapshot, done."""
    endpoint: str | None = None
    records: int = 0
    calls: int = 0
    done_endpoints: int = 0
    total_endpoints: int = 0
    detail: str = ""


ProgressCallback = Callable[[Progress], None]


@dataclass
class BackupOutcome:
    org_id: str
    name: str
    status: Status
    run_id: str | None = None
    mode: str | None = None
    snapshot_id: str | None = None
    calls: int = 0
    bytes_downloaded: int = 0
    records: int = 0
    attachments_downloaded: int = 0
    data_added: int = 0
    seconds: float = 0.0
    error: str | None = None
    error_kind: str | None = None
    """The failure's class name (`XeroForbidden`, `ResticFailed`...): what callers decide on, never the text."""
    resume_at: float | None = None
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def host_for(org_id: str) -> str:
    """restic's `--host` for an organisation: stable, so parent detection and `forget` grouping work."""
    return f"strongroom-{org_id}"


class _Budget(Exception):
    """Internal: the day budget ran out while reading `endpoint`."""

    def __init__(self, error: DayBudgetExhausted) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass
class _Read:
    """What reading one endpoint produced."""

    records: int = 0
    max_updated_ms: int | None = None
    journal_offset: int | None = None
    attachment_records: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """(record_id, record) of new or changed records that may carry attachments."""
    cleared_attachment_records: list[str] = field(default_factory=list)
    invoice_dues: dict[str, tuple[str, str, str, float]] = field(default_factory=dict)
    """Invoices only: id -> (Type, Status, ContactID, AmountDue), for choosing aged-report contacts."""


class BackupEngine:
    """Backs up organisations of one installation (one `State`, one `XeroClient` per app)."""

    def __init__(
        self,
        settings: Settings,
        state: State,
        clients: Mapping[str, XeroClient],
        repository_for: Callable[[str], Repository],
        *,
        mirror_root: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.state = state
        self.clients = clients
        self.repository_for = repository_for
        self.mirror_root = mirror_root or settings.data_dir / "mirrors"
        self.clock = clock

    # -- public -------------------------------------------------------------------------------------------------
    async def backup(
        self,
        org: Organisation,
        *,
        full: bool = False,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> BackupOutcome:
        """Back up one organisation. Never raises for the organisation's own failures: the outcome says."""
        started = self.clock()
        outcome = BackupOutcome(org_id=org.org_id, name=org.name, status="failed")
        if org.status is not OrgStatus.ACTIVE:
            outcome.status = "needs_consent" if org.status is OrgStatus.NEEDS_CONSENT else "failed"
            outcome.error = f"organisation is {org.status.value}"
            return outcome
        try:
            with self.state.locks.hold(org.org_id, purpose="backup"), logs.context(org_id=org.org_id):
                await self._backup_locked(org, full, outcome, progress or (lambda _p: None), cancel)
        except OrganisationLocked as error:
            outcome.status = "locked"
            outcome.error = error.message
        outcome.seconds = round(self.clock() - started, 3)
        return outcome

    # -- the run ------------------------------------------------------------------------------------------------
    async def _backup_locked(
        self,
        org: Organisation,
        full: bool,
        outcome: BackupOutcome,
        progress: ProgressCallback,
        cancel: threading.Event | None,
    ) -> None:
        client = self.clients[org.app_name]
        app = self.settings.app(org.app_name)
        grant = self.state.grants.get(org.grant_id)
        stats_before = _stats(client, org.org_id)

        self._close_dead_runs(org.org_id)
        resumed = self.state.runs.resumable(org.org_id)
        checkpoint: dict[str, Any] = dict(resumed.checkpoint or {}) if resumed else {}
        if resumed is not None and not full:
            run: Run = self.state.runs.resume(resumed.run_id)
            force_full = checkpoint.get("mode") == "full"
        else:
            if resumed is not None:  # a forced full run supersedes the paused one
                self.state.runs.finish(resumed.run_id, RunStatus.FAILED, error="superseded by a full run")
            checkpoint = {}
            force_full = full
            run = self.state.runs.start(org.org_id, "full" if full else "incremental")
        outcome.run_id = run.run_id

        with logs.context(run_id=run.run_id):
            marks = self.state.watermarks.all(org.org_id)
            mirror_path = self.mirror_root / org.org_id / "current"
            has_mirror = (mirror_path / "manifest.json").is_file()
            sweeps = [m.full_sweep_at for m in marks.values() if m.full_sweep_at is not None]
            now = datetime.fromtimestamp(self.clock(), UTC)
            plan = plan_run(
                now=now,
                tier=app.tier,
                granted_scopes=grant.scopes.split(),
                has_mirror=has_mirror,
                last_full_at=datetime.fromtimestamp(min(sweeps), UTC) if sweeps else None,
                watermarks={
                    name: datetime.fromtimestamp(m.updated_ms / 1000, UTC)
                    for name, m in marks.items()
                    if m.updated_ms is not None
                },
                journal_offset=(marks["Journals"].journal_offset if "Journals" in marks else None),
                force_full=force_full,
                full_sweep_days=self.settings.backup.full_sweep_days,
                overlap_seconds=self.settings.backup.overlap_seconds,
                capture_reports=self.settings.backup.capture_reports,
            )
            outcome.mode = plan.mode
            checkpoint["mode"] = plan.mode
            if run.mode != plan.mode:
                self.state.db.execute("UPDATE runs SET mode = ? WHERE run_id = ?", (plan.mode, run.run_id))
            outcome.warnings.extend(f"{name} not read: {why}" for name, why in plan.skipped.items())
            progress(Progress(org.org_id, "plan", detail=f"{plan.mode}: {plan.reason}"))
            try:
                await self._read_and_snapshot(org, plan, run, checkpoint, outcome, progress, cancel)
            except ConsentRequired as error:
                lost = self.state.consent_lost(org.grant_id)
                outcome.status = "needs_consent"
                outcome.error = error.message
                log.warning("consent lost for %s (organisations: %s)", org.name, ", ".join(lost))
                self._finish(run, RunStatus.FAILED, client, org, stats_before, outcome)
            except _Budget as budget:
                resume_at = self.clock() + budget.error.retry_after
                checkpoint["resume_at"] = resume_at
                outcome.status = "paused"
                outcome.resume_at = resume_at
                outcome.error = f"day budget exhausted; resumes after {_iso(resume_at)}"
                self._finish(run, RunStatus.PAUSED, client, org, stats_before, outcome, checkpoint=checkpoint)
            except (asyncio.CancelledError, KeyboardInterrupt, Interrupted):
                outcome.status = "interrupted"
                outcome.error = "interrupted"
                self._finish(run, RunStatus.INTERRUPTED, client, org, stats_before, outcome, checkpoint=checkpoint)
                raise
            except StrongroomError as error:
                outcome.status = "failed"
                outcome.error = str(error)
                outcome.error_kind = type(error).__name__
                log.error("backup of %s failed: %s", org.name, error)
                self._finish(run, RunStatus.FAILED, client, org, stats_before, outcome, checkpoint=checkpoint)
            else:
                outcome.status = "succeeded"
                self._finish(run, RunStatus.SUCCEEDED, client, org, stats_before, outcome)

    def _close_dead_runs(self, org_id: str) -> None:
        """Runs still marked running belong to a process that died (we hold the organisation's lock now)."""
        for stale in self.state.runs.list(org_id, status=RunStatus.RUNNING, limit=20):
            if stale.checkpoint:
                self.state.runs.finish(stale.run_id, RunStatus.INTERRUPTED, error="process ended mid-run")
            else:
                self.state.runs.finish(stale.run_id, RunStatus.FAILED, error="process ended mid-run")

    def _adopt_orphans(self, repository: Repository, org_id: str, known: set[str]) -> int:
        """Snapshots restic finished but the state never recorded (the process died between the two):
        restic writes a snapshot file only once its data is complete, so they are whole points; record them."""
        adopted = 0
        on_disk = repository.local_snapshot_ids()
        if on_disk is not None and on_disk <= known:  # nothing unknown: no restic start needed to know it
            return 0
        for snapshot in repository.snapshots(host=host_for(org_id)):
            if snapshot.id in known:
                continue
            tags = dict(tag.split(":", 1) for tag in snapshot.tags if ":" in tag)
            mode: Literal["full", "incremental"] = "full" if tags.get("mode") == "full" else "incremental"
            taken = datetime.fromisoformat(snapshot.time.replace("Z", "+00:00")).timestamp()
            self.state.points.add(
                org_id, snapshot.id, taken_at=taken, mode=mode, run_id=tags.get("run"), summary={"adopted": True}
            )
            adopted += 1
        if adopted:
            log.warning("recorded %d backup point(s) a killed run had completed in restic", adopted)
        return adopted

    def _finish(
        self,
        run: Run,
        status: RunStatus,
        client: XeroClient,
        org: Organisation,
        stats_before: tuple[int, int],
        outcome: BackupOutcome,
        *,
        checkpoint: dict[str, Any] | None = None,
    ) -> None:
        calls, nbytes = _stats(client, org.org_id)
        outcome.calls = calls - stats_before[0]
        outcome.bytes_downloaded = nbytes - stats_before[1]
        self.state.runs.finish(
            run.run_id,
            status,
            calls=run.calls + outcome.calls,
            bytes=run.bytes + outcome.bytes_downloaded,
            error=outcome.error,
            checkpoint=checkpoint,
        )

    async def _read_and_snapshot(
        self,
        org: Organisation,
        plan: RunPlan,
        run: Run,
        checkpoint: dict[str, Any],
        outcome: BackupOutcome,
        progress: ProgressCallback,
        cancel: threading.Event | None,
    ) -> None:
        client = self.clients[org.app_name]
        done: dict[str, dict[str, Any]] = checkpoint.setdefault("done", {})
        writer = MirrorWriter(self.mirror_root, org.org_id)
        previous = Mirror(self.mirror_root / org.org_id / "current")
        has_previous = (previous.path / "manifest.json").is_file()
        writer.begin(full=False)
        committed = False
        try:
            organisation = await client.get_json(org.grant_id, org.org_id, "Organisation")
            writer.put_document("organisation", organisation)
            self._update_details(org, organisation)

            pending = [read for read in plan.reads if read.endpoint.name not in done]
            resuming = "resume_at" in checkpoint
            budget_error: DayBudgetExhausted | None = None
            semaphore = asyncio.Semaphore(ENDPOINT_CONCURRENCY)
            finished = len(plan.reads) - len(pending)
            invoice_dues: dict[str, tuple[str, str, str, float]] = {}

            async def one(read: EndpointRead) -> None:
                nonlocal budget_error, finished
                async with semaphore:
                    if budget_error is not None:
                        return
                    _check_cancel(cancel)
                    try:
                        result = await self._read_endpoint(
                            client,
                            org,
                            read,
                            writer,
                            previous if has_previous else None,
                            # A paused run committed this endpoint's records but maybe not its attachments:
                            # on resume, list the attachments of every record that has them.
                            trust_previous=not resuming,
                        )
                        downloaded = await self._attachments(
                            client, org, read.endpoint, result, writer, previous if has_previous else None
                        )
                    except DayBudgetExhausted as error:
                        budget_error = error
                        return
                    outcome.records += result.records
                    invoice_dues.update(result.invoice_dues)
                    outcome.attachments_downloaded += downloaded
                    done[read.endpoint.name] = {
                        "updated_ms": result.max_updated_ms,
                        "journal_offset": result.journal_offset,
                        "records": result.records,
                        "full": read.strategy is not Strategy.UPSERT,
                    }
                    finished += 1
                    progress(
                        Progress(
                            org.org_id,
                            "read",
                            endpoint=read.endpoint.name,
                            records=outcome.records,
                            calls=_stats(client, org.org_id)[0],
                            done_endpoints=finished,
                            total_endpoints=len(plan.reads),
                        )
                    )

            await asyncio.gather(*(one(read) for read in pending))
            if budget_error is None:
                progress(Progress(org.org_id, "reports"))
                try:
                    if has_previous:
                        for invoice in previous.iter_records("Invoices") if "Invoices" in previous.endpoints() else ():
                            invoice_id = str(invoice.get("InvoiceID"))
                            if invoice_id not in invoice_dues:
                                invoice_dues[invoice_id] = _invoice_due(invoice)
                    await self._reports(client, org, plan, writer, invoice_dues, outcome)
                except DayBudgetExhausted as error:
                    budget_error = error
            manifest = {
                "schema_version": MANIFEST_SCHEMA,
                "run_id": run.run_id,
                "organisation": {"name": org.name, "tenant_id": org.org_id},
                "complete": budget_error is None,
                "plan": {"mode": plan.mode, "reason": plan.reason, "skipped": dict(plan.skipped)},
                "watermarks": {name: entry.get("updated_ms") for name, entry in done.items()},
                "api": {"calls": outcome.calls, "bytes": outcome.bytes_downloaded},
                "warnings": outcome.warnings,
            }
            progress(Progress(org.org_id, "mirror"))
            current = writer.commit(manifest)
            committed = True
        finally:
            if not committed:
                writer.abort()
        if budget_error is not None:
            raise _Budget(budget_error)

        _check_cancel(cancel)
        progress(Progress(org.org_id, "snapshot"))
        repository = self.repository_for(org.org_id)
        snapshot_time = self.clock()

        def snapshot() -> Any:
            def take() -> Any:
                return repository.backup(
                    current,
                    host=host_for(org.org_id),
                    tags=["strongroom", f"org:{org.org_id}", f"run:{run.run_id}", f"mode:{plan.mode}"],
                    cancel=cancel,
                )

            try:
                return take()
            except RepositoryMissing:  # the first point of this organisation (cheaper than asking every run)
                repository.init()
                return take()

        summary = await asyncio.to_thread(snapshot)
        outcome.snapshot_id = summary.snapshot_id
        known = {point.snapshot_id for point in self.state.points.list(org.org_id)} | {summary.snapshot_id}
        await asyncio.to_thread(self._adopt_orphans, repository, org.org_id, known)
        outcome.data_added = summary.data_added
        calls, nbytes = _stats(client, org.org_id)
        counts = Mirror(current).manifest().get("endpoints", {})
        with self.state.transaction():
            self.state.points.add(
                org.org_id,
                summary.snapshot_id,
                taken_at=snapshot_time,
                mode=plan.mode,
                run_id=run.run_id,
                summary={
                    "records": {name: entry.get("count") for name, entry in counts.items()},
                    "calls": calls,
                    "bytes_downloaded": nbytes,
                    "data_added": summary.data_added,
                    "files_new": summary.files_new,
                    "files_changed": summary.files_changed,
                },
                size_bytes=summary.total_bytes_processed,
            )
            marks = {}
            for name, entry in done.items():
                old = self.state.watermarks.get(org.org_id, name)
                updated = entry.get("updated_ms")
                if old is not None and old.updated_ms is not None and (updated is None or updated < old.updated_ms):
                    updated = old.updated_ms
                marks[name] = Watermark(
                    endpoint=name,
                    updated_ms=updated,
                    full_sweep_at=snapshot_time if entry.get("full") else (old.full_sweep_at if old else None),
                    journal_offset=entry.get("journal_offset") or (old.journal_offset if old else None),
                )
            self.state.watermarks.save_many(org.org_id, marks)
        progress(Progress(org.org_id, "done", records=outcome.records, detail=summary.snapshot_id[:8]))

    # -- reading ------------------------------------------------------------------------------------------------
    async def _read_endpoint(
        self,
        client: XeroClient,
        org: Organisation,
        read: EndpointRead,
        writer: MirrorWriter,
        previous: Mirror | None,
        *,
        trust_previous: bool = True,
    ) -> _Read:
        endpoint = read.endpoint
        result = _Read()
        id_field = endpoint.id_field or ""
        old_lines: dict[str, str] = {}
        if previous is not None and endpoint.attachments:
            old_lines = _line_hashes(previous, endpoint.name)
            if not trust_previous:
                old_lines = {record_id: "" for record_id in old_lines}  # known ids, but every record "changed"
        seen: set[str] = set()
        unpaged_records: list[dict[str, Any]] = []
        async for page in client.iter_records(
            org.grant_id,
            org.org_id,
            endpoint,
            modified_since=read.modified_since,
            page_size=self.settings.backup.page_size,
            start_offset=read.offset or 0,
        ):
            result.records += len(page)
            for record in page:
                record_id = str(record.get(id_field, ""))
                seen.add(record_id)
                updated = _updated_ms(record, endpoint)
                if updated is not None and (result.max_updated_ms is None or updated > result.max_updated_ms):
                    result.max_updated_ms = updated
                if endpoint.paging is Paging.OFFSET:
                    number = record.get("JournalNumber")
                    if isinstance(number, int) and (result.journal_offset is None or number > result.journal_offset):
                        result.journal_offset = number
                if endpoint.attachments:
                    self._note_attachments(endpoint, record_id, record, old_lines, result)
                if endpoint.name == "Invoices":
                    result.invoice_dues[record_id] = _invoice_due(record)
            if endpoint.paging is Paging.NONE:
                unpaged_records.extend(page)
            else:
                writer.upsert(endpoint.name, page)
        if endpoint.paging is Paging.NONE:
            writer.replace_endpoint(endpoint.name, unpaged_records)
        elif read.strategy is Strategy.REPLACE:
            stale = (previous.ids(endpoint.name) if previous is not None else set()) - seen
            if stale:
                writer.delete(endpoint.name, stale)
            if result.records == 0:
                writer.replace_endpoint(endpoint.name, [])
        return result

    @staticmethod
    def _note_attachments(
        endpoint: Endpoint, record_id: str, record: dict[str, Any], old_lines: dict[str, str], result: _Read
    ) -> None:
        if endpoint.has_attachments_flag and not record.get("HasAttachments"):
            if record_id in old_lines:
                result.cleared_attachment_records.append(record_id)
            return
        line_hash = _record_hash(record)
        if old_lines.get(record_id) != line_hash:
            result.attachment_records.append((record_id, record))

    async def _attachments(
        self,
        client: XeroClient,
        org: Organisation,
        endpoint: Endpoint,
        result: _Read,
        writer: MirrorWriter,
        previous: Mirror | None,
    ) -> int:
        """Fetch attachments of new or changed records only: a list call, then each attachment whose
        AttachmentID and length the previous mirror does not already hold."""
        for record_id in result.cleared_attachment_records:
            writer.drop_attachments(endpoint.name, record_id, keep_ids=set())
        if not endpoint.attachments or not result.attachment_records:
            return 0
        semaphore = asyncio.Semaphore(ATTACHMENT_CONCURRENCY)
        downloaded = 0

        async def one(record_id: str) -> None:
            nonlocal downloaded
            async with semaphore:
                body = await client.get_json(org.grant_id, org.org_id, endpoint.attachments_path(record_id))
                listed = [a for a in body.get("Attachments", []) if isinstance(a, dict) and a.get("AttachmentID")]
                have = {
                    entry.get("AttachmentID"): entry
                    for entry in (previous.attachments(endpoint.name, record_id) if previous else [])
                }
                for attachment in listed:
                    old = have.get(attachment["AttachmentID"])
                    if old is not None and old.get("ContentLength") == attachment.get("ContentLength"):
                        continue  # carried over by the writer
                    with tempfile.TemporaryFile(dir=writer.org_dir) as handle:
                        path = endpoint.attachment_content_path(record_id, attachment["AttachmentID"])
                        await client.download(
                            org.grant_id, org.org_id, path, handle, content_type=attachment.get("MimeType")
                        )
                        handle.seek(0)
                        writer.put_attachment(endpoint.name, record_id, attachment, handle)
                    downloaded += 1
                writer.drop_attachments(endpoint.name, record_id, keep_ids={a["AttachmentID"] for a in listed})

        await asyncio.gather(*(one(record_id) for record_id, _record in result.attachment_records))
        return downloaded

    async def _reports(
        self,
        client: XeroClient,
        org: Organisation,
        plan: RunPlan,
        writer: MirrorWriter,
        invoice_dues: Mapping[str, tuple[str, str, str, float]],
        outcome: BackupOutcome,
    ) -> None:
        """Capture the reports a person checks after a restore, as Xero computes them on the backup day."""
        today = datetime.fromtimestamp(self.clock(), UTC).date()
        year_ago = today - timedelta(days=365)
        aged_limit = self.settings.backup.aged_report_contacts
        for report in plan.reports:
            name = report.name
            if name in ("AgedReceivablesByContact", "AgedPayablesByContact"):
                if not plan.full:
                    # One call per contact (SPEC: contactId is required): taken with the weekly full sweep only,
                    # so a daily run stays near the floor of calls; the point keeps the last sweep's copy.
                    continue
                invoice_type = "ACCREC" if name.startswith("AgedReceivables") else "ACCPAY"
                contacts = _outstanding_contacts(invoice_dues, invoice_type)
                if len(contacts) > aged_limit:
                    outcome.warnings.append(
                        f"{name}: captured for the {aged_limit} contacts owing most of {len(contacts)} (one call each)"
                    )
                rows = []
                for contact_id in contacts[:aged_limit]:
                    body = await client.get_json(
                        org.grant_id,
                        org.org_id,
                        report.path,
                        params={"contactId": contact_id, "date": today.isoformat()},
                    )
                    rows.append({"ContactID": contact_id, "Reports": body.get("Reports", [])})
                writer.put_document(f"reports/{name}", {"date": today.isoformat(), "contacts": rows})
                continue
            params = _report_params(name, today, year_ago)
            try:
                body = await client.get_json(org.grant_id, org.org_id, report.path, params=params)
            except XeroRejected as error:
                outcome.warnings.append(f"report {name} not captured: {error.message}")
                continue
            writer.put_document(f"reports/{name}", {"params": params, **body})

    def _update_details(self, org: Organisation, body: dict[str, Any]) -> None:
        organisations = body.get("Organisations") or []
        if not organisations:
            return
        details = organisations[0]
        self.state.orgs.update_details(
            org.org_id,
            name=details.get("Name") or org.name,
            country=details.get("CountryCode"),
            base_currency=details.get("BaseCurrency"),
        )


# -- helpers ----------------------------------------------------------------------------------------------------
def _check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Interrupted("backup cancelled")


def _stats(client: XeroClient, tenant_id: str) -> tuple[int, int]:
    stats = client.stats.get(tenant_id)
    return (stats.calls, stats.bytes_downloaded) if stats else (0, 0)


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def _record_hash(record: dict[str, Any]) -> str:
    from appliance.backup.manifest import canonical_json

    return hashlib.sha256(canonical_json(record).encode()).hexdigest()


def _line_hashes(mirror: Mirror, endpoint: str) -> dict[str, str]:
    """Record id -> hash of its canonical JSON in a mirror (lines are canonical JSON already)."""
    try:
        return {
            record_id: hashlib.sha256(line.rstrip(b"\n")).hexdigest() for record_id, line in mirror.iter_lines(endpoint)
        }
    except FileNotFoundError:
        return {}


def _updated_ms(record: dict[str, Any], endpoint: Endpoint) -> int | None:
    if not endpoint.updated_field:
        return None
    value = record.get(endpoint.updated_field)
    if not isinstance(value, str):
        return None
    try:
        return int(parse_ms_date(value).timestamp() * 1000)
    except ValueError:
        return None


def _report_params(name: str, today: date, year_ago: date) -> dict[str, str]:
    if name in ("TrialBalance", "BalanceSheet"):
        return {"date": today.isoformat()}
    if name in ("ProfitAndLoss", "BankSummary"):
        return {"fromDate": (year_ago + timedelta(days=1)).isoformat(), "toDate": today.isoformat()}
    return {}


def _invoice_due(invoice: Mapping[str, Any]) -> tuple[str, str, str, float]:
    due = invoice.get("AmountDue")
    return (
        str(invoice.get("Type", "")),
        str(invoice.get("Status", "")),
        str((invoice.get("Contact") or {}).get("ContactID", "")),
        float(due) if isinstance(due, int | float) else 0.0,
    )


def _outstanding_contacts(dues: Mapping[str, tuple[str, str, str, float]], invoice_type: str) -> list[str]:
    """Contacts with money outstanding on `invoice_type` invoices, most owed first."""
    owed: dict[str, float] = {}
    for kind, status, contact, due in dues.values():
        if kind == invoice_type and status == "AUTHORISED" and contact and due > 0:
            owed[contact] = owed.get(contact, 0.0) + due
    return [contact for contact, _amount in sorted(owed.items(), key=lambda item: (-item[1], item[0]))]
