"""The shipped settings and rules, as they come and as an admin runs them once a replier can
send acknowledgements (the acknowledgement rule uncommented, as its comment says)."""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).parent.parent
SHIPPED = ROOT / "settings.toml"
SHIPPED_ACK_RULE = """\
# [[triage.rules]]
# name = "acknowledge"
# when = { channel = ["email", "chat", "web"] }
# acknowledge = "received"
"""


def with_acknowledgements(folder: Path) -> Path:
    """Copy the shipped settings, rules and what they name into `folder`, with the
    acknowledgement rule uncommented; return the settings file."""
    for name in ("rules.d", "rules-samples", "kb"):
        shutil.copytree(ROOT / name, folder / name)
    shutil.copy(ROOT / "rules-tests.toml", folder)
    text = SHIPPED.read_text()
    assert SHIPPED_ACK_RULE in text, "the shipped acknowledgement rule changed"
    settings = folder / "settings.toml"
    settings.write_text(text.replace(SHIPPED_ACK_RULE, SHIPPED_ACK_RULE.replace("# ", "")))
    return settings
