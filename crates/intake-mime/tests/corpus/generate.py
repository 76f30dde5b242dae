#!/usr/bin/env python3
"""Generate the intake-mime golden corpus: realistic .eml files and their expected results.

Python 3.11 standard library only, and deterministic: fixed dates, boundaries, Message-IDs and a
fixed random seed, so running it twice gives byte-identical files. Every message is written with
CRLF line endings to ``<folder>/NNN-short-name.eml`` and its expectation to
``<folder>/NNN-short-name.json``. The expectations are written here, from what a service desk
should make of the message -- never by dumping what the Rust code produces.

Expectation fields (missing = not checked), read by ``tests/corpus.rs``:

- ``kind``: ``mail`` | ``ignored`` | ``quarantined``
- ``summary``, ``reporter``, ``reporter_name``, ``description``: exact values
- ``participants``, ``subject_keys``, ``references``: exact lists, in order
- ``attachments``: exact list, in order, of ``{filename, content_type, inline, content_id}``
  (plus optional ``size``, the decoded byte length)
- ``description_contains`` / ``description_not_contains`` / ``reply_text_contains`` /
  ``reply_text_not_contains``: substrings
- ``reason_contains``: case-insensitive substring of the ignore/quarantine reason
- ``message_id``: the envelope's Message-ID (``null`` = the message has none)
- ``notes_contains``: substrings of the draft's notes
- ``sent_at``: ``null`` = the Date header must not yield a timestamp
- ``summary_prefix`` / ``summary_max_chars``: for subjects too long to compare whole
- an attachment spec without ``filename`` does not check the name (unnamed parts get a made-up one)

Usage: ``python3 generate.py`` (from anywhere); it replaces the .eml/.json files in the folders.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import io
import json
import pathlib
import quopri
import random
import struct
import sys
import zipfile
import zlib

HERE = pathlib.Path(__file__).resolve().parent
FOLDERS = ["plain", "html", "attachments", "charsets", "replies", "loops", "malformed", "threading"]

HELP = "help@intake.example"
HELP_NAME = "Intake Help Desk"

# Messages are assembled as "byte strings held in str": every character is one byte (latin-1),
# so 8-bit bodies in any charset can be embedded and the whole file written with .encode("latin-1").


def raw8(text: str, codec: str) -> str:
    """Text encoded in ``codec``, as a byte-string-in-str."""
    return text.encode(codec).decode("latin-1")


def crlf(s: str) -> str:
    return s.replace("\r\n", "\n").replace("\n", "\r\n")


def date(day: int, hh: int, mm: int, ss: int = 0, tz: int = 0) -> str:
    zone = dt.timezone(dt.timedelta(hours=tz))
    return email.utils.format_datetime(dt.datetime(2026, 11, day, hh, mm, ss, tzinfo=zone))


def b64(data: bytes) -> str:
    s = base64.b64encode(data).decode("ascii")
    return "\n".join(s[i : i + 76] for i in range(0, len(s), 76))


def qp(text: str, codec: str) -> str:
    """Quoted-printable body: text with \\n line ends, encoded in ``codec``."""
    return quopri.encodestring(text.encode(codec)).decode("ascii")


def ew_b(text: str, charset: str = "UTF-8", codec: str | None = None) -> str:
    data = text.encode(codec or charset)
    return f"=?{charset}?B?{base64.b64encode(data).decode('ascii')}?="


def _q(data: bytes) -> str:
    out = []
    for b in data:
        c = chr(b)
        if b == 0x20:
            out.append("_")
        elif c.isascii() and (c.isalnum() or c in "!*+-/.,:[]()'"):
            out.append(c)
        else:
            out.append(f"={b:02X}")
    return "".join(out)


def ew_q(text: str, charset: str = "UTF-8", codec: str | None = None) -> str:
    return f"=?{charset}?Q?{_q(text.encode(codec or charset))}?="


def ew_b_folded(text: str, charset: str = "UTF-8", chunk: int = 15) -> str:
    """Several adjacent B encoded words on folded lines, split on character boundaries."""
    words = [ew_b(text[i : i + chunk], charset) for i in range(0, len(text), chunk)]
    return "\n ".join(words)


def fold_words(text: str, width: int = 70) -> str:
    """Fold a long unstructured header value at spaces (RFC 5322 section 2.2.3)."""
    lines, cur = [], ""
    for word in text.split(" "):
        if cur and len(cur) + 1 + len(word) > width:
            lines.append(cur)
            cur = word
        else:
            cur = f"{cur} {word}" if cur else word
    lines.append(cur)
    return "\n ".join(lines)


def msg(headers: list, body: str) -> str:
    lines = []
    for h in headers:
        if h is None:
            continue
        if isinstance(h, tuple):
            lines.append(f"{h[0]}: {h[1]}")
        else:
            lines.append(h)
    return "\n".join(lines) + "\n\n" + body


def part(headers: list[str], body: str) -> str:
    return "\n".join(headers) + "\n\n" + body


def multipart(boundary: str, parts: list[str], preamble: str | None = None, close: bool = True,
              epilogue: str = "") -> str:
    chunks = []
    if preamble is not None:
        chunks.append(preamble)
    for p in parts:
        chunks.append(f"--{boundary}\n{p.rstrip(chr(10))}")
    if close:
        chunks.append(f"--{boundary}--")
    return "\n".join(chunks) + "\n" + epilogue


# ---------------------------------------------------------------------------------------------
# Small but well-formed binary payloads.


def make_pdf(text: str) -> bytes:
    stream = f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode("ascii")
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, o in enumerate(objs, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + o + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def make_png(w: int, h: int, rgb: tuple[int, int, int]) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes(rgb) * w
    raw = zlib.compress(row * h, 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


def make_zip(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, content in files.items():
            info = zipfile.ZipInfo(name, date_time=(2026, 11, 2, 9, 30, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, content.encode("utf-8"))
    return buf.getvalue()


def make_docx(text: str) -> bytes:
    return make_zip({
        "[Content_Types].xml": '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-'
        'officedocument.wordprocessingml.document.main+xml"/></Types>',
        "_rels/.rels": '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
        'relationships/officeDocument" Target="word/document.xml"/></Relationships>',
        "word/document.xml": '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
        f"<w:body><w:p><w:r><w:t>{text}</w:t></w:r></w:p></w:body></w:document>",
    })


def make_xlsx(text: str) -> bytes:
    return make_zip({
        "[Content_Types].xml": '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas'
        '.openxmlformats.org/package/2006/content-types"/>',
        "xl/workbook.xml": f"<workbook><sheets><sheet name=\"{text}\"/></sheets></workbook>",
    })


PDF_INVOICE = make_pdf("Invoice 2026-11-0042")
PDF_REPORT = make_pdf("Quarterly report")
PNG_SCREEN = make_png(16, 12, (200, 30, 30))
PNG_LOGO = make_png(8, 8, (20, 90, 200))
PNG_SHOT = make_png(24, 16, (240, 240, 240))
DOCX = make_docx("Change request: new VPN profile for the sales team")
XLSX = make_xlsx("Report")
TNEF = b"\x78\x9f\x3e\x22\x01\x00\x01\x06\x90\x08\x00\x04\x00\x00\x00\x00\x00\x01\x00\x01\x00" * 6

# ---------------------------------------------------------------------------------------------
# How real clients write their headers.


def received(host: str, ip: str, day: int, hh: int, mm: int, ss: int, qid: str) -> list[str]:
    return [
        f"Received: from {host} ({host} [{ip}])\n\tby mx1.intake.example (Postfix) with ESMTPS id {qid}\n"
        f"\tfor <{HELP}>; {date(day, hh, mm, ss)} (UTC)",
        f"Received: by {host} with SMTP id {qid.lower()}.{ss}\n"
        f"        for <{HELP}>; {date(day, hh, mm, max(ss - 2, 0))}",
    ]


def outlook_headers(thread_index: str = "AdtOKm3vR2x8QpZ1T0y7W5aF3bC9Xg==", attach: bool = False) -> list[str]:
    return [
        "X-Mailer: Microsoft Outlook 16.0",
        f"Thread-Index: {thread_index}",
        "Content-Language: en-us",
        "X-MS-Has-Attach: yes" if attach else "X-MS-Has-Attach:",
        "X-MS-TNEF-Correlator:",
    ]


MESSAGES: list[tuple[str, str, str | bytes, dict]] = []


def add(folder: str, name: str, raw: str | bytes, **expect) -> None:
    assert folder in FOLDERS, folder
    MESSAGES.append((folder, name, raw, expect))


def text_part(text: str, charset: str = "us-ascii", cte: str = "7bit", extra: str = "") -> str:
    if cte == "quoted-printable":
        body = qp(text, charset if charset != "us-ascii" else "ascii")
    elif cte == "base64":
        body = b64(text.encode(charset))
    elif cte == "8bit":
        body = raw8(text, charset)
    else:
        body = text
    return part([f'Content-Type: text/plain; charset="{charset}"{extra}',
                 f"Content-Transfer-Encoding: {cte}"], body)


def html_part(html: str, charset: str = "utf-8", cte: str = "quoted-printable") -> str:
    body = qp(html, charset) if cte == "quoted-printable" else (
        b64(html.encode(charset)) if cte == "base64" else raw8(html, charset))
    return part([f'Content-Type: text/html; charset="{charset}"', f"Content-Transfer-Encoding: {cte}"], body)


def attachment(ctype: str, filename_params: str, data: bytes, disposition: str = "attachment",
               extra: list[str] | None = None, name_param: str | None = None) -> str:
    ct = f"Content-Type: {ctype}" + (f";\n\t{name_param}" if name_param else "")
    hdrs = [ct, f"Content-Disposition: {disposition};\n\t{filename_params}" if filename_params
            else f"Content-Disposition: {disposition}"]
    hdrs += extra or []
    hdrs.append("Content-Transfer-Encoding: base64")
    return part(hdrs, b64(data))


# =============================================================================================
# plain/


def plain() -> None:
    add("plain", "001-thunderbird-question", msg([
        "Return-Path: <anna.schmidt@acme.example>",
        *received("mail.acme.example", "198.51.100.17", 3, 9, 14, 22, "4Q2kLm0A1pz9sW1"),
        "Message-ID: <5e1c2a7b-3f4d-4c1e-9a8b-1f2e3d4c5b6a@acme.example>",
        f"Date: {date(3, 9, 14, 20)}",
        "MIME-Version: 1.0",
        "User-Agent: Mozilla Thunderbird",
        "Content-Language: en-US",
        f"To: {HELP}",
        "Cc: Ben Ortiz <ben.ortiz@acme.example>",
        "From: Anna Schmidt <anna.schmidt@acme.example>",
        "Subject: Printer on floor 2 prints blank pages",
        "Content-Type: text/plain; charset=UTF-8; format=flowed",
        "Content-Transfer-Encoding: 7bit",
    ], "Hello,\n\nsince this morning the printer on floor 2 (HP LaserJet, asset 10-2231) only\n"
       "prints blank pages. We already replaced the toner.\n\nCould someone have a look?\n\n"
       "Thanks,\nAnna\n"),
        kind="mail", summary="Printer on floor 2 prints blank pages", reporter="anna.schmidt@acme.example",
        reporter_name="Anna Schmidt", participants=[HELP, "ben.ortiz@acme.example"],
        message_id="5e1c2a7b-3f4d-4c1e-9a8b-1f2e3d4c5b6a@acme.example",
        description_contains=["asset 10-2231", "We already replaced the toner.",
                              "Could someone have a look?"],
        reply_text_contains=["We already replaced the toner."], subject_keys=[], references=[],
        attachments=[])

    add("plain", "002-outlook-quoted-printable", msg([
        *received("EUR05-DB8-obe.outbound.protection.outlook.example", "203.0.113.40", 3, 9, 40, 11,
                  "4Q2kLm0B2pz9sW2"),
        "From: Peter Novak <peter.novak@globex.example>",
        f"To: {HELP_NAME} <{HELP}>",
        "Subject: VPN drops every hour",
        "Thread-Topic: VPN drops every hour",
        f"Date: {date(3, 9, 40, 5)}",
        "Message-ID: <DB9PR08MB65880A1B2C3D4E5F6A7B8C9D0E1F2A3@DB9PR08MB6588.eurprd08.prod.outlook.example>",
        "Accept-Language: en-US",
        *outlook_headers(),
        "Content-Type: text/plain; charset=\"us-ascii\"",
        "Content-Transfer-Encoding: quoted-printable",
        "MIME-Version: 1.0",
    ], qp("Hi,\n\nmy VPN connection drops every hour on the hour, exactly at minute 00. The client "
          "log says \"session expired (code=42)\" and I have to log in again every single time, which "
          "breaks my calls with customers.\n\nBest regards\nPeter Novak\nGlobex Corp.\n", "ascii")),
        kind="mail", summary="VPN drops every hour", reporter="peter.novak@globex.example",
        participants=[HELP],
        description_contains=[
            'The client log says "session expired (code=42)" and I have to log in again every single time',
            "exactly at minute 00."],
        description_not_contains=["=3D", "=\n"])

    add("plain", "003-no-subject", msg([
        *received("mail.initech.example", "198.51.100.23", 3, 11, 2, 40, "4Q2kLm0C3pz9sW3"),
        f"Date: {date(3, 11, 2, 38, tz=1)}",
        "From: lukas.berger@initech.example",
        f"To: {HELP}",
        "Subject: ",
        "Message-ID: <20261103100238.GA12345@initech.example>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
        "Content-Disposition: inline",
        "User-Agent: Mutt/2.2.12 (2023-09-09)",
    ], "My password expired and the reset link in your portal gives a 404.\n\n-- \nLukas\n"),
        kind="mail", summary="(no subject)", reporter="lukas.berger@initech.example",
        description_contains=["the reset link in your portal gives a 404"],
        reply_text_contains=["the reset link in your portal gives a 404"], reply_text_not_contains=["Lukas"])

    add("plain", "004-folded-long-subject", msg([
        *received("mail.acme.example", "198.51.100.17", 3, 12, 0, 3, "4Q2kLm0D4pz9sW4"),
        "Message-ID: <0b7e8d9c-1a2b-4c3d-8e9f-0a1b2c3d4e5f@acme.example>",
        f"Date: {date(3, 12, 0, 1)}",
        "MIME-Version: 1.0",
        "User-Agent: Mozilla Thunderbird",
        "From: Ben Ortiz <ben.ortiz@acme.example>",
        f"To: {HELP}",
        "Subject: Request for a new laptop for the intern starting on Monday,\n"
        " including docking station and a second monitor",
        "Content-Type: text/plain; charset=UTF-8; format=flowed",
        "Content-Transfer-Encoding: 7bit",
    ], "Hi,\n\nsee subject. Cost centre 4410.\n\nBen\n"),
        kind="mail",
        summary="Request for a new laptop for the intern starting on Monday, including docking station "
                "and a second monitor",
        reporter="ben.ortiz@acme.example", description_contains=["Cost centre 4410."])

    add("plain", "005-webform-reply-to", msg([
        *received("web01.acme.example", "198.51.100.80", 3, 12, 30, 9, "4Q2kLm0E5pz9sW5"),
        f"Date: {date(3, 12, 30, 9)}",
        "From: Acme Website <noreply@acme.example>",
        "Reply-To: Carla Diaz <carla.diaz@customer.example>",
        f"To: {HELP}",
        "Subject: Contact form: Question about my order 88213",
        "Message-ID: <20261103123009.1f3a5c7e9b@web01.acme.example>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "X-Mailer: PHPMailer 6.9.1 (https://github.com/PHPMailer/PHPMailer)",
    ], raw8("Name: Carla Diaz\nE-mail: carla.diaz@customer.example\nOrder: 88213\n\nMessage:\n"
            "The parcel was delivered to the wrong address – can you check?\n", "utf-8")),
        kind="mail", summary="Contact form: Question about my order 88213",
        reporter="noreply@acme.example", participants=[HELP],
        description_contains=["The parcel was delivered to the wrong address – can you check?", "Order: 88213"])

    add("plain", "006-display-names-and-groups", msg([
        *received("mail.globex.example", "198.51.100.31", 3, 13, 5, 44, "4Q2kLm0F6pz9sW6"),
        f"Date: {date(3, 13, 5, 40)}",
        'From: "Doe, Jane" <Jane.Doe@Globex.EXAMPLE>',
        f"To: Support Team: {HELP}, tier2@intake.example;,\n Jane Doe <jane.doe@globex.example>",
        "Cc: \"O'Brien, Sean\" <sean.obrien@globex.example>, undisclosed-recipients:;",
        "Subject: Access to the shared drive \\\\fs01\\finance",
        "Message-ID: <CAE3k9vQ_Xy1Zz2Ww3Vv4Uu5Tt6Ss7Rr8Qq9Pp0@mail.gmail.example>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=\"UTF-8\"",
    ], "Please grant me read access to the finance share. My manager Sean is in copy.\n"),
        kind="mail", reporter="jane.doe@globex.example", reporter_name="Doe, Jane",
        participants=[HELP, "tier2@intake.example", "sean.obrien@globex.example"],
        description_contains=["Please grant me read access to the finance share."])

    add("plain", "007-iphone-signature", msg([
        *received("mail-pl1-f170.google.example", "203.0.113.170", 3, 14, 1, 9, "4Q2kLm0G7pz9sW7"),
        "Content-Type: text/plain; charset=us-ascii",
        "Content-Transfer-Encoding: 7bit",
        "From: Maria Rossi <maria.rossi@acme.example>",
        "Mime-Version: 1.0 (1.0)",
        f"Date: {date(3, 14, 1, 2)}",
        "Subject: Badge does not open the garage",
        "Message-Id: <3C1B7E0A-9F2D-4E5B-8C6A-1D2E3F4A5B6C@acme.example>",
        f"To: {HELP}",
        "X-Mailer: iPhone Mail (22B91)",
    ], "My badge stopped working at the garage gate this morning. Badge number 004512.\n\n"
       "Sent from my iPhone\n"),
        kind="mail", summary="Badge does not open the garage", reporter="maria.rossi@acme.example",
        description_contains=["Badge number 004512.", "Sent from my iPhone"],
        reply_text_contains=["Badge number 004512."], reply_text_not_contains=["Sent from my iPhone"])

    add("plain", "008-signature-delimiter", msg([
        *received("mail.initech.example", "198.51.100.23", 3, 15, 20, 0, "4Q2kLm0H8pz9sW8"),
        "Message-ID: <7d2f6a10-8b3c-4e9d-a1f2-3b4c5d6e7f80@initech.example>",
        f"Date: {date(3, 15, 19, 58, tz=1)}",
        "MIME-Version: 1.0",
        "User-Agent: Mozilla Thunderbird",
        "From: Lukas Berger <lukas.berger@initech.example>",
        f"To: {HELP}",
        "Subject: Monitor flickers",
        "Content-Type: text/plain; charset=UTF-8",
        "Content-Transfer-Encoding: 7bit",
    ], "The left monitor flickers when the laptop is docked.\n\n-- \nLukas Berger\nInitech IT\n"
       "Phone +43 1 555 0100\n"),
        kind="mail", description_contains=["The left monitor flickers", "Initech IT"],
        reply_text_contains=["The left monitor flickers when the laptop is docked."],
        reply_text_not_contains=["Initech IT", "+43 1 555 0100"])

    add("plain", "009-utf8-raw-header", msg([
        *received("mail.acme.example", "198.51.100.17", 3, 16, 0, 5, "4Q2kLm0I9pz9sW9"),
        "Message-ID: <c0ffee00-1111-4222-8333-444455556666@acme.example>",
        f"Date: {date(3, 16, 0, 1)}",
        "MIME-Version: 1.0",
        "User-Agent: Mozilla Thunderbird",
        raw8("From: Jürgen Weiß <juergen.weiss@acme.example>", "utf-8"),
        f"To: {HELP}",
        raw8("Subject: Überweisung für Rechnung 2026-118 fehlt", "utf-8"),
        "Content-Type: text/plain; charset=UTF-8",
        "Content-Transfer-Encoding: 8bit",
    ], raw8("Die Überweisung ist laut Bank am 30.10. rausgegangen.\n", "utf-8")),
        kind="mail", summary="Überweisung für Rechnung 2026-118 fehlt", reporter="juergen.weiss@acme.example",
        reporter_name="Jürgen Weiß", description_contains=["Die Überweisung ist laut Bank am 30.10. rausgegangen."])


# =============================================================================================
# html/


def html() -> None:
    b = "000000000000a1b2c3d4e5f60718"
    add("html", "010-gmail-alternative", msg([
        "MIME-Version: 1.0",
        *received("mail-wr1-f54.google.example", "203.0.113.54", 3, 10, 0, 5, "4Q2kLm1A1pz9sX1"),
        f"Date: {date(3, 10, 0, 1)}",
        "Message-ID: <CAFx1v2Q8bW+3kLmNoPqRsTuVwXyZ0123456789abcdEF@mail.gmail.example>",
        "Subject: Export to CSV times out",
        "From: Olga Petrova <olga.petrova@customer.example>",
        f"To: {HELP}",
        f'Content-Type: multipart/alternative; boundary="{b}"',
    ], multipart(b, [
        text_part("Hello,\n\nexporting the customer list to CSV times out after 30 seconds.\n"
                  "It worked last week.\n\nOlga\n", "UTF-8", "7bit"),
        html_part('<div dir="ltr">Hello,<div><br></div><div>exporting the customer list to CSV '
                  "<b>times out</b> after 30 seconds.</div><div>It worked last week.</div><div><br>"
                  "</div><div>Olga</div></div>\n", "UTF-8"),
    ])), kind="mail", summary="Export to CSV times out", reporter="olga.petrova@customer.example",
        reporter_name="Olga Petrova",
        description_contains=["exporting the customer list to CSV times out after 30 seconds."],
        description_not_contains=["<div", "dir=", "**"], attachments=[])

    add("html", "011-owa-html-only", msg([
        *received("AM0PR02MB5555.eurprd02.prod.outlook.example", "203.0.113.41", 3, 10, 15, 0,
                  "4Q2kLm1B2pz9sX2"),
        "From: Peter Novak <peter.novak@globex.example>",
        f"To: {HELP_NAME} <{HELP}>",
        "Subject: Calendar sharing is broken",
        "Thread-Topic: Calendar sharing is broken",
        "Thread-Index: AQHbTk3vQ2x8QpZ1T0y7W5aF3bC9Xg==",
        f"Date: {date(3, 10, 14, 57)}",
        "Message-ID: <AM0PR02MB5555D1E2F3A4B5C6D7E8F9A0B1C2D3E4@AM0PR02MB5555.eurprd02.prod.outlook.example>",
        "Accept-Language: en-US",
        "Content-Language: en-US",
        "X-MS-Has-Attach:",
        "Content-Type: text/html; charset=\"iso-8859-1\"",
        "Content-Transfer-Encoding: quoted-printable",
        "MIME-Version: 1.0",
    ], qp('<html>\n<head>\n<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1">\n'
          '<style type="text/css" style="display:none;"> P {margin-top:0;margin-bottom:0;} </style>\n'
          '</head>\n<body dir="ltr">\n<div class="elementToProof" style="font-family: Aptos, '
          'Aptos_EmbeddedFont, Aptos_MSFontService, Calibri, Helvetica, sans-serif; font-size: 12pt; '
          'color: rgb(0, 0, 0);">\nWhen I share my calendar with a colleague the invitation is '
          '<b>never delivered</b>.</div>\n<div class="elementToProof">I tried it three times since '
          'Friday.</div>\n<div class="elementToProof"><br></div>\n<div class="elementToProof">Peter'
          '</div>\n</body>\n</html>\n', "iso-8859-1")),
        kind="mail", summary="Calendar sharing is broken", reporter="peter.novak@globex.example",
        description_contains=["When I share my calendar with a colleague the invitation is never delivered.",
                              "I tried it three times since Friday."],
        description_not_contains=["<div", "margin-top", "elementToProof", "**", "&nbsp;"])

    add("html", "012-html-entities", msg([
        *received("smtp.customer.example", "198.51.100.90", 3, 10, 30, 0, "4Q2kLm1C3pz9sX3"),
        f"Date: {date(3, 10, 29, 58)}",
        "From: =?utf-8?Q?Zo=C3=AB_Martin?= <zoe.martin@customer.example>",
        f"To: {HELP}",
        "Subject: Menu shows HTML codes",
        "Message-ID: <1730628598.5f3e2d1c@smtp.customer.example>",
        "MIME-Version: 1.0",
        "Content-Type: text/html; charset=us-ascii",
        "Content-Transfer-Encoding: 7bit",
        "X-Mailer: Zimbra 10.0.8_GA_4611 (ZimbraWebClient - FF131 (Linux)/10.0.8_GA_4611)",
    ], "<html><body><p>The caf&eacute; menu shows &lt;b&gt;tags&lt;/b&gt; &amp; other codes "
       "instead of prices.</p><p>Price &#8364;&nbsp;4.50 is shown as &amp;euro;4.50.</p></body></html>\n"),
        kind="mail", reporter_name="Zoë Martin",
        description_contains=["The café menu shows <b>tags</b> & other codes instead of prices.",
                              "&euro;4.50"],
        description_not_contains=["&eacute;", "&lt;", "<p>"])

    add("html", "013-style-and-script", msg([
        *received("mailer.shop.example", "198.51.100.110", 3, 11, 0, 0, "4Q2kLm1D4pz9sX4"),
        f"Date: {date(3, 10, 59, 59)}",
        "From: Helen Park <helen.park@shop.example>",
        f"To: {HELP}",
        "Subject: Newsletter template renders badly",
        "Message-ID: <20261103105959.7A8B9C@mailer.shop.example>",
        "MIME-Version: 1.0",
        "Content-Type: text/html; charset=UTF-8",
        "Content-Transfer-Encoding: quoted-printable",
    ], qp("<!DOCTYPE html>\n<html><head><title>Internal draft</title>\n<style>\nbody { font-family: "
          "Verdana; color: #333 }\n.hide { display: none }\n</style>\n<script>var tracking = "
          "'abc123';</script>\n</head>\n<body><h1>Template issue</h1>\n<p>The footer of our "
          "newsletter template overlaps the unsubscribe link on mobile.</p>\n</body></html>\n", "utf-8")),
        kind="mail",
        description_contains=["Template issue",
                              "The footer of our newsletter template overlaps the unsubscribe link on mobile."],
        description_not_contains=["font-family", "var tracking", "display: none", "<h1>"])

    b = "----=_Part_1234567_890123456.1793714400000"
    add("html", "014-empty-text-alternative", msg([
        *received("mta-17.mailing.example", "198.51.100.140", 3, 11, 20, 0, "4Q2kLm1E5pz9sX5"),
        f"Date: {date(3, 11, 20, 0)}",
        "From: Rosa Lopez <rosa.lopez@partner.example>",
        f"To: {HELP}",
        "Message-ID: <1234567.890123456.1793714400000@mta-17.partner.example>",
        "Subject: Partner portal login",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/alternative; boundary="{b}"',
    ], multipart(b, [
        text_part("\n\n", "UTF-8", "7bit"),
        html_part("<html><body><p>Our partner portal login page shows an endless spinner after "
                  "entering the one-time code.</p></body></html>\n", "UTF-8"),
    ])), kind="mail",
        description_contains=["Our partner portal login page shows an endless spinner after entering "
                              "the one-time code."])

    add("html", "015-html-table", msg([
        *received("mail.globex.example", "198.51.100.31", 3, 11, 40, 0, "4Q2kLm1F6pz9sX6"),
        f"Date: {date(3, 11, 39, 57)}",
        "From: Finance Team <finance@globex.example>",
        f"To: {HELP}",
        "Subject: Wrong VAT on two invoices",
        "Message-ID: <finance.20261103113957.4411@globex.example>",
        "MIME-Version: 1.0",
        "Content-Type: text/html; charset=UTF-8",
        "Content-Transfer-Encoding: base64",
    ], b64(b"<html><body><p>These invoices have 19% VAT instead of 7%:</p><table border=\"1\">"
           b"<tr><th>Invoice</th><th>Amount</th></tr><tr><td>INV-2026-0311</td><td>1,204.00</td></tr>"
           b"<tr><td>INV-2026-0312</td><td>86.50</td></tr></table></body></html>\n")),
        kind="mail", description_contains=["These invoices have 19% VAT instead of 7%:", "INV-2026-0311",
                                           "INV-2026-0312", "86.50"],
        description_not_contains=["<td>", "<table"])

    b = "Apple-Mail=_8F3A2B1C-4D5E-6F70-8192-A3B4C5D6E7F8"
    add("html", "016-apple-links", msg([
        *received("mail.acme.example", "198.51.100.17", 3, 12, 10, 0, "4Q2kLm1G7pz9sX7"),
        "From: Tom Becker <tom.becker@acme.example>",
        f'Content-Type: multipart/alternative;\n\tboundary="{b}"',
        "Mime-Version: 1.0 (Mac OS X Mail 16.0 \\(3826.200.121\\))",
        "Subject: Broken link in the onboarding guide",
        f"Date: {date(3, 12, 9, 55, tz=1)}",
        "Message-Id: <8A7B6C5D-4E3F-2A1B-0C9D-8E7F6A5B4C3D@acme.example>",
        f"To: {HELP}",
        "X-Mailer: Apple Mail (2.3826.200.121)",
    ], multipart(b, [
        part(["Content-Transfer-Encoding: 7bit", "Content-Type: text/html;", "\tcharset=us-ascii"],
             '<html><head><meta http-equiv="content-type" content="text/html; charset=us-ascii"></head>'
             '<body style="overflow-wrap: break-word;">The link <a href="https://wiki.acme.example/'
             'onboarding/vpn-setup">VPN setup</a> in the onboarding guide returns 404.<div><br></div>'
             "<div>Tom</div></body></html>"),
    ], preamble=None)), kind="mail", summary="Broken link in the onboarding guide",
        description_contains=["VPN setup", "https://wiki.acme.example/onboarding/vpn-setup",
                              "in the onboarding guide returns 404."],
        description_not_contains=["<a href", "overflow-wrap"])


# =============================================================================================
# attachments/


def attachments() -> None:
    b = "------------0AbCdEfGhIjKlMnOpQrStUv1"
    add("attachments", "020-pdf", msg([
        *received("mail.acme.example", "198.51.100.17", 3, 9, 0, 10, "4Q2kLm2A1pz9sY1"),
        f'Content-Type: multipart/mixed; boundary="{b}"',
        "Message-ID: <1b2c3d4e-5f60-4718-92a3-b4c5d6e7f809@acme.example>",
        f"Date: {date(3, 9, 0, 8)}",
        "MIME-Version: 1.0",
        "User-Agent: Mozilla Thunderbird",
        "Content-Language: en-US",
        "From: Anna Schmidt <anna.schmidt@acme.example>",
        f"To: {HELP}",
        "Subject: Invoice 2026-11-0042 is wrong",
    ], multipart(b, [
        text_part("The attached invoice lists 12 licences, we only have 10.\n", "UTF-8", "7bit",
                  "; format=flowed"),
        attachment('application/pdf; name="invoice-2026-11-0042.pdf"', 'filename="invoice-2026-11-0042.pdf"',
                   PDF_INVOICE),
    ], preamble="This is a multi-part message in MIME format.")),
        kind="mail", summary="Invoice 2026-11-0042 is wrong",
        description_contains=["The attached invoice lists 12 licences, we only have 10."],
        description_not_contains=["JVBERi0", "%PDF"],
        attachments=[{"filename": "invoice-2026-11-0042.pdf", "content_type": "application/pdf",
                      "inline": False, "content_id": None, "size": len(PDF_INVOICE)}])

    b = "_004_DB9PR08MB6588A1B2C3D4E5F6A7B8C9D0E1F2A3B4DB9PR08MB6588eurp_"
    b2 = "_000_DB9PR08MB6588A1B2C3D4E5F6A7B8C9D0E1F2A3B4DB9PR08MB6588eurp_"
    add("attachments", "021-outlook-docx", msg([
        *received("EUR05-DB8-obe.outbound.protection.outlook.example", "203.0.113.40", 3, 9, 30, 0,
                  "4Q2kLm2B2pz9sY2"),
        "From: Peter Novak <peter.novak@globex.example>",
        f"To: {HELP_NAME} <{HELP}>",
        "Subject: Change request for the sales VPN profile",
        "Thread-Topic: Change request for the sales VPN profile",
        f"Date: {date(3, 9, 29, 55)}",
        "Message-ID: <DB9PR08MB6588A1B2C3D4E5F6A7B8C9D0E1F2A3B4@DB9PR08MB6588.eurprd08.prod.outlook.example>",
        "Accept-Language: en-US",
        *outlook_headers("AdtOKm3vR2x8QpZ1T0y7W5aF3bC9Xh==", attach=True),
        f'Content-Type: multipart/mixed;\n\tboundary="{b}"',
        "MIME-Version: 1.0",
    ], multipart(b, [
        part([f'Content-Type: multipart/alternative;\n\tboundary="{b2}"'], multipart(b2, [
            text_part("Hello,\n\nplease find the change request attached.\n\nKind regards\nPeter\n",
                      "us-ascii", "quoted-printable"),
            html_part('<html><body><p class="MsoNormal">Hello,</p><p class="MsoNormal">please find the '
                      'change request attached.</p></body></html>\n', "us-ascii"),
        ])),
        attachment("application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                   'filename="Change request VPN.docx"; size=' + str(len(DOCX)) + ";\n"
                   '\tcreation-date="Tue, 03 Nov 2026 09:28:11 GMT";\n'
                   '\tmodification-date="Tue, 03 Nov 2026 09:29:40 GMT"', DOCX,
                   extra=["Content-Description: Change request VPN.docx"],
                   name_param='name="Change request VPN.docx"'),
    ])), kind="mail", description_contains=["please find the change request attached."],
        description_not_contains=["MsoNormal"],
        attachments=[{"filename": "Change request VPN.docx",
                      "content_type": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                      "inline": False, "content_id": None, "size": len(DOCX)}])

    b = "000000000000b2c3d4e5f6071829"
    b2 = "000000000000b2c3d4e5f6071828"
    add("attachments", "022-gmail-png-attachment", msg([
        "MIME-Version: 1.0",
        *received("mail-wr1-f54.google.example", "203.0.113.54", 3, 9, 45, 0, "4Q2kLm2C3pz9sY3"),
        f"Date: {date(3, 9, 44, 58)}",
        "Message-ID: <CAFx1v2Q8bW+4kLmNoPqRsTuVwXyZ0123456789abcdEF@mail.gmail.example>",
        "Subject: Error message when saving",
        "From: Olga Petrova <olga.petrova@customer.example>",
        f"To: {HELP}",
        f'Content-Type: multipart/mixed; boundary="{b}"',
    ], multipart(b, [
        part([f'Content-Type: multipart/alternative; boundary="{b2}"'], multipart(b2, [
            text_part("Screenshot of the error attached.\n", "UTF-8", "7bit"),
            html_part('<div dir="ltr">Screenshot of the error attached.</div>\n', "UTF-8"),
        ])),
        attachment('image/png; name="error-dialog.png"', 'filename="error-dialog.png"', PNG_SCREEN,
                   extra=["X-Attachment-Id: f_m8k2q1x70", "Content-ID: <f_m8k2q1x70>"]),
    ])), kind="mail", description_contains=["Screenshot of the error attached."],
        attachments=[{"filename": "error-dialog.png", "content_type": "image/png", "inline": False,
                      "content_id": "f_m8k2q1x70", "size": len(PNG_SCREEN)}])

    b = "_010_DB9PR08MB6588B1C2D3E4F5A6B7C8D9E0F1A2B3C4DB9PR08MB6588eurp_"
    b2 = "_000_DB9PR08MB6588B1C2D3E4F5A6B7C8D9E0F1A2B3C4DB9PR08MB6588eurp_"
    cid = "image001.png@01DB4E2A.6F1B3C40"
    add("attachments", "023-outlook-inline-image-related", msg([
        *received("EUR05-DB8-obe.outbound.protection.outlook.example", "203.0.113.40", 3, 10, 5, 0,
                  "4Q2kLm2D4pz9sY4"),
        "From: Peter Novak <peter.novak@globex.example>",
        f"To: {HELP_NAME} <{HELP}>",
        "Subject: Strange warning in the ERP",
        "Thread-Topic: Strange warning in the ERP",
        f"Date: {date(3, 10, 4, 50)}",
        "Message-ID: <DB9PR08MB6588B1C2D3E4F5A6B7C8D9E0F1A2B3C4@DB9PR08MB6588.eurprd08.prod.outlook.example>",
        *outlook_headers("AdtOKm3vR2x8QpZ1T0y7W5aF3bC9Xi==", attach=True),
        f'Content-Type: multipart/related;\n\tboundary="{b}";\n\ttype="multipart/alternative"',
        "MIME-Version: 1.0",
    ], multipart(b, [
        part([f'Content-Type: multipart/alternative;\n\tboundary="{b2}"'], multipart(b2, [
            text_part("Hi,\n\nthe ERP shows this warning when I post an invoice:\n\n[cid:image001.png@01DB4E2A."
                      "6F1B3C40]\n\nPeter\n", "us-ascii", "quoted-printable"),
            html_part(f'<html><body><p class="MsoNormal">Hi,</p><p class="MsoNormal">the ERP shows this '
                      f'warning when I post an invoice:</p><p class="MsoNormal"><img width="16" '
                      f'height="12" style="width:.1666in;height:.125in" id="Picture_x0020_1" '
                      f'src="cid:{cid}"></p><p class="MsoNormal">Peter</p></body></html>\n', "us-ascii"),
        ])),
        attachment('image/png; name="image001.png"', 'filename="image001.png"; size=' + str(len(PNG_SCREEN))
                   + ';\n\tcreation-date="Tue, 03 Nov 2026 10:04:50 GMT";\n\tmodification-date="Tue, 03 Nov '
                   '2026 10:04:50 GMT"', PNG_SCREEN, disposition="inline",
                   extra=["Content-Description: image001.png", f"Content-ID: <{cid}>"]),
    ])), kind="mail", description_contains=["the ERP shows this warning when I post an invoice:"],
        attachments=[{"filename": "image001.png", "content_type": "image/png", "inline": True,
                      "content_id": cid, "size": len(PNG_SCREEN)}])

    b = "------------7SeKq2ZbN4pLmQrStUvWxYz0"
    add("attachments", "024-rfc2231-utf8-filename", msg([
        *received("mail.acme.example", "198.51.100.17", 3, 10, 20, 0, "4Q2kLm2E5pz9sY5"),
        f'Content-Type: multipart/mixed; boundary="{b}"',
        "Message-ID: <2c3d4e5f-6071-4829-a3b4-c5d6e7f8091a@acme.example>",
        f"Date: {date(3, 10, 19, 58, tz=1)}",
        "MIME-Version: 1.0",
        "User-Agent: Mozilla Thunderbird",
        "From: =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <juergen.mueller@acme.example>",
        f"To: {HELP}",
        "Subject: =?UTF-8?Q?Rechnung_f=C3=BCr_M=C3=A4rz?=",
    ], multipart(b, [
        text_part("Anbei die Rechnung.\n", "UTF-8", "7bit", "; format=flowed"),
        attachment('application/pdf;\n name="=?UTF-8?Q?Rechnung_M=C3=A4rz_2026=2Epdf?="',
                   "filename*=UTF-8''Rechnung%20M%C3%A4rz%202026.pdf", PDF_INVOICE),
    ], preamble="This is a multi-part message in MIME format.")),
        kind="mail", summary="Rechnung für März", reporter_name="Jürgen Müller",
        attachments=[{"filename": "Rechnung März 2026.pdf", "content_type": "application/pdf",
                      "inline": False, "content_id": None, "size": len(PDF_INVOICE)}])

    long_name = "Договор № 17 от 03.11.2026 (подписанный).docx"
    enc = "".join(c if (c.isascii() and (c.isalnum() or c in ".-_")) else
                  "".join(f"%{x:02X}" for x in c.encode("utf-8")) for c in long_name)
    pieces = [enc[i : i + 60] for i in range(0, len(enc), 60)]
    # Do not split a %XX escape between two pieces.
    fixed: list[str] = []
    carry = ""
    for p in pieces:
        p = carry + p
        cut = p.rfind("%")
        carry = p[cut:] if cut != -1 and cut > len(p) - 3 else ""
        fixed.append(p[: len(p) - len(carry)])
    if carry:
        fixed.append(carry)
    params = ";\n".join(
        (f" filename*{i}*=UTF-8''{p}" if i == 0 else f" filename*{i}*={p}") for i, p in enumerate(fixed))
    b = "------------M1n2B3v4C5x6Z7l8K9j0H1g2"
    add("attachments", "025-rfc2231-continuation", msg([
        *received("mail.initech.example", "198.51.100.23", 3, 10, 40, 0, "4Q2kLm2F6pz9sY6"),
        f'Content-Type: multipart/mixed; boundary="{b}"',
        "Message-ID: <3d4e5f60-7182-493a-b4c5-d6e7f8091a2b@initech.example>",
        f"Date: {date(3, 10, 39, 55, tz=3)}",
        "MIME-Version: 1.0",
        "User-Agent: Mozilla Thunderbird",
        f"From: {ew_b('Дмитрий Козлов')} <dmitry.kozlov@initech.example>",
        f"To: {HELP}",
        f"Subject: {ew_b('Договор на подпись')}",
    ], multipart(b, [
        text_part("Добрый день, договор во вложении.\n", "UTF-8", "8bit", "; format=flowed"),
        part([f"Content-Type: application/vnd.openxmlformats-officedocument.wordprocessingml.document;\n"
              f"{params.replace('filename*', 'name*')}",
              f"Content-Disposition: attachment;\n{params}",
              "Content-Transfer-Encoding: base64"], b64(DOCX)),
    ], preamble="This is a multi-part message in MIME format.")),
        kind="mail", summary="Договор на подпись", reporter_name="Дмитрий Козлов",
        description_contains=["Добрый день, договор во вложении."],
        attachments=[{"filename": long_name,
                      "content_type": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                      "inline": False, "content_id": None, "size": len(DOCX)}])

    b = "000000000000c3d4e5f607182930"
    add("attachments", "026-rfc2047-filename", msg([
        "MIME-Version: 1.0",
        *received("mail-wr1-f54.google.example", "203.0.113.54", 3, 11, 0, 0, "4Q2kLm2G7pz9sY7"),
        f"Date: {date(3, 10, 59, 58, tz=3)}",
        "Message-ID: <CAFx1v2Q8bW+5kLmNoPqRsTuVwXyZ0123456789abcdEF@mail.gmail.example>",
        f"Subject: {ew_b('Отчёт за октябрь')}",
        f"From: {ew_b('Ольга Петрова')} <olga.petrova@customer.example>",
        f"To: {HELP}",
        f'Content-Type: multipart/mixed; boundary="{b}"',
    ], multipart(b, [
        text_part("Отчёт во вложении.\n", "UTF-8", "base64"),
        attachment(f'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet; \n\tname="{ew_b("Отчёт.xlsx")}"',
                   f'filename="{ew_b("Отчёт.xlsx")}"', XLSX, extra=["X-Attachment-Id: f_m8k2r9zz0",
                                                                   "Content-ID: <f_m8k2r9zz0>"]),
    ])), kind="mail", summary="Отчёт за октябрь", description_contains=["Отчёт во вложении."],
        attachments=[{"filename": "Отчёт.xlsx",
                      "content_type": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                      "inline": False, "content_id": "f_m8k2r9zz0", "size": len(XLSX)}])

    b = "------------Xy9Wv8Ut7Sr6Qp5On4Ml3Kj2"
    add("attachments", "027-several-attachments", msg([
        *received("mail.acme.example", "198.51.100.17", 3, 11, 15, 0, "4Q2kLm2H8pz9sY8"),
        f'Content-Type: multipart/mixed; boundary="{b}"',
        "Message-ID: <4e5f6071-8293-4a4b-c5d6-e7f8091a2b3c@acme.example>",
        f"Date: {date(3, 11, 14, 57, tz=1)}",
        "MIME-Version: 1.0",
        "User-Agent: Mozilla Thunderbird",
        "From: Anna Schmidt <anna.schmidt@acme.example>",
        f"To: {HELP}",
        "Subject: Documents for the audit",
    ], multipart(b, [
        text_part("Here are the documents the auditors asked for.\n", "UTF-8", "7bit", "; format=flowed"),
        attachment('application/pdf; name="report-q3.pdf"', 'filename="report-q3.pdf"', PDF_REPORT),
        attachment("application/vnd.openxmlformats-officedocument.wordprocessingml.document;\n"
                   ' name="minutes.docx"', 'filename="minutes.docx"', DOCX),
        attachment('image/png; name="org-chart.png"', 'filename="org-chart.png"', PNG_LOGO),
        attachment("application/pdf; name*=iso-8859-1'de'Preis%FCbersicht.pdf",
                   "filename*=iso-8859-1'de'Preis%FCbersicht.pdf", PDF_INVOICE),
        part(['Content-Type: text/plain; charset=UTF-8; name="server.log"',
              'Content-Disposition: attachment; filename="server.log"',
              "Content-Transfer-Encoding: 7bit"],
             "2026-11-03T10:59:01Z ERROR db pool exhausted (max=20)\n"
             "2026-11-03T10:59:02Z ERROR request failed: timeout\n"),
    ], preamble="This is a multi-part message in MIME format.")),
        kind="mail", description_contains=["Here are the documents the auditors asked for."],
        description_not_contains=["db pool exhausted"],
        attachments=[
            {"filename": "report-q3.pdf", "content_type": "application/pdf", "inline": False,
             "content_id": None, "size": len(PDF_REPORT)},
            {"filename": "minutes.docx",
             "content_type": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
             "inline": False, "content_id": None, "size": len(DOCX)},
            {"filename": "org-chart.png", "content_type": "image/png", "inline": False, "content_id": None,
             "size": len(PNG_LOGO)},
            {"filename": "Preisübersicht.pdf", "content_type": "application/pdf", "inline": False,
             "content_id": None, "size": len(PDF_INVOICE)},
            {"filename": "server.log", "content_type": "text/plain", "inline": False, "content_id": None},
        ])

    b = "=-=-=__O6Ujh7l8k9j0H1g2F3d4S5a6__=-=-="
    add("attachments", "028-attachment-without-name", msg([
        *received("scanner01.acme.example", "198.51.100.61", 3, 11, 30, 0, "4Q2kLm2I9pz9sY9"),
        f"Date: {date(3, 11, 30, 0)}",
        "From: Scanner 3rd floor <scanner3@acme.example>",
        f"To: {HELP}",
        "Subject: Scanned document",
        "Message-ID: <SCAN.20261103113000.0001@scanner01.acme.example>",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/mixed; boundary="{b}"',
        "X-Mailer: RICOH IM C3000",
    ], multipart(b, [
        text_part("Scanned by RICOH IM C3000, 1 page.\n", "us-ascii", "7bit"),
        part(["Content-Type: application/octet-stream", "Content-Transfer-Encoding: base64"], b64(PDF_REPORT)),
    ])), kind="mail", description_contains=["Scanned by RICOH IM C3000, 1 page."],
        attachments=[{"content_type": "application/octet-stream",
                      "inline": False, "content_id": None, "size": len(PDF_REPORT)}])

    b = "Apple-Mail=_1A2B3C4D-5E6F-7081-92A3-B4C5D6E7F809"
    add("attachments", "029-apple-inline-image-between-text", msg([
        *received("mail.acme.example", "198.51.100.17", 3, 12, 0, 0, "4Q2kLm2J0pz9sZ0"),
        "From: Tom Becker <tom.becker@acme.example>",
        f'Content-Type: multipart/mixed;\n\tboundary="{b}"',
        "Mime-Version: 1.0 (Mac OS X Mail 16.0 \\(3826.200.121\\))",
        "Subject: Button is grey",
        f"Date: {date(3, 11, 59, 50, tz=1)}",
        "Message-Id: <9B8C7D6E-5F4A-3B2C-1D0E-9F8A7B6C5D4E@acme.example>",
        f"To: {HELP}",
        "X-Mailer: Apple Mail (2.3826.200.121)",
    ], multipart(b, [
        part(["Content-Transfer-Encoding: 7bit", "Content-Type: text/plain;", "\tcharset=us-ascii"],
             "Here is a screenshot of the order screen:\n"),
        part(["Content-Disposition: inline;", "\tfilename=Screenshot.png",
              "Content-Type: image/png;", "\tx-unix-mode=0644;", "\tname=\"Screenshot.png\"",
              "Content-Transfer-Encoding: base64"], b64(PNG_SHOT)),
        part(["Content-Transfer-Encoding: 7bit", "Content-Type: text/plain;", "\tcharset=us-ascii"],
             "\nAs you can see the Submit button stays grey.\n\nTom\n"),
    ])), kind="mail", description_contains=["Here is a screenshot of the order screen:",
                                            "As you can see the Submit button stays grey."],
        attachments=[{"filename": "Screenshot.png", "content_type": "image/png", "inline": True,
                      "content_id": None, "size": len(PNG_SHOT)}])

    b = "------------Thunderbird0Fwd1AsAttach2"
    inner = msg([
        *received("mail.customer.example", "198.51.100.91", 2, 16, 12, 30, "4Q2kLm9Z9pz9aa1"),
        "Message-ID: <f0e1d2c3-b4a5-4968-8776-5a4b3c2d1e0f@customer.example>",
        f"Date: {date(2, 16, 12, 25)}",
        "MIME-Version: 1.0",
        "User-Agent: Mozilla Thunderbird",
        "From: Carla Diaz <carla.diaz@customer.example>",
        "To: Sales <sales@acme.example>",
        "Subject: Printer broken",
        "Content-Type: text/plain; charset=UTF-8; format=flowed",
        "Content-Transfer-Encoding: 7bit",
    ], "The printer you delivered last week does not turn on.\n")
    add("attachments", "030-forward-as-attachment-named", msg([
        *received("mail.acme.example", "198.51.100.17", 3, 12, 20, 0, "4Q2kLm2K1pz9sZ1"),
        f'Content-Type: multipart/mixed; boundary="{b}"',
        "Message-ID: <5f607182-93a4-4b5c-d6e7-f8091a2b3c4d@acme.example>",
        f"Date: {date(3, 12, 19, 58, tz=1)}",
        "MIME-Version: 1.0",
        "User-Agent: Mozilla Thunderbird",
        "From: Ben Ortiz <ben.ortiz@acme.example>",
        f"To: {HELP}",
        "Subject: Fwd: Printer broken",
    ], multipart(b, [
        text_part("Customer complaint below, please open a ticket.\n", "UTF-8", "7bit", "; format=flowed"),
        part(['Content-Type: message/rfc822; charset=UTF-8; name="Printer broken.eml"',
              'Content-Disposition: attachment; filename="Printer broken.eml"'], inner),
    ], preamble="This is a multi-part message in MIME format.")),
        kind="mail", summary="Fwd: Printer broken",
        description_contains=["Customer complaint below, please open a ticket."],
        attachments=[{"filename": "Printer broken.eml", "content_type": "message/rfc822", "inline": False,
                      "content_id": None}])

    b = "_002_DB9PR08MB6588C1D2E3F4A5B6C7D8E9F0A1B2C3D4DB9PR08MB6588eurp_"
    inner2 = msg([
        "From: Olga Petrova <olga.petrova@customer.example>",
        "To: Peter Novak <peter.novak@globex.example>",
        "Subject: Cannot log in to the portal",
        f"Date: {date(2, 15, 0, 0)}",
        "Message-ID: <CAFx1v2Q8bW+6kLmNoPqRsTuVwXyZ0123456789abcdEF@mail.gmail.example>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=\"UTF-8\"",
    ], "Since this morning I cannot log in to the customer portal. Error 403.\n")
    add("attachments", "031-outlook-forward-as-attachment", msg([
        *received("EUR05-DB8-obe.outbound.protection.outlook.example", "203.0.113.40", 3, 12, 40, 0,
                  "4Q2kLm2L2pz9sZ2"),
        "From: Peter Novak <peter.novak@globex.example>",
        f"To: {HELP_NAME} <{HELP}>",
        "Subject: FW: Cannot log in to the portal",
        f"Date: {date(3, 12, 39, 58)}",
        "Message-ID: <DB9PR08MB6588C1D2E3F4A5B6C7D8E9F0A1B2C3D4@DB9PR08MB6588.eurprd08.prod.outlook.example>",
        *outlook_headers("AdtOKm3vR2x8QpZ1T0y7W5aF3bC9Xj==", attach=True),
        f'Content-Type: multipart/mixed;\n\tboundary="{b}"',
        "MIME-Version: 1.0",
    ], multipart(b, [
        text_part("See the attached mail from our customer.\n", "us-ascii", "quoted-printable"),
        part(["Content-Type: message/rfc822", "Content-Disposition: attachment;\n\tcreation-date=\"Tue, 03 Nov "
              "2026 12:39:50 GMT\";\n\tmodification-date=\"Tue, 03 Nov 2026 12:39:50 GMT\""], inner2),
    ])), kind="mail", description_contains=["See the attached mail from our customer."],
        attachments=[{"filename": "Cannot log in to the portal.eml", "content_type": "message/rfc822",
                      "inline": False, "content_id": None}])

    b = "_003_DB9PR08MB6588D1E2F3A4B5C6D7E8F9A0B1C2D3E5DB9PR08MB6588eurp_"
    add("attachments", "032-outlook-winmail-dat", msg([
        *received("EXCH01.globex.example", "198.51.100.32", 3, 13, 0, 0, "4Q2kLm2M3pz9sZ3"),
        "From: Sean O'Brien <sean.obrien@globex.example>",
        f"To: {HELP}",
        "Subject: Quote for the new switches",
        f"Date: {date(3, 12, 59, 55)}",
        "Message-ID: <6A5B4C3D2E1F@EXCH01.globex.example>",
        "X-Mailer: Microsoft Outlook 14.0",
        "Thread-Index: AdtOKm3vR2x8QpZ1T0y7W5aF3bC9Xk==",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/mixed;\n\tboundary="{b}"',
        "X-MS-TNEF-Correlator: 00000000A1B2C3D4E5F6A7B8C9D0E1F2A3B4C5D6",
    ], multipart(b, [
        text_part("Please see the quote attached.\n", "us-ascii", "7bit"),
        attachment('application/ms-tnef; name="winmail.dat"', 'filename="winmail.dat"', TNEF),
    ])), kind="mail",
        attachments=[{"filename": "winmail.dat", "content_type": "application/ms-tnef", "inline": False,
                      "content_id": None, "size": len(TNEF)}])

    b = "------------GmailRelated0a1b2c3d4e5f"
    b2 = "------------GmailAlt0a1b2c3d4e5f"
    add("attachments", "033-gmail-inline-image", msg([
        "MIME-Version: 1.0",
        *received("mail-wr1-f54.google.example", "203.0.113.54", 3, 13, 20, 0, "4Q2kLm2N4pz9sZ4"),
        f"Date: {date(3, 13, 19, 58)}",
        "Message-ID: <CAFx1v2Q8bW+7kLmNoPqRsTuVwXyZ0123456789abcdEF@mail.gmail.example>",
        "Subject: Logo looks wrong on the invoice",
        "From: Olga Petrova <olga.petrova@customer.example>",
        f"To: {HELP}",
        f'Content-Type: multipart/related; boundary="{b}"',
    ], multipart(b, [
        part([f'Content-Type: multipart/alternative; boundary="{b2}"'], multipart(b2, [
            text_part("Our logo is blue on the invoice, it should be red:\n[image: logo.png]\n", "UTF-8"),
            html_part('<div dir="ltr">Our logo is blue on the invoice, it should be red:<div><img src="cid:'
                      'ii_m8k3a1b20" alt="logo.png" width="8" height="8"><br></div></div>\n', "UTF-8"),
        ])),
        attachment('image/png; name="logo.png"', 'filename="logo.png"', PNG_LOGO, disposition="inline",
                   extra=["X-Attachment-Id: ii_m8k3a1b20", "Content-ID: <ii_m8k3a1b20>"]),
    ])), kind="mail", description_contains=["Our logo is blue on the invoice, it should be red:"],
        attachments=[{"filename": "logo.png", "content_type": "image/png", "inline": True,
                      "content_id": "ii_m8k3a1b20", "size": len(PNG_LOGO)}])


# =============================================================================================
# charsets/


def charsets() -> None:
    def simple(name: str, subject_hdr: str, from_hdr: str, ctype: str, cte: str, body: str, *, mid: str,
               mailer: str = "User-Agent: Mozilla Thunderbird", day_time=(3, 9, 0, 0), **expect):
        d, h, m, s = day_time
        add("charsets", name, msg([
            *received("mail.example.net", "198.51.100.200", d, h, m, s + 2, "4Q2kLm3" + name[:3] + "pz9a"),
            f"Message-ID: <{mid}>",
            f"Date: {date(d, h, m, s)}",
            "MIME-Version: 1.0",
            mailer,
            from_hdr,
            f"To: {HELP}",
            f"Subject: {subject_hdr}",
            f"Content-Type: {ctype}",
            f"Content-Transfer-Encoding: {cte}",
        ], body), **expect)

    de = ("Sehr geehrte Damen und Herren,\n\nleider ist unsere Bestellung Nr. 4711 für das Café Müller "
          "noch nicht angekommen.\nKönnten Sie bitte prüfen, wo die Lieferung bleibt?\n\n"
          "Mit freundlichen Grüßen\nJürgen Weiß\n")
    simple("040-iso-8859-1-qp", "=?ISO-8859-1?Q?Bestellung_f=FCr_Caf=E9_M=FCller?=",
           f"From: {ew_b('Jürgen Weiß', 'ISO-8859-1')} <juergen.weiss@acme.example>",
           "text/plain; charset=ISO-8859-1; format=flowed", "quoted-printable", qp(de, "iso-8859-1"),
           mid="6a7b8c9d-0e1f-4a2b-93c4-d5e6f7a8b9c0@acme.example", day_time=(3, 9, 0, 0),
           kind="mail", summary="Bestellung für Café Müller", reporter_name="Jürgen Weiß",
           description_contains=["für das Café Müller", "Könnten Sie bitte prüfen", "Mit freundlichen Grüßen",
                                 "Jürgen Weiß"], description_not_contains=["=FC", "\ufffd"])

    pl = ("Dzień dobry,\n\nnie mogę zalogować się do systemu kadrowego od poniedziałku.\n"
          "Zażółć gęślą jaźń.\n\nPozdrawiam,\nŁukasz Wójcik\n")
    simple("041-iso-8859-2-base64", ew_q("Nie mogę się zalogować", "ISO-8859-2"),
           f"From: {ew_q('Łukasz Wójcik', 'ISO-8859-2')} <lukasz.wojcik@partner.example>",
           "text/plain; charset=ISO-8859-2", "base64", b64(pl.encode("iso-8859-2")),
           mid="7b8c9d0e-1f2a-4b3c-a4d5-e6f7a8b9c0d1@partner.example", day_time=(3, 9, 5, 0),
           kind="mail", summary="Nie mogę się zalogować", reporter_name="Łukasz Wójcik",
           description_contains=["nie mogę zalogować się do systemu kadrowego od poniedziałku.",
                                 "Zażółć gęślą jaźń.", "Łukasz Wójcik"], description_not_contains=["\ufffd"])

    fr = ("Bonjour,\n\nla facture nº 2026-118 indique 49,90 € au lieu de 39,90 €.\nMerci de vérifier.\n\n"
          "Cordialement,\nAgnès Lefèvre\nŒnologie Dupont\n")
    simple("042-iso-8859-15-qp", ew_q("Facture erronée (€)", "ISO-8859-15"),
           f"From: {ew_q('Agnès Lefèvre', 'ISO-8859-15')} <agnes.lefevre@oenologie.example>",
           "text/plain; charset=ISO-8859-15", "quoted-printable", qp(fr, "iso-8859-15"),
           mid="8c9d0e1f-2a3b-4c4d-b5e6-f7a8b9c0d1e2@oenologie.example", day_time=(3, 9, 10, 0),
           kind="mail", summary="Facture erronée (€)",
           description_contains=["indique 49,90 € au lieu de 39,90 €.", "Merci de vérifier.", "Œnologie Dupont",
                                 "Agnès Lefèvre"], description_not_contains=["¤", "\ufffd"])

    ru = ("Здравствуйте!\n\nПосле обновления не печатает принтер в бухгалтерии.\n"
          "Ошибка «Нет бумаги», хотя бумага есть.\n\nС уважением,\nОльга Петрова\n")
    simple("043-windows-1251-base64", ew_b("Не печатает принтер"),
           f"From: {ew_b('Ольга Петрова', 'windows-1251', 'cp1251')} <o.petrova@buh.example>",
           "text/plain; charset=windows-1251", "base64", b64(ru.encode("cp1251")),
           mid="9d0e1f2a-3b4c-4d5e-86f7-a8b9c0d1e2f3@buh.example", day_time=(3, 9, 15, 0),
           mailer="X-Mailer: The Bat! (v11.4.0.3) Professional",
           kind="mail", summary="Не печатает принтер", reporter_name="Ольга Петрова",
           description_contains=["После обновления не печатает принтер в бухгалтерии.",
                                 "Ошибка «Нет бумаги», хотя бумага есть."], description_not_contains=["\ufffd"])

    en = ("Hi team,\n\nthe “Export to Excel” button doesn’t work – it shows ‘Error 500’.\n"
          "We’re paying €1,200 a month for this.\n\nThanks,\nZoë\n")
    simple("044-windows-1252-qp", "=?Windows-1252?Q?=93Export_to_Excel=94_broken?=",
           "From: =?Windows-1252?Q?Zo=EB_Martin?= <zoe.martin@customer.example>",
           'text/plain; charset="Windows-1252"', "quoted-printable", qp(en, "cp1252"),
           mid="000001db4e2a$6f1b3c40$4d51b4c0$@customer.example", day_time=(3, 9, 20, 0),
           mailer="X-Mailer: Microsoft Outlook 16.0",
           kind="mail", summary="“Export to Excel” broken", reporter_name="Zoë Martin",
           description_contains=["the “Export to Excel” button doesn’t work – it shows ‘Error 500’.",
                                 "We’re paying €1,200 a month for this.", "Zoë"],
           description_not_contains=["\ufffd", "=93"])

    ja = ("お世話になっております。\n経理部の山田です。\n\n請求書のPDFがダウンロードできません。\n"
          "ご確認をお願いいたします。\n\n山田太郎\n")
    simple("045-shift-jis-base64", ew_b("請求書のダウンロードについて", "ISO-2022-JP", "iso2022_jp"),
           f"From: {ew_b('山田太郎', 'ISO-2022-JP', 'iso2022_jp')} <t.yamada@keiri.example>",
           "text/plain; charset=Shift_JIS", "base64", b64(ja.encode("shift_jis")),
           mid="20261103091500.A1B2C3D4E5F6@keiri.example", day_time=(3, 9, 25, 0),
           mailer="X-Mailer: Becky! ver. 2.81.04 [ja]",
           kind="mail", summary="請求書のダウンロードについて", reporter_name="山田太郎",
           description_contains=["請求書のPDFがダウンロードできません。", "経理部の山田です。"],
           description_not_contains=["\ufffd"])

    zh = "您好！\n\n我的账户从昨天开始无法登录，提示密码错误。\n请帮忙重置密码。\n\n谢谢！\n李明\n"
    simple("046-gb2312-base64", ew_b("账户无法登录", "GB2312", "gb2312"),
           f"From: {ew_b('李明', 'GB2312', 'gb2312')} <li.ming@kehu.example>",
           "text/plain; charset=GB2312", "base64", b64(zh.encode("gb2312")),
           mid="202611030930.1A2B3C4D@kehu.example", day_time=(3, 9, 30, 0),
           mailer="X-Mailer: Foxmail 7.2.25.228[cn]",
           kind="mail", summary="账户无法登录", reporter_name="李明",
           description_contains=["我的账户从昨天开始无法登录，提示密码错误。", "请帮忙重置密码。"],
           description_not_contains=["\ufffd"])

    ja2 = "田中様\n\nいつもお世話になっております。\nサーバーの証明書が明日で期限切れになります。\n\n佐藤花子\n"
    simple("047-iso-2022-jp-7bit", ew_b("証明書の期限について", "ISO-2022-JP", "iso2022_jp"),
           f"From: {ew_b('佐藤花子', 'ISO-2022-JP', 'iso2022_jp')} <h.sato@server.example>",
           "text/plain; charset=ISO-2022-JP", "7bit", raw8(ja2, "iso2022_jp"),
           mid="20261103093500.F6E5D4C3B2A1@server.example", day_time=(3, 9, 35, 0),
           mailer="X-Mailer: Microsoft Outlook 16.0",
           kind="mail", summary="証明書の期限について", reporter_name="佐藤花子",
           description_contains=["サーバーの証明書が明日で期限切れになります。", "佐藤花子"],
           description_not_contains=["\x1b$B", "\ufffd"])

    ko8 = "Добрый день!\n\nНе работает VPN с домашнего компьютера.\nОшибка 809.\n\nСпасибо,\nИван Соколов\n"
    simple("048-koi8-r-qp", ew_b("Не работает VPN", "KOI8-R", "koi8_r"),
           f"From: {ew_b('Иван Соколов', 'KOI8-R', 'koi8_r')} <ivan.sokolov@mail.example>",
           "text/plain; charset=KOI8-R", "quoted-printable", qp(ko8, "koi8_r"),
           mid="1181793700800.20261103094000@mail.example", day_time=(3, 9, 40, 0),
           mailer="X-Mailer: The Bat! (v9.5.2) Home",
           kind="mail", summary="Не работает VPN", reporter_name="Иван Соколов",
           description_contains=["Не работает VPN с домашнего компьютера.", "Иван Соколов"],
           description_not_contains=["\ufffd"])

    simple("049-rfc2047-utf8-b-folded", ew_b_folded("Срочно: сервер 1С недоступен с утра 🔥", "UTF-8", 12),
           f"From: {ew_b('Дмитрий Козлов')} <dmitry.kozlov@initech.example>",
           "text/plain; charset=UTF-8", "base64", b64("Сервер 1С недоступен.\n".encode()),
           mid="4f5a6b7c-8d9e-4f0a-9b1c-2d3e4f5a6b7c@initech.example", day_time=(3, 9, 45, 0),
           kind="mail", summary="Срочно: сервер 1С недоступен с утра 🔥", reporter_name="Дмитрий Козлов",
           description_contains=["Сервер 1С недоступен."])

    simple("050-rfc2047-iso-8859-1-q", "=?iso-8859-1?Q?Probl=E8me_d'acc=E8s_au_portail?=",
           "From: =?iso-8859-1?Q?Fran=E7ois_B=E9rard?= <francois.berard@client.example>",
           "text/plain; charset=iso-8859-1", "8bit",
           raw8("Bonjour,\n\nje n'arrive plus à accéder au portail depuis la mise à jour.\n\nFrançois\n",
                "iso-8859-1"),
           mid="000301db4e2b$1a2b3c4d$5e6f7a8b$@client.example", day_time=(3, 9, 50, 0),
           mailer="X-Mailer: Microsoft Outlook 16.0",
           kind="mail", summary="Problème d'accès au portail", reporter_name="François Bérard",
           description_contains=["je n'arrive plus à accéder au portail depuis la mise à jour."])

    simple("051-rfc2047-utf8-q-split-words", "=?UTF-8?Q?Rechnung_f=C3=BCr_?=\n =?UTF-8?Q?M=C3=A4rz_fehlt?=",
           "From: =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <juergen.mueller@acme.example>",
           "text/plain; charset=UTF-8", "quoted-printable",
           qp("Die Rechnung für März ist nicht angekommen.\n", "utf-8"),
           mid="5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d@acme.example", day_time=(3, 9, 55, 0),
           kind="mail", summary="Rechnung für März fehlt", reporter_name="Jürgen Müller",
           description_contains=["Die Rechnung für März ist nicht angekommen."])

    simple("052-rfc2047-mixed-with-key", "Re: [HELP-7] =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= und Dank",
           f"From: {ew_b('Jürgen Weiß', 'ISO-8859-1')} <juergen.weiss@acme.example>",
           "text/plain; charset=UTF-8", "8bit", raw8("Danke, alles funktioniert wieder.\n", "utf-8"),
           mid="6b7c8d9e-0f1a-4b2c-9d3e-4f5a6b7c8d9e@acme.example", day_time=(3, 10, 0, 0),
           kind="mail", summary="Re: [HELP-7] Grüße und Dank", reporter_name="Jürgen Weiß",
           subject_keys=["HELP-7"], description_contains=["Danke, alles funktioniert wieder."])

    el = "Καλημέρα,\n\nδεν μπορώ να συνδεθώ στο σύστημα κρατήσεων.\n\nΕυχαριστώ,\nΝίκος Παπαδόπουλος\n"
    simple("053-utf8-8bit-greek", ew_b("Πρόβλημα σύνδεσης"),
           f"From: {ew_b('Νίκος Παπαδόπουλος')} <nikos.p@hotel.example>",
           "text/plain; charset=utf-8", "8bit", raw8(el, "utf-8"),
           mid="7c8d9e0f-1a2b-4c3d-8e4f-5a6b7c8d9e0f@hotel.example", day_time=(3, 10, 5, 0),
           kind="mail", summary="Πρόβλημα σύνδεσης",
           description_contains=["δεν μπορώ να συνδεθώ στο σύστημα κρατήσεων.", "Νίκος Παπαδόπουλος"])

    ruh = ('<html><head><meta http-equiv="Content-Type" content="text/html; charset=windows-1251"></head>'
           "<body><p>Добрый день!</p><p>Прошу восстановить доступ к почте для сотрудника "
           "<b>Смирнова А.</b></p></body></html>\n")
    simple("054-html-windows-1251-qp", ew_b("Доступ к почте", "windows-1251", "cp1251"),
           "From: Anna Smirnova <a.smirnova@office.example>",
           'text/html; charset="windows-1251"', "quoted-printable", qp(ruh, "cp1251"),
           mid="8d9e0f1a-2b3c-4d4e-9f5a-6b7c8d9e0f1a@office.example", day_time=(3, 10, 10, 0),
           mailer="X-Mailer: Microsoft Outlook 16.0",
           kind="mail", summary="Доступ к почте",
           description_contains=["Прошу восстановить доступ к почте для сотрудника Смирнова А."],
           description_not_contains=["<p>", "\ufffd"])

    ko = "안녕하세요.\n\n3층 프린터가 작동하지 않습니다.\n\n감사합니다.\n김민수\n"
    simple("055-ks-c-5601-1987-base64", ew_b("프린터 고장", "ks_c_5601-1987", "euc_kr"),
           f"From: {ew_b('김민수', 'ks_c_5601-1987', 'euc_kr')} <minsu.kim@korea.example>",
           'text/plain; charset="ks_c_5601-1987"', "base64", b64(ko.encode("euc_kr")),
           mid="000401db4e2c$2b3c4d5e$6f7a8b9c$@korea.example", day_time=(3, 10, 15, 0),
           mailer="X-Mailer: Microsoft Outlook 16.0",
           kind="mail", summary="프린터 고장", reporter_name="김민수",
           description_contains=["3층 프린터가 작동하지 않습니다.", "김민수"], description_not_contains=["\ufffd"])

    simple("056-unknown-charset", "Password reset link", "From: Mark Lee <mark.lee@legacy.example>",
           "text/plain; charset=unknown-8bit", "7bit",
           "The password reset link you sent me has already expired.\n",
           mid="20261103102000.GB7777@legacy.example", day_time=(3, 10, 20, 0),
           mailer="User-Agent: Mutt/1.5.21 (2010-09-15)",
           kind="mail", description_contains=["The password reset link you sent me has already expired."])

    smart = "Hello,\n\nthe app says “sync failed” – since Monday.\n\nRegards, Zoë\n"
    simple("057-latin1-label-with-cp1252-bytes", "Sync failed",
           "From: =?iso-8859-1?Q?Zo=EB_Martin?= <zoe.martin@customer.example>",
           "text/plain; charset=iso-8859-1", "quoted-printable", qp(smart, "cp1252"),
           mid="000501db4e2c$3c4d5e6f$7a8b9c0d$@customer.example", day_time=(3, 10, 25, 0),
           mailer="X-Mailer: Microsoft Outlook 16.0",
           kind="mail", description_contains=["the app says “sync failed” – since Monday.", "Zoë"],
           description_not_contains=["\x93", "\x96"])

    simple("058-utf8-qp-subject-b-iso-2022-jp-name", "=?UTF-8?B?" +
           base64.b64encode("ログインできません".encode()).decode() + "?=",
           f"From: {ew_b('鈴木一郎', 'ISO-2022-JP', 'iso2022_jp')} <suzuki@jp.example>",
           "text/plain; charset=ISO-2022-JP", "base64",
           b64("パスワードを変更した後、ログインできません。\n鈴木\n".encode("iso2022_jp")),
           mid="20261103103000.9F8E7D@jp.example", day_time=(3, 10, 30, 0),
           mailer="X-Mailer: Microsoft Outlook 16.0",
           kind="mail", summary="ログインできません", reporter_name="鈴木一郎",
           description_contains=["パスワードを変更した後、ログインできません。"], description_not_contains=["\ufffd"])


# =============================================================================================
# replies/


HELP_MID_1 = "HELP-1.1793700000.0@intake.example"
HELP_MID_2 = "HELP-1.1793703600.1@intake.example"


def reply_headers(*, frm: str, subject: str, day_time, mid: str, irt: str, refs: list[str], client: list[str],
                  ctype: str, cte: str | None, received_from=("mail.globex.example", "198.51.100.31"),
                  to: str = f"{HELP_NAME} <{HELP}>", extra: list[str] | None = None) -> list[str]:
    d, h, m, s = day_time
    return [
        *received(received_from[0], received_from[1], d, h, m, s + 3, "4Q2kLm4" + mid[:6].upper()),
        f"From: {frm}",
        f"To: {to}",
        f"Subject: {subject}",
        f"Date: {date(d, h, m, s)}",
        f"Message-ID: <{mid}>",
        f"In-Reply-To: <{irt}>",
        "References: " + "\n ".join(f"<{r}>" for r in refs),
        *(extra or []),
        *client,
        "MIME-Version: 1.0",
        f"Content-Type: {ctype}",
        *([f"Content-Transfer-Encoding: {cte}"] if cte else []),
    ]


def replies() -> None:
    quoted_help = "please install client version 5.2 and tell us if it helps"
    body = ("Hi,\n\nThe VPN still drops after the update to 5.2, this time after 40 minutes.\n\n"
            "Regards,\nPeter Novak\n\n-----Original Message-----\n"
            f"From: {HELP_NAME} <{HELP}> \nSent: Tuesday, November 3, 2026 10:00 AM\n"
            "To: Peter Novak <peter.novak@globex.example>\nSubject: [HELP-1] VPN drops every hour\n\n"
            f"Hello Peter,\n\n{quoted_help}.\n\nYour help desk\n")
    add("replies", "060-outlook-original-message", msg(reply_headers(
        frm="Peter Novak <peter.novak@globex.example>", subject="RE: [HELP-1] VPN drops every hour",
        day_time=(3, 11, 0, 0), mid="000601db4e2d$4d5e6f7a$8b9c0d1e$@globex.example", irt=HELP_MID_1,
        refs=[HELP_MID_1], client=["X-Mailer: Microsoft Outlook 16.0", "Thread-Index: AQHbTk3vAAAAAAAAAAAAAAAAAAAAAA==",
                                   "Content-Language: en-us"],
        ctype='text/plain; charset="us-ascii"', cte="7bit"), body),
        kind="mail", summary="RE: [HELP-1] VPN drops every hour", subject_keys=["HELP-1"], references=[HELP_MID_1],
        reply_text_contains=["The VPN still drops after the update to 5.2, this time after 40 minutes."],
        reply_text_not_contains=[quoted_help, "-----Original Message-----", "Sent: Tuesday"],
        description_contains=[quoted_help])

    b2 = "_000_DB9PR08MB6588E1F2A3B4C5D6E7F8A9B0C1D2E3F4DB9PR08MB6588eurp_"
    text = ("Thanks, the new client works fine now. You can close the ticket.\n\nPeter\n\n"
            "________________________________\n"
            f"From: {HELP_NAME} <{HELP}>\nSent: Tuesday, November 3, 2026 11:30\n"
            "To: Peter Novak <peter.novak@globex.example>\nSubject: Re: [HELP-1] VPN drops every hour\n\n"
            "Hello Peter,\nwe pushed a new VPN profile to your laptop. Please restart it.\n")
    htmlb = ('<html><head><meta http-equiv="Content-Type" content="text/html; charset=us-ascii"></head>'
             '<body><div>Thanks, the new client works fine now. You can close the ticket.</div><div>Peter</div>'
             '<hr style="display:inline-block;width:98%" tabindex="-1"><div id="divRplyFwdMsg" dir="ltr">'
             '<font face="Calibri, sans-serif" style="font-size:11pt" color="#000000"><b>From:</b> Intake Help '
             'Desk &lt;help@intake.example&gt;<br><b>Sent:</b> Tuesday, November 3, 2026 11:30<br><b>To:</b> '
             'Peter Novak &lt;peter.novak@globex.example&gt;<br><b>Subject:</b> Re: [HELP-1] VPN drops every '
             'hour</font><div>&nbsp;</div></div><div>Hello Peter,<br>we pushed a new VPN profile to your laptop. '
             'Please restart it.</div></body></html>\n')
    add("replies", "061-outlook-underscore-block", msg(reply_headers(
        frm="Peter Novak <peter.novak@globex.example>", subject="RE: [HELP-1] VPN drops every hour",
        day_time=(3, 12, 0, 0), mid="DB9PR08MB6588E1F2A3B4C5D6E7F8A9B0C1D2E3F4@DB9PR08MB6588.eurprd08.prod.outlook.example",
        irt=HELP_MID_2, refs=[HELP_MID_1, "000601db4e2d$4d5e6f7a$8b9c0d1e$@globex.example", HELP_MID_2],
        client=outlook_headers("AQHbTk3vAAAAAAAAAAAAAAAAAAAAAB=="),
        ctype=f'multipart/alternative;\n\tboundary="{b2}"', cte=None),
        multipart(b2, [text_part(text, "us-ascii", "quoted-printable"), html_part(htmlb, "us-ascii")])),
        kind="mail", subject_keys=["HELP-1"],
        references=[HELP_MID_2, "000601db4e2d$4d5e6f7a$8b9c0d1e$@globex.example", HELP_MID_1],
        reply_text_contains=["Thanks, the new client works fine now. You can close the ticket."],
        reply_text_not_contains=["we pushed a new VPN profile", "________________________________", "From: Intake"])

    owa = ('<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8"></head>'
           '<body dir="ltr"><div class="elementToProof" style="font-family: Aptos, sans-serif; font-size: 12pt;">'
           "It happens again today, right after lunch.</div><div id=\"appendonsend\"></div>"
           '<hr style="display:inline-block;width:98%" tabindex="-1"><div id="divRplyFwdMsg" dir="ltr">'
           '<font face="Calibri, sans-serif" style="font-size:11pt" color="#000000"><b>From:</b> Intake Help Desk '
           "&lt;help@intake.example&gt;<br><b>Sent:</b> Tuesday, November 3, 2026 10:00<br><b>To:</b> Peter "
           "Novak &lt;peter.novak@globex.example&gt;<br><b>Subject:</b> [HELP-1] VPN drops every hour</font>"
           "<div>&nbsp;</div></div><div><div>Hello Peter,</div><div>did the drops stop after the update?</div>"
           "</div></body></html>\n")
    add("replies", "062-owa-html-only-bold-headers", msg(reply_headers(
        frm="Peter Novak <peter.novak@globex.example>", subject="RE: [HELP-1] VPN drops every hour",
        day_time=(4, 13, 10, 0), mid="AM0PR02MB5555F1A2B3C4D5E6F7A8B9C0D1E2F3A4@AM0PR02MB5555.eurprd02.prod.outlook.example",
        irt=HELP_MID_1, refs=[HELP_MID_1], client=["Thread-Topic: [HELP-1] VPN drops every hour",
                                                   "Thread-Index: AQHbTk3vAAAAAAAAAAAAAAAAAAAAAC==",
                                                   "Accept-Language: en-US", "Content-Language: en-US",
                                                   "X-MS-Has-Attach:"],
        ctype='text/html; charset="utf-8"', cte="base64"), b64(owa.encode())),
        kind="mail", subject_keys=["HELP-1"],
        description_contains=["It happens again today, right after lunch.", "did the drops stop after the update?"],
        reply_text_contains=["It happens again today, right after lunch."],
        reply_text_not_contains=["did the drops stop after the update?", "Sent:", "**"])

    b = "000000000000d4e5f60718293a4b"
    quoted = "please clear the browser cache and try the export again."
    text = ("Hi, I tried again and the export works now. Thank you!\n\n"
            "On Tue, Nov 3, 2026 at 10:00\u202fAM Intake Help Desk <help@intake.example>\nwrote:\n\n"
            f"> Hello Olga,\n> {quoted}\n>\n> Your help desk\n>\n")
    htmlb = ('<div dir="ltr">Hi, I tried again and the export works now. Thank you!</div><br><div class="gmail_quote">'
             '<div dir="ltr" class="gmail_attr">On Tue, Nov 3, 2026 at 10:00\u202fAM Intake Help Desk &lt;<a href="'
             'mailto:help@intake.example">help@intake.example</a>&gt; wrote:<br></div><blockquote class="gmail_quote" '
             f'style="margin:0px 0px 0px 0.8ex;border-left:1px solid rgb(204,204,204);padding-left:1ex">Hello Olga,<br>'
             f"{quoted}<br></blockquote></div>\n")
    add("replies", "063-gmail-wrapped-attribution", msg(reply_headers(
        frm="Olga Petrova <olga.petrova@customer.example>", subject="Re: [HELP-2] Export to CSV times out",
        day_time=(3, 14, 0, 0), mid="CAFx1v2Q8bW+8kLmNoPqRsTuVwXyZ0123456789abcdEF@mail.gmail.example",
        irt="HELP-2.1793706000.0@intake.example",
        refs=["CAFx1v2Q8bW+3kLmNoPqRsTuVwXyZ0123456789abcdEF@mail.gmail.example", "HELP-2.1793706000.0@intake.example"],
        client=[], ctype=f'multipart/alternative; boundary="{b}"', cte=None,
        received_from=("mail-wr1-f54.google.example", "203.0.113.54"), to=HELP),
        multipart(b, [text_part(text, "UTF-8", "quoted-printable"), html_part(htmlb, "UTF-8")])),
        kind="mail", summary="Re: [HELP-2] Export to CSV times out", subject_keys=["HELP-2"],
        references=["HELP-2.1793706000.0@intake.example",
                    "CAFx1v2Q8bW+3kLmNoPqRsTuVwXyZ0123456789abcdEF@mail.gmail.example"],
        reply_text_contains=["Hi, I tried again and the export works now. Thank you!"],
        reply_text_not_contains=[quoted, "wrote:", "Hello Olga"])

    b = "000000000000e5f60718293a4b5c"
    quoted = "we reset your MFA device, please enrol again."
    text = ("Enrolment worked, thanks a lot.\n\n"
            "On Wed, 4 Nov 2026 at 08:15, Intake Help Desk <\nhelp@intake.example> wrote:\n\n"
            f"> Hi Rosa,\n> {quoted}\n>\n")
    add("replies", "064-gmail-wrapped-inside-address", msg(reply_headers(
        frm="Rosa Lopez <rosa.lopez@partner.example>", subject="Re: [HELP-3] MFA prompt loops",
        day_time=(4, 9, 0, 0), mid="CAGh7Jk2L3m4N5o6P7q8R9s0T1u2V3w4X5y6Z7a8B9c@mail.gmail.example",
        irt="HELP-3.1793780100.1@intake.example",
        refs=["HELP-3.1793700000.0@intake.example", "HELP-3.1793780100.1@intake.example"],
        client=[], ctype=f'multipart/alternative; boundary="{b}"', cte=None,
        received_from=("mail-wr1-f54.google.example", "203.0.113.54"), to=HELP),
        multipart(b, [text_part(text, "UTF-8", "7bit"),
                      html_part(f'<div dir="ltr">Enrolment worked, thanks a lot.</div><br><div class="gmail_quote">'
                                f'On Wed, 4 Nov 2026 at 08:15, Intake Help Desk &lt;help@intake.example&gt; wrote:'
                                f'<blockquote class="gmail_quote">Hi Rosa,<br>{quoted}</blockquote></div>\n',
                                "UTF-8")])),
        kind="mail", subject_keys=["HELP-3"],
        references=["HELP-3.1793780100.1@intake.example", "HELP-3.1793700000.0@intake.example"],
        reply_text_contains=["Enrolment worked, thanks a lot."], reply_text_not_contains=[quoted, "help@intake.example>"])

    quoted = "we changed the invoice address as requested."
    text = ("Yes, the invoice address is correct now.\n\nKind regards\nTom\n\n"
            "On Nov 3, 2026, at 10:00, Intake Help Desk <help@intake.example> wrote:\n\n"
            f"Hello Tom,\n\n{quoted}\n\nYour help desk\n")
    add("replies", "065-apple-mail", msg(reply_headers(
        frm="Tom Becker <tom.becker@acme.example>", subject="Re: [HELP-4] Invoice address",
        day_time=(3, 15, 0, 0), mid="0A1B2C3D-4E5F-6A7B-8C9D-0E1F2A3B4C5D@acme.example",
        irt="HELP-4.1793700000.0@intake.example", refs=["HELP-4.1793700000.0@intake.example"],
        client=["X-Mailer: Apple Mail (2.3826.200.121)"], ctype="text/plain;\n\tcharset=utf-8",
        cte="quoted-printable", received_from=("mail.acme.example", "198.51.100.17"), to=HELP),
        qp(text, "utf-8")),
        kind="mail", subject_keys=["HELP-4"], references=["HELP-4.1793700000.0@intake.example"],
        reply_text_contains=["Yes, the invoice address is correct now."],
        reply_text_not_contains=[quoted, "Your help desk"])

    quoted = "a technician will come by this afternoon."
    text = ("Hi, the printer on floor 2 works again.\n\nAnna\n\nOn 03.11.26 10:00, Intake Help Desk wrote:\n"
            f"> Hello Anna,\n>\n> {quoted}\n>\n")
    add("replies", "066-thunderbird", msg(reply_headers(
        frm="Anna Schmidt <anna.schmidt@acme.example>", subject="Re: [HELP-5] Printer on floor 2 prints blank pages",
        day_time=(3, 16, 0, 0), mid="1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f@acme.example",
        irt="HELP-5.1793700000.0@intake.example", refs=["HELP-5.1793700000.0@intake.example"],
        client=["User-Agent: Mozilla Thunderbird", "Content-Language: en-US"],
        ctype="text/plain; charset=UTF-8; format=flowed", cte="7bit",
        received_from=("mail.acme.example", "198.51.100.17"), to=HELP), text),
        kind="mail", subject_keys=["HELP-5"],
        reply_text_contains=["Hi, the printer on floor 2 works again."],
        reply_text_not_contains=[quoted, "Intake Help Desk wrote"])

    quoted = "wir haben Ihr Postfach vergrößert."
    text = ("Vielen Dank, jetzt klappt es.\n\nGruß\nJürgen\n\nAm 03.11.26 um 10:00 schrieb Intake Help Desk:\n"
            f"> Guten Tag,\n>\n> {quoted}\n")
    add("replies", "067-thunderbird-german", msg(reply_headers(
        frm="=?UTF-8?Q?J=C3=BCrgen_Wei=C3=9F?= <juergen.weiss@acme.example>",
        subject="AW: [HELP-6] Postfach voll",
        day_time=(3, 16, 30, 0), mid="2d3e4f5a-6b7c-4d8e-9f0a-1b2c3d4e5f6a@acme.example",
        irt="HELP-6.1793700000.0@intake.example", refs=["HELP-6.1793700000.0@intake.example"],
        client=["User-Agent: Mozilla Thunderbird", "Content-Language: de-DE"],
        ctype="text/plain; charset=UTF-8; format=flowed", cte="8bit",
        received_from=("mail.acme.example", "198.51.100.17"), to=HELP), raw8(text, "utf-8")),
        kind="mail", subject_keys=["HELP-6"], reply_text_contains=["Vielen Dank, jetzt klappt es."],
        reply_text_not_contains=[quoted, "schrieb Intake Help Desk"])

    quoted = "nous avons réinitialisé votre mot de passe."
    text = ("Merci, cela fonctionne.\n\nFrançois\n\n"
            f"De : {HELP_NAME} <{HELP}>\nEnvoyé : mardi 3 novembre 2026 10:00\n"
            "À : François Bérard <francois.berard@client.example>\nObjet : [HELP-8] Mot de passe\n\n"
            f"Bonjour,\n{quoted}\n")
    add("replies", "068-outlook-french", msg(reply_headers(
        frm="=?iso-8859-1?Q?Fran=E7ois_B=E9rard?= <francois.berard@client.example>",
        subject="RE: [HELP-8] Mot de passe",
        day_time=(3, 17, 0, 0), mid="000701db4e2e$5e6f7a8b$9c0d1e2f$@client.example",
        irt="HELP-8.1793700000.0@intake.example", refs=["HELP-8.1793700000.0@intake.example"],
        client=["X-Mailer: Microsoft Outlook 16.0", "Content-Language: fr"],
        ctype='text/plain; charset="iso-8859-1"', cte="quoted-printable",
        received_from=("mail.client.example", "198.51.100.120"), to=HELP), qp(text, "iso-8859-1")),
        kind="mail", subject_keys=["HELP-8"], reply_text_contains=["Merci, cela fonctionne."],
        reply_text_not_contains=[quoted, "Envoyé"])

    quoted = "bitte starten Sie den Rechner neu."
    text = ("Hat leider nicht geholfen, der Fehler kommt weiterhin.\n\nMfG\nKlaus Fischer\n\n"
            f"Von: {HELP_NAME} <{HELP}>\nGesendet: Dienstag, 3. November 2026 10:00\n"
            "An: Klaus Fischer <klaus.fischer@firma.example>\nBetreff: [HELP-9] Fehler 0x80070005\n\n"
            f"Hallo Herr Fischer,\n{quoted}\n")
    add("replies", "069-outlook-german", msg(reply_headers(
        frm="Klaus Fischer <klaus.fischer@firma.example>", subject="AW: [HELP-9] Fehler 0x80070005",
        day_time=(3, 17, 30, 0), mid="000801db4e2e$6f7a8b9c$0d1e2f3a$@firma.example",
        irt="HELP-9.1793700000.0@intake.example", refs=["HELP-9.1793700000.0@intake.example"],
        client=["X-Mailer: Microsoft Outlook 16.0", "Content-Language: de"],
        ctype='text/plain; charset="iso-8859-1"', cte="quoted-printable",
        received_from=("mail.firma.example", "198.51.100.121"), to=HELP), qp(text, "iso-8859-1")),
        kind="mail", subject_keys=["HELP-9"],
        reply_text_contains=["Hat leider nicht geholfen, der Fehler kommt weiterhin."],
        reply_text_not_contains=[quoted, "Gesendet:", "Betreff:"])

    quoted1 = "Which version of the client do you use?"
    quoted2 = "Does it happen on Wi-Fi and on cable?"
    text = (f"On 03.11.26 10:00, Intake Help Desk wrote:\n> Hello Lukas,\n>\n> {quoted1}\n\n5.1.3 on Windows 11.\n\n"
            f"> {quoted2}\n\nOnly on Wi-Fi, cable is fine.\n\n-- \nLukas Berger\nInitech IT\n")
    add("replies", "070-thunderbird-interleaved", msg(reply_headers(
        frm="Lukas Berger <lukas.berger@initech.example>", subject="Re: [HELP-10] VPN on Wi-Fi",
        day_time=(3, 18, 0, 0), mid="3e4f5a6b-7c8d-4e9f-0a1b-2c3d4e5f6a7b@initech.example",
        irt="HELP-10.1793700000.0@intake.example", refs=["HELP-10.1793700000.0@intake.example"],
        client=["User-Agent: Mozilla Thunderbird", "Content-Language: en-US"],
        ctype="text/plain; charset=UTF-8; format=flowed", cte="7bit",
        received_from=("mail.initech.example", "198.51.100.23"), to=HELP), text),
        kind="mail", subject_keys=["HELP-10"],
        reply_text_contains=["5.1.3 on Windows 11.", "Only on Wi-Fi, cable is fine."],
        reply_text_not_contains=[quoted1, quoted2, "Initech IT", "Intake Help Desk wrote"])

    quoted = "Your new badge is ready at the reception."
    text = (f"Picked it up, thanks!\n\nSent from my iPhone\n\n> On 3 Nov 2026, at 10:00, Intake Help Desk "
            f"<help@intake.example> wrote:\n> \n> \ufeff{quoted}\n")
    add("replies", "071-ios-mail-quoted-attribution", msg(reply_headers(
        frm="Maria Rossi <maria.rossi@acme.example>", subject="Re: [HELP-11] Badge does not open the garage",
        day_time=(3, 18, 30, 0), mid="4F5A6B7C-8D9E-4F0A-1B2C-3D4E5F6A7B8C@acme.example",
        irt="HELP-11.1793700000.0@intake.example", refs=["HELP-11.1793700000.0@intake.example"],
        client=["X-Mailer: iPhone Mail (22B91)"], ctype="text/plain;\n\tcharset=utf-8",
        cte="quoted-printable", received_from=("mail-pl1-f170.google.example", "203.0.113.170"), to=HELP),
        qp(text, "utf-8")),
        kind="mail", subject_keys=["HELP-11"], reply_text_contains=["Picked it up, thanks!"],
        reply_text_not_contains=[quoted, "Sent from my iPhone", "wrote:"])

    quoted = "Error 403 when logging in"
    text = ("Please take care of this one, she is a key customer.\n\n"
            "---------- Forwarded message ---------\n"
            "From: Olga Petrova <olga.petrova@customer.example>\n"
            "Date: Mon, Nov 2, 2026 at 4:12\u202fPM\n"
            "Subject: Cannot log in to the portal\n"
            "To: Sales <sales@acme.example>\n\n\n"
            f"Hello, since this morning I cannot log in to the customer portal. {quoted}.\n")
    b = "000000000000f60718293a4b5c6d"
    add("replies", "072-gmail-inline-forward", msg([
        "MIME-Version: 1.0",
        *received("mail-wr1-f54.google.example", "203.0.113.54", 3, 19, 0, 5, "4Q2kLm4F1pz9sQ1"),
        f"Date: {date(3, 19, 0, 0)}",
        "Message-ID: <CAJk8Lm9N0o1P2q3R4s5T6u7V8w9X0y1Z2a3B4c5D6e@mail.gmail.example>",
        "Subject: Fwd: Cannot log in to the portal",
        "From: Ben Ortiz <ben.ortiz@acme.example>",
        f"To: {HELP}",
        f'Content-Type: multipart/alternative; boundary="{b}"',
    ], multipart(b, [text_part(text, "UTF-8", "quoted-printable"),
                     html_part('<div dir="ltr">Please take care of this one, she is a key customer.<br><br>'
                               '<div class="gmail_quote"><div dir="ltr" class="gmail_attr">---------- Forwarded '
                               "message ---------<br>From: <b>Olga Petrova</b> ...</div></div></div>\n", "UTF-8")])),
        kind="mail", summary="Fwd: Cannot log in to the portal", subject_keys=[], references=[],
        description_contains=["Please take care of this one, she is a key customer.",
                              "---------- Forwarded message ---------", quoted],
        reply_text_contains=["Please take care of this one, she is a key customer."])

    text = ("FYI, see below.\n\n________________________________\n"
            "From: Olga Petrova <olga.petrova@customer.example>\nSent: Monday, November 2, 2026 16:12\n"
            "To: Peter Novak <peter.novak@globex.example>\nSubject: Contract renewal\n\n"
            "Hello Peter, we would like to renew our contract for 3 more years.\n")
    add("replies", "073-outlook-inline-forward", msg([
        *received("EUR05-DB8-obe.outbound.protection.outlook.example", "203.0.113.40", 3, 19, 10, 5,
                  "4Q2kLm4G2pz9sQ2"),
        "From: Peter Novak <peter.novak@globex.example>",
        f"To: {HELP_NAME} <{HELP}>",
        "Subject: FW: Contract renewal",
        f"Date: {date(3, 19, 10, 0)}",
        "Message-ID: <DB9PR08MB6588F1A2B3C4D5E6F7A8B9C0D1E2F3A5@DB9PR08MB6588.eurprd08.prod.outlook.example>",
        *outlook_headers("AQHbTk3vAAAAAAAAAAAAAAAAAAAAAD=="),
        'Content-Type: text/plain; charset="us-ascii"',
        "Content-Transfer-Encoding: quoted-printable",
        "MIME-Version: 1.0",
    ], qp(text, "ascii")), kind="mail", summary="FW: Contract renewal",
        description_contains=["FYI, see below.", "we would like to renew our contract for 3 more years."],
        reply_text_contains=["FYI, see below."])

    quoted = "Your request HELP-12 was received."
    text = ("Thanks. One more detail: it only happens with the 4K monitor.\n\n"
            "On Tue, Nov 3, 2026 at 10:00 AM Intake Help Desk <help@intake.example> wrote:\n"
            f"> {quoted}\n")
    add("replies", "074-reply-key-in-parentheses", msg(reply_headers(
        frm="Helen Park <helen.park@shop.example>", subject="Re: Screen flickers (HELP-12)",
        day_time=(3, 19, 30, 0), mid="CAHp3Q4r5S6t7U8v9W0x1Y2z3A4b5C6d7E8f9G0h@mail.gmail.example",
        irt="HELP-12.1793700000.0@intake.example", refs=["HELP-12.1793700000.0@intake.example"],
        client=[], ctype='text/plain; charset="UTF-8"', cte=None,
        received_from=("mail-wr1-f54.google.example", "203.0.113.54"), to=HELP), text),
        kind="mail", subject_keys=["HELP-12"],
        reply_text_contains=["it only happens with the 4K monitor."], reply_text_not_contains=[quoted])

    quoted = "Can you send us the serial number?"
    text = ("The serial number is CN-0F7K2M-74261.\n\nSent from my iPhone\n\n"
            "On Nov 3, 2026, at 10:00, Intake Help Desk <help@intake.example> wrote:\n\n"
            f"\ufeff{quoted}\n")
    add("replies", "075-mobile-signature-then-attribution", msg(reply_headers(
        frm="Maria Rossi <maria.rossi@acme.example>", subject="Re: [HELP-13] Docking station",
        day_time=(3, 20, 0, 0), mid="5A6B7C8D-9E0F-4A1B-2C3D-4E5F6A7B8C9D@acme.example",
        irt="HELP-13.1793700000.0@intake.example", refs=["HELP-13.1793700000.0@intake.example"],
        client=["X-Mailer: iPhone Mail (22B91)"], ctype="text/plain;\n\tcharset=utf-8",
        cte="quoted-printable", received_from=("mail-pl1-f170.google.example", "203.0.113.170"), to=HELP),
        qp(text, "utf-8")),
        kind="mail", reply_text_contains=["The serial number is CN-0F7K2M-74261."],
        reply_text_not_contains=[quoted, "Sent from my iPhone"])

    quoted = "El técnico pasará mañana por la mañana."
    text = ("Perfecto, estaré en la oficina.\n\nEl mar, 3 nov 2026 a las 10:00, Intake Help Desk "
            f"(<help@intake.example>) escribió:\n\n> {quoted}\n")
    add("replies", "076-gmail-spanish", msg(reply_headers(
        frm="Carla Diaz <carla.diaz@customer.example>", subject="Re: [HELP-14] Impresora",
        day_time=(3, 20, 30, 0), mid="CAKq1R2s3T4u5V6w7X8y9Z0a1B2c3D4e5F6g7H8i@mail.gmail.example",
        irt="HELP-14.1793700000.0@intake.example", refs=["HELP-14.1793700000.0@intake.example"],
        client=[], ctype='text/plain; charset="UTF-8"', cte="quoted-printable",
        received_from=("mail-wr1-f54.google.example", "203.0.113.54"), to=HELP), qp(text, "utf-8")),
        kind="mail", reply_text_contains=["Perfecto, estaré en la oficina."],
        reply_text_not_contains=[quoted, "escribió"])


# =============================================================================================
# loops/


def loops() -> None:
    add("loops", "080-outlook-out-of-office", msg([
        *received("EUR05-DB8-obe.outbound.protection.outlook.example", "203.0.113.40", 3, 10, 0, 9,
                  "4Q2kLm5A1pz9sR1"),
        "From: Peter Novak <peter.novak@globex.example>",
        f"To: {HELP_NAME} <{HELP}>",
        "Subject: Automatic reply: [HELP-1] VPN drops every hour",
        "Thread-Topic: [HELP-1] VPN drops every hour",
        "Thread-Index: AQHbTk3vAAAAAAAAAAAAAAAAAAAAAE==",
        f"Date: {date(3, 10, 0, 7)}",
        "Message-ID: <DB9PR08MB6588A0A1B2C3D4E5F6A7B8C9D0E1F2A3@DB9PR08MB6588.eurprd08.prod.outlook.example>",
        f"In-Reply-To: <{HELP_MID_1}>",
        f"References: <{HELP_MID_1}>",
        "Auto-Submitted: auto-replied",
        "X-Auto-Response-Suppress: All",
        "X-MS-Exchange-Inbox-Rules-Loop: peter.novak@globex.example",
        "X-MS-Exchange-Organization-AutoResponseSuppress: All",
        "Content-Language: en-US",
        "X-MS-Has-Attach:",
        'Content-Type: text/plain; charset="us-ascii"',
        "Content-Transfer-Encoding: quoted-printable",
        "MIME-Version: 1.0",
    ], "I am out of the office until November 10 with limited access to e-mail.\n"),
        kind="ignored", reason_contains="Auto-Submitted: auto-replied")

    add("loops", "081-exchange-oof-without-auto-submitted", msg([
        *received("EXCH01.globex.example", "198.51.100.32", 3, 10, 1, 0, "4Q2kLm5B2pz9sR2"),
        "From: Sean O'Brien <sean.obrien@globex.example>",
        f"To: {HELP}",
        "Subject: Automatic reply: [HELP-15] Switch quote",
        "Thread-Topic: [HELP-15] Switch quote",
        f"Date: {date(3, 10, 0, 58)}",
        "Message-ID: <7B6C5D4E3F2A@EXCH01.globex.example>",
        "X-Auto-Response-Suppress: All",
        "X-MS-Exchange-Inbox-Rules-Loop: sean.obrien@globex.example",
        "Content-Type: text/plain; charset=\"us-ascii\"",
        "MIME-Version: 1.0",
    ], "I'm on leave. For urgent matters contact my deputy.\n"),
        kind="ignored", reason_contains="auto-reply")

    add("loops", "082-unix-vacation-precedence-bulk", msg([
        *received("shell.university.example", "198.51.100.150", 3, 10, 2, 0, "4Q2kLm5C3pz9sR3"),
        f"Date: {date(3, 10, 1, 59)}",
        "From: Prof. Miller <miller@university.example>",
        f"To: {HELP}",
        "Subject: away from my mail",
        "Message-Id: <20261103100159.9A8B7C6D5E@shell.university.example>",
        "Precedence: bulk",
    ], "I will not be reading my mail for a while. Your mail concerning \"[HELP-16] Projector\"\n"
       "will be read when I'm back.\n"),
        kind="ignored", reason_contains="Precedence: bulk")

    b = "4Q2kLm5D4pz9sR4.1793700312/mx1.intake.example"
    add("loops", "083-postfix-dsn-bounce", msg([
        "Return-Path: <>",
        f"Received: by mx1.intake.example (Postfix)\n\tid 4Q2kLm5D4pz9sR4; {date(3, 10, 5, 12)} (UTC)",
        f"Date: {date(3, 10, 5, 12)}",
        "From: MAILER-DAEMON@mx1.intake.example (Mail Delivery System)",
        "Subject: Undelivered Mail Returned to Sender",
        f"To: {HELP}",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status;\n\tboundary="{b}"',
        "Content-Transfer-Encoding: 8bit",
        "Message-Id: <20261103100512.4Q2kLm5D4pz9sR4@mx1.intake.example>",
    ], multipart(b, [
        part(["Content-Description: Notification", "Content-Type: text/plain; charset=us-ascii"],
             "This is the mail system at host mx1.intake.example.\n\nI'm sorry to have to inform you that your "
             "message could not\nbe delivered to one or more recipients. It's attached below.\n\n"
             "<nobody@customer.example>: host mx.customer.example[198.51.100.91] said: 550\n"
             "    5.1.1 <nobody@customer.example>: Recipient address rejected: User unknown\n"),
        part(["Content-Description: Delivery report", "Content-Type: message/delivery-status"],
             f"Reporting-MTA: dns; mx1.intake.example\nX-Postfix-Queue-ID: 4Q2kLm5D4pz9sR4\n"
             f"Arrival-Date: {date(3, 10, 5, 10)}\n\nFinal-Recipient: rfc822; nobody@customer.example\n"
             "Original-Recipient: rfc822;nobody@customer.example\nAction: failed\nStatus: 5.1.1\n"
             "Remote-MTA: dns; mx.customer.example\nDiagnostic-Code: smtp; 550 5.1.1 <nobody@customer.example>:\n"
             "    Recipient address rejected: User unknown\n"),
        part(["Content-Description: Undelivered Message Headers", "Content-Type: text/rfc822-headers"],
             f"From: {HELP}\nTo: nobody@customer.example\nSubject: [HELP-17] Your request\n"
             f"Message-ID: <HELP-17.1793700300.0@intake.example>\nX-Intake-Sent: yes\n"),
    ], preamble="This is a MIME-encapsulated message.\n")),
        kind="ignored", reason_contains="report-type=delivery-status")

    add("loops", "084-mailman-list", msg([
        "Return-Path: <announce-bounces@lists.acme.example>",
        *received("lists.acme.example", "198.51.100.18", 3, 10, 10, 0, "4Q2kLm5E5pz9sR5"),
        f"Date: {date(3, 10, 9, 58)}",
        "From: Acme IT <it@acme.example>",
        "To: announce@lists.acme.example",
        "Subject: [Announce] Planned maintenance on Saturday",
        "Message-ID: <6c7d8e9f-0a1b-4c2d-9e3f-4a5b6c7d8e9f@acme.example>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=\"us-ascii\"",
        "Content-Transfer-Encoding: 7bit",
        "X-Mailman-Version: 3.3.9",
        "Precedence: list",
        "List-Id: Company announcements <announce.lists.acme.example>",
        "List-Unsubscribe: <mailto:announce-leave@lists.acme.example>",
        "List-Post: <mailto:announce@lists.acme.example>",
        "List-Help: <mailto:announce-request@lists.acme.example?subject=help>",
        "List-Archive: <https://lists.acme.example/archives/list/announce@lists.acme.example/>",
    ], "The mail servers will be down on Saturday from 06:00 to 08:00.\n"),
        kind="ignored", reason_contains="list")

    add("loops", "085-google-group-list-id-only", msg([
        "Return-Path: <users+bncBAABBXYZ@googlegroups.example>",
        *received("mail-sor-f69.google.example", "203.0.113.69", 3, 10, 20, 0, "4Q2kLm5F6pz9sR6"),
        f"Date: {date(3, 10, 19, 58)}",
        "From: Someone <someone@elsewhere.example>",
        "To: users@googlegroups.example",
        "Subject: [users] Anyone else seeing timeouts?",
        "Message-Id: <a1b2c3d4-e5f6-4708-9192-a3b4c5d6e7f8n@googlegroups.example>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=UTF-8",
        "Mailing-list: list users@googlegroups.example; contact users+owners@googlegroups.example",
        "List-ID: <users.googlegroups.example>",
        "X-Spam-Checked-In-Group: someone@elsewhere.example",
        "List-Unsubscribe: <mailto:googlegroups-manage+123456789+unsubscribe@googlegroups.example>",
    ], "Since this morning the API times out for us.\n"),
        kind="ignored", reason_contains="List-Id")

    add("loops", "086-own-message-x-intake-sent", msg([
        *received("intake.intake.example", "198.51.100.5", 3, 10, 30, 0, "4Q2kLm5G7pz9sR7"),
        f"Date: {date(3, 10, 29, 59)}",
        f"From: {HELP_NAME} <{HELP}>",
        "To: Anna Schmidt <anna.schmidt@acme.example>",
        "Subject: [HELP-5] Printer on floor 2 prints blank pages",
        "Message-ID: <HELP-5.1793701799.2@intake.example>",
        "In-Reply-To: <5e1c2a7b-3f4d-4c1e-9a8b-1f2e3d4c5b6a@acme.example>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "X-Intake-Sent: yes",
        "Auto-Submitted: auto-replied",
    ], "We received your request and created HELP-5.\n"),
        # An unsigned X-Intake-Sent proves nothing (anyone can add it; Intake's own header is an
        # HMAC under the store key): this one is ignored for its Auto-Submitted header.
        kind="ignored", reason_contains="Auto-Submitted")

    add("loops", "087-qmail-bounce-from-mailer-daemon", msg([
        "Return-Path: <>",
        *received("mx.oldhost.example", "198.51.100.160", 3, 10, 40, 0, "4Q2kLm5H8pz9sR8"),
        f"Date: {date(3, 10, 40, 0)}",
        "From: MAILER-DAEMON@mx.oldhost.example",
        f"To: {HELP}",
        "Subject: failure notice",
        "Message-ID: <17937004000.12345.qmail@mx.oldhost.example>",
    ], "Hi. This is the qmail-send program at mx.oldhost.example.\nI'm afraid I wasn't able to deliver your "
       "message to the following addresses.\nThis is a permanent error; I've given up. Sorry it didn't work out.\n\n"
       "<gone@oldhost.example>:\nSorry, no mailbox here by that name. (#5.1.1)\n"),
        kind="ignored", reason_contains="bounce")

    add("loops", "088-monitoring-auto-generated", msg([
        *received("zabbix.acme.example", "198.51.100.66", 3, 10, 50, 0, "4Q2kLm5I9pz9sR9"),
        f"Date: {date(3, 10, 50, 0)}",
        "From: Zabbix <zabbix@acme.example>",
        f"To: {HELP}",
        "Subject: Problem: Disk space is low on fs01 (/var: 4% free)",
        "Message-ID: <20261103105000.3344.zabbix@acme.example>",
        "Auto-Submitted: auto-generated",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=UTF-8",
    ], "Problem started at 10:49:57 on 2026.11.03\nProblem name: Disk space is low\nHost: fs01\nSeverity: High\n"),
        kind="ignored", reason_contains="auto-generated")

    add("loops", "089-auto-submitted-no-is-human", msg([
        *received("mail.acme.example", "198.51.100.17", 3, 11, 0, 0, "4Q2kLm5J0pz9sS0"),
        f"Date: {date(3, 10, 59, 58)}",
        "From: Anna Schmidt <anna.schmidt@acme.example>",
        f"To: {HELP}",
        "Subject: Keyboard missing keys",
        "Message-ID: <7d8e9f0a-1b2c-4d3e-8f4a-5b6c7d8e9f0a@acme.example>",
        "Auto-Submitted: no",
        "MIME-Version: 1.0",
        "User-Agent: Mozilla Thunderbird",
        "Content-Type: text/plain; charset=UTF-8",
    ], "My keyboard lost two keys (F and J).\n"),
        kind="mail", summary="Keyboard missing keys", description_contains=["My keyboard lost two keys (F and J)."])

    add("loops", "090-x-autoreply-zimbra", msg([
        *received("zimbra.partner.example", "198.51.100.141", 3, 11, 10, 0, "4Q2kLm5K1pz9sS1"),
        f"Date: {date(3, 11, 10, 0)}",
        "From: Rosa Lopez <rosa.lopez@partner.example>",
        f"To: {HELP}",
        "Subject: Re: [HELP-3] MFA prompt loops",
        "Message-ID: <1234567890.1234.1793704200000.JavaMail.zimbra@partner.example>",
        f"In-Reply-To: <HELP-3.1793700000.0@intake.example>",
        "X-Autoreply: yes",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "X-Mailer: Zimbra 10.0.8_GA_4611",
    ], "I am travelling until Friday.\n"),
        kind="ignored", reason_contains="X-Autoreply")

    add("loops", "091-french-oof-subject-only", msg([
        *received("mail.client.example", "198.51.100.120", 3, 11, 20, 0, "4Q2kLm5L2pz9sS2"),
        f"Date: {date(3, 11, 20, 0)}",
        "From: =?iso-8859-1?Q?Fran=E7ois_B=E9rard?= <francois.berard@client.example>",
        f"To: {HELP}",
        "Subject: =?iso-8859-1?Q?R=E9ponse_automatique=A0:_[HELP-8]_Mot_de_passe?=",
        "Message-ID: <000901db4e2f$7a8b9c0d$1e2f3a4b$@client.example>",
        "X-Auto-Response-Suppress: All",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=\"iso-8859-1\"",
        "Content-Transfer-Encoding: quoted-printable",
    ], qp("Je suis absent jusqu'au 10 novembre.\n", "iso-8859-1")),
        kind="ignored", reason_contains="auto-reply")

    b = "----=_NextPart_000_0013_01DB4E2A.6F1B3C41"
    add("loops", "092-outlook-read-receipt", msg([
        *received("EUR05-DB8-obe.outbound.protection.outlook.example", "203.0.113.40", 3, 11, 30, 0,
                  "4Q2kLm5M3pz9sS3"),
        "From: Peter Novak <peter.novak@globex.example>",
        f"To: {HELP}",
        "Subject: Read: [HELP-1] VPN drops every hour",
        f"Date: {date(3, 11, 30, 0)}",
        "Message-ID: <DB9PR08MB6588B0B1B2C3D4E5F6A7B8C9D0E1F2A3@DB9PR08MB6588.eurprd08.prod.outlook.example>",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=disposition-notification;\n\tboundary="{b}"',
    ], multipart(b, [
        part(['Content-Type: text/plain; charset="us-ascii"'],
             "Your message\n\n  To: Peter Novak\n  Subject: [HELP-1] VPN drops every hour\n\n"
             "was read on Tuesday, November 3, 2026 11:29:58 AM (UTC).\n"),
        part(["Content-Type: message/disposition-notification"],
             "Final-Recipient: rfc822;peter.novak@globex.example\n"
             f"Original-Message-ID: <{HELP_MID_1}>\nDisposition: automatic-action/MDN-sent-automatically; displayed\n"),
    ])), kind="ignored", reason_contains="disposition-notification")

    add("loops", "093-cpanel-autorespond", msg([
        *received("server1.hosting.example", "198.51.100.170", 3, 11, 40, 0, "4Q2kLm5N4pz9sS4"),
        f"Date: {date(3, 11, 40, 0)}",
        "From: info@smallshop.example",
        f"To: {HELP}",
        "Subject: Autoreply: Thank you for your message",
        "Message-Id: <E1vFq3X-0001Ab-2C@server1.hosting.example>",
        "X-Autorespond: Thank you for your message",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
    ], "We will answer within two business days.\n"),
        kind="ignored", reason_contains="X-Autorespond")

    add("loops", "094-german-oof-abwesenheitsnotiz", msg([
        *received("mail.firma.example", "198.51.100.121", 3, 11, 50, 0, "4Q2kLm5O5pz9sS5"),
        f"Date: {date(3, 11, 50, 0)}",
        "From: Klaus Fischer <klaus.fischer@firma.example>",
        f"To: {HELP}",
        "Subject: Abwesenheitsnotiz: [HELP-9] Fehler 0x80070005",
        "Message-ID: <OF1A2B3C4D.5E6F7A8B-ONC1258C2A.0041A2B3@firma.example>",
        "X-Mailer: HCL Notes Release 12.0.2 November 03, 2026",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=\"ISO-8859-1\"",
        "Content-Transfer-Encoding: quoted-printable",
    ], qp("Ich bin bis zum 10.11. nicht im Büro.\n", "iso-8859-1")),
        kind="ignored", reason_contains="abwesenheitsnotiz")


# =============================================================================================
# malformed/


def malformed() -> None:
    add("malformed", "100-boundary-never-used", msg([
        *received("mail.legacy.example", "198.51.100.180", 3, 12, 0, 0, "4Q2kLm6A1pz9sT1"),
        f"Date: {date(3, 12, 0, 0)}",
        "From: Mark Lee <mark.lee@legacy.example>",
        f"To: {HELP}",
        "Subject: Cannot print PDF",
        "Message-ID: <20261103120000.AA1111@legacy.example>",
        "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="=_never_used_0123456789"',
    ], "Printing any PDF from the intranet fails with 'driver not found'.\n\nMark\n"),
        kind="mail", summary="Cannot print PDF", reporter="mark.lee@legacy.example",
        description_contains=["Printing any PDF from the intranet fails with 'driver not found'."],
        attachments=[])

    b = "------------UnterminatedBoundary42"
    add("malformed", "101-unterminated-final-boundary", msg([
        *received("mail.legacy.example", "198.51.100.180", 3, 12, 10, 0, "4Q2kLm6B2pz9sT2"),
        f"Date: {date(3, 12, 10, 0)}",
        "From: Mark Lee <mark.lee@legacy.example>",
        f"To: {HELP}",
        "Subject: Log file from the crash",
        "Message-ID: <20261103121000.BB2222@legacy.example>",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/mixed; boundary="{b}"',
    ], multipart(b, [
        text_part("Attached the crash report from this morning.\n", "us-ascii", "7bit"),
        attachment('application/pdf; name="crash-report.pdf"', 'filename="crash-report.pdf"', PDF_REPORT),
    ], close=False)), kind="mail", description_contains=["Attached the crash report from this morning."],
        attachments=[{"filename": "crash-report.pdf", "content_type": "application/pdf", "inline": False,
                      "content_id": None, "size": len(PDF_REPORT)}])

    outer = "==outer-boundary-7781=="
    inner = "==inner-boundary-7782=="
    body = multipart(outer, [
        part([f'Content-Type: multipart/alternative; boundary="{inner}"'],
             multipart(inner + "X", [text_part("The plain text of a badly generated message.\n"),
                                     html_part("<p>The plain text of a badly generated message.</p>\n", "us-ascii")])),
        attachment('application/pdf; name="contract.pdf"', 'filename="contract.pdf"', PDF_INVOICE),
    ])
    add("malformed", "102-nested-boundary-mismatch", msg([
        *received("mail.legacy.example", "198.51.100.180", 3, 12, 20, 0, "4Q2kLm6C3pz9sT3"),
        f"Date: {date(3, 12, 20, 0)}",
        "From: Mark Lee <mark.lee@legacy.example>",
        f"To: {HELP}",
        "Subject: Contract attached",
        "Message-ID: <20261103122000.CC3333@legacy.example>",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/mixed; boundary="{outer}"',
        "X-Mailer: CustomCRM 2.1",
    ], body), kind="mail", summary="Contract attached", reporter="mark.lee@legacy.example",
        description_contains=["The plain text of a badly generated message."],
        attachments=[{"filename": "contract.pdf", "content_type": "application/pdf", "inline": False,
                      "content_id": None, "size": len(PDF_INVOICE)}])

    add("malformed", "103-headers-only-empty-body", msg([
        *received("mail.acme.example", "198.51.100.17", 3, 12, 30, 0, "4Q2kLm6D4pz9sT4"),
        f"Date: {date(3, 12, 30, 0)}",
        "From: Ben Ortiz <ben.ortiz@acme.example>",
        f"To: {HELP}",
        "Subject: Please call me back: ext. 4410",
        "Message-ID: <8e9f0a1b-2c3d-4e4f-9a5b-6c7d8e9f0a1b@acme.example>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=UTF-8",
        "User-Agent: Mozilla Thunderbird",
    ], ""), kind="mail", summary="Please call me back: ext. 4410", reporter="ben.ortiz@acme.example",
        description="", attachments=[])

    add("malformed", "104-no-from", msg([
        *received("app01.acme.example", "198.51.100.81", 3, 12, 40, 0, "4Q2kLm6E5pz9sT5"),
        f"Date: {date(3, 12, 40, 0)}",
        f"To: {HELP}",
        "Subject: Nightly job report",
        "Message-ID: <nightly.20261103124000@app01.acme.example>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
    ], "All 14 jobs finished.\n"),
        kind="quarantined", reason_contains="no sender")

    add("malformed", "105-zero-bytes", "", kind="quarantined", reason_contains="empty")

    rnd = random.Random(20261103)
    junk = bytearray(rnd.getrandbits(8) for _ in range(4096))
    junk[1] = 0  # a NUL early, as in any binary file
    for i in range(100, 4096, 397):
        junk[i] = 0
    add("malformed", "106-binary-junk", bytes(junk), kind="quarantined", reason_contains="binary")

    add("malformed", "107-text-not-mail",
        "Meeting notes 2026-11-03\n\n- new VPN client rollout next week\n- printer lease ends in December\n"
        "- Anna: collect laptop requests\n",
        kind="quarantined", reason_contains="not an email")

    add("malformed", "108-pdf-saved-as-eml", PDF_REPORT.decode("latin-1"), kind="quarantined",
        reason_contains="not an email")

    add("malformed", "109-mbox-from-line", "From anna.schmidt@acme.example Tue Nov  3 12:50:00 2026\n" + msg([
        *received("mail.acme.example", "198.51.100.17", 3, 12, 50, 0, "4Q2kLm6F6pz9sT6"),
        "Message-ID: <9f0a1b2c-3d4e-4f5a-8b6c-7d8e9f0a1b2c@acme.example>",
        f"Date: {date(3, 12, 50, 0)}",
        "MIME-Version: 1.0",
        "User-Agent: Mozilla Thunderbird",
        "From: Anna Schmidt <anna.schmidt@acme.example>",
        f"To: {HELP}",
        "Subject: Exported from my mbox",
        "Content-Type: text/plain; charset=UTF-8; format=flowed",
        "Content-Transfer-Encoding: 7bit",
    ], "This one was saved from an mbox file.\n"),
        kind="mail", summary="Exported from my mbox", reporter="anna.schmidt@acme.example",
        description_contains=["This one was saved from an mbox file."])

    b = "------------BadBase64Attachment01"
    bad = b64(PDF_INVOICE).split("\n")
    bad[1] = bad[1][:30] + "!!**$$" + bad[1][36:]
    add("malformed", "110-invalid-base64-attachment", msg([
        *received("mail.legacy.example", "198.51.100.180", 3, 13, 0, 0, "4Q2kLm6G7pz9sT7"),
        f"Date: {date(3, 13, 0, 0)}",
        "From: Mark Lee <mark.lee@legacy.example>",
        f"To: {HELP}",
        "Subject: Damaged attachment",
        "Message-ID: <20261103130000.DD4444@legacy.example>",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/mixed; boundary="{b}"',
    ], multipart(b, [
        text_part("Attachment is probably damaged.\n"),
        part(['Content-Type: application/pdf; name="damaged.pdf"', 'Content-Disposition: attachment; filename="damaged.pdf"',
              "Content-Transfer-Encoding: base64"], "\n".join(bad)),
    ])), kind="mail", description_contains=["Attachment is probably damaged."],
        notes_contains=["damaged.pdf"])

    b = "------------NoMimeVersion01"
    add("malformed", "111-no-mime-version", msg([
        *received("mail.legacy.example", "198.51.100.180", 3, 13, 10, 0, "4Q2kLm6H8pz9sT8"),
        f"Date: {date(3, 13, 10, 0)}",
        "From: Mark Lee <mark.lee@legacy.example>",
        f"To: {HELP}",
        "Subject: Missing MIME-Version",
        "Message-ID: <20261103131000.EE5555@legacy.example>",
        f'Content-Type: multipart/mixed; boundary="{b}"',
    ], multipart(b, [
        text_part("Our old CRM never writes a MIME-Version header.\n"),
        attachment('image/png; name="chart.png"', 'filename="chart.png"', PNG_LOGO),
    ])), kind="mail", description_contains=["Our old CRM never writes a MIME-Version header."],
        attachments=[{"filename": "chart.png", "content_type": "image/png", "inline": False, "content_id": None,
                      "size": len(PNG_LOGO)}])

    add("malformed", "112-broken-encoded-word", msg([
        *received("mail.legacy.example", "198.51.100.180", 3, 13, 20, 0, "4Q2kLm6I9pz9sT9"),
        f"Date: {date(3, 13, 20, 0)}",
        "From: =?UTF-8?B?broken <mark.lee@legacy.example>",
        f"To: {HELP}",
        "Subject: =?UTF-8?Q?Unterminated_encoded_word",
        "Message-ID: <20261103132000.FF6666@legacy.example>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=UTF-8",
    ], "The subject of this message is broken.\n"),
        kind="mail", reporter="mark.lee@legacy.example",
        description_contains=["The subject of this message is broken."])

    add("malformed", "113-invalid-date", msg([
        *received("mail.legacy.example", "198.51.100.180", 3, 13, 30, 0, "4Q2kLm6J0pz9sU0"),
        "Date: yesterday afternoon",
        "From: Mark Lee <mark.lee@legacy.example>",
        f"To: {HELP}",
        "Subject: Date header is garbage",
        "Message-ID: <20261103133000.GG7777@legacy.example>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=UTF-8",
    ], "The date header of this message cannot be parsed.\n"),
        kind="mail", sent_at=None, description_contains=["The date header of this message cannot be parsed."])

    long_subject = "Very long subject " + " ".join(f"word{i:04d}" for i in range(600))
    add("malformed", "114-huge-subject", msg([
        *received("mail.legacy.example", "198.51.100.180", 3, 13, 40, 0, "4Q2kLm6K1pz9sU1"),
        f"Date: {date(3, 13, 40, 0)}",
        "From: Mark Lee <mark.lee@legacy.example>",
        f"To: {HELP}",
        "Subject: " + fold_words(long_subject),
        "Message-ID: <20261103134000.HH8888@legacy.example>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=UTF-8",
    ], "The subject is 5 KB long.\n"),
        kind="mail", summary_prefix="Very long subject word0000 word0001 word0002 word0003 word0004 word0005 word0006", summary_max_chars=251,
        description_contains=["The subject is 5 KB long."])

    depth = 40
    bodyn = text_part("Deeply nested text.\n")
    for i in range(depth):
        bnd = f"nest-{i:02d}"
        bodyn = part([f'Content-Type: multipart/mixed; boundary="{bnd}"'], multipart(bnd, [bodyn]))
    head, _, rest = bodyn.partition("\n\n")
    add("malformed", "115-deeply-nested-multipart", msg([
        *received("mail.legacy.example", "198.51.100.180", 3, 13, 50, 0, "4Q2kLm6L2pz9sU2"),
        f"Date: {date(3, 13, 50, 0)}",
        "From: Mark Lee <mark.lee@legacy.example>",
        f"To: {HELP}",
        "Subject: Nested 40 levels deep",
        "Message-ID: <20261103135000.II9999@legacy.example>",
        "MIME-Version: 1.0",
        head,
    ], rest), kind="mail", reporter="mark.lee@legacy.example")

    add("malformed", "116-garbage-header-lines", msg([
        *received("mail.legacy.example", "198.51.100.180", 3, 14, 0, 0, "4Q2kLm6M3pz9sU3"),
        f"Date: {date(3, 14, 0, 0)}",
        "From: Mark Lee <mark.lee@legacy.example>",
        "this line is not a header at all",
        f"To: {HELP}",
        ": empty name",
        "Subject: Garbage in the header block",
        "Message-ID: <20261103140000.JJ0000@legacy.example>",
        "Content-Type: text/plain; charset=UTF-8",
    ], "Body after a damaged header block.\n"),
        kind="mail", reporter="mark.lee@legacy.example")


    b = "------------TruncatedInTransit77"
    text = "Bitte um Rückruf wegen der Lieferung für Filiale Nürnberg.\nTel. 0911 555 0199\n"
    add("malformed", "117-unterminated-base64-text-part", msg([
        *received("mail.firma.example", "198.51.100.121", 3, 14, 10, 0, "4Q2kLm6N4pz9sU4"),
        f"Date: {date(3, 14, 10, 0, tz=1)}",
        "From: Klaus Fischer <klaus.fischer@firma.example>",
        f"To: {HELP}",
        "Subject: Rückruf erbeten".encode().decode("latin-1"),
        "Message-ID: <20261103141000.KK1111@firma.example>",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/mixed; boundary="{b}"',
    ], multipart(b, [text_part(text, "UTF-8", "base64")], close=False)),
        kind="mail", summary="Rückruf erbeten",
        description_contains=["Bitte um Rückruf wegen der Lieferung für Filiale Nürnberg.", "Tel. 0911 555 0199"],
        description_not_contains=[base64.b64encode(text.encode())[:40].decode()])


# =============================================================================================
# threading/


def threading() -> None:
    def m(name: str, subject: str, extra: list[str], body: str, *, mid: str | None, t, frm=None, **expect):
        d, h, mi = t
        add("threading", name, msg([
            *received("mail.acme.example", "198.51.100.17", d, h, mi, 2, "4Q2kLm7" + name[:3] + "pz9x"),
            f"Date: {date(d, h, mi, 0)}",
            f"From: {frm or 'Anna Schmidt <anna.schmidt@acme.example>'}",
            f"To: {HELP}",
            f"Subject: {subject}",
            *([f"Message-ID: {mid}"] if mid is not None else []),
            *extra,
            "MIME-Version: 1.0",
            "User-Agent: Mozilla Thunderbird",
            "Content-Type: text/plain; charset=UTF-8; format=flowed",
            "Content-Transfer-Encoding: 8bit",
        ], raw8(body, "utf-8")), **expect)

    m("120-key-in-brackets-with-references", "Re: [HELP-20] Laptop order",
      ["In-Reply-To: <HELP-20.1793710000.2@intake.example>",
       "References: <a0b1c2d3-0000-4000-8000-000000000001@acme.example>\n <HELP-20.1793700000.0@intake.example>\n"
       " <a0b1c2d3-0000-4000-8000-000000000002@acme.example>\n <HELP-20.1793710000.2@intake.example>"],
      "Any news on the order?\n", mid="<a0b1c2d3-0000-4000-8000-000000000003@acme.example>", t=(4, 9, 0),
      kind="mail", subject_keys=["HELP-20"],
      references=["HELP-20.1793710000.2@intake.example", "a0b1c2d3-0000-4000-8000-000000000002@acme.example",
                  "HELP-20.1793700000.0@intake.example", "a0b1c2d3-0000-4000-8000-000000000001@acme.example"],
      message_id="a0b1c2d3-0000-4000-8000-000000000003@acme.example")

    m("121-several-keys", "RE: HELP-21: still broken, see also OPS-3", [], "Still broken.\n",
      mid="<a0b1c2d3-0000-4000-8000-000000000004@acme.example>", t=(4, 9, 5),
      kind="mail", subject_keys=["HELP-21", "OPS-3"], references=[])

    m("122-no-message-id", "Question without an id", [], "My mail client does not write Message-IDs.\n",
      mid=None, t=(4, 9, 10), kind="mail", message_id=None,
      description_contains=["My mail client does not write Message-IDs."])

    m("123-duplicate-id-first", "Duplicate id, first copy", [],
      "This is the first message with this Message-ID.\n",
      mid="<duplicate-7f3a@acme.example>", t=(4, 9, 15), kind="mail", message_id="duplicate-7f3a@acme.example",
      description_contains=["first message with this Message-ID"])

    m("124-duplicate-id-second", "Duplicate id, second copy", [],
      "This is a different message that reuses the Message-ID.\n",
      mid="<duplicate-7f3a@acme.example>", t=(4, 9, 20), kind="mail", message_id="duplicate-7f3a@acme.example",
      description_contains=["a different message that reuses the Message-ID"])

    m("125-references-without-in-reply-to", "Re: Laptop order", [
        "References: <HELP-20.1793700000.0@intake.example> <HELP-20.1793710000.2@intake.example>"],
      "Following up.\n", mid="<a0b1c2d3-0000-4000-8000-000000000005@acme.example>", t=(4, 9, 25),
      kind="mail", subject_keys=[],
      references=["HELP-20.1793710000.2@intake.example", "HELP-20.1793700000.0@intake.example"])

    m("126-in-reply-to-with-comment", "Re: Laptop order", [
        "In-Reply-To: <HELP-20.1793710000.2@intake.example> (Intake Help Desk's message of \"Tue, 3 Nov 2026\")"],
      "Old-style In-Reply-To with a comment.\n", mid="<a0b1c2d3-0000-4000-8000-000000000006@acme.example>",
      t=(4, 9, 30), kind="mail", references=["HELP-20.1793710000.2@intake.example"])

    m("127-message-id-without-brackets", "Id without brackets", [], "Some mailers omit the angle brackets.\n",
      mid="20261104093500.1234.abc@legacy.example", t=(4, 9, 35), kind="mail",
      message_id="20261104093500.1234.abc@legacy.example")

    m("128-encoded-subject-with-key", "=?UTF-8?Q?AW:_[HELP-22]_Drucker_im_2._Stock:_Papierstau_beim_=C3=96ffnen?=",
      ["In-Reply-To: <HELP-22.1793700000.0@intake.example>", "References: <HELP-22.1793700000.0@intake.example>"],
      "Immer noch Papierstau.\n", mid="<a0b1c2d3-0000-4000-8000-000000000007@acme.example>", t=(4, 9, 40),
      kind="mail", summary="AW: [HELP-22] Drucker im 2. Stock: Papierstau beim Öffnen", subject_keys=["HELP-22"],
      references=["HELP-22.1793700000.0@intake.example"])

    m("129-key-with-digits-in-project", "Fwd: Deployment failed [OPS2-15]", [], "See below.\n",
      mid="<a0b1c2d3-0000-4000-8000-000000000008@acme.example>", t=(4, 9, 45),
      kind="mail", subject_keys=["OPS2-15"])

    m("130-lookalike-keys-not-keys", "Re: UTF-8 issue with ISO-8859 and COVID-19 rules", [],
      "All three look like keys; only the store knows which tickets exist.\n",
      mid="<a0b1c2d3-0000-4000-8000-000000000009@acme.example>", t=(4, 9, 50),
      kind="mail", subject_keys=["UTF-8", "ISO-8859", "COVID-19"])

    m("131-outlook-thread-index-references", "RE: [HELP-23] Access request",
      ["Thread-Topic: [HELP-23] Access request", "Thread-Index: AQHbTk3vAAAAAAAAAAAAAAAAAAAAAF==",
       "In-Reply-To:\n <HELP-23.1793700000.0@intake.example>",
       "References:\n <HELP-23.1793700000.0@intake.example>"],
      "Approved by my manager.\n", mid="<DB9PR08MB6588C0C1C2C3D4E5F6A7B8C9D0E1F2A3@DB9PR08MB6588.eurprd08.prod.outlook.example>",
      t=(4, 9, 55), frm="Peter Novak <peter.novak@globex.example>",
      kind="mail", subject_keys=["HELP-23"], references=["HELP-23.1793700000.0@intake.example"])


def main() -> int:
    plain()
    html()
    attachments()
    charsets()
    replies()
    loops()
    malformed()
    threading()

    names = [f"{f}/{n}" for f, n, _, _ in MESSAGES]
    assert len(names) == len(set(names)), "duplicate names"
    numbers = [n.split("-")[0] for _, n, _, _ in MESSAGES]
    assert len(numbers) == len(set(numbers)), "duplicate numbers"

    for folder in FOLDERS:
        d = HERE / folder
        d.mkdir(exist_ok=True)
        for old in list(d.glob("*.eml")) + list(d.glob("*.json")):
            old.unlink()

    for folder, name, raw, expect in MESSAGES:
        data = raw if isinstance(raw, bytes) else crlf(raw).encode("latin-1")
        (HERE / folder / f"{name}.eml").write_bytes(data)
        text = json.dumps(expect, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
        (HERE / folder / f"{name}.json").write_text(text, encoding="utf-8")

    counts = {f: sum(1 for m in MESSAGES if m[0] == f) for f in FOLDERS}
    print(f"wrote {len(MESSAGES)} messages: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
