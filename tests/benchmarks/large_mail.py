"""Large mail, for `tests.benchmarks.mail`: one mail at the size limit, one of many parts,
and four large ones at once while health is asked, against any SMTP server whose process
(and its children: the daemon's parsing workers) can be watched.

RSS is the sum over the server process and all its descendants, sampled every 10 ms by a
thread of this process (shared pages are counted once per process, so the sum errs high).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.policy
import os
import smtplib
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage

import psutil

from tests.daemon import SUPPORT_ADDRESS

ATTACHMENT_BYTES = 18_000_000  # about 24.3 MB on the wire in base64, under the 25 MiB limit
PARTS = 5000
AT_ONCE = 4
SAMPLE_S = 0.01
SETTLE_S = 2.0  # RSS "afterwards" is read this long after the last answer
MB = 1e6


def large_mail(run_id: str, i: int) -> bytes:
    """A mail with one attachment of ATTACHMENT_BYTES random bytes."""
    message = _message(run_id, i, f"Large {i}")
    message.add_attachment(
        os.urandom(ATTACHMENT_BYTES), maintype="application", subtype="pdf", filename="scan.pdf"
    )
    return message.as_bytes(policy=email.policy.SMTP)


def many_parts(run_id: str, parts: int = PARTS) -> bytes:
    """A mail of `parts` small attached parts."""
    message = _message(run_id, 0, f"{parts} parts")
    for i in range(parts):
        message.add_attachment(
            f"line {i}\n".encode(), maintype="text", subtype="csv", filename=f"part{i}.csv"
        )
    return message.as_bytes(policy=email.policy.SMTP)


def _message(run_id: str, i: int, subject: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"Customer {i} <large{i}@customer.example.com>"
    message["To"] = SUPPORT_ADDRESS
    message["Subject"] = f"{subject} ({run_id})"
    message["Message-ID"] = f"<large-{run_id}-{subject.replace(' ', '-')}@customer.example.com>"
    message.set_content(f"Please see the attached files, {subject} of run {run_id}.\n")
    return message


def tree_rss(pid: int) -> int:
    """RSS in bytes of `pid` and every descendant (0 for those that vanished meanwhile)."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.Error:
            continue
    return total


@dataclass
class RssPeak:
    """The highest `tree_rss` seen while it runs (a thread sampling every SAMPLE_S)."""

    pid: int
    peak: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> RssPeak:
        self.peak = tree_rss(self.pid)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self.peak = max(self.peak, tree_rss(self.pid))


def send(port: int, wire: bytes) -> tuple[str, float]:
    """One mail over a new connection: the answer to DATA and the seconds from DATA to it."""
    with smtplib.SMTP("127.0.0.1", port, timeout=300) as client:
        client.ehlo("mta.customer.example")
        client.mail("bounces@customer.example.com", [f"SIZE={len(wire)}"])
        client.rcpt(SUPPORT_ADDRESS)
        started = time.perf_counter()
        code, answer = client.data(wire)
        return f"{code} {answer.decode()[:60]}", time.perf_counter() - started


@contextlib.contextmanager
def health_probe(url: str | None) -> Iterator[Callable[[], float | None]]:
    """Ask `url` every 20 ms from a process of its own while the block runs; the callable
    then gives the slowest answer in ms (None without a URL)."""
    if url is None:
        yield lambda: None
        return
    command = [sys.executable, "-m", "tests.benchmarks.health_probe", url]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    result: list[float] = []
    try:
        yield lambda: result[0] if result else None
    finally:
        out, _err = process.communicate("", timeout=60)
        result.append(float(out.strip() or "inf"))


@dataclass(frozen=True)
class Figures:
    """One step: the slowest answer, the answers, and RSS before, at peak and after (bytes)."""

    seconds: float
    answers: list[str]
    before: int
    peak: int
    after: int
    health_ms: float | None = None

    def line(self, name: str, size: int) -> str:
        codes = ",".join(sorted({answer[:3] for answer in self.answers}))
        text = (
            f"{name:<22} answer {codes} in {self.seconds:6.2f} s; RSS {self.before / MB:5.0f} MB, "
            f"peak +{(self.peak - self.before) / MB:4.0f} MB "
            f"({(self.peak - self.before) / size:4.1f}x the mail), "
            f"after +{(self.after - self.before) / MB:4.0f} MB"
        )
        if self.health_ms is not None:
            text += f"; slowest /healthz {self.health_ms:.0f} ms"
        return text


async def step(port: int, pid: int, wires: list[bytes], health_url: str | None = None) -> Figures:
    """Send `wires` at once (one connection each), watching RSS and, if given, health."""
    before = tree_rss(pid)
    with health_probe(health_url) as slowest, RssPeak(pid) as peak:
        results = await asyncio.gather(*(asyncio.to_thread(send, port, w) for w in wires))
    await asyncio.sleep(SETTLE_S)
    health = slowest()
    return Figures(
        max(seconds for _answer, seconds in results),
        [answer for answer, _seconds in results],
        before,
        peak.peak,
        tree_rss(pid),
        health,
    )


async def run_large(name: str, port: int, pid: int, health_url: str | None = None) -> None:
    """The three large-mail steps against one server; prints a line each."""
    run_id = uuid.uuid4().hex[:8]
    one = large_mail(run_id, 0)
    print(f"{name}: one large mail ({len(one) / MB:.1f} MB on the wire)")
    print("  " + (await step(port, pid, [one])).line("one large mail", len(one)))
    parts = many_parts(run_id)
    print("  " + (await step(port, pid, [parts])).line(f"{PARTS} parts", len(parts)))
    several = [large_mail(run_id, i) for i in range(1, AT_ONCE + 1)]
    figures = await step(port, pid, several, health_url)
    print("  " + figures.line(f"{AT_ONCE} large at once", sum(map(len, several))))
