"""deploy/nginx/ingest.conf with a real nginx on loopback and a test certificate: a Twilio
request signed for the public HTTPS URL is accepted through the proxy, a forged one refused,
and the operators' endpoints are not reachable from outside."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from aio_pika.abc import AbstractChannel

from tests.conftest import bodies, collect
from tests.daemon import free_port
from tests.local import LocalDaemon
from tests.twilio_client import FORM, TOKEN_ENV, signature, sms, twilio_settings

pytestmark = pytest.mark.skipif(
    shutil.which("nginx") is None, reason="deploy/local/test.sh installs nginx"
)

SITE = Path(__file__).parent.parent / "deploy" / "nginx" / "ingest.conf"
PUBLIC = "https://support.example.com"


class Nginx:
    """nginx in the foreground with a configuration of the test's own around the site file."""

    def __init__(self, folder: Path, daemon_port: int, cert: Path, key: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.plain_port = free_port()
        for name in ("temp", "logs"):
            (folder / name).mkdir(parents=True)
            (folder / name).chmod(0o777)
        site = (
            SITE.read_text()
            .replace("server 127.0.0.1:8080;", f"server 127.0.0.1:{daemon_port};")
            .replace("listen 443 ssl http2;", f"listen 127.0.0.1:{self.port} ssl http2;")
            .replace("listen 80;", f"listen 127.0.0.1:{self.plain_port};")
            .replace("/etc/letsencrypt/live/support.example.com/fullchain.pem", str(cert))
            .replace("/etc/letsencrypt/live/support.example.com/privkey.pem", str(key))
        )
        site = "\n".join(line for line in site.splitlines() if "listen [::]" not in line)
        temp = folder / "temp"
        (folder / "nginx.conf").write_text(f"""
pid {folder}/nginx.pid;
error_log {folder}/logs/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {folder}/logs/access.log;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
{site}
}}
""")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Nginx:
        config = str(self.folder / "nginx.conf")
        tested = subprocess.run(["nginx", "-t", "-c", config], capture_output=True, text=True)
        assert tested.returncode == 0, tested.stderr
        self.process = subprocess.Popen(
            ["nginx", "-c", config, "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture
async def nginx(
    tmp_path: Path, daemon: LocalDaemon, certificate: tuple[Path, Path]
) -> AsyncIterator[Nginx]:
    """nginx in front of the running daemon; started (`nginx -t` first) and stopped in a
    thread, so that the daemon's event loop goes on meanwhile."""
    cert, key = certificate
    started = await asyncio.to_thread(Nginx(tmp_path / "nginx", daemon.port, cert, key).start)
    yield started
    await asyncio.to_thread(started.stop)


@pytest.fixture
async def daemon(make_daemon: Callable[..., LocalDaemon]) -> LocalDaemon:
    extra = twilio_settings(public_url=f'"{PUBLIC}"')
    return await make_daemon(extra=extra).launch(env=TOKEN_ENV)


@contextlib.asynccontextmanager
async def through(nginx: Nginx, cert: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A client that calls nginx as if it were support.example.com, once nginx answers."""
    context = ssl.create_default_context(cafile=str(cert))
    async with httpx.AsyncClient(
        base_url=f"https://127.0.0.1:{nginx.port}",
        verify=context,
        headers={"Host": "support.example.com"},
        timeout=30,
    ) as client:
        deadline = time.monotonic() + 20
        while True:
            try:
                await client.get("/")
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, "nginx did not start"
                await asyncio.sleep(0.1)
        yield client


async def test_a_twilio_webhook_through_nginx_is_checked_against_the_public_url(
    certificate: tuple[Path, Path], daemon: LocalDaemon, nginx: Nginx, amqp: AbstractChannel
) -> None:
    # The certificate first: openssl makes it before the daemon starts on this event loop.
    fields = sms(body="Sent through the proxy")
    async with through(nginx, certificate[0]) as client:
        signed = {
            "Content-Type": FORM,
            "X-Twilio-Signature": signature("/twilio/sms", fields, base=PUBLIC),
        }
        accepted = await client.post("/twilio/sms", content=urlencode(fields), headers=signed)
        assert accepted.status_code == 200, accepted.text

        forged_fields = fields | {"Body": "Changed on the way"}
        forged = await client.post("/twilio/sms", content=urlencode(forged_fields), headers=signed)
        assert forged.status_code == 403, forged.text
        wrong_url = {
            "Content-Type": FORM,
            "X-Twilio-Signature": signature(
                "/twilio/sms", fields, base=f"https://127.0.0.1:{nginx.port}"
            ),
        }
        elsewhere = await client.post("/twilio/sms", content=urlencode(fields), headers=wrong_url)
        assert elsewhere.status_code == 403, "signed for another URL than the public one"

        for internal in ("/metrics", "/readyz", "/healthz", "/openapi.json"):
            assert (await client.get(internal)).status_code == 404, internal
        assert (await client.get("/contact")).status_code == 200

    async with httpx.AsyncClient() as plain:
        moved = await plain.get(f"http://127.0.0.1:{nginx.plain_port}/contact")
    assert moved.status_code == 301 and moved.headers["location"].startswith("https://")

    [case] = bodies(await collect(amqp, daemon.names.default, 1))
    assert case["text"] == "Sent through the proxy"
