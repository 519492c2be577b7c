"""The refresh token on disk: one small JSON file per mailbox or relay, mode 0600.

The file is the one place of an authorization's state, shared by the daemon, `ingest doctor`
and `ingest ... authorize`: the refresh token (replaced atomically when the provider rotates
it), and, once the provider refused it, why (so that the refusal lasts across restarts and
the doctor can tell). A token given by an environment variable is used until the provider
rotates it; the file then records which variable's value it replaced (as a hash), so that an
admin who puts a new token in the variable is heard.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

WriteDurably = Callable[[Path, bytes], None]
FOLDER = "oauth2"


def token_path(data_dir: Path, owner: str) -> Path:
    """The file of one authorization: `imap-<account>` or `outbound-mail`."""
    return data_dir / FOLDER / f"{owner}.json"


@dataclass(frozen=True, slots=True)
class Grant:
    """A refresh token and what is known of it."""

    refresh_token: str | None
    refused: str | None = None
    """The provider's refusal (invalid_grant: revoked or expired), until authorized again."""
    from_env: str | None = None
    """sha256 of the environment variable's token this one descends from, if any."""
    saved_at: str | None = None
    scope: str | None = None

    def refusing(self, reason: str) -> Grant:
        return replace(self, refused=reason)


def fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """Reads the grant afresh each time (another process may have authorized or rotated)."""

    def __init__(self, path: Path, write_durably: WriteDurably, env_name: str | None) -> None:
        self.path = path
        self._write = write_durably
        self._env_name = env_name

    def load(self) -> Grant | None:
        """The grant in force: the file's, unless the environment holds a token the file
        does not descend from; None when there is neither."""
        env_token = os.environ.get(self._env_name) if self._env_name else None
        stored = self._read()
        if env_token and (
            stored is None or (stored.from_env not in (None, fingerprint(env_token)))
        ):
            return Grant(env_token, from_env=fingerprint(env_token))
        return stored

    def _read(self) -> Grant | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            raise OSError(f"{self.path}: unreadable token file ({error})") from None
        fields = {key: data.get(key) for key in Grant.__dataclass_fields__}
        return Grant(**fields)

    def save(self, grant: Grant) -> None:
        """Atomically, mode 0600, in a folder only the daemon's user can enter."""
        with self._locked():
            self._save(grant)

    def save_if_current(self, spent: str, grant: Grant) -> bool:
        """Save unless the grant in force no longer holds the refresh token `spent` (an
        admin authorized again meanwhile, or another process rotated it): then the newer
        one stays, and False says so."""
        with self._locked():
            current = self.load()
            if current is not None and current.refresh_token != spent:
                return False
            self._save(grant)
            return True

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time, across processes (the daemon, `authorize`)."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock = self.path.with_name(f".{self.path.name}.lock")
        with lock.open("a") as file:
            fcntl.flock(file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(file, fcntl.LOCK_UN)

    def _save(self, grant: Grant) -> None:
        stamped = replace(grant, saved_at=datetime.now(UTC).isoformat(timespec="seconds"))
        data = json.dumps(asdict(stamped), indent=1).encode()
        self._write(self.path, data)  # a mkstemp file: created 0600, renamed into place
        os.chmod(self.path, 0o600)  # in case a writer made it otherwise

    def mode(self) -> int | None:
        """The file's permission bits, or None when there is no file."""
        try:
            return self.path.stat().st_mode & 0o777
        except FileNotFoundError:
            return None
