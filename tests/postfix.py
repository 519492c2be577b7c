"""A real Postfix (Debian's) of the test's own: its own configuration and queue folders, one
SMTP listener on a loopback port, logging to a file; relaying to the daemon with the lines
of deploy/postfix/main.cf. Needs root (Postfix starts as root and drops to `postfix`)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.daemon import free_port

DEPLOY = Path(__file__).parent.parent / "deploy" / "postfix"
SERVICES = """\
{listen} inet n - n - - smtpd
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
local unix - n n - - local
lmtp unix - - n - - lmtp
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"""


class Postfix:
    """`start()`, `port`, `deferred()`, `flush()`, `log()`, `stop()`."""

    def __init__(self, domains: list[str], lmtp: str, recipients: Path) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="ingest-postfix-"))
        self.port = free_port()
        self.config = self.folder / "etc"
        self.queue = self.folder / "queue"
        self.config.mkdir()
        self.queue.mkdir()
        self.folder.chmod(0o755)  # mkdtemp's 0700 would keep Postfix's own user out
        fragment = (DEPLOY / "main.cf").read_text()
        fragment = (
            fragment.replace("@DOMAINS@", ", ".join(domains))
            .replace("@TRANSPORTS@", ", ".join(f"{d}=lmtp:inet:{lmtp}" for d in domains))
            .replace("@RECIPIENTS@", str(recipients))
            .replace("minimal_backoff_time = 300s", "minimal_backoff_time = 1s")
        )
        (self.config / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {self.queue}
data_directory = {self.folder / "data"}
maillog_file_prefixes = {self.folder}
maillog_file = {self.folder / "maillog"}
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mx.test.example
mydestination =
local_recipient_maps =
# The test's client on loopback is treated as the Internet.
mynetworks = 192.0.2.1/32
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
queue_run_delay = 1s
maximal_backoff_time = 2s
{fragment}""")
        (self.config / "master.cf").write_text(SERVICES.format(listen=f"127.0.0.1:{self.port}"))

    def postfix(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["postfix", "-c", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    def start(self) -> Postfix:
        self.postfix("check")  # makes the queue's folders with their owners and modes
        started = self.postfix("start")
        if started.returncode != 0:
            raise RuntimeError(f"postfix did not start: {started.stderr}\n{self.log()}")
        return self

    def deferred(self) -> list[Path]:
        """Mails in the deferred queue (tried and refused, or the daemon unreachable)."""
        folder = self.queue / "deferred"
        return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []

    def queued(self) -> list[Path]:
        """Mails anywhere in Postfix's queues."""
        found: list[Path] = []
        for name in ("incoming", "active", "deferred", "hold", "maildrop"):
            folder = self.queue / name
            found += [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []
        return found

    def flush(self) -> None:
        """Try every deferred mail now."""
        self.postfix("flush")

    def log(self) -> str:
        path = self.folder / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        self.postfix("stop")
        shutil.rmtree(self.folder, ignore_errors=True)
