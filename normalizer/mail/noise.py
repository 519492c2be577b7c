"""Automatic mail told apart from people: auto-replies, bounces, list mail, spam verdicts.

Decisions worth knowing:
- `X-Auto-Response-Suppress` alone does not make a mail automatic. Outlook and Exchange put
  it on ordinary mail too (meeting answers, mail from some tenants); it asks *us* not to
  auto-answer, which the dispatcher would need as a flag of its own. Exchange's own
  out-of-office replies also carry `Auto-Submitted` and an "Automatic reply" subject, which
  are counted.
- A null Return-Path (`<>`) is automatic mail: people's mail always has a return address.
  With a report part, or a bounce subject, it is a bounce.
- `X-Spam-Flag: YES` gives "spam"; "NO" stays "unknown", because a sender can forge the
  header and "ham" would wave such a mail through.
"""

from __future__ import annotations

import re
from email.message import Message

from normalizer.mail.headers import content_type, has, param, raw_first, token
from normalizer.mail.mime import children
from normalizer.model import Flags

_NOT_AUTO = {"no", "false", "0"}
_AUTO_PRECEDENCE = {"bulk", "junk", "auto_reply"}
_DAEMONS = {"mailer-daemon", "mailerdaemon", "mail-daemon", "postmaster"}
_OUT_OF_OFFICE = re.compile(
    r"^\s*[\[【(\uff08]?\s*(?:out of (?:the )?office|ooo\b|automatic reply|auto[ -]?reply"
    r"|autoreply|auto[ -]?response|abwesenheitsnotiz|abwesend|automatische antwort"
    r"|réponse automatique|absence du bureau|respuesta automática|fuera de la oficina"
    r"|autosvar|fraværende|frånvarande|automatisch antwoord|afwezig|risposta automatica"
    r"|fuori (?:sede|ufficio)|resposta automática|自动回复|自動回覆|自動回复|自动答复|自動応答"
    r"|自動返信|不在(?:[:\uff1a】\]\)\uff09]|通知|のお知らせ|中|办公室|辦公室)|автоответ"
    r"|автоматический ответ|nieobecność|automatyczna odpowiedź)",
    re.IGNORECASE,
)
_BOUNCE_SUBJECT = re.compile(
    r"^\s*(?:undeliver|undelivered mail|delivery status notification|delivery failure"
    r"|mail delivery failed|failure notice|returned mail|unzustellbar"
    r"|nicht zustellbar|non remis|non distribuable|no se puede entregar|kan ikke leveres)",
    re.IGNORECASE,
)


def flags(
    message: Message, sender: str, subject: str | None, *, sender_inferred: bool = False
) -> Flags:
    """The flags of a parsed message from its headers, structure, sender and subject."""
    report = _report_type(message)
    null_sender = (raw_first(message, "return-path") or "").strip() == "<>"
    bounce = (
        report == "delivery-status"
        or sender.split("@", 1)[0] in _DAEMONS
        or (null_sender and report not in (None, "disposition-notification"))
        or (null_sender and bool(subject and _BOUNCE_SUBJECT.match(subject)))
    )
    precedence = token(message, "precedence")
    auto_reply = (
        _auto_headers(message)
        or precedence in _AUTO_PRECEDENCE
        or bool(subject and _OUT_OF_OFFICE.match(subject))
        or report == "disposition-notification"
        or (null_sender and not bounce)
    )
    mailing_list = has(message, "list-id") or has(message, "list-unsubscribe")
    return Flags(
        auto_reply=auto_reply,
        bounce=bounce,
        mailing_list=mailing_list or precedence == "list",
        spam="spam" if token(message, "x-spam-flag") == "yes" else "unknown",
        sender_inferred=sender_inferred,
    )


def _auto_headers(message: Message) -> bool:
    """Auto-Submitted other than "no" (RFC 3834), X-Autoreply, X-Autorespond."""
    submitted = token(message, "auto-submitted")
    if submitted and submitted not in _NOT_AUTO:
        return True
    if has(message, "x-autoreply") and token(message, "x-autoreply") not in _NOT_AUTO:
        return True
    return has(message, "x-autorespond")


def _report_type(message: Message) -> str | None:
    """The report-type of a multipart/report at the top or one level down; None if none.
    A report without the parameter is a delivery report if it holds a delivery status."""
    candidates = [message, *(children(message) or [])]
    for part in candidates:
        if content_type(part) != "multipart/report":
            continue
        kind = (param(part, "content-type", "report-type") or "").lower()
        if kind:
            return kind
        inner = {content_type(child) for child in children(part) or []}
        return "delivery-status" if "message/delivery-status" in inner else "unknown"
    return None
