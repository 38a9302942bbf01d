"""The write side of the sandbox's Accounting API: PUT, POST and DELETE under `/api.xro/2.0/...`.

This module owns what Xero accepts and refuses when an API client creates, updates, voids, deletes or archives
records: the write routes and their scopes, request parsing (one element or a `{"Invoices": [...]}` batch),
per-element validation with Xero's error shapes, `summarizeErrors`, `Idempotency-Key` replay and refusal,
request size and element-count limits, and turning each accepted element into stored documents and journals.
Documents are stored through `generate.OrgBuilder.put`/`flush` (so the `records` row columns are derived in one
place) and every money movement posts through `ledger.Ledger` (so double entry stays in one place).

It must not check tokens, tenants, scopes against tokens, rate limits or faults: that is `sandbox.app`'s gate,
which counts writes against the same limits as reads. Its entry point `handle()` is synchronous and runs in a
worker thread with a store connection private to that thread.

Sources (https://developer.xero.com/documentation/api/accounting/requests-and-responses, "RR"; the official
OpenAPI spec `xero_accounting.yaml`, "SPEC"; research notes `xero-api.md` §3-4, "NOTES"):
- `summarizeErrors=false`: HTTP 200, every element back with `StatusAttributeString` OK/ERROR and its
  `ValidationErrors`; with the default a single bad element makes the call a 400 `ValidationException` whose
  `Elements` are the failed elements, while the good ones are still saved (RR; NOTES §4.2, StackOverflow 52706101).
- Error body: `ErrorNumber`, `Type`, `Message`, `Elements[].ValidationErrors[].Message` (SPEC `Error`).
- `Idempotency-Key`: up to 128 characters (SPEC); the first response is replayed for 6 minutes, errors included;
  the same key with another method, URL or body is refused with a 400 (NOTES §4.3, secondary sources).
- Request size 3.5 MB for the Accounting API; Items up to 500 per request; Accounts, Currencies, TaxRates and
  TrackingCategories take one element (NOTES §4.1). Other batches are capped at `MAX_ELEMENTS` here: Xero
  documents no hard count but recommends 50, and an unbounded batch only hides client bugs in tests.
- Attachments: raw bytes in the body, file name in the path, at most 10 per document, 25 MB each
  (https://developer.xero.com/documentation/api/accounting/attachments).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import mimetypes
import random
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from sandbox import accounting, countries
from sandbox.accounting import ApiRequest, ApiResponse
from sandbox.generate import OrgBuilder, day_start, iso_date
from sandbox.ledger import LedgerError, Line, from_cents, parse_ms_date, to_cents
from sandbox.store import SandboxStore, ms_date

MAX_REQUEST_BYTES = 3_500_000  # NOTES §4.1: "A single POST ... has a size limit of 3.5MB"
MAX_ATTACHMENT_BYTES = 25 * 1024 * 1024
MAX_ATTACHMENTS_PER_DOCUMENT = 10
MAX_ELEMENTS = 500  # the Items limit (NOTES §4.1), applied to every batch endpoint
MAX_IDEMPOTENCY_KEY = 128
IDEMPOTENCY_TTL_MS = 6 * 60_000
MAX_ACTIVE_TRACKING_CATEGORIES = 2  # https://central.xero.com/s/article/Set-up-tracking-categories

# The scopes that allow a write (SPEC `security` of each PUT/POST; granular scopes per NOTES §5.2).
_SETTINGS_W = frozenset({"accounting.settings"})
_CONTACTS_W = frozenset({"accounting.contacts"})
_INVOICES_W = frozenset({"accounting.transactions", "accounting.invoices"})
_PAYMENTS_W = frozenset({"accounting.transactions", "accounting.payments"})
_BANK_W = frozenset({"accounting.transactions", "accounting.banktransactions"})
_MANUAL_W = frozenset({"accounting.transactions", "accounting.manualjournals"})
ATTACHMENTS_W = frozenset({"accounting.attachments"})

# A scope string that can write everything this module models (read scopes included).
WRITE_EVERYTHING_SCOPE = (
    "offline_access openid profile email accounting.settings accounting.contacts accounting.invoices"
    " accounting.payments accounting.banktransactions accounting.manualjournals accounting.attachments"
    " accounting.budgets.read accounting.reports.trialbalance.read accounting.reports.profitandloss.read"
    " accounting.reports.balancesheet.read accounting.reports.aged.read accounting.reports.banksummary.read"
)


@dataclass(frozen=True)
class Collection:
    """One writable collection: its scopes, id field, and whether a request takes many elements."""

    name: str
    id_field: str
    scopes: frozenset[str]
    batch: bool = True
    put_creates_only: bool = True  # PUT refuses an element naming an existing id (POST updates or creates)


COLLECTIONS: dict[str, Collection] = {
    c.name.lower(): c
    for c in (
        Collection("Accounts", "AccountID", _SETTINGS_W, batch=False),
        Collection("Currencies", "Code", _SETTINGS_W, batch=False),
        Collection("TaxRates", "TaxType", _SETTINGS_W),
        Collection("TrackingCategories", "TrackingCategoryID", _SETTINGS_W, batch=False),
        Collection("ContactGroups", "ContactGroupID", _CONTACTS_W),
        Collection("Contacts", "ContactID", _CONTACTS_W),
        Collection("Items", "ItemID", _SETTINGS_W | _INVOICES_W),
        Collection("Invoices", "InvoiceID", _INVOICES_W),
        Collection("CreditNotes", "CreditNoteID", _INVOICES_W),
        Collection("Payments", "PaymentID", _PAYMENTS_W),
        Collection("BankTransactions", "BankTransactionID", _BANK_W),
        Collection("BankTransfers", "BankTransferID", _BANK_W),
        Collection("ManualJournals", "ManualJournalID", _MANUAL_W),
        Collection("PurchaseOrders", "PurchaseOrderID", _INVOICES_W),
        Collection("Quotes", "QuoteID", _INVOICES_W),
        Collection("Prepayments", "PrepaymentID", _PAYMENTS_W),
        Collection("Overpayments", "OverpaymentID", _PAYMENTS_W),
        Collection("BatchPayments", "BatchPaymentID", _PAYMENTS_W),
        Collection("RepeatingInvoices", "RepeatingInvoiceID", _INVOICES_W),
        Collection("LinkedTransactions", "LinkedTransactionID", _INVOICES_W, batch=False),
    )
}
_HISTORY_ENDPOINTS = {
    "invoices",
    "creditnotes",
    "payments",
    "banktransactions",
    "banktransfers",
    "manualjournals",
    "contacts",
    "items",
    "purchaseorders",
    "quotes",
    "prepayments",
    "overpayments",
    "batchpayments",
    "repeatinginvoices",
}
_ATTACHMENT_ENDPOINTS = {
    "accounts",
    "invoices",
    "creditnotes",
    "banktransactions",
    "banktransfers",
    "manualjournals",
    "contacts",
    "purchaseorders",
    "quotes",
    "repeatinginvoices",
}
_FILE_NAME_FORBIDDEN = re.compile(r'[\\/:*?"<>|\x00-\x1f]')


# ---------------------------------------------------------------------------------------------
# Routing


@dataclass(frozen=True)
class WriteRoute:
    """What a PUT/POST/DELETE path asks for."""

    # collection | single | options | option | group_contacts | group_contact | allocations | history | attachment
    kind: str
    method: str
    collection: Collection
    record_ref: str | None = None
    sub_ref: str | None = None

    @property
    def scopes(self) -> frozenset[str]:
        if self.kind == "attachment":
            return ATTACHMENTS_W
        return self.collection.scopes


def resolve(method: str, path: str) -> WriteRoute:
    """Route a write below `/api.xro/2.0`; raises a 404 `ApiError` for paths Xero has no write for."""
    parts = [p for p in path.split("/") if p]
    method = method.upper()
    if not parts:
        raise accounting.not_found()
    head = parts[0].lower()
    if head == "setup" and len(parts) == 1 and method == "POST":
        return WriteRoute("setup", method, Collection("Setup", "", _SETTINGS_W, batch=False))
    collection = COLLECTIONS.get(head)
    if collection is None:
        raise accounting.not_found()
    n = len(parts)
    if n == 1 and method in ("PUT", "POST"):
        return WriteRoute("collection", method, collection)
    if n == 2 and method in ("POST", "DELETE"):
        return WriteRoute("single", method, collection, record_ref=parts[1])
    sub = parts[2].lower() if n >= 3 else ""
    if head == "trackingcategories" and sub == "options":
        if n == 3 and method == "PUT":
            return WriteRoute("options", method, collection, parts[1])
        if n == 4 and method in ("POST", "DELETE"):
            return WriteRoute("option", method, collection, parts[1], parts[3])
    if head == "contactgroups" and sub == "contacts":
        if n == 3 and method in ("PUT", "DELETE"):
            return WriteRoute("group_contacts", method, collection, parts[1])
        if n == 4 and method == "DELETE":
            return WriteRoute("group_contact", method, collection, parts[1], parts[3])
    if head in ("creditnotes", "prepayments", "overpayments") and sub == "allocations" and n == 3 and method == "PUT":
        return WriteRoute("allocations", method, collection, parts[1])
    # SPEC deleteCreditNoteAllocations / deletePrepaymentAllocations / deleteOverpaymentAllocations
    if (
        head in ("creditnotes", "prepayments", "overpayments")
        and sub == "allocations"
        and n == 4
        and method == "DELETE"
    ):
        return WriteRoute("allocation", method, collection, parts[1], parts[3])
    if sub == "history" and n == 3 and method == "PUT" and head in _HISTORY_ENDPOINTS:
        return WriteRoute("history", method, collection, parts[1])
    if sub == "attachments" and n == 4 and method in ("PUT", "POST") and head in _ATTACHMENT_ENDPOINTS:
        return WriteRoute("attachment", method, collection, parts[1], parts[3])
    raise accounting.not_found()


# ---------------------------------------------------------------------------------------------
# Errors


class ElementError(Exception):
    """One element refused; `messages` become its `ValidationErrors`."""

    def __init__(self, *messages: str) -> None:
        super().__init__("; ".join(messages))
        self.messages = list(messages)


def _validation_exception(elements: list[dict[str, Any]]) -> accounting.ApiError:
    # SPEC `Error`; ErrorNumber 10 and the wording are what Xero sends for validation failures (RR samples).
    return accounting.ApiError(
        400,
        {
            "ErrorNumber": 10,
            "Type": "ValidationException",
            "Message": "A validation exception occurred",
            "Elements": elements,
        },
    )


def _bad_request(message: str, *, number: int = 10, kind: str = "ValidationException") -> accounting.ApiError:
    return accounting.ApiError(400, {"ErrorNumber": number, "Type": kind, "Message": message})


# ---------------------------------------------------------------------------------------------
# Idempotency

_IDEMPOTENCY_SCHEMA = """
CREATE TABLE IF NOT EXISTS idempotency (
    client_id TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,        -- sha256 of method, path, query and body
    status INTEGER NOT NULL,
    media_type TEXT NOT NULL,
    body BLOB NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (client_id, key)
) WITHOUT ROWID;
"""


def _ensure_schema(store: SandboxStore) -> None:
    # Kept here rather than in `sandbox.store`: only the write side reads or writes this table.
    store.db.execute(_IDEMPOTENCY_SCHEMA)


# ---------------------------------------------------------------------------------------------
# Entry point


@dataclass
class WriteRequest:
    api: ApiRequest
    method: str
    body: bytes
    client_id: str


def handle(store: SandboxStore, request: WriteRequest, route: WriteRoute, *, now_ms: int) -> ApiResponse:
    """Answer one write. Errors Xero would return come back as responses, not exceptions."""
    as_json = accounting.wants_json(request.api.headers)
    key = request.api.headers.get("idempotency-key")
    try:
        if key is not None and (not key or len(key) > MAX_IDEMPOTENCY_KEY):
            raise _bad_request(f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters")
        if len(request.body) > (MAX_ATTACHMENT_BYTES if route.kind == "attachment" else MAX_REQUEST_BYTES):
            return ApiResponse(413, b"Request entity too large", "text/plain; charset=utf-8")
    except accounting.ApiError as error:
        return accounting.error_response(error, as_json=as_json)
    _ensure_schema(store)
    fingerprint = hashlib.sha256(
        b"\n".join(
            [
                request.method.encode(),
                request.api.path.encode(),
                json.dumps(sorted(request.api.query.items())).encode(),
                request.body,
            ]
        )
    ).hexdigest()
    with store.transaction():
        if key:
            row = next(
                iter(
                    store.query(
                        "SELECT fingerprint, status, media_type, body, created_ms FROM idempotency"
                        " WHERE client_id=? AND key=?",
                        (request.client_id, key),
                    )
                ),
                None,
            )
            if row is not None and now_ms - int(row[4]) < IDEMPOTENCY_TTL_MS:
                if row[0] != fingerprint:
                    refusal = _bad_request(f"Idempotency Key {key} is used with a different request")
                    return accounting.error_response(refusal, as_json=as_json)
                return ApiResponse(int(row[1]), bytes(row[3]), str(row[2]), {"Idempotent-Replayed": "true"})
        try:
            response = _handle(store, request, route, now_ms=now_ms, as_json=as_json)
        except accounting.ApiError as error:
            response = accounting.error_response(error, as_json=as_json)
        if key:
            # Errors are cached too (NOTES §4.3).
            store.query(
                "INSERT OR REPLACE INTO idempotency(client_id, key, fingerprint, status, media_type, body, created_ms)"
                " VALUES (?,?,?,?,?,?,?)",
                (request.client_id, key, fingerprint, response.status, response.media_type, response.body, now_ms),
            )
    return response


def _envelope(now_ms: int, provider: str) -> dict[str, Any]:
    return {"Id": str(uuid.uuid4()), "Status": "OK", "ProviderName": provider, "DateTimeUTC": f"/Date({now_ms})/"}


def _respond(request: WriteRequest, now_ms: int, key: str, items: list[dict[str, Any]], as_json: bool) -> ApiResponse:
    body = {**_envelope(now_ms, request.api.provider_name), key: items}
    if as_json:
        return ApiResponse(200, orjson.dumps(body), "application/json; charset=utf-8")
    return ApiResponse(200, accounting.render_xml("Response", body), "text/xml; charset=utf-8")


def _parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body) if body.strip() else {}
    except orjson.JSONDecodeError:
        # Xero's answer to a body it cannot read (RR "HTTP response codes": 400 Bad Request).
        raise _bad_request(
            "The request body could not be read as JSON", number=14, kind="PostDataInvalidException"
        ) from None


def _elements(payload: Any, key: str) -> list[Any]:
    if isinstance(payload, dict) and isinstance(payload.get(key), list):
        return list(payload[key])
    if isinstance(payload, list):
        return payload
    if isinstance(payload, dict) and payload:
        return [payload]
    raise _bad_request(f"No {key} were found in the request", number=14, kind="PostDataInvalidException")


def _handle(
    store: SandboxStore, request: WriteRequest, route: WriteRoute, *, now_ms: int, as_json: bool
) -> ApiResponse:
    context = Context.open(store, request.api.tenant_id, now_ms)
    if route.kind == "attachment":
        attachment = _attachment(context, route, request)
        return _respond(request, now_ms, "Attachments", [attachment], as_json)
    payload = _parse_json(request.body) if route.method != "DELETE" else {}
    summarize = accounting._query_get(request.api.query, "summarizeErrors").strip().lower() != "false"
    name = route.collection.name
    if route.kind == "setup":
        summary = {**_envelope(now_ms, request.api.provider_name), "ImportSummary": _setup(context, payload)}
        if as_json:
            return ApiResponse(200, orjson.dumps(summary), "application/json; charset=utf-8")
        return ApiResponse(200, accounting.render_xml("Response", summary), "text/xml; charset=utf-8")
    if route.kind == "history":
        records = [
            _history_note(context, name, route.record_ref or "", e) for e in _elements(payload, "HistoryRecords")
        ]
        return _respond(request, now_ms, "HistoryRecords", records, as_json)
    if route.kind in ("options", "option"):
        return _respond(request, now_ms, "Options", [_tracking_option(context, route, payload)], as_json)
    if route.kind in ("group_contacts", "group_contact"):
        return _respond(request, now_ms, "Contacts", _group_contacts(context, route, payload), as_json)
    if route.kind == "allocations":
        elements = _elements(payload, "Allocations")
        processor: Callable[[Context, dict[str, Any]], dict[str, Any]] = lambda c, e: _allocation(  # noqa: E731
            c, name, route.record_ref or "", e
        )
        return _batch(context, request, elements, processor, "Allocations", summarize, as_json)
    if route.kind == "allocation":
        try:
            with context.store.transaction():
                allocation = _delete_allocation(context, name, route.record_ref or "", route.sub_ref or "")
                context.builder.flush()
        except ElementError as error:
            context.reset()
            raise _bad_request("; ".join(error.messages)) from None
        # SPEC: "Success - return response of type Allocation with the isDeleted flag as true" (not wrapped).
        if as_json:
            return ApiResponse(200, orjson.dumps(allocation), "application/json; charset=utf-8")
        return ApiResponse(200, accounting.render_xml("Allocation", allocation), "text/xml; charset=utf-8")
    if route.kind == "single":
        if route.method == "DELETE":
            return _respond(request, now_ms, name, [_delete(context, route)], as_json)
        elements = _elements(payload, name)
        if len(elements) != 1:
            raise _bad_request(f"A POST to /{name}/{{id}} takes one element")
        element = dict(elements[0]) if isinstance(elements[0], dict) else elements[0]
        if isinstance(element, dict):
            element.setdefault(route.collection.id_field, route.record_ref)
        return _batch(context, request, [element], _processor(name, "POST"), name, summarize, as_json)
    elements = _elements(payload, name)
    if not route.collection.batch and len(elements) != 1:
        raise _bad_request(f"{name} are created one per request")
    if len(elements) > MAX_ELEMENTS:
        raise _bad_request(f"A request may hold at most {MAX_ELEMENTS} {name}")
    return _batch(context, request, elements, _processor(name, route.method), name, summarize, as_json)


def _batch(
    context: Context,
    request: WriteRequest,
    elements: list[Any],
    processor: Callable[[Context, dict[str, Any]], dict[str, Any]],
    key: str,
    summarize: bool,
    as_json: bool,
) -> ApiResponse:
    """Each element in its own savepoint: a refused element leaves no trace, the good ones are kept (RR)."""
    results: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    for element in elements:
        if not isinstance(element, dict):
            failed_doc = {"ValidationErrors": [{"Message": "Each element must be an object"}]}
            results.append({**failed_doc, "StatusAttributeString": "ERROR"})
            failed.append(failed_doc)
            continue
        try:
            with context.store.transaction():
                doc = processor(context, element)
                context.builder.flush()
        except ElementError as error:
            context.reset()
            failed_doc = {**element, "ValidationErrors": [{"Message": m} for m in error.messages]}
            failed.append(failed_doc)
            results.append({**failed_doc, "StatusAttributeString": "ERROR"})
            continue
        except LedgerError as error:  # a document that would unbalance the books: refuse it, as Xero does
            context.reset()
            failed_doc = {**element, "ValidationErrors": [{"Message": str(error)}]}
            failed.append(failed_doc)
            results.append({**failed_doc, "StatusAttributeString": "ERROR"})
            continue
        results.append({**_shape(key, doc, request), "StatusAttributeString": "OK"})
    if failed and summarize:
        raise _validation_exception(failed)
    if summarize:
        results = [{k: v for k, v in r.items() if k != "StatusAttributeString"} for r in results]
    return _respond(request, context.now_ms, key, results, as_json)


def _shape(key: str, doc: dict[str, Any], request: WriteRequest) -> dict[str, Any]:
    endpoint = accounting.ENDPOINTS.get(key.lower())
    copy = orjson.loads(orjson.dumps(doc))
    if endpoint is None:
        return copy  # type: ignore[no-any-return]
    unitdp4 = endpoint.unitdp and request.api.query.get("unitdp", "").strip() == "4"
    return accounting._shape(copy, endpoint, summary=False, unitdp4=unitdp4)


# ---------------------------------------------------------------------------------------------
# The unit of work


@dataclass
class Context:
    """One request's view of one organisation: the builder that stores documents and posts journals."""

    store: SandboxStore
    tenant_id: str
    now_ms: int
    builder: OrgBuilder
    organisation: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def open(cls, store: SandboxStore, tenant_id: str, now_ms: int) -> Context:
        row = next(iter(store.query("SELECT country, base_currency, doc FROM orgs WHERE tenant_id=?", (tenant_id,))))
        country, base_currency, org_doc = row
        accounts = list(store.iter_records(tenant_id, "Accounts"))
        # Ids of records created through the API are random, as Xero's are.
        rng = random.Random(uuid.uuid4().int)
        builder = OrgBuilder(
            store,
            tenant_id,
            countries.profile(country),
            rng,
            base_currency=base_currency,
            buffered=True,
            accounts=accounts,
        )
        context = cls(store, tenant_id, now_ms, builder, json.loads(org_doc))
        context._load_reference()
        builder.event_ms = now_ms
        return context

    def _load_reference(self) -> None:
        tax_rates = {d["TaxType"]: d for d in self.store.iter_records(self.tenant_id, "TaxRates")}
        self.builder.ledger.tax_names.update({k: v["Name"] for k, v in tax_rates.items()})
        self.extra["tax_rates"] = tax_rates
        state = self.store.get_config(f"org_state:{self.tenant_id}", {}) or {}
        self.builder.counters = dict(state.get("counters", {}))
        self.builder.currencies = {k: float(v) for k, v in state.get("currencies", {}).items()}

    def reset(self) -> None:
        """Forget what a refused element buffered (its savepoint rolled the store back)."""
        self.builder.pending.clear()
        self.builder.history_rows.clear()
        self.builder.attachment_rows.clear()
        self.builder.ledger._pending.clear()
        self.builder.ledger._pending_by_source.clear()
        last = self.store.scalar("SELECT max(journal_number) FROM journals WHERE tenant_id=?", (self.tenant_id,))
        self.builder.ledger.next_number = int(last or 0) + 1
        self.builder.accounts = {d["Code"]: d for d in self.store.iter_records(self.tenant_id, "Accounts")}
        self.builder.ledger.by_id.clear()
        self.builder.ledger.by_code.clear()
        self.builder.ledger.by_system.clear()
        for doc in self.builder.accounts.values():
            self.builder.ledger.add_account(doc)
        self._load_reference()

    def get(self, endpoint: str, record_id: str) -> dict[str, Any] | None:
        pending = self.builder.pending.get((endpoint, record_id))
        if pending is not None:
            return pending[0]
        return self.store.get_record(self.tenant_id, endpoint, record_id)

    def find(self, endpoint: str, where: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        return [
            json.loads(doc)
            for (doc,) in self.store.query(
                f"SELECT doc FROM records WHERE tenant_id=? AND endpoint=? AND {where}",
                (self.tenant_id, endpoint, *params),
            )
        ]

    def put(self, endpoint: str, doc: dict[str, Any], date_ms: int | None = None) -> None:
        self.builder.put(endpoint, doc, date_ms=date_ms)

    def note(self, endpoint: str, record_id: str, changes: str, details: str) -> None:
        self.builder.history(endpoint, record_id, self.now_ms, changes, details, user="API")

    def new_id(self) -> str:
        return str(uuid.UUID(int=self.builder.rng.getrandbits(128), version=4))

    @property
    def base(self) -> str:
        return self.builder.base

    def lock_date_ms(self) -> int | None:
        """The later of the period and end-of-year lock dates (Organisation `PeriodLockDate`,
        `EndOfYearLockDate`): documents dated on or before it are refused."""
        dates = [self.organisation.get(k) for k in ("PeriodLockDate", "EndOfYearLockDate")]
        values = [parse_ms_date(d) if d.startswith("/Date") else _parse_date(d) for d in dates if d]
        return max(values) if values else None


# ---------------------------------------------------------------------------------------------
# Value parsing


def _parse_date(value: Any) -> int:
    """A date as Xero accepts it in a body: `2026-03-02`, `2026-03-02T00:00:00` or `/Date(ms+0000)/`."""
    if not isinstance(value, str) or not value:
        raise ElementError("A valid date is required")
    if value.startswith("/Date("):
        return day_start(parse_ms_date(value))
    try:
        parsed = dt.datetime.fromisoformat(value[:19] if len(value) >= 19 else value[:10])
    except ValueError:
        raise ElementError(f"The date {value!r} is not in a recognised format") from None
    return (
        int(parsed.replace(tzinfo=dt.UTC).timestamp() * 1000)
        - int(parsed.replace(tzinfo=dt.UTC).timestamp() * 1000) % 86_400_000
    )


def _number(value: Any, name: str, *, default: float | None = None) -> float:
    if value is None or value == "":
        if default is not None:
            return default
        raise ElementError(f"{name} is required")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ElementError(f"{name} must be a number") from None


def _check_lock(context: Context, date_ms: int) -> None:
    lock = context.lock_date_ms()
    if lock is not None and date_ms <= lock:
        # Wording of Xero's refusal for a date inside a locked period (unverified against a live org).
        raise ElementError(
            f"The document date cannot be on or before the organisation's lock date of {iso_date(lock)[:10]}"
        )


# ---------------------------------------------------------------------------------------------
# Reference lookups shared by the document types


def _account(context: Context, ref: Mapping[str, Any] | None, *, code: Any = None, purpose: str = "") -> dict[str, Any]:
    key_id = (ref or {}).get("AccountID")
    key_code = code if code is not None else (ref or {}).get("Code")
    doc = None
    if key_id:
        doc = context.get("Accounts", str(key_id))
    elif key_code not in (None, ""):
        doc = context.builder.accounts.get(str(key_code))
    if doc is None:
        shown = key_code if key_code not in (None, "") else key_id
        raise ElementError(
            f"Account code '{shown}' is not a valid code for this document."
            if shown
            else f"{purpose}Account code is required"
        )
    if doc.get("Status") == "ARCHIVED":
        raise ElementError(
            f"Account code '{doc.get('Code')}' has been archived, or deleted."
            " Each line item must reference a valid account."
        )
    return doc


def _bank_account(context: Context, ref: Any, label: str = "BankAccount") -> dict[str, Any]:
    if not isinstance(ref, dict):
        raise ElementError(f"{label} is required")
    account = _account(context, ref)
    if account["Type"] != "BANK" and not account.get("EnablePaymentsToAccount"):
        raise ElementError(f"Account {account.get('Code')} is not a bank account or enabled for payments")
    return account


def _contact(context: Context, ref: Any) -> dict[str, Any]:
    """The referenced contact. Xero creates a contact from a name it does not know (RR "Invoices" PUT);
    an unknown ContactID or an archived contact is refused."""
    if not isinstance(ref, dict) or not (ref.get("ContactID") or ref.get("Name")):
        raise ElementError("A Contact must be specified for this type of transaction")
    if ref.get("ContactID"):
        doc = context.get("Contacts", str(ref["ContactID"]))
        if doc is None:
            raise ElementError(f"The contact with ContactID {ref['ContactID']} could not be found")
    else:
        found = context.find("Contacts", "lower(json_extract(doc, '$.Name'))=lower(?)", (str(ref["Name"]).strip(),))
        doc = found[0] if found else _save_contact(context, {"Name": ref["Name"]}, creating=True)
    if doc.get("ContactStatus") == "ARCHIVED":
        raise ElementError(f"The contact '{doc['Name']}' is archived; archived contacts cannot be used on transactions")
    return doc


def _contact_ref(contact: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "ContactID": contact["ContactID"],
        "Name": contact["Name"],
        "Addresses": [],
        "Phones": [],
        "ContactGroups": [],
        "ContactPersons": [],
        "HasValidationErrors": False,
    }


def _tax_rate(context: Context, tax_type: Any) -> dict[str, Any]:
    doc = context.extra["tax_rates"].get(str(tax_type))
    if doc is None:
        raise ElementError(
            f"The TaxType code {tax_type} does not exist or cannot be used for this type of transaction."
        )
    if doc.get("Status") not in (None, "ACTIVE"):
        raise ElementError(f"The TaxType code {tax_type} has been deleted or archived and cannot be used.")
    return doc  # type: ignore[no-any-return]


def _tracking(context: Context, entries: Any) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = []
    categories = list(context.store.iter_records(context.tenant_id, "TrackingCategories"))
    for entry in entries or []:
        name = entry.get("Name")
        category = next(
            (
                c
                for c in categories
                if c["TrackingCategoryID"] == entry.get("TrackingCategoryID") or (name and c["Name"] == name)
            ),
            None,
        )
        if category is None or category.get("Status") != "ACTIVE":
            raise ElementError(
                f"The tracking category '{name or entry.get('TrackingCategoryID')}' does not exist or is archived"
            )
        wanted = entry.get("Option")
        option = next(
            (
                o
                for o in category.get("Options", [])
                if o["TrackingOptionID"] == entry.get("TrackingOptionID") or (wanted and o["Name"] == wanted)
            ),
            None,
        )
        if option is None or option.get("Status") != "ACTIVE":
            raise ElementError(
                f"The tracking option '{wanted or entry.get('TrackingOptionID')}' does not exist or is archived"
            )
        result.append(
            {
                "Name": category["Name"],
                "Option": option["Name"],
                "TrackingCategoryID": category["TrackingCategoryID"],
                "TrackingOptionID": option["TrackingOptionID"],
            }
        )
    return result


def _currency(context: Context, element: Mapping[str, Any], date_ms: int) -> tuple[str, float]:
    code = str(element.get("CurrencyCode") or context.base)
    if code == context.base:
        return code, 1.0
    if context.get("Currencies", code) is None:
        raise ElementError(f"The currency {code} has not been enabled for this organisation")
    if element.get("CurrencyRate"):
        return code, _number(element["CurrencyRate"], "CurrencyRate")
    if code in context.builder.currencies:
        return code, context.builder.fx(code, date_ms)
    raise ElementError(f"No exchange rate is available for {code}; supply CurrencyRate")


_LINE_AMOUNT_TYPES = {"exclusive": "Exclusive", "inclusive": "Inclusive", "notax": "NoTax"}


def _line_items(
    context: Context, element: Mapping[str, Any], *, line_amount_types: str, require_account: bool = True
) -> list[dict[str, Any]]:
    """Line items as Xero computes them: LineAmount = Quantity x UnitAmount less discount (2 dp); tax from the
    tax rate unless the client sends TaxAmount (Xero accepts a supplied tax amount on a line)."""
    lines = element.get("LineItems")
    if not isinstance(lines, list) or not lines:
        raise ElementError("At least one line item is required")
    result = []
    for raw in lines:
        if not isinstance(raw, dict):
            raise ElementError("Each line item must be an object")
        item: dict[str, Any] | None = None
        if raw.get("ItemCode"):
            found = context.find("Items", "number=?", (str(raw["ItemCode"]),))
            if not found:
                raise ElementError(f"Item code '{raw['ItemCode']}' is not valid")
            item = found[0]
        quantity = _number(raw.get("Quantity"), "Quantity", default=1.0)
        unit = raw.get("UnitAmount")
        if unit is None and raw.get("LineAmount") is not None:
            unit = _number(raw["LineAmount"], "LineAmount") / (quantity or 1.0)
        unit_amount = _number(unit, "UnitAmount", default=0.0)
        discount = _number(raw.get("DiscountRate"), "DiscountRate", default=0.0)
        line_amount = (
            round(_number(raw["LineAmount"], "LineAmount"), 2)
            if raw.get("LineAmount") is not None
            else round(quantity * unit_amount * (1 - discount / 100), 2)
        )
        line: dict[str, Any] = {
            "LineItemID": str(raw.get("LineItemID") or context.new_id()),
            "Description": str(raw.get("Description") or ""),
            "Quantity": quantity,
            "UnitAmount": unit_amount,
            "LineAmount": line_amount,
        }
        if require_account or raw.get("AccountCode") or raw.get("AccountID"):
            account = _account(context, {"AccountID": raw.get("AccountID")}, code=raw.get("AccountCode"))
            line["AccountCode"] = account["Code"]
            line["AccountID"] = account["AccountID"]
            default_tax = account.get("TaxType")
        else:
            default_tax = None
        tax_type = raw.get("TaxType") or default_tax or context.builder.profile.none_tax
        if line_amount_types == "NoTax":
            tax_type = context.builder.profile.none_tax
        rate_doc = _tax_rate(context, tax_type)
        rate = float(rate_doc.get("EffectiveRate") or 0.0) / 100
        if raw.get("TaxAmount") is not None and line_amount_types != "NoTax":
            tax = round(_number(raw["TaxAmount"], "TaxAmount"), 2)
        elif line_amount_types == "Exclusive":
            tax = round(line_amount * rate, 2)
        elif line_amount_types == "Inclusive":
            tax = round(line_amount * rate / (1 + rate), 2)
        else:
            tax = 0.0
        line["TaxType"] = tax_type
        line["TaxAmount"] = tax
        line["Tracking"] = _tracking(context, raw.get("Tracking"))
        if discount:
            line["DiscountRate"] = discount
        if item is not None:
            line["ItemCode"] = item["Code"]
            line["Item"] = {"ItemID": item["ItemID"], "Name": item.get("Name", ""), "Code": item["Code"]}
        result.append(line)
    return result


def _line_amount_types(element: Mapping[str, Any], default: str = "Exclusive") -> str:
    value = str(element.get("LineAmountTypes") or default)
    normal = _LINE_AMOUNT_TYPES.get(value.lower())
    if normal is None:
        raise ElementError(f"LineAmountTypes must be one of Exclusive, Inclusive, NoTax (got {value!r})")
    return normal


def _processor(name: str, method: str) -> Callable[[Context, dict[str, Any]], dict[str, Any]]:
    processors: dict[str, Callable[[Context, dict[str, Any]], dict[str, Any]]] = {
        "Accounts": _save_account,
        "Currencies": _save_currency,
        "TaxRates": _save_tax_rate,
        "TrackingCategories": _save_tracking_category,
        "ContactGroups": _save_contact_group,
        "Contacts": lambda c, e: _save_contact(c, e, creating=False),
        "Items": _save_item,
        "Invoices": lambda c, e: _save_invoice_like(c, e, "Invoices"),
        "CreditNotes": lambda c, e: _save_invoice_like(c, e, "CreditNotes"),
        "Payments": _save_payment,
        "BankTransactions": _save_bank_transaction,
        "BankTransfers": _save_bank_transfer,
        "ManualJournals": _save_manual_journal,
        "PurchaseOrders": lambda c, e: _save_order_like(c, e, "PurchaseOrders"),
        "Quotes": lambda c, e: _save_order_like(c, e, "Quotes"),
        "BatchPayments": _save_batch_payment,
        "RepeatingInvoices": _save_repeating_invoice,
        "LinkedTransactions": _save_linked_transaction,
    }
    processor = processors.get(name)
    if processor is None:
        raise accounting.ApiError(501, f"The sandbox does not model writes to {name}")
    collection = COLLECTIONS[name.lower()]

    def run(context: Context, element: dict[str, Any]) -> dict[str, Any]:
        record_id = element.get(collection.id_field)
        if method == "PUT" and record_id and name not in ("Currencies",) and context.get(name, str(record_id)):
            # PUT creates; updating an existing record is a POST (RR "PUT and POST").
            raise ElementError(
                f"A {name[:-1]} with {collection.id_field} {record_id} already exists; use POST to update"
            )
        return processor(context, element)

    return run


# ---------------------------------------------------------------------------------------------
# Settings: accounts, currencies, tax rates, tracking


_ACCOUNT_TYPES = frozenset(countries.ACCOUNT_CLASS)


def _save_account(context: Context, element: dict[str, Any]) -> dict[str, Any]:
    existing = context.get("Accounts", str(element["AccountID"])) if element.get("AccountID") else None
    if element.get("AccountID") and existing is None:
        raise ElementError(f"The account {element['AccountID']} could not be found")
    doc = dict(existing or {})
    if existing and existing.get("SystemAccount"):
        changing = {k for k in ("Code", "Type", "Name", "TaxType") if k in element and element[k] != existing.get(k)}
        if changing or element.get("Status") == "ARCHIVED":
            raise ElementError(f"System account {existing['Code']} cannot be edited or archived")
    code = str(element.get("Code", doc.get("Code", ""))).strip()
    name = str(element.get("Name", doc.get("Name", ""))).strip()
    kind = str(element.get("Type", doc.get("Type", "")))
    errors = []
    if not name:
        errors.append("Please enter a name for this account")
    if not code and kind != "BANK":
        errors.append("Please enter a code for this account")
    if len(code) > 10:
        errors.append("The account code must be 10 characters or fewer")
    if kind not in _ACCOUNT_TYPES:
        errors.append(f"'{kind}' is not a valid account type")
    clash = context.builder.accounts.get(code) if code else None
    if clash and clash["AccountID"] != doc.get("AccountID"):
        errors.append("Please enter a unique Code.")
    for other in context.builder.accounts.values():
        if other["Name"].lower() == name.lower() and other["AccountID"] != doc.get("AccountID"):
            errors.append("Please enter a unique Name.")
            break
    tax_type = element.get("TaxType", doc.get("TaxType")) or context.builder.profile.none_tax
    if tax_type not in context.extra["tax_rates"]:
        errors.append(f"The TaxType code {tax_type} does not exist")
    if kind == "BANK" and not (element.get("BankAccountNumber") or doc.get("BankAccountNumber")):
        errors.append("Bank account number is required for BANK accounts")
    status = element.get("Status", doc.get("Status", "ACTIVE"))
    if status not in ("ACTIVE", "ARCHIVED"):
        errors.append("Status must be ACTIVE or ARCHIVED")
    if errors:
        raise ElementError(*errors)
    if kind == "BANK":
        currency = str(element.get("CurrencyCode") or doc.get("CurrencyCode") or context.base)
        if currency != context.base and context.get("Currencies", currency) is None:
            raise ElementError(f"The currency {currency} has not been enabled for this organisation")
    account_class = countries.ACCOUNT_CLASS[kind]
    reporting_code, reporting_name = countries.REPORTING_CODE[account_class]
    doc.update(
        {
            "AccountID": doc.get("AccountID") or context.new_id(),
            "Code": code,
            "Name": name,
            "Status": status,
            "Type": kind,
            "TaxType": tax_type,
            "Description": str(element.get("Description", doc.get("Description", "")) or ""),
            "Class": account_class,
            "EnablePaymentsToAccount": bool(
                element.get("EnablePaymentsToAccount", doc.get("EnablePaymentsToAccount", False))
            ),
            "ShowInExpenseClaims": bool(element.get("ShowInExpenseClaims", doc.get("ShowInExpenseClaims", False))),
            "BankAccountType": element.get(
                "BankAccountType", doc.get("BankAccountType", "BANK" if kind == "BANK" else "")
            ),
            "ReportingCode": element.get("ReportingCode", doc.get("ReportingCode", reporting_code)),
            "ReportingCodeName": doc.get("ReportingCodeName", reporting_name),
            "HasAttachments": bool(doc.get("HasAttachments", False)),
            "UpdatedDateUTC": ms_date(context.now_ms),
            "AddToWatchlist": bool(element.get("AddToWatchlist", doc.get("AddToWatchlist", False))),
        }
    )
    if kind == "BANK":
        doc["BankAccountNumber"] = str(element.get("BankAccountNumber") or doc.get("BankAccountNumber"))
        doc["CurrencyCode"] = str(element.get("CurrencyCode") or doc.get("CurrencyCode") or context.base)
    context.builder.accounts.pop(str(existing.get("Code")) if existing else "", None)
    context.builder.accounts[code] = doc
    context.builder.ledger.add_account(doc)
    context.put("Accounts", doc)
    return doc


def _save_currency(context: Context, element: dict[str, Any]) -> dict[str, Any]:
    code = str(element.get("Code", "")).upper()
    if code not in countries.CURRENCY_NAMES:
        raise ElementError(f"'{code}' is not a valid currency code")
    doc = {"Code": code, "Description": countries.CURRENCY_NAMES[code]}
    context.put("Currencies", doc)
    return doc


def _save_tax_rate(context: Context, element: dict[str, Any]) -> dict[str, Any]:
    """TaxRates PUT creates (Xero assigns `TAX001`...), POST updates by TaxType or Name; system rates
    cannot have their components changed (https://developer.xero.com/documentation/api/accounting/taxrates)."""
    rates: dict[str, dict[str, Any]] = context.extra["tax_rates"]
    existing = rates.get(str(element.get("TaxType"))) if element.get("TaxType") else None
    if existing is None and element.get("Name"):
        existing = next((r for r in rates.values() if r["Name"] == element["Name"]), None)
    name = str(element.get("Name") or (existing or {}).get("Name") or "").strip()
    if not name:
        raise ElementError("Please enter a name for this tax rate")
    components = element.get("TaxComponents", (existing or {}).get("TaxComponents"))
    if not isinstance(components, list) or not components:
        raise ElementError("At least one tax component is required")
    try:
        rate = round(sum(float(c["Rate"]) for c in components), 4)
    except (KeyError, TypeError, ValueError):
        raise ElementError("Each tax component needs a Name and a numeric Rate") from None
    system_rate = existing is not None and not str(existing.get("TaxType", "")).startswith("TAX")
    if system_rate and existing is not None and components != existing.get("TaxComponents"):
        raise ElementError(f"The system tax rate {existing['TaxType']} cannot be edited")
    doc = dict(existing or {})
    if existing is None:
        number = 1 + sum(1 for t in rates if t.startswith("TAX"))
        doc["TaxType"] = f"TAX{number:03d}"
    doc.update(
        {
            "Name": name,
            "ReportTaxType": element.get("ReportTaxType", doc.get("ReportTaxType", "OUTPUT")),
            "TaxComponents": [
                {
                    "Name": str(c.get("Name", name)),
                    "Rate": float(c["Rate"]),
                    "IsCompound": bool(c.get("IsCompound", False)),
                    "IsNonRecoverable": bool(c.get("IsNonRecoverable", False)),
                }
                for c in components
            ],
            "Status": element.get("Status", doc.get("Status", "ACTIVE")),
            "DisplayTaxRate": rate,
            "EffectiveRate": rate,
        }
    )
    for flag in (
        "CanApplyToAssets",
        "CanApplyToEquity",
        "CanApplyToExpenses",
        "CanApplyToLiabilities",
        "CanApplyToRevenue",
    ):
        doc[flag] = bool(element.get(flag, doc.get(flag, True)))
    rates[doc["TaxType"]] = doc
    context.builder.ledger.tax_names[doc["TaxType"]] = name
    context.put("TaxRates", doc)
    return doc


def _save_tracking_category(context: Context, element: dict[str, Any]) -> dict[str, Any]:
    categories = list(context.store.iter_records(context.tenant_id, "TrackingCategories"))
    record_id = element.get("TrackingCategoryID")
    existing = next((c for c in categories if c["TrackingCategoryID"] == record_id), None) if record_id else None
    if record_id and existing is None:
        raise ElementError(f"The tracking category {record_id} could not be found")
    doc = dict(existing or {"TrackingCategoryID": context.new_id(), "Options": [], "Status": "ACTIVE"})
    name = str(element.get("Name") or doc.get("Name") or "").strip()
    if not name:
        raise ElementError("Please enter a name for this tracking category")
    if any(
        c["Name"].lower() == name.lower() and c["TrackingCategoryID"] != doc["TrackingCategoryID"] for c in categories
    ):
        raise ElementError(f"The tracking category name '{name}' is already in use")
    status = element.get("Status", doc["Status"])
    active = [
        c for c in categories if c.get("Status") == "ACTIVE" and c["TrackingCategoryID"] != doc["TrackingCategoryID"]
    ]
    if status == "ACTIVE" and len(active) >= MAX_ACTIVE_TRACKING_CATEGORIES:
        raise ElementError("You can only have 2 active tracking categories")
    doc.update({"Name": name, "Status": status})
    context.put("TrackingCategories", doc)
    return doc


def _tracking_option(context: Context, route: WriteRoute, payload: Any) -> dict[str, Any]:
    category = context.get("TrackingCategories", route.record_ref or "")
    if category is None:
        raise accounting.not_found()
    options = category.setdefault("Options", [])
    if route.method == "DELETE":
        option = next((o for o in options if o["TrackingOptionID"] == route.sub_ref), None)
        if option is None:
            raise accounting.not_found()
        # Xero deletes an unused option outright; one in use would be archived instead (not modelled).
        options.remove(option)
        with context.store.transaction():
            context.put("TrackingCategories", category)
            context.builder.flush()
        return {**option, "Status": "DELETED"}
    element = _elements(payload, "Options")[0]
    name = str(element.get("Name") or "").strip()
    if route.kind == "options":
        if not name:
            raise _validation_exception([{**element, "ValidationErrors": [{"Message": "Please enter a name"}]}])
        if any(o["Name"].lower() == name.lower() for o in options):
            message = f"The tracking option name '{name}' is already in use"
            raise _validation_exception([{**element, "ValidationErrors": [{"Message": message}]}])
        option = {"TrackingOptionID": context.new_id(), "Name": name, "Status": "ACTIVE"}
        options.append(option)
    else:
        option = next((o for o in options if o["TrackingOptionID"] == route.sub_ref), None)
        if option is None:
            raise accounting.not_found()
        option.update({k: element[k] for k in ("Name", "Status") if k in element})
    with context.store.transaction():
        context.put("TrackingCategories", category)
        context.builder.flush()
    return {**option, "TrackingCategoryID": category["TrackingCategoryID"]}


# ---------------------------------------------------------------------------------------------
# Contacts, groups, items


def _save_contact_group(context: Context, element: dict[str, Any]) -> dict[str, Any]:
    record_id = element.get("ContactGroupID")
    existing = context.get("ContactGroups", str(record_id)) if record_id else None
    if record_id and existing is None:
        raise ElementError(f"The contact group {record_id} could not be found")
    doc = dict(existing or {"ContactGroupID": context.new_id(), "Status": "ACTIVE", "Contacts": []})
    name = str(element.get("Name") or doc.get("Name") or "").strip()
    if not name:
        raise ElementError("Please enter a name for this contact group")
    for other in context.find("ContactGroups", "record_id<>?", (doc["ContactGroupID"],)):
        if other.get("Status") == "ACTIVE" and other["Name"].lower() == name.lower():
            raise ElementError(f"The contact group name '{name}' is already in use")
    status = element.get("Status", doc["Status"])
    if status not in ("ACTIVE", "DELETED"):
        raise ElementError("Status must be ACTIVE or DELETED")
    doc.update({"Name": name, "Status": status})
    context.put("ContactGroups", doc)
    return doc


def _group_contacts(context: Context, route: WriteRoute, payload: Any) -> list[dict[str, Any]]:
    group = context.get("ContactGroups", route.record_ref or "")
    if group is None:
        raise accounting.not_found()
    members: list[dict[str, Any]] = group.setdefault("Contacts", [])
    if route.method == "PUT":
        added = []
        for element in _elements(payload, "Contacts"):
            contact = context.get("Contacts", str(element.get("ContactID")))
            if contact is None:
                message = f"The contact with ContactID {element.get('ContactID')} could not be found"
                raise _validation_exception([{**element, "ValidationErrors": [{"Message": message}]}])
            if not any(m["ContactID"] == contact["ContactID"] for m in members):
                members.append({"ContactID": contact["ContactID"], "Name": contact["Name"]})
            added.append({"ContactID": contact["ContactID"], "Name": contact["Name"]})
        result = added
    else:
        removed = [m for m in members if route.kind == "group_contacts" or m["ContactID"] == route.sub_ref]
        group["Contacts"] = [m for m in members if m not in removed]
        result = removed
    with context.store.transaction():
        context.put("ContactGroups", group)
        context.builder.flush()
    return result


_CONTACT_FIELDS = (
    "ContactNumber",
    "AccountNumber",
    "FirstName",
    "LastName",
    "EmailAddress",
    "BankAccountDetails",
    "TaxNumber",
    "Addresses",
    "Phones",
    "ContactPersons",
    "DefaultCurrency",
    "SalesDefaultAccountCode",
    "PurchasesDefaultAccountCode",
    "AccountsReceivableTaxType",
    "AccountsPayableTaxType",
    "Website",
    "CompanyNumber",
    "PaymentTerms",
)


def _save_contact(context: Context, element: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    record_id = element.get("ContactID")
    existing = context.get("Contacts", str(record_id)) if record_id else None
    if record_id and existing is None:
        raise ElementError(f"The contact with ContactID {record_id} could not be found")
    doc = dict(
        existing
        or {
            "ContactID": context.new_id(),
            "ContactStatus": "ACTIVE",
            "Addresses": [],
            "Phones": [],
            "ContactGroups": [],
            "ContactPersons": [],
            "IsSupplier": False,
            "IsCustomer": False,
            "HasAttachments": False,
            "HasValidationErrors": False,
        }
    )
    name = str(element.get("Name", doc.get("Name", "")) or "").strip()
    if not name:
        raise ElementError("The contact name must be specified")
    if len(name) > 255:
        raise ElementError("The contact name must be 255 characters or fewer")
    clash = context.find(
        "Contacts",
        "lower(json_extract(doc, '$.Name'))=lower(?) AND record_id<>? AND status<>'ARCHIVED'",
        (name, doc["ContactID"]),
    )
    if clash:
        # https://developer.xero.com/documentation/api/accounting/contacts: names are unique per organisation.
        raise ElementError(
            f"The contact name {name} is already assigned to another contact."
            " The contact name must be unique across all active contacts."
        )
    status = element.get("ContactStatus", doc["ContactStatus"])
    if status not in ("ACTIVE", "ARCHIVED", "GDPRREQUEST"):
        raise ElementError("ContactStatus must be ACTIVE or ARCHIVED")
    currency = element.get("DefaultCurrency")
    if currency and currency != context.base and context.get("Currencies", str(currency)) is None:
        raise ElementError(f"The currency {currency} has not been enabled for this organisation")
    doc["Name"] = name
    doc["ContactStatus"] = status
    for key in _CONTACT_FIELDS:
        if key in element:
            doc[key] = element[key]
    for flag in ("IsSupplier", "IsCustomer"):
        if flag in element:
            doc[flag] = bool(element[flag])
    doc["UpdatedDateUTC"] = ms_date(context.now_ms)
    context.put("Contacts", doc)
    if existing is None:
        context.note("Contacts", doc["ContactID"], "Created", f"Contact {name} created.")
    elif status == "ARCHIVED" and existing.get("ContactStatus") != "ARCHIVED":
        context.note("Contacts", doc["ContactID"], "Archived", f"Contact {name} archived.")
    else:
        context.note("Contacts", doc["ContactID"], "Edited", f"Contact {name} edited.")
    return doc


def _save_item(context: Context, element: dict[str, Any]) -> dict[str, Any]:
    record_id = element.get("ItemID")
    existing = context.get("Items", str(record_id)) if record_id else None
    if existing is None and not record_id and element.get("Code"):
        found = context.find("Items", "number=?", (str(element["Code"]),))
        existing = found[0] if found else None  # POST by Code updates (https://developer.xero.com/.../items)
    if record_id and existing is None:
        raise ElementError(f"The item {record_id} could not be found")
    doc = dict(existing or {"ItemID": context.new_id(), "IsTrackedAsInventory": False})
    code = str(element.get("Code", doc.get("Code", "")) or "").strip()
    if not code:
        raise ElementError("Item code is required")
    if len(code) > 30:
        raise ElementError("Item code must be 30 characters or fewer")
    if context.find("Items", "number=? AND record_id<>?", (code, doc["ItemID"])):
        raise ElementError(f"Item code '{code}' already exists")
    for key in ("SalesDetails", "PurchaseDetails"):
        details = element.get(key)
        if isinstance(details, dict):
            if details.get("AccountCode"):
                _account(context, None, code=details["AccountCode"])
            if details.get("TaxType"):
                _tax_rate(context, details["TaxType"])
            doc[key] = {**doc.get(key, {}), **details}
    for key in ("Name", "Description", "PurchaseDescription", "IsSold", "IsPurchased"):
        if key in element:
            doc[key] = element[key]
    doc.setdefault("Name", code)
    doc.setdefault("IsSold", "SalesDetails" in doc)
    doc.setdefault("IsPurchased", "PurchaseDetails" in doc)
    doc["Code"] = code
    doc["UpdatedDateUTC"] = ms_date(context.now_ms)
    context.put("Items", doc)
    return doc


# ---------------------------------------------------------------------------------------------
# Invoices, bills and credit notes


_INVOICE_TYPES = {"Invoices": ("ACCREC", "ACCPAY"), "CreditNotes": ("ACCRECCREDIT", "ACCPAYCREDIT")}
_STATUSES_IN = ("DRAFT", "SUBMITTED", "AUTHORISED")


def _save_invoice_like(context: Context, element: dict[str, Any], endpoint: str) -> dict[str, Any]:
    invoices = endpoint == "Invoices"
    id_field = "InvoiceID" if invoices else "CreditNoteID"
    number_field = "InvoiceNumber" if invoices else "CreditNoteNumber"
    record_id = element.get(id_field)
    existing = context.get(endpoint, str(record_id)) if record_id else None
    if existing is None and not record_id and element.get(number_field) and set(element) <= {number_field, "Status"}:
        found = context.find(endpoint, "number=?", (str(element[number_field]),))
        existing = found[0] if found else None
    if record_id and existing is None:
        raise ElementError(f"The {endpoint[:-1]} {record_id} could not be found")
    if existing is not None:
        return _update_invoice_like(context, element, endpoint, existing)
    kind = str(element.get("Type") or "")
    if kind not in _INVOICE_TYPES[endpoint]:
        raise ElementError(f"Type must be one of {', '.join(_INVOICE_TYPES[endpoint])}")
    status = str(element.get("Status") or "DRAFT")
    if status not in _STATUSES_IN:
        raise ElementError(f"A new document can be DRAFT, SUBMITTED or AUTHORISED, not {status}")
    contact = _contact(context, element.get("Contact"))
    date_ms = _parse_date(element["Date"]) if element.get("Date") else day_start(context.now_ms)
    if status == "AUTHORISED":
        _check_lock(context, date_ms)
    lat = _line_amount_types(element)
    currency, rate = _currency(context, element, date_ms)
    items = _line_items(context, element, line_amount_types=lat)
    sub, tax, total = OrgBuilder.totals(items, lat)
    number = str(element.get(number_field) or "")
    receivable = kind in ("ACCREC", "ACCRECCREDIT")
    if receivable and not number:
        prefix, key = ("INV", "INV") if invoices else ("CN", "CN")
        number = f"{prefix}-{context.builder.next_number(key):05d}"
        _save_counters(context)
    if receivable and context.find(endpoint, "number=? AND status<>'DELETED' AND type=?", (number, kind)):
        # Sales invoice and credit note numbers must be unique; Xero allows repeated bill numbers.
        label = "Invoice" if invoices else "Credit Note"
        raise ElementError(f"{label} # must be unique.")
    doc: dict[str, Any] = {
        "Type": kind,
        id_field: context.new_id(),
        number_field: number,
        "Reference": str(element.get("Reference") or ""),
        "Payments": [],
        "CurrencyRate": rate,
        "HasAttachments": False,
        "HasErrors": False,
        "Contact": _contact_ref(contact),
        "DateString": iso_date(date_ms),
        "Date": ms_date(date_ms),
        "Status": "DRAFT" if status == "AUTHORISED" else status,
        "LineAmountTypes": lat,
        "LineItems": items,
        "SubTotal": sub,
        "TotalTax": tax,
        "Total": total,
        "UpdatedDateUTC": ms_date(context.now_ms),
        "CurrencyCode": currency,
        "SentToContact": bool(element.get("SentToContact", False)),
    }
    if invoices:
        due_ms = _parse_date(element["DueDate"]) if element.get("DueDate") else None
        if due_ms is None and status != "DRAFT":
            raise ElementError("Due Date is required")
        if due_ms is not None:
            doc["DueDateString"] = iso_date(due_ms)
            doc["DueDate"] = ms_date(due_ms)
        doc.update(CreditNotes=[], Prepayments=[], Overpayments=[], AmountDue=total, AmountPaid=0.0, AmountCredited=0.0)
        doc["IsDiscounted"] = any("DiscountRate" in li for li in items)
    else:
        doc.update(RemainingCredit=total, Allocations=[], ID=doc[id_field])
    if element.get("BrandingThemeID"):
        doc["BrandingThemeID"] = element["BrandingThemeID"]
    if element.get("Url"):
        doc["Url"] = element["Url"]
    context.put(endpoint, doc, date_ms)
    label = {"ACCREC": "Invoice", "ACCPAY": "Bill"}.get(kind, "Credit note")
    context.note(endpoint, doc[id_field], "Created", f"{label} {number} for {total:,.2f} created via the API.")
    if status == "AUTHORISED":
        context.builder._approve(doc, context.now_ms, endpoint)
    return doc


def _save_counters(context: Context) -> None:
    key = f"org_state:{context.tenant_id}"
    state = context.store.get_config(key, {}) or {}
    context.store.set_config(key, {**state, "counters": context.builder.counters})


def _update_invoice_like(
    context: Context, element: dict[str, Any], endpoint: str, doc: dict[str, Any]
) -> dict[str, Any]:
    """Status changes and edits as Xero allows them: drafts change freely; an AUTHORISED document with nothing
    paid can be edited (reversal + new journal) or VOIDED; DELETED only from DRAFT/SUBMITTED; PAID and VOIDED
    documents refuse changes (https://developer.xero.com/documentation/api/accounting/invoices)."""
    id_field = "InvoiceID" if endpoint == "Invoices" else "CreditNoteID"
    record_id = doc[id_field]
    current = doc["Status"]
    wanted = str(element.get("Status") or current)
    if current in ("PAID", "VOIDED", "DELETED"):
        raise ElementError(f"This document cannot be edited as it has a status of {current}.")
    has_money = bool(doc.get("Payments") or doc.get("Allocations") or to_cents(doc.get("AmountCredited", 0.0)))
    if wanted == "DELETED":
        if current not in ("DRAFT", "SUBMITTED"):
            raise ElementError("Only DRAFT or SUBMITTED documents can be deleted; void an approved document instead")
        context.builder.delete_draft(doc, context.now_ms)
        return doc
    if wanted == "VOIDED":
        if current != "AUTHORISED":
            raise ElementError("Only AUTHORISED documents can be voided; delete a draft instead")
        if has_money:
            raise ElementError(
                "This document cannot be voided as it has payments or credits allocated to it. Remove them first."
            )
        _check_lock(context, parse_ms_date(doc["Date"]))
        context.builder.void(doc, context.now_ms)
        return doc
    if wanted not in _STATUSES_IN:
        raise ElementError(f"Status {wanted} is not valid here")
    if current == "AUTHORISED" and wanted != "AUTHORISED":
        raise ElementError("An approved document cannot go back to DRAFT or SUBMITTED")
    content_keys = {"LineItems", "Contact", "Date", "CurrencyCode", "CurrencyRate", "LineAmountTypes"}
    editing_money = any(k in element for k in content_keys)
    if current == "AUTHORISED" and editing_money and has_money:
        raise ElementError("This document has payments or credits applied and its amounts cannot be changed")
    if current == "AUTHORISED" or wanted == "AUTHORISED":
        date_ms = _parse_date(element["Date"]) if element.get("Date") else parse_ms_date(doc["Date"])
        _check_lock(context, date_ms)
    if editing_money:
        lat = _line_amount_types(element, doc["LineAmountTypes"])
        date_ms = _parse_date(element["Date"]) if element.get("Date") else parse_ms_date(doc["Date"])
        source = {**doc, **element, "LineAmountTypes": lat}
        items = _line_items(context, source, line_amount_types=lat)
        currency, rate = _currency(context, source, date_ms)
        contact = _contact(context, element["Contact"]) if "Contact" in element else None
        sub, tax, total = OrgBuilder.totals(items, lat)
        if current == "AUTHORISED":
            context.builder.ledger.reverse(
                record_id, source_type=doc["Type"], date_ms=day_start(context.now_ms), created_ms=context.now_ms
            )
        doc.update(
            LineItems=items,
            LineAmountTypes=lat,
            SubTotal=sub,
            TotalTax=tax,
            Total=total,
            CurrencyCode=currency,
            CurrencyRate=rate,
            Date=ms_date(date_ms),
            DateString=iso_date(date_ms),
        )
        if contact is not None:
            doc["Contact"] = _contact_ref(contact)
        if "AmountDue" in doc:
            doc["AmountDue"] = total
        if "RemainingCredit" in doc:
            doc["RemainingCredit"] = total
        if current == "AUTHORISED":
            context.builder.ledger.post_invoice(doc, created_ms=context.now_ms)
    for key in ("Reference", "SentToContact", "BrandingThemeID", "Url"):
        if key in element:
            doc[key] = element[key]
    if element.get("DueDate"):
        due = _parse_date(element["DueDate"])
        doc.update(DueDate=ms_date(due), DueDateString=iso_date(due))
    doc["UpdatedDateUTC"] = ms_date(context.now_ms)
    if wanted == "AUTHORISED" and current != "AUTHORISED":
        if endpoint == "Invoices" and not doc.get("DueDate"):
            raise ElementError("Due Date is required")
        doc["Status"] = wanted
        context.builder._approve(doc, context.now_ms, endpoint)
    else:
        doc["Status"] = wanted
        context.put(endpoint, doc, parse_ms_date(doc["Date"]))
        context.note(endpoint, record_id, "Edited", "Edited via the API.")
    return doc


# ---------------------------------------------------------------------------------------------
# Payments, allocations


def _save_payment(context: Context, element: dict[str, Any]) -> dict[str, Any]:
    if element.get("PaymentID"):
        deleting = context.get("Payments", str(element["PaymentID"]))
        if deleting is None:
            raise ElementError(f"The payment {element['PaymentID']} could not be found")
        if element.get("Status") != "DELETED":
            raise ElementError("A payment can only be deleted (Status DELETED); it cannot be edited")
        if deleting["Status"] == "DELETED":
            raise ElementError("This payment has already been deleted")
        invoice_id = (deleting.get("Invoice") or {}).get("InvoiceID")
        invoice = context.get("Invoices", invoice_id) if invoice_id else None
        if invoice is None:
            raise ElementError("Only payments on invoices and bills can be deleted in the sandbox")
        context.builder.delete_payment(deleting, invoice, context.now_ms)
        return deleting
    target_ref = element.get("Invoice") or element.get("CreditNote")
    if not isinstance(target_ref, dict):
        raise ElementError("A payment needs an Invoice or CreditNote")
    invoice_side = "Invoice" in element
    endpoint = "Invoices" if invoice_side else "CreditNotes"
    id_field = "InvoiceID" if invoice_side else "CreditNoteID"
    number_field = "InvoiceNumber" if invoice_side else "CreditNoteNumber"
    target = None
    if target_ref.get(id_field):
        target = context.get(endpoint, str(target_ref[id_field]))
    elif target_ref.get(number_field):
        found = context.find(endpoint, "number=?", (str(target_ref[number_field]),))
        target = found[0] if found else None
    if target is None:
        raise ElementError(f"The {endpoint[:-1]} could not be found")
    if target["Status"] != "AUTHORISED":
        raise ElementError(f"Payments can only be made against AUTHORISED documents; this one is {target['Status']}")
    account = _bank_account(context, element.get("Account"), "Account")
    date_ms = _parse_date(element["Date"]) if element.get("Date") else day_start(context.now_ms)
    _check_lock(context, date_ms)
    amount = round(_number(element.get("Amount"), "Amount"), 2)
    if amount <= 0:
        raise ElementError("Payment amount must be greater than zero")
    due_cents = context.builder.due_cents(target) if invoice_side else to_cents(target.get("RemainingCredit", 0.0))
    if to_cents(amount) > due_cents:
        raise ElementError("Payment amount exceeds the amount outstanding on this document")
    rate = _number(element.get("CurrencyRate"), "CurrencyRate", default=target.get("CurrencyRate") or 1.0)
    currency = target["CurrencyCode"]
    bank_currency = account.get("CurrencyCode", context.base)
    if bank_currency not in (currency, context.base):
        raise ElementError(f"A {currency} document cannot be paid from a {bank_currency} account")
    bank_amount = amount if bank_currency == currency else round(amount / (rate or 1.0), 2)
    kinds = {
        "ACCREC": "ACCRECPAYMENT",
        "ACCPAY": "ACCPAYPAYMENT",
        "ACCRECCREDIT": "ARCREDITPAYMENT",
        "ACCPAYCREDIT": "APCREDITPAYMENT",
    }
    payment: dict[str, Any] = {
        "PaymentID": context.new_id(),
        "Date": ms_date(date_ms),
        "BankAmount": bank_amount,
        "Amount": amount,
        "Reference": str(element.get("Reference") or ""),
        "CurrencyRate": rate,
        "PaymentType": kinds[target["Type"]],
        "Status": "AUTHORISED",
        "UpdatedDateUTC": ms_date(context.now_ms),
        "HasAccount": True,
        "IsReconciled": bool(element.get("IsReconciled", False)),
        "Account": {"AccountID": account["AccountID"], "Code": account["Code"]},
        "HasValidationErrors": False,
    }
    contact = {"ContactID": target["Contact"]["ContactID"], "Name": target["Contact"]["Name"]}
    if invoice_side:
        payment["Invoice"] = {
            "Type": target["Type"],
            "InvoiceID": target["InvoiceID"],
            "InvoiceNumber": target["InvoiceNumber"],
            "Contact": contact,
            "CurrencyCode": currency,
            "HasErrors": False,
            "IsDiscounted": False,
        }
    else:
        payment["CreditNote"] = {
            "CreditNoteNumber": target["CreditNoteNumber"],
            "CreditNoteID": target["CreditNoteID"],
            "Type": target["Type"],
            "Contact": contact,
        }
    context.put("Payments", payment, date_ms)
    context.builder.ledger.post_payment(payment, document_rate=target.get("CurrencyRate"), created_ms=context.now_ms)
    target["Payments"].append(
        {
            "PaymentID": payment["PaymentID"],
            "Date": payment["Date"],
            "Amount": amount,
            "Reference": payment["Reference"],
            "CurrencyRate": rate,
            "HasAccount": False,
            "HasValidationErrors": False,
        }
    )
    if invoice_side:
        target["AmountPaid"] = from_cents(to_cents(target["AmountPaid"]) + to_cents(amount))
        context.builder._settle(target, context.now_ms)
    else:
        remaining = to_cents(target["RemainingCredit"]) - to_cents(amount)
        target["RemainingCredit"] = from_cents(remaining)
        target["UpdatedDateUTC"] = ms_date(context.now_ms)
        if remaining == 0:
            target["Status"] = "PAID"
            target["FullyPaidOnDate"] = ms_date(date_ms)
        context.put("CreditNotes", target, parse_ms_date(target["Date"]))
    context.note("Payments", payment["PaymentID"], "Created", f"Payment of {amount:,.2f} created via the API.")
    return payment


def _allocation(context: Context, name: str, record_id: str, element: dict[str, Any]) -> dict[str, Any]:
    endpoint = {"CreditNotes": "CreditNotes", "Prepayments": "Prepayments", "Overpayments": "Overpayments"}[name]
    credit = context.get(endpoint, record_id)
    if credit is None:
        raise ElementError(f"The {endpoint[:-1]} {record_id} could not be found")
    invoice_ref = element.get("Invoice") or {}
    invoice = context.get("Invoices", str(invoice_ref.get("InvoiceID"))) if invoice_ref.get("InvoiceID") else None
    if invoice is None:
        raise ElementError("The invoice to allocate to could not be found")
    amount = round(_number(element.get("Amount"), "Amount"), 2)
    if amount <= 0:
        raise ElementError("Allocation amount must be greater than zero")
    if credit["Status"] != "AUTHORISED" or invoice["Status"] != "AUTHORISED":
        raise ElementError("Both the credit and the invoice must be AUTHORISED")
    if credit["Contact"]["ContactID"] != invoice["Contact"]["ContactID"]:
        raise ElementError("The credit and the invoice must be for the same contact")
    if to_cents(amount) > to_cents(credit["RemainingCredit"]):
        raise ElementError("The amount being allocated exceeds the remaining credit")
    if to_cents(amount) > context.builder.due_cents(invoice):
        raise ElementError("The amount being allocated exceeds the amount due on the invoice")
    date_ms = _parse_date(element["Date"]) if element.get("Date") else day_start(context.now_ms)
    _check_lock(context, date_ms)
    before = len(credit.get("Allocations", []))
    if endpoint == "CreditNotes":
        # Allocate exactly `amount`: the builder allocates min(remaining, due), so narrow it temporarily.
        remaining = credit["RemainingCredit"]
        credit["RemainingCredit"] = amount
        ok = context.builder.allocate_credit_note(credit, invoice, context.now_ms)
        credit["RemainingCredit"] = from_cents(to_cents(remaining) - to_cents(amount))
        if ok and credit["RemainingCredit"] != 0 and credit["Status"] == "PAID":
            credit["Status"] = "AUTHORISED"
            credit.pop("FullyPaidOnDate", None)
        elif ok and credit["RemainingCredit"] == 0 and credit["Status"] != "PAID":
            credit["Status"] = "PAID"
        context.put("CreditNotes", credit, parse_ms_date(credit["Date"]))
    else:
        if endpoint == "Prepayments" and to_cents(amount) != to_cents(credit["RemainingCredit"]):
            raise ElementError("A prepayment is allocated whole in the sandbox")
        remaining = credit["RemainingCredit"]
        credit["RemainingCredit"] = amount
        # The allocation is dated as asked (its journal too): Allocations take a Date (SPEC Allocation.Date).
        ok = context.builder.allocate_credit(credit, invoice, context.now_ms, date_ms=date_ms)
        credit["RemainingCredit"] = from_cents(to_cents(remaining) - to_cents(amount))
        if credit["RemainingCredit"] != 0:
            credit["Status"] = "AUTHORISED"
        context.put(endpoint, credit, parse_ms_date(credit["Date"]))
    if not ok:
        raise ElementError("The credit could not be allocated (currency or rate differs from the invoice)")
    allocation = credit["Allocations"][before]
    return {
        "AllocationID": allocation["AllocationID"],
        "Amount": amount,
        "Date": allocation["Date"],
        "Invoice": {"InvoiceID": invoice["InvoiceID"], "InvoiceNumber": invoice["InvoiceNumber"]},
        "IsDeleted": False,
    }


# ---------------------------------------------------------------------------------------------
# Bank transactions, transfers, manual journals


_BANK_TYPES = ("RECEIVE", "SPEND", "RECEIVE-PREPAYMENT", "SPEND-PREPAYMENT", "RECEIVE-OVERPAYMENT", "SPEND-OVERPAYMENT")


def _save_bank_transaction(context: Context, element: dict[str, Any]) -> dict[str, Any]:
    if element.get("BankTransactionID"):
        current = context.get("BankTransactions", str(element["BankTransactionID"]))
        if current is None:
            raise ElementError(f"The bank transaction {element['BankTransactionID']} could not be found")
        if current["Status"] == "DELETED":
            raise ElementError("This bank transaction has been deleted and cannot be edited")
        if element.get("Status") == "DELETED":
            if current.get("IsReconciled"):
                raise ElementError("A reconciled bank transaction cannot be deleted")
            current["Status"] = "DELETED"
            current["UpdatedDateUTC"] = ms_date(context.now_ms)
            context.builder.ledger.reverse(
                current["BankTransactionID"],
                source_type="CASHPAID" if current["Type"].startswith("SPEND") else "CASHREC",
                date_ms=day_start(context.now_ms),
                created_ms=context.now_ms,
            )
            context.put("BankTransactions", current, parse_ms_date(current["Date"]))
            return current
        for key in ("Reference", "IsReconciled", "Url"):
            if key in element:
                current[key] = element[key]
        current["UpdatedDateUTC"] = ms_date(context.now_ms)
        context.put("BankTransactions", current, parse_ms_date(current["Date"]))
        return current
    kind = str(element.get("Type") or "")
    if kind not in _BANK_TYPES:
        raise ElementError(f"Type must be one of {', '.join(_BANK_TYPES)}")
    contact = _contact(context, element.get("Contact"))
    bank = _bank_account(context, element.get("BankAccount"))
    if bank["Type"] != "BANK":
        raise ElementError("BankAccount must be a bank account")
    date_ms = _parse_date(element["Date"]) if element.get("Date") else day_start(context.now_ms)
    _check_lock(context, date_ms)
    lat = _line_amount_types(element)
    currency, rate = _currency(context, element, date_ms)
    if bank.get("CurrencyCode", context.base) != currency:
        raise ElementError(f"The bank account's currency {bank.get('CurrencyCode')} differs from {currency}")
    items = _line_items(context, element, line_amount_types=lat)
    sub, tax, total = OrgBuilder.totals(items, lat)
    status = str(element.get("Status") or "AUTHORISED")
    if status != "AUTHORISED":
        raise ElementError("A new bank transaction is AUTHORISED")
    doc: dict[str, Any] = {
        "BankTransactionID": context.new_id(),
        "Type": kind,
        "Contact": _contact_ref(contact),
        "BankAccount": {"AccountID": bank["AccountID"], "Code": bank["Code"], "Name": bank["Name"]},
        "IsReconciled": bool(element.get("IsReconciled", False)),
        "Date": ms_date(date_ms),
        "DateString": iso_date(date_ms),
        "Reference": str(element.get("Reference") or ""),
        "CurrencyCode": currency,
        "CurrencyRate": rate,
        "Status": "AUTHORISED",
        "LineAmountTypes": lat,
        "LineItems": items,
        "SubTotal": sub,
        "TotalTax": tax,
        "Total": total,
        "UpdatedDateUTC": ms_date(context.now_ms),
        "HasAttachments": False,
    }
    if kind.endswith("PREPAYMENT"):
        doc["PrepaymentID"] = context.new_id()
    elif kind.endswith("OVERPAYMENT"):
        doc["OverpaymentID"] = context.new_id()
    if element.get("Url"):
        doc["Url"] = element["Url"]
    context.put("BankTransactions", doc, date_ms)
    context.builder.ledger.post_bank_transaction(doc, created_ms=context.now_ms)
    context.note(
        "BankTransactions",
        doc["BankTransactionID"],
        "Created",
        f"Bank transaction for {total:,.2f} created via the API.",
    )
    if "PrepaymentID" in doc or "OverpaymentID" in doc:
        context.builder._credit_from_bank(doc, context.now_ms)
    return doc


def _save_bank_transfer(context: Context, element: dict[str, Any]) -> dict[str, Any]:
    if element.get("BankTransferID"):
        # Xero has no update for a bank transfer: PUT creates, POST only deletes (Status DELETED; SPEC
        # deleteBankTransfers); anything else is refused. https://developer.xero.com/documentation/api/accounting/banktransfers
        existing = context.get("BankTransfers", str(element["BankTransferID"]))
        if existing is None:
            raise ElementError(f"The bank transfer {element['BankTransferID']} could not be found")
        if element.get("Status") != "DELETED":
            raise ElementError("A bank transfer cannot be edited; it can only be created or deleted")
        if existing.get("Status") == "DELETED":
            raise ElementError("This bank transfer has already been deleted")
        date_ms = parse_ms_date(existing["Date"])
        _check_lock(context, date_ms)
        existing.update(Status="DELETED", UpdatedDateUTC=ms_date(context.now_ms))
        context.put("BankTransfers", existing, date_ms)
        context.builder.ledger.reverse(
            existing["BankTransferID"],
            source_type="TRANSFER",
            date_ms=day_start(context.now_ms),
            created_ms=context.now_ms,
        )
        return existing
    source = _bank_account(context, element.get("FromBankAccount"), "FromBankAccount")
    target = _bank_account(context, element.get("ToBankAccount"), "ToBankAccount")
    if source["AccountID"] == target["AccountID"]:
        raise ElementError("The From and To bank accounts must be different")
    amount = round(_number(element.get("Amount"), "Amount"), 2)
    if amount <= 0:
        raise ElementError("Amount must be greater than zero")
    date_ms = _parse_date(element["Date"]) if element.get("Date") else day_start(context.now_ms)
    _check_lock(context, date_ms)
    doc = {
        "BankTransferID": context.new_id(),
        "FromBankAccount": {"AccountID": source["AccountID"], "Code": source["Code"], "Name": source["Name"]},
        "ToBankAccount": {"AccountID": target["AccountID"], "Code": target["Code"], "Name": target["Name"]},
        "Amount": amount,
        "Date": ms_date(date_ms),
        "DateString": iso_date(date_ms),
        "CurrencyRate": _number(element.get("CurrencyRate"), "CurrencyRate", default=1.0),
        "FromBankTransactionID": context.new_id(),
        "ToBankTransactionID": context.new_id(),
        "FromIsReconciled": bool(element.get("FromIsReconciled", False)),
        "ToIsReconciled": bool(element.get("ToIsReconciled", False)),
        "Reference": str(element.get("Reference") or ""),
        "HasAttachments": False,
        "CreatedDateUTC": ms_date(context.now_ms),
        "Status": "AUTHORISED",
    }
    context.put("BankTransfers", doc, date_ms)
    context.builder.ledger.post_bank_transfer(doc, created_ms=context.now_ms)
    return doc


def _save_manual_journal(context: Context, element: dict[str, Any]) -> dict[str, Any]:
    existing = None
    if element.get("ManualJournalID"):
        existing = context.get("ManualJournals", str(element["ManualJournalID"]))
        if existing is None:
            raise ElementError(f"The manual journal {element['ManualJournalID']} could not be found")
        if existing["Status"] in ("VOIDED", "DELETED"):
            raise ElementError(f"This manual journal cannot be edited as it has a status of {existing['Status']}.")
        wanted = element.get("Status", existing["Status"])
        if wanted == "VOIDED":
            if existing["Status"] != "POSTED":
                raise ElementError("Only POSTED manual journals can be voided")
            _check_lock(context, parse_ms_date(existing["Date"]))
            context.builder.void_manual_journal(existing, context.now_ms)
            return existing
        if wanted == "DELETED":
            if existing["Status"] != "DRAFT":
                raise ElementError("Only DRAFT manual journals can be deleted")
            existing.update(Status="DELETED", UpdatedDateUTC=ms_date(context.now_ms))
            context.put("ManualJournals", existing, parse_ms_date(existing["Date"]))
            return existing
    narration = str(element.get("Narration", (existing or {}).get("Narration", "")) or "").strip()
    if not narration:
        raise ElementError("Narration cannot be empty")
    raw_lines = element.get("JournalLines", (existing or {}).get("JournalLines"))
    if not isinstance(raw_lines, list) or len(raw_lines) < 2:
        raise ElementError("A manual journal needs at least two journal lines")
    lines = []
    for raw in raw_lines:
        account = _account(context, {"AccountID": raw.get("AccountID")}, code=raw.get("AccountCode"))
        amount = round(_number(raw.get("LineAmount"), "LineAmount"), 2)
        tax_type = raw.get("TaxType") or context.builder.profile.none_tax
        _tax_rate(context, tax_type)
        lines.append(
            {
                "LineAmount": amount,
                "AccountCode": account["Code"],
                "AccountID": account["AccountID"],
                "Description": str(raw.get("Description") or ""),
                "TaxType": tax_type,
                "TaxAmount": round(_number(raw.get("TaxAmount"), "TaxAmount", default=0.0), 2),
                "IsBlank": False,
                "Tracking": _tracking(context, raw.get("Tracking")),
            }
        )
    debits = sum(to_cents(li["LineAmount"]) for li in lines if li["LineAmount"] > 0)
    credits = -sum(to_cents(li["LineAmount"]) for li in lines if li["LineAmount"] < 0)
    if debits != credits:
        raise ElementError(
            f"The total debits ({from_cents(debits):.2f}) must equal total credits ({from_cents(credits):.2f})"
        )
    date_ms = (
        _parse_date(element["Date"])
        if element.get("Date")
        else (parse_ms_date(existing["Date"]) if existing else day_start(context.now_ms))
    )
    status = str(element.get("Status") or (existing or {}).get("Status") or "DRAFT")
    if status not in ("DRAFT", "POSTED"):
        raise ElementError("Status must be DRAFT or POSTED")
    if status == "POSTED":
        _check_lock(context, date_ms)
    doc: dict[str, Any] = dict(existing or {"ManualJournalID": context.new_id(), "HasAttachments": False})
    was_posted = existing is not None and existing["Status"] == "POSTED"
    doc.update(
        {
            "Narration": narration,
            "Date": ms_date(date_ms),
            "DateString": iso_date(date_ms),
            "Status": status,
            "LineAmountTypes": str(element.get("LineAmountTypes") or doc.get("LineAmountTypes") or "NoTax"),
            "ShowOnCashBasisReports": bool(
                element.get("ShowOnCashBasisReports", doc.get("ShowOnCashBasisReports", True))
            ),
            "UpdatedDateUTC": ms_date(context.now_ms),
            "JournalLines": lines,
        }
    )
    if element.get("Url"):
        doc["Url"] = element["Url"]
    context.put("ManualJournals", doc, date_ms)
    if was_posted:
        context.builder.ledger.reverse(
            doc["ManualJournalID"],
            source_type="MANJOURNAL",
            date_ms=day_start(context.now_ms),
            created_ms=context.now_ms,
        )
    if status == "POSTED":
        context.builder.ledger.post_manual_journal(doc, created_ms=context.now_ms)
    context.note("ManualJournals", doc["ManualJournalID"], "Created" if existing is None else "Edited", narration)
    return doc


# ---------------------------------------------------------------------------------------------
# Documents without journals: purchase orders and quotes


_ORDER_STATUSES = {
    "PurchaseOrders": ("DRAFT", "SUBMITTED", "AUTHORISED", "BILLED", "DELETED"),
    "Quotes": ("DRAFT", "SENT", "DECLINED", "ACCEPTED", "INVOICED", "DELETED"),
}


def _save_order_like(context: Context, element: dict[str, Any], endpoint: str) -> dict[str, Any]:
    id_field = "PurchaseOrderID" if endpoint == "PurchaseOrders" else "QuoteID"
    number_field = "PurchaseOrderNumber" if endpoint == "PurchaseOrders" else "QuoteNumber"
    existing = context.get(endpoint, str(element[id_field])) if element.get(id_field) else None
    if element.get(id_field) and existing is None:
        raise ElementError(f"The {endpoint[:-1]} {element[id_field]} could not be found")
    doc: dict[str, Any] = dict(existing or {id_field: context.new_id(), "HasAttachments": False})
    status = str(element.get("Status") or doc.get("Status") or "DRAFT")
    if status not in _ORDER_STATUSES[endpoint]:
        raise ElementError(f"Status must be one of {', '.join(_ORDER_STATUSES[endpoint])}")
    if existing and existing["Status"] in ("DELETED", "BILLED", "INVOICED"):
        raise ElementError(f"This document cannot be edited as it has a status of {existing['Status']}.")
    source = {**doc, **element}
    contact = _contact(context, source.get("Contact"))
    date_ms = _parse_date(source["Date"]) if source.get("Date") else day_start(context.now_ms)
    lat = _line_amount_types(source)
    currency, rate = _currency(context, source, date_ms)
    items = _line_items(context, source, line_amount_types=lat, require_account=False)
    sub, tax, total = OrgBuilder.totals(items, lat)
    number = str(source.get(number_field) or "")
    if not number:
        prefix = "PO" if endpoint == "PurchaseOrders" else "QU"
        number = f"{prefix}-{context.builder.next_number(prefix):05d}"
        _save_counters(context)
    if context.find(endpoint, "number=? AND record_id<>? AND status<>'DELETED'", (number, doc[id_field])):
        raise ElementError(f"{number_field} {number} must be unique")
    doc.update(
        {
            number_field: number,
            "Contact": _contact_ref(contact),
            "Date": ms_date(date_ms),
            "DateString": iso_date(date_ms),
            "LineAmountTypes": lat if endpoint == "PurchaseOrders" else lat.upper(),
            "Reference": str(source.get("Reference") or ""),
            "CurrencyCode": currency,
            "CurrencyRate": rate,
            "Status": status,
            "LineItems": items,
            "SubTotal": sub,
            "TotalTax": tax,
            "Total": total,
            "TotalDiscount": 0.0,
            "UpdatedDateUTC": ms_date(context.now_ms),
        }
    )
    optional = (
        ("DeliveryDate", "DeliveryAddress", "AttentionTo", "Telephone", "DeliveryInstructions", "SentToContact")
        if endpoint == "PurchaseOrders"
        else ("ExpiryDate", "Title", "Summary", "Terms")
    )
    for key in (*optional, "BrandingThemeID"):
        if key in element:
            doc[key] = element[key]
    for key in ("DeliveryDate", "ExpiryDate"):
        if isinstance(doc.get(key), str) and not doc[key].startswith("/Date"):
            value = _parse_date(doc[key])
            doc[key] = ms_date(value)
            doc[f"{key}String"] = iso_date(value)
    context.put(endpoint, doc, date_ms)
    context.note(endpoint, doc[id_field], "Created" if existing is None else "Edited", f"{number} for {total:,.2f}.")
    return doc


# ---------------------------------------------------------------------------------------------
# Deletes, history notes, attachments, setup


def _delete(context: Context, route: WriteRoute) -> dict[str, Any]:
    """DELETE on a single record: Xero allows it for Accounts (unused), Items, TrackingCategories (unused),
    LinkedTransactions; everything else is a status change through POST."""
    name = route.collection.name
    record_id = route.record_ref or ""
    doc = context.get(name, record_id)
    if doc is None:
        raise accounting.not_found()
    if name == "Accounts":
        used = context.store.scalar(
            "SELECT count(*) FROM journal_lines WHERE tenant_id=? AND account_id=?", (context.tenant_id, record_id)
        )
        if doc.get("SystemAccount") or used:
            raise _bad_request(
                "This account cannot be deleted as it is a system account or has transactions; archive it instead"
            )
        doc["Status"] = "DELETED"
    elif name == "TrackingCategories":
        doc["Status"] = "DELETED"
    elif name == "LinkedTransactions":
        if doc.get("Status") == "BILLED":
            raise _bad_request("A billed linked transaction cannot be deleted")
        doc["Status"] = "DELETED"
    elif name != "Items":
        raise accounting.ApiError(405, "Method not allowed")
    with context.store.transaction():
        context.store.delete_record(context.tenant_id, name, record_id)
    return doc


def _delete_allocation(context: Context, name: str, record_id: str, allocation_id: str) -> dict[str, Any]:
    """Undo one allocation of a credit note, prepayment or overpayment: the credit gets its amount back, the
    invoice owes it again (PAID goes back to AUTHORISED) and a prepayment's allocation journal is reversed at
    the allocation's date. The allocation stays on the credit with `IsDeleted: true`, as Xero lists it."""
    credit = context.get(name, record_id)
    if credit is None:
        raise accounting.not_found()
    allocation = next(
        (a for a in credit.get("Allocations", []) if a.get("AllocationID") == allocation_id and not a.get("IsDeleted")),
        None,
    )
    if allocation is None:
        raise accounting.not_found()
    date_ms = _parse_date(allocation["Date"])
    _check_lock(context, date_ms)
    invoice = context.get("Invoices", str((allocation.get("Invoice") or {}).get("InvoiceID")))
    if invoice is None or invoice["Status"] not in ("AUTHORISED", "PAID"):
        raise ElementError("The invoice of this allocation cannot take the amount back (voided or deleted)")
    cents = to_cents(allocation["Amount"])
    allocation["IsDeleted"] = True
    credit["RemainingCredit"] = from_cents(to_cents(credit["RemainingCredit"]) + cents)
    credit["AppliedAmount"] = from_cents(max(0, to_cents(credit.get("AppliedAmount", 0.0)) - cents))
    if credit["Status"] == "PAID":
        credit["Status"] = "AUTHORISED"
        credit.pop("FullyPaidOnDate", None)
    credit["UpdatedDateUTC"] = ms_date(context.now_ms)
    key = {"CreditNotes": "CreditNotes", "Prepayments": "Prepayments", "Overpayments": "Overpayments"}[name]
    id_field = key[:-1] + "ID"
    entries = invoice.get(key, [])
    for index, entry in enumerate(entries):
        if entry.get(id_field, entry.get("ID")) == record_id and to_cents(entry.get("AppliedAmount", 0)) == cents:
            del entries[index]
            break
    invoice["AmountCredited"] = from_cents(to_cents(invoice["AmountCredited"]) - cents)
    invoice["AmountDue"] = from_cents(context.builder.due_cents(invoice))
    if invoice["Status"] == "PAID" and to_cents(invoice["AmountDue"]) > 0:
        invoice["Status"] = "AUTHORISED"
        invoice.pop("FullyPaidOnDate", None)
    invoice["UpdatedDateUTC"] = ms_date(context.now_ms)
    if name == "Prepayments":
        ledger = context.builder.ledger
        receivable = credit["Type"] == "RECEIVE-PREPAYMENT"
        lines = ledger._document_lines(
            credit,
            sign=-1 if receivable else 1,
            control=ledger.system("DEBTORS" if receivable else "CREDITORS"),
            contact_id=credit.get("Contact", {}).get("ContactID"),
            rate=credit.get("CurrencyRate"),
        )
        ledger.post(
            source_type="ARPREPAYMENT" if receivable else "APPREPAYMENT",
            source_id=record_id,
            date_ms=day_start(date_ms),
            lines=lines,
            reference=credit.get("Reference"),
            created_ms=context.now_ms,
        )
    context.put(name, credit, parse_ms_date(credit["Date"]))
    context.put("Invoices", invoice, parse_ms_date(invoice["Date"]))
    context.note(
        name, record_id, "Allocation deleted", f"{from_cents(cents):,.2f} removed from {invoice['InvoiceNumber']}."
    )
    return {**allocation, "Amount": from_cents(cents)}


def _history_note(context: Context, name: str, record_id: str, element: Any) -> dict[str, Any]:
    if context.get(name, record_id) is None:
        raise accounting.not_found()
    details = str((element or {}).get("Details") or "").strip()
    if not details:
        raise _validation_exception([{"ValidationErrors": [{"Message": "Details of the note are required"}]}])
    if len(details) > 2500:
        raise _validation_exception([{"ValidationErrors": [{"Message": "A note must be 2500 characters or fewer"}]}])
    with context.store.transaction():
        context.builder.history(name, record_id, context.now_ms, "Note", details, user="API")
        context.builder.flush()
    return {"Changes": "Note", "DateUTC": ms_date(context.now_ms), "User": "API", "Details": details}


def _attachment(context: Context, route: WriteRoute, request: WriteRequest) -> dict[str, Any]:
    import urllib.parse

    name = route.collection.name
    record_id = route.record_ref or ""
    doc = context.get(name, record_id)
    if doc is None:
        raise accounting.not_found()
    file_name = urllib.parse.unquote(route.sub_ref or "")
    if not file_name or len(file_name) > 255 or _FILE_NAME_FORBIDDEN.search(file_name):
        raise _bad_request(f"The file name {file_name!r} is not valid")
    if not request.body:
        raise _bad_request("The attachment is empty")
    mime = request.api.headers.get("content-type", "application/octet-stream").split(";")[0].strip()
    if mime in ("", "application/octet-stream"):
        # The SPEC sends attachment bodies as application/octet-stream; the type shown comes from the name.
        mime = mimetypes.guess_type(file_name)[0] or "application/octet-stream"
    include_online = accounting._query_get(request.api.query, "IncludeOnline").strip().lower() == "true"
    with context.store.transaction():
        row = next(
            iter(
                context.store.query(
                    "SELECT attachment_id FROM attachments WHERE tenant_id=? AND endpoint=? AND record_id=? AND"
                    " file_name=?",
                    (context.tenant_id, name, record_id, file_name),
                )
            ),
            None,
        )
        count = context.store.scalar(
            "SELECT count(*) FROM attachments WHERE tenant_id=? AND endpoint=? AND record_id=?",
            (context.tenant_id, name, record_id),
        )
        if row is None and count >= MAX_ATTACHMENTS_PER_DOCUMENT:
            raise _bad_request(f"A document can have at most {MAX_ATTACHMENTS_PER_DOCUMENT} attachments")
        # Uploading under an existing file name replaces that attachment (Xero's documented behaviour).
        attachment_id = row[0] if row else context.new_id()
        context.store.query("DELETE FROM attachments WHERE attachment_id=?", (attachment_id,))
        context.store.query(
            "INSERT INTO attachments(attachment_id, tenant_id, endpoint, record_id, file_name, mime_type,"
            " include_online, content, updated_ms) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                attachment_id,
                context.tenant_id,
                name,
                record_id,
                file_name,
                mime,
                int(include_online),
                request.body,
                context.now_ms,
            ),
        )
        if not doc.get("HasAttachments"):
            doc["HasAttachments"] = True
            context.store.query(
                "UPDATE records SET has_attachments=1, doc=? WHERE tenant_id=? AND endpoint=? AND record_id=?",
                (
                    json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False),
                    context.tenant_id,
                    name,
                    record_id,
                ),
            )
    url = (
        f"{request.api.base_url}{accounting.API_PREFIX}/{name}/{record_id}/Attachments/{urllib.parse.quote(file_name)}"
    )
    return {
        "AttachmentID": attachment_id,
        "FileName": file_name,
        "Url": url,
        "MimeType": mime,
        "ContentLength": len(request.body),
        "IncludeOnline": include_online,
    }


def _setup(context: Context, payload: Any) -> dict[str, Any]:
    """`POST /Setup`: a new organisation's chart of accounts, conversion date and conversion balances in one
    call (https://developer.xero.com/documentation/api/accounting/setup). Accounts are matched by Code and
    created or updated; conversion balances (debit positive) must sum to zero and post one journal dated the
    last day before the conversion month. Refused as a whole: nothing is saved when anything is wrong."""
    if not isinstance(payload, dict):
        raise _bad_request("The Setup body must be an object", number=14, kind="PostDataInvalidException")
    counts = {"Total": 0, "New": 0, "Updated": 0, "Deleted": 0, "Locked": 0, "System": 0, "Errored": 0}
    failed: list[dict[str, Any]] = []
    with context.store.transaction():
        for element in payload.get("Accounts") or []:
            existing = context.builder.accounts.get(str(element.get("Code", "")))
            counts["Total"] += 1
            if existing is not None and existing.get("SystemAccount"):
                counts["System"] += 1
                continue
            try:
                _save_account(context, {**element, "AccountID": existing["AccountID"]} if existing else element)
            except ElementError as error:
                counts["Errored"] += 1
                failed.append({**element, "ValidationErrors": [{"Message": m} for m in error.messages]})
                continue
            counts["Updated" if existing else "New"] += 1
        balances = payload.get("ConversionBalances") or []
        if balances:
            conversion = payload.get("ConversionDate") or {}
            try:
                month, year = int(conversion["Month"]), int(conversion["Year"])
                first = dt.datetime(year, month, 1, tzinfo=dt.UTC)
            except (KeyError, TypeError, ValueError):
                raise _bad_request("ConversionDate needs a Month and a Year") from None
            date_ms = int(first.timestamp() * 1000) - 86_400_000
            lines = []
            for entry in balances:
                try:
                    account = _account(context, None, code=entry.get("AccountCode"))
                    cents = to_cents(_number(entry.get("Balance"), "Balance"))
                except ElementError as error:
                    failed.append({**entry, "ValidationErrors": [{"Message": m} for m in error.messages]})
                    continue
                lines.append(Line(context.builder.ledger.account(account["AccountID"]), cents))
            if sum(line.net_cents for line in lines) != 0:
                failed.append(
                    {"ValidationErrors": [{"Message": "The conversion balances must balance (debits = credits)"}]}
                )
            if not failed:
                # Xero's Journals have no SourceType for conversion balances; the journal carries none.
                context.builder.ledger.post(
                    source_type="",
                    source_id=None,
                    date_ms=date_ms,
                    lines=lines,
                    reference="Conversion balances",
                    created_ms=context.now_ms,
                )
        if failed:
            context.reset()
            raise _validation_exception(failed)
        context.builder.flush()
    return {
        "Accounts": {**counts, "Present": counts["Total"] > 0, "NewOrUpdated": counts["New"] + counts["Updated"]},
        "Organisation": {"Present": False},
    }


def _save_batch_payment(context: Context, element: dict[str, Any]) -> dict[str, Any]:
    """`PUT /BatchPayments`: one payment per invoice from one bank account, all or nothing; `Type` PAYBATCH
    (bills) or RECBATCH (sales invoices) follows the invoices (SPEC `BatchPayment`)."""
    if element.get("BatchPaymentID"):
        raise ElementError("It is not possible to change a batch payment through the API")
    account = _bank_account(context, element.get("Account"), "Account")
    parts = element.get("Payments")
    if not isinstance(parts, list) or not parts:
        raise ElementError("A batch payment needs at least one payment")
    date = element.get("Date") or iso_date(context.now_ms)[:10]
    batch_id = context.new_id()
    payments = []
    kinds = set()
    for part in parts:
        payment = _save_payment(
            context,
            {
                "Invoice": part.get("Invoice"),
                "Account": {"AccountID": account["AccountID"]},
                "Amount": part.get("Amount"),
                "Date": date,
                "Reference": element.get("Reference", ""),
            },
        )
        payment["BatchPaymentID"] = batch_id
        payment["BatchPayment"] = {"BatchPaymentID": batch_id}
        context.put("Payments", payment, parse_ms_date(payment["Date"]))
        kinds.add(payment["Invoice"]["Type"])
        payments.append(payment)
    if len(kinds) > 1:
        raise ElementError("A batch payment pays either bills or sales invoices, not both")
    date_ms = parse_ms_date(payments[0]["Date"])
    total = from_cents(sum(to_cents(p["Amount"]) for p in payments))
    doc = {
        "BatchPaymentID": batch_id,
        "Account": {"AccountID": account["AccountID"]},
        "Reference": str(element.get("Reference") or ""),
        "Particulars": str(element.get("Particulars") or ""),
        "Code": str(element.get("Code") or ""),
        "Details": str(element.get("Details") or ""),
        "Narrative": str(element.get("Narrative") or ""),
        "DateString": iso_date(date_ms),
        "Date": ms_date(date_ms),
        "Amount": total,
        "TotalAmount": total,
        "Type": "PAYBATCH" if kinds == {"ACCPAY"} else "RECBATCH",
        "Status": "AUTHORISED",
        "IsReconciled": False,
        "UpdatedDateUTC": ms_date(context.now_ms),
        "Payments": [
            {
                "Invoice": {"InvoiceID": p["Invoice"]["InvoiceID"], "InvoiceNumber": p["Invoice"]["InvoiceNumber"]},
                "PaymentID": p["PaymentID"],
                "Amount": p["Amount"],
                "BankAmount": p["BankAmount"],
            }
            for p in payments
        ],
    }
    context.put("BatchPayments", doc, date_ms)
    context.note("BatchPayments", batch_id, "Created", f"Batch payment of {total:,.2f} created via the API.")
    return doc


_SCHEDULE_UNITS = ("WEEKLY", "MONTHLY")
_DUE_DATE_TYPES = (
    "DAYSAFTERBILLDATE",
    "DAYSAFTERBILLMONTH",
    "DAYSAFTERINVOICEDATE",
    "DAYSAFTERINVOICEMONTH",
    "OFCURRENTMONTH",
    "OFFOLLOWINGMONTH",
)


def _save_repeating_invoice(context: Context, element: dict[str, Any]) -> dict[str, Any]:
    """Repeating invoice templates: a Schedule, lines and a status (DRAFT, AUTHORISED, DELETED); they post
    nothing themselves (https://developer.xero.com/documentation/api/accounting/repeatinginvoices)."""
    record_id = element.get("RepeatingInvoiceID")
    existing = context.get("RepeatingInvoices", str(record_id)) if record_id else None
    if record_id and existing is None:
        raise ElementError(f"The repeating invoice {record_id} could not be found")
    if existing and existing["Status"] == "DELETED":
        raise ElementError("This repeating invoice has been deleted and cannot be edited")
    if existing and element.get("Status") == "DELETED":
        existing["Status"] = "DELETED"
        context.put("RepeatingInvoices", existing)
        return existing
    source = {**(existing or {}), **element}
    kind = str(source.get("Type") or "")
    if kind not in ("ACCREC", "ACCPAY"):
        raise ElementError("Type must be ACCREC or ACCPAY")
    status = str(source.get("Status") or "DRAFT")
    if status not in ("DRAFT", "AUTHORISED"):
        raise ElementError("Status must be DRAFT or AUTHORISED")
    schedule = source.get("Schedule")
    if not isinstance(schedule, dict):
        raise ElementError("A repeating invoice needs a Schedule")
    if schedule.get("Unit") not in _SCHEDULE_UNITS:
        raise ElementError("Schedule Unit must be WEEKLY or MONTHLY")
    if schedule.get("DueDateType") not in _DUE_DATE_TYPES:
        raise ElementError(f"Schedule DueDateType must be one of {', '.join(_DUE_DATE_TYPES)}")
    start_ms = _parse_date(schedule.get("StartDate"))
    period = int(_number(schedule.get("Period"), "Period", default=1))
    if period < 1:
        raise ElementError("Schedule Period must be at least 1")
    contact = _contact(context, source.get("Contact"))
    lat = _line_amount_types(source)
    currency, _ = _currency(context, source, start_ms)
    items = _line_items(context, source, line_amount_types=lat)
    sub, tax, total = OrgBuilder.totals(items, lat)
    record_id = (existing or {}).get("RepeatingInvoiceID") or context.new_id()
    doc: dict[str, Any] = {
        "RepeatingInvoiceID": record_id,
        "ID": record_id,
        "Type": kind,
        "Contact": _contact_ref(contact),
        "Schedule": {
            "Period": period,
            "Unit": schedule["Unit"],
            "DueDate": int(_number(schedule.get("DueDate"), "DueDate", default=0)),
            "DueDateType": schedule["DueDateType"],
            "StartDate": ms_date(start_ms),
            "NextScheduledDate": ms_date(_parse_date(schedule["NextScheduledDate"]))
            if schedule.get("NextScheduledDate")
            else ms_date(start_ms),
        },
        "LineItems": items,
        "LineAmountTypes": lat,
        "Reference": str(source.get("Reference") or ""),
        "Status": status,
        "SubTotal": sub,
        "TotalTax": tax,
        "Total": total,
        "CurrencyCode": currency,
        "HasAttachments": bool((existing or {}).get("HasAttachments", False)),
        "ApprovedForSending": bool(source.get("ApprovedForSending", False)),
        "SendCopy": bool(source.get("SendCopy", False)),
        "MarkAsSent": bool(source.get("MarkAsSent", False)),
        "IncludePDF": bool(source.get("IncludePDF", False)),
    }
    if schedule.get("EndDate"):
        doc["Schedule"]["EndDate"] = ms_date(_parse_date(schedule["EndDate"]))
    if source.get("BrandingThemeID"):
        doc["BrandingThemeID"] = source["BrandingThemeID"]
    context.put("RepeatingInvoices", doc)
    return doc


def _save_linked_transaction(context: Context, element: dict[str, Any]) -> dict[str, Any]:
    """Billable expenses (Type BILLABLEEXPENSE): a bill or spend-money line linked to a customer, and once
    billed the sales invoice line (https://developer.xero.com/documentation/api/accounting/linkedtransactions)."""
    record_id = element.get("LinkedTransactionID")
    existing = context.get("LinkedTransactions", str(record_id)) if record_id else None
    if record_id and existing is None:
        raise ElementError(f"The linked transaction {record_id} could not be found")
    doc: dict[str, Any] = dict(existing or {"LinkedTransactionID": context.new_id(), "Type": "BILLABLEEXPENSE"})
    source_id = str(element.get("SourceTransactionID") or doc.get("SourceTransactionID") or "")
    source = context.get("Invoices", source_id) or context.get("BankTransactions", source_id)
    if source is None or source.get("Type") not in ("ACCPAY", "SPEND"):
        raise ElementError("SourceTransactionID must be a bill or a spend money transaction")
    line_id = str(element.get("SourceLineItemID") or doc.get("SourceLineItemID") or "")
    if not any(line.get("LineItemID") == line_id for line in source.get("LineItems", [])):
        raise ElementError("SourceLineItemID is not a line of the source transaction")
    contact_id = element.get("ContactID") or doc.get("ContactID")
    if contact_id and context.get("Contacts", str(contact_id)) is None:
        raise ElementError(f"The contact with ContactID {contact_id} could not be found")
    doc.update(
        SourceTransactionID=source_id,
        SourceLineItemID=line_id,
        SourceTransactionTypeCode=source["Type"],
        UpdatedDateUTC=ms_date(context.now_ms),
    )
    if contact_id:
        doc["ContactID"] = str(contact_id)
    target_id = element.get("TargetTransactionID")
    if target_id:
        target = context.get("Invoices", str(target_id))
        if target is None or target["Type"] != "ACCREC":
            raise ElementError("TargetTransactionID must be a sales invoice")
        doc["TargetTransactionID"] = str(target_id)
        if element.get("TargetLineItemID"):
            doc["TargetLineItemID"] = str(element["TargetLineItemID"])
        doc["Status"] = "BILLED"
    else:
        doc["Status"] = "APPROVED" if doc.get("ContactID") else "DRAFT"
    context.put("LinkedTransactions", doc)
    return doc


# ---------------------------------------------------------------------------------------------
# In-process writes (damage scenarios)


def apply(
    store: SandboxStore,
    tenant_id: str,
    method: str,
    path: str,
    payload: Any = None,
    *,
    now_ms: int | None = None,
    client_id: str = "sandbox-internal",
    query: Mapping[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """One write through exactly the path an HTTP client's write takes after the gate (same validation, same
    ledger), for callers inside the sandbox such as `sandbox.damage`. Returns (status, parsed JSON body)."""
    route = resolve(method, path)
    api = ApiRequest(
        tenant_id=tenant_id,
        path=path,
        query=dict(query or {}),
        headers={"accept": "application/json", "content-type": "application/json"},
        base_url="http://sandbox.invalid",
    )
    body = orjson.dumps(payload) if payload is not None else b""
    response = handle(
        store,
        WriteRequest(api=api, method=method.upper(), body=body, client_id=client_id),
        route,
        now_ms=store.now_ms() if now_ms is None else now_ms,
    )
    parsed = orjson.loads(response.body) if response.media_type.startswith("application/json") else {}
    return response.status, parsed
