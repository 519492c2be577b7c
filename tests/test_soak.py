"""The fault soak, three minutes of it: nothing lost, nothing doubled (`tests/faults/soak.py`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults.soak import FAULTS


@pytest.mark.slow
def test_a_three_minute_fault_soak_loses_nothing_and_doubles_nothing(tmp_path: Path) -> None:
    report_path = tmp_path / "soak.json"
    run = subprocess.run(
        [sys.executable, "-m", "tests.faults.soak", "--minutes", "3", "--json", str(report_path)],
        capture_output=True,
        timeout=1200,
    )
    output = run.stdout.decode(errors="replace") + run.stderr.decode(errors="replace")[-4000:]
    print(output)  # whole, under "Captured stdout" when the test fails
    assert report_path.exists(), output
    report = json.loads(report_path.read_text())
    rows = report["channels"]
    assert set(rows) == {"api", "smtp", "imap"}, output
    for name, row in rows.items():
        assert row["accepted"] > 0, (name, output)
        assert (row["lost"], row["doubled"], row["refused"]) == (0, 0, 0), (name, output)
        assert row["delivered_once"] == row["accepted"], (name, output)
    assert {fault["kind"] for fault in report["faults"]} == set(FAULTS), output
    assert [crash for crash in report["crashes"] if "exited by itself" in crash] == [], output
    assert run.returncode == 0, output
