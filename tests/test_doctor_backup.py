"""`ingest doctor` on a running installation and on broken ones; `ingest backup` taken while
the daemon runs, restored as the README says, and the restored daemon carrying on."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aio_pika.abc import AbstractChannel

from ingest.doctor import certificate_check
from tests.conftest import bodies, collect, forwarded_behind
from tests.daemon import SUPPORT_ADDRESS, free_port, ingest_command
from tests.local import LocalDaemon
from tests.proxy import TcpProxy
from tests.test_smtp import send
from tests.test_spool import wait_not_ready
from tests.test_web_api import MESSAGE, submit


def lines(result: subprocess.CompletedProcess[bytes]) -> dict[str, str]:
    """Each check's line by its name."""
    found = {}
    for line in result.stdout.decode().splitlines():
        status, name, *_ = line.split()
        found[name] = line
        assert status in ("ok", "warn", "FAIL"), line
    return found


async def test_doctor_passes_a_running_installation_and_says_what_to_fix(
    daemon: LocalDaemon,
) -> None:
    healthy = await ingest_command(daemon.settings_path, "doctor")
    assert healthy.returncode == 0, healthy.stdout.decode() + healthy.stderr.decode()
    checks = lines(healthy)
    assert set(checks) >= {"settings", "broker", "store", "rules", "disk"}
    assert all(line.startswith("ok") for line in checks.values()), checks

    unreachable = {"INGEST_BROKER__URL": f"amqp://guest:secretpw@127.0.0.1:{free_port()}/"}
    broken = await ingest_command(daemon.settings_path, "doctor", env=unreachable)
    assert broken.returncode == 1
    line = lines(broken)["broker"]
    assert line.startswith("FAIL") and "systemctl status rabbitmq-server" in line
    assert "secretpw" not in broken.stdout.decode()

    fresh = {"INGEST_STORE__URL": f"sqlite:///{daemon.workdir}/new.db"}
    line = lines(await ingest_command(daemon.settings_path, "doctor", env=fresh))["store"]
    assert line.startswith("FAIL") and "ingest db upgrade" in line


def test_a_certificate_close_to_its_end_is_reported(certificate: tuple[Path, Path]) -> None:
    cert, _ = certificate  # valid for one day
    now = datetime.now(UTC)
    assert certificate_check("smtp tls", cert, now).status == "warn"
    assert certificate_check("smtp tls", cert, now + timedelta(days=2)).status == "FAIL"
    assert certificate_check("smtp tls", cert.with_name("missing.pem"), now).status == "FAIL"


@pytest.mark.slow
async def test_a_backup_taken_while_running_restores_store_spool_and_quarantine(
    make_daemon: Callable[..., LocalDaemon],
    proxy: TcpProxy,
    amqp: AbstractChannel,
    tmp_path: Path,
) -> None:
    daemon = await make_daemon(proxy.amqp_url).launch()
    assert (
        await submit(daemon, MESSAGE, **{"Idempotency-Key": "before-backup"})
    ).status_code == 202
    [first] = bodies(await collect(amqp, daemon.names.default, 1))
    broken = b"Subject: no sender\r\n\r\nbody\r\n"
    refused = await asyncio.to_thread(send, daemon, broken, [SUPPORT_ADDRESS], "")
    assert refused.startswith("554")
    await proxy.cut()  # the broker goes: the next message waits in the spool
    await wait_not_ready(daemon)
    spooled = MESSAGE | {"text": "Spooled during the outage"}
    assert (await submit(daemon, spooled, **{"Idempotency-Key": "in-the-spool"})).status_code == 202

    taken = await ingest_command(daemon.settings_path, "backup", str(tmp_path / "backup"))
    assert taken.returncode == 0, taken.stderr
    await daemon.close()

    # Restore onto a "new server": the store file and the data folder put back.
    restored = tmp_path / "restored"
    (restored / "var").mkdir(parents=True)
    shutil.copy(tmp_path / "backup" / "ingest.db", restored / "ingest.db")
    shutil.copytree(tmp_path / "backup" / "data", restored / "var", dirs_exist_ok=True)
    again = LocalDaemon(restored, daemon.names)  # its store and data folder: the ones restored
    try:
        await again.launch()
        [late] = bodies(await collect(amqp, daemon.names.default, 1))
        assert late["text"] == "Spooled during the outage"
        assert late["customer"]["id"] == first["customer"]["id"], "the directory came back"
        assert (
            await submit(again, MESSAGE, **{"Idempotency-Key": "before-backup"})
        ).status_code == 202
        assert await forwarded_behind(amqp, daemon.names) == [], "a repeat, known to the store"
        listed = await ingest_command(again.settings_path, "quarantine", "list")
        assert "no sender address" in listed.stdout.decode()
    finally:
        await again.close()
