"""The blob store: content-addressed files, written durably, one batch for many."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.blobstore import BlobStore
from normalizer.blobs import Blob


def test_a_batch_stores_each_blob_once_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    kept = Blob.of(b"already there")
    store.put(kept)
    blobs = [Blob.of(f"part {i}".encode()) for i in range(50)]

    store.put_all([*blobs, blobs[0], kept])

    for blob in [*blobs, kept]:
        assert store.get(blob.ref) == blob.data
    files = [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]
    assert len(files) == 51
    assert not [p for p in files if p.name.endswith(".tmp")]


def test_a_single_blob_is_stored_whole_under_its_reference(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    blob = Blob.of(b"the original mail")

    store.put_all([blob])
    store.put_all([blob])  # there already: nothing written again

    assert store.get(blob.ref) == blob.data
    files = [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]
    assert files == [store.path(blob.ref)]


def test_a_bad_reference_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a blob reference"):
        BlobStore(tmp_path).get("sha256:../../etc/passwd")
