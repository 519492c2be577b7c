"""The acknowledgement request, schema "acknowledgement/1": one reply to send to a customer.

The dispatcher decides that a case is acknowledged (a triage template, the daily cap, never
for auto-replies) and publishes one of these to the `acknowledgements` queue; the channels
role sends it back through the channel the message came by. Everything the sender needs is
in the request, so that any channels process can send it without the store.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from normalizer.model import CaseOpen, Channel

ACK_SCHEMA = "acknowledgement/1"

E164 = re.compile(r"^\+[1-9]\d{1,14}$")
EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")
CHAT_ID = re.compile(r"^-?\d{1,20}$")
ADDRESS_KINDS: dict[str, tuple[re.Pattern[str], ...]] = {
    "email": (EMAIL,),
    "sms": (E164,),
    "whatsapp": (E164,),
    "voice": (E164,),
    "chat": (CHAT_ID,),
    "web": (EMAIL, E164),
    "logged": (EMAIL, E164),
}
"""What `to` must look like for each channel."""


class AckRequest(BaseModel):
    """A reply to send through the channel a message came by, naming its case.

    `to` and `via` are the original message's sender and touchpoint turned around: the reply
    goes to `to`, from `via`. `source_id` lets the reply thread onto the original: an email's
    Message-ID (In-Reply-To and References), a Telegram "<chat_id>:<message_id>" (the reply
    quotes that message).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: Literal["acknowledgement/1"] = Field(default=ACK_SCHEMA, alias="schema")
    case_id: str = Field(min_length=1, max_length=64, description="The case reference.")
    channel: Channel = Field(description="The channel the original message came by.")
    to: str = Field(
        min_length=1,
        max_length=320,
        description="Who gets the reply: a lower-cased email address, an E.164 number, a "
        "Telegram chat id.",
    )
    via: str = Field(
        min_length=1,
        max_length=320,
        description="Our touchpoint the original reached: a mailbox address, a Twilio "
        "number, a bot, a form.",
    )
    source_id: str = Field(
        min_length=1, max_length=998, description="The original's source id, for threading."
    )
    language: str = Field(min_length=2, max_length=35, description="The reply's language tag.")
    subject: str | None = Field(default=None, max_length=998, description="For email replies.")
    text: str = Field(min_length=1, max_length=10_000)

    @field_validator("to", "via")
    @classmethod
    def _trimmed(cls, value: str) -> str:
        value = value.strip()
        return value.lower() if "@" in value else value

    @model_validator(mode="after")
    def _address_fits_channel(self) -> AckRequest:
        kinds = ADDRESS_KINDS[self.channel]
        if not any(kind.match(self.to) for kind in kinds):
            wanted = " or ".join(_KIND_NAMES[kind.pattern] for kind in kinds)
            raise ValueError(f"to: {self.channel} replies go to {wanted}")
        return self

    def to_json(self) -> bytes:
        """The wire form: UTF-8 JSON with the public field names."""
        return self.model_dump_json(by_alias=True).encode()

    @classmethod
    def answering(
        cls, case: CaseOpen, *, language: str, text: str, subject: str | None = None
    ) -> AckRequest:
        """The request that answers this case-open where it came from (raises ValueError,
        a pydantic ValidationError, when the sender left no address the channel can use)."""
        return cls(
            case_id=case.id,
            channel=case.channel,
            to=_reply_address(case),
            via=case.touchpoints[0].address,
            source_id=case.source_id,
            language=language,
            subject=subject,
            text=text,
        )


def _reply_address(case: CaseOpen) -> str:
    """Telegram answers the chat (the source id's first part, the user's id in a private
    chat); web and logged contacts prefer an email address; the rest answer the sender."""
    if case.channel == "chat":
        return case.source_id.partition(":")[0]
    if case.channel in ("web", "logged"):
        identities = [case.sender, *case.sender.alternates]
        email = next((i.address for i in identities if i.kind == "email"), None)
        return email or case.sender.address
    return case.sender.address


_KIND_NAMES = {
    EMAIL.pattern: "an email address",
    E164.pattern: "an E.164 number",
    CHAT_ID.pattern: "a Telegram chat id",
}
