"""Benchmark of the quick command-line tools' start-up, as an admin runs them.

Runs, each in a process of its own and `-n` times after one untimed warm-up run (which also
unpacks the language model into the user's cache, as an admin's first run does):

- `ingest --help`;
- one `ingest rules test` of a plain-text SMS on the shipped rules (settings.toml, rules.d/),
  its language detected as the daemon detects it; and the same text as an email (the default
  channel: the mail parser is loaded too);
- one `ingest rules test --expect rules-tests.toml`: the shipped golden tests (55 samples);

and prints the median, fastest and slowest wall time of each and the median CPU time (user +
system: less disturbed by other work on the machine than the wall time), next to a bare
`python -c pass` of the same interpreter (what no command can go below), with the load
average before and after.

The project's modules are compiled to bytecode first (`__pycache__`, as `pip install` and any
run without PYTHONDONTWRITEBYTECODE leave them); `--no-compile` measures the tree as it is
(with PYTHONDONTWRITEBYTECODE=1 and no bytecode, every run compiles them from source again).

    .venv/bin/python -m tests.benchmarks.cli_speed [-n 9] [--no-compile]

Run it from the repository root. Targets (issue 15): `--help` and one `rules test` within
0.3 s, 50 golden samples within 2 s. It is not a test: pytest does not collect it.
"""

from __future__ import annotations

import argparse
import compileall
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ingest", "channels", "dispatcher", "normalizer")
INGEST = str(Path(sys.executable).with_name("ingest"))
TEXT = "Ingen forbindelse siden i går, hjælp"
COMMANDS: list[tuple[str, list[str], float | None]] = [
    ("python -c pass (baseline)", [sys.executable, "-c", "pass"], None),
    ("ingest --help", [INGEST, "--help"], 0.3),
    (
        "ingest rules test (sms text)",
        [INGEST, "rules", "test", "--channel", "sms", "--text", TEXT],
        0.3,
    ),
    ("ingest rules test (email text)", [INGEST, "rules", "test", "--text", TEXT], 0.3),
    (
        "ingest rules test --expect (55)",
        [INGEST, "rules", "test", "--expect", "rules-tests.toml"],
        2.0,
    ),
]


def timed(command: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run; the command must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=9, help="timed runs of each command")
    parser.add_argument(
        "--no-compile", action="store_true", help="do not compile the project's bytecode first"
    )
    args = parser.parse_args()
    if not args.no_compile:
        for package in PACKAGES:
            compileall.compile_dir(ROOT / package, quiet=1)
    bytecode = "compiled first" if not args.no_compile else "as found"
    print(f"load average before: {load()} ({os.cpu_count()} cores); bytecode {bytecode}")
    print(f"median of {args.runs} runs, seconds")
    print(f"{'command':34s} {'wall':>6s} {'fastest':>7s} {'slowest':>7s} {'cpu':>6s}  target")
    for name, command, target in COMMANDS:
        timed(command)
        runs = [timed(command) for _ in range(args.runs)]
        walls = [wall for wall, _ in runs]
        wall, cpu = statistics.median(walls), statistics.median(c for _, c in runs)
        verdict = (
            "" if target is None else f"{target:.1f} " + ("met" if wall <= target else "MISSED")
        )
        print(f"{name:34s} {wall:6.3f} {min(walls):7.3f} {max(walls):7.3f} {cpu:6.3f}  {verdict}")
    print(f"load average after: {load()}")


if __name__ == "__main__":
    main()
