"""Xero's reading rules on the sandbox over real HTTP: paging, summaries, filters, If-Modified-Since, XML."""

from __future__ import annotations

import datetime as dt
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sandbox.testing import TokenSet
from tests.conftest import T0, TinySandbox


@pytest.fixture
def api(sandbox_server: TinySandbox, tokens: TokenSet) -> Iterator[httpx.Client]:
    headers = {
        "Authorization": f"Bearer {tokens.access_token}",
        "xero-tenant-id": sandbox_server.org.tenant_id,
        "Accept": "application/json",
    }
    with httpx.Client(base_url=f"{sandbox_server.base_url}/api.xro/2.0", headers=headers, timeout=30) as client:
        yield client


def _get(api: httpx.Client, path: str, **params: Any) -> dict[str, Any]:
    response = api.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


def test_envelope_has_xero_fields(api: httpx.Client) -> None:
    body = _get(api, "/Accounts")
    assert body["Status"] == "OK"
    assert body["Id"]
    assert body["ProviderName"]
    assert body["DateTimeUTC"].startswith("/Date(")
    assert len(body["Accounts"]) == 2


def test_paging_to_the_last_page(api: httpx.Client, sandbox_server: TinySandbox) -> None:
    seen: list[str] = []
    page = 1
    while True:
        body = _get(api, "/Invoices", page=page, pageSize=3)
        assert body["pagination"] == {"page": page, "pageSize": 3, "pageCount": 3, "itemCount": 7}
        seen += [i["InvoiceID"] for i in body["Invoices"]]
        if page == body["pagination"]["pageCount"]:
            break
        page += 1
    assert len(body["Invoices"]) == 1  # 7 = 3 + 3 + 1
    # Default order UpdatedDateUTC ASC then id: the same order the fixture computed.
    assert tuple(seen) == sandbox_server.org.invoice_ids
    beyond = _get(api, "/Invoices", page=4, pageSize=3)
    assert beyond["Invoices"] == []
    assert beyond["pagination"]["itemCount"] == 7


def test_page_size_is_clamped_and_defaults_to_100(api: httpx.Client) -> None:
    assert _get(api, "/Invoices", page=1, pageSize=5000)["pagination"]["pageSize"] == 1000
    assert _get(api, "/Invoices", page=1, pageSize=0)["pagination"]["pageSize"] == 1
    assert _get(api, "/Invoices", page=1)["pagination"]["pageSize"] == 100


def test_lists_without_page_omit_line_items_and_have_no_pagination(api: httpx.Client) -> None:
    summary = _get(api, "/Invoices")
    assert "pagination" not in summary
    assert all("LineItems" not in i for i in summary["Invoices"])
    paged = _get(api, "/Invoices", page=1)
    assert all(i["LineItems"] for i in paged["Invoices"])


def test_unit_amounts_are_rounded_unless_unitdp_4(api: httpx.Client, sandbox_server: TinySandbox) -> None:
    invoice_id = sandbox_server.org.invoice_ids[0]
    assert _get(api, f"/Invoices/{invoice_id}")["Invoices"][0]["LineItems"][0]["UnitAmount"] == 12.35
    assert _get(api, f"/Invoices/{invoice_id}", unitdp=4)["Invoices"][0]["LineItems"][0]["UnitAmount"] == 12.3456
    assert _get(api, "/Invoices", page=1, unitdp=4)["Invoices"][0]["LineItems"][0]["UnitAmount"] == 12.3456


def test_single_record_by_id_and_by_number(api: httpx.Client, sandbox_server: TinySandbox) -> None:
    by_number = _get(api, "/Invoices/INV-0001")["Invoices"][0]
    assert _get(api, f"/Invoices/{by_number['InvoiceID']}")["Invoices"][0] == by_number
    assert (
        _get(api, f"/Invoices/{by_number['InvoiceID'].upper()}")["Invoices"][0]["InvoiceID"] == by_number["InvoiceID"]
    )
    assert api.get("/Invoices/00000000-0000-0000-0000-000000000000").status_code == 404
    assert api.get("/NoSuchEndpoint").status_code == 404


def test_if_modified_since_is_accurate_to_the_second(api: httpx.Client, sandbox_server: TinySandbox) -> None:
    updated = sandbox_server.org.invoice_updated_ms

    def since(value: str) -> list[str]:
        response = api.get("/Invoices", headers={"If-Modified-Since": value})
        assert response.status_code == 200
        return [i["InvoiceID"] for i in response.json()["Invoices"]]

    # Invoice 5 was updated 500 ms into second T0+2s; invoice 6 at T0+3s.
    second = T0 + 2000
    at_second = since(_iso(second))
    assert at_second == [i for i, u in zip(sandbox_server.org.invoice_ids, updated, strict=True) if u >= second]
    # Milliseconds in the header are dropped: 900 ms into that second still includes the 500 ms record.
    assert since(_iso(second + 900)) == at_second
    # One second later excludes everything updated within that second.
    assert since(_iso(second + 1000)) == [
        i for i, u in zip(sandbox_server.org.invoice_ids, updated, strict=True) if u >= second + 1000
    ]
    assert since(_iso(T0 - 1000)) == list(sandbox_server.org.invoice_ids)
    assert since("2030-01-01T00:00:00") == []
    # The RFC 1123 form some clients send is read the same way.
    http_date = dt.datetime.fromtimestamp(second / 1000, dt.UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert since(http_date) == at_second


def test_where_filters(api: httpx.Client, sandbox_server: TinySandbox) -> None:
    def ids(where: str, **more: Any) -> set[str]:
        return {i["InvoiceNumber"] for i in _get(api, "/Invoices", where=where, **more)["Invoices"]}

    assert ids('Status=="PAID"') == {"INV-0002", "INV-0006"}
    assert ids('Status != "PAID" && Type == "ACCPAY"') == {"INV-0001", "INV-0004", "INV-0007"}
    assert ids('Status=="PAID" || Status=="VOIDED"') == {"INV-0002", "INV-0004", "INV-0006"}
    day = dt.datetime.fromtimestamp((T0 - 5 * 86_400_000) / 1000, dt.UTC)
    assert ids(f"Date >= DateTime({day.year}, {day.month:02d}, {day.day:02d})") == {"INV-0006", "INV-0007"}
    assert ids(f'Contact.ContactID == Guid("{sandbox_server.org.contact_active}")') == {
        f"INV-{n:04d}" for n in range(1, 8)
    }
    assert ids('Reference.Contains("Ref 3")') == {"INV-0004"}
    bad = api.get("/Invoices", params={"where": 'Status=="PAID" &&'})
    assert bad.status_code == 400
    assert bad.json()["Type"] == "QueryParseException"


def test_order_ids_and_statuses(api: httpx.Client, sandbox_server: TinySandbox) -> None:
    numbers = [i["InvoiceNumber"] for i in _get(api, "/Invoices", order="InvoiceNumber DESC")["Invoices"]]
    assert numbers == sorted(numbers, reverse=True)
    wanted = list(sandbox_server.org.invoice_ids[:2])
    assert {i["InvoiceID"] for i in _get(api, "/Invoices", IDs=",".join(wanted))["Invoices"]} == set(wanted)
    statuses = {i["Status"] for i in _get(api, "/Invoices", Statuses="DRAFT,VOIDED")["Invoices"]}
    assert statuses == {"DRAFT", "VOIDED"}
    assert [i["InvoiceNumber"] for i in _get(api, "/Invoices", InvoiceNumbers="INV-0003")["Invoices"]] == ["INV-0003"]


def test_include_archived_and_include_deleted(api: httpx.Client, sandbox_server: TinySandbox) -> None:
    active_only = {c["ContactID"] for c in _get(api, "/Contacts")["Contacts"]}
    assert active_only == {sandbox_server.org.contact_active}
    everything = {c["ContactID"] for c in _get(api, "/Contacts", includeArchived="true")["Contacts"]}
    assert everything == {sandbox_server.org.contact_active, sandbox_server.org.contact_archived}
    assert [t["Status"] for t in _get(api, "/BankTransfers")["BankTransfers"]] == ["AUTHORISED"]
    assert len(_get(api, "/BankTransfers", includeDeleted="true")["BankTransfers"]) == 2
    options = _get(api, "/TrackingCategories")["TrackingCategories"][0]["Options"]
    assert [o["Name"] for o in options] == ["North"]
    options = _get(api, "/TrackingCategories", includeArchived="true")["TrackingCategories"][0]["Options"]
    assert [o["Name"] for o in options] == ["North", "South"]


def test_history_and_attachments(api: httpx.Client, sandbox_server: TinySandbox) -> None:
    org = sandbox_server.org
    invoice = _get(api, "/Invoices/INV-0001")["Invoices"][0]
    history = _get(api, f"/Invoices/{invoice['InvoiceID']}/History")["HistoryRecords"]
    assert [h["Changes"] for h in history] == ["Created"]
    listing = _get(api, f"/Invoices/{invoice['InvoiceID']}/Attachments")["Attachments"]
    assert [(a["FileName"], a["ContentLength"], a["MimeType"]) for a in listing] == [
        (org.attachment_name, len(org.attachment_bytes), "text/csv")
    ]
    # The advertised Url works (brackets and spaces percent-encoded), as does the AttachmentID.
    by_url = api.get(listing[0]["Url"])
    assert by_url.status_code == 200
    assert by_url.content == org.attachment_bytes
    assert by_url.headers["content-type"].startswith("text/csv")
    by_id = api.get(f"/Invoices/{invoice['InvoiceID']}/Attachments/{org.attachment_id}")
    assert by_id.content == org.attachment_bytes
    quoted = urllib.parse.quote("missing.pdf")
    assert api.get(f"/Invoices/{invoice['InvoiceID']}/Attachments/{quoted}").status_code == 404


def test_organisation_endpoint(api: httpx.Client, sandbox_server: TinySandbox) -> None:
    organisation = _get(api, "/Organisation")["Organisations"][0]
    assert organisation["OrganisationID"] == sandbox_server.org.tenant_id
    assert organisation["BaseCurrency"] == "NZD"


def test_without_accept_json_the_answer_is_xml(api: httpx.Client) -> None:
    response = api.get("/Invoices", headers={"Accept": "*/*"}, params={"page": 1})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    root = ET.fromstring(response.content)
    assert root.tag == "Response"
    assert root.findtext("Status") == "OK"
    assert len(root.findall("./Invoices/Invoice")) == 7
    assert root.find("./pagination/itemCount") is not None
    error = api.get("/Invoices", headers={"Accept": "*/*"}, params={"where": "=="})
    assert error.status_code == 400
    assert ET.fromstring(error.content).tag == "ApiException"


def test_writes_need_a_write_scope_and_other_verbs_are_405(api: httpx.Client) -> None:
    # This token holds read scopes only: Xero refuses the write as unauthorised (writes: test_sandbox_writes.py).
    assert api.post("/Invoices", json={}).status_code == 401
    assert api.patch("/Invoices", json={}).status_code == 405
