"""deploy/install.sh into a folder standing in for a server's root: the service user, the
folders and their modes, the venv, the units (verified), a starting settings file that checks,
a migrated store; then again, as an upgrade that keeps what the admin changed."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.test_systemd import installed_units, verify_units

pytestmark = pytest.mark.slow  # builds a venv: about a minute and a half

INSTALL = Path(__file__).parent.parent / "deploy" / "install.sh"
PREFIX = "/opt/ingest"


def install(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = ["bash", str(INSTALL), "--root", str(root), "--prefix", PREFIX, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def owner(path: Path) -> tuple[int, int, str]:
    status = path.stat()
    return status.st_uid, status.st_gid, oct(status.st_mode & 0o777)


def test_install_then_upgrade_into_a_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    for name in ("passwd", "group", "shadow", "gshadow"):  # as on a fresh server
        shutil.copy(f"/etc/{name}", root / "etc" / name)

    first = install(root, "--dispatchers", "2")
    assert first.returncode == 0, first.stdout + first.stderr
    [user] = [
        line
        for line in (root / "etc/passwd").read_text().splitlines()
        if line.startswith("ingest:")
    ]
    _, _, uid, gid, _, home, shell = user.split(":")
    assert (home, shell) == ("/var/lib/ingest", "/usr/sbin/nologin")
    assert int(uid) < 1000, "a system user"
    assert owner(root / "etc/ingest") == (0, int(gid), "0o750")
    assert owner(root / "etc/ingest/secrets.env") == (0, int(gid), "0o640")
    assert owner(root / "var/lib/ingest") == (int(uid), int(gid), "0o750")
    assert "INGEST_HTTP__PORT=8091" in (root / "etc/ingest/dispatcher-1.env").read_text()

    ingest = root / PREFIX.lstrip("/") / "venv" / "bin" / "ingest"
    settings = root / "etc/ingest/settings.toml"
    checked = subprocess.run(
        [str(ingest), "rules", "check", "--settings", str(settings)], capture_output=True, text=True
    )
    assert (checked.returncode, checked.stderr) == (0, ""), "a fresh install is quiet"
    text = settings.read_text()
    assert 'url = "sqlite:////var/lib/ingest/ingest.db"' in text and 'format = "json"' in text
    with sqlite3.connect(root / "var/lib/ingest/ingest.db") as store:
        [(revision,)] = store.execute("SELECT version_num FROM alembic_version").fetchall()
    assert revision, "the store was migrated"

    units = root / "etc/systemd/system"
    unit = (units / "ingest-all.service").read_text()
    assert f"ExecStart={PREFIX}/venv/bin/ingest run --role all" in unit
    verify_units(installed_units(tmp_path / "verify", units, PREFIX))

    settings.write_text(text.replace("port = 8080", "port = 8181"))  # the admin's change
    secrets = (root / "etc/ingest/secrets.env").read_text()
    again = install(root)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "port = 8181" in settings.read_text(), "an upgrade keeps the settings"
    assert (root / "etc/ingest/secrets.env").read_text() == secrets
    assert (root / "etc/passwd").read_text().count("\ningest:") == 1
    assert "migrating the store" in again.stdout
