"""The local blob store: originals and attachments, content-addressed, written durably."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ingest.durable import fsync_directory, fsync_file, write_all_durably, write_durably
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

    def put_all(self, blobs: Iterable[Blob]) -> None:
        """Store several blobs durably, those not there yet, in one batch (see
        `write_all_durably`): a mail of a thousand parts is not a thousand fsyncs apart."""
        missing: dict[Path, bytes] = {}  # a mail may hold the same file twice
        for blob in blobs:
            path = self.path(blob.ref)
            if path not in missing and not path.exists():
                path.parent.mkdir(exist_ok=True)
                missing[path] = blob.data
        if missing:
            write_all_durably(list(missing.items()))

    def adopt(self, file: Path, ref: str) -> None:
        """Move a file holding the bytes of `ref` into the store, fsynced (a large mail
        written as it arrived becomes its original without being copied); the file is
        removed if the blob is there already."""
        path = self.path(ref)
        if path.exists():
            file.unlink(missing_ok=True)
            return
        path.parent.mkdir(exist_ok=True)
        fsync_file(file)
        os.replace(file, path)
        fsync_directory(path.parent)

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
