"""Quarantine: what could not become a case-open, kept with its reason for inspection."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from ingest.blobstore import BlobStore
from ingest.durable import write_durably
from normalizer.blobs import Blob


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    """One kept original: where it came from, why it was refused, and its bytes' reference."""

    id: str
    channel: str
    adapter: str
    touchpoints: list[str]
    received_at: str
    reason: str
    raw_ref: str
    payload: str = "mail"
    """The payload kind (`normalizer.envelope.PAYLOAD_KINDS`) the kept bytes decode as."""
    source_id: str | None = None


class Quarantine:
    """Entries as JSON files under `<data_dir>/quarantine/`, originals in the blob store."""

    def __init__(self, directory: Path, blobs: BlobStore) -> None:
        self._directory = directory
        self._blobs = blobs
        directory.mkdir(parents=True, exist_ok=True)

    def keep(
        self,
        entry_id: str,
        raw: bytes,
        *,
        channel: str,
        adapter: str,
        touchpoints: list[str],
        received_at: datetime,
        reason: str,
        payload: str = "mail",
        source_id: str | None = None,
    ) -> QuarantineEntry:
        """Store the original and its reason durably; return the entry."""
        ref = self._blobs.put(Blob.of(raw))
        entry = QuarantineEntry(
            entry_id,
            channel,
            adapter,
            touchpoints,
            received_at.isoformat(),
            reason,
            ref,
            payload,
            source_id,
        )
        text = json.dumps(asdict(entry), ensure_ascii=False, indent=2)
        write_durably(self._directory / f"{entry_id}.json", text.encode())
        return entry

    def __len__(self) -> int:
        """Entries waiting for someone to look (replayed ones not counted)."""
        return sum(1 for _ in self._directory.glob("*.json"))

    def entries(self) -> list[QuarantineEntry]:
        """Every entry, oldest first (ids are time-sortable)."""
        return [self._load(path) for path in sorted(self._directory.glob("*.json"))]

    def get(self, entry_id: str) -> QuarantineEntry:
        """One entry; FileNotFoundError when unknown."""
        return self._load(self._directory / f"{Path(entry_id).name}.json")

    def mark_replayed(self, entry_id: str) -> None:
        """Move an entry aside once its message went through; the original stays stored."""
        done = self._directory / "replayed"
        done.mkdir(exist_ok=True)
        name = f"{Path(entry_id).name}.json"
        os.replace(self._directory / name, done / name)

    @staticmethod
    def _load(path: Path) -> QuarantineEntry:
        return QuarantineEntry(**json.loads(path.read_text(encoding="utf-8")))
