"""Asks a URL every 20 ms until its standard input closes, then prints the slowest answer in
milliseconds (inf when one failed). Run by `tests.benchmarks.large_mail` in a process of its
own, so that the load generator's threads do not delay the asking."""

from __future__ import annotations

import sys
import threading
import time

import httpx

EVERY_S = 0.02


def main() -> None:
    url = sys.argv[1]
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    slowest = 0.0
    with httpx.Client(timeout=30) as client:
        while not stop.wait(EVERY_S):
            started = time.perf_counter()
            try:
                ok = client.get(url).status_code == 200
            except httpx.HTTPError:
                ok = False
            slowest = max(slowest, time.perf_counter() - started if ok else float("inf"))
    print(f"{slowest * 1000:.1f}", flush=True)


if __name__ == "__main__":
    main()
