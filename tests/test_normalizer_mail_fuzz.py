"""Property: for any bytes, normalize_mail returns valid text or raises UnprocessableMail."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from normalizer.mail import NO_SENDER, UnprocessableMail, normalize_mail

FIXTURES = Path(__file__).parent / "fixtures" / "mail"
CORPUS = [path.read_bytes() for path in sorted(FIXTURES.glob("*.eml"))]
BOUNDED = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Pieces that steer random headers into the decoders' corners.
TOKENS = [
    b"=?", b"?=", b"?B?", b"?Q?", b"utf-8", b"gb2312", b"iso-2022-jp", b"x-unknown", b"*en",
    b"<", b">", b"@", b",", b";", b'"', b"(", b")", b":", b"\\", b"=", b"_", b"\r\n ", b"\n",
    b"\x1b$B", b"\x00", b"\xff", b"\xc3", b"\xe2\x80", b"\xed\xa0\x80", b"charset=", b"name*=",
    b"filename*0*=", b"''", b"%", b"boundary=", b"multipart/", b"message/rfc822", b"base64",
]  # fmt: skip
HEADERS = [
    b"From", b"Reply-To", b"Sender", b"Subject", b"Date", b"Message-ID", b"In-Reply-To",
    b"References", b"Content-Type", b"Content-Disposition", b"Content-Transfer-Encoding",
    b"Auto-Submitted", b"Return-Path", b"Precedence", b"X-Spam-Flag", b"List-Id",
]  # fmt: skip


def check(raw: bytes) -> None:
    """Either a case whose every string is valid UTF-8 text, or the one mail error."""
    try:
        result = normalize_mail(
            raw,
            case_id="01JCZ5Q2X7K9V3M4N5P6Q7R8S9",
            received_at=datetime(2025, 11, 3, tzinfo=UTC),
            adapter="smtp",
            touchpoints=["support@example.com"],
            raw_ref="sha256:" + hashlib.sha256(raw).hexdigest(),
        )
    except UnprocessableMail as error:
        # "unparseable mail (...)" would mean every parse path failed: a bug to look at.
        assert str(error) == NO_SENDER
        return
    case = result.case
    strings = [case.source_id, case.subject or "", case.text, case.sender.address]
    strings += [case.sender.name or "", *(a.address for a in case.sender.alternates)]
    strings += [case.thread.in_reply_to or "", case.thread.case_ref or ""]
    strings += case.thread.references
    strings += [value for a in case.attachments for value in (a.name, a.media_type)]
    for value in strings:
        value.encode("utf-8")  # raises on lone surrogates
    case.to_json()
    assert {blob.ref for blob in result.blobs} == {a.ref for a in case.attachments}
    for blob in result.blobs:
        assert blob.sha256 == hashlib.sha256(blob.data).hexdigest()


@BOUNDED
@given(st.binary(max_size=2000))
def test_arbitrary_bytes(raw: bytes) -> None:
    check(raw)


@st.composite
def mutated_corpus(draw: st.DrawFn) -> bytes:
    """A corpus message with byte flips, cuts, insertions and duplicated header lines."""
    data = bytearray(draw(st.sampled_from(CORPUS)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "duplicate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.sampled_from(TOKENS) | st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        else:
            lines = bytes(data).split(b"\n")
            header = draw(st.integers(0, max(min(len(lines), 15) - 1, 0)))
            lines.insert(header, lines[header])
            data = bytearray(b"\n".join(lines))
    return bytes(data)


@settings(BOUNDED, max_examples=200)
@given(mutated_corpus())
def test_mutated_corpus(raw: bytes) -> None:
    check(raw)


@st.composite
def junk_headers(draw: st.DrawFn) -> bytes:
    """Random values for the headers the normaliser reads, built from tricky pieces."""
    piece = st.sampled_from(TOKENS) | st.binary(max_size=6) | st.text(max_size=6).map(str.encode)
    lines = []
    for _ in range(draw(st.integers(1, 10))):
        name = draw(st.sampled_from(HEADERS))
        value = b"".join(draw(st.lists(piece, max_size=12)))
        lines.append(name + b": " + value)
    body = draw(st.sampled_from([b"", b"text\r\n", *CORPUS[:3]]))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@settings(BOUNDED, max_examples=100)
@given(junk_headers())
def test_junk_headers(raw: bytes) -> None:
    check(raw)
