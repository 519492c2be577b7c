"""`rabbitmqctl` on the shared local broker, for tests that make a vhost or user of their own
(and delete it afterwards). Needs root or the rabbitmq user, as the suite runs in CI."""

from __future__ import annotations

import subprocess

RABBITMQCTL = "/usr/sbin/rabbitmqctl"


def rabbitmqctl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run rabbitmqctl against the node on 127.0.0.1:5672."""
    return subprocess.run(
        [RABBITMQCTL, *args], capture_output=True, text=True, timeout=60, check=check
    )
