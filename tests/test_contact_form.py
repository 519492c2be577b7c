"""The contact form over plain HTTP against the real daemon: cases out, abuse refused."""

from __future__ import annotations

import html
import shutil
from collections.abc import Callable

import httpx
import pytest
from aio_pika.abc import AbstractChannel

from ingest.blobstore import BlobStore
from ingest.publisher import spool_directory
from tests.conftest import bodies, collect, forwarded_behind
from tests.contact import (
    CONTACT_SETTINGS,
    FIELDS,
    PDF,
    field_error,
    open_form,
    reference_of,
    send,
    token_of,
)
from tests.daemon import DaemonBase
from tests.local import LocalDaemon
from tests.proxy import TcpProxy
from tests.test_spool import wait_not_ready


@pytest.fixture
async def form_daemon(make_daemon: Callable[..., LocalDaemon]) -> DaemonBase:
    running = make_daemon(extra=CONTACT_SETTINGS).start()
    await running.wait_ready()
    return running


def client_for(daemon: DaemonBase) -> httpx.AsyncClient:
    return daemon.client()


async def test_a_submission_opens_a_case_with_its_attachment(
    form_daemon: DaemonBase, amqp: AbstractChannel
) -> None:
    async with client_for(form_daemon) as client:
        token = await open_form(client)
        answer = await send(
            client, token, files=[("files", ("receipt.pdf", PDF, "application/pdf"))]
        )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    reference = reference_of(answer.text)

    [case] = bodies(await collect(amqp, form_daemon.names.default, expected=1))
    assert case["id"] == reference
    assert (case["channel"], case["adapter"]) == ("web", "contact-form")
    assert case["source_id"].startswith("contact:")
    assert case["touchpoints"] == [{"kind": "form", "address": "contact-form"}]
    assert case["sender"] == {
        "kind": "email",
        "address": "ann.lee@example.com",
        "name": "Ann Lee",
        "alternates": [{"kind": "phone", "address": "+442079460958"}],
    }
    assert case["subject"] == "Kettle stopped heating"
    assert case["text"] == "Hello,\nmy kettle (order 1234) stopped heating.\nAnn"
    assert case["language"] == "en"
    [attachment] = case["attachments"]
    assert (attachment["name"], attachment["media_type"], attachment["size"]) == (
        "receipt.pdf",
        "application/pdf",
        len(PDF),
    )
    blobs = BlobStore(form_daemon.workdir / "var" / "blobs")
    assert blobs.get(attachment["ref"]) == PDF


async def test_pressing_send_twice_opens_one_case(
    form_daemon: DaemonBase, amqp: AbstractChannel
) -> None:
    async with client_for(form_daemon) as client:
        token = await open_form(client)
        first, second = [await send(client, token) for _ in range(2)]
        changed = await send(client, token, {**FIELDS, "message": "One more thing: it smells."})
    assert [first.status_code, second.status_code, changed.status_code] == [200, 200, 200]

    forwarded = bodies(await collect(amqp, form_daemon.names.default, expected=2))
    forwarded += await forwarded_behind(amqp, form_daemon.names)
    assert [case["id"] for case in forwarded] == [
        reference_of(first.text),
        reference_of(changed.text),
    ]


async def test_posts_without_a_valid_form_token_are_refused(
    form_daemon: DaemonBase, amqp: AbstractChannel
) -> None:
    async with client_for(form_daemon) as client:
        token = await open_form(client)
        missing_token = await send(client, None)
        tampered = await send(client, token[:-2] + ("AA" if not token.endswith("AA") else "BB"))
    async with client_for(form_daemon) as stranger:
        no_cookie = await send(stranger, token)
        await open_form(stranger)
        other_cookie = await send(stranger, token)

    for response in (missing_token, tampered, no_cookie, other_cookie):
        assert response.status_code == 403, response.text
        assert "This form could not be sent" in response.text
        assert 'href="/contact?lang=en"' in response.text
    assert await collect(amqp, form_daemon.names.default, expected=0) == []
    assert form_daemon.log_text().count('event="contact form refused"') == 4


async def test_cross_site_posts_are_refused(form_daemon: DaemonBase, amqp: AbstractChannel) -> None:
    async with client_for(form_daemon) as client:
        token = await open_form(client)
        foreign = await send(client, token, headers={"Origin": "https://evil.example"})
        opaque = await send(client, token, headers={"Origin": "null"})
        marked = await send(client, token, headers={"Sec-Fetch-Site": "cross-site"})
        own = await send(
            client,
            token,
            headers={"Origin": form_daemon.url, "Sec-Fetch-Site": "same-origin"},
        )
    assert [r.status_code for r in (foreign, opaque, marked)] == [403, 403, 403]
    assert own.status_code == 200, own.text
    forwarded = bodies(await collect(amqp, form_daemon.names.default, expected=1))
    assert [case["id"] for case in forwarded] == [reference_of(own.text)]


async def test_a_filled_honeypot_looks_accepted_but_opens_nothing(
    form_daemon: DaemonBase, amqp: AbstractChannel
) -> None:
    async with client_for(form_daemon) as client:
        token = await open_form(client)
        bot = await send(client, token, website="https://cheap-pills.example")
    assert bot.status_code == 200
    assert "Thank you, we have your message" in bot.text
    assert len(reference_of(bot.text)) == 26
    assert await collect(amqp, form_daemon.names.default, expected=0) == []
    assert 'event="contact form honeypot filled"' in form_daemon.log_text()


async def test_rate_limits_per_address_and_per_client(
    make_daemon: Callable[..., LocalDaemon], amqp: AbstractChannel
) -> None:
    limits = "\n[channels.contact]\nrate_limit_per_email = 2\nrate_limit_per_ip = 3\n"
    daemon = make_daemon(extra=limits).start()
    await daemon.wait_ready()

    def from_(client_ip: str) -> dict[str, str]:
        # uvicorn takes the client address from X-Forwarded-For sent by 127.0.0.1 (a proxy).
        return {"X-Forwarded-For": client_ip}

    async with client_for(daemon) as client:
        token = await open_form(client)
        same_address = [
            await send(client, token, {**FIELDS, "message": f"message {n}"}, headers=from_(ip))
            for n, ip in enumerate(["10.0.0.1", "10.0.0.2", "10.0.0.3"])
        ]
        same_client = [
            await send(
                client,
                token,
                {**FIELDS, "email": f"person{n}@example.com"},
                headers=from_("10.0.0.9"),
            )
            for n in range(4)
        ]
    statuses = [r.status_code for r in same_address + same_client]
    assert statuses == [200, 200, 429, 200, 200, 200, 429]
    refused = same_address[2]
    assert "Too many messages" in refused.text
    assert 0 < int(refused.headers["retry-after"]) <= 3600
    forwarded = await collect(amqp, daemon.names.default, expected=5)
    assert len(forwarded) == 5


async def test_oversize_submissions_are_refused(
    form_daemon: DaemonBase, amqp: AbstractChannel
) -> None:
    async with client_for(form_daemon) as client:
        token = await open_form(client)
        whole = await send(
            client, token, files=[("files", ("big.txt", b"a" * 300_000, "text/plain"))]
        )
        one_file = await send(
            client, token, files=[("files", ("big.txt", b"a" * 60_000, "text/plain"))]
        )
        too_many = await send(
            client, token, files=[("files", (f"{n}.txt", b"hi", "text/plain")) for n in range(3)]
        )
    assert whole.status_code == 413
    assert "Your message is too large" in whole.text
    assert "195 KB" in whole.text
    assert one_file.status_code == 422
    assert field_error(one_file.text, "files") == "Error: “big.txt” is larger than 48 KB."
    assert too_many.status_code == 422
    assert field_error(too_many.text, "files") == "Error: Please attach at most 2 files."
    assert await collect(amqp, form_daemon.names.default, expected=0) == []


async def test_attachment_types_are_checked(form_daemon: DaemonBase, amqp: AbstractChannel) -> None:
    async with client_for(form_daemon) as client:
        token = await open_form(client)
        program = await send(
            client,
            token,
            files=[("files", ("setup.exe", b"MZ\x90\x00", "application/x-msdownload"))],
        )
        fake_png = await send(
            client, token, files=[("files", ("photo.png", b"<script>", "image/png"))]
        )
    assert program.status_code == 422
    assert field_error(program.text, "files") == (
        "Error: “setup.exe” is not an accepted type of file (PDF, JPEG, PNG, GIF, WebP, TXT)."
    )
    assert fake_png.status_code == 422
    assert (
        field_error(fake_png.text, "files") == "Error: “photo.png” does not look like a PNG file."
    )
    assert 'value="Kettle stopped heating"' in fake_png.text
    assert await collect(amqp, form_daemon.names.default, expected=0) == []


async def test_validation_errors_stand_next_to_their_fields_with_the_input_kept(
    form_daemon: DaemonBase,
) -> None:
    typed = {**FIELDS, "name": "  ", "email": "ann@", "phone": "12", "message": "<b>hi</b> & bye"}
    async with client_for(form_daemon) as client:
        token = await open_form(client)
        answer = await send(client, token, typed)
    assert answer.status_code == 422
    page = answer.text
    assert field_error(page, "name") == "Error: Please fill this in."
    assert field_error(page, "email") == "Error: Enter an email address like name@example.com."
    assert field_error(
        page,
        "phone",
    ).startswith("Error: Enter a phone number")
    assert field_error(page, "subject") is None
    assert 'aria-describedby="f-email-hint f-email-error" aria-invalid="true"' in page
    assert 'value="ann@"' in page and 'value="12"' in page
    assert f'value="{FIELDS["subject"]}"' in page
    assert ">&lt;b&gt;hi&lt;/b&gt; &amp; bye</textarea>" in page
    assert token_of(page)


async def test_labels_in_the_configured_languages(form_daemon: DaemonBase) -> None:
    async with client_for(form_daemon) as client:
        danish = await client.get("/contact?lang=da")
        german = await client.get("/contact", headers={"Accept-Language": "fr;q=0.9, de-AT"})
        fallback = await client.get("/contact", headers={"Accept-Language": "fr, es;q=0.5"})
        token = token_of(danish.text)
        wrong = await send(client, token, {**FIELDS, "email": ""}, lang="da")
    assert '<html lang="da">' in danish.text
    assert "<h1>Kontakt os</h1>" in danish.text
    assert '<label for="f-email">E-mailadresse' in danish.text
    assert "<legend>Om dig</legend>" in danish.text
    assert '<html lang="de">' in german.text and "<legend>Über Sie</legend>" in german.text
    assert '<html lang="en">' in fallback.text and "<h1>Contact us</h1>" in fallback.text
    assert wrong.status_code == 422
    assert '<html lang="da">' in wrong.text
    assert field_error(wrong.text, "email") == "Fejl: Udfyld venligst dette felt."


async def test_the_page_is_self_contained_and_safe_to_serve(form_daemon: DaemonBase) -> None:
    async with client_for(form_daemon) as client:
        response = await client.get("/contact")
    page = html.unescape(response.text)
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert "<link" not in page
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert response.headers["cache-control"] == "no-store"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/contact" in cookie


async def test_a_broken_body_gets_a_readable_400_and_the_daemon_keeps_serving(
    form_daemon: DaemonBase, amqp: AbstractChannel
) -> None:
    async with client_for(form_daemon) as client:
        token = await open_form(client)
        broken = [
            await client.post(
                "/contact",
                content=body,
                headers={"Content-Type": content_type},
            )
            for content_type, body in [
                ("multipart/form-data; boundary=xyz", b"--xyz\r\nContent-Disposition: form-da"),
                ("multipart/form-data", b"no boundary at all"),
                ("multipart/form-data; boundary=xyz", b"--xyz\r\n\r\n\r\n--xyz--\r\n"),
                ("application/json", b'{"name": "Ann"}'),
            ]
        ]
        good = await send(client, token)
    # A body cut short parses as far as it goes: without its token it is refused all the same.
    assert [r.status_code for r in broken] == [403, 400, 400, 403]
    assert "This form could not be read" in broken[1].text
    assert good.status_code == 200
    assert len(await collect(amqp, form_daemon.names.default, expected=1)) == 1


async def test_when_nothing_can_keep_the_message_the_form_comes_back_with_503(
    make_daemon: Callable[..., LocalDaemon], proxy: TcpProxy, amqp: AbstractChannel
) -> None:
    daemon = make_daemon(proxy.amqp_url, extra=CONTACT_SETTINGS).start()
    await daemon.wait_ready()
    await proxy.cut()
    await wait_not_ready(daemon)
    # No broker, and the spool's folder for new files replaced by a file: nothing is safe.
    incoming = spool_directory(daemon.workdir / "var") / "incoming"
    shutil.rmtree(incoming)
    incoming.write_bytes(b"")

    async with client_for(daemon) as client:
        token = await open_form(client)
        refused = await send(client, token)
        incoming.unlink()
        incoming.mkdir()
        again = await send(client, token_of(refused.text))

    assert refused.status_code == 503
    assert int(refused.headers["retry-after"]) > 0
    assert "We could not take your message just now" in refused.text
    assert f'value="{FIELDS["subject"]}"' in refused.text
    assert again.status_code == 200, again.text
    assert len(list(spool_directory(daemon.workdir / "var").glob("*.json"))) == 1
    await proxy.start()
    [case] = bodies(await collect(amqp, daemon.names.default, expected=1))
    assert case["id"] == reference_of(again.text)
