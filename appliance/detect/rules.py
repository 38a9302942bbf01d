"""Damage rules: what changed between the previous backup point and the new one that a person must look at.

Four rules, each a pure function of a `Step` (what the runner read from the two points) and a `DetectConfig`:

1. `near_duplicates`: new documents (new ids) that repeat an existing or another new document's contact,
   date, total and reference, in bulk: a re-run import or a sync loop.
2. `recoded_lines`: existing approved transactions whose line items (matched by LineItemID) now post to
   another account code or tax type: a retroactive rewrite of the books.
3. `unusual_mappings`: new transactions coded to an account/tax pair the contact (or item) has never used and
   the organisation rarely uses, compounding: a handful is information, a cluster on one pair is damage.
4. `bursts`: edits, voids and deletions, new contacts and new payments far above the organisation's own
   recent baseline (the counts of its previous steps).

Each finding carries its rule, severity (`info` < `warning` < `critical`), evidence (record ids, counts,
sums) and the suspected start (earliest change time among the evidence). Which point was the last clean one
is the runner's decision (it knows the earlier findings). Thresholds live in `DetectConfig`.

PURE: plain data in, findings out. No database, no restic, no clock.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["info", "warning", "critical"]
SEVERITY_ORDER: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}
APPROVED = frozenset({"AUTHORISED", "PAID", "POSTED"})
RECODE_STATUSES = APPROVED | {"DRAFT", "SUBMITTED"}
"""Re-coding counts on drafts and submitted documents too: a re-mapping integration rewrites every document
it may edit, and those are the ones that will post wrongly when approved."""
DUPLICATE_ENDPOINTS = ("Invoices", "CreditNotes", "BankTransactions", "Payments", "ManualJournals")
LINE_ENDPOINTS = ("Invoices", "CreditNotes", "BankTransactions", "ManualJournals")


@dataclass(frozen=True)
class DetectConfig:
    """Thresholds of the damage rules (defaults tuned on the sandbox's normal daily churn)."""

    duplicate_min: int = 3
    """Near-duplicate new documents in one step before a finding (fewer: a person double-keying once)."""
    duplicate_critical: int = 10
    recode_min_lines: int = 2
    """Re-coded lines of approved transactions before a finding is a warning (one alone is information)."""
    recode_critical: int = 10
    unusual_min_history: int = 3
    """Lines a contact or item needs in history before its coding counts as a habit."""
    unusual_rare_share: float = 0.02
    """An account/tax pair used by under this share of the organisation's lines is rare."""
    unusual_report_min: int = 2
    """Unusual new lines on one pair before anything is reported (one odd line a day is ordinary)."""
    unusual_warning: int = 5
    """Unusual new lines on one account/tax pair before a warning (compounding)."""
    unusual_critical: int = 20
    burst_factor: float = 4.0
    """A count this many times the baseline median (and at least `burst_min`) is a burst."""
    burst_min: int = 25
    burst_critical_factor: float = 10.0
    baseline_min_steps: int = 3
    """Previous steps needed for a baseline; with fewer, only `burst_without_baseline` counts."""
    burst_without_baseline: int = 500
    evidence_limit: int = 1000
    """Record ids kept per finding (counts and sums always cover everything)."""


@dataclass(frozen=True)
class Doc:
    """What the rules need of one document."""

    endpoint: str
    record_id: str
    status: str | None = None
    contact_id: str | None = None
    day: str | None = None
    total: float | None = None
    reference: str | None = None
    number: str | None = None
    updated: str | None = None
    """ISO instant of the document's UpdatedDateUTC (the suspected start of a change)."""


@dataclass(frozen=True)
class Line:
    """One line item: its document, account code, tax type, and item code."""

    endpoint: str
    record_id: str
    line_id: str | None
    account: str | None
    tax_type: str | None
    item: str | None = None
    amount: float = 0.0


@dataclass
class Step:
    """What changed from one point to the next, as the runner read it from the two indexes."""

    added: list[Doc] = field(default_factory=list)
    """New documents of DUPLICATE_ENDPOINTS (and Contacts, for bursts)."""
    existing_keys: Mapping[tuple[str, str | None, str | None, float | None, str | None], Sequence[str]] = field(
        default_factory=dict
    )
    """(endpoint, contact, day, total, reference) -> ids of documents already in the previous point."""
    recoded: list[tuple[Doc, Line, Line]] = field(default_factory=list)
    """(document, line before, line after) for lines whose LineItemID exists in both points."""
    new_lines: list[tuple[Doc, Line]] = field(default_factory=list)
    """Lines of added documents."""
    contact_history: Mapping[str, Counter[tuple[str | None, str | None]]] = field(default_factory=dict)
    item_history: Mapping[str, Counter[tuple[str | None, str | None]]] = field(default_factory=dict)
    pair_history: Counter[tuple[str | None, str | None]] = field(default_factory=Counter)
    counts: dict[str, int] = field(default_factory=dict)
    """Activity of this step: `changed`, `voided`, `deleted`, `archived`, `new_contacts`, `new_payments`,
    `added` (see `ACTIVITY`)."""
    evidence_ids: dict[str, list[str]] = field(default_factory=dict)
    """Activity name -> the record ids counted in it."""


ACTIVITY = ("added", "changed", "voided", "deleted", "archived", "new_contacts", "new_payments")


@dataclass
class Finding:
    rule: str
    severity: Severity
    summary: str
    evidence: dict[str, Any]
    suspected_start: str | None = None
    fingerprint: str = ""
    """Distinguishes findings of one rule in one step (a cluster key)."""


def _start(docs: Sequence[Doc]) -> str | None:
    times = [d.updated for d in docs if d.updated]
    return min(times) if times else None


def _cents(value: float | None) -> int:
    return round((value or 0.0) * 100)


def _sum(docs: Sequence[Doc]) -> str:
    return f"{sum(_cents(d.total) for d in docs) / 100:.2f}"


# -- 1. near-duplicates --------------------------------------------------------------------------------------
def duplicate_key(doc: Doc) -> tuple[str, str | None, str | None, float | None, str | None]:
    return (doc.endpoint, doc.contact_id, doc.day, round(doc.total or 0.0, 2), (doc.reference or "").strip().lower())


def near_duplicates(step: Step, config: DetectConfig) -> list[Finding]:
    """New documents whose (type, contact, date, total, reference) matches an existing or another new one."""
    groups: dict[tuple[Any, ...], list[Doc]] = defaultdict(list)
    for doc in step.added:
        if doc.endpoint in DUPLICATE_ENDPOINTS and doc.status not in ("DELETED", "VOIDED") and doc.total:
            groups[duplicate_key(doc)].append(doc)
    duplicates: list[Doc] = []
    originals: set[str] = set()
    for key, docs in groups.items():
        earlier = list(step.existing_keys.get(key, ()))
        # Every new copy is a duplicate; among new documents alone, the first is taken as the original.
        copies = docs if earlier else docs[1:]
        duplicates.extend(copies)
        originals.update(earlier or [docs[0].record_id])
    if len(duplicates) < config.duplicate_min:
        return []
    severity: Severity = "critical" if len(duplicates) >= config.duplicate_critical else "warning"
    by_endpoint = Counter(d.endpoint for d in duplicates)
    return [
        Finding(
            rule="near_duplicates",
            severity=severity,
            summary=f"{len(duplicates)} new documents duplicate existing ones (same contact, date, total, reference)",
            evidence={
                "record_ids": [d.record_id for d in duplicates][: config.evidence_limit],
                "originals": sorted(originals)[: config.evidence_limit],
                "count": len(duplicates),
                "by_type": dict(by_endpoint),
                "sum": _sum(duplicates),
            },
            suspected_start=_start(duplicates),
        )
    ]


# -- 2. re-coded lines ---------------------------------------------------------------------------------------
def recoded_lines(step: Step, config: DetectConfig) -> list[Finding]:
    """Lines of approved transactions that now post to another account or tax type than before."""
    hits = [
        (doc, before, after)
        for doc, before, after in step.recoded
        if doc.status in RECODE_STATUSES and (before.account != after.account or before.tax_type != after.tax_type)
    ]
    if not hits:
        return []
    documents = {doc.record_id: doc for doc, _, _ in hits}
    if len(hits) >= config.recode_critical:
        severity: Severity = "critical"
    elif len(hits) >= config.recode_min_lines:
        severity = "warning"
    else:
        severity = "info"
    moves = Counter(f"{b.account}/{b.tax_type} -> {a.account}/{a.tax_type}" for _, b, a in hits)
    return [
        Finding(
            rule="recoded_lines",
            severity=severity,
            summary=f"{len(hits)} line(s) of {len(documents)} approved transaction(s) moved to another account or tax",
            evidence={
                "record_ids": sorted(documents)[: config.evidence_limit],
                "line_ids": [a.line_id for _, _, a in hits][: config.evidence_limit],
                "count": len(hits),
                "documents": len(documents),
                "moves": dict(moves.most_common(20)),
                "sum": f"{sum(_cents(a.amount) for _, _, a in hits) / 100:.2f}",
            },
            suspected_start=_start(list(documents.values())),
        )
    ]


# -- 3. unusual mappings -------------------------------------------------------------------------------------
def unusual_mappings(step: Step, config: DetectConfig) -> list[Finding]:
    """New lines on an account/tax pair their contact (or item) never used and the organisation rarely uses,
    grouped by pair; the severity grows with the size of a group."""
    total_history = sum(step.pair_history.values())
    groups: dict[tuple[str | None, str | None], list[tuple[Doc, Line]]] = defaultdict(list)
    for doc, line in step.new_lines:
        pair = (line.account, line.tax_type)
        habits = []
        if (
            doc.contact_id
            and sum(step.contact_history.get(doc.contact_id, Counter()).values()) >= config.unusual_min_history
        ):
            habits.append(step.contact_history[doc.contact_id])
        if line.item and sum(step.item_history.get(line.item, Counter()).values()) >= config.unusual_min_history:
            habits.append(step.item_history[line.item])
        if not habits or any(habit.get(pair) for habit in habits):
            continue
        share = step.pair_history.get(pair, 0) / total_history if total_history else 0.0
        if share < config.unusual_rare_share:
            groups[pair].append((doc, line))
    findings = []
    for pair, hits in sorted(groups.items(), key=lambda item: -len(item[1])):
        if len(hits) < config.unusual_report_min:
            continue
        if len(hits) >= config.unusual_critical:
            severity: Severity = "critical"
        elif len(hits) >= config.unusual_warning:
            severity = "warning"
        else:
            severity = "info"
        documents = {doc.record_id: doc for doc, _ in hits}
        findings.append(
            Finding(
                rule="unusual_mappings",
                severity=severity,
                summary=f"{len(hits)} new line(s) coded to {pair[0]}/{pair[1]}, unusual for their contact or item",
                evidence={
                    "record_ids": sorted(documents)[: config.evidence_limit],
                    "count": len(hits),
                    "account": pair[0],
                    "tax_type": pair[1],
                    "contacts": len({doc.contact_id for doc, _ in hits}),
                    "sum": f"{sum(_cents(line.amount) for _, line in hits) / 100:.2f}",
                },
                suspected_start=_start(list(documents.values())),
                fingerprint=f"{pair[0]}/{pair[1]}",
            )
        )
    return findings


# -- 4. bursts -----------------------------------------------------------------------------------------------
def bursts(step: Step, baseline: Sequence[Mapping[str, int]], config: DetectConfig) -> list[Finding]:
    """Activity counts far above the organisation's own previous steps."""
    findings = []
    for name in ACTIVITY:
        count = step.counts.get(name, 0)
        history = [int(b.get(name, 0)) for b in baseline]
        if len(history) >= config.baseline_min_steps:
            median = statistics.median(history)
            limit = max(config.burst_min, config.burst_factor * median)
            critical = max(config.burst_min * 2, config.burst_critical_factor * median)
        else:
            median = None
            limit = critical = config.burst_without_baseline
        if count <= limit:
            continue
        severity: Severity = "critical" if count > critical else "warning"
        ids = step.evidence_ids.get(name, [])
        findings.append(
            Finding(
                rule="burst",
                severity=severity,
                summary=f"{count} {name.replace('_', ' ')} since the previous point"
                + (f" (usually {median:g})" if median is not None else " (no baseline yet)"),
                evidence={
                    "activity": name,
                    "count": count,
                    "baseline_median": median,
                    "baseline_steps": len(history),
                    "record_ids": ids[: config.evidence_limit],
                },
                fingerprint=name,
            )
        )
    return findings


def evaluate(step: Step, baseline: Sequence[Mapping[str, int]], config: DetectConfig | None = None) -> list[Finding]:
    """Every rule over one step, most severe first."""
    config = config or DetectConfig()
    findings = [
        *near_duplicates(step, config),
        *recoded_lines(step, config),
        *unusual_mappings(step, config),
        *bursts(step, baseline, config),
    ]
    return sorted(findings, key=lambda f: (-SEVERITY_ORDER[f.severity], f.rule, f.fingerprint))
