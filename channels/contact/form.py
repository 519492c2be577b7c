"""Reading a posted contact form and checking it field by field, in the person's language."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from email_validator import EmailNotValidError, validate_email
from starlette.datastructures import FormData, UploadFile

from channels.contact.texts import Texts, size_text
from channels.settings import ContactFormSettings
from normalizer.contact import ContactFile, ContactSubmission
from normalizer.phone import InvalidPhoneNumber, to_e164
from normalizer.text import clean_text

TEXT_FIELDS = ("name", "email", "phone", "subject", "message")
HONEYPOT = "website"
LINE_LIMITS = {"name": 200, "email": 320, "phone": 40, "subject": 200}

# A file must start with its type's signature; a type not listed here is taken as declared.
_SIGNATURES: dict[str, tuple[bytes, ...]] = {
    "application/pdf": (b"%PDF-",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
}
TYPE_NAMES = {
    "application/pdf": "PDF",
    "image/jpeg": "JPEG",
    "image/png": "PNG",
    "image/gif": "GIF",
    "image/webp": "WebP",
    "text/plain": "TXT",
}


@dataclass(slots=True)
class Upload:
    """One file as posted."""

    filename: str
    media_type: str
    data: bytes


@dataclass(slots=True)
class Posted:
    """The form as posted: text values as typed, files, the hidden fields."""

    values: dict[str, str]
    files: list[Upload] = field(default_factory=list)
    honeypot: str = ""
    token: str | None = None
    language: str | None = None
    step: str = ""
    """"" the first post (self-service may be offered), "send" after it, "solved" for an
    article that answered the question."""
    article: str = ""
    answer: str = ""


async def posted(form: FormData) -> Posted:
    """Take the fields we know out of parsed form data; anything else is ignored."""
    values = {name: _text(form.get(name)) for name in TEXT_FIELDS}
    files = []
    for item in form.getlist("files"):
        if isinstance(item, UploadFile) and (item.filename or item.size):
            media_type = (item.content_type or "application/octet-stream").split(";")[0]
            files.append(Upload(item.filename or "", media_type.strip().lower(), await item.read()))
    return Posted(
        values=values,
        files=files,
        honeypot=_text(form.get(HONEYPOT)),
        token=_text(form.get("csrf_token")) or None,
        language=_text(form.get("lang")) or None,
        step=_text(form.get("step")),
        article=_text(form.get("article"))[:100],
        answer=_text(form.get("answer"))[:1000],
    )


def check(
    form: Posted, settings: ContactFormSettings, texts: Texts, language: str
) -> tuple[ContactSubmission | None, dict[str, str]]:
    """The submission when every field is fine, else None and an error text per field."""
    values = form.values
    errors: dict[str, str] = {}
    for name in ("name", "email", "subject", "message"):
        if not clean_text(values[name]):
            errors[name] = texts["required"]
    limits = LINE_LIMITS | {"message": settings.max_message_chars}
    for name, limit in limits.items():
        if name not in errors and len(values[name]) > limit:
            errors[name] = texts["too_long"].format(limit=limit)
    email = _email(values["email"], texts, errors)
    phone = _phone(values["phone"], texts, errors)
    file_error = _files_error(form.files, settings, texts)
    if file_error:
        errors["files"] = file_error
    if errors:
        return None, errors
    submission = ContactSubmission(
        name=values["name"],
        email=email or "",
        phone=phone,
        subject=values["subject"],
        message=values["message"],
        language=language,
        files=[
            ContactFile(filename=f.filename, media_type=f.media_type, data=f.data)
            for f in form.files
        ],
    )
    return submission, {}


def type_names(media_types: list[str]) -> str:
    """Accepted types as people know them: PDF, JPEG, PNG."""
    return ", ".join(TYPE_NAMES.get(t, t.rpartition("/")[2].upper()) for t in media_types)


def _email(value: str, texts: Texts, errors: dict[str, str]) -> str | None:
    if "email" in errors:
        return None
    try:
        return validate_email(value.strip(), check_deliverability=False).normalized
    except EmailNotValidError:
        errors["email"] = texts["bad_email"]
        return None


def _phone(value: str, texts: Texts, errors: dict[str, str]) -> str | None:
    if not value.strip() or "phone" in errors:
        return None
    try:
        return to_e164(value)
    except InvalidPhoneNumber:
        errors["phone"] = texts["bad_phone"]
        return None


def _files_error(files: list[Upload], settings: ContactFormSettings, texts: Texts) -> str | None:
    if len(files) > settings.max_files:
        return texts["too_many_files"].format(limit=settings.max_files)
    for upload in files:
        name = upload.filename or "?"
        if upload.media_type not in settings.file_types:
            return texts["file_type"].format(name=name, types=type_names(settings.file_types))
        if len(upload.data) > settings.max_file_bytes:
            return texts["file_too_large"].format(
                name=name, limit=size_text(settings.max_file_bytes)
            )
        if not _looks_like(upload):
            kind = TYPE_NAMES.get(upload.media_type, upload.media_type)
            return texts["file_not_type"].format(name=name, type=kind)
    return None


def _looks_like(upload: Upload) -> bool:
    if upload.media_type == "image/webp":
        return upload.data[:4] == b"RIFF" and upload.data[8:12] == b"WEBP"
    if upload.media_type == "text/plain":
        return b"\x00" not in upload.data  # any 8-bit charset, but not a binary file
    signatures = _SIGNATURES.get(upload.media_type)
    return signatures is None or upload.data.startswith(signatures)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def kept_values(form: Posted | None) -> Mapping[str, str]:
    """What to put back into the form's fields: what the person typed, or nothing yet."""
    return form.values if form else dict.fromkeys(TEXT_FIELDS, "")
