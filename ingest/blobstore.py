"""The local blob store: originals and attachments, content-addressed, written durably."""

from __future__ import annotations

from pathlib import Path

from ingest.durable import write_durably
from normalizer.blobs import REF_PREFIX, Blob


class BlobStore:
    """Files under `<data_dir>/blobs/ab/<sha256>`; writing the same bytes twice is a no-op."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def put(self, blob: Blob) -> str:
        """Store the bytes (fsynced) unless they are there already; return the reference."""
        path = self.path(blob.ref)
        if path.exists():
            return blob.ref
        path.parent.mkdir(exist_ok=True)
        write_durably(path, blob.data)
        return blob.ref

    def get(self, ref: str) -> bytes:
        """The bytes behind a reference; FileNotFoundError when unknown."""
        return self.path(ref).read_bytes()

    def path(self, ref: str) -> Path:
        """Where a reference lives; ValueError for anything but `sha256:<64 hex>`."""
        digest = ref.removeprefix(REF_PREFIX)
        if not ref.startswith(REF_PREFIX) or len(digest) != 64 or not _is_hex(digest):
            raise ValueError(f"not a blob reference: {ref!r}")
        return self._directory / digest[:2] / digest


def _is_hex(text: str) -> bool:
    return all(ch in "0123456789abcdef" for ch in text)
