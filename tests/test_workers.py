"""The parsing workers: mail is parsed in child processes that die with the daemon (also on
SIGKILL), behind a bounded queue that turns overload into 451 4.3.2."""

from __future__ import annotations

import asyncio
import signal
import smtplib
import time
from collections.abc import Callable
from email.message import EmailMessage

import httpx
import psutil
import pytest
from aio_pika.abc import AbstractChannel

from tests.conftest import bodies, collect
from tests.daemon import SUPPORT_ADDRESS, Daemon
from tests.local import LocalDaemon
from tests.test_smtp import mail, send

GONE_TIMEOUT_S = 20.0


def distinct(subject: str) -> EmailMessage:
    """A mail whose text differs from the others' (the same text would be a duplicate)."""
    message = mail(subject)
    message.set_content(f"Hello,\n{subject}: the printer on floor 3 is on fire.\nAnn\n")
    return message


def workers_of(daemon: Daemon) -> list[psutil.Process]:
    """The daemon's parsing workers: its spawned children (not the resource tracker)."""
    assert daemon.process is not None
    children = psutil.Process(daemon.process.pid).children()
    return [child for child in children if "spawn_main" in " ".join(child.cmdline())]


def descendants(daemon: Daemon) -> list[psutil.Process]:
    assert daemon.process is not None
    return psutil.Process(daemon.process.pid).children(recursive=True)


async def wait_gone(processes: list[psutil.Process], timeout_s: float = GONE_TIMEOUT_S) -> None:
    """Wait until every process has exited; fail naming the ones still there."""
    deadline = time.monotonic() + timeout_s
    while alive := [p for p in processes if p.is_running() and p.status() != "zombie"]:
        if time.monotonic() > deadline:
            raise AssertionError(f"still running: {[(p.pid, p.cmdline()) for p in alive]}")
        await asyncio.sleep(0.05)


async def started_worker(daemon: Daemon) -> list[psutil.Process]:
    """The workers after one mail (they start with the first mail, not with the daemon)."""
    answer = await asyncio.to_thread(send, daemon, distinct("Starts the worker"), [SUPPORT_ADDRESS])
    assert answer.startswith("250 "), answer
    return workers_of(daemon)


async def wait_value(daemon: Daemon, name: str, value: float) -> None:
    deadline = time.monotonic() + GONE_TIMEOUT_S
    while (await daemon.metrics()).get((name, ())) != value:
        assert time.monotonic() < deadline, f"{name} never reached {value}"
        await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_workers_die_with_a_killed_daemon_and_leave_no_process_behind(
    make_process: Callable[..., Daemon],
) -> None:
    daemon = await make_process().launch(env={"INGEST_WORKERS__PROCESSES": "2"})
    answers = await asyncio.gather(
        *(
            asyncio.to_thread(send, daemon, distinct(f"Before the kill {n}"), [SUPPORT_ADDRESS])
            for n in range(4)
        )
    )
    assert all(answer.startswith("250 ") for answer in answers), answers
    assert workers_of(daemon)  # one or two: the pool starts a second when the first is busy
    left = descendants(daemon)

    daemon.kill()  # SIGKILL: no chance to stop its children

    await wait_gone(left)


@pytest.mark.slow
async def test_a_stopped_daemon_leaves_no_process_behind(
    make_process: Callable[..., Daemon],
) -> None:
    daemon = await make_process().launch()
    answer = await asyncio.to_thread(send, daemon, mail("Before the stop"), [SUPPORT_ADDRESS])
    assert answer.startswith("250 ")
    left = descendants(daemon)
    assert workers_of(daemon)

    assert daemon.stop() == 0

    await wait_gone(left)


async def test_a_full_queue_answers_451_4_3_2_and_takes_the_mail_once_there_is_room(
    make_process: Callable[..., Daemon], amqp: AbstractChannel
) -> None:
    daemon = await make_process().launch(env={"INGEST_WORKERS__QUEUE": "0"})
    await wait_value(daemon, "ingest_parsing_capacity", 1.0)
    [worker] = await started_worker(daemon)
    worker.suspend()  # SIGSTOP: the one worker holds the first mail
    try:
        first = asyncio.create_task(
            asyncio.to_thread(send, daemon, distinct("First"), [SUPPORT_ADDRESS])
        )
        await wait_value(daemon, "ingest_parsing_in_hand", 1.0)

        # Refused before the data is sent: smtplib raises at DATA.
        with pytest.raises(smtplib.SMTPDataError) as refused:
            await asyncio.to_thread(send, daemon, distinct("Second"), [SUPPORT_ADDRESS])
        assert refused.value.smtp_code == 451
        assert refused.value.smtp_error.startswith(b"4.3.2 ")
    finally:
        worker.resume()
    assert (await first).startswith("250 ")

    again = await asyncio.to_thread(send, daemon, distinct("Second"), [SUPPORT_ADDRESS])
    assert again.startswith("250 ")
    cases = bodies(await collect(amqp, daemon.names.default, 3))
    assert sorted(case["subject"] for case in cases) == ["First", "Second", "Starts the worker"]
    assert daemon.alive()


async def test_a_killed_worker_is_replaced_and_mail_keeps_flowing(
    make_process: Callable[..., Daemon], amqp: AbstractChannel
) -> None:
    daemon = await make_process().launch()
    [worker] = await started_worker(daemon)
    worker.send_signal(signal.SIGKILL)
    await wait_gone([worker])

    answers = [
        await asyncio.to_thread(send, daemon, distinct(f"After the kill {i}"), [SUPPORT_ADDRESS])
        for i in range(3)
    ]

    # The pool notices the dead worker on the next job: that one may be asked to retry.
    assert all(a.startswith(("250 ", "451 4.3.0 ")) for a in answers), answers
    assert answers[-1].startswith("250 ")
    [replacement] = workers_of(daemon)
    assert replacement.pid != worker.pid
    accepted = 1 + sum(a.startswith("250 ") for a in answers)  # and the one that started it
    cases = bodies(await collect(amqp, daemon.names.default, accepted))
    assert len(cases) == accepted
    assert daemon.alive()


async def test_over_the_memory_budget_new_mail_is_refused_with_451_4_3_1(
    make_daemon: Callable[..., LocalDaemon],
) -> None:
    # A budget below what the daemon uses at rest: the budget is spent before any mail.
    daemon = await make_daemon().launch(env={"INGEST_LIMITS__MEMORY_MB": "1"})
    metrics = await daemon.metrics()
    assert metrics[("ingest_memory_bytes", ())] > metrics[("ingest_memory_budget_bytes", ())]

    with pytest.raises(smtplib.SMTPDataError) as refused:
        await asyncio.to_thread(send, daemon, distinct("No room"), [SUPPORT_ADDRESS])

    assert refused.value.smtp_code == 451
    assert refused.value.smtp_error.startswith(b"4.3.1 ")
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{daemon.url}/healthz")).status_code == 200
