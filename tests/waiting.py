"""Waiting on a fact the system under test brings about, with a deadline and a clear failure."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(
    condition: Callable[[], object],
    what: str = "the condition",
    timeout_s: float = 20.0,
    *,
    blocking: bool = False,
    detail: Callable[[], str] | None = None,
) -> None:
    """Poll `condition()` until it is true; fail naming `what` (and `detail()`) after the
    deadline. A `blocking` condition (one that talks to a server) runs in a thread."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not (await asyncio.to_thread(condition) if blocking else condition()):
        if loop.time() > deadline:
            extra = f"\n{detail()}" if detail is not None else ""
            raise AssertionError(f"{what}: still not true after {timeout_s} s{extra}")
        await asyncio.sleep(0.05)
