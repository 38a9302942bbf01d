"""Every list and single-record response of every sandbox endpoint validates against Xero's OpenAPI spec.

The official spec (`../shared/xero-openapi/`, relative to the repository root) fails strict spec
validation (string defaults on booleans), so the spec check is off and only responses are validated,
with openapi-core's real validator. Discrepancies the spec forces are listed in docs/sandbox.md.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from sandbox.accounting import ENDPOINTS, REPORT_SCOPES
from sandbox.testing import SandboxServer, TokenSet
from tests.conftest import TinySandbox

# The one place the spec location is written: a sibling of the repository, as in CI.
XERO_OPENAPI_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "xero-openapi"
HOST = "https://api.xero.com"
ACCOUNTING_BASE = "/api.xro/2.0"  # the accounting spec's server path; identity paths sit at the root

pytestmark = pytest.mark.skipif(not XERO_OPENAPI_DIR.is_dir(), reason=f"{XERO_OPENAPI_DIR} is missing")


@functools.cache
def _spec(name: str) -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader reads the 20k-line spec 10x faster
    return yaml.load((XERO_OPENAPI_DIR / name).read_text(), Loader=loader)  # type: ignore[no-any-return]


@functools.cache
def _openapi(name: str) -> OpenAPI:
    return OpenAPI.from_dict(_spec(name), config=Config(spec_validator_cls=None))


def _spec_paths(name: str) -> frozenset[str]:
    return frozenset(_spec(name)["paths"])


def _validate(
    spec_name: str, base: str, path: str, pattern: str, response: httpx.Response, query: dict[str, Any]
) -> None:
    assert response.status_code == 200, f"{path}: {response.status_code} {response.text[:300]}"
    args = {k: str(v) for k, v in query.items()}
    request = MockRequest(HOST, "get", base + path, path_pattern=base + pattern, args=args)
    mock = MockResponse(
        response.content,
        status_code=response.status_code,
        headers=dict(response.headers),
        content_type=response.headers["content-type"].split(";")[0],
    )
    _openapi(spec_name).validate_response(request, mock)


def _explain(error: BaseException) -> str:
    """The schema errors (message and JSON path) buried in openapi-core's exception chain."""
    seen: BaseException | None = error
    while seen is not None:
        schema_errors = getattr(seen, "schema_errors", None)
        if schema_errors:
            return "; ".join(
                f"{'/'.join(str(p) for p in e.absolute_path)}: {e.message[:200]}" for e in schema_errors[:5]
            )
        seen = seen.__cause__ or seen.__context__
    return str(error)[:500]


# Path parameter name of the single-record path in the spec, per endpoint.
_SINGLE_PATTERN = {
    "TaxRates": "/TaxRates/{TaxType}",
    "Currencies": None,  # no single-record GET in the spec
}


def _walk_endpoints(
    api: httpx.Client, *, with_journals: bool
) -> Iterator[tuple[str, str, httpx.Response, dict[str, Any]]]:
    """Yield (path, spec pattern, response, query) for every list and single record of every endpoint."""
    for endpoint in ENDPOINTS.values():
        name = endpoint.name
        queries: list[dict[str, Any]] = [{}]
        if endpoint.paged or endpoint.fixed_page:
            queries.append({"page": 1} | ({"pageSize": 1000} if endpoint.paged else {}))
        if endpoint.unitdp:
            queries.append({"unitdp": 4, **({"page": 1} if endpoint.paged else {})})
        first_doc: dict[str, Any] | None = None
        for query in queries:
            response = api.get(f"/{name}", params=query)
            yield f"/{name}", f"/{name}", response, query
            items = response.json().get(name) or []
            first_doc = first_doc or (items[0] if items else None)
        if first_doc is None:
            continue
        pattern = _SINGLE_PATTERN.get(name, f"/{name}/{{{endpoint.id_field}}}")
        record_id = first_doc[endpoint.id_field]
        if pattern is not None:
            yield f"/{name}/{record_id}", pattern, api.get(f"/{name}/{record_id}"), {}
        id_pattern = f"/{name}/{{{endpoint.id_field}}}"
        if endpoint.history and f"{id_pattern}/History" in _spec_paths("xero_accounting.yaml"):
            yield f"/{name}/{record_id}/History", f"{id_pattern}/History", api.get(f"/{name}/{record_id}/History"), {}
        if endpoint.attachments:
            with_files = [
                d
                for d in (api.get(f"/{name}", params={"page": 1} if endpoint.paged else {}).json()[name])
                if d.get("HasAttachments")
            ]
            target = with_files[0][endpoint.id_field] if with_files else record_id
            yield (
                f"/{name}/{target}/Attachments",
                f"{id_pattern}/Attachments",
                api.get(f"/{name}/{target}/Attachments"),
                {},
            )
    yield "/Organisation", "/Organisation", api.get("/Organisation"), {}
    contacts = api.get("/Contacts", params={"page": 1}).json()["Contacts"]
    for report in REPORT_SCOPES:
        query = {"contactId": contacts[0]["ContactID"]} if report.startswith("Aged") else {}
        yield f"/Reports/{report}", f"/Reports/{report}", api.get(f"/Reports/{report}", params=query), query
    if with_journals:
        journals = api.get("/Journals")
        yield "/Journals", "/Journals", journals, {}
        first = journals.json()["Journals"][0]
        yield f"/Journals/{first['JournalID']}", "/Journals/{JournalID}", api.get(f"/Journals/{first['JournalID']}"), {}


def _api_client(base_url: str, token: TokenSet, tenant_id: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"{base_url}/api.xro/2.0",
        headers={
            "Authorization": f"Bearer {token.access_token}",
            "xero-tenant-id": tenant_id,
            "Accept": "application/json",
        },
        timeout=60,
    )


def test_tiny_organisation_responses_match_the_spec(sandbox_server: TinySandbox) -> None:
    sandbox_server.server.set_tier("advanced")
    sandbox_server.server.set_limits(minute=100_000)
    token = sandbox_server.server.connect(scope=sandbox_server.info["scope"] + " accounting.journals.read")
    validated = 0
    with _api_client(sandbox_server.base_url, token, sandbox_server.org.tenant_id) as api:
        for path, pattern, response, query in _walk_endpoints(api, with_journals=True):
            _validate("xero_accounting.yaml", ACCOUNTING_BASE, path, pattern, response, query)
            validated += 1
    assert validated > 40


def test_generated_organisation_responses_match_the_spec(generated_sandbox: SandboxServer) -> None:
    generated_sandbox.set_limits(minute=100_000)
    token = generated_sandbox.connect(scope=generated_sandbox.info["scope"])
    tenant_id = generated_sandbox.info["tenants"][0]["tenant_id"]
    failures: list[str] = []
    validated = 0
    with _api_client(generated_sandbox.base_url, token, tenant_id) as api:
        for path, pattern, response, query in _walk_endpoints(api, with_journals=True):
            try:
                _validate("xero_accounting.yaml", ACCOUNTING_BASE, path, pattern, response, query)
            except Exception as error:  # collect every endpoint's problem, not just the first
                failures.append(f"{path} {query}: {_explain(error)}")
            validated += 1
    assert not failures, "\n".join(failures)
    assert validated > 40


def test_connections_match_the_identity_spec(sandbox_server: TinySandbox, tokens: TokenSet) -> None:
    with httpx.Client(base_url=sandbox_server.base_url) as http:
        response = http.get("/connections", headers={"Authorization": f"Bearer {tokens.access_token}"})
    assert response.json()
    _validate("xero-identity.yaml", "", "/Connections", "/Connections", response, {})
