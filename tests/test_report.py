"""`ingest report`: the figures in its CSV equal what is counted straight from a store filled
with known traffic (SQLite and PostgreSQL), JSON says the same, one report per owner, the
HTML file stands alone, and bad requests are refused with one line."""

from __future__ import annotations

import csv
import io
import json
import re
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from dispatcher.database import create_engine, head_revision, upgrade
from tests.daemon import run_ingest
from tests.report_expected import Expected, Span
from tests.report_traffic import Traffic, generate

ZONE = ZoneInfo("Europe/Copenhagen")
# March 2026 in Copenhagen: from 00:00 CET on the 1st to 00:00 CEST on April 1st.
SPAN = Span(datetime(2026, 2, 28, 23, tzinfo=UTC), datetime(2026, 3, 31, 22, tzinfo=UTC))
MARCH = ("--since", "2026-03-01", "--until", "2026-03-31", "--tz", "Europe/Copenhagen")
Tables = dict[str, list[dict[str, str]]]


def fill(url: str, tmp_path: Path) -> tuple[Path, Traffic]:
    """A migrated store at `url` with the known traffic, and a settings file naming it."""
    engine = create_engine(url)
    try:
        upgrade(engine)
        traffic = generate()
        traffic.write(engine)
    finally:
        engine.dispose()
    settings = tmp_path / "settings.toml"
    settings.write_text(f'[store]\nurl = "{url}"\n')
    return settings, traffic


@pytest.fixture
def filled(store_url: str, tmp_path: Path) -> tuple[Path, Traffic]:
    """A migrated store with the known traffic, and a settings file naming it."""
    return fill(store_url, tmp_path)


def report(settings: Path, *args: str) -> str:
    done = run_ingest(settings, "report", *args)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


def parse_csv(text: str) -> Tables:
    cells: dict[str, dict[int, dict[str, str]]] = defaultdict(lambda: defaultdict(dict))
    for line in csv.DictReader(io.StringIO(text)):
        cells[line["table"]][int(line["row"])][line["column"]] = line["value"]
    return {name: [rows[n] for n in sorted(rows)] for name, rows in cells.items()}


def keyed(rows: list[dict[str, str]], *key: str) -> dict[tuple[str, ...], dict[str, str]]:
    return {tuple(row[k] for k in key): row for row in rows}


def ints(row: dict[str, str], *columns: str) -> list[int]:
    return [int(row[column]) for column in columns]


async def test_the_csv_figures_equal_counts_taken_from_the_store(
    filled: tuple[Path, Traffic],
) -> None:
    settings, traffic = filled
    started = datetime.now(UTC)  # unanswered cases are judged at the period's end, or now
    tables = parse_csv(report(settings, *MARCH, "--format", "csv"))
    expected = Expected(traffic, SPAN, ZONE, min(started, SPAN.until))

    assert tables["report"][0]["since"] == SPAN.since.isoformat()
    assert tables["report"][0]["until"] == SPAN.until.isoformat()
    _contacts(tables, expected)
    _cases(tables, expected)
    _problems(tables, expected)
    _repeats(tables, expected)
    _responses(tables, expected)
    _closures(tables, expected)
    _incidents(tables, expected)
    _self_service(tables, expected)


def _contacts(tables: Tables, expected: Expected) -> None:
    by_channel = keyed(tables["contacts_by_channel"], "channel")
    want = expected.contacts_by_channel()
    assert {k[0] for k in by_channel} == {*want, "total"}
    for channel, (now, before) in want.items():
        assert ints(by_channel[channel,], "contacts", "previous") == [now, before], channel
    total = sum(now for now, _ in want.values())
    assert ints(by_channel["total",], "contacts") == [total]
    days = expected.contacts_by_day()
    channels = sorted(want)
    assert len(tables["contacts_by_day"]) == 31
    for row in tables["contacts_by_day"]:
        assert [int(row[c]) for c in channels] == [days[row["day"], c] for c in channels]
    hours = expected.contacts_by_hour_of_week()
    for weekday, row in enumerate(tables["contacts_by_hour_of_week"]):
        assert [int(row[f"{h:02d}"]) for h in range(24)] == [hours[weekday, h] for h in range(24)]
    assert sum(hours.values()) == total


def _cases(tables: Tables, expected: Expected) -> None:
    for dimension in ("queue", "bucket", "category", "product", "priority"):
        rows = keyed(tables[f"cases_by_{dimension}"], dimension)
        want = expected.cases_by(dimension)
        assert {k[0] for k in rows} == set(want), dimension
        for value, figures in want.items():
            got = ints(rows[value,], "cases", "still_open", "previous")
            assert got == figures, (dimension, value)
    rows = keyed(tables["non_customer_enquiries"], "queue", "category")
    want_non = expected.non_customers()
    assert set(rows) == set(want_non)
    for key, figures in want_non.items():
        assert ints(rows[key], "cases", "prospects", "unknown_senders") == figures, key


def _problems(tables: Tables, expected: Expected) -> None:
    rows = keyed(tables["recurring_problems"], "product", "topic")
    want = expected.problems()
    assert set(rows) == set(want)
    for key, figures in want.items():
        assert ints(rows[key], "cases", "customers", "previous") == figures, key
        assert rows[key]["examples"], key


def _repeats(tables: Tables, expected: Expected) -> None:
    per_customer = expected.contacts_per_customer()
    repeaters = {c: v for c, v in per_customer.items() if v[1] >= 3}
    [summary] = tables["repeat_contacts_summary"]
    assert ints(summary, "customers", "contacts", "repeat_contacters", "their_contacts") == [
        len(per_customer),
        sum(n for n, _ in per_customer.values()),
        len(repeaters),
        sum(n for n, _ in repeaters.values()),
    ]
    top = sorted(per_customer.items(), key=lambda item: (-item[1][0], -item[1][1], item[0]))
    listed = tables["frequent_contacters"]
    assert [int(row["customer_id"]) for row in listed] == [c for c, _ in top[:25]]
    for row in listed:
        customer = int(row["customer_id"])
        assert ints(row, "contacts", "most_within_window") == list(per_customer[customer])
        assert int(row["open_cases"]) == expected.open_cases(customer)
    assert {int(row["customer_id"]) for row in tables["repeat_contacters"]} <= set(repeaters)


def _responses(tables: Tables, expected: Expected) -> None:
    rows = keyed(tables["responses_by_priority"], "priority")
    want = expected.responses()
    assert set(rows) == {(p,) for p in want}
    for priority, (cases, targets, answered, within, missed, share, median) in want.items():
        row = rows[priority,]
        assert ints(row, "cases", "with_target", "answered", "within_target", "missed") == [
            cases,
            targets,
            answered,
            within,
            missed,
        ], priority
        assert float(row["within_pct"]) == share
        assert float(row["median_h"]) == pytest.approx(median, abs=1 / 120 + 0.005)  # its minute


def _closures(tables: Tables, expected: Expected) -> None:
    rows = keyed(tables["closures_by_queue"], "queue")
    want = expected.closures()
    for queue, figures in want.items():
        assert ints(rows[queue,], "closed", "reopened", "closed_without_resolution") == figures
    totals = [sum(figures[n] for figures in want.values()) for n in range(3)]
    assert ints(rows["total",], "closed", "reopened", "closed_without_resolution") == totals
    refs = {row["case"] for row in tables["closed_without_resolution"]}
    assert refs == expected.unresolved_refs()  # fewer than the 25 listed in this traffic
    escalations = keyed(tables["escalations_by_queue"], "queue", "product")
    want_escalations = expected.escalations()
    assert set(escalations) == set(want_escalations)
    for key, figures in want_escalations.items():
        assert ints(escalations[key], "cases", "still_open") == figures


def _incidents(tables: Tables, expected: Expected) -> None:
    summary = keyed(tables["incidents_summary"], "figure")
    want_summary = expected.incidents_summary()
    assert set(summary) == {(figure,) for figure in want_summary}
    for figure, figures in want_summary.items():
        assert ints(summary[figure,], "current", "previous") == figures, figure
    assert want_summary["incidents"][0] >= 2  # the traffic has incidents to list
    listed = {int(row["incident"]): row for row in tables["incident_list"]}
    want = expected.incidents()
    assert set(listed) == set(want)
    for number, figures in want.items():
        row = listed[number]
        assert ints(row, "messages", "cases", "customers") == [
            figures["messages"],
            figures["cases"],
            figures["customers"],
        ], number
        assert datetime.fromisoformat(row["started"]) == figures["started"]
        assert datetime.fromisoformat(row["ended"]) == figures["ended"]
        assert float(row["lasted_h"]) == round(
            (figures["ended"] - figures["started"]).total_seconds() / 3600, 1
        )
        assert (row["queue"], row["priority"]) == (figures["queue"], figures["priority"])
        assert row["examples"] == figures["examples"], number
    customers = [int(row["customers"]) for row in tables["incident_list"]]
    assert customers == sorted(customers, reverse=True)
    by_queue = keyed(tables["incident_cases_by_queue"], "queue", "priority")
    want_by_queue = expected.incident_cases_by_queue()
    assert set(by_queue) == set(want_by_queue)
    for key, figures in want_by_queue.items():
        assert ints(by_queue[key], "incidents", "cases") == figures, key


def _self_service(tables: Tables, expected: Expected) -> None:
    counts = expected.kb_counts()

    def total(kind: str, current: bool) -> int:
        return sum(figures.get((kind, current), 0) for figures in counts.values())

    summary = {row["figure"].split(" (")[0]: row for row in tables["self_service_summary"]}
    assert ints(summary["contacts deflected"], "current", "previous") == [
        total("accepted", True),
        total("accepted", False),
    ]
    assert ints(summary["articles shown on the contact form"], "current", "previous") == [
        total("shown", True),
        total("shown", False),
    ]
    assert ints(summary["articles suggested with forwarded cases"], "current", "previous") == [
        total("suggested", True),
        total("suggested", False),
    ]
    articles = keyed(tables["self_service_articles"], "article")
    assert set(articles) == {(article,) for article in counts}
    for article, figures in counts.items():
        row = articles[article,]
        assert ints(row, "shown", "deflected", "suggested_with_cases", "previous_deflected") == [
            figures.get(("shown", True), 0),
            figures.get(("accepted", True), 0),
            figures.get(("suggested", True), 0),
            figures.get(("accepted", False), 0),
        ], article
    deflected = [int(row["deflected"]) for row in tables["self_service_articles"]]
    assert deflected == sorted(deflected, reverse=True)
    answers = [
        (datetime.fromisoformat(row["at"]), row["article"], row["answer"])
        for row in tables["self_service_answers"]
    ]
    assert answers == expected.kb_answers()[:25]


async def test_json_gives_the_figures_of_the_csv(filled: tuple[Path, Traffic]) -> None:
    settings, _ = filled
    from_csv = parse_csv(report(settings, *MARCH, "--format", "csv"))
    document = json.loads(report(settings, *MARCH, "--format", "json"))
    for name, table in document["tables"].items():
        rows = [
            {c: "" if v is None else str(v) for c, v in zip(table["columns"], row, strict=True)}
            for row in table["rows"]
        ]
        assert rows == from_csv.get(name, []), name


@pytest.fixture
def filled_sqlite(tmp_path: Path) -> tuple[Path, Traffic]:
    """The known traffic in an SQLite store, for what does not differ between stores."""
    return fill(f"sqlite:///{tmp_path}/store/ingest.db", tmp_path)


async def test_by_product_writes_one_report_per_owner(
    filled_sqlite: tuple[Path, Traffic], tmp_path: Path
) -> None:
    settings, traffic = filled_sqlite
    folder = tmp_path / "owners"
    report(settings, *MARCH, "--by", "product", "--format", "csv", "--out", str(folder))
    expected = Expected(traffic, SPAN, ZONE, datetime.now(UTC))
    products = expected.cases_by("product")
    files = {path.name for path in folder.iterdir()}
    assert files == {f"product-{(p if p != '(none)' else 'none')}.csv" for p in products}
    for product, (cases, *_rest) in products.items():
        name = "none" if product == "(none)" else product
        tables = parse_csv((folder / f"product-{name}.csv").read_text())
        assert tables["report"][0]["scope"] == f"product {product}"
        [row] = tables["cases_by_product"]
        assert (row["product"], int(row["cases"])) == (product, cases)
        owned = {(p, t): v for (p, t), v in expected.problems().items() if p == product}
        assert {(r["product"], r["topic"]) for r in tables["recurring_problems"]} <= set(owned)
        incidents = expected.incidents(product)
        listed = {int(row["incident"]): row for row in tables.get("incident_list", [])}
        assert set(listed) == set(incidents), product
        for number, figures in incidents.items():
            assert ints(listed[number], "messages", "cases", "customers") == [
                figures["messages"],
                figures["cases"],
                figures["customers"],
            ], (product, number)
        assert "self_service_summary" not in tables  # self-service belongs to no product
    assert sum(len(expected.incidents(product)) for product in products) >= 2


async def test_the_html_report_stands_alone(
    filled_sqlite: tuple[Path, Traffic], tmp_path: Path
) -> None:
    settings, _ = filled_sqlite
    out = tmp_path / "report.html"
    done = run_ingest(settings, "report", *MARCH, "--out", str(out))
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == b""
    html = out.read_text(encoding="utf-8")
    for forbidden in ("<script", "<link", "<img", "<image", "<iframe", "@import", "src="):
        assert forbidden not in html, forbidden
    # Nothing outside the file: only references to the document's own ids.
    assert re.findall(r"url\((?!#)", html) == []
    assert re.findall(r"href=\"(?!#)", html) == []
    referenced = set(re.findall(r"(?:url\(#|href=\"#)([^)\"]+)", html))
    ids = re.findall(r' id="([^"]+)"', html)
    assert referenced <= set(ids)
    assert all(ids.count(target) == 1 for target in referenced)  # charts never share an id
    sections = ("contacts", "cases", "problems", "repeats", "responses", "closures")
    for section in (*sections, "escalations", "incidents", "self_service"):
        assert f'<section id="{section}"' in html
    assert html.count("<svg") >= 15  # every chart inline (incidents and articles too)
    for chart in ("Customers per incident", "Incident cases by queue", "Contacts deflected"):
        assert f'<figure aria-label="{chart}'.lower() in html.lower(), chart
    assert "<title>Voice of the customer: 2026-03-01 to 2026-03-31 (Europe/Copenhagen)" in html


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--since", "2026-03-10", "--until", "2026-03-01"), "is before --since"),
        (("--tz", "Mars/Olympus_Mons"), "unknown time zone 'Mars/Olympus_Mons'"),
        (("--by", "product"), "--by writes one file per owner: name a folder with --out"),
        (("--period", "week"), "'week' is not one of 'month', 'quarter'"),
        (("--since", "1 March"), "'1 March' does not match the format '%Y-%m-%d'"),
    ],
)
async def test_a_bad_request_is_refused_with_one_line(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text(f'[store]\nurl = "sqlite:///{tmp_path}/never.db"\n')
    done = run_ingest(settings, "report", *args)
    assert done.returncode == 2
    assert message in done.stderr.decode()
    assert done.stdout == b""
    assert not (tmp_path / "never.db").exists()


async def test_an_unmigrated_store_is_named_and_left_as_it_is(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    settings = tmp_path / "settings.toml"
    settings.write_text(f'[store]\nurl = "{url}"\n')
    done = run_ingest(settings, "report")
    assert done.returncode == 1
    needs = f"is not migrated (at no revision, this version needs {head_revision()})"
    line = done.stderr.decode().strip()
    assert needs in line
    assert line.endswith("run `ingest db upgrade`, or set [store] auto_migrate = true")
    assert done.stdout == b""


async def test_a_period_without_traffic_gives_a_report_that_says_so(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/empty.db"
    engine = create_engine(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    settings = tmp_path / "settings.toml"
    settings.write_text(f'[store]\nurl = "{url}"\n')
    html = report(settings, *MARCH)
    assert html.count("Nothing in this period.") >= 10
    tables = parse_csv(report(settings, *MARCH, "--format", "csv"))
    assert tables["contacts_by_channel"] == [
        {"channel": "total", "contacts": "0", "share_pct": "0.0", "previous": "0", "change_pct": ""}
    ]
    assert len(tables["contacts_by_day"]) == 31  # every day shown, with nothing on it
    for name in ("incidents_summary", "self_service_summary"):
        assert [int(row["current"]) + int(row["previous"]) for row in tables[name]] == [0] * len(
            tables[name]
        ), name
        assert {row["change_pct"] for row in tables[name]} == {""}, name
    for name in ("incident_list", "incident_cases_by_queue", "self_service_articles"):
        assert name not in tables, name  # no rows
    assert '<section id="incidents"' in html and '<section id="self_service"' in html
    done = run_ingest(settings, "report", *MARCH, "--by", "queue", "--out", str(tmp_path / "q"))
    assert done.returncode == 0
    assert "no cases in 2026-03-01 to 2026-03-31" in done.stderr.decode()
    assert list((tmp_path / "q").iterdir()) == []
