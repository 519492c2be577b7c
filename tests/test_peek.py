"""`ingest queue peek`: what a person sees of a queue, left on it for its consumer."""

from __future__ import annotations

from aio_pika.abc import AbstractChannel

from tests.conftest import bodies, collect
from tests.daemon import ingest_command
from tests.local import LocalDaemon
from tests.test_web_api import MESSAGE, submit


async def test_peek_shows_the_cases_and_leaves_them_on_the_queue(
    daemon: LocalDaemon, amqp: AbstractChannel
) -> None:
    for n in range(2):
        assert (await submit(daemon, MESSAGE | {"text": f"peek {n}"})).status_code == 202
    await daemon.settled(2)

    shown = await ingest_command(
        daemon.settings_path, "queue", "peek", daemon.names.default, "--count", "5"
    )
    assert shown.returncode == 0, shown.stderr.decode()
    output = shown.stdout.decode()
    assert '"text": "peek 0"' in output and '"text": "peek 1"' in output
    assert output.count('"schema": "case-open/1"') == 2

    left = bodies(await collect(amqp, daemon.names.default, 2))
    assert [case["text"] for case in left] == ["peek 0", "peek 1"]
