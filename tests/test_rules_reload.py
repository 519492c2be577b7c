"""Rules change while the daemon runs: picked up on SIGHUP and on file changes; an invalid
change is refused with file, line and reason, and the rules in force stay."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.daemon import Daemon, DaemonBase, Names

TRIAGE = """
[triage]
include = ["rules.d/*.toml"]

[[triage.rules]]
name = "in-settings"
when = {{ keywords = ["refund"] }}
set = {{ queue = "{queue}", tags = ["refund"] }}
"""
RULE = '[[rules]]\nname = "{name}"\nwhen = {{ channel = "sms" }}\nset = {{ tags = ["{name}"] }}\n'


async def rules_health(daemon: DaemonBase) -> dict[str, object]:
    async with daemon.client() as client:
        return (await client.get("/healthz")).json()["rules"]


async def until(
    daemon: DaemonBase, check: Callable[[dict[str, object]], bool]
) -> dict[str, object]:
    for _ in range(100):
        health = await rules_health(daemon)
        if check(health):
            return health
        await asyncio.sleep(0.1)
    raise AssertionError(f"rules health never became as expected: {health}")


@pytest.mark.slow
async def test_file_changes_and_sighup_reload_and_bad_changes_are_refused(
    make_process: Callable[..., Daemon], names: Names, tmp_path: Path
) -> None:
    included = tmp_path / "rules.d"  # make_process's folder, beside its settings.toml
    included.mkdir()
    (included / "10-first.toml").write_text(RULE.format(name="first"))
    daemon = make_process(extra=TRIAGE.format(queue=names.default)).start()
    await daemon.wait_ready()
    health = await rules_health(daemon)
    assert (health["status"], health["rules"]) == ("ok", 2)

    (included / "20-second.toml").write_text(RULE.format(name="second"))
    await until(daemon, lambda h: h["rules"] == 3)

    broken = included / "30-broken.toml"
    broken.write_text('[[rules]]\nname = "broken"\nset = { queue = "nowhere" }\n')
    health = await until(daemon, lambda h: h["status"] == "error")
    assert health["rules"] == 3  # the rules in force stay
    assert "30-broken.toml:1: rule 'broken': unknown queue 'nowhere'" in str(health["error"])
    assert "rules reload refused, the rules in force stay" in daemon.log_text()

    broken.unlink()
    await until(daemon, lambda h: h["status"] == "ok" and h["rules"] == 3)

    daemon.signal(signal.SIGHUP)
    await until(daemon, lambda h: "why=SIGHUP" in daemon.log_text())
    assert daemon.alive()


async def test_invalid_rules_stop_start_up_with_the_reason(
    make_process: Callable[..., Daemon], names: Names
) -> None:
    bad = TRIAGE.format(queue="not-a-team")
    daemon = make_process(extra=bad).start()
    assert await daemon.wait_exit(60) == 1
    assert "cannot start: invalid triage rules:" in daemon.log_text()
    assert "unknown queue 'not-a-team'" in daemon.log_text()
