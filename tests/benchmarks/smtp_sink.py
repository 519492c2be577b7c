"""The baseline of the mail benchmarks: a bare aiosmtpd server that parses each mail with the
standard library (`email.parser.BytesParser`, default policy) on its event loop and answers
250. Nothing is stored, published or normalised.

Run by `tests.benchmarks.mail` in a process of its own (so that its CPU is its own):

    python -m tests.benchmarks.smtp_sink PORT MAX_BYTES

It prints "ready" once it listens, and runs until stopped (SIGTERM or SIGINT).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from email import policy
from email.parser import BytesParser

from aiosmtpd.smtp import SMTP, Envelope, Session


class Sink:
    """Accept every recipient; parse the mail, answer 250."""

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        message = BytesParser(policy=policy.default).parsebytes(envelope.original_content or b"")
        return f"250 2.0.0 OK {len(message)} headers"


async def serve(port: int, max_bytes: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = await loop.create_server(
        lambda: SMTP(Sink(), data_size_limit=max_bytes, hostname="sink", ident="sink"),
        "127.0.0.1",
        port,
    )
    print("ready", flush=True)
    await stop.wait()
    server.close()
    await server.wait_closed()


def main() -> None:
    asyncio.run(serve(int(sys.argv[1]), int(sys.argv[2])))


if __name__ == "__main__":
    main()
