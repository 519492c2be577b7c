"""`POST /twilio/sms`: SMS, MMS and WhatsApp messages, answered with TwiML once safe.

MessageSid is the source id, so a retry of the same message (Twilio's, or ours after a 503)
is dropped by the dispatcher's dedup. The reply names the case-open id as the reference; that
id is chosen once per MessageSid (`references`), so a retry's answer names the same one.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import Response
from twilio.twiml.messaging_response import MessagingResponse

from channels.base import Emit
from channels.problems import Problem
from channels.settings import TwilioChannelSettings
from channels.twilio.media import MediaInbox, PendingMessage
from channels.twilio.references import References
from channels.twilio.webhook import (
    RETRY_AFTER_S,
    Form,
    Gate,
    emit_safely,
    invalid,
    required,
    sid,
    twiml,
    webhook_openapi,
)
from normalizer.envelope import Envelope
from normalizer.phone import region_of
from normalizer.twilio import (
    TwilioMessage,
    UnusableNumber,
    bare_number,
    message_channel,
    sender_number,
)

MAX_MEDIA = 10


def messages_router(
    settings: TwilioChannelSettings,
    gate: Gate,
    emit: Emit,
    references: References,
    inbox: MediaInbox | None,
) -> APIRouter:
    """The messaging webhook, bound to its settings and the pipeline's `emit`; with an inbox,
    messages with media are acknowledged once kept there and fetched afterwards."""
    router = APIRouter(prefix="/twilio", tags=["twilio"])

    @router.post(
        "/sms",
        **webhook_openapi(
            "Twilio messaging webhook (SMS, MMS, WhatsApp); TwiML reply.",
            "MessageSid",
            "From",
            "To",
        ),
    )
    async def message(request: Request) -> Response:
        form = await gate.form(request)
        message = _message(form)
        if inbox is not None and message.media:
            case_id = await _keep_for_fetching(inbox, message, references)
            return twiml(_reply(settings, message.sender, case_id))
        case_id = await _reference(references, message.message_sid)
        envelope = Envelope(
            channel=message_channel(message.sender),
            adapter="twilio",
            touchpoint=bare_number(message.recipient),
            received_at=datetime.now(UTC),
            payload=message,
            source_id=message.message_sid,
            case_id=case_id,
        )
        await emit_safely(emit, envelope)
        return twiml(_reply(settings, message.sender, case_id))

    return router


async def _reference(references: References, message_sid: str) -> str:
    """The message's case-open id, named before or now; 503 when it cannot be kept."""
    try:
        return await references.reference(message_sid)
    except OSError as error:
        raise _cannot_keep(error) from None


async def _keep_for_fetching(
    inbox: MediaInbox, message: TwilioMessage, references: References
) -> str:
    """Keep the message durably (once per MessageSid) under its reference; the reference."""
    pending = inbox.get(message.message_sid)
    if pending is not None:
        return pending.case_id
    case_id = await _reference(references, message.message_sid)
    pending = PendingMessage(case_id=case_id, received_at=datetime.now(UTC), message=message)
    try:
        await inbox.put(pending)
    except OSError as error:
        raise _cannot_keep(error) from None
    return case_id


def _cannot_keep(error: OSError) -> Problem:
    return Problem(
        503,
        "Service Unavailable",
        f"the message cannot be kept right now: {error.strerror}",
        headers={"Retry-After": RETRY_AFTER_S},
    )


FORM_FIELDS = {
    "message_sid": "MessageSid",
    "sender": "From",
    "recipient": "To",
    "body": "Body",
    "profile_name": "ProfileName",
}
MEDIA_FIELDS = {"url": "MediaUrl", "media_type": "MediaContentType"}


def _message(form: Form) -> TwilioMessage:
    message_sid = sid(form, "MessageSid")
    sender, recipient = required(form, "From", "To")
    fields = {
        "message_sid": message_sid,
        "sender": sender,
        "recipient": recipient,
        "body": form.get("Body", ""),
        "profile_name": form.get("ProfileName") or None,
        "media": _media(form),
    }
    try:
        return TwilioMessage.model_validate(fields)
    except ValidationError as error:
        names = [_form_field(item["loc"]) for item in error.errors()]
        raise invalid(names, "too long or malformed") from None


def _media(form: Form) -> list[dict[str, str]]:
    count = form.get("NumMedia", "0").strip() or "0"
    if not count.isdigit() or int(count) > MAX_MEDIA:
        raise invalid(["NumMedia"], f"a count from 0 to {MAX_MEDIA}")
    items = []
    for index in range(int(count)):
        url, media_type = required(form, f"MediaUrl{index}", f"MediaContentType{index}")
        items.append({"url": url, "media_type": media_type})
    return items


def _form_field(loc: tuple[int | str, ...]) -> str:
    """The form field a validation error is about: `("media", 1, "url")` is MediaUrl1."""
    if loc[0] == "media" and len(loc) == 3:
        return f"{MEDIA_FIELDS.get(str(loc[2]), loc[2])}{loc[1]}"
    return FORM_FIELDS.get(str(loc[0]), str(loc[0]))


def _reply(settings: TwilioChannelSettings, sender: str, case_id: str) -> MessagingResponse:
    reply = MessagingResponse()
    try:
        region = region_of(sender_number(sender))
    except UnusableNumber:
        region = None
    text = settings.acknowledgement_for(region)
    if text:
        reply.message(text.format(reference=case_id))
    return reply
