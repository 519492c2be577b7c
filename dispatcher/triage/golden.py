"""Golden tests for the rules: a file of sample messages and what each should get.

`ingest rules test --expect FILE` prints them as a table; `ingest rules check` and every
reload run the files `[triage] tests` names, and a reload that breaks one is refused like an
invalid file. The format (TOML):

    [[test]]
    name = "a Danish invoice question goes to billing"
    channel = "email"                  # any channel; see SampleSpec for every key
    subject = "Faktura 2231"
    text = "Hej, fakturaen er forkert."
    at = "2026-11-24 10:00"            # local time in the calendar's zone
    customer = { tier = "gold" }
    expect = { queue = "billing", priority = "P3", bucket = "action", tags = ["vip"] }
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from dispatcher.triage.engine import Decision, RuleSet
from dispatcher.triage.samples import (
    Sample,
    SampleDefaults,
    SampleError,
    SampleSpec,
    sample_facts,
)
from dispatcher.triage.validate import Source, validate

CASE_ID = "01JCKEPT00000000000000TEST"
UNSET = "-"


class ExpectSpec(Sample):
    """What the sample should get; keys left out are not checked. `tags` is the exact set."""

    queue: str | None = None
    priority: str | None = None
    bucket: str | None = None
    category: str | None = None
    tags: list[str] | None = None
    fields: dict[str, str] | None = None


class GoldenTest(SampleSpec):
    name: str = Field(min_length=1)
    expect: ExpectSpec


class GoldenFile(Sample):
    test: list[GoldenTest] = Field(default_factory=list)


@dataclass(frozen=True)
class Result:
    """One test run: what the rules decided, and each field that differs from `expect`."""

    test: GoldenTest
    line: int
    decision: Decision | None
    differences: tuple[tuple[str, str, str], ...] = ()
    """(field, got, expected)."""
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and not self.differences


@dataclass(frozen=True)
class Run:
    path: Path
    results: list[Result]
    problems: list[str]
    """The file itself is wrong: unreadable, not TOML, unknown keys."""

    @property
    def passed(self) -> bool:
        return not self.problems and all(result.passed for result in self.results)


def run_file(rules: RuleSet, path: Path, defaults: SampleDefaults) -> Run:
    """Every test of the file through the rules."""
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except OSError as error:
        return Run(path, [], [f"{path}: cannot be read: {error.strerror}"])
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        return Run(path, [], [f"{path}: not valid TOML: {error}"])
    source = Source(path, text, "")
    spec, problems = validate(GoldenFile, data, source)
    tests = spec.test if spec else []
    results = [
        _run(rules, test, source.line_of(source.original(("test", index))), path, defaults)
        for index, test in enumerate(tests)
    ]
    return Run(path, results, problems)


class Checker:
    """The golden check a load runs: one problem line per failing test; counts what passed."""

    def __init__(self, defaults: SampleDefaults) -> None:
        self.defaults = defaults
        self.passed = 0

    def __call__(self, rules: RuleSet, paths: Iterable[Path]) -> list[str]:
        found = []
        self.passed = 0
        for path in paths:
            run = run_file(rules, path, self.defaults)
            found.extend(run.problems)
            self.passed += sum(result.passed for result in run.results)
            found.extend(
                f"{path}:{result.line}: test {result.test.name!r}: {_failure(result)}"
                for result in run.results
                if not result.passed
            )
        return found


def _run(
    rules: RuleSet, test: GoldenTest, line: int, path: Path, defaults: SampleDefaults
) -> Result:
    try:
        facts = sample_facts(test, defaults, rules.local_zone, path.parent, CASE_ID)
    except SampleError as error:
        return Result(test, line, None, error=str(error))
    decision = rules.evaluate(facts)
    return Result(test, line, decision, tuple(_differences(test.expect, decision)))


def _differences(expect: ExpectSpec, decision: Decision) -> Iterable[tuple[str, str, str]]:
    for name in ("queue", "priority", "bucket", "category"):
        wanted = getattr(expect, name)
        got = getattr(decision, name) or UNSET
        if wanted is not None and wanted != got:
            yield name, got, wanted
    if expect.tags is not None and set(expect.tags) != set(decision.tags):
        yield "tags", ", ".join(decision.tags) or UNSET, ", ".join(expect.tags) or UNSET
    captured = dict(decision.fields)
    for name, wanted in (expect.fields or {}).items():
        if captured.get(name) != wanted:
            yield f"fields.{name}", captured.get(name, UNSET), wanted


def _failure(result: Result) -> str:
    if result.error is not None:
        return result.error
    return "; ".join(f"{name} {got}, expected {wanted}" for name, got, wanted in result.differences)


def table(run: Run) -> str:
    """The run as an admin reads it: a line per test, what differs spelled out under it."""
    lines = [*run.problems]
    rows = [("", "test", "queue", "priority", "bucket", "tags")]
    for result in run.results:
        decision = result.decision
        rows.append(
            (
                "ok" if result.passed else "FAIL",
                result.test.name,
                decision.queue if decision else UNSET,
                (decision.priority or UNSET) if decision else UNSET,
                (decision.bucket or UNSET) if decision else UNSET,
                ", ".join(decision.tags) if decision and decision.tags else UNSET,
            )
        )
    widths = [min(max(len(row[n]) for row in rows), 44) for n in range(len(rows[0]))]
    for number, row in enumerate(rows):
        lines.append(
            "  ".join(
                cell[:44].ljust(width) for cell, width in zip(row, widths, strict=True)
            ).rstrip()
        )
        if number and not run.results[number - 1].passed:
            result = run.results[number - 1]
            lines.append(f"      {run.path.name}:{result.line}: {_failure(result)}")
    passed = sum(result.passed for result in run.results)
    lines.append(f"{passed} of {len(run.results)} passed ({run.path})")
    return "\n".join(lines)
