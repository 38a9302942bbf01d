"""A write-capable API client for sandbox tests: every request and response checked against Xero's OpenAPI spec.

Shared by `test_sandbox_writes.py` and `test_sandbox_damage.py`. Requests go over real loopback HTTP with a token
from the real consent flow; `openapi-core` validates each request body and each 200 response against
`xero_accounting.yaml` (spec check off, as in `test_sandbox_openapi.py`).
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import orjson
from openapi_core.testing import MockRequest, MockResponse

from sandbox.testing import SandboxServer, connect
from sandbox.writes import WRITE_EVERYTHING_SCOPE
from tests.integration.test_sandbox_openapi import ACCOUNTING_BASE, HOST, _explain, _openapi, _spec_paths

SPEC = "xero_accounting.yaml"
_GUID = re.compile(r"^[0-9a-fA-F-]{36}$")


def spec_pattern(method: str, path: str) -> str:
    """The spec's path template for a concrete path (`/Invoices/abc` -> `/Invoices/{InvoiceID}`)."""
    parts = [p for p in path.split("/") if p]
    for template in _spec_paths(SPEC):
        pieces = [p for p in template.split("/") if p]
        if len(pieces) != len(parts):
            continue
        if all(t == p or (t.startswith("{") and t.endswith("}")) for t, p in zip(pieces, parts, strict=True)):
            operations = _openapi_paths()[template]
            if method.lower() in operations:
                return template
    raise AssertionError(f"no spec path for {method} {path}")


def _openapi_paths() -> dict[str, Any]:
    from tests.integration.test_sandbox_openapi import _spec

    return _spec(SPEC)["paths"]  # type: ignore[no-any-return]


class WriteApi:
    """`api.put("/Invoices", {"Invoices": [...]})`: validated requests, validated 200 responses."""

    def __init__(self, server: SandboxServer, tenant_id: str, *, validate: bool = True) -> None:
        info = server._admin("GET", "info")
        self.token = connect(info, scope=WRITE_EVERYTHING_SCOPE)
        self.tenant_id = tenant_id
        self.validate = validate
        self.http = httpx.Client(
            base_url=f"{server.base_url}{ACCOUNTING_BASE}",
            headers={
                "Authorization": f"Bearer {self.token.access_token}",
                "xero-tenant-id": tenant_id,
                "Accept": "application/json",
            },
            timeout=60,
        )

    def close(self) -> None:
        self.http.close()

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
        content_type: str = "application/json",
    ) -> httpx.Response:
        content = raw if raw is not None else (orjson.dumps(body) if body is not None else b"")
        all_headers = {"content-type": content_type, **(headers or {})}
        response = self.http.request(method, path, content=content, params=params, headers=all_headers)
        if self.validate:
            self._check(method, path, content, params or {}, all_headers, response, content_type)
        return response

    def _check(
        self,
        method: str,
        path: str,
        content: bytes,
        params: dict[str, Any],
        headers: dict[str, str],
        response: httpx.Response,
        content_type: str,
    ) -> None:
        pattern = spec_pattern(method, path)
        args = {k: str(v) for k, v in params.items()}
        view_args = {
            t[1:-1]: p
            for t, p in zip(pattern.split("/"), path.split("/"), strict=True)
            if t.startswith("{") and t.endswith("}")
        }
        request = MockRequest(
            HOST,
            method.lower(),
            ACCOUNTING_BASE + path,
            path_pattern=ACCOUNTING_BASE + pattern,
            args=args,
            view_args=view_args,
            data=content if content else None,
            headers={"xero-tenant-id": self.tenant_id, "Authorization": "Bearer x", **headers},
            content_type=content_type,
        )
        api = _openapi(SPEC)
        # Attachment bodies are raw bytes (https://developer.xero.com/documentation/api/accounting/attachments);
        # the SPEC's `type: string, format: byte` describes base64 text, so only their responses are validated.
        if method != "DELETE" and content and content_type != "application/octet-stream":
            try:
                api.validate_request(request)
            except Exception as error:
                raise AssertionError(f"request {method} {path} breaks the spec: {_explain(error)}") from error
        if response.status_code == 200 and response.content:
            mock = MockResponse(
                response.content,
                status_code=200,
                headers=dict(response.headers),
                content_type=response.headers["content-type"].split(";")[0],
            )
            try:
                api.validate_response(request, mock)
            except Exception as error:
                raise AssertionError(f"response of {method} {path} breaks the spec: {_explain(error)}") from error

    def put(self, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        return self.call("PUT", path, body, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        return self.call("POST", path, body, **kwargs)

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        response = self.http.get(path, params=params or None)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text[:300]}"
        return response.json()  # type: ignore[no-any-return]

    def one(self, response: httpx.Response, key: str) -> dict[str, Any]:
        assert response.status_code == 200, f"{response.status_code} {response.text[:600]}"
        items = response.json()[key]
        assert len(items) == 1, items
        return items[0]  # type: ignore[no-any-return]


def empty_org(server: SandboxServer, country: str = "NZ", name: str = "Restore Target Ltd") -> str:
    """A new empty organisation, created through the admin API as a person creates one in Xero."""
    created = server._admin("POST", "orgs", {"country": country, "name": name})["created"]
    return str(created[0]["tenant_id"])


def validation_messages(response: httpx.Response) -> list[str]:
    """Every `ValidationErrors[].Message` of a 400 ValidationException (Xero's error shape), checked."""
    assert response.status_code == 400, f"{response.status_code} {response.text[:300]}"
    body = response.json()
    assert body["Type"] == "ValidationException", body
    assert body["ErrorNumber"] == 10, body
    assert body["Message"] == "A validation exception occurred"
    messages = [e["Message"] for element in body["Elements"] for e in element["ValidationErrors"]]
    assert messages
    return messages


def is_guid(value: Any) -> bool:
    return isinstance(value, str) and bool(_GUID.match(value))
