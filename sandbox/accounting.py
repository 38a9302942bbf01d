"""The read side of the sandbox's Accounting API (`/api.xro/2.0/...`).

This module owns the endpoint catalogue (ids, scopes, which reading rules each endpoint takes),
the translation of Xero's query language (`where`, `order`, `IDs`, `Statuses`, paging,
`If-Modified-Since`, `unitdp`) into SQL over `sandbox.store`, the list/summary/single forms of a
record, the response envelopes, and the XML rendering for clients that forget
`Accept: application/json`.

It must not check tokens, tenants, rate limits or faults (that is `sandbox.app`'s gate) and it
never writes to the store. Its entry point `handle()` is synchronous and is called from a worker
thread with a store connection private to that thread.

Rules and their sources (https://developer.xero.com/documentation/api/accounting/requests-and-responses,
"RR" below; the official OpenAPI spec `xero_accounting.yaml` v16.1.0, "SPEC"):
- paged endpoints, `pageSize` default 100, clamped to 1..1000, `pagination` element: RR "Paging".
- "paged results will have extra detail (e.g. line items)": RR; the BankTransactions page says the
  same ("with line items ... when the page parameter is used").
- default order `UpdatedDateUTC ASC, [ID] ASC`: RR "Ordering".
- `If-Modified-Since` "accurate to the second", and which endpoints take it: RR and SPEC parameters.
- unit amounts rounded to 2 dp unless `unitdp=4`: RR "Decimal places"; SPEC `unitdp` parameter.
- Journals: 100 per call, `offset` = "JournalNumber greater than", no SourceID/SourceType on a
  single journal: https://developer.xero.com/documentation/api/accounting/journals
- XML is the default representation; JSON needs `Accept: application/json`: RR "JSON".
"""

from __future__ import annotations

import calendar
import datetime as dt
import email.utils
import math
import re
import urllib.parse
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from xml.sax.saxutils import escape as xml_escape

import orjson

from sandbox.store import SandboxStore, ms_date


def _row(store: SandboxStore, sql: str, params: tuple[Any, ...] = ()) -> Any:
    """The first row of a query, or None."""
    return next(iter(store.query(sql, params)), None)


API_PREFIX = "/api.xro/2.0"
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
JOURNALS_PER_CALL = 100
FIXED_PAGE_SIZE = 100  # Quotes and LinkedTransactions: "Up to 100" per page, no pageSize (SPEC)

# Broad scopes (apps created before 2 March 2026) and the granular ones that replace them
# (https://developer.xero.com/faq/granular-scopes; research notes §5.2). A write scope also
# permits GET (SPEC lists both on every GET).
_SETTINGS = frozenset({"accounting.settings", "accounting.settings.read"})
_CONTACTS = frozenset({"accounting.contacts", "accounting.contacts.read"})
_TRANSACTIONS = frozenset({"accounting.transactions", "accounting.transactions.read"})
_INVOICES = _TRANSACTIONS | {"accounting.invoices", "accounting.invoices.read"}
_PAYMENTS = _TRANSACTIONS | {"accounting.payments", "accounting.payments.read"}
_BANK = _TRANSACTIONS | {"accounting.banktransactions", "accounting.banktransactions.read"}
_MANUAL = _TRANSACTIONS | {"accounting.manualjournals", "accounting.manualjournals.read"}
ATTACHMENT_SCOPES = frozenset({"accounting.attachments", "accounting.attachments.read"})
JOURNAL_SCOPES = frozenset({"accounting.journals.read"})
BUDGET_SCOPES = frozenset({"accounting.budgets", "accounting.budgets.read"})
REPORT_SCOPES: dict[str, frozenset[str]] = {
    "TrialBalance": frozenset({"accounting.reports.read", "accounting.reports.trialbalance.read"}),
    "ProfitAndLoss": frozenset({"accounting.reports.read", "accounting.reports.profitandloss.read"}),
    "BalanceSheet": frozenset({"accounting.reports.read", "accounting.reports.balancesheet.read"}),
    "BankSummary": frozenset({"accounting.reports.read", "accounting.reports.banksummary.read"}),
    "AgedReceivablesByContact": frozenset({"accounting.reports.read", "accounting.reports.aged.read"}),
    "AgedPayablesByContact": frozenset({"accounting.reports.read", "accounting.reports.aged.read"}),
}


@dataclass(frozen=True)
class Endpoint:
    """One Accounting API collection and the reading rules Xero applies to it."""

    name: str
    id_field: str
    element: str  # the singular element name (XML rendering)
    scopes: frozenset[str]
    paged: bool = False  # page + pageSize + pagination element (RR "Paging")
    fixed_page: bool = False  # page only, 100 per page (Quotes, LinkedTransactions)
    ims: bool = False  # If-Modified-Since honoured (SPEC parameters)
    summary_drops: tuple[str, ...] = ()  # dropped from list items fetched without `page`
    unitdp: bool = False
    history: bool = False
    attachments: bool = False
    number_field: str | None = None  # single-record lookup by number/code as Xero allows
    include_archived: bool = False
    include_deleted: bool = False


_ENDPOINT_LIST: tuple[Endpoint, ...] = (
    Endpoint("Accounts", "AccountID", "Account", _SETTINGS, ims=True, attachments=True),
    Endpoint(
        "Contacts",
        "ContactID",
        "Contact",
        _CONTACTS,
        paged=True,
        ims=True,
        history=True,
        attachments=True,
        number_field="ContactNumber",
        include_archived=True,
    ),
    Endpoint("ContactGroups", "ContactGroupID", "ContactGroup", _CONTACTS),
    Endpoint(
        "Invoices",
        "InvoiceID",
        "Invoice",
        _INVOICES,
        paged=True,
        ims=True,
        summary_drops=("LineItems",),
        unitdp=True,
        history=True,
        attachments=True,
        number_field="InvoiceNumber",
    ),
    Endpoint(
        "CreditNotes",
        "CreditNoteID",
        "CreditNote",
        _INVOICES,
        paged=True,
        ims=True,
        summary_drops=("LineItems",),
        unitdp=True,
        history=True,
        attachments=True,
        number_field="CreditNoteNumber",
    ),
    Endpoint("Payments", "PaymentID", "Payment", _PAYMENTS, paged=True, ims=True, history=True),
    Endpoint("BatchPayments", "BatchPaymentID", "BatchPayment", _PAYMENTS, ims=True, history=True),
    Endpoint(
        "BankTransactions",
        "BankTransactionID",
        "BankTransaction",
        _BANK,
        paged=True,
        ims=True,
        summary_drops=("LineItems",),
        unitdp=True,
        history=True,
        attachments=True,
    ),
    Endpoint(
        "BankTransfers",
        "BankTransferID",
        "BankTransfer",
        _BANK,
        ims=True,
        history=True,
        attachments=True,
        include_deleted=True,
    ),
    Endpoint(
        "ManualJournals",
        "ManualJournalID",
        "ManualJournal",
        _MANUAL,
        paged=True,
        ims=True,
        summary_drops=("JournalLines",),
        history=True,
        attachments=True,
    ),
    Endpoint(
        "Items",
        "ItemID",
        "Item",
        _SETTINGS | _INVOICES,
        ims=True,
        unitdp=True,
        history=True,
        number_field="Code",
    ),
    Endpoint("TrackingCategories", "TrackingCategoryID", "TrackingCategory", _SETTINGS, include_archived=True),
    Endpoint("TaxRates", "TaxType", "TaxRate", _SETTINGS, number_field="TaxType"),
    Endpoint("Currencies", "Code", "Currency", _SETTINGS, number_field="Code"),
    Endpoint("BrandingThemes", "BrandingThemeID", "BrandingTheme", _SETTINGS),
    Endpoint(
        "PurchaseOrders",
        "PurchaseOrderID",
        "PurchaseOrder",
        _INVOICES,
        paged=True,
        ims=True,
        summary_drops=("LineItems",),
        history=True,
        attachments=True,
        number_field="PurchaseOrderNumber",
    ),
    Endpoint(
        "Quotes",
        "QuoteID",
        "Quote",
        _INVOICES,
        fixed_page=True,
        ims=True,
        history=True,
        attachments=True,
        number_field="QuoteNumber",
    ),
    Endpoint(
        "Overpayments",
        "OverpaymentID",
        "Overpayment",
        _PAYMENTS,
        paged=True,
        ims=True,
        summary_drops=("LineItems",),
        unitdp=True,
        history=True,
    ),
    Endpoint(
        "Prepayments",
        "PrepaymentID",
        "Prepayment",
        _PAYMENTS,
        paged=True,
        ims=True,
        summary_drops=("LineItems",),
        unitdp=True,
        history=True,
    ),
    Endpoint("RepeatingInvoices", "RepeatingInvoiceID", "RepeatingInvoice", _INVOICES, history=True, attachments=True),
    Endpoint("LinkedTransactions", "LinkedTransactionID", "LinkedTransaction", _INVOICES, fixed_page=True),
    Endpoint("Users", "UserID", "User", _SETTINGS, ims=True),
    Endpoint("Budgets", "BudgetID", "Budget", BUDGET_SCOPES),
)
ENDPOINTS: dict[str, Endpoint] = {e.name.lower(): e for e in _ENDPOINT_LIST}

# Columns of `records` that `where`/`order` can use directly (the rest go through json_extract).
_COLUMN_FIELDS = {
    "status": "status",
    "type": "type",
    "date": "date_ms",
    "contact.contactid": "contact_id",
    "updateddateutc": "updated_ms",
}
_MS_COLUMNS = {"date_ms", "updated_ms"}
_PAYMENT_SOURCE_TYPES = ("ACCRECPAYMENT", "ACCPAYPAYMENT", "ARCREDITPAYMENT", "APCREDITPAYMENT", "CASHREC", "CASHPAID")


class ApiError(Exception):
    """A request Xero would answer with an error status; `body` is Xero's error document."""

    def __init__(self, status: int, body: dict[str, Any] | str) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


def not_found() -> ApiError:
    # Xero answers an unknown record or path with a bare 404 and this sentence.
    return ApiError(404, "The resource you're looking for cannot be found")


def validation_error(message: str, *, number: int = 16, kind: str = "QueryParseException") -> ApiError:
    # Shape of SPEC `Error`: ErrorNumber, Type, Message.
    return ApiError(400, {"ErrorNumber": number, "Type": kind, "Message": message})


# ---------------------------------------------------------------------------------------------
# Routing


@dataclass(frozen=True)
class ApiRoute:
    """What an `/api.xro/2.0/...` path asks for."""

    kind: str  # list | single | history | attachments | attachment | organisation | journals | journal | report
    endpoint: Endpoint | None = None
    record_ref: str | None = None
    attachment_ref: str | None = None
    report: str | None = None

    @property
    def scopes(self) -> frozenset[str]:
        """Scopes of which the caller needs at least one (SPEC `security` of each GET)."""
        if self.kind in ("attachments", "attachment"):
            return ATTACHMENT_SCOPES
        if self.kind in ("journals", "journal"):
            return JOURNAL_SCOPES
        if self.kind == "organisation":
            return _SETTINGS
        if self.kind == "report":
            return REPORT_SCOPES.get(self.report or "", frozenset({"accounting.reports.read"}))
        assert self.endpoint is not None
        return self.endpoint.scopes


def resolve(path: str) -> ApiRoute:
    """Route a path below `/api.xro/2.0` (e.g. `/Invoices/{id}/History`); raises 404 `ApiError`."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        raise not_found()
    head = parts[0].lower()
    if head in ("organisation", "organisations") and len(parts) == 1:
        return ApiRoute("organisation")
    if head == "journals":
        if len(parts) == 1:
            return ApiRoute("journals")
        if len(parts) == 2:
            return ApiRoute("journal", record_ref=parts[1])
        raise not_found()
    if head == "reports":
        if len(parts) == 2 and parts[1] in REPORT_SCOPES:
            return ApiRoute("report", report=parts[1])
        raise not_found()
    endpoint = ENDPOINTS.get(head)
    if endpoint is None:
        raise not_found()
    if len(parts) == 1:
        return ApiRoute("list", endpoint)
    if len(parts) == 2:
        return ApiRoute("single", endpoint, record_ref=parts[1])
    sub = parts[2].lower()
    if sub == "history" and len(parts) == 3 and endpoint.history:
        return ApiRoute("history", endpoint, record_ref=parts[1])
    if sub == "attachments" and endpoint.attachments:
        if len(parts) == 3:
            return ApiRoute("attachments", endpoint, record_ref=parts[1])
        if len(parts) == 4:
            return ApiRoute("attachment", endpoint, record_ref=parts[1], attachment_ref=parts[3])
    raise not_found()


# ---------------------------------------------------------------------------------------------
# Requests and responses


@dataclass
class ApiRequest:
    tenant_id: str
    path: str  # below /api.xro/2.0, already percent-decoded
    query: Mapping[str, str]
    headers: Mapping[str, str]  # lower-case names
    base_url: str  # scheme://host[:port] the client used, for attachment Urls
    provider_name: str = "Strongroom Sandbox"


@dataclass
class ApiResponse:
    status: int
    body: bytes
    media_type: str
    headers: dict[str, str] = field(default_factory=dict)


def wants_json(headers: Mapping[str, str]) -> bool:
    """Xero answers XML unless the client asks for JSON (RR "JSON"); never silently JSON."""
    return "application/json" in headers.get("accept", "").lower()


def error_response(error: ApiError, *, as_json: bool) -> ApiResponse:
    if isinstance(error.body, str):
        return ApiResponse(error.status, error.body.encode(), "text/plain; charset=utf-8")
    if as_json:
        return ApiResponse(error.status, orjson.dumps(error.body), "application/json; charset=utf-8")
    return ApiResponse(error.status, render_xml("ApiException", error.body), "text/xml; charset=utf-8")


def handle(store: SandboxStore, request: ApiRequest, route: ApiRoute, *, now_ms: int) -> ApiResponse:
    """Answer one GET. Errors Xero would return come back as responses, not exceptions."""
    as_json = wants_json(request.headers)
    try:
        _ensure_sql_functions(store)
        if route.kind == "attachment":
            return _attachment_content(store, request, route)
        body = _dispatch(store, request, route)
    except ApiError as error:
        return error_response(error, as_json=as_json)
    envelope: dict[str, Any] = {
        "Id": str(uuid.uuid4()),
        "Status": "OK",
        "ProviderName": request.provider_name,
        "DateTimeUTC": f"/Date({now_ms})/",
    }
    if as_json:
        return ApiResponse(200, _json_body(envelope, body), "application/json; charset=utf-8")
    return ApiResponse(200, render_xml("Response", {**envelope, **_parsed(body)}), "text/xml; charset=utf-8")


@dataclass
class _Body:
    """A collection body: `key` maps to a list of raw JSON documents (kept as text to avoid re-encoding)."""

    key: str
    docs: list[bytes]
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. pagination


def _json_body(envelope: dict[str, Any], body: _Body | dict[str, Any]) -> bytes:
    if isinstance(body, dict):
        return orjson.dumps({**envelope, **body})
    head = orjson.dumps({**envelope, **body.extra})[:-1]
    return head + b',"' + body.key.encode() + b'":[' + b",".join(body.docs) + b"]}"


def _parsed(body: _Body | dict[str, Any]) -> dict[str, Any]:
    if isinstance(body, dict):
        return body
    return {**body.extra, body.key: [orjson.loads(d) for d in body.docs]}


def _dispatch(store: SandboxStore, request: ApiRequest, route: ApiRoute) -> _Body | dict[str, Any]:
    tenant = request.tenant_id
    if route.kind == "organisation":
        doc = store.scalar("SELECT doc FROM orgs WHERE tenant_id=?", (tenant,))
        if doc is None:
            raise not_found()
        return _Body("Organisations", [doc.encode()])
    if route.kind == "journals":
        return _journals(store, tenant, request)
    if route.kind == "journal":
        return _journal(store, tenant, route.record_ref or "")
    if route.kind == "report":
        return _report(store, tenant, route.report or "", request.query)
    endpoint = route.endpoint
    assert endpoint is not None
    if route.kind == "list":
        return _list(store, tenant, endpoint, request)
    record_id, doc = _find_record(store, tenant, endpoint, route.record_ref or "")
    if route.kind == "single":
        shaped = _shape(orjson.loads(doc), endpoint, summary=False, unitdp4=_unitdp4(endpoint, request.query))
        return _Body(endpoint.name, [orjson.dumps(shaped)])
    if route.kind == "history":
        return {"HistoryRecords": _history(store, tenant, endpoint, record_id)}
    if route.kind == "attachments":
        return {"Attachments": _attachment_list(store, tenant, endpoint, record_id, request.base_url)}
    raise not_found()


# ---------------------------------------------------------------------------------------------
# Lists


def _unitdp4(endpoint: Endpoint, query: Mapping[str, str]) -> bool:
    return endpoint.unitdp and query.get("unitdp", "").strip() == "4"


def _flag(query: Mapping[str, str], name: str) -> bool:
    return _query_get(query, name).strip().lower() == "true"


def _query_get(query: Mapping[str, str], name: str) -> str:
    """Xero's query parameter names are case-insensitive (`pagesize` works as `pageSize`)."""
    if name in query:
        return query[name]
    lowered = name.lower()
    for key, value in query.items():
        if key.lower() == lowered:
            return value
    return ""


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _list(store: SandboxStore, tenant: str, endpoint: Endpoint, request: ApiRequest) -> _Body:
    query = request.query
    clauses = ["tenant_id=?", "endpoint=?"]
    params: list[Any] = [tenant, endpoint.name]

    where = _query_get(query, "where")
    if where.strip():
        sql, where_params = WhereParser(where, endpoint).parse()
        clauses.append(f"({sql})")
        params.extend(where_params)
    ids = _csv(_query_get(query, "IDs"))
    if ids:
        clauses.append(f"lower(record_id) IN ({','.join('?' * len(ids))})")
        params.extend(i.lower() for i in ids)
    statuses = _csv(_query_get(query, "Statuses")) or _csv(_query_get(query, "Status"))
    if statuses:
        clauses.append(f"status IN ({','.join('?' * len(statuses))})")
        params.extend(s.upper() for s in statuses)
    numbers_param = {"Invoices": "InvoiceNumbers", "Quotes": "QuoteNumber"}.get(endpoint.name)
    numbers = _csv(_query_get(query, numbers_param)) if numbers_param else []
    if numbers:
        clauses.append(f"number IN ({','.join('?' * len(numbers))})")
        params.extend(numbers)
    contact_ids = _csv(_query_get(query, "ContactIDs")) or _csv(_query_get(query, "ContactID"))
    if contact_ids and endpoint.name in ("Invoices", "Quotes", "LinkedTransactions"):
        clauses.append(f"lower(contact_id) IN ({','.join('?' * len(contact_ids))})")
        params.extend(c.lower() for c in contact_ids)
    for name, op in (("DateFrom", ">="), ("DateTo", "<=")):
        value = _query_get(query, name)
        if value and endpoint.name in ("PurchaseOrders", "Quotes", "Budgets"):
            clauses.append(f"date_ms {op} ?")
            params.append(_parse_day_ms(value))
    if endpoint.include_archived and not _flag(query, "includeArchived"):
        # Contacts and TrackingCategories leave ARCHIVED out unless asked (SPEC includeArchived).
        clauses.append("coalesce(status, '') <> 'ARCHIVED'")
    if endpoint.include_deleted and not _flag(query, "includeDeleted"):
        clauses.append("coalesce(status, '') <> 'DELETED'")  # BankTransfers (SPEC includeDeleted)
    ims = request.headers.get("if-modified-since", "")
    if endpoint.ims and ims.strip():
        # "accurate to the second" (RR): a record updated at any moment of that second or later.
        clauses.append("updated_ms >= ?")
        params.append(parse_if_modified_since(ims) * 1000)

    order_sql = _order_sql(_query_get(query, "order"), endpoint)
    where_sql = " AND ".join(clauses)
    page_raw = _query_get(query, "page")
    paged = bool(page_raw.strip()) and (endpoint.paged or endpoint.fixed_page)
    extra: dict[str, Any] = {}
    limit_sql = ""
    if paged:
        page = max(1, _int_or(page_raw, 1))
        size = FIXED_PAGE_SIZE
        if endpoint.paged:
            size = min(MAX_PAGE_SIZE, max(1, _int_or(_query_get(query, "pageSize"), DEFAULT_PAGE_SIZE)))
        limit_sql = f" LIMIT {size} OFFSET {(page - 1) * size}"
        if endpoint.paged:
            count = int(store.scalar(f"SELECT count(*) FROM records WHERE {where_sql}", tuple(params)))
            extra["pagination"] = {
                "page": page,
                "pageSize": size,
                "pageCount": math.ceil(count / size),
                "itemCount": count,
            }
    rows = store.query(f"SELECT doc FROM records WHERE {where_sql} ORDER BY {order_sql}{limit_sql}", tuple(params))
    summary = not paged and bool(endpoint.summary_drops)
    unitdp4 = _unitdp4(endpoint, query)
    archived_options = endpoint.name == "TrackingCategories" and not _flag(query, "includeArchived")
    verbatim = not summary and not archived_options and (unitdp4 or not _has_unit_amounts(endpoint))
    docs: list[bytes] = []
    for (doc,) in rows:
        if verbatim:
            docs.append(doc.encode())
            continue
        shaped = _shape(orjson.loads(doc), endpoint, summary=summary, unitdp4=unitdp4)
        if archived_options:
            shaped["Options"] = [o for o in shaped.get("Options", []) if o.get("Status") != "ARCHIVED"]
        docs.append(orjson.dumps(shaped))
    return _Body(endpoint.name, docs, extra)


def _int_or(value: str, default: int) -> int:
    try:
        return int(value.strip())
    except ValueError:
        return default


def _has_unit_amounts(endpoint: Endpoint) -> bool:
    return endpoint.name in _UNIT_AMOUNT_ENDPOINTS


_UNIT_AMOUNT_ENDPOINTS = {
    "Invoices",
    "CreditNotes",
    "BankTransactions",
    "Overpayments",
    "Prepayments",
    "PurchaseOrders",
    "Quotes",
    "RepeatingInvoices",
    "Items",
}


def _round2(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
    return value


# The spec makes BankTransaction.LineItems required, so the summary form carries an empty list where
# Xero leaves the lines out (a discrepancy the spec forces; docs/sandbox.md).
_REQUIRED_IN_SUMMARY = {"BankTransactions": ("LineItems",)}


def _shape(doc: dict[str, Any], endpoint: Endpoint, *, summary: bool, unitdp4: bool) -> dict[str, Any]:
    """Derive what Xero sends from the stored full form (4 dp, with line items)."""
    if summary:
        for key in endpoint.summary_drops:
            doc.pop(key, None)
        for key in _REQUIRED_IN_SUMMARY.get(endpoint.name, ()):
            doc[key] = []
    if not unitdp4 and endpoint.name in _UNIT_AMOUNT_ENDPOINTS:
        for line in doc.get("LineItems") or []:
            if "UnitAmount" in line:
                line["UnitAmount"] = _round2(line["UnitAmount"])
        for key in ("SalesDetails", "PurchaseDetails"):
            details = doc.get(key)
            if isinstance(details, dict) and "UnitPrice" in details:
                details["UnitPrice"] = _round2(details["UnitPrice"])
    return doc


def _order_sql(order: str, endpoint: Endpoint) -> str:
    terms: list[str] = []
    for part in _csv(order):
        words = part.split()
        direction = "ASC"
        if len(words) == 2 and words[1].upper() in ("ASC", "DESC"):
            direction = words[1].upper()
        elif len(words) != 1:
            raise validation_error(f"Invalid order clause: {part}")
        terms.append(f"{_field_sql(words[0], endpoint)} {direction}")
    # RR: default order UpdatedDateUTC ASC then the id, "to ensure consistency in ordering across pages".
    if not terms:
        terms.append("updated_ms ASC")
    terms.append("record_id ASC")
    return ", ".join(terms)


_FIELD_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*$")


def _field_sql(name: str, endpoint: Endpoint) -> str:
    if not _FIELD_RE.match(name):
        raise validation_error(f"Invalid field name: {name}")
    lowered = name.lower()
    if lowered in _COLUMN_FIELDS:
        return _COLUMN_FIELDS[lowered]
    if lowered == endpoint.id_field.lower():
        return "record_id"
    if endpoint.number_field and lowered == endpoint.number_field.lower():
        return "number"
    return f"json_extract(doc, '$.{name}')"


def _parse_day_ms(value: str) -> int:
    try:
        day = dt.date.fromisoformat(value.strip()[:10])
    except ValueError as exc:
        raise validation_error(f"Invalid date: {value}") from exc
    return calendar.timegm(day.timetuple()) * 1000


def parse_if_modified_since(value: str) -> int:
    """Epoch seconds of an If-Modified-Since value, truncated to the second.

    Xero documents an ISO timestamp ("yyyy-mm-ddThh:mm:ss", UTC; RR and SPEC `format: date-time`);
    clients also send RFC 1123 HTTP dates, which we accept rather than silently ignore.
    """
    text = value.strip()
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError) as exc:
            raise validation_error(f"Invalid If-Modified-Since header: {value}", kind="ValidationException") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return math.floor(parsed.timestamp())


# ---------------------------------------------------------------------------------------------
# `where`: a small recursive-descent parser for Xero's C#-like filter expressions (RR "Filtering").

_TOKEN_RE = re.compile(
    r"""\s*(?:
        (?P<op>==|!=|>=|<=|>|<|&&|\|\||!|\(|\)|,|\.)
      | (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)


class WhereParser:
    """Translate a `where` expression into an SQL condition over `records` plus its parameters."""

    def __init__(self, text: str, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.tokens = self._tokenize(text)
        self.pos = 0

    @staticmethod
    def _tokenize(text: str) -> list[tuple[str, str]]:
        tokens: list[tuple[str, str]] = []
        pos = 0
        text = text.strip()
        while pos < len(text):
            match = _TOKEN_RE.match(text, pos)
            if not match or match.end() == pos:
                raise validation_error(f"Could not parse the where clause near: {text[pos : pos + 20]!r}")
            pos = match.end()
            kind = match.lastgroup or ""
            tokens.append((kind, match.group(kind)))
        return tokens

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self, expected: str | None = None) -> tuple[str, str]:
        token = self._peek()
        if token is None or (expected is not None and token[1] != expected):
            raise validation_error(f"Unexpected end or token in where clause (expected {expected or 'more'})")
        self.pos += 1
        return token

    def parse(self) -> tuple[str, list[Any]]:
        sql, params = self._or()
        if self._peek() is not None:
            raise validation_error(f"Unexpected token in where clause: {self._peek()[1]!r}")  # type: ignore[index]
        return sql, params

    def _is_word(self, *words: str) -> bool:
        token = self._peek()
        return token is not None and token[0] == "word" and token[1].upper() in words

    def _or(self) -> tuple[str, list[Any]]:
        sql, params = self._and()
        while (tok := self._peek()) is not None and (tok[1] == "||" or self._is_word("OR")):
            self.pos += 1
            rhs, rhs_params = self._and()
            sql, params = f"({sql} OR {rhs})", params + rhs_params
        return sql, params

    def _and(self) -> tuple[str, list[Any]]:
        sql, params = self._unary()
        while (tok := self._peek()) is not None and (tok[1] == "&&" or self._is_word("AND")):
            self.pos += 1
            rhs, rhs_params = self._unary()
            sql, params = f"({sql} AND {rhs})", params + rhs_params
        return sql, params

    def _unary(self) -> tuple[str, list[Any]]:
        token = self._peek()
        if token is not None and (token[1] == "!" or self._is_word("NOT")):
            self.pos += 1
            sql, params = self._unary()
            return f"(NOT {sql})", params
        if token is not None and token[1] == "(":
            self.pos += 1
            sql, params = self._or()
            self._take(")")
            return sql, params
        return self._comparison()

    def _field(self) -> str:
        kind, word = self._take()
        if kind != "word":
            raise validation_error(f"Expected a field name in where clause, got {word!r}")
        parts = [word]
        # Dotted paths (Contact.ContactID) but not a trailing method call (.Contains(...)).
        while (tok := self._peek()) is not None and tok[1] == "." and self._method_follows() is False:
            self.pos += 1
            parts.append(self._take()[1])
        return ".".join(parts)

    def _method_follows(self) -> bool:
        nxt = self.tokens[self.pos + 1] if self.pos + 1 < len(self.tokens) else None
        after = self.tokens[self.pos + 2] if self.pos + 2 < len(self.tokens) else None
        return bool(nxt and after and after[1] == "(" and nxt[1] in ("Contains", "StartsWith", "EndsWith"))

    def _comparison(self) -> tuple[str, list[Any]]:
        name = self._field()
        column = _field_sql(name, self.endpoint)
        token = self._peek()
        if token is not None and token[1] == ".":
            self.pos += 1
            method = self._take()[1]
            self._take("(")
            value = self._value()
            self._take(")")
            if not isinstance(value, str):
                raise validation_error(f"{method} takes a string")
            escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            pattern = {"Contains": f"%{escaped}%", "StartsWith": f"{escaped}%", "EndsWith": f"%{escaped}"}[method]
            return f"({column} LIKE ? ESCAPE '\\')", [pattern]
        if token is None or token[1] not in ("==", "!=", ">", ">=", "<", "<="):
            # A bare boolean field: `IsCustomer` means `IsCustomer == true`.
            return f"({column} = 1)", []
        op = self._take()[1]
        value = self._value()
        if column in _MS_COLUMNS and isinstance(value, str):
            value = _parse_day_ms(value)
        elif column not in _MS_COLUMNS and isinstance(value, _Instant):
            column = f"xero_ms({column})"
        if isinstance(value, _Instant):
            value = value.ms
        if value is None:
            return (f"({column} IS NULL)" if op == "==" else f"({column} IS NOT NULL)"), []
        sql_op = {"==": "=", "!=": "<>"}.get(op, op)
        if isinstance(value, _Guid):
            return f"(lower({column}) {sql_op} ?)", [value.text.lower()]
        if isinstance(value, bool):
            value = int(value)
        return f"({column} {sql_op} ?)", [value]

    def _value(self) -> Any:
        kind, text = self._take()
        if kind == "string":
            return bytes(text[1:-1], "utf-8").decode("unicode_escape") if "\\" in text else text[1:-1]
        if kind == "number":
            return float(text) if "." in text else int(text)
        if kind == "word":
            upper = text.upper()
            if upper in ("TRUE", "FALSE"):
                return upper == "TRUE"
            if upper == "NULL":
                return None
            if upper in ("DATETIME", "DATE"):
                self._take("(")
                numbers: list[int] = []
                while True:
                    kind2, num = self._take()
                    if kind2 != "number":
                        raise validation_error("DateTime() takes numbers")
                    numbers.append(int(num))
                    if self._take()[1] == ")":
                        break
                if len(numbers) < 3:
                    raise validation_error("DateTime() needs at least year, month and day")
                y, mo, d, h, mi, sec = ([*numbers, 0, 0, 0])[:6]
                try:
                    instant = dt.datetime(y, mo, d, h, mi, sec, tzinfo=dt.UTC)
                except ValueError as exc:
                    raise validation_error(f"Invalid DateTime{tuple(numbers)}") from exc
                return _Instant(int(instant.timestamp() * 1000))
            if upper == "GUID":
                self._take("(")
                kind2, guid = self._take()
                self._take(")")
                if kind2 != "string":
                    raise validation_error("Guid() takes a string")
                return _Guid(guid[1:-1])
        raise validation_error(f"Unexpected value in where clause: {text!r}")


@dataclass(frozen=True)
class _Instant:
    ms: int


@dataclass(frozen=True)
class _Guid:
    text: str


_MSDATE_RE = re.compile(r"/Date\((-?\d+)")


def _xero_ms(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    match = _MSDATE_RE.search(value)
    return int(match.group(1)) if match else None


def _ensure_sql_functions(store: SandboxStore) -> None:
    if getattr(store, "_sandbox_functions", False):
        return
    store.db.create_scalar_function("xero_ms", _xero_ms, 1, deterministic=True)  # type: ignore[arg-type]
    store._sandbox_functions = True  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------
# Single records, history, attachments


def _find_record(store: SandboxStore, tenant: str, endpoint: Endpoint, ref: str) -> tuple[str, str]:
    row = _row(
        store,
        "SELECT record_id, doc FROM records WHERE tenant_id=? AND endpoint=? AND record_id=?",
        (tenant, endpoint.name, ref),
    )
    if row is None:
        row = _row(
            store,
            "SELECT record_id, doc FROM records WHERE tenant_id=? AND endpoint=? AND lower(record_id)=lower(?)",
            (tenant, endpoint.name, ref),
        )
    if row is None and endpoint.number_field:
        row = _row(
            store,
            "SELECT record_id, doc FROM records WHERE tenant_id=? AND endpoint=? AND number=? ORDER BY record_id",
            (tenant, endpoint.name, ref),
        )
    if row is None:
        raise not_found()
    return str(row[0]), str(row[1])


def _history(store: SandboxStore, tenant: str, endpoint: Endpoint, record_id: str) -> list[dict[str, Any]]:
    rows = store.query(
        "SELECT date_ms, changes, user, details FROM history WHERE tenant_id=? AND endpoint=? AND record_id=?"
        " ORDER BY seq",
        (tenant, endpoint.name, record_id),
    )
    return [
        {
            "Changes": changes,
            "DateUTCString": dt.datetime.fromtimestamp(date_ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
            "DateUTC": ms_date(date_ms),
            "User": user,
            "Details": details,
        }
        for date_ms, changes, user, details in rows
    ]


def _attachment_url(base_url: str, endpoint: Endpoint, record_id: str, file_name: str) -> str:
    # ATT: brackets in file names must be percent-encoded; we encode everything unsafe in a path.
    return f"{base_url}{API_PREFIX}/{endpoint.name}/{record_id}/Attachments/{urllib.parse.quote(file_name)}"


def _attachment_list(
    store: SandboxStore, tenant: str, endpoint: Endpoint, record_id: str, base_url: str
) -> list[dict[str, Any]]:
    rows = store.query(
        "SELECT attachment_id, file_name, mime_type, include_online, length(content) FROM attachments"
        " WHERE tenant_id=? AND endpoint=? AND record_id=? ORDER BY file_name, attachment_id",
        (tenant, endpoint.name, record_id),
    )
    result = []
    for attachment_id, file_name, mime_type, include_online, length in rows:
        item: dict[str, Any] = {
            "AttachmentID": attachment_id,
            "FileName": file_name,
            "Url": _attachment_url(base_url, endpoint, record_id, file_name),
            "MimeType": mime_type,
            "ContentLength": int(length),
        }
        if endpoint.name in ("Invoices", "CreditNotes"):
            item["IncludeOnline"] = bool(include_online)
        result.append(item)
    return result


def _attachment_content(store: SandboxStore, request: ApiRequest, route: ApiRoute) -> ApiResponse:
    endpoint = route.endpoint
    assert endpoint is not None
    record_id, _ = _find_record(store, request.tenant_id, endpoint, route.record_ref or "")
    ref = route.attachment_ref or ""
    row = _row(
        store,
        "SELECT file_name, mime_type, content FROM attachments WHERE tenant_id=? AND endpoint=? AND record_id=?"
        " AND (lower(attachment_id)=lower(?) OR file_name=?) ORDER BY attachment_id",
        (request.tenant_id, endpoint.name, record_id, ref, ref),
    )
    if row is None:
        raise not_found()
    file_name, mime_type, content = row
    quoted = urllib.parse.quote(file_name)
    return ApiResponse(
        200,
        bytes(content),
        mime_type,
        {"content-disposition": f"attachment; filename*=UTF-8''{quoted}"},
    )


# ---------------------------------------------------------------------------------------------
# Journals (the general ledger) and reports


def _journal_docs(
    store: SandboxStore, tenant: str, where_sql: str, params: Sequence[Any], *, with_source: bool
) -> list[dict[str, Any]]:
    journals = list(
        store.query(
            "SELECT journal_number, journal_id, journal_date_ms, created_ms, source_id, source_type, reference"
            f" FROM journals WHERE tenant_id=? AND {where_sql} ORDER BY journal_number LIMIT {JOURNALS_PER_CALL}",
            (tenant, *params),
        )
    )
    if not journals:
        return []
    lines: dict[int, list[dict[str, Any]]] = {}
    first, last = journals[0][0], journals[-1][0]
    for row in store.query(
        "SELECT journal_number, journal_line_id, account_id, account_code, account_type, account_name, description,"
        " net_amount, gross_amount, tax_amount, tax_type, tax_name, tracking FROM journal_lines"
        " WHERE tenant_id=? AND journal_number BETWEEN ? AND ? ORDER BY journal_number, line_no",
        (tenant, first, last),
    ):
        (number, line_id, account_id, code, account_type, name, description, net, gross, tax, tax_type, tax_name,
         tracking) = row  # fmt: skip
        line: dict[str, Any] = {
            "JournalLineID": line_id,
            "AccountID": account_id,
            "AccountCode": code,
            "AccountType": account_type,
            "AccountName": name,
            "Description": description or "",
            "NetAmount": net,
            "GrossAmount": gross,
            "TaxAmount": tax,
            "TrackingCategories": orjson.loads(tracking) if tracking else [],
        }
        if tax_type:
            line["TaxType"] = tax_type
            line["TaxName"] = tax_name
        lines.setdefault(number, []).append({k: v for k, v in line.items() if v is not None})
    docs = []
    for number, journal_id, date_ms, created_ms, source_id, source_type, reference in journals:
        doc: dict[str, Any] = {
            "JournalID": journal_id,
            "JournalDate": ms_date(date_ms),
            "JournalNumber": number,
            "CreatedDateUTC": ms_date(created_ms),
        }
        if reference:
            doc["Reference"] = reference
        if with_source and source_id:
            doc["SourceID"] = source_id
        if with_source and source_type:
            doc["SourceType"] = source_type
        doc["JournalLines"] = lines.get(number, [])
        docs.append(doc)
    return docs


def _journals(store: SandboxStore, tenant: str, request: ApiRequest) -> _Body:
    clauses = ["journal_number > ?"]
    params: list[Any] = [max(0, _int_or(_query_get(request.query, "offset") or "0", 0))]
    ims = request.headers.get("if-modified-since", "")
    if ims.strip():
        clauses.append("created_ms >= ?")
        params.append(parse_if_modified_since(ims) * 1000)
    if _flag(request.query, "paymentsOnly"):
        clauses.append(f"source_type IN ({','.join('?' * len(_PAYMENT_SOURCE_TYPES))})")
        params.extend(_PAYMENT_SOURCE_TYPES)
    docs = _journal_docs(store, tenant, " AND ".join(clauses), params, with_source=True)
    return _Body("Journals", [orjson.dumps(d) for d in docs])


def _journal(store: SandboxStore, tenant: str, ref: str) -> _Body:
    if ref.isdigit():
        docs = _journal_docs(store, tenant, "journal_number = ?", [int(ref)], with_source=False)
    else:
        docs = _journal_docs(store, tenant, "lower(journal_id) = lower(?)", [ref], with_source=False)
    if not docs:
        raise not_found()
    return _Body("Journals", [orjson.dumps(docs[0])])


ReportFunction = Callable[[SandboxStore, str, str, Mapping[str, str]], dict[str, Any]]


def _report(store: SandboxStore, tenant: str, name: str, query: Mapping[str, str]) -> dict[str, Any]:
    try:
        from sandbox import reports
    except ImportError as exc:  # the data side has not been installed alongside
        raise ApiError(501, "Reports are not available in this sandbox build") from exc
    try:
        body = reports.report(store, tenant, name, dict(query))
    except ValueError as exc:
        raise validation_error(str(exc), kind="ValidationException") from exc
    except LookupError as exc:
        raise not_found() from exc
    return {k: v for k, v in body.items() if k not in ("Id", "Status", "ProviderName", "DateTimeUTC")}


# ---------------------------------------------------------------------------------------------
# XML: Xero's default representation. A minimal rendering: enough that a client which forgot
# `Accept: application/json` gets a well-formed XML document and not JSON.

_IRREGULAR_SINGULARS = {
    "Addresses": "Address",
    "Currencies": "Currency",
    "TrackingCategories": "TrackingCategory",
    "Categories": "Category",
    "HistoryRecords": "HistoryRecord",
    "Organisations": "Organisation",
    "Tracking": "TrackingCategory",
}


def _singular(name: str) -> str:
    if name in _IRREGULAR_SINGULARS:
        return _IRREGULAR_SINGULARS[name]
    if name.endswith("ies"):
        return name[:-3] + "y"
    if name.endswith("s"):
        return name[:-1]
    return name + "Item"


def _xml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        ms = _xero_ms(value) if value.startswith("/Date(") else None
        if ms is not None:
            # XML carries ISO timestamps where JSON carries /Date(ms)/ (RR "Dates").
            return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return xml_escape(value)
    return xml_escape(str(value))


def _xml_value(name: str, value: Any, out: list[str]) -> None:
    if value is None:
        return
    if isinstance(value, dict):
        out.append(f"<{name}>")
        for key, item in value.items():
            _xml_value(key, item, out)
        out.append(f"</{name}>")
    elif isinstance(value, list):
        out.append(f"<{name}>")
        child = _singular(name)
        for item in value:
            _xml_value(child, item, out)
        out.append(f"</{name}>")
    else:
        out.append(f"<{name}>{_xml_scalar(value)}</{name}>")


def render_xml(root: str, body: Mapping[str, Any]) -> bytes:
    out: list[str] = [f'<{root} xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">']
    for key, value in body.items():
        _xml_value(key, value, out)
    out.append(f"</{root}>")
    return "".join(out).encode()
