"""Integration failures on demand: the damage scenarios a backup appliance exists to recover from.

This module owns the four scenarios of issue 4 and their ground truth:
1. `onboarding`: an app imports N months of historical bills or invoices that already exist (near-duplicates
   with new IDs, same contact, date, amounts and reference);
2. `remap`: a mapping rule changes and existing transactions' line items are rewritten to another account;
3. `api_update`: from day D onwards new transactions arrive with a wrong account or tax mapping, a few a day,
   more each week, until stopped; it is a standing rule that `churn.advance` plays after each business day;
4. `compromise`: a burst of edits, voids, new contacts and payments through one connection.

Every change goes through `sandbox.writes.apply`, the same validation and ledger path as an API client's
write, so damage is exactly what a real integration could do. Ground truth (which records were created,
changed or voided, and when) is recorded in the store's `events` table as `damage.<kind>` and returned.

It must not write records or journals itself, choose HTTP behaviour, or play normal business days (`churn`).
"""

from __future__ import annotations

import inspect
import json
import random
from collections.abc import Callable, Mapping
from typing import Any

from sandbox import countries
from sandbox.generate import day_start
from sandbox.ledger import DAY_MS
from sandbox.store import SandboxStore, ms_date

KINDS = ("onboarding", "remap", "api_update", "compromise")
HOUR_MS = 3_600_000
RULES_KEY = "damage_rules"


class DamageError(ValueError):
    """A scenario that cannot be played on this organisation (unknown tenant, nothing to damage)."""


class _Truth:
    """What one scenario did: records created, changed and voided (endpoint, id, at_ms), plus details."""

    def __init__(self, kind: str, tenant_id: str, options: Mapping[str, Any]) -> None:
        self.doc: dict[str, Any] = {
            "kind": kind,
            "tenant_id": tenant_id,
            "options": dict(options),
            "created": [],
            "changed": [],
            "voided": [],
        }

    def add(self, bucket: str, endpoint: str, record_id: str, at_ms: int, **detail: Any) -> None:
        self.doc[bucket].append({"endpoint": endpoint, "id": record_id, "at_ms": at_ms, **detail})


def _write(store: SandboxStore, tenant_id: str, method: str, path: str, payload: Any, at_ms: int) -> dict[str, Any]:
    from sandbox import writes  # the write side imports the generator; load it only when damage is played

    status, body = writes.apply(store, tenant_id, method, path, payload, now_ms=at_ms, client_id="damage-app")
    if status != 200:
        raise DamageError(f"{method} {path} was refused: {json.dumps(body)[:400]}")
    return body


def _docs(
    store: SandboxStore, tenant_id: str, endpoint: str, where: str = "1=1", params: tuple[Any, ...] = ()
) -> list[dict[str, Any]]:
    return [
        json.loads(doc)
        for (doc,) in store.query(
            f"SELECT doc FROM records WHERE tenant_id=? AND endpoint=? AND {where} ORDER BY date_ms, record_id",
            (tenant_id, endpoint, *params),
        )
    ]


def _line_copy(line: Mapping[str, Any], **override: Any) -> dict[str, Any]:
    keep = (
        "Description",
        "Quantity",
        "UnitAmount",
        "AccountCode",
        "TaxType",
        "TaxAmount",
        "LineAmount",
        "DiscountRate",
    )
    copy = {k: line[k] for k in keep if k in line}
    copy["Tracking"] = [
        {"TrackingCategoryID": t["TrackingCategoryID"], "TrackingOptionID": t["TrackingOptionID"]}
        for t in line.get("Tracking", [])
    ]
    copy.update(override)
    return copy


def _active_contact(store: SandboxStore, tenant_id: str, contact_id: str) -> bool:
    doc = store.get_record(tenant_id, "Contacts", contact_id)
    return bool(doc and doc.get("ContactStatus") == "ACTIVE")


# ---------------------------------------------------------------------------------------------
# 1. App onboarding gone wrong


def onboarding(
    store: SandboxStore,
    tenant_id: str,
    *,
    months: int = 3,
    documents: str = "bills",
    limit: int = 50,
    at_ms: int | None = None,
) -> dict[str, Any]:
    """Re-import the last `months` of approved bills (or invoices) as new documents: new IDs, same contact,
    date, due date, reference, lines and amounts. Sales invoices get new numbers (Xero refuses a repeated
    invoice number); bills keep theirs (Xero allows repeated bill numbers)."""
    kind = {"bills": "ACCPAY", "invoices": "ACCREC"}.get(documents)
    if kind is None:
        raise DamageError("documents must be 'bills' or 'invoices'")
    now = store.now_ms() if at_ms is None else at_ms
    since = day_start(now) - months * 30 * DAY_MS
    truth = _Truth("onboarding", tenant_id, {"months": months, "documents": documents, "limit": limit})
    originals = _docs(
        store, tenant_id, "Invoices", "type=? AND status IN ('AUTHORISED','PAID') AND date_ms>=?", (kind, since)
    )
    originals = [o for o in originals if _active_contact(store, tenant_id, o["Contact"]["ContactID"])][:limit]
    if not originals:
        raise DamageError(f"no approved {documents} in the last {months} months to duplicate")
    for n, original in enumerate(originals):
        at = now + n * 1000  # one import job, a second per document
        element: dict[str, Any] = {
            "Type": kind,
            "Contact": {"ContactID": original["Contact"]["ContactID"]},
            "Date": original["DateString"][:10],
            "DueDate": (original.get("DueDateString") or original["DateString"])[:10],
            "Reference": original.get("Reference", ""),
            "Status": "AUTHORISED",
            "LineAmountTypes": original["LineAmountTypes"],
            "CurrencyCode": original["CurrencyCode"],
            "CurrencyRate": original.get("CurrencyRate", 1.0),
            "LineItems": [_line_copy(line) for line in original["LineItems"]],
        }
        if kind == "ACCPAY":
            element["InvoiceNumber"] = original.get("InvoiceNumber", "")
        created = _write(store, tenant_id, "PUT", "/Invoices", {"Invoices": [element]}, at)["Invoices"][0]
        truth.add(
            "created", "Invoices", created["InvoiceID"], at, duplicates=original["InvoiceID"], total=created["Total"]
        )
    return _record(store, truth, now)


# ---------------------------------------------------------------------------------------------
# 2. Configuration change after the fact


def remap(
    store: SandboxStore,
    tenant_id: str,
    *,
    from_code: str | None = None,
    to_code: str | None = None,
    months: int = 6,
    limit: int = 100,
    at_ms: int | None = None,
) -> dict[str, Any]:
    """Rewrite the line items coded to `from_code` onto `to_code` on every bill or invoice the API lets an app
    edit (approved with nothing paid, or draft) dated in the last `months`. Defaults: the expense account used
    most on such documents, moved to the next expense account in the chart."""
    now = store.now_ms() if at_ms is None else at_ms
    since = day_start(now) - months * 30 * DAY_MS
    candidates = [
        doc
        for doc in _docs(
            store, tenant_id, "Invoices", "status IN ('AUTHORISED','DRAFT','SUBMITTED') AND date_ms>=?", (since,)
        )
        if not doc.get("Payments")
        and not doc.get("AmountCredited")
        and _active_contact(store, tenant_id, doc["Contact"]["ContactID"])
    ]
    if from_code is None:
        usage: dict[str, int] = {}
        for doc in candidates:
            for line in doc["LineItems"]:
                if line.get("AccountCode") in countries.EXPENSE_CODES:
                    usage[line["AccountCode"]] = usage.get(line["AccountCode"], 0) + 1
        if not usage:
            raise DamageError("no editable documents with expense lines to remap")
        from_code = max(sorted(usage), key=lambda code: usage[code])
    if to_code is None:
        others = [c for c in countries.EXPENSE_CODES if c != from_code]
        to_code = others[0]
    truth = _Truth("remap", tenant_id, {"from_code": from_code, "to_code": to_code, "months": months})
    touched = [doc for doc in candidates if any(li.get("AccountCode") == from_code for li in doc["LineItems"])][:limit]
    if not touched:
        raise DamageError(f"no editable documents use account {from_code}")
    for n, doc in enumerate(touched):
        at = now + n * 1000
        lines = [
            _line_copy(li, AccountCode=to_code) if li.get("AccountCode") == from_code else _line_copy(li)
            for li in doc["LineItems"]
        ]
        moved = sum(li["LineAmount"] for li in doc["LineItems"] if li.get("AccountCode") == from_code)
        _write(store, tenant_id, "POST", f"/Invoices/{doc['InvoiceID']}", {"Invoices": [{"LineItems": lines}]}, at)
        truth.add(
            "changed",
            "Invoices",
            doc["InvoiceID"],
            at,
            field="LineItems[].AccountCode",
            before=from_code,
            after=to_code,
            amount=round(moved, 2),
        )
    return _record(store, truth, now)


# ---------------------------------------------------------------------------------------------
# 3. API update breaks behaviour (a standing rule played day by day)


def api_update(
    store: SandboxStore,
    tenant_id: str,
    *,
    mapping: str = "account",
    per_day: int = 2,
    wrong_code: str | None = None,
    stop: bool = False,
    at_ms: int | None = None,
) -> dict[str, Any]:
    """Start (or `stop`) the broken integration: from today, each business day `advance` plays, `per_day`
    new bills (one more each week since the start) arrive coded to `wrong_code` (mapping "account") or with
    the purchases tax replaced by the exempt one (mapping "tax"). Today's share is played at once."""
    rules = store.get_config(RULES_KEY, {}) or {}
    now = store.now_ms() if at_ms is None else at_ms
    if stop:
        rule = rules.pop(tenant_id, None)
        store.set_config(RULES_KEY, rules)
        truth = _Truth("api_update.stop", tenant_id, {"rule": rule})
        return _record(store, truth, now)
    if mapping not in ("account", "tax"):
        raise DamageError("mapping must be 'account' or 'tax'")
    if per_day < 1:
        raise DamageError("per_day must be at least 1")
    rule = {
        "mapping": mapping,
        "per_day": per_day,
        "wrong_code": wrong_code or countries.EXPENSE_CODES[-1],
        "since_ms": day_start(now),
    }
    rules[tenant_id] = rule
    store.set_config(RULES_KEY, rules)
    return play_day(store, tenant_id, day_start(now), now_ms=now)


def play_day(store: SandboxStore, tenant_id: str, day: int, *, now_ms: int | None = None) -> dict[str, Any]:
    """Play one day of a standing `api_update` rule (called by `churn.advance` after each business day)."""
    rules = store.get_config(RULES_KEY, {}) or {}
    rule = rules.get(tenant_id)
    if rule is None:
        return {}
    if day <= int(rule.get("played_until_ms", -1)):
        # Each day is played once: `api_update` plays the day the clock stands in, and when the clock stands on
        # a day boundary (where `advance` leaves it) the next `advance` starts with that same day.
        return {}
    rule["played_until_ms"] = day
    store.set_config(RULES_KEY, rules)
    rng = random.Random(f"damage:{tenant_id}:{day}")
    week = max(0, (day - int(rule["since_ms"])) // (7 * DAY_MS))
    count = int(rule["per_day"]) + week
    suppliers = [
        c
        for c in _docs(store, tenant_id, "Contacts", "status='ACTIVE'")
        if c.get("IsSupplier") and not c.get("DefaultCurrency")
    ]
    if not suppliers:
        raise DamageError("the organisation has no active suppliers to receive bills from")
    profile = _profile(store, tenant_id)
    truth = _Truth("api_update", tenant_id, {**rule, "day_ms": day, "count": count})
    start = max(day + 9 * HOUR_MS, now_ms or 0)
    for n in range(count):
        at = start + n * 60_000
        supplier = rng.choice(suppliers)
        right_code = supplier.get("PurchasesDefaultAccountCode") or countries.EXPENSE_CODES[0]
        amount = round(rng.uniform(40, 900), 2)
        line = {
            "Description": rng.choice(("Subscription", "Freight", "Consumables", "Contractor services")),
            "Quantity": 1.0,
            "UnitAmount": amount,
            "AccountCode": rule["wrong_code"] if rule["mapping"] == "account" else right_code,
            "TaxType": profile.exempt_purchases_tax if rule["mapping"] == "tax" else profile.purchases_tax,
        }
        element = {
            "Type": "ACCPAY",
            "Contact": {"ContactID": supplier["ContactID"]},
            "Date": ms_date(day),
            "DueDate": ms_date(day + 30 * DAY_MS),
            "InvoiceNumber": f"API-{rng.randrange(100000, 999999)}",
            "Reference": "Synced by integration",
            "Status": "AUTHORISED",
            "LineAmountTypes": "Exclusive",
            "LineItems": [line],
        }
        created = _write(store, tenant_id, "PUT", "/Invoices", {"Invoices": [element]}, at)["Invoices"][0]
        truth.add(
            "created",
            "Invoices",
            created["InvoiceID"],
            at,
            account_code=line["AccountCode"],
            right_account_code=right_code,
            tax_type=line["TaxType"],
            net=amount,
        )
    return _record(store, truth, start)


def _profile(store: SandboxStore, tenant_id: str) -> countries.CountryProfile:
    country = store.scalar("SELECT country FROM orgs WHERE tenant_id=?", (tenant_id,))
    return countries.profile(str(country))


# ---------------------------------------------------------------------------------------------
# 4. Credential compromise through a connected app


def compromise(
    store: SandboxStore, tenant_id: str, *, edits: int = 3, voids: int = 2, payments: int = 2, at_ms: int | None = None
) -> dict[str, Any]:
    """Within one hour through one connection: change suppliers' bank details (`edits`), void approved unpaid
    invoices (`voids`), create a new supplier with `payments` bills and pay each in full from the main bank."""
    now = store.now_ms() if at_ms is None else at_ms
    rng = random.Random(f"compromise:{tenant_id}:{now}")
    truth = _Truth("compromise", tenant_id, {"edits": edits, "voids": voids, "payments": payments})
    at = now
    suppliers = [c for c in _docs(store, tenant_id, "Contacts", "status='ACTIVE'") if c.get("IsSupplier")]
    for supplier in suppliers[:edits]:
        at += rng.randrange(20_000, 120_000)
        details = f"{rng.randrange(10, 99)}-{rng.randrange(1000, 9999)}-{rng.randrange(10**6, 10**7)}-00"
        _write(
            store,
            tenant_id,
            "POST",
            f"/Contacts/{supplier['ContactID']}",
            {"Contacts": [{"BankAccountDetails": details}]},
            at,
        )
        truth.add(
            "changed",
            "Contacts",
            supplier["ContactID"],
            at,
            field="BankAccountDetails",
            before=supplier.get("BankAccountDetails", ""),
            after=details,
        )
    voidable = [
        d
        for d in _docs(store, tenant_id, "Invoices", "status='AUTHORISED' AND type='ACCREC'")
        if not d.get("Payments") and not d.get("AmountCredited") and d.get("AmountDue") == d.get("Total")
    ]
    for invoice in voidable[-voids:] if voids else []:
        at += rng.randrange(20_000, 120_000)
        _write(store, tenant_id, "POST", f"/Invoices/{invoice['InvoiceID']}", {"Invoices": [{"Status": "VOIDED"}]}, at)
        truth.add("voided", "Invoices", invoice["InvoiceID"], at, total=invoice["Total"])
    if payments:
        at += rng.randrange(20_000, 120_000)
        name = f"Apex Consulting Services {rng.randrange(100, 999)}"
        contact = _write(
            store,
            tenant_id,
            "PUT",
            "/Contacts",
            {"Contacts": [{"Name": name, "IsSupplier": True, "BankAccountDetails": "12-3456-7654321-00"}]},
            at,
        )["Contacts"][0]
        truth.add("created", "Contacts", contact["ContactID"], at)
        profile = _profile(store, tenant_id)
        for _ in range(payments):
            at += rng.randrange(20_000, 120_000)
            amount = round(rng.uniform(2000, 9000), 2)
            bill = _write(
                store,
                tenant_id,
                "PUT",
                "/Invoices",
                {
                    "Invoices": [
                        {
                            "Type": "ACCPAY",
                            "Contact": {"ContactID": contact["ContactID"]},
                            "Date": ms_date(day_start(at)),
                            "DueDate": ms_date(day_start(at)),
                            "InvoiceNumber": f"AC-{rng.randrange(1000, 9999)}",
                            "Status": "AUTHORISED",
                            "LineAmountTypes": "NoTax",
                            "LineItems": [
                                {
                                    "Description": "Consulting",
                                    "Quantity": 1.0,
                                    "UnitAmount": amount,
                                    "AccountCode": countries.EXPENSE_CODES[0],
                                    "TaxType": profile.none_tax,
                                }
                            ],
                        }
                    ]
                },
                at,
            )["Invoices"][0]
            truth.add("created", "Invoices", bill["InvoiceID"], at, total=bill["Total"])
            at += rng.randrange(5_000, 30_000)
            payment = _write(
                store,
                tenant_id,
                "PUT",
                "/Payments",
                {
                    "Payments": [
                        {
                            "Invoice": {"InvoiceID": bill["InvoiceID"]},
                            "Account": {"Code": countries.BANK_CODES[0]},
                            "Date": ms_date(day_start(at)),
                            "Amount": bill["Total"],
                            "Reference": "Urgent",
                        }
                    ]
                },
                at,
            )["Payments"][0]
            truth.add("created", "Payments", payment["PaymentID"], at, amount=payment["Amount"])
            truth.add("changed", "Invoices", bill["InvoiceID"], at, field="Status", before="AUTHORISED", after="PAID")
    return _record(store, truth, now)


# ---------------------------------------------------------------------------------------------


def _record(store: SandboxStore, truth: _Truth, at_ms: int) -> dict[str, Any]:
    truth.doc["at_ms"] = at_ms
    store.log_event(truth.doc["tenant_id"], f"damage.{truth.doc['kind']}", truth.doc)
    return truth.doc


def play(store: SandboxStore, tenant_id: str, kind: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Play scenario `kind` on one organisation now; returns its ground truth (also in `events`)."""
    if not store.scalar("SELECT count(*) FROM orgs WHERE tenant_id=?", (tenant_id,)):
        raise DamageError(f"unknown tenant {tenant_id!r}")
    options = dict(options or {})
    scenarios: dict[str, Callable[..., dict[str, Any]]] = {
        "onboarding": onboarding,
        "remap": remap,
        "api_update": api_update,
        "compromise": compromise,
    }
    scenario = scenarios.get(kind)
    if scenario is None:
        raise DamageError(f"kind must be one of {', '.join(KINDS)}")
    try:
        inspect.signature(scenario).bind(store, tenant_id, **options)
    except TypeError as error:
        raise DamageError(f"bad options for {kind}: {error}") from error
    return scenario(store, tenant_id, **options)


def ground_truth(store: SandboxStore, tenant_id: str) -> list[dict[str, Any]]:
    """Every damage event recorded for a tenant, oldest first."""
    return [
        json.loads(detail)
        for (detail,) in store.query(
            "SELECT detail FROM events WHERE tenant_id=? AND kind LIKE 'damage.%' ORDER BY seq", (tenant_id,)
        )
    ]
