"""Files of a mail as case-open attachments: safe names, media types, and their blobs."""

from __future__ import annotations

from collections.abc import Iterable

from normalizer.blobs import Blob
from normalizer.mail.mime import FilePart
from normalizer.model import Attachment
from normalizer.text import clean_line

MAX_NAME = 255
# A fixed table, not mimetypes: that module reads the host's files, and names must not
# depend on the host.
_EXTENSIONS = {
    "application/gzip": ".gz",
    "application/ics": ".ics",
    "application/json": ".json",
    "application/msword": ".doc",
    "application/octet-stream": ".bin",
    "application/pdf": ".pdf",
    "application/pgp-signature": ".asc",
    "application/pkcs7-signature": ".p7s",
    "application/x-pkcs7-signature": ".p7s",
    "application/vnd.ms-excel": ".xls",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": ".pptx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "application/xml": ".xml",
    "application/zip": ".zip",
    "audio/mpeg": ".mp3",
    "audio/ogg": ".ogg",
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
    "image/bmp": ".bmp",
    "image/gif": ".gif",
    "image/heic": ".heic",
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/svg+xml": ".svg",
    "image/tiff": ".tif",
    "image/webp": ".webp",
    "message/delivery-status": ".txt",
    "message/disposition-notification": ".txt",
    "message/rfc822": ".eml",
    "text/calendar": ".ics",
    "text/csv": ".csv",
    "text/html": ".html",
    "text/rfc822-headers": ".txt",
    "text/vcard": ".vcf",
    "text/x-vcard": ".vcf",
    "text/xml": ".xml",
    "video/mp4": ".mp4",
}


def attachments(files: Iterable[FilePart]) -> tuple[list[Attachment], list[Blob]]:
    """Attachments in mail order and their blobs, each blob once. A part without a usable
    filename is named "attachment-N" (N counts the mail's files from 1) plus an extension
    guessed from its media type; a file repeated with the same name is listed once."""
    listed: list[Attachment] = []
    blobs: dict[str, Blob] = {}
    seen: set[tuple[str, str, str]] = set()
    for number, file in enumerate(files, 1):
        blob = Blob.of(file.data)
        name = safe_name(file.filename) or f"attachment-{number}{extension(file.media_type)}"
        if (name, file.media_type, blob.sha256) in seen:
            continue
        seen.add((name, file.media_type, blob.sha256))
        blobs.setdefault(blob.sha256, blob)
        listed.append(
            Attachment(
                name=name,
                media_type=file.media_type,
                size=len(file.data),
                sha256=blob.sha256,
                ref=blob.ref,
            )
        )
    return listed, list(blobs.values())


def safe_name(name: str | None) -> str | None:
    """The last path segment, one clean line, at most 255 characters (extension kept)."""
    if not name:
        return None
    name = clean_line(name.replace("\\", "/").rsplit("/", 1)[-1])
    if name in ("", ".", ".."):
        return None
    if len(name) > MAX_NAME:
        stem, dot, ext = name.rpartition(".")
        ext = f".{ext}" if dot and stem and len(ext) <= 16 else ""
        name = name[: MAX_NAME - len(ext)] + ext
    return name


def extension(media_type: str) -> str:
    if media_type in _EXTENSIONS:
        return _EXTENSIONS[media_type]
    return ".txt" if media_type.startswith("text/") else ".bin"
