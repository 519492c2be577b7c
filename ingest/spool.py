"""The local spool: messages the broker could not take, fsynced, drained in order later.

Each message is one file named by a sequence number, written to a temporary name, fsynced,
renamed into place and the folder fsynced, so a crash leaves either the whole message or none.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ingest.durable import fsync_directory, write_durably


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message on its way to the broker: body, id, headers and where it goes (the channels'
    intake exchange routes by queue name; older spool files may say "", the default one)."""

    body: bytes
    message_id: str
    routing_key: str
    headers: dict[str, str]
    exchange: str = ""


class SpoolFull(Exception):
    """The spool has reached its size limit (`[spool] max_mb`)."""


class Spool:
    """A folder of pending messages; safe to use from worker threads."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._incoming = directory / "incoming"
        self._incoming.mkdir(parents=True, exist_ok=True)
        for leftover in self._incoming.iterdir():
            leftover.unlink()  # a write that crashed before its rename never counted as safe
        self._lock = threading.Lock()
        pending = self.pending()
        self._last_sequence = int(pending[-1].stem) if pending else 0
        self._count = len(pending)
        self._bytes = sum(path.stat().st_size for path in pending)

    def __len__(self) -> int:
        return self._count

    @property
    def size_bytes(self) -> int:
        """What the pending messages take on disk (their files, not counting the folder)."""
        return self._bytes

    def put(self, message: Outgoing, limit_bytes: int | None = None) -> Path:
        """Write the message durably; when this returns, it survives a crash or power cut.

        With `limit_bytes`, raise `SpoolFull` instead when the spool would grow past it.
        """
        data = self.encode(message)
        with self._lock:
            if limit_bytes is not None and self._bytes + len(data) > limit_bytes:
                raise SpoolFull(f"the local spool is full ({self._bytes} of {limit_bytes} bytes)")
            self._last_sequence = max(self._last_sequence + 1, time.time_ns())
            name = f"{self._last_sequence:020d}.json"
            self._bytes += len(data)  # reserved now, so that concurrent writers see it
        final = self._directory / name
        try:
            write_durably(final, data, temporary=self._incoming / name)
        except BaseException:
            with self._lock:
                self._bytes -= len(data)
            raise
        with self._lock:
            self._count += 1
        return final

    @staticmethod
    def encode(message: Outgoing) -> bytes:
        """The bytes a spooled message takes on disk."""
        record = asdict(message) | {"body": base64.b64encode(message.body).decode()}
        return json.dumps(record).encode()

    def pending(self) -> list[Path]:
        """Spooled files, oldest first."""
        return sorted(self._directory.glob("*.json"))

    @staticmethod
    def load(path: Path) -> Outgoing:
        """Read one spooled message back."""
        record = json.loads(path.read_bytes())
        record["body"] = base64.b64decode(record["body"])
        return Outgoing(**record)

    def remove(self, path: Path) -> None:
        """Forget a message the broker has confirmed."""
        size = path.stat().st_size
        path.unlink()
        fsync_directory(self._directory)
        with self._lock:
            self._count -= 1
            self._bytes -= size
