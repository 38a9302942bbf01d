"""The canonical mirror: layout, upsert/delete/replace semantics, canonical bytes, manifest and crash safety.

Real files on a real file system, a real sandbox SQLite store as the ground truth, and a real `kill -9` of a
writer process; synthetic Xero-shaped records keep the test independent of the sandbox generator.
"""

from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from appliance.backup import mirror as mirror_module
from appliance.backup.manifest import truth_from_manifest
from appliance.backup.mirror import (
    LAYOUTS,
    Mirror,
    MirrorError,
    MirrorWriter,
    recover,
    safe_file_name,
)
from appliance.errors import OrganisationLocked
from sandbox.store import Record, SandboxStore

ORG = "7d3a51c2-0f5e-4b8e-9b0a-1c2d3e4f5a6b"
DAY_MS = 86_400_000
BASE_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z


@pytest.fixture(params=["exchange", "journal"])
def publish(request: pytest.FixtureRequest) -> str:
    """Both ways of publishing the next mirror (see MirrorWriter)."""
    return str(request.param)


def guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def xero_date(ms: int) -> str:
    return f"/Date({ms}+0000)/"


def make_invoice(rng: random.Random, day: int, contact_id: str) -> dict[str, Any]:
    quantity = rng.randint(1, 9)
    price = round(rng.uniform(5, 500), 4)
    return {
        "InvoiceID": guid(rng),
        "Type": rng.choice(["ACCREC", "ACCPAY"]),
        "InvoiceNumber": f"INV-{rng.randint(1, 99999):05d}",
        "Contact": {"ContactID": contact_id, "Name": "Café Zoë 東京"},
        "Date": xero_date(BASE_MS + day * DAY_MS),
        "DueDate": xero_date(BASE_MS + (day + 30) * DAY_MS),
        "Status": "AUTHORISED",
        "LineAmountTypes": "Exclusive",
        "LineItems": [
            {
                "LineItemID": guid(rng),
                "Description": "Widgets\nline two\u2028after a line separator",
                "Quantity": quantity,
                "UnitAmount": price,
                "AccountCode": "200",
            }
        ],
        "Total": round(quantity * price * 1.15, 2),
        "UpdatedDateUTC": xero_date(BASE_MS + day * DAY_MS + 3_600_000),
        "HasAttachments": False,
    }


def make_contact(rng: random.Random) -> dict[str, Any]:
    return {
        "ContactID": guid(rng),
        "Name": f"Contact {rng.randint(1, 10**6)}",
        "ContactStatus": "ACTIVE",
        "Addresses": [{"AddressType": "POBOX", "City": "Wellington"}],
        "UpdatedDateUTC": xero_date(BASE_MS),
    }


def sample_org(seed: int = 1, invoices: int = 60, contacts: int = 20) -> dict[str, list[dict[str, Any]]]:
    rng = random.Random(seed)
    contact_list = [make_contact(rng) for _ in range(contacts)]
    invoice_list = [
        make_invoice(rng, rng.randint(0, 200), rng.choice(contact_list)["ContactID"]) for _ in range(invoices)
    ]
    return {
        "Contacts": contact_list,
        "Invoices": invoice_list,
        "TaxRates": [
            {"TaxType": "OUTPUT2", "Name": "GST on Income", "EffectiveRate": 15.0},
            {"TaxType": "INPUT2", "Name": "GST on Expenses", "EffectiveRate": 15.0},
        ],
        "Currencies": [{"Code": "NZD", "Description": "New Zealand Dollar"}],
    }


def write_full(root: Path, data: dict[str, list[dict[str, Any]]], **kwargs: Any) -> Path:
    writer = MirrorWriter(root, ORG, **kwargs)
    writer.begin(full=True)
    for endpoint, records in data.items():
        writer.upsert(endpoint, records)
    writer.put_document("organisation", {"Name": "Sandbox Ltd", "BaseCurrency": "NZD"})
    return writer.commit({"run_id": "run-1", "api_calls": 7})


def tree_bytes(path: Path) -> dict[str, bytes]:
    return {
        file.relative_to(path).as_posix(): file.read_bytes()
        for file in sorted(path.rglob("*"))
        if file.is_file() and file.name != "manifest.json"
    }


def store_truth(tmp_path: Path, data: dict[str, list[dict[str, Any]]], attachments: list[tuple[str, str, str, bytes]]):
    store = SandboxStore(tmp_path / "sandbox.sqlite")
    try:
        store.put_records(
            Record(ORG, endpoint, record[mirror_module.id_field(endpoint)], record)
            for endpoint, records in data.items()
            for record in records
        )
        for number, (endpoint, record_id, file_name, content) in enumerate(attachments):
            store.db.execute(
                "INSERT INTO attachments(attachment_id, tenant_id, endpoint, record_id, file_name, mime_type,"
                " content, updated_ms) VALUES (?,?,?,?,?,?,?,?)",
                (f"att-{number}", ORG, endpoint, record_id, file_name, "application/pdf", content, BASE_MS),
            )
        return store.truth(ORG)
    finally:
        store.close()


# -- layout helpers ---------------------------------------------------------------------------


def test_shards_follow_document_month_and_id_prefix() -> None:
    layout = LAYOUTS["month-p1"]
    invoice = {"InvoiceID": "ab12", "Date": xero_date(BASE_MS + 40 * DAY_MS)}
    assert layout.shard("Invoices", "ab12", invoice) == "2025-02"
    assert layout.shard("Invoices", "ab12", {"InvoiceID": "ab12"}) == "undated"
    assert layout.shard("Invoices", "ab12", {"Date": "2024-12-31T00:00:00"}) == "2024-12"
    assert layout.shard("Contacts", "AB12-cd", {}) == "a"
    # Ids that are not hex GUIDs shard by a hash, never by arbitrary characters of the id.
    assert layout.shard("TaxRates", "OUTPUT2", {}) in set("0123456789abcdef")
    assert LAYOUTS["single"].shard("Invoices", "ab12", invoice) == "all"
    assert LAYOUTS["year-p1"].shard("Invoices", "ab12", invoice) == "2025"
    assert LAYOUTS["month16-p2"].shard("Invoices", "ab12", invoice) == "2025-02/a"
    assert LAYOUTS["month256-p2"].shard("Contacts", "AB12-cd", {}) == "ab"


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_round_trips_through_incremental_changes(tmp_path: Path, layout: str) -> None:
    data = sample_org(invoices=80)
    root = tmp_path / "mirrors"
    write_full(root, data, layout=LAYOUTS[layout])
    moved = dict(data["Invoices"][0], Date=xero_date(BASE_MS + 500 * DAY_MS))
    writer = MirrorWriter(root, ORG, layout=LAYOUTS[layout], publish="journal")
    writer.begin(full=False)
    writer.upsert("Invoices", [moved])
    writer.delete("Invoices", [data["Invoices"][1]["InvoiceID"]])
    writer.delete("Contacts", [data["Contacts"][0]["ContactID"]])
    current = writer.commit({})
    expected = {
        "Invoices": [moved, *data["Invoices"][2:]],
        "Contacts": data["Contacts"][1:],
        "TaxRates": data["TaxRates"],
        "Currencies": data["Currencies"],
    }
    mirror = Mirror(current)
    assert mirror.truth() == store_truth(tmp_path, expected, [])
    assert mirror.verify() == []
    assert mirror.get("Invoices", moved["InvoiceID"]) == moved
    assert mirror.get("Contacts", data["Contacts"][0]["ContactID"]) is None


def test_safe_file_names_are_portable_and_unique() -> None:
    taken: set[str] = set()
    names = []
    for attachment_id, name in [
        ("a1", "../../etc/passwd"),
        ("a2", "Résumé été.pdf"),
        ("a3", "index.json"),
        ("a4", "Report.PDF"),
        ("a5", "report.pdf"),
        ("a6", "   "),
        ("a7", "契約書.pdf"),
        ("a8", "x" * 400 + ".png"),
        ("a9", ".hidden"),
    ]:
        safe = safe_file_name(name, attachment_id, taken)
        taken.add(safe)
        names.append(safe)
    assert names[0] == "etc_passwd"
    assert names[1] == "Resume_ete.pdf"
    assert names[2] != "index.json"
    assert names[3] == "Report.PDF"
    assert names[4] == "report-a5.pdf"
    assert names[5] == "attachment"
    assert names[6] == "pdf"  # nothing ASCII is left of the stem; the index keeps the real name
    assert len(names[7]) <= 120
    assert names[7].endswith(".png")
    assert names[8] == "hidden"
    assert len({name.lower() for name in names}) == len(names)
    assert all(not name.startswith((".", "-")) and "/" not in name for name in names)


# -- round trip and truth ------------------------------------------------------------------------


def test_round_trip_and_truth_equal_the_sandbox_ground_truth(tmp_path: Path) -> None:
    data = sample_org()
    invoice = data["Invoices"][0]
    attachment_bytes = b"%PDF-1.4 receipt\n"
    writer = MirrorWriter(tmp_path / "mirrors", ORG)
    writer.begin(full=True)
    for endpoint, records in data.items():
        writer.upsert(endpoint, records)
    meta = {"AttachmentID": "f1e2", "FileName": "receipt: March?.pdf", "MimeType": "application/pdf", "Url": "u"}
    writer.put_attachment("Invoices", invoice["InvoiceID"], meta, io.BytesIO(attachment_bytes))
    writer.put_document("organisation", {"Name": "Sandbox Ltd"})
    writer.put_document("reports/TrialBalance", {"Reports": [{"ReportID": "TrialBalance"}]})
    current = writer.commit({"run_id": "r1", "watermarks": {"Invoices": "2025-07-01T00:00:00"}, "api_calls": 3})

    assert current == tmp_path / "mirrors" / ORG / "current"
    assert not (tmp_path / "mirrors" / ORG / "next").exists()
    mirror = Mirror(current)
    assert mirror.endpoints() == sorted(data)
    for endpoint, records in data.items():
        field = mirror_module.id_field(endpoint)
        by_id = {record[field]: record for record in records}
        assert {record[field]: record for record in mirror.iter_records(endpoint)} == by_id
        assert mirror.ids(endpoint) == set(by_id)
        some_id = next(iter(by_id))
        assert mirror.get(endpoint, some_id) == by_id[some_id]
    assert mirror.get("Invoices", "no-such-id") is None
    assert mirror.document("organisation") == {"Name": "Sandbox Ltd"}
    assert mirror.document("reports/TrialBalance") == {"Reports": [{"ReportID": "TrialBalance"}]}

    [stored] = mirror.attachments("Invoices", invoice["InvoiceID"])
    assert stored["FileName"] == "receipt: March?.pdf"
    assert stored["Url"] == "u"
    assert Path(stored["path"]).read_bytes() == attachment_bytes
    assert stored["file"] == "receipt_March_.pdf"

    manifest = mirror.manifest()
    assert manifest["schema_version"] == 1
    assert manifest["org_id"] == ORG
    assert manifest["mode"] == "full"
    assert manifest["api_calls"] == 3
    assert manifest["watermarks"] == {"Invoices": "2025-07-01T00:00:00"}
    assert manifest["documents"] == ["organisation.json", "reports/TrialBalance.json"]
    assert manifest["layout"]["name"] == mirror_module.DEFAULT_LAYOUT.name
    assert truth_from_manifest(manifest) == mirror.truth()
    assert mirror.verify() == []

    expected = store_truth(
        tmp_path, data, [("Invoices", invoice["InvoiceID"], "receipt: March?.pdf", attachment_bytes)]
    )
    assert mirror.truth() == expected


def test_shard_files_are_canonical_ndjson_in_id_order(tmp_path: Path) -> None:
    data = sample_org(invoices=200)
    current = write_full(tmp_path, data)
    files = sorted((current / "records" / "Invoices").rglob("*.ndjson"))
    assert len(files) > 3  # dated by month
    for path in files:
        raw = path.read_bytes()
        assert raw.endswith(b"\n")
        lines = raw[:-1].split(b"\n")
        ids = [json.loads(line)["InvoiceID"] for line in lines]
        assert ids == sorted(ids)
        for line in lines:
            doc = json.loads(line)
            assert line == json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
            assert path.parent.name == mirror_module._month_of(doc["Date"])  # <YYYY-MM>/<id prefix>.ndjson
            assert doc["InvoiceID"].startswith(path.stem)
    assert "東京".encode() in files[0].read_bytes()  # ensure_ascii=False


def test_canonical_bytes_do_not_depend_on_input_order_or_run(tmp_path: Path) -> None:
    data = sample_org(invoices=120)
    shuffled = {endpoint: random.Random(9).sample(records, len(records)) for endpoint, records in data.items()}
    first = write_full(tmp_path / "a", data)
    second = write_full(tmp_path / "b", shuffled)
    assert tree_bytes(first) == tree_bytes(second)
    first_manifest, second_manifest = Mirror(first).manifest(), Mirror(second).manifest()
    assert first_manifest["endpoints"] == second_manifest["endpoints"]


# -- incremental semantics -------------------------------------------------------------------------


def test_upsert_delete_and_replace(tmp_path: Path, publish: str) -> None:
    data = sample_org()
    root = tmp_path / "mirrors"
    current = write_full(root, data, publish=publish)
    before = {path: path.stat().st_ino for path in (current / "records").rglob("*.ndjson")}

    invoices = {record["InvoiceID"]: record for record in data["Invoices"]}
    moved = dict(data["Invoices"][0], Date=xero_date(BASE_MS + 400 * DAY_MS), Status="PAID")  # to 2026-02
    deleted = data["Invoices"][1]["InvoiceID"]
    new = make_invoice(random.Random(77), 401, data["Contacts"][0]["ContactID"])
    writer = MirrorWriter(root, ORG, publish=publish)
    writer.begin(full=False)
    writer.upsert("Invoices", [moved, new, dict(new, Status="DRAFT")])  # the last of a repeated id wins
    writer.delete("Invoices", [deleted, "never-existed"])
    writer.replace_endpoint("TaxRates", [{"TaxType": "NONE", "Name": "No GST", "EffectiveRate": 0.0}])
    writer.replace_endpoint("Currencies", [])
    current = writer.commit({})

    mirror = Mirror(current)
    invoices[moved["InvoiceID"]] = moved
    invoices[new["InvoiceID"]] = dict(new, Status="DRAFT")
    del invoices[deleted]
    assert {record["InvoiceID"]: record for record in mirror.iter_records("Invoices")} == invoices
    assert (current / "records" / "Invoices" / "2026-02").is_dir()
    assert [record["TaxType"] for record in mirror.iter_records("TaxRates")] == ["NONE"]
    assert "Currencies" not in mirror.endpoints()
    manifest = mirror.manifest()
    assert manifest["mode"] == "incremental"
    assert manifest["endpoints"]["Currencies"]["count"] == 0  # read and empty: still on record
    assert manifest["endpoints"]["Invoices"]["count"] == len(invoices)
    assert mirror.verify() == []
    assert mirror.document("organisation") == {"Name": "Sandbox Ltd", "BaseCurrency": "NZD"}  # carried over

    # Untouched shards are the very same inodes: restic sees them unchanged.
    contacts = list((current / "records" / "Contacts").glob("*.ndjson"))
    assert contacts
    assert all(path.stat().st_ino == before[path] for path in contacts)
    changed = {path for path in before if not path.exists() or path.stat().st_ino != before[path]}
    assert changed
    assert all({"Invoices", "TaxRates", "Currencies"} & set(path.parts) for path in changed)


def test_a_full_run_relinks_identical_files_and_keeps_attachments_of_live_records(tmp_path: Path, publish: str) -> None:
    data = sample_org()
    root = tmp_path / "mirrors"
    kept, gone = data["Invoices"][0]["InvoiceID"], data["Invoices"][1]["InvoiceID"]
    writer = MirrorWriter(root, ORG, publish=publish)
    writer.begin(full=True)
    for endpoint, records in data.items():
        writer.upsert(endpoint, records)
    for record_id in (kept, gone):
        writer.put_attachment("Invoices", record_id, {"AttachmentID": record_id, "FileName": "a.pdf"}, io.BytesIO(b"x"))
    current = writer.commit({})
    before = {path: path.stat().st_ino for path in current.rglob("*") if path.is_file()}

    writer = MirrorWriter(root, ORG, publish=publish)
    writer.begin(full=True)
    for endpoint, records in data.items():
        writer.upsert(endpoint, [record for record in records if record.get("InvoiceID") != gone])
    current = writer.commit({})

    mirror = Mirror(current)
    assert mirror.attachment_records("Invoices") == [kept]
    assert mirror.manifest()["attachments"]["count"] == 1
    assert mirror.verify() == []
    assert mirror.document("organisation") is None  # documents are not carried into a full run
    same = [path for path in before if path.exists() and path.stat().st_ino == before[path]]
    assert (current / "attachments" / "Invoices" / kept / "a.pdf") in same
    assert any(path.parent.name == "Contacts" for path in same)


def test_attachments_replace_drop_and_keep_identical_bytes(tmp_path: Path, publish: str) -> None:
    data = sample_org(invoices=5, contacts=2)
    root = tmp_path / "mirrors"
    record_id = data["Invoices"][0]["InvoiceID"]
    write_full(root, data, publish=publish)
    writer = MirrorWriter(root, ORG, publish=publish)
    writer.begin(full=False)
    writer.put_attachment("Invoices", record_id, {"AttachmentID": "A", "FileName": "Scan.PDF"}, io.BytesIO(b"one"))
    writer.put_attachment("Invoices", record_id, {"AttachmentID": "B", "FileName": "scan.pdf"}, io.BytesIO(b"two"))
    writer.put_attachment("Invoices", record_id, {"AttachmentID": "C", "FileName": "index.json"}, io.BytesIO(b"{}"))
    current = writer.commit({})
    mirror = Mirror(current)
    entries = {entry["AttachmentID"]: entry for entry in mirror.attachments("Invoices", record_id)}
    assert {entry["file"] for entry in entries.values()} == {"Scan.PDF", "scan-B.pdf", "index-C.json"}
    inode_a = Path(entries["A"]["path"]).stat().st_ino

    writer = MirrorWriter(root, ORG, publish=publish)
    writer.begin(full=False)
    writer.put_attachment("Invoices", record_id, {"AttachmentID": "A", "FileName": "Scan.PDF"}, io.BytesIO(b"one"))
    writer.put_attachment("Invoices", record_id, {"AttachmentID": "B", "FileName": "scan.pdf"}, io.BytesIO(b"2"))
    writer.drop_attachments("Invoices", record_id, keep_ids={"A", "B"})
    current = writer.commit({})
    mirror = Mirror(current)
    entries = {entry["AttachmentID"]: entry for entry in mirror.attachments("Invoices", record_id)}
    assert set(entries) == {"A", "B"}
    assert Path(entries["A"]["path"]).stat().st_ino == inode_a
    assert Path(entries["B"]["path"]).read_bytes() == b"2"
    assert entries["B"]["size"] == 1
    assert sorted(path.name for path in Path(entries["A"]["path"]).parent.iterdir()) == [
        "Scan.PDF",
        "index.json",
        "scan-B.pdf",
    ]
    assert mirror.verify() == []


def test_changing_the_layout_reshards_the_current_mirror(tmp_path: Path, publish: str) -> None:
    data = sample_org()
    root = tmp_path / "mirrors"
    write_full(root, data, layout=LAYOUTS["single"], publish=publish)
    writer = MirrorWriter(root, ORG, layout=LAYOUTS["month-p2"], publish=publish)
    writer.begin(full=False)
    current = writer.commit({})
    mirror = Mirror(current)
    assert mirror.manifest()["layout"]["name"] == "month-p2"
    assert not (current / "records" / "Invoices" / "all.ndjson").exists()
    assert mirror.verify() == []
    reference = write_full(tmp_path / "reference", data, layout=LAYOUTS["month-p2"])
    assert tree_bytes(current) == tree_bytes(reference) | {
        "organisation.json": tree_bytes(current)["organisation.json"]
    }


def test_bad_input_is_refused(tmp_path: Path) -> None:
    writer = MirrorWriter(tmp_path, ORG)
    with pytest.raises(MirrorError):
        writer.upsert("Invoices", [])  # not begun
    writer.begin(full=True)
    with pytest.raises(MirrorError):
        writer.upsert("Invoices", [{"Total": 1}])  # no id
    with pytest.raises(MirrorError):
        writer.upsert("../x", [{"xID": "a"}])
    with pytest.raises(MirrorError):
        writer.upsert("Invoices", [{"InvoiceID": "../../escape"}])
    with pytest.raises(MirrorError):
        writer.put_document("../../etc/passwd", {})
    with pytest.raises(MirrorError):
        writer.put_document("manifest", {})
    writer.abort()


# -- crash safety -------------------------------------------------------------------------------------


def test_abort_leaves_current_intact(tmp_path: Path, publish: str) -> None:
    data = sample_org()
    root = tmp_path / "mirrors"
    current = write_full(root, data, publish=publish)
    snapshot = tree_bytes(current)
    writer = MirrorWriter(root, ORG, publish=publish)
    writer.begin(full=False)
    writer.delete("Invoices", [record["InvoiceID"] for record in data["Invoices"]])
    writer.replace_endpoint("Contacts", [])
    writer.put_document("organisation", {"Name": "changed"})
    writer.abort()
    assert tree_bytes(current) == snapshot
    assert not (root / ORG / "next").exists()
    assert not (root / ORG / "work").exists()
    assert Mirror(current).verify() == []


class _CrashBeforeSwap(MirrorWriter):
    def _swap(self) -> None:
        raise RuntimeError("power cut")


def test_a_crash_before_the_swap_leaves_current_and_the_next_begin_cleans_up(tmp_path: Path, publish: str) -> None:
    data = sample_org()
    root = tmp_path / "mirrors"
    current = write_full(root, data, publish=publish)
    snapshot = tree_bytes(current)
    writer: MirrorWriter = _CrashBeforeSwap(root, ORG, publish=publish)
    writer.begin(full=False)
    writer.delete("Invoices", [data["Invoices"][0]["InvoiceID"]])
    with pytest.raises(RuntimeError):
        writer.commit({})
    assert tree_bytes(current) == snapshot
    assert (root / ORG / "next" / "manifest.json").exists()  # the unfinished mirror is left behind

    writer = MirrorWriter(root, ORG, publish=publish)
    writer.begin(full=False)
    assert not (root / ORG / "next" / "manifest.json").exists()
    writer.delete("Invoices", [data["Invoices"][0]["InvoiceID"]])
    current = writer.commit({})
    assert Mirror(current).manifest()["endpoints"]["Invoices"]["count"] == len(data["Invoices"]) - 1
    assert Mirror(current).verify() == []


class _CrashMidJournal(MirrorWriter):
    def _swap(self) -> None:
        self._write_journal()
        plan = json.loads((self.org_dir / "commit.json").read_bytes())
        first = plan["puts"][0]
        (self.current / first).parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.next / first, self.current / first)  # one change reached `current`, then power cut
        raise RuntimeError("power cut")


def test_a_crash_after_the_journal_is_rolled_forward(tmp_path: Path) -> None:
    data = sample_org()
    root = tmp_path / "mirrors"
    write_full(root, data, publish="journal")
    moved = dict(data["Invoices"][0], Date=xero_date(BASE_MS + 600 * DAY_MS))
    writer: MirrorWriter = _CrashMidJournal(root, ORG, publish="journal")
    writer.begin(full=False)
    writer.upsert("Invoices", [moved])
    writer.replace_endpoint("Currencies", [])
    with pytest.raises(RuntimeError):
        writer.commit({"run_id": "cut"})
    mirror = Mirror(root / ORG / "current")
    with pytest.raises(MirrorError):
        mirror.manifest()

    writer = MirrorWriter(root, ORG, publish="journal")
    writer.begin(full=False)  # recovers first: the cut commit is finished, not lost
    writer.abort()
    assert mirror.manifest()["run_id"] == "cut"
    assert mirror.get("Invoices", moved["InvoiceID"]) == moved
    assert "Currencies" not in mirror.endpoints()
    assert mirror.verify() == []
    assert sorted(path.name for path in (root / ORG).iterdir()) == [".lock", "current"]


def test_without_rename_exchange_the_two_rename_fallback_recovers(tmp_path: Path, monkeypatch) -> None:
    data = sample_org()
    root = tmp_path / "mirrors"
    write_full(root, data)
    monkeypatch.setattr(mirror_module, "_exchange", lambda first, second: False)
    writer = MirrorWriter(root, ORG)
    writer.begin(full=False)
    writer.delete("Invoices", [data["Invoices"][0]["InvoiceID"]])
    current = writer.commit({})
    assert Mirror(current).verify() == []
    assert sorted(path.name for path in (root / ORG).iterdir()) == [".lock", "current"]

    # A crash between the fallback's two renames leaves only `previous`: recovery puts it back.
    expected = tree_bytes(current)
    os.replace(current, root / ORG / "previous")
    recover(root, ORG)
    assert tree_bytes(current) == expected


def test_one_writer_per_organisation(tmp_path: Path) -> None:
    first = MirrorWriter(tmp_path, ORG)
    first.begin(full=True)
    with pytest.raises(OrganisationLocked):
        MirrorWriter(tmp_path, ORG).begin(full=True)
    first.abort()
    second = MirrorWriter(tmp_path, ORG)
    second.begin(full=True)
    second.abort()


_WRITER_SCRIPT = textwrap.dedent(
    """
    import io, json, random, sys
    from pathlib import Path
    from appliance.backup.mirror import MirrorWriter

    root, org, publish = Path(sys.argv[1]), sys.argv[2], sys.argv[4]
    rng = random.Random(int(sys.argv[3]))
    generation = 0
    while True:
        generation += 1
        writer = MirrorWriter(root, org, publish=publish)
        writer.begin(full=generation % 3 == 0)
        writer.upsert("Contacts", [{"ContactID": "0000-0", "Gen": generation}] + [
            {"ContactID": f"{rng.randrange(16**4):04x}-{n}", "Name": "x" * rng.randrange(2000), "Gen": generation}
            for n in range(1, 300)
        ])
        writer.delete("Contacts", [f"{rng.randrange(16**4):04x}-{n}" for n in range(50)])
        writer.put_attachment("Contacts", "0000-0", {"AttachmentID": "a", "FileName": "f.bin"},
                              io.BytesIO(bytes([generation % 256]) * 5000))
        writer.put_document("organisation", {"Generation": generation})
        writer.commit({"generation": generation})
        print(generation, flush=True)
    """
)


def test_kill_9_at_random_moments_never_damages_current(tmp_path: Path, publish: str) -> None:
    root = tmp_path / "mirrors"
    rng = random.Random(5)
    environment = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    for attempt in range(4):
        process = subprocess.Popen(
            [sys.executable, "-c", _WRITER_SCRIPT, str(root), ORG, str(attempt), publish],
            stdout=subprocess.PIPE,
            env=environment,
        )
        assert process.stdout is not None
        process.stdout.readline()  # at least one commit
        time.sleep(rng.uniform(0.0, 0.3))
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stdout.close()
        mirror = Mirror(root / ORG / "current")
        if publish == "exchange":
            assert mirror.verify() == []  # complete at every instant, even before any recovery
        elif (root / ORG / "commit.json").exists():
            with pytest.raises(MirrorError):
                mirror.manifest()  # between old and new: readers are refused until recovery
        recover(root, ORG)  # what every begin() does first; rolls a durable journal forward
        assert mirror.verify() == []
        assert mirror.document("organisation") == {"Generation": mirror.manifest()["generation"]}
        assert mirror.manifest()["attachments"]["count"] == 1

    writer = MirrorWriter(root, ORG, publish=publish)
    writer.begin(full=False)
    writer.commit({})
    assert sorted(path.name for path in (root / ORG).iterdir()) == [".lock", "current"]
    assert Mirror(root / ORG / "current").verify() == []
