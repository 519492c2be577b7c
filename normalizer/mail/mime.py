"""The MIME tree walked once: the body text parts chosen, forwarded messages opened, and
every other part collected as a file."""

from __future__ import annotations

import quopri
import re
from dataclasses import dataclass, field
from email.message import Message
from email.policy import compat32

from normalizer.mail.addresses import mailboxes
from normalizer.mail.charsets import decode
from normalizer.mail.flowed import unflow
from normalizer.mail.guess import guess_codec
from normalizer.mail.headers import content_type, disposition, header_text, param, raw_values
from normalizer.mail.headers import token as header_token
from normalizer.mail.html import html_to_text
from normalizer.mail.transfer import b64decode_lenient, to_bytes
from normalizer.mail.uuencode import ENCODINGS as UU_ENCODINGS
from normalizer.mail.uuencode import decode_part as uudecode_part
from normalizer.mail.uuencode import split_text as split_uuencoded

MAX_DEPTH = 30
MAX_PARTS = 1000
_BODY_TYPES = ("text/plain", "text/html")
# What the parts of a delivery or read report are, as their file names.
_REPORT_NAMES = {
    "message/delivery-status": "delivery-status.txt",
    "message/global-delivery-status": "delivery-status.txt",
    "message/disposition-notification": "disposition-notification.txt",
    "message/global-disposition-notification": "disposition-notification.txt",
    "message/rfc822": "returned-message.eml",
    "message/global": "returned-message.eml",
    "text/rfc822-headers": "returned-headers.txt",
    "message/global-headers": "returned-headers.txt",
}
_META_CHARSET = re.compile(
    rb"<meta[^>]{0,300}?charset\s*=\s*[\"']?\s*([A-Za-z0-9._:-]{1,40})", re.IGNORECASE
)


@dataclass(slots=True)
class FilePart:
    """A part kept as a file: its decoded bytes, media type and filename if it has one."""

    data: bytes
    media_type: str
    filename: str | None


@dataclass(slots=True)
class Content:
    """What a message holds: its own body texts, forwarded messages, and files (shared with
    the forwarded messages, so that their attachments are the mail's attachments)."""

    texts: list[str] = field(default_factory=list)
    forwarded: list[Forwarded] = field(default_factory=list)
    files: list[FilePart] = field(default_factory=list)

    def has_text(self) -> bool:
        return any(text.strip() for text in self.texts) or bool(self.forwarded)


@dataclass(slots=True)
class Forwarded:
    """A message/rfc822 part: who sent it, its subject, and its own content."""

    sender: str | None
    subject: str | None
    content: Content


def _plain_found(options: list[tuple[str, Content]]) -> bool:
    return any(media_type == "text/plain" and c.has_text() for media_type, c in options)


def _bare_html(part: Message) -> bool:
    """An HTML body without a file name (a named one would be kept as a file)."""
    return (
        content_type(part) == "text/html"
        and param(part, "content-disposition", "filename") is None
        and param(part, "content-type", "name") is None
    )


def read(message: Message, hints: tuple[str, ...] = ()) -> Content:
    """Walk a parsed message into its content; never raises for odd structure."""
    content = Content()
    _Walk(hints).part(message, content, 0, root=True)
    return content


def declared_charsets(message: Message) -> tuple[str, ...]:
    """Evidence for undeclared 8-bit text, in order: the charsets the message's parts
    declare, those its top-level headers' encoded words name, then the charset of its
    undeclared 8-bit text parts, guessed from all of them at once (a long body tells more
    than a short subject)."""
    found: dict[str, None] = {}
    undeclared = bytearray()
    stack, seen = [message], 0
    while stack and seen < MAX_PARTS:
        part = stack.pop(0)
        seen += 1
        charset = param(part, "content-type", "charset")
        if charset and charset.lower() not in ("us-ascii", "ascii"):
            found.setdefault(charset.lower())
        subparts = children(part)
        leaf_text = subparts is None and content_type(part).startswith("text/")
        if leaf_text and charset is None and len(undeclared) < _SAMPLE:
            undeclared += _eight_bit(_head(part))
        stack.extend(subparts or ())
    for _key, value in message.raw_items():
        if "=?" in value:
            for label in _WORD_CHARSET.findall(value):
                if label.lower() not in ("us-ascii", "ascii"):
                    found.setdefault(label.lower())
    if undeclared and (guessed := guess_codec(bytes(undeclared))) is not None:
        found.setdefault(guessed[0])
    return tuple(found)


def _head(part: Message) -> bytes:
    """About the first _SAMPLE bytes of a leaf part's body, decoding no more than that."""
    encoding = header_token(part, "content-transfer-encoding")
    if encoding in ("base64", "quoted-printable"):
        raw = part.get_payload()
        if not isinstance(raw, str):
            return b""
        if encoding == "base64":
            return b64decode_lenient(raw[: _SAMPLE * 4 // 3])
        return quopri.decodestring(to_bytes(raw[: _SAMPLE * 3]))[:_SAMPLE]
    data = part.get_payload(decode=True)  # 8-bit bytes as sent (the str has them replaced)
    return data[:_SAMPLE] if isinstance(data, bytes) else b""


def _eight_bit(data: bytes) -> bytes:
    """The bytes if they are 8-bit text that is not UTF-8 (which needs no evidence)."""
    if data.isascii():
        return b""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return data
    return b""


_SAMPLE = 4096
_WORD_CHARSET = re.compile(r"=\?([^?\s*]{1,64})(?:\*[^?]*)?\?[bBqQ]\?")


class _Walk:
    def __init__(self, hints: tuple[str, ...]) -> None:
        self.hints = hints
        self.count = 0

    def part(
        self, part: Message, out: Content, depth: int, *, root: bool = False, alt: bool = False
    ) -> None:
        self.count += 1
        if depth > MAX_DEPTH or self.count > MAX_PARTS:
            return
        media_type = content_type(part)
        subparts = children(part)
        if subparts is None:
            self.leaf(part, media_type, out, root=root, alt=alt)
        elif media_type in ("message/rfc822", "message/global"):
            if disposition(part) == "attachment":
                self.attached_message(part, subparts[:1], media_type, out)
            else:
                for inner in subparts[:1]:
                    self.forward(inner, out, depth)
        elif media_type.startswith("message/"):  # delivery-status and the like: header blocks
            out.files.append(
                FilePart(_serialise(subparts), media_type, _REPORT_NAMES.get(media_type))
            )
        elif media_type == "multipart/alternative":
            self.alternative(subparts, out, depth)
        elif media_type == "multipart/report":
            self.report(subparts, out, depth)
        else:
            for child in subparts:
                self.part(child, out, depth + 1)

    def leaf(self, part: Message, media_type: str, out: Content, *, root: bool, alt: bool) -> None:
        name = param(part, "content-disposition", "filename", self.hints) or param(
            part, "content-type", "name", self.hints
        )
        attached = disposition(part) == "attachment"
        if media_type.startswith("multipart/"):  # no boundary found: the parser kept it whole
            media_type = "text/plain"
        uuencoded = header_token(part, "content-transfer-encoding") in UU_ENCODINGS
        body = media_type in _BODY_TYPES or (root and media_type.startswith("text/"))
        if body and not attached and not uuencoded and (name is None or root):
            out.texts.append(self.text(part, media_type, out))
        elif uuencoded:
            data, uu_name = uudecode_part(_raw_payload(part))
            out.files.append(FilePart(data, media_type, name or uu_name))
        elif not (alt and media_type.startswith("text/") and name is None):
            out.files.append(FilePart(payload(part), media_type, name))

    def attached_message(
        self, part: Message, inner: list[Message], media_type: str, out: Content
    ) -> None:
        """A message forwarded as an attachment: kept as a file named after its subject."""
        name = param(part, "content-disposition", "filename", self.hints) or param(
            part, "content-type", "name", self.hints
        )
        if name is None:
            subject = header_text(inner[0], "subject", self.hints) if inner else None
            name = f"{subject.replace('/', '-')}.eml" if subject else "forwarded-message.eml"
        out.files.append(FilePart(_serialise(inner), media_type, name))

    def text(self, part: Message, media_type: str, out: Content) -> str:
        data = payload(part)
        charset = param(part, "content-type", "charset")
        if media_type == "text/html":
            if charset is None and (meta := _META_CHARSET.search(data[:4096])):
                charset = meta[1].decode("ascii")
            return html_to_text(decode(data, charset, self.hints))
        text = decode(data, charset, self.hints).replace("\r\n", "\n").replace("\r", "\n")
        if (param(part, "content-type", "format") or "").lower() == "flowed":
            delsp = (param(part, "content-type", "delsp") or "").lower() == "yes"
            text = unflow(text, delsp=delsp)
        text, files = split_uuencoded(text)
        for name, file in files:
            out.files.append(FilePart(file, "application/octet-stream", name))
        return text

    def alternative(self, subparts: list[Message], out: Content, depth: int) -> None:
        """Plain text unless it is empty, else the last (richest) rendering with text; files
        of every rendering are kept (an inline screenshot lives only in the HTML one)."""
        options: list[tuple[str, Content]] = []
        for child in subparts:
            if _plain_found(options) and _bare_html(child):
                continue  # plain text wins, and a bare HTML part has no files: skip rendering
            content = Content(files=out.files)
            self.part(child, content, depth + 1, alt=True)
            options.append((content_type(child), content))
        plain = [c for media_type, c in options if media_type == "text/plain" and c.has_text()]
        rich = [c for _media_type, c in reversed(options) if c.has_text()]
        chosen = (plain or rich or [None])[0]
        if chosen is not None:
            out.texts.extend(chosen.texts)
            out.forwarded.extend(chosen.forwarded)

    def report(self, subparts: list[Message], out: Content, depth: int) -> None:
        """A delivery or read report: the first part is the text for people; the status and
        the returned message are kept as files, not read as forwarded mail."""
        if not subparts:
            return
        self.part(subparts[0], out, depth + 1)
        for child in subparts[1:]:
            inner = children(child)
            data = _serialise(inner) if inner is not None else payload(child)
            media_type = content_type(child)
            out.files.append(FilePart(data, media_type, _REPORT_NAMES.get(media_type)))

    def forward(self, inner: Message, out: Content, depth: int) -> None:
        content = Content(files=out.files)
        self.part(inner, content, depth + 1, root=True)
        found = mailboxes(raw_values(inner, "from"), self.hints)
        sender = None
        if found:
            address, name = found[0]
            sender = f"{name} <{address}>" if name else address
        subject = header_text(inner, "subject", self.hints)
        out.forwarded.append(Forwarded(sender, subject, content))


def payload(part: Message) -> bytes:
    """A leaf part's body, transfer encoding undone (leniently for broken base64)."""
    encoding = header_token(part, "content-transfer-encoding")
    if encoding == "base64":
        raw = part.get_payload()
        text = raw if isinstance(raw, str) else ""
        # ASCII text goes to the decoder as it is: no copy of a large attachment as bytes.
        return b64decode_lenient(text if text.isascii() else to_bytes(text))
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def _raw_payload(part: Message) -> bytes:
    """A leaf part's body as it was sent, no transfer encoding undone."""
    raw = part.get_payload()
    return to_bytes(raw) if isinstance(raw, str) else b""


def children(part: Message) -> list[Message] | None:
    """The sub-messages of a multipart or message/* part; None for a leaf."""
    payload = part.get_payload() if part.is_multipart() else None
    if not isinstance(payload, list):
        return None
    return [child for child in payload if isinstance(child, Message)]


def _serialise(messages: list[Message]) -> bytes:
    """Header blocks or an embedded message as bytes, without refolding anything."""
    out = []
    for message in messages:
        try:
            out.append(message.as_bytes(policy=compat32))
        except Exception:  # a generator failure loses this copy only; the raw mail is kept
            continue
    return b"\n".join(out)
