"""The website contact form's submission, as the channel validated it, and its case-open."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from normalizer.blobs import Blob
from normalizer.model import CaseOpen, Identity, Sender, Touchpoint
from normalizer.text import clean_line, clean_text


class ContactFile(BaseModel):
    """One uploaded file: the name the browser sent, the checked media type, the bytes."""

    model_config = ConfigDict(
        defer_build=True, frozen=True, ser_json_bytes="base64", val_json_bytes="base64"
    )

    filename: str | None
    media_type: str
    data: bytes


class ContactSubmission(BaseModel):
    """A contact form as submitted: fields already checked by the channel (email syntax,
    phone in E.164, limits), kept as typed so that a replay sees what the person sent."""

    model_config = ConfigDict(defer_build=True, frozen=True, extra="forbid")

    name: str
    email: str
    phone: str | None = None
    subject: str
    message: str
    language: str = Field(description="The language the form was shown in.")
    files: list[ContactFile] = Field(default_factory=list)


def normalize_contact(
    submission: ContactSubmission,
    *,
    case_id: str,
    source_id: str,
    received_at: datetime,
    touchpoint: str,
) -> tuple[CaseOpen, list[Blob]]:
    """Turn a contact form into a case-open and its attachment blobs; pure."""
    # The mail package (its attachment checks) is imported when a form comes, so that the
    # quick tools that never see one (`ingest rules test --channel sms`) start without it.
    from normalizer.mail.attachments import attachments
    from normalizer.mail.mime import FilePart

    listed, blobs = attachments(
        FilePart(file.data, file.media_type, file.filename) for file in submission.files
    )
    alternates = [Identity(kind="phone", address=submission.phone)] if submission.phone else []
    sender = Sender(
        kind="email",
        address=submission.email.strip().lower(),
        name=clean_line(submission.name) or None,
        alternates=alternates,
    )
    case = CaseOpen(
        id=case_id,
        received_at=received_at,
        channel="web",
        adapter="contact-form",
        source_id=source_id,
        touchpoints=[Touchpoint(kind="form", address=touchpoint)],
        sender=sender,
        subject=clean_line(submission.subject) or None,
        text=clean_text(submission.message),
        language=submission.language,
        attachments=listed,
    )
    return case, blobs
