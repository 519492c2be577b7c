"""The daemon under systemd: `Type=notify` readiness, watchdog pings and stopping, through a
real notification socket; and the shipped unit files checked by `systemd-analyze verify`."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.daemon import Daemon

UNITS = Path(__file__).parent.parent / "deploy" / "systemd"


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.setblocking(False)
    yield sock
    sock.close()


async def next_notification(sock: socket.socket, timeout_s: float = 30.0) -> str:
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout_s):
        return (await loop.sock_recv(sock, 4096)).decode()


@pytest.mark.slow
async def test_ready_watchdog_and_stopping_are_told_to_systemd(
    make_process: Callable[..., Daemon], notify_socket: socket.socket, tmp_path: Path
) -> None:
    daemon = make_process()
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "400000"}
    daemon.start(env=env)
    first = await next_notification(notify_socket)
    assert first.splitlines() == ["READY=1", "STATUS=running (all)"]
    await daemon.wait_ready()  # ready was told once the daemon answers
    pings = [await next_notification(notify_socket) for _ in range(3)]
    assert pings == ["WATCHDOG=1"] * 3
    daemon.signal(signal.SIGTERM)
    while (told := await next_notification(notify_socket)) == "WATCHDOG=1":
        pass
    assert told.splitlines() == ["STOPPING=1", "STATUS=draining"]
    assert await daemon.wait_exit(60) == 0


def installed_units(folder: Path, source: Path = UNITS, prefix: str = "@PREFIX@") -> Path:
    """The units with their prefix pointing into `folder`, where an `ingest` executable
    stands (verify checks that ExecStart is executable): the shipped ones (@PREFIX@), or as
    install.sh wrote them (its --prefix)."""
    here = folder / "opt" / "ingest"
    (here / "venv" / "bin").mkdir(parents=True, exist_ok=True)
    binary = here / "venv" / "bin" / "ingest"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    units = folder / "units"
    for path in source.rglob("*"):
        target = units / path.relative_to(source)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(path.read_text().replace(prefix, str(here)))
    return units


def verify_units(units: Path) -> None:
    """`systemd-analyze verify` on the units, drop-in included: no error, no warning."""
    names = [
        "ingest-all.service",
        "ingest-channels.service",
        "ingest-dispatcher@0.service",
        "ingest-report.service",
    ]
    environment = os.environ | {"SYSTEMD_UNIT_PATH": f"{units}:"}
    verified = subprocess.run(
        ["systemd-analyze", "verify", *names, "ingest-report.timer"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stderr.strip() == "", verified.stderr
    for name in names:  # the shared hardening drop-in is in effect for each
        rated = subprocess.run(
            ["systemd-analyze", "security", "--offline=yes", "--no-pager", name],
            capture_output=True,
            text=True,
            env=environment,
            timeout=60,
        )
        found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", rated.stdout)
        assert found, rated.stdout + rated.stderr
        assert float(found[1]) <= 2.0, f"{name} exposure {found[1]}:\n{rated.stdout}"


def test_the_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    verify_units(installed_units(tmp_path))
