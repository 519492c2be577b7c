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
    """A message on its way to the broker: body, id, headers and where it goes (the default
    exchange routes by queue name; spool files from before `exchange` existed have none)."""

    body: bytes
    message_id: str
    routing_key: str
    headers: dict[str, str]
    exchange: str = ""


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

    def __len__(self) -> int:
        return self._count

    def put(self, message: Outgoing) -> Path:
        """Write the message durably; when this returns, it survives a crash or power cut."""
        with self._lock:
            self._last_sequence = max(self._last_sequence + 1, time.time_ns())
            name = f"{self._last_sequence:020d}.json"
        record = asdict(message) | {"body": base64.b64encode(message.body).decode()}
        final = self._directory / name
        write_durably(final, json.dumps(record).encode(), temporary=self._incoming / name)
        with self._lock:
            self._count += 1
        return final

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
        path.unlink()
        fsync_directory(self._directory)
        with self._lock:
            self._count -= 1
