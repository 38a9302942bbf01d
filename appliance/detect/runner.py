"""Running the damage rules after a backup: read the step from the previous point to the new one, evaluate,
store the findings.

This module owns what the rules are given (`build_step`: added/changed documents, re-coded lines, the coding
habits of contacts and items, contacts' replaced payment details, activity counts, all read from the two
points' indexes with set operations on record hashes) and the last clean point of each finding: the point
before the earliest finding of warning or critical severity that nobody has acknowledged yet, so a damage
that starts on Monday and is still compounding on Wednesday points at Sunday's backup, not Tuesday's.

It opens points through `appliance.points.index` (restic) and writes through `State.findings`; the rules
themselves (`appliance.detect.rules`) are pure. Alerts are a later issue: findings are only stored.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from appliance.detect import rules
from appliance.detect.rules import DetailChange, DetectConfig, Doc, Line, Step
from appliance.points.diff import diff_hashes
from appliance.points.index import DEFAULT_CACHE_MAX_BYTES, PointIndex, open_point
from appliance.store import State
from appliance.store.findings import StoredFinding
from appliance.store.points import BackupPoint
from appliance.vault.repository import Repository

log = logging.getLogger(__name__)
_DOC_COLUMNS = "_id, _status, _contact_id, _date, _total, _reference, _number, _updated"


def _docs(index: PointIndex, endpoint: str) -> dict[str, Doc]:
    if not index.has(endpoint):
        return {}
    return {
        row[0]: Doc(endpoint, row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7])
        for row in index.db.execute(f"SELECT {_DOC_COLUMNS} FROM [{endpoint}]")
    }


def _lines(index: PointIndex, endpoint: str, parent_ids: Iterable[str] | None = None) -> dict[str, list[Line]]:
    """Line items of an endpoint's documents (all, or of `parent_ids`), by document id."""
    result: dict[str, list[Line]] = defaultdict(list)
    sql = (
        "SELECT _parent_id, LineItemID, AccountCode, TaxType, ItemCode, LineAmount FROM line_items WHERE _endpoint = ?"
    )
    wanted = None if parent_ids is None else set(parent_ids)
    if wanted is not None and not wanted:
        return result
    for parent, line_id, account, tax, item, amount in index.db.execute(sql, [endpoint]):
        if wanted is None or parent in wanted:
            result[parent].append(Line(endpoint, parent, line_id, account, tax, item, float(amount or 0.0)))
    return result


def _pair_lines(old: list[Line], new: list[Line]) -> list[tuple[Line, Line]]:
    """The same line before and after an edit: by LineItemID, else by (item, amount) in order.

    An update that sends LineItems without their LineItemIDs replaces the lines, so they come back with new
    ids ("If you don't specify a LineItemID the line items will be deleted and recreated",
    https://developer.xero.com/documentation/api/accounting/invoices#post-invoices); a re-mapping integration
    does exactly that, so the re-coded line has to be recognised by what it is, not by its id."""
    pairs: list[tuple[Line, Line]] = []
    by_id = {line.line_id: line for line in old if line.line_id}
    unmatched_new: list[Line] = []
    for line in new:
        earlier = by_id.pop(line.line_id, None) if line.line_id else None
        if earlier is not None:
            pairs.append((earlier, line))
        else:
            unmatched_new.append(line)
    if not unmatched_new:
        return pairs
    matched_ids = {id(b) for b, _ in pairs}
    leftover = [line for line in old if id(line) not in matched_ids]
    for line in unmatched_new:
        key = (line.item, round(line.amount, 2))
        earlier = next((o for o in leftover if (o.item, round(o.amount, 2)) == key), None)
        if earlier is not None:
            leftover.remove(earlier)
            pairs.append((earlier, line))
    return pairs


PAYMENT_DETAIL_FIELDS = ("BankAccountNumber", "BankAccountName", "Details")
"""A contact's `BatchPayments` fields that say where its money goes
(https://developer.xero.com/documentation/api/accounting/contacts, "BatchPayments")."""


def _payment_details(contact: dict[str, Any]) -> dict[str, str]:
    details = {"BankAccountDetails": str(contact.get("BankAccountDetails") or "").strip()}
    batch = contact.get("BatchPayments")
    if isinstance(batch, dict):
        for name in PAYMENT_DETAIL_FIELDS:
            details[f"BatchPayments.{name}"] = str(batch.get(name) or "").strip()
    return details


def detail_changes(before: PointIndex, after: PointIndex, contact_ids: Iterable[str]) -> list[DetailChange]:
    """Payment details of contacts (present in both points) that were replaced: a value that was set before
    and differs now. Setting details a contact never had is how a new supplier is completed, not a change."""
    changes = []
    for contact_id in contact_ids:
        old, new = before.raw("Contacts", contact_id), after.raw("Contacts", contact_id)
        if old is None or new is None:
            continue
        old_details, new_details = _payment_details(old), _payment_details(new)
        for name, value in old_details.items():
            if value and new_details.get(name, "") != value:
                changes.append(
                    DetailChange(
                        contact_id,
                        name,
                        value,
                        new_details.get(name, ""),
                        name=new.get("Name"),
                        updated=after.scalar("SELECT _updated FROM Contacts WHERE _id = ?", [contact_id]),
                    )
                )
    return changes


def build_step(before: PointIndex, after: PointIndex) -> Step:
    """What changed between two points of one organisation, in the shape the rules read."""
    step = Step()
    counts: Counter[str] = Counter()
    evidence: dict[str, list[str]] = defaultdict(list)
    existing_keys: dict[tuple[Any, ...], list[str]] = defaultdict(list)
    contact_history: dict[str, Counter[tuple[str | None, str | None]]] = defaultdict(Counter)
    item_history: dict[str, Counter[tuple[str | None, str | None]]] = defaultdict(Counter)
    endpoints = sorted(set(before.endpoints()) | set(after.endpoints()))
    for endpoint in endpoints:
        before_hashes = before.hashes(endpoint)
        step.records += len(before_hashes)
        added, removed, changed = diff_hashes(before_hashes, after.hashes(endpoint))
        counts["changed"] += len(changed)
        evidence["changed"] += changed
        counts["deleted"] += len(removed)
        evidence["deleted"] += removed
        if endpoint not in rules.DUPLICATE_ENDPOINTS and endpoint != "Contacts":
            continue
        old_docs, new_docs = _docs(before, endpoint), _docs(after, endpoint)
        added_docs = [new_docs[i] for i in added]
        step.added += added_docs
        counts["added"] += len(added)
        evidence["added"] += added
        if endpoint == "Contacts":
            counts["new_contacts"] += len(added)
            evidence["new_contacts"] += added
            step.detail_changes += detail_changes(before, after, changed)
        if endpoint == "Payments":
            counts["new_payments"] += len(added)
            evidence["new_payments"] += added
        for record_id in changed:
            status = new_docs[record_id].status
            if status != old_docs[record_id].status and status in ("VOIDED", "DELETED", "ARCHIVED"):
                name = {"VOIDED": "voided", "DELETED": "deleted", "ARCHIVED": "archived"}[status]
                counts[name] += 1
                evidence[name].append(record_id)
        for doc in old_docs.values():
            existing_keys[rules.duplicate_key(doc)].append(doc.record_id)
        if endpoint not in rules.LINE_ENDPOINTS:
            continue
        old_lines = _lines(before, endpoint)
        for parent, lines in old_lines.items():
            contact = old_docs[parent].contact_id if parent in old_docs else None
            for line in lines:
                pair = (line.account, line.tax_type)
                step.pair_history[pair] += 1
                if contact:
                    contact_history[contact][pair] += 1
                if line.item:
                    item_history[line.item][pair] += 1
        new_lines = _lines(after, endpoint, [*added, *changed])
        for record_id in added:
            step.new_lines += [(new_docs[record_id], line) for line in new_lines.get(record_id, [])]
        for record_id in changed:
            for earlier, line in _pair_lines(old_lines.get(record_id, []), new_lines.get(record_id, [])):
                if (earlier.account, earlier.tax_type) != (line.account, line.tax_type):
                    step.recoded.append((new_docs[record_id], earlier, line))
    step.existing_keys = dict(existing_keys)
    step.contact_history = dict(contact_history)
    step.item_history = dict(item_history)
    step.counts = {name: counts.get(name, 0) for name in rules.ACTIVITY}
    step.evidence_ids = dict(evidence)
    return step


def last_clean_point(state: State, org_id: str, before: str) -> str:
    """The point before the earliest unacknowledged warning or critical finding, else `before`."""
    open_findings = state.findings.open_for(org_id)
    return open_findings[0].point_before or before if open_findings else before


def detect_step(
    state: State,
    before: PointIndex,
    after: PointIndex,
    *,
    taken_at: float,
    config: DetectConfig | None = None,
) -> list[StoredFinding]:
    """Evaluate the rules on one step and store its findings and activity; returns the stored findings."""
    org_id = after.org_id
    step = build_step(before, after)
    baseline = state.findings.baseline(org_id, before=taken_at)
    findings = rules.evaluate(step, baseline, config)
    clean = last_clean_point(state, org_id, before.snapshot_id)
    stored = []
    with state.transaction():
        for finding in findings:
            stored.append(
                state.findings.add(
                    org_id,
                    rule=finding.rule,
                    severity=finding.severity,
                    summary=finding.summary,
                    evidence=finding.evidence,
                    point_after=after.snapshot_id,
                    point_before=before.snapshot_id,
                    last_clean_point=clean if finding.severity != "info" else before.snapshot_id,
                    suspected_start=finding.suspected_start,
                    fingerprint=finding.fingerprint,
                )
            )
        state.findings.record_step(org_id, after.snapshot_id, before.snapshot_id, taken_at, step.counts)
    if any(f.severity != "info" for f in stored):
        log.warning(
            "damage detection on %s found %d finding(s): %s",
            org_id,
            len(stored),
            "; ".join(f"{f.severity} {f.rule}: {f.summary}" for f in stored),
        )
    return stored


def previous_point(points: list[BackupPoint], snapshot_id: str) -> BackupPoint | None:
    ordered = sorted(points, key=lambda p: (p.taken_at, p.snapshot_id))
    for position, point in enumerate(ordered):
        if point.snapshot_id == snapshot_id:
            return ordered[position - 1] if position > 0 else None
    return None


def after_backup(
    state: State,
    repository: Repository,
    cache_dir: Path,
    org_id: str,
    snapshot_id: str,
    *,
    config: DetectConfig | None = None,
    max_cache_bytes: int = DEFAULT_CACHE_MAX_BYTES,
) -> list[StoredFinding]:
    """Compare a new point with the organisation's previous one and store what the rules find (nothing for
    an organisation's first point)."""
    points = state.points.list(org_id)
    current = next((p for p in points if p.snapshot_id == snapshot_id), None)
    previous = previous_point(points, snapshot_id)
    if current is None or previous is None:
        return []
    with (
        open_point(repository, org_id, previous.snapshot_id, cache_dir, max_bytes=max_cache_bytes) as before,
        open_point(  # derived from the previous point's index: only the files that changed are read
            repository, org_id, snapshot_id, cache_dir, max_bytes=max_cache_bytes, neighbours=[previous.snapshot_id]
        ) as after,
    ):
        return detect_step(state, before, after, taken_at=current.taken_at, config=config)
