"""The OpenAPI document is the truth: schemathesis, run over the whole API of a running
daemon (the JSON API, Twilio's webhooks, operations), with its default checks, finds nothing.

What the document says in words that JSON Schema cannot (a phone number that exists, a date
within the last year, a text that is more than blanks, an Idempotency-Key used once per body)
is taught to schemathesis in `tests/schemathesis_hooks.py`. The body limit is raised to what
the schema allows (a 100,000-character text of escaped astral characters is over 1 MB): the
document states the configured limit and its 413.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.daemon import API_KEY, clean_environment
from tests.local import LocalDaemon
from tests.twilio_client import TOKEN_ENV, twilio_settings

EXAMPLES_PER_OPERATION = 50
RUN_TIMEOUT_S = 600
REPOSITORY = Path(__file__).resolve().parent.parent


@pytest.mark.slow
async def test_schemathesis_finds_no_failure_in_the_whole_api(
    make_daemon: Callable[..., LocalDaemon], tmp_path: Path
) -> None:
    # Limits no schema-compliant body reaches: the document cannot say a form's or a JSON
    # body's size in bytes, and a valid case refused with 413 is a failure to schemathesis
    # (the Twilio form of the other tests stops at 4 KB; generated forms went past it).
    daemon = await make_daemon(extra=twilio_settings(max_body_bytes=4 * 1024 * 1024)).launch(
        env=TOKEN_ENV | {"INGEST_CHANNELS__WEB__MAX_BODY_BYTES": str(4 * 1024 * 1024)}
    )
    environment = clean_environment() | {
        "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks",
        "PYTHONPATH": os.pathsep.join([str(REPOSITORY), os.environ.get("PYTHONPATH", "")]),
    }
    run = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{daemon.url}/openapi.json",
        "--header",
        f"Authorization: Bearer {API_KEY}",
        "--max-examples",
        str(EXAMPLES_PER_OPERATION),
        "--workers",
        "1",
        "--no-color",
        cwd=tmp_path,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(run.communicate(), RUN_TIMEOUT_S)
    finally:
        if run.returncode is None:
            run.kill()
            await run.wait()
    report = output.decode(errors="replace")
    assert run.returncode == 0, report[-8000:]
    assert "Operations:       9 selected / 9 total" in report, report[-3000:]
    assert daemon.alive()
