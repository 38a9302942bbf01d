"""Damage rules: what changed between the previous backup point and the new one that a person must look at.

Six rules, each a pure function of a `Step` (what the runner read from the two points) and a `DetectConfig`:

1. `near_duplicates`: new documents (new ids) that repeat an existing or another new document's contact,
   date, total and reference, in bulk: a re-run import or a sync loop.
2. `recoded_lines`: existing approved transactions whose line items (matched by LineItemID) now post to
   another account code or tax type: a retroactive rewrite of the books.
3. `unusual_mappings`: new transactions coded to an account/tax pair the contact (or item) has never used and
   the organisation rarely uses, compounding: a handful is information, a cluster on one pair is damage.
4. `bursts`: edits, voids and deletions, new contacts and new payments far above the organisation's own
   recent baseline (the counts of its previous steps).
5. `mapping_shifts`: new documents of several contacts coded to one account/tax pair that is not their habit,
   far more of them than the pair's share of the organisation's lines predicts: an integration that started
   mapping to the wrong account or tax type, caught on its first day.
6. `payee_changes`: existing contacts' bank or batch-payment details replaced, together with money moving
   (a payment to such a contact, a contact created and paid within the step) or approved documents voided:
   the pattern of a compromised connection redirecting payments.

Each finding carries its rule, severity (`info` < `warning` < `critical`), evidence (record ids, counts,
sums) and the suspected start (earliest change time among the evidence). Which point was the last clean one
is the runner's decision (it knows the earlier findings). Thresholds live in `DetectConfig`.

PURE: plain data in, findings out. No database, no restic, no clock.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
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
    burst_without_baseline_share: float = 0.02
    """Without a baseline, a burst is also over this share of the records the previous point held."""
    shift_min_documents: int = 3
    """New documents on one account/tax pair, off their contacts' habits, before `mapping_shifts` looks at it."""
    shift_min_contacts: int = 2
    """Distinct contacts among those documents (one contact re-coded is a person's choice, not an integration)."""
    shift_min_history: int = 5
    """Lines a contact (or item) needs in history before a pair it uses is taken as its habit."""
    shift_habit_share: float = 0.25
    """A pair holding this share of a contact's (or item's) lines is its habit: its new lines there are normal."""
    shift_surprise: float = 1e-4
    """Chance, under the pair's share of the organisation's lines (Poisson), of that many documents on it among
    the step's new lines, below which the cluster is a warning."""
    shift_critical: int = 20
    payee_details_warning: int = 2
    """Existing contacts whose payment details were replaced in one step before a warning on that alone (one
    is information unless money moves or approved documents are voided in the same step)."""
    payee_details_critical: int = 5
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


@dataclass(frozen=True)
class DetailChange:
    """One payment detail of an existing contact replaced between the two points (values as Xero holds them;
    findings keep only their last characters)."""

    contact_id: str
    field: str
    """`BankAccountDetails` or `BatchPayments.<Field>`."""
    before: str
    after: str
    name: str | None = None
    updated: str | None = None


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
    detail_changes: list[DetailChange] = field(default_factory=list)
    """Payment details (bank account, batch-payment details) of contacts present in both points that changed."""
    records: int = 0
    """Records the previous point held (all endpoints): the organisation's size."""


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
        # Counts alone grow with an organisation's volume: a large one writes thousands of lines a day, and a
        # pair used by 1 % of them gets dozens. Above information only when that many is a surprise for the
        # pair's share of this step's new lines (the same Poisson test as `mapping_shifts`).
        share = step.pair_history.get(pair, 0) / total_history if total_history else 0.0
        surprising = poisson_tail(len(hits), share * len(step.new_lines)) <= config.shift_surprise
        if len(hits) >= config.unusual_critical and surprising:
            severity: Severity = "critical"
        elif len(hits) >= config.unusual_warning and surprising:
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
            # No steps to compare with yet: a fixed count, or a share of what the organisation holds (a large
            # organisation adds thousands of records on an ordinary day).
            limit = critical = max(config.burst_without_baseline, config.burst_without_baseline_share * step.records)
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


# -- 5. mapping shifts ---------------------------------------------------------------------------------------
def _habitual(
    history: Mapping[tuple[str | None, str | None], int] | None,
    pair: tuple[str | None, str | None],
    config: DetectConfig,
) -> bool:
    """Whether `pair` is a habit of a contact or item with this coding history."""
    if not history:
        return False
    total = sum(history.values())
    return total >= config.shift_min_history and history.get(pair, 0) >= config.shift_habit_share * total


def poisson_tail(count: int, expected: float) -> float:
    """P(X >= count) for X ~ Poisson(expected), summed upwards (exact for the tiny tails that matter here).

    At or below the mean it is one minus the head, each term in log space: summing upwards from `count` there
    underflowed for a large organisation's volumes (83 lines against 1,117 expected came out 0, "surprising")."""
    if count <= 0:
        return 1.0
    if expected <= 0:
        return 0.0
    if count <= expected:
        head = sum(math.exp(k * math.log(expected) - expected - math.lgamma(k + 1)) for k in range(count))
        return max(0.0, 1.0 - head)
    term = math.exp(count * math.log(expected) - expected - math.lgamma(count + 1))
    total, k = 0.0, count
    while term > total * 1e-12 and k < count + 1000:
        total += term
        k += 1
        term *= expected / k
    return min(1.0, total)


Pair = tuple[str | None, str | None]
"""(account code, tax type) of a line."""
ANY_ACCOUNT = "*"
"""The account of a tax-only grouping (`mapping_shifts`): lines on one tax type, whatever their account."""


def mapping_shifts(step: Step, config: DetectConfig) -> list[Finding]:
    """Several contacts' new documents on one account/tax pair that is none of their habits, far above what
    the pair's share of the organisation's lines predicts for this many new lines.

    A broken integration maps everything it writes to one wrong pair from its first day; contacts whose
    coding is a habit (`shift_habit_share` of their lines on one pair) keep it, so their new lines on their
    usual pairs are left out, and contacts without a habit (new ones, or ones coded every which way) count.
    The surprise is a Poisson tail over documents: `shift_surprise` keeps a few lines of a busy day on a
    common pair quiet and lets four bills of a quiet step on a pair used by 2 % of lines through.

    The same test runs on tax types alone (account `*`): an integration that keeps each supplier's account
    but maps the tax to a wrong type spreads its lines over many pairs, none of them surprising on its own;
    on the tax type they gather. A tax-type cluster whose documents a pair cluster already names is left out."""
    lines = [(doc, line) for doc, line in step.new_lines if doc.contact_id and doc.status not in ("DELETED", "VOIDED")]
    if not lines:
        return []
    findings = _shifts(step, config, lines, _same_pair)
    named = {record_id for finding in findings for record_id in finding.evidence["record_ids"]}
    for finding in _shifts(step, config, lines, _same_tax):
        if not set(finding.evidence["record_ids"]) <= named:
            findings.append(finding)
    return findings


def _same_pair(pair: Pair) -> Pair:
    return pair


def _same_tax(pair: Pair) -> Pair:
    return (ANY_ACCOUNT, pair[1])


def _projected(history: Mapping[Pair, int] | None, key: Callable[[Pair], Pair]) -> Counter[Pair]:
    projected: Counter[Pair] = Counter()
    for pair, count in (history or {}).items():
        projected[key(pair)] += count
    return projected


def _shifts(
    step: Step, config: DetectConfig, lines: list[tuple[Doc, Line]], key: Callable[[Pair], Pair]
) -> list[Finding]:
    """`mapping_shifts` with lines grouped by `key` of their (account, tax) pair."""
    histories: dict[tuple[str, str], Counter[Pair]] = {}

    def history(kind: str, name: str, source: Mapping[str, Counter[Pair]]) -> Counter[Pair]:
        found = histories.get((kind, name))
        if found is None:
            found = histories[(kind, name)] = _projected(source.get(name), key)
        return found

    pair_history = _projected(step.pair_history, key)
    total_history = sum(pair_history.values())
    groups: dict[Pair, list[tuple[Doc, Line]]] = defaultdict(list)
    for doc, line in lines:
        pair = key((line.account, line.tax_type))
        if _habitual(history("contact", doc.contact_id or "", step.contact_history), pair, config):
            continue
        if line.item and _habitual(history("item", line.item, step.item_history), pair, config):
            continue
        groups[pair].append((doc, line))
    findings = []
    for pair, hits in sorted(groups.items(), key=lambda item: (-len(item[1]), str(item[0]))):
        documents = {doc.record_id: doc for doc, _ in hits}
        contacts = {doc.contact_id for doc, _ in hits}
        if len(documents) < config.shift_min_documents or len(contacts) < config.shift_min_contacts:
            continue
        share = pair_history.get(pair, 0) / total_history if total_history else 0.0
        expected = share * len(lines)
        chance = poisson_tail(len(documents), expected)
        if chance > config.shift_surprise:
            continue
        severity: Severity = "critical" if len(documents) >= config.shift_critical else "warning"
        coded = f"tax type {pair[1]} (any account)" if pair[0] == ANY_ACCOUNT else f"{pair[0]}/{pair[1]}"
        findings.append(
            Finding(
                rule="mapping_shifts",
                severity=severity,
                summary=f"{len(documents)} new document(s) of {len(contacts)} contacts coded to {coded},"
                f" none of their habits (about {expected:.1f} expected)",
                evidence={
                    "record_ids": sorted(documents)[: config.evidence_limit],
                    "count": len(documents),
                    "lines": len(hits),
                    "account": None if pair[0] == ANY_ACCOUNT else pair[0],
                    "tax_type": pair[1],
                    "contacts": len(contacts),
                    "expected": round(expected, 3),
                    "chance": float(f"{chance:.3g}"),
                    "pair_share": round(share, 4),
                    "sum": f"{sum(_cents(line.amount) for _, line in hits) / 100:.2f}",
                },
                suspected_start=_start(list(documents.values())),
                fingerprint=f"{pair[0]}/{pair[1]}",
            )
        )
    return findings


# -- 6. payee changes ----------------------------------------------------------------------------------------
def mask(value: str) -> str:
    """Bank details in findings: the last four characters only."""
    return f"…{value[-4:]}" if len(value) > 4 else "…" if value else ""


def payee_changes(step: Step, config: DetectConfig) -> list[Finding]:
    """Contacts' payment details replaced, weighed with what else moved money in the same step.

    One replaced bank account is information (suppliers do change banks); it is a warning with a second one,
    with a contact created and paid within the step, or with approved documents voided; a payment to a
    contact whose details just changed, or all three together, is critical. The evidence is every record of
    the pattern: the changed contacts, the new payees with their documents and payments, the voided documents."""
    changed = {change.contact_id: change for change in step.detail_changes}
    added_contacts = {doc.record_id: doc for doc in step.added if doc.endpoint == "Contacts"}
    payments = [doc for doc in step.added if doc.endpoint == "Payments" and doc.status not in ("DELETED", "VOIDED")]
    to_changed = [p for p in payments if p.contact_id in changed]
    to_new = [p for p in payments if p.contact_id in added_contacts]
    new_payees = {p.contact_id for p in to_new if p.contact_id}
    if not changed and not new_payees:
        return []
    payee_documents = [
        doc for doc in step.added if doc.contact_id in new_payees and doc.endpoint not in ("Contacts", "Payments")
    ]
    voided = list(step.evidence_ids.get("voided", [])) if changed else []
    if to_changed or len(changed) >= config.payee_details_critical or (changed and new_payees and voided):
        severity: Severity = "critical"
    elif len(changed) >= config.payee_details_warning or (changed and (new_payees or voided)):
        severity = "warning"
    else:
        severity = "info"
    parts = []
    if changed:
        parts.append(f"payment details of {len(changed)} contact(s) replaced")
    if to_changed:
        parts.append(f"{len(to_changed)} payment(s) to them")
    if new_payees:
        parts.append(f"{len(new_payees)} new contact(s) paid {len(to_new)} time(s)")
    if voided:
        parts.append(f"{len(voided)} approved document(s) voided")
    record_ids = list(
        dict.fromkeys(
            [
                *changed,
                *(p.record_id for p in to_changed),
                *sorted(new_payees),
                *(d.record_id for d in payee_documents),
                *(p.record_id for p in to_new),
                *voided,
            ]
        )
    )
    return [
        Finding(
            rule="payee_changes",
            severity=severity,
            summary="; ".join(parts),
            evidence={
                "record_ids": record_ids[: config.evidence_limit],
                "details_changed": [
                    {
                        "contact_id": c.contact_id,
                        "name": c.name,
                        "field": c.field,
                        "before": mask(c.before),
                        "after": mask(c.after),
                    }
                    for c in step.detail_changes
                ][: config.evidence_limit],
                "payments_to_changed": len(to_changed),
                "new_payees": sorted(new_payees),
                "payments_to_new": len(to_new),
                "voided": len(voided),
                "paid_sum": _sum([*to_changed, *to_new]),
            },
            suspected_start=min(
                [c.updated for c in step.detail_changes if c.updated]
                + [t for t in [_start([*to_changed, *to_new, *(added_contacts[c] for c in new_payees)])] if t],
                default=None,
            ),
        )
    ]


def evaluate(step: Step, baseline: Sequence[Mapping[str, int]], config: DetectConfig | None = None) -> list[Finding]:
    """Every rule over one step, most severe first."""
    config = config or DetectConfig()
    findings = [
        *near_duplicates(step, config),
        *recoded_lines(step, config),
        *unusual_mappings(step, config),
        *bursts(step, baseline, config),
        *mapping_shifts(step, config),
        *payee_changes(step, config),
    ]
    return sorted(findings, key=lambda f: (-SEVERITY_ORDER[f.severity], f.rule, f.fingerprint))
