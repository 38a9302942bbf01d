"""The mirror's `manifest.json`: its schema version, the fields the mirror computes and the content hash rules.

This module owns the shape of the manifest and the hashing rules that make a mirror comparable with the
sandbox's ground truth (`sandbox/store.py` `truth()`): per endpoint, sha256 over the sorted lines
`"<record_id>\\t<sha256 of canonical JSON>\\n"`, where canonical JSON is
`json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`; attachments hash the same way
with `"<Endpoint>/<record_id>/<Xero file name>"` as the id and the sha256 of the bytes. The rules are copied,
not imported, because `appliance` must never import `sandbox`; `tests/unit/test_mirror.py` pins them together.

It does no file I/O: the writer (`appliance.backup.mirror`) computes the figures and this module assembles them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

MANIFEST_SCHEMA_VERSION = 1
"""Bumped when a reader of an older manifest would misread a newer one."""

ATTACHMENTS_KEY = "Attachments"
"""The pseudo-endpoint under which `truth()` reports attachments (as the sandbox does)."""

RESERVED_KEYS = frozenset({"schema_version", "org_id", "mode", "layout", "endpoints", "attachments", "documents"})
"""Keys the mirror writes itself; a caller's values for them are overwritten."""


def canonical_json(doc: Any) -> str:
    """Xero JSON in canonical form: sorted keys, no spaces, non-ASCII kept as is (never re-encoded)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def line_hash(line: bytes) -> str:
    """sha256 of one canonical JSON line (without its newline): equal to the sandbox's `doc_hash`."""
    return hashlib.sha256(line).hexdigest()


def endpoint_hash(pairs: Iterable[tuple[str, str]]) -> str:
    """Hash of (id, content hash) pairs in id order: the ground-truth content hash of one endpoint."""
    digest = hashlib.sha256()
    for record_id, content_hash in sorted(pairs):
        digest.update(f"{record_id}\t{content_hash}\n".encode())
    return digest.hexdigest()


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def build_manifest(
    caller: Mapping[str, Any],
    *,
    org_id: str,
    mode: str,
    layout: Mapping[str, Any],
    endpoints: Mapping[str, Mapping[str, Any]],
    attachments: Mapping[str, Any],
    documents: Iterable[str],
) -> dict[str, Any]:
    """The manifest dict: what the caller knows (watermarks, api_calls, bytes_downloaded, timings, warnings,
    run_id, ...) plus what the mirror computed. The mirror's own keys win over the caller's."""
    manifest: dict[str, Any] = {key: value for key, value in caller.items() if key not in RESERVED_KEYS}
    manifest.setdefault("created", utc_now_iso())
    manifest.setdefault("warnings", [])
    manifest.update(
        {
            "schema_version": MANIFEST_SCHEMA_VERSION,
            "org_id": org_id,
            "mode": mode,
            "layout": dict(layout),
            "endpoints": {name: dict(endpoints[name]) for name in sorted(endpoints)},
            "attachments": dict(attachments),
            "documents": sorted(documents),
        }
    )
    return manifest


def truth_from_manifest(manifest: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The `{endpoint: {"count", "hash"}}` view of a manifest, shaped like `Mirror.truth()` and the sandbox's
    `truth()`: endpoints without records are left out, `Attachments` is always present."""
    result: dict[str, dict[str, Any]] = {
        name: {"count": entry["count"], "hash": entry["hash"]}
        for name, entry in manifest.get("endpoints", {}).items()
        if entry.get("count", 0) > 0
    }
    attachments = manifest.get("attachments") or {"count": 0, "hash": endpoint_hash([])}
    result[ATTACHMENTS_KEY] = {"count": attachments["count"], "hash": attachments["hash"]}
    return result
