"""Where each mailbox stands: the folder's UIDVALIDITY and the highest UID already made safe.

Saved after every mail, so a restart resumes after the last safe mail and fetches nothing twice;
a crash between "safe" and "saved" refetches one mail, which the dispatcher drops as a repeat
(same Message-ID). A new UIDVALIDITY means the server renumbered the folder: the old position
means nothing and the folder is scanned again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

WriteDurably = Callable[[Path, bytes], None]


@dataclass(frozen=True, slots=True)
class Position:
    """A folder's UIDVALIDITY and the highest UID that is done (safe, or set aside)."""

    uidvalidity: int
    last_uid: int


class Ledger:
    """One JSON file per account under the daemon's data folder."""

    def __init__(self, path: Path, write_durably: WriteDurably) -> None:
        self._path = path
        self._write = write_durably
        path.parent.mkdir(parents=True, exist_ok=True)

    def load(self) -> Position | None:
        """The saved position, or None when the account has never been read (or the file is
        unreadable, which rescans the folder: repeats are dropped later, nothing is missed)."""
        try:
            return Position(**json.loads(self._path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError):
            return None

    def save(self, position: Position) -> None:
        self._write(self._path, json.dumps(asdict(position)).encode())
