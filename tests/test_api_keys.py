"""API keys made by `ingest keys`: hashed in the store, scoped, last use recorded, revoked on
a running daemon within a second; keys from the settings file keep working."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.daemon import API_KEY, ingest_command, run_ingest
from tests.local import LocalDaemon
from tests.waiting import until

MESSAGE = {"sender": {"email": "ann@example.com"}, "text": "Where is my parcel?"}
LOGGED = {
    "channel": "logged",
    "via": "walk-in",
    "agent_id": "agent-7",
    "sender": {"email": "ann@example.com"},
    "text": "Came by the counter about the parcel.",
}


async def create_key(daemon: LocalDaemon, name: str, *options: str) -> str:
    made = await ingest_command(daemon.settings_path, "keys", "create", name, *options)
    assert made.returncode == 0, made.stderr.decode()
    [key] = made.stdout.decode().split()
    return key


async def post(daemon: LocalDaemon, key: str, body: object = MESSAGE) -> httpx.Response:
    async with httpx.AsyncClient(base_url=daemon.url) as client:
        return await client.post(
            "/api/v1/messages", json=body, headers={"Authorization": f"Bearer {key}"}
        )


def stored_keys(daemon: LocalDaemon) -> list[tuple[str, ...]]:
    with sqlite3.connect(daemon.workdir / "ingest.db") as db:
        return db.execute(
            "SELECT name, digest, prefix, scopes, last_used_at, revoked_at FROM api_keys"
        ).fetchall()


async def test_a_key_is_shown_once_stored_as_a_hash_and_its_use_recorded(
    make_daemon: Callable[..., LocalDaemon],
) -> None:
    daemon = await make_daemon().launch()
    key = await create_key(daemon, "shop")
    assert key.startswith("ik_") and len(key) > 40

    [(name, digest, prefix, scopes, last_used, revoked)] = stored_keys(daemon)
    assert (name, scopes, last_used, revoked) == ("shop", "web", None, None)
    assert digest == hashlib.sha256(key.encode()).hexdigest()
    assert key.startswith(prefix) and len(prefix) < 16
    files = [p for p in daemon.workdir.glob("ingest.db*") if p.is_file()]
    assert not any(key.encode() in path.read_bytes() for path in files)

    # The daemon took the key up without a restart, and records its use.
    assert (await post(daemon, key)).status_code == 202  # at once: no wait for a reload
    await until(lambda: stored_keys(daemon)[0][4] is not None, "last use recorded", 10)
    listed = await ingest_command(daemon.settings_path, "keys", "list")
    lines = listed.stdout.decode().splitlines()
    assert lines[0].split() == [
        "NAME",
        "PREFIX",
        "SCOPES",
        "LIMIT",
        "CREATED",
        "LAST",
        "USED",
        "REVOKED",
    ]
    row = lines[1].split()
    assert row[:4] == ["shop", prefix + "...", "web", "default"]
    assert row[-1] == "-" and row[-2] != "-"  # used, not revoked


async def test_a_revoked_key_is_refused_within_seconds_without_a_restart(
    make_daemon: Callable[..., LocalDaemon],
) -> None:
    daemon = await make_daemon().launch()
    key = await create_key(daemon, "old-shop")
    assert (await post(daemon, key)).status_code == 202  # at once: no wait for a reload

    revoked = await ingest_command(daemon.settings_path, "keys", "revoke", "old-shop")
    assert revoked.returncode == 0 and revoked.stdout.decode() == "key 'old-shop' revoked\n"
    since = time.monotonic()
    while (answer := await post(daemon, key)).status_code == 202:
        # The keys are read again every half second; the rest is room for a loaded machine.
        assert time.monotonic() - since < 5, "the revoked key still works"
        await asyncio.sleep(0.05)
    print(f"the revoked key was refused {time.monotonic() - since:.2f} s after the command")
    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/problem+json"
    assert stored_keys(daemon)[0][5] is not None
    again = await ingest_command(daemon.settings_path, "keys", "revoke", "old-shop")
    assert again.stdout.decode() == "key 'old-shop' was already revoked\n"
    # The settings file's key is untouched.
    assert (await post(daemon, API_KEY)).status_code == 202


async def test_scopes_separate_web_submissions_from_logged_contacts(
    make_daemon: Callable[..., LocalDaemon],
) -> None:
    daemon = await make_daemon().launch()
    web = await create_key(daemon, "website")
    agents = await create_key(daemon, "agent-tool", "--scope", "logged")
    both = await create_key(daemon, "crm", "--scope", "web", "--scope", "logged")

    assert (await post(daemon, web)).status_code == 202
    refused = await post(daemon, web, LOGGED)
    assert refused.status_code == 403
    assert "may not submit channel 'logged'" in refused.json()["detail"]
    assert (await post(daemon, agents, LOGGED)).status_code == 202
    assert (await post(daemon, agents)).status_code == 403
    assert [(await post(daemon, both, body)).status_code for body in (MESSAGE, LOGGED)] == [
        202,
        202,
    ]
    # The settings file's keys have every scope.
    assert (await post(daemon, API_KEY, LOGGED)).status_code == 202


async def test_key_commands_refuse_what_they_cannot_do(
    make_daemon: Callable[..., LocalDaemon],
) -> None:
    daemon = make_daemon()  # not started: the commands work on the store alone
    await create_key(daemon, "shop")
    taken = await ingest_command(daemon.settings_path, "keys", "create", "shop")
    assert taken.returncode == 1
    assert "a key named 'shop' exists" in taken.stderr.decode()
    bad_name = await ingest_command(daemon.settings_path, "keys", "create", "no spaces")
    assert bad_name.returncode == 2
    bad_scope = await ingest_command(
        daemon.settings_path, "keys", "create", "x", "--scope", "admin"
    )
    assert bad_scope.returncode == 2
    unknown = await ingest_command(daemon.settings_path, "keys", "revoke", "nobody")
    assert unknown.returncode == 1 and "no key named 'nobody'" in unknown.stderr.decode()
    assert len(stored_keys(daemon)) == 1


def test_settings_check_recommends_moving_keys_into_the_store(tmp_path: Path) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text('[channels.web]\napi_keys = ["k-0123456789"]\n')
    checked = run_ingest(settings, "settings", "check")
    assert checked.returncode == 0
    assert "k-0123456789" not in checked.stdout.decode()
    assert "ingest keys create NAME" in checked.stderr.decode()
    settings.write_text("[channels.web]\napi_keys = []\n")
    assert "recommendation" not in run_ingest(settings, "settings", "check").stderr.decode()
