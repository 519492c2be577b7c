"""Content addresses for stored bytes: the normalizer names blobs, ingest stores them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

REF_PREFIX = "sha256:"


@dataclass(frozen=True, slots=True)
class Blob:
    """Bytes to keep in the blob store under their sha256 (an attachment, an original)."""

    data: bytes
    sha256: str

    @classmethod
    def of(cls, data: bytes) -> Blob:
        return cls(data, hashlib.sha256(data).hexdigest())

    @property
    def ref(self) -> str:
        """The reference carried in messages: `sha256:<hex>`."""
        return REF_PREFIX + self.sha256
