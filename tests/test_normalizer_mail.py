"""The email normaliser: the fixture corpus against expected.toml, then the finer rules."""

from __future__ import annotations

import base64
import binascii
import hashlib
import tomllib
from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.feedparser import BytesFeedParser
from pathlib import Path
from typing import Any

import pytest

import normalizer.mail as mail
from normalizer.blobs import Blob
from normalizer.mail import NormalizedMail, UnprocessableMail, normalize_mail
from normalizer.mail.charsets import decode, decode_undeclared
from normalizer.mail.encoded_words import decode_header_text
from normalizer.mail.html import html_to_text
from normalizer.mail.quotes import new_text
from normalizer.mail.transfer import b64decode_lenient

FIXTURES = Path(__file__).parent / "fixtures" / "mail"
EXPECTED: dict[str, dict[str, Any]] = tomllib.loads((FIXTURES / "expected.toml").read_text())
CORPUS = sorted(path.name for path in FIXTURES.glob("*.eml"))
CASE_ID = "01JCZ5Q2X7K9V3M4N5P6Q7R8S9"
RECEIVED = datetime(2025, 11, 3, 12, 0, tzinfo=UTC)
NONE = "<none>"


def normalize(raw: bytes, **overrides: Any) -> NormalizedMail:
    arguments: dict[str, Any] = {
        "case_id": CASE_ID,
        "received_at": RECEIVED,
        "adapter": "smtp",
        "touchpoints": ["support@example.com"],
        "raw_ref": Blob.of(raw).ref,
    }
    return normalize_mail(raw, **(arguments | overrides))


def mail_bytes(headers: str, body: str = "Hello.\n") -> bytes:
    return (headers.strip("\n") + "\n\n" + body).replace("\n", "\r\n").encode()


# ---------------------------------------------------------------------------------- corpus


def test_every_fixture_has_expectations() -> None:
    assert len(CORPUS) >= 40
    assert set(CORPUS) == set(EXPECTED)


@pytest.mark.parametrize("name", CORPUS)
def test_corpus(name: str) -> None:
    raw = (FIXTURES / name).read_bytes()
    expected = EXPECTED[name]
    if "error" in expected:
        with pytest.raises(UnprocessableMail) as raised:
            normalize(raw)
        assert str(raised.value) == expected["error"]
        return
    result = normalize(raw)
    assert actual_fields(result, raw, expected) == expected_fields(expected, raw)


def expected_fields(expected: dict[str, Any], raw: bytes) -> dict[str, Any]:
    """The expectation with defaults filled in and the placeholders resolved."""
    fields = {key: none(value) for key, value in expected.items() if key not in ("sender",)}
    if "sender" in expected:
        fields["sender"] = {k: none(v) for k, v in expected["sender"].items()}
    if fields.get("source_id") == "<sha256>":
        fields["source_id"] = canonical_sha256(raw)
    fields["flags"] = {
        "auto_reply": False,
        "bounce": False,
        "mailing_list": False,
        "spam": "unknown",
        "edited": False,
        "callback_requested": False,
        "sender_inferred": False,
    } | expected.get("flags", {})
    fields["thread"] = {
        "in_reply_to": None,
        "references": [],
        "case_ref": None,
        "conversation_key": None,
        "edit_of": None,
    } | expected.get("thread", {})
    fields["attachments"] = expected.get("attachments", [])
    return fields


def actual_fields(result: NormalizedMail, raw: bytes, expected: dict[str, Any]) -> dict[str, Any]:
    """The same keys from the result; sizes only where the expectation gives them."""
    case = result.case
    actual: dict[str, Any] = {
        "subject": case.subject,
        "text": case.text,
        "sender": {"address": case.sender.address, "name": case.sender.name},
        "alternates": [identity.address for identity in case.sender.alternates],
        "source_id": case.source_id,
        "sent_at": case.sent_at.isoformat() if case.sent_at else None,
        "blobs": len(result.blobs),
    }
    actual = {key: value for key, value in actual.items() if key in expected}
    if "sender" in expected:
        actual["sender"] = {key: actual["sender"][key] for key in expected["sender"]}
    actual["flags"] = case.flags.model_dump()
    actual["thread"] = case.thread.model_dump()
    keys = [set(want) for want in expected.get("attachments", [])]
    keys += [{"name", "media_type"}] * max(len(case.attachments) - len(keys), 0)
    actual["attachments"] = [
        {key: getattr(attachment, key) for key in wanted}
        for attachment, wanted in zip(case.attachments, keys[: len(case.attachments)], strict=True)
    ]
    return actual


def canonical_sha256(raw: bytes) -> str:
    """The source id of a mail without a Message-ID: its bytes with LF line ends, ending in
    one line break, whether it came over SMTP (CRLF) or from a file."""
    text = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").rstrip(b"\n") + b"\n"
    return "sha256:" + hashlib.sha256(text).hexdigest()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def none(value: Any) -> Any:
    return None if value == NONE else value


@pytest.mark.parametrize("name", [n for n in CORPUS if "error" not in EXPECTED[n]])
def test_the_modern_fallback_gives_the_same_case(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the compat32 parse fails on a mail, the modern-policy path must give the same result."""
    raw = (FIXTURES / name).read_bytes()
    compat = normalize(raw)

    def failing_parser(*, policy: policy.Policy) -> BytesFeedParser:
        if policy is mail.policy.compat32:
            raise RuntimeError("compat32 parser unavailable")
        return BytesFeedParser(policy=policy)

    monkeypatch.setattr(mail, "BytesFeedParser", failing_parser)
    assert normalize(raw) == compat


def test_blobs_are_the_attachments_not_the_original() -> None:
    raw = (FIXTURES / "attachments-encoded-names.eml").read_bytes()
    result = normalize(raw)
    refs = {attachment.ref for attachment in result.case.attachments}
    assert {blob.ref for blob in result.blobs} == refs
    assert Blob.of(raw).sha256 not in {blob.sha256 for blob in result.blobs}
    for blob in result.blobs:
        assert blob.sha256 == hashlib.sha256(blob.data).hexdigest()
    assert result.case.raw_ref == Blob.of(raw).ref


def test_same_bytes_same_result() -> None:
    raw = (FIXTURES / "forwarded-rfc822.eml").read_bytes()
    assert normalize(raw) == normalize(raw)
    assert normalize(raw).case.to_json() == normalize(raw).case.to_json()


# ------------------------------------------------------------------------- call arguments


def test_touchpoints_are_lower_cased_and_deduplicated_in_order() -> None:
    raw = (FIXTURES / "reply-en.eml").read_bytes()
    case = normalize(
        raw, touchpoints=["Sales@Example.com", "support@example.com", "SALES@example.com"]
    ).case
    assert [(t.kind, t.address) for t in case.touchpoints] == [
        ("mailbox", "sales@example.com"),
        ("mailbox", "support@example.com"),
    ]
    assert (case.channel, case.adapter, case.language) == ("email", "smtp", None)
    assert normalize(raw, adapter="imap").case.adapter == "imap"


@pytest.mark.parametrize(
    "overrides",
    [{"touchpoints": []}, {"touchpoints": [" "]}, {"received_at": datetime(2025, 11, 3)}],
)
def test_caller_errors_are_not_mail_errors(overrides: dict[str, Any]) -> None:
    raw = (FIXTURES / "reply-en.eml").read_bytes()
    with pytest.raises(ValueError) as raised:
        normalize(raw, **overrides)
    assert not isinstance(raised.value, UnprocessableMail)


def test_case_reference_pattern() -> None:
    raw = mail_bytes("From: a@example.com\nSubject: Ticket #4711", "About ticket #4712.")
    assert normalize(raw, case_ref_pattern=r"#\d+").case.thread.case_ref == "#4711"
    assert normalize(raw, case_ref_pattern=r"ticket (#\d+)").case.thread.case_ref == "#4712"
    assert normalize(raw, case_ref_pattern=None).case.thread.case_ref is None
    assert normalize(raw).case.thread.case_ref is None


# ------------------------------------------------------------------------------- headers


def test_sender_alternates_from_reply_to_and_sender() -> None:
    raw = mail_bytes(
        """
From: "Ann" <ANN@example.com>
Reply-To: ann@example.com, Ann Home <ann@home.example>
Sender: Assistant <assistant@example.com>
Subject: x
"""
    )
    sender = normalize(raw).case.sender
    assert (sender.address, sender.name) == ("ann@example.com", "Ann")
    assert [a.address for a in sender.alternates] == ["ann@home.example", "assistant@example.com"]


@pytest.mark.parametrize(
    ("from_header", "address", "name"),
    [
        ("ann@example.com (Ann Lee)", "ann@example.com", "Ann Lee"),
        ("Ann Lee ann@example.com", "ann@example.com", None),
        ('"ann@example.com" <ann@example.com>', "ann@example.com", None),
        ("<Ann@Example.COM.>", "ann@example.com", None),
        ("undisclosed-recipients:;, Bob <bob@example.com>", "bob@example.com", "Bob"),
    ],
)
def test_from_forms(from_header: str, address: str, name: str | None) -> None:
    sender = normalize(mail_bytes(f"From: {from_header}\nSubject: x")).case.sender
    assert (sender.address, sender.name) == (address, name)


@pytest.mark.parametrize("from_header", ["", "MAILER-DAEMON", "Ann Lee", "@example.com", "a@"])
def test_no_usable_sender_address(from_header: str) -> None:
    with pytest.raises(UnprocessableMail, match=r"^no sender address \(From\)$"):
        normalize(mail_bytes(f"From: {from_header}\nSubject: x"))


@pytest.mark.parametrize(
    ("headers", "envelope", "address", "name"),
    [
        ("Sender: <a@example.com>\nReply-To: b@example.com", None, "a@example.com", None),
        ("Reply-To: B <b@example.com>\nReturn-Path: <c@example.com>", None, "b@example.com", "B"),
        ("Return-Path: <c@example.com>", "d@example.com", "c@example.com", None),
        ("Return-Path: <>", "d@example.com", "d@example.com", None),
        ("From: Dora Diaz", "<d@example.com>", "d@example.com", "Dora Diaz"),
        ("From: undisclosed-recipients:;", "d@example.com", "d@example.com", None),
    ],
)
def test_without_a_from_address_the_sender_is_inferred(
    headers: str, envelope: str | None, address: str, name: str | None
) -> None:
    case = normalize(mail_bytes(f"{headers}\nSubject: x"), envelope_sender=envelope).case
    assert (case.sender.address, case.sender.name) == (address, name)
    assert case.flags.sender_inferred


def test_a_from_address_is_never_inferred() -> None:
    raw = mail_bytes("From: a@example.com\nSender: b@example.com\nReturn-Path: <c@example.com>")
    case = normalize(raw, envelope_sender="d@example.com").case
    assert (case.sender.address, case.flags.sender_inferred) == ("a@example.com", False)


@pytest.mark.parametrize("envelope", [None, "", "<>"])
def test_nothing_but_a_null_envelope_sender_is_refused(envelope: str | None) -> None:
    with pytest.raises(UnprocessableMail, match=r"^no sender address \(From\)$"):
        normalize(mail_bytes("Return-Path: <>\nSubject: x"), envelope_sender=envelope)


@pytest.mark.parametrize(
    ("from_header", "address", "name"),
    [
        ('"Ann Lee"@example.com>', '"ann lee"@example.com', "Ann Lee"),
        ('"support"@example.com', "support@example.com", "support"),
        ("Ann <ann . lee@example.com>", "ann.lee@example.com", "Ann"),
        ("Ann Lee <ann  lee@example.com>", '"ann lee"@example.com', "Ann Lee"),
        ('"Ann Lee"@@example.com>', None, None),
    ],
)
def test_malformed_from_keeps_name_and_plausible_address(
    from_header: str, address: str | None, name: str | None
) -> None:
    raw = mail_bytes(f"From: {from_header}\nReturn-Path: <fallback@example.com>\nSubject: x")
    sender = normalize(raw).case.sender
    expected = (address, name) if address else ("fallback@example.com", None)
    assert (sender.address, sender.name) == expected


@pytest.mark.parametrize(
    "junk",
    [b"From ann@example.com Mon Nov  3 10:00:00 2025\n", b">From ann@example.com\n", b"\n"],
)
def test_junk_before_the_header_block(junk: bytes) -> None:
    raw = junk + mail_bytes("From: Ann <ann@example.com>\nSubject: Help\nMessage-ID: <j@x>")
    case = normalize(raw).case
    assert (case.sender.address, case.subject, case.source_id) == ("ann@example.com", "Help", "j@x")


def test_a_body_line_is_not_mistaken_for_junk() -> None:
    raw = b"Subject: only\n\nFrom: Ann <ann@example.com>\n"
    with pytest.raises(UnprocessableMail):
        normalize(raw)


def test_thread_ids_without_brackets_or_with_junk() -> None:
    raw = mail_bytes(
        """
From: a@example.com
Message-ID: plain-id@example.com
In-Reply-To: Your message of Monday <orig@example.com> (sent by Ann)
References: first@example.com second@example.com
"""
    )
    case = normalize(raw).case
    assert case.source_id == "plain-id@example.com"
    assert case.thread.in_reply_to == "orig@example.com"
    assert case.thread.references == ["first@example.com", "second@example.com"]


def test_a_too_long_message_id_falls_back_to_the_hash() -> None:
    raw = mail_bytes(f"From: a@example.com\nMessage-ID: <{'x' * 1200}@example.com>")
    assert normalize(raw).case.source_id == canonical_sha256(raw)


def test_without_message_id_smtp_and_file_copies_share_the_source_id() -> None:
    lf = (FIXTURES / "missing-message-id.eml").read_bytes().replace(b"\r\n", b"\n")
    crlf = lf.replace(b"\n", b"\r\n")
    mbox = b"From a@example.com Mon Nov  3 10:00:00 2025\n" + lf.rstrip(b"\n")
    ids = {normalize(copy).case.source_id for copy in (lf, crlf, mbox, crlf + b"\r\n")}
    assert ids == {canonical_sha256(lf)}
    other = lf.replace(b"no Message-ID", b"no Message-ID either")
    assert normalize(other).case.source_id != canonical_sha256(lf)


@pytest.mark.parametrize(
    ("date", "expected"),
    [
        ("Mon, 3 Nov 2025 10:00:00 -0000", datetime(2025, 11, 3, 10, tzinfo=UTC)),
        (
            "3 Nov 2025 10:00 +0530",
            datetime(2025, 11, 3, 10, tzinfo=timezone(timedelta(hours=5.5))),
        ),
        ("Mon, 3 Nov 2025 10:00:00 +9999", None),
        ("tomorrow", None),
    ],
)
def test_dates(date: str, expected: datetime | None) -> None:
    assert normalize(mail_bytes(f"From: a@example.com\nDate: {date}")).case.sent_at == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("=?UTF-8?B?5L2g?==?UTF-8?B?5aW9?=", "你好"),
        ("=?utf-8?q?a?= b =?utf-8?q?c?=", "a b c"),
        (f"=?gb2312?B?{b64('臺'.encode('gbk'))}?=", "臺"),  # GBK only, under a gb2312 label
        ("=?iso-8859-1?q?caf=E9?=", "café"),
        ("=?iso-8859-1?q?=C3=A9t=C3=A9?=", "été"),  # UTF-8 bytes under a Latin-1 label
        ("=?x-unknown?q?na=C3=AFve?=", "naïve"),
        ("=?utf-8?Q?=ZZbroken=?=", "=ZZbroken"),  # a bad escape stays, a dangling "=" goes
        ("Re: =?utf-8?B?w6k", "Re: é"),
        ("=?utf-8*de?q?Gr=C3=BC=C3=9Fe?=", "Grüße"),
    ],
)
def test_encoded_words(raw: str, expected: str) -> None:
    assert decode_header_text(raw) == expected


# ------------------------------------------------------------------------------ charsets


@pytest.mark.parametrize(
    ("data", "declared", "expected"),
    [
        ("臺灣".encode("gbk"), "gb2312", "臺灣"),
        ("①髙".encode("cp932"), "shift_jis", "①髙"),
        ("똠".encode("cp949"), "euc-kr", "똠"),
        (b"\x80 \x93x\x94", "iso-8859-1", "€ “x”"),
        (b"\x81\x8d", "windows-1252", "\x81\x8d"),  # undefined in 1252: Latin-1 keeps them
        ("añadir".encode()[:-1] + "é".encode()[:1], "utf-8", "añadi"),  # cut-off last character
        ("Grüße".encode("latin-1"), "utf-8", "Grüße"),
        ("Grüße".encode(), "koi8-r", "Grüße"),
        (b"plain", "utf-7", "plain"),
        (b"+2D0AQQ-", "utf-7", "\ufffdA"),  # a lone surrogate never gets out
        (b"abc\xff", "rot13", "abc\xff"),  # not a charset: undeclared
        (b"abc", "base64", "abc"),
    ],
)
def test_declared_charsets(data: bytes, declared: str, expected: str) -> None:
    assert decode(data, declared) == expected


@pytest.mark.parametrize(
    ("data", "declared", "hints", "expected"),
    [
        ("Grüße".encode("latin-1"), "koi8-r", ["iso-8859-1"], "Grüße"),
        ("Привет, мир".encode("koi8-r"), "koi8-r", ["iso-8859-1"], "Привет, мир"),
        ("Grüße".encode("latin-1"), "koi8-r", [], "Grüße".encode("latin-1").decode("koi8-r")),
        ("ご確認ください".encode("iso2022_jp"), None, [], "ご確認ください"),
        ("ご確認ください".encode("iso2022_jp"), "us-ascii", [], "ご確認ください"),
        (b"Price \x1b is odd", None, [], "Price \x1b is odd"),
    ],
)
def test_the_mails_own_evidence(
    data: bytes, declared: str | None, hints: list[str], expected: str
) -> None:
    assert decode(data, declared, hints) == expected


def test_a_handful_of_bytes_reads_as_western_when_it_reads_as_text() -> None:
    assert decode_undeclared("Müller".encode("cp1252")) == "Müller"
    assert decode_undeclared("Grüße, Jörg".encode("cp1252")) == "Grüße, Jörg"
    # Too few bytes to guess from, and no Western reading: left to the statistical guess.
    assert decode_undeclared("退款申请".encode("gb2312")) != "退款申请".encode("gb2312").decode(
        "cp1252"
    )


def test_undeclared_bytes_prefer_utf8_then_hints_then_a_guess() -> None:
    assert decode_undeclared("Grüße".encode()) == "Grüße"
    assert decode_undeclared("Привет".encode("koi8-r"), hints=["koi8-r"]) == "Привет"
    assert decode_undeclared("Здравствуйте, мой заказ не пришёл.".encode("koi8-r")) == (
        "Здравствуйте, мой заказ не пришёл."
    )
    assert decode_undeclared(bytes(range(256))).encode()  # always some valid text


def test_lenient_base64() -> None:
    data = bytes(range(100))
    text = base64.b64encode(data)
    assert b64decode_lenient(text) == data
    assert b64decode_lenient(text[:50] + b"!!\n*" + text[50:]) == data
    assert b64decode_lenient(text[:-5]) == data[:98]  # 3 of the last 4 characters: 2 bytes
    assert b64decode_lenient(b"SGk=\nSGk=") == b"HiHi"
    assert b64decode_lenient(b"") == b64decode_lenient(b"=") == b64decode_lenient(b"A") == b""


# ------------------------------------------------------------------------------- quoting


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Yes.\n\nOn Mon, 3 Nov 2025, Example Support\n<support@example.com> wrote:\n> q", "Yes."),
        ("好的。\n\n在 2025年11月3日 09:00, Support <s@example.com> 写道\uff1a\n> 旧", "好的。"),
        ("はい。\n\n2025年11月3日(月) 9:00 Support <s@example.com>:\n\n> 古い", "はい。"),
        ("Ok.\n\nVon: Support\nGesendet: Montag\nAn: Ann\nBetreff: Test", "Ok."),
        ("Ok.\n\nFrom: Support Sent: Monday To: Ann Subject: Test\nold", "Ok."),
        ("Ok.\n\n发件人: Support\n发送时间: 2025年11月3日\n收件人: 王\n主题: 订单\n旧", "Ok."),
        ("Ok.\n\nSent from my iPhone", "Ok."),
        ("Ok.\n\nVon meinem iPhone gesendet", "Ok."),
        ("> only a quote\n> nothing new", "> only a quote\n> nothing new"),
        ("-- \nonly a signature", "-- \nonly a signature"),
        ("Keep me.\nFrom: Berlin\nTo: Munich", "Keep me.\nFrom: Berlin\nTo: Munich"),
        ("On Monday the printer broke:\nit beeps.", "On Monday the printer broke:\nit beeps."),
    ],
)
def test_quote_stripping(text: str, expected: str) -> None:
    assert new_text(text) == expected


def test_a_forward_subject_keeps_an_inline_forward_whole() -> None:
    body = (
        "See below.\n\n-----Original Message-----\nFrom: Carol\nSent: Monday\nSubject: Help\n\n"
        "Help me."
    )
    raw = mail_bytes("From: a@example.com\nSubject: FW: Help", body)
    assert normalize(raw).case.text == body
    raw = mail_bytes("From: a@example.com\nSubject: RE: Help", body)
    assert normalize(raw).case.text == "See below."


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<p>您的<span>订单</span><span>已发货</span>。</p>", "您的订单已发货。"),
        ("<p>ご注文の\n<b>商品</b>\nについて</p>", "ご注文の商品について"),
        ("<p>注文番号：\n<b>4711</b>\nです</p>", "注文番号： 4711 です"),  # 4711 is narrow
        ("<p>订单 <b>已发货</b></p>", "订单 已发货"),  # a space typed on one line stays
        ("<p>주문\n<b>확인</b></p>", "주문 확인"),  # Korean is spaced like Latin
        ("<p>Your\n<span>order</span>\nshipped</p>", "Your order shipped"),
    ],
)
def test_html_inline_elements_in_chinese_and_japanese(html: str, expected: str) -> None:
    assert html_to_text(html).strip() == expected


def test_uuencoded_text_without_its_end_line_stays_text() -> None:
    body = "Steps:\nbegin 644 notes.txt\nthen restart the printer.\n"
    case = normalize(mail_bytes("From: a@example.com", body)).case
    assert (case.text, case.attachments) == (body.strip(), [])


def test_uuencoded_lines_with_trailing_spaces_dropped_still_decode() -> None:
    data = bytes(range(40))
    encoded = binascii.b2a_uu(data).decode().rstrip("\n").rstrip(" ")
    body = f"Dump:\nbegin 600 dump.bin\n{encoded}\n`\nend\n"
    result = normalize(mail_bytes("From: a@example.com", body))
    assert [(a.name, a.size) for a in result.case.attachments] == [("dump.bin", 40)]
    assert result.blobs[0].data == data


@pytest.mark.parametrize(
    ("part_headers", "inner_subject", "name"),
    [
        ("Content-Disposition: attachment", "", "forwarded-message.eml"),
        ('Content-Disposition: attachment; filename="orig.eml"', "Subject: Hi\n", "orig.eml"),
        ("Content-Disposition: attachment", "Subject: Re: a/b\n", "Re: a-b.eml"),
    ],
)
def test_attached_messages_are_named(part_headers: str, inner_subject: str, name: str) -> None:
    body = (
        "--B\nContent-Type: text/plain\n\nSee attached.\n--B\nContent-Type: message/rfc822\n"
        f"{part_headers}\n\nFrom: c@example.com\n{inner_subject}\nInner text.\n--B--\n"
    )
    raw = mail_bytes('From: a@example.com\nContent-Type: multipart/mixed; boundary="B"', body)
    case = normalize(raw).case
    assert [(a.name, a.media_type) for a in case.attachments] == [(name, "message/rfc822")]
    assert case.text == "See attached."


def test_html_quote_containers_are_cut() -> None:
    html = (
        "<div>New answer</div><div id=divRplyFwdMsg><b>Von:</b> Support<br>"
        "<b>Gesendet:</b> Montag</div><div>Old text</div>"
    )
    raw = mail_bytes("From: a@example.com\nContent-Type: text/html; charset=utf-8", html)
    assert normalize(raw).case.text == "New answer"


# --------------------------------------------------------------------------------- flags


@pytest.mark.parametrize(
    ("subject", "automatic"),
    [
        ("Out of office: Re: order", True),
        ("Automatic reply: Invoice", True),
        ("Automatische Antwort: Rechnung", True),
        ("Absence du bureau", True),
        ("Fuera de la oficina: pedido", True),
        ("[Autosvar] Ordre", True),
        ("自動返信\uff1aご注文", True),
        ("【不在】ご注文について", True),
        ("Out of stock: printer X200", False),
        ("Auto: Motor defekt", False),
        ("不在保修范围吗", False),
        ("Re: my out of office settings", False),
    ],
)
def test_out_of_office_subjects(subject: str, automatic: bool) -> None:
    raw = mail_bytes(f"From: a@example.com\nSubject: {subject}")  # raw UTF-8 on purpose
    assert normalize(raw).case.flags.auto_reply is automatic


@pytest.mark.parametrize(
    ("headers", "flags"),
    [
        ("Return-Path: <>", {"auto_reply": True}),
        ("Return-Path: <>\nSubject: Undeliverable: Invoice", {"bounce": True}),
        ("Auto-Submitted: no", {}),
        ("Auto-Submitted: auto-generated; owner-email=x@example.com", {"auto_reply": True}),
        ("X-Autoreply: no", {}),
        ("Precedence: junk", {"auto_reply": True}),
        ("Precedence: list", {"mailing_list": True}),
        ("List-Unsubscribe: <https://example.com/u>", {"mailing_list": True}),
        ("X-Spam-Flag: NO", {}),
        ("X-Spam-Flag: yes", {"spam": "spam"}),
        ("X-Auto-Response-Suppress: All", {}),
    ],
)
def test_flag_headers(headers: str, flags: dict[str, Any]) -> None:
    raw = mail_bytes(f"From: Ann <ann@example.com>\n{headers}")
    expected = {"auto_reply": False, "bounce": False, "mailing_list": False, "spam": "unknown"}
    actual = normalize(raw).case.flags.model_dump(
        exclude={"edited", "callback_requested", "sender_inferred"}
    )
    assert actual == expected | flags


@pytest.mark.parametrize("sender", ["postmaster@example.org", "Mailer-Daemon@example.org"])
def test_daemon_senders_are_bounces(sender: str) -> None:
    assert normalize(mail_bytes(f"From: {sender}")).case.flags.bounce


# ------------------------------------------------------------------------ hostile structure


def nested(depth: int) -> bytes:
    head = "".join(
        f"Content-Type: multipart/mixed; boundary=b{i}\n\n--b{i}\n" for i in range(depth)
    )
    return mail_bytes(
        f"From: a@example.com\nSubject: Deep\n{head}Content-Type: text/plain", "deep\n"
    )


def test_nesting_beyond_the_walk_limit_is_skipped() -> None:
    case = normalize(nested(40)).case
    assert (case.sender.address, case.subject, case.text) == ("a@example.com", "Deep", "")


def test_nesting_beyond_the_parser_recursion_keeps_the_body_as_text() -> None:
    case = normalize(nested(1000)).case
    assert case.subject == "Deep"
    assert case.text.endswith("deep")


def test_many_attribution_like_lines_stay_fast() -> None:
    # A guard against catastrophic backtracking (minutes to hours), not a speed target: it
    # takes about a second; the bound only has to stay clear of a loaded machine.
    body = ("On " + "x" * 390 + "\n") * 5000 + "Am " + "y " * 150 + "schrieb\n"
    raw = mail_bytes("From: a@example.com", body)
    started = datetime.now(UTC)
    normalize(raw)
    assert datetime.now(UTC) - started < timedelta(seconds=60)


def test_html_only_mail_with_broken_markup() -> None:
    html = "<html><body><p>Unclosed <b>bold <div>text &amp; more</p><!-- x --><?xml ?>\x00"
    raw = mail_bytes("From: a@example.com\nContent-Type: text/html", html)
    assert normalize(raw).case.text == "Unclosed bold\n  text & more"  # inscriptis's layout


def test_headers_are_carried_decoded_in_order_and_bounded() -> None:
    raw = mail_bytes(
        "From: Ann <ann@example.com>\nTo: support@example.com\nSubject: Hi\n"
        "X-Mailer: =?utf-8?q?Outl=C3=B6ok?= 16\nReceived: from a\nReceived: from b\n"
        + "".join(f"X-Filler-{n}: {n}\n" for n in range(150))
    )
    headers = normalize(raw).case.headers
    assert len(headers) == 100
    assert [(h.name, h.value) for h in headers[:6]] == [
        ("From", "Ann <ann@example.com>"),
        ("To", "support@example.com"),
        ("Subject", "Hi"),
        ("X-Mailer", "Outlöok 16"),
        ("Received", "from a"),
        ("Received", "from b"),
    ]
