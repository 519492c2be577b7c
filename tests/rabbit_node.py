"""A RabbitMQ node of the test's own, on its own loopback ports, for tests that must break it
(force a memory alarm) without touching the shared broker on 5672.

Debian's server scripts under /usr/lib/rabbitmq/bin run as the calling user; every path the
node writes (database, logs, pid file, Erlang cookie through HOME) is under one temporary
folder, removed on stop.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from tests.daemon import free_port

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
START_TIMEOUT_S = 90


class RabbitNode:
    """`start()`, `ctl(...)`, `url`, `stop()`; one node per instance."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="ingest-rabbit-"))
        self.port = free_port()
        self.dist_port = free_port()
        self.name = f"ingest-test-{self.port}@localhost"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def environment(self) -> dict[str, str]:
        folder = self.folder
        return {
            **os.environ,
            "HOME": str(folder),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(folder / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(folder / "log"),
            "RABBITMQ_PID_FILE": str(folder / "node.pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def start(self) -> RabbitNode:
        """Start the node and wait until it runs (about 15 s on two cores)."""
        if not (RABBITMQ_BIN / "rabbitmq-server").exists():
            raise RuntimeError("rabbitmq-server is not installed (deploy/local/test.sh does it)")
        (self.folder / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        (self.folder / "rabbitmq-env.conf").write_text("")
        (self.folder / "enabled_plugins").write_text("[rabbitmq_consistent_hash_exchange].\n")
        with (self.folder / "server.out").open("wb") as log:
            self._process = subprocess.Popen(
                [str(RABBITMQ_BIN / "rabbitmq-server")],
                env=self.environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        waited = self.ctl(
            "wait", "--timeout", str(START_TIMEOUT_S), str(self.folder / "node.pid"), check=False
        )
        if waited.returncode != 0:
            output = (self.folder / "server.out").read_text(errors="replace")[-3000:]
            self.stop()
            raise RuntimeError(f"the test's RabbitMQ node did not start:\n{output}")
        return self

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run rabbitmqctl against this node."""
        return subprocess.run(
            [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.name, *args],
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S + 30,
            check=check,
        )

    def stop(self) -> None:
        """Stop the node and remove its folder."""
        if self._process is not None:
            if self._process.poll() is None:
                self.ctl("stop", check=False)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=30)
            if self._process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()
            self._process = None
        shutil.rmtree(self.folder, ignore_errors=True)
