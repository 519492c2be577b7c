"""The report as one self-contained HTML file (inline CSS and SVG, no script, nothing
fetched), or its figures as CSV (one row per cell: table, row, column, value) or JSON."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from dispatcher.reports.charts import svg_of
from dispatcher.reports.model import Report


def to_html(report: Report) -> str:
    environment = Environment(
        loader=PackageLoader("dispatcher.reports", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["cell"] = lambda value: _shown(value, report)
    environment.filters["heading"] = _heading
    environment.tests["number"] = is_number
    charts = {table.name: Markup(svg) for table in report.tables() if (svg := svg_of(table))}
    return environment.get_template("report.html").render(
        report=report, charts=charts, title=_title(report)
    )


def to_json(report: Report) -> str:
    document = {
        "report": _about(report),
        "tables": {
            table.name: {
                "title": table.title,
                "section": section.key,
                "columns": table.columns,
                "rows": [[_exported(value) for value in row] for row in table.rows],
            }
            for section in report.sections
            for table in section.tables
        },
    }
    return json.dumps(document, ensure_ascii=False, indent=1) + "\n"


def to_csv(report: Report) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["table", "row", "column", "value"])
    for key, value in _about(report).items():
        writer.writerow(["report", 0, key, value])
    for table in report.tables():
        for number, row in enumerate(table.rows):
            for column, value in zip(table.columns, row, strict=True):
                shown = _exported(value)
                writer.writerow([table.name, number, column, "" if shown is None else shown])
    return buffer.getvalue()


def _about(report: Report) -> dict[str, Any]:
    return {
        "since": report.window.since.isoformat(),
        "until": report.window.until.isoformat(),
        "period": report.window.period,
        "timezone": report.window.zone.key,
        "previous_since": report.window.previous.since.isoformat(),
        "scope": report.scope.label(),
        "generated_at": report.generated_at.isoformat(),
        "store": report.store,
    }


def _title(report: Report) -> str:
    scope = "" if report.scope.by is None else f" — {report.scope.label()}"
    return f"Voice of the customer{scope}: {report.window.label()}"


def _exported(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _shown(value: Any, report: Report) -> str:
    if value is None:
        return "\u2013"  # an en dash: no figure
    if isinstance(value, datetime):
        return value.astimezone(report.window.zone).strftime("%Y-%m-%d %H:%M")
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _heading(column: str) -> str:
    words = column.removesuffix("_pct").removesuffix("_h").replace("_", " ")
    return words + (" (%)" if column.endswith("_pct") else " (h)" if column.endswith("_h") else "")
