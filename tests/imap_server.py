"""A real Dovecot IMAP server for the tests, on a free loopback port, with its own folder.

Debian's `dovecot-imapd` is run directly (`dovecot -F`) with tests/dovecot/dovecot.conf, as
whoever runs the tests; `deploy/local/test.sh` installs it on a fresh machine.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import string
import subprocess
import tempfile
import time
from pathlib import Path

from imapclient import IMAPClient

from tests.daemon import free_port

CONFIG_TEMPLATE = Path(__file__).parent / "dovecot" / "dovecot.conf"
DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
USER = "support@example.com"
SECOND_USER = "billing@example.com"
PASSWORD = "imap-test-password"
START_TIMEOUT_S = 15.0
# Dovecot's own list, less IDLE, when a test wants a server that can only be polled.
WITHOUT_IDLE = (
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE SORT SORT=DISPLAY THREAD=REFERENCES "
    "THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN "
    "NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES "
    "WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW "
    "STATUS=SIZE SAVEDATE LITERAL+ NOTIFY SPECIAL-USE"
)


class Dovecot:
    """start(), client(), append(), stop(); the ports are free when created.

    With a certificate, STARTTLS is offered on `port` and implicit TLS on `tls_port`.
    """

    def __init__(
        self,
        *,
        idle: bool = True,
        certificate: tuple[Path, Path] | None = None,
        introspection_url: str | None = None,
    ) -> None:
        # Its own folder that Dovecot's unprivileged processes may enter (pytest's are 0700).
        self.root = Path(tempfile.mkdtemp(prefix="ingest-dovecot-"))
        self.root.chmod(0o755)
        self.port = free_port()
        self.tls_port = free_port() if certificate else 0
        self._certificate = certificate
        self._idle = idle
        self._introspection_url = introspection_url
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.root / "dovecot.conf"

    def start(self) -> Dovecot:
        uid, gid = os.getuid(), os.getgid()
        user, group = pwd.getpwuid(uid).pw_name, grp.getgrgid(gid).gr_name
        if uid == 0:
            # Dovecot refuses root for its login, internal and mail processes.
            user = group = "dovecot"
            entry = pwd.getpwnam(user)
            uid, gid = entry.pw_uid, entry.pw_gid
        for folder in ("run", "state", "mail", "home"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        for folder in ("mail", "home"):
            os.chown(self.root / folder, uid, gid)
        users = "".join(f"{name}:{{PLAIN}}{PASSWORD}\n" for name in (USER, SECOND_USER))
        (self.root / "users").write_text(users)
        ssl_settings = "ssl = no"
        if self._certificate:
            cert, key = self._certificate
            ssl_settings = f"ssl = yes\nssl_cert = <{cert}\nssl_key = <{key}"
        values = {
            "root": str(self.root),
            "user": user,
            "group": group,
            "login_user": "dovenull" if os.getuid() == 0 else user,
            "uid": str(uid),
            "gid": str(gid),
            "port": str(self.port),
            "tls_port": str(self.tls_port),
            "ssl_settings": ssl_settings,
            # Dovecot's default when empty; a list without IDLE otherwise.
            "capability": "" if self._idle else WITHOUT_IDLE,
        }
        values |= self._oauth2_settings()
        template = string.Template(CONFIG_TEMPLATE.read_text())
        self.config.write_text(template.substitute(values))
        with (self.root / "stderr.log").open("ab") as stderr:
            self._process = subprocess.Popen(
                [DOVECOT, "-F", "-c", str(self.config)], stdout=subprocess.DEVNULL, stderr=stderr
            )
        try:
            self._wait_until_listening()
        except BaseException:
            self.stop()
            raise
        return self

    def _oauth2_settings(self) -> dict[str, str]:
        """With an introspection URL, XOAUTH2 and OAUTHBEARER are offered and their tokens
        checked there (Dovecot's oauth2 passdb, RFC 7662 introspection by POST)."""
        if self._introspection_url is None:
            return {"oauth2_mechanisms": "", "oauth2_passdb": ""}
        settings = self.root / "dovecot-oauth2.conf.ext"
        settings.write_text(
            "introspection_mode = post\n"
            f"introspection_url = {self._introspection_url}\n"
            "force_introspection = yes\n"
            "username_attribute = username\n"
            "active_attribute = active\n"
            "active_value = true\n"
        )
        passdb = (
            "passdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n"
            f"  args = {settings}\n}}"
        )
        return {"oauth2_mechanisms": "xoauth2 oauthbearer", "oauth2_passdb": passdb}

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                stderr = (self.root / "stderr.log").read_text(errors="replace")
                raise RuntimeError(f"dovecot exited: {stderr}{self.log_text()}")
            try:
                with self.client():
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"dovecot did not listen on {self.port}: {self.log_text()}")

    def client(self, user: str = USER) -> IMAPClient:
        """A logged-in client, as a context manager."""
        client = IMAPClient("127.0.0.1", port=self.port, ssl=False, timeout=10)
        client.login(user, PASSWORD)
        return client

    def append(
        self,
        message: bytes,
        folder: str = "INBOX",
        flags: tuple[bytes, ...] = (),
        user: str = USER,
    ) -> int:
        """Deliver a mail with APPEND; return its UID."""
        with self.client(user) as client:
            answer = client.append(folder, message, flags=flags)
        # "[APPENDUID <uidvalidity> <uid>] ..." (UIDPLUS)
        return int(answer.split(b"]")[0].split()[-1])

    def uids(self, folder: str, criteria: str = "ALL") -> list[int]:
        with self.client() as client:
            if not client.folder_exists(folder):
                return []
            client.select_folder(folder, readonly=True)
            return sorted(client.search(criteria))

    def flags(self, folder: str = "INBOX") -> dict[int, tuple[bytes, ...]]:
        with self.client() as client:
            client.select_folder(folder, readonly=True)
            return {uid: flags for uid, flags in client.get_flags(client.search("ALL")).items()}

    def log_text(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Stop the server; `remove()` also deletes its folder."""
        if self._process and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=10)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
