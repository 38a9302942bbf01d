"""Shared helpers for the Xero adapter's integration tests: a small, known sandbox organisation, an in-memory
`TokenStore`, and the real connect flow through `appliance.xero.oauth` against the sandbox.

The organisation is written straight into the sandbox's state file (the schema in `sandbox/store.py` is the
contract) before the server starts, so counts and page boundaries are known exactly.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from appliance.models import Tenant, TokenSet
from appliance.settings import RateLimits, SecretRef, XeroApp, XeroHosts
from appliance.xero.oauth import XeroIdentity, build_authorization, parse_redirect
from sandbox.store import Record, SandboxStore, ms_date

TENANT = "7d6c2f5e-1f4b-4c53-9d55-3f3c6c1a0001"
ORG_NAME = "Fixture Traders Ltd"
BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
INVOICES = 250
CONTACTS = 30
ACCOUNTS = 12
JOURNALS = 230
ATTACHMENT_BYTES = b"%PDF-1.4 fixture attachment\n" * 200

# Fast enough for tests, and our own governor must not throttle them (the 429 tests set their own).
TEST_LIMITS = RateLimits(tenant_per_minute=100_000, app_per_minute=1_000_000, tenant_per_day=1_000_000)


def _guid(kind: str, index: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"strongroom-xero-tests:{kind}:{index}"))


def populate(state_path: Path) -> None:
    """Write one organisation with known records into a fresh sandbox state file."""
    store = SandboxStore(state_path)
    try:
        with store.transaction():
            organisation = {
                "OrganisationID": TENANT,
                "Name": ORG_NAME,
                "LegalName": ORG_NAME,
                "BaseCurrency": "NZD",
                "CountryCode": "NZ",
                "OrganisationType": "COMPANY",
                "CreatedDateUTC": ms_date(BASE_MS),
            }
            store.query(
                "INSERT INTO orgs(tenant_id, name, country, base_currency, tier, size, seed, created_ms, doc)"
                " VALUES (?,?,?,?,?,?,?,?,?)",
                (TENANT, ORG_NAME, "NZ", "NZD", "core", "fixture", 0, BASE_MS, store_json(organisation)),
            )
            records: list[Record] = []
            for index in range(ACCOUNTS):
                account_id = _guid("account", index)
                updated = BASE_MS + index * 1000
                records.append(
                    Record(
                        TENANT,
                        "Accounts",
                        account_id,
                        {
                            "AccountID": account_id,
                            "Code": str(200 + index),
                            "Name": f"Account {index}",
                            "Status": "ACTIVE",
                            "UpdatedDateUTC": ms_date(updated),
                        },
                        updated_ms=updated,
                        status="ACTIVE",
                        number=str(200 + index),
                    )
                )
            for index in range(CONTACTS):
                contact_id = _guid("contact", index)
                updated = BASE_MS + index * 60_000
                status = "ARCHIVED" if index == 0 else "ACTIVE"
                records.append(
                    Record(
                        TENANT,
                        "Contacts",
                        contact_id,
                        {
                            "ContactID": contact_id,
                            "Name": f"Contact {index}",
                            "ContactStatus": status,
                            "UpdatedDateUTC": ms_date(updated),
                            "HasAttachments": False,
                        },
                        updated_ms=updated,
                        status=status,
                    )
                )
            for index in range(INVOICES):
                invoice_id = _guid("invoice", index)
                updated = BASE_MS + index * 3_600_000
                date_ms = BASE_MS - 86_400_000 * (INVOICES - index)
                status = "VOIDED" if index % 50 == 7 else ("PAID" if index % 3 else "AUTHORISED")
                doc = {
                    "InvoiceID": invoice_id,
                    "InvoiceNumber": f"INV-{index:05d}",
                    "Type": "ACCREC",
                    "Status": status,
                    "Contact": {"ContactID": _guid("contact", index % CONTACTS)},
                    "Date": ms_date(date_ms),
                    "UpdatedDateUTC": ms_date(updated),
                    "HasAttachments": index in (3, 4),
                    "LineItems": [
                        {
                            "LineItemID": _guid("line", index),
                            "Quantity": 1.0,
                            "UnitAmount": 10.1234,
                            "LineAmount": 10.12,
                        }
                    ],
                    "Total": 10.12,
                }
                records.append(
                    Record(
                        TENANT,
                        "Invoices",
                        invoice_id,
                        doc,
                        updated_ms=updated,
                        date_ms=date_ms,
                        status=status,
                        type="ACCREC",
                        number=f"INV-{index:05d}",
                        has_attachments=index in (3, 4),
                    )
                )
            store.put_records(records)
            for index, name in ((3, "receipt (copy).pdf"), (4, "Zahlung März [final].pdf")):
                store.query(
                    "INSERT INTO attachments(attachment_id, tenant_id, endpoint, record_id, file_name, mime_type,"
                    " include_online, content, updated_ms) VALUES (?,?,?,?,?,?,?,?,?)",
                    (
                        _guid("attachment", index),
                        TENANT,
                        "Invoices",
                        _guid("invoice", index),
                        name,
                        "application/pdf",
                        0,
                        ATTACHMENT_BYTES + bytes([index]),
                        BASE_MS,
                    ),
                )
            account_id = _guid("account", 0)
            for number in range(1, JOURNALS + 1):
                store.query(
                    "INSERT INTO journals(tenant_id, journal_number, journal_id, journal_date_ms, created_ms,"
                    " source_id, source_type, reference) VALUES (?,?,?,?,?,?,?,?)",
                    (TENANT, number, _guid("journal", number), BASE_MS, BASE_MS + number, None, "MANJOURNAL", None),
                )
                for line, amount in ((1, 5.0), (2, -5.0)):
                    store.query(
                        "INSERT INTO journal_lines(tenant_id, journal_number, line_no, journal_line_id, account_id,"
                        " account_code, account_type, account_name, description, net_amount, gross_amount,"
                        " tax_amount, tax_type, tax_name, contact_id, date_ms, tracking)"
                        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        (
                            TENANT,
                            number,
                            line,
                            _guid(f"journal-line-{line}", number),
                            account_id,
                            "200",
                            "REVENUE",
                            "Account 0",
                            None,
                            amount,
                            amount,
                            0.0,
                            "NONE",
                            "No GST",
                            None,
                            BASE_MS,
                            "[]",
                        ),
                    )
    finally:
        store.close()


def store_json(doc: Any) -> str:
    from sandbox.store import canonical_json

    return canonical_json(doc)


def hosts_for(base_url: str) -> XeroHosts:
    return XeroHosts(login_url=base_url, identity_url=base_url, api_url=base_url)


def app_for(info: dict[str, Any], directory: Path, *, name: str = "test") -> XeroApp:
    secret = directory / f"{name}-client-secret"
    secret.write_text(info["client_secret"])
    secret.chmod(0o600)
    return XeroApp(
        name=name,
        client_id=info["client_id"],
        client_secret=SecretRef(file=secret),
        redirect_uri=info["redirect_uri"],
        scopes=info["scope"].split(),
        tier=info.get("tier", "core"),
    )


async def admin(base_url: str, path: str, body: dict[str, Any] | None = None) -> Any:
    async with httpx.AsyncClient(base_url=base_url, timeout=60, trust_env=False) as http:
        response = await http.post(f"/_sandbox/{path}", json=body or {})
        response.raise_for_status()
        return response.json()


@dataclass
class Connected:
    app: XeroApp
    hosts: XeroHosts
    identity: XeroIdentity
    token_set: TokenSet
    tenants: list[Tenant]


async def connect(info: dict[str, Any], directory: Path) -> Connected:
    """The auth-code + PKCE flow with the sandbox's auto-consent, through our own oauth module."""
    app = app_for(info, directory)
    hosts = hosts_for(info["base_url"])
    pending = build_authorization(app, hosts)
    async with httpx.AsyncClient(timeout=30, trust_env=False) as http:
        response = await http.get(pending.url, follow_redirects=False)
    assert response.status_code in (302, 303), response.text[:300]
    code = parse_redirect(response.headers["location"], pending.state)
    identity = XeroIdentity(app, hosts)
    token_set = await identity.exchange_code(code, pending, state=pending.state)
    tenants = await identity.list_connections(token_set.access_token)
    return Connected(app, hosts, identity, token_set, tenants)


@dataclass
class MemoryTokenStore:
    """`TokenStore` in memory: a dict and a per-grant lock that also excludes other threads."""

    sets: dict[str, TokenSet] = field(default_factory=dict)
    saves: int = 0
    _guard: threading.Lock = field(default_factory=threading.Lock)
    _locks: dict[str, threading.Lock] = field(default_factory=dict)

    def load(self, grant_id: str) -> TokenSet | None:
        return self.sets.get(grant_id)

    def save(self, grant_id: str, token_set: TokenSet) -> None:
        self.sets[grant_id] = token_set
        self.saves += 1

    def refresh_lock(self, grant_id: str) -> _GrantLock:
        with self._guard:
            lock = self._locks.setdefault(grant_id, threading.Lock())
        return _GrantLock(lock)


class _GrantLock:
    """Held until `__exit__` is called, like a lease row: garbage collection does not release it."""

    def __init__(self, lock: threading.Lock) -> None:
        self.lock = lock

    def __enter__(self) -> None:
        self.lock.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.lock.release()
