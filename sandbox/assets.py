"""Small, real attachment files made in code: PDF, PNG and CSV bytes, and awkward file names.

This module owns attachment content for the sandbox. Files are tiny but well-formed (a viewer opens the PDF,
an image library decodes the PNG) so that a backup that corrupts bytes is caught by a checksum and by eye.
File names are deliberately awkward, as real firms' uploads are: spaces, `#`, brackets, `;`, non-ASCII and
an en dash. Xero rejects names containing `< > : " / \\ | ? *` and NUL
(https://developer.xero.com/documentation/api/accounting/attachments), so none are produced here.
It must not touch the store.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

FORBIDDEN_IN_FILE_NAMES = set('<>:"/\\|?*\0')

# (template, mime type); `{n}` is a document number, `{month}` a month name.
_NAME_TEMPLATES: tuple[tuple[str, str], ...] = (
    ("Invoice #{n} (final) – {month}.pdf", "application/pdf"),
    ("receipt[{n}].png", "image/png"),
    ("export;v{n}.csv", "text/csv"),
    ("Scan {n} - signed copy.pdf", "application/pdf"),
    ("Rechnung Nr. {n} für {month}.pdf", "application/pdf"),
    ("photo of receipt {n} (2).png", "image/png"),
    ("timesheet_{n}_Ünits & hours.csv", "text/csv"),
    ("Quote {n}, revised.pdf", "application/pdf"),
)

_MONTHS = ("Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober")


@dataclass(frozen=True)
class AttachmentFile:
    file_name: str
    mime_type: str
    content: bytes


def make_attachment(n: int, title: str) -> AttachmentFile:
    """Attachment number `n` (any int) for a document called `title`; deterministic in both."""
    template, mime = _NAME_TEMPLATES[n % len(_NAME_TEMPLATES)]
    name = template.format(n=n % 1000, month=_MONTHS[n % len(_MONTHS)])
    assert not FORBIDDEN_IN_FILE_NAMES & set(name)
    if mime == "application/pdf":
        content = pdf_bytes(f"{title} - document {n}")
    elif mime == "image/png":
        content = png_bytes(n)
    else:
        content = csv_bytes(n, title)
    return AttachmentFile(name, mime, content)


def pdf_bytes(text: str) -> bytes:
    """A one-page PDF 1.4 showing `text` in Helvetica, with a correct cross-reference table."""
    safe = text.encode("latin-1", "replace").replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")
    stream = b"BT /F1 14 Tf 72 720 Td (" + safe + b") Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(n: int, size: int = 16) -> bytes:
    """A `size`x`size` RGB PNG: a two-colour diagonal pattern whose colours depend on `n`."""
    a = ((n * 37) % 256, (n * 91) % 256, (n * 53) % 256)
    b = (255 - a[0], 255 - a[1], 255 - a[2])
    rows = bytearray()
    for y in range(size):
        rows.append(0)  # filter type None
        for x in range(size):
            rows.extend(a if (x + y) % 4 < 2 else b)
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(bytes(rows), 9))
        + _png_chunk(b"IEND", b"")
    )


def csv_bytes(n: int, title: str) -> bytes:
    """A small CSV with a header, quoted fields with commas, and a UTF-8 BOM as spreadsheet exports have."""
    lines = ["Date,Description,Quantity,Amount"]
    for i in range(1, 4 + n % 4):
        lines.append(f'2025-0{1 + i % 9}-1{i},"{title}, line {i}",{i},{(n % 97) * i + 0.5:.2f}')
    return ("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8")
