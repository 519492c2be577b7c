"""What an operator watches: the metrics a message leaves behind, and the alert rules and
dashboard shipped for them, checked by Prometheus's own promtool."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from aio_pika.abc import AbstractChannel

from tests.conftest import collect
from tests.local import LocalDaemon
from tests.test_web_api import MESSAGE, submit

PROMETHEUS = Path(__file__).parent.parent / "deploy" / "prometheus"
GRAFANA = Path(__file__).parent.parent / "deploy" / "grafana" / "ingest.json"
promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="deploy/local/test.sh installs prometheus"
)


async def test_a_message_leaves_its_timings_on_metrics(
    daemon: LocalDaemon, amqp: AbstractChannel
) -> None:
    assert (await submit(daemon, MESSAGE)).status_code == 202
    await collect(amqp, daemon.names.default, 1)
    await daemon.settled(1)
    samples = await daemon.metrics()
    assert samples[("ingest_safe_seconds_count", (("channel", "web"),))] == 1
    assert samples[("ingest_forward_seconds_count", ())] == 1
    assert samples[("ingest_dispatcher_batch_size_count", ())] >= 1
    assert samples[("ingest_dispatcher_decision_seconds_count", ())] >= 1
    assert samples[("ingest_spool_max_bytes", ())] == 1024 * 1024 * 1024
    assert samples[("ingest_spool_bytes", ())] == 0
    assert samples[("ingest_quarantine_entries", ())] == 0


@promtool
def test_the_alert_rules_pass_promtool() -> None:
    checked = subprocess.run(
        ["promtool", "check", "rules", str(PROMETHEUS / "alerts.yml")],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        ["promtool", "test", "rules", "alerts.test.yml"],
        capture_output=True,
        text=True,
        cwd=PROMETHEUS,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


async def test_the_rules_and_the_dashboard_name_only_metrics_the_daemon_exports(
    daemon: LocalDaemon,
) -> None:
    async with httpx.AsyncClient(base_url=daemon.url) as client:
        text = (await client.get("/metrics")).text
    families = set(re.findall(r"^# HELP (\w+) ", text, flags=re.MULTILINE))
    texts = [(PROMETHEUS / "alerts.yml").read_text(), json.dumps(json.loads(GRAFANA.read_text()))]
    for text in texts:
        for name in set(re.findall(r"\bingest_[a-z_]+", text)):
            base = re.sub(r"_(bucket|count|sum)$", "", name)
            assert base in families, f"{name} is not a metric the daemon exports"
