"""Telling systemd how the daemon is doing (`Type=notify`): ready, stopping, watchdog pings.

The protocol is one datagram per message to the socket named by NOTIFY_SOCKET (sd_notify(3));
outside systemd the variable is unset and every call does nothing. A few lines, so no library
(python-systemd needs libsystemd's headers to build). The watchdog pings come from a task on
the daemon's event loop: a loop that hangs stops them, and systemd restarts the service
(`WatchdogSec=` in the units).
"""

from __future__ import annotations

import asyncio
import os
import socket

import structlog

log = structlog.get_logger("ingest.daemon")


def notify(*lines: str) -> bool:
    """Send `READY=1`, `STOPPING=1`, `STATUS=...` or `WATCHDOG=1`; False outside systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.sendto("\n".join(lines).encode(), address)
        except OSError as error:
            log.warning("systemd notification failed", error=repr(error))
            return False
    return True


def watchdog_interval_s() -> float | None:
    """Half the watchdog timeout systemd set for this process, or None when there is none."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 1_000_000 / 2
    except ValueError:
        return None


async def keep_watchdog_fed(interval_s: float) -> None:
    """Ping the watchdog every `interval_s` until cancelled."""
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval_s)
