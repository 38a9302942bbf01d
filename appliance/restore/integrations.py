"""Pre-filling the integrations register from what a backup point reveals (pure).

Xero's API does not list the apps connected to an organisation (connections are visible only to the app that
holds them: `GET /connections`, OAUTH2 docs), so the register is a person's knowledge first. A backup still
leaves traces of the apps a firm uses: clearing and payout accounts named after them ("Stripe GBP", "PayPal"),
bills from their vendors (a subscription to Dext, Gusto, Deputy), payouts and fees in bank transactions, and
payroll journals. This module turns such text into suggestions with their evidence; a person confirms them.

It must not do I/O: callers hand in (source, text, record id) triples read from a point.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Apps that commonly connect to Xero (Xero App Store categories: payments, commerce, payroll, documents,
# inventory, practice). The pattern matches the name as it appears in account, contact and reference text.
KNOWN_APPS: tuple[tuple[str, str, str], ...] = (
    ("Stripe", "payments", r"\bstripe\b"),
    ("PayPal", "payments", r"\bpay\s?pal\b"),
    ("Square", "payments", r"\bsquare(up)?\b"),
    ("GoCardless", "payments", r"\bgo\s?cardless\b"),
    ("Afterpay", "payments", r"\bafter\s?pay\b"),
    ("Shopify", "commerce", r"\bshopify\b"),
    ("Amazon Seller", "commerce", r"\bamazon\s+(seller|marketplace|payments)\b"),
    ("eBay", "commerce", r"\bebay\b"),
    ("A2X", "commerce", r"\ba2x\b"),
    ("WooCommerce", "commerce", r"\bwoo\s?commerce\b"),
    ("Lightspeed", "point of sale", r"\b(lightspeed|vend)\b"),
    ("Dext", "documents", r"\b(dext|receipt\s?bank)\b"),
    ("Hubdoc", "documents", r"\bhubdoc\b"),
    ("ApprovalMax", "approvals", r"\bapproval\s?max\b"),
    ("Gusto", "payroll", r"\bgusto\b"),
    ("Employment Hero", "payroll", r"\b(employment\s+hero|keypay)\b"),
    ("Deputy", "rostering", r"\bdeputy\b"),
    ("QuickBooks Time", "timesheets", r"\b(tsheets|quickbooks\s+time)\b"),
    ("Unleashed", "inventory", r"\bunleashed\b"),
    ("Cin7", "inventory", r"\bcin7\b"),
    ("Xero Practice Manager", "practice", r"\b(xpm|workflowmax|practice\s+manager)\b"),
    ("Float", "forecasting", r"\bfloat(app)?\b\s+(subscription|cash)"),
    ("Fathom", "reporting", r"\bfathom\b"),
    ("Spotlight Reporting", "reporting", r"\bspotlight\s+reporting\b"),
    ("ServiceM8", "job management", r"\bservice\s?m8\b"),
    ("Tradify", "job management", r"\btradify\b"),
    ("simPRO", "job management", r"\bsimpro\b"),
)
_COMPILED = tuple((name, kind, re.compile(pattern, re.IGNORECASE)) for name, kind, pattern in KNOWN_APPS)

# A payroll journal is how a payroll app (or Xero Payroll) posts wages when it is not connected as a document
# writer; its narration gives it away.
_PAYROLL = re.compile(r"\b(pay\s?run|payroll|wages\s+journal)\b", re.IGNORECASE)

SOURCE_WEIGHT = {"account": 3, "bank-transaction": 2, "contact": 1, "journal": 2}
"""How telling a trace is: an account named after an app is almost always its clearing account."""


@dataclass(frozen=True)
class Trace:
    source: str
    """account | contact | bank-transaction | journal"""
    text: str
    record_id: str


@dataclass
class Suggestion:
    name: str
    kind: str
    score: int
    evidence: list[dict[str, str]] = field(default_factory=list)

    def as_entry(self) -> dict[str, Any]:
        """The register entry a person would confirm (`notes` says where it came from)."""
        sources = sorted({item["source"] for item in self.evidence})
        return {
            "name": self.name,
            "kind": self.kind,
            "notes": f"suggested from the backup: {', '.join(sources)} ({len(self.evidence)} trace(s))",
            "suggested": True,
        }


def suggest(
    traces: Iterable[Trace], *, known: Sequence[Mapping[str, Any]] = (), evidence_cap: int = 5
) -> list[Suggestion]:
    """Apps the traces point to, strongest first, leaving out those already in the register (`known`)."""
    registered = {str(entry.get("name", "")).strip().lower() for entry in known}
    found: dict[str, Suggestion] = {}
    for trace in traces:
        matches = [(name, kind) for name, kind, pattern in _COMPILED if pattern.search(trace.text)]
        if trace.source == "journal" and _PAYROLL.search(trace.text):
            matches.append(("Payroll", "payroll"))
        for name, kind in matches:
            suggestion = found.setdefault(name, Suggestion(name, kind, 0))
            suggestion.score += SOURCE_WEIGHT.get(trace.source, 1)
            if len(suggestion.evidence) < evidence_cap:
                suggestion.evidence.append(
                    {"source": trace.source, "text": trace.text[:120], "record_id": trace.record_id}
                )
    return sorted(
        (s for s in found.values() if s.name.lower() not in registered),
        key=lambda s: (-s.score, s.name),
    )


def traces_from_records(endpoint: str, records: Iterable[Mapping[str, Any]]) -> Iterable[Trace]:
    """The text of a point's records that can name an app."""
    for record in records:
        if endpoint == "Accounts":
            yield Trace(
                "account", f"{record.get('Name', '')} {record.get('Description', '')}", str(record.get("AccountID"))
            )
        elif endpoint == "Contacts":
            if record.get("ContactStatus") == "ARCHIVED":
                continue
            yield Trace("contact", str(record.get("Name", "")), str(record.get("ContactID")))
        elif endpoint == "BankTransactions":
            contact = (record.get("Contact") or {}).get("Name", "")
            yield Trace(
                "bank-transaction",
                f"{contact} {record.get('Reference', '')}".strip(),
                str(record.get("BankTransactionID")),
            )
        elif endpoint == "ManualJournals":
            yield Trace("journal", str(record.get("Narration", "")), str(record.get("ManualJournalID")))


TRACE_ENDPOINTS = ("Accounts", "Contacts", "BankTransactions", "ManualJournals")
