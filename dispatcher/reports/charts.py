"""Charts as inline SVG, drawn by matplotlib (no pyplot: a Figure per chart, no global
state). Text stays text in the SVG (`svg.fonttype = none`): the browser sets it in its own
fonts, so labels in any script read, and the file stays small."""

from __future__ import annotations

import io
import re
import warnings
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from dispatcher.reports.model import Chart, Table

WIDTH_IN = 9.0
TOP = 15
STYLE = {
    "svg.fonttype": "none",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
}
PROLOGUE = re.compile(r"^.*?(?=<svg)", re.DOTALL)


def svg_of(table: Table) -> str | None:
    """The table's chart as an `<svg>` element; None when it has no chart or no figures."""
    chart = table.chart
    if chart is None or not table.rows or not chart.y:
        return None
    draw = {"stacked": _stacked, "heatmap": _heatmap, "barh": _barh, "percent": _percent}
    with matplotlib.rc_context({**STYLE, "svg.hashsalt": table.name}):
        figure = draw[chart.kind](table, chart)
        if figure is None:
            return None
        figure.suptitle(chart.title, x=0.01, ha="left", fontsize=11)
        buffer = io.StringIO()
        with warnings.catch_warnings():
            # Glyphs DejaVu lacks (CJK labels) are only measured with it; the SVG keeps the
            # text, which the browser sets in a font that has them.
            warnings.filterwarnings("ignore", message="Glyph .* missing from font")
            figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    return PROLOGUE.sub("", buffer.getvalue(), count=1)


def _stacked(table: Table, chart: Chart) -> Figure:
    days = table.column(str(chart.x))
    figure = Figure(figsize=(WIDTH_IN, 3.2))
    axes = figure.add_subplot()
    series = [table.column(name) for name in chart.y]
    positions = list(range(len(days)))
    axes.stackplot(positions, *series, labels=list(chart.y), alpha=0.85)
    step = max(1, len(days) // 12)
    axes.set_xticks(positions[::step], [day[5:] for day in days[::step]])
    axes.set_xlim(0, max(positions[-1], 1))
    axes.set_ylabel("contacts")
    axes.legend(loc="upper left", ncols=min(len(chart.y), 7), fontsize=8, frameon=False)
    return figure


def _heatmap(table: Table, chart: Chart) -> Figure:
    values = [[row[table.columns.index(column)] for column in chart.y] for row in table.rows]
    figure = Figure(figsize=(WIDTH_IN, 2.6))
    axes = figure.add_subplot()
    mesh = axes.pcolormesh(values, cmap="Blues", edgecolors="white", linewidth=0.5)
    axes.invert_yaxis()
    axes.set_yticks([n + 0.5 for n in range(len(table.rows))], table.column(str(chart.x)))
    axes.set_xticks([n + 0.5 for n in range(len(chart.y))], list(chart.y))
    axes.set_xlabel("hour (local time)")
    axes.grid(False)
    scale = figure.colorbar(mesh, ax=axes, label="contacts", fraction=0.03)
    scale.solids.set_rasterized(False)  # vector, like the rest (not an embedded PNG)
    return figure


def _barh(table: Table, chart: Chart) -> Figure | None:
    rows = [row for row in table.rows if _label(table, chart, row) != "total"]
    rows = sorted(rows, key=lambda row: -sum(_value(table, column, row) for column in chart.y))
    rows = rows[:TOP][::-1]
    if not rows:
        return None
    labels = [_short(_label(table, chart, row)) for row in rows]
    figure = Figure(figsize=(WIDTH_IN, 0.9 + 0.28 * len(rows)))
    axes = figure.add_subplot()
    left = [0.0] * len(rows)
    for column in chart.y:
        values = [_value(table, column, row) for row in rows]
        axes.barh(labels, values, left=left, label=column.replace("_", " "))
        left = [a + b for a, b in zip(left, values, strict=True)]
    if len(chart.y) > 1:
        axes.legend(loc="lower right", fontsize=8, frameon=False)
    axes.grid(axis="y", visible=False)
    return figure


def _percent(table: Table, chart: Chart) -> Figure | None:
    figure = _barh(table, chart)
    if figure is not None:
        figure.axes[0].set_xlim(0, 100)
        figure.axes[0].axvline(100, color="grey", linewidth=0.5)
    return figure


def _label(table: Table, chart: Chart, row: list[Any]) -> str:
    columns = (chart.x,) if isinstance(chart.x, str) else chart.x
    return " / ".join(str(row[table.columns.index(column)]) for column in columns)


def _value(table: Table, column: str, row: list[Any]) -> float:
    value = row[table.columns.index(column)]
    return float(value) if value is not None else 0.0


def _short(label: str, limit: int = 48) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"
