"""CPU of the dispatcher's decide path alone, in this process, with and without intake.

`tests.benchmarks.dispatcher` measures the whole dispatcher through the broker; on a shared
machine its figures move by a fifth between identical runs, which hides a change of a few
percent. This one feeds the same traffic (`tests.scenario`: a warm-up that gives the
customers history, then the measured mix of new requests, repeats, cross-channel duplicates
and follow-ups) straight to `Decider.batch` in one store transaction per batch, on the
shipped rules (settings.toml's [triage] and rules.d/), and times each batch with the CPU
clock of the thread that decides it. Each configuration runs `--repeat` times on a fresh
SQLite store; the figure is the sum over batches of each batch's fastest run, which leaves out
most of what other processes cost it.

- full: everything the daemon does on the embedded defaults (identity, history, dedup,
  triage, acknowledgement requests, incident detection);
- without intake: the same without incident detection (and the knowledge base, off by
  default): the bare baseline of this benchmark.

    .venv/bin/python -m tests.benchmarks.decide [-n 3000] [--warmup 3000]
        [--customers 1000] [--batch 100] [--repeat 3]

Run it from the repository root. It is not a test (no `test_` prefix): pytest does not
collect it. It leaves out the commit and the broker: `tests.benchmarks.dispatcher` has them.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from sqlalchemy.orm import Session

from dispatcher.decide import Decider, Incoming, Outcome
from dispatcher.directory import import_rows, read_directory
from dispatcher.incidents.signature import prepare
from dispatcher.store import Store
from ingest.daemon import build_decider, live_rules, settle_garbage_collector
from ingest.settings import Settings, load_settings
from normalizer.model import CaseOpen
from tests.scenario import build

REPOSITORY = Path(__file__).resolve().parents[2]


def settings_in(folder: Path) -> tuple[Settings, Path]:
    """The shipped settings and rules, without the golden tests (they name no store)."""
    text = (REPOSITORY / "settings.toml").read_text()
    path = folder / "settings.toml"
    path.write_text(text.replace('tests = ["rules-tests.toml"]\n', ""))
    (folder / "rules.d").symlink_to(REPOSITORY / "rules.d")
    return load_settings(path), path


def decider_for(settings: Settings, path: Path, intake: bool) -> Decider:
    """The decider the daemon builds, with incident detection on or off (the knowledge base
    is off in the shipped settings)."""
    if not intake:
        incidents = settings.incidents.model_copy(update={"enabled": False})
        settings = settings.model_copy(update={"incidents": incidents})
    return build_decider(settings, live_rules(settings, path))


async def one_run(
    url: str,
    decider: Decider,
    total: int,
    warmup: int,
    customers: int,
    batch: int,
    measuring: Callable[[], None] = lambda: None,
) -> tuple[list[float], int]:
    """CPU seconds of each measured batch, on a fresh store at `url`, and the messages;
    `measuring` is called once the warm-up is done."""
    store = await Store.open(url, auto_migrate=True)
    try:
        warm = build(warmup, seed=3, customers=customers, tag="w-")
        rows, _ = read_directory(warm.directory.splitlines(keepends=True))
        await store.run(import_rows, rows, "bench")
        case_of: dict[str, str] = {}
        await feed(store, decider, warm.phase_one, batch, case_of)
        measured = build(total, seed=7, customers=customers, tag="m-")
        stream = measured.phase_one + warm.build_phase_two(case_of)
        measuring()
        return await feed(store, decider, stream, batch, case_of), len(stream)
    finally:
        await store.close()


async def feed(
    store: Store, decider: Decider, cases: Sequence[CaseOpen], size: int, case_of: dict[str, str]
) -> list[float]:
    spent: list[float] = []
    for start in range(0, len(cases), size):
        incoming = [Incoming(case) for case in cases[start : start + size]]
        cpu_s, outcomes = await store.run(timed, decider, incoming)
        spent.append(cpu_s)
        for outcome in outcomes:
            if outcome.forward is not None and outcome.forward.dedup is not None:
                case_of[outcome.case.source_id] = outcome.forward.dedup.case_id or ""
    return spent


def timed(
    session: Session, decider: Decider, incoming: list[Incoming]
) -> tuple[float, list[Outcome]]:
    began = time.thread_time()
    outcomes = decider.batch(session, incoming)
    session.flush()
    return time.thread_time() - began, outcomes


def fastest(options: argparse.Namespace, intake: bool, folder: Path) -> tuple[float, float, int]:
    """(sum of each batch's fastest CPU, mean of the runs' totals) in seconds, and the
    measured messages."""
    settings, path = settings_in(folder / ("full" if intake else "bare"))
    decider = decider_for(settings, path, intake)
    settle_garbage_collector()  # as the daemon does once it is up
    best: list[float] | None = None
    totals = []
    count = 0
    for run in range(options.repeat):
        url = f"sqlite:///{folder}/{'full' if intake else 'bare'}-{run}.db"
        spent, count = asyncio.run(
            one_run(url, decider, options.n, options.warmup, options.customers, options.batch)
        )
        totals.append(sum(spent))
        best = spent if best is None else [min(a, b) for a, b in zip(best, spent, strict=True)]
    assert best is not None
    return sum(best), sum(totals) / len(totals), count


def stream_options(parser: argparse.ArgumentParser, batch: int) -> None:
    """The traffic options of the benchmarks that feed the decide path."""
    parser.add_argument("-n", type=int, default=3000, help="measured messages (default 3000)")
    parser.add_argument("--warmup", type=int, default=3000, help="warm-up messages")
    parser.add_argument("--customers", type=int, default=1000, help="directory size")
    parser.add_argument("--batch", type=int, default=batch, help="messages per batch")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    stream_options(parser, batch=100)
    parser.add_argument("--repeat", type=int, default=3, help="runs per configuration")
    options = parser.parse_args()
    prepare()  # the daemon imports datasketch once it is up, before any batch
    with tempfile.TemporaryDirectory(prefix="bench-decide-") as name:
        folder = Path(name)
        (folder / "full").mkdir()
        (folder / "bare").mkdir()
        full, full_mean, measured = fastest(options, True, folder)
        bare, bare_mean, _ = fastest(options, False, folder)
    print(f"{measured} measured messages, batches of {options.batch}, {options.repeat} runs each")
    for label, best, mean in (("full", full, full_mean), ("without intake", bare, bare_mean)):
        print(
            f"  {label:15} {best / measured * 1000:.3f} ms CPU per message "
            f"(each batch's fastest run; mean of the runs {mean / measured * 1000:.3f} ms)"
        )
    print(f"  intake's share of the full path: {(full - bare) / full:.0%}")


if __name__ == "__main__":
    main()
