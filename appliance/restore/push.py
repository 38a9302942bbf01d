"""The restore run: write a backup point into the target organisation, step by step, resumable, no duplicates.

This module owns the run of one restore (`RestorePush.run`): it maps what the target already has (system
accounts by `SystemAccount`, other accounts by code, tax rates by type or name, currencies, tracking, contact
groups and branding themes by name), puts every element of every step in the journal (planned order,
`appliance.restore.plan.STEPS`), and writes them in batches of up to 50 with `summarizeErrors=false` and an
`Idempotency-Key` derived from the restore, the step, the elements' source ids and the body (research §4.2,
§4.3). Each answer element is recorded as done (with its id-map rows) or refused (with Xero's reason); the run
goes on after a refusal.

Never a duplicate: elements are marked `sent` before the request leaves and `done`/`refused` after the answer,
each in one transaction. On the next run, `sent` elements (outcome unknown: a kill, a reboot, a dropped
connection) are looked up in the target first, by the fingerprint the transform gives a payload and a record
read back (`transform.fingerprint`), or by name for settings, or by the record's own state for allocations
and voids; only what is not found is sent again. Xero's idempotency cache lasts minutes (research §4.3), so
it covers only the retries inside one call. An exhausted day budget pauses the run (`paused`, with
`resume_after`); `cancel` stops it between batches.

It must not decide the order or the payloads (plan and transform do) nor parse the CLI.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.backup.mirror import Mirror
from appliance.errors import DayBudgetExhausted, XeroError, XeroRejected
from appliance.restore import transform
from appliance.restore.plan import STEPS, STEPS_BY_NAME, Step
from appliance.restore.transform import Skip, Unresolved
from appliance.store import State
from appliance.store.restores import Element
from appliance.xero import catalogue
from appliance.xero.client import XeroClient

log = logging.getLogger(__name__)

ProgressCallback = Callable[[str, int, int], None]
"""(step, elements finished, elements in the step)."""

# The id-map kind of each endpoint's records, for attachments, voids and archiving.
ENDPOINT_KIND: Mapping[str, str] = {
    "Accounts": "account",
    "Contacts": "contact",
    "Invoices": "invoice",
    "CreditNotes": "credit_note",
    "BankTransactions": "bank_transaction",
    "BankTransfers": "bank_transfer",
    "ManualJournals": "manual_journal",
    "PurchaseOrders": "purchase_order",
    "Quotes": "quote",
    "RepeatingInvoices": "repeating_invoice",
    "Overpayments": "overpayment",
    "Prepayments": "prepayment",
    "TrackingCategories": "tracking_category",
}
# Steps whose unknown outcomes are found again by fingerprint in a listing of the target.
_FINGERPRINTED = {
    "contacts": "Contacts",
    "items": "Items",
    "invoices": "Invoices",
    "credit_notes": "CreditNotes",
    "purchase_orders": "PurchaseOrders",
    "quotes": "Quotes",
    "repeating_invoices": "RepeatingInvoices",
    "manual_journals": "ManualJournals",
    "bank_transactions": "BankTransactions",
    "bank_transfers": "BankTransfers",
    "payments": "Payments",
    "batch_payments": "BatchPayments",
    "linked_transactions": "LinkedTransactions",
}
# Steps whose ids are found again by re-reading the target's settings (the mapping does it).
_REMAPPED = {"currencies", "tax_rates", "accounts", "tracking_categories", "tracking_options", "contact_groups"}
# Steps a repeat cannot harm: PUT of the same file name replaces it; group membership and status are sets.
_REPEATABLE = {"attachments", "contact_group_members"}
_DOCUMENT_KINDS = ("invoice", "credit_note", "bank_transaction", "manual_journal", "purchase_order", "quote")


FOUND_AFTER_INTERRUPTION = "found in the target after an interrupted request"


class RestoreCancelled(Exception):
    """Internal: a cancel was requested; the run stops between batches."""


@dataclass
class RunOutcome:
    restore_id: str
    status: str
    calls: int
    counts: dict[str, dict[str, int]]
    error: str | None = None
    resume_after: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "restore_id": self.restore_id,
            "status": self.status,
            "calls": self.calls,
            "counts": self.counts,
            "error": self.error,
            "resume_after": self.resume_after,
        }


@dataclass
class _Prepared:
    source_id: str
    path: str
    method: str
    payload: dict[str, Any] | None = None
    content: bytes | None = None
    content_type: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    already: str | None = None
    """The element is already in the target (mapped): record it done with this id, no call."""
    body: dict[str, Any] | None = None
    """The whole request body, for requests about one parent (allocations, members, status changes)."""
    collection: str | None = None
    """The answer's list key, when it is not the step's."""


class PointSource:
    """The backup point's records, read from its mirror directory, loaded per endpoint on first use."""

    def __init__(self, mirror: Mirror) -> None:
        self.mirror = mirror
        self._records: dict[str, dict[str, dict[str, Any]]] = {}

    def records(self, endpoint: str) -> dict[str, dict[str, Any]]:
        if endpoint not in self._records:
            field_name = _source_id_field(endpoint)
            loaded = {str(record.get(field_name)): record for record in self.mirror.iter_records(endpoint)}
            self._records[endpoint] = dict(sorted(loaded.items(), key=lambda item: _order_key(item[1], item[0])))
        return self._records[endpoint]

    def organisation(self) -> dict[str, Any]:
        """The point's Organisation record (the backup keeps Xero's whole `{"Organisations": [...]}` answer)."""
        document = self.mirror.document("organisation") or {}
        organisations = document.get("Organisations")
        if isinstance(organisations, list) and organisations and isinstance(organisations[0], dict):
            return dict(organisations[0])
        return dict(document)


def _source_id_field(endpoint: str) -> str:
    from appliance.backup.mirror import id_field

    return id_field(endpoint)


def _order_key(record: Mapping[str, Any], record_id: str) -> tuple[str, str, str]:
    # Documents in date order (then number), so sequences and "first" duplicates come back as they were.
    number = str(record.get("InvoiceNumber") or record.get("CreditNoteNumber") or record.get("Code") or "")
    return (transform.day(record.get("Date")) or "", number, record_id)


def idempotency_key(restore_id: str, step: str, source_ids: Iterable[str], body: bytes) -> str:
    """Same restore, step, elements and body -> same key (so Xero replays a retried request); anything changed
    -> a new key (Xero refuses a key reused with another body, research §4.3). 128 characters at most (SPEC)."""
    digest = hashlib.sha256()
    digest.update(step.encode())
    for source_id in source_ids:
        digest.update(b"\0" + source_id.encode())
    digest.update(b"\1" + body)
    return f"sr-{restore_id[:36]}-{digest.hexdigest()[:64]}"


def _reasons(element: Mapping[str, Any]) -> str:
    messages = []
    for error in element.get("ValidationErrors") or []:
        # The SPEC's ValidationError has `Message`; RR's sample shows `Description`: read both (research §4.2).
        text = error.get("Message") or error.get("Description")
        if text:
            messages.append(str(text))
    return "; ".join(messages) or str(element.get("Message") or "refused by Xero")


def _rejection_reason(error: XeroRejected) -> str:
    detail = error.detail
    if isinstance(detail, dict):
        reasons = [_reasons(element) for element in detail.get("Elements") or [] if isinstance(element, dict)]
        reasons = [reason for reason in reasons if reason and reason != "refused by Xero"]
        if reasons:
            return "; ".join(reasons)
        if detail.get("Message"):
            return str(detail["Message"])
    return error.message


class RestorePush:
    """Runs (or resumes) one restore against its target organisation."""

    def __init__(
        self,
        state: State,
        client: XeroClient,
        grant_id: str,
        restore_id: str,
        source: PointSource,
        *,
        cancel: threading.Event | None = None,
        progress: ProgressCallback | None = None,
        steps: Iterable[str] | None = None,
    ) -> None:
        self.state = state
        self.client = client
        self.grant_id = grant_id
        self.restore = state.restores.get(restore_id)
        self.restore_id = self.restore.restore_id
        self.tenant_id = self.restore.target_tenant_id
        self.source = source
        self.cancel = cancel
        self.progress = progress
        self.steps = [STEPS_BY_NAME[name] for name in steps] if steps is not None else list(STEPS)
        self._calls_at_start = self._client_calls()
        self._id_map: dict[str, dict[str, str]] = {}
        self._target_cache: dict[str, list[dict[str, Any]]] = {}

    # -- bookkeeping ------------------------------------------------------------------------------------------
    def _client_calls(self) -> int:
        stats = self.client.stats.get(self.tenant_id)
        return stats.calls if stats else 0

    def _flush_calls(self) -> None:
        calls = self._client_calls()
        self.state.restores.add_calls(self.restore_id, calls - self._calls_at_start)
        self._calls_at_start = calls

    def _reload_map(self) -> None:
        self._id_map = self.state.restores.id_map(self.restore_id)

    def _map(self, kind: str, source_id: str, target_id: str) -> None:
        self.state.restores.map_id(self.restore_id, kind, source_id, target_id)
        self._id_map.setdefault(kind, {})[source_id] = target_id

    def _check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise RestoreCancelled
        if self.state.restores.get(self.restore_id).cancel_requested:
            raise RestoreCancelled

    # -- the run ----------------------------------------------------------------------------------------------
    async def run(self) -> RunOutcome:
        restores = self.state.restores
        if self.restore.status == "finished":
            return self._outcome("finished")
        # Running again is an explicit resume, also of a cancelled restore: the journal continues it.
        restores.update(self.restore_id, status="running", error=None, resume_after=None, cancel_requested=False)
        try:
            with self.state.locks.hold(self.tenant_id, purpose=f"restore {self.restore_id[:8]}"):
                self._reload_map()
                await self._map_existing()
                self._enqueue()
                for step in self.steps:
                    restores.update(self.restore_id, step=step.name)
                    await self._run_step(step)
                    self._flush_calls()
        except DayBudgetExhausted as error:
            self._flush_calls()
            resume_after = time.time() + max(0.0, error.retry_after)
            restores.update(self.restore_id, status="paused", error=error.message, resume_after=resume_after)
            log.info("restore %s paused: %s", self.restore_id[:8], error.message)
            return self._outcome("paused", error.message, resume_after)
        except RestoreCancelled:
            self._flush_calls()
            restores.update(self.restore_id, status="cancelled", finished_at=time.time())
            return self._outcome("cancelled")
        except XeroError as error:
            self._flush_calls()
            restores.update(self.restore_id, status="failed", error=error.message)
            return self._outcome("failed", error.message)
        restores.update(self.restore_id, status="finished", step=None, finished_at=time.time())
        return self._outcome("finished")

    def _outcome(self, status: str, error: str | None = None, resume_after: float | None = None) -> RunOutcome:
        restore = self.state.restores.get(self.restore_id)
        return RunOutcome(
            self.restore_id, status, restore.calls, self.state.restores.counts(self.restore_id), error, resume_after
        )

    # -- reading the target ------------------------------------------------------------------------------------
    async def _target_list(self, endpoint: str, *, fresh: bool = False) -> list[dict[str, Any]]:
        if fresh or endpoint not in self._target_cache:
            records: list[dict[str, Any]] = []
            async for page in self.client.iter_records(self.grant_id, self.tenant_id, catalogue.endpoint(endpoint)):
                records.extend(page)
            self._target_cache[endpoint] = records
        return self._target_cache[endpoint]

    async def _map_existing(self) -> None:
        """Map what the target already has, so it is referenced and not created (idempotent, a few reads)."""
        mapped = self._id_map
        # Each map row is its own small write: no transaction is held across the reads.
        accounts = await self._target_list("Accounts", fresh=True)
        by_system = {a["SystemAccount"]: a for a in accounts if a.get("SystemAccount")}
        by_code = {a["Code"]: a for a in accounts if a.get("Code")}
        by_name = {str(a.get("Name", "")).lower(): a for a in accounts}
        for source_id, record in self.source.records("Accounts").items():
            if source_id in mapped.get("account", {}):
                continue
            match: Mapping[str, Any] | None = None
            if record.get("SystemAccount"):
                # System accounts exist in every organisation; their codes may differ (research §3).
                match = by_system.get(record["SystemAccount"])
            elif record.get("Code") and record["Code"] in by_code:
                candidate = by_code[record["Code"]]
                if candidate.get("Type") == record.get("Type"):
                    match = candidate
            elif not record.get("Code"):
                named = by_name.get(str(record.get("Name", "")).lower())
                if named is not None and named.get("Type") == record.get("Type"):
                    match = named
            if match is not None:
                self._map_account(source_id, record, match)
        tax_rates = await self._target_list("TaxRates", fresh=True)
        tax_types = {t["TaxType"] for t in tax_rates if t.get("TaxType")}
        tax_by_name = {str(t.get("Name", "")).lower(): t["TaxType"] for t in tax_rates if t.get("TaxType")}
        for source_id, record in self.source.records("TaxRates").items():
            if source_id in mapped.get("tax", {}):
                continue
            if source_id in tax_types:
                self._map("tax", source_id, source_id)
            elif str(record.get("Name", "")).lower() in tax_by_name:
                self._map("tax", source_id, tax_by_name[str(record.get("Name", "")).lower()])
        currencies = {c.get("Code") for c in await self._target_list("Currencies", fresh=True)}
        for code in currencies:
            if code:
                self._map("currency", str(code), str(code))
        categories = await self._target_list("TrackingCategories", fresh=True)
        categories_by_name = {str(c.get("Name", "")).lower(): c for c in categories}
        for source_id, record in self.source.records("TrackingCategories").items():
            target = categories_by_name.get(str(record.get("Name", "")).lower())
            if target is None:
                continue
            self._map("tracking_category", source_id, target["TrackingCategoryID"])
            options = {str(o.get("Name", "")).lower(): o for o in target.get("Options") or []}
            for option in record.get("Options") or []:
                found = options.get(str(option.get("Name", "")).lower())
                if found is not None:
                    self._map("tracking_option", option["TrackingOptionID"], found["TrackingOptionID"])
        groups = {str(g.get("Name", "")).lower(): g for g in await self._target_list("ContactGroups", fresh=True)}
        for source_id, record in self.source.records("ContactGroups").items():
            target = groups.get(str(record.get("Name", "")).lower())
            if target is not None:
                self._map("contact_group", source_id, target["ContactGroupID"])
        # Branding themes cannot be created through the API (SPEC): documents keep their theme by name.
        themes = {str(t.get("Name", "")).lower(): t for t in await self._target_list("BrandingThemes", fresh=True)}
        for source_id, record in self.source.records("BrandingThemes").items():
            target = themes.get(str(record.get("Name", "")).lower())
            if target is not None:
                self._map("branding_theme", source_id, target["BrandingThemeID"])

    def _map_account(self, source_id: str, record: Mapping[str, Any], target: Mapping[str, Any]) -> None:
        self._map("account", source_id, str(target["AccountID"]))
        if target.get("Code"):
            self._map("account_code_by_id", source_id, str(target["Code"]))
            if record.get("Code"):
                self._map("account_code", str(record["Code"]), str(target["Code"]))

    # -- the journal ------------------------------------------------------------------------------------------
    def _enqueue(self) -> None:
        for step in self.steps:
            self.state.restores.enqueue(self.restore_id, step.name, self._select(step))

    def _select(self, step: Step) -> list[str]:
        return select_elements(step, self.source)

    async def _run_step(self, step: Step) -> None:
        restores = self.state.restores
        sent = restores.elements(self.restore_id, step.name, "sent")
        if sent:
            await self._reconcile(step, sent)
        pending = restores.elements(self.restore_id, step.name, "pending")
        total = len(restores.elements(self.restore_id, step.name))
        finished = total - len(pending)
        if self.progress:
            self.progress(step.name, finished, total)
        for chunk in _chunks(step, pending):
            self._check_cancel()
            prepared: list[_Prepared] = []
            for element in chunk:
                try:
                    item = await self._prepare(step, element.source_id)
                except Skip as skip:
                    restores.mark(self.restore_id, step.name, element.source_id, "skipped", str(skip))
                    continue
                except Unresolved as missing:
                    restores.mark(self.restore_id, step.name, element.source_id, "refused", str(missing))
                    continue
                if item.already is not None:
                    restores.mark_done(self.restore_id, step.name, element.source_id, item.already)
                    continue
                prepared.append(item)
            if prepared:
                await self._send(step, prepared)
                self._flush_calls()  # kept per batch, so a killed run's calls are counted too
            finished += len(chunk)
            if self.progress:
                self.progress(step.name, finished, total)

    # -- preparing one element -----------------------------------------------------------------------------------
    async def _prepare(self, step: Step, source_id: str) -> _Prepared:
        records = self.source.records
        id_map = self._id_map
        name = step.name
        path = step.path
        if step.id_kind and source_id in id_map.get(step.id_kind, {}):
            return _Prepared(source_id, path, step.method, already=id_map[step.id_kind][source_id])
        if name == "currencies":
            if source_id in id_map.get("currency", {}):
                return _Prepared(source_id, path, step.method, already=source_id)
            record = records("Currencies")[source_id]
            return _Prepared(source_id, path, step.method, {"Code": source_id, **_maybe(record, "Description")})
        if name == "tax_rates":
            return _Prepared(source_id, path, step.method, transform.tax_rate(records("TaxRates")[source_id]))
        if name == "accounts":
            record = records("Accounts")[source_id]
            if record.get("SystemAccount"):
                raise Unresolved(f"the target has no {record['SystemAccount']} system account")
            code = record.get("Code")
            if code and code in {a.get("Code") for a in await self._target_list("Accounts")}:
                raise Unresolved(f"account code {code} is taken in the target by an account of another type")
            return _Prepared(source_id, path, step.method, transform.account(record, id_map))
        if name == "tracking_categories":
            record = records("TrackingCategories")[source_id]
            return _Prepared(source_id, path, step.method, {"Name": record.get("Name")})
        if name == "tracking_options":
            category_id, option_id = source_id.split(":", 1)
            if option_id in id_map.get("tracking_option", {}):
                return _Prepared(source_id, path, step.method, already=id_map["tracking_option"][option_id])
            category = transform.resolve(id_map, "tracking_category", category_id, "tracking category")
            option = next(
                o for o in records("TrackingCategories")[category_id].get("Options") or []
                if o.get("TrackingOptionID") == option_id
            )  # fmt: skip
            return _Prepared(source_id, path.replace("{id}", category), step.method, {"Name": option.get("Name")})
        if name == "contact_groups":
            return _Prepared(source_id, path, step.method, {"Name": records("ContactGroups")[source_id].get("Name")})
        if name == "contact_group_members":
            group = transform.resolve(id_map, "contact_group", source_id, "contact group")
            members = [
                {"ContactID": target}
                for contact in records("ContactGroups")[source_id].get("Contacts") or []
                if (target := id_map.get("contact", {}).get(str(contact.get("ContactID"))))
            ]
            if not members:
                raise Unresolved("none of the group's contacts was restored")
            return _Prepared(source_id, path.replace("{id}", group), step.method, body={"Contacts": members})
        if name == "allocations":
            endpoint, record_id = source_id.split(":", 1)
            kind = ENDPOINT_KIND[endpoint]
            target = transform.resolve(id_map, kind, record_id, endpoint[:-1])
            allocations = transform.allocations(records(endpoint)[record_id], id_map)
            if not allocations:
                raise Skip("no live allocation")
            return _Prepared(source_id, f"{endpoint}/{target}/Allocations", "PUT", body={"Allocations": allocations})
        if name == "voids":
            endpoint, record_id = source_id.split(":", 1)
            target = transform.resolve(id_map, ENDPOINT_KIND[endpoint], record_id, endpoint[:-1])
            status = records(endpoint)[record_id].get("Status")
            if endpoint == "BankTransactions":
                status = "DELETED"  # bank transactions are deleted, not voided (BT)
            id_field = {"Invoices": "InvoiceID", "CreditNotes": "CreditNoteID", "ManualJournals": "ManualJournalID"}
            payload = {id_field.get(endpoint, "BankTransactionID"): target, "Status": status}
            # One element of a batch POST to the endpoint (updateOrCreate*, SPEC): `_run_step` groups by endpoint.
            return _Prepared(source_id, endpoint, "POST", payload, collection=endpoint)
        if name == "attachments":
            return self._prepare_attachment(source_id)
        if name == "archive":
            return self._prepare_archive(source_id)
        record = records(step.endpoint)[source_id]
        builders: dict[str, Callable[[Mapping[str, Any], transform.IdMap], dict[str, Any]]] = {
            "contacts": transform.contact,
            "items": transform.item,
            "invoices": transform.invoice,
            "credit_notes": transform.credit_note,
            "purchase_orders": transform.purchase_order,
            "quotes": transform.quote,
            "repeating_invoices": transform.repeating_invoice,
            "manual_journals": transform.manual_journal,
            "bank_transactions": transform.bank_transaction,
            "bank_transfers": transform.bank_transfer,
            "payments": self._payment,
            "batch_payments": transform.batch_payment,
            "linked_transactions": transform.linked_transaction,
        }
        return _Prepared(source_id, path, step.method, builders[name](record, id_map))

    def _payment(self, record: Mapping[str, Any], id_map: transform.IdMap) -> dict[str, Any]:
        batch = record.get("BatchPaymentID")
        if batch and str(batch) in id_map.get("batch_payment", {}):
            raise Skip("restored with its batch payment")
        # A payment whose batch payment was refused still settles its document, alone, so the ledger comes
        # back (the bank statement then shows one line per payment instead of one for the batch).
        return transform.payment(record, id_map)

    def _prepare_attachment(self, source_id: str) -> _Prepared:
        endpoint, record_id, attachment_id = source_id.split("/", 2)
        kind = ENDPOINT_KIND.get(endpoint)
        if kind is None:
            raise Skip(f"attachments on {endpoint} cannot be uploaded through the API (ATT)")
        target = transform.resolve(self._id_map, kind, record_id, f"{endpoint[:-1]} of the attachment")
        entry = next(
            (
                e
                for e in self.source.mirror.attachments(endpoint, record_id)
                if str(e.get("AttachmentID")) == attachment_id
            ),
            None,
        )
        if entry is None:
            raise Unresolved("the attachment is missing from the point")
        name = urllib.parse.quote(str(entry.get("FileName") or entry.get("file")), safe="")
        params = {"IncludeOnline": "true"} if entry.get("IncludeOnline") else {}
        return _Prepared(
            source_id,
            f"{endpoint}/{target}/Attachments/{name}",
            "PUT",
            content=Path(entry["path"]).read_bytes(),
            content_type=str(entry.get("MimeType") or "application/octet-stream"),
            params=params,
        )

    def _prepare_archive(self, source_id: str) -> _Prepared:
        kind_name, rest = source_id.split(":", 1)
        id_map = self._id_map
        if kind_name == "Accounts":
            target = transform.resolve(id_map, "account", rest, "account")
            body = {"Accounts": [{"AccountID": target, "Status": "ARCHIVED"}]}
            return _Prepared(source_id, f"Accounts/{target}", "POST", body=body, collection="Accounts")
        if kind_name == "Contacts":
            target = transform.resolve(id_map, "contact", rest, "contact")
            body = {"Contacts": [{"ContactID": target, "ContactStatus": "ARCHIVED"}]}
            return _Prepared(source_id, f"Contacts/{target}", "POST", body=body, collection="Contacts")
        category_id, option_id = rest.split(":", 1)
        category = transform.resolve(id_map, "tracking_category", category_id, "tracking category")
        option = transform.resolve(id_map, "tracking_option", option_id, "tracking option")
        return _Prepared(
            source_id,
            f"TrackingCategories/{category}/Options/{option}",
            "POST",
            body={"Name": self._option_name(category_id, option_id), "Status": "ARCHIVED"},
            collection="Options",
        )

    def _option_name(self, category_id: str, option_id: str) -> str | None:
        for option in self.source.records("TrackingCategories")[category_id].get("Options") or []:
            if option.get("TrackingOptionID") == option_id:
                return option.get("Name")
        return None

    # -- sending ------------------------------------------------------------------------------------------------
    async def _send(self, step: Step, prepared: list[_Prepared]) -> None:
        restores = self.state.restores
        ids = [item.source_id for item in prepared]
        first = prepared[0]
        if first.content is not None:
            body = first.content
        elif first.body is not None:
            body = _dumps(first.body)
        elif step.batch > 1 or step.wrapped:
            body = _dumps({first.collection or step.collection: [item.payload for item in prepared]})
        else:
            body = _dumps(first.payload)
        key = idempotency_key(self.restore_id, step.name, ids, body)
        restores.mark_sent(self.restore_id, step.name, ids, key)
        try:
            if first.content is not None:
                answer = await self.client.upload(
                    self.grant_id,
                    self.tenant_id,
                    first.path,
                    first.content,
                    content_type=first.content_type or "application/octet-stream",
                    idempotency_key=key,
                    params=first.params or None,
                )
            else:
                answer = await self.client.write_json(
                    self.grant_id,
                    self.tenant_id,
                    first.method,
                    first.path,
                    json.loads(body),
                    idempotency_key=key,
                    summarize_errors=False if step.summarize and step.batch > 1 else None,
                )
        except DayBudgetExhausted:
            # Xero checks rate limits before anything else (research §4.3): nothing of this request was written.
            with self.state.transaction():
                for source_id in ids:
                    restores.mark(self.restore_id, step.name, source_id, "pending", None)
            raise
        except XeroRejected as error:
            # A final answer about this request (400 validation, 404, 501 NotImplemented...): Xero saved nothing
            # of it (without summarizeErrors=false a batch 400 may have saved some, which is why batches always
            # send it). The elements are refused with the reason and the run goes on.
            reason = _rejection_reason(error)
            with self.state.transaction():
                for source_id in ids:
                    restores.mark(self.restore_id, step.name, source_id, "refused", reason)
            log.info("restore %s: %s refused %d element(s): %s", self.restore_id[:8], step.name, len(ids), reason)
            return
        self._record_answer(step, prepared, answer)

    def _record_answer(self, step: Step, prepared: list[_Prepared], answer: Mapping[str, Any]) -> None:
        restores = self.state.restores
        collection = prepared[0].collection or step.collection
        elements = answer.get(collection)
        if not isinstance(elements, list):
            elements = []
        if len(prepared) == 1 and prepared[0].body is not None and len(elements) > 1:
            # One parent, several elements (a credit note's allocations): it is done only if all of them are.
            refused = [e for e in elements if isinstance(e, dict) and _is_refused(e)]
            if refused:
                restores.mark(self.restore_id, step.name, prepared[0].source_id, "refused", _reasons(refused[0]))
                return
        with self.state.transaction():
            for index, item in enumerate(prepared):
                element = elements[index] if index < len(elements) and isinstance(elements[index], dict) else {}
                if _is_refused(element):
                    restores.mark(self.restore_id, step.name, item.source_id, "refused", _reasons(element))
                    continue
                target_id = str(element.get(step.id_field)) if step.id_field and element.get(step.id_field) else None
                restores.mark_done(self.restore_id, step.name, item.source_id, target_id)
                if target_id is not None:
                    self._remember(step, item.source_id, element, target_id)

    def _remember(self, step: Step, source_id: str, element: Mapping[str, Any], target_id: str) -> None:
        """The id-map rows a written element gives later steps (same transaction as its journal row)."""
        name = step.name
        if name == "tracking_options":
            self._map("tracking_option", source_id.split(":", 1)[1], target_id)
            return
        if step.id_kind:
            self._map(step.id_kind, source_id, target_id)
        if name == "accounts":
            self._map_account(source_id, self.source.records("Accounts")[source_id], element)
        if name == "currencies":
            self._map("currency", source_id, source_id)
        if step.id_kind in _DOCUMENT_KINDS:
            self._map("document", source_id, target_id)
            source_lines = self.source.records(step.endpoint)[source_id].get("LineItems") or []
            for source_line, target_line in zip(source_lines, element.get("LineItems") or [], strict=False):
                if source_line.get("LineItemID") and target_line.get("LineItemID"):
                    self._map("line_item", str(source_line["LineItemID"]), str(target_line["LineItemID"]))
        if name == "bank_transactions":
            record = self.source.records("BankTransactions")[source_id]
            for kind, id_field in (("prepayment", "PrepaymentID"), ("overpayment", "OverpaymentID")):
                if record.get(id_field) and element.get(id_field):
                    self._map(kind, str(record[id_field]), str(element[id_field]))

    # -- unknown outcomes ---------------------------------------------------------------------------------------
    async def _reconcile(self, step: Step, sent: list[Element]) -> None:
        """Decide, for elements whose request may or may not have reached Xero, whether they exist in the
        target; found ones are recorded done, the others go back to pending (research §4.3)."""
        restores = self.state.restores
        log.info("restore %s: looking up %d %s of unknown outcome", self.restore_id[:8], len(sent), step.name)
        self._reload_map()
        if step.name in _REMAPPED:
            await self._map_existing()
            for element in sent:
                restores.mark(self.restore_id, step.name, element.source_id, "pending", None)
            return  # _prepare finds the now-mapped ones and records them done without a call
        if step.name in _REPEATABLE:
            for element in sent:
                restores.mark(self.restore_id, step.name, element.source_id, "pending", None)
            return
        if step.name == "allocations":
            for element in sent:
                present, expected = await self._allocations_present(element.source_id)
                if expected and present == expected:
                    restores.mark(self.restore_id, step.name, element.source_id, "done", FOUND_AFTER_INTERRUPTION)
                elif present:
                    # Part of the set took effect: Xero refused the rest (the whole answer is refused then, see
                    # `_record_answer`). Sending again could allocate twice, so a person looks at it.
                    reason = f"{present} of {expected} allocations are in the target after an interruption"
                    restores.mark(self.restore_id, step.name, element.source_id, "refused", reason)
                else:
                    restores.mark(self.restore_id, step.name, element.source_id, "pending", None)
            return
        if step.name in ("voids", "archive"):
            for element in sent:
                if await self._already_applied(step, element.source_id):
                    restores.mark(self.restore_id, step.name, element.source_id, "done", FOUND_AFTER_INTERRUPTION)
                else:
                    restores.mark(self.restore_id, step.name, element.source_id, "pending", None)
            return
        endpoint = _FINGERPRINTED[step.name]
        listing = await self._target_list(endpoint, fresh=True)
        id_field = step.id_field or ""
        claimed = {e.target_id for e in restores.elements(self.restore_id, step.name, "done") if e.target_id}
        candidates: dict[str, list[dict[str, Any]]] = {}
        for record in listing:
            if str(record.get(id_field)) in claimed:
                continue
            candidates.setdefault(transform.fingerprint(step.name, record), []).append(record)
        for element in sent:
            try:
                item = await self._prepare(step, element.source_id)
            except (Skip, Unresolved):
                restores.mark(self.restore_id, step.name, element.source_id, "pending", None)
                continue
            if item.already is not None:
                restores.mark_done(self.restore_id, step.name, element.source_id, item.already)
                continue
            matches = candidates.get(transform.fingerprint(step.name, item.payload or {}), [])
            if matches:
                record = matches.pop(0)
                with self.state.transaction():
                    target_id = str(record.get(id_field))
                    restores.mark_done(
                        self.restore_id, step.name, element.source_id, target_id, note=FOUND_AFTER_INTERRUPTION
                    )
                    self._remember(step, element.source_id, record, target_id)
            else:
                restores.mark(self.restore_id, step.name, element.source_id, "pending", None)

    async def _allocations_present(self, source_id: str) -> tuple[int, int]:
        """(how many of the source document's allocations are live in the target, how many it has): matched by
        invoice and amount, so an allocation the target already had for another reason is not counted twice."""
        endpoint, record_id = source_id.split(":", 1)
        target = self._id_map.get(ENDPOINT_KIND[endpoint], {}).get(record_id)
        try:
            expected = transform.allocations(self.source.records(endpoint)[record_id], self._id_map)
        except Unresolved:
            return 0, 0
        if target is None:
            return 0, len(expected)
        body = await self.client.get_json(self.grant_id, self.tenant_id, f"{endpoint}/{target}")
        records = body.get(endpoint) or []
        live = Counter(
            (str((a.get("Invoice") or {}).get("InvoiceID")), _cents(a.get("Amount")))
            for a in (records[0].get("Allocations") or [] if records else [])
            if not a.get("IsDeleted")
        )
        present = 0
        for allocation in expected:
            key = (str(allocation["Invoice"]["InvoiceID"]), _cents(allocation.get("Amount")))
            if live[key] > 0:
                live[key] -= 1
                present += 1
        return present, len(expected)

    async def _already_applied(self, step: Step, source_id: str) -> bool:
        """Whether a void or an archiving already took effect in the target (Xero refuses to archive or void
        twice, so these are looked up rather than repeated)."""
        if step.name == "archive":
            return await self._already_archived(source_id)
        endpoint, record_id = source_id.split(":", 1)
        target = self._id_map.get(ENDPOINT_KIND[endpoint], {}).get(record_id)
        if target is None:
            return False
        body = await self.client.get_json(self.grant_id, self.tenant_id, f"{endpoint}/{target}")
        records = body.get(endpoint) or []
        if not records:
            return False
        record = records[0]
        return record.get("Status") in ("VOIDED", "DELETED")

    async def _already_archived(self, source_id: str) -> bool:
        kind_name, rest = source_id.split(":", 1)
        id_map = self._id_map
        if kind_name in ("Accounts", "Contacts"):
            target = id_map.get(ENDPOINT_KIND[kind_name], {}).get(rest)
            if target is None:
                return False
            body = await self.client.get_json(self.grant_id, self.tenant_id, f"{kind_name}/{target}")
            records = body.get(kind_name) or []
            return bool(records) and _status_of(records[0]) == "ARCHIVED"
        category_id, option_id = rest.split(":", 1)
        category = id_map.get("tracking_category", {}).get(category_id)
        option = id_map.get("tracking_option", {}).get(option_id)
        if category is None or option is None:
            return False
        body = await self.client.get_json(self.grant_id, self.tenant_id, f"TrackingCategories/{category}")
        for found in (body.get("TrackingCategories") or [{}])[0].get("Options") or []:
            if found.get("TrackingOptionID") == option:
                return _status_of(found) == "ARCHIVED"
        return False


def select_elements(step: Step, source: PointSource) -> list[str]:
    """The source ids of the elements a step writes, in planned order."""
    records = source.records
    name = step.name
    if name == "currencies":
        base = source.organisation().get("BaseCurrency")
        return [code for code in records("Currencies") if code != base]
    if name == "tracking_categories":
        # Active categories first: Xero allows two active ones (research §3), and an archived category is only
        # worth a slot left over.
        categories = records("TrackingCategories")
        return sorted(categories, key=lambda i: (categories[i].get("Status") == "ARCHIVED", list(categories).index(i)))
    if name == "tracking_options":
        return [
            f"{category_id}:{option['TrackingOptionID']}"
            for category_id, record in records("TrackingCategories").items()
            for option in record.get("Options") or []
        ]
    if name == "contact_group_members":
        return [group_id for group_id, record in records("ContactGroups").items() if record.get("Contacts")]
    if name == "allocations":
        return [
            f"{endpoint}:{record_id}"
            for endpoint in ("CreditNotes", "Overpayments", "Prepayments")
            for record_id, record in records(endpoint).items()
            if any(not allocation.get("IsDeleted") for allocation in record.get("Allocations") or [])
        ]
    if name == "voids":
        return [
            f"{endpoint}:{record_id}"
            for endpoint in ("Invoices", "CreditNotes", "ManualJournals", "BankTransactions")
            for record_id, record in records(endpoint).items()
            if record.get("Status") in ("VOIDED", "DELETED") and not str(record.get("Type", "")).endswith("-TRANSFER")
        ]
    if name == "attachments":
        return [
            f"{endpoint}/{record_id}/{entry.get('AttachmentID')}"
            for endpoint in source.mirror.attachment_endpoints()
            for record_id in source.mirror.attachment_records(endpoint)
            for entry in source.mirror.attachments(endpoint, record_id)
        ]
    if name == "archive":
        selected = [
            f"Accounts:{record_id}"
            for record_id, record in records("Accounts").items()
            if record.get("Status") == "ARCHIVED"
        ]
        selected += [
            f"Contacts:{record_id}"
            for record_id, record in records("Contacts").items()
            if record.get("ContactStatus") == "ARCHIVED"
        ]
        selected += [
            f"TrackingOptions:{category_id}:{option['TrackingOptionID']}"
            for category_id, record in records("TrackingCategories").items()
            for option in record.get("Options") or []
            if option.get("Status") == "ARCHIVED"
        ]
        return selected
    return list(records(step.endpoint))


def _chunks(step: Step, pending: list[Element]) -> list[list[Element]]:
    """The step's requests: up to `step.batch` elements each; a step over several endpoints (voids) never
    mixes two endpoints in one request."""
    groups: dict[str, list[Element]] = {}
    for element in pending:
        endpoint = element.source_id.split(":", 1)[0] if "{endpoint}" in step.collection else ""
        groups.setdefault(endpoint, []).append(element)
    return [
        group[start : start + step.batch] for group in groups.values() for start in range(0, len(group), step.batch)
    ]


def _status_of(record: Mapping[str, Any]) -> str:
    return str(record.get("ContactStatus") or record.get("Status") or "")


def _maybe(record: Mapping[str, Any], *fields: str) -> dict[str, Any]:
    return {name: record[name] for name in fields if record.get(name)}


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


def run_sync(push: RestorePush) -> RunOutcome:
    """Run a push to completion on a fresh event loop (CLI without a daemon)."""
    return asyncio.run(push.run())


def _is_refused(element: Mapping[str, Any]) -> bool:
    return element.get("StatusAttributeString") == "ERROR" or bool(element.get("ValidationErrors"))


def _cents(value: Any) -> int:
    try:
        return round(float(value) * 100)
    except (TypeError, ValueError):
        return 0
