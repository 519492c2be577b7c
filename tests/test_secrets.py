"""Secrets never shown: every secret set to a marker, then every output searched for it.

The marker goes into the broker and store URLs (a broker user of the test's own, PostgreSQL
with trust authentication ignores the password), the API key, the contact form's CSRF secret,
the SMTP listener's AUTH password, Twilio's auth token, the Telegram token and webhook secret,
and the outbound relay's password. The daemon runs at debug level and is made to use them.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from tests.broker_admin import rabbitmqctl
from tests.daemon import Daemon, free_port, postgres_database, run_ingest

pytestmark = pytest.mark.slow

MARKER = "Zq7marker" + uuid.uuid4().hex[:12]


@pytest.fixture
async def broker_user() -> AsyncIterator[str]:
    """A user on the shared broker whose password is the marker; its amqp:// URL."""
    user = f"ingest-secret-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_user", user, MARKER)
    try:
        rabbitmqctl("set_permissions", "-p", "/", user, ".*", ".*", ".*")
        yield f"amqp://{user}:{MARKER}@127.0.0.1:5672/"
    finally:
        rabbitmqctl("delete_user", user, check=False)


async def test_no_secret_appears_in_any_output(
    broker_user: str,
    make_process: Callable[..., Daemon],
    certificate: tuple[Path, Path],
) -> None:
    cert, key = certificate
    closed_port = free_port()  # the Bot API and the relay are unreachable: errors get logged
    extra = f"""
[channels.twilio]
enabled = true
public_url = "https://support.example.com"

[channels.telegram]
enabled = true
mode = "webhook"
base_url = "http://127.0.0.1:{closed_port}/bot"
base_file_url = "http://127.0.0.1:{closed_port}/file/bot"

[outbound.mail]
enabled = true
port = {closed_port}
security = "none"
user = "relay-user"
"""
    async with postgres_database("ingest_secrets") as store_url:
        marked_store = store_url.replace("postgres@", f"postgres:{MARKER}@")
        daemon = make_process(broker_user, extra)
        env = {
            "INGEST_CHANNELS__SMTP__TLS_CERT_FILE": str(cert),
            "INGEST_CHANNELS__SMTP__TLS_KEY_FILE": str(key),
            "INGEST_LOG__LEVEL": "debug",
            "INGEST_STORE__URL": marked_store,
            "INGEST_CHANNELS__WEB__API_KEYS": f'["{MARKER}-api"]',
            "INGEST_CHANNELS__CONTACT__CSRF_SECRET": MARKER,
            "INGEST_CHANNELS__SMTP__AUTH_USER": "mta",
            "INGEST_CHANNELS__SMTP__AUTH_PASSWORD": MARKER,
            "INGEST_CHANNELS__TWILIO__AUTH_TOKEN": MARKER,
            "INGEST_CHANNELS__TELEGRAM__TOKEN": f"123456:{MARKER}",
            "INGEST_CHANNELS__TELEGRAM__WEBHOOK_SECRET": MARKER,
            "INGEST_OUTBOUND__MAIL__PASSWORD": MARKER,
        }
        shown = run_ingest(daemon.settings_path, "settings", "check", env=env)
        assert shown.returncode == 0, shown.stderr
        await daemon.launch(env=env)
        outputs = [shown.stdout.decode(), shown.stderr.decode()]
        async with httpx.AsyncClient(base_url=daemon.url) as client:
            answer = await client.post(
                "/api/v1/messages",
                json={"sender": {"email": "ann@example.com"}, "text": "hello"},
                headers={"Authorization": f"Bearer {MARKER}-api"},
            )
            assert answer.status_code == 202, answer.text
            wrong = await client.post(
                "/api/v1/messages", json={}, headers={"Authorization": f"Bearer {MARKER}"}
            )
            assert wrong.status_code == 401
            outputs.append(wrong.text)
            for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/contact"):
                outputs.append((await client.get(path)).text)
        await daemon.settled(1)
        daemon.stop()
        outputs.append(daemon.log_text())
    assert "debug" in outputs[-1], "the daemon did not log at debug level"
    for number, output in enumerate(outputs):
        assert MARKER not in output, f"output {number} shows a secret:\n{output}"
