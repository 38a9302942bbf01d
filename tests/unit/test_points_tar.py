"""The index's own tar reader (`appliance.points.index.tar_files`) reads what `tarfile` reads, in every format
`tarfile` writes, and refuses damaged or truncated streams."""

from __future__ import annotations

import io
import tarfile

import pytest

from appliance.points.index import _wanted, tar_files

LONG = "records/Invoices/" + "x" * 120 + ".ndjson"  # over ustar's 100-byte name field
FILES = {
    "manifest.json": b'{"schema_version": 1}\n',
    "organisation.json": b"{}",
    "records/Contacts/2025-01.ndjson": b'{"ContactID":"a"}\n' * 300,
    "records/Invoices/empty.ndjson": b"",
    "reports/TrialBalance.json": b"{}",
    "attachments/Invoices/abc/index.json": b"[]",
    "attachments/Invoices/abc/scan.pdf": bytes(range(256)) * 5000,  # skipped, bytes read past
    "records/Contacts/" + "é" * 60 + ".ndjson": b'{"ContactID":"b"}\n',  # non-ASCII: PAX path in PAX format
    LONG: b'{"InvoiceID":"c"}\n',
    "/".join(["records", "Items", *["deep"] * 30, "x.ndjson"]): b'{"ItemID":"d"}\n',  # prefix in ustar
}


def _archive(fmt: int, files: dict[str, bytes] = FILES) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as archive:
        for directory in ("records", "records/Contacts"):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            archive.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _stdlib(data: bytes) -> list[tuple[str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as archive:
        found = []
        for member in archive:
            relative = member.name.lstrip("/").removeprefix("./")
            if member.isfile() and _wanted(relative):
                handle = archive.extractfile(member)
                assert handle is not None
                found.append((relative, handle.read()))
        return found


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
def test_reads_what_tarfile_reads(fmt: int) -> None:
    data = _archive(fmt)
    ours = list(tar_files(io.BytesIO(data)))
    assert ours == _stdlib(data)
    assert {name for name, _ in ours} == {name for name in FILES if _wanted(name)}
    assert LONG in dict(ours)


def test_ustar_prefixes_make_whole_names() -> None:
    files = {name: data for name, data in FILES.items() if name.isascii() and name != LONG}  # ustar's limits
    data = _archive(tarfile.USTAR_FORMAT, files)
    assert list(tar_files(io.BytesIO(data))) == _stdlib(data)
    assert any(name.count("/deep") == 30 for name, _ in tar_files(io.BytesIO(data)))


def test_a_truncated_stream_is_an_error_not_a_shorter_point() -> None:
    data = _archive(tarfile.PAX_FORMAT)
    cut = data.index(b'{"ContactID":"a"}') + 100
    with pytest.raises(tarfile.ReadError, match="ended inside a member"):
        list(tar_files(io.BytesIO(data[:cut])))


def test_a_damaged_header_is_refused() -> None:
    data = bytearray(_archive(tarfile.GNU_FORMAT))
    data[5] ^= 0x20  # a byte of the first member's name
    with pytest.raises(tarfile.ReadError, match="checksum"):
        list(tar_files(io.BytesIO(bytes(data))))
